/* Tensors: dtype, shape up to 8-D, contiguous C-order strides, optional quantization parameters.
 *
 * A cq_tensor created by cq_tensor_create owns its data (zero-filled) and its qparams; one created by
 * cq_tensor_wrap borrows the caller's buffer, which must outlive it. cq_tensor_free frees what the
 * tensor owns. Shapes are validated: every dimension >= 0 and the byte size must fit in size_t and
 * under CQ_TENSOR_MAX_BYTES. */
#ifndef CQUANT_TENSOR_H
#define CQUANT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "cquant/qparams.h"
#include "cquant/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CQ_MAX_DIMS 8
/* Largest tensor cquant will allocate (16 GiB): a file asking for more is rejected, not attempted. */
#define CQ_TENSOR_MAX_BYTES ((uint64_t)1 << 34)

typedef enum cq_dtype {
  CQ_F32 = 0,
  CQ_F64,
  CQ_U8,
  CQ_S8,
  CQ_S32,
  CQ_I64,
  CQ_DTYPE_COUNT
} cq_dtype;

/* One row of the dtype table. */
typedef struct cq_dtype_info {
  const char *name;      /* "float32", "uint8", ... (PyTorch's names without "torch.") */
  size_t size;           /* bytes per element */
  const char *npy_descr; /* numpy descr of the little-endian form ("<f4", "|u1", ...) */
} cq_dtype_info;

CQ_API const cq_dtype_info *cq_dtype_get(cq_dtype dtype); /* NULL for an invalid dtype */

typedef struct cq_tensor {
  cq_dtype dtype;
  int ndim;                        /* 0..CQ_MAX_DIMS; 0 is a scalar with one element */
  int64_t shape[CQ_MAX_DIMS];
  int64_t strides[CQ_MAX_DIMS];    /* in elements; always contiguous C order of `shape` */
  void *data;
  cq_qparams *qparams;             /* non-NULL for quantized tensors; owned by the tensor */
  int owns_data;
  /* 1: a 4-D tensor whose data is stored [N, H, W, C] (PyTorch's channels_last) while `shape`
   * and `strides` stay the logical [N, C, H, W]. Only intermediate quantized activations inside
   * a model run carry it (a quantized conv writes its output that way so the next conv reads it
   * without a transpose); every tensor a caller receives from cq_module_forward or a graph
   * visit is contiguous (0). */
  int channels_last;
} cq_tensor;

/* Creates a zero-filled tensor. Returns CQ_EINVAL for a bad ndim/dtype/negative dimension and
 * CQ_ENOMEM when the size overflows, exceeds CQ_TENSOR_MAX_BYTES or cannot be allocated. */
CQ_API cq_status cq_tensor_create(cq_tensor **out, cq_dtype dtype, int ndim, const int64_t *shape);

/* Wraps a caller-owned buffer (not copied, not freed). Same validation as cq_tensor_create. */
CQ_API cq_status cq_tensor_wrap(cq_tensor **out, cq_dtype dtype, int ndim, const int64_t *shape,
                                void *data);

/* Frees the tensor, its qparams and its data if owned. NULL is allowed. */
CQ_API void cq_tensor_free(cq_tensor *tensor);

CQ_API int64_t cq_tensor_numel(const cq_tensor *tensor);
CQ_API size_t cq_tensor_nbytes(const cq_tensor *tensor);

/* Validates a shape and computes its element count; CQ_EINVAL / CQ_ENOMEM as for create. */
CQ_API cq_status cq_shape_numel(int ndim, const int64_t *shape, size_t elem_size, int64_t *numel);

/* New float32 tensor with the values of `src` converted (any dtype; quantized tensors are NOT
 * dequantized here, use cq_dequantize_tensor). */
CQ_API cq_status cq_tensor_to_f32(const cq_tensor *src, cq_tensor **out);

/* Attaches a copy of `qparams` to the tensor (replacing any previous one). */
CQ_API cq_status cq_tensor_set_qparams(cq_tensor *tensor, const cq_qparams *qparams);

/* Formats the shape as "[2, 3, 4]" into buf (always terminated). Returns buf. */
CQ_API char *cq_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);

/* Test hook: make the allocation after `n` more successful ones fail (n < 0 disables). */
CQ_API void cq_debug_fail_alloc_after(long n);

#ifdef __cplusplus
}
#endif
#endif
