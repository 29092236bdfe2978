/* Benchmark: cquant's quantized linear (u8 x s8 -> u8, fused requantization) against two anchors
 * in the same process, on the same data, weights prepacked for all three: oneDNN's u8s8->u8 matmul
 * and XNNPACK's quantized fully connected operator.
 *
 *   bench_qgemm [--shape M,K,N]... [--threads T]... [--reps R] [--min-ms MS] [--rule NAME]
 *               [--dynamic] [--onednn-huge-pages]
 *
 * Run it as build/bench_qgemm (or `cmake --build BUILD --target bench`, which runs the defaults
 * through bench/run_qgemm.sh). Defaults: shapes 1,1024,1024 16,1024,1024 256,1024,1024
 * 1024,1024,1024; threads 1 and 2; 9 repetitions. Each repetition times a batch of calls lasting
 * at least --min-ms (default 20 ms) for cquant, then oneDNN, then XNNPACK (alternating, with a
 * short pause between libraries so no library's idle workers spin on another's time); the
 * reported time per call is the median over repetitions (the minimum is printed too: on a machine
 * shared with other jobs it is the figure least disturbed by them). Output: one JSON object on
 * stdout with every library's figures, GOP/s (2*M*K*N per call) and the ratios anchor time /
 * cquant time: "ratio" for oneDNN, "ratio_xnnpack" for XNNPACK (> 1: cquant is faster; < 1: the
 * anchor is). --dynamic times cquant's dynamic linear (float in/out) instead; the anchors stay
 * the static u8 operators. cquant's packed weights sit in 2 MiB blocks advised for transparent
 * huge pages (cq_malloc_weights); oneDNN's are its own allocation unless --onednn-huge-pages puts
 * them in such a block too (the header's "onednn_weights" says which): the comparison with the
 * memory treatment the same.
 *
 * XNNPACK's operator is xnn_create_fully_connected_nc_qu8: uint8 activations with their zero
 * point, as cquant's, so it runs on the very same input buffer; its weights are uint8 with one
 * zero point, so it gets cquant's int8 weights plus 128 with kernel zero point 128 -- the same
 * integers (w + 128) - 128 = w, hence the same int32 products (the alternative, the qs8 operator,
 * would need the activations shifted instead, i.e. a different input buffer). It requantizes in
 * float with its own rounding, so a few outputs differ by 1 from cquant's: counted in
 * "xnnpack_outputs_differing" / "xnnpack_max_output_difference", not an error. Where XNNPACK
 * cannot run a shape, that result says "xnnpack": "unsupported: <why>" instead of figures.
 * XNNPACK's thread pool is a pthreadpool of T threads (none for one thread).
 *
 * One-thread results also carry the weight-streaming floor: "weights_read_ms" is one pass of plain
 * vector loads over the packed weights (every byte read once, nothing computed), the least time
 * any GEMM that reads each weight once can take on this core; "onednn_over_floor" is therefore the
 * largest ratio against oneDNN any implementation can reach, and "cquant_over_floor" how far
 * cquant is from it. With M = 1 or 16 both libraries stream the weights from L2.
 *
 * Both anchors are optional at build time: oneDNN (CQ_HAVE_DNNL, Debian's libdnnl-dev) and
 * XNNPACK (CQ_HAVE_XNNPACK, Debian's libxnnpack-dev and libpthreadpool-dev); a missing one is
 * left out of the output. oneDNN uses OpenMP here: its thread count is set through
 * omp_set_num_threads, looked up at run time. Not a test: `make test` never runs it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "core/alloc.h"
#include "core/cpu.h"
#include "core/threadpool.h"
#include "kernels/gemm/qgemm.h"

#ifdef CQ_HAVE_DNNL
#include <dnnl.h>
#endif
#include "xnnpack_anchor.h"

/* XNNPACK may read this many bytes past the end of its input */
#ifdef CQ_HAVE_XNNPACK
#define INPUT_SLACK XNN_EXTRA_BYTES
#else
#define INPUT_SLACK 0
#endif

#define MAX_SHAPES 32
#define MAX_THREADS_LIST 8


/* ---- cquant ---------------------------------------------------------------------------------- */

typedef struct cq_bench {
  cq_qgemm_op *op;
  cq_qgemm_dynamic *dop;
  const uint8_t *x;
  const float *xf;
  uint8_t *y;
  float *yf;
  void *workspace;
  int64_t m, k, n;
  cq_threadpool *tp;
  int failed;
} cq_bench;

static void cq_call(void *ctx) {
  cq_bench *b = ctx;
  cq_status st;
  if (b->dop) {
    st = cq_qgemm_dynamic_run(b->dop, b->xf, b->m, b->k, b->yf, b->n, b->workspace, NULL, NULL,
                              b->tp);
  } else {
    st = cq_qgemm_run(b->op, b->x, b->m, b->k, b->y, b->n, b->tp);
  }
  if (st != CQ_OK) b->failed = 1;
}

/* ---- the weight-streaming floor (bench_weights_read) ---------------------------------------- */

typedef struct floor_bench {
  const uint8_t *w;
  size_t bytes;
  volatile uint64_t sink;
} floor_bench;

static void floor_call(void *ctx) {
  floor_bench *f = ctx;
  f->sink += bench_weights_read(f->w, f->bytes);
}

/* ---- oneDNN ---------------------------------------------------------------------------------- */

#ifdef CQ_HAVE_DNNL
typedef struct dnnl_bench {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  dnnl_primitive_t prim;
  dnnl_memory_t x, w, y;
  void *w_buf; /* the weights' memory with --onednn-huge-pages (cq_malloc_weights), else NULL */
  const char *impl;
  int failed;
} dnnl_bench;

#define DNNL_TRY(call)                                                              \
  do {                                                                              \
    dnnl_status_t s_ = (call);                                                      \
    if (s_ != dnnl_success) {                                                       \
      fprintf(stderr, "bench_qgemm: oneDNN call %s failed (%d)\n", #call, (int)s_); \
      return -1;                                                                    \
    }                                                                               \
  } while (0)

static int onednn_huge_pages; /* --onednn-huge-pages */

static int dnnl_setup(dnnl_bench *d, const uint8_t *x, const int8_t *w_nk, uint8_t *y, int64_t m,
                      int64_t k, int64_t n, float out_scale, int32_t x_zp, int32_t y_zp) {
  memset(d, 0, sizeof *d);
  DNNL_TRY(dnnl_engine_create(&d->engine, dnnl_cpu, 0));
  DNNL_TRY(dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags));
  dnnl_dims_t xd = {m, k}, wd = {k, n}, yd = {m, n};
  dnnl_memory_desc_t xmd, wmd_user, wmd_any, ymd;
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&xmd, 2, xd, dnnl_u8, dnnl_ab));
  /* PyTorch's [N, K] weight is the [K, N] matrix in column-major order: tag ba */
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd_user, 2, wd, dnnl_s8, dnnl_ba));
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd_any, 2, wd, dnnl_s8, dnnl_format_tag_any));
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&ymd, 2, yd, dnnl_u8, dnnl_ab));
  dnnl_matmul_desc_t md;
  DNNL_TRY(dnnl_matmul_desc_init(&md, &xmd, &wmd_any, NULL, &ymd));
  dnnl_primitive_attr_t attr;
  DNNL_TRY(dnnl_primitive_attr_create(&attr));
  DNNL_TRY(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &out_scale));
  DNNL_TRY(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &x_zp));
  DNNL_TRY(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &y_zp));
  dnnl_primitive_desc_t pd;
  DNNL_TRY(dnnl_primitive_desc_create(&pd, &md, attr, d->engine, NULL));
  DNNL_TRY(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &d->impl));
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  dnnl_memory_t w_user;
  DNNL_TRY(dnnl_memory_create(&d->x, &xmd, d->engine, (void *)x));
  DNNL_TRY(dnnl_memory_create(&w_user, &wmd_user, d->engine, (void *)w_nk));
  if (onednn_huge_pages) {
    /* the blocks cquant's packed weights get */
    d->w_buf = cq_malloc_weights(dnnl_memory_desc_get_size(wmd), "oneDNN's weights");
    if (!d->w_buf) {
      fprintf(stderr, "bench_qgemm: %s\n", cq_last_error());
      return 1;
    }
  }
  DNNL_TRY(dnnl_memory_create(&d->w, wmd, d->engine, d->w_buf ? d->w_buf : DNNL_MEMORY_ALLOCATE));
  DNNL_TRY(dnnl_memory_create(&d->y, &ymd, d->engine, y));
  /* prepack the weights once (reorder into the layout the primitive chose) */
  dnnl_primitive_desc_t rpd;
  dnnl_primitive_t reorder;
  DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &wmd_user, d->engine, wmd, d->engine, NULL));
  DNNL_TRY(dnnl_primitive_create(&reorder, rpd));
  dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, w_user}, {DNNL_ARG_TO, d->w}};
  DNNL_TRY(dnnl_primitive_execute(reorder, d->stream, 2, rargs));
  DNNL_TRY(dnnl_stream_wait(d->stream));
  DNNL_TRY(dnnl_primitive_create(&d->prim, pd));
  dnnl_primitive_destroy(reorder);
  dnnl_primitive_desc_destroy(rpd);
  dnnl_memory_destroy(w_user);
  dnnl_primitive_attr_destroy(attr);
  /* impl string belongs to pd: keep pd alive for the run (leaked on purpose until exit) */
  return 0;
}

static void dnnl_call(void *ctx) {
  dnnl_bench *d = ctx;
  dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, d->x}, {DNNL_ARG_WEIGHTS, d->w}, {DNNL_ARG_DST, d->y}};
  if (dnnl_primitive_execute(d->prim, d->stream, 3, args) != dnnl_success) d->failed = 1;
  dnnl_stream_wait(d->stream);
}

static void dnnl_teardown(dnnl_bench *d) {
  dnnl_primitive_destroy(d->prim);
  dnnl_memory_destroy(d->x);
  dnnl_memory_destroy(d->w);
  cq_free_weights(d->w_buf);
  dnnl_memory_destroy(d->y);
  dnnl_stream_destroy(d->stream);
  dnnl_engine_destroy(d->engine);
}
#endif

/* ---- XNNPACK -------------------------------------------------------------------------------- */

#ifdef CQ_HAVE_XNNPACK
/* The fully connected operator for y = requant(x W^T): x [M, K] uint8 (zero point x_zp), w_nk
 * PyTorch's [N, K] int8 weight, passed as w + 128 with kernel zero point 128 (the same integers:
 * see the comment at the top). Packs the weights. Returns NULL with reason[] set when XNNPACK
 * cannot run it. */
static xnn_operator_t xnn_fc_create(const int8_t *w_nk, int64_t k, int64_t n, float x_scale,
                                    int32_t x_zp, float w_scale, float y_scale, int32_t y_zp,
                                    char reason[XNN_ANCHOR_REASON_BYTES]) {
  if (xnn_anchor_init(reason) != 0) return NULL;
  uint8_t *w_u8 = malloc((size_t)(n * k));
  if (!w_u8) {
    snprintf(reason, XNN_ANCHOR_REASON_BYTES, "out of memory");
    return NULL;
  }
  xnn_anchor_flip_sign(w_nk, w_u8, (size_t)(n * k)); /* w + 128 */
  xnn_operator_t op = NULL;
  const enum xnn_status s = xnn_create_fully_connected_nc_qu8(
      (size_t)k, (size_t)n, (size_t)k, (size_t)n, (uint8_t)x_zp, x_scale, 128, w_scale, w_u8, NULL,
      (uint8_t)y_zp, y_scale, 0, 255, 0, &op);
  free(w_u8); /* packed into the operator */
  if (s != xnn_status_success) {
    xnn_anchor_create_failed(reason, "xnn_create_fully_connected_nc_qu8", s,
                             (double)x_scale * (double)w_scale / (double)y_scale);
    return NULL;
  }
  return op;
}
#endif

static void set_omp_threads(int t) {
  void (*fn)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
  if (fn) fn(t);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr, "usage: bench_qgemm [--shape M,K,N]... [--threads T]... [--reps R] "
                  "[--min-ms MS] [--rule qnnpack|onednn|fbgemm] [--dynamic]\n"
                  "                   [--onednn-huge-pages]\n");
}

int main(int argc, char **argv) {
  int64_t shapes[MAX_SHAPES][3];
  int n_shapes = 0, threads_list[MAX_THREADS_LIST], n_threads = 0, reps = 9, dynamic = 0;
  double min_ms = 20.0;
  cq_requant_rule rule = CQ_RULE_ONEDNN;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--shape") && i + 1 < argc && n_shapes < MAX_SHAPES) {
      long long m, k, n;
      if (sscanf(argv[++i], "%lld,%lld,%lld", &m, &k, &n) != 3 || m < 1 || k < 1 || n < 1) {
        usage();
        return 2;
      }
      shapes[n_shapes][0] = m, shapes[n_shapes][1] = k, shapes[n_shapes][2] = n;
      n_shapes++;
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc && n_threads < MAX_THREADS_LIST) {
      threads_list[n_threads++] = atoi(argv[++i]);
      if (threads_list[n_threads - 1] < 1) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = atoi(argv[++i]);
      if (reps < 1 || reps > 1000) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--min-ms") && i + 1 < argc) {
      min_ms = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--rule") && i + 1 < argc) {
      if (cq_requant_rule_parse(argv[++i], &rule) != CQ_OK) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--dynamic")) {
      dynamic = 1;
    } else if (!strcmp(argv[i], "--onednn-huge-pages")) {
#ifdef CQ_HAVE_DNNL
      onednn_huge_pages = 1;
#endif
    } else {
      usage();
      return 2;
    }
  }
  if (n_shapes == 0) {
    static const int64_t defaults[4][3] = {
        {1, 1024, 1024}, {16, 1024, 1024}, {256, 1024, 1024}, {1024, 1024, 1024}};
    memcpy(shapes, defaults, sizeof defaults);
    n_shapes = 4;
  }
  if (n_threads == 0) {
    threads_list[0] = 1, threads_list[1] = 2;
    n_threads = 2;
  }
  cq_isa isa;
  if (cq_isa_active(&isa) != CQ_OK) {
    fprintf(stderr, "bench_qgemm: %s\n", cq_last_error());
    return 1;
  }

  printf("{\n  \"benchmark\": \"%s linear u8s8->%s, cquant vs oneDNN matmul u8s8->u8 vs XNNPACK "
         "fully_connected_nc_qu8\",\n", dynamic ? "dynamic" : "static", dynamic ? "f32" : "u8");
  printf("  \"cquant_isa\": \"%s\",\n  \"rule\": \"%s\",\n  \"reps\": %d,\n  \"min_batch_ms\": %g,\n",
         cq_isa_name(isa), cq_requant_rule_name(rule), reps, min_ms);
#ifdef CQ_HAVE_DNNL
  printf("  \"onednn\": true,\n");
  printf("  \"onednn_weights\": \"%s\",\n",
         onednn_huge_pages ? "2 MiB block advised for huge pages, as cquant's" : "its own allocation");
#else
  printf("  \"onednn\": false,\n");
#endif
#ifdef CQ_HAVE_XNNPACK
  printf("  \"xnnpack\": true,\n  \"xnnpack_operator\": \"fully_connected_nc_qu8, weights + 128 with "
         "kernel zero point 128\",\n");
#else
  printf("  \"xnnpack\": false,\n");
#endif
  printf("  \"results\": [");
  int first = 1, status = 0;
  srand(12345);
  for (int si = 0; si < n_shapes; si++) {
    const int64_t m = shapes[si][0], k = shapes[si][1], n = shapes[si][2];
    uint8_t *x = bench_alloc((size_t)(m * k) + INPUT_SLACK), *y = bench_alloc((size_t)(m * n));
    uint8_t *y2 = bench_alloc((size_t)(m * n)), *y3 = bench_alloc((size_t)(m * n));
    int8_t *w = malloc((size_t)(n * k));
    float *xf = bench_alloc((size_t)(m * k) * sizeof(float));
    float *yf = bench_alloc((size_t)(m * n) * sizeof(float));
    void *workspace = bench_alloc((size_t)(m * k));
    for (int64_t i = 0; i < m * k; i++) {
      x[i] = (uint8_t)(rand() & 255);
      xf[i] = (float)(rand() % 2001 - 1000) * 0.003f;
    }
    for (int64_t i = 0; i < n * k; i++) w[i] = (int8_t)(rand() & 255);
    const float x_scale = 0.02f, w_scale = 0.004f, y_scale = 0.02f * 0.004f * 40.0f * (float)sqrt((double)k);
    const int32_t x_zp = 128, y_zp = 120;
    cq_qgemm_packed *packed = NULL;
    cq_qgemm_op *op = NULL;
    cq_qgemm_dynamic *dop = NULL;
    cq_qgemm_quant q = {x_scale, x_zp, y_scale, y_zp, 0, rule, 0, 0, 0};
    if (cq_qgemm_pack(w, n, k, &w_scale, NULL, 0, NULL, &packed) != CQ_OK ||
        cq_qgemm_create(packed, &q, &op) != CQ_OK ||
        (dynamic && cq_qgemm_dynamic_create(packed, rule, 1, 0, &dop) != CQ_OK)) {
      fprintf(stderr, "bench_qgemm: %s\n", cq_last_error());
      return 1;
    }
#ifdef CQ_HAVE_DNNL
    dnnl_bench d;
    if (dnnl_setup(&d, x, w, y2, m, k, n, x_scale * w_scale / y_scale, x_zp, y_zp) != 0) return 1;
#endif
#ifdef CQ_HAVE_XNNPACK
    char xnn_reason[XNN_ANCHOR_REASON_BYTES] = "";
    xnn_operator_t xop = xnn_fc_create(w, k, n, x_scale, x_zp, w_scale, y_scale, y_zp, xnn_reason);
#endif
    for (int ti = 0; ti < n_threads; ti++) {
      const int t = threads_list[ti];
      cq_threadpool *tp = NULL;
      if (t > 1 && cq_threadpool_create(t, &tp) != CQ_OK) {
        fprintf(stderr, "bench_qgemm: %s\n", cq_last_error());
        return 1;
      }
      set_omp_threads(t);
      cq_bench b = {op, dop, x, xf, y, yf, workspace, m, k, n, tp, 0};
      double *cq_ms = calloc((size_t)reps, sizeof(double));
      cq_call(&b); /* warm-up */
      const long cq_calls = calibrate(cq_call, &b, min_ms);
      /* the floor is a one-core figure */
      floor_bench fl = {(const uint8_t *)packed->w, (size_t)packed->panels * packed->panel_bytes, 0};
      double *fl_ms = calloc((size_t)reps, sizeof(double));
      const long fl_calls = t == 1 ? calibrate(floor_call, &fl, min_ms) : 0;
#ifdef CQ_HAVE_DNNL
      double *dn_ms = calloc((size_t)reps, sizeof(double));
      dnnl_call(&d);
      const long dn_calls = calibrate(dnnl_call, &d, min_ms);
#endif
#ifdef CQ_HAVE_XNNPACK
      /* setup plans the work for the pool's thread count: once per thread count */
      pthreadpool_t pool = NULL;
      xnn_anchor_run xr = {xop, NULL, 0};
      long xn_calls = 0;
      double *xn_ms = calloc((size_t)reps, sizeof(double));
      if (xop && xnn_anchor_pool_create(t, &pool) != 0) {
        snprintf(xnn_reason, sizeof xnn_reason, "pthreadpool_create(%d) failed", t);
        xr.op = NULL;
      }
      xr.pool = pool;
      if (xr.op) {
        const enum xnn_status s = xnn_setup_fully_connected_nc_qu8(xop, (size_t)m, x, y3, pool);
        if (s != xnn_status_success) {
          xnn_anchor_create_failed(xnn_reason, "xnn_setup_fully_connected_nc_qu8", s, 1.0);
          xr.op = NULL;
        }
      }
      if (xr.op) {
        xnn_anchor_call(&xr);
        xn_calls = calibrate(xnn_anchor_call, &xr, min_ms);
        xnn_anchor_pool_park(pool);
      }
#endif
      for (int r = 0; r < reps; r++) {
        pause_ms(30);
        cq_ms[r] = time_batch(cq_call, &b, cq_calls);
        if (fl_calls) fl_ms[r] = time_batch(floor_call, &fl, fl_calls);
#ifdef CQ_HAVE_DNNL
        pause_ms(30);
        dn_ms[r] = time_batch(dnnl_call, &d, dn_calls);
#endif
#ifdef CQ_HAVE_XNNPACK
        if (xr.op) {
          pause_ms(30);
          xn_ms[r] = time_batch(xnn_anchor_call, &xr, xn_calls);
          xnn_anchor_pool_park(pool);
        }
#endif
      }
      const double ops = 2.0 * (double)m * (double)k * (double)n;
      const double cq_min = minimum(cq_ms, reps), cq_med = median(cq_ms, reps);
      printf("%s\n    {\"m\": %lld, \"k\": %lld, \"n\": %lld, \"threads\": %d, \"cquant_ms\": %.5f, "
             "\"cquant_gops\": %.1f, \"cquant_ms_min\": %.5f", first ? "" : ",", (long long)m,
             (long long)k, (long long)n, t, cq_med, ops / cq_med * 1e-6, cq_min);
      const double fl_med = fl_calls ? median(fl_ms, reps) : 0.0;
      if (fl_calls) {
        printf(", \"weights_bytes\": %zu, \"weights_read_ms\": %.5f, \"cquant_over_floor\": %.3f",
               fl.bytes, fl_med, cq_med / fl_med);
      }
      free(fl_ms);
#ifdef CQ_HAVE_DNNL
      const double dn_min = minimum(dn_ms, reps), dn_med = median(dn_ms, reps);
      if (fl_calls) printf(", \"onednn_over_floor\": %.3f", dn_med / fl_med);
      printf(", \"onednn_ms\": %.5f, \"onednn_gops\": %.1f, \"onednn_ms_min\": %.5f, "
             "\"onednn_impl\": \"%s\", \"ratio\": %.3f, \"ratio_of_minima\": %.3f",
             dn_med, ops / dn_med * 1e-6, dn_min, d.impl, dn_med / cq_med, dn_min / cq_min);
      if (!dynamic && memcmp(y, y2, (size_t)(m * n)) != 0) {
        /* cquant follows PyTorch's onednn engine (bias in float, zy added after rounding); the raw
         * matmul with one combined output scale rounds a few ties differently: report, by how much */
        long diff = 0;
        int max_diff = 0;
        for (int64_t i = 0; i < m * n; i++) {
          const int d = abs((int)y[i] - (int)y2[i]);
          diff += d != 0;
          max_diff = d > max_diff ? d : max_diff;
        }
        printf(", \"outputs_differing\": %ld, \"max_output_difference\": %d", diff, max_diff);
      }
      free(dn_ms);
      if (d.failed) status = 1;
#endif
#ifdef CQ_HAVE_XNNPACK
      if (xr.op) {
        const double xn_min = minimum(xn_ms, reps), xn_med = median(xn_ms, reps);
        printf(", \"xnnpack_ms\": %.5f, \"xnnpack_gops\": %.1f, \"xnnpack_ms_min\": %.5f, "
               "\"ratio_xnnpack\": %.3f, \"ratio_xnnpack_of_minima\": %.3f",
               xn_med, ops / xn_med * 1e-6, xn_min, xn_med / cq_med, xn_min / cq_min);
        if (!dynamic) {
          /* XNNPACK requantizes in float (scale, round to nearest even, add the zero point):
           * a few ties land one step away from cquant's rule */
          long diff = 0;
          int max_diff = 0;
          xnn_anchor_compare(y, y3, (size_t)(m * n), &diff, &max_diff);
          printf(", \"xnnpack_outputs_differing\": %ld, \"xnnpack_max_output_difference\": %d",
                 diff, max_diff);
        }
        if (xr.failed) status = 1;
      } else {
        printf(", \"xnnpack\": \"unsupported: ");
        xnn_anchor_print_escaped(xnn_reason);
        printf("\"");
      }
      free(xn_ms);
      xnn_anchor_pool_destroy(pool);
#endif
      printf("}");
      first = 0;
      fflush(stdout);
      if (b.failed) status = 1;
      free(cq_ms);
      cq_threadpool_destroy(tp);
    }
#ifdef CQ_HAVE_DNNL
    dnnl_teardown(&d);
#endif
#ifdef CQ_HAVE_XNNPACK
    if (xop) xnn_delete_operator(xop);
#endif
    cq_qgemm_dynamic_destroy(dop);
    cq_qgemm_destroy(op);
    cq_qgemm_packed_destroy(packed);
    free(x);
    free(y);
    free(y2);
    free(y3);
    free(w);
    free(xf);
    free(yf);
    free(workspace);
  }
  printf("\n  ]\n}\n");
  return status;
}
