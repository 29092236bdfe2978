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
int cq_ctx_grad_enabled(const cq_ctx *ctx);
/* Attaches `saved` to the call being recorded (freed with free_saved when the ctx resets). */
void cq_ctx_save(cq_ctx *ctx, void *saved, void (*free_saved)(void *));

/* Checks helpers that produce "Linear(in_features=3, ...): expected ... got ..." messages. */
cq_status cq_module_fail(const cq_module *m, cq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
