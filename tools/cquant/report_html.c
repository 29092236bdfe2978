#include "report_html.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic_file.h"
#include "layer_compare.h"

#define NBINS 96
#define SVG_W 640
#define SVG_H 190
#define PLOT_TOP 18
#define PLOT_H 140

/* What the page shows of one layer. */
typedef struct layer_stats {
  double lo, hi;           /* clipping range */
  int32_t qmin, qmax;
  double dmin, dmax;       /* range of the float activation */
  double xmin, xmax;       /* histogram axis */
  int64_t count, clipped;
  int64_t bins[NBINS];
} layer_stats;

typedef struct hist_pass {
  cq_module *g;
  int next;
  const int *layer_of_node; /* float node -> layer index, -1 */
  layer_stats *stats;
  int second;               /* 0: min / max, 1: bins */
} hist_pass;

static cq_status hist_visit(const char *name, cq_module *module, int nout,
                            cq_tensor *const *outputs, void *user) {
  (void)name;
  (void)module;
  hist_pass *h = user;
  int li = h->layer_of_node[h->next++];
  if (li < 0 || nout < 1) return CQ_OK;
  const cq_tensor *t = outputs[0];
  if (t->dtype != CQ_F32 || t->qparams) return CQ_OK;
  layer_stats *s = &h->stats[li];
  const float *p = t->data;
  const int64_t n = cq_tensor_numel(t);
  if (!h->second) {
    for (int64_t i = 0; i < n; i++) {
      if (!isfinite(p[i])) continue;
      if (p[i] < s->dmin) s->dmin = p[i];
      if (p[i] > s->dmax) s->dmax = p[i];
    }
    return CQ_OK;
  }
  const double width = (s->xmax - s->xmin) / NBINS;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(p[i])) continue;
    int b = (int)((p[i] - s->xmin) / width);
    if (b < 0) b = 0;
    if (b >= NBINS) b = NBINS - 1;
    s->bins[b]++;
    s->count++;
    s->clipped += p[i] < s->lo || p[i] > s->hi;
  }
  return CQ_OK;
}

static cq_status histograms(cq_module *fg, cq_tensor *const *batches, int nbatches,
                            const int *layer_of_node, layer_stats *stats, int nlayers) {
  cq_ctx *ctx = NULL;
  cq_status st = cq_ctx_create(&ctx);
  hist_pass h = {fg, 0, layer_of_node, stats, 0};
  for (int pass = 0; pass < 2 && st == CQ_OK; pass++) {
    h.second = pass;
    if (pass == 1) {
      for (int i = 0; i < nlayers; i++) {
        layer_stats *s = &stats[i];
        double a = s->dmin <= s->dmax ? s->dmin : s->lo, b = s->dmin <= s->dmax ? s->dmax : s->hi;
        a = fmin(a, s->lo);
        b = fmax(b, s->hi);
        double pad = (b - a) * 0.03 + 1e-12;
        s->xmin = a - pad;
        s->xmax = b + pad;
      }
    }
    for (int k = 0; k < nbatches && st == CQ_OK; k++) {
      cq_tensor *out = NULL;
      h.next = 0;
      st = cq_graph_forward_visit(fg, ctx, 1, &batches[k], 1, &out, hist_visit, &h);
      if (st != CQ_OK) st = cq_fail_context(st, "report: float model, batch %d", k);
      cq_ctx_reset(ctx);
    }
  }
  cq_ctx_free(ctx);
  return st;
}

static void html_text(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '&': fputs("&amp;", f); break;
      case '"': fputs("&quot;", f); break;
      default: fputc(*s, f);
    }
  }
}

static void db(FILE *f, double v) {
  if (isinf(v) && v > 0) fputs("&infin;", f);
  else if (isnan(v)) fputs("&ndash;", f);
  else fprintf(f, "%.2f dB", v);
}

static double xpos(const layer_stats *s, double v) {
  return 40.0 + (v - s->xmin) / (s->xmax - s->xmin) * (SVG_W - 60);
}

static void svg_histogram(FILE *f, const layer_stats *s) {
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\" role=\"img\">\n", SVG_W, SVG_H, SVG_W, SVG_H);
  const double base = PLOT_TOP + PLOT_H;
  const double xl = xpos(s, s->xmin), xr = xpos(s, s->xmax);
  const double cl = xpos(s, s->lo), ch = xpos(s, s->hi);
  /* the clipped regions */
  if (cl > xl) {
    fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" class=\"clip\"/>\n", xl,
            PLOT_TOP, cl - xl, PLOT_H);
  }
  if (xr > ch) {
    fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" class=\"clip\"/>\n", ch,
            PLOT_TOP, xr - ch, PLOT_H);
  }
  int64_t maxc = 0;
  for (int b = 0; b < NBINS; b++) maxc = s->bins[b] > maxc ? s->bins[b] : maxc;
  const double width = (s->xmax - s->xmin) / NBINS;
  for (int b = 0; b < NBINS && maxc > 0; b++) {
    if (!s->bins[b]) continue;
    double h = log1p((double)s->bins[b]) / log1p((double)maxc) * PLOT_H;
    double a = s->xmin + b * width, c = a + width, mid = a + width / 2;
    const int out = mid < s->lo || mid > s->hi;
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"%s\"/>\n",
            xpos(s, a), base - h, fmax(xpos(s, c) - xpos(s, a) - 0.4, 0.6), h,
            out ? "barout" : "bar");
  }
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", xl, base,
          xr, base);
  const double lines[2] = {s->lo, s->hi};
  const char *names[2] = {"&#945;", "&#946;"};
  for (int i = 0; i < 2; i++) {
    double x = xpos(s, lines[i]);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" class=\"range\"/>\n", x,
            PLOT_TOP - 6, x, base);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"rl\" text-anchor=\"%s\">%s = %.4g</text>\n", x,
            PLOT_TOP - 8, i ? "start" : "end", names[i], lines[i]);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"start\">%.4g</text>\n", xl,
          base + 16, s->xmin);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%.4g</text>\n", xr,
          base + 16, s->xmax);
  if (s->xmin < 0 && s->xmax > 0) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"middle\">0</text>\n",
            xpos(s, 0), base + 16);
  }
  fputs("</svg>\n", f);
}

static const char css[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#222}"
    "h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child,"
    "td.l{text-align:left}th{background:#f2f2f2}tr.worst td{background:#fde2e2}"
    ".clip{fill:#f8d7da}.bar{fill:#4a7ebb}.barout{fill:#c9302c}.axis{stroke:#555}"
    ".range{stroke:#c9302c;stroke-width:1.5;stroke-dasharray:4 3}.rl{font-size:11px;fill:#c9302c}"
    ".tick{font-size:11px;fill:#555}.note{color:#555}code{background:#f4f4f4;padding:0 3px}";

static void write_page(FILE *f, const cli_report_options *o, const lc_result *r,
                       const layer_stats *stats, const int *shown, int nshown, int nbatches,
                       int64_t rows) {
  const char *title = o && o->title ? o->title : "cquant quantization report";
  const char *fl = o && o->float_label ? o->float_label : "float model";
  const char *ql = o && o->quant_label ? o->quant_label : "quantized model";
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>", f);
  html_text(f, title);
  fprintf(f, "</title><style>%s</style></head><body>\n<h1>", css);
  html_text(f, title);
  fputs("</h1>\n<p>", f);
  html_text(f, fl);
  fputs(" against ", f);
  html_text(f, ql);
  fprintf(f, "; backend <code>%s</code>; %d calibration batch%s (%lld rows). Output SQNR on the "
             "first batch: <b>", cq_backend_name(o ? o->backend : CQ_BACKEND_X86), nbatches,
          nbatches == 1 ? "" : "es", (long long)rows);
  db(f, r->output_sqnr_db);
  fputs("</b>.</p>\n<p class=\"note\">Each histogram is the float activation of the layer over the "
        "calibration data (log-scale counts). The dashed lines are the clipping range "
        "[&#945;, &#946;] = [(quant_min &minus; zero_point)&middot;scale, (quant_max &minus; "
        "zero_point)&middot;scale] the observer chose; values in the shaded parts are clamped. "
        "<i>Own SQNR</i>: the layer alone, float and quantized fed the same input (numeric "
        "suite's shadow); <i>cumulative</i>: the quantized model against the float model at that "
        "layer.</p>\n", f);
  int worst = -1;
  for (int i = 0; i < nshown; i++) {
    const lc_layer *L = &r->layers[shown[i]];
    if (worst < 0 || L->sqnr_db < r->layers[shown[worst]].sqnr_db) worst = i;
  }
  fputs("<table><tr><th>layer</th><th>type</th><th>float reference</th><th>scale</th>"
        "<th>zero point</th><th>clipping range</th><th>data range</th><th>clipped</th>"
        "<th>own SQNR</th><th>cumulative SQNR</th></tr>\n", f);
  for (int i = 0; i < nshown; i++) {
    const lc_layer *L = &r->layers[shown[i]];
    const layer_stats *s = &stats[i];
    fprintf(f, "<tr%s><td><a href=\"#layer%d\">", i == worst ? " class=\"worst\"" : "", i);
    html_text(f, L->name);
    fputs("</a></td><td class=\"l\">", f);
    html_text(f, L->type);
    fputs("</td><td class=\"l\">", f);
    html_text(f, L->ref_name);
    fprintf(f, "</td><td>%.6g</td><td>%d</td><td>[%.4g, %.4g]</td><td>[%.4g, %.4g]</td>"
               "<td>%.3f%%</td><td>", L->scale, L->zero_point, s->lo, s->hi, s->dmin, s->dmax,
            s->count ? 100.0 * (double)s->clipped / (double)s->count : 0.0);
    db(f, L->sqnr_db);
    fputs("</td><td>", f);
    db(f, L->cumulative_sqnr_db);
    fputs("</td></tr>\n", f);
  }
  fputs("</table>\n", f);
  for (int i = 0; i < nshown; i++) {
    const lc_layer *L = &r->layers[shown[i]];
    const layer_stats *s = &stats[i];
    fprintf(f, "<h2 id=\"layer%d\">", i);
    html_text(f, L->name);
    fputs(" <span class=\"note\">(", f);
    html_text(f, L->type);
    fputs(")</span></h2>\n<p>scale ", f);
    fprintf(f, "%.6g, zero point %d, quant range [%d, %d] &rarr; clipping range [%.5g, %.5g]; "
               "float activation in [%.5g, %.5g]; %lld of %lld values clipped (%.3f%%). Own "
               "SQNR ", L->scale, L->zero_point, s->qmin, s->qmax, s->lo, s->hi, s->dmin,
            s->dmax, (long long)s->clipped, (long long)s->count,
            s->count ? 100.0 * (double)s->clipped / (double)s->count : 0.0);
    db(f, L->sqnr_db);
    fputs(", cumulative ", f);
    db(f, L->cumulative_sqnr_db);
    fputs(".</p>\n", f);
    svg_histogram(f, s);
  }
  fputs("</body></html>\n", f);
}

/* The activation observer's [quant_min, quant_max] for a layer of dtype `dtype`. */
static void quant_range(cq_backend backend, cq_qdtype dtype, int32_t *qmin, int32_t *qmax) {
  cq_qconfig qc;
  cq_observer *obs = NULL;
  if (cq_get_default_qconfig(backend, 0, &qc) == CQ_OK && qc.activation.present &&
      qc.activation.observer.dtype == dtype &&
      cq_observer_create(&qc.activation.observer, &obs) == CQ_OK) {
    cq_observer_quant_range(obs, qmin, qmax);
    cq_observer_free(obs);
    return;
  }
  int64_t lo = 0, hi = 255;
  cq_qdtype_range(dtype, &lo, &hi);
  *qmin = (int32_t)lo;
  *qmax = (int32_t)hi;
}

cq_status cli_report_write(FILE *f, cq_module *float_model, cq_module *quant_model,
                           cq_tensor *const *batches, int nbatches,
                           const cli_report_options *options) {
  if (!f || !float_model || !quant_model || !batches || nbatches < 1) {
    return cq_fail(CQ_EINVAL, "report: needs both models and at least one calibration batch");
  }
  lc_result r;
  cq_status st = lc_compare(float_model, quant_model, batches[0], &r);
  if (st != CQ_OK) st = cq_fail_context(st, "report: first calibration batch");
  const int nnodes = cq_is_graph(float_model) ? cq_graph_num_nodes(float_model) : 0;
  int *layer_of_node = calloc((size_t)nnodes + 1, sizeof(int));
  int *shown = calloc((size_t)r.nlayers + 1, sizeof(int));
  layer_stats *stats = calloc((size_t)r.nlayers + 1, sizeof *stats);
  if (st == CQ_OK && (!layer_of_node || !shown || !stats)) {
    st = cq_fail(CQ_ENOMEM, "report: out of memory");
  }
  int nshown = 0;
  if (st == CQ_OK) {
    for (int k = 0; k < nnodes; k++) layer_of_node[k] = -1;
    for (int i = 0; i < r.nlayers; i++) {
      const lc_layer *L = &r.layers[i];
      /* one histogram per float activation: the first quantized layer that reads it */
      if (!L->quantized_output || layer_of_node[L->ref_node] >= 0) continue;
      layer_stats *s = &stats[nshown];
      quant_range(options ? options->backend : CQ_BACKEND_X86, L->dtype, &s->qmin, &s->qmax);
      s->lo = ((double)s->qmin - L->zero_point) * L->scale;
      s->hi = ((double)s->qmax - L->zero_point) * L->scale;
      s->dmin = INFINITY;
      s->dmax = -INFINITY;
      layer_of_node[L->ref_node] = nshown;
      shown[nshown++] = i;
    }
    st = histograms(float_model, batches, nbatches, layer_of_node, stats, nshown);
  }
  if (st == CQ_OK) {
    int64_t rows = 0;
    for (int k = 0; k < nbatches; k++) rows += batches[k]->ndim ? batches[k]->shape[0] : 1;
    write_page(f, options, &r, stats, shown, nshown, nbatches, rows);
    if (ferror(f)) st = cq_fail(CQ_EIO, "report: write error");
  }
  free(layer_of_node);
  free(shown);
  free(stats);
  lc_result_release(&r);
  return st;
}

cq_status cli_report_html(cq_module *float_model, cq_module *quant_model,
                          cq_tensor *const *batches, int nbatches,
                          const cli_report_options *options, const char *path) {
  cq_atomic_file af;
  cq_status st = cq_atomic_open(&af, path);
  if (st != CQ_OK) return st;
  st = cli_report_write(af.f, float_model, quant_model, batches, nbatches, options);
  if (st != CQ_OK) {
    cq_atomic_abort(&af);
    return st;
  }
  return cq_atomic_commit(&af);
}
