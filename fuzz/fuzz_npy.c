/* libFuzzer harness for the .npy reader (cq_npy_load_buffer, and cq_npy_load on the same bytes).
 *
 * Checks, besides crashes, leaks and undefined behaviour: reading the bytes from memory and from a
 * file agree on success or failure; a failure leaves *out NULL with a one-line message; an accepted tensor
 * has a valid dtype and shape, converts to float32, and survives cq_npy_save + cq_npy_load with the
 * same dtype, shape and bytes. Temporary files go to /dev/shm (see fuzz_common.h). */
#include "fuzz_common.h"

static int cq_fuzz_npy_same_tensor(const cq_tensor *a, const cq_tensor *b) {
  if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != b->shape[i]) return 0;
  }
  size_t n = cq_tensor_nbytes(a);
  return n == cq_tensor_nbytes(b) && (n == 0 || memcmp(a->data, b->data, n) == 0);
}

static void cq_fuzz_npy_check_tensor(const cq_tensor *t) {
  if (!cq_dtype_get(t->dtype) || t->ndim < 0 || t->ndim > CQ_MAX_DIMS) {
    cq_fuzz_violation("npy: accepted tensor with dtype %d, ndim %d", (int)t->dtype, t->ndim);
    return;
  }
  for (int i = 0; i < t->ndim; i++) {
    if (t->shape[i] < 0) cq_fuzz_violation("npy: accepted negative dimension %lld",
                                           (long long)t->shape[i]);
  }
  cq_tensor *f = NULL;
  cq_status st = cq_tensor_to_f32(t, &f);
  if (st != CQ_OK) cq_fuzz_check_failure("npy: cq_tensor_to_f32", st);
  cq_tensor_free(f);
}

static void cq_fuzz_npy_round_trip(const cq_tensor *t) {
  char path[512];
  cq_fuzz_tmp_path(path, sizeof path, "npy-roundtrip", ".npy");
  cq_status st = cq_npy_save(path, t);
  if (st != CQ_OK) {
    cq_fuzz_violation("npy: cannot save a tensor it loaded: %s", cq_last_error());
    unlink(path);
    return;
  }
  cq_tensor *back = NULL;
  st = cq_npy_load(path, &back);
  if (st != CQ_OK) {
    cq_fuzz_violation("npy: cannot load what it saved: %s", cq_last_error());
  } else if (!cq_fuzz_npy_same_tensor(t, back)) {
    cq_fuzz_violation("npy: save + load changed the tensor");
  }
  cq_tensor_free(back);
  unlink(path);
}

int cq_fuzz_npy_one(const uint8_t *data, size_t size) {
  cq_tensor *t = (cq_tensor *)&t; /* must be overwritten: NULL on failure */
  cq_status st = cq_npy_load_buffer(data, size, &t);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_npy_load_buffer", st);
    if (t) cq_fuzz_violation("cq_npy_load_buffer failed but did not set *out to NULL");
    t = NULL;
  } else if (!t) {
    cq_fuzz_violation("cq_npy_load_buffer returned CQ_OK and no tensor");
  }

  char path[512];
  cq_fuzz_tmp_path(path, sizeof path, "npy-input", ".npy");
  if (cq_fuzz_write_file(path, data, size) == 0) {
    cq_tensor *ft = NULL;
    cq_status fst = cq_npy_load(path, &ft);
    if ((fst == CQ_OK) != (st == CQ_OK)) {
      cq_fuzz_violation("cq_npy_load gives %s, cq_npy_load_buffer %s on the same bytes",
                        cq_status_str(fst), cq_status_str(st));
    } else if (fst != CQ_OK) {
      cq_fuzz_check_failure("cq_npy_load", fst);
      if (!strstr(cq_last_error(), path)) {
        cq_fuzz_violation("cq_npy_load's message does not name the file: %s", cq_last_error());
      }
    } else if (t && ft && !cq_fuzz_npy_same_tensor(t, ft)) {
      cq_fuzz_violation("cq_npy_load and cq_npy_load_buffer disagree on the tensor");
    }
    cq_tensor_free(ft);
    unlink(path);
  }

  if (t) {
    cq_fuzz_npy_check_tensor(t);
    cq_fuzz_npy_round_trip(t);
  }
  cq_tensor_free(t);
  return 0;
}

CQ_FUZZ_ENTRY_POINTS(cq_fuzz_npy_one)
