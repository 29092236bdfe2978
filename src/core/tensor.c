#include "cquant/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* The dtype table: everything dtype-specific that is plain data lives here. */
static const cq_dtype_info dtype_table[CQ_DTYPE_COUNT] = {
    [CQ_F32] = {"float32", 4, "<f4"}, [CQ_F64] = {"float64", 8, "<f8"},
    [CQ_U8] = {"uint8", 1, "|u1"},    [CQ_S8] = {"int8", 1, "|i1"},
    [CQ_S32] = {"int32", 4, "<i4"},   [CQ_I64] = {"int64", 8, "<i8"},
};

const cq_dtype_info *cq_dtype_get(cq_dtype dtype) {
  if ((unsigned)dtype >= CQ_DTYPE_COUNT) return NULL;
  return &dtype_table[dtype];
}

char *cq_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
  size_t used = 0;
  if (cap == 0) return buf;
  buf[0] = '\0';
  used += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && used < cap; i++) {
    used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
  }
  if (used < cap) snprintf(buf + used, cap - used, "]");
  return buf;
}

cq_status cq_shape_numel(int ndim, const int64_t *shape, size_t elem_size, int64_t *numel) {
  if (ndim < 0 || ndim > CQ_MAX_DIMS) {
    return cq_fail(CQ_EINVAL, "tensor rank %d is outside 0..%d", ndim, CQ_MAX_DIMS);
  }
  if (ndim > 0 && !shape) return cq_fail(CQ_EINVAL, "shape is NULL for a rank-%d tensor", ndim);
  uint64_t n = 1;
  int zero = 0;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      return cq_fail(CQ_EINVAL, "dimension %d is negative (%lld)", i, (long long)shape[i]);
    }
    if (shape[i] == 0) zero = 1;
  }
  if (zero) {
    *numel = 0;
    return CQ_OK;
  }
  uint64_t limit = CQ_TENSOR_MAX_BYTES / (elem_size ? elem_size : 1);
  for (int i = 0; i < ndim; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (d > limit || n > limit / d) {
      char s[256];
      return cq_fail(CQ_ENOMEM, "tensor of shape %s is larger than the %llu-byte limit",
                     cq_shape_str(ndim, shape, s, sizeof s),
                     (unsigned long long)CQ_TENSOR_MAX_BYTES);
    }
    n *= d;
  }
  *numel = (int64_t)n;
  return CQ_OK;
}

static cq_status tensor_alloc_header(cq_tensor **out, cq_dtype dtype, int ndim,
                                     const int64_t *shape, int64_t *numel) {
  *out = NULL;
  const cq_dtype_info *info = cq_dtype_get(dtype);
  if (!info) return cq_fail(CQ_EINVAL, "invalid dtype %d", (int)dtype);
  cq_status st = cq_shape_numel(ndim, shape, info->size, numel);
  if (st != CQ_OK) return st;
  cq_tensor *t = cq_calloc_for(1, sizeof *t, "tensor");
  if (!t) return CQ_ENOMEM;
  t->dtype = dtype;
  t->ndim = ndim;
  /* Unsigned arithmetic: an empty tensor may have other dimensions whose product overflows; its
   * strides are never used to address anything. */
  uint64_t stride = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    t->shape[i] = shape[i];
    t->strides[i] = (int64_t)stride;
    stride *= shape[i] ? (uint64_t)shape[i] : 1u;
  }
  *out = t;
  return CQ_OK;
}

cq_status cq_tensor_create(cq_tensor **out, cq_dtype dtype, int ndim, const int64_t *shape) {
  int64_t numel;
  cq_status st = tensor_alloc_header(out, dtype, ndim, shape, &numel);
  if (st != CQ_OK) return st;
  cq_tensor *t = *out;
  t->data = cq_calloc_for((size_t)numel, dtype_table[dtype].size, "tensor data");
  if (!t->data) {
    cq_free(t);
    *out = NULL;
    return CQ_ENOMEM;
  }
  t->owns_data = 1;
  return CQ_OK;
}

cq_status cq_tensor_wrap(cq_tensor **out, cq_dtype dtype, int ndim, const int64_t *shape,
                         void *data) {
  int64_t numel;
  cq_status st = tensor_alloc_header(out, dtype, ndim, shape, &numel);
  if (st != CQ_OK) return st;
  (*out)->data = data;
  (*out)->owns_data = 0;
  return CQ_OK;
}

void cq_tensor_free(cq_tensor *tensor) {
  if (!tensor) return;
  if (tensor->qparams) {
    cq_qparams_release(tensor->qparams);
    cq_free(tensor->qparams);
  }
  if (tensor->owns_data) cq_free(tensor->data);
  cq_free(tensor);
}

int64_t cq_tensor_numel(const cq_tensor *tensor) {
  /* an empty tensor's other dimensions may multiply past int64: check for a zero first (non-empty
   * shapes were bounded by CQ_TENSOR_MAX_BYTES at creation) */
  for (int i = 0; i < tensor->ndim; i++) {
    if (tensor->shape[i] == 0) return 0;
  }
  int64_t n = 1;
  for (int i = 0; i < tensor->ndim; i++) n *= tensor->shape[i];
  return n;
}

size_t cq_tensor_nbytes(const cq_tensor *tensor) {
  return (size_t)cq_tensor_numel(tensor) * dtype_table[tensor->dtype].size;
}

cq_status cq_tensor_to_f32(const cq_tensor *src, cq_tensor **out) {
  cq_status st = cq_tensor_create(out, CQ_F32, src->ndim, src->shape);
  if (st != CQ_OK) return st;
  float *dst = (*out)->data;
  int64_t n = cq_tensor_numel(src);
  switch (src->dtype) {
    case CQ_F32: memcpy(dst, src->data, (size_t)n * sizeof(float)); break;
    case CQ_F64:
      for (int64_t i = 0; i < n; i++) dst[i] = (float)((const double *)src->data)[i];
      break;
    case CQ_U8:
      for (int64_t i = 0; i < n; i++) dst[i] = (float)((const uint8_t *)src->data)[i];
      break;
    case CQ_S8:
      for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int8_t *)src->data)[i];
      break;
    case CQ_S32:
      for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src->data)[i];
      break;
    case CQ_I64:
      for (int64_t i = 0; i < n; i++) dst[i] = (float)((const int64_t *)src->data)[i];
      break;
    default:
      cq_tensor_free(*out);
      *out = NULL;
      return cq_fail(CQ_EINVAL, "invalid dtype %d", (int)src->dtype);
  }
  return CQ_OK;
}

cq_status cq_tensor_set_qparams(cq_tensor *tensor, const cq_qparams *qparams) {
  cq_qparams *copy = cq_calloc_for(1, sizeof *copy, "tensor qparams");
  if (!copy) return CQ_ENOMEM;
  cq_status st = cq_qparams_copy(copy, qparams);
  if (st != CQ_OK) {
    cq_free(copy);
    return st;
  }
  if (tensor->qparams) {
    cq_qparams_release(tensor->qparams);
    cq_free(tensor->qparams);
  }
  tensor->qparams = copy;
  return CQ_OK;
}
