/* AArch64 NEON requantization kernel: 16 channels per step, the tail through the same vector code
 * on a zero-padded copy of the accumulators. */
#include "kernels/requant/neon-inl.h"

void cq_requant__neon(size_t rows, size_t channels, const int32_t *acc, size_t acc_stride,
                      const cq_requant_params *p, size_t c0, void *y, size_t y_stride) {
  const cq_rq128 k = cq_rq128_init(p);
  const size_t esize = p->kind == CQ_OUT_F32 ? sizeof(float) : 1;
  for (size_t r = 0; r < rows; r++) {
    const int32_t *a = acc + r * acc_stride;
    char *out = (char *)y + r * y_stride * esize;
    for (size_t j = 0; j < channels; j += 16) {
      const size_t n = channels - j < 16 ? channels - j : 16;
      int32x4_t v[4];
      if (n == 16) {
        for (int q = 0; q < 4; q++) v[q] = vld1q_s32(a + j + 4 * (size_t)q);
      } else {
        int32_t tmp[16] = {0};
        memcpy(tmp, a + j, n * sizeof(int32_t));
        for (int q = 0; q < 4; q++) v[q] = vld1q_s32(tmp + 4 * q);
      }
      const size_t c = c0 + j;
      if (c % 16 == 0) { /* the arrays are padded to 16 channels: c..c+15 is readable */
        cq_rq128_store16(p, &k, v, c, out + j * esize, n);
      } else {
        /* c0 not a multiple of 16: gather the channel constants into a padded copy */
        cq_requant_params q = *p;
        int32_t ib[16] = {0};
        float sc[16], fb[16] = {0}, mu[16], ob[16] = {0};
        for (size_t i = 0; i < 16; i++) {
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
        cq_rq128_store16(&q, &k, v, 0, out + j * esize, n);
      }
    }
  }
}
