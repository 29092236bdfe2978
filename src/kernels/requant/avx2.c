/* AVX2 requantization kernel: 8 channels per step, the tail through the same vector code. */
#include "kernels/requant/avx2-inl.h"

void cq_requant__avx2(size_t rows, size_t channels, const int32_t *acc, size_t acc_stride,
                      const cq_requant_params *p, size_t c0, void *y, size_t y_stride) {
  const cq_rq256 k = cq_rq256_init(p);
  const size_t esize = p->kind == CQ_OUT_F32 ? sizeof(float) : 1;
  for (size_t r = 0; r < rows; r++) {
    const int32_t *a = acc + r * acc_stride;
    char *out = (char *)y + r * y_stride * esize;
    for (size_t j = 0; j < channels; j += 8) {
      const size_t n = channels - j < 8 ? channels - j : 8;
      __m256i v;
      if (n == 8) {
        v = _mm256_loadu_si256((const __m256i *)(a + j));
      } else {
        int32_t tmp[8] = {0};
        memcpy(tmp, a + j, n * sizeof(int32_t));
        v = _mm256_loadu_si256((const __m256i *)tmp);
      }
      /* the parameter arrays are padded to 16 channels, so c0 + j + 7 is readable only if
       * (c0 + j) % 16 <= 8; read a padded copy otherwise */
      const size_t c = c0 + j;
      if (c + 8 <= (size_t)p->padded) {
        cq_rq256_store(p, &k, v, c, out + j * esize, n);
      } else {
        cq_requant_params q = *p;
        int32_t ib[8] = {0};
        float sc[8], fb[8] = {0}, mu[8], ob[8] = {0};
        for (size_t i = 0; i < 8; i++) {
          const int in = c + i < (size_t)p->padded;
          ib[i] = in ? p->ibias[c + i] : 0;
          sc[i] = in ? p->scale[c + i] : 1.0f;
          fb[i] = in ? p->fbias[c + i] : 0.0f;
          mu[i] = in ? p->mult[c + i] : 1.0f;
          ob[i] = in ? p->obias[c + i] : 0.0f;
        }
        q.ibias = ib;
        q.scale = sc;
        q.fbias = fb;
        q.mult = mu;
        q.obias = ob;
        cq_rq256_store(&q, &k, v, 0, out + j * esize, n);
      }
    }
  }
}
