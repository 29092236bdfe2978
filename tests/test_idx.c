/* IDX reader: every element type, plain and gzip, bad files, and the real Fashion-MNIST files when
 * Debian's dataset-fashion-mnist is installed. */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "check.h"
#include "cquant/cquant.h"

#define TMP CQ_TEST_TMP_DIR "/idx_test"

static void write_bytes(const char *path, const unsigned char *b, size_t n, int gz) {
  if (gz) {
    gzFile f = gzopen(path, "wb");
    gzwrite(f, b, (unsigned)n);
    gzclose(f);
  } else {
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
  }
}

static size_t header(unsigned char *b, unsigned char type, int ndim, const uint32_t *dims) {
  b[0] = 0;
  b[1] = 0;
  b[2] = type;
  b[3] = (unsigned char)ndim;
  for (int i = 0; i < ndim; i++) {
    b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
    b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
    b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
    b[7 + 4 * i] = (unsigned char)dims[i];
  }
  return 4 + 4 * (size_t)ndim;
}

static void expect_error(const unsigned char *b, size_t n, int gz, const char *needle) {
  write_bytes(TMP, b, n, gz);
  cq_tensor *t = NULL;
  cq_status st = cq_idx_load(TMP, &t);
  CHECK_MSG(st != CQ_OK, "accepted a file that should fail with '%s'", needle);
  CHECK(t == NULL);
  CHECK_MSG(strstr(cq_last_error(), needle) && !strchr(cq_last_error(), '\n'),
            "message '%s' lacks '%s'", cq_last_error(), needle);
}

int main(void) {
  unsigned char b[256] = {0};
  for (int gz = 0; gz < 2; gz++) {
    uint32_t d2[2] = {2, 3};
    size_t h = header(b, 0x08, 2, d2);
    for (int i = 0; i < 6; i++) b[h + i] = (unsigned char)(250 + i);
    write_bytes(TMP, b, h + 6, gz);
    cq_tensor *t = NULL;
    CHECK_OK(cq_idx_load(TMP, &t));
    if (t) {
      CHECK(t->dtype == CQ_U8 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
      CHECK(((uint8_t *)t->data)[5] == 255);
      cq_tensor_free(t);
    }
    uint32_t d1[1] = {2};
    h = header(b, 0x0B, 1, d1); /* int16 -300, 7 */
    b[h] = 0xfe; b[h + 1] = 0xd4; b[h + 2] = 0; b[h + 3] = 7;
    write_bytes(TMP, b, h + 4, gz);
    CHECK_OK(cq_idx_load(TMP, &t));
    if (t) {
      CHECK(t->dtype == CQ_S32 && ((int32_t *)t->data)[0] == -300 && ((int32_t *)t->data)[1] == 7);
      cq_tensor_free(t);
    }
    h = header(b, 0x0D, 1, d1); /* float32 1.5, -2 (big-endian) */
    const unsigned char f32[8] = {0x3f, 0xc0, 0, 0, 0xc0, 0, 0, 0};
    memcpy(b + h, f32, 8);
    write_bytes(TMP, b, h + 8, gz);
    CHECK_OK(cq_idx_load(TMP, &t));
    if (t) {
      CHECK(t->dtype == CQ_F32 && ((float *)t->data)[0] == 1.5f && ((float *)t->data)[1] == -2.0f);
      cq_tensor_free(t);
    }
    h = header(b, 0x0E, 1, d1);
    const unsigned char f64[16] = {0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(b + h, f64, 16);
    write_bytes(TMP, b, h + 16, gz);
    CHECK_OK(cq_idx_load(TMP, &t));
    if (t) {
      CHECK(t->dtype == CQ_F64 && ((double *)t->data)[0] == 3.141592653589793);
      cq_tensor_free(t);
    }
    h = header(b, 0x0C, 1, d1);
    const unsigned char i32[8] = {0xff, 0xff, 0xff, 0xfe, 0, 1, 0, 0};
    memcpy(b + h, i32, 8);
    write_bytes(TMP, b, h + 8, gz);
    CHECK_OK(cq_idx_load(TMP, &t));
    if (t) {
      CHECK(((int32_t *)t->data)[0] == -2 && ((int32_t *)t->data)[1] == 65536);
      cq_tensor_free(t);
    }

    /* bad files */
    expect_error(b, 2, gz, "too short");
    h = header(b, 0x08, 2, d2);
    b[0] = 1;
    expect_error(b, h + 6, gz, "bad magic");
    h = header(b, 0x0A, 2, d2);
    expect_error(b, h + 6, gz, "unknown IDX element type 0x0a");
    h = header(b, 0x08, 0, d2);
    expect_error(b, h, gz, "0 dimensions");
    h = header(b, 0x08, 2, d2);
    expect_error(b, h - 2, gz, "truncated in the dimensions");
    expect_error(b, h + 5, gz, "truncated");
    expect_error(b, h + 9, gz, "trailing bytes");
    uint32_t huge[3] = {60000u, 60000u, 60000u};
    h = header(b, 0x0E, 3, huge);
    expect_error(b, h + 8, gz, "limit");
    uint32_t big[3] = {60000u, 28u, 28u}; /* a header promising 47 MB with 10 bytes behind it */
    h = header(b, 0x08, 3, big);
    expect_error(b, h + 10, gz, "truncated");
  }
  cq_tensor *t = NULL;
  CHECK_STATUS(cq_idx_load(TMP ".missing", &t), CQ_EIO);

  const char *images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
  const char *labels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  FILE *probe = fopen(images, "rb");
  if (probe) {
    fclose(probe);
    CHECK_OK(cq_idx_load(images, &t));
    if (t) {
      CHECK(t->dtype == CQ_U8 && t->ndim == 3 && t->shape[0] == 10000 && t->shape[1] == 28);
      cq_tensor_free(t);
    }
    CHECK_OK(cq_idx_load(labels, &t));
    if (t) {
      int ok = t->ndim == 1 && t->shape[0] == 10000;
      for (int64_t i = 0; ok && i < 10000; i++) ok = ((uint8_t *)t->data)[i] < 10;
      CHECK(ok);
      cq_tensor_free(t);
    }
  } else {
    printf("test_idx: skipped the Fashion-MNIST files (dataset-fashion-mnist not installed)\n");
  }
  remove(TMP);
  return check_summary("test_idx");
}
