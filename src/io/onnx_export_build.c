/* Building the ONNX messages of an export (see onnx_export.h). Everything lives in one arena that
 * ox_builder_release frees, so an export that fails half-way leaks nothing and the error paths
 * need no bookkeeping. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "io/onnx_export.h"

/* ---- arena ------------------------------------------------------------------------------------- */

struct ox_block {
  ox_block *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

#define OX_BLOCK_BYTES ((size_t)64 << 10)

void *ox_alloc(ox_builder *b, size_t size) {
  if (b->st != CQ_OK) return NULL;
  size = (size + 15) & ~(size_t)15;
  if (size == 0) size = 16;
  ox_block *blk = b->arena;
  if (!blk || blk->cap - blk->used < size) {
    const size_t cap = size > OX_BLOCK_BYTES ? size : OX_BLOCK_BYTES;
    blk = cq_malloc_for(sizeof *blk + cap, "ONNX export");
    if (!blk) {
      b->st = CQ_ENOMEM;
      return NULL;
    }
    blk->used = 0;
    blk->cap = cap;
    /* a big block goes second so the current block keeps serving small requests */
    if (b->arena && size > OX_BLOCK_BYTES) {
      blk->next = b->arena->next;
      b->arena->next = blk;
    } else {
      blk->next = b->arena;
      b->arena = blk;
    }
  }
  void *p = blk->data + blk->used;
  blk->used += size;
  memset(p, 0, size);
  return p;
}

char *ox_strdup(ox_builder *b, const char *s) {
  if (b->st != CQ_OK || !s) return NULL;
  const size_t n = strlen(s) + 1;
  char *d = ox_alloc(b, n);
  if (d) memcpy(d, s, n);
  return d;
}

char *ox_printf(ox_builder *b, const char *fmt, ...) {
  if (b->st != CQ_OK) return NULL;
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) {
    b->st = cq_fail(CQ_EINVAL, "ONNX export: cannot format a name");
    return NULL;
  }
  char *d = ox_alloc(b, (size_t)n + 1);
  if (!d) return NULL;
  va_start(ap, fmt);
  vsnprintf(d, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return d;
}

/* Grows a pointer array held in the builder's own heap (not the arena: it is resized). */
static int grow(ox_builder *b, void ***items, size_t *cap, size_t need) {
  if (need <= *cap) return 1;
  size_t ncap = *cap ? *cap * 2 : 64;
  while (ncap < need) ncap *= 2;
  void **p = cq_realloc(*items, ncap * sizeof *p);
  if (!p) {
    b->st = cq_fail(CQ_ENOMEM, "ONNX export: out of memory growing a list to %zu entries", ncap);
    return 0;
  }
  *items = p;
  *cap = ncap;
  return 1;
}

void ox_builder_release(ox_builder *b) {
  ox_block *blk = b->arena;
  while (blk) {
    ox_block *next = blk->next;
    cq_free(blk);
    blk = next;
  }
  cq_free(b->nodes);
  cq_free(b->inits);
  cq_free(b->values.slots);
  cq_free(b->node_names.slots);
  memset(b, 0, sizeof *b);
}

/* ---- unique names (open addressing over FNV-1a) ------------------------------------------------ */

static size_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (size_t)h;
}

static int nameset_has(const ox_nameset *set, const char *s) {
  if (!set->cap) return 0;
  for (size_t i = hash_str(s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
    if (!set->slots[i]) return 0;
    if (!strcmp(set->slots[i], s)) return 1;
  }
}

static void nameset_put(ox_builder *b, ox_nameset *set, const char *s) {
  if ((set->count + 1) * 2 > set->cap) {
    const size_t ncap = set->cap ? set->cap * 2 : 256;
    const char **slots = cq_calloc_for(ncap, sizeof *slots, "ONNX export names");
    if (!slots) {
      b->st = CQ_ENOMEM;
      return;
    }
    for (size_t i = 0; i < set->cap; i++) {
      const char *e = set->slots[i];
      if (!e) continue;
      size_t j = hash_str(e) & (ncap - 1);
      while (slots[j]) j = (j + 1) & (ncap - 1);
      slots[j] = e;
    }
    cq_free(set->slots);
    set->slots = slots;
    set->cap = ncap;
  }
  size_t j = hash_str(s) & (set->cap - 1);
  while (set->slots[j]) j = (j + 1) & (set->cap - 1);
  set->slots[j] = s;
  set->count++;
}

static const char *unique(ox_builder *b, ox_nameset *set, const char *base) {
  if (b->st != CQ_OK || !base) return NULL;
  const char *name = NULL;
  if (!nameset_has(set, base)) {
    name = ox_strdup(b, base);
  } else {
    for (unsigned k = 1; b->st == CQ_OK; k++) {
      char *cand = ox_printf(b, "%s_%u", base, k);
      if (cand && !nameset_has(set, cand)) {
        name = cand;
        break;
      }
    }
  }
  if (name) nameset_put(b, set, name);
  return b->st == CQ_OK ? name : NULL;
}

const char *ox_value_name(ox_builder *b, const char *base) { return unique(b, &b->values, base); }
const char *ox_node_name(ox_builder *b, const char *base) {
  return unique(b, &b->node_names, base);
}

/* ---- nodes and attributes ---------------------------------------------------------------------- */

static char **copy_names(ox_builder *b, int n, const char *const *names) {
  char **v = ox_alloc(b, sizeof *v * (size_t)(n > 0 ? n : 1));
  for (int i = 0; v && i < n; i++) {
    if (!names[i]) {
      /* a name that failed to build earlier: b->st is already set */
      if (b->st == CQ_OK) b->st = cq_fail(CQ_EINVAL, "ONNX export: a node input has no name");
      return NULL;
    }
    v[i] = ox_strdup(b, names[i]);
  }
  return b->st == CQ_OK ? v : NULL;
}

Onnx__NodeProto *ox_node(ox_builder *b, const char *op_type, const char *name, int nin,
                         const char *const *inputs, int nout, const char *const *outputs) {
  if (b->st != CQ_OK) return NULL;
  Onnx__NodeProto *node = ox_alloc(b, sizeof *node);
  if (!node) return NULL;
  onnx__node_proto__init(node);
  node->op_type = ox_strdup(b, op_type);
  node->name = (char *)ox_node_name(b, name);
  node->domain = ox_strdup(b, "");
  node->input = copy_names(b, nin, inputs);
  node->n_input = (size_t)nin;
  node->output = copy_names(b, nout, outputs);
  node->n_output = (size_t)nout;
  if (b->st != CQ_OK) return NULL;
  if (!grow(b, (void ***)&b->nodes, &b->cap_nodes, b->n_nodes + 1)) return NULL;
  b->nodes[b->n_nodes++] = node;
  return node;
}

static Onnx__AttributeProto *new_attr(ox_builder *b, Onnx__NodeProto *node, const char *name,
                                      Onnx__AttributeProto__AttributeType type) {
  if (b->st != CQ_OK || !node) return NULL;
  Onnx__AttributeProto *a = ox_alloc(b, sizeof *a);
  if (!a) return NULL;
  onnx__attribute_proto__init(a);
  a->name = ox_strdup(b, name);
  a->has_type = 1;
  a->type = type;
  /* attributes are few per node: a fresh array each time keeps the arena simple */
  Onnx__AttributeProto **list = ox_alloc(b, sizeof *list * (node->n_attribute + 1));
  if (!list) return NULL;
  if (node->n_attribute) memcpy(list, node->attribute, sizeof *list * node->n_attribute);
  list[node->n_attribute] = a;
  node->attribute = list;
  node->n_attribute++;
  return a;
}

void ox_attr_int(ox_builder *b, Onnx__NodeProto *node, const char *name, int64_t v) {
  Onnx__AttributeProto *a = new_attr(b, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  if (!a) return;
  a->has_i = 1;
  a->i = v;
}

void ox_attr_ints(ox_builder *b, Onnx__NodeProto *node, const char *name, int n,
                  const int64_t *v) {
  Onnx__AttributeProto *a = new_attr(b, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  if (!a) return;
  a->ints = ox_alloc(b, sizeof *a->ints * (size_t)(n > 0 ? n : 1));
  if (!a->ints) return;
  memcpy(a->ints, v, sizeof *a->ints * (size_t)n);
  a->n_ints = (size_t)n;
}

void ox_attr_float(ox_builder *b, Onnx__NodeProto *node, const char *name, float v) {
  Onnx__AttributeProto *a = new_attr(b, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  if (!a) return;
  a->has_f = 1;
  a->f = v;
}

void ox_attr_string(ox_builder *b, Onnx__NodeProto *node, const char *name, const char *v) {
  Onnx__AttributeProto *a =
      new_attr(b, node, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  if (!a) return;
  char *s = ox_strdup(b, v);
  if (!s) return;
  a->has_s = 1;
  a->s.data = (uint8_t *)s;
  a->s.len = strlen(s);
}

/* ---- initializers ------------------------------------------------------------------------------ */

/* An initializer with room for `bytes` of raw data (written little-endian by the callers). */
static Onnx__TensorProto *new_init(ox_builder *b, const char *name, int32_t data_type, int ndim,
                                   const int64_t *dims, size_t elem, uint8_t **raw,
                                   int64_t *numel) {
  if (b->st != CQ_OK) return NULL;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= dims[i];
  Onnx__TensorProto *t = ox_alloc(b, sizeof *t);
  if (!t) return NULL;
  onnx__tensor_proto__init(t);
  t->name = (char *)ox_value_name(b, name);
  t->has_data_type = 1;
  t->data_type = data_type;
  t->dims = ox_alloc(b, sizeof *t->dims * (size_t)(ndim > 0 ? ndim : 1));
  if (t->dims && ndim) memcpy(t->dims, dims, sizeof *t->dims * (size_t)ndim);
  t->n_dims = (size_t)ndim;
  *raw = ox_alloc(b, (size_t)n * elem);
  if (b->st != CQ_OK) return NULL;
  t->has_raw_data = 1;
  t->raw_data.data = *raw;
  t->raw_data.len = (size_t)n * elem;
  if (!grow(b, (void ***)&b->inits, &b->cap_inits, b->n_inits + 1)) return NULL;
  b->inits[b->n_inits++] = t;
  *numel = n;
  return t;
}

static void put_u32le(uint8_t *p, uint32_t v) {
  for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

const char *ox_init_f32(ox_builder *b, const char *name, int ndim, const int64_t *dims,
                        const float *data) {
  uint8_t *raw;
  int64_t n;
  Onnx__TensorProto *t =
      new_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims, 4, &raw, &n);
  if (!t) return NULL;
  for (int64_t i = 0; i < n; i++) {
    uint32_t bits;
    memcpy(&bits, &data[i], 4);
    put_u32le(raw + 4 * i, bits);
  }
  return t->name;
}

const char *ox_init_i8(ox_builder *b, const char *name, int ndim, const int64_t *dims,
                       const int8_t *data) {
  uint8_t *raw;
  int64_t n;
  Onnx__TensorProto *t =
      new_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, ndim, dims, 1, &raw, &n);
  if (!t) return NULL;
  if (n) memcpy(raw, data, (size_t)n);
  return t->name;
}

const char *ox_init_u8(ox_builder *b, const char *name, int ndim, const int64_t *dims,
                       const uint8_t *data) {
  uint8_t *raw;
  int64_t n;
  Onnx__TensorProto *t =
      new_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, ndim, dims, 1, &raw, &n);
  if (!t) return NULL;
  if (n) memcpy(raw, data, (size_t)n);
  return t->name;
}

const char *ox_init_i64(ox_builder *b, const char *name, int ndim, const int64_t *dims,
                        const int64_t *data) {
  uint8_t *raw;
  int64_t n;
  Onnx__TensorProto *t =
      new_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, ndim, dims, 8, &raw, &n);
  if (!t) return NULL;
  for (int64_t i = 0; i < n; i++) {
    const uint64_t v = (uint64_t)data[i];
    put_u32le(raw + 8 * i, (uint32_t)v);
    put_u32le(raw + 8 * i + 4, (uint32_t)(v >> 32));
  }
  return t->name;
}
