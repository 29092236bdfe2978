/* libFuzzer harness for the IDX reader (cq_idx_load, plain and gzip). The reader takes a path, and
 * its API stays as it is, so each input is written to a temporary file (under /dev/shm, see
 * fuzz_common.h) and loaded from there, as `cquant` would load a downloaded MNIST file.
 *
 * Checks, besides crashes, leaks and undefined behaviour: a failure leaves *out NULL with a one-line
 * message naming the file; an accepted tensor has one of the documented dtypes, 1 to 8 dimensions,
 * exactly as many data bytes as the input holds after the header (for a plain file), and converts
 * to float32. */
#include "fuzz_common.h"

static void cq_fuzz_idx_check_tensor(const cq_tensor *t, const uint8_t *data, size_t size) {
  if (t->dtype != CQ_U8 && t->dtype != CQ_S8 && t->dtype != CQ_S32 && t->dtype != CQ_F32 &&
      t->dtype != CQ_F64) {
    cq_fuzz_violation("idx: accepted tensor has dtype %d", (int)t->dtype);
    return;
  }
  if (t->ndim < 1 || t->ndim > CQ_MAX_DIMS) {
    cq_fuzz_violation("idx: accepted tensor has %d dimensions", t->ndim);
    return;
  }
  if (size >= 4 && data[0] == 0 && data[1] == 0) { /* plain (not gzip): sizes must add up */
    static const struct {
      uint8_t code;
      size_t size;
    } file_sizes[] = {{0x08, 1}, {0x09, 1}, {0x0B, 2}, {0x0C, 4}, {0x0D, 4}, {0x0E, 8}};
    size_t elem = 0;
    for (size_t i = 0; i < sizeof file_sizes / sizeof file_sizes[0]; i++) {
      if (file_sizes[i].code == data[2]) elem = file_sizes[i].size;
    }
    size_t header = 4 + 4 * (size_t)t->ndim;
    if (!elem || size < header || (size - header) != (size_t)cq_tensor_numel(t) * elem) {
      cq_fuzz_violation("idx: accepted %zu bytes for %lld elements of type 0x%02x", size,
                        (long long)cq_tensor_numel(t), data[2]);
      return;
    }
  }
  cq_tensor *f = NULL;
  cq_status st = cq_tensor_to_f32(t, &f);
  if (st != CQ_OK) cq_fuzz_check_failure("idx: cq_tensor_to_f32", st);
  cq_tensor_free(f);
}

int cq_fuzz_idx_one(const uint8_t *data, size_t size) {
  char path[512];
  cq_fuzz_tmp_path(path, sizeof path, "idx", ".idx");
  if (cq_fuzz_write_file(path, data, size) != 0) return 0;
  cq_tensor *t = (cq_tensor *)&t; /* must be overwritten: NULL on failure */
  cq_status st = cq_idx_load(path, &t);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_idx_load", st);
    if (!strstr(cq_last_error(), path)) {
      cq_fuzz_violation("cq_idx_load's message does not name the file: %s", cq_last_error());
    }
    if (t) cq_fuzz_violation("cq_idx_load failed but did not set *out to NULL");
    t = NULL;
  } else if (!t) {
    cq_fuzz_violation("cq_idx_load returned CQ_OK and no tensor");
  } else {
    cq_fuzz_idx_check_tensor(t, data, size);
  }
  cq_tensor_free(t);
  unlink(path);
  return 0;
}

CQ_FUZZ_ENTRY_POINTS(cq_fuzz_idx_one)
