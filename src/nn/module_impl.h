/* Internal: how module types plug into cq_module, and the execution context's tape.
 *
 * A module type is a vtable. Leaf types implement forward (and backward when trainable);
 * containers (Sequential, Graph) implement forward by calling cq_module_forward on children, and
 * need no backward: the tape records leaf calls only. */
#ifndef CQ_NN_MODULE_IMPL_H
#define CQ_NN_MODULE_IMPL_H

#include "core/strbuf.h"
#include "cquant/nn.h"
#include "cquant/qconfig.h"

#define CQ_MAX_IO 8 /* most inputs / outputs of one module call */

typedef struct cq_tape_entry cq_tape_entry;

typedef struct cq_module_type {
  const char *name; /* PyTorch class name */
  /* Allocates outputs with cq_ctx_tensor. With cq_ctx_grad_enabled(ctx) it may attach what backward
   * needs with cq_ctx_save. */
  cq_status (*forward)(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                       cq_tensor **out);
  /* gout[i] is the gradient of output i (never NULL: zero-filled when unused). Writes gin[i]
   * (allocated with cq_ctx_tensor) for each input that needs one (gin[i] may be left NULL for
   * inputs without gradient, e.g. integer indices) and accumulates parameter gradients. NULL for
   * containers and for types that cannot be trained. Returning gout[i] itself, or one tensor for
   * two inputs, is allowed (the ctx copies such aliases before accumulating). A forward that
   * returns one of its inputs unchanged (identity in eval mode) should not be recorded at all:
   * give such types no backward, or return before allocating when nothing changes. */
  cq_status (*backward)(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e, cq_tensor *const *gout,
                        cq_tensor **gin);
  /* PyTorch's extra_repr() (may be NULL). */
  void (*extra_repr)(const cq_module *m, cq_strbuf *sb);
  /* Replaces the whole repr when set (observers, quantized modules with special formats). */
  void (*repr)(const cq_module *m, cq_strbuf *sb);
  /* Frees m->impl (NULL = plain cq_free). */
  void (*destroy_impl)(void *impl);
  /* Accepted number of inputs and produced number of outputs (nout_max >= 1). */
  int nin_min, nin_max, nout_min, nout_max;
  /* Channels-last activations (cq_tensor.channels_last). A producer (a quantized conv) writes
   * its output channels-last only when whoever consumes it reads that layout directly; this says
   * whether m does, given an input stored that way: 1 when forward reads it as it is, 0 when it
   * needs it contiguous (cq_module_forward then hands forward a contiguous copy, so no forward
   * ever misreads one). `after` is the same answer for what consumes m's output, for modules that
   * pass their input on (Identity: `after`; containers: their first consumer's answer). NULL: 0. */
  int (*reads_channels_last)(const cq_module *m, int after);
  /* Clamps folded at run time (a Graph or Sequential runs "quantized conv / linear -> ReLU /
   * ReLU6 / Hardtanh" as the conv / linear with the clamp in its output stage,
   * cq_ctx_fused_clamp; cq_module_clamp_fold decides). fuses_clamp: 1 when m's output
   * is quint8 with fixed qparams, given here, and m can clamp its output bytes to a range itself
   * when asked (*upper: also below 255). clamp_of: 1 when m applied to a quint8 input of these
   * qparams is exactly a clamp of the bytes to [*lo, *hi]. NULL: 0. */
  int (*fuses_clamp)(const cq_module *m, float *y_scale, int32_t *y_zp, int *upper);
  int (*clamp_of)(const cq_module *m, float x_scale, int32_t x_zp, int32_t *lo, int32_t *hi);
} cq_module_type;

struct cq_module {
  const cq_module_type *type;
  cq_module *parent;
  char **child_names;
  cq_module **children;
  int nchildren;
  int cap_children;
  cq_named_tensor *tensors; /* parameters and buffers in registration order */
  int ntensors;
  int training;
  void *impl; /* type-specific configuration and state */
  cq_module *post; /* child "activation_post_process": applied to output 0 after forward */
  cq_qconfig *qconfig; /* the module's qconfig attribute (owned), NULL = None */
};

/* One recorded leaf call. */
struct cq_tape_entry {
  cq_module *module;
  int nin, nout;
  cq_tensor *in[CQ_MAX_IO];
  cq_tensor *out[CQ_MAX_IO];
  void *saved;               /* what forward kept for backward (cq_ctx_save) */
  void (*free_saved)(void *);
};

/* Creates a module of `type` owning `impl` (freed with the type's destroy_impl on failure too). */
cq_status cq_module_new(const cq_module_type *type, void *impl, cq_module **out);
/* The same with the buffers "weight" and, when bias is not NULL, "bias" (the quantized layers'
 * form); owns impl, weight and bias from the call on, whatever it returns. */
cq_status cq_module_new_weighted(const cq_module_type *type, void *impl, cq_tensor *weight,
                                 cq_tensor *bias, cq_module **out);
/* Registers a parameter (with a zero gradient) or a buffer; takes ownership of `t`. */
cq_status cq_module_add_parameter(cq_module *m, const char *name, cq_tensor *t);
cq_status cq_module_add_buffer(cq_module *m, const char *name, cq_tensor *t);
/* The tensor registered under `name` on m itself (not children), or NULL. */
cq_named_tensor *cq_module_own_tensor(cq_module *m, const char *name);

/* Detaches the child called `name` and returns it (caller owns it), or NULL when absent. */
cq_module *cq_module_detach_child(cq_module *m, const char *name);

/* Execution context internals used by module implementations. */
cq_status cq_ctx_tensor(cq_ctx *ctx, cq_dtype dtype, int ndim, const int64_t *shape,
                        cq_tensor **out);
/* The same without the zero fill when a spare is reused: its contents are left over from an
 * earlier run. Only for outputs the op writes whole (the zero fill was a tenth of a quantized
 * MobileNet-style model's time). */
cq_status cq_ctx_tensor_unset(cq_ctx *ctx, cq_dtype dtype, int ndim, const int64_t *shape,
                              cq_tensor **out);
int cq_ctx_grad_enabled(const cq_ctx *ctx);
/* A work buffer of at least `bytes` owned by ctx and kept from call to call (NULL when out of
 * memory, with the error naming `what`). For a leaf forward's own use only: valid until the next
 * cq_ctx_scratch, so a forward that calls other modules must not hold it across them. */
void *cq_ctx_scratch(cq_ctx *ctx, size_t bytes, const char *what);
/* x itself when it is contiguous, else a contiguous copy owned by ctx (same dtype, shape and
 * qparams; the data moved from [N, H, W, C] to [N, C, H, W]). */
cq_status cq_ctx_contiguous(cq_ctx *ctx, cq_tensor *x, cq_tensor **out);
/* 1 when no cq_module_forward call is running on ctx (a caller-facing result is being made). */
int cq_ctx_outermost(const cq_ctx *ctx);
/* cq_module_type.reads_channels_last of m (0 when the type has none). */
int cq_module_reads_channels_last(const cq_module *m, int after);
/* A container, before calling a child through cq_module_forward: whether what consumes that
 * child's output reads channels-last (the child sees it as cq_ctx_channels_last_wanted). */
void cq_ctx_hint_channels_last(cq_ctx *ctx, int wanted);
/* Inside forward: 1 when the output may be written channels-last (its consumer reads it so and
 * channels-last is enabled). Always 0 for the outermost call: callers get contiguous tensors. */
int cq_ctx_channels_last_wanted(const cq_ctx *ctx);
/* cq_graph_forward_profile: while set, the forward of `graph` adds its nodes' wall times to
 * seconds (graph NULL: none). cq_ctx_profile_of: that array when m is the graph, else NULL. */
void cq_ctx_set_profile(cq_ctx *ctx, const cq_module *graph, double *seconds);
double *cq_ctx_profile_of(const cq_ctx *ctx, const cq_module *graph);
/* 1 when `clamp`, run on the output of `producer`, may be skipped and its clamp [*lo, *hi] done in
 * producer's output stage instead: producer fuses_clamp, clamp's clamp_of holds for producer's
 * output qparams, neither has an activation_post_process, and a cut below 255 is allowed. The
 * container must also know that nothing else reads producer's output. */
int cq_module_clamp_fold(const cq_module *producer, const cq_module *clamp, int32_t *lo,
                         int32_t *hi);
/* A container, before calling a child whose type fuses_clamp: clamp the output bytes to [lo, hi]
 * (the clamp module after it is skipped; on 0: none). Inside forward, cq_ctx_fused_clamp gives
 * the range (returns 0 when there is none). */
void cq_ctx_hint_clamp(cq_ctx *ctx, int on, int32_t lo, int32_t hi);
int cq_ctx_fused_clamp(const cq_ctx *ctx, int32_t *lo, int32_t *hi);
/* The reads_channels_last of types that pass their input on unchanged (Identity): `after`. */
int cq_reads_channels_last_passes(const cq_module *m, int after);
/* Whether producers may write channels-last activations (default 1). Test hook: with 0 every
 * module writes contiguous tensors, the reference the channels-last runs are checked against. */
int cq_channels_last_enabled(void);
void cq_debug_channels_last(int enabled);
/* Attaches `saved` to the call being recorded (freed with free_saved when the ctx resets). */
void cq_ctx_save(cq_ctx *ctx, void *saved, void (*free_saved)(void *));

/* Checks helpers that produce "Linear(in_features=3, ...): expected ... got ..." messages. */
cq_status cq_module_fail(const cq_module *m, cq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
