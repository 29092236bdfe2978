/* AVX-512 VNNI direct convolution for few input channels: the "direct" path of qconv.h (needs
 * AVX-512 VBMI2 besides, for the byte compress).
 *
 * A vector of 64 output positions (flat positions v0 .. v0 + 63 on the padded row width vw) is 4
 * phases of 16 lanes, as in the depthwise kernel: lane l of phase q is position v0 + 4l + q, whose
 * window row starts 4l + q bytes after the vector's first window in the input plane, so one
 * unaligned 64-byte load puts the first four taps of every lane's window row in its dword. For
 * each input channel c, kernel row i and group m of four taps, the four phase loads are shared by
 * all output channels; each output channel adds one vpdpbusd per phase with the broadcast dword of
 * its four tap weights. Four output channels are accumulated at once (16 accumulators), then each
 * is requantized and packed to 64 bytes in position order (cq_conv_phase_finish).
 *
 * Store: the positions of a vector that are real outputs (columns < wo) are consecutive bytes of
 * the channel's NCHW plane, so one vpcompressb squeezes out the dropped columns and one masked
 * store writes them. (One masked store per output row instead costs a third more time for 26-wide
 * rows: the number of stores, not their width, is what counts here.) */
#include <immintrin.h>

#include "kernels/conv/avx512-inl.h"
#include "kernels/conv/qconv.h"

#define DIRECT_TARGET __attribute__((target("avx512vbmi2")))

/* Where a vector's outputs go: the bytes of `valid`, compressed, to plane + first (count bytes:
 * the low bits of `store`). */
typedef struct direct_dst {
  __mmask64 valid, store;
  int64_t first;
} direct_dst;

static direct_dst plan_dst(int64_t vw, int64_t wo, int64_t ho, int64_t v0, int64_t v1) {
  direct_dst r = {0, 0, -1};
  const int64_t end = v1 - v0 < 64 ? v1 - v0 : 64;
  int64_t row = v0 / vw, col = v0 - row * vw;
  for (int64_t b = 0; b < end && row < ho;) {
    if (col < wo) {
      const int64_t stop = b + (wo - col) < end ? b + (wo - col) : end;
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
  const uint8_t *planes;
  const int32_t *w, *init;
  const float *scale, *fbias, *mult;
  uint8_t *y;
  int64_t plane;
  const int64_t *off;
  int64_t taps;
  direct_dst dst;
  cq_conv_phase_consts k; /* zp16, lo8, hi_f */
} direct_ctx;

/* Requantizes the four phase accumulators of output channel ch and stores its outputs. */
static inline __attribute__((always_inline)) DIRECT_TARGET void
direct_store(const direct_ctx *x, __m512i *a, int64_t ch, const int KIND, const int USE_LO) {
  cq_conv_phase_consts k = x->k;
  k.use_lo = USE_LO;
  k.scale = _mm512_set1_ps(x->scale[ch]);
  k.fbias = _mm512_set1_ps(x->fbias[ch]);
  k.mult = _mm512_set1_ps(x->mult[ch]);
  const __m512i b = cq_conv_phase_finish(a, NULL, &k, 4, 0, KIND);
  _mm512_mask_storeu_epi8(x->y + ch * x->plane + x->dst.first, x->dst.store,
                          _mm512_maskz_compress_epi8(x->dst.valid, b));
}

/* acc += the dot products of x's bytes with w's, as vpdpbusd. An asm statement with an in-out
 * operand: with the intrinsic, GCC 12 copies each accumulator of this loop twice per iteration. */
#define DPBUSD(acc, x, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

/* v = the int32 at p in every lane, loaded by each use: the compiler would broadcast once and copy
 * the register to each accumulator, and those copies compete for the vector ports. */
#define BROADCAST(v, p) __asm__("vpbroadcastd %1, %0" : "=v"(v) : "m"(p))

/* Output channels ch .. ch + OB - 1 (OB 1 or 4) at the 64 positions from v0. */
static inline __attribute__((always_inline)) DIRECT_TARGET void
direct_block(const direct_ctx *x, int64_t v0, int64_t ch, const int OB, const int KIND,
             const int USE_LO) {
  const int64_t taps = x->taps;
  const int32_t *wd = x->w + ch * taps;
  const uint8_t *src = x->planes + v0;
  __m512i a0[4], a1[4], a2[4], a3[4];
#pragma GCC unroll 4
  for (int q = 0; q < 4; q++) {
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
    for (int q = 0; q < 4; q++) {
      const __m512i v = _mm512_loadu_si512(sp + q);
      DPBUSD(a0[q], v, w0);
      if (OB > 1) {
        DPBUSD(a1[q], v, w1);
        DPBUSD(a2[q], v, w2);
        DPBUSD(a3[q], v, w3);
      }
    }
  }
  direct_store(x, a0, ch, KIND, USE_LO);
  if (OB > 1) {
    direct_store(x, a1, ch + 1, KIND, USE_LO);
    direct_store(x, a2, ch + 2, KIND, USE_LO);
    direct_store(x, a3, ch + 3, KIND, USE_LO);
  }
}

/* Taps (input channel, kernel row, group of 4) of a window: at most 4 * 64 * 2 (qconv.h). */
#define DIRECT_MAX_TAPS 512

static inline __attribute__((always_inline)) DIRECT_TARGET void
direct_run(const cq_conv_direct *d, int64_t v0, int64_t v1, const int KIND, const int USE_LO) {
  const cq_qconv_packed *p = d->p;
  const cq_conv_out *o = d->out;
  const int64_t O = p->g.out_channels, ho = o->plane / d->wo;
  const int64_t C = p->g.in_channels, kh = p->g.kernel[0], mg = p->direct_groups;
  const int64_t rstride = p->g.dilation[0] * d->vw;
  int64_t off[DIRECT_MAX_TAPS];
  int64_t taps = 0;
  for (int64_t c = 0; c < C; c++) {
    for (int64_t i = 0; i < kh; i++) {
      for (int64_t m = 0; m < mg; m++) off[taps++] = c * d->plane_stride + i * rstride + 4 * m;
    }
  }
  direct_ctx x = {.planes = d->planes, .w = p->direct_w, .init = o->init, .scale = o->scale,
                  .fbias = o->fbias, .mult = o->mult, .y = o->y, .plane = o->plane, .off = off,
                  .taps = taps};
  x.k.zp16 = _mm512_set1_epi16((short)o->y_zp);
  x.k.lo8 = _mm512_set1_epi8((char)o->y_min);
  x.k.hi_f = _mm512_set1_ps(o->hi_f);
  for (int64_t v = v0; v < v1; v += 64) {
    x.dst = plan_dst(d->vw, d->wo, ho, v, v1);
    if (x.dst.first < 0) continue;
    int64_t ch = 0;
    for (; ch + 4 <= O; ch += 4) direct_block(&x, v, ch, 4, KIND, USE_LO);
    for (; ch < O; ch++) direct_block(&x, v, ch, 1, KIND, USE_LO);
  }
}

typedef void (*direct_fn)(const cq_conv_direct *d, int64_t v0, int64_t v1);
#define DIRECT_FN(NAME, KIND, USE_LO)                                                \
  static DIRECT_TARGET void NAME(const cq_conv_direct *d, int64_t v0, int64_t v1) { \
    direct_run(d, v0, v1, KIND, USE_LO);                                            \
  }
#define DIRECT_KIND(NAME, KIND) DIRECT_FN(NAME, KIND, 0) DIRECT_FN(NAME##_lo, KIND, 1)
DIRECT_KIND(direct_int, CQ_PHASE_INT)
DIRECT_KIND(direct_float, CQ_PHASE_FLOAT)
DIRECT_KIND(direct_float_min, CQ_PHASE_FLOAT_MIN)
DIRECT_KIND(direct_float_unit, CQ_PHASE_FLOAT_UNIT)
DIRECT_KIND(direct_float_min_unit, CQ_PHASE_FLOAT_MIN_UNIT)
/* [kind][the fused ReLU's lower bound is above 0] */
static const direct_fn direct_table[CQ_PHASE_KINDS][2] = {
    {direct_int, direct_int_lo},
    {direct_float, direct_float_lo},
    {direct_float_min, direct_float_min_lo},
    {direct_float_unit, direct_float_unit_lo},
    {direct_float_min_unit, direct_float_min_unit_lo},
};

void cq_u8_conv_direct__avx512vnni(const cq_conv_direct *d, int64_t v0, int64_t v1) {
  direct_table[cq_conv_phase_kind(d->out)][d->out->y_min > 0](d, v0, v1);
}
