/* AVX2 forms of the vmath algorithm (vmath.h): 8 lanes, the same operations as scalar.c; the
 * tail goes through scalar.c (the same bits). */
#include <immintrin.h>

#include "kernels/vmath/vmath.h"

static inline __m256 exp_core(__m256 x) {
  const __m256 round = _mm256_set1_ps(CQ_VM_ROUND);
  const __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(CQ_VM_LOG2E));
  const __m256 n = _mm256_sub_ps(_mm256_add_ps(t, round), round);
  const __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(CQ_VM_LN2_HI))),
                                 _mm256_mul_ps(n, _mm256_set1_ps(CQ_VM_LN2_LO)));
  __m256 p = _mm256_set1_ps(CQ_VM_E7);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CQ_VM_E6));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CQ_VM_E5));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CQ_VM_E4));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CQ_VM_E3));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(CQ_VM_E2));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

static inline __m256 clamp_exp_arg(__m256 x) {
  return _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(CQ_VM_EXP_MIN)),
                       _mm256_set1_ps(CQ_VM_EXP_MAX));
}

/* NaN lanes of x pass through (min/max would have turned them into numbers) */
static inline __m256 keep_nan(__m256 x, __m256 y) {
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

static inline __m256 sigmoid8(__m256 x) {
  const __m256 e = exp_core(clamp_exp_arg(_mm256_sub_ps(_mm256_setzero_ps(), x)));
  return keep_nan(x, _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
}

static inline __m256 tanh8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 a = _mm256_andnot_ps(sign, x);
  const __m256 a2 = _mm256_mul_ps(a, a);
  __m256 p = _mm256_set1_ps(CQ_VM_T9);
  p = _mm256_add_ps(_mm256_mul_ps(p, a2), _mm256_set1_ps(CQ_VM_T8));
  p = _mm256_add_ps(_mm256_mul_ps(p, a2), _mm256_set1_ps(CQ_VM_T7));
  p = _mm256_add_ps(_mm256_mul_ps(p, a2), _mm256_set1_ps(CQ_VM_T6));
  p = _mm256_add_ps(_mm256_mul_ps(p, a2), _mm256_set1_ps(CQ_VM_T5));
  p = _mm256_add_ps(_mm256_mul_ps(p, a2), _mm256_set1_ps(CQ_VM_T4));
  p = _mm256_add_ps(_mm256_mul_ps(p, a2), _mm256_set1_ps(CQ_VM_T3));
  p = _mm256_add_ps(_mm256_mul_ps(p, a2), _mm256_set1_ps(CQ_VM_T2));
  p = _mm256_add_ps(_mm256_mul_ps(p, a2), _mm256_set1_ps(CQ_VM_T1));
  const __m256 small = _mm256_add_ps(a, _mm256_mul_ps(a, _mm256_mul_ps(a2, p)));
  const __m256 e = exp_core(_mm256_mul_ps(_mm256_set1_ps(2.0f),
                                          _mm256_min_ps(a, _mm256_set1_ps(CQ_VM_TANH_BIG))));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 big = _mm256_div_ps(_mm256_sub_ps(e, one), _mm256_add_ps(e, one));
  const __m256 is_small = _mm256_cmp_ps(a, _mm256_set1_ps(CQ_VM_TANH_SMALL), _CMP_LT_OQ);
  const __m256 y = _mm256_blendv_ps(big, small, is_small);
  return keep_nan(x, _mm256_or_ps(y, _mm256_and_ps(sign, x)));
}

void cq_f32_sigmoid__avx2(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sigmoid8(_mm256_loadu_ps(x + i)));
  cq_f32_sigmoid__scalar(x + i, y + i, n - i);
}

void cq_f32_tanh__avx2(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, tanh8(_mm256_loadu_ps(x + i)));
  cq_f32_tanh__scalar(x + i, y + i, n - i);
}
