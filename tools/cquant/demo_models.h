/* The demo's data and models: Fashion-MNIST from IDX files, a small CNN and an LSTM row classifier
 * built with the public API, and the training and evaluation loops both the demo (QAT fine-tune)
 * and examples/train_demo_models.c (the float weights in models/) use.
 *
 * This file and demo_models.c / demo_data.c use only the public API (cquant/cquant.h), so the
 * training example can compile them in: the network it trains is, by construction, the one the
 * demo loads. */
#ifndef CQ_TOOL_DEMO_MODELS_H
#define CQ_TOOL_DEMO_MODELS_H

#include <stdint.h>

#include "cquant/cquant.h"

#define DEMO_PIXELS 784 /* 28 x 28 */
#define DEMO_CLASSES 10

/* ---- data (demo_data.c) ------------------------------------------------------------------------ */

/* One split: n images as float pixels in [0, 1] (n x 784, C order) and their labels (0..9). */
typedef struct demo_split {
  float *images;
  int64_t *labels;
  int64_t n;
} demo_split;

/* Reads DIR/SPLIT-images-idx3-ubyte.gz and DIR/SPLIT-labels-idx1-ubyte.gz (SPLIT is "train" or
 * "t10k"), keeping the first `limit` images (all when limit <= 0 or beyond the file). The images must
 * be uint8 [N, 28, 28], the labels uint8 [N] with values 0..9 and the same N. CQ_EFORMAT naming the
 * file otherwise; CQ_EIO / CQ_EFORMAT from the IDX reader; CQ_ENOMEM. *out is owned by the caller
 * (demo_split_release) and left empty on failure. */
cq_status demo_load_split(const char *dir, const char *split, int64_t limit, demo_split *out);
void demo_split_release(demo_split *s);
/* A view of images [start, start + n) of s (no copy; s must outlive it). */
demo_split demo_split_view(const demo_split *s, int64_t start, int64_t n);

/* ---- models (demo_models.c) -------------------------------------------------------------------- */

typedef enum demo_model_kind { DEMO_CNN = 0, DEMO_LSTM, DEMO_MODEL_COUNT } demo_model_kind;

/* "cnn" / "lstm": the JSON key and the weight file's stem (models/demo_<name>.safetensors). */
const char *demo_model_name(demo_model_kind kind);
/* One line describing the architecture, for the table's heading. */
const char *demo_model_summary(demo_model_kind kind);

/* A new float model in training mode, parameters initialised from the library's generator (call
 * cq_manual_seed first for a reproducible start):
 *  - DEMO_CNN, nn.Sequential(QuantStub, Conv2d(1,16,3,padding=1), BatchNorm2d(16), ReLU, MaxPool2d(2),
 *    Conv2d(16,32,3,padding=1), BatchNorm2d(32), ReLU, MaxPool2d(2), Flatten, Linear(1568,128), ReLU,
 *    Linear(128,10), DeQuantStub); input [N, 1, 28, 28].
 *  - DEMO_LSTM, a graph LSTMClassifier: lstm = LSTM(28, 128, batch_first=True) over the 28 rows of
 *    the image, flatten = Flatten(0, 1) taking h_n [1, N, 128] to [N, 128], then quant (QuantStub),
 *    fc = Linear(128, 10), dequant (DeQuantStub); input [N, 28, 28].
 * The stubs are the identity in float; they are where eager-mode static quantization and QAT
 * enter and leave the int8 domain. */
cq_status demo_build_model(demo_model_kind kind, cq_module **out);

/* Fuses what eager mode fuses in this model (CNN: conv-bn-relu twice and linear-relu; LSTM:
 * nothing): fuse_modules (model in eval mode) when qat == 0, fuse_modules_qat (training mode)
 * otherwise. */
cq_status demo_fuse(demo_model_kind kind, cq_module *model, int qat);

/* Sets `qconfig` on the parts of the model static quantization and QAT can quantize: the whole CNN;
 * for the LSTM the classifier head only (the LSTM gets qconfig None: eager mode has no static
 * quantized LSTM, it stays float). */
cq_status demo_set_qconfig(demo_model_kind kind, cq_module *model, const cq_qconfig *qconfig);

/* Wraps images [start, start + n) of s as the model's input tensor (no copy; caller frees the
 * tensor, s must outlive it). */
cq_status demo_input(demo_model_kind kind, const demo_split *s, int64_t start, int64_t n,
                     cq_tensor **out);

/* ---- training and evaluation (demo_models.c) --------------------------------------------------- */

/* Called after each batch with the number of batches done and the total. */
typedef void (*demo_progress_fn)(void *user, int64_t done, int64_t total);

/* Top-1 accuracy (0..1) of `model` (put in eval mode) on s, in batches of `batch`. */
cq_status demo_accuracy(demo_model_kind kind, cq_module *model, cq_ctx *ctx, const demo_split *s,
                        int64_t batch, demo_progress_fn progress, void *user, double *accuracy);

/* A training run: `steps` minibatches of `batch` images (cross-entropy loss, the given optimizer),
 * drawn without replacement from a shuffle of s renewed every pass over it. The shuffle is a fixed
 * xorshift stream from *shuffle_state (updated), so a run is reproducible. The model is put in
 * training mode; the caller decides on eval mode afterwards. *mean_loss (may be NULL) receives the
 * mean loss of the last min(steps, 100) steps. */
cq_status demo_train(demo_model_kind kind, cq_module *model, cq_ctx *ctx, cq_optimizer *opt,
                     const demo_split *s, int64_t batch, int64_t steps, uint64_t *shuffle_state,
                     demo_progress_fn progress, void *user, double *mean_loss);

#endif
