/* libFuzzer harness for running what the ONNX importer accepts: the bytes fuzz_onnx gets (its
 * seeds, fuzz/corpus/onnx), loaded with cq_onnx_load_buffer, then run and quantized as `cquant
 * run` and `cquant quantize` do: a forward on inputs of the file's declared shapes (dynamic
 * dimensions 1), then prepare (graph mode, static), calibration on the same inputs, convert and a
 * forward of the int8 model; then, on the model loaded again, dynamic quantization and a forward;
 * then, loaded once more, QAT: prepare_qat, a training forward and backward, convert and a forward.
 * The engine (x86, fbgemm, qnnpack, onednn) comes from the input's last byte.
 *
 * Checks, besides crashes, leaks and undefined behaviour: every failing call returns a known
 * status with a one-line message; a forward that succeeds gives one tensor per graph output; the
 * int8 model (static) gives the same bytes on 2 threads as on 1.
 * Models whose inputs hold more than RUN_MAX_ELEMENTS elements, or whose declared inputs do not
 * match the graph's, are only loaded (a bound on the time per input). */
#include "fuzz_common.h"
#include "io/onnx_proto.h"

#define RUN_MAX_ELEMENTS 4096
#define RUN_MAX_IO 8

typedef struct run_inputs {
  int n;
  cq_tensor *t[RUN_MAX_IO];
} run_inputs;

static void run_inputs_free(run_inputs *r) {
  for (int i = 0; i < r->n; i++) cq_tensor_free(r->t[i]);
  r->n = 0;
}

/* Tensors of the declared shape of every model input, dynamic dimensions 1, filled with a pattern
 * in [-3, 3]. 0 when there are none to make (no shape, too many elements, a count that is not the
 * graph's). */
static int make_inputs(const uint8_t *data, size_t size, const cq_module *m, run_inputs *r) {
  r->n = 0;
  Onnx__ModelProto *model = NULL;
  if (cq_onnx_decode(data, size, "fuzz.onnx", &model) != CQ_OK) return 0;
  int ndim[RUN_MAX_IO];
  int64_t shape[RUN_MAX_IO][CQ_MAX_DIMS];
  const int n = cq_onnx_input_shapes(model, RUN_MAX_IO, ndim, shape);
  cq_onnx_model_free(model);
  if (n > RUN_MAX_IO || n != cq_graph_num_inputs(m)) return 0;
  for (int i = 0; i < n; i++) {
    int64_t numel = 1;
    int ok = ndim[i] >= 0;
    for (int d = 0; ok && d < ndim[i]; d++) {
      if (shape[i][d] < 0) shape[i][d] = 1;
      numel *= shape[i][d];
      ok = shape[i][d] <= RUN_MAX_ELEMENTS && numel <= RUN_MAX_ELEMENTS;
    }
    if (!ok || cq_tensor_create(&r->t[r->n], CQ_F32, ndim[i], shape[i]) != CQ_OK) {
      run_inputs_free(r);
      return 0;
    }
    float *v = r->t[r->n]->data;
    for (int64_t e = 0; e < numel; e++) {
      const uint32_t h = (uint32_t)(e + 1) * 2654435761u + (uint32_t)r->n * 40503u;
      v[e] = (float)((h >> 16) % 97) / 16.0f - 3.0f;
    }
    r->n++;
  }
  return 1;
}

static int graph_outputs(const cq_module *m) {
  int n = 0;
  const int *v = NULL;
  cq_graph_outputs(m, &n, &v);
  return n > 0 ? n : 1;
}

/* One forward (first output to *first when not NULL): 1 when it succeeded, else the failure is
 * checked and 0. */
static int run_once(const char *what, cq_module *m, cq_ctx *ctx, const run_inputs *r,
                    cq_tensor **first) {
  cq_tensor *out[RUN_MAX_IO] = {0};
  const int nout = graph_outputs(m);
  if (nout > RUN_MAX_IO) return 0;
  cq_ctx_reset(ctx);
  cq_status st = cq_module_forward(m, ctx, r->n, r->t, nout, out);
  if (st != CQ_OK) {
    cq_fuzz_check_failure(what, st);
    return 0;
  }
  for (int i = 0; i < nout; i++) {
    if (!out[i]) cq_fuzz_violation("%s succeeded without output %d of %d", what, i, nout);
  }
  if (first) *first = out[0];
  return 1;
}

/* The int8 model once more on 2 threads: every byte of the first output must be the same as on
 * one (cquant/threads.h: results do not depend on the thread count). */
static void same_on_two_threads(cq_module *m, cq_ctx *ctx, const run_inputs *r,
                                const cq_tensor *y) {
  const size_t bytes = cq_tensor_nbytes(y);
  void *want = malloc(bytes ? bytes : 1);
  if (!want) return;
  memcpy(want, y->data, bytes);
  cq_tensor *y2 = NULL;
  if (cq_set_num_threads(2) == CQ_OK) {
    if (run_once("int8 forward on 2 threads", m, ctx, r, &y2) && y2 &&
        (cq_tensor_nbytes(y2) != bytes || memcmp(y2->data, want, bytes) != 0)) {
      cq_fuzz_violation("the int8 model's output on 2 threads differs from that on 1");
    }
    cq_set_num_threads(1);
  }
  free(want);
}

/* A call of the quantization passes: 1 when it succeeded, else the failure is checked and 0. */
static int pass_ok(const char *what, cq_status st) {
  if (st == CQ_OK) return 1;
  cq_fuzz_check_failure(what, st);
  return 0;
}

/* prepare_qat on model m (loaded again, training mode), a forward on the tape and a backward from
 * the first output (gradient 1 everywhere), then eval, convert and an int8 forward. */
static void run_qat(cq_module *m, cq_ctx *ctx, const run_inputs *r,
                    const cq_graph_quant_options *o) {
  cq_module_train(m, 1);
  if (!pass_ok("cq_prepare_qat_graph", cq_prepare_qat_graph(m, o))) return;
  cq_tensor *y = NULL;
  cq_ctx_set_grad(ctx, 1);
  if (run_once("QAT forward", m, ctx, r, &y) && y && y->dtype == CQ_F32) {
    cq_tensor *g = NULL;
    if (cq_tensor_create(&g, CQ_F32, y->ndim, y->shape) == CQ_OK) {
      float *gd = g->data;
      for (int64_t i = 0; i < cq_tensor_numel(g); i++) gd[i] = 1.0f;
      pass_ok("QAT backward", cq_ctx_backward(ctx, y, g, NULL, NULL));
      cq_tensor_free(g);
    }
  }
  cq_ctx_set_grad(ctx, 0);
  cq_module_train(m, 0);
  if (pass_ok("cq_convert_graph (QAT)", cq_convert_graph(m, o))) {
    cq_set_quantized_engine(o->backend);
    run_once("QAT int8 forward", m, ctx, r, NULL);
    cq_set_quantized_engine(CQ_BACKEND_X86);
  }
}

/* The model loaded again from the same bytes (it loaded once: it must load again). */
static cq_module *reload(const uint8_t *data, size_t size, cq_module *old) {
  cq_module_free(old);
  cq_module *m = NULL;
  if (cq_onnx_load_buffer(data, size, "fuzz.onnx", &m) != CQ_OK) {
    cq_fuzz_violation("a model that loaded once does not load again: %s", cq_last_error());
    return NULL;
  }
  return m;
}

int cq_fuzz_onnx_run_one(const uint8_t *data, size_t size) {
  cq_module *m = NULL;
  if (cq_onnx_load_buffer(data, size, "fuzz.onnx", &m) != CQ_OK) return 0;
  run_inputs r;
  cq_ctx *ctx = NULL;
  if (make_inputs(data, size, m, &r) && cq_ctx_create(&ctx) == CQ_OK) {
    cq_graph_quant_options o = cq_graph_quant_defaults();
    o.backend = (cq_backend)(size ? data[size - 1] % CQ_BACKEND_COUNT : 0);
    if (run_once("float forward", m, ctx, &r, NULL) &&
        pass_ok("cq_prepare_graph", cq_prepare_graph(m, &o)) &&
        run_once("calibration forward", m, ctx, &r, NULL) &&
        pass_ok("cq_convert_graph", cq_convert_graph(m, &o))) {
      /* the functional ops read the global engine at call time, as in PyTorch */
      cq_set_quantized_engine(o.backend);
      cq_tensor *y = NULL;
      if (run_once("int8 forward", m, ctx, &r, &y) && y) same_on_two_threads(m, ctx, &r, y);
      cq_set_quantized_engine(CQ_BACKEND_X86);
    }
    m = reload(data, size, m);
    if (m && pass_ok("cq_quantize_dynamic_graph", cq_quantize_dynamic_graph(m, &o))) {
      run_once("dynamic int8 forward", m, ctx, &r, NULL);
    }
    m = reload(data, size, m);
    if (m) run_qat(m, ctx, &r, &o);
  }
  cq_ctx_free(ctx);
  run_inputs_free(&r);
  cq_module_free(m);
  return 0;
}

CQ_FUZZ_ENTRY_POINTS(cq_fuzz_onnx_run_one)
