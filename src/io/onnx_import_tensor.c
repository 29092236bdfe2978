/* ONNX import: initializers (TensorProto) and node attributes, read with their types checked.
 *
 * Tensor data is either raw_data (little-endian bytes, the form torch.onnx.export writes) or the
 * typed repeated fields (float_data, int32_data for int8 / uint8 / int32 / bool, int64_data,
 * double_data). Data is copied once, straight into the destination the caller gives (a module's
 * parameter). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "io/onnx_import.h"

static const char *dtype_name(int32_t t) {
  switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return "float32";
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return "uint8";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return "int8";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return "int32";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return "int64";
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return "float64";
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return "bool";
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return "float16";
    default: return "an unsupported type";
  }
}

static size_t dtype_size(int32_t t) {
  switch (t) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return 1;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return 1;
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return 8;
    default: return 0;
  }
}

/* How many values the typed field holds for this dtype (when there is no raw_data). */
static size_t typed_count(const Onnx__TensorProto *t) {
  switch (t->data_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return t->n_float_data;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return t->n_int64_data;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return t->n_double_data;
    default: return t->n_int32_data;
  }
}

cq_status oi_tensor_check(oi_importer *im, const Onnx__TensorProto *t, const char *role,
                          int64_t *numel) {
  const char *name = t->name ? t->name : "";
  if (t->n_external_data > 0 || t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    return oi_fail(im, CQ_EUNSUPPORTED, "%s '%.80s' keeps its data in an external file", role,
                   name);
  }
  if (t->n_dims > CQ_MAX_DIMS) {
    return oi_fail(im, CQ_EUNSUPPORTED, "%s '%.80s' has %zu dimensions (at most %d)", role, name,
                   t->n_dims, CQ_MAX_DIMS);
  }
  const size_t es = dtype_size(t->data_type);
  if (es == 0) {
    return oi_fail(im, CQ_EUNSUPPORTED, "%s '%.80s' has data type %d (%s)", role, name,
                   (int)t->data_type, dtype_name(t->data_type));
  }
  int64_t n = 1;
  for (size_t i = 0; i < t->n_dims; i++) {
    if (t->dims[i] < 0) {
      return oi_fail(im, CQ_EFORMAT, "%s '%.80s' has a negative dimension", role, name);
    }
    if (t->dims[i] > 0 && n > (int64_t)(CQ_TENSOR_MAX_BYTES / es) / t->dims[i]) {
      return oi_fail(im, CQ_EFORMAT, "%s '%.80s' is too large", role, name);
    }
    n *= t->dims[i];
  }
  if (t->has_raw_data) {
    if (t->raw_data.len != (size_t)n * es) {
      return oi_fail(im, CQ_EFORMAT, "%s '%.80s' has %zu bytes of data, its shape needs %lld",
                     role, name, t->raw_data.len, (long long)((size_t)n * es));
    }
  } else if (typed_count(t) != (size_t)n) {
    return oi_fail(im, CQ_EFORMAT, "%s '%.80s' has %zu values, its shape needs %lld", role, name,
                   typed_count(t), (long long)n);
  }
  *numel = n;
  return CQ_OK;
}

/* Element i as double (any supported dtype; the caller checked the size). */
static double element(const Onnx__TensorProto *t, int64_t i) {
  if (t->has_raw_data) {
    const uint8_t *p = t->raw_data.data;
    switch (t->data_type) {
      case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
      }
      case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: {
        double d;
        memcpy(&d, p + 8 * i, 8);
        return d;
      }
      case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        return (double)v;
      }
      case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
      }
      case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return (int8_t)p[i];
      default: return p[i];
    }
  }
  switch (t->data_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return t->float_data[i];
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return t->double_data[i];
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return (double)t->int64_data[i];
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return (int8_t)t->int32_data[i];
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return (uint8_t)t->int32_data[i];
    default: return t->int32_data[i];
  }
}

static cq_status check_count(oi_importer *im, const Onnx__TensorProto *t, const char *role,
                             int64_t n) {
  int64_t have;
  cq_status st = oi_tensor_check(im, t, role, &have);
  if (st != CQ_OK) return st;
  if (have != n) {
    return oi_fail(im, CQ_ESHAPE, "%s '%.80s' has %lld elements, expected %lld", role,
                   t->name ? t->name : "", (long long)have, (long long)n);
  }
  return CQ_OK;
}

cq_status oi_tensor_f32(oi_importer *im, const Onnx__TensorProto *t, const char *role, float *dst,
                        int64_t n) {
  cq_status st = check_count(im, t, role, n);
  if (st != CQ_OK) return st;
  if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
    if (n && t->has_raw_data) {
      memcpy(dst, t->raw_data.data, (size_t)n * 4);
    } else if (n) {
      memcpy(dst, t->float_data, (size_t)n * 4);
    }
  } else if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)element(t, i);
  } else {
    return oi_fail(im, CQ_EUNSUPPORTED, "%s '%.80s' must be float32, got %s", role,
                   t->name ? t->name : "", dtype_name(t->data_type));
  }
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(dst[i])) {
      return oi_fail(im, CQ_EVALUE, "%s '%.80s' holds a non-finite value at element %lld", role,
                     t->name ? t->name : "", (long long)i);
    }
  }
  return CQ_OK;
}

cq_status oi_tensor_i64(oi_importer *im, const Onnx__TensorProto *t, const char *role,
                        int64_t *dst, int64_t n) {
  cq_status st = check_count(im, t, role, n);
  if (st != CQ_OK) return st;
  if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ||
      t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE) {
    return oi_fail(im, CQ_EUNSUPPORTED, "%s '%.80s' must hold integers, got %s", role,
                   t->name ? t->name : "", dtype_name(t->data_type));
  }
  if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
    for (int64_t i = 0; i < n; i++) {
      if (t->has_raw_data) {
        memcpy(&dst[i], (const uint8_t *)t->raw_data.data + 8 * i, 8);
      } else {
        dst[i] = t->int64_data[i];
      }
    }
  } else {
    for (int64_t i = 0; i < n; i++) dst[i] = (int64_t)element(t, i);
  }
  return CQ_OK;
}

cq_status oi_tensor_to_cq(oi_importer *im, const Onnx__TensorProto *t, const char *role,
                          cq_tensor **out) {
  *out = NULL;
  int64_t n;
  cq_status st = oi_tensor_check(im, t, role, &n);
  if (st != CQ_OK) return st;
  cq_dtype dt;
  switch (t->data_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: dt = CQ_F32; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: dt = CQ_S8; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: dt = CQ_U8; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: dt = CQ_S32; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: dt = CQ_I64; break;
    default:
      return oi_fail(im, CQ_EUNSUPPORTED, "%s '%.80s' has type %s", role, t->name ? t->name : "",
                     dtype_name(t->data_type));
  }
  cq_tensor *x;
  st = cq_tensor_create(&x, dt, (int)t->n_dims, t->dims);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  if (dt == CQ_F32) {
    st = oi_tensor_f32(im, t, role, x->data, n);
  } else if (dt == CQ_I64) {
    st = oi_tensor_i64(im, t, role, x->data, n);
  } else {
    for (int64_t i = 0; i < n; i++) {
      double e = element(t, i);
      if (dt == CQ_S8) ((int8_t *)x->data)[i] = (int8_t)e;
      if (dt == CQ_U8) ((uint8_t *)x->data)[i] = (uint8_t)e;
      if (dt == CQ_S32) ((int32_t *)x->data)[i] = (int32_t)e;
    }
  }
  if (st != CQ_OK) {
    cq_tensor_free(x);
    return st;
  }
  *out = x;
  return CQ_OK;
}

/* ---- attributes ---- */

const Onnx__AttributeProto *oi_attr(const Onnx__NodeProto *node, const char *name) {
  for (size_t i = 0; i < node->n_attribute; i++) {
    const Onnx__AttributeProto *a = node->attribute[i];
    if (a && a->name && strcmp(a->name, name) == 0) return a;
  }
  return NULL;
}

static cq_status wrong_type(oi_importer *im, const char *name, const char *want) {
  return oi_fail(im, CQ_EFORMAT, "attribute '%s' must be %s", name, want);
}

cq_status oi_attr_int(oi_importer *im, const char *name, int64_t dflt, int64_t *out) {
  const Onnx__AttributeProto *a = oi_attr(im->node, name);
  *out = dflt;
  if (!a) return CQ_OK;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) return wrong_type(im, name, "an int");
  *out = a->i;
  return CQ_OK;
}

cq_status oi_attr_float(oi_importer *im, const char *name, float dflt, float *out) {
  const Onnx__AttributeProto *a = oi_attr(im->node, name);
  *out = dflt;
  if (!a) return CQ_OK;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) {
    return wrong_type(im, name, "a float");
  }
  if (!isfinite(a->f)) return oi_fail(im, CQ_EVALUE, "attribute '%s' is not finite", name);
  *out = a->f;
  return CQ_OK;
}

cq_status oi_attr_ints(oi_importer *im, const char *name, int64_t *out, int cap, int *n) {
  const Onnx__AttributeProto *a = oi_attr(im->node, name);
  *n = 0;
  if (!a) return CQ_OK;
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) {
    return wrong_type(im, name, "a list of ints");
  }
  if (a->n_ints > (size_t)cap) {
    return oi_fail(im, CQ_EUNSUPPORTED, "attribute '%s' has %zu entries (at most %d)", name,
                   a->n_ints, cap);
  }
  for (size_t i = 0; i < a->n_ints; i++) out[i] = a->ints[i];
  *n = (int)a->n_ints;
  return CQ_OK;
}

cq_status oi_attr_string(oi_importer *im, const char *name, const char *dflt, char *buf,
                         size_t cap) {
  const Onnx__AttributeProto *a = oi_attr(im->node, name);
  if (!a) {
    snprintf(buf, cap, "%s", dflt);
    return CQ_OK;
  }
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING) {
    return wrong_type(im, name, "a string");
  }
  if (a->s.len >= cap) return oi_fail(im, CQ_EUNSUPPORTED, "attribute '%s' is too long", name);
  for (size_t i = 0; i < a->s.len; i++) {
    unsigned char c = a->s.data[i];
    buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  buf[a->s.len] = '\0';
  return CQ_OK;
}

cq_status oi_attr_tensor(oi_importer *im, const char *name, const Onnx__TensorProto **out) {
  const Onnx__AttributeProto *a = oi_attr(im->node, name);
  *out = NULL;
  if (!a) return oi_fail(im, CQ_EFORMAT, "attribute '%s' is missing", name);
  if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR || !a->t) {
    return wrong_type(im, name, "a tensor");
  }
  *out = a->t;
  return CQ_OK;
}
