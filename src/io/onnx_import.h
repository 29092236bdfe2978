/* Internal: the state of one ONNX import (cq_onnx_load) shared by its parts.
 *
 *   onnx_import.c         entry points, model checks, the walk over the nodes in file order,
 *                         graph inputs and outputs
 *   onnx_import_values.c  the value table (ONNX value name -> what it is), child naming, errors
 *   onnx_import_tensor.c  initializers and attributes: dtype checks, copies into module tensors
 *   onnx_import_shape.c   symbolic evaluation of shape subgraphs (Shape / Gather / Unsqueeze /
 *                         Concat / Slice / Cast / ConstantOfShape) and Reshape
 *   onnx_import_ops.c     converters of the layer ops (Conv, Gemm, MatMul, pools, activations, ...)
 *   onnx_import_rnn.c     LSTM / GRU (gate reordering, output layout)
 *   onnx_import_qdq.c     QuantizeLinear / DequantizeLinear folding into quantized modules
 *   onnx_import_gather.c  the Gather-by-constant-index module (x[:, -1, :] in exported graphs)
 *
 * Every ONNX value name maps to one oi_value. A value is one of:
 *  - an activation: a value of the cq_graph being built (graph number `gv`), with its rank and
 *    dims; each dim is a known size or a symbol (a dynamic size, identified so that "dimension 0
 *    of x" and "dimension 0 of y" compare equal when they are the same batch);
 *  - a constant tensor: an initializer or a Constant node's tensor (borrowed from the decoded
 *    model, never copied until a module takes it);
 *  - a symbolic integer vector: what Shape / Gather / Concat ... compute about shapes, each entry
 *    a known integer or a symbol;
 *  - zeros of a symbolic shape (ConstantOfShape with value 0: the initial states torch exports for
 *    LSTM / GRU).
 * Lookups go through a hash table, so importing is linear in the size of the graph. */
#ifndef CQ_IO_ONNX_IMPORT_H
#define CQ_IO_ONNX_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cquant/modules.h"
#include "cquant/nn.h"
#include "cquant/qconfig.h"
#include "cquant/qparams.h"
#include "io/onnx_proto.h"
#include "nn/module_impl.h"

typedef enum oi_kind {
  OI_UNDEFINED = 0,
  OI_ACT,
  OI_CONST,
  OI_SHAPE,
  OI_ZEROS
} oi_kind;

/* A size that is known (sym == 0, v >= 0) or symbolic (sym > 0: the same symbol is the same
 * size). */
typedef struct oi_dim {
  int64_t v;
  int sym;
} oi_dim;

/* Quantization of an activation (QDQ form): the value is a quantized tensor at run time. */
typedef struct oi_qinfo {
  int quantized;
  float scale;
  int32_t zero_point;
  cq_qdtype dtype;
} oi_qinfo;

typedef struct oi_value {
  const char *name; /* borrowed from the model */
  oi_kind kind;
  int producer;     /* node index that defines it; -1 for graph inputs and initializers */
  /* OI_ACT */
  int gv;
  int ndim;
  oi_dim dims[CQ_MAX_DIMS];
  oi_qinfo q; /* set when the graph value holds a quantized tensor */
  /* OI_CONST */
  const Onnx__TensorProto *tensor;
  /* OI_SHAPE / OI_ZEROS: entries (OI_SHAPE: the vector; OI_ZEROS: the shape); scalar: 0-D */
  int nsym;
  int scalar;
  oi_dim *sym;
  /* QDQ bookkeeping (onnx_import_qdq.c): the DequantizeLinear that defines this value reads
   * `dq_source` (a quantized activation or a quantized constant); -1 when not a DQ output. */
  int dq_source;
  int dq_node;
} oi_value;

typedef struct oi_importer {
  const char *what; /* file name or "ONNX buffer" for messages */
  const Onnx__ModelProto *model;
  const Onnx__GraphProto *graph;
  int64_t opset;
  cq_backend engine;
  cq_module *g;
  /* values, and the name -> index hash table (open addressing, power-of-two size) */
  oi_value *values;
  int nvalues, cap_values;
  int *slots;
  size_t nslots;
  /* per node: number of consumers of each output is kept per value (uses), and nodes folded
   * into an earlier node's module are marked done */
  int *uses;       /* indexed like values: how many node inputs / graph outputs read it */
  int *first_reader; /* indexed like values: the first node reading it, -1 when none */
  unsigned char *done;
  /* child names in use (hash set of strings owned here) */
  char **names;
  size_t nnames_slots;
  int nnames;
  int next_sym;
  const Onnx__NodeProto *node; /* the node being converted (for messages) */
  /* dequantized weights (onnx_import_qdq.c), owned */
  void **dq_weights;
  int ndq_weights;
} oi_importer;

/* ---- values (onnx_import_values.c) ---- */
cq_status oi_values_init(oi_importer *im, size_t expected);
void oi_values_release(oi_importer *im);
/* Index of the value called `name`, or -1. */
int oi_find(const oi_importer *im, const char *name);
/* Adds a value (kind OI_UNDEFINED) and returns its index in *index; CQ_EFORMAT when the name is
 * defined twice (unless allow_existing, then the existing index is returned). */
cq_status oi_add_value(oi_importer *im, const char *name, int allow_existing, int *index);
/* A fresh symbol for an unknown size. */
int oi_new_sym(oi_importer *im);

/* "WHAT: node NAME (OpType): message" with the status. */
cq_status oi_fail(oi_importer *im, cq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The child name for the node being converted: from the PyTorch module path its weight
 * initializer or node name carries, made a unique identifier. Writes into buf. */
cq_status oi_child_name(oi_importer *im, const Onnx__NodeProto *node, const char *weight_name,
                        char *buf, size_t cap);

/* `base` made an identifier and unique (suffix _1, _2, ...), registered as taken. */
cq_status oi_unique_name(oi_importer *im, const char *base, char *buf, size_t cap);

/* ---- node inputs and outputs (onnx_import_values.c) ---- */
/* Input i of the current node: its value, or NULL when absent (beyond the list or ""). Fails
 * when the name is not defined. */
cq_status oi_input(oi_importer *im, int i, oi_value **out);
/* Input i must be an activation / a constant tensor. */
cq_status oi_input_act(oi_importer *im, int i, oi_value **out);
cq_status oi_input_const(oi_importer *im, int i, const Onnx__TensorProto **out);
/* Defines output i of the current node (its name) and returns the new value. */
cq_status oi_define_output(oi_importer *im, int i, oi_kind kind, oi_value **out);
/* Adds `module` as a graph node reading the activations `ins` and defining outputs `outs` (value
 * indices already created by the caller with kind OI_ACT, or -1 for outputs nobody reads... every
 * output gets a graph value). `name`: child name (already unique). Takes ownership of module. */
cq_status oi_emit(oi_importer *im, const char *name, cq_module *module, int nin,
                  oi_value *const *ins, int nout, oi_value **outs);
/* Convenience: one module, one activation input, one output defined as output 0 of the current
 * node with shape `dims` (ndim entries). */
cq_status oi_emit_unary(oi_importer *im, cq_module *module, const char *weight_name,
                        oi_value *in, int ndim, const oi_dim *dims, oi_value **out);

/* ---- tensors and attributes (onnx_import_tensor.c) ---- */
/* Number of elements and shape of an initializer (checks dims >= 0 and the data size). */
cq_status oi_tensor_check(oi_importer *im, const Onnx__TensorProto *t, const char *role,
                          int64_t *numel);
/* Copies an initializer converted to float32 into dst (n elements, must equal its size). */
cq_status oi_tensor_f32(oi_importer *im, const Onnx__TensorProto *t, const char *role, float *dst,
                        int64_t n);
/* Reads an integer initializer (int64/int32/int8/uint8/...) into dst (n elements). */
cq_status oi_tensor_i64(oi_importer *im, const Onnx__TensorProto *t, const char *role,
                        int64_t *dst, int64_t n);
/* A new cq_tensor (float32, or the int dtype for int8/uint8 ...) holding the initializer. */
cq_status oi_tensor_to_cq(oi_importer *im, const Onnx__TensorProto *t, const char *role,
                          cq_tensor **out);

const Onnx__AttributeProto *oi_attr(const Onnx__NodeProto *node, const char *name);
cq_status oi_attr_int(oi_importer *im, const char *name, int64_t dflt, int64_t *out);
cq_status oi_attr_float(oi_importer *im, const char *name, float dflt, float *out);
/* Up to `cap` ints; *n = count (0 when absent). */
cq_status oi_attr_ints(oi_importer *im, const char *name, int64_t *out, int cap, int *n);
/* The string (not NUL-terminated in protobuf: copied into buf); dflt when absent. */
cq_status oi_attr_string(oi_importer *im, const char *name, const char *dflt, char *buf,
                         size_t cap);
/* The tensor attribute (Constant's value). */
cq_status oi_attr_tensor(oi_importer *im, const char *name, const Onnx__TensorProto **out);

/* ---- ops ---- */
typedef cq_status (*oi_converter)(oi_importer *im, const Onnx__NodeProto *node);
/* The converter of an op type of the default domain, or NULL. */
oi_converter oi_find_converter(const char *op_type);

/* onnx_import_shape.c */
cq_status oi_conv_constant(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_shape(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_gather(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_unsqueeze(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_squeeze(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_concat(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_slice(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_cast(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_constant_of_shape(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_reshape(oi_importer *im, const Onnx__NodeProto *node);
/* Reads an integer vector input (constant or symbolic): entries into out (cap), count in *n. */
cq_status oi_int_vector(oi_importer *im, oi_value *v, const char *role, oi_dim *out, int cap,
                        int *n, int *scalar);
/* Sets v to a symbolic vector (copies entries). */
cq_status oi_set_sym(oi_importer *im, oi_value *v, int n, const oi_dim *entries, int scalar);

/* onnx_import_rnn.c */
cq_status oi_conv_lstm(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_gru(oi_importer *im, const Onnx__NodeProto *node);

/* onnx_import_qdq.c */
cq_status oi_conv_quantize_linear(oi_importer *im, const Onnx__NodeProto *node);
cq_status oi_conv_dequantize_linear(oi_importer *im, const Onnx__NodeProto *node);
/* Folds the node (and the Relu / QuantizeLinear after it) into a quantized module when its
 * inputs come from DequantizeLinear; *handled = 1 when it did. */
cq_status oi_qdq_try_fold(oi_importer *im, const Onnx__NodeProto *node, int *handled);
/* When input i of `node` is a DequantizeLinear'd weight: its qparams in *out (release them) and
 * *found = 1; else *found = 0 and *out untouched. */
cq_status oi_qdq_weight_qparams(oi_importer *im, const Onnx__NodeProto *node, int i,
                                cq_qparams *out, int *found);
/* A pending DequantizeLinear output read by a float consumer: adds the DeQuantize module. */
cq_status oi_qdq_materialize(oi_importer *im, oi_value *v);
void oi_qdq_release(oi_importer *im);

/* onnx_import_ops.c: a Conv node's attributes checked against input x and weight w. */
typedef struct oi_conv_geometry {
  cq_conv_options options;
  const Onnx__TensorProto *bias; /* NULL when absent */
  int ndim;                      /* of the output */
  oi_dim dims[4];
} oi_conv_geometry;
cq_status oi_conv_attrs(oi_importer *im, const Onnx__NodeProto *node, const oi_value *x,
                        const Onnx__TensorProto *w, oi_conv_geometry *geo);

/* onnx_import_gather.c: y = x.index_select(axis, indices) for constant indices (0-D index: the
 * axis is dropped, as x[:, k]). */
cq_status oi_gather_module(cq_module **out, int axis, int64_t nindex, const int64_t *indices,
                           int scalar_index);
/* What a Gather module made by oi_gather_module holds (pointers into the module), for export;
 * CQ_EINVAL for any other module. */
cq_status oi_gather_describe(const cq_module *m, int *axis, int64_t *nindex,
                             const int64_t **indices, int *scalar_index);

/* Normalises an axis for rank ndim ([-ndim, ndim-1]); fails naming `what`. */
cq_status oi_axis(oi_importer *im, int64_t axis, int ndim, const char *what, int *out);

#endif
