#include "cli_model.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/onnx_proto.h"

int cli_load_model(const char *path, cq_module **out) {
  *out = NULL;
  if (cq_onnx_load(path, out) != CQ_OK) return cli_error("%s", cq_last_error());
  return CLI_OK;
}

int cli_onnx_input_shape(const char *path, int *ndim, int64_t *shape) {
  Onnx__ModelProto *model = NULL;
  if (cq_onnx_read_file(path, &model) != CQ_OK) return cli_error("%s", cq_last_error());
  int64_t shapes[1][CQ_MAX_DIMS];
  const int n = cq_onnx_input_shapes(model, 1, ndim, shapes); /* the first input */
  cq_onnx_model_free(model);
  if (n < 1 || *ndim < 0) return cli_error("%s: the first graph input has no tensor shape", path);
  memcpy(shape, shapes[0], sizeof(int64_t) * (size_t)*ndim);
  return CLI_OK;
}

int cli_load_rows(const char *path, const char *what, cq_tensor **out) {
  *out = NULL;
  cq_tensor *t = NULL;
  if (cq_npy_load(path, &t) != CQ_OK) return cli_error("%s", cq_last_error());
  if (t->ndim < 1) {
    cq_tensor_free(t);
    return cli_error("%s: %s must have a first (batch) dimension, got a scalar", path, what);
  }
  if (t->shape[0] < 1) {
    cq_tensor_free(t);
    return cli_error("%s: %s has no rows (shape[0] is 0)", path, what);
  }
  if (t->dtype == CQ_F32) {
    *out = t;
    return CLI_OK;
  }
  cq_tensor *f = NULL;
  cq_status st = cq_tensor_to_f32(t, &f);
  cq_tensor_free(t);
  if (st != CQ_OK) return cli_error("%s: %s", path, cq_last_error());
  *out = f;
  return CLI_OK;
}

int cli_load_labels(const char *path, int64_t rows, cq_tensor **out) {
  *out = NULL;
  cq_tensor *t = NULL;
  if (cq_npy_load(path, &t) != CQ_OK) return cli_error("%s", cq_last_error());
  int rc = CLI_FAILED;
  const int is_int = t->dtype == CQ_U8 || t->dtype == CQ_S8 || t->dtype == CQ_S32 ||
                     t->dtype == CQ_I64;
  const int shape_ok = t->ndim == 1 || (t->ndim == 2 && t->shape[1] == 1);
  if (!is_int) {
    rc = cli_error("%s: labels must be integer class indices, got dtype %s", path,
                   cq_dtype_get(t->dtype)->name);
  } else if (!shape_ok) {
    char buf[96];
    rc = cli_error("%s: labels must have shape [N] or [N, 1], got %s", path,
                   cq_shape_str(t->ndim, t->shape, buf, sizeof buf));
  } else if (t->shape[0] != rows) {
    rc = cli_error("%s: %lld labels for %lld input rows", path, (long long)t->shape[0],
                   (long long)rows);
  } else {
    cq_tensor *l = NULL;
    int64_t n = t->shape[0];
    if (cq_tensor_create(&l, CQ_I64, 1, &n) != CQ_OK) {
      rc = cli_error("%s", cq_last_error());
    } else {
      int64_t *dst = l->data;
      for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
          case CQ_U8: dst[i] = ((const uint8_t *)t->data)[i]; break;
          case CQ_S8: dst[i] = ((const int8_t *)t->data)[i]; break;
          case CQ_S32: dst[i] = ((const int32_t *)t->data)[i]; break;
          default: dst[i] = ((const int64_t *)t->data)[i]; break;
        }
      }
      *out = l;
      rc = CLI_OK;
    }
  }
  cq_tensor_free(t);
  return rc;
}

int cli_rows_view(const cq_tensor *x, int64_t start, int64_t count, cq_tensor **out) {
  int64_t shape[CQ_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[0] = count;
  const size_t row_bytes = (size_t)x->strides[0] * cq_dtype_get(x->dtype)->size;
  char *base = (char *)x->data + (size_t)start * row_bytes;
  if (cq_tensor_wrap(out, x->dtype, x->ndim, shape, base) != CQ_OK) {
    return cli_error("%s", cq_last_error());
  }
  return CLI_OK;
}

int cli_model_num_outputs(const cq_module *m) {
  if (!cq_is_graph(m)) return 1;
  int n = 0;
  const int *v = NULL;
  cq_graph_outputs(m, &n, &v);
  return n > 0 ? n : 1;
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

int cli_is_quantized_module(const cq_module *m) {
  const char *t = cq_module_type_name(m);
  return starts_with(t, "Quantized") || starts_with(t, "DynamicQuantized") ||
         strcmp(t, "QFunctional") == 0;
}

int cli_is_stub_module(const cq_module *m) {
  const char *t = cq_module_type_name(m);
  return !strcmp(t, "Quantize") || !strcmp(t, "DeQuantize") || !strcmp(t, "QuantStub") ||
         !strcmp(t, "DeQuantStub");
}

int64_t cli_file_size(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0) return -1;
  return (int64_t)sb.st_size;
}

void cli_progress_begin(cli_progress *p, const char *label, int64_t total) {
  p->active = isatty(STDERR_FILENO) && total > 0;
  p->label = label;
  p->total = total;
  p->last_permille = -1;
  cli_progress_update(p, 0);
}

void cli_progress_update(cli_progress *p, int64_t done) {
  if (!p->active) return;
  int permille = (int)(done * 1000 / p->total);
  if (permille == p->last_permille) return;
  p->last_permille = permille;
  enum { WIDTH = 30 };
  int filled = permille * WIDTH / 1000;
  char bar[WIDTH + 1];
  for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
  bar[WIDTH] = '\0';
  fprintf(stderr, "\r%s [%s] %lld/%lld", p->label, bar, (long long)done, (long long)p->total);
  fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
  if (!p->active) return;
  fprintf(stderr, "\r\033[K");
  fflush(stderr);
  p->active = 0;
}

int cli_parse_int(const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int cli_parse_positive(const char *s, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v) || v <= 0) return -1;
  *out = v;
  return 0;
}
