/* Execution context: owns the tensors a forward pass produces, records the tape of leaf-module
 * calls when gradients are enabled, and runs backward over it.
 *
 * Tensor memory is recycled: cq_ctx_reset keeps the tensors of the run it ends (their data
 * buffers, without qparams) as spares, and cq_ctx_tensor hands a spare of the same byte size out
 * again, zero-filled, before allocating; spares not reused by the next reset are freed. Repeated
 * runs of one model on one shape thus stop allocating tensor memory after the first. */
#include <string.h>

#include "core/alloc.h"
#include "nn/module_impl.h"

/* A tensor the ctx owns, with the data buffer and size it was given (a tensor is only recycled if
 * both are still what they were). */
typedef struct owned {
  cq_tensor *t;
  void *data;
  size_t bytes;
} owned;

struct cq_ctx {
  owned *tensors; /* everything allocated through cq_ctx_tensor */
  int ntensors, cap_tensors;
  owned *spares;  /* the last run's tensors, for reuse */
  int nspares, cap_spares;
  cq_tape_entry *tape;
  int ntape, cap_tape;
  int grad_enabled;
  /* the call being recorded: forward's cq_ctx_save lands here */
  void *pending_saved;
  void (*pending_free)(void *);
  void *scratch; /* cq_ctx_scratch */
  size_t scratch_bytes;
  int depth; /* nesting of cq_module_forward calls now running */
  int hint_next; /* set by a container for the child it calls next */
  int wanted;    /* the running forward's output may be channels-last */
  /* cq_ctx_hint_clamp for the next call; the running forward's */
  int clamp_next, clamp;
  int32_t clamp_lo_next, clamp_hi_next, clamp_lo, clamp_hi;
  /* cq_graph_forward_profile: the graph whose node times go to profile_seconds */
  const cq_module *profile_graph;
  double *profile_seconds;
};

cq_status cq_ctx_create(cq_ctx **out) {
  *out = cq_calloc_for(1, sizeof **out, "execution context");
  return *out ? CQ_OK : CQ_ENOMEM;
}

static void free_saved(void *saved, void (*fn)(void *)) {
  if (!saved) return;
  if (fn) {
    fn(saved);
  } else {
    cq_free(saved);
  }
}

static void free_spares(cq_ctx *ctx) {
  for (int i = 0; i < ctx->nspares; i++) cq_tensor_free(ctx->spares[i].t);
  ctx->nspares = 0;
}

void cq_ctx_reset(cq_ctx *ctx) {
  free_spares(ctx);
  /* this run's tensors become the spares (the tracking array has room for all of them) */
  if (ctx->cap_spares < ctx->ntensors) {
    owned *p = cq_realloc(ctx->spares, sizeof *p * (size_t)ctx->cap_tensors);
    if (p) {
      ctx->spares = p;
      ctx->cap_spares = ctx->cap_tensors;
    }
  }
  for (int i = 0; i < ctx->ntensors; i++) {
    owned o = ctx->tensors[i];
    if (o.t->owns_data && o.t->data == o.data && ctx->nspares < ctx->cap_spares) {
      if (o.t->qparams) {
        cq_qparams_release(o.t->qparams);
        cq_free(o.t->qparams);
        o.t->qparams = NULL;
      }
      ctx->spares[ctx->nspares++] = o;
    } else {
      cq_tensor_free(o.t);
    }
  }
  ctx->ntensors = 0;
  for (int i = 0; i < ctx->ntape; i++) free_saved(ctx->tape[i].saved, ctx->tape[i].free_saved);
  ctx->ntape = 0;
  free_saved(ctx->pending_saved, ctx->pending_free);
  ctx->pending_saved = NULL;
}

void cq_ctx_free(cq_ctx *ctx) {
  if (!ctx) return;
  cq_ctx_reset(ctx);
  free_spares(ctx);
  cq_free(ctx->scratch);
  cq_free(ctx->tensors);
  cq_free(ctx->spares);
  cq_free(ctx->tape);
  cq_free(ctx);
}

void cq_ctx_set_grad(cq_ctx *ctx, int enabled) { ctx->grad_enabled = enabled; }
int cq_ctx_grad_enabled(const cq_ctx *ctx) { return ctx->grad_enabled; }

void cq_ctx_save(cq_ctx *ctx, void *saved, void (*free_fn)(void *)) {
  free_saved(ctx->pending_saved, ctx->pending_free);
  ctx->pending_saved = saved;
  ctx->pending_free = free_fn;
}

static cq_status track(cq_ctx *ctx, cq_tensor *t, size_t bytes) {
  if (ctx->ntensors == ctx->cap_tensors) {
    int cap = ctx->cap_tensors ? ctx->cap_tensors * 2 : 64;
    owned *p = cq_realloc(ctx->tensors, sizeof *p * (size_t)cap);
    if (!p) {
      cq_tensor_free(t);
      return cq_fail(CQ_ENOMEM, "out of memory tracking a tensor");
    }
    ctx->tensors = p;
    ctx->cap_tensors = cap;
  }
  ctx->tensors[ctx->ntensors++] = (owned){t, t->data, bytes};
  return CQ_OK;
}

/* A spare of `bytes` made into a fresh tensor of this dtype and shape (zero-filled with `zero`),
 * or NULL. */
static cq_tensor *reuse_spare(cq_ctx *ctx, size_t bytes, cq_dtype dtype, int ndim,
                              const int64_t *shape, int zero) {
  for (int i = ctx->nspares - 1; i >= 0; i--) {
    if (ctx->spares[i].bytes != bytes) continue;
    cq_tensor *t = ctx->spares[i].t;
    ctx->spares[i] = ctx->spares[--ctx->nspares];
    void *data = t->data;
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t stride = 1;
    for (int d = ndim - 1; d >= 0; d--) {
      t->shape[d] = shape[d];
      t->strides[d] = stride;
      stride *= shape[d] ? shape[d] : 1;
    }
    t->data = data;
    t->owns_data = 1;
    if (zero) memset(data, 0, bytes);
    return t;
  }
  return NULL;
}

void *cq_ctx_scratch(cq_ctx *ctx, size_t bytes, const char *what) {
  if (bytes <= ctx->scratch_bytes && ctx->scratch) return ctx->scratch;
  cq_free(ctx->scratch);
  ctx->scratch = cq_malloc_for(bytes ? bytes : 1, what);
  ctx->scratch_bytes = ctx->scratch ? bytes : 0;
  return ctx->scratch;
}

static cq_status ctx_tensor(cq_ctx *ctx, cq_dtype dtype, int ndim, const int64_t *shape,
                            int zero, cq_tensor **out) {
  *out = NULL;
  const cq_dtype_info *info = cq_dtype_get(dtype);
  int64_t numel = 0;
  cq_status st = info ? cq_shape_numel(ndim, shape, info->size, &numel)
                      : cq_fail(CQ_EINVAL, "invalid dtype %d", (int)dtype);
  if (st != CQ_OK) return st;
  const size_t bytes = (size_t)numel * info->size;
  cq_tensor *t = bytes > 0 ? reuse_spare(ctx, bytes, dtype, ndim, shape, zero) : NULL;
  if (!t) {
    st = cq_tensor_create(&t, dtype, ndim, shape);
    if (st != CQ_OK) return st;
  }
  st = track(ctx, t, bytes);
  if (st == CQ_OK) *out = t;
  return st;
}

cq_status cq_ctx_tensor(cq_ctx *ctx, cq_dtype dtype, int ndim, const int64_t *shape,
                        cq_tensor **out) {
  return ctx_tensor(ctx, dtype, ndim, shape, 1, out);
}

cq_status cq_ctx_tensor_unset(cq_ctx *ctx, cq_dtype dtype, int ndim, const int64_t *shape,
                              cq_tensor **out) {
  return ctx_tensor(ctx, dtype, ndim, shape, 0, out);
}

static cq_status contiguous_all(cq_ctx *ctx, int n, cq_tensor **t) {
  for (int i = 0; i < n; i++) {
    if (!t[i] || !t[i]->channels_last) continue;
    cq_status st = cq_ctx_contiguous(ctx, t[i], &t[i]);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

static cq_status record(cq_ctx *ctx, cq_module *m, int nin, cq_tensor *const *in, int nout,
                        cq_tensor **out) {
  if (ctx->ntape == ctx->cap_tape) {
    int cap = ctx->cap_tape ? ctx->cap_tape * 2 : 32;
    cq_tape_entry *p = cq_realloc(ctx->tape, sizeof *p * (size_t)cap);
    if (!p) return cq_fail(CQ_ENOMEM, "out of memory recording the tape");
    ctx->tape = p;
    ctx->cap_tape = cap;
  }
  cq_tape_entry *e = &ctx->tape[ctx->ntape++];
  memset(e, 0, sizeof *e);
  e->module = m;
  e->nin = nin;
  e->nout = nout;
  for (int i = 0; i < nin; i++) e->in[i] = in[i];
  for (int i = 0; i < nout; i++) e->out[i] = out[i];
  e->saved = ctx->pending_saved;
  e->free_saved = ctx->pending_free;
  ctx->pending_saved = NULL;
  return CQ_OK;
}

cq_status cq_module_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                            cq_tensor **out) {
  const cq_module_type *t = m->type;
  if (!t->forward) return cq_module_fail(m, CQ_EUNSUPPORTED, "this module cannot be run");
  if (nin < t->nin_min || nin > t->nin_max || nin > CQ_MAX_IO) {
    return cq_module_fail(m, CQ_EINVAL, "takes %d to %d inputs, got %d", t->nin_min, t->nin_max,
                          nin);
  }
  if (nout < t->nout_min || nout > t->nout_max || nout > CQ_MAX_IO) {
    return cq_module_fail(m, CQ_EINVAL, "gives %d to %d outputs, %d requested", t->nout_min,
                          t->nout_max, nout);
  }
  cq_tensor *args[CQ_MAX_IO];
  for (int i = 0; i < nin; i++) {
    if (!in[i]) return cq_module_fail(m, CQ_EINVAL, "input %d is NULL", i);
    args[i] = in[i];
  }
  for (int i = 0; i < nout; i++) out[i] = NULL;
  free_saved(ctx->pending_saved, ctx->pending_free);
  ctx->pending_saved = NULL;
  const int wanted = ctx->hint_next && ctx->depth > 0 && cq_channels_last_enabled();
  ctx->hint_next = 0;
  cq_status st = cq_module_reads_channels_last(m, wanted) ? CQ_OK : contiguous_all(ctx, nin, args);
  if (st != CQ_OK) return cq_fail_context(st, "%s", t->name);
  const int outer_wanted = ctx->wanted, outer_clamp = ctx->clamp;
  const int32_t outer_lo = ctx->clamp_lo, outer_hi = ctx->clamp_hi;
  ctx->wanted = wanted;
  ctx->clamp = ctx->clamp_next && t->fuses_clamp;
  ctx->clamp_lo = ctx->clamp_lo_next;
  ctx->clamp_hi = ctx->clamp_hi_next;
  ctx->clamp_next = 0;
  ctx->depth++;
  st = t->forward(m, ctx, nin, args, nout, out);
  ctx->depth--;
  ctx->wanted = outer_wanted;
  ctx->clamp = outer_clamp;
  ctx->clamp_lo = outer_lo;
  ctx->clamp_hi = outer_hi;
  if (st != CQ_OK) {
    free_saved(ctx->pending_saved, ctx->pending_free);
    ctx->pending_saved = NULL;
    return st;
  }
  if (ctx->grad_enabled && t->backward) {
    st = record(ctx, m, nin, args, nout, out);
    if (st != CQ_OK) return st;
  } else {
    free_saved(ctx->pending_saved, ctx->pending_free);
    ctx->pending_saved = NULL;
  }
  if (m->post) {
    cq_tensor *observed = NULL;
    st = cq_module_forward(m->post, ctx, 1, &out[0], 1, &observed);
    if (st != CQ_OK) return st;
    out[0] = observed;
  }
  /* what the caller of the outermost call receives is always contiguous */
  return ctx->depth == 0 ? contiguous_all(ctx, nout, out) : CQ_OK;
}

int cq_ctx_outermost(const cq_ctx *ctx) { return ctx->depth == 0; }

void cq_ctx_hint_channels_last(cq_ctx *ctx, int wanted) { ctx->hint_next = wanted != 0; }
int cq_ctx_channels_last_wanted(const cq_ctx *ctx) { return ctx->wanted; }

void cq_ctx_set_profile(cq_ctx *ctx, const cq_module *graph, double *seconds) {
  ctx->profile_graph = graph;
  ctx->profile_seconds = seconds;
}

double *cq_ctx_profile_of(const cq_ctx *ctx, const cq_module *graph) {
  return graph == ctx->profile_graph ? ctx->profile_seconds : NULL;
}

int cq_module_clamp_fold(const cq_module *producer, const cq_module *clamp, int32_t *lo,
                         int32_t *hi) {
  float scale;
  int32_t zp;
  int upper = 0;
  return clamp->type->clamp_of && producer->type->fuses_clamp && !clamp->post && !producer->post &&
         producer->type->fuses_clamp(producer, &scale, &zp, &upper) &&
         clamp->type->clamp_of(clamp, scale, zp, lo, hi) && *lo <= *hi && (*hi >= 255 || upper);
}

void cq_ctx_hint_clamp(cq_ctx *ctx, int on, int32_t lo, int32_t hi) {
  ctx->clamp_next = on != 0;
  ctx->clamp_lo_next = lo;
  ctx->clamp_hi_next = hi;
}

int cq_ctx_fused_clamp(const cq_ctx *ctx, int32_t *lo, int32_t *hi) {
  *lo = ctx->clamp_lo;
  *hi = ctx->clamp_hi;
  return ctx->clamp;
}

cq_status cq_module_forward1(cq_module *m, cq_ctx *ctx, cq_tensor *in, cq_tensor **out) {
  return cq_module_forward(m, ctx, 1, &in, 1, out);
}

/* --- backward ---------------------------------------------------------------------------------- */

typedef struct grad_map {
  cq_tensor **keys;
  cq_tensor **grads;
  int n, cap;
} grad_map;

static cq_tensor *grad_lookup(const grad_map *g, const cq_tensor *key) {
  for (int i = g->n - 1; i >= 0; i--) {
    if (g->keys[i] == key) return g->grads[i];
  }
  return NULL;
}

/* Adds `grad` into the gradient of `key` (the first gradient is taken as is). */
static cq_status grad_accumulate(grad_map *g, cq_tensor *key, cq_tensor *grad) {
  cq_tensor *have = grad_lookup(g, key);
  if (have) {
    float *a = have->data;
    const float *b = grad->data;
    int64_t n = cq_tensor_numel(have);
    for (int64_t i = 0; i < n; i++) a[i] += b[i];
    return CQ_OK;
  }
  if (g->n == g->cap) {
    int cap = g->cap ? g->cap * 2 : 32;
    cq_tensor **k = cq_realloc(g->keys, sizeof *k * (size_t)cap);
    if (k) g->keys = k;
    cq_tensor **v = k ? cq_realloc(g->grads, sizeof *v * (size_t)cap) : NULL;
    if (v) g->grads = v;
    if (!k || !v) return cq_fail(CQ_ENOMEM, "out of memory during backward");
    g->cap = cap;
  }
  g->keys[g->n] = key;
  g->grads[g->n] = grad;
  g->n++;
  return CQ_OK;
}

static int same_shape(const cq_tensor *a, const cq_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != b->shape[i]) return 0;
  }
  return 1;
}

/* A gradient that backward returned for two inputs, or passed through from an output, must not be
 * stored as is: accumulation adds into stored gradients in place. */
static int aliased(cq_tensor *const *gin, int k, cq_tensor *const *gout, int nout) {
  for (int j = 0; j < k; j++) {
    if (gin[j] == gin[k]) return 1;
  }
  for (int o = 0; o < nout; o++) {
    if (gout[o] == gin[k]) return 1;
  }
  return 0;
}

static cq_status copy_tensor(cq_ctx *ctx, cq_tensor **t) {
  cq_tensor *c;
  cq_status st = cq_ctx_tensor(ctx, (*t)->dtype, (*t)->ndim, (*t)->shape, &c);
  if (st != CQ_OK) return st;
  memcpy(c->data, (*t)->data, cq_tensor_nbytes(*t));
  *t = c;
  return CQ_OK;
}

cq_status cq_ctx_backward_multi(cq_ctx *ctx, int nout, cq_tensor *const *outputs,
                                const cq_tensor *const *grads, int nin, cq_tensor *const *inputs,
                                cq_tensor **input_grads) {
  for (int i = 0; i < nin; i++) {
    if (input_grads) input_grads[i] = NULL;
  }
  for (int o = 0; o < nout; o++) {
    if (!outputs[o] || !grads[o] || !same_shape(outputs[o], grads[o]) ||
        grads[o]->dtype != CQ_F32 || outputs[o]->dtype != CQ_F32) {
      return cq_fail(CQ_ESHAPE, "backward: gradient %d must be float32 with its output's shape", o);
    }
  }
  grad_map g = {0};
  cq_status st = CQ_OK;
  for (int o = 0; o < nout && st == CQ_OK; o++) {
    cq_tensor *seed;
    st = cq_ctx_tensor(ctx, CQ_F32, grads[o]->ndim, grads[o]->shape, &seed);
    if (st != CQ_OK) break;
    memcpy(seed->data, grads[o]->data, cq_tensor_nbytes(grads[o]));
    st = grad_accumulate(&g, outputs[o], seed);
  }
  for (int i = ctx->ntape - 1; i >= 0 && st == CQ_OK; i--) {
    cq_tape_entry *e = &ctx->tape[i];
    int any = 0;
    cq_tensor *gout[CQ_MAX_IO] = {0};
    for (int o = 0; o < e->nout; o++) {
      gout[o] = grad_lookup(&g, e->out[o]);
      if (gout[o]) any = 1;
    }
    if (!any) continue;
    for (int o = 0; o < e->nout && st == CQ_OK; o++) {
      if (!gout[o]) st = cq_ctx_tensor(ctx, CQ_F32, e->out[o]->ndim, e->out[o]->shape, &gout[o]);
    }
    if (st != CQ_OK) break;
    cq_tensor *gin[CQ_MAX_IO] = {0};
    st = e->module->type->backward(e->module, ctx, e, gout, gin);
    for (int k = 0; k < e->nin && st == CQ_OK; k++) {
      if (gin[k] && aliased(gin, k, gout, e->nout)) st = copy_tensor(ctx, &gin[k]);
      if (gin[k] && st == CQ_OK) st = grad_accumulate(&g, e->in[k], gin[k]);
    }
  }
  if (st == CQ_OK && input_grads) {
    for (int i = 0; i < nin; i++) input_grads[i] = inputs[i] ? grad_lookup(&g, inputs[i]) : NULL;
  }
  cq_free(g.keys);
  cq_free(g.grads);
  return st;
}

cq_status cq_ctx_backward(cq_ctx *ctx, cq_tensor *output, const cq_tensor *grad, cq_tensor *input,
                          cq_tensor **input_grad) {
  return cq_ctx_backward_multi(ctx, 1, &output, &grad, input ? 1 : 0, &input, input_grad);
}
