/* The module tree: children, names, parameters and buffers, state-dict order, printing. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "nn/layers.h"
#include "nn/module_impl.h"
#include "cquant/quantization.h"

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = cq_malloc_for(n, "name");
  if (p) memcpy(p, s, n);
  return p;
}

cq_status cq_module_fail(const cq_module *m, cq_status st, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return cq_fail(st, "%s: %s", m->type->name, msg);
}

cq_status cq_module_new(const cq_module_type *type, void *impl, cq_module **out) {
  *out = NULL;
  cq_module *m = cq_calloc_for(1, sizeof *m, "module");
  if (!m) {
    if (type->destroy_impl) {
      type->destroy_impl(impl);
    } else {
      cq_free(impl);
    }
    return CQ_ENOMEM;
  }
  m->type = type;
  m->impl = impl;
  m->training = 1; /* PyTorch modules start in training mode */
  *out = m;
  return CQ_OK;
}

cq_status cq_module_new_weighted(const cq_module_type *type, void *impl, cq_tensor *weight,
                                 cq_tensor *bias, cq_module **out) {
  cq_module *m;
  cq_status st = cq_module_new(type, impl, &m);
  if (st != CQ_OK) {
    cq_tensor_free(weight);
    cq_tensor_free(bias);
    return st;
  }
  st = cq_module_add_buffer(m, "weight", weight);
  if (st == CQ_OK && bias) {
    st = cq_module_add_buffer(m, "bias", bias);
  } else {
    cq_tensor_free(bias);
  }
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

void cq_module_free(cq_module *m) {
  if (!m) return;
  for (int i = 0; i < m->nchildren; i++) {
    cq_module_free(m->children[i]);
    cq_free(m->child_names[i]);
  }
  cq_free(m->children);
  cq_free(m->child_names);
  for (int i = 0; i < m->ntensors; i++) {
    cq_free((char *)m->tensors[i].name);
    cq_tensor_free(m->tensors[i].tensor);
    cq_tensor_free(m->tensors[i].grad);
  }
  cq_free(m->tensors);
  cq_free(m->qconfig);
  if (m->type->destroy_impl) {
    m->type->destroy_impl(m->impl);
  } else {
    cq_free(m->impl);
  }
  cq_free(m);
}

const char *cq_module_type_name(const cq_module *m) { return m->type->name; }
int cq_module_num_children(const cq_module *m) { return m->nchildren; }

cq_module *cq_module_child(const cq_module *m, int index) {
  return index >= 0 && index < m->nchildren ? m->children[index] : NULL;
}

const char *cq_module_child_name(const cq_module *m, int index) {
  return index >= 0 && index < m->nchildren ? m->child_names[index] : NULL;
}

static int valid_name(const char *name) {
  if (!name || !name[0]) return 0;
  for (const char *p = name; *p; p++) {
    if (*p == '.' || *p == ' ' || *p == '\n') return 0;
  }
  return 1;
}

static int child_index(const cq_module *m, const char *name, size_t len) {
  for (int i = 0; i < m->nchildren; i++) {
    if (strlen(m->child_names[i]) == len && strncmp(m->child_names[i], name, len) == 0) return i;
  }
  return -1;
}

cq_status cq_module_add_child(cq_module *m, const char *name, cq_module *child) {
  if (!child) return cq_fail(CQ_EINVAL, "add_child: child module is NULL");
  if (!valid_name(name)) {
    cq_module_free(child);
    return cq_fail(CQ_EINVAL, "invalid module name '%s' (non-empty, no '.')", name ? name : "");
  }
  if (child_index(m, name, strlen(name)) >= 0) {
    cq_module_free(child);
    return cq_fail(CQ_EINVAL, "%s already has a child named '%s'", m->type->name, name);
  }
  if (m->nchildren == m->cap_children) {
    int cap = m->cap_children ? m->cap_children * 2 : 4;
    cq_module **c = cq_realloc(m->children, sizeof *c * (size_t)cap);
    if (c) m->children = c;
    char **n = c ? cq_realloc(m->child_names, sizeof *n * (size_t)cap) : NULL;
    if (n) m->child_names = n;
    if (!c || !n) {
      cq_module_free(child);
      return cq_fail(CQ_ENOMEM, "out of memory adding child '%s'", name);
    }
    m->cap_children = cap;
  }
  char *copy = dup_string(name);
  if (!copy) {
    cq_module_free(child);
    return CQ_ENOMEM;
  }
  m->children[m->nchildren] = child;
  m->child_names[m->nchildren] = copy;
  m->nchildren++;
  child->parent = m;
  if (strcmp(name, "activation_post_process") == 0) m->post = child;
  return CQ_OK;
}

cq_module *cq_module_find(cq_module *m, const char *path) {
  const char *p = path;
  cq_module *cur = m;
  while (*p) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    int i = child_index(cur, p, len);
    if (i < 0) {
      cq_fail(CQ_EINVAL, "no module named '%s' (no child '%.*s' in %s)", path, (int)len, p,
              cur->type->name);
      return NULL;
    }
    cur = cur->children[i];
    p += len;
    if (*p == '.') p++;
  }
  return cur;
}

cq_status cq_module_replace(cq_module *root, const char *path, cq_module *replacement,
                            cq_module **old) {
  if (old) *old = NULL;
  cq_module *target = path[0] ? cq_module_find(root, path) : NULL;
  if (!target || !target->parent) {
    cq_module_free(replacement);
    if (!path[0]) return cq_fail(CQ_EINVAL, "cannot replace the root module");
    return CQ_EINVAL;
  }
  cq_module *parent = target->parent;
  int i = 0;
  while (parent->children[i] != target) i++;
  parent->children[i] = replacement;
  replacement->parent = parent;
  if (parent->post == target) parent->post = replacement;
  target->parent = NULL;
  if (old) {
    *old = target;
  } else {
    cq_module_free(target);
  }
  return CQ_OK;
}

/* --- parameters and buffers -------------------------------------------------------------------- */

static cq_status add_tensor(cq_module *m, const char *name, cq_tensor *t, int is_param) {
  if (!t) return cq_fail(CQ_EINVAL, "%s: tensor '%s' is NULL", m->type->name, name);
  cq_tensor *grad = NULL;
  cq_status st = CQ_OK;
  if (is_param) st = cq_tensor_create(&grad, t->dtype, t->ndim, t->shape);
  cq_named_tensor *nt =
      st == CQ_OK ? cq_realloc(m->tensors, sizeof *nt * (size_t)(m->ntensors + 1)) : NULL;
  char *copy = nt ? dup_string(name) : NULL;
  if (nt) m->tensors = nt;
  if (!copy) {
    cq_tensor_free(grad);
    cq_tensor_free(t);
    return st != CQ_OK ? st : cq_fail(CQ_ENOMEM, "out of memory registering '%s'", name);
  }
  m->tensors[m->ntensors].name = copy;
  m->tensors[m->ntensors].tensor = t;
  m->tensors[m->ntensors].grad = grad;
  m->tensors[m->ntensors].is_parameter = is_param;
  m->ntensors++;
  return CQ_OK;
}

cq_status cq_module_add_parameter(cq_module *m, const char *name, cq_tensor *t) {
  return add_tensor(m, name, t, 1);
}

cq_status cq_module_add_buffer(cq_module *m, const char *name, cq_tensor *t) {
  return add_tensor(m, name, t, 0);
}

cq_named_tensor *cq_module_own_tensor(cq_module *m, const char *name) {
  for (int i = 0; i < m->ntensors; i++) {
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  }
  return NULL;
}

int cq_module_num_tensors(const cq_module *m) { return m->ntensors; }

cq_named_tensor *cq_module_tensor(cq_module *m, int index) {
  return index >= 0 && index < m->ntensors ? &m->tensors[index] : NULL;
}

cq_named_tensor *cq_module_find_tensor(cq_module *m, const char *key) {
  const char *dot = strrchr(key, '.');
  cq_module *owner = m;
  const char *local = key;
  if (dot) {
    char path[512];
    size_t len = (size_t)(dot - key);
    if (len >= sizeof path) {
      cq_fail(CQ_EINVAL, "state-dict key '%s' is too long", key);
      return NULL;
    }
    memcpy(path, key, len);
    path[len] = '\0';
    owner = cq_module_find(m, path);
    if (!owner) return NULL;
    local = dot + 1;
  }
  cq_named_tensor *t = cq_module_own_tensor(owner, local);
  if (!t) cq_fail(CQ_EINVAL, "no parameter or buffer named '%s'", key);
  return t;
}

static cq_status visit(cq_module *m, char *prefix, size_t len, size_t cap, cq_tensor_visitor fn,
                       void *user) {
  /* PyTorch's state_dict order: own parameters, own buffers, then children in order. */
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < m->ntensors; i++) {
      if (m->tensors[i].is_parameter != (pass == 0)) continue;
      int n = snprintf(prefix + len, cap - len, "%s", m->tensors[i].name);
      if (n < 0 || (size_t)n >= cap - len) return cq_fail(CQ_EINVAL, "state-dict key too long");
      cq_status st = fn(prefix, &m->tensors[i], user);
      if (st != CQ_OK) return st;
    }
  }
  for (int c = 0; c < m->nchildren; c++) {
    int n = snprintf(prefix + len, cap - len, "%s.", m->child_names[c]);
    if (n < 0 || (size_t)n >= cap - len) return cq_fail(CQ_EINVAL, "state-dict key too long");
    cq_status st = visit(m->children[c], prefix, len + (size_t)n, cap, fn, user);
    if (st != CQ_OK) return st;
  }
  prefix[len] = '\0';
  return CQ_OK;
}

cq_status cq_module_visit_tensors(cq_module *m, cq_tensor_visitor fn, void *user) {
  char prefix[1024];
  prefix[0] = '\0';
  return visit(m, prefix, 0, sizeof prefix, fn, user);
}

void cq_module_zero_grad(cq_module *m) {
  for (int i = 0; i < m->ntensors; i++) {
    if (m->tensors[i].grad) memset(m->tensors[i].grad->data, 0, cq_tensor_nbytes(m->tensors[i].grad));
  }
  for (int c = 0; c < m->nchildren; c++) cq_module_zero_grad(m->children[c]);
}

void cq_module_train(cq_module *m, int training) {
  m->training = training;
  for (int c = 0; c < m->nchildren; c++) cq_module_train(m->children[c], training);
}

int cq_module_is_training(const cq_module *m) { return m->training; }

/* --- printing ---------------------------------------------------------------------------------- */

static void module_repr(const cq_module *m, cq_strbuf *sb) {
  if (m->type->repr) {
    m->type->repr(m, sb);
    return;
  }
  cq_strbuf extra;
  cq_strbuf_init(&extra);
  if (m->type->extra_repr) m->type->extra_repr(m, &extra);
  const char *e = cq_strbuf_str(&extra);
  int one_line = e[0] && !strchr(e, '\n') && m->nchildren == 0;
  cq_strbuf_appendf(sb, "%s(", m->type->name);
  if (one_line) {
    cq_strbuf_append(sb, e);
  } else if (e[0] || m->nchildren) {
    if (e[0]) {
      cq_strbuf_append(sb, "\n  ");
      cq_strbuf_append_indented(sb, e, 2);
    }
    for (int c = 0; c < m->nchildren; c++) {
      cq_strbuf child;
      cq_strbuf_init(&child);
      module_repr(m->children[c], &child);
      cq_strbuf_appendf(sb, "\n  (%s): ", m->child_names[c]);
      cq_strbuf_append_indented(sb, cq_strbuf_str(&child), 2);
      if (child.failed) sb->failed = 1;
      cq_strbuf_release(&child);
    }
    cq_strbuf_append(sb, "\n");
  }
  cq_strbuf_append(sb, ")");
  if (extra.failed) sb->failed = 1;
  cq_strbuf_release(&extra);
}

size_t cq_module_repr(const cq_module *m, char *buf, size_t cap) {
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  module_repr(m, &sb);
  size_t n = cq_strbuf_copy_out(&sb, buf, cap);
  cq_strbuf_release(&sb);
  return n;
}

char *cq_module_repr_alloc(const cq_module *m) {
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  module_repr(m, &sb);
  if (sb.failed) {
    cq_strbuf_release(&sb);
    return NULL;
  }
  size_t n = sb.len + 1;
  char *out = malloc(n);
  if (out) memcpy(out, cq_strbuf_str(&sb), n);
  cq_strbuf_release(&sb);
  return out;
}

int cq_module_is(const cq_module *m, const char *type_name) {
  return m && strcmp(m->type->name, type_name) == 0;
}

cq_module *cq_module_detach_child(cq_module *m, const char *name) {
  int i = child_index(m, name, strlen(name));
  if (i < 0) return NULL;
  cq_module *child = m->children[i];
  cq_free(m->child_names[i]);
  for (int k = i + 1; k < m->nchildren; k++) {
    m->children[k - 1] = m->children[k];
    m->child_names[k - 1] = m->child_names[k];
  }
  m->nchildren--;
  if (m->post == child) m->post = NULL;
  child->parent = NULL;
  return child;
}

cq_status cq_module_set_qconfig(cq_module *m, const cq_qconfig *qconfig) {
  if (!qconfig) {
    cq_free(m->qconfig);
    m->qconfig = NULL;
    return CQ_OK;
  }
  if (!m->qconfig) {
    m->qconfig = cq_malloc_for(sizeof *m->qconfig, "a qconfig");
    if (!m->qconfig) return CQ_ENOMEM;
  }
  *m->qconfig = *qconfig;
  return CQ_OK;
}

const cq_qconfig *cq_module_get_qconfig(const cq_module *m) { return m->qconfig; }
