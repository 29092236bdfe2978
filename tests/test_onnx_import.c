/* cq_onnx_load against PyTorch 1.13's torch.onnx.export.
 *
 * Golden cases (tests/data/golden/onnx_models/cases.txt, from tools/golden/gen_onnx_models.py):
 * each model is loaded, must have the children named after PyTorch's modules, and run at two
 * batch sizes (the file's batch axis is dynamic); every output element must satisfy
 * max |cquant - torch| <= 1e-4 * max(1, max |torch|).
 *
 * Malformed files (tests/data/onnx_bad/, from tests/data/onnx_bad/make_bad.py, plus files made
 * here from valid bytes: truncations, garbage, an empty buffer): every one fails with the status
 * and a one-line message naming the node or the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/graph.h"
#include "cquant/modules.h"
#include "cquant/nn.h"
#include "cquant/npy.h"
#include "cquant/onnx.h"
#include "cquant/status.h"
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/onnx_models/cases.txt"
#define BAD_DIR CQ_TEST_DATA_DIR "/onnx_bad"
#define RTOL 1e-4

static double worst_error; /* largest max|a-b| / max(1, max|ref|) seen */
static double worst_qdq;   /* largest max|a-b| of the QDQ cases */

static double normwise_error(const cq_tensor *got, const cq_tensor *want) {
  const int64_t n = cq_tensor_numel(want);
  const float *a = got->data, *b = want->data;
  double maxref = 1.0, maxdiff = 0.0;
  for (int64_t i = 0; i < n; i++) maxref = fmax(maxref, fabs((double)b[i]));
  for (int64_t i = 0; i < n; i++) {
    const double d = fabs((double)a[i] - (double)b[i]);
    if (isnan(d)) return INFINITY;
    maxdiff = fmax(maxdiff, d);
  }
  return maxdiff / maxref;
}

static int same_shape(const cq_tensor *a, const cq_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int d = 0; d < a->ndim; d++) {
    if (a->shape[d] != b->shape[d]) return 0;
  }
  return 1;
}

static void run_case(const golden_file *g, const golden_case *c) {
  char path[1024];
  const char *model = golden_get(c, "model");
  CHECK(model != NULL);
  if (!model) return;
  cq_module *m = NULL;
  cq_status st = cq_onnx_load(golden_path(g, model, path, sizeof path), &m);
  CHECK_MSG(st == CQ_OK, "%s: load failed: %s", c->name, cq_last_error());
  if (st != CQ_OK) return;
  CHECK(cq_is_graph(m));
  CHECK(!cq_module_is_training(m));
  for (int i = 0; golden_get_nth(c, "module", i); i++) {
    char child[128], type[128];
    if (sscanf(golden_get_nth(c, "module", i), "%127s %127s", child, type) != 2) continue;
    cq_module *sub = cq_module_find(m, child);
    CHECK_MSG(sub && strcmp(cq_module_type_name(sub), type) == 0, "%s: child '%s' is %s, not %s",
              c->name, child, sub ? cq_module_type_name(sub) : "missing", type);
  }
  const char *tol = golden_get(c, "tolerance");
  for (int i = 0; golden_get_nth(c, "child", i); i++) {
    const char *child = golden_get_nth(c, "child", i);
    CHECK_MSG(cq_module_find(m, child) != NULL, "%s: no child '%s'", c->name, child);
  }
  for (int i = 0; golden_get_nth(c, "input", i); i++) {
    cq_tensor *x = NULL, *want = NULL, *got = NULL;
    cq_ctx *ctx = NULL;
    CHECK_OK(cq_npy_load(golden_path(g, golden_get_nth(c, "input", i), path, sizeof path), &x));
    CHECK_OK(cq_npy_load(golden_path(g, golden_get_nth(c, "output", i), path, sizeof path), &want));
    CHECK_OK(cq_ctx_create(&ctx));
    if (x && want && ctx) {
      st = cq_module_forward1(m, ctx, x, &got);
      CHECK_MSG(st == CQ_OK, "%s input %d: forward failed: %s", c->name, i, cq_last_error());
      if (st == CQ_OK) {
        CHECK_MSG(same_shape(got, want), "%s input %d: output shape differs", c->name, i);
        if (same_shape(got, want)) {
          if (tol) {
            /* quantized: absolute, in output quantization steps */
            double maxdiff = 0.0;
            const float *a = got->data, *b = want->data;
            for (int64_t k = 0; k < cq_tensor_numel(want); k++) {
              maxdiff = fmax(maxdiff, fabs((double)a[k] - (double)b[k]));
            }
            worst_qdq = fmax(worst_qdq, maxdiff);
            CHECK_MSG(maxdiff <= atof(tol), "%s input %d: max |diff| %.4g above %s", c->name, i,
                      maxdiff, tol);
          } else {
            const double err = normwise_error(got, want);
            if (err > worst_error) worst_error = err;
            CHECK_MSG(err <= RTOL, "%s input %d: error %.3g above %.1g", c->name, i, err, RTOL);
          }
        }
      }
    }
    cq_ctx_free(ctx);
    cq_tensor_free(x);
    cq_tensor_free(want);
  }
  cq_module_free(m);
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  for (int i = 0; i < g.count; i++) run_case(&g, &g.cases[i]);
  printf("onnx import: %d models, worst max|cquant - torch| / max(1, max|torch|) = %.3g; QDQ "
         "models: worst max|cquant - QDQ reference| = %.4g\n", g.count, worst_error, worst_qdq);
  golden_free(&g);
}

/* ---- malformed input ---- */

static unsigned char *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return buf;
}

static int one_line(const char *s) { return s[0] && !strchr(s, '\n'); }

/* Loads `path`, expects `want` and a message containing `needle`. */
static void expect_bad(const char *file, cq_status want, const char *needle) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", BAD_DIR, file);
  cq_module *m = (cq_module *)&m; /* must be reset to NULL */
  cq_status st = cq_onnx_load(path, &m);
  CHECK_MSG(st == want, "%s: got %s (%s), expected %s", file, cq_status_str(st), cq_last_error(),
            cq_status_str(want));
  CHECK(m == NULL);
  const char *msg = cq_last_error();
  CHECK_MSG(one_line(msg), "%s: message is not one line: %s", file, msg);
  CHECK_MSG(strstr(msg, needle) != NULL, "%s: message '%s' does not mention '%s'", file, msg,
            needle);
}

static void test_bad_files(void) {
  golden_file g;
  if (golden_load(BAD_DIR "/cases.txt", &g) != 0) {
    CHECK_MSG(0, "cannot load %s/cases.txt", BAD_DIR);
    return;
  }
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    const char *file = golden_get(c, "file"), *status = golden_get(c, "status");
    const char *needle = golden_get(c, "message");
    CHECK(file && status && needle);
    if (!file || !status || !needle) continue;
    cq_status want = CQ_OK;
    for (int s = 0; s < CQ_STATUS_COUNT; s++) {
      if (strcmp(cq_status_str((cq_status)s), status) == 0) want = (cq_status)s;
    }
    CHECK_MSG(want != CQ_OK, "%s: unknown status '%s'", c->name, status);
    expect_bad(file, want, needle);
  }
  printf("onnx import: %d malformed files refused\n", g.count);
  golden_free(&g);
}

static void test_truncated_and_garbage(void) {
  size_t size = 0;
  unsigned char *data = read_all(CQ_TEST_DATA_DIR "/golden/onnx_models/residual.onnx", &size);
  CHECK(data != NULL);
  if (!data) return;
  cq_module *m = NULL;
  CHECK_OK(cq_onnx_load_buffer(data, size, "residual.onnx", &m));
  cq_module_free(m);
  /* every truncation fails cleanly (most as malformed protobuf, some as missing parts) */
  int refused = 0;
  for (size_t cut = 0; cut < size; cut += (cut < 64 ? 1 : 37)) {
    m = NULL;
    cq_status st = cq_onnx_load_buffer(data, cut, "cut.onnx", &m);
    if (st != CQ_OK) {
      refused++;
      CHECK(m == NULL);
      CHECK_MSG(one_line(cq_last_error()), "cut %zu: %s", cut, cq_last_error());
      CHECK_MSG(strstr(cq_last_error(), "cut.onnx") != NULL, "cut %zu: %s", cut, cq_last_error());
    } else {
      cq_module_free(m);
    }
  }
  CHECK(refused > 0);
  /* flipped bytes: any status, never a crash */
  unsigned char *copy = malloc(size);
  CHECK(copy != NULL);
  for (size_t i = 0; copy && i < size; i += 7) {
    memcpy(copy, data, size);
    copy[i] ^= 0xA5;
    m = NULL;
    cq_status st = cq_onnx_load_buffer(copy, size, "flip.onnx", &m);
    if (st == CQ_OK) {
      cq_module_free(m);
    } else {
      CHECK(one_line(cq_last_error()));
    }
  }
  free(copy);
  const char garbage[] = "this is not an ONNX model at all \x01\x02\x03";
  CHECK_STATUS(cq_onnx_load_buffer(garbage, sizeof garbage, "garbage.onnx", &m), CQ_EFORMAT);
  CHECK_STATUS(cq_onnx_load_buffer(data, 0, "empty.onnx", &m), CQ_EFORMAT);
  CHECK_STATUS(cq_onnx_load(CQ_TEST_DATA_DIR "/no/such/file.onnx", &m), CQ_EIO);
  CHECK_STATUS(cq_onnx_load_buffer(data, size, NULL, NULL), CQ_EINVAL);
  free(data);
}

/* The generator state is not disturbed by an import (weights come from the file). */
static void test_rng_untouched(void) {
  cq_module *a = NULL, *b = NULL, *m = NULL;
  cq_manual_seed(7);
  CHECK_OK(cq_linear(&a, 3, 3, 1));
  cq_manual_seed(7);
  CHECK_OK(cq_onnx_load(CQ_TEST_DATA_DIR "/golden/onnx_models/cnn.onnx", &m));
  CHECK_OK(cq_linear(&b, 3, 3, 1));
  if (a && b) {
    CHECK(memcmp(cq_module_find_tensor(a, "weight")->tensor->data,
                 cq_module_find_tensor(b, "weight")->tensor->data, 9 * sizeof(float)) == 0);
  }
  cq_module_free(a);
  cq_module_free(b);
  cq_module_free(m);
}

/* Children are named after PyTorch's modules and print like them. */
static void test_names_and_print(void) {
  cq_module *m = NULL;
  CHECK_OK(cq_onnx_load(CQ_TEST_DATA_DIR "/golden/onnx_models/cnn.onnx", &m));
  if (!m) return;
  char *repr = cq_module_repr_alloc(m);
  CHECK(repr != NULL);
  if (repr) {
    CHECK_MSG(strncmp(repr, "GraphModule(\n", 13) == 0, "repr: %s", repr);
    CHECK_MSG(strstr(repr, "(conv1): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), "
                           "padding=(1, 1))") != NULL, "repr: %s", repr);
    CHECK_MSG(strstr(repr, "(fc1): Linear(in_features=392, out_features=32, bias=True)") != NULL,
              "repr: %s", repr);
    free(repr);
  }
  cq_module_free(m);
}

int main(void) {
  test_golden();
  test_names_and_print();
  test_rng_untouched();
  test_truncated_and_garbage();
  test_bad_files();
  return check_summary("test_onnx_import");
}
