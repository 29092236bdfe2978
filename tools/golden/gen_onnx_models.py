#!/usr/bin/python3
"""Golden data for cquant's ONNX import: small PyTorch 1.13 models exported with torch.onnx.export.

Writes tests/data/golden/onnx_models/cases.txt, one NAME.onnx per model and the .npy inputs and
PyTorch outputs it references. Read by tests/test_onnx_import.c, which loads each model with
cq_onnx_load, runs it on every recorded input and requires
max |cquant - torch| <= 1e-4 * max(1, max |torch|).

Every model is exported in eval mode with a dynamic batch axis ("N": the first axis of input and
output, the second for the sequence-first GRU) and recorded at two batch sizes.

The QDQ case (qdq_cnn) is built with onnx.helper in the form cq_onnx_save writes (quantized
activations as QuantizeLinear -> DequantizeLinear, int8 weights through DequantizeLinear, float
bias): its reference output is ONNX's QDQ semantics evaluated in NumPy (float ops between
quantize / dequantize steps), which the quantized modules match within `tolerance` (one output step)
(their integer arithmetic rounds once where the float emulation rounds twice).

Keys:
  model FILE        the .onnx file
  tolerance X       absolute tolerance instead of the relative 1e-4 (QDQ case)
  module NAME TYPE  the child NAME must print as TYPE (QDQ case)
  opset N           the opset it was exported with
  input FILE        an input (.npy, float32); one per batch size
  output FILE       PyTorch's output for the input of the same index
  child NAME        a child the imported graph must have (the PyTorch module name)

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_onnx_models.py [OUT_DIR]
"""
import io
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

SEED = 20240701
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "onnx_models")


class CNN(nn.Module):
    """The Fashion-MNIST CNN shape (examples/train_fashion_mnist.c), smaller."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(8 * 7 * 7, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = x.view(x.size(0), -1)
        return self.fc2(self.relu(self.fc1(x)))


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 16, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


class GRUBi(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(5, 6, bidirectional=True)

    def forward(self, x):
        out, h = self.gru(x)
        return out


class GemmT(nn.Module):
    """x @ W + b: Gemm with transB=0 (alpha, beta 1)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 4))
        self.b = nn.Parameter(torch.randn(4))

    def forward(self, x):
        return torch.addmm(self.b, x, self.w, beta=0.5, alpha=2.0)


class ConvT(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        return self.up(x)


class Clips(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, dilation=1)
        self.relu6 = nn.ReLU6()
        self.hardtanh = nn.Hardtanh(-0.5, 0.25)

    def forward(self, x):
        return self.hardtanh(self.relu6(self.conv(x) * 4.0))


class Acts(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.hs = nn.Hardswish()
        self.hsig = nn.Hardsigmoid()
        self.lrelu = nn.LeakyReLU(0.1)

    def forward(self, x):
        y = self.fc(x)
        return torch.sigmoid(self.hs(y)) + torch.tanh(self.lrelu(y)) * self.hsig(y)


class SoftmaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 7)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        return self.softmax(self.fc(x))


class ShapeOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x):  # x [N, 3, 4]
        y = self.fc(x)                  # MatMul + Add
        y = y.transpose(1, 2)           # [N, 6, 3]
        y = y.unsqueeze(1)              # [N, 1, 6, 3]
        y = torch.relu(y).squeeze(1)    # [N, 6, 3]
        return y.permute(0, 2, 1)


class ConcatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv1(x)))
        return torch.relu(self.conv2(y) + x)


class MulNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 6)

    def forward(self, x):
        return self.fc1(x) * self.fc2(x) - 0.5


class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.flatten(self.gap(self.avg(torch.relu(self.conv(x))))))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 5, 3, padding=2, dilation=2, groups=1)
        self.bn = nn.BatchNorm1d(5)
        self.conv2 = nn.Conv1d(5, 5, 3, groups=5)

    def forward(self, x):
        return self.conv2(torch.relu(self.bn(self.conv(x))))


class Arith(nn.Module):
    """Sub and Div of two computed tensors, and an Add that broadcasts ([N, 6] + [N, 1])."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 6)
        self.fc3 = nn.Linear(6, 1)

    def forward(self, x):
        a, b = self.fc1(x), self.fc2(x)
        return (a - b) / (b * b + 1.0) + self.fc3(x)


def randomize_bn(m):
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)


# name, module class, input shape without the batch, opset, batch axis, expected children
MODELS = [
    ("cnn", CNN, (1, 28, 28), 13, 0, ["conv1", "conv2", "fc1", "fc2"]),
    ("cnn_opset11", CNN, (1, 28, 28), 11, 0, ["conv1", "fc1"]),
    ("cnn_opset17", CNN, (1, 28, 28), 17, 0, ["conv1", "fc1"]),
    ("lstm", LSTMClassifier, (28, 28), 13, 0, ["lstm", "fc"]),
    ("gru_bidirectional", GRUBi, (7, 5), 13, 1, ["gru"]),
    ("gemm_transb0", GemmT, (6,), 13, 0, []),
    ("conv_transpose", ConvT, (3, 5, 5), 13, 0, ["up"]),
    ("clip", Clips, (2, 9, 9), 13, 0, ["conv"]),
    ("clip_opset11", Clips, (2, 9, 9), 11, 0, ["conv"]),
    ("activations", Acts, (8,), 13, 0, ["fc"]),
    ("softmax", SoftmaxNet, (5,), 13, 0, ["fc"]),
    ("softmax_opset11", SoftmaxNet, (5,), 11, 0, ["fc"]),
    ("shape_ops", ShapeOps, (3, 4), 13, 0, ["fc"]),
    ("shape_ops_opset11", ShapeOps, (3, 4), 11, 0, ["fc"]),
    ("concat", ConcatNet, (3, 6, 6), 13, 0, ["a", "b"]),
    ("residual", Residual, (4, 6, 6), 13, 0, ["conv1", "conv2"]),
    ("mul", MulNet, (6,), 13, 0, ["fc1", "fc2"]),
    ("pools", Pools, (2, 10, 10), 13, 0, ["conv", "fc"]),
    ("conv1d", Conv1dNet, (3, 12), 13, 0, ["conv", "conv2"]),
    ("arith", Arith, (6,), 13, 0, ["fc1", "fc2", "fc3"]),
]

BATCHES = (2, 5)


def fmt_header():
    return [
        "# ONNX models exported by torch.onnx.export, their inputs and PyTorch's outputs",
        f"# torch {torch.__version__}, numpy {np.__version__}, seed {SEED}",
        "# generator: tools/golden/gen_onnx_models.py",
    ]


def qdq_case(out_dir, lines):
    """Q(x) -> DQ -> Conv(DQ(w int8 per channel)) -> Relu -> Q -> DQ -> MaxPool -> Q -> DQ
    -> Flatten -> Q -> DQ -> Gemm(DQ(w int8 per tensor), transB=1) -> Q -> DQ -> output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(SEED)
    f32 = np.float32
    w1 = rng.integers(-127, 128, size=(4, 2, 3, 3)).astype(np.int8)
    s1 = (rng.uniform(0.002, 0.01, size=4)).astype(f32)
    b1 = rng.uniform(-0.2, 0.2, size=4).astype(f32)
    w2 = rng.integers(-127, 128, size=(3, 4 * 3 * 3)).astype(np.int8)
    s2 = f32(0.004)
    b2 = rng.uniform(-0.2, 0.2, size=3).astype(f32)
    acts = {"x": (f32(0.02), 128), "c": (f32(0.015), 0), "p": (f32(0.015), 0),
            "f": (f32(0.015), 0), "y": (f32(0.03), 120)}
    inits = [numpy_helper.from_array(w1, "conv1.weight_quantized"),
             numpy_helper.from_array(s1, "conv1.weight_scale"),
             numpy_helper.from_array(np.zeros(4, np.int8), "conv1.weight_zero_point"),
             numpy_helper.from_array(b1, "conv1.bias"),
             numpy_helper.from_array(w2, "fc.weight_quantized"),
             numpy_helper.from_array(np.array(s2, f32), "fc.weight_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "fc.weight_zero_point"),
             numpy_helper.from_array(b2, "fc.bias")]
    for k, (sc, zp) in acts.items():
        inits.append(numpy_helper.from_array(np.array(sc, f32), k + "_scale"))
        inits.append(numpy_helper.from_array(np.array(zp, np.uint8), k + "_zero_point"))
    N = helper.make_node
    qdq = lambda v, src: [N("QuantizeLinear", [src, v + "_scale", v + "_zero_point"], [v + "_q"],
                            name=v + "_quant"),
                          N("DequantizeLinear", [v + "_q", v + "_scale", v + "_zero_point"],
                            [v + "_dq"], name=v + "_dequant")]
    nodes = qdq("x", "input") + [
        N("DequantizeLinear", ["conv1.weight_quantized", "conv1.weight_scale",
                               "conv1.weight_zero_point"], ["w1"], name="w1_dq", axis=0),
        N("Conv", ["x_dq", "w1", "conv1.bias"], ["conv"], name="conv1", pads=[1, 1, 1, 1]),
        N("Relu", ["conv"], ["relu"], name="relu1")] + qdq("c", "relu") + [
        N("MaxPool", ["c_dq"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2])] + \
        qdq("p", "pool") + [N("Flatten", ["p_dq"], ["flat"], name="flatten", axis=1)] + \
        qdq("f", "flat") + [
        N("DequantizeLinear", ["fc.weight_quantized", "fc.weight_scale", "fc.weight_zero_point"],
          ["w2"], name="w2_dq"),
        N("Gemm", ["f_dq", "w2", "fc.bias"], ["fc"], name="fc", transB=1)] + qdq("y", "fc") + [
        N("Identity", ["y_dq"], ["output"], name="out")]
    g = helper.make_graph(nodes, "QDQNet",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 2, 6, 6])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    helper.set_model_props(m, {"cquant.engine": "x86"})
    onnx.checker.check_model(m)
    with open(os.path.join(out_dir, "qdq_cnn.onnx"), "wb") as fh:
        fh.write(m.SerializeToString())

    def q(v, k):
        sc, zp = acts[k]
        return ((np.clip(np.rint(v / sc) + zp, 0, 255) - zp) * sc).astype(f32)

    def ref(x):
        x = q(x, "x")
        wf = (w1.astype(f32) * s1[:, None, None, None]).astype(f32)
        t = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(wf),
                                       torch.from_numpy(b1), padding=1).numpy()
        t = q(np.maximum(t, 0), "c")
        t = torch.nn.functional.max_pool2d(torch.from_numpy(t), 2).numpy()
        t = q(q(t, "p").reshape(t.shape[0], -1), "f")
        t = t @ (w2.astype(f32) * s2).T + b2
        return q(t.astype(f32), "y")

    lines += ["case qdq_cnn", "model qdq_cnn.onnx", "opset 13", "tolerance 0.0301",
              "module conv1 QuantizedConvReLU2d", "module fc QuantizedLinear",
              "module x_quant Quantize", "module pool MaxPool2d", "module flatten Flatten"]
    for b in BATCHES:
        x = rng.uniform(-2.0, 2.0, size=(b, 2, 6, 6)).astype(f32)
        np.save(os.path.join(out_dir, f"qdq_cnn_in{b}.npy"), x)
        np.save(os.path.join(out_dir, f"qdq_cnn_out{b}.npy"), ref(x))
        lines += [f"input qdq_cnn_in{b}.npy", f"output qdq_cnn_out{b}.npy"]
    lines.append("end")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        if name.endswith(".npy") or name.endswith(".onnx") or name == "cases.txt":
            os.remove(os.path.join(out_dir, name))
    lines = fmt_header()
    for idx, (name, cls, shape, opset, batch_axis, children) in enumerate(MODELS):
        torch.manual_seed(SEED + idx)
        model = cls()
        randomize_bn(model)
        model.eval()
        example = torch.randn(*((2,) + shape)) if batch_axis == 0 else \
            torch.randn(*((shape[0], 2) + shape[1:]))
        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, f, opset_version=opset, input_names=["input"],
                              output_names=["output"],
                              dynamic_axes={"input": {batch_axis: "N"},
                                            "output": {batch_axis: "N"}})
        with open(os.path.join(out_dir, name + ".onnx"), "wb") as fh:
            fh.write(f.getvalue())
        lines.append(f"case {name}")
        lines.append(f"model {name}.onnx")
        lines.append(f"opset {opset}")
        for b in BATCHES:
            full = (b,) + shape if batch_axis == 0 else (shape[0], b) + shape[1:]
            x = torch.randn(*full)
            with torch.no_grad():
                y = model(x)
            np.save(os.path.join(out_dir, f"{name}_in{b}.npy"), x.numpy().astype(np.float32))
            np.save(os.path.join(out_dir, f"{name}_out{b}.npy"), y.numpy().astype(np.float32))
            lines.append(f"input {name}_in{b}.npy")
            lines.append(f"output {name}_out{b}.npy")
        for c in children:
            lines.append(f"child {c}")
        lines.append("end")
    qdq_case(out_dir, lines)
    with open(os.path.join(out_dir, "cases.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
