#!/usr/bin/python3
"""Writes the malformed / unsupported ONNX files of tests/test_onnx_import.c and their cases.txt.

Each case: `file NAME.onnx`, the status cq_onnx_load must return (`status`, cq_status_str's
text) and a fragment its one-line message must contain (`message`).

Run: /usr/bin/python3 tests/data/onnx_bad/make_bad.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = []


def model(nodes, inits, inputs=None, outputs=None, opset=13, ir=8):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, "bad", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def w(name, shape, dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def save(name, m, status, message):
    path = os.path.join(HERE, name + ".onnx")
    data = m if isinstance(m, bytes) else m.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    CASES.append((name, status, message))


def conv(inputs=("x", "w"), out="y", name="conv_1", **attrs):
    return helper.make_node("Conv", list(inputs), [out], name=name, **attrs)


def main():
    for f in os.listdir(HERE):
        if f.endswith(".onnx"):
            os.remove(os.path.join(HERE, f))
    good = model([conv()], [w("w", (4, 3, 3, 3))])
    raw = good.SerializeToString()
    save("truncated", raw[: len(raw) // 2], "malformed input", "protobuf decoding failed")
    save("garbage", b"\x08\x07garbage that is not protobuf" * 3, "malformed input", "not a valid")
    save("missing_initializer", model([conv()], []), "malformed input",
         "node conv_1 (Conv): input 1 'w' is not defined anywhere")
    m = model([conv(group=1.5)], [w("w", (4, 3, 3, 3))])
    save("wrong_attribute_type", m, "malformed input", "attribute 'group' must be an int")
    save("shape_mismatch", model([conv()], [w("w", (4, 5, 3, 3))]), "shape mismatch",
         "node conv_1 (Conv): input has 3 channels")
    nodes = [helper.make_node("Relu", ["h"], ["y"], name="relu_late"),
             conv(out="h", name="conv_early")]
    save("use_before_define", model(nodes, [w("w", (4, 3, 3, 3))]), "malformed input",
         "used before node conv_early defines it")
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add_a"),
             helper.make_node("Relu", ["a"], ["b"], name="relu_b"),
             helper.make_node("Relu", ["a"], ["y"], name="relu_y")]
    save("cycle", model(nodes, []), "malformed input", "node add_a (Add): input 1 'b' is used before")
    save("opset_10", model([conv()], [w("w", (4, 3, 3, 3))], opset=10), "unsupported",
         "opset 10 is outside the supported 11..17")
    save("opset_18", model([conv()], [w("w", (4, 3, 3, 3))], opset=18), "unsupported",
         "opset 18 is outside")
    save("ir_version_3", model([conv()], [w("w", (4, 3, 3, 3))], ir=3), "unsupported",
         "ir_version 3")
    save("unknown_op", model([helper.make_node("Frobnicate", ["x"], ["y"], name="frob_0")], []),
         "unsupported", "node frob_0 (Frobnicate): operator not supported")
    m = model([conv(pads=[1, 1, 0, 0])], [w("w", (4, 3, 3, 3))])
    save("asymmetric_pads", m, "unsupported", "asymmetric padding")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"),
             helper.make_node("Add", ["x", "s"], ["y"], name="add_bc"),
             helper.make_node("ReduceMean", ["r"], ["s"], name="mean", axes=[1], keepdims=1)]
    save("unsupported_after_use", model(nodes, []), "malformed input", "used before node mean")
    nodes = [helper.make_node("HardSigmoid", ["x"], ["y"], name="hsig", alpha=0.2)]
    save("hardsigmoid_alpha", model(nodes, []), "unsupported", "alpha=1/6")
    x2 = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])]
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm_t", transA=1)]
    save("gemm_transa", model(nodes, [w("w", (6, 4))], inputs=x2), "unsupported", "transA=1")
    bad = w("w", (4, 3, 3, 3))
    bad.raw_data = bad.raw_data[:-4]
    save("raw_data_short", model([conv()], [bad]), "malformed input", "bytes of data")
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r1"),
             helper.make_node("Relu", ["x"], ["y"], name="r2")]
    save("defined_twice", model(nodes, []), "malformed input", "value 'y' is defined twice")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r1")]
    save("output_undefined", model(nodes, []), "malformed input",
         "graph output 'y' is not defined")
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Add", ["x", "p"], ["y"], name="add_bc")]
    save("add_broadcast", model(nodes, []), "shape mismatch", "node add_bc (Add): the operands cannot broadcast")
    x3 = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, "N", 4])]
    nodes = [helper.make_node("GRU", ["x", "W", "R"], ["y"], name="gru0", hidden_size=3,
                              linear_before_reset=0)]
    save("gru_linear_before_reset_0",
         model(nodes, [w("W", (1, 9, 4)), w("R", (1, 9, 3))], inputs=x3), "unsupported",
         "linear_before_reset=0")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv_nan")]
    nanw = numpy_helper.from_array(np.full((4, 3, 3, 3), np.nan, dtype=np.float32), "w")
    save("nan_weight", model(nodes, [nanw]), "invalid value", "non-finite")
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example")]
    save("custom_domain", model(nodes, []), "unsupported", "domain 'com.example'")
    with open(os.path.join(HERE, "cases.txt"), "w") as f:
        f.write("# malformed or unsupported ONNX files; written by make_bad.py\n")
        for name, status, message in CASES:
            f.write(f"case {name}\nfile {name}.onnx\nstatus {status}\nmessage {message}\nend\n")


if __name__ == "__main__":
    main()
