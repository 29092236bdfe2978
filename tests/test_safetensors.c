/* safetensors: PyTorch-exported weights load into the same model built in C and give PyTorch's
 * output; save/load round trips; malformed and mismatching files are rejected before the model
 * changes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cquant/cquant.h"

#define DIR CQ_TEST_DATA_DIR "/golden/safetensors/"

static cq_module *make_mlp(void) {
  cq_module *l1, *r, *l2, *seq;
  if (cq_linear(&l1, 5, 7, 1) != CQ_OK || cq_relu(&r) != CQ_OK || cq_linear(&l2, 7, 3, 1) != CQ_OK) {
    return NULL;
  }
  cq_module *children[3] = {l1, r, l2};
  return cq_sequential(&seq, 3, children) == CQ_OK ? seq : NULL;
}

/* max |a - b| / max(|b|, 1e-6) */
static double max_rel_err(const cq_tensor *a, const cq_tensor *b) {
  double worst = 0;
  const float *x = a->data, *y = b->data;
  for (int64_t i = 0; i < cq_tensor_numel(b); i++) {
    double d = fabs((double)x[i] - y[i]) / fmax(fabs((double)y[i]), 1e-6);
    if (d > worst) worst = d;
  }
  return worst;
}

static void check_forward(cq_module *m, const char *want_file, double tol) {
  cq_tensor *x = NULL, *want = NULL, *y = NULL;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_npy_load(DIR "mlp_input.npy", &x));
  CHECK_OK(cq_npy_load(want_file, &want));
  CHECK_OK(cq_ctx_create(&ctx));
  if (x && want && ctx) {
    CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    if (y) {
      double err = max_rel_err(y, want);
      CHECK_MSG(err <= tol, "%s: max relative error %g > %g", want_file, err, tol);
    }
  }
  cq_ctx_free(ctx);
  cq_tensor_free(x);
  cq_tensor_free(want);
}

static float first_weight(cq_module *m) {
  return ((float *)cq_module_find_tensor(m, "0.weight")->tensor->data)[0];
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(data, 1, n, f);
    fclose(f);
  }
}

static unsigned char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *d = malloc(*n);
  if (d && fread(d, 1, *n, f) != *n) {
    free(d);
    d = NULL;
  }
  fclose(f);
  return d;
}

/* A file made of an explicit header text and `data_len` zero bytes. */
static void write_header_file(const char *path, const char *json, size_t data_len) {
  size_t hl = strlen(json);
  unsigned char *buf = calloc(1, 8 + hl + data_len);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, json, hl);
  write_file(path, buf, 8 + hl + data_len);
  free(buf);
}

static void check_rejected(cq_module *m, const char *path, int strict, const char *needle) {
  float before = first_weight(m);
  cq_status st = cq_load_safetensors(m, path, strict);
  CHECK_MSG(st != CQ_OK, "%s: accepted", needle);
  CHECK_MSG(strstr(cq_last_error(), needle) != NULL && !strchr(cq_last_error(), '\n'),
            "message '%s' lacks '%s'", cq_last_error(), needle);
  CHECK_F32_BITS(first_weight(m), before);
}

int main(void) {
  cq_module *m = make_mlp();
  CHECK(m != NULL);
  if (!m) return check_summary("test_safetensors");

  CHECK_OK(cq_load_safetensors(m, DIR "mlp.safetensors", 1));
  check_forward(m, DIR "mlp_output.npy", 1e-5);
  cq_module *m64 = make_mlp();
  CHECK_OK(cq_load_safetensors(m64, DIR "mlp_f64.safetensors", 1));
  check_forward(m64, DIR "mlp_output.npy", 1e-5);
  cq_module *m16 = make_mlp();
  CHECK_OK(cq_load_safetensors(m16, DIR "mlp_f16.safetensors", 1));
  check_forward(m16, DIR "mlp_f16_output.npy", 1e-5);

  /* round trip: save, load into a fresh model, same output */
  const char *saved = CQ_TEST_TMP_DIR "/mlp_roundtrip.safetensors";
  CHECK_OK(cq_save_safetensors(m, saved));
  cq_module *m2 = make_mlp();
  CHECK_OK(cq_load_safetensors(m2, saved, 1));
  check_forward(m2, DIR "mlp_output.npy", 1e-5);

  /* malformed files */
  const char *bad = CQ_TEST_TMP_DIR "/bad.safetensors";
  size_t n = 0;
  unsigned char *good = read_file(DIR "mlp.safetensors", &n);
  CHECK(good != NULL);
  if (good) {
    write_file(bad, good, 5);
    check_rejected(m2, bad, 1, "too short");
    write_file(bad, good, n - 4);
    check_rejected(m2, bad, 1, "data_offsets");
    unsigned char *copy = malloc(n);
    memcpy(copy, good, n);
    copy[7] = 0x7f; /* header length far beyond the file */
    write_file(bad, copy, n);
    check_rejected(m2, bad, 1, "header length");
    memcpy(copy, good, n);
    copy[9] = '['; /* JSON that is not an object */
    write_file(bad, copy, n);
    check_rejected(m2, bad, 1, "not a JSON object");
    for (size_t cut = 0; cut < n; cut += 7) { /* every truncation fails cleanly */
      write_file(bad, good, cut);
      CHECK(cq_load_safetensors(m2, bad, 1) != CQ_OK);
    }
    free(copy);
    free(good);
  }
  write_header_file(bad, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[7,4],\"data_offsets\":[0,112]}}", 112);
  check_rejected(m2, bad, 0, "size mismatch for '0.weight'");
  write_header_file(bad, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[7,5],\"data_offsets\":[0,100]}}", 140);
  check_rejected(m2, bad, 0, "need 140");
  write_header_file(bad, "{\"0.weight\":{\"dtype\":\"Q4\",\"shape\":[7,5],\"data_offsets\":[0,140]}}", 140);
  check_rejected(m2, bad, 0, "unsupported dtype 'Q4'");
  write_header_file(bad, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,140]}}", 140);
  check_rejected(m2, bad, 0, "0.weight");
  write_header_file(bad, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[7,5],\"data_offsets\":[0,140]}}", 140);
  check_rejected(m2, bad, 1, "missing key '0.bias'");
  CHECK_OK(cq_load_safetensors(m2, bad, 0)); /* non-strict: loads what is there */
  CHECK_F32_BITS(first_weight(m2), 0.0f);
  write_header_file(bad, "{\"9.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
  check_rejected(m2, bad, 1, "unexpected key '9.weight'");
  check_rejected(m2, CQ_TEST_TMP_DIR "/does_not_exist.safetensors", 1, "cannot open");

  /* saving to an impossible place fails and leaves nothing */
  CHECK_STATUS(cq_save_safetensors(m, CQ_TEST_TMP_DIR "/no/such/dir/m.safetensors"), CQ_EIO);

  unlink(saved);
  unlink(bad);
  cq_module_free(m);
  cq_module_free(m2);
  cq_module_free(m16);
  cq_module_free(m64);
  return check_summary("test_safetensors");
}
