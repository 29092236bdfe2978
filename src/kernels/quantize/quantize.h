/* Vector kernels for quantizing float activations to quint8 (dynamic ops): the range scan
 * (min, max, NaN check) and quantize_per_tensor's rule for finite inputs,
 *   q = clamp(rne(f32(x * inv_scale)) + zp, 0, 255)
 * computed as rne(clamp(x * inv_scale, -zp, 255 - zp)) + zp, which is the same for every finite x
 * because the clamp bounds are integers. (Callers reject NaN and infinities before quantizing:
 * a dynamic op cannot choose qparams for them.) One file per ISA; all give identical bytes. */
#ifndef CQ_KERNELS_QUANTIZE_H
#define CQ_KERNELS_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "core/cpu.h"
#include "core/threadpool.h"

/* Min and max over rows x cols floats (row stride ld elements); *nonfinite = 1 if any value is
 * NaN or infinite (min/max are then meaningless). rows*cols must be > 0. */
typedef void (*cq_f32_range_fn)(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                                float *max, int *nonfinite);
void cq_f32_range__scalar(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                          float *max, int *nonfinite);
void cq_f32_range__avx2(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                        float *max, int *nonfinite);
void cq_f32_range__avx512(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                          float *max, int *nonfinite);
void cq_f32_range__neon(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                        float *max, int *nonfinite);

/* y[r, c] = quantize(x[r, c]) as above, zp in [0, 255]. */
typedef void (*cq_f32_qu8_fn)(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                              int32_t zp, uint8_t *y, size_t ldy);
void cq_f32_qu8__scalar(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                        int32_t zp, uint8_t *y, size_t ldy);
void cq_f32_qu8__avx2(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                      int32_t zp, uint8_t *y, size_t ldy);
void cq_f32_qu8__avx512(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                        int32_t zp, uint8_t *y, size_t ldy);
void cq_f32_qu8__neon(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                      int32_t zp, uint8_t *y, size_t ldy);

/* The forms of an ISA (the scalar ones where it has none). */
typedef struct cq_quantize_kernels {
  cq_f32_range_fn range;
  cq_f32_qu8_fn quantize;
} cq_quantize_kernels;
cq_quantize_kernels cq_quantize_kernels_for(cq_isa isa);

/* y[i] = quantize(x[i]) for i < n when every x[i] is finite and |x[i] * inv_scale| < 2^62
 * (returns 1): then the bytes of quantize_per_tensor. Returns 0 otherwise, with y's bytes
 * unspecified (NaN, infinities and int64 overflow are the caller's scalar path's to define, over
 * the whole array). The array is checked and quantized a chunk at a time (read from memory once),
 * and split between the threads of tp (may be NULL) when it is large. */
int cq_f32_quantize_qu8_finite(cq_isa isa, const float *x, size_t n, float inv_scale, int32_t zp,
                               uint8_t *y, cq_threadpool *tp);

#endif
