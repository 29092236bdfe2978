/* Diagnostic: where the time of a few-row AMX GEMM goes. Standalone loops over the packed weights
 * of a 16 x K x N problem (default 16 x 1024 x 1024: every 1 KiB weight tile is used by exactly
 * one tdpbusd, as in batch-16 linear layers), each timed in the same process next to cquant's
 * own GEMM on that shape:
 *
 *   weights_read          one pass of plain 512-bit loads over the weights (the L2 stream:
 *                         bench_weights_read, bench_qgemm's floor)
 *   tile_loads            the weight tiles loaded, nothing multiplied
 *   products              the tdpbusd of the problem alone, on tiles already loaded
 *   independent           the weight tiles loaded and as many products run on two other tiles
 *                         loaded once: loads and products with no dependence between them
 *   weights_a_fixed_b     weights loaded into tdpbusd's A operand, the B operand never reloaded
 *   weights_b             weights in the B operand, the activations reloaded into A each k step
 *                         (the loop of src/kernels/gemm/amx.c, 4 accumulators)
 *   weights_b_output      weights_b with the previous block's output stage (onednn rule, 4
 *                         outputs of 16 channels per k step) interleaved: a model of the kernel
 *   weights_b_then_output the same output stage run after each block instead
 *   weights_a_acts_b      weights in A, the activations reloaded into B each k step (blocks of
 *                         5 panels, 5 accumulators: the other assignment of operands)
 *   cquant                cq_qgemm_run on the AMX path, output stage included (onednn rule)
 *
 * None of the loops computes a usable result (the products land in scratch tiles); they exist to
 * show which part of the work keeps the few-row kernel above the weight stream's time. All use
 * nonzero data: tdpbusd on zero tiles runs faster (products alone ~10%), which would flatter
 * the loops whose operands were never loaded. Output:
 * one JSON object with the median and minimum microseconds of each over --reps repetitions.
 *
 *   bench_amx_loops [--shape K,N] [--reps R] [--min-ms MS]
 *
 * Needs a CPU with AMX-INT8 (else it says so and exits 0: a diagnostic, not a test). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "core/cpu.h"
#include "kernels/amx-inl.h"
#include "kernels/gemm/qgemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AMX_TARGET __attribute__((target("avx512f,avx512bw,amx-tile,amx-int8")))

typedef struct loops {
  const int8_t *w;    /* panels x k_steps tiles of 1 KiB, panel-major (cquant's packing) */
  const uint8_t *act; /* 16 x K activations, row-major (the A-operand loops) */
  const uint8_t *act_t; /* k_steps tiles of 1 KiB (the B-operand loop) */
  size_t panels, k_steps, rows_per_step;
  int32_t scratch[16 * 16] __attribute__((aligned(64)));
  volatile uint64_t sink;
  int32_t acc[2][16 * 64] __attribute__((aligned(64))); /* the weights_b loops' blocks */
  int32_t *offset;
  float *scale, *fbias, *mult;
  /* cquant */
  cq_qgemm_op *op;
  uint8_t *y;
  int64_t k, n;
} loops;

AMX_TARGET static void configure(void) {
  const cq_amx_config c = cq_amx_config_full();
  _tile_loadconfig(&c);
}

static void weights_read(void *ctx) {
  loops *l = ctx;
  l->sink += bench_weights_read((const uint8_t *)l->w, l->panels * l->k_steps * 1024);
}

/* Every weight tile loaded; with `multiply`, a product per load on two tiles loaded once. */
AMX_TARGET static inline __attribute__((always_inline)) void load_all(loops *l,
                                                                      const int multiply) {
  configure();
  _tile_loadd(4, l->act, 64);
  _tile_loadd(5, l->act_t, 64);
  const size_t tiles = l->panels * l->k_steps;
  for (size_t t = 0; t + 4 <= tiles; t += 4) {
    _tile_stream_loadd(6, l->w + t * 1024, 64);
    if (multiply) _tile_dpbusd(0, 4, 5);
    _tile_stream_loadd(7, l->w + (t + 1) * 1024, 64);
    if (multiply) _tile_dpbusd(1, 4, 5);
    _tile_stream_loadd(6, l->w + (t + 2) * 1024, 64);
    if (multiply) _tile_dpbusd(2, 4, 5);
    _tile_stream_loadd(7, l->w + (t + 3) * 1024, 64);
    if (multiply) _tile_dpbusd(3, 4, 5);
  }
  if (multiply) {
    _tile_stored(0, l->scratch, 64);
  } else {
    _tile_stored(6, l->scratch, 64);
  }
  _tile_release();
}

AMX_TARGET static void tile_loads(void *ctx) { load_all(ctx, 0); }

AMX_TARGET static void independent(void *ctx) { load_all(ctx, 1); }

AMX_TARGET static void products(void *ctx) {
  loops *l = ctx;
  configure();
  _tile_loadd(4, l->act, 64);
  _tile_loadd(5, l->w, 64);
  for (size_t i = 0; i + 4 <= l->panels * l->k_steps; i += 4) {
    _tile_dpbusd(0, 4, 5);
    _tile_dpbusd(1, 4, 5);
    _tile_dpbusd(2, 4, 5);
    _tile_dpbusd(3, 4, 5);
  }
  _tile_stored(0, l->scratch, 64);
  _tile_release();
}

/* The weight tile of panel p, k step s. */
static inline const int8_t *wt(const loops *l, size_t p, size_t s) {
  return l->w + (p * l->k_steps + s) * 1024;
}

AMX_TARGET static void weights_a_fixed_b(void *ctx) {
  loops *l = ctx;
  configure();
  _tile_loadd(4, l->act_t, 64);
  for (size_t p = 0; p + 4 <= l->panels; p += 4) {
    for (size_t s = 0; s < l->k_steps; s++) {
      _tile_stream_loadd(6, wt(l, p, s), 64);
      _tile_dpbusd(0, 6, 4);
      _tile_stream_loadd(7, wt(l, p + 1, s), 64);
      _tile_dpbusd(1, 7, 4);
      _tile_stream_loadd(6, wt(l, p + 2, s), 64);
      _tile_dpbusd(2, 6, 4);
      _tile_stream_loadd(7, wt(l, p + 3, s), 64);
      _tile_dpbusd(3, 7, 4);
    }
  }
  _tile_stored(0, l->scratch, 64);
  _tile_release();
}

/* np (1..5) panels from p: 5 accumulators, the activations of each k step in B. */
AMX_TARGET static inline void acts_b_block(loops *l, size_t p, size_t np) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_zero(4);
  for (size_t s = 0; s < l->k_steps; s++) {
    _tile_loadd(5, l->act_t + s * 1024, 64);
    _tile_stream_loadd(6, wt(l, p, s), 64);
    _tile_dpbusd(0, 6, 5);
    if (np > 1) {
      _tile_stream_loadd(7, wt(l, p + 1, s), 64);
      _tile_dpbusd(1, 7, 5);
    }
    if (np > 2) {
      _tile_stream_loadd(6, wt(l, p + 2, s), 64);
      _tile_dpbusd(2, 6, 5);
    }
    if (np > 3) {
      _tile_stream_loadd(7, wt(l, p + 3, s), 64);
      _tile_dpbusd(3, 7, 5);
    }
    if (np > 4) {
      _tile_stream_loadd(6, wt(l, p + 4, s), 64);
      _tile_dpbusd(4, 6, 5);
    }
  }
  _tile_stored(0, l->scratch, 64);
}

AMX_TARGET static void weights_a_acts_b(void *ctx) {
  loops *l = ctx;
  configure();
  for (size_t p = 0; p < l->panels; p += 5) {
    acts_b_block(l, p, l->panels - p < 5 ? l->panels - p : 5);
  }
  _tile_release();
}

/* The requantization of one row of 4 panels (onednn rule: float multiply, add, multiply, clamp,
 * round): the output stage a kernel has to fit in as well. */
AMX_TARGET static inline void finish_row(const loops *l, const int32_t *acc, size_t c, uint8_t *y) {
  const __m512 lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
  const __m512i zp = _mm512_set1_epi32(128);
  for (size_t j = 0; j < 4; j++) {
    const size_t cj = c + 16 * j;
    const __m512i v = _mm512_add_epi32(_mm512_load_si512(acc + 16 * j),
                                       _mm512_loadu_si512(l->offset + cj));
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(l->scale + cj));
    f = _mm512_mul_ps(_mm512_add_ps(f, _mm512_loadu_ps(l->fbias + cj)),
                      _mm512_loadu_ps(l->mult + cj));
    f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
    _mm_storeu_si128((__m128i *)(y + 16 * j),
                     _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), zp)));
  }
}

/* Four panels from p with the weights in B (cquant's loop), accumulators stored to acc. With
 * prev_acc, the previous block (panels from prev_p) is requantized on the way, a row per k step. */
AMX_TARGET static inline void weights_b_block(loops *l, size_t p, int32_t *acc,
                                              const int32_t *prev_acc, size_t prev_p) {
  const long lda = (long)(l->k_steps * 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (size_t s = 0; s < l->k_steps; s++) {
    _tile_loadd(4, l->act + s * 64, lda);
    _tile_stream_loadd(5, wt(l, p, s), 64);
    _tile_dpbusd(0, 4, 5);
    _tile_stream_loadd(6, wt(l, p + 1, s), 64);
    _tile_dpbusd(1, 4, 6);
    _tile_stream_loadd(7, wt(l, p + 2, s), 64);
    _tile_dpbusd(2, 4, 7);
    _tile_stream_loadd(5, wt(l, p + 3, s), 64);
    _tile_dpbusd(3, 4, 5);
    if (prev_acc) { /* rows_per_step rows, all 16 by the last k step */
      const size_t r_end = (s + 1) * l->rows_per_step < 16 ? (s + 1) * l->rows_per_step : 16;
      for (size_t r = s * l->rows_per_step; r < r_end; r++) {
        finish_row(l, prev_acc + r * 64, prev_p * 16, l->y + r * (size_t)l->n + prev_p * 16);
      }
    }
  }
  _tile_stored(0, acc, 256);
  _tile_stored(1, acc + 16, 256);
  _tile_stored(2, acc + 32, 256);
  _tile_stored(3, acc + 48, 256);
}

AMX_TARGET static void weights_b(void *ctx) {
  loops *l = ctx;
  configure();
  for (size_t p = 0; p + 4 <= l->panels; p += 4) weights_b_block(l, p, l->acc[0], NULL, 0);
  _tile_release();
}

AMX_TARGET static void weights_b_output(void *ctx) {
  loops *l = ctx;
  configure();
  int cur = 0;
  for (size_t p = 0; p + 4 <= l->panels; p += 4, cur ^= 1) {
    weights_b_block(l, p, l->acc[cur], p ? l->acc[cur ^ 1] : NULL, p - 4);
  }
  const size_t last = l->panels / 4 * 4 - 4;
  for (size_t r = 0; r < 16; r++) {
    finish_row(l, l->acc[cur ^ 1] + r * 64, last * 16, l->y + r * (size_t)l->n + last * 16);
  }
  _tile_release();
}

/* Each block's output stage right after the block instead. */
AMX_TARGET static void weights_b_then_output(void *ctx) {
  loops *l = ctx;
  configure();
  for (size_t p = 0; p + 4 <= l->panels; p += 4) {
    weights_b_block(l, p, l->acc[0], NULL, 0);
    for (size_t r = 0; r < 16; r++) {
      finish_row(l, l->acc[0] + r * 64, p * 16, l->y + r * (size_t)l->n + p * 16);
    }
  }
  _tile_release();
}

static void cquant(void *ctx) {
  loops *l = ctx;
  if (cq_qgemm_run(l->op, l->act, 16, l->k, l->y, l->n, NULL) != CQ_OK) abort();
}

static int run(int64_t k, int64_t n, int reps, double min_ms) {
  loops *l = bench_alloc(sizeof *l);
  memset(l, 0, sizeof *l);
  l->k = k;
  l->n = n;
  l->k_steps = (size_t)k / 64;
  l->panels = (size_t)n / 16;
  l->rows_per_step = (16 + l->k_steps - 1) / l->k_steps;
  int8_t *w = bench_alloc((size_t)(k * n));
  uint8_t *act = bench_alloc((size_t)(16 * k)), *act_t = bench_alloc((size_t)(16 * k));
  l->y = bench_alloc((size_t)(16 * n));
  float *bias = bench_alloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < k * n; i++) w[i] = (int8_t)(i * 37 + 11);
  for (int64_t i = 0; i < 16 * k; i++) act[i] = act_t[i] = (uint8_t)(i * 13 + 5);
  for (int64_t i = 0; i < n; i++) bias[i] = 0.01f * (float)(i % 9);
  const float w_scale = 0.004f;
  cq_qgemm_packed *packed = NULL;
  const cq_qgemm_quant q = {0.02f, 7, 0.3f, 128, 0, CQ_RULE_ONEDNN, 0, 0, 0};
  if (cq_qgemm_pack(w, n, k, &w_scale, NULL, 0, bias, &packed) != CQ_OK ||
      cq_qgemm_create_isa(packed, &q, CQ_ISA_AMX, &l->op) != CQ_OK) {
    fprintf(stderr, "bench_amx_loops: %s\n", cq_last_error());
    return 1;
  }
  l->w = packed->w; /* the loops stream cquant's own packed weights */
  l->offset = bench_alloc((size_t)n * sizeof(int32_t));
  l->scale = bench_alloc((size_t)n * sizeof(float));
  l->fbias = bench_alloc((size_t)n * sizeof(float));
  l->mult = bench_alloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) {
    l->offset[i] = -(int32_t)(i * 7);
    l->scale[i] = 1e-4f;
    l->fbias[i] = 0.01f;
    l->mult[i] = 3.0f;
  }
  l->act = act;
  l->act_t = act_t;
  static const struct {
    const char *name;
    call_fn fn;
  } variants[] = {{"weights_read", weights_read},   {"tile_loads", tile_loads},
                  {"products", products},           {"independent", independent},
                  {"weights_a_fixed_b", weights_a_fixed_b},
                  {"weights_b", weights_b},         {"weights_b_output", weights_b_output},
                  {"weights_b_then_output", weights_b_then_output},
                  {"weights_a_acts_b", weights_a_acts_b},
                  {"cquant", cquant}};
  enum { NV = sizeof variants / sizeof variants[0] };
  long calls[NV];
  double *t = calloc((size_t)(NV * reps), sizeof(double));
  for (int v = 0; v < NV; v++) calls[v] = calibrate(variants[v].fn, l, min_ms);
  for (int r = 0; r < reps; r++) { /* interleaved, so that a slow phase hits every variant */
    for (int v = 0; v < NV; v++) t[v * reps + r] = time_batch(variants[v].fn, l, calls[v]) * 1e3;
  }
  printf("{\n  \"benchmark\": \"AMX few-row loop anatomy, 16 x %lld x %lld, microseconds\",\n",
         (long long)k, (long long)n);
  printf("  \"reps\": %d,\n", reps);
  for (int v = 0; v < NV; v++) {
    const double mn = minimum(t + v * reps, reps), md = median(t + v * reps, reps);
    printf("  \"%s\": {\"median_us\": %.2f, \"min_us\": %.2f}%s\n", variants[v].name, md, mn,
           v + 1 < NV ? "," : "");
  }
  printf("}\n");
  free(t);
  cq_qgemm_destroy(l->op);
  cq_qgemm_packed_destroy(packed);
  free(w);
  free(act);
  free(act_t);
  free(l->y);
  free(l->offset);
  free(l->scale);
  free(l->fbias);
  free(l->mult);
  free(bias);
  free(l);
  return 0;
}
#endif

int main(int argc, char **argv) {
  long long k = 1024, n = 1024;
  int reps = 9;
  double min_ms = 20;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
      if (sscanf(argv[++i], "%lld,%lld", &k, &n) != 2 || k < 64 || n < 64 || k % 64 || n % 64 ||
          k * n > (1LL << 28)) {
        fprintf(stderr, "bench_amx_loops: --shape K,N needs K and N multiples of 64 (whole "
                        "tiles, blocks of 4 panels), K * N <= 2^28\n");
        return 2;
      }
    } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = atoi(argv[++i]);
      if (reps < 1 || reps > 1000) {
        fprintf(stderr, "bench_amx_loops: --reps must be 1..1000\n");
        return 2;
      }
    } else if (!strcmp(argv[i], "--min-ms") && i + 1 < argc) {
      min_ms = atof(argv[++i]);
      if (!(min_ms > 0 && min_ms <= 10000)) {
        fprintf(stderr, "bench_amx_loops: --min-ms must be in (0, 10000]\n");
        return 2;
      }
    } else {
      fprintf(stderr, "usage: bench_amx_loops [--shape K,N] [--reps R] [--min-ms MS]\n");
      return 2;
    }
  }
#if defined(__x86_64__)
  if (!cq_isa_supported(CQ_ISA_AMX)) {
    printf("{\"skipped\": \"%s\"}\n", cq_isa_missing_reason(CQ_ISA_AMX));
    return 0;
  }
  return run((int64_t)k, (int64_t)n, reps, min_ms);
#else
  printf("{\"skipped\": \"not an x86-64 build\"}\n");
  return 0;
#endif
}
