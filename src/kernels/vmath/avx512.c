/* AVX-512 forms of the vmath algorithm (vmath.h): 16 lanes, the same operations as scalar.c; the
 * tail goes through masked loads and stores. */
#include <immintrin.h>

#include "kernels/vmath/vmath.h"

static inline __m512 exp_core(__m512 x) {
  const __m512 round = _mm512_set1_ps(CQ_VM_ROUND);
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(CQ_VM_LOG2E));
  const __m512 n = _mm512_sub_ps(_mm512_add_ps(t, round), round);
  const __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(CQ_VM_LN2_HI))),
                                 _mm512_mul_ps(n, _mm512_set1_ps(CQ_VM_LN2_LO)));
  __m512 p = _mm512_set1_ps(CQ_VM_E7);
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(CQ_VM_E6));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(CQ_VM_E5));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(CQ_VM_E4));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(CQ_VM_E3));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(CQ_VM_E2));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

static inline __m512 clamp_exp_arg(__m512 x) {
  return _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(CQ_VM_EXP_MIN)),
                       _mm512_set1_ps(CQ_VM_EXP_MAX));
}

/* NaN lanes of x pass through (min/max would have turned them into numbers) */
static inline __m512 keep_nan(__m512 x, __m512 y) {
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

static inline __m512 sigmoid16(__m512 x) {
  const __m512 e = exp_core(clamp_exp_arg(_mm512_sub_ps(_mm512_setzero_ps(), x)));
  return keep_nan(x, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
}

static inline __m512 tanh16(__m512 x) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 a = _mm512_andnot_ps(sign, x);
  const __m512 a2 = _mm512_mul_ps(a, a);
  __m512 p = _mm512_set1_ps(CQ_VM_T9);
  p = _mm512_add_ps(_mm512_mul_ps(p, a2), _mm512_set1_ps(CQ_VM_T8));
  p = _mm512_add_ps(_mm512_mul_ps(p, a2), _mm512_set1_ps(CQ_VM_T7));
  p = _mm512_add_ps(_mm512_mul_ps(p, a2), _mm512_set1_ps(CQ_VM_T6));
  p = _mm512_add_ps(_mm512_mul_ps(p, a2), _mm512_set1_ps(CQ_VM_T5));
  p = _mm512_add_ps(_mm512_mul_ps(p, a2), _mm512_set1_ps(CQ_VM_T4));
  p = _mm512_add_ps(_mm512_mul_ps(p, a2), _mm512_set1_ps(CQ_VM_T3));
  p = _mm512_add_ps(_mm512_mul_ps(p, a2), _mm512_set1_ps(CQ_VM_T2));
  p = _mm512_add_ps(_mm512_mul_ps(p, a2), _mm512_set1_ps(CQ_VM_T1));
  const __m512 small = _mm512_add_ps(a, _mm512_mul_ps(a, _mm512_mul_ps(a2, p)));
  const __m512 e = exp_core(_mm512_mul_ps(_mm512_set1_ps(2.0f),
                                          _mm512_min_ps(a, _mm512_set1_ps(CQ_VM_TANH_BIG))));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 big = _mm512_div_ps(_mm512_sub_ps(e, one), _mm512_add_ps(e, one));
  const __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(CQ_VM_TANH_SMALL), _CMP_LT_OQ);
  const __m512 y = _mm512_mask_mov_ps(big, is_small, small);
  return keep_nan(x, _mm512_or_ps(y, _mm512_and_ps(sign, x)));
}

void cq_f32_sigmoid__avx512(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, sigmoid16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, sigmoid16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void cq_f32_tanh__avx512(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, tanh16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, tanh16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}
