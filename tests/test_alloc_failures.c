/* Allocation failures along the main path, end to end: build a float model -> save its weights
 * (safetensors) -> build a second model and load them -> fuse -> prepare -> calibrate -> convert ->
 * run -> save the quantized model's state dict and load it back -> save the output (.npy) and load
 * it back.
 *
 * With cq_debug_fail_alloc_after(N) the library's (N+1)-th allocation fails, for N = 0, 1, 2, ...
 * until the whole path succeeds. Every run must stop at the first failing step with CQ_ENOMEM and
 * a one-line message, free everything (the suite also runs under ASan/LeakSanitizer, where a leak
 * fails the test), leave no temporary file behind, and not crash. The run that finally succeeds
 * must give exactly the output of a run without injected failures. Steps that existing tests sweep
 * on their own (test_npy, test_qstatic, test_qdynamic, test_passes, ...) are swept here together,
 * as a user calls them, so a failure in one step that corrupts state for a later one shows up. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cquant/cquant.h"

#define WORK_DIR CQ_TEST_TMP_DIR "/alloc_failures"
#define FLOAT_WEIGHTS WORK_DIR "/float.safetensors"
#define QUANT_WEIGHTS WORK_DIR "/quantized.safetensors"
#define OUTPUT_NPY WORK_DIR "/output.npy"
/* The path makes a few thousand allocations; a sweep that gets this far has lost its way. */
#define MAX_SWEEP 200000

/* Sequential(QuantStub, Conv2d(2,4,3,p1), BN(4), ReLU, MaxPool2d(2), Flatten, Linear(64,8), ReLU,
 * Linear(8,3), DeQuantStub); NULL (status in *st) when any constructor fails. */
static cq_module *build_model(cq_status *st) {
  cq_module *c[10] = {NULL};
  cq_conv_options co = cq_conv_defaults(2, 4, 3, 3);
  co.padding[0] = co.padding[1] = 1;
  cq_pool_options po = cq_pool_defaults(2, 2);
  *st = cq_quant_stub(&c[0]);
  if (*st == CQ_OK) *st = cq_conv2d(&c[1], &co);
  if (*st == CQ_OK) *st = cq_batchnorm2d(&c[2], 4);
  if (*st == CQ_OK) *st = cq_relu(&c[3]);
  if (*st == CQ_OK) *st = cq_maxpool2d(&c[4], &po);
  if (*st == CQ_OK) *st = cq_flatten(&c[5], 1, -1);
  if (*st == CQ_OK) *st = cq_linear(&c[6], 64, 8, 1);
  if (*st == CQ_OK) *st = cq_relu(&c[7]);
  if (*st == CQ_OK) *st = cq_linear(&c[8], 8, 3, 1);
  if (*st == CQ_OK) *st = cq_dequant_stub(&c[9]);
  if (*st != CQ_OK) {
    for (int i = 0; i < 10; i++) cq_module_free(c[i]);
    return NULL;
  }
  cq_module *m = NULL;
  *st = cq_sequential(&m, 10, c); /* owns the children from here on, even when it fails */
  return *st == CQ_OK ? m : NULL;
}

typedef struct fixtures {
  cq_tensor *calib[2];
  cq_tensor *input;
} fixtures;

/* One pass over the path; the last step's status, the first that failed. *out: the model's
 * output as loaded back from the .npy (caller frees), on success. `step` names the failing step. */
static cq_status run_path(const fixtures *fx, cq_tensor **out, const char **step) {
  cq_module *a = NULL, *b = NULL;
  cq_ctx *ctx = NULL;
  cq_tensor *y = NULL;
  cq_status st;
  *out = NULL;
  cq_manual_seed(11);
#define STEP(name, expr)      \
  do {                        \
    *step = name;             \
    st = (expr);              \
    if (st != CQ_OK) goto done; \
  } while (0)
  *step = "build model";
  a = build_model(&st);
  if (st != CQ_OK) goto done;
  STEP("save float safetensors", cq_save_safetensors(a, FLOAT_WEIGHTS));
  *step = "build second model";
  b = build_model(&st);
  if (st != CQ_OK) goto done;
  STEP("load float safetensors", cq_load_safetensors(b, FLOAT_WEIGHTS, 1));
  cq_module_train(b, 0);
  const char *group1[3] = {"1", "2", "3"}, *group2[2] = {"6", "7"};
  STEP("fuse conv-bn-relu", cq_fuse_modules(b, 3, group1));
  STEP("fuse linear-relu", cq_fuse_modules(b, 2, group2));
  cq_qconfig qc;
  STEP("qconfig", cq_get_default_qconfig(CQ_BACKEND_X86, 0, &qc));
  STEP("set qconfig", cq_module_set_qconfig(b, &qc));
  STEP("prepare", cq_prepare(b));
  STEP("context", cq_ctx_create(&ctx));
  for (int i = 0; i < 2; i++) {
    cq_tensor *ignored = NULL;
    STEP("calibrate", cq_module_forward1(b, ctx, fx->calib[i], &ignored));
    cq_ctx_reset(ctx);
  }
  STEP("convert", cq_convert(b));
  STEP("run", cq_module_forward1(b, ctx, fx->input, &y));
  STEP("save quantized safetensors", cq_save_safetensors(b, QUANT_WEIGHTS));
  STEP("load quantized safetensors", cq_load_safetensors(b, QUANT_WEIGHTS, 1));
  STEP("save npy", cq_npy_save(OUTPUT_NPY, y));
  STEP("load npy", cq_npy_load(OUTPUT_NPY, out));
#undef STEP
done:
  cq_ctx_free(ctx);
  cq_module_free(a);
  cq_module_free(b);
  return st;
}

/* Files in WORK_DIR whose names contain ".tmp." (an atomic save that was not cleaned up). */
static int stray_temporaries(void) {
  DIR *d = opendir(WORK_DIR);
  if (!d) return 0;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strstr(e->d_name, ".tmp.")) n++;
  }
  closedir(d);
  return n;
}

static void remove_outputs(void) {
  remove(FLOAT_WEIGHTS);
  remove(QUANT_WEIGHTS);
  remove(OUTPUT_NPY);
}

static cq_tensor *random_tensor(int64_t n, int64_t c, int64_t h, int64_t w, unsigned seed) {
  const int64_t shape[4] = {n, c, h, w};
  cq_tensor *t = NULL;
  CHECK_OK(cq_tensor_create(&t, CQ_F32, 4, shape));
  if (!t) return NULL;
  float *d = t->data;
  for (int64_t i = 0; i < cq_tensor_numel(t); i++) {
    seed = seed * 1103515245u + 12345u;
    d[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
  return t;
}

int main(void) {
  mkdir(WORK_DIR, 0777);
  fixtures fx = {{random_tensor(4, 2, 8, 8, 1), random_tensor(4, 2, 8, 8, 2)},
                 random_tensor(2, 2, 8, 8, 3)};
  if (!fx.calib[0] || !fx.calib[1] || !fx.input) return check_summary("test_alloc_failures");

  /* the reference: no injected failure */
  const char *step = "";
  cq_tensor *want = NULL;
  remove_outputs();
  cq_status st = run_path(&fx, &want, &step);
  CHECK_MSG(st == CQ_OK, "the path fails without injected failures at %s: %s", step,
            cq_last_error());

  long n = 0;
  int failures = 0, nsteps = 0;
  const char *steps[32]; /* the distinct steps that failed */
  for (; n < MAX_SWEEP && want; n++) {
    remove_outputs();
    cq_tensor *got = NULL;
    cq_debug_fail_alloc_after(n);
    st = run_path(&fx, &got, &step);
    cq_debug_fail_alloc_after(-1);
    CHECK_MSG(stray_temporaries() == 0, "N=%ld (%s): a temporary file was left in %s", n, step,
              WORK_DIR);
    if (st == CQ_OK) {
      const int same = got && got->dtype == want->dtype &&
                       cq_tensor_nbytes(got) == cq_tensor_nbytes(want) &&
                       memcmp(got->data, want->data, cq_tensor_nbytes(want)) == 0;
      CHECK_MSG(same, "N=%ld: the first run without a failure gives another output", n);
      cq_tensor_free(got);
      break;
    }
    failures++;
    int seen = 0;
    for (int i = 0; i < nsteps; i++) seen |= strcmp(steps[i], step) == 0;
    if (!seen && nsteps < 32) steps[nsteps++] = step;
    const char *msg = cq_last_error();
    CHECK_MSG(st == CQ_ENOMEM, "N=%ld (%s): status %s, want CQ_ENOMEM: %s", n, step,
              cq_status_str(st), msg);
    CHECK_MSG(msg[0] != '\0' && strchr(msg, '\n') == NULL, "N=%ld (%s): message '%s' is not one "
              "non-empty line", n, step, msg);
    CHECK_MSG(got == NULL, "N=%ld (%s): a failed load returned a tensor", n, step);
    cq_tensor_free(got);
    if (check_failed > 20) break; /* one bug repeats at every N; keep the report short */
  }
  CHECK_MSG(n < MAX_SWEEP, "the path never succeeded within %d injected failures", MAX_SWEEP);
  CHECK(failures > 100); /* the sweep reached deep into the path */
  CHECK(nsteps >= 14); /* every step allocates, so every step failed at some N */
  printf("test_alloc_failures: %d runs with the (N+1)-th allocation failing (N = 0..%ld), in %d "
         "steps, each CQ_ENOMEM with a one-line message; N = %ld succeeds with the reference "
         "output\n", failures, n - 1, nsteps, n);
  for (int i = 0; i < nsteps; i++) printf("  failed in: %s\n", steps[i]);
  remove_outputs();
  rmdir(WORK_DIR);
  cq_tensor_free(want);
  cq_tensor_free(fx.calib[0]);
  cq_tensor_free(fx.calib[1]);
  cq_tensor_free(fx.input);
  return check_summary("test_alloc_failures");
}
