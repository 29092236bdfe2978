#!/usr/bin/env python3
"""Checks ONNX files written by cquant's exporter (cq_onnx_save) with onnx.checker and prints their
structure: header, metadata, inputs / outputs with shapes, every node with its attributes, and the
initializers (dtype, shape, and the values of small ones). Writes no golden data: the C test
(tests/test_onnx_export.c) checks the structure itself, since tests never run Python; this script is
the independent look at what the files contain.

    CQ_ONNX_EXPORT_DIR=/tmp/onnx build/test_onnx_export     # the test also writes its files there
    /usr/bin/python3 tools/golden/gen_onnx_export_check.py /tmp/onnx [more files or folders]

Exit status 1 when a file fails onnx.checker (full_check: shapes inferred with onnx's own rules) or
breaks the QDQ contract checked here: every QuantizeLinear output read by exactly one
DequantizeLinear with the same scale and zero point, int8 weights behind DequantizeLinear. Without
arguments it checks $CQ_ONNX_EXPORT_DIR when set, else says there is nothing to check."""
import os
import sys

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference


def dims(value_info):
    t = value_info.type.tensor_type
    out = []
    for d in t.shape.dim:
        out.append(d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?"))
    return onnx.TensorProto.DataType.Name(t.elem_type), out


def attr_text(a):
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode()
    return f"{a.name}={v}"


def check_qdq(g):
    problems = []
    readers = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            readers.setdefault(name, []).append((n, i))
    inits = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    for n in g.node:
        if n.op_type == "QuantizeLinear":
            r = readers.get(n.output[0], [])
            ok = [d for d, i in r if d.op_type == "DequantizeLinear" and i == 0 and
                  list(d.input[1:]) == list(n.input[1:])]
            if not (len(r) == 1 and len(ok) == 1) and n.output[0] not in outputs:
                problems.append(f"QuantizeLinear {n.name}: {len(r)} readers, {len(ok)} matching DQ")
            s = inits.get(n.input[1])
            if s is None or len(s.dims) != 0:
                problems.append(f"QuantizeLinear {n.name}: scale is not a scalar initializer")
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            w = inits[n.input[0]]
            if w.data_type != onnx.TensorProto.INT8:
                problems.append(f"DequantizeLinear {n.name}: constant input is not int8")
    return problems


def show(path):
    m = onnx.load(path)
    print(f"== {path}")
    onnx.checker.check_model(m, full_check=True)
    inferred = shape_inference.infer_shapes(m, strict_mode=True)
    print(f"ir_version {m.ir_version}, opsets "
          f"{[(o.domain or 'ai.onnx', o.version) for o in m.opset_import]}, producer {m.producer_name}")
    for p in m.metadata_props:
        print(f"metadata {p.key} = {p.value}")
    g = m.graph
    print(f"graph {g.name}")
    for v in g.input:
        print("input ", v.name, *dims(v))
    for v in g.output:
        print("output", v.name, *dims(v))
    for n in g.node:
        attrs = ", ".join(attr_text(a) for a in n.attribute)
        print(f"  {n.op_type:18s} {n.name:28s} {list(n.input)} -> {list(n.output)}"
              + (f" [{attrs}]" if attrs else ""))
    for t in g.initializer:
        a = numpy_helper.to_array(t)
        small = f" = {a.tolist()}" if a.size <= 4 else f" (mean |x| {np.abs(a.astype(np.float64)).mean():.4g})"
        print(f"  init {t.name} {a.dtype} {list(a.shape)}{small}")
    known = {v.name for v in inferred.graph.value_info}
    print(f"shape inference: {len(known)} intermediate values typed")
    problems = check_qdq(g)
    for p in problems:
        print("PROBLEM", p)
    return not problems


def main(args):
    if not args and os.environ.get("CQ_ONNX_EXPORT_DIR"):
        args = [os.environ["CQ_ONNX_EXPORT_DIR"]]
    if not args:
        print("gen_onnx_export_check.py: nothing to check (give .onnx files or folders, or set "
              "CQ_ONNX_EXPORT_DIR)")
        return 0
    files = []
    for a in args:
        if os.path.isdir(a):
            files += sorted(os.path.join(a, f) for f in os.listdir(a) if f.endswith(".onnx"))
        else:
            files.append(a)
    ok = True
    for f in files:
        try:
            ok = show(f) and ok
        except Exception as e:  # checker errors: report them all, fail at the end
            print(f"FAILED {f}: {type(e).__name__}: {e}")
            ok = False
    print(f"{len(files)} files, {'all passed' if ok else 'FAILURES'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
