/* Fashion-MNIST for the demo: IDX files (gzip or plain, read by cq_idx_load) turned into float
 * pixels in [0, 1] and int64 labels, with every shape and label checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_models.h"

static cq_status load_idx(const char *dir, const char *split, const char *what, char *path,
                          size_t cap, cq_tensor **out) {
  int n = snprintf(path, cap, "%s/%s-%s.gz", dir, split, what);
  if (n < 0 || (size_t)n >= cap) return cq_fail(CQ_EINVAL, "data directory path too long: %s", dir);
  return cq_idx_load(path, out);
}

cq_status demo_load_split(const char *dir, const char *split, int64_t limit, demo_split *out) {
  char ipath[4096], lpath[4096];
  cq_tensor *images = NULL, *labels = NULL;
  memset(out, 0, sizeof *out);
  cq_status st = load_idx(dir, split, "images-idx3-ubyte", ipath, sizeof ipath, &images);
  if (st == CQ_OK) st = load_idx(dir, split, "labels-idx1-ubyte", lpath, sizeof lpath, &labels);
  if (st != CQ_OK) goto done;
  if (images->dtype != CQ_U8 || images->ndim != 3 || images->shape[1] != 28 ||
      images->shape[2] != 28) {
    char shape[96];
    st = cq_fail(CQ_EFORMAT, "%s: expected uint8 images [N, 28, 28], found %s %s", ipath,
                 cq_dtype_get(images->dtype)->name,
                 cq_shape_str(images->ndim, images->shape, shape, sizeof shape));
    goto done;
  }
  if (labels->dtype != CQ_U8 || labels->ndim != 1 || labels->shape[0] != images->shape[0]) {
    char shape[96];
    st = cq_fail(CQ_EFORMAT, "%s: expected uint8 labels [%lld] to match the images, found %s %s",
                 lpath, (long long)images->shape[0], cq_dtype_get(labels->dtype)->name,
                 cq_shape_str(labels->ndim, labels->shape, shape, sizeof shape));
    goto done;
  }
  int64_t n = images->shape[0];
  if (limit > 0 && limit < n) n = limit;
  if (n == 0) {
    st = cq_fail(CQ_EFORMAT, "%s: no images", ipath);
    goto done;
  }
  out->images = malloc(sizeof(float) * (size_t)(n * DEMO_PIXELS));
  out->labels = malloc(sizeof(int64_t) * (size_t)n);
  if (!out->images || !out->labels) {
    st = cq_fail(CQ_ENOMEM, "out of memory loading %lld images from %s", (long long)n, ipath);
    goto done;
  }
  const uint8_t *px = images->data, *lb = labels->data;
  for (int64_t i = 0; i < n; i++) {
    if (lb[i] >= DEMO_CLASSES) {
      st = cq_fail(CQ_EFORMAT, "%s: label %d of image %lld is not a class 0..9", lpath, lb[i],
                   (long long)i);
      goto done;
    }
    out->labels[i] = lb[i];
  }
  for (int64_t i = 0; i < n * DEMO_PIXELS; i++) out->images[i] = (float)px[i] / 255.0f;
  out->n = n;

done:
  cq_tensor_free(images);
  cq_tensor_free(labels);
  if (st != CQ_OK) demo_split_release(out);
  return st;
}

void demo_split_release(demo_split *s) {
  free(s->images);
  free(s->labels);
  memset(s, 0, sizeof *s);
}

demo_split demo_split_view(const demo_split *s, int64_t start, int64_t n) {
  demo_split v;
  if (start > s->n) start = s->n;
  if (n > s->n - start) n = s->n - start;
  v.images = s->images + start * DEMO_PIXELS;
  v.labels = s->labels + start;
  v.n = n;
  return v;
}
