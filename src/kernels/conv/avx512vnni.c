/* AVX-512 VNNI convolution kernels (also the vector parts the AMX path uses): the implicit / im2col
 * GEMM kernel, the depthwise kernel, NCHW -> NHWC conversion, padded planes and im2col.
 *
 * GEMM kernel: microtiles of up to 6 rows x 4 panels (64 channels) in 24 accumulators that start
 * at the op's init; per group of four K bytes one 64-byte weight load per panel and one 4-byte
 * broadcast per row, from the row's own address (so a row may be an output position of the padded
 * NHWC image and K steps may jump between kernel rows). Groups past a step's kvalid meet zero
 * weights and are skipped. 16 rows x 64 channels are finished together (avx512-inl.h).
 *
 * Depthwise kernel (NCHW planes): 16 vector lanes hold 16 output positions of one channel, in P =
 * 4 / stride_w interleaved phases: phase p lane l is position P*l + p, whose window starts 4*l +
 * p*stride bytes after the vector's first; loading 64 bytes from there puts the window's first
 * four taps in dword l, so one vpdpbusd with the broadcast dword of four tap weights advances 16
 * positions by four taps (dilated taps fall where their byte offsets say). Phases are packed back
 * to consecutive bytes with packssdw/packuswb and one pshufb. With stride_h 1 the output rows are
 * taken on the padded row width so a vector covers several short rows. */
#include <immintrin.h>
#include <string.h>

#include "kernels/conv/avx512-inl.h"
#include "kernels/conv/qconv.h"

/* ---- GEMM kernel ----------------------------------------------------------------------------- */

#define MR 6
#define NP 4

static inline __attribute__((always_inline)) int32_t load32(const uint8_t *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}

static inline __attribute__((always_inline)) void vnni_tile(const cq_conv_gemm *g,
                                                            const uint8_t *const *rowp, size_t p,
                                                            int32_t *acc, const size_t mr,
                                                            const size_t np) {
  const cq_qgemm_packed *w = g->w;
  const size_t pb = w->panel_bytes;
  __m512i c[MR][NP];
#pragma GCC unroll 4
  for (size_t j = 0; j < np; j++) {
    const __m512i init = _mm512_loadu_si512(g->out->init + (p + j) * 16);
#pragma GCC unroll 6
    for (size_t r = 0; r < mr; r++) c[r][j] = init;
  }
  const int8_t *wp = w->w + p * pb;
  for (size_t s = 0; s < g->ksteps; s++) {
    const size_t nvg = g->kvalid[s];
    const int64_t ao = g->aoff[s];
    const int8_t *ws = wp + s * 1024;
    for (size_t gi = 0; gi < nvg; gi++) {
      __m512i b[NP];
#pragma GCC unroll 4
      for (size_t j = 0; j < np; j++) b[j] = _mm512_load_si512(ws + j * pb + gi * 64);
#pragma GCC unroll 6
      for (size_t r = 0; r < mr; r++) {
        const __m512i a = _mm512_set1_epi32(load32(rowp[r] + ao + 4 * gi));
#pragma GCC unroll 4
        for (size_t j = 0; j < np; j++) c[r][j] = _mm512_dpbusd_epi32(c[r][j], a, b[j]);
      }
    }
  }
#pragma GCC unroll 6
  for (size_t r = 0; r < mr; r++) {
#pragma GCC unroll 4
    for (size_t j = 0; j < np; j++) _mm512_store_si512(acc + r * 64 + j * 16, c[r][j]);
  }
}

typedef void (*tile_fn)(const cq_conv_gemm *, const uint8_t *const *, size_t, int32_t *);
#define TILE_FN(R, P)                                                                        \
  static void cq_u8s8_conv_##R##x##P##__avx512vnni(const cq_conv_gemm *g,                    \
                                                   const uint8_t *const *rowp, size_t p,     \
                                                   int32_t *acc) {                           \
    vnni_tile(g, rowp, p, acc, R, P);                                                        \
  }
#define TILE_ROW(R) TILE_FN(R, 1) TILE_FN(R, 2) TILE_FN(R, 3) TILE_FN(R, 4)
TILE_ROW(1)
TILE_ROW(2)
TILE_ROW(3)
TILE_ROW(4)
TILE_ROW(5)
TILE_ROW(6)
#define T(R, P) cq_u8s8_conv_##R##x##P##__avx512vnni
#define TILE_ENTRY(R) {T(R, 1), T(R, 2), T(R, 3), T(R, 4)}
static const tile_fn tiles[MR][NP] = {TILE_ENTRY(1), TILE_ENTRY(2), TILE_ENTRY(3),
                                      TILE_ENTRY(4), TILE_ENTRY(5), TILE_ENTRY(6)};

void cq_u8s8_conv_gemm__avx512vnni(const cq_conv_gemm *g, size_t m0, size_t m1) {
  const cq_conv_out *o = g->out;
  const cq_conv_rq k = cq_conv_rq_init(o);
  const size_t panels = (size_t)g->w->panels, n = (size_t)o->n;
  int32_t acc[16 * 64] __attribute__((aligned(64)));
  __m512i stage[16];
  const uint8_t *rowp[16];
  for (size_t m = m0; m < m1; m += 16) {
    const size_t rows = m1 - m < 16 ? m1 - m : 16;
    for (size_t r = 0; r < rows; r++) rowp[r] = g->a + (m + r) * g->lda;
    for (size_t p = 0; p < panels; p += NP) {
      const size_t np = panels - p < NP ? panels - p : NP;
      for (size_t r = 0; r < rows; r += MR) {
        const size_t mr = rows - r < MR ? rows - r : MR;
        tiles[mr - 1][np - 1](g, rowp + r, p, acc + r * 64);
      }
      const size_t c0 = p * 16, nc = n - c0 < 64 ? n - c0 : 64;
      cq_conv_rq_rows(o, &k, acc, 64, rows, c0, nc, 0, stage);
      cq_conv_store_stage(o, stage, rows, (int64_t)m, c0, nc);
    }
  }
}

/* ---- depthwise ------------------------------------------------------------------------------- */

/* 16 * P output positions of one channel: the window of position P * l + q (lane l of phase q)
 * starts at row0 + 4 * l + q * (4 / P); kernel row i is rstride bytes below row i - 1. Returns
 * the bytes in position order. KH / MG (taps dwords per row) are compile-time when nonzero. */
static inline __attribute__((always_inline)) __m512i
dw_vector(const uint8_t *row0, int64_t rstride, const int32_t *wd, const int32_t *ones,
          int64_t kh_rt, int64_t mg_rt, const cq_conv_phase_consts *k, const int P, const int KH,
          const int MG, const int ZW, const int KIND) {
  const int64_t kh = KH ? KH : kh_rt, mg = MG ? MG : mg_rt;
  const int sw = 4 / P;
  __m512i a[4], s[4];
#pragma GCC unroll 4
  for (int q = 0; q < P; q++) {
    a[q] = k->init;
    s[q] = _mm512_setzero_si512();
  }
#pragma GCC unroll 7
  for (int64_t i = 0; i < kh; i++) {
    const uint8_t *rowp = row0 + i * rstride;
#pragma GCC unroll 4
    for (int64_t m = 0; m < mg; m++) {
      const __m512i w4 = _mm512_set1_epi32(wd[i * mg + m]);
#pragma GCC unroll 4
      for (int q = 0; q < P; q++) {
        const __m512i x = _mm512_loadu_si512(rowp + q * sw + 4 * m);
        a[q] = _mm512_dpbusd_epi32(a[q], x, w4);
        if (ZW) s[q] = _mm512_dpbusd_epi32(s[q], x, _mm512_set1_epi32(ones[i * mg + m]));
      }
    }
  }
  return cq_conv_phase_finish(a, s, k, P, ZW, KIND);
}

/* Vectors of R consecutive output rows whose kernel rows are `rstride` apart, as are the output
 * rows (stride_h == dilation_h): each of the KH + R - 1 input rows is loaded once for all of them
 * (four rows: a third fewer loads than two, most of which straddle cache lines). */
static inline __attribute__((always_inline)) void
dw_vector_rows(const uint8_t *row0, int64_t rstride, const int32_t *wd,
               const cq_conv_phase_consts *k, __m512i *b, const int R, const int P, const int KH,
               const int MG, const int KIND) {
  const int sw = 4 / P;
  __m512i a[4][4], s[4];
#pragma GCC unroll 4
  for (int q = 0; q < P; q++) {
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) a[r][q] = k->init;
    s[q] = _mm512_setzero_si512();
  }
#pragma GCC unroll 8
  for (int i = 0; i < KH + R - 1; i++) {
    const uint8_t *rowp = row0 + i * rstride;
#pragma GCC unroll 4
    for (int m = 0; m < MG; m++) {
#pragma GCC unroll 4
      for (int q = 0; q < P; q++) {
        const __m512i x = _mm512_loadu_si512(rowp + q * sw + 4 * m);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
          const int t = i - r; /* kernel row of output row r */
          if (t >= 0 && t < KH) {
            a[r][q] = _mm512_dpbusd_epi32(a[r][q], x, _mm512_set1_epi32(wd[t * MG + m]));
          }
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) b[r] = cq_conv_phase_finish(a[r], s, k, P, 0, KIND);
}

static inline __attribute__((always_inline)) void dw_plane(const cq_conv_dw *d, int64_t c,
                                                           const uint8_t *plane, uint8_t *y,
                                                           const int P, const int KH,
                                                           const int MG, const int ZW,
                                                           const int KIND) {
  const cq_qconv_packed *p = d->p;
  const cq_conv_geom *g = &p->g;
  const int64_t kh = g->kernel[0], sh = g->stride[0], wpp = d->wpp, mg = p->dw_groups;
  const int64_t rstride = g->dilation[0] * wpp, step = 16 * P, sw = 4 / P;
  const int32_t *wd = p->dw_w + c * kh * mg;
  const cq_conv_out *o = d->out;
  cq_conv_phase_consts k;
  k.init = _mm512_set1_epi32(o->init[0]);
  k.zw = _mm512_set1_epi32(p->w_zp[c]);
  k.zp16 = _mm512_set1_epi16((short)o->y_zp);
  k.lo8 = _mm512_set1_epi8((char)o->y_min);
  k.use_lo = o->y_min > 0;
  k.scale = _mm512_set1_ps(o->scale[0]);
  k.fbias = _mm512_set1_ps(o->fbias[0]);
  k.mult = _mm512_set1_ps(o->mult[0]);
  k.hi_f = _mm512_set1_ps(o->hi_f);
  if (d->flat) {
    /* output rows on the padded row width wv (stride 1 between rows), full vector stores into
     * the staging plane, then each row's wo bytes are copied out */
    const int64_t wv = wpp / sw, len = (d->ho - 1) * wv + d->wo;
    /* two vectors at a time, for independent work (the stage has room for the second) */
    for (int64_t v0 = 0; v0 < len; v0 += 2 * step) {
      const __m512i b0 = dw_vector(plane + v0 * sw, rstride, wd, p->dw_ones, kh, mg, &k, P, KH,
                                   MG, ZW, KIND);
      const __m512i b1 = dw_vector(plane + (v0 + step) * sw, rstride, wd, p->dw_ones, kh, mg, &k,
                                   P, KH, MG, ZW, KIND);
      _mm512_storeu_si512(d->stage + v0, b0);
      _mm512_storeu_si512(d->stage + v0 + step, b1);
    }
    for (int64_t oh = 0; oh < d->ho; oh++) {
      const uint8_t *src = d->stage + oh * wv;
      uint8_t *dst = y + oh * d->wo;
      int64_t t = 0;
      for (; t + 64 <= d->wo; t += 64) _mm512_storeu_si512(dst + t, _mm512_loadu_si512(src + t));
      if (t < d->wo) {
        const __mmask64 m = cq_conv_mask64(d->wo - t);
        _mm512_mask_storeu_epi8(dst + t, m, _mm512_maskz_loadu_epi8(m, src + t));
      }
    }
    return;
  }
  int64_t oh = 0;
  if (d->wo <= step) { /* one vector per row: two rows at a time, for independent work */
    const __mmask64 m = cq_conv_mask64(d->wo);
    if (KH && MG && !ZW && sh == g->dilation[0]) {
      __m512i b[4];
      for (; oh + 4 <= d->ho; oh += 4) {
        dw_vector_rows(plane + oh * sh * wpp, rstride, wd, &k, b, 4, P, KH, MG, KIND);
        for (int r = 0; r < 4; r++) _mm512_mask_storeu_epi8(y + (oh + r) * d->wo, m, b[r]);
      }
      for (; oh + 2 <= d->ho; oh += 2) {
        dw_vector_rows(plane + oh * sh * wpp, rstride, wd, &k, b, 2, P, KH, MG, KIND);
        _mm512_mask_storeu_epi8(y + oh * d->wo, m, b[0]);
        _mm512_mask_storeu_epi8(y + (oh + 1) * d->wo, m, b[1]);
      }
    }
    for (; oh + 2 <= d->ho; oh += 2) {
      const uint8_t *base = plane + oh * sh * wpp;
      const __m512i b0 = dw_vector(base, rstride, wd, p->dw_ones, kh, mg, &k, P, KH, MG, ZW, KIND);
      const __m512i b1 = dw_vector(base + sh * wpp, rstride, wd, p->dw_ones, kh, mg, &k, P, KH,
                                   MG, ZW, KIND);
      _mm512_mask_storeu_epi8(y + oh * d->wo, m, b0);
      _mm512_mask_storeu_epi8(y + (oh + 1) * d->wo, m, b1);
    }  }
  for (; oh < d->ho; oh++) {
    const uint8_t *base = plane + oh * sh * wpp;
    for (int64_t v0 = 0; v0 < d->wo; v0 += step) {
      const __m512i b = dw_vector(base + v0 * sw, rstride, wd, p->dw_ones, kh, mg, &k, P, KH, MG,
                                  ZW, KIND);
      _mm512_mask_storeu_epi8(y + oh * d->wo + v0, cq_conv_mask64(d->wo - v0), b);
    }
  }
}

typedef void (*dw_fn)(const cq_conv_dw *, int64_t, const uint8_t *, uint8_t *);
#define DW_FN(NAME, P, KH, MG, ZW, KIND)                                                     \
  static void NAME(const cq_conv_dw *d, int64_t c, const uint8_t *plane, uint8_t *y) {      \
    dw_plane(d, c, plane, y, P, KH, MG, ZW, KIND);                                           \
  }
#define DW_KINDS(PREFIX, P, KH, MG, ZW)                                  \
  DW_FN(PREFIX##_int, P, KH, MG, ZW, CQ_PHASE_INT)                       \
  DW_FN(PREFIX##_float, P, KH, MG, ZW, CQ_PHASE_FLOAT)                   \
  DW_FN(PREFIX##_float_min, P, KH, MG, ZW, CQ_PHASE_FLOAT_MIN)           \
  DW_FN(PREFIX##_float_unit, P, KH, MG, ZW, CQ_PHASE_FLOAT_UNIT)         \
  DW_FN(PREFIX##_float_min_unit, P, KH, MG, ZW, CQ_PHASE_FLOAT_MIN_UNIT)
DW_KINDS(dw_p4_3x3, 4, 3, 1, 0)
DW_KINDS(dw_p2_3x3, 2, 3, 1, 0)
DW_KINDS(dw_p4, 4, 0, 0, 0)
DW_KINDS(dw_p2, 2, 0, 0, 0)
DW_KINDS(dw_p1, 1, 0, 0, 0)
DW_KINDS(dw_p4_zw, 4, 0, 0, 1)
DW_KINDS(dw_p2_zw, 2, 0, 0, 1)
DW_KINDS(dw_p1_zw, 1, 0, 0, 1)
#define DW_ROW(PREFIX)                                                                      \
  {PREFIX##_int, PREFIX##_float, PREFIX##_float_min, PREFIX##_float_unit,                   \
   PREFIX##_float_min_unit}
/* [phases: 4, 2, 1][shape: 3x3, any, any with weight zero point][kind] */
static const dw_fn dw_table[3][3][CQ_PHASE_KINDS] = {
    {DW_ROW(dw_p4_3x3), DW_ROW(dw_p4), DW_ROW(dw_p4_zw)},
    {DW_ROW(dw_p2_3x3), DW_ROW(dw_p2), DW_ROW(dw_p2_zw)},
    {DW_ROW(dw_p1), DW_ROW(dw_p1), DW_ROW(dw_p1_zw)},
};

void cq_u8_dwconv__avx512vnni(const cq_conv_dw *d, int64_t c, const uint8_t *plane, uint8_t *y) {
  const cq_qconv_packed *p = d->p;
  const int64_t sw = p->g.stride[1];
  const int pi = sw == 1 ? 0 : sw == 2 ? 1 : 2;
  const int si = p->w_zp[c] != 0 ? 2 : p->g.kernel[0] == 3 && p->dw_groups == 1 ? 0 : 1;
  dw_table[pi][si][cq_conv_phase_kind(d->out)](d, c, plane, y);
}

/* ---- layouts --------------------------------------------------------------------------------- */

void cq_conv_plane__avx512vnni(const cq_conv_image *im, int64_t c, int64_t wpp, int64_t extra,
                               int rows_only, uint8_t *plane) {
  const int64_t chunks = (wpp + 63) / 64;
  if (!im->nchw || chunks > 64) {
    cq_conv_plane__scalar(im, c, wpp, extra, 0, plane);
    return;
  }
  const __m512i zx = _mm512_set1_epi8((char)im->zx);
  if (!rows_only) { /* the padding rows and the slack: the same for every channel */
    for (int64_t r = 0; r < im->hp; r++) {
      const int64_t ih = r - im->ph;
      if (ih >= 0 && ih < im->h) continue;
      for (int64_t k = 0; k < chunks; k++) _mm512_storeu_si512(plane + r * wpp + 64 * k, zx);
    }
    memset(plane + im->hp * wpp, im->zx, (size_t)(256 + extra));
  }
  /* byte t of chunk k is column 64k + t - pw of the input row; the stores of the last chunk may
   * run into the next row (rewritten after) or the slack (whose bytes beyond the plane nobody
   * reads as data) -- except for the last input row, whose overrun is limited to the mask */
  const int64_t plane_in = im->h * im->w;
  if (c + 1 < im->c) { /* the next channel's plane is read next */
    const char *next = (const char *)(im->x + (c + 1) * plane_in);
    for (int64_t b = 0; b < plane_in; b += 64) _mm_prefetch(next + b, _MM_HINT_T0);
  }
  const uint8_t *src = cq_conv_at(im->x + c * plane_in, -im->pw);
  uint8_t *dst = plane + im->ph * wpp;
  if (chunks == 1) {
    const __mmask64 m = cq_conv_mask64(im->pw + im->w) & ~cq_conv_mask64(im->pw);
    for (int64_t ih = 0; ih < im->h; ih++) {
      _mm512_storeu_si512(dst + ih * wpp, _mm512_mask_loadu_epi8(zx, m, src + ih * im->w));
    }
    return;
  }
  __mmask64 masks[64];
  for (int64_t k = 0; k < chunks; k++) {
    masks[k] = cq_conv_mask64(im->pw + im->w - 64 * k) & ~cq_conv_mask64(im->pw - 64 * k);
  }
  for (int64_t ih = 0; ih < im->h; ih++) {
    for (int64_t k = 0; k < chunks; k++) {
      _mm512_storeu_si512(dst + ih * wpp + 64 * k,
                          _mm512_mask_loadu_epi8(zx, masks[k], src + ih * im->w + 64 * k));
    }
  }
}

void cq_conv_to_nhwc_rows__avx512vnni(const cq_conv_image *im, int64_t r0, int64_t r1) {
  if (!im->nchw) {
    cq_conv_to_nhwc_rows__scalar(im, r0, r1);
    return;
  }
  const int64_t C = im->c, row_bytes = im->wp * C, plane = im->h * im->w;
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
    const uint8_t *src = im->x + ih * im->w;
    if (C % 64 == 0) {
      /* 16 positions x 64 channels at a time: lane k of row i holds channel c0 + 16k + i, so
       * after the per-lane transpose row b is the 64 channels of position w0 + b in order */
      for (int64_t c0 = 0; c0 < C; c0 += 64) {
        for (int64_t w0 = 0; w0 < im->w; w0 += 16) {
          const int64_t wn = im->w - w0 < 16 ? im->w - w0 : 16;
          const __mmask16 m = (__mmask16)((1u << wn) - 1);
          const uint8_t *s0 = src + c0 * plane + w0;
          __m512i t[16];
          for (int64_t i = 0; i < 16; i++) {
            const uint8_t *si = s0 + i * plane;
            __m512i v = _mm512_castsi128_si512(_mm_maskz_loadu_epi8(m, si));
            v = _mm512_inserti32x4(v, _mm_maskz_loadu_epi8(m, si + 16 * plane), 1);
            v = _mm512_inserti32x4(v, _mm_maskz_loadu_epi8(m, si + 32 * plane), 2);
            t[i] = _mm512_inserti32x4(v, _mm_maskz_loadu_epi8(m, si + 48 * plane), 3);
          }
          cq_conv_transpose16(t);
          for (int64_t b = 0; b < wn; b++) _mm512_storeu_si512(px + (w0 + b) * C + c0, t[b]);
        }
      }
      continue;
    }
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t cn = C - c0 < 16 ? C - c0 : 16;
      const __mmask64 cmask = cq_conv_mask64(cn);
      for (int64_t w0 = 0; w0 < im->w; w0 += 64) {
        const int64_t wn = im->w - w0 < 64 ? im->w - w0 : 64;
        const __mmask64 wmask = cq_conv_mask64(wn);
        __m512i t[16];
        for (int64_t i = 0; i < 16; i++) {
          t[i] = i < cn ? _mm512_maskz_loadu_epi8(wmask, src + (c0 + i) * plane + w0)
                        : _mm512_setzero_si512();
        }
        cq_conv_transpose16(t);
        /* t[b] lane k: the cn channels of position w0 + 16k + b */
        for (int k = 0; k < 4; k++) {
          for (int b = 0; b < 16; b++) {
            const int64_t pos = 16 * k + b;
            if (pos >= wn) break;
            _mm512_mask_storeu_epi8(cq_conv_at(px, (w0 + pos) * C + c0 - 16 * k), cmask << (16 * k),
                                    t[b]);
          }
        }
      }
    }
  }
}

/* The same for c <= 4 channels (an RGB image, say), where the 16 x 64 transpose would move mostly
 * padding: rows [r0, r1) are one run of pixels in both layouts, taken 64 pixels at a time; channel
 * k's 64 bytes are gathered from the run's 64 * c bytes by two-source byte permutes (VBMI). */
static __attribute__((target("avx512vbmi"))) void to_nchw_few_channels(const uint8_t *x,
                                                                       int64_t c, int64_t h,
                                                                       int64_t w, int64_t r0,
                                                                       int64_t r1, uint8_t *dst) {
  const int64_t plane = h * w, end = r1 * w;
  __m512i idx[4];
  __mmask64 upper[4]; /* the bytes that come from the run's third and fourth 64 bytes */
  for (int64_t k = 0; k < c; k++) {
    uint8_t b[64];
    upper[k] = 0;
    for (int64_t j = 0; j < 64; j++) {
      b[j] = (uint8_t)((j * c + k) & 127);
      if (j * c + k >= 128) upper[k] |= (__mmask64)1 << j;
    }
    idx[k] = _mm512_loadu_si512(b);
  }
  for (int64_t p0 = r0 * w; p0 < end; p0 += 64) {
    const int64_t n = end - p0 < 64 ? end - p0 : 64, bytes = n * c;
    const uint8_t *src = x + p0 * c;
    __m512i v[4];
    for (int64_t i = 0; i < c; i++) {
      v[i] = _mm512_maskz_loadu_epi8(cq_conv_mask64(bytes - 64 * i), src + 64 * i);
    }
    const __mmask64 m = cq_conv_mask64(n);
    for (int64_t k = 0; k < c; k++) {
      __m512i o = _mm512_permutex2var_epi8(v[0], idx[k], c > 1 ? v[1] : v[0]);
      if (c > 2) {
        o = _mm512_mask_blend_epi8(upper[k], o,
                                   _mm512_permutex2var_epi8(v[2], idx[k], c > 3 ? v[3] : v[2]));
      }
      _mm512_mask_storeu_epi8(dst + k * plane + p0, m, o);
    }
  }
}

void cq_conv_to_nchw_rows__avx512vnni(const uint8_t *x, int64_t c, int64_t h, int64_t w,
                                      int64_t r0, int64_t r1, uint8_t *dst) {
  if (c <= 4 && (cq_cpu_features() & CQ_CPU_AVX512VBMI)) {
    to_nchw_few_channels(x, c, h, w, r0, r1, dst);
    return;
  }
  const int64_t plane = h * w;
  for (int64_t r = r0; r < r1; r++) {
    for (int64_t c0 = 0; c0 < c; c0 += 64) {
      const __mmask64 cm = cq_conv_mask64(c - c0);
      for (int64_t w0 = 0; w0 < w; w0 += 16) {
        const int64_t wn = w - w0 < 16 ? w - w0 : 16;
        /* row i: the channels c0 .. c0 + 63 of pixel w0 + i; after the transpose, row b lane k
         * holds channel c0 + 16k + b of the 16 pixels */
        __m512i t[16];
        for (int64_t i = 0; i < 16; i++) {
          t[i] = i < wn ? _mm512_maskz_loadu_epi8(cm, x + (r * w + w0 + i) * c + c0)
                        : _mm512_setzero_si512();
        }
        cq_conv_transpose16(t);
        const __mmask16 pm = (__mmask16)((1u << wn) - 1);
        uint8_t *d0 = dst + (c0 * h + r) * w + w0;
        for (int b = 0; b < 16; b++) {
          const __m128i l[4] = {_mm512_castsi512_si128(t[b]), _mm512_extracti32x4_epi32(t[b], 1),
                                _mm512_extracti32x4_epi32(t[b], 2),
                                _mm512_extracti32x4_epi32(t[b], 3)};
          for (int k = 0; k < 4; k++) {
            const int64_t ch = 16 * k + b;
            if (c0 + ch < c) _mm_mask_storeu_epi8(d0 + ch * plane, pm, l[k]);
          }
        }
      }
    }
  }
}

/* im2col: each 64-byte chunk of a row is a zx vector into which the pieces of the group's runs
 * that fall in the chunk are merged with masked loads. */
#define MAX_PIECES 512

typedef struct piece {
  int64_t src; /* offset from the window's top-left pixel (group channel 0) */
  int32_t chunk, off, len;
} piece;

static int add_run(piece *pc, int n, int64_t src, int64_t kdst, int64_t len) {
  while (len > 0) {
    if (n == MAX_PIECES) return -1;
    const int64_t off = kdst % 64, take = 64 - off < len ? 64 - off : len;
    pc[n++] = (piece){src, (int32_t)(kdst / 64), (int32_t)off, (int32_t)take};
    src += take;
    kdst += take;
    len -= take;
  }
  return n;
}

static int build_pieces(const cq_qconv_packed *p, int64_t wp, piece *pc) {
  const cq_conv_geom *g = &p->g;
  const int64_t C = g->in_channels, kw = g->kernel[1], cg = p->cg;
  int n = 0;
  if (p->rowseg) {
    for (int s = 0; s < p->nseg && n >= 0; s++) {
      const cq_conv_seg *sg = &p->seg[s];
      n = add_run(pc, n, (sg->di * wp + sg->dj) * C + sg->coff, sg->kdst, sg->len);
    }
    return n;
  }
  /* single run: taps in K order, merged where consecutive taps are adjacent in memory */
  const int64_t kh = g->kernel[0];
  int64_t run_src = 0, run_dst = 0, run_len = 0;
  for (int64_t t = 0; t < p->taps && n >= 0; t++) {
    const int64_t i = p->zrows ? t % kh : t / kw, j = p->zrows ? t / kh : t % kw;
    const int64_t src = (i * g->dilation[0] * wp + j * g->dilation[1]) * C;
    const int64_t dst = cq_conv_single_k(p, i, j);
    if (run_len > 0 && src == run_src + run_len && dst == run_dst + run_len) {
      run_len += cg;
      continue;
    }
    if (run_len > 0) n = add_run(pc, n, run_src, run_dst, run_len);
    run_src = src;
    run_dst = dst;
    run_len = cg;
  }
  if (n >= 0) n = add_run(pc, n, run_src, run_dst, run_len);
  return n;
}

void cq_conv_im2col__avx512vnni(const cq_conv_im2col *ic, int64_t g, int64_t q0, int64_t rows,
                                uint8_t *col) {
  const cq_qconv_packed *p = ic->p;
  piece pc[MAX_PIECES];
  const int n = build_pieces(p, ic->wp, pc);
  if (n < 0) {
    cq_conv_im2col__scalar(ic, g, q0, rows, col);
    return;
  }
  /* per piece: the load address relative to the window and the lanes it fills; per chunk: the
   * first piece */
  int64_t src[MAX_PIECES];
  __mmask64 mask[MAX_PIECES];
  for (int i = 0; i < n; i++) {
    src[i] = pc[i].src - pc[i].off;
    mask[i] = cq_conv_mask64(pc[i].len) << pc[i].off;
  }
  const cq_conv_geom *ge = &p->g;
  const int64_t C = ge->in_channels, K = p->k_packed, chunks = p->ksteps;
  const int64_t sh = ge->stride[0], sw = ge->stride[1];
  const __m512i zx = _mm512_set1_epi8((char)ic->zx);
  int64_t oh = q0 / ic->wo, ow = q0 % ic->wo;
  const uint8_t *img = ic->img + g * p->cg;
  if (chunks == 1) { /* small windows: one vector per row */
    for (int64_t r = 0; r < rows; r++) {
      const uint8_t *base = img + (oh * sh * ic->wp + ow * sw) * C;
      __m512i v = zx;
      for (int i = 0; i < n; i++) v = _mm512_mask_loadu_epi8(v, mask[i], cq_conv_at(base, src[i]));
      _mm512_storeu_si512(col + r * K, v);
      if (++ow == ic->wo) {
        ow = 0;
        oh++;
      }
    }
    return;
  }
  for (int64_t r = 0; r < rows; r++) {
    const uint8_t *base = img + (oh * sh * ic->wp + ow * sw) * C;
    uint8_t *row = col + r * K;
    int i = 0;
    for (int64_t t = 0; t < chunks; t++) {
      __m512i v = zx;
      for (; i < n && pc[i].chunk == t; i++) {
        v = _mm512_mask_loadu_epi8(v, mask[i], cq_conv_at(base, src[i]));
      }
      _mm512_storeu_si512(row + 64 * t, v);
    }
    if (++ow == ic->wo) {
      ow = 0;
      oh++;
    }
  }
}

/* zpx == 8 (kh * C <= 8): the 8 entry rows of 64 pixels are interleaved into 8-byte pixels with
 * three rounds of unpacks (per 128-bit lane: pixels 2m, 2m + 1 of the lane in vector m), then a
 * 4 x 4 lane transpose makes each vector 8 consecutive pixels. */
static void zrows8(const cq_conv_image *im, const cq_conv_geom *g, int64_t oh0, int64_t oh1,
                   uint8_t *z) {
  const int64_t C = im->c, kh = g->kernel[0], e_count = kh * C, plane = im->h * im->w;
  const __m512i zx = _mm512_set1_epi8((char)im->zx);
  for (int64_t oh = oh0; oh < oh1; oh++) {
    uint8_t *zo = z + oh * im->wp * 8;
    for (int64_t w0 = 0; w0 < im->wp; w0 += 64) {
      /* byte t of the chunk is input column w0 + t - pw */
      const __mmask64 cm = cq_conv_mask64(im->pw + im->w - w0) & ~cq_conv_mask64(im->pw - w0);
      __m512i r[8];
      for (int64_t e = 0; e < 8; e++) {
        r[e] = zx;
        if (e >= e_count) continue;
        const int64_t i = e / C, c = e % C;
        const int64_t ih = oh * g->stride[0] + i * g->dilation[0] - im->ph;
        if (ih < 0 || ih >= im->h) continue;
        const uint8_t *row = im->x + c * plane + ih * im->w;
        r[e] = _mm512_mask_loadu_epi8(zx, cm, cq_conv_at(row, w0 - im->pw));
      }
      __m512i a[8], b[8], q[8];
      for (int h = 0; h < 4; h++) { /* byte pairs (2h, 2h + 1): pixels 0-7 / 8-15 of each lane */
        a[2 * h] = _mm512_unpacklo_epi8(r[2 * h], r[2 * h + 1]);
        a[2 * h + 1] = _mm512_unpackhi_epi8(r[2 * h], r[2 * h + 1]);
      }
      for (int h = 0; h < 2; h++) { /* word pairs: dwords of entries 4h .. 4h + 3 */
        b[4 * h + 0] = _mm512_unpacklo_epi16(a[4 * h], a[4 * h + 2]);     /* pixels 0-3 */
        b[4 * h + 1] = _mm512_unpackhi_epi16(a[4 * h], a[4 * h + 2]);     /* 4-7 */
        b[4 * h + 2] = _mm512_unpacklo_epi16(a[4 * h + 1], a[4 * h + 3]); /* 8-11 */
        b[4 * h + 3] = _mm512_unpackhi_epi16(a[4 * h + 1], a[4 * h + 3]); /* 12-15 */
      }
      for (int t = 0; t < 4; t++) { /* qwords: pixels 4t, 4t + 1 and 4t + 2, 4t + 3 */
        q[2 * t] = _mm512_unpacklo_epi32(b[t], b[4 + t]);
        q[2 * t + 1] = _mm512_unpackhi_epi32(b[t], b[4 + t]);
      }
      /* q[m] lane k: pixels 16k + 2m, 16k + 2m + 1; gather lane k of q[4u .. 4u + 3] */
      for (int u = 0; u < 2; u++) {
        const __m512i t0 = _mm512_shuffle_i64x2(q[4 * u], q[4 * u + 1], 0x44);     /* 0a 1a 0b 1b */
        const __m512i t1 = _mm512_shuffle_i64x2(q[4 * u + 2], q[4 * u + 3], 0x44); /* 2a 3a 2b 3b */
        const __m512i t2 = _mm512_shuffle_i64x2(q[4 * u], q[4 * u + 1], 0xee);
        const __m512i t3 = _mm512_shuffle_i64x2(q[4 * u + 2], q[4 * u + 3], 0xee);
        const __m512i o[4] = {
            _mm512_shuffle_i64x2(t0, t1, 0x88), _mm512_shuffle_i64x2(t0, t1, 0xdd),
            _mm512_shuffle_i64x2(t2, t3, 0x88), _mm512_shuffle_i64x2(t2, t3, 0xdd)};
        for (int k = 0; k < 4; k++) { /* pixels 16k + 8u .. 16k + 8u + 7 */
          const int64_t px0 = w0 + 16 * k + 8 * u;
          const int64_t n = im->wp - px0;
          if (n <= 0) continue;
          _mm512_mask_storeu_epi8(zo + px0 * 8, cq_conv_mask64(n * 8), o[k]);
        }
      }
    }
  }
}

/* 17 to 32 entries per pixel: two 16-row transposes, then one 32-byte store per pixel (two
 * 16-entry passes would store each pixel twice). */
static void zrows32(const cq_conv_image *im, const cq_conv_geom *g, int64_t oh0, int64_t oh1,
                    uint8_t *z) {
  const int64_t C = im->c, kh = g->kernel[0], e_count = kh * C, plane = im->h * im->w;
  const __m512i zx = _mm512_set1_epi8((char)im->zx);
  const __mmask32 em = (__mmask32)cq_conv_mask64(e_count);
  for (int64_t oh = oh0; oh < oh1; oh++) {
    uint8_t *zo = z + oh * im->wp * e_count;
    for (int64_t w0 = 0; w0 < im->wp; w0 += 64) {
      /* byte t of the chunk is input column w0 + t - pw */
      const __mmask64 cm = cq_conv_mask64(im->pw + im->w - w0) & ~cq_conv_mask64(im->pw - w0);
      __m512i t[2][16];
      for (int64_t e = 0; e < 32; e++) {
        __m512i *r = &t[e / 16][e % 16];
        *r = zx;
        if (e >= e_count) continue;
        const int64_t i = e / C, c = e % C;
        const int64_t ih = oh * g->stride[0] + i * g->dilation[0] - im->ph;
        if (ih < 0 || ih >= im->h) continue;
        *r = _mm512_mask_loadu_epi8(zx, cm, cq_conv_at(im->x + c * plane + ih * im->w,
                                                       w0 - im->pw));
      }
      cq_conv_transpose16(t[0]);
      cq_conv_transpose16(t[1]);
      /* t[h][b] lane k: entries 16h .. 16h + 15 of pixel w0 + 16k + b */
      const int64_t wn = im->wp - w0 < 64 ? im->wp - w0 : 64;
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) {
        for (int b = 0; b < 16; b++) {
          const int64_t w = 16 * k + b;
          if (w >= wn) break;
          const __m128i lo = k == 0   ? _mm512_castsi512_si128(t[0][b])
                             : k == 1 ? _mm512_extracti32x4_epi32(t[0][b], 1)
                             : k == 2 ? _mm512_extracti32x4_epi32(t[0][b], 2)
                                      : _mm512_extracti32x4_epi32(t[0][b], 3);
          const __m128i hi = k == 0   ? _mm512_castsi512_si128(t[1][b])
                             : k == 1 ? _mm512_extracti32x4_epi32(t[1][b], 1)
                             : k == 2 ? _mm512_extracti32x4_epi32(t[1][b], 2)
                                      : _mm512_extracti32x4_epi32(t[1][b], 3);
          _mm256_mask_storeu_epi8(zo + (w0 + w) * e_count, em, _mm256_set_m128i(hi, lo));
        }
      }
    }
  }
}

void cq_conv_zrows__avx512vnni(const cq_conv_image *im, const cq_conv_geom *g, int64_t zpx,
                               int64_t oh0, int64_t oh1, uint8_t *z) {
  const int64_t C = im->c, kh = g->kernel[0], e_count = kh * C;
  if (!im->nchw || e_count > 64) {
    cq_conv_zrows__scalar(im, g, zpx, oh0, oh1, z);
    return;
  }
  if (zpx == 8) {
    zrows8(im, g, oh0, oh1, z);
    return;
  }
  const __m512i zx = _mm512_set1_epi8((char)im->zx);
  const int64_t plane = im->h * im->w;
  if (e_count > 16 && e_count <= 32) {
    zrows32(im, g, oh0, oh1, z);
    return;
  }
  for (int64_t oh = oh0; oh < oh1; oh++) {
    uint8_t *zo = z + oh * im->wp * e_count;
    /* entries e = i * C + c of each pixel, 16 at a time: row e of the block is the padded input
     * row of (i, c); after the per-lane transpose, row b lane k is pixel w0 + 16k + b */
    for (int64_t e0 = 0; e0 < e_count; e0 += 16) {
      const int64_t en = e_count - e0 < 16 ? e_count - e0 : 16;
      const __mmask64 emask = cq_conv_mask64(en);
      for (int64_t w0 = 0; w0 < im->wp; w0 += 64) {
        /* byte t of the chunk is input column w0 + t - pw */
        const __mmask64 cm = cq_conv_mask64(im->pw + im->w - w0) & ~cq_conv_mask64(im->pw - w0);
        __m512i t[16];
        for (int64_t r = 0; r < 16; r++) {
          t[r] = zx;
          if (r >= en) continue;
          const int64_t e = e0 + r, i = e / C, c = e % C;
          const int64_t ih = oh * g->stride[0] + i * g->dilation[0] - im->ph;
          if (ih < 0 || ih >= im->h) continue;
          t[r] = _mm512_mask_loadu_epi8(zx, cm,
                                        cq_conv_at(im->x + c * plane + ih * im->w, w0 - im->pw));
        }
        cq_conv_transpose16(t);
        const int64_t wn = im->wp - w0 < 64 ? im->wp - w0 : 64;
        for (int k = 0; k < 4; k++) {
          for (int b = 0; b < 16; b++) {
            const int64_t w = 16 * k + b;
            if (w >= wn) break;
            _mm512_mask_storeu_epi8(cq_conv_at(zo, (w0 + w) * e_count + e0 - 16 * k),
                                    emask << (16 * k), t[b]);
          }
        }
      }
    }
  }
}
