/* im2col / col2im for float 2-D convolution (Conv1d runs as a 2-D convolution of height 1).
 *
 * One image is `channels` contiguous planes of height x width (the NCHW layout of one batch item).
 * The column matrix is row-major [channels * kernel_h * kernel_w][out_h * out_w]: row
 * (c * kernel_h + i) * kernel_w + j holds, for every output position (oh, ow), the input value at
 * (oh * stride_h - pad_h + i * dilation_h, ow * stride_w - pad_w + j * dilation_w) of plane c, or 0
 * where that position falls in the zero padding. Convolution is then weight[O][C*kh*kw] x col.
 *
 * cq_col2im_f32 is the adjoint: it adds every column entry back into the image position it was read
 * from (positions in the padding are dropped), which turns the gradient of col into the gradient of
 * the image. Neither function allocates; the caller sizes col as cq_conv_col_size(g) floats. */
#ifndef CQ_NN_IM2COL_H
#define CQ_NN_IM2COL_H

#include <stdint.h>

typedef struct cq_conv_geometry {
  int64_t channels, height, width;  /* one image (one group's channels) */
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dilation_h, dilation_w;
  int64_t out_h, out_w;             /* as computed by cq_conv_out_size */
} cq_conv_geometry;

/* PyTorch's convolution output size: (in + 2 pad - dilation (kernel - 1) - 1) / stride + 1, or a
 * value < 1 when the dilated kernel does not fit in the padded input. */
int64_t cq_conv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation);

/* Elements of the column matrix: channels * kernel_h * kernel_w * out_h * out_w. */
int64_t cq_conv_col_size(const cq_conv_geometry *g);

/* True when the column matrix equals the image itself (1x1 kernel, stride 1, no padding), so the
 * copy can be skipped. */
int cq_conv_col_is_identity(const cq_conv_geometry *g);

void cq_im2col_f32(const cq_conv_geometry *g, const float *image, float *col);
/* Accumulates: image += col2im(col). */
void cq_col2im_f32(const cq_conv_geometry *g, const float *col, float *image);

#endif
