/* .npy reading and writing: round trips for every dtype and rank, files written by numpy
 * (versions 1.0, 2.0 and 3.0, from tools/golden/gen_npy_samples.py), byte-identical output to
 * np.save, a table of malformed images that must be refused with the right status and a one-line
 * message, every truncation and many byte mutations of valid files, streams, allocation failures,
 * and saves that fail (missing or unwritable folder, file-size limit, target is a folder) without
 * leaving a temporary file or clobbering the previous file. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/check.h"
#include "cquant/npy.h"
#include "cquant/status.h"
#include "cquant/tensor.h"

#define NPY_DIR CQ_TEST_DATA_DIR "/npy"
#define TMP_DIR CQ_TEST_TMP_DIR "/npy"

/* ---- helpers --------------------------------------------------------------------------------- */

typedef struct bytes {
  unsigned char *data;
  size_t size;
} bytes;

static void bytes_free(bytes *b) {
  free(b->data);
  b->data = NULL;
  b->size = 0;
}

static void bytes_append(bytes *b, const void *data, size_t n) {
  b->data = realloc(b->data, b->size + n + 1);
  if (!b->data) {
    fprintf(stderr, "test_npy: out of memory\n");
    exit(2);
  }
  if (n) memcpy(b->data + b->size, data, n);
  b->size += n;
}

static int read_whole(const char *path, bytes *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  unsigned char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) bytes_append(out, chunk, n);
  bytes_append(out, "", 0);
  fclose(f);
  return 0;
}

static int write_whole(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t put = fwrite(data, 1, n, f);
  return fclose(f) == 0 && put == n ? 0 : -1;
}

static const char *tmp_path(const char *name, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s", TMP_DIR, name);
  return buf;
}

/* Entries of `dir` whose name contains ".tmp.": temporary files a save left behind. */
static int count_leftovers(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp.") != NULL;
  closedir(d);
  return n;
}

static int file_exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

/* Removes the files of a folder (not recursive) and the folder itself. */
static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[1024];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
      chmod(path, 0755);
      remove_dir(path);
    } else {
      unlink(path);
    }
  }
  closedir(d);
  rmdir(dir);
}

/* The last message must be non-empty, one line, contain `want` and start with `prefix`. */
static int message_ok(const char *want, const char *prefix) {
  const char *m = cq_last_error();
  if (m[0] == '\0' || strchr(m, '\n') || strchr(m, '\r')) return 0;
  if (want && !strstr(m, want)) return 0;
  if (prefix && strncmp(m, prefix, strlen(prefix)) != 0) return 0;
  return 1;
}

#define CHECK_MESSAGE(want, prefix)                                                           \
  CHECK_MSG(message_ok(want, prefix), "message \"%s\" should be one line containing \"%s\"", \
            cq_last_error(), (want) ? (want) : "")

/* A .npy image: preamble for `major`.`minor` with the true header length, `header` as given, then
 * `data_len` bytes of data. */
static bytes make_raw(int major, int minor, const char *header, size_t header_len,
                      size_t data_len) {
  bytes b = {0};
  unsigned char pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  pre[6] = (unsigned char)major;
  pre[7] = (unsigned char)minor;
  size_t pre_len = major == 1 ? 10 : 12;
  for (size_t i = 8; i < pre_len; i++) pre[i] = (unsigned char)(header_len >> (8 * (i - 8)));
  bytes_append(&b, pre, pre_len);
  bytes_append(&b, header, header_len);
  for (size_t i = 0; i < data_len; i++) {
    unsigned char v = (unsigned char)(i * 7 + 1);
    bytes_append(&b, &v, 1);
  }
  return b;
}

/* A version 1.0 image whose header is `dict` padded with spaces and a newline as numpy pads it. */
static bytes make_dict(const char *dict, size_t data_len) {
  char header[1024];
  size_t n = strlen(dict);
  memcpy(header, dict, n);
  while ((10 + n + 1) % 64 != 0) header[n++] = ' ';
  header[n++] = '\n';
  return make_raw(1, 0, header, n, data_len);
}

/* Loads `size` bytes from an exactly-sized copy (so valgrind sees any over-read) with every
 * allocation failing: a rejected image must be rejected before anything is allocated. */
static cq_status load_rejected(const void *data, size_t size) {
  unsigned char *copy = malloc(size ? size : 1);
  if (size) memcpy(copy, data, size);
  cq_tensor *t = (cq_tensor *)&t; /* must be reset to NULL */
  cq_debug_fail_alloc_after(0);
  cq_status st = cq_npy_load_buffer(copy, size, &t);
  cq_debug_fail_alloc_after(-1);
  free(copy);
  if (st == CQ_OK) {
    cq_tensor_free(t);
  } else if (t != NULL) {
    check_report(__FILE__, __LINE__, "*out is not NULL after a failed load");
  }
  return st;
}

/* Deterministic bytes for round trips. */
static void fill_pattern(void *data, size_t n, unsigned seed) {
  unsigned char *p = data;
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    p[i] = (unsigned char)(x >> 24);
  }
}

static int same_tensor(const cq_tensor *a, const cq_tensor *b) {
  if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i]) return 0;
  }
  size_t n = cq_tensor_nbytes(a);
  return n == 0 || memcmp(a->data, b->data, n) == 0;
}

/* ---- round trips ----------------------------------------------------------------------------- */

/* The header cquant writes: version 1.0, numpy's dict, 64-byte alignment, final newline. */
static void check_written_header(const bytes *file, const cq_tensor *t) {
  CHECK(file->size >= 64);
  if (file->size < 64) return;
  CHECK(memcmp(file->data, "\x93NUMPY\x01\x00", 8) == 0);
  size_t hlen = file->data[8] | (size_t)file->data[9] << 8;
  CHECK_INT_EQ((10 + hlen) % 64, 0);
  CHECK(10 + hlen <= file->size);
  if (10 + hlen > file->size) return;
  CHECK(file->data[10 + hlen - 1] == '\n');
  char want[512];
  int n = snprintf(want, sizeof want, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   cq_dtype_get(t->dtype)->npy_descr);
  for (int i = 0; i < t->ndim; i++) {
    n += snprintf(want + n, sizeof want - (size_t)n, "%s%lld", i ? ", " : "",
                  (long long)t->shape[i]);
  }
  snprintf(want + n, sizeof want - (size_t)n, "%s), }", t->ndim == 1 ? "," : "");
  CHECK_MSG(memcmp(file->data + 10, want, strlen(want)) == 0, "header should start with %s", want);
  for (size_t i = 10 + strlen(want); i < 10 + hlen - 1; i++) {
    if (file->data[i] != ' ') {
      check_report(__FILE__, __LINE__, "header padding byte %zu is 0x%02x", i, file->data[i]);
      break;
    }
  }
  CHECK_INT_EQ(file->size - 10 - hlen, cq_tensor_nbytes(t));
}

static void round_trip(cq_dtype dtype, int ndim, const int64_t *shape, unsigned seed) {
  cq_tensor *t = NULL, *back = NULL, *from_buffer = NULL;
  char path[512], name[64];
  CHECK_OK(cq_tensor_create(&t, dtype, ndim, shape));
  if (!t) return;
  fill_pattern(t->data, cq_tensor_nbytes(t), seed);
  snprintf(name, sizeof name, "rt_%d_%d.npy", (int)dtype, ndim);
  tmp_path(name, path, sizeof path);
  CHECK_OK(cq_npy_save(path, t));
  CHECK_OK(cq_npy_load(path, &back));
  CHECK_MSG(back && same_tensor(t, back), "round trip of %s rank %d changed the tensor",
            cq_dtype_get(dtype)->name, ndim);
  bytes file;
  CHECK(read_whole(path, &file) == 0);
  check_written_header(&file, t);
  CHECK_OK(cq_npy_load_buffer(file.data, file.size, &from_buffer));
  CHECK(from_buffer && same_tensor(t, from_buffer));
  bytes_free(&file);
  unlink(path);
  cq_tensor_free(t);
  cq_tensor_free(back);
  cq_tensor_free(from_buffer);
}

static void test_round_trips(void) {
  static const int64_t dims[CQ_MAX_DIMS] = {2, 3, 1, 2, 1, 3, 1, 2};
  for (int d = 0; d < CQ_DTYPE_COUNT; d++) {
    for (int ndim = 0; ndim <= CQ_MAX_DIMS; ndim++) {
      round_trip((cq_dtype)d, ndim, dims, 17u * (unsigned)d + (unsigned)ndim);
    }
    static const int64_t empty_a[1] = {0}, empty_b[2] = {2, 0}, empty_c[3] = {0, 3, 4};
    static const int64_t empty_8[CQ_MAX_DIMS] = {1, 2, 1, 2, 0, 2, 1, 2};
    round_trip((cq_dtype)d, 1, empty_a, 1);
    round_trip((cq_dtype)d, 2, empty_b, 2);
    round_trip((cq_dtype)d, 3, empty_c, 3);
    round_trip((cq_dtype)d, CQ_MAX_DIMS, empty_8, 4);
  }
  /* A long first axis (the growth padding depends on its digits) and special float bit patterns. */
  int64_t long_axis[2] = {1234567, 1};
  round_trip(CQ_U8, 2, long_axis, 9);
  cq_tensor *t = NULL, *back = NULL;
  int64_t four[1] = {4};
  CHECK_OK(cq_tensor_create(&t, CQ_F32, 1, four));
  /* -0, inf, a NaN with a payload, the smallest denormal */
  uint32_t bits[4] = {0x80000000u, 0x7f800000u, 0x7fc01234u, 0x00000001u};
  memcpy(t->data, bits, sizeof bits);
  char path[512];
  CHECK_OK(cq_npy_save(tmp_path("special.npy", path, sizeof path), t));
  CHECK_OK(cq_npy_load(path, &back));
  CHECK(back && memcmp(back->data, bits, sizeof bits) == 0);
  cq_tensor_free(t);
  cq_tensor_free(back);
  unlink(path);
}

/* ---- files written by numpy ------------------------------------------------------------------ */

/* The generator's formulas (tools/golden/gen_npy_samples.py). */
static double golden_value(cq_dtype dtype, int64_t i) {
  switch (dtype) {
    case CQ_F32:
    case CQ_F64: return (double)(i - 3) * 0.25;
    case CQ_U8: return (double)((i * 37) % 256);
    case CQ_S8: {
      int64_t v = ((i * 37 - 50) % 256 + 256) % 256;
      return (double)(v >= 128 ? v - 256 : v);
    }
    default: return (double)(i * 37 - 50);
  }
}

static double element(const cq_tensor *t, int64_t i) {
  switch (t->dtype) {
    case CQ_F32: return ((const float *)t->data)[i];
    case CQ_F64: return ((const double *)t->data)[i];
    case CQ_U8: return ((const uint8_t *)t->data)[i];
    case CQ_S8: return ((const int8_t *)t->data)[i];
    case CQ_S32: return ((const int32_t *)t->data)[i];
    default: return (double)((const int64_t *)t->data)[i];
  }
}

typedef struct golden_file {
  const char *name;
  cq_dtype dtype;
  int ndim;
  int64_t shape[CQ_MAX_DIMS];
  int written_by_np_save; /* version 1.0: cquant must reproduce it byte for byte */
} golden_file;

static const golden_file golden_files[] = {
    {"f4_2x3.npy", CQ_F32, 2, {2, 3}, 1},
    {"f8_scalar.npy", CQ_F64, 0, {0}, 1},
    {"u1_5.npy", CQ_U8, 1, {5}, 1},
    {"i1_2x2x2.npy", CQ_S8, 3, {2, 2, 2}, 1},
    {"i4_0.npy", CQ_S32, 1, {0}, 1},
    {"i8_3x1.npy", CQ_I64, 2, {3, 1}, 1},
    {"f4_1x2x1x2x1x2x1x2.npy", CQ_F32, 8, {1, 2, 1, 2, 1, 2, 1, 2}, 1},
    {"i4_4x0x3.npy", CQ_S32, 3, {4, 0, 3}, 1},
    {"f4_2x3_v2.npy", CQ_F32, 2, {2, 3}, 0},
    {"i8_4_v3.npy", CQ_I64, 1, {4}, 0},
};

static void test_numpy_files(void) {
  for (size_t k = 0; k < sizeof golden_files / sizeof golden_files[0]; k++) {
    const golden_file *g = &golden_files[k];
    char path[512], out[512];
    snprintf(path, sizeof path, "%s/%s", NPY_DIR, g->name);
    cq_tensor *t = NULL;
    CHECK_OK(cq_npy_load(path, &t));
    if (!t) continue;
    CHECK_MSG(t->dtype == g->dtype && t->ndim == g->ndim, "%s: dtype %d ndim %d", g->name,
              (int)t->dtype, t->ndim);
    for (int i = 0; i < g->ndim && i < t->ndim; i++) CHECK_INT_EQ(t->shape[i], g->shape[i]);
    int64_t n = cq_tensor_numel(t);
    int values_ok = 1;
    for (int64_t i = 0; i < n; i++) values_ok &= element(t, i) == golden_value(g->dtype, i);
    CHECK_MSG(values_ok, "%s: values differ from the generator's formula", g->name);
    /* cquant's writer reproduces np.save's bytes (for the v2/v3 files: those of the v1 twin). */
    CHECK_OK(cq_npy_save(tmp_path("resaved.npy", out, sizeof out), t));
    bytes ours, theirs;
    read_whole(out, &ours);
    read_whole(path, &theirs);
    if (g->written_by_np_save) {
      CHECK_MSG(ours.size == theirs.size && memcmp(ours.data, theirs.data, ours.size) == 0,
                "%s: cq_npy_save output differs from np.save's", g->name);
    } else {
      size_t tail = cq_tensor_nbytes(t);
      int same = ours.size >= tail && theirs.size >= tail &&
                 memcmp(ours.data + ours.size - tail, theirs.data + theirs.size - tail, tail) == 0;
      CHECK_MSG(same, "%s: data differs after a re-save", g->name);
    }
    bytes_free(&ours);
    bytes_free(&theirs);
    unlink(out);
    cq_tensor_free(t);
  }
  /* The v2 file holds the same array as the v1 one; re-saving it gives np.save's v1 bytes. */
  cq_tensor *t = NULL;
  char v1[512], out[512];
  snprintf(v1, sizeof v1, "%s/f4_2x3.npy", NPY_DIR);
  CHECK_OK(cq_npy_load(NPY_DIR "/f4_2x3_v2.npy", &t));
  if (t) {
    CHECK_OK(cq_npy_save(tmp_path("from_v2.npy", out, sizeof out), t));
    bytes a, b;
    read_whole(out, &a);
    read_whole(v1, &b);
    CHECK(a.size == b.size && memcmp(a.data, b.data, a.size) == 0);
    bytes_free(&a);
    bytes_free(&b);
    unlink(out);
    cq_tensor_free(t);
  }

  static const struct {
    const char *name;
    cq_status want;
    const char *in_message;
  } rejects[] = {
      {"reject_fortran_f4_2x3.npy", CQ_EFORMAT, "fortran_order"},
      {"reject_bigendian_f4_3.npy", CQ_EUNSUPPORTED, "'>f4'"},
      {"reject_object_3.npy", CQ_EUNSUPPORTED, "'|O'"},
      {"reject_structured_2.npy", CQ_EUNSUPPORTED, "structured dtype [('a', '<f4'), ('b', '<i4')]"},
      {"reject_f2_3.npy", CQ_EUNSUPPORTED, "'<f2'"},
      {"reject_bool_3.npy", CQ_EUNSUPPORTED, "'|b1'"},
      {"reject_9d.npy", CQ_EFORMAT, "9 dimensions"},
  };
  for (size_t k = 0; k < sizeof rejects / sizeof rejects[0]; k++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", NPY_DIR, rejects[k].name);
    t = (cq_tensor *)&t;
    CHECK_STATUS(cq_npy_load(path, &t), rejects[k].want);
    CHECK(t == NULL);
    CHECK_MESSAGE(rejects[k].in_message, path);
    bytes b;
    CHECK(read_whole(path, &b) == 0);
    CHECK_STATUS(load_rejected(b.data, b.size), rejects[k].want);
    bytes_free(&b);
  }
}

/* ---- accepted variants ----------------------------------------------------------------------- */

static void expect_loads(const char *what, const bytes *b, cq_dtype dtype, int ndim,
                         const int64_t *shape) {
  cq_tensor *t = NULL;
  cq_status st = cq_npy_load_buffer(b->data, b->size, &t);
  CHECK_MSG(st == CQ_OK, "%s: returned %s: %s", what, cq_status_str(st), cq_last_error());
  if (!t) return;
  CHECK_MSG(t->dtype == dtype && t->ndim == ndim, "%s: dtype %d ndim %d", what, (int)t->dtype,
            t->ndim);
  for (int i = 0; i < ndim && i < t->ndim; i++) CHECK_INT_EQ(t->shape[i], shape[i]);
  size_t n = cq_tensor_nbytes(t);
  CHECK_MSG(n == 0 || memcmp(t->data, b->data + b->size - n, n) == 0, "%s: data differs", what);
  cq_tensor_free(t);
}

static void test_accepted_variants(void) {
  static const int64_t s23[2] = {2, 3}, s5[1] = {5}, s0[1] = {0}, s0big[2] = {0, 99999999999999999};
  static const struct {
    const char *dict;
    cq_dtype dtype;
    int ndim;
    const int64_t *shape;
    size_t data;
  } ok[] = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", CQ_F32, 2, s23, 24},
      {"{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}", CQ_F32, 2, s23, 24},
      {"{'shape': (2, 3), 'descr': '<f8', 'fortran_order': False}", CQ_F64, 2, s23, 48},
      {"{'fortran_order':False,'shape':(2,3,),'descr':'<i4',}", CQ_S32, 2, s23, 24},
      {"  {\t'descr' : '<i8' ,\n 'fortran_order' :\tFalse , 'shape' : ( 5 , ) }", CQ_I64, 1, s5,
       40},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (5,)}", CQ_U8, 1, s5, 5},
      {"{'descr': '<u1', 'fortran_order': False, 'shape': (5,)}", CQ_U8, 1, s5, 5},
      {"{'descr': '>u1', 'fortran_order': False, 'shape': (5,)}", CQ_U8, 1, s5, 5},
      {"{'descr': 'u1', 'fortran_order': False, 'shape': (5,)}", CQ_U8, 1, s5, 5},
      {"{'descr': '|i1', 'fortran_order': False, 'shape': (5,)}", CQ_S8, 1, s5, 5},
      {"{'descr': '<i1', 'fortran_order': False, 'shape': (5,)}", CQ_S8, 1, s5, 5},
      {"{'descr': '=f4', 'fortran_order': False, 'shape': (5,)}", CQ_F32, 1, s5, 20},
      {"{'descr': '|f8', 'fortran_order': False, 'shape': (5,)}", CQ_F64, 1, s5, 40},
      {"{'descr': 'i8', 'fortran_order': False, 'shape': (0,)}", CQ_I64, 1, s0, 0},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", CQ_F32, 2, s23, 24},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }", CQ_F32, 0, s0, 4},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 99999999999999999), }", CQ_F32, 2,
       s0big, 0},
  };
  for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
    bytes b = make_dict(ok[k].dict, ok[k].data);
    expect_loads(ok[k].dict, &b, ok[k].dtype, ok[k].ndim, ok[k].shape);
    bytes_free(&b);
  }
  /* Other framings: versions 2.0 and 3.0 by hand, a minor version, an unaligned header. */
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
  bytes b = make_raw(2, 0, dict, strlen(dict), 24);
  expect_loads("version 2.0", &b, CQ_F32, 2, s23);
  bytes_free(&b);
  b = make_raw(3, 0, dict, strlen(dict), 24);
  expect_loads("version 3.0", &b, CQ_F32, 2, s23);
  bytes_free(&b);
  b = make_raw(1, 5, dict, strlen(dict), 24);
  expect_loads("version 1.5", &b, CQ_F32, 2, s23);
  bytes_free(&b);
  /* A version 2.0 header longer than version 1.0 can describe (70000 bytes of padding). */
  size_t big_len = 70000;
  char *big = malloc(big_len);
  memset(big, ' ', big_len);
  memcpy(big, dict, strlen(dict) - 1);
  big[big_len - 1] = '\n';
  b = make_raw(2, 0, big, big_len, 24);
  expect_loads("version 2.0 with a 70000-byte header", &b, CQ_F32, 2, s23);
  bytes_free(&b);
  free(big);
}

/* ---- malformed images ------------------------------------------------------------------------ */

typedef struct bad_case {
  const char *name;
  bytes image;
  cq_status want;
  const char *in_message;
} bad_case;

#define MAX_BAD 96
static bad_case bad[MAX_BAD];
static int bad_count;

static void add_bad(const char *name, bytes image, cq_status want, const char *in_message) {
  if (bad_count == MAX_BAD) {
    check_report(__FILE__, __LINE__, "too many malformed cases");
    bytes_free(&image);
    return;
  }
  bad[bad_count++] = (bad_case){name, image, want, in_message};
}

static bytes from_literal(const void *data, size_t n) {
  bytes b = {0};
  bytes_append(&b, data, n);
  return b;
}

static void build_preamble_cases(void) {
  const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";
  add_bad("empty input", from_literal("", 0), CQ_EFORMAT, "truncated: 0 bytes");
  add_bad("bad magic", from_literal("\x93NUMPZ\x01\x00\x10\x00{}", 12), CQ_EFORMAT, "magic");
  add_bad("text file", from_literal("hello, world\n", 13), CQ_EFORMAT, "'hello, w'");
  add_bad("zip file", from_literal("PK\x03\x04\x14\x00\x00\x00", 8), CQ_EFORMAT, "'PK\\x03\\x04");
  add_bad("magic only", from_literal("\x93NUMPY", 6), CQ_EFORMAT, "truncated: 6 bytes");
  add_bad("magic and version, no length", from_literal("\x93NUMPY\x01\x00\x40", 9), CQ_EFORMAT,
          "10-byte version 1 preamble");
  add_bad("v2 preamble cut", from_literal("\x93NUMPY\x02\x00\x40\x00\x00", 11), CQ_EFORMAT,
          "12-byte version 2 preamble");
  bytes b = make_raw(0, 9, good, strlen(good), 12);
  add_bad("version 0.9", b, CQ_EFORMAT, "version 0.9");
  b = make_raw(4, 0, good, strlen(good), 12);
  add_bad("version 4.0", b, CQ_EFORMAT, "version 4.0");
  b = make_raw(255, 255, good, strlen(good), 12);
  add_bad("version 255.255", b, CQ_EFORMAT, "version 255.255");
  b = make_raw(1, 0, good, strlen(good), 12);
  b.data[8] = 0xe8; /* header length 1000 in a 80-byte file */
  b.data[9] = 0x03;
  add_bad("header length beyond the file", b, CQ_EFORMAT, "header length 1000 runs past the end");
  b = make_raw(2, 0, good, strlen(good), 12);
  memset(b.data + 8, 0xff, 4);
  add_bad("v2 header length 0xffffffff", b, CQ_EFORMAT, "header length 4294967295 exceeds");
  b = make_raw(2, 0, good, strlen(good), 12);
  b.data[8] = (unsigned char)(b.size - 12 + 1); /* one byte past the end */
  add_bad("v2 header length one past the end", b, CQ_EFORMAT, "runs past the end");
  b = make_raw(1, 0, good, strlen(good), 12);
  b.data[8] = 0;
  b.data[9] = 0;
  add_bad("header length 0", b, CQ_EFORMAT, "header length is 0");
  size_t huge_len = ((size_t)1 << 20) + 1; /* present in full, but over the header limit */
  char *huge = malloc(huge_len);
  memset(huge, ' ', huge_len);
  memcpy(huge, good, strlen(good) - 1);
  huge[huge_len - 1] = '\n';
  add_bad("header over the 1 MiB limit", make_raw(3, 0, huge, huge_len, 12), CQ_EFORMAT,
          "header length 1048577 exceeds the 1048576-byte limit");
  free(huge);
  b = make_raw(1, 0, good, strlen(good), 12);
  b.data[8] = (unsigned char)(strlen(good) - 20); /* header length lies: cuts the dict */
  add_bad("header length cuts the dict", b, CQ_EFORMAT, "found 'Fals' at byte 44");
}

static void build_header_cases(void) {
  static const struct {
    const char *name;
    const char *dict;
    size_t data;
    cq_status want;
    const char *in_message;
  } cases[] = {
      {"dict not closed", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), ", 12,
       CQ_EFORMAT, "found the end of the header"},
      {"not a dict", "[1, 2, 3]", 12, CQ_EFORMAT, "expected '{'"},
      {"missing descr", "{'fortran_order': False, 'shape': (3,), }", 12, CQ_EFORMAT,
       "no 'descr' key"},
      {"missing fortran_order", "{'descr': '<f4', 'shape': (3,), }", 12, CQ_EFORMAT,
       "no 'fortran_order' key"},
      {"missing shape", "{'descr': '<f4', 'fortran_order': False, }", 12, CQ_EFORMAT,
       "no 'shape' key"},
      {"empty dict", "{}", 12, CQ_EFORMAT, "no 'descr' key"},
      {"duplicate key", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'shape': (3,)}",
       12, CQ_EFORMAT, "duplicate key 'shape'"},
      {"unknown key", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}", 12,
       CQ_EFORMAT, "unexpected key 'extra'"},
      {"key not a string", "{descr: '<f4', 'fortran_order': False, 'shape': (3,)}", 12, CQ_EFORMAT,
       "expected a quoted key"},
      {"missing colon", "{'descr' '<f4', 'fortran_order': False, 'shape': (3,)}", 12, CQ_EFORMAT,
       "expected ':'"},
      {"missing comma", "{'descr': '<f4' 'fortran_order': False, 'shape': (3,)}", 12, CQ_EFORMAT,
       "expected ',' or '}'"},
      {"unterminated string", "{'descr': '<f4, 'fortran_order': False, 'shape': (3,)}", 12,
       CQ_EFORMAT, "malformed header"},
      {"garbage after dict", "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} xyz", 12,
       CQ_EFORMAT, "after the header dict"},
      {"fortran order", "{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }", 12, CQ_EFORMAT,
       "fortran_order is True"},
      {"fortran_order 0", "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }", 12, CQ_EFORMAT,
       "True or False, found '0'"},
      {"fortran_order 'False'", "{'descr': '<f4', 'fortran_order': 'False', 'shape': (3,), }", 12,
       CQ_EFORMAT, "True or False"},
      {"big-endian f4", "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", 12,
       CQ_EUNSUPPORTED, "big-endian dtype '>f4'"},
      {"big-endian i8", "{'descr': '>i8', 'fortran_order': False, 'shape': (3,), }", 24,
       CQ_EUNSUPPORTED, "'>i8'"},
      {"object dtype", "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", 24,
       CQ_EUNSUPPORTED, "object dtype '|O'"},
      {"structured dtype", "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, "
       "'shape': (3,), }", 24, CQ_EUNSUPPORTED, "structured dtype [('a', '<f4'), ('b', '<i4')]"},
      {"structured dtype not closed", "{'descr': [('a', '<f4'), 'fortran_order': False, "
       "'shape': (3,), }", 24, CQ_EFORMAT, "malformed header"},
      {"float16", "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }", 6, CQ_EUNSUPPORTED,
       "dtype '<f2' is not supported"},
      {"unicode dtype", "{'descr': '<U3', 'fortran_order': False, 'shape': (3,), }", 36,
       CQ_EUNSUPPORTED, "'<U3'"},
      {"dtype name", "{'descr': 'float32', 'fortran_order': False, 'shape': (3,), }", 12,
       CQ_EUNSUPPORTED, "'float32'"},
      {"empty descr", "{'descr': '', 'fortran_order': False, 'shape': (3,), }", 12,
       CQ_EUNSUPPORTED, "dtype ''"},
      {"descr not a string", "{'descr': 5, 'fortran_order': False, 'shape': (3,), }", 12,
       CQ_EFORMAT, "'descr' must be a string"},
      {"huge dims", "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, "
       "1099511627776), }", 16, CQ_EFORMAT, "exceeds the 17179869184-byte tensor limit"},
      {"product overflows 64 bits", "{'descr': '<i8', 'fortran_order': False, 'shape': "
       "(4611686018427387904, 4611686018427387904, 4611686018427387904), }", 0, CQ_EFORMAT,
       "tensor limit"},
      {"one byte over the limit", "{'descr': '|u1', 'fortran_order': False, 'shape': "
       "(17179869185,), }", 16, CQ_EFORMAT, "tensor limit"},
      {"float32 over the limit", "{'descr': '<f4', 'fortran_order': False, 'shape': "
       "(4294967297, 1), }", 16, CQ_EFORMAT, "tensor limit"},
      {"dimension beyond int64", "{'descr': '<f4', 'fortran_order': False, 'shape': "
       "(99999999999999999999,), }", 16, CQ_EFORMAT, "too large"},
      {"negative dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }", 12,
       CQ_EFORMAT, "negative ('-1')"},
      {"nine dimensions", "{'descr': '<f4', 'fortran_order': False, 'shape': "
       "(1, 1, 1, 1, 1, 1, 1, 1, 1), }", 4, CQ_EFORMAT, "9 dimensions"},
      {"shape not a tuple (5)", "{'descr': '<f4', 'fortran_order': False, 'shape': (5), }", 20,
       CQ_EFORMAT, "not a tuple"},
      {"shape is a list", "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }", 24,
       CQ_EFORMAT, "'shape' must be a tuple"},
      {"shape is an int", "{'descr': '<f4', 'fortran_order': False, 'shape': 6, }", 24,
       CQ_EFORMAT, "'shape' must be a tuple"},
      {"float dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 3), }", 24,
       CQ_EFORMAT, "decimal integer, found '2.0'"},
      {"hex dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (0x10,), }", 64,
       CQ_EFORMAT, "'0x10'"},
      {"leading zero", "{'descr': '<f4', 'fortran_order': False, 'shape': (03,), }", 12,
       CQ_EFORMAT, "'03'"},
      {"boolean dimension", "{'descr': '<f4', 'fortran_order': False, 'shape': (True,), }", 4,
       CQ_EFORMAT, "must be an integer"},
      {"empty tuple element", "{'descr': '<f4', 'fortran_order': False, 'shape': (,), }", 4,
       CQ_EFORMAT, "must be an integer"},
      {"truncated data", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 40,
       CQ_EFORMAT,
       "truncated: header says shape (3, 4) float32 = 48 bytes but only 40 bytes follow"},
      {"trailing bytes", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 56,
       CQ_EFORMAT, "8 trailing bytes: header says shape (3, 4) float32 = 48 bytes"},
      {"data for an empty shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", 4,
       CQ_EFORMAT, "4 trailing bytes"},
      {"scalar without data", "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 0,
       CQ_EFORMAT, "shape () float64 = 8 bytes but only 0"},
      {"non-ASCII garbage", "{\xff\xfe\x80garbage\x9b}", 4, CQ_EFORMAT, "found byte 0xff"},
      {"control byte", "{'descr': '<f4',\x01 'fortran_order': False, 'shape': (1,), }", 4,
       CQ_EFORMAT, "found byte 0x01"},
      {"escape in descr", "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,), }", 4,
       CQ_EUNSUPPORTED, "'<f\\\\x34'"},
      {"non-ASCII descr", "{'descr': '<f4\xe9', 'fortran_order': False, 'shape': (1,), }", 4,
       CQ_EUNSUPPORTED, "'<f4\\xe9'"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    add_bad(cases[k].name, make_dict(cases[k].dict, cases[k].data), cases[k].want,
            cases[k].in_message);
  }
  /* Framing problems inside the header. */
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
  add_bad("header not terminated by a newline", make_raw(1, 0, dict, strlen(dict), 12), CQ_EFORMAT,
          "not terminated by a newline (its last byte is '}')");
  const char *spaces = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }      ";
  add_bad("padding without a newline", make_raw(1, 0, spaces, strlen(spaces), 12), CQ_EFORMAT,
          "its last byte is ' '");
  const char nul[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\0     \n";
  add_bad("NUL byte in the header", make_raw(1, 0, nul, sizeof nul - 1, 12), CQ_EFORMAT,
          "NUL byte at byte 67");
  const char *long_suffix = "{'descr': '<f4', 'fortran_order': False, 'shape': (3L,), }\n";
  add_bad("Python 2 long suffix in version 3", make_raw(3, 0, long_suffix, strlen(long_suffix), 12),
          CQ_EFORMAT, "'3L'");
  const char *bad_utf8 = "{'descr': '<f4\xc3', 'fortran_order': False, 'shape': (3,), }\n";
  add_bad("invalid UTF-8 in version 3", make_raw(3, 0, bad_utf8, strlen(bad_utf8), 12), CQ_EFORMAT,
          "not valid UTF-8 (byte 0xc3");
  char deep[256];
  int n = snprintf(deep, sizeof deep, "{'descr': ");
  for (int i = 0; i < 40; i++) deep[n++] = '[';
  for (int i = 0; i < 40; i++) deep[n++] = ']';
  snprintf(deep + n, sizeof deep - (size_t)n, ", 'fortran_order': False, 'shape': (3,), }");
  add_bad("deeply nested descr", make_dict(deep, 12), CQ_EFORMAT, "nested deeper than 32");
}

static void test_malformed(void) {
  build_preamble_cases();
  build_header_cases();
  CHECK_MSG(bad_count >= 20, "only %d malformed cases", bad_count);
  char path[512];
  tmp_path("malformed.npy", path, sizeof path);
  for (int k = 0; k < bad_count; k++) {
    const bad_case *c = &bad[k];
    cq_status st = load_rejected(c->image.data, c->image.size);
    CHECK_MSG(st == c->want, "%s: returned %s (%s), expected %s", c->name, cq_status_str(st),
              cq_last_error(), cq_status_str(c->want));
    CHECK_MSG(message_ok(c->in_message, NULL), "%s: message \"%s\" should be one line containing "
              "\"%s\"", c->name, cq_last_error(), c->in_message);
    /* The same bytes from a file: same status, message prefixed with the path. */
    CHECK(write_whole(path, c->image.data, c->image.size) == 0);
    cq_tensor *t = NULL;
    st = cq_npy_load(path, &t);
    CHECK_MSG(st == c->want, "%s (file): returned %s (%s)", c->name, cq_status_str(st),
              cq_last_error());
    CHECK(t == NULL);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s: ", path);
    CHECK_MSG(message_ok(c->in_message, prefix), "%s (file): message \"%s\"", c->name,
              cq_last_error());
    bytes_free(&bad[k].image);
  }
  unlink(path);
  printf("test_npy: %d malformed images rejected\n", bad_count);
  /* The exact message of the contract's example. */
  bytes b = make_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 40);
  CHECK(write_whole(tmp_path("data.npy", path, sizeof path), b.data, b.size) == 0);
  cq_tensor *t = NULL;
  CHECK_STATUS(cq_npy_load(path, &t), CQ_EFORMAT);
  char want[700];
  snprintf(want, sizeof want, "%s: truncated: header says shape (3, 4) float32 = 48 bytes but only "
           "40 bytes follow", path);
  CHECK_STR_EQ(cq_last_error(), want);
  unlink(path);
  bytes_free(&b);
}

/* ---- truncations and mutations --------------------------------------------------------------- */

static void test_truncations(void) {
  static const char *files[] = {"f4_2x3.npy",   "f8_scalar.npy",  "i4_0.npy",
                                "f4_2x3_v2.npy", "i8_4_v3.npy", "i1_2x2x2.npy"};
  char path[512];
  long cases = 0;
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
    char src[512];
    snprintf(src, sizeof src, "%s/%s", NPY_DIR, files[k]);
    bytes b;
    CHECK(read_whole(src, &b) == 0);
    for (size_t len = 0; len < b.size; len++) {
      cq_status st = load_rejected(b.data, len);
      CHECK_MSG(st == CQ_EFORMAT, "%s cut to %zu bytes: %s (%s)", files[k], len, cq_status_str(st),
                cq_last_error());
      CHECK_MSG(message_ok(NULL, NULL), "%s cut to %zu bytes: message \"%s\"", files[k], len,
                cq_last_error());
      cases++;
    }
    /* Every truncation through a real file too (fstat path), for the first two files. */
    for (size_t len = 0; k < 2 && len < b.size; len++) {
      CHECK(write_whole(tmp_path("cut.npy", path, sizeof path), b.data, len) == 0);
      cq_tensor *t = NULL;
      cq_status st = cq_npy_load(path, &t);
      CHECK_MSG(st == CQ_EFORMAT && t == NULL, "%s file cut to %zu bytes: %s", files[k], len,
                cq_status_str(st));
      CHECK_MESSAGE(NULL, path);
      cases++;
    }
    /* Extra bytes after the data. */
    for (size_t extra = 1; extra <= 9; extra++) {
      bytes longer = {0};
      bytes_append(&longer, b.data, b.size);
      bytes_append(&longer, "ABCDEFGHI", extra);
      CHECK_STATUS(load_rejected(longer.data, longer.size), CQ_EFORMAT);
      CHECK_MESSAGE("trailing bytes", NULL);
      bytes_free(&longer);
    }
    bytes_free(&b);
  }
  unlink(path);
  printf("test_npy: %ld truncated images rejected\n", cases);
}

/* Every header byte replaced by bytes that matter to the parser: never a crash, never a status
 * other than OK / EFORMAT / EUNSUPPORTED, and a one-line message when refused. */
static void test_mutations(void) {
  static const unsigned char values[] = {0x00, 0xff, 0x80, ' ', '\n', '(', ')', ',', '\'', '"',
                                         '9',  '-',  'L',  '}', '{', '[', ']', ':', '\\', '0'};
  bytes b;
  CHECK(read_whole(NPY_DIR "/f4_2x3.npy", &b) == 0);
  long accepted = 0, refused = 0;
  for (size_t off = 0; off < 10 + 118 && off < b.size; off++) {
    for (size_t v = 0; v < sizeof values; v++) {
      unsigned char *copy = malloc(b.size);
      memcpy(copy, b.data, b.size);
      copy[off] = values[v];
      cq_tensor *t = NULL;
      cq_status st = cq_npy_load_buffer(copy, b.size, &t);
      if (st == CQ_OK) {
        accepted++;
        CHECK(t != NULL && cq_tensor_nbytes(t) == 24);
        cq_tensor_free(t);
      } else {
        refused++;
        CHECK_MSG(st == CQ_EFORMAT || st == CQ_EUNSUPPORTED, "byte %zu = 0x%02x: %s", off,
                  values[v], cq_status_str(st));
        CHECK_MSG(t == NULL && message_ok(NULL, NULL), "byte %zu = 0x%02x: message \"%s\"", off,
                  values[v], cq_last_error());
      }
      free(copy);
    }
  }
  printf("test_npy: mutations: %ld accepted, %ld refused\n", accepted, refused);
  bytes_free(&b);
}

/* ---- streams, arguments, allocation failures ------------------------------------------------- */

/* Loads `len` bytes of `image` through a pipe (/dev/fd/N), the path for streams of unknown size;
 * fail_after >= 0 makes that allocation fail. */
static void test_pipe(const bytes *image, size_t len, cq_status want, long fail_after) {
  int fds[2];
  if (pipe(fds) != 0) {
    check_report(__FILE__, __LINE__, "pipe failed: %s", strerror(errno));
    return;
  }
  CHECK(write(fds[1], image->data, len) == (ssize_t)len); /* small: fits the pipe buffer */
  close(fds[1]);
  char path[64];
  snprintf(path, sizeof path, "/dev/fd/%d", fds[0]);
  cq_tensor *t = NULL;
  cq_debug_fail_alloc_after(fail_after);
  cq_status st = cq_npy_load(path, &t);
  cq_debug_fail_alloc_after(-1);
  CHECK_STATUS(st, want);
  if (want == CQ_OK && t) {
    CHECK(t->dtype == CQ_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(memcmp(t->data, image->data + image->size - 24, 24) == 0);
  } else {
    CHECK(t == NULL);
    CHECK_MESSAGE(NULL, path);
  }
  cq_tensor_free(t);
  close(fds[0]);
}

static void test_load_misc(void) {
  cq_tensor *t = NULL;
  CHECK_STATUS(cq_npy_load(NULL, &t), CQ_EINVAL);
  CHECK_STATUS(cq_npy_load(NPY_DIR "/f4_2x3.npy", NULL), CQ_EINVAL);
  CHECK_STATUS(cq_npy_load_buffer("x", 1, NULL), CQ_EINVAL);
  CHECK_STATUS(cq_npy_load_buffer(NULL, 10, &t), CQ_EINVAL);
  CHECK_STATUS(cq_npy_load_buffer(NULL, 0, &t), CQ_EFORMAT);
  CHECK_STATUS(cq_npy_load(NPY_DIR "/no-such-file.npy", &t), CQ_EIO);
  CHECK_MESSAGE("No such file or directory", NPY_DIR "/no-such-file.npy: cannot open");
  CHECK_STATUS(cq_npy_load(NPY_DIR, &t), CQ_EIO);
  CHECK_MESSAGE("is a directory", NPY_DIR ": ");
  CHECK(t == NULL);
  /* A path with a newline in it still gives a one-line message. */
  CHECK_STATUS(cq_npy_load(TMP_DIR "/line\nbreak.npy", &t), CQ_EIO);
  CHECK_MESSAGE("line\\x0abreak.npy", NULL);

  bytes b;
  CHECK(read_whole(NPY_DIR "/f4_2x3.npy", &b) == 0);
  test_pipe(&b, b.size, CQ_OK, -1);
  test_pipe(&b, b.size - 1, CQ_EFORMAT, -1);
  test_pipe(&b, 0, CQ_EFORMAT, -1);
  test_pipe(&b, b.size, CQ_ENOMEM, 0); /* the stream buffer */
  test_pipe(&b, b.size, CQ_ENOMEM, 2); /* the tensor data */

  /* Allocation failures: every allocation of a load fails once; then it succeeds. */
  int file_ok = 0, buffer_ok = 0;
  for (long n = 0; n < 20 && !(file_ok && buffer_ok); n++) {
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_npy_load(NPY_DIR "/f4_2x3.npy", &t);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      file_ok = 1;
      cq_tensor_free(t);
    } else {
      CHECK_STATUS(st, CQ_ENOMEM);
      CHECK_MESSAGE("out of memory", NPY_DIR "/f4_2x3.npy: ");
      CHECK(t == NULL);
    }
    cq_debug_fail_alloc_after(n);
    st = cq_npy_load_buffer(b.data, b.size, &t);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      buffer_ok = 1;
      cq_tensor_free(t);
    } else {
      CHECK_STATUS(st, CQ_ENOMEM);
      CHECK_MESSAGE("out of memory", NULL);
    }
  }
  CHECK(file_ok && buffer_ok);
  bytes_free(&b);
}

/* ---- failing saves --------------------------------------------------------------------------- */

static cq_tensor *sample_tensor(int64_t n) {
  cq_tensor *t = NULL;
  int64_t shape[1] = {n};
  if (cq_tensor_create(&t, CQ_F32, 1, shape) != CQ_OK) return NULL;
  for (int64_t i = 0; i < n; i++) ((float *)t->data)[i] = (float)i;
  return t;
}

static int content_is(const char *path, const char *text) {
  bytes b;
  if (read_whole(path, &b) != 0) return 0;
  int same = b.size == strlen(text) && memcmp(b.data, text, b.size) == 0;
  bytes_free(&b);
  return same;
}

/* Saving into `dir` must fail with CQ_EIO and leave neither the file nor a temporary one. Runs in
 * a child (exit status 0 = as expected) so that the caller can drop privileges around it. */
static int save_fails_in_child(const char *dir, int drop_privileges) {
  fflush(stdout); /* or the child would inherit (and print) buffered output */
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (drop_privileges && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(77);
    char path[600];
    snprintf(path, sizeof path, "%s/out.npy", dir);
    char probe[600];
    snprintf(probe, sizeof probe, "%s/probe", dir);
    int probe_fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (probe_fd >= 0) { /* still writable: cannot test here */
      close(probe_fd);
      unlink(probe);
      _exit(78);
    }
    cq_tensor *t = sample_tensor(8);
    cq_status st = cq_npy_save(path, t);
    cq_tensor_free(t);
    int ok = st == CQ_EIO && message_ok("Permission denied", path);
    if (!ok) fprintf(stderr, "save into %s: %s: %s\n", dir, cq_status_str(st), cq_last_error());
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_save_unwritable(void) {
  char dir[512], path[600];
  tmp_path("readonly", dir, sizeof dir);
  mkdir(dir, 0755);
  chmod(dir, 0555);
  snprintf(path, sizeof path, "%s/out.npy", dir);
  int rc = save_fails_in_child(dir, 0);
  if (rc == 78 && geteuid() == 0) rc = save_fails_in_child(dir, 1); /* root ignores mode bits */
  if (rc == 77 || rc == 78) {
    printf("test_npy: skipped the unwritable-folder save: cannot make a folder unwritable here\n");
  } else {
    CHECK_MSG(rc == 0, "save into an unwritable folder: child exit %d", rc);
    CHECK(!file_exists(path));
    CHECK_INT_EQ(count_leftovers(dir), 0);
  }
  chmod(dir, 0755);
  rmdir(dir);

  cq_tensor *t = sample_tensor(8);
  /* A folder that does not exist, and a "folder" that is a regular file. */
  CHECK_STATUS(cq_npy_save(TMP_DIR "/no-such-dir/out.npy", t), CQ_EIO);
  CHECK_MESSAGE("No such file or directory", TMP_DIR "/no-such-dir/out.npy: ");
  CHECK(!file_exists(TMP_DIR "/no-such-dir"));
  CHECK(write_whole(tmp_path("plain", path, sizeof path), "x", 1) == 0);
  CHECK_STATUS(cq_npy_save(TMP_DIR "/plain/out.npy", t), CQ_EIO);
  CHECK_MESSAGE("Not a directory", NULL);
  CHECK(content_is(path, "x"));
  unlink(path);
  /* The target is a folder: the rename fails and the temporary file is removed. */
  tmp_path("a-folder.npy", path, sizeof path);
  mkdir(path, 0755);
  CHECK_STATUS(cq_npy_save(path, t), CQ_EIO);
  CHECK_MESSAGE("into place", path);
  struct stat sb;
  CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
  CHECK_INT_EQ(count_leftovers(TMP_DIR), 0);
  rmdir(path);
  /* Invalid tensors. */
  CHECK_STATUS(cq_npy_save(NULL, t), CQ_EINVAL);
  CHECK_STATUS(cq_npy_save(tmp_path("x.npy", path, sizeof path), NULL), CQ_EINVAL);
  cq_tensor fake = *t;
  fake.dtype = (cq_dtype)99;
  CHECK_STATUS(cq_npy_save(path, &fake), CQ_EINVAL);
  fake = *t;
  fake.ndim = 9;
  CHECK_STATUS(cq_npy_save(path, &fake), CQ_EINVAL);
  fake = *t;
  fake.shape[0] = -2;
  CHECK_STATUS(cq_npy_save(path, &fake), CQ_EINVAL);
  CHECK_MESSAGE("negative", path);
  fake = *t;
  fake.data = NULL;
  CHECK_STATUS(cq_npy_save(path, &fake), CQ_EINVAL);
  CHECK(!file_exists(path));
  cq_tensor_free(t);
}

/* A save that fails half-way (file-size limit) or on allocation leaves the old file as it was. */
static void test_save_no_clobber(void) {
  char path[512];
  tmp_path("keep.npy", path, sizeof path);
  const char *original = "original contents";
  CHECK(write_whole(path, original, strlen(original)) == 0);
  cq_tensor *t = sample_tensor(4096);

  struct rlimit old_limit, small;
  getrlimit(RLIMIT_FSIZE, &old_limit);
  small = old_limit;
  small.rlim_cur = 1000;
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  if (setrlimit(RLIMIT_FSIZE, &small) == 0) {
    cq_status st = cq_npy_save(path, t);
    setrlimit(RLIMIT_FSIZE, &old_limit);
    CHECK_STATUS(st, CQ_EIO);
    CHECK_MESSAGE("File too large", path);
    CHECK(content_is(path, original));
    CHECK_INT_EQ(count_leftovers(TMP_DIR), 0);
  } else {
    printf("test_npy: skipped the file-size-limit save: setrlimit failed\n");
  }
  signal(SIGXFSZ, old_handler);

  int saved = 0;
  for (long n = 0; n < 10 && !saved; n++) {
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_npy_save(path, t);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      saved = 1;
    } else {
      CHECK_STATUS(st, CQ_ENOMEM);
      CHECK_MESSAGE("out of memory", path);
      CHECK(content_is(path, original));
      CHECK_INT_EQ(count_leftovers(TMP_DIR), 0);
    }
  }
  CHECK(saved);
  /* A successful save replaces the file atomically and keeps its mode. */
  cq_tensor *back = NULL;
  CHECK_OK(cq_npy_load(path, &back));
  CHECK(back && same_tensor(t, back));
  cq_tensor_free(back);
  chmod(path, 0640);
  CHECK_OK(cq_npy_save(path, t));
  struct stat sb;
  CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0640);
  unlink(path);
  /* A new file gets 0666 minus the umask, like any file the process creates. */
  mode_t mask = umask(022);
  umask(mask);
  CHECK_OK(cq_npy_save(path, t));
  CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == (0666 & ~mask));
  CHECK_INT_EQ(count_leftovers(TMP_DIR), 0);
  unlink(path);
  cq_tensor_free(t);
}

int main(void) {
  remove_dir(TMP_DIR);
  if (mkdir(TMP_DIR, 0755) != 0) {
    fprintf(stderr, "test_npy: cannot create %s: %s\n", TMP_DIR, strerror(errno));
    return 1;
  }
  test_round_trips();
  test_numpy_files();
  test_accepted_variants();
  test_malformed();
  test_truncations();
  test_mutations();
  test_load_misc();
  test_save_unwritable();
  test_save_no_clobber();
  CHECK_INT_EQ(count_leftovers(TMP_DIR), 0);
  remove_dir(TMP_DIR);
  return check_summary("test_npy");
}
