/* QConfig presets against PyTorch 1.13: every factory of every default qconfig builds the same
 * observer (kind, fake-quant wrapper, dtype, qscheme, resolved range, eps, averaging constant,
 * ch_axis) as torch does (tests/data/golden/qconfig/cases.txt, tools/golden/gen_qconfig.py). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/pyformat.h"
#include "core/strbuf.h"
#include "cquant/cquant.h"
#include "golden.h"

static const char *fake_quant_name(cq_fake_quant_kind k) {
  switch (k) {
    case CQ_FQ_NONE: return "observer";
    case CQ_FQ_FAKE_QUANTIZE: return "fake_quantize";
    case CQ_FQ_FUSED_MOVING_AVG: return "fused_moving_avg";
    case CQ_FQ_FIXED_QPARAMS: return "fixed_qparams";
    default: return "learnable";
  }
}

/* The same one-line description gen_qconfig.py writes. */
static void describe(const cq_qspec *spec, cq_strbuf *sb) {
  if (!spec->present) {
    cq_strbuf_append(sb, "none");
    return;
  }
  cq_observer *obs = NULL;
  if (cq_observer_create(&spec->observer, &obs) != CQ_OK) {
    cq_strbuf_appendf(sb, "create failed: %s", cq_last_error());
    return;
  }
  const cq_observer_config *c = &spec->observer;
  cq_strbuf_appendf(sb, "fake_quant=%s observer=%s dtype=%s", fake_quant_name(spec->fake_quant),
                    cq_observer_kind_name(c->kind), cq_qdtype_name(c->dtype));
  if (c->kind == CQ_OBSERVER_PLACEHOLDER || c->kind == CQ_OBSERVER_NOOP) {
    if (c->has_compute_dtype) {
      cq_strbuf_appendf(sb, " compute_dtype=%s", cq_qdtype_name(c->compute_dtype));
    }
    cq_observer_free(obs);
    return;
  }
  int32_t qmin, qmax;
  cq_observer_quant_range(obs, &qmin, &qmax);
  cq_strbuf_appendf(sb, " qscheme=%s quant_min=%d quant_max=%d", cq_qscheme_name(c->qscheme), qmin,
                    qmax);
  if (c->kind == CQ_OBSERVER_FIXED_QPARAMS) {
    cq_strbuf_append(sb, " scale=");
    cq_strbuf_append_pyfloat(sb, c->fixed_scale);
    cq_strbuf_appendf(sb, " zero_point=%d", c->fixed_zero_point);
    cq_observer_free(obs);
    return;
  }
  cq_strbuf_appendf(sb, " reduce_range=%d eps=", c->reduce_range);
  cq_strbuf_append_pyfloat(sb, c->eps);
  if (c->kind == CQ_OBSERVER_MOVING_AVERAGE_MINMAX ||
      c->kind == CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX) {
    cq_strbuf_append(sb, " averaging_constant=");
    cq_strbuf_append_pyfloat(sb, c->averaging_constant);
  }
  if (c->kind == CQ_OBSERVER_PER_CHANNEL_MINMAX ||
      c->kind == CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX) {
    cq_strbuf_appendf(sb, " ch_axis=%d", c->ch_axis);
  }
  cq_observer_free(obs);
}

static int lookup(const char *name, cq_qconfig *q) {
  char buf[128];
  snprintf(buf, sizeof buf, "%s", name);
  char *parts[3] = {buf, NULL, NULL};
  for (int i = 1; i < 3; i++) {
    char *slash = parts[i - 1] ? strchr(parts[i - 1], '/') : NULL;
    if (slash) {
      *slash = '\0';
      parts[i] = slash + 1;
    }
  }
  cq_backend backend;
  if (!strcmp(parts[0], "preset")) return cq_qconfig_preset(parts[1], q) == CQ_OK;
  if (cq_backend_parse(parts[1], &backend) != CQ_OK) return 0;
  if (!strcmp(parts[0], "default_qconfig")) return cq_get_default_qconfig(backend, 0, q) == CQ_OK;
  return cq_get_default_qat_qconfig(backend, atoi(parts[2]), q) == CQ_OK;
}

int main(void) {
  golden_file g;
  if (golden_load(CQ_TEST_DATA_DIR "/golden/qconfig/cases.txt", &g) != 0) return 1;
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    cq_qconfig q;
    if (!lookup(c->name, &q)) {
      CHECK_MSG(0, "%s: %s", c->name, cq_last_error());
      continue;
    }
    const char *roles[2] = {"activation", "weight"};
    const cq_qspec *specs[2] = {&q.activation, &q.weight};
    for (int r = 0; r < 2; r++) {
      cq_strbuf sb;
      cq_strbuf_init(&sb);
      describe(specs[r], &sb);
      const char *want = golden_get(c, roles[r]);
      CHECK_MSG(want && strcmp(cq_strbuf_str(&sb), want) == 0, "%s %s:\n  got:  %s\n  want: %s",
                c->name, roles[r], cq_strbuf_str(&sb), want ? want : "(missing)");
      cq_strbuf_release(&sb);
    }
  }
  printf("test_qconfig: %d qconfigs compared with PyTorch\n", g.count);
  golden_free(&g);

  cq_qconfig q;
  CHECK_STATUS(cq_get_default_qconfig(CQ_BACKEND_X86, 1, &q), CQ_EINVAL);
  CHECK_STATUS(cq_get_default_qat_qconfig(CQ_BACKEND_QNNPACK, 2, &q), CQ_EINVAL);
  CHECK_STATUS(cq_qconfig_preset("no_such_qconfig", &q), CQ_EINVAL);
  cq_backend b;
  CHECK_STATUS(cq_backend_parse("tpu", &b), CQ_EINVAL);
  for (const char *const *n = cq_qconfig_preset_names(); *n; n++) CHECK_OK(cq_qconfig_preset(*n, &q));
  cq_qspec s;
  CHECK_OK(cq_qspec_preset("default_fixed_qparams_range_neg1to1_fake_quant", &s));
  CHECK(s.fake_quant == CQ_FQ_FIXED_QPARAMS && s.observer.fixed_zero_point == 128);
  CHECK_STATUS(cq_qspec_preset("nope", &s), CQ_EINVAL);
  return check_summary("test_qconfig");
}
