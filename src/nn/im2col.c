#include "nn/im2col.h"

#include <string.h>

int64_t cq_conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
  if (span < 0) return 0;
  return span / stride + 1;
}

int64_t cq_conv_col_size(const cq_conv_geometry *g) {
  return g->channels * g->kernel_h * g->kernel_w * g->out_h * g->out_w;
}

int cq_conv_col_is_identity(const cq_conv_geometry *g) {
  return g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1 &&
         g->pad_h == 0 && g->pad_w == 0;
}

/* The range [lo, hi) of output positions o whose input position o * stride - pad + offset lies
 * inside [0, in). */
static void valid_range(int64_t in, int64_t out, int64_t stride, int64_t pad, int64_t offset,
                        int64_t *lo, int64_t *hi) {
  const int64_t shift = offset - pad; /* input position of output 0 */
  int64_t a = 0;
  if (shift < 0) a = (-shift + stride - 1) / stride;
  int64_t b = 0;
  if (in - 1 - shift >= 0) b = (in - 1 - shift) / stride + 1;
  if (a > out) a = out;
  if (b > out) b = out;
  if (b < a) b = a;
  *lo = a;
  *hi = b;
}

void cq_im2col_f32(const cq_conv_geometry *g, const float *image, float *col) {
  const int64_t plane = g->height * g->width;
  const int64_t npos = g->out_h * g->out_w;
  for (int64_t c = 0; c < g->channels; c++) {
    const float *src = image + c * plane;
    for (int64_t i = 0; i < g->kernel_h; i++) {
      int64_t oh_lo, oh_hi;
      valid_range(g->height, g->out_h, g->stride_h, g->pad_h, i * g->dilation_h, &oh_lo, &oh_hi);
      for (int64_t j = 0; j < g->kernel_w; j++) {
        int64_t ow_lo, ow_hi;
        valid_range(g->width, g->out_w, g->stride_w, g->pad_w, j * g->dilation_w, &ow_lo, &ow_hi);
        float *dst = col + ((c * g->kernel_h + i) * g->kernel_w + j) * npos;
        for (int64_t oh = 0; oh < g->out_h; oh++) {
          float *row = dst + oh * g->out_w;
          if (oh < oh_lo || oh >= oh_hi) {
            memset(row, 0, sizeof(float) * (size_t)g->out_w);
            continue;
          }
          const float *in_row = src + (oh * g->stride_h - g->pad_h + i * g->dilation_h) * g->width;
          const int64_t iw0 = j * g->dilation_w - g->pad_w;
          for (int64_t ow = 0; ow < ow_lo; ow++) row[ow] = 0.0f;
          if (g->stride_w == 1) {
            if (ow_hi > ow_lo) {
              memcpy(row + ow_lo, in_row + ow_lo + iw0, sizeof(float) * (size_t)(ow_hi - ow_lo));
            }
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ow++) row[ow] = in_row[ow * g->stride_w + iw0];
          }
          for (int64_t ow = ow_hi; ow < g->out_w; ow++) row[ow] = 0.0f;
        }
      }
    }
  }
}

void cq_col2im_f32(const cq_conv_geometry *g, const float *col, float *image) {
  const int64_t plane = g->height * g->width;
  const int64_t npos = g->out_h * g->out_w;
  for (int64_t c = 0; c < g->channels; c++) {
    float *dst = image + c * plane;
    for (int64_t i = 0; i < g->kernel_h; i++) {
      int64_t oh_lo, oh_hi;
      valid_range(g->height, g->out_h, g->stride_h, g->pad_h, i * g->dilation_h, &oh_lo, &oh_hi);
      for (int64_t j = 0; j < g->kernel_w; j++) {
        int64_t ow_lo, ow_hi;
        valid_range(g->width, g->out_w, g->stride_w, g->pad_w, j * g->dilation_w, &ow_lo, &ow_hi);
        const float *src = col + ((c * g->kernel_h + i) * g->kernel_w + j) * npos;
        const int64_t iw0 = j * g->dilation_w - g->pad_w;
        for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
          const float *row = src + oh * g->out_w;
          float *out_row = dst + (oh * g->stride_h - g->pad_h + i * g->dilation_h) * g->width;
          for (int64_t ow = ow_lo; ow < ow_hi; ow++) out_row[ow * g->stride_w + iw0] += row[ow];
        }
      }
    }
  }
}
