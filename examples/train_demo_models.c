/* Trains the two models of `cquant demo` in C from a fixed seed and writes their float weights:
 *
 *   ./build/examples/train_demo_models [--data DIR] [--out DIR] [--model cnn|lstm|both]
 *                                      [--epochs N] [--threads N]
 *
 * DIR holds Fashion-MNIST's IDX files (train-images-idx3-ubyte.gz, ...). The default is Debian's
 * dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) when it is installed, else the subset
 * shipped in data/fashion-mnist. Weights go to OUT/demo_cnn.safetensors and OUT/demo_lstm.safetensors
 * (default OUT: models). Both models train with Adam (lr 1e-3, batch 64, 3 epochs by default), the
 * library's generator seeded with cq_manual_seed(0) for the initial weights and a fixed shuffle
 * stream, so a run reproduces the committed weights. One JSON line per epoch on stdout gives the
 * test accuracy on the whole t10k split in DIR.
 *
 * The models, the data reader and the training loop are the demo's own (tools/cquant/demo_*.c,
 * compiled in below), so the network trained here is the one the demo loads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../tools/cquant/demo_data.c"
#include "../tools/cquant/demo_models.c"

#define DEBIAN_FASHION_MNIST "/usr/share/datasets/fashion-mnist"

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int train_one(demo_model_kind kind, const demo_split *train, const demo_split *test,
                     int epochs, const char *out_dir) {
  cq_module *model = NULL;
  cq_optimizer *opt = NULL;
  cq_ctx *ctx = NULL;
  const int64_t batch = 64, steps_per_epoch = train->n / batch;
  uint64_t shuffle_state = 12345;
  char path[4096];
  cq_manual_seed(0);
  cq_status st = demo_build_model(kind, &model);
  if (st == CQ_OK) st = cq_adam(&opt, model, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f);
  if (st == CQ_OK) st = cq_ctx_create(&ctx);
  for (int epoch = 0; epoch < epochs && st == CQ_OK; epoch++) {
    double t0 = now_seconds(), loss = 0, acc = 0;
    st = demo_train(kind, model, ctx, opt, train, batch, steps_per_epoch, &shuffle_state, NULL,
                    NULL, &loss);
    double seconds = now_seconds() - t0;
    if (st == CQ_OK) st = demo_accuracy(kind, model, ctx, test, 500, NULL, NULL, &acc);
    if (st == CQ_OK) {
      printf("{\"model\": \"%s\", \"epoch\": %d, \"train_loss\": %.4f, \"test_accuracy\": %.4f, "
             "\"test_images\": %lld, \"epoch_seconds\": %.1f}\n",
             demo_model_name(kind), epoch + 1, loss, acc, (long long)test->n, seconds);
      fflush(stdout);
    }
  }
  if (st == CQ_OK) {
    snprintf(path, sizeof path, "%s/demo_%s.safetensors", out_dir, demo_model_name(kind));
    cq_module_train(model, 0);
    st = cq_save_safetensors(model, path);
  }
  if (st != CQ_OK) fprintf(stderr, "train_demo_models: %s\n", cq_last_error());
  cq_ctx_free(ctx);
  cq_optimizer_free(opt);
  cq_module_free(model);
  return st == CQ_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  struct stat sb;
  const char *dir = stat(DEBIAN_FASHION_MNIST "/train-images-idx3-ubyte.gz", &sb) == 0
                        ? DEBIAN_FASHION_MNIST
                        : "data/fashion-mnist";
  const char *out_dir = "models", *which = "both";
  int epochs = 3, threads = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--data") && i + 1 < argc) {
      dir = argv[++i];
    } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      out_dir = argv[++i];
    } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
      which = argv[++i];
    } else if (!strcmp(argv[i], "--epochs") && i + 1 < argc) {
      epochs = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: train_demo_models [--data DIR] [--out DIR] [--model cnn|lstm|both] "
                      "[--epochs N] [--threads N]\n");
      return 2;
    }
  }
  if (epochs < 1 || (strcmp(which, "cnn") && strcmp(which, "lstm") && strcmp(which, "both"))) {
    fprintf(stderr, "train_demo_models: --epochs must be >= 1 and --model cnn, lstm or both\n");
    return 2;
  }
  if (cq_set_num_threads(threads) != CQ_OK) {
    fprintf(stderr, "train_demo_models: %s\n", cq_last_error());
    return 2;
  }
  demo_split train, test;
  if (demo_load_split(dir, "train", 0, &train) != CQ_OK) {
    fprintf(stderr, "train_demo_models: %s\n", cq_last_error());
    return 1;
  }
  if (demo_load_split(dir, "t10k", 0, &test) != CQ_OK) {
    fprintf(stderr, "train_demo_models: %s\n", cq_last_error());
    demo_split_release(&train);
    return 1;
  }
  fprintf(stderr, "train_demo_models: %lld training and %lld test images from %s\n",
          (long long)train.n, (long long)test.n, dir);
  int rc = 0;
  if (!strcmp(which, "cnn") || !strcmp(which, "both")) {
    rc |= train_one(DEMO_CNN, &train, &test, epochs, out_dir);
  }
  if (!strcmp(which, "lstm") || !strcmp(which, "both")) {
    rc |= train_one(DEMO_LSTM, &train, &test, epochs, out_dir);
  }
  demo_split_release(&train);
  demo_split_release(&test);
  return rc;
}
