/* Benchmark: HistogramObserver over a stream of batches, then calculate_qparams().
 *
 * Usage: bench_histogram [--reps N] [--threads N] [--config "key=value ..."] BATCH.npy...
 *   Each file is one float32 batch. --threads sets cquant's default thread pool
 *   (cq_set_num_threads; default 1, 0 = one per CPU) before anything is timed. One timed run
 *   creates the observer, feeds every batch with cq_observer_update, computes the qparams and
 *   frees the observer; the files are loaded once, before timing. Prints one JSON object: the
 *   thread count, the median, minimum and per-phase medians in seconds, and the resulting range,
 *   scale and zero point (floats as Python reprs, so a script can compare them with PyTorch's bit
 *   for bit); exits with status 1 if any run's result differs from the first run's.
 *   bench/histogram_vs_torch.py runs it beside PyTorch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pyformat.h"
#include "cquant/npy.h"
#include "cquant/observer.h"
#include "cquant/threads.h"

#define MAX_FILES 256

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int compare_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, compare_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int parse_config(const char *text, cq_observer_config *cfg) {
  char *copy = strdup(text);
  if (!copy) return -1;
  int rc = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) {
      fprintf(stderr, "bench_histogram: '%s' is not key=value\n", tok);
      rc = -1;
      break;
    }
    *eq = '\0';
    if (cq_observer_config_set(cfg, tok, eq + 1) != CQ_OK) {
      fprintf(stderr, "bench_histogram: %s\n", cq_last_error());
      rc = -1;
      break;
    }
  }
  free(copy);
  return rc;
}

/* One timed run; fills the phase times and, on the last run, the results. */
static cq_status run_once(const cq_observer_config *cfg, cq_tensor **batches, int nbatches,
                          double *t_update, double *t_qparams, float range[2], cq_qparams *qp) {
  cq_observer *obs = NULL;
  const double t0 = now_seconds();
  cq_status st = cq_observer_create(cfg, &obs);
  for (int b = 0; b < nbatches && st == CQ_OK; b++) {
    st = cq_observer_update_tensor(obs, batches[b]);
  }
  const double t1 = now_seconds();
  if (st == CQ_OK) st = cq_observer_qparams(obs, qp);
  const double t2 = now_seconds();
  if (st == CQ_OK) cq_observer_min_max(obs, &range[0], &range[1], 1);
  cq_observer_free(obs);
  *t_update = t1 - t0;
  *t_qparams = t2 - t1;
  return st;
}

int main(int argc, char **argv) {
  int reps = 20;
  int threads = 1;
  cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  cq_tensor *batches[MAX_FILES];
  int nbatches = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      if (parse_config(argv[++i], &cfg) != 0) return 2;
    } else if (nbatches < MAX_FILES) {
      if (cq_npy_load(argv[i], &batches[nbatches]) != CQ_OK) {
        fprintf(stderr, "bench_histogram: %s\n", cq_last_error());
        return 1;
      }
      nbatches++;
    } else {
      fprintf(stderr, "bench_histogram: more than %d batch files\n", MAX_FILES);
      return 2;
    }
  }
  if (nbatches == 0 || reps < 1) {
    fprintf(stderr, "usage: bench_histogram [--reps N] [--threads N] "
                    "[--config \"key=value ...\"] BATCH.npy...\n");
    return 2;
  }
  if (cq_set_num_threads(threads) != CQ_OK) {
    fprintf(stderr, "bench_histogram: %s\n", cq_last_error());
    return 2;
  }
  double *total = malloc(sizeof(double) * (size_t)reps);
  double *upd = malloc(sizeof(double) * (size_t)reps);
  double *qps = malloc(sizeof(double) * (size_t)reps);
  if (!total || !upd || !qps) return 1;
  float range[2] = {0, 0};
  cq_qparams qp;
  memset(&qp, 0, sizeof qp);
  int64_t elements = 0;
  for (int b = 0; b < nbatches; b++) elements += cq_tensor_numel(batches[b]);
  float first[3] = {0, 0, 0};
  int32_t first_zp = 0;
  for (int r = 0; r < reps; r++) {
    cq_qparams_release(&qp);
    cq_status st = run_once(&cfg, batches, nbatches, &upd[r], &qps[r], range, &qp);
    if (st != CQ_OK) {
      fprintf(stderr, "bench_histogram: %s\n", cq_last_error());
      return 1;
    }
    total[r] = upd[r] + qps[r];
    /* every run must give the same bits */
    const float got[3] = {range[0], range[1], qp.scale[0]};
    if (r == 0) {
      memcpy(first, got, sizeof first);
      first_zp = qp.zero_point[0];
    } else if (memcmp(first, got, sizeof first) != 0 || first_zp != qp.zero_point[0]) {
      fprintf(stderr, "bench_histogram: run %d gave a different result than run 0\n", r);
      return 1;
    }
  }
  char smin[CQ_PYFLOAT_BUFSIZE], smax[CQ_PYFLOAT_BUFSIZE], sscale[CQ_PYFLOAT_BUFSIZE];
  cq_format_pyfloat(range[0], smin);
  cq_format_pyfloat(range[1], smax);
  cq_format_pyfloat(qp.scale[0], sscale);
  const double t_update = median(upd, reps), t_qparams = median(qps, reps);
  const double t_total = median(total, reps);
  printf("{\"impl\": \"cquant\", \"threads\": %d, \"batches\": %d, \"elements\": %lld, "
         "\"reps\": %d, \"median_s\": %.9f, \"min_s\": %.9f, \"update_median_s\": %.9f, "
         "\"qparams_median_s\": %.9f, \"min_val\": %s, \"max_val\": %s, \"scale\": %s, "
         "\"zero_point\": %d}\n",
         cq_get_num_threads(), nbatches, (long long)elements, reps, t_total, total[0], t_update,
         t_qparams, smin, smax, sscale, qp.zero_point[0]);
  cq_qparams_release(&qp);
  for (int b = 0; b < nbatches; b++) cq_tensor_free(batches[b]);
  free(total);
  free(upd);
  free(qps);
  cq_set_num_threads(1);
  return 0;
}
