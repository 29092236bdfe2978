/* The default thread pool behind cq_set_num_threads. */
#include "cquant/threads.h"

#include <unistd.h>

#include "core/threadpool.h"

static cq_threadpool *default_pool; /* NULL = one thread */
static int default_threads = 1;

cq_status cq_set_num_threads(int n) {
  if (n < 0 || n > 1024) return cq_fail(CQ_EINVAL, "thread count %d is outside [0, 1024]", n);
  if (n == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? (int)(cpus > 1024 ? 1024 : cpus) : 1;
  }
  cq_threadpool *pool = NULL;
  if (n > 1) {
    cq_status st = cq_threadpool_create(n, &pool);
    if (st != CQ_OK) return st;
  }
  cq_threadpool_destroy(default_pool);
  default_pool = pool;
  default_threads = n;
  return CQ_OK;
}

int cq_get_num_threads(void) { return default_threads; }

cq_threadpool *cq_default_threadpool(void) { return default_pool; }
