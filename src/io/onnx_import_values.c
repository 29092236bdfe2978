/* ONNX import: the value table (name -> value), child names, node inputs / outputs, messages. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/graph.h"
#include "io/onnx_import.h"

/* FNV-1a */
static size_t hash_string(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (size_t)h;
}

cq_status oi_values_init(oi_importer *im, size_t expected) {
  size_t n = 16;
  while (n < expected * 2 + 16) n *= 2;
  im->slots = cq_malloc_for(n * sizeof *im->slots, "the ONNX value table");
  if (!im->slots) return CQ_ENOMEM;
  for (size_t i = 0; i < n; i++) im->slots[i] = -1;
  im->nslots = n;
  im->cap_values = (int)expected + 1;
  im->values = cq_calloc_for((size_t)im->cap_values, sizeof *im->values, "the ONNX values");
  im->uses = cq_calloc_for((size_t)im->cap_values, sizeof *im->uses, "the ONNX value uses");
  im->first_reader = cq_malloc_for((size_t)im->cap_values * sizeof *im->first_reader,
                                   "the ONNX value readers");
  /* child names: a node may add a few helper modules (recurrent layers' output layout) */
  size_t nn = 16;
  while (nn < expected * 4 + 16) nn *= 2;
  im->names = cq_calloc_for(nn, sizeof *im->names, "the ONNX node names");
  im->nnames_slots = nn;
  if (!im->values || !im->uses || !im->names || !im->first_reader) return CQ_ENOMEM;
  for (int i = 0; i < im->cap_values; i++) im->first_reader[i] = -1;
  return CQ_OK;
}

void oi_values_release(oi_importer *im) {
  if (im->values) {
    for (int i = 0; i < im->nvalues; i++) cq_free(im->values[i].sym);
  }
  cq_free(im->values);
  cq_free(im->uses);
  cq_free(im->first_reader);
  cq_free(im->slots);
  if (im->names) {
    for (size_t i = 0; i < im->nnames_slots; i++) cq_free(im->names[i]);
  }
  cq_free(im->names);
}

int oi_find(const oi_importer *im, const char *name) {
  if (!name || !im->slots) return -1;
  size_t mask = im->nslots - 1, i = hash_string(name) & mask;
  while (im->slots[i] >= 0) {
    if (strcmp(im->values[im->slots[i]].name, name) == 0) return im->slots[i];
    i = (i + 1) & mask;
  }
  return -1;
}

cq_status oi_add_value(oi_importer *im, const char *name, int allow_existing, int *index) {
  int found = oi_find(im, name);
  if (found >= 0) {
    if (allow_existing) {
      *index = found;
      return CQ_OK;
    }
    return cq_fail(CQ_EFORMAT, "%s: value '%.80s' is defined twice", im->what, name);
  }
  if (im->nvalues >= im->cap_values) {
    return cq_fail(CQ_EFORMAT, "%s: more values than the graph declares", im->what);
  }
  size_t mask = im->nslots - 1, i = hash_string(name) & mask;
  while (im->slots[i] >= 0) i = (i + 1) & mask;
  const int k = im->nvalues++;
  im->slots[i] = k;
  oi_value *v = &im->values[k];
  memset(v, 0, sizeof *v);
  v->name = name;
  v->producer = -1;
  v->gv = -1;
  v->dq_source = -1;
  v->dq_node = -1;
  *index = k;
  return CQ_OK;
}

int oi_new_sym(oi_importer *im) { return ++im->next_sym; }

/* Names come from the file: control characters are replaced so a message stays one line. */
static void safe_copy(char *dst, size_t cap, const char *src) {
  size_t j = 0;
  for (; src && *src && j + 1 < cap; src++) {
    unsigned char c = (unsigned char)*src;
    dst[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  dst[j] = '\0';
}

cq_status oi_fail(oi_importer *im, cq_status st, const char *fmt, ...) {
  char msg[512], clean[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  safe_copy(clean, sizeof clean, msg);
  if (!im->node) return cq_fail(st, "%s: %s", im->what, clean);
  char name[128], op[64];
  safe_copy(name, sizeof name, im->node->name && im->node->name[0] ? im->node->name : "(unnamed)");
  safe_copy(op, sizeof op, im->node->op_type ? im->node->op_type : "?");
  return cq_fail(st, "%s: node %s (%s): %s", im->what, name, op, clean);
}

/* ---- child names ---- */

static int name_taken(const oi_importer *im, const char *s, size_t *slot) {
  size_t mask = im->nnames_slots - 1, i = hash_string(s) & mask;
  while (im->names[i]) {
    if (strcmp(im->names[i], s) == 0) return 1;
    i = (i + 1) & mask;
  }
  *slot = i;
  return 0;
}

/* `s` (len bytes) as an identifier: characters outside [A-Za-z0-9_] become '_'. */
static void identifier(const char *s, size_t len, char *buf, size_t cap) {
  size_t j = 0;
  for (size_t i = 0; i < len && j + 1 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    buf[j++] = (isalnum(c) || c == '_') ? (char)c : '_';
  }
  buf[j] = '\0';
}

/* The PyTorch module path a name carries:
 *   weight initializer "features.0.weight" / "fc1.weight_quantized" -> "features.0" / "fc1";
 *   node name "/features/features.0/Conv" (torch 1.13 scopes) -> "features.0";
 *   otherwise the node name without its leading '/', or the op type when unnamed. */
static void module_path(const Onnx__NodeProto *node, const char *weight_name, const char **start,
                        size_t *len) {
  if (weight_name) {
    const char *dot = strrchr(weight_name, '.');
    if (dot && dot > weight_name && strncmp(dot + 1, "weight", 6) == 0) {
      *start = weight_name;
      *len = (size_t)(dot - weight_name);
      return;
    }
  }
  const char *n = node->name ? node->name : "";
  if (n[0] == '/') {
    const char *last = strrchr(n, '/');
    if (last > n) {
      const char *prev = last - 1;
      while (prev > n && *prev != '/') prev--;
      *start = prev + 1;
      *len = (size_t)(last - prev - 1);
      if (*len > 0) return;
    }
    *start = n + 1;
    *len = strlen(n + 1);
    if (*len > 0) return;
  }
  if (!n[0]) n = node->op_type ? node->op_type : "node";
  *start = n;
  *len = strlen(n);
}

cq_status oi_child_name(oi_importer *im, const Onnx__NodeProto *node, const char *weight_name,
                        char *buf, size_t cap) {
  const char *start;
  size_t len;
  module_path(node, weight_name, &start, &len);
  char base[96];
  identifier(start, len, base, sizeof base);
  return oi_unique_name(im, base, buf, cap);
}

cq_status oi_unique_name(oi_importer *im, const char *base_in, char *buf, size_t cap) {
  char base[112];
  identifier(base_in, strlen(base_in), base, sizeof base);
  if (!base[0]) snprintf(base, sizeof base, "node");
  if ((size_t)im->nnames * 2 + 2 >= im->nnames_slots) {
    return oi_fail(im, CQ_EFORMAT, "more modules than the graph has room for");
  }
  size_t slot = 0;
  snprintf(buf, cap, "%s", base);
  for (int k = 1; name_taken(im, buf, &slot); k++) snprintf(buf, cap, "%s_%d", base, k);
  size_t n = strlen(buf) + 1;
  char *copy = cq_malloc_for(n, "a node name");
  if (!copy) return CQ_ENOMEM;
  memcpy(copy, buf, n);
  im->names[slot] = copy;
  im->nnames++;
  return CQ_OK;
}

/* ---- node inputs and outputs ---- */

cq_status oi_input(oi_importer *im, int i, oi_value **out) {
  *out = NULL;
  const Onnx__NodeProto *node = im->node;
  if (i < 0 || (size_t)i >= node->n_input || !node->input[i] || !node->input[i][0]) return CQ_OK;
  int k = oi_find(im, node->input[i]);
  if (k < 0) {
    return oi_fail(im, CQ_EFORMAT, "input %d '%.80s' is not defined anywhere in the graph", i,
                   node->input[i]);
  }
  oi_value *v = &im->values[k];
  if (v->kind == OI_UNDEFINED) {
    if (v->producer >= 0) {
      const Onnx__NodeProto *p = im->graph->node[v->producer];
      return oi_fail(im, CQ_EFORMAT,
                     "input %d '%.80s' is used before node %.80s defines it (the nodes are not in "
                     "topological order, or the graph has a cycle)",
                     i, node->input[i], p->name && p->name[0] ? p->name : "(unnamed)");
    }
    return oi_fail(im, CQ_EFORMAT, "input %d '%.80s' has no value", i, node->input[i]);
  }
  if (v->kind == OI_ACT && v->gv < 0) {
    cq_status st = oi_qdq_materialize(im, v);
    if (st != CQ_OK) return st;
  }
  *out = v;
  return CQ_OK;
}

cq_status oi_input_act(oi_importer *im, int i, oi_value **out) {
  cq_status st = oi_input(im, i, out);
  if (st != CQ_OK) return st;
  if (!*out) return oi_fail(im, CQ_EFORMAT, "input %d is missing", i);
  if ((*out)->kind != OI_ACT) {
    return oi_fail(im, CQ_EUNSUPPORTED, "input %d '%.80s' must be a tensor computed from the "
                   "graph inputs, not a constant", i, (*out)->name);
  }
  return CQ_OK;
}

cq_status oi_input_const(oi_importer *im, int i, const Onnx__TensorProto **out) {
  *out = NULL;
  oi_value *v;
  cq_status st = oi_input(im, i, &v);
  if (st != CQ_OK) return st;
  if (!v) return oi_fail(im, CQ_EFORMAT, "input %d (a constant) is missing", i);
  if (v->kind != OI_CONST) {
    return oi_fail(im, CQ_EUNSUPPORTED, "input %d '%.80s' must be an initializer or a constant",
                   i, v->name);
  }
  *out = v->tensor;
  return CQ_OK;
}

cq_status oi_define_output(oi_importer *im, int i, oi_kind kind, oi_value **out) {
  const Onnx__NodeProto *node = im->node;
  *out = NULL;
  if (i < 0 || (size_t)i >= node->n_output || !node->output[i] || !node->output[i][0]) {
    return oi_fail(im, CQ_EFORMAT, "output %d is missing", i);
  }
  int k = oi_find(im, node->output[i]);
  if (k < 0) return oi_fail(im, CQ_EFORMAT, "output %d was not registered", i);
  oi_value *v = &im->values[k];
  v->kind = kind;
  *out = v;
  return CQ_OK;
}

cq_status oi_emit(oi_importer *im, const char *name, cq_module *module, int nin,
                  oi_value *const *ins, int nout, oi_value **outs) {
  int gin[CQ_MAX_IO], gout[CQ_MAX_IO];
  if (nin > CQ_MAX_IO || nout > CQ_MAX_IO) {
    cq_module_free(module);
    return oi_fail(im, CQ_EUNSUPPORTED, "too many inputs or outputs");
  }
  for (int i = 0; i < nin; i++) gin[i] = ins[i]->gv;
  cq_status st = cq_graph_add_node(im->g, name, module, nin, gin, nout, gout);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  for (int i = 0; i < nout; i++) {
    if (outs[i]) {
      outs[i]->kind = OI_ACT;
      outs[i]->gv = gout[i];
    }
  }
  return CQ_OK;
}

cq_status oi_emit_unary(oi_importer *im, cq_module *module, const char *weight_name,
                        oi_value *in, int ndim, const oi_dim *dims, oi_value **out) {
  char name[128];
  oi_value *y;
  cq_status st = oi_define_output(im, 0, OI_ACT, &y);
  if (st == CQ_OK) st = oi_child_name(im, im->node, weight_name, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(module);
    return st;
  }
  y->ndim = ndim;
  for (int i = 0; i < ndim; i++) y->dims[i] = dims[i];
  st = oi_emit(im, name, module, 1, &in, 1, &y);
  if (st == CQ_OK && out) *out = y;
  return st;
}

cq_status oi_axis(oi_importer *im, int64_t axis, int ndim, const char *what, int *out) {
  if (axis < -(int64_t)ndim || axis >= ndim) {
    return oi_fail(im, CQ_EFORMAT, "%s %lld is out of range for a tensor of rank %d", what,
                   (long long)axis, ndim);
  }
  *out = (int)(axis < 0 ? axis + ndim : axis);
  return CQ_OK;
}
