/* nn.Sequential: children "0", "1", ... run one after the other. A clamp (ReLU, ReLU6, Hardtanh)
 * right after a quantized conv or linear is folded into it at run time (cq_module_clamp_fold). */
#include <stdio.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "nn/module_impl.h"

/* wants[i]: whether child i's output is read channels-last by what follows it (the last child's
 * by the Sequential's own consumer, `after`), computed from the back. */
static void children_want(const cq_module *m, int after, int *wants) {
  for (int i = m->nchildren - 1; i >= 0; i--) {
    wants[i] = after;
    after = cq_module_reads_channels_last(m->children[i], after);
  }
}

static int sequential_reads_channels_last(const cq_module *m, int after) {
  for (int i = m->nchildren - 1; i >= 0; i--) after = cq_module_reads_channels_last(m->children[i], after);
  return after;
}

#define SEQ_STACK_CHILDREN 64

static cq_status sequential_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                    int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  cq_tensor *x = in[0];
  int stack_wants[SEQ_STACK_CHILDREN];
  int *wants = stack_wants;
  if (m->nchildren > SEQ_STACK_CHILDREN) {
    wants = cq_malloc_for((size_t)m->nchildren * sizeof *wants, "Sequential layout plan");
    if (!wants) return CQ_ENOMEM;
  }
  children_want(m, cq_ctx_channels_last_wanted(ctx), wants);
  cq_status st = CQ_OK;
  for (int i = 0; i < m->nchildren && st == CQ_OK; i++) {
    cq_tensor *y = NULL;
    /* a clamp child after one that can clamp its own output runs in that child's output stage
     * (the same bytes; nothing else reads the output in between) */
    int32_t lo = 0, hi = 0;
    const int fold = i + 1 < m->nchildren &&
                     cq_module_clamp_fold(m->children[i], m->children[i + 1], &lo, &hi);
    /* a folded child passes on the layout its clamp's consumer reads */
    cq_ctx_hint_channels_last(ctx, wants[fold ? i + 1 : i]);
    cq_ctx_hint_clamp(ctx, fold, lo, hi);
    st = cq_module_forward1(m->children[i], ctx, x, &y);
    cq_ctx_hint_clamp(ctx, 0, 0, 0);
    if (st != CQ_OK) {
      st = cq_fail_context(st, "Sequential child (%s)", m->child_names[i]);
    } else {
      x = y;
      i += fold;
    }
  }
  if (wants != stack_wants) cq_free(wants);
  if (st != CQ_OK) return st;
  out[0] = x;
  return CQ_OK;
}

static const cq_module_type sequential_type = {
    .name = "Sequential",
    .forward = sequential_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    .reads_channels_last = sequential_reads_channels_last,
};

cq_status cq_sequential_append(cq_module *seq, cq_module *child) {
  char name[24];
  snprintf(name, sizeof name, "%d", seq->nchildren);
  return cq_module_add_child(seq, name, child);
}

cq_status cq_sequential(cq_module **out, int n, cq_module *const *children) {
  cq_status st = cq_module_new(&sequential_type, NULL, out);
  for (int i = 0; i < n; i++) {
    if (st == CQ_OK) {
      st = cq_sequential_append(*out, children[i]);
    } else {
      cq_module_free(children[i]);
    }
  }
  if (st != CQ_OK) {
    cq_module_free(*out);
    *out = NULL;
  }
  return st;
}
