/* Internal: elementwise binary ops on float32 tensors with numpy broadcasting, shared by
 * BinaryConst, MatMul (binary_ops.c) and FloatFunctional.mul (shape_ops.c).
 *
 * Broadcasting aligns the shapes at their last dimension; two sizes agree when equal or when one
 * is 1 (a missing leading dimension counts as 1). The arithmetic per element is that of PyTorch's
 * CPU kernels: one float operation (a + b, a - b, a * b, a / b). Gradients are PyTorch's formulas evaluated at
 * the output shape (mul: g * b and g * a; div: g / b and -g * ((a / b) / b); sub: g and -g), then
 * summed over the broadcast dimensions (in double, then rounded to float). */
#ifndef CQ_NN_BINARY_OPS_H
#define CQ_NN_BINARY_OPS_H

#include <stdint.h>

#include "cquant/modules.h"
#include "nn/module_impl.h"

/* The broadcast of two shapes: the output shape and, for each operand, the stride (in elements of
 * that operand, contiguous C order) of every output dimension (0 where it is broadcast). */
typedef struct cq_broadcast {
  int ndim;
  int64_t shape[CQ_MAX_DIMS];
  int64_t stride_a[CQ_MAX_DIMS], stride_b[CQ_MAX_DIMS];
  int64_t numel;
} cq_broadcast;

/* Walks a broadcast output in C order, tracking each operand's offset:
 *   cq_broadcast_iter it; cq_broadcast_iter_init(&it, &bc);
 *   for (i = 0; i < bc.numel; i++, cq_broadcast_iter_next(&it)) y[i] = a[it.oa] * b[it.ob]; */
typedef struct cq_broadcast_iter {
  const cq_broadcast *bc;
  int64_t idx[CQ_MAX_DIMS];
  int64_t oa, ob;
} cq_broadcast_iter;

static inline void cq_broadcast_iter_init(cq_broadcast_iter *it, const cq_broadcast *bc) {
  for (int k = 0; k < CQ_MAX_DIMS; k++) it->idx[k] = 0;
  it->bc = bc;
  it->oa = it->ob = 0;
}

static inline void cq_broadcast_iter_next(cq_broadcast_iter *it) {
  const cq_broadcast *bc = it->bc;
  for (int k = bc->ndim - 1; k >= 0; k--) {
    if (++it->idx[k] < bc->shape[k]) {
      it->oa += bc->stride_a[k];
      it->ob += bc->stride_b[k];
      return;
    }
    it->oa -= bc->stride_a[k] * (bc->shape[k] - 1);
    it->ob -= bc->stride_b[k] * (bc->shape[k] - 1);
    it->idx[k] = 0;
  }
}

/* CQ_ESHAPE naming m (and `what`, e.g. "mul") when the shapes cannot broadcast. */
cq_status cq_broadcast_shapes(const cq_module *m, const char *what, int nda, const int64_t *sa,
                              int ndb, const int64_t *sb, cq_broadcast *out);

/* y = a op b (float32 inputs; y allocated in ctx with the broadcast shape). */
cq_status cq_binary_forward(const cq_module *m, cq_ctx *ctx, cq_binary_op op, const cq_tensor *a,
                            const cq_tensor *b, cq_tensor **y);
/* The gradients of a and b (shaped like them) from g (the output gradient). ga or gb may be NULL
 * when that gradient is not wanted. */
cq_status cq_binary_backward(const cq_module *m, cq_ctx *ctx, cq_binary_op op, const cq_tensor *a,
                             const cq_tensor *b, const cq_tensor *g, cq_tensor **ga,
                             cq_tensor **gb);

/* The name of an op as torch spells the function: "add", "sub", "mul", "div". */
const char *cq_binary_op_name(cq_binary_op op);

#endif
