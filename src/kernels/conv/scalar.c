/* Portable C parts of the quantized convolution: layout conversions, im2col, the scalar depthwise
 * kernel and the store of NHWC staging rows (used by every ISA without a faster form). */
#include <string.h>

#include "kernels/conv/qconv.h"

void cq_conv_to_nhwc_rows__scalar(const cq_conv_image *im, int64_t r0, int64_t r1) {
  const int64_t C = im->c, row_bytes = im->wp * C;
  for (int64_t r = r0; r < r1; r++) {
    uint8_t *dst = im->dst + r * row_bytes;
    const int64_t ih = r - im->ph;
    if (ih < 0 || ih >= im->h) {
      memset(dst, im->zx, (size_t)row_bytes);
      continue;
    }
    memset(dst, im->zx, (size_t)(im->pw * C));
    memset(dst + (im->pw + im->w) * C, im->zx, (size_t)(im->pw * C));
    uint8_t *px = dst + im->pw * C;
    if (!im->nchw) {
      memcpy(px, im->x + ih * im->w * C, (size_t)(im->w * C));
      continue;
    }
    const int64_t plane = im->h * im->w;
    const uint8_t *src = im->x + ih * im->w;
    for (int64_t iw = 0; iw < im->w; iw++) {
      for (int64_t c = 0; c < C; c++) px[iw * C + c] = src[c * plane + iw];
    }
  }
}

void cq_conv_to_nchw_rows__scalar(const uint8_t *x, int64_t c, int64_t h, int64_t w, int64_t r0,
                                  int64_t r1, uint8_t *dst) {
  for (int64_t r = r0; r < r1; r++) {
    for (int64_t iw = 0; iw < w; iw++) {
      const uint8_t *px = x + (r * w + iw) * c;
      for (int64_t ch = 0; ch < c; ch++) dst[(ch * h + r) * w + iw] = px[ch];
    }
  }
}

void cq_conv_plane__scalar(const cq_conv_image *im, int64_t c, int64_t wpp, int64_t extra,
                           int rows_only, uint8_t *plane) {
  if (!rows_only) memset(plane, im->zx, (size_t)(im->hp * wpp + 256 + extra));
  for (int64_t ih = 0; ih < im->h; ih++) {
    uint8_t *dst = plane + (ih + im->ph) * wpp + im->pw;
    if (im->nchw) {
      memcpy(dst, im->x + (c * im->h + ih) * im->w, (size_t)im->w);
    } else {
      const uint8_t *src = im->x + ih * im->w * im->c + c;
      for (int64_t iw = 0; iw < im->w; iw++) dst[iw] = src[iw * im->c];
    }
  }
}

void cq_conv_im2col__scalar(const cq_conv_im2col *ic, int64_t g, int64_t q0, int64_t rows,
                            uint8_t *col) {
  const cq_qconv_packed *p = ic->p;
  const cq_conv_geom *ge = &p->g;
  const int64_t C = ge->in_channels, cg = p->cg, kw = ge->kernel[1], K = p->k_packed;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t q = q0 + r, oh = q / ic->wo, ow = q % ic->wo;
    const uint8_t *base = ic->img + (oh * ge->stride[0] * ic->wp + ow * ge->stride[1]) * C + g * cg;
    uint8_t *row = col + r * K;
    memset(row, ic->zx, (size_t)K);
    if (p->rowseg) {
      for (int s = 0; s < p->nseg; s++) {
        const cq_conv_seg *sg = &p->seg[s];
        memcpy(row + sg->kdst, base + (sg->di * ic->wp + sg->dj) * C + sg->coff, (size_t)sg->len);
      }
    } else {
      for (int64_t t = 0; t < p->taps; t++) {
        const int64_t i = t / kw, j = t % kw;
        memcpy(row + cq_conv_single_k(p, i, j),
               base + (i * ge->dilation[0] * ic->wp + j * ge->dilation[1]) * C, (size_t)cg);
      }
    }
  }
}

void cq_conv_store_rows__scalar(const cq_conv_out *out, const uint8_t *rows_u8, size_t ld,
                                size_t rows, int64_t q0) {
  for (size_t r = 0; r < rows; r++) {
    const int64_t q = q0 + (int64_t)r, ow = q % out->vw;
    if (ow >= out->wo) continue;
    const int64_t pos = q / out->vw * out->wo + ow;
    const uint8_t *src = rows_u8 + r * ld;
    if (out->nchw) {
      for (int64_t c = 0; c < out->n; c++) out->y[c * out->plane + pos] = src[c];
    } else {
      memcpy(out->y + pos * out->ldy, src, (size_t)out->n);
    }
  }
}

void cq_u8_dwconv__scalar(const cq_conv_dw *d, int64_t c, const uint8_t *plane, uint8_t *y,
                          int32_t x_zp, const cq_requant_params *rq) {
  const cq_qconv_packed *p = d->p;
  const cq_conv_geom *g = &p->g;
  const int64_t kh = g->kernel[0], kw = g->kernel[1];
  const int64_t sh = g->stride[0], sw = g->stride[1], dh = g->dilation[0], dwl = g->dilation[1];
  const int8_t *w = p->w + c * p->taps;
  const int32_t zw = p->w_zp[c];
  const float lo_f = (float)(rq->y_min - rq->y_zp), hi_f = (float)(rq->y_max - rq->y_zp);
  for (int64_t oh = 0; oh < d->ho; oh++) {
    for (int64_t ow = 0; ow < d->wo; ow++) {
      const uint8_t *win = plane + oh * sh * d->wpp + ow * sw;
      uint32_t sum = 0;
      for (int64_t i = 0; i < kh; i++) {
        for (int64_t j = 0; j < kw; j++) {
          const int32_t xv = (int32_t)win[i * dh * d->wpp + j * dwl] - x_zp;
          sum += (uint32_t)(xv * ((int32_t)w[i * kw + j] - zw));
        }
      }
      uint8_t v;
      if (rq->kind == CQ_OUT_U8_INT) {
        v = cq_requant_u8_int((int32_t)(sum + (uint32_t)rq->ibias[c]), rq->mult[c], rq->y_zp,
                              rq->y_min, rq->y_max);
      } else {
        v = cq_requant_u8_float((int32_t)sum, rq->scale[c], rq->fbias[c], rq->mult[c], rq->y_zp,
                                lo_f, hi_f);
      }
      y[oh * d->wo + ow] = v;
    }
  }
}

/* Copies n pixels of C bytes from src (stride C) to dst (stride `stride`); constant small C lets
 * the compiler turn each copy into one move. */
static inline __attribute__((always_inline)) void copy_pixels(uint8_t *dst, int64_t stride,
                                                              const uint8_t *src, int64_t n,
                                                              const int64_t C) {
  for (int64_t w = 0; w < n; w++) memcpy(dst + w * stride, src + w * C, (size_t)C);
}

void cq_conv_zrows__scalar(const cq_conv_image *im, const cq_conv_geom *g, int64_t zpx,
                           int64_t oh0, int64_t oh1, uint8_t *z) {
  const int64_t C = im->c, kh = g->kernel[0], px = zpx;
  for (int64_t oh = oh0; oh < oh1; oh++) {
    uint8_t *zo = z + oh * im->wp * px;
    if (px > kh * C) { /* the unused bytes after each pixel */
      for (int64_t w = 0; w < im->wp; w++) {
        memset(zo + w * px + kh * C, im->zx, (size_t)(px - kh * C));
      }
    }
    for (int64_t i = 0; i < kh; i++) {
      const int64_t ih = oh * g->stride[0] + i * g->dilation[0] - im->ph;
      uint8_t *zi = zo + i * C;
      for (int64_t w = 0; w < im->wp; w++) {
        const int64_t iw = w - im->pw;
        if (ih < 0 || ih >= im->h || iw < 0 || iw >= im->w) memset(zi + w * px, im->zx, (size_t)C);
      }
      if (ih < 0 || ih >= im->h) continue;
      uint8_t *dst = zi + im->pw * px;
      if (!im->nchw) {
        const uint8_t *src = im->x + ih * im->w * C;
        switch (C) { /* the usual small channel counts get fixed-size copies */
          case 1: copy_pixels(dst, px, src, im->w, 1); break;
          case 2: copy_pixels(dst, px, src, im->w, 2); break;
          case 3: copy_pixels(dst, px, src, im->w, 3); break;
          case 4: copy_pixels(dst, px, src, im->w, 4); break;
          default: copy_pixels(dst, px, src, im->w, C); break;
        }
        continue;
      }
      for (int64_t c = 0; c < C; c++) {
        const uint8_t *src = im->x + (c * im->h + ih) * im->w;
        for (int64_t iw = 0; iw < im->w; iw++) dst[iw * px + c] = src[iw];
      }
    }
  }
}
