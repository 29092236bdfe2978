/* cq_onnx_save: models built in C (a float CNN with BatchNorm and a residual add; the same CNN
 * quantized with the eager passes; a residual graph with QFunctional add / cat; a dynamic
 * quantized LSTM classifier) are saved, decoded again with cq_onnx_read_file and checked for what
 * the QDQ contract (include/cquant/onnx.h) promises: ir_version 8, opset 13, the graph input with a
 * dynamic batch, the ops in order, every QuantizeLinear followed by a DequantizeLinear reading the
 * same scale and zero point, int8 weight initializers equal to the module's integers, scales bit
 * for bit, the engine in metadata_props, LSTM gates in ONNX order. Then: saved models loaded with
 * cq_onnx_load compute bit-identical outputs (float, static quantized, dynamic quantized), and the
 * errors (a module with no ONNX form, a prepared model, an unwritable path, allocation failures).
 *
 * With CQ_ONNX_EXPORT_DIR set, the files are also written there (for
 * tools/golden/gen_onnx_export_check.py, which runs onnx.checker on them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cquant/cquant.h"
#include "io/onnx_proto.h"
#include "support/build.h"
#include "support/check.h"

#define OK(expr) CHECK_OK(expr)
#define TMP CQ_TEST_TMP_DIR

static cq_tensor *input_tensor(int ndim, const int64_t *shape, double phase) {
  cq_tensor *t = NULL;
  OK(cq_tensor_create(&t, CQ_F32, ndim, shape));
  if (!t) return NULL;
  float *d = t->data;
  for (int64_t i = 0; i < cq_tensor_numel(t); i++) d[i] = (float)sin(0.37 * (double)i + phase);
  return t;
}

/* ---- models ------------------------------------------------------------------------------------- */

/* Net: quant -> conv1 -> bn1 -> relu1 -> conv2 -> add(conv2, relu1) -> pool -> flatten -> fc1 ->
 * relu2 -> fc2 -> dequant, input [N, 3, 8, 8]. */
static cq_module *cnn_model(void) {
  cq_module *g = NULL;
  OK(cq_graph(&g, 1));
  cq_pool_options p = cq_pool_defaults(2, 2);
  cq_module *pool = NULL, *flat = NULL, *add = NULL;
  OK(cq_maxpool2d(&pool, &p));
  OK(cq_flatten(&flat, 1, -1));
  OK(cq_add(&add));
  const char *names[12] = {"quant", "conv1", "bn1",  "relu1", "conv2", "add",
                           "pool",  "flat",  "fc1", "relu2", "fc2",   "dequant"};
  cq_module *mods[12] = {tb_simple(cq_quant_stub), tb_conv2d(3, 4, 3, 1), tb_bn2d(4), tb_simple(cq_relu),
                         tb_conv2d(4, 4, 3, 1), add, pool, flat, tb_linear(64, 16), tb_simple(cq_relu),
                         tb_linear(16, 5), tb_simple(cq_dequant_stub)};
  for (int i = 0; i < 12; i++) OK(cq_module_add_child(g, names[i], mods[i]));
  int v = 0, q, c1, b1, r1, c2, s, pl, fl, f1, r2, f2, y;
  OK(cq_graph_add_node(g, "quant", NULL, 1, &v, 1, &q));
  OK(cq_graph_add_node(g, "conv1", NULL, 1, &q, 1, &c1));
  OK(cq_graph_add_node(g, "bn1", NULL, 1, &c1, 1, &b1));
  OK(cq_graph_add_node(g, "relu1", NULL, 1, &b1, 1, &r1));
  OK(cq_graph_add_node(g, "conv2", NULL, 1, &r1, 1, &c2));
  int add_in[2] = {c2, r1};
  OK(cq_graph_add_node(g, "add", NULL, 2, add_in, 1, &s));
  OK(cq_graph_add_node(g, "pool", NULL, 1, &s, 1, &pl));
  OK(cq_graph_add_node(g, "flat", NULL, 1, &pl, 1, &fl));
  OK(cq_graph_add_node(g, "fc1", NULL, 1, &fl, 1, &f1));
  OK(cq_graph_add_node(g, "relu2", NULL, 1, &f1, 1, &r2));
  OK(cq_graph_add_node(g, "fc2", NULL, 1, &r2, 1, &f2));
  OK(cq_graph_add_node(g, "dequant", NULL, 1, &f2, 1, &y));
  OK(cq_graph_set_outputs(g, 1, &y));
  OK(cq_graph_set_name(g, "Net"));
  cq_module_train(g, 0);
  return g;
}

static const int64_t cnn_shape[4] = {2, 3, 8, 8};

/* Eager static quantization of cnn_model: fuse conv1+bn1+relu1 and fc1+relu2, the engine's
 * default qconfig, calibration on two batches, convert. The FloatFunctional add becomes
 * QFunctional add. */
static cq_module *quantized_cnn(cq_backend engine) {
  cq_set_quantized_engine(engine);
  cq_module *m = cnn_model();
  const char *g1[3] = {"conv1", "bn1", "relu1"}, *g2[2] = {"fc1", "relu2"};
  OK(cq_fuse_modules(m, 3, g1));
  OK(cq_fuse_modules(m, 2, g2));
  cq_qconfig qc;
  OK(cq_get_default_qconfig(engine, 0, &qc));
  OK(cq_module_set_qconfig(m, &qc));
  OK(cq_prepare(m));
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  for (int b = 0; b < 2; b++) {
    cq_tensor *x = input_tensor(4, cnn_shape, 0.5 * b), *y = NULL;
    OK(cq_module_forward1(m, ctx, x, &y));
    cq_tensor_free(x);
    cq_ctx_reset(ctx);
  }
  cq_ctx_free(ctx);
  OK(cq_convert(m));
  return m;
}

/* LSTM classifier: lstm (batch_first, input 6, hidden 8) -> h_n [1, N, 8] -> flatten(0, 1) ->
 * fc (8 -> 3), input [N, 5, 6]. */
static cq_module *lstm_model(int gru) {
  cq_module *g = NULL;
  OK(cq_graph(&g, 1));
  cq_rnn_options o = cq_rnn_defaults(6, 8);
  o.batch_first = 1;
  cq_module *rnn = NULL, *flat = NULL;
  OK(gru ? cq_gru(&rnn, &o) : cq_lstm(&rnn, &o));
  OK(cq_flatten(&flat, 0, 1));
  int x = 0, outs[2], f, y;
  OK(cq_graph_add_node(g, "rnn", rnn, 1, &x, 2, outs));
  OK(cq_graph_add_node(g, "flat", flat, 1, &outs[1], 1, &f));
  OK(cq_graph_add_node(g, "fc", tb_linear(8, 3), 1, &f, 1, &y));
  OK(cq_graph_set_outputs(g, 1, &y));
  OK(cq_graph_set_name(g, gru ? "GRUClassifier" : "LSTMClassifier"));
  cq_module_train(g, 0);
  return g;
}

static const int64_t lstm_shape[3] = {2, 5, 6};

/* ---- reading the saved file ------------------------------------------------------------------------ */

static Onnx__ModelProto *save_and_read(cq_module *m, int ndim, const int64_t *shape,
                                       const char *file) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", TMP, file);
  cq_status st = cq_onnx_save(m, ndim, shape, path);
  CHECK_MSG(st == CQ_OK, "saving %s: %s", file, cq_last_error());
  if (st != CQ_OK) return NULL;
  const char *dir = getenv("CQ_ONNX_EXPORT_DIR");
  if (dir && dir[0]) {
    char copy[512];
    snprintf(copy, sizeof copy, "%s/%s", dir, file);
    OK(cq_onnx_save(m, ndim, shape, copy));
  }
  Onnx__ModelProto *mp = NULL;
  st = cq_onnx_read_file(path, &mp);
  CHECK_MSG(st == CQ_OK, "reading %s back: %s", file, cq_last_error());
  return mp;
}

/* The op types of the graph's nodes joined with spaces. */
static char *op_list(const Onnx__GraphProto *g) {
  size_t cap = 1;
  for (size_t i = 0; i < g->n_node; i++) cap += strlen(g->node[i]->op_type) + 1;
  char *s = calloc(cap, 1);
  for (size_t i = 0; s && i < g->n_node; i++) {
    if (i) strcat(s, " ");
    strcat(s, g->node[i]->op_type);
  }
  return s;
}

static const Onnx__TensorProto *init_named(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; i < g->n_initializer; i++) {
    if (!strcmp(g->initializer[i]->name, name)) return g->initializer[i];
  }
  return NULL;
}

static const Onnx__NodeProto *producer(const Onnx__GraphProto *g, const char *value) {
  for (size_t i = 0; i < g->n_node; i++) {
    for (size_t k = 0; k < g->node[i]->n_output; k++) {
      if (!strcmp(g->node[i]->output[k], value)) return g->node[i];
    }
  }
  return NULL;
}

static const Onnx__NodeProto *node_named(const Onnx__GraphProto *g, const char *name) {
  for (size_t i = 0; i < g->n_node; i++) {
    if (!strcmp(g->node[i]->name, name)) return g->node[i];
  }
  return NULL;
}

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; n && i < n->n_attribute; i++) {
    if (!strcmp(n->attribute[i]->name, name)) return n->attribute[i];
  }
  return NULL;
}

static float f32_at(const Onnx__TensorProto *t, size_t i) {
  uint32_t bits = 0;
  for (int k = 0; k < 4; k++) bits |= (uint32_t)t->raw_data.data[4 * i + k] << (8 * k);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* opset 13, or 14 for a model with a HardSwish */
static void check_header_opset(const Onnx__ModelProto *mp, const char *graph_name, int ndim,
                               const char *engine, int64_t opset) {
  CHECK_INT_EQ(mp->ir_version, 8);
  CHECK(mp->n_opset_import == 1 && !strcmp(mp->opset_import[0]->domain, "") &&
        mp->opset_import[0]->version == opset);
  CHECK_STR_EQ(mp->producer_name, "cquant");
  const Onnx__GraphProto *g = mp->graph;
  CHECK_STR_EQ(g->name, graph_name);
  CHECK(g->n_input == 1 && !strcmp(g->input[0]->name, "input"));
  const Onnx__TensorShapeProto *s = g->input[0]->type->tensor_type->shape;
  CHECK(s && (int)s->n_dim == ndim && s->dim[0]->value_case ==
                                          ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
        !strcmp(s->dim[0]->dim_param, "N"));
  CHECK(g->n_output == 1 && !strcmp(g->output[0]->name, "output"));
  CHECK_MSG(producer(g, "output") != NULL, "no node writes the graph output");
  const char *got = NULL;
  for (size_t i = 0; i < mp->n_metadata_props; i++) {
    if (!strcmp(mp->metadata_props[i]->key, "cquant.engine")) got = mp->metadata_props[i]->value;
  }
  if (engine) {
    CHECK_MSG(got && !strcmp(got, engine), "cquant.engine is %s, expected %s",
              got ? got : "absent", engine);
  } else {
    CHECK_MSG(!got, "cquant.engine present (%s) in a float model", got);
  }
  /* value names are unique: every node output and initializer defined once */
  size_t n = 0;
  for (size_t i = 0; i < g->n_node; i++) n += g->node[i]->n_output;
  n += g->n_initializer + 1;
  const char **names = calloc(n, sizeof *names);
  size_t k = 0;
  names[k++] = "input";
  for (size_t i = 0; i < g->n_initializer; i++) names[k++] = g->initializer[i]->name;
  for (size_t i = 0; i < g->n_node; i++) {
    for (size_t j = 0; j < g->node[i]->n_output; j++) names[k++] = g->node[i]->output[j];
  }
  int dup = 0;
  for (size_t i = 0; i < k; i++) {
    for (size_t j = i + 1; j < k; j++) dup += !strcmp(names[i], names[j]);
  }
  CHECK_MSG(dup == 0, "%d value names defined twice", dup);
  free(names);
}

static void check_header(const Onnx__ModelProto *mp, const char *graph_name, int ndim,
                         const char *engine) {
  check_header_opset(mp, graph_name, ndim, engine, 13);
}

/* Every QuantizeLinear output is read by exactly one DequantizeLinear with the same scale and zero
 * point initializers (or is a graph output); returns the number of pairs. */
static int check_qdq_pairs(const Onnx__GraphProto *g) {
  int pairs = 0;
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *q = g->node[i];
    if (strcmp(q->op_type, "QuantizeLinear")) continue;
    int readers = 0, good = 0;
    for (size_t j = 0; j < g->n_node; j++) {
      const Onnx__NodeProto *d = g->node[j];
      for (size_t k = 0; k < d->n_input; k++) {
        if (strcmp(d->input[k], q->output[0])) continue;
        readers++;
        good += !strcmp(d->op_type, "DequantizeLinear") && k == 0 && d->n_input == 3 &&
                !strcmp(d->input[1], q->input[1]) && !strcmp(d->input[2], q->input[2]);
      }
    }
    CHECK_MSG(readers == 1 && good == 1, "QuantizeLinear %s: %d readers, %d matching DQ", q->name,
              readers, good);
    const Onnx__TensorProto *s = init_named(g, q->input[1]), *z = init_named(g, q->input[2]);
    CHECK_MSG(s && s->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && s->n_dims == 0 && z &&
                  z->n_dims == 0,
              "QuantizeLinear %s: scale / zero point are not scalar initializers", q->name);
    pairs++;
  }
  return pairs;
}

/* The int8 weight initializer PATH.weight_quantized equals the module's integers and its scales. */
static void check_qweight(const Onnx__GraphProto *g, cq_module *m, const char *path) {
  char key[200], name[256];
  snprintf(key, sizeof key, "%s.weight", path);
  cq_named_tensor *nt = cq_module_find_tensor(m, key);
  CHECK_MSG(nt && nt->tensor->dtype == CQ_S8 && nt->tensor->qparams, "%s is not an int8 weight",
            key);
  if (!nt || !nt->tensor->qparams) return;
  const cq_tensor *w = nt->tensor;
  snprintf(name, sizeof name, "%s_quantized", key);
  const Onnx__TensorProto *q = init_named(g, name);
  CHECK_MSG(q && q->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 &&
                q->raw_data.len == cq_tensor_nbytes(w) &&
                !memcmp(q->raw_data.data, w->data, cq_tensor_nbytes(w)) &&
                (int)q->n_dims == w->ndim,
            "%s differs from the module's int8 weight", name);
  snprintf(name, sizeof name, "%s_scale", key);
  const Onnx__TensorProto *s = init_named(g, name);
  const int64_t count = w->qparams->count;
  CHECK_MSG(s && s->raw_data.len == (size_t)count * 4, "%s: %lld scales expected", name,
            (long long)count);
  for (int64_t i = 0; s && s->raw_data.len == (size_t)count * 4 && i < count; i++) {
    CHECK_F32_BITS(f32_at(s, (size_t)i), w->qparams->scale[i]);
  }
  snprintf(name, sizeof name, "%s_zero_point", key);
  const Onnx__TensorProto *z = init_named(g, name);
  CHECK_MSG(z && z->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 &&
                z->raw_data.len == (size_t)count,
            "%s: %lld int8 zero points expected", name, (long long)count);
  for (int64_t i = 0; z && z->raw_data.len == (size_t)count && i < count; i++) {
    CHECK_INT_EQ((int8_t)z->raw_data.data[i], w->qparams->zero_point[i]);
  }
  /* DequantizeLinear -> PATH.weight, axis 0 when per channel */
  const Onnx__NodeProto *dq = producer(g, key);
  CHECK_MSG(dq && !strcmp(dq->op_type, "DequantizeLinear"), "%s is not a DequantizeLinear output",
            key);
  const int per_channel = count > 1 || s->n_dims == 1;
  const Onnx__AttributeProto *axis = attr(dq, "axis");
  CHECK_MSG(per_channel ? (axis && axis->i == 0) : !axis, "%s: DequantizeLinear axis", key);
}

/* ---- tests ---------------------------------------------------------------------------------------- */

static void test_float_cnn(void) {
  cq_module *m = cnn_model();
  Onnx__ModelProto *mp = save_and_read(m, 4, cnn_shape, "float_cnn.onnx");
  if (mp) {
    check_header(mp, "Net", 4, NULL);
    const Onnx__GraphProto *g = mp->graph;
    char *ops = op_list(g);
    CHECK_STR_EQ(ops, "Identity Conv BatchNormalization Relu Conv Add MaxPool Flatten Gemm Relu "
                      "Gemm Identity");
    free(ops);
    CHECK_INT_EQ(check_qdq_pairs(g), 0);
    /* weights copied exactly, names after the module paths */
    const Onnx__TensorProto *w = init_named(g, "conv1.weight");
    const cq_tensor *mw = cq_module_find_tensor(m, "conv1.weight")->tensor;
    CHECK(w && w->n_dims == 4 && w->dims[0] == 4 && w->dims[1] == 3 &&
          w->raw_data.len == cq_tensor_nbytes(mw));
    int same = w != NULL;
    for (int64_t i = 0; w && i < cq_tensor_numel(mw); i++) {
      same &= f32_at(w, (size_t)i) == ((const float *)mw->data)[i];
    }
    CHECK_MSG(same, "conv1.weight differs");
    const Onnx__NodeProto *conv = node_named(g, "conv1");
    const Onnx__AttributeProto *pads = attr(conv, "pads");
    CHECK(pads && pads->n_ints == 4 && pads->ints[0] == 1 && pads->ints[3] == 1);
    const Onnx__NodeProto *bn = node_named(g, "bn1");
    CHECK(bn && bn->n_input == 5 && !strcmp(bn->input[3], "bn1.running_mean") &&
          !strcmp(bn->input[4], "bn1.running_var"));
    const Onnx__AttributeProto *eps = attr(bn, "epsilon");
    CHECK(eps && eps->f == 1e-5f);
    const Onnx__NodeProto *add = node_named(g, "add");
    CHECK(add && !strcmp(add->input[0], "conv2") && !strcmp(add->input[1], "relu1"));
    const Onnx__NodeProto *fc = node_named(g, "fc1");
    const Onnx__AttributeProto *tb = attr(fc, "transB");
    CHECK(fc && fc->n_input == 3 && !strcmp(fc->input[1], "fc1.weight") &&
          !strcmp(fc->input[2], "fc1.bias") && tb && tb->i == 1);
    /* the output shape is known from the input shape: [N, 5] */
    const Onnx__TensorShapeProto *os = g->output[0]->type->tensor_type->shape;
    CHECK(os && os->n_dim == 2 && os->dim[1]->dim_value == 5 && !strcmp(os->dim[0]->dim_param, "N"));
    cq_onnx_model_free(mp);
  }
  cq_module_free(m);
}

static void test_static_cnn(cq_backend engine) {
  cq_module *m = quantized_cnn(engine);
  char file[64];
  snprintf(file, sizeof file, "static_cnn_%s.onnx", cq_backend_name(engine));
  Onnx__ModelProto *mp = save_and_read(m, 4, cnn_shape, file);
  if (mp) {
    check_header(mp, "Net", 4, cq_backend_name(engine));
    const Onnx__GraphProto *g = mp->graph;
    char *ops = op_list(g);
    /* quant; conv1 (ConvReLU2d, BN folded; bn1 and relu1 left as Identity, which runs on the
     * quantized tensor); conv2; QFunctional add; MaxPool, Flatten on quantized tensors; fc1
     * (LinearReLU; relu2 an Identity); fc2; dequant: no node */
    CHECK_STR_EQ(ops,
                 "QuantizeLinear DequantizeLinear "
                 "DequantizeLinear Conv Relu QuantizeLinear DequantizeLinear "
                 "Identity QuantizeLinear DequantizeLinear Identity QuantizeLinear DequantizeLinear "
                 "DequantizeLinear Conv QuantizeLinear DequantizeLinear "
                 "Add QuantizeLinear DequantizeLinear "
                 "MaxPool QuantizeLinear DequantizeLinear "
                 "Flatten QuantizeLinear DequantizeLinear "
                 "DequantizeLinear Gemm Relu QuantizeLinear DequantizeLinear "
                 "Identity QuantizeLinear DequantizeLinear "
                 "DequantizeLinear Gemm QuantizeLinear DequantizeLinear");
    free(ops);
    CHECK_INT_EQ(check_qdq_pairs(g), 11);
    check_qweight(g, m, "conv1");
    check_qweight(g, m, "conv2");
    check_qweight(g, m, "fc1");
    check_qweight(g, m, "fc2");
    /* bias stays float, the conv reads the DQ of its input and of its weight */
    const Onnx__NodeProto *conv = node_named(g, "conv2");
    CHECK(conv && conv->n_input == 3 && !strcmp(conv->input[1], "conv2.weight") &&
          !strcmp(conv->input[2], "conv2.bias"));
    const Onnx__NodeProto *src = conv ? producer(g, conv->input[0]) : NULL;
    CHECK(src && !strcmp(src->op_type, "DequantizeLinear"));
    const Onnx__TensorProto *bias = init_named(g, "conv2.bias");
    CHECK(bias && bias->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    /* the quant stub's scale and zero point exactly; quint8 activations carry uint8 zero points */
    const Onnx__NodeProto *q = producer(g, "quant_q");
    const Onnx__TensorProto *qs = q ? init_named(g, q->input[1]) : NULL;
    const Onnx__TensorProto *qz = q ? init_named(g, q->input[2]) : NULL;
    CHECK(qs && qz && qz->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8);
    cq_module *quant = cq_module_find(m, "quant");
    char *repr = cq_module_repr_alloc(quant);
    CHECK(repr && strstr(repr, "Quantize(") != NULL);
    free(repr);
    /* MaxPool keeps its input's qparams: the same scale bits as conv2's add output */
    const Onnx__NodeProto *pq = producer(g, "pool_q"), *aq = producer(g, "add_q");
    if (pq && aq) {
      CHECK_F32_BITS(f32_at(init_named(g, pq->input[1]), 0), f32_at(init_named(g, aq->input[1]), 0));
    } else {
      CHECK_MSG(0, "pool_q / add_q missing");
    }
    /* the model output is the DequantizeLinear of fc2 (DeQuantize has no node of its own) */
    const Onnx__NodeProto *out = producer(g, "output");
    CHECK(out && !strcmp(out->op_type, "DequantizeLinear"));
    cq_onnx_model_free(mp);
  }
  cq_module_free(m);
}

/* The dynamic LSTM: W / R are DequantizeLinear outputs of int8 initializers whose rows are the
 * module's rows in ONNX gate order; no Q/DQ around the activations. */
static void test_dynamic_lstm(int gru) {
  cq_module *m = lstm_model(gru);
  const char *types[2] = {gru ? "GRU" : "LSTM", "Linear"};
  OK(cq_quantize_dynamic(m, 2, types, CQ_QINT8));
  Onnx__ModelProto *mp =
      save_and_read(m, 3, lstm_shape, gru ? "dynamic_gru.onnx" : "dynamic_lstm.onnx");
  if (mp) {
    check_header(mp, gru ? "GRUClassifier" : "LSTMClassifier", 3,
                 cq_backend_name(cq_quantized_engine()));
    const Onnx__GraphProto *g = mp->graph;
    char *ops = op_list(g);
    /* batch_first: Transpose in and (for the unused output) out; h_n [1, N, 8] flattened by a
     * Reshape to [-1, 8] */
    CHECK_STR_EQ(ops, gru ? "Transpose DequantizeLinear DequantizeLinear GRU Squeeze Transpose "
                            "Reshape DequantizeLinear Gemm"
                          : "Transpose DequantizeLinear DequantizeLinear LSTM Squeeze Transpose "
                            "Reshape DequantizeLinear Gemm");
    free(ops);
    CHECK_INT_EQ(check_qdq_pairs(g), 0);
    const Onnx__NodeProto *rnn = node_named(g, "rnn");
    CHECK(rnn && rnn->n_input == 4 && !strcmp(rnn->input[1], "rnn.W_l0") &&
          !strcmp(rnn->input[2], "rnn.R_l0") && !strcmp(rnn->input[3], "rnn.B_l0"));
    const Onnx__AttributeProto *hs = attr(rnn, "hidden_size"), *lbr = attr(rnn, "linear_before_reset");
    CHECK(hs && hs->i == 8);
    CHECK(gru ? (lbr && lbr->i == 1) : !lbr);
    const Onnx__TensorProto *wq = init_named(g, "rnn.W_l0_quantized");
    const cq_tensor *w = cq_module_find_tensor(m, "rnn.weight_ih_l0")->tensor;
    const int G = gru ? 3 : 4;
    static const int lstm_order[4] = {0, 3, 1, 2}, gru_order[3] = {1, 0, 2};
    const int *order = gru ? gru_order : lstm_order;
    int same = wq && wq->n_dims == 3 && wq->dims[0] == 1 && wq->dims[1] == G * 8 &&
               wq->dims[2] == 6;
    for (int k = 0; same && k < G; k++) {
      same &= !memcmp(wq->raw_data.data + k * 8 * 6, (const int8_t *)w->data + order[k] * 8 * 6,
                      8 * 6);
    }
    CHECK_MSG(same, "rnn.W_l0_quantized is not weight_ih_l0 in ONNX gate order");
    /* B = [Wb, Rb], reordered */
    const Onnx__TensorProto *b = init_named(g, "rnn.B_l0");
    const float *bih = cq_module_find_tensor(m, "rnn.bias_ih_l0")->tensor->data;
    const float *bhh = cq_module_find_tensor(m, "rnn.bias_hh_l0")->tensor->data;
    same = b && b->n_dims == 2 && b->dims[1] == 2 * G * 8;
    for (int k = 0; same && k < G; k++) {
      for (int h = 0; h < 8; h++) {
        same &= f32_at(b, (size_t)(k * 8 + h)) == bih[order[k] * 8 + h] &&
                f32_at(b, (size_t)(G * 8 + k * 8 + h)) == bhh[order[k] * 8 + h];
      }
    }
    CHECK_MSG(same, "rnn.B_l0 is not [bias_ih, bias_hh] in ONNX gate order");
    const Onnx__NodeProto *fc = node_named(g, "fc");
    CHECK(fc && !strcmp(producer(g, fc->input[1])->op_type, "DequantizeLinear") &&
          !strcmp(producer(g, fc->input[0])->op_type, "Reshape"));
    check_qweight(g, m, "fc");
    cq_onnx_model_free(mp);
  }
  cq_module_free(m);
}

/* Residual graph with quantized add and cat and a float sigmoid branch on quantized values. */
static void test_qfunctional_and_fixed_qparams(void) {
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  cq_module *g = NULL;
  OK(cq_graph(&g, 1));
  cq_module *add = NULL, *cat = NULL;
  OK(cq_add(&add));
  OK(cq_cat(&cat, 1));
  int x = 0, q, c1, s, sg, k, y;
  OK(cq_graph_add_node(g, "quant", tb_simple(cq_quant_stub), 1, &x, 1, &q));
  OK(cq_graph_add_node(g, "conv1", tb_conv2d(2, 2, 3, 1), 1, &q, 1, &c1));
  int ai[2] = {c1, q};
  OK(cq_graph_add_node(g, "add", add, 2, ai, 1, &s));
  OK(cq_graph_add_node(g, "sig", tb_simple(cq_sigmoid), 1, &s, 1, &sg));
  int ci[2] = {sg, q};
  OK(cq_graph_add_node(g, "cat", cat, 2, ci, 1, &k));
  OK(cq_graph_add_node(g, "dequant", tb_simple(cq_dequant_stub), 1, &k, 1, &y));
  OK(cq_graph_set_outputs(g, 1, &y));
  cq_module_train(g, 0);
  cq_qconfig qc;
  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  OK(cq_module_set_qconfig(g, &qc));
  OK(cq_prepare(g));
  const int64_t shape[4] = {1, 2, 5, 5};
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *in = input_tensor(4, shape, 0.0), *out = NULL;
  OK(cq_module_forward1(g, ctx, in, &out));
  cq_tensor_free(in);
  cq_ctx_free(ctx);
  OK(cq_convert(g));
  Onnx__ModelProto *mp = save_and_read(g, 4, shape, "qfunctional.onnx");
  if (mp) {
    check_header(mp, "Graph", 4, "qnnpack");
    const Onnx__GraphProto *gp = mp->graph;
    check_qdq_pairs(gp);
    const Onnx__NodeProto *sq = producer(gp, "sig_q");
    CHECK(sq && f32_at(init_named(gp, sq->input[1]), 0) == 1.0f / 256.0f &&
          init_named(gp, sq->input[2])->raw_data.data[0] == 0);
    const Onnx__NodeProto *cn = node_named(gp, "cat");
    const Onnx__AttributeProto *axis = attr(cn, "axis");
    CHECK(cn && !strcmp(cn->op_type, "Concat") && axis && axis->i == 1);
    CHECK(producer(gp, "cat_q") != NULL && producer(gp, "add_q") != NULL);
    cq_onnx_model_free(mp);
  }
  cq_module_free(g);
}

/* The ops imported graphs use: ConvTranspose2d, LeakyReLU, Hardswish (or an Identity in its
 * place), Hardsigmoid, Reshape, Permute, Unsqueeze, Squeeze, BinaryConst, MatMul; input
 * [N, 2, 4, 4]. */
static cq_module *extra_ops_model(int with_hardswish) {
  cq_module *g = NULL;
  OK(cq_graph(&g, 1));
  cq_conv_transpose_options o = cq_conv_transpose_defaults(2, 3, 3, 3);
  o.stride[0] = o.stride[1] = 2;
  cq_module *ct = NULL, *lr = NULL, *hw = NULL, *hs = NULL, *rs = NULL, *pm = NULL, *us = NULL,
            *sq = NULL, *bc = NULL, *mm = NULL;
  OK(cq_conv_transpose2d(&ct, &o));
  OK(cq_leaky_relu(&lr, 0.1f));
  OK(with_hardswish ? cq_hardswish(&hw) : cq_identity(&hw));
  OK(cq_hardsigmoid(&hs));
  const int64_t shape[3] = {0, 3, -1};
  OK(cq_reshape(&rs, 3, shape));
  const int perm[3] = {0, 2, 1}, axis[1] = {1};
  OK(cq_permute(&pm, 3, perm));
  OK(cq_unsqueeze(&us, 1, axis));
  OK(cq_squeeze(&sq, 1, axis));
  cq_tensor *k = NULL;
  const int64_t kn = 3;
  OK(cq_tensor_create(&k, CQ_F32, 1, &kn));
  for (int i = 0; k && i < 3; i++) ((float *)k->data)[i] = 0.5f + (float)i;
  OK(cq_binary_const(&bc, CQ_BINARY_MUL, k, 0));
  cq_tensor_free(k);
  OK(cq_matmul(&mm));
  int v = 0, a, b, c, d, e, f, h, i, j, y;
  OK(cq_graph_add_node(g, "up", ct, 1, &v, 1, &a));
  OK(cq_graph_add_node(g, "leaky", lr, 1, &a, 1, &b));
  OK(cq_graph_add_node(g, "hswish", hw, 1, &b, 1, &c));
  OK(cq_graph_add_node(g, "hsig", hs, 1, &c, 1, &d));
  OK(cq_graph_add_node(g, "rs", rs, 1, &d, 1, &e));
  OK(cq_graph_add_node(g, "pm", pm, 1, &e, 1, &f));
  OK(cq_graph_add_node(g, "us", us, 1, &f, 1, &h));
  OK(cq_graph_add_node(g, "sq", sq, 1, &h, 1, &i));
  OK(cq_graph_add_node(g, "scale", bc, 1, &i, 1, &j));
  int mi[2] = {j, e};
  OK(cq_graph_add_node(g, "mm", mm, 2, mi, 1, &y));
  OK(cq_graph_set_outputs(g, 1, &y));
  cq_module_train(g, 0);
  return g;
}

static const int64_t extra_shape[4] = {2, 2, 4, 4};

static void test_extra_ops(void) {
  cq_module *m = extra_ops_model(1);
  Onnx__ModelProto *mp = save_and_read(m, 4, extra_shape, "extra_ops.onnx");
  if (mp) {
    check_header_opset(mp, "Graph", 4, NULL, 14); /* HardSwish is an opset-14 op */
    char *ops = op_list(mp->graph);
    CHECK_STR_EQ(ops, "ConvTranspose LeakyRelu HardSwish HardSigmoid Reshape Transpose "
                      "Unsqueeze Squeeze Mul MatMul");
    free(ops);
    const Onnx__GraphProto *g = mp->graph;
    const Onnx__AttributeProto *st = attr(node_named(g, "up"), "strides");
    CHECK(st && st->n_ints == 2 && st->ints[0] == 2);
    const Onnx__AttributeProto *al = attr(node_named(g, "leaky"), "alpha");
    CHECK(al && al->f == 0.1f);
    /* [N, 81, 3] x [N, 3, 81] -> [N, 81, 81], computed from the input shape */
    const Onnx__TensorShapeProto *os = g->output[0]->type->tensor_type->shape;
    CHECK(os && os->n_dim == 3 && os->dim[1]->dim_value == 81 && os->dim[2]->dim_value == 81);
    cq_onnx_model_free(mp);
  }
  cq_module_free(m);
}

/* ---- round trips: save, load, run both, compare bit for bit ---------------------------------------- */

static int same_output(cq_module *a, cq_module *b, int ndim, const int64_t *shape,
                       const char *what) {
  cq_ctx *ca = NULL, *cb = NULL;
  OK(cq_ctx_create(&ca));
  OK(cq_ctx_create(&cb));
  int same = 0;
  /* two batch sizes: the batch dimension is dynamic in the file */
  for (int64_t n = 1; n <= 3; n += 2) {
    int64_t s[CQ_MAX_DIMS];
    memcpy(s, shape, sizeof(int64_t) * (size_t)ndim);
    s[0] = n;
    cq_tensor *x = input_tensor(ndim, s, 0.25 * (double)n), *ya = NULL, *yb = NULL;
    cq_status sa = cq_module_forward1(a, ca, x, &ya);
    cq_status sb = cq_module_forward1(b, cb, x, &yb);
    CHECK_MSG(sa == CQ_OK && sb == CQ_OK, "%s: forward failed: %s", what, cq_last_error());
    same = sa == CQ_OK && sb == CQ_OK && ya->dtype == yb->dtype && ya->ndim == yb->ndim &&
           !memcmp(ya->shape, yb->shape, sizeof(int64_t) * (size_t)ya->ndim) &&
           !memcmp(ya->data, yb->data, cq_tensor_nbytes(ya));
    CHECK_MSG(same, "%s: outputs of the saved and reloaded model differ (batch %lld)", what,
              (long long)n);
    cq_tensor_free(x);
    cq_ctx_reset(ca);
    cq_ctx_reset(cb);
  }
  cq_ctx_free(ca);
  cq_ctx_free(cb);
  return same;
}

/* `expect`: a module class the reloaded model must contain (the importer folded the QDQ form). */
static void round_trip(cq_module *m, int ndim, const int64_t *shape, const char *file,
                       const char *expect) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", TMP, file);
  OK(cq_onnx_save(m, ndim, shape, path));
  cq_module *back = NULL;
  cq_status st = cq_onnx_load(path, &back);
  CHECK_MSG(st == CQ_OK, "loading %s: %s", file, cq_last_error());
  if (st == CQ_OK && expect) {
    char *text = cq_module_repr_alloc(back);
    CHECK_MSG(text && strstr(text, expect), "%s: the reloaded model has no %s:\n%s", file, expect,
              text ? text : "");
    free(text);
  }
  if (st == CQ_OK) same_output(m, back, ndim, shape, file);
  cq_module_free(back);
}

static void test_round_trips(void) {
  cq_module *m = cnn_model();
  round_trip(m, 4, cnn_shape, "rt_float_cnn.onnx", NULL);
  cq_module_free(m);
  const cq_backend engines[3] = {CQ_BACKEND_X86, CQ_BACKEND_QNNPACK, CQ_BACKEND_ONEDNN};
  for (int e = 0; e < 3; e++) {
    m = quantized_cnn(engines[e]);
    round_trip(m, 4, cnn_shape, "rt_static_cnn.onnx", "QuantizedConvReLU2d");
    cq_module_free(m);
  }
  for (int gru = 0; gru < 2; gru++) {
    m = lstm_model(gru);
    const char *types[2] = {gru ? "GRU" : "LSTM", "Linear"};
    OK(cq_quantize_dynamic(m, 2, types, CQ_QINT8));
    round_trip(m, 3, lstm_shape, "rt_dynamic_rnn.onnx",
               gru ? "DynamicQuantizedGRU" : "DynamicQuantizedLSTM");
    cq_module_free(m);
    m = lstm_model(gru);
    round_trip(m, 3, lstm_shape, "rt_float_rnn.onnx", NULL);
    cq_module_free(m);
  }
  for (int hs = 0; hs < 2; hs++) {
    m = extra_ops_model(hs);
    round_trip(m, 4, extra_shape, hs ? "rt_extra_ops_hardswish.onnx" : "rt_extra_ops.onnx", NULL);
    cq_module_free(m);
  }
  /* the same graph statically quantized: QuantizedHardswish comes back as itself */
  m = extra_ops_model(1);
  cq_graph_quant_options qo = cq_graph_quant_defaults();
  OK(cq_prepare_graph(m, &qo));
  cq_ctx *qctx = NULL;
  OK(cq_ctx_create(&qctx));
  for (int i = 0; i < 3; i++) {
    cq_tensor *x = input_tensor(4, extra_shape, 0.4 * i), *y = NULL;
    OK(cq_module_forward1(m, qctx, x, &y));
    cq_tensor_free(x);
    cq_ctx_reset(qctx);
  }
  cq_ctx_free(qctx);
  OK(cq_convert_graph(m, &qo));
  round_trip(m, 4, extra_shape, "rt_extra_ops_static.onnx", "QuantizedHardswish");
  cq_module_free(m);
  /* a model torch exported: LSTM classifier reading the last step with Gather (x[:, -1, :]),
   * float and dynamically quantized (what `cquant quantize --mode dynamic` writes) */
  const int64_t seq_shape[3] = {1, 28, 28};
  for (int dyn = 0; dyn < 2; dyn++) {
    m = NULL;
    OK(cq_onnx_load(CQ_TEST_DATA_DIR "/onnx_accuracy/lstm.onnx", &m));
    if (!m) continue;
    if (dyn) {
      cq_graph_quant_options o = cq_graph_quant_defaults();
      OK(cq_quantize_dynamic_graph(m, &o));
    }
    round_trip(m, 3, seq_shape, dyn ? "rt_torch_lstm_dynamic.onnx" : "rt_torch_lstm.onnx",
               "Gather");
    cq_module_free(m);
  }
  /* a static QuantizedLinear on a 3-D input is written as MatMul([in, out] weight, per-channel
   * along axis 1) + Add: it must come back as the same QuantizedLinear */
  const int64_t ops_shape[3] = {2, 3, 4};
  /* float Sub / Div of two activations and a broadcasting Add, float and around a static graph */
  const int64_t arith_shape[2] = {2, 6};
  for (int q = 0; q < 2; q++) {
    m = NULL;
    OK(cq_onnx_load(CQ_TEST_DATA_DIR "/golden/onnx_models/arith.onnx", &m));
    if (!m) continue;
    if (q) {
      cq_graph_quant_options o = cq_graph_quant_defaults();
      OK(cq_prepare_graph(m, &o));
      cq_ctx *ctx = NULL;
      OK(cq_ctx_create(&ctx));
      cq_tensor *x = input_tensor(2, arith_shape, 0.1), *y = NULL;
      OK(cq_module_forward1(m, ctx, x, &y));
      cq_tensor_free(x);
      cq_ctx_free(ctx);
      OK(cq_convert_graph(m, &o));
    }
    round_trip(m, 2, arith_shape, q ? "rt_arith_static.onnx" : "rt_arith.onnx", "Div()");
    cq_module_free(m);
  }
  for (int pc = 0; pc < 2; pc++) {
    m = NULL;
    OK(cq_onnx_load(CQ_TEST_DATA_DIR "/golden/onnx_models/shape_ops.onnx", &m));
    if (!m) continue;
    cq_graph_quant_options o = cq_graph_quant_defaults();
    o.per_channel = pc;
    OK(cq_prepare_graph(m, &o));
    cq_ctx *ctx = NULL;
    OK(cq_ctx_create(&ctx));
    for (int i = 0; i < 3; i++) {
      cq_tensor *x = input_tensor(3, ops_shape, 0.3 * i), *y = NULL;
      OK(cq_module_forward1(m, ctx, x, &y));
      cq_tensor_free(x);
      cq_ctx_reset(ctx);
    }
    cq_ctx_free(ctx);
    OK(cq_convert_graph(m, &o));
    round_trip(m, 3, ops_shape, pc ? "rt_matmul_static_pc.onnx" : "rt_matmul_static.onnx",
               "QuantizedLinear");
    cq_module_free(m);
  }
}

/* ---- errors ------------------------------------------------------------------------------------------ */

static int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static void test_errors(void) {
  const int64_t shape[2] = {1, 4};
  char path[512];
  snprintf(path, sizeof path, "%s/bad.onnx", TMP);
  unlink(path);
  /* a module with no ONNX form, named with its path and class */
  cq_module *loss = NULL;
  OK(cq_mse_loss(&loss));
  cq_module *seq_children[2] = {tb_linear(4, 4), loss};
  cq_module *m = NULL;
  OK(cq_sequential(&m, 2, seq_children));
  CHECK_STATUS(cq_onnx_save(m, 2, shape, path), CQ_EUNSUPPORTED);
  CHECK_MSG(strstr(cq_last_error(), "module 1 (MSELoss)") && !strchr(cq_last_error(), '\n'),
            "message: %s", cq_last_error());
  CHECK(!file_exists(path));
  cq_module_free(m);
  /* a prepared (observed) model */
  cq_module *c2[3] = {tb_simple(cq_quant_stub), tb_linear(4, 2), tb_simple(cq_dequant_stub)};
  OK(cq_sequential(&m, 3, c2));
  cq_module_train(m, 0);
  cq_qconfig qc;
  OK(cq_get_default_qconfig(CQ_BACKEND_X86, 0, &qc));
  OK(cq_module_set_qconfig(m, &qc));
  OK(cq_prepare(m));
  CHECK_STATUS(cq_onnx_save(m, 2, shape, path), CQ_EUNSUPPORTED);
  CHECK(strstr(cq_last_error(), "convert it first") != NULL);
  CHECK(!file_exists(path));
  cq_module_free(m);
  /* quantized module fed a float tensor */
  /* bad arguments */
  m = tb_linear(4, 2);
  CHECK_STATUS(cq_onnx_save(NULL, 2, shape, path), CQ_EINVAL);
  CHECK_STATUS(cq_onnx_save(m, 0, shape, path), CQ_EINVAL);
  CHECK_STATUS(cq_onnx_save(m, 2, shape, NULL), CQ_EINVAL);
  const int64_t zero[2] = {1, 0};
  CHECK_STATUS(cq_onnx_save(m, 2, zero, path), CQ_EINVAL);
  /* unwritable path: CQ_EIO, nothing left behind */
  const char *nodir = TMP "/no/such/dir/m.onnx";
  CHECK_STATUS(cq_onnx_save(m, 2, shape, nodir), CQ_EIO);
  CHECK(!file_exists(nodir));
  /* a single leaf at the root is fine */
  OK(cq_onnx_save(m, 2, shape, path));
  CHECK(file_exists(path));
  unlink(path);
  cq_module_free(m);
}

/* Allocation failures anywhere in the export: CQ_ENOMEM, no crash, no leak, no file. */
static void test_out_of_memory(void) {
  cq_module *m = quantized_cnn(CQ_BACKEND_X86);
  char path[512];
  snprintf(path, sizeof path, "%s/oom.onnx", TMP);
  int succeeded = 0, failures = 0;
  for (long n = 0; n < 2000 && !succeeded; n++) {
    unlink(path);
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_onnx_save(m, 4, cnn_shape, path);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      succeeded = 1;
    } else {
      failures++;
      CHECK_MSG(st == CQ_ENOMEM, "allocation failure %ld gave %s (%s)", n, cq_status_str(st),
                cq_last_error());
      CHECK_MSG(!file_exists(path), "allocation failure %ld left a file", n);
    }
  }
  CHECK_MSG(succeeded, "save never succeeded within 2000 allocations");
  CHECK_MSG(failures >= 5, "only %d allocations could fail", failures);
  unlink(path);
  cq_module_free(m);
}

static void quiet(const char *message, void *user) {
  (void)message;
  (void)user;
}

int main(void) {
  cq_set_warning_handler(quiet, NULL);
  const cq_backend engine = cq_quantized_engine();
  test_float_cnn();
  test_static_cnn(CQ_BACKEND_X86);
  test_static_cnn(CQ_BACKEND_QNNPACK);
  cq_set_quantized_engine(CQ_BACKEND_X86);
  test_dynamic_lstm(0);
  test_dynamic_lstm(1);
  test_qfunctional_and_fixed_qparams();
  test_extra_ops();
  test_errors();
  test_out_of_memory();
  test_round_trips();
  cq_set_quantized_engine(engine);
  return check_summary("test_onnx_export");
}
