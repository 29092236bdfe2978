/* Quantized 2-D convolution u8 x s8 -> u8 (quantized::conv2d / conv2d_relu; Conv1d is a 2-D
 * convolution of height 1), with the output stages of kernels/requant/requant.h.
 *
 *   y[n, o, oh, ow] = out_stage_o( sum over the window of group(o) of (x - zx) * (w[o] - zw_o) )
 *
 * Window: kernel [kh, kw], stride, zero padding (padding positions hold zx, i.e. contribute 0, as
 * PyTorch's engines pad), dilation, groups (input channels C/groups and output channels O/groups
 * per group). x is uint8 [N, C, H, W] (NCHW) or [N, H, W, C] (NHWC), y uint8 [N, O, Ho, Wo] or
 * [N, Ho, Wo, O]; weights int8 [O, C/groups, kh, kw] (PyTorch's layout) with per-tensor or
 * per-channel scale and zero point. The accumulator wraps modulo 2^32 like PyTorch's int32 sums,
 * so every path gives the same bytes: bit-identical across ISAs, paths, layouts and thread counts,
 * and equal to cq_qconv_reference_acc (reference.c, a naive loop) followed by the scalar output
 * stage of the op's engine rule.
 *
 * Lifecycle (as kernels/gemm/qgemm.h; only pack and create allocate):
 *   cq_qconv_pack       once per weight (conv2d_prepack): validates, reorders and packs.
 *   cq_qconv_create     binds packed weights to activation/output qparams, an engine rule and an
 *                       ISA (CQ_ISA override), chooses the path, precomputes channel constants.
 *   cq_qconv_run        any number of times, any batch and spatial size, from any thread (the op is
 *                       read-only), with a workspace of cq_qconv_workspace_size bytes.
 *
 * Paths (cq_qconv_path_name):
 *   "depthwise"  groups == C == O: a direct kernel over a zero-point-padded copy of each input
 *                plane (NCHW; an NHWC input or output goes through NCHW planes in the workspace).
 *                AVX-512 VNNI: output positions in the vector lanes, in P = 4 / stride_w
 *                interleaved phases of 16 lanes, so each dword of input bytes is one vpdpbusd
 *                window of up to 4 taps; four (or two) output rows per step share their input
 *                rows; strides 1, 2 and 4 (others, and scalar/AVX2: the scalar kernel). NEON
 *                (AArch64): 16 output positions of a row in the lanes, any stride. VNNI/AMX,
 *                kernels of up to 8 x 8, stride_w 1 or 2, no dilation or weight zero point, on a
 *                channels-last input (>= 32 channels for 3 x (<= 4) kernels, >= 64 for others)
 *                or outputs of <= 256 positions: the channels in the lanes instead
 *                (cq_u8_dwconv_nhwc: an NHWC input read in place, an NCHW one as the padded NHWC
 *                image; an NCHW output is staged NHWC).
 *   "direct"     few input channels (groups 1, C <= 4, kh <= 64, kw <= 8, stride_w 1 (or 2 with
 *                kw <= 4), dilation_w 1, no weight zero point), VNNI or AMX on a CPU with AVX-512
 *                VBMI2 (Ice Lake and later; without it these take "implicit"): the depthwise
 *                kernel's layout for every output channel. Output positions are taken on the
 *                padded width when stride_h is 1 (flat: a vector spans several short rows, the
 *                columns past Wo are dropped), else row by row, in 4 / stride_w phases of 16
 *                lanes; the shifted input windows are loaded once per vector from
 *                zero-point-padded NCHW planes and used by all output channels (four at a time),
 *                each adding one vpdpbusd per input channel, kernel row and 4 taps. The output is
 *                NCHW planes (no transposes); for an NHWC output the op runs "implicit" instead.
 *   "implicit"   no weight zero point, VNNI or AMX, stride 1 (the small-C form below: any stride):
 *                implicit GEMM on a zero-point-padded
 *                NHWC copy of the image. Output positions are taken on the padded width (the few
 *                columns past Wo are computed and dropped), so the activations of kernel row i are
 *                the image shifted by i rows: every tile row is one contiguous run of kw*C bytes,
 *                loaded in place (AMX tile loads with the pixel stride, VNNI 4-byte broadcasts).
 *                Small C (groups 1, any stride): a kernel row of kw*C bytes would waste most of a
 *                64-byte K step, so the whole window is one K run, read in place from a
 *                kernel-row-interleaved copy of the image (each pixel holds the kh input rows its
 *                output row needs, padded to 8 bytes when that is <= 8, so the window of an output
 *                position is kw * 8 contiguous bytes): C = 1..4 share one K step. With a column
 *                stride sw the image's rows are padded to whole strides, and the virtual position
 *                q of output row oh, column ow (q = oh * Wz / sw + ow) starts at pixel sw * q.
 *   "im2col"     everything else: im2col rows in the packed K order, then the same GEMM kernels
 *                (VNNI/AMX), or the GEMM block kernels of kernels/gemm/qgemm.h (scalar, AVX2,
 *                NEON, NEON dot product, and any ISA when the weights have nonzero zero points).
 *
 * Output stage (avx512-inl.h): 16 positions x 64 channels at a time, requantized with the engine's
 * float or integer form and packed to bytes in the 16-bit domain; NHWC rows are stored directly,
 * NCHW output is transposed 16 x 16 bytes per lane and stored to the channel planes (runs of rows
 * that are consecutive output positions). On this Sapphire Rapids the AMX tile unit and the vector
 * units do not overlap (their times add; measured), so the kernels do not try to interleave them.
 *
 * Packed weights: per group, panels of 16 output channels exactly as qgemm.h describes, over a K
 * dimension made of segments (runs of activation bytes that are contiguous in an NHWC image:
 * kernel row i of a group-1 convolution with dilation 1 is kw*C bytes; otherwise one tap of C/groups
 * bytes; or a single run of the whole window for small inputs, in (j, i, c) order with 8-byte
 * columns for the small-C implicit path, else (i, j, c)), each segment starting at a multiple of 64
 * in K and padded with zero weights. Depthwise weights are kept as tap dwords (see dw_w). */
#ifndef CQ_KERNELS_CONV_QCONV_H
#define CQ_KERNELS_CONV_QCONV_H

#include <stddef.h>
#include <stdint.h>

#include "core/cpu.h"
#include "core/threadpool.h"
#include "cquant/status.h"
#include "kernels/gemm/qgemm.h"
#include "kernels/requant/requant.h"

/* The largest kernel height and width the channels-in-lanes depthwise kernel takes. */
#define CQ_DWQ_MAX_KERNEL 8

typedef struct cq_conv_geom {
  int64_t in_channels, out_channels, groups;
  /* [0] = height, [1] = width */
  int64_t kernel[2], stride[2], padding[2], dilation[2];
} cq_conv_geom;

typedef enum cq_conv_layout {
  CQ_CONV_NCHW = 0, /* [N, C, H, W] */
  CQ_CONV_NHWC      /* [N, H, W, C] (channels-last) */
} cq_conv_layout;

typedef struct cq_qconv_packed cq_qconv_packed;
typedef struct cq_qconv_op cq_qconv_op;

/* Output size of one spatial dimension, or 0 when the dilated kernel is larger than the padded
 * input. */
int64_t cq_qconv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding,
                          int64_t dilation);

/* Validates the geometry: channels and groups >= 1, channels divisible by groups, kernel, stride
 * and dilation >= 1, padding >= 0, every size below 2^24. CQ_EINVAL naming the value. */
cq_status cq_qconv_check_geom(const cq_conv_geom *g);

/* Packs w [O, C/groups, kh, kw] (int8, row-major). w_scale: O floats if per_channel else 1; w_zp:
 * the same count (int8 range) or NULL for zero; bias: O floats or NULL. Everything is copied.
 * Errors: CQ_EINVAL (geometry, null pointers, zero points outside [-128, 127]), CQ_EVALUE (scales
 * not finite and > 0, non-finite bias), CQ_ENOMEM. On failure *out is NULL. */
cq_status cq_qconv_pack(const cq_conv_geom *g, const int8_t *w, const float *w_scale,
                        const int32_t *w_zp, int per_channel, const float *bias,
                        cq_qconv_packed **out);
void cq_qconv_packed_destroy(cq_qconv_packed *p);
const cq_conv_geom *cq_qconv_packed_geom(const cq_qconv_packed *p);

/* The ISA a convolution with these weights should run on when `isa` is the best the CPU has: AMX
 * gives way to AVX-512 VNNI when most of the 64-padded K is padding. cq_qconv_create applies it;
 * cq_qconv_create_isa runs exactly the ISA it is given. */
cq_isa cq_qconv_preferred_isa(const cq_qconv_packed *p, cq_isa isa);

/* Binds packed weights (borrowed: they must outlive the op) to quantization parameters (the
 * qgemm.h record: input and output scale and zero point, fused ReLU, engine rule). The ISA is
 * cq_isa_active()'s. Errors: those of cq_isa_active, CQ_EINVAL (zero points outside [0, 255]),
 * CQ_EVALUE (scales the rule refuses, see cq_requant_params_set_static), CQ_ENOMEM. */
cq_status cq_qconv_create(const cq_qconv_packed *p, const cq_qgemm_quant *q, cq_qconv_op **out);
/* Same with an explicit ISA; CQ_EUNSUPPORTED if this CPU lacks it. */
cq_status cq_qconv_create_isa(const cq_qconv_packed *p, const cq_qgemm_quant *q, cq_isa isa,
                              cq_qconv_op **out);
void cq_qconv_destroy(cq_qconv_op *op);
cq_isa cq_qconv_isa(const cq_qconv_op *op);
/* "depthwise", "direct", "implicit" or "im2col" (see the top of this file). */
const char *cq_qconv_path_name(const cq_qconv_op *op);
/* The output layout the op's path writes without a conversion: NCHW for direct and for depthwise
 * on planes, NHWC otherwise (depthwise with the channels in the lanes, >= 64 channels). */
cq_conv_layout cq_qconv_native_output(const cq_qconv_op *op);

/* Whether convolutions with these weights read a channels-last (NHWC) input without converting
 * it, on the ISA cq_qconv_create would choose: every non-depthwise one; depthwise ones whose
 * channels-in-lanes kernel applies (>= 64 channels, dw_q). A layer planner asks this. */
int cq_qconv_reads_nhwc(const cq_qconv_packed *p);

/* Bytes of workspace cq_qconv_run needs for images of h x w in these layouts with a pool of
 * `threads` threads (the result of cq_threadpool_threads), or 0 when the output would be empty. */
size_t cq_qconv_workspace_size(const cq_qconv_op *op, int64_t h, int64_t w,
                               cq_conv_layout x_layout, cq_conv_layout y_layout, int threads);

/* Runs the convolution on `batch` images of h x w: x and y in the given layouts (contiguous), the
 * workspace of at least cq_qconv_workspace_size(op, h, w, x_layout, y_layout,
 * cq_threadpool_threads(tp)) bytes (any alignment; workspace_bytes says how many there are). x and
 * y must not overlap. tp may be NULL. Never allocates. Errors: CQ_EINVAL (null pointers, batch < 0, sizes < 1, a workspace too small),
 * CQ_ESHAPE (the dilated kernel does not fit the padded input). */
cq_status cq_qconv_run(const cq_qconv_op *op, const uint8_t *x, cq_conv_layout x_layout,
                       int64_t batch, int64_t h, int64_t w, uint8_t *y, cq_conv_layout y_layout,
                       void *workspace, size_t workspace_bytes, cq_threadpool *tp);

/* ---- the naive reference (tests) ------------------------------------------------------------ */

/* acc [N, O, Ho, Wo] (int32, wrapping) of sum over the window of (x - zx)(w[o] - zw[o]), from x in
 * NCHW and the unpacked weight [O, C/groups, kh, kw]; w_zp has O entries. */
void cq_qconv_reference_acc(const cq_conv_geom *g, const uint8_t *x, int64_t batch, int64_t h,
                            int64_t w, int32_t x_zp, const int8_t *weight, const int32_t *w_zp,
                            int32_t *acc);

/* ---- internal: packed weights and the kernel interface (per-ISA files) ----------------------- */

/* One run of K: `len` activation bytes that are contiguous in the NHWC image, starting at the pixel
 * (di, dj) of the window's top-left corner (padded-image coordinates) and channel `coff` of the
 * group's slice, placed at K position `kdst` (a multiple of 64). */
typedef struct cq_conv_seg {
  int32_t di, dj, coff, len, kdst;
} cq_conv_seg;

struct cq_qconv_packed {
  cq_conv_geom g;
  int64_t cg, og;      /* channels per group in / out */
  int64_t taps;        /* kh * kw */
  int depthwise;       /* groups == C == O */
  int per_channel;
  int has_w_zp;        /* some weight zero point is nonzero */
  int rowseg;          /* segments are whole kernel rows / taps (the implicit path can read them) */
  int zrows;           /* single (j, i, c) run readable from a kernel-row-interleaved image (the
                        * small-C implicit path: groups 1, stride_w and dilation_w 1, no weight
                        * zero point) */
  int64_t zpx;         /* zrows: bytes per pixel of that image (kh * C, or 8 when that is <= 8) */
  int nseg;
  cq_conv_seg *seg;
  int64_t k_packed;    /* K of the packed panels (sum of 64-padded segments) */
  int64_t ksteps;      /* k_packed / 64 */
  int32_t *step_seg;   /* ksteps: the segment of each 64-byte step */
  uint8_t *kvalid;     /* ksteps: groups of four bytes that hold weights (1..16) */
  cq_qgemm_packed **gw; /* groups entries (not for depthwise) */
  int8_t *w;           /* [O, C/groups * kh * kw] as given */
  float *w_scale;      /* O entries if per_channel else 1 */
  int32_t *w_zp;       /* O entries */
  float *bias;         /* O entries or NULL */
  int32_t *w_sum;      /* O entries: sum of the weights of each output channel (wrapping) */
  /* depthwise, VNNI form: tap dwords of each kernel row: dw_w[(o * kh + i) * dw_groups + m] holds
   * the weights of the taps at byte offsets 4m .. 4m + 3 of the row window (taps j * dilation), and
   * dw_ones the same pattern with 1 for each tap (for the weight zero point's sum of x) */
  int64_t dw_groups;
  int32_t *dw_w;
  int32_t *dw_ones;    /* kh * dw_groups (the same for every channel) */
  /* depthwise, channels-in-lanes form (cq_u8_dwconv_nhwc; kernels up to 8 x 8, dilation 1, no
   * weight zero point): per block b of 64 channels, column kx, dword group d (kernel rows
   * 4d .. 4d + 3) and vector j, 16 dwords whose dword 4k + i holds those rows' weights of column
   * kx (zeros past kh) of channel 64b + 16k + 4j + i: dw_q[(((b * kw + kx) * dw_nd + d) * 4 + j)
   * * 16 + 4k + i] */
  int dw_nhwc;          /* kernels of up to CQ_DWQ_MAX_KERNEL rows and columns */
  int64_t dw_nd;       /* dword groups per column: ceil(kh / 4) */
  int32_t *dw_q;
  /* direct path (see the top): eligible geometry and weights, and tap dwords as for depthwise:
   * direct_w[((o * C + c) * kh + i) * direct_groups + m] holds the weights of input channel c,
   * kernel row i, taps 4m .. 4m + 3 */
  int direct;
  int64_t direct_groups;
  int32_t *direct_w;
};

/* Whether the channels-in-lanes depthwise kernel (dw_q) runs on pairs of positions: exactly 32
 * channels (a position is half a vector), stride_w 1, a 3-column kernel of up to 4 rows. It then
 * beats the plane kernel, which 32-63 channels otherwise do not on NCHW data. */
static inline int cq_dwq_paired(const cq_qconv_packed *p) {
  return p->g.out_channels == 32 && p->g.stride[1] == 1 && p->g.kernel[1] == 3 &&
         p->g.kernel[0] <= 4;
}

/* K position of the first channel of tap (i, j) in a single-run layout: j * zpx + i * C for zrows
 * (the window is then contiguous in the kernel-row-interleaved image, with zpx - kh * C unused
 * bytes after each column), else (i * kw + j) * C. */
static inline int64_t cq_conv_single_k(const cq_qconv_packed *p, int64_t i, int64_t j) {
  return p->zrows ? j * p->zpx + i * p->cg : (i * p->g.kernel[1] + j) * p->cg;
}

/* Output stage of one group: channels [0, n) of the group, requantized with the fast-path forms
 * (see the top of avx512-inl.h), written to y in NCHW (plane = Ho * Wo, channel c at y + c *
 * plane) or NHWC (row stride ldy) layout. Rows of the kernels are "virtual" output positions q:
 * output row q / vw, column q % vw, dropped when the column is >= wo. */
typedef struct cq_conv_out {
  cq_out_kind kind;      /* CQ_OUT_U8_INT or CQ_OUT_U8_FLOAT */
  const int32_t *init;   /* per channel: the accumulator's start (zero-point terms, QNNPACK bias) */
  const float *scale, *fbias, *mult;
  int32_t y_zp, y_min;
  float hi_f;            /* 255 - y_zp */
  int need_min;          /* the float stage can exceed 2^30: clamp at hi_f before converting */
  int unit_scale;        /* U8_FLOAT with every scale 1 (FBGEMM): the multiply is left out */
  int init_zero;         /* every init is 0 (no input zero point and no integer bias) */
  uint8_t *y;
  int nchw;
  int64_t plane, ldy;
  int64_t vw, wo;
  int64_t n;
} cq_conv_out;

/* One GEMM problem: rows q of A at a + q * lda; K step s (64 bytes) of row q at
 * a + q * lda + aoff[s], of which kvalid[s] groups of four bytes meet nonzero weights. */
typedef struct cq_conv_gemm {
  const uint8_t *a;
  size_t lda;
  const int64_t *aoff;
  const uint8_t *kvalid;
  size_t ksteps;
  const cq_qgemm_packed *w;
  const cq_conv_out *out;
} cq_conv_gemm;

/* Rows [m0, m1) of a GEMM problem, all panels. The AMX kernel reads rows up to m0 + 32 *
 * ceil((m1 - m0) / 32) - 1 and 64 bytes at every K step (the caller provides readable slack);
 * the VNNI kernel reads only rows < m1 and the kvalid groups. Both need no weight zero points. */
typedef void (*cq_conv_gemm_fn)(const cq_conv_gemm *g, size_t m0, size_t m1);
void cq_u8s8_conv_gemm__avx512vnni(const cq_conv_gemm *g, size_t m0, size_t m1);
void cq_u8s8_conv_gemm__amx(const cq_conv_gemm *g, size_t m0, size_t m1);

/* Depthwise kernel of one channel: plane is the channel's input, zero-point padded, row stride
 * wpp (a multiple of the column stride), with 256 + 4 * dw_groups readable bytes after it. With
 * `flat` (stride_h 1) the VNNI kernel computes the output rows on the padded width wpp / stride_w
 * into `stage` (ho * wpp / stride_w + 128 bytes) and copies the rows out. */
typedef struct cq_conv_dw {
  const cq_qconv_packed *p;
  int64_t wpp, ho, wo;
  int flat;
  uint8_t *stage;
  const cq_conv_out *out; /* this channel's constants at index 0 */
} cq_conv_dw;
void cq_u8_dwconv__avx512vnni(const cq_conv_dw *d, int64_t c, const uint8_t *plane, uint8_t *y);
void cq_u8_dwconv__scalar(const cq_conv_dw *d, int64_t c, const uint8_t *plane, uint8_t *y,
                          int32_t x_zp, const cq_requant_params *rq);
/* AArch64 NEON: 16 output positions of a row per step (see neon.c); reads up to 32 * stride_w
 * bytes past a row's last window, which the plane's slack covers. */
void cq_u8_dwconv__neon(const cq_conv_dw *d, int64_t c, const uint8_t *plane, uint8_t *y,
                        int32_t x_zp, const cq_requant_params *rq);

/* Direct kernel: vector units [u0, u1) (of cq_conv_direct_units) of every output channel, from the
 * C zero-point-padded input planes (plane c at planes + c * plane_stride, rows row_stride bytes
 * apart, a multiple of stride_w; readable 64 + 4 * direct_groups bytes past the last window), into
 * the NCHW planes of out->y (out: the constants of all channels). A unit is 64 / stride_w output
 * positions: flat (stride_h 1) position v is output row v / vw, column v % vw (vw = row_stride /
 * stride_w; columns >= wo are dropped); otherwise unit u is a run of one output row. */
typedef struct cq_conv_direct {
  const cq_qconv_packed *p;
  const uint8_t *planes;
  int64_t plane_stride, row_stride;
  int64_t vw, ho, wo;
  int flat;
  const cq_conv_out *out;
} cq_conv_direct;
int64_t cq_conv_direct_units(const cq_conv_direct *d);
void cq_u8_conv_direct__avx512vnni(const cq_conv_direct *d, int64_t u0, int64_t u1);

/* Depthwise kernel with the channels in the lanes (dw_q): output rows [r0, r1) of every channel,
 * into the NHWC output y (ho x wo x C), from either
 *   the zero-point-padded NHWC image img (hp x wp x C; readable 64 bytes past its end), or
 *   (img NULL) the NHWC input x itself (h x w x C, read exactly: nothing outside it), its padding
 *   taken from zrow (w * C + 64 bytes of the input zero point zx) for the rows above and below
 *   and from a constant for the columns left and right -- no padded copy of the input.
 * init/scale/fbias/mult: the channels' output-stage constants, per 64-channel block in dw_q's
 * lane order (64 entries per block; out gives the rest). */
typedef struct cq_conv_dw_nhwc {
  const cq_qconv_packed *p;
  const uint8_t *img;
  const uint8_t *x, *zrow;
  int64_t h, w;
  uint8_t zx;
  int64_t wp, wo;
  uint8_t *y;
  const cq_conv_out *out;
  const int32_t *init;
  const float *scale, *fbias, *mult;
} cq_conv_dw_nhwc;
void cq_u8_dwconv_nhwc__avx512vnni(const cq_conv_dw_nhwc *d, int64_t r0, int64_t r1);

/* x [n, h, w, c] (NHWC bytes: quint8 or qint8) rewritten as y [n, c, h, w] (NCHW), with the
 * fastest form cq_isa_active() allows. x and y must not overlap. */
void cq_u8_nhwc_to_nchw(const uint8_t *x, int64_t n, int64_t c, int64_t h, int64_t w, uint8_t *y);

/* Layout helpers. to_nhwc_rows: rows [r0, r1) of the zero-point-padded NHWC image (Hp x Wp x C,
 * padding ph, pw) from one image x in either layout. */
typedef struct cq_conv_image {
  const uint8_t *x;
  int nchw;
  int64_t c, h, w, ph, pw, hp, wp;
  uint8_t zx;
  uint8_t *dst;
} cq_conv_image;
void cq_conv_to_nhwc_rows__scalar(const cq_conv_image *im, int64_t r0, int64_t r1);
void cq_conv_to_nhwc_rows__avx512vnni(const cq_conv_image *im, int64_t r0, int64_t r1);
/* Rows [r0, r1) of an NHWC image x (h x w x c) written as NCHW planes to dst (no padding). */
void cq_conv_to_nchw_rows__scalar(const uint8_t *x, int64_t c, int64_t h, int64_t w, int64_t r0,
                                  int64_t r1, uint8_t *dst);
void cq_conv_to_nchw_rows__avx512vnni(const uint8_t *x, int64_t c, int64_t h, int64_t w,
                                      int64_t r0, int64_t r1, uint8_t *dst);
/* The padded plane of channel c (row stride wpp >= Wp, then 256 + extra bytes of zx). With
 * rows_only, only the input rows are written (the padding rows and the slack are still there from
 * an earlier call on the same buffer with the same geometry). */
void cq_conv_plane__scalar(const cq_conv_image *im, int64_t c, int64_t wpp, int64_t extra,
                           int rows_only, uint8_t *plane);
void cq_conv_plane__avx512vnni(const cq_conv_image *im, int64_t c, int64_t wpp, int64_t extra,
                               int rows_only, uint8_t *plane);

/* Kernel-row-interleaved image of output rows [oh0, oh1): for output row oh, padded column w,
 * kernel row i and channel c, z[(oh * Wp + w) * zpx + i * C + c] = padded input (oh * sh + i * dh,
 * w) (zx in the padding and in the zpx - kh * C bytes after each pixel), so the window of output
 * (oh, ow) with stride_w 1 is the kw * zpx bytes at z + (oh * Wp + ow) * zpx. */
void cq_conv_zrows__scalar(const cq_conv_image *im, const cq_conv_geom *g, int64_t zpx,
                           int64_t oh0, int64_t oh1, uint8_t *z);
void cq_conv_zrows__avx512vnni(const cq_conv_image *im, const cq_conv_geom *g, int64_t zpx,
                               int64_t oh0, int64_t oh1, uint8_t *z);

/* im2col rows [q0, q0 + rows) of output positions (row-major over Ho x Wo) of group g into
 * col (row stride k_packed): the group's segments from the padded NHWC image img (Wp x C), gaps
 * filled with zx. */
typedef struct cq_conv_im2col {
  const cq_qconv_packed *p;
  const uint8_t *img;
  int64_t wp, wo;
  uint8_t zx;
} cq_conv_im2col;
void cq_conv_im2col__scalar(const cq_conv_im2col *c, int64_t g, int64_t q0, int64_t rows,
                            uint8_t *col);
void cq_conv_im2col__avx512vnni(const cq_conv_im2col *c, int64_t g, int64_t q0, int64_t rows,
                                uint8_t *col);

/* Stores rows [0, rows) of an NHWC staging block (row stride ld, channels [0, n)) of virtual
 * positions q0.. to the output of `out` (layout and position mapping as cq_conv_out). */
void cq_conv_store_rows__scalar(const cq_conv_out *out, const uint8_t *rows_u8, size_t ld,
                                size_t rows, int64_t q0);

#endif
