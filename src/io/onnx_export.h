/* Internal: the state of one ONNX export (cq_onnx_save) shared by its parts.
 *
 *   onnx_export.c        entry point, the walk over graphs / sequentials / fused containers,
 *                        graph inputs and outputs, the model message and the file
 *   onnx_export_build.c  message building: an arena owning every message, string and array of
 *                        the model being written (freed at once, whatever happened), unique value
 *                        and node names, nodes, attributes, initializers
 *   onnx_export_ops.c    float modules -> nodes (Gemm / MatMul, Conv, BatchNormalization, pools,
 *                        activations, shape ops, FloatFunctional) and the quantized values around
 *                        them (QuantizeLinear / DequantizeLinear pairs)
 *   onnx_export_qops.c   quantized modules -> QDQ form (Quantize / DeQuantize, static Linear /
 *                        Conv / QFunctional, dynamic Linear)
 *   onnx_export_rnn.c    LSTM / GRU, float and dynamic quantized (gate order, B = [Wb, Rb],
 *                        the Transpose / Squeeze / Reshape back to PyTorch's layout)
 *   onnx_export_extra.c  LeakyReLU, Hardsigmoid, Hardswish (and their quantized modules),
 *                        BinaryConst, MatMul, Reshape, Permute, Squeeze / Unsqueeze,
 *                        ConvTranspose2d
 *
 * Every export value (an ONNX tensor some node reads) is described by an ox_value: the name of its
 * float form, and for a quantized cquant tensor also its qparams and the names of its QuantizeLinear
 * output and scale / zero point initializers (the DequantizeLinear output is the float name, which
 * every consumer reads). Shapes are tracked statically from the input shape: a dimension is a known
 * size (>= 0) or a multiple of the dynamic batch N, stored as -k for k * N. */
#ifndef CQ_IO_ONNX_EXPORT_H
#define CQ_IO_ONNX_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cquant/modules.h"
#include "cquant/nn.h"
#include "cquant/qconfig.h"
#include "cquant/qparams.h"
#include "io/onnx_proto.h"

#define OX_OPSET 13
#define OX_IR_VERSION 8

/* ---- message building (onnx_export_build.c) ---------------------------------------------------- */

typedef struct ox_block ox_block;

typedef struct ox_nameset {
  const char **slots;
  size_t cap, count;
} ox_nameset;

/* Every function below does nothing (and returns NULL) once `st` is not CQ_OK: builders chain calls
 * and check st once, and the first failure's message is the one kept. */
typedef struct ox_builder {
  cq_status st;
  ox_block *arena;
  Onnx__NodeProto **nodes;
  size_t n_nodes, cap_nodes;
  Onnx__TensorProto **inits;
  size_t n_inits, cap_inits;
  ox_nameset values; /* value and initializer names */
  ox_nameset node_names;
} ox_builder;

void ox_builder_release(ox_builder *b);
/* Zeroed memory owned by the builder. */
void *ox_alloc(ox_builder *b, size_t size);
char *ox_strdup(ox_builder *b, const char *s);
char *ox_printf(ox_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A value name not used yet: `base`, else base_1, base_2, ...; reserved for the caller. */
const char *ox_value_name(ox_builder *b, const char *base);
/* The same for node names. */
const char *ox_node_name(ox_builder *b, const char *base);

/* Appends a node of the default domain named (uniquely) after `name`. inputs[i] may be "" for an
 * omitted optional input. */
Onnx__NodeProto *ox_node(ox_builder *b, const char *op_type, const char *name, int nin,
                         const char *const *inputs, int nout, const char *const *outputs);
void ox_attr_int(ox_builder *b, Onnx__NodeProto *node, const char *name, int64_t v);
void ox_attr_ints(ox_builder *b, Onnx__NodeProto *node, const char *name, int n,
                  const int64_t *v);
void ox_attr_float(ox_builder *b, Onnx__NodeProto *node, const char *name, float v);
void ox_attr_string(ox_builder *b, Onnx__NodeProto *node, const char *name, const char *v);

/* Initializers. `name` is taken as is when free, else made unique; the name used is returned.
 * The data is copied (little-endian raw_data). ndim == 0 is a scalar. */
const char *ox_init_f32(ox_builder *b, const char *name, int ndim, const int64_t *dims,
                        const float *data);
const char *ox_init_i8(ox_builder *b, const char *name, int ndim, const int64_t *dims,
                       const int8_t *data);
const char *ox_init_u8(ox_builder *b, const char *name, int ndim, const int64_t *dims,
                       const uint8_t *data);
const char *ox_init_i64(ox_builder *b, const char *name, int ndim, const int64_t *dims,
                        const int64_t *data);

/* ---- the walk's values (onnx_export.c) ----------------------------------------------------------- */

#define OX_BATCH (-1) /* a dimension equal to the dynamic batch N */

typedef struct ox_value {
  const char *name; /* the float tensor consumers read (the DequantizeLinear output if quantized) */
  int quantized;
  float scale;
  int32_t zero_point;
  cq_qdtype dtype;  /* CQ_QUINT8 or CQ_QINT8 */
  const char *qname;      /* QuantizeLinear output */
  const char *scale_name; /* initializers shared by the pair */
  const char *zp_name;
  int ndim;
  int64_t dims[CQ_MAX_DIMS]; /* >= 0 known; -k: k * N */
} ox_value;

typedef struct ox_exporter {
  ox_builder b;
  int64_t opset; /* OX_OPSET, raised by ops that need a later one (HardSwish: 14) */
  int has_engine;
  cq_backend engine;
  const char *engine_path; /* the first module that named the engine (for messages) */
} ox_exporter;

/* A module call being exported: path ("features.0"), module, the input values and the output
 * values to fill. */
typedef struct ox_call {
  const char *path;
  cq_module *m;
  int nin, nout;
  ox_value *const *in;
  ox_value *out;
} ox_call;

/* Fails with CQ_EUNSUPPORTED (or `st`) naming the module: "module PATH (Class): message". */
cq_status ox_fail(const ox_call *c, cq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records the engine a quantized module follows; CQ_EUNSUPPORTED when two modules disagree (one
 * file carries one engine). */
cq_status ox_use_engine(ox_exporter *x, const ox_call *c, cq_backend engine);

/* ---- shapes -------------------------------------------------------------------------------------- */

/* Copies the shape of `from` into `to`. */
void ox_same_shape(ox_value *to, const ox_value *from);
/* Normalises a dim against rank ndim; -1 when out of range. */
int ox_axis(int dim, int ndim);

/* ---- quantized values (onnx_export_ops.c) ------------------------------------------------------- */

/* Makes `v` (whose float name is the tensor to quantize, shape already set) a quantized value:
 * QuantizeLinear(v.name) -> NAME_q, DequantizeLinear(NAME_q) -> NAME_dq, with scalar scale / zero
 * point initializers NAME_scale / NAME_zero_point, NAME being the module path (v.name at the
 * root); v.name becomes the DequantizeLinear output. */
void ox_quantize_value(ox_exporter *x, const char *path, ox_value *v, float scale,
                       int32_t zero_point, cq_qdtype dtype);
/* A quantized weight: int8 initializer PREFIX_quantized (dims), PREFIX_scale (scalar or [count]),
 * PREFIX_zero_point (int8, same shape), DequantizeLinear (axis given when per channel) -> the
 * returned float value name. */
const char *ox_dequantized_weight(ox_exporter *x, const char *path, const char *prefix,
                                  int ndim, const int64_t *dims, const int8_t *q,
                                  int64_t count, const float *scales, const int32_t *zero_points,
                                  int axis);

/* ---- shared node patterns and shape rules (onnx_export_ops.c) ------------------------------------ */

#define OX_UNKNOWN INT64_MIN /* a dimension the walk cannot tell */

/* Product of dims[from .. to-1] in the encoding above (OX_UNKNOWN for N * N or unknown parts). */
int64_t ox_dims_product(const int64_t *dims, int from, int to);
/* Sum of two dims (concatenation): known + known, k * N + j * N, else OX_UNKNOWN. */
int64_t ox_dims_sum(int64_t a, int64_t b);
/* Convolution / pooling output shape over the last nspatial dims (channels > 0 replaces the
 * channel dim before them). */
void ox_window_shape(ox_value *out, const ox_value *in, int nspatial, const int64_t *k,
                     const int64_t *s, const int64_t *p, const int64_t *d, int ceil_mode,
                     int64_t channels);
void ox_linear_shape(ox_value *out, const ox_value *in, int64_t out_features);
void ox_conv_shape(ox_value *out, const ox_value *in, const cq_conv_options *o, int dims);
/* numpy broadcasting of two shapes. */
void ox_broadcast_shape(ox_value *out, const ox_value *a, const ox_value *b);

/* CQ_EUNSUPPORTED naming the module when an input is quantized. */
cq_status ox_need_float(const ox_call *c);
/* One node `op` named node_name with one output, a new value named PATH (PATH_SUFFIX when
 * out_suffix is given); returns the output name (NULL after a failure). *node gets the node. */
const char *ox_op(ox_exporter *x, const char *path, const char *node_name, const char *op,
                  int nin, const char *const *inputs, const char *out_suffix,
                  Onnx__NodeProto **node);
/* y = x W^T + b [-> Relu]: Gemm(transB=1) for rank 2 (w: [out, in]), else MatMul (w: [in, out])
 * followed by Add of the bias. Returns the output name. */
const char *ox_linear_nodes(ox_exporter *x, const ox_call *c, const char *xin, int rank,
                            const char *w, const char *bias, int relu);
/* Conv with the module's geometry [-> Relu]. */
const char *ox_conv_nodes(ox_exporter *x, const ox_call *c, const char *xin,
                          const cq_conv_options *o, int dims, const char *w, const char *bias,
                          int relu);
/* Reshape to a constant shape (0 = copy, -1 = inferred) stored as NODE_NAME_shape. */
const char *ox_reshape_nodes(ox_exporter *x, const char *path, const char *node_name,
                             const char *xin, int ndim, const int64_t *shape,
                             const char *out_suffix);

/* ---- emitters ----------------------------------------------------------------------------------- */

typedef cq_status (*ox_emit_fn)(ox_exporter *x, const ox_call *c);
/* The emitter of a leaf module by class name (float, quantized and RNN modules), or NULL. */
ox_emit_fn ox_find_emitter(const char *class_name);
ox_emit_fn ox_find_qemitter(const char *class_name);  /* onnx_export_qops.c */
ox_emit_fn ox_find_extra_emitter(const char *class_name); /* onnx_export_extra.c */
cq_status ox_emit_rnn(ox_exporter *x, const ox_call *c); /* onnx_export_rnn.c */

/* A new value name PATH or PATH_SUFFIX (made unique). */
const char *ox_out_name(ox_exporter *x, const char *path, const char *suffix);

#endif
