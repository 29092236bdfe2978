/* libFuzzer harness for the safetensors reader (cq_load_safetensors). Each input is written to a
 * temporary file (under /dev/shm, see fuzz_common.h) and loaded with strict = 0 into a freshly built
 * Sequential(Linear(5, 7), ReLU(), Linear(7, 3)), the model of tests/data/golden/safetensors/.
 *
 * Checks, besides crashes, leaks and undefined behaviour: a failure returns a one-line message
 * naming the file and leaves every tensor of the model as it was (the header's promise); after a
 * successful load the model runs forward, saves (cq_save_safetensors), and the saved file loads with
 * strict = 1 into a second model giving the same bytes. */
#include "fuzz_common.h"

static cq_module *cq_fuzz_st_model(void) {
  cq_module *l1 = NULL, *relu = NULL, *l2 = NULL, *seq = NULL;
  cq_manual_seed(0);
  if (cq_linear(&l1, 5, 7, 1) == CQ_OK && cq_relu(&relu) == CQ_OK &&
      cq_linear(&l2, 7, 3, 1) == CQ_OK) {
    cq_module *children[3] = {l1, relu, l2};
    if (cq_sequential(&seq, 3, children) == CQ_OK) return seq;
  }
  cq_module_free(l1);
  cq_module_free(relu);
  cq_module_free(l2);
  fprintf(stderr, "cquant fuzz: cannot build the model: %s\n", cq_last_error());
  return NULL;
}

/* The model's state as one byte string (tensor after tensor, state_dict order). */
typedef struct cq_fuzz_st_snapshot {
  unsigned char *bytes;
  size_t len, cap;
  int failed;
} cq_fuzz_st_snapshot;

static cq_status cq_fuzz_st_append(const char *key, cq_named_tensor *t, void *user) {
  (void)key;
  cq_fuzz_st_snapshot *s = user;
  size_t n = cq_tensor_nbytes(t->tensor);
  if (s->len + n > s->cap) {
    size_t cap = (s->len + n) * 2;
    unsigned char *p = realloc(s->bytes, cap);
    if (!p) {
      s->failed = 1;
      return CQ_ENOMEM;
    }
    s->bytes = p;
    s->cap = cap;
  }
  if (n) memcpy(s->bytes + s->len, t->tensor->data, n);
  s->len += n;
  return CQ_OK;
}

static int cq_fuzz_st_take(cq_module *m, cq_fuzz_st_snapshot *s) {
  memset(s, 0, sizeof *s);
  cq_module_visit_tensors(m, cq_fuzz_st_append, s);
  return !s->failed;
}

static void cq_fuzz_st_forward(cq_module *m) {
  cq_ctx *ctx = NULL;
  cq_tensor *x = NULL, *y = NULL;
  int64_t shape[2] = {2, 5};
  if (cq_ctx_create(&ctx) != CQ_OK || cq_tensor_create(&x, CQ_F32, 2, shape) != CQ_OK) goto done;
  float *xd = x->data;
  for (int i = 0; i < 10; i++) xd[i] = (float)(i - 4) * 0.25f;
  cq_status st = cq_module_forward1(m, ctx, x, &y);
  if (st != CQ_OK) {
    cq_fuzz_violation("forward after a successful load failed: %s", cq_last_error());
  } else if (!y || y->ndim != 2 || y->shape[0] != 2 || y->shape[1] != 3) {
    cq_fuzz_violation("forward after a successful load gave a wrong shape");
  }
done:
  cq_tensor_free(x);
  cq_ctx_free(ctx);
}

static void cq_fuzz_st_round_trip(cq_module *m) {
  char path[512];
  cq_fuzz_tmp_path(path, sizeof path, "st-roundtrip", ".safetensors");
  cq_status st = cq_save_safetensors(m, path);
  if (st != CQ_OK) {
    cq_fuzz_violation("cannot save a model it loaded: %s", cq_last_error());
    unlink(path);
    return;
  }
  cq_module *again = cq_fuzz_st_model();
  if (!again) {
    unlink(path);
    return;
  }
  st = cq_load_safetensors(again, path, 1);
  if (st != CQ_OK) {
    cq_fuzz_violation("cannot load (strict) what it saved: %s", cq_last_error());
  } else {
    cq_fuzz_st_snapshot a, b;
    if (cq_fuzz_st_take(m, &a) && cq_fuzz_st_take(again, &b) &&
        (a.len != b.len || (a.len && memcmp(a.bytes, b.bytes, a.len) != 0))) {
      cq_fuzz_violation("save + load changed the weights");
    }
    free(a.bytes);
    free(b.bytes);
  }
  cq_module_free(again);
  unlink(path);
}

int cq_fuzz_safetensors_one(const uint8_t *data, size_t size) {
  char path[512];
  cq_fuzz_tmp_path(path, sizeof path, "st", ".safetensors");
  if (cq_fuzz_write_file(path, data, size) != 0) return 0;
  cq_module *model = cq_fuzz_st_model();
  cq_fuzz_st_snapshot before = {0};
  if (!model || !cq_fuzz_st_take(model, &before)) goto done;
  cq_status st = cq_load_safetensors(model, path, 0);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_load_safetensors", st);
    if (!strstr(cq_last_error(), path)) {
      cq_fuzz_violation("cq_load_safetensors's message does not name the file: %s",
                        cq_last_error());
    }
    cq_fuzz_st_snapshot after;
    if (cq_fuzz_st_take(model, &after) &&
        (after.len != before.len || memcmp(after.bytes, before.bytes, before.len) != 0)) {
      cq_fuzz_violation("a failed load changed the model (%s)", cq_last_error());
    }
    free(after.bytes);
  } else {
    cq_fuzz_st_forward(model);
    cq_fuzz_st_round_trip(model);
  }
done:
  free(before.bytes);
  cq_module_free(model);
  unlink(path);
  return 0;
}

CQ_FUZZ_ENTRY_POINTS(cq_fuzz_safetensors_one)
