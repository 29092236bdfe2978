/* Trains the Fashion-MNIST CNN in C (Conv-BN-ReLU-Pool twice, Linear-ReLU-Linear) with Adam and
 * cross-entropy, from a fixed seed, then reports test accuracy and saves the weights.
 *
 *   ./build/examples/train_fashion_mnist [--data DIR] [--epochs N] [--out weights.safetensors]
 *
 * DIR holds the four IDX files (train-images-idx3-ubyte.gz, ...); the default is Debian's
 * dataset-fashion-mnist location. Prints one JSON line per epoch on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cquant/cquant.h"

#define CHECK_OR_DIE(expr)                                           \
  do {                                                               \
    if ((expr) != CQ_OK) {                                           \
      fprintf(stderr, "train_fashion_mnist: %s\n", cq_last_error()); \
      exit(1);                                                       \
    }                                                                \
  } while (0)

static cq_module *conv_block(int64_t in, int64_t out) {
  cq_conv_options o = cq_conv_defaults(in, out, 3, 3);
  o.padding[0] = o.padding[1] = 1;
  cq_pool_options p = cq_pool_defaults(2, 2);
  cq_module *conv, *bn, *relu, *pool;
  CHECK_OR_DIE(cq_conv2d(&conv, &o));
  CHECK_OR_DIE(cq_batchnorm2d(&bn, out));
  CHECK_OR_DIE(cq_relu(&relu));
  CHECK_OR_DIE(cq_maxpool2d(&pool, &p));
  cq_module *children[4] = {conv, bn, relu, pool}, *seq;
  CHECK_OR_DIE(cq_sequential(&seq, 4, children));
  return seq;
}

/* The demo's CNN: features (two conv blocks) and a classifier. */
static cq_module *build_cnn(void) {
  cq_module *flatten, *fc1, *relu, *fc2, *model;
  CHECK_OR_DIE(cq_flatten(&flatten, 1, -1));
  CHECK_OR_DIE(cq_linear(&fc1, 32 * 7 * 7, 128, 1));
  CHECK_OR_DIE(cq_relu(&relu));
  CHECK_OR_DIE(cq_linear(&fc2, 128, 10, 1));
  cq_module *children[6] = {conv_block(1, 16), conv_block(16, 32), flatten, fc1, relu, fc2};
  CHECK_OR_DIE(cq_sequential(&model, 6, children));
  return model;
}

/* uint8 images [N, 28, 28] -> float [N, 1, 28, 28] scaled to [0, 1]; labels -> int64. */
static void to_float(const cq_tensor *images, cq_tensor **out) {
  int64_t shape[4] = {images->shape[0], 1, 28, 28};
  CHECK_OR_DIE(cq_tensor_create(out, CQ_F32, 4, shape));
  const uint8_t *src = images->data;
  float *dst = (*out)->data;
  for (int64_t i = 0; i < cq_tensor_numel(images); i++) dst[i] = (float)src[i] / 255.0f;
}

static void to_int64(const cq_tensor *labels, cq_tensor **out) {
  CHECK_OR_DIE(cq_tensor_create(out, CQ_I64, 1, labels->shape));
  for (int64_t i = 0; i < labels->shape[0]; i++) {
    ((int64_t *)(*out)->data)[i] = ((const uint8_t *)labels->data)[i];
  }
}

static void load_split(const char *dir, const char *split, cq_tensor **x, cq_tensor **y) {
  char path[1024];
  cq_tensor *raw;
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, split);
  CHECK_OR_DIE(cq_idx_load(path, &raw));
  to_float(raw, x);
  cq_tensor_free(raw);
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
  CHECK_OR_DIE(cq_idx_load(path, &raw));
  to_int64(raw, y);
  cq_tensor_free(raw);
}

static double evaluate(cq_module *model, cq_ctx *ctx, const cq_tensor *x, const cq_tensor *y) {
  const int64_t n = x->shape[0], batch = 500;
  int64_t correct = 0;
  cq_module_train(model, 0);
  cq_ctx_set_grad(ctx, 0);
  for (int64_t start = 0; start < n; start += batch) {
    int64_t b = n - start < batch ? n - start : batch;
    int64_t shape[4] = {b, 1, 28, 28};
    cq_tensor *xb, *logits;
    CHECK_OR_DIE(cq_tensor_wrap(&xb, CQ_F32, 4, shape, (float *)x->data + start * 784));
    CHECK_OR_DIE(cq_module_forward1(model, ctx, xb, &logits));
    const float *l = logits->data;
    for (int64_t i = 0; i < b; i++) {
      int best = 0;
      for (int c = 1; c < 10; c++) best = l[i * 10 + c] > l[i * 10 + best] ? c : best;
      correct += best == ((const int64_t *)y->data)[start + i];
    }
    cq_tensor_free(xb);
    cq_ctx_reset(ctx);
  }
  return (double)correct / (double)n;
}

int main(int argc, char **argv) {
  const char *dir = "/usr/share/datasets/fashion-mnist";
  const char *out = NULL;
  int epochs = 3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--data") && i + 1 < argc) {
      dir = argv[++i];
    } else if (!strcmp(argv[i], "--epochs") && i + 1 < argc) {
      epochs = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      out = argv[++i];
    } else {
      fprintf(stderr, "usage: train_fashion_mnist [--data DIR] [--epochs N] [--out FILE]\n");
      return 2;
    }
  }
  cq_manual_seed(0);
  cq_tensor *xtrain, *ytrain, *xtest, *ytest;
  load_split(dir, "train", &xtrain, &ytrain);
  load_split(dir, "t10k", &xtest, &ytest);
  cq_module *model = build_cnn(), *loss_fn;
  CHECK_OR_DIE(cq_cross_entropy_loss(&loss_fn));
  cq_optimizer *opt;
  CHECK_OR_DIE(cq_adam(&opt, model, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f));
  cq_ctx *ctx;
  CHECK_OR_DIE(cq_ctx_create(&ctx));
  float one = 1.0f;
  cq_tensor *seed;
  CHECK_OR_DIE(cq_tensor_wrap(&seed, CQ_F32, 0, NULL, &one));
  const int64_t n = xtrain->shape[0], batch = 64;
  int64_t *order = malloc(sizeof *order * (size_t)n);
  float *xb_data = malloc(sizeof(float) * (size_t)(batch * 784));
  int64_t *yb_data = malloc(sizeof(int64_t) * (size_t)batch);
  uint64_t shuffle = 12345;
  for (int epoch = 0; epoch < epochs; epoch++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates with a fixed xorshift stream */
      shuffle ^= shuffle << 13;
      shuffle ^= shuffle >> 7;
      shuffle ^= shuffle << 17;
      int64_t j = (int64_t)(shuffle % (uint64_t)(i + 1)), tmp = order[i];
      order[i] = order[j];
      order[j] = tmp;
    }
    cq_module_train(model, 1);
    double loss_sum = 0;
    int64_t batches = 0;
    for (int64_t start = 0; start + batch <= n; start += batch) {
      for (int64_t k = 0; k < batch; k++) {
        memcpy(xb_data + k * 784, (float *)xtrain->data + order[start + k] * 784, sizeof(float) * 784);
        yb_data[k] = ((int64_t *)ytrain->data)[order[start + k]];
      }
      int64_t xs[4] = {batch, 1, 28, 28};
      cq_tensor *xb, *yb, *logits, *loss;
      CHECK_OR_DIE(cq_tensor_wrap(&xb, CQ_F32, 4, xs, xb_data));
      CHECK_OR_DIE(cq_tensor_wrap(&yb, CQ_I64, 1, &batch, yb_data));
      cq_ctx_set_grad(ctx, 1);
      CHECK_OR_DIE(cq_module_forward1(model, ctx, xb, &logits));
      cq_tensor *pair[2] = {logits, yb};
      CHECK_OR_DIE(cq_module_forward(loss_fn, ctx, 2, pair, 1, &loss));
      cq_optimizer_zero_grad(opt);
      CHECK_OR_DIE(cq_ctx_backward(ctx, loss, seed, NULL, NULL));
      CHECK_OR_DIE(cq_optimizer_step(opt));
      loss_sum += *(float *)loss->data;
      batches++;
      cq_ctx_reset(ctx);
      cq_tensor_free(xb);
      cq_tensor_free(yb);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double acc = evaluate(model, ctx, xtest, ytest);
    printf("{\"epoch\": %d, \"train_loss\": %.4f, \"test_accuracy\": %.4f, \"epoch_seconds\": %.1f}\n",
           epoch + 1, loss_sum / (double)batches, acc, seconds);
    fflush(stdout);
  }
  if (out) CHECK_OR_DIE(cq_save_safetensors(model, out));
  free(order);
  free(xb_data);
  free(yb_data);
  cq_tensor_free(seed);
  cq_ctx_free(ctx);
  cq_optimizer_free(opt);
  cq_module_free(loss_fn);
  cq_module_free(model);
  cq_tensor_free(xtrain);
  cq_tensor_free(ytrain);
  cq_tensor_free(xtest);
  cq_tensor_free(ytest);
  return 0;
}
