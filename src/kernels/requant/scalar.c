/* Portable requantization kernel: the scalar forms of requant.h applied to a matrix. */
#include "kernels/requant/requant.h"

void cq_requant__scalar(size_t rows, size_t channels, const int32_t *acc, size_t acc_stride,
                        const cq_requant_params *p, size_t c0, void *y, size_t y_stride) {
  const float lo_f = (float)(p->y_min - p->y_zp), hi_f = (float)(p->y_max - p->y_zp);
  for (size_t r = 0; r < rows; r++) {
    const int32_t *a = acc + r * acc_stride;
    for (size_t j = 0; j < channels; j++) {
      const size_t c = c0 + j;
      switch (p->kind) {
        case CQ_OUT_U8_INT:
          ((uint8_t *)y)[r * y_stride + j] = cq_requant_u8_int(
              (int32_t)((uint32_t)a[j] + (uint32_t)p->ibias[c]), p->mult[c], p->y_zp, p->y_min,
              p->y_max);
          break;
        case CQ_OUT_U8_FLOAT:
          ((uint8_t *)y)[r * y_stride + j] = cq_requant_u8_float(
              a[j], p->scale[c], p->fbias[c], p->mult[c], p->y_zp, lo_f, hi_f);
          break;
        default:
          ((float *)y)[r * y_stride + j] =
              cq_requant_f32(a[j], p->scale[c], p->fbias[c], p->mult[c], p->obias[c], p->relu);
          break;
      }
    }
  }
}
