#include "io/onnx_proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "io/atomic_file.h"

/* ---- bounded decoding --------------------------------------------------------------------------
 * protobuf-c allocates every decoded message, string and repeated field through the allocator it
 * is given. Each block carries its size in a header so the running total can be bounded; freeing
 * needs no state, so a decoded model can be freed long after the decode's counter is gone. */

typedef struct decode_budget {
  size_t used, limit;
  int exhausted;
} decode_budget;

#define BLOCK_HEADER 16 /* keeps the payload 16-byte aligned */

static void *budget_alloc(void *data, size_t size) {
  decode_budget *b = data;
  if (b) {
    if (size > b->limit - b->used || BLOCK_HEADER > b->limit - b->used - size) {
      b->exhausted = 1;
      return NULL;
    }
    b->used += size + BLOCK_HEADER;
  }
  unsigned char *p = cq_malloc(size + BLOCK_HEADER);
  if (!p) return NULL;
  memcpy(p, &size, sizeof size);
  return p + BLOCK_HEADER;
}

static void budget_free(void *data, void *ptr) {
  (void)data;
  if (ptr) cq_free((unsigned char *)ptr - BLOCK_HEADER);
}

cq_status cq_onnx_decode(const uint8_t *data, size_t size, const char *what,
                         Onnx__ModelProto **out) {
  if (!out) return cq_fail(CQ_EINVAL, "cq_onnx_decode: the output pointer is NULL");
  *out = NULL;
  if (!what) what = "ONNX data";
  if (!data && size) return cq_fail(CQ_EINVAL, "%s: no data", what);
  if (size == 0) return cq_fail(CQ_EFORMAT, "%s: empty file, not an ONNX model", what);
  decode_budget budget = {0, CQ_ONNX_MAX_DECODED_BYTES, 0};
  ProtobufCAllocator allocator = {budget_alloc, budget_free, &budget};
  Onnx__ModelProto *m = onnx__model_proto__unpack(&allocator, size, data);
  if (!m) {
    if (budget.exhausted) {
      return cq_fail(CQ_ENOMEM, "%s: decoding the ONNX model needs more than %zu bytes", what,
                     (size_t)CQ_ONNX_MAX_DECODED_BYTES);
    }
    return cq_fail(CQ_EFORMAT, "%s: not a valid ONNX model (protobuf decoding failed)", what);
  }
  *out = m;
  return CQ_OK;
}

void cq_onnx_model_free(Onnx__ModelProto *model) {
  if (!model) return;
  ProtobufCAllocator allocator = {budget_alloc, budget_free, NULL};
  onnx__model_proto__free_unpacked(model, &allocator);
}

static int is_initializer(const Onnx__GraphProto *g, const char *name) {
  for (size_t k = 0; name && k < g->n_initializer; k++) {
    if (g->initializer[k]->name && strcmp(g->initializer[k]->name, name) == 0) return 1;
  }
  return 0;
}

int cq_onnx_input_shapes(const Onnx__ModelProto *model, int cap, int *ndim,
                         int64_t (*shape)[CQ_MAX_DIMS]) {
  const Onnx__GraphProto *g = model ? model->graph : NULL;
  int n = 0;
  for (size_t i = 0; g && i < g->n_input; i++) {
    const Onnx__ValueInfoProto *vi = g->input[i];
    if (!vi || is_initializer(g, vi->name)) continue;
    if (n < cap) {
      const Onnx__TypeProto *tp = vi->type;
      const Onnx__TensorShapeProto *sh =
          tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type
              ? tp->tensor_type->shape
              : NULL;
      ndim[n] = sh && sh->n_dim <= CQ_MAX_DIMS ? (int)sh->n_dim : -1;
      for (int d = 0; d < ndim[n]; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = sh->dim[d];
        shape[n][d] = dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                          ? dim->dim_value
                          : -1;
      }
    }
    n++;
  }
  return n;
}

cq_status cq_onnx_read_file(const char *path, Onnx__ModelProto **out) {
  if (!out) return cq_fail(CQ_EINVAL, "cq_onnx_read_file: the output pointer is NULL");
  *out = NULL;
  if (!path) return cq_fail(CQ_EINVAL, "cq_onnx_read_file: the path is NULL");
  FILE *f = fopen(path, "rb");
  if (!f) return cq_fail(CQ_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    return cq_fail(CQ_EIO, "%s: not a regular file", path);
  }
  if ((uint64_t)sb.st_size > CQ_ONNX_MAX_FILE_BYTES) {
    fclose(f);
    return cq_fail(CQ_EFORMAT, "%s: %lld bytes, larger than the 2 GiB an ONNX file can hold", path,
                   (long long)sb.st_size);
  }
  size_t size = (size_t)sb.st_size;
  uint8_t *data = size ? cq_malloc_for(size, "the ONNX file") : NULL;
  if (size && !data) {
    fclose(f);
    return CQ_ENOMEM;
  }
  size_t got = size ? fread(data, 1, size, f) : 0;
  int err = ferror(f);
  fclose(f);
  if (got != size || err) {
    cq_free(data);
    return cq_fail(CQ_EIO, "%s: read %zu of %zu bytes", path, got, size);
  }
  cq_status st = cq_onnx_decode(data, size, path, out);
  cq_free(data);
  return st;
}

cq_status cq_onnx_write_file(const Onnx__ModelProto *model, const char *path) {
  if (!model || !path) return cq_fail(CQ_EINVAL, "cq_onnx_write_file: NULL argument");
  size_t size = onnx__model_proto__get_packed_size(model);
  if (size > CQ_ONNX_MAX_FILE_BYTES) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: the model needs %zu bytes, more than the 2 GiB an ONNX "
                   "file can hold", path, size);
  }
  uint8_t *data = cq_malloc_for(size ? size : 1, "the encoded ONNX model");
  if (!data) return CQ_ENOMEM;
  size_t packed = onnx__model_proto__pack(model, data);
  cq_atomic_file af;
  cq_status st = cq_atomic_open(&af, path);
  if (st == CQ_OK) {
    if (packed != size || fwrite(data, 1, size, af.f) != size) {
      cq_atomic_abort(&af);
      st = cq_fail(CQ_EIO, "%s: write failed", path);
    } else {
      st = cq_atomic_commit(&af);
    }
  }
  cq_free(data);
  return st;
}
