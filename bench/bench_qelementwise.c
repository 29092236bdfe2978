/* Benchmark: the quantized elementwise and pooling kernels (src/kernels/qelementwise,
 * src/kernels/qpool), each instruction set this CPU runs against the scalar kernels, on shapes of
 * ResNet-style networks:
 *
 *   add             1x64x56x56 quint8, ATen's rule (x86 / onednn engines) and QNNPACK's
 *   max_pool2d      2x2 stride 2 on 1x64x56x56, NCHW planes and an NHWC image
 *   avg_pool2d      3x3 stride 1 padding 1 on 1x64x56x56 (ATen, zero point after rounding)
 *   adaptive_avg    1x512x7x7 to 1x1 (ATen's channels-last rule)
 *   cat             two 1x64x28x28 along channels, both requantized (channels-last: FMA form)
 *
 *   bench_qelementwise [--reps R] [--min-ms MS] [--no-ops]
 *
 * "kernel" rows call the kernels directly; "op" rows time the whole quantized op (cq_qop_*:
 * checks, output allocation, kernel) with CQ_ISA set to each instruction set. Each repetition times
 * a batch of calls lasting at least --min-ms (default 20 ms) for every ISA in turn; the reported
 * time per call is the median over --reps repetitions (default 9), with the minimum beside it (the
 * figure least disturbed on a shared machine). Output: one JSON object on stdout with the times and
 * the ratio scalar time / ISA time (> 1: faster than scalar) per case. Single-threaded. Not a test:
 * `make test` never runs it. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "bench_common.h"
#include "cquant/nn.h"
#include "kernels/qelementwise/qelementwise.h"
#include "kernels/qpool/qpool.h"
#include "nn/quantized/qops.h"


/* ---- the cases ------------------------------------------------------------------------------- */

typedef struct bench_data {
  uint8_t *a, *b, *c, *y;
  void *scratch;
  cq_ctx *ctx;
  cq_tensor *ta, *tb, *tc, *td, *te;
  int failed;
} bench_data;

typedef void (*case_fn)(bench_data *d, cq_isa isa);

enum { ADD_N = 64 * 56 * 56, CAT_N = 64 * 28 * 28, ADA_C = 512 };

static cq_qpool2d_geom maxpool_geom(void) {
  const cq_qpool2d_geom g = {56, 56, 28, 28, {2, 2}, {2, 2}, {0, 0}, {1, 1}};
  return g;
}

static cq_qpool2d_geom avgpool_geom(void) {
  const cq_qpool2d_geom g = {56, 56, 56, 56, {3, 3}, {1, 1}, {1, 1}, {1, 1}};
  return g;
}

static void k_add_aten(bench_data *d, cq_isa isa) {
  cq_qadd_aten_params p;
  cq_qdequant_params_init(0.05f, 120, &p.a);
  cq_qdequant_params_init(0.031f, 131, &p.b);
  p.y.inv_scale = 1.0f / 0.07f;
  p.y.zp = 125;
  p.y.y_min = 0;
  p.y.y_max = 255;
  p.relu = 0;
  cq_qelementwise_kernels_for(isa)->qu8_vadd_aten(ADD_N, ADD_N - ADD_N % 64, d->a, d->b, &p,
                                                  d->y);
}

static void k_add_qnnpack(bench_data *d, cq_isa isa) {
  cq_qadd_qnnpack_params p;
  cq_qadd_qnnpack_params_init(0.05f / 0.07f, 0.031f / 0.07f, 120, 131, 125, 0, &p);
  cq_qelementwise_kernels_for(isa)->qu8_vadd_qnnpack(ADD_N, d->a, d->b, &p, d->y);
}

static void k_maxpool_nchw(bench_data *d, cq_isa isa) {
  const cq_qpool2d_geom g = maxpool_geom();
  cq_qu8_maxpool2d_nchw(isa, 0, 64, &g, d->a, d->y, d->scratch);
}

static void k_maxpool_nhwc(bench_data *d, cq_isa isa) {
  const cq_qpool2d_geom g = maxpool_geom();
  cq_qu8_maxpool2d_nhwc(isa, 0, 1, 64, &g, d->a, d->y);
}

static void k_avgpool(bench_data *d, cq_isa isa) {
  const cq_qpool2d_geom g = avgpool_geom();
  const cq_qavgpool_params p = {{128, 0, 255, 0}, 0, 0.0f, 1, 0};
  cq_qu8_avgpool2d_nchw(isa, 64, &g, &p, d->a, d->y, d->scratch);
}

static void k_adaptive(bench_data *d, cq_isa isa) {
  const cq_qpool_out o = {128, 0, 255, 0};
  cq_qu8_adaptive_avgpool2d(isa, ADA_C, 7, 7, 1, 1, 0, &o, d->a, d->y);
}

static void k_cat(bench_data *d, cq_isa isa) {
  const cq_qelementwise_kernels *k = cq_qelementwise_kernels_for(isa);
  cq_qdequant_params da, db;
  cq_qdequant_params_init(0.05f, 120, &da);
  cq_qdequant_params_init(0.031f, 131, &db);
  const cq_qquant_params q = {(float)(1.0 / 0.07), 125, 0, 255};
  k->qu8_vrequant(CAT_N, CAT_N, d->a, &da, &q, d->y);
  k->qu8_vrequant(CAT_N, CAT_N, d->b, &db, &q, d->y + CAT_N);
}

/* ---- whole ops ----------------------------------------------------------------------------------- */

static void set_isa(cq_isa isa) { setenv("CQ_ISA", cq_isa_name(isa), 1); }

static void o_add(bench_data *d, cq_isa isa) {
  set_isa(isa);
  cq_tensor *y;
  if (cq_qop_add(NULL, d->ctx, d->ta, d->tb, 0.07f, 125, 0, CQ_BACKEND_X86, CQ_QLAYOUT_DEFAULT,
                 &y) != CQ_OK) {
    d->failed = 1;
  }
  cq_ctx_reset(d->ctx);
}

static void o_maxpool(bench_data *d, cq_isa isa) {
  set_isa(isa);
  const cq_qpool2d p = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 1, 0};
  cq_tensor *y;
  if (cq_qop_maxpool2d(NULL, d->ctx, d->ta, &p, CQ_BACKEND_X86, &y) != CQ_OK) d->failed = 1;
  cq_ctx_reset(d->ctx);
}

static void o_avgpool(bench_data *d, cq_isa isa) {
  set_isa(isa);
  const cq_qpool2d p = {{3, 3}, {1, 1}, {1, 1}, {1, 1}, 0, 1, 0};
  cq_tensor *y;
  if (cq_qop_avgpool2d(NULL, d->ctx, d->ta, &p, CQ_BACKEND_X86, CQ_QLAYOUT_DEFAULT, &y) != CQ_OK) {
    d->failed = 1;
  }
  cq_ctx_reset(d->ctx);
}

static void o_adaptive(bench_data *d, cq_isa isa) {
  set_isa(isa);
  cq_tensor *y;
  if (cq_qop_adaptive_avgpool2d(NULL, d->ctx, d->tc, 1, 1, CQ_BACKEND_X86, CQ_QLAYOUT_DEFAULT,
                                &y) != CQ_OK) {
    d->failed = 1;
  }
  cq_ctx_reset(d->ctx);
}

static void o_cat(bench_data *d, cq_isa isa) {
  set_isa(isa);
  cq_tensor *in[2] = {d->td, d->te}, *y;
  if (cq_qop_cat(NULL, d->ctx, 2, in, 1, 0.07f, 125, CQ_QLAYOUT_DEFAULT, &y) != CQ_OK) {
    d->failed = 1;
  }
  cq_ctx_reset(d->ctx);
}

typedef struct bench_case {
  const char *name, *level;
  case_fn fn;
} bench_case;

static const bench_case cases[] = {
    {"add 1x64x56x56 (ATen rule)", "kernel", k_add_aten},
    {"add 1x64x56x56 (QNNPACK rule)", "kernel", k_add_qnnpack},
    {"max_pool2d 2x2/2 1x64x56x56 NCHW", "kernel", k_maxpool_nchw},
    {"max_pool2d 2x2/2 1x64x56x56 NHWC", "kernel", k_maxpool_nhwc},
    {"avg_pool2d 3x3/1 pad 1 1x64x56x56", "kernel", k_avgpool},
    {"adaptive_avg_pool2d 1x512x7x7 -> 1x1", "kernel", k_adaptive},
    {"cat 2 x 1x64x28x28 (requantize both)", "kernel", k_cat},
    {"add 1x64x56x56", "op", o_add},
    {"max_pool2d 2x2/2 1x64x56x56", "op", o_maxpool},
    {"avg_pool2d 3x3/1 pad 1 1x64x56x56", "op", o_avgpool},
    {"adaptive_avg_pool2d 1x512x7x7 -> 1x1", "op", o_adaptive},
    {"cat 2 x 1x64x28x28", "op", o_cat},
};

/* ---- timing ----------------------------------------------------------------------------------- */

typedef struct timed_call {
  bench_data *d;
  case_fn fn;
  cq_isa isa;
} timed_call;

static void run_timed(void *ctx) {
  const timed_call *c = ctx;
  c->fn(c->d, c->isa);
}

static cq_tensor *activation(cq_ctx *ctx, int64_t c, int64_t h, int64_t w, float scale,
                             int32_t zp, const uint8_t *data) {
  const int64_t shape[4] = {1, c, h, w};
  cq_tensor *t = NULL;
  if (cq_qact_new(ctx, CQ_QUINT8, 4, shape, scale, zp, &t) != CQ_OK) return NULL;
  memcpy(t->data, data, (size_t)(c * h * w));
  return t;
}

int main(int argc, char **argv) {
  int reps = 9, ops = 1;
  double min_ms = 20.0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--min-ms") && i + 1 < argc) {
      min_ms = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--no-ops")) {
      ops = 0;
    } else {
      fprintf(stderr, "usage: bench_qelementwise [--reps R] [--min-ms MS] [--no-ops]\n");
      return 2;
    }
  }
  if (reps < 1 || reps > 1000) reps = 9;

  cq_isa isas[CQ_ISA_COUNT];
  int nisa = 0;
  for (int i = 0; i < CQ_ISA_COUNT; i++) {
    /* one entry per distinct kernel set: amx runs the avx512vnni forms */
    if (cq_isa_supported((cq_isa)i) && (i == CQ_ISA_SCALAR ||
        cq_qelementwise_kernels_for((cq_isa)i)->isa == (cq_isa)i)) {
      isas[nisa++] = (cq_isa)i;
    }
  }

  bench_data d;
  memset(&d, 0, sizeof d);
  const size_t bytes = ADD_N;
  d.a = malloc(bytes);
  d.b = malloc(bytes);
  d.c = malloc(bytes);
  d.y = malloc(bytes);
  const cq_qpool2d_geom ga = avgpool_geom(), gm = maxpool_geom();
  const size_t sa = cq_qpool_avg2d_scratch(&ga), sm = cq_qpool_max2d_scratch(&gm);
  d.scratch = malloc(sa > sm ? sa : sm);
  if (!d.a || !d.b || !d.c || !d.y || !d.scratch || cq_ctx_create(&d.ctx) != CQ_OK) {
    fprintf(stderr, "bench_qelementwise: out of memory\n");
    return 1;
  }
  uint32_t r = 12345;
  for (size_t i = 0; i < bytes; i++) {
    r = r * 1664525u + 1013904223u;
    d.a[i] = (uint8_t)(r >> 24);
    d.b[i] = (uint8_t)(r >> 16);
    d.c[i] = (uint8_t)(r >> 8);
  }
  /* tensors for the op rows live in a second context (the timed one is reset every call) */
  cq_ctx *keep = NULL;
  if (ops) {
    if (cq_ctx_create(&keep) != CQ_OK) return 1;
    d.ta = activation(keep, 64, 56, 56, 0.05f, 120, d.a);
    d.tb = activation(keep, 64, 56, 56, 0.031f, 131, d.b);
    d.tc = activation(keep, ADA_C, 7, 7, 0.02f, 128, d.c);
    d.td = activation(keep, 64, 28, 28, 0.05f, 120, d.a);
    d.te = activation(keep, 64, 28, 28, 0.031f, 131, d.b);
    if (!d.ta || !d.tb || !d.tc || !d.td || !d.te) {
      fprintf(stderr, "bench_qelementwise: could not create the input tensors\n");
      return 1;
    }
  }

  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  printf("{\n  \"reps\": %d,\n  \"min_ms\": %g,\n  \"threads\": 1,\n  \"isas\": [", reps, min_ms);
  for (int i = 0; i < nisa; i++) printf("%s\"%s\"", i ? ", " : "", cq_isa_name(isas[i]));
  printf("],\n  \"cases\": [");
  int first = 1;
  for (int ci = 0; ci < ncases; ci++) {
    const bench_case *bc = &cases[ci];
    const int is_op = !strcmp(bc->level, "op");
    if (is_op && !ops) continue;
    long calls[CQ_ISA_COUNT];
    double t[CQ_ISA_COUNT][1000];
    for (int i = 0; i < nisa; i++) {
      timed_call c = {&d, bc->fn, isas[i]};
      calls[i] = calibrate(run_timed, &c, min_ms);
    }
    for (int rep = 0; rep < reps; rep++) {
      for (int i = 0; i < nisa; i++) {
        timed_call c = {&d, bc->fn, isas[i]};
        t[i][rep] = time_batch(run_timed, &c, calls[i]);
      }
    }
    double med[CQ_ISA_COUNT], mn[CQ_ISA_COUNT];
    for (int i = 0; i < nisa; i++) {
      mn[i] = t[i][0];
      for (int rep = 1; rep < reps; rep++) mn[i] = t[i][rep] < mn[i] ? t[i][rep] : mn[i];
      med[i] = median(t[i], reps);
    }
    printf("%s\n    {\"case\": \"%s\", \"level\": \"%s\",\n     \"median_ms\": {", first ? "" : ",",
           bc->name, bc->level);
    first = 0;
    for (int i = 0; i < nisa; i++) {
      printf("%s\"%s\": %.5f", i ? ", " : "", cq_isa_name(isas[i]), med[i]);
    }
    printf("},\n     \"min_ms\": {");
    for (int i = 0; i < nisa; i++) {
      printf("%s\"%s\": %.5f", i ? ", " : "", cq_isa_name(isas[i]), mn[i]);
    }
    printf("},\n     \"speedup_vs_scalar\": {");
    for (int i = 1; i < nisa; i++) {
      printf("%s\"%s\": %.2f", i > 1 ? ", " : "", cq_isa_name(isas[i]), med[0] / med[i]);
    }
    printf("}}");
    fflush(stdout);
  }
  printf("\n  ]\n}\n");
  unsetenv("CQ_ISA");
  if (d.failed) fprintf(stderr, "bench_qelementwise: an op failed: %s\n", cq_last_error());
  cq_ctx_free(d.ctx);
  if (keep) cq_ctx_free(keep);
  free(d.a);
  free(d.b);
  free(d.c);
  free(d.y);
  free(d.scratch);
  return d.failed;
}
