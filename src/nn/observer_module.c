/* An observer as a module (the activation_post_process PyTorch attaches): forward observes the
 * input and returns it unchanged; printing is the observer's own repr. */
#include "cquant/quantization.h"
#include "core/alloc.h"
#include "nn/module_impl.h"

static cq_status observer_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                  int nout, cq_tensor **out) {
  (void)ctx;
  (void)nin;
  (void)nout;
  cq_status st = cq_observer_update_tensor(m->impl, in[0]);
  if (st != CQ_OK) return cq_fail_context(st, "%s", cq_observer_class_name(cq_observer_config_of(m->impl)->kind));
  out[0] = in[0];
  return CQ_OK;
}

static void observer_repr(const cq_module *m, cq_strbuf *sb) {
  size_t n = cq_observer_repr(m->impl, NULL, 0);
  char *buf = cq_malloc_for(n + 1, "an observer repr");
  if (!buf) {
    sb->failed = 1;
    return;
  }
  cq_observer_repr(m->impl, buf, n + 1);
  cq_strbuf_append(sb, buf);
  cq_free(buf);
}

static void observer_destroy(void *impl) { cq_observer_free(impl); }

static const cq_module_type observer_module_type = {
    .name = "Observer",
    .forward = observer_forward,
    .repr = observer_repr,
    .destroy_impl = observer_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_observer_module(cq_module **out, cq_observer *observer) {
  *out = NULL;
  if (!observer) return cq_fail(CQ_EINVAL, "observer module: the observer is NULL");
  return cq_module_new(&observer_module_type, observer, out);
}

cq_observer *cq_observer_module_get(cq_module *m) {
  return m && m->type == &observer_module_type ? m->impl : NULL;
}
