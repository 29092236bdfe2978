/* Quantized GEMM u8 x s8 -> s32 with a fused output stage: the kernels behind quantized::linear
 * (static, uint8 output) and quantized::linear_dynamic (float input and output), and the matrix
 * product a convolution runs on an im2col'd or NHWC activation matrix.
 *
 *   Y[m, n] = out_stage( sum_k (X[m, k] - zx) * (W[n, k] - zw_n) )     m < M, n < N, k < K
 *
 * X is uint8 [M, K] with row stride ldx (elements; rows may be strided, e.g. an NHWC tensor or an
 * im2col buffer), W is int8 [N, K] (PyTorch's linear weight layout) with per-tensor or
 * per-channel scale and zero point, Y is [M, N] with row stride ldy. The output stage is one of
 * the engine rules of kernels/requant/requant.h. Every result is bit-identical across ISAs and
 * thread counts, and equal to cq_qgemm_reference (reference.c), a deliberately naive loop.
 *
 * Lifecycle (QNNPACK style; only create/pack allocate):
 *   cq_qgemm_pack      once per weight (PyTorch's linear_prepack): validates, packs, keeps column
 *                      sums, scales, zero points and bias. Immutable afterwards; may be shared.
 *   cq_qgemm_create    binds packed weights to activation/output quantization and an engine rule
 *                      and precomputes the per-channel constants (static ops: at convert time).
 *   cq_qgemm_run       any number of times, any M, from any thread (the op is read-only).
 *   cq_qgemm_dynamic_* the dynamic-linear op: per call it picks the activation qparams with
 *                      ChooseQuantizationParams over the whole input (5.4), quantizes into a
 *                      caller-provided workspace and dequantizes in the epilogue.
 *
 * Packed layout (shared by every ISA): columns are grouped in panels of 16 (N padded with zero
 * weights), K is padded with zeros to a multiple of 64. Panel p holds, for each group of four k
 * (g = 0 .. K_padded/4 - 1), 16 columns x 4 bytes:  panel[g*64 + j*4 + t] = W[16p + j, 4g + t].
 * This is what vpdpbusd consumes with one 64-byte load per group, what AMX's tdpbusd takes as a
 * B tile (16 rows of 64 bytes = 16 groups of four k), and what the AVX2 and scalar kernels walk.
 * Panels are 64-byte aligned. Column sums (sum_k W[n, k]) turn the input zero point into one
 * per-channel offset; nonzero weight zero points add a per-row correction (row sums of X).
 *
 * Integer arithmetic: all accumulations wrap modulo 2^32 like the int32 lanes of the vector units,
 * so the result equals the exact sum whenever that fits in int32 (always for K < 33,000 with any
 * values, and far beyond for real data) and equals PyTorch's own int32 accumulation otherwise.
 *
 * AVX2 and saturation: fbgemm's AVX2 kernels use vpmaddubsw, whose int16 pair sums saturate for
 * u8 x s8 products near the extremes, which is why fbgemm's qconfigs use reduce_range for
 * activations. cquant's AVX2 kernel masks the weights into even and odd bytes before vpmaddubsw,
 * so each int16 holds a single product (|x*w| <= 32640) and nothing saturates: it is exact for the
 * full uint8 range and equal to the other paths; reduce_range is still honoured where PyTorch's
 * engine rule asks for it (dynamic ops), for the sake of matching PyTorch's numbers. */
#ifndef CQ_KERNELS_GEMM_QGEMM_H
#define CQ_KERNELS_GEMM_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/cpu.h"
#include "core/threadpool.h"
#include "cquant/status.h"
#include "kernels/requant/requant.h"

#define CQ_QGEMM_NR 16 /* columns per packed panel */
#define CQ_QGEMM_KB 64 /* K is padded to a multiple of this */

typedef struct cq_qgemm_packed {
  int64_t n, k;
  int64_t panels;      /* ceil(n / 16) */
  int64_t k_padded;    /* k rounded up to a multiple of 64 */
  size_t panel_bytes;  /* k_padded * 16 */
  int8_t *w;           /* panels * panel_bytes, 64-byte aligned */
  int32_t *col_sums;   /* panels * 16: sum_k W[n, k] (0 for padding columns) */
  int32_t *w_zp;       /* panels * 16: per-channel zero points (a per-tensor one repeated), 0 pad */
  float *w_scale;      /* n entries if per_channel else 1 */
  float *bias;         /* n entries, or NULL when the op has no bias */
  int per_channel;
  int has_w_zp;        /* some zero point is nonzero: row sums are needed */
  void *mem;
} cq_qgemm_packed;

/* Packs W [n, k] (int8, row-major, PyTorch's linear weight). w_scale: n floats if per_channel
 * else 1; w_zp: same count (int8 range) or NULL for zero; bias: n floats or NULL. All inputs are
 * copied: the caller keeps ownership. Errors: CQ_EINVAL (null pointers, n or k < 1 or > 2^31 - 1,
 * zero points outside [-128, 127]), CQ_EVALUE (scales not finite and > 0, non-finite bias),
 * CQ_ENOMEM. On failure *out is NULL. */
cq_status cq_qgemm_pack(const int8_t *w, int64_t n, int64_t k, const float *w_scale,
                        const int32_t *w_zp, int per_channel, const float *bias,
                        cq_qgemm_packed **out);
void cq_qgemm_packed_destroy(cq_qgemm_packed *p);

/* ---- static op: uint8 in, uint8 out ----------------------------------------------------------- */
typedef struct cq_qgemm_quant {
  float x_scale;
  int32_t x_zp;   /* [0, 255] */
  float y_scale;
  int32_t y_zp;   /* [0, 255] */
  int relu;       /* fused ReLU: clamp at y_zp (linear_relu) */
  cq_requant_rule rule;
  /* clamp the bytes to [clamp_lo, clamp_hi] as well (0 <= lo <= hi <= 255; a folded ReLU6 /
   * Hardtanh). An upper bound below 255 needs a float output stage (the ONEDNN / FBGEMM rules):
   * with QNNPACK's it is refused (CQ_EINVAL). */
  int clamp;
  int32_t clamp_lo, clamp_hi;
} cq_qgemm_quant;

typedef struct cq_qgemm_op cq_qgemm_op;

/* Narrows the output range of rq (set from q) to q's clamp, when q has one: what the GEMM and
 * convolution creators do. CQ_EINVAL for a clamp that is not a range within [0, 255], that cuts
 * below 255 with QNNPACK's rule, or that lies wholly below a fused ReLU's lower bound. */
cq_status cq_qgemm_apply_clamp(const cq_qgemm_quant *q, cq_requant_params *rq);

/* Binds packed weights (borrowed: they must outlive the op) to quantization parameters and an
 * engine rule, using the ISA of cq_isa_active() (CQ_ISA override). Errors: those of
 * cq_isa_active, cq_requant_params_set_static (CQ_EVALUE for unusable scales), CQ_EINVAL for a
 * zero point outside [0, 255], CQ_ENOMEM. */
cq_status cq_qgemm_create(const cq_qgemm_packed *w, const cq_qgemm_quant *q, cq_qgemm_op **out);
/* Same with an explicit ISA (tests run every supported path); CQ_EUNSUPPORTED if the CPU lacks it. */
cq_status cq_qgemm_create_isa(const cq_qgemm_packed *w, const cq_qgemm_quant *q, cq_isa isa,
                              cq_qgemm_op **out);
void cq_qgemm_destroy(cq_qgemm_op *op);
cq_isa cq_qgemm_isa(const cq_qgemm_op *op);

/* Y[m, n] for m < M: x is uint8 with row stride ldx >= K, y uint8 with row stride ldy >= N (both
 * in elements; x and y must not overlap). M = 0 does nothing. tp may be NULL (one thread); results
 * do not depend on the thread count. Never allocates. CQ_EINVAL for null pointers, M < 0 or
 * strides too small. */
cq_status cq_qgemm_run(const cq_qgemm_op *op, const uint8_t *x, int64_t m, int64_t ldx, uint8_t *y,
                       int64_t ldy, cq_threadpool *tp);

/* ---- dynamic op: float in, float out (quantized::linear_dynamic / linear_relu_dynamic) ------- */
typedef struct cq_qgemm_dynamic cq_qgemm_dynamic;

/* rule selects the engine's numerics: activation range [0, 255], or [0, 127] when reduce_range is
 * set and the engine honours it (ONEDNN, FBGEMM; QNNPACK ignores it, 5.4), and the dequantization
 * formula of requant.h. relu gives linear_relu_dynamic. Errors as cq_qgemm_create. */
cq_status cq_qgemm_dynamic_create(const cq_qgemm_packed *w, cq_requant_rule rule, int reduce_range,
                                  int relu, cq_qgemm_dynamic **out);
cq_status cq_qgemm_dynamic_create_isa(const cq_qgemm_packed *w, cq_requant_rule rule,
                                      int reduce_range, int relu, cq_isa isa,
                                      cq_qgemm_dynamic **out);
void cq_qgemm_dynamic_destroy(cq_qgemm_dynamic *op);

/* Bytes of workspace cq_qgemm_dynamic_run needs for M rows (the quantized activations). */
size_t cq_qgemm_dynamic_workspace_size(const cq_qgemm_dynamic *op, int64_t m);

/* y[m, n] = linear_dynamic(x)[m, n]: x float [M, K] (row stride ldx), y float [M, N] (row stride
 * ldy); workspace of cq_qgemm_dynamic_workspace_size(op, M) bytes (any alignment). The per-call
 * activation qparams are stored in *x_scale / *x_zp when those are not NULL. Not reentrant: the
 * op keeps the per-call channel constants, so one call at a time per op. Errors: CQ_EINVAL (null
 * pointers, strides), CQ_EVALUE (NaN or infinite inputs: no quantization parameters exist). */
cq_status cq_qgemm_dynamic_run(cq_qgemm_dynamic *op, const float *x, int64_t m, int64_t ldx,
                               float *y, int64_t ldy, void *workspace, float *x_scale,
                               int32_t *x_zp, cq_threadpool *tp);

/* ---- the naive reference (tests) ------------------------------------------------------------ */

/* Int32 accumulators acc[m*n] of sum_k (x - zx)(w - zw) straight from the unpacked weight, with
 * 64-bit sums truncated to int32 (two's complement), i.e. PyTorch's int32 accumulation. */
void cq_qgemm_reference_acc(const uint8_t *x, int64_t m, int64_t ldx, int32_t x_zp,
                            const int8_t *w, int64_t n, int64_t k, const int32_t *w_zp,
                            int per_channel, int32_t *acc);

/* ---- kernel interface (per-ISA files) ------------------------------------------------------ */

/* What a block function needs; filled by qgemm.c for each run. */
typedef struct cq_gemm_args {
  const uint8_t *a;
  size_t lda;
  const cq_qgemm_packed *w;
  const int32_t *offset;          /* padded N: -zx*colsum + K*zx*zw, added to every accumulator */
  const cq_requant_params *rq;
  void *c;                        /* uint8 or float, by rq->kind */
  size_t ldc;                     /* elements */
} cq_gemm_args;

/* Computes rows [m0, m1) and panels [p0, p1) of the output (the last panel may be partial).
 * Block functions never allocate; the little staging memory they need (AMX tiles) is on the stack. */
typedef void (*cq_gemm_block_fn)(const cq_gemm_args *g, int thread, size_t m0, size_t m1,
                                 size_t p0, size_t p1);

void cq_u8s8_gemm_block__scalar(const cq_gemm_args *g, int thread, size_t m0, size_t m1, size_t p0,
                                size_t p1);
void cq_u8s8_gemm_block__avx2(const cq_gemm_args *g, int thread, size_t m0, size_t m1, size_t p0,
                              size_t p1);
void cq_u8s8_gemm_block__avx512vnni(const cq_gemm_args *g, int thread, size_t m0, size_t m1,
                                    size_t p0, size_t p1);
void cq_u8s8_gemm_block__amx(const cq_gemm_args *g, int thread, size_t m0, size_t m1, size_t p0,
                             size_t p1);
/* AArch64: NEON widening multiply-accumulate (neon.c) and the ARMv8.2 SDOT form (neondot.c),
 * which reads the packed panels as they are: each 16-byte row of a group is four columns x four k,
 * exactly what one SDOT by-element instruction takes. */
void cq_u8s8_gemm_block__neon(const cq_gemm_args *g, int thread, size_t m0, size_t m1, size_t p0,
                              size_t p1);
void cq_u8s8_gemm_block__neondot(const cq_gemm_args *g, int thread, size_t m0, size_t m1,
                                 size_t p0, size_t p1);

/* Row sums sum_k x[r, k] for rows [0, mr) (used when weight zero points are nonzero). */
static inline void cq_gemm_row_sums(const uint8_t *a, size_t lda, size_t mr, size_t k,
                                    int32_t *sums) {
  for (size_t r = 0; r < mr; r++) {
    uint32_t s = 0;
    const uint8_t *row = a + r * lda;
    for (size_t i = 0; i < k; i++) s += row[i];
    sums[r] = (int32_t)s;
  }
}

#endif
