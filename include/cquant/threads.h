/* The library's worker threads (torch.set_num_threads). Kernels and observers that parallelise use
 * the default pool; their results are bit-identical for any thread count (work is split so that
 * every output is computed by one thread in a fixed order). Default: 1 thread. */
#ifndef CQUANT_THREADS_H
#define CQUANT_THREADS_H

#include "cquant/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* n >= 1 threads in total (the caller included); 0 means one per online CPU. Replaces the default
 * pool; must not be called while another thread is running cquant work. CQ_EINVAL for n < 0 or
 * n > 1024. */
CQ_API cq_status cq_set_num_threads(int n);
CQ_API int cq_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
