/* The naive reference of the quantized convolution's accumulator (tests compare every path with
 * it): the definition in qconv.h, one output at a time, skipping the padding (which contributes
 * (zx - zx) * w = 0), with wrapping int32 sums. Deliberately shares nothing with the kernels. */
#include "kernels/conv/qconv.h"

void cq_qconv_reference_acc(const cq_conv_geom *g, const uint8_t *x, int64_t batch, int64_t h,
                            int64_t w, int32_t x_zp, const int8_t *weight, const int32_t *w_zp,
                            int32_t *acc) {
  const int64_t C = g->in_channels, O = g->out_channels, G = g->groups;
  const int64_t cg = C / G, og = O / G, kh = g->kernel[0], kw = g->kernel[1];
  const int64_t ho = cq_qconv_out_size(h, kh, g->stride[0], g->padding[0], g->dilation[0]);
  const int64_t wo = cq_qconv_out_size(w, kw, g->stride[1], g->padding[1], g->dilation[1]);
  for (int64_t n = 0; n < batch; n++) {
    for (int64_t o = 0; o < O; o++) {
      const int64_t c0 = (o / og) * cg;
      for (int64_t oh = 0; oh < ho; oh++) {
        for (int64_t ow = 0; ow < wo; ow++) {
          uint32_t sum = 0;
          for (int64_t c = 0; c < cg; c++) {
            for (int64_t i = 0; i < kh; i++) {
              const int64_t ih = oh * g->stride[0] - g->padding[0] + i * g->dilation[0];
              if (ih < 0 || ih >= h) continue;
              for (int64_t j = 0; j < kw; j++) {
                const int64_t iw = ow * g->stride[1] - g->padding[1] + j * g->dilation[1];
                if (iw < 0 || iw >= w) continue;
                const int32_t xv = (int32_t)x[((n * C + c0 + c) * h + ih) * w + iw] - x_zp;
                const int32_t wv = (int32_t)weight[((o * cg + c) * kh + i) * kw + j] - w_zp[o];
                sum += (uint32_t)(xv * wv);
              }
            }
          }
          acc[((n * O + o) * ho + oh) * wo + ow] = (int32_t)sum;
        }
      }
    }
  }
}
