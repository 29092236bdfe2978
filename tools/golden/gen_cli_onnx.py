#!/usr/bin/env python3
"""Writes the ONNX models and data of the ONNX command tests (tests/cli_onnx.sh) into
tests/data/cli_onnx/. Needs PyTorch 1.13 and the onnx package; run from the repository root:

    /usr/bin/python3 tools/golden/gen_cli_onnx.py [OUT_DIR]

Models (torch.onnx.export, opset 13, fixed seeds):
  mlp.onnx   Linear(16, 32) -> ReLU -> Linear(32, 4); mlp_x.npy [64, 16], mlp_out.npy the float
             outputs on it, mlp_labels.npy int64 labels that the float model gets right on exactly
             48 of 64 rows (every 4th label is moved off the argmax), mlp_labels_u8.npy the same
             as uint8.
  cnn.onnx   conv1 -> ReLU -> conv2 -> ReLU -> conv3 -> ReLU -> Flatten -> fc, with one bad layer:
             conv2's output channel 0 is scaled down 100x and conv3's weights reading it scaled up
             100x (the float function is unchanged, ReLU being positively homogeneous). conv3's
             weight range is then set by those 100x weights, so int8 weights (per channel along the
             output channels, or per tensor) lose the other input channels: conv3's own
             quantization error dominates, and `cquant compare` must list it first.
             cnn_x.npy [64, 3, 8, 8] calibration rows, cnn_in.npy [8, 3, 8, 8], cnn_out.npy the
             float outputs on cnn_in.
Malformed inputs: truncated.onnx (cnn.onnx cut in half), garbage.onnx, unknown_op.onnx (an op
cquant has no converter for), missing_init.onnx (a Gemm whose weight is not defined),
shape_mismatch.onnx (a Gemm weight that does not fit its input), two_outputs.onnx (relu and sigmoid
of a [N, 16] input; two_outputs_x.npy 4 rows and
two_outputs_1.npy their sigmoid), cnn_x_nan.npy (NaN in row 40,
calibration batch 1), cnn_x_4ch.npy (4 input channels), mlp_labels_float.npy, mlp_labels_short.npy.
"""
import os
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "data", "cli_onnx")


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.relu = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = torch.nn.ReLU()
        self.conv3 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.relu3 = torch.nn.ReLU()
        self.flatten = torch.nn.Flatten()
        self.fc = torch.nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.conv3(x))
        return self.fc(self.flatten(x))


def export(model, x, path):
    model.eval()
    torch.onnx.export(model, x, path, opset_version=13, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})


def save(name, arr):
    np.save(os.path.join(OUT, name), arr)


def small_model(nodes, inits, in_dim, out_dim, name):
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", in_dim])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", out_dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, os.path.join(OUT, name))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".npy") or f.endswith(".onnx"):
            os.remove(os.path.join(OUT, f))
    torch.manual_seed(0)
    rng = np.random.default_rng(1)

    mlp = MLP().eval()
    x = rng.normal(0, 1, (64, 16)).astype(np.float32)
    export(mlp, torch.from_numpy(x[:2]), os.path.join(OUT, "mlp.onnx"))
    with torch.no_grad():
        y = mlp(torch.from_numpy(x)).numpy()
    top = np.argsort(y, axis=1)
    margin = y[np.arange(64), top[:, -1]] - y[np.arange(64), top[:, -2]]
    assert margin.min() > 1e-4, "a near tie would make the expected accuracy fragile"
    labels = top[:, -1].astype(np.int64)
    labels[::4] = (labels[::4] + 1) % 4
    save("mlp_x.npy", x)
    save("mlp_out.npy", y)
    save("mlp_labels.npy", labels)
    save("mlp_labels_u8.npy", labels.astype(np.uint8))
    save("mlp_labels_float.npy", labels.astype(np.float32))
    save("mlp_labels_short.npy", labels[:60])

    cnn = CNN().eval()
    with torch.no_grad():
        cnn.conv2.weight[0] /= 100.0
        cnn.conv2.bias[0] /= 100.0
        cnn.conv3.weight[:, 0] *= 100.0
    xc = rng.uniform(-1, 1, (64, 3, 8, 8)).astype(np.float32)
    xin = rng.uniform(-1, 1, (8, 3, 8, 8)).astype(np.float32)
    export(cnn, torch.from_numpy(xc[:2]), os.path.join(OUT, "cnn.onnx"))
    with torch.no_grad():
        yin = cnn(torch.from_numpy(xin)).numpy()
    save("cnn_x.npy", xc)
    save("cnn_in.npy", xin)
    save("cnn_out.npy", yin)
    nan = xc.copy()
    nan[40, 1, 2, 3] = np.nan
    save("cnn_x_nan.npy", nan)
    save("cnn_x_4ch.npy", rng.uniform(-1, 1, (4, 4, 8, 8)).astype(np.float32))

    good = open(os.path.join(OUT, "cnn.onnx"), "rb").read()
    with open(os.path.join(OUT, "truncated.onnx"), "wb") as f:
        f.write(good[:len(good) // 2])
    with open(os.path.join(OUT, "garbage.onnx"), "wb") as f:
        f.write(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())

    w = helper.make_tensor("fc.weight", TensorProto.FLOAT, [4, 16],
                           rng.normal(0, 1, 64).astype(np.float32).tolist())
    small_model([helper.make_node("Det", ["input"], ["output"], name="det_node")], [], 16, 4,
                "unknown_op.onnx")
    small_model([helper.make_node("Gemm", ["input", "fc.weight"], ["output"], name="fc_gemm",
                                  transB=1)], [], 16, 4, "missing_init.onnx")
    w5 = helper.make_tensor("fc.weight", TensorProto.FLOAT, [4, 5],
                            rng.normal(0, 1, 20).astype(np.float32).tolist())
    small_model([helper.make_node("Gemm", ["input", "fc.weight"], ["output"], name="fc_gemm",
                                  transB=1)], [w5], 16, 4, "shape_mismatch.onnx")
    del w
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["pos"], name="/relu/Relu"),
         helper.make_node("Sigmoid", ["input"], ["prob"], name="/sigmoid/Sigmoid")],
        "main_graph", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("pos", TensorProto.FLOAT, ["N", 16]),
         helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 16])])
    two = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    two.ir_version = 8
    onnx.save(two, os.path.join(OUT, "two_outputs.onnx"))
    save("two_outputs_x.npy", x[:4])
    save("two_outputs_1.npy", torch.sigmoid(torch.from_numpy(x[:4])).numpy())
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("# tools/golden/gen_cli_onnx.py: torch %s, numpy %s, onnx %s, seeds torch 0 / "
                "numpy 1, opset 13\n" % (torch.__version__, np.__version__, onnx.__version__))
        f.write("mlp_float_correct 48 of 64\n")


if __name__ == "__main__":
    main()
