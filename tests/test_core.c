/* Core: status messages, tensors, allocation-failure handling, and Python/PyTorch number printing. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/alloc.h"
#include "core/pyformat.h"
#include "core/threadpool.h"
#include "core/strbuf.h"
#include "cquant/cquant.h"

static void test_status(void) {
  CHECK_STR_EQ(cq_status_str(CQ_OK), "ok");
  CHECK_STR_EQ(cq_status_str(CQ_EFORMAT), "malformed input");
  CHECK_STR_EQ(cq_status_str((cq_status)999), "unknown status");
  CHECK(cq_fail(CQ_EINVAL, "bad value %d", 7) == CQ_EINVAL);
  CHECK_STR_EQ(cq_last_error(), "bad value 7");
  CHECK(cq_fail_context(CQ_EINVAL, "file.npy") == CQ_EINVAL);
  CHECK_STR_EQ(cq_last_error(), "file.npy: bad value 7");
  /* messages stay on one line whatever they quote */
  cq_fail(CQ_EFORMAT, "entry '%s' is bad", "a\nb\tc");
  CHECK_STR_EQ(cq_last_error(), "entry 'a\\x0ab\\x09c' is bad");
  cq_fail_context(CQ_EFORMAT, "dir\rname");
  CHECK(strchr(cq_last_error(), '\r') == NULL && strchr(cq_last_error(), '\n') == NULL);
}

static void test_tensor(void) {
  cq_tensor *t = NULL;
  int64_t shape[3] = {2, 3, 4};
  CHECK_OK(cq_tensor_create(&t, CQ_F32, 3, shape));
  CHECK_INT_EQ(cq_tensor_numel(t), 24);
  CHECK_INT_EQ(cq_tensor_nbytes(t), 96);
  CHECK_INT_EQ(t->strides[0], 12);
  CHECK_INT_EQ(t->strides[1], 4);
  CHECK_INT_EQ(t->strides[2], 1);
  CHECK(((float *)t->data)[23] == 0.0f);
  cq_tensor_free(t);

  int64_t scalar_shape[1] = {0};
  CHECK_OK(cq_tensor_create(&t, CQ_I64, 0, scalar_shape));
  CHECK_INT_EQ(cq_tensor_numel(t), 1);
  cq_tensor_free(t);

  int64_t empty[2] = {0, 5};
  CHECK_OK(cq_tensor_create(&t, CQ_U8, 2, empty));
  CHECK_INT_EQ(cq_tensor_numel(t), 0);
  cq_tensor_free(t);

  int64_t neg[2] = {3, -1};
  CHECK_STATUS(cq_tensor_create(&t, CQ_F32, 2, neg), CQ_EINVAL);
  CHECK(t == NULL);
  int64_t huge[3] = {1 << 20, 1 << 20, 1 << 20};
  CHECK_STATUS(cq_tensor_create(&t, CQ_F32, 3, huge), CQ_ENOMEM);
  int64_t overflow[4] = {INT64_MAX, INT64_MAX, 2, 2};
  CHECK_STATUS(cq_tensor_create(&t, CQ_F32, 4, overflow), CQ_ENOMEM);
  CHECK_STATUS(cq_tensor_create(&t, CQ_F32, 9, shape), CQ_EINVAL);
  CHECK_STATUS(cq_tensor_create(&t, (cq_dtype)42, 1, shape), CQ_EINVAL);

  int8_t raw[6] = {-3, -2, -1, 0, 1, 127};
  int64_t s6[1] = {6};
  cq_tensor *w = NULL, *f = NULL;
  CHECK_OK(cq_tensor_wrap(&w, CQ_S8, 1, s6, raw));
  CHECK_OK(cq_tensor_to_f32(w, &f));
  CHECK(((float *)f->data)[0] == -3.0f && ((float *)f->data)[5] == 127.0f);
  cq_tensor_free(f);
  cq_tensor_free(w); /* does not free raw */

  char buf[64];
  CHECK_STR_EQ(cq_shape_str(3, shape, buf, sizeof buf), "[2, 3, 4]");
  CHECK_STR_EQ(cq_shape_str(0, shape, buf, sizeof buf), "[]");
}

static void test_alloc_failure(void) {
  int64_t shape[2] = {4, 4};
  cq_tensor *t = NULL;
  /* every allocation in create fails in turn; none may crash or leak */
  for (long n = 0; n < 3; n++) {
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_tensor_create(&t, CQ_F32, 2, shape);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      cq_tensor_free(t);
    } else {
      CHECK_INT_EQ(st, CQ_ENOMEM);
      CHECK(t == NULL);
    }
  }
  cq_qparams qp;
  cq_debug_fail_alloc_after(1);
  CHECK_STATUS(cq_qparams_init(&qp, CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, 8, 0), CQ_ENOMEM);
  cq_debug_fail_alloc_after(-1);
}

/* Packed-weight blocks: 64-byte aligned, never overlapping, each pointer keeps its bytes whatever
 * is freed around it, sizes past one 2 MiB block included; failures are recorded. */
static void test_weight_alloc(void) {
  enum { N = 40 };
  const size_t sizes[N] = {1,      63,      64,      65,      4096,    100000,  1 << 20, 3 << 20,
                           777,    2 << 20, (2 << 20) - 64, (2 << 20) - 63, 5, 250000, 1, 9000,
                           123457, 64,      700000,  31,      1 << 19, 4 << 20, 17,     2,
                           3,      4,       100,     1000,    10000,   100000,  500000, 1500000,
                           640,    6400,    64000,   640000,  65,      129,     257,    513};
  unsigned char *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = cq_malloc_weights(sizes[i], "test weights");
    CHECK(p[i] != NULL && ((uintptr_t)p[i] & 63) == 0);
    if (p[i]) memset(p[i], i + 1, sizes[i]);
  }
  /* free every third, allocate again, then check every live block still holds its byte */
  for (int i = 0; i < N; i += 3) cq_free_weights(p[i]);
  for (int i = 0; i < N; i += 3) {
    p[i] = cq_malloc_weights(sizes[i], "test weights");
    CHECK(p[i] != NULL);
    if (p[i]) memset(p[i], i + 1, sizes[i]);
  }
  for (int i = 0; i < N; i++) {
    int intact = 1;
    for (size_t j = 0; j < sizes[i] && p[i]; j += 61) intact &= p[i][j] == (unsigned char)(i + 1);
    CHECK_MSG(intact && (!p[i] || p[i][sizes[i] - 1] == (unsigned char)(i + 1)),
              "weight block %d was overwritten", i);
  }
  for (int i = N - 1; i >= 0; i -= 2) cq_free_weights(p[i]);
  for (int i = 0; i < N; i += 2) cq_free_weights(p[i]);
  cq_free_weights(NULL);
  cq_debug_fail_alloc_after(0);
  CHECK(cq_malloc_weights(100, "test weights") == NULL);
  cq_debug_fail_alloc_after(-1);
  CHECK(strstr(cq_last_error(), "test weights") != NULL);
  CHECK(cq_malloc_weights(SIZE_MAX - 10, "huge weights") == NULL);
}

static void check_pyfloat(double v, const char *want) {
  char buf[CQ_PYFLOAT_BUFSIZE];
  CHECK_STR_EQ(cq_format_pyfloat(v, buf), want);
}

static void test_pyfloat(void) {
  /* expected strings are Python 3's repr() of the same doubles */
  check_pyfloat((double)0.014756753f, "0.014756753109395504");
  check_pyfloat(1.0, "1.0");
  check_pyfloat(1e-05, "1e-05");
  check_pyfloat(1.1920928955078125e-07, "1.1920928955078125e-07");
  check_pyfloat(1e16, "1e+16");
  check_pyfloat(1234567890123456.0, "1234567890123456.0");
  check_pyfloat(0.0001, "0.0001");
  check_pyfloat(123.456, "123.456");
  check_pyfloat(5e-324, "5e-324");
  check_pyfloat(1.7976931348623157e308, "1.7976931348623157e+308");
  check_pyfloat(-0.0, "-0.0");
  check_pyfloat(100.0, "100.0");
  check_pyfloat(0.1, "0.1");
  check_pyfloat((double)-1.3974f, "-1.3974000215530396");
  check_pyfloat(INFINITY, "inf");
  check_pyfloat(-INFINITY, "-inf");
  check_pyfloat(NAN, "nan");
}

static void check_tensor_repr(const float *v, int64_t n, const char *want) {
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  cq_format_torch_tensor_1d(&sb, v, n);
  CHECK_STR_EQ(cq_strbuf_str(&sb), want);
  cq_strbuf_release(&sb);
}

static void test_torch_tensor_format(void) {
  /* expected strings are torch 1.13's print() of the same float32 values */
  const float a[] = {1.0f, 2.0f, 0.0f};
  check_tensor_repr(a, 3, "tensor([1., 2., 0.])");
  const float b[] = {1e-5f, 1.0f};
  check_tensor_repr(b, 2, "tensor([1.0000e-05, 1.0000e+00])");
  const float c[] = {0.5f, 3000.0f};
  check_tensor_repr(c, 2, "tensor([5.0000e-01, 3.0000e+03])");
  const float d[] = {1.0f, 2000.0f};
  check_tensor_repr(d, 2, "tensor([1.0000e+00, 2.0000e+03])");
  const float e[] = {0.0f, 0.0f};
  check_tensor_repr(e, 2, "tensor([0., 0.])");
  const float f[] = {INFINITY, 1.5f};
  check_tensor_repr(f, 2, "tensor([   inf, 1.5000])");
  const float g[] = {-1.5083f, -1.1236f, -1.0208f};
  check_tensor_repr(g, 3, "tensor([-1.5083, -1.1236, -1.0208])");
  check_tensor_repr(NULL, 0, "tensor([])");
  float h[30];
  for (int i = 0; i < 30; i++) h[i] = (float)i / 7.0f;
  check_tensor_repr(h, 30,
                    "tensor([0.0000, 0.1429, 0.2857, 0.4286, 0.5714, 0.7143, 0.8571, 1.0000, "
                    "1.1429,\n        1.2857, 1.4286, 1.5714, 1.7143, 1.8571, 2.0000, 2.1429, "
                    "2.2857, 2.4286,\n        2.5714, 2.7143, 2.8571, 3.0000, 3.1429, 3.2857, "
                    "3.4286, 3.5714, 3.7143,\n        3.8571, 4.0000, 4.1429])");
  float *big = malloc(sizeof(float) * 1005);
  for (int i = 0; i < 1005; i++) big[i] = (float)i;
  check_tensor_repr(big, 1005,
                    "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.0020e+03, 1.0030e+03,\n"
                    "        1.0040e+03])");
  free(big);
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  int64_t iv[2] = {100000, -3};
  cq_format_torch_int_tensor_1d(&sb, iv, 2, "torch.int32");
  CHECK_STR_EQ(cq_strbuf_str(&sb), "tensor([100000,     -3], dtype=torch.int32)");
  cq_strbuf_release(&sb);
}

/* The pool: every item of every job is processed exactly once, by calls with the partition's
 * ranges, no two calls of the same range index at once; a call that holds its range up (as a
 * worker on a busy core would) leaves the other ranges to the threads that are free. */
enum { POOL_MAX_ITEMS = 64, POOL_MAX_PARTS = 8 };
typedef struct pool_job {
  int64_t n;
  int parts;
  int slow; /* range 1 sleeps first */
  atomic_int count[POOL_MAX_ITEMS];
  atomic_int busy[POOL_MAX_PARTS];
  atomic_int calls, bad;
} pool_job;

static void pool_part(void *ctx, int t, int64_t begin, int64_t end) {
  pool_job *j = ctx;
  int64_t b, e;
  cq_partition(j->n, j->parts, t, &b, &e);
  if (t < 0 || t >= j->parts || b != begin || e != end || atomic_exchange(&j->busy[t], 1)) {
    atomic_fetch_add(&j->bad, 1);
    return;
  }
  if (j->slow && t == 1) nanosleep(&(struct timespec){0, 2000000}, NULL);
  for (int64_t i = begin; i < end; i++) atomic_fetch_add(&j->count[i], 1);
  atomic_fetch_add(&j->calls, 1);
  atomic_store(&j->busy[t], 0);
}

static void count_item(void *ctx, int t, int64_t begin, int64_t end) {
  int *hits = ctx;
  (void)t;
  for (int64_t i = begin; i < end; i++) hits[i]++;
}

static void test_threadpool(void) {
  cq_threadpool *bad = NULL;
  CHECK_STATUS(cq_threadpool_create(-1, &bad), CQ_EINVAL);
  CHECK(bad == NULL);
  CHECK_INT_EQ(cq_threadpool_threads(NULL), 1);
  int hits[10] = {0};
  cq_parallel_for(NULL, 10, 0, count_item, hits); /* no pool: all on the caller */
  CHECK(hits[0] == 1 && hits[9] == 1);
  int64_t b, e;
  cq_partition(10, 3, 2, &b, &e);
  CHECK(b == 6 && e == 10);
  uint32_t seed = 12345;
  for (int threads = 2; threads <= 4; threads++) {
    cq_threadpool *tp = NULL;
    CHECK_OK(cq_threadpool_create(threads, &tp));
    if (!tp) return;
    CHECK_INT_EQ(cq_threadpool_threads(tp), threads);
    for (int it = 0; it < 3000; it++) {
      seed = seed * 1664525u + 1013904223u;
      pool_job *j = calloc(1, sizeof *j);
      j->n = 1 + (int64_t)((seed >> 8) % POOL_MAX_ITEMS);
      const int max_threads = (int)((seed >> 20) % 6); /* 0: no limit */
      j->slow = it % 500 == 0;
      int parts = threads;
      if (max_threads > 0 && parts > max_threads) parts = max_threads;
      if (parts > j->n) parts = (int)j->n;
      j->parts = parts;
      cq_parallel_for(tp, j->n, max_threads, pool_part, j);
      int once = 1;
      for (int64_t i = 0; i < j->n; i++) once &= atomic_load(&j->count[i]) == 1;
      CHECK_MSG(once && atomic_load(&j->bad) == 0 && atomic_load(&j->calls) == parts,
                "%d threads, job %d (n=%lld, max %d): items once %d, bad calls %d, calls %d of %d",
                threads, it, (long long)j->n, max_threads, once, atomic_load(&j->bad),
                atomic_load(&j->calls), parts);
      free(j);
      /* now and then the workers go to sleep between jobs */
      if (it % 1000 == 999) nanosleep(&(struct timespec){0, 30000000}, NULL);
    }
    cq_threadpool_destroy(tp);
  }
}

int main(void) {
  test_status();
  test_tensor();
  test_alloc_failure();
  test_weight_alloc();
  test_threadpool();
  test_pyfloat();
  test_torch_tensor_format();
  return check_summary("test_core");
}
