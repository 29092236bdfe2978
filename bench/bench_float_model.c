/* Float forward of the seed's static model, Sequential(Conv2d(2, 64, 3), ReLU, Conv2d(64, 128, 3),
 * ReLU), on one input: median milliseconds over repeated runs, as JSON. Weights come from a
 * safetensors file so the output can be compared with PyTorch's on the same weights.
 *
 *   bench_float_model WEIGHTS.safetensors INPUT.npy OUTPUT.npy [REPS]
 *
 * OUTPUT.npy receives the model's output (the caller compares it with PyTorch's). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cquant/cquant.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: bench_float_model WEIGHTS.safetensors INPUT.npy OUTPUT.npy [REPS]\n");
    return 2;
  }
  int reps = argc > 4 ? atoi(argv[4]) : 50;
  if (reps < 1) reps = 1;
  cq_module *c1, *r1, *c2, *r2, *model;
  cq_conv_options o1 = cq_conv_defaults(2, 64, 3, 3), o2 = cq_conv_defaults(64, 128, 3, 3);
  cq_tensor *x = NULL, *y = NULL;
  cq_ctx *ctx = NULL;
  if (cq_conv2d(&c1, &o1) || cq_relu(&r1) || cq_conv2d(&c2, &o2) || cq_relu(&r2)) goto fail;
  cq_module *children[4] = {c1, r1, c2, r2};
  if (cq_sequential(&model, 4, children) || cq_load_safetensors(model, argv[1], 1) ||
      cq_npy_load(argv[2], &x) || cq_ctx_create(&ctx)) {
    goto fail;
  }
  cq_module_train(model, 0);
  double *ms = malloc(sizeof(double) * (size_t)reps);
  for (int r = 0; r < reps + 3; r++) { /* 3 warm-up runs */
    struct timespec t0, t1;
    cq_ctx_reset(ctx);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (cq_module_forward1(model, ctx, x, &y)) goto fail;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r >= 3) {
      ms[r - 3] = 1e3 * (double)(t1.tv_sec - t0.tv_sec) + 1e-6 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
  }
  qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
  if (cq_npy_save(argv[3], y)) goto fail;
  printf("{\"median_ms\": %.4f, \"min_ms\": %.4f, \"reps\": %d}\n", ms[reps / 2], ms[0], reps);
  free(ms);
  cq_ctx_free(ctx);
  cq_module_free(model);
  cq_tensor_free(x);
  return 0;
fail:
  fprintf(stderr, "bench_float_model: %s\n", cq_last_error());
  return 1;
}
