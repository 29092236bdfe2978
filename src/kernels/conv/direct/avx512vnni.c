/* AVX-512 VNNI direct convolution for few input channels: the "direct" path of qconv.h (needs
 * AVX-512 VBMI2 besides, for the byte compress).
 *
 * A vector of 16 * P output positions is P = 4 / stride_w phases of 16 lanes, as in the depthwise
 * kernel: lane l of phase q is position P * l + q, whose window row starts 4l + q * stride_w bytes
 * after the vector's first window in the input plane, so one unaligned 64-byte load puts the
 * first four taps of every lane's window row in its dword. For each input channel c, kernel row i
 * and group m of four taps, the P phase loads are shared by all output channels; each output
 * channel adds one vpdpbusd per phase with the broadcast dword of its four tap weights. Four
 * output channels are accumulated at once, then each is requantized and packed to 16 * P bytes in
 * position order (cq_conv_phase_finish).
 *
 * Positions: with stride_h 1 flat (a vector spans several short rows on the virtual row width
 * vw = row stride / stride_w; the columns past wo are dropped), else each vector within one output
 * row. Store: the positions of a vector that are real outputs are consecutive bytes of the
 * channel's NCHW plane, so one vpcompressb squeezes out the dropped columns (flat) and one masked
 * store writes them. (One masked store per output row instead took a sixth more time for 26-wide
 * rows, 7.3 vs 6.2 us for 2->64 on 28x28: the number of stores, not their width, counts here.) */
#include <immintrin.h>

#include "kernels/conv/avx512-inl.h"
#include "kernels/conv/qconv.h"

#define DIRECT_TARGET __attribute__((target("avx512vbmi2")))

/* Where a vector's outputs go: the bytes of `valid`, compressed, to plane + first (count bytes:
 * the low bits of `store`; valid == store when they are a prefix already). */
typedef struct direct_dst {
  __mmask64 valid, store;
  int64_t first;
} direct_dst;

/* Flat positions [v0, v0 + n) (n <= 64). first < 0: none is an output. */
static direct_dst plan_flat(int64_t vw, int64_t wo, int64_t ho, int64_t v0, int64_t n) {
  direct_dst r = {0, 0, -1};
  int64_t row = v0 / vw, col = v0 - row * vw;
  for (int64_t b = 0; b < n && row < ho;) {
    if (col < wo) {
      const int64_t stop = b + (wo - col) < n ? b + (wo - col) : n;
      if (r.first < 0) r.first = row * wo + col;
      r.valid |= cq_conv_mask64(stop) & ~cq_conv_mask64(b);
    }
    b += vw - col; /* the next row's first byte */
    row++;
    col = 0;
  }
  r.store = cq_conv_mask64(__builtin_popcountll(r.valid));
  return r;
}

/* What the blocks of one call share, read once (the byte stores could alias the op's record). */
typedef struct direct_ctx {
  const int32_t *w, *init;
  const float *scale, *fbias, *mult;
  uint8_t *y;
  int64_t plane;
  const int64_t *off;
  int64_t taps;
  direct_dst dst;
  cq_conv_phase_consts k; /* zp16, lo8, hi_f */
} direct_ctx;

/* Requantizes the P phase accumulators of output channel ch and stores its outputs. */
static inline __attribute__((always_inline)) DIRECT_TARGET void
direct_store(const direct_ctx *x, __m512i *a, int64_t ch, const int P, const int KIND,
             const int USE_LO) {
  cq_conv_phase_consts k = x->k;
  k.use_lo = USE_LO;
  k.scale = _mm512_set1_ps(x->scale[ch]);
  k.fbias = _mm512_set1_ps(x->fbias[ch]);
  k.mult = _mm512_set1_ps(x->mult[ch]);
  __m512i b = cq_conv_phase_finish(a, NULL, &k, P, 0, KIND);
  if (x->dst.valid != x->dst.store) b = _mm512_maskz_compress_epi8(x->dst.valid, b);
  _mm512_mask_storeu_epi8(x->y + ch * x->plane + x->dst.first, x->dst.store, b);
}

/* v = the int32 at p in every lane, loaded by each use: the compiler would broadcast once and copy
 * the register to each accumulator, and those copies compete for the vector ports. */
#define BROADCAST(v, p) __asm__("vpbroadcastd %1, %0" : "=v"(v) : "m"(p))

/* Output channels ch .. ch + OB - 1 (OB 1 or 4) at the vector whose first window is at src. */
static inline __attribute__((always_inline)) DIRECT_TARGET void
direct_block(const direct_ctx *x, const uint8_t *src, int64_t ch, const int P, const int OB,
             const int KIND, const int USE_LO) {
  const int sw = 4 / P;
  const int64_t taps = x->taps;
  const int32_t *wd = x->w + ch * taps;
  __m512i a0[4], a1[4], a2[4], a3[4];
#pragma GCC unroll 4
  for (int q = 0; q < P; q++) {
    BROADCAST(a0[q], x->init[ch]);
    if (OB > 1) {
      BROADCAST(a1[q], x->init[ch + 1]);
      BROADCAST(a2[q], x->init[ch + 2]);
      BROADCAST(a3[q], x->init[ch + 3]);
    }
  }
  for (int64_t t = 0; t < taps; t++) {
    const uint8_t *sp = src + x->off[t];
    const __m512i w0 = _mm512_set1_epi32(wd[t]);
    const __m512i w1 = OB > 1 ? _mm512_set1_epi32(wd[taps + t]) : w0;
    const __m512i w2 = OB > 1 ? _mm512_set1_epi32(wd[2 * taps + t]) : w0;
    const __m512i w3 = OB > 1 ? _mm512_set1_epi32(wd[3 * taps + t]) : w0;
#pragma GCC unroll 4
    for (int q = 0; q < P; q++) {
      const __m512i v = _mm512_loadu_si512(sp + q * sw);
      CQ_DPBUSD(a0[q], v, w0);
      if (OB > 1) {
        CQ_DPBUSD(a1[q], v, w1);
        CQ_DPBUSD(a2[q], v, w2);
        CQ_DPBUSD(a3[q], v, w3);
      }
    }
  }
  direct_store(x, a0, ch, P, KIND, USE_LO);
  if (OB > 1) {
    direct_store(x, a1, ch + 1, P, KIND, USE_LO);
    direct_store(x, a2, ch + 2, P, KIND, USE_LO);
    direct_store(x, a3, ch + 3, P, KIND, USE_LO);
  }
}

/* Taps (input channel, kernel row, group of 4) of a window: at most 4 * 64 * 2 (qconv.h). */
#define DIRECT_MAX_TAPS 512

static inline __attribute__((always_inline)) DIRECT_TARGET void
direct_run(const cq_conv_direct *d, int64_t u0, int64_t u1, const int P, const int KIND,
           const int USE_LO) {
  const cq_qconv_packed *p = d->p;
  const cq_conv_out *o = d->out;
  const int64_t S = 16 * P, sw = 4 / P, sh = p->g.stride[0];
  const int64_t O = p->g.out_channels, ho = d->ho, wo = d->wo;
  const int64_t C = p->g.in_channels, kh = p->g.kernel[0], mg = p->direct_groups;
  const int64_t per_row = (wo + S - 1) / S, mv = (ho - 1) * d->vw + wo;
  int64_t off[DIRECT_MAX_TAPS];
  int64_t taps = 0;
  for (int64_t c = 0; c < C; c++) {
    for (int64_t i = 0; i < kh; i++) {
      for (int64_t m = 0; m < mg; m++) {
        off[taps++] = c * d->plane_stride + i * p->g.dilation[0] * d->row_stride + 4 * m;
      }
    }
  }
  direct_ctx x = {.w = p->direct_w, .init = o->init, .scale = o->scale, .fbias = o->fbias,
                  .mult = o->mult, .y = o->y, .plane = o->plane, .off = off, .taps = taps};
  x.k.zp16 = _mm512_set1_epi16((short)o->y_zp);
  x.k.lo8 = _mm512_set1_epi8((char)o->y_min);
  x.k.hi_f = _mm512_set1_ps(o->hi_f);
  for (int64_t u = u0; u < u1; u++) {
    const uint8_t *src;
    if (d->flat) {
      const int64_t v = u * S;
      x.dst = plan_flat(d->vw, wo, ho, v, mv - v < S ? mv - v : S);
      if (x.dst.first < 0) continue;
      src = d->planes + v * sw;
    } else {
      const int64_t r = u / per_row, x0 = (u - r * per_row) * S;
      x.dst.first = r * wo + x0;
      x.dst.valid = x.dst.store = cq_conv_mask64(wo - x0 < S ? wo - x0 : S);
      src = d->planes + r * sh * d->row_stride + x0 * sw;
    }
    int64_t ch = 0;
    for (; ch + 4 <= O; ch += 4) direct_block(&x, src, ch, P, 4, KIND, USE_LO);
    for (; ch < O; ch++) direct_block(&x, src, ch, P, 1, KIND, USE_LO);
  }
}

typedef void (*direct_fn)(const cq_conv_direct *d, int64_t u0, int64_t u1);
#define DIRECT_FN(NAME, P, KIND, USE_LO)                                             \
  static DIRECT_TARGET void NAME(const cq_conv_direct *d, int64_t u0, int64_t u1) { \
    direct_run(d, u0, u1, P, KIND, USE_LO);                                         \
  }
#define DIRECT_KIND(NAME, KIND)                                                    \
  DIRECT_FN(NAME##_p4, 4, KIND, 0) DIRECT_FN(NAME##_p4_lo, 4, KIND, 1)             \
  DIRECT_FN(NAME##_p2, 2, KIND, 0) DIRECT_FN(NAME##_p2_lo, 2, KIND, 1)
DIRECT_KIND(direct_int, CQ_PHASE_INT)
DIRECT_KIND(direct_float, CQ_PHASE_FLOAT)
DIRECT_KIND(direct_float_min, CQ_PHASE_FLOAT_MIN)
DIRECT_KIND(direct_float_unit, CQ_PHASE_FLOAT_UNIT)
DIRECT_KIND(direct_float_min_unit, CQ_PHASE_FLOAT_MIN_UNIT)
#define DIRECT_ROW(NAME) {{NAME##_p4, NAME##_p4_lo}, {NAME##_p2, NAME##_p2_lo}}
/* [kind][stride_w 1, 2][the fused ReLU's lower bound is above 0] */
static const direct_fn direct_table[CQ_PHASE_KINDS][2][2] = {
    DIRECT_ROW(direct_int),        DIRECT_ROW(direct_float),
    DIRECT_ROW(direct_float_min),  DIRECT_ROW(direct_float_unit),
    DIRECT_ROW(direct_float_min_unit),
};

int64_t cq_conv_direct_units(const cq_conv_direct *d) {
  const int64_t S = 64 / d->p->g.stride[1];
  if (d->flat) return ((d->ho - 1) * d->vw + d->wo + S - 1) / S;
  return d->ho * ((d->wo + S - 1) / S);
}

void cq_u8_conv_direct__avx512vnni(const cq_conv_direct *d, int64_t u0, int64_t u1) {
  const int si = d->p->g.stride[1] == 2;
  direct_table[cq_conv_phase_kind(d->out)][si][d->out->y_min > 0](d, u0, u1);
}
