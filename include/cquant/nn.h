/* The model: a tree of named modules, as torch.nn builds it, with forward, backward and training.
 *
 * A cq_module is a node with a type ("Linear", "Conv2d", "Sequential", ...), named children,
 * parameters (trainable tensors with gradients) and buffers (running statistics). Names follow
 * PyTorch: cq_sequential names its children "0", "1", ...; cq_module_find(m, "features.0") walks
 * dotted paths; state-dict keys are "0.weight", "1.running_mean". A module owns its children,
 * parameters and buffers: cq_module_free on the root frees everything.
 *
 * Execution: cq_module_forward runs a module on input tensors through a cq_ctx, which owns every
 * tensor it produces (released by cq_ctx_reset, which keeps their memory for the next run of the
 * same shapes, and freed by cq_ctx_free). With gradients enabled
 * (cq_ctx_set_grad), the ctx records a tape of the calls; cq_ctx_backward then propagates a gradient
 * from an output back through the tape, accumulating into each parameter's grad tensor (as
 * PyTorch's autograd does; zero them with cq_module_zero_grad).
 *
 * Containers: Sequential chains its children. A Graph module runs an explicit dataflow (nodes that
 * call a child module or a functional op such as add or cat on earlier values): that is how
 * residual connections, concatenation and imported ONNX graphs are expressed.
 *
 * Layout is NCHW (NCL for 1-D) at the API, as in PyTorch. */
#ifndef CQUANT_NN_H
#define CQUANT_NN_H

#include <stddef.h>
#include <stdint.h>

#include "cquant/status.h"
#include "cquant/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cq_module cq_module;
typedef struct cq_ctx cq_ctx;

/* ---- the tree ----------------------------------------------------------------------------------- */

CQ_API void cq_module_free(cq_module *m);
/* PyTorch's class name: "Linear", "Conv2d", "Sequential", "ConvReLU2d", ... */
CQ_API const char *cq_module_type_name(const cq_module *m);
CQ_API int cq_module_num_children(const cq_module *m);
CQ_API cq_module *cq_module_child(const cq_module *m, int index);
CQ_API const char *cq_module_child_name(const cq_module *m, int index);
/* Dotted path lookup ("features.0.conv"); NULL (and a message) when absent. "" is m itself. */
CQ_API cq_module *cq_module_find(cq_module *m, const char *path);
/* Appends `child` (ownership moves to m) under `name`; CQ_EINVAL for a duplicate or bad name. */
CQ_API cq_status cq_module_add_child(cq_module *m, const char *name, cq_module *child);
/* Replaces the module at `path` by `replacement` (ownership moves in); the old module is returned
 * in *old (caller frees) or freed when old is NULL. Used by fusion and convert. */
CQ_API cq_status cq_module_replace(cq_module *root, const char *path, cq_module *replacement,
                                   cq_module **old);

/* ---- parameters and buffers --------------------------------------------------------------------- */

/* One entry of named_parameters() / the state dict. */
typedef struct cq_named_tensor {
  const char *name;   /* local name: "weight", "bias", "running_mean", ... */
  cq_tensor *tensor;  /* owned by the module */
  cq_tensor *grad;    /* parameters: gradient (same shape, zero-filled at creation); buffers: NULL */
  int is_parameter;
} cq_named_tensor;

CQ_API int cq_module_num_tensors(const cq_module *m);
CQ_API cq_named_tensor *cq_module_tensor(cq_module *m, int index);
/* Finds a parameter or buffer by its state-dict key relative to m ("0.weight"). */
CQ_API cq_named_tensor *cq_module_find_tensor(cq_module *m, const char *key);

/* Visits every parameter and buffer of the subtree in PyTorch's state_dict() order, with the full
 * dotted key ("0.weight"). Stops and returns the first non-OK status of the callback. */
typedef cq_status (*cq_tensor_visitor)(const char *key, cq_named_tensor *t, void *user);
CQ_API cq_status cq_module_visit_tensors(cq_module *m, cq_tensor_visitor visit, void *user);

CQ_API void cq_module_zero_grad(cq_module *m);
/* train() / eval(): sets the training flag of the whole subtree. */
CQ_API void cq_module_train(cq_module *m, int training);
CQ_API int cq_module_is_training(const cq_module *m);

/* ---- printing ----------------------------------------------------------------------------------- */

/* The module as print(model) shows it in PyTorch 1.13. snprintf-style: returns the full length. */
CQ_API size_t cq_module_repr(const cq_module *m, char *buf, size_t cap);
/* Convenience: a newly allocated string (free with free()); NULL on allocation failure. */
CQ_API char *cq_module_repr_alloc(const cq_module *m);

/* ---- execution ---------------------------------------------------------------------------------- */

CQ_API cq_status cq_ctx_create(cq_ctx **out);
CQ_API void cq_ctx_free(cq_ctx *ctx);
/* Releases every tensor the ctx produced (none may be used afterwards; their memory is kept for
 * reuse by the next run and freed by the reset after it, or by cq_ctx_free) and clears the tape. */
CQ_API void cq_ctx_reset(cq_ctx *ctx);
/* Enables recording for backward (like torch.enable_grad / no_grad). Default: off. */
CQ_API void cq_ctx_set_grad(cq_ctx *ctx, int enabled);

/* Runs m on `nin` inputs, producing `nout` outputs (owned by the ctx). Most modules take one input
 * and give one output; LSTM/GRU give (output, h_n[, c_n]). Shape and dtype errors return
 * CQ_ESHAPE / CQ_EINVAL naming the module and the expected shape. */
CQ_API cq_status cq_module_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                   int nout, cq_tensor **out);
/* Single input, single output. */
CQ_API cq_status cq_module_forward1(cq_module *m, cq_ctx *ctx, cq_tensor *in, cq_tensor **out);

/* Backpropagates `grad` (same shape as `output`, which must come from this ctx's tape) and
 * accumulates parameter gradients. If `input_grad` is non-NULL and `input` was a graph input, the
 * gradient with respect to that input is returned there (owned by the ctx). */
CQ_API cq_status cq_ctx_backward(cq_ctx *ctx, cq_tensor *output, const cq_tensor *grad,
                                 cq_tensor *input, cq_tensor **input_grad);

/* The same for several outputs at once (e.g. an LSTM's output, h_n and c_n), seeding each with its
 * gradient, and returning the gradients of several inputs (NULL where an input got none). */
CQ_API cq_status cq_ctx_backward_multi(cq_ctx *ctx, int nout, cq_tensor *const *outputs,
                                       const cq_tensor *const *grads, int nin,
                                       cq_tensor *const *inputs, cq_tensor **input_grads);

#ifdef __cplusplus
}
#endif
#endif
