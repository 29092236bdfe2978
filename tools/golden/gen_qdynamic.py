#!/usr/bin/python3
"""Golden data for cquant's post-training dynamic quantization, from PyTorch 1.13.

Writes tests/data/golden/qdynamic/cases.txt and the .npy files it references. Every module is
quantized by torch.ao.quantization.quantize_dynamic under the quantized engine named in the case
(`qnnpack` or `onednn`, the two this build has) and run under that same engine.

Case kinds (general format: tools/golden/README.md). To keep the data small, every case stores its
arrays in one float32 file: `blob FILE` names it and each `array NAME D0 D1 ...` line (in blob order)
gives the next array's name and shape (a 0-dimensional shape is not used). Integer arrays (quantized
weights) are stored as their exact float32 values.

`linear/ENGINE/NAME` -- nnqd.Linear (relu 0) or nniqd.LinearReLU (relu 1) from a float nn.Linear:
  engine, in_features, out_features, bias (0/1), relu (0/1)
  wscheme      per_tensor (default_dynamic_qconfig), per_channel (per_channel_dynamic_qconfig) or
               per_tensor_affine (MinMaxObserver qint8 per_tensor_affine weights; qnnpack only)
  wscale, wzp  the packed weight's scale(s) and zero point(s) (one per output channel for
               per_channel)
  ncalls       number of forward calls
  arrays: weight [out, in]; bias_values [out] (when bias); qweight [out, in] (the int8 weight
          PyTorch packed, int_repr); then per call k: inputK (any shape [..., in]) and outputK
          (PyTorch's float32 output [..., out])
  repr         str(module)

`lstm/ENGINE/NAME`, `gru/ENGINE/NAME` -- nnqd.LSTM / nnqd.GRU from a float nn.LSTM / nn.GRU:
  engine, mode (LSTM/GRU), wscheme (per_tensor/per_channel), input_size, hidden_size,
  num_layers, batch_first, bidirectional (0/1)
  states       1 when h0 (and c0 for LSTM) are passed
  arrays: every parameter of the float module by its state_dict name and shape (weight_ih_l0,
          ...), in state_dict order; then for every weight matrix in that order qNAME (its int8
          quantized values) and sNAME (its scales: one per tensor, or one per row per channel);
          then input, h0 and c0 (with states), output, h_n and c_n (LSTM)
  repr         str(module)

`model/NAME` -- str() of a model before and after quantize_dynamic:
  model NAME   which model (built in tests/test_qdynamic.c by name; `fused` is fuse_modules(
               Sequential(Linear, ReLU, Linear), ["0", "1"]))
  spec TYPES   the qconfig_spec set (class names), or `default` (qconfig_spec=None)
  attr PATH PRESET  (optional, repeats) a qconfig attribute set on a submodule beforehand
  before, after  str(model) before and after (newlines escaped)

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_qdynamic.py [OUT_DIR]
"""
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.ao.nn.intrinsic as nni
from torch.ao.quantization import (QConfig, MinMaxObserver, PlaceholderObserver,
                                   default_dynamic_qconfig, per_channel_dynamic_qconfig,
                                   quantize_dynamic)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_quant_math import SEED, CaseWriter, fmt_f32, fmt_floats, fmt_ints  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "qdynamic")
ENGINES = ("qnnpack", "onednn")

AFFINE_WEIGHT_QCONFIG = QConfig(
    activation=PlaceholderObserver.with_args(dtype=torch.quint8),
    weight=MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_affine))
QCONFIGS = {
    "per_tensor": default_dynamic_qconfig,
    "per_channel": per_channel_dynamic_qconfig,
    "per_tensor_affine": AFFINE_WEIGHT_QCONFIG,
}


def escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def f32(t):
    return t.detach().numpy().astype(np.float32)


def make_input(kind, shape):
    if kind == "randn":
        return torch.randn(*shape)
    if kind == "relu":
        return torch.randn(*shape).abs()
    if kind == "neg":
        return -torch.randn(*shape).abs() - 0.25
    if kind == "zeros":
        return torch.zeros(*shape)
    if kind == "const":
        return torch.full(shape, 0.7)
    if kind == "tiny":
        return torch.randn(*shape) * 1e-6
    if kind == "wide":
        return torch.randn(*shape) * 1000.0
    if kind == "offset":
        return torch.randn(*shape) * 0.5 + 3.0
    raise ValueError(kind)


# (name, in, out, bias, relu, [(input shape, kind), ...]); every case for per_tensor and
# per_channel weights, on both engines.
LINEAR_CASES = [
    ("seed_16x10", 16, 10, True, False, [((4, 16), "randn"), ((2, 16), "relu")]),
    ("basic_8x5", 8, 5, True, False, [((3, 8), "randn")]),
    ("batch3d", 7, 5, True, False, [((2, 3, 7), "randn"), ((1, 4, 7), "offset")]),
    ("batch4d", 6, 4, True, False, [((2, 2, 3, 6), "randn")]),
    ("wide_64x33", 64, 33, True, False, [((17, 64), "randn")]),
    ("k100", 100, 20, True, False, [((5, 100), "randn")]),
    ("k300", 300, 16, True, False, [((9, 300), "randn")]),
    ("single", 1, 1, True, False, [((1, 1), "randn"), ((3, 1), "randn")]),
    ("no_bias", 12, 6, False, False, [((4, 12), "randn")]),
    ("zeros_input", 8, 5, True, False, [((3, 8), "zeros")]),
    ("const_input", 8, 5, True, False, [((3, 8), "const")]),
    ("positive_input", 8, 5, True, False, [((6, 8), "relu")]),
    ("negative_input", 8, 5, True, False, [((6, 8), "neg")]),
    ("tiny_range", 8, 5, True, False, [((4, 8), "tiny")]),
    ("wide_range", 8, 5, True, False, [((4, 8), "wide")]),
    ("offset_input", 10, 7, True, False, [((5, 10), "offset")]),
    ("empty_batch", 8, 5, True, False, [((0, 8), "randn"), ((2, 8), "randn")]),
    ("relu_8x5", 8, 5, True, True, [((3, 8), "randn"), ((2, 8), "offset")]),
    ("relu_64x33", 64, 33, True, True, [((17, 64), "randn")]),
    ("relu_no_bias", 12, 6, False, True, [((2, 3, 12), "randn")]),
]

# qnnpack only: weights with a nonzero zero point (oneDNN's prepack refuses them).
AFFINE_CASES = [
    ("affine_8x5", 8, 5, True, False, [((3, 8), "randn")]),
    ("affine_relu_40x9", 40, 9, True, True, [((6, 40), "randn")]),
]


class Blob:
    """The arrays of one case, concatenated into one float32 .npy file."""

    def __init__(self):
        self.parts = []
        self.entries = []

    def add(self, name, array):
        a = np.asarray(array)
        flat = a.astype(np.float32).reshape(-1)
        assert np.array_equal(flat.astype(a.dtype).reshape(a.shape), a), name  # exact in float32
        assert a.ndim >= 1, name
        self.parts.append(flat)
        self.entries.append(("array", "%s %s" % (name, " ".join(str(d) for d in a.shape))))

    def write(self, w, stem):
        data = np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)
        return [("blob", w.npy(stem, data))] + self.entries


def linear_weights(fin, fout, bias):
    lin = nn.Linear(fin, fout, bias=bias)
    with torch.no_grad():
        # rows of different magnitudes, so per-channel scales differ from the per-tensor one
        lin.weight.mul_(torch.rand(fout, 1) * 2.5 + 0.1)
        if bias:
            lin.bias.mul_(3.0)
    return lin


def gen_linear(w, engine, wscheme, spec):
    (name, fin, fout, bias, relu, calls) = spec
    torch.backends.quantized.engine = engine
    lin = linear_weights(fin, fout, bias)
    blob = Blob()
    blob.add("weight", f32(lin.weight))
    if bias:
        blob.add("bias_values", f32(lin.bias))
    mod = nni.LinearReLU(lin, nn.ReLU()) if relu else lin
    model = nn.Sequential(mod)
    model.eval()
    q = quantize_dynamic(model, {type(mod): QCONFIGS[wscheme]}, dtype=torch.qint8, inplace=False)
    qmod = q[0]
    qw, _ = qmod._weight_bias()
    blob.add("qweight", qw.int_repr().numpy())
    e = [("engine", engine), ("in_features", fin), ("out_features", fout), ("bias", int(bias)),
         ("relu", int(relu)), ("wscheme", wscheme)]
    if qw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        e.append(("wscale", fmt_floats(qw.q_per_channel_scales().numpy())))
        e.append(("wzp", fmt_ints(qw.q_per_channel_zero_points().numpy())))
    else:
        e.append(("wscale", fmt_f32(qw.q_scale())))
        e.append(("wzp", str(qw.q_zero_point())))
    e.append(("ncalls", len(calls)))
    with torch.no_grad():
        for i, (shape, kind) in enumerate(calls):
            x = make_input(kind, shape)
            y = qmod(x)
            assert y.dtype == torch.float32 and tuple(y.shape) == tuple(shape[:-1]) + (fout,)
            blob.add("input%d" % i, f32(x))
            blob.add("output%d" % i, f32(y))
    e.append(("repr", escape(str(qmod))))
    cname = "linear/%s/%s/%s" % (engine, wscheme, name)
    w.case(cname, e + blob.write(w, cname.replace("/", "_")))


# (name, I, H, L, bidirectional, batch_first, T, B, states, per_channel_too)
RNN_CASES = [
    ("basic", 5, 6, 1, False, False, 4, 3, False, True),
    ("seed", 10, 10, 1, False, False, 5, 2, False, False),
    ("states", 4, 5, 1, False, False, 4, 3, True, False),
    ("two_layers", 3, 4, 2, False, False, 5, 3, True, True),
    ("bidirectional", 3, 4, 1, True, False, 5, 2, False, False),
    ("bidir_two_layers_batch_first", 4, 3, 2, True, True, 4, 3, True, True),
    ("three_layers_bidir", 2, 5, 3, True, False, 6, 2, True, False),
    ("batch_first", 3, 4, 1, False, True, 5, 3, True, False),
    ("seq1_batch1", 3, 4, 1, False, False, 1, 1, False, False),
    ("long", 4, 6, 1, False, False, 20, 2, True, False),
    ("hidden32", 16, 32, 1, False, False, 6, 4, False, True),
]


def gen_rnn(w, engine, mode, wscheme, spec):
    (name, I, H, L, bidir, bf, T, B, states, _) = spec
    torch.backends.quantized.engine = engine
    cls = nn.LSTM if mode == "LSTM" else nn.GRU
    m = cls(I, H, num_layers=L, batch_first=bf, bidirectional=bidir)
    model = nn.Sequential(m)
    model.eval()
    q = quantize_dynamic(model, {cls: QCONFIGS[wscheme]}, dtype=torch.qint8, inplace=False)
    qm = q[0]
    D = 2 if bidir else 1
    x = torch.randn(*((B, T, I) if bf else (T, B, I)))
    h0 = c0 = cn = None
    with torch.no_grad():
        if states:
            h0 = 0.5 * torch.randn(L * D, B, H)
            if mode == "LSTM":
                c0 = 0.5 * torch.randn(L * D, B, H)
                out, (hn, cn) = qm(x, (h0, c0))
            else:
                out, hn = qm(x, h0)
        else:
            if mode == "LSTM":
                out, (hn, cn) = qm(x)
            else:
                out, hn = qm(x)
    e = [("engine", engine), ("mode", mode), ("wscheme", wscheme), ("input_size", I),
         ("hidden_size", H), ("num_layers", L), ("batch_first", int(bf)),
         ("bidirectional", int(bidir)), ("states", int(states))]
    blob = Blob()
    sd = m.state_dict()
    names = list(sd.keys())
    for n in names:
        blob.add(n, f32(sd[n]))
    qweights = qm.get_weight()
    for n in names:
        if not n.startswith("weight_"):
            continue
        qw = qweights[n]
        blob.add("q" + n, qw.int_repr().numpy())
        if qw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            blob.add("s" + n, qw.q_per_channel_scales().numpy().astype(np.float32))
        else:
            blob.add("s" + n, np.array([qw.q_scale()], dtype=np.float32))
    blob.add("input", f32(x))
    if states:
        blob.add("h0", f32(h0))
        if c0 is not None:
            blob.add("c0", f32(c0))
    blob.add("output", f32(out))
    blob.add("h_n", f32(hn))
    if cn is not None:
        blob.add("c_n", f32(cn))
    e.append(("repr", escape(str(qm))))
    cname = "%s/%s/%s/%s" % (mode.lower(), engine, wscheme, name)
    w.case(cname, e + blob.write(w, cname.replace("/", "_")))


# ---- whole models printed before and after ------------------------------------------------------

def build_model(name):
    if name in ("seed", "seed_default", "seed_linear_only", "seed_lstm_only"):
        return nn.Sequential(nn.Conv2d(2, 64, (8,)), nn.ReLU(), nn.Linear(16, 10), nn.LSTM(10, 10))
    if name == "nested":
        return nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()),
                             nn.GRU(8, 6, num_layers=2, batch_first=True, bidirectional=True),
                             nn.Linear(12, 3))
    if name == "rnn_options":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nn.Sequential(
                nn.LSTM(10, 20, num_layers=2, batch_first=True, bidirectional=True),
                nn.GRU(10, 20, num_layers=3, dropout=0.25),
                nn.LSTM(7, 3, dropout=0.1),
                nn.GRU(5, 2, num_layers=2, dropout=1e-05, bidirectional=True))
    if name == "per_channel_attr":
        return nn.Sequential(nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 4), nn.LSTM(4, 4))
    if name == "root_linear":
        return nn.Linear(3, 2)
    if name == "fused":
        m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        m.eval()
        return torch.ao.quantization.fuse_modules(m, ["0", "1"])
    raise ValueError(name)


# (case name, model, spec: None or a set of classes, attrs {path: preset name})
MODEL_CASES = [
    ("seed", "seed", {nn.LSTM, nn.Linear}, {}),
    ("seed_default", "seed", None, {}),
    ("seed_linear_only", "seed", {nn.Linear}, {}),
    ("seed_lstm_only", "seed", {nn.LSTM}, {}),
    ("nested", "nested", None, {}),
    ("nested_inner_linear", "nested", {nn.Linear, nn.GRU}, {}),
    ("rnn_options", "rnn_options", None, {}),
    ("per_channel_attr", "per_channel_attr", {nn.Linear, nn.LSTM},
     {"2": "per_channel_dynamic_qconfig", "3": "per_channel_dynamic_qconfig"}),
    ("root_linear", "root_linear", {nn.Linear}, {}),
    ("fused_default", "fused", None, {}),
    ("fused_linear_relu", "fused", {nni.LinearReLU, nn.Linear}, {}),
]

PRESETS = {"per_channel_dynamic_qconfig": per_channel_dynamic_qconfig,
           "default_dynamic_qconfig": default_dynamic_qconfig}


def gen_model(w, cname, model_name, spec, attrs):
    torch.backends.quantized.engine = "qnnpack"
    m = build_model(model_name)
    m.eval()
    before = str(m)
    for path, preset in attrs.items():
        m.get_submodule(path).qconfig = PRESETS[preset]
    q = quantize_dynamic(m, spec, dtype=torch.qint8, inplace=False)
    e = [("model", model_name),
         ("spec", "default" if spec is None else " ".join(sorted(c.__name__ for c in spec)))]
    for path, preset in attrs.items():
        e.append(("attr", "%s %s" % (path, preset)))
    e.append(("before", escape(before)))
    e.append(("after", escape(str(q))))
    w.case("model/%s" % cname, e)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    w = CaseWriter(out_dir, "cquant golden data: post-training dynamic quantization "
                            "(nnqd.Linear, nniqd.LinearReLU, nnqd.LSTM, nnqd.GRU, quantize_dynamic)")
    counts = {"linear": 0, "rnn": 0, "model": 0}
    for engine in ENGINES:
        for wscheme in ("per_tensor", "per_channel"):
            for spec in LINEAR_CASES:
                gen_linear(w, engine, wscheme, spec)
                counts["linear"] += 1
        if engine == "qnnpack":
            for spec in AFFINE_CASES:
                gen_linear(w, engine, "per_tensor_affine", spec)
                counts["linear"] += 1
    for engine in ENGINES:
        for mode in ("LSTM", "GRU"):
            for spec in RNN_CASES:
                gen_rnn(w, engine, mode, "per_tensor", spec)
                counts["rnn"] += 1
                if spec[-1]:
                    gen_rnn(w, engine, mode, "per_channel", spec)
                    counts["rnn"] += 1
    for cname, model_name, spec, attrs in MODEL_CASES:
        gen_model(w, cname, model_name, spec, attrs)
        counts["model"] += 1
    w.write([
        "format: tools/golden/README.md; keys: the docstring of tools/golden/gen_qdynamic.py",
        "every linear / lstm / gru case names the engine it was quantized and run under",
        "linear cases: %d; rnn cases: %d; model cases: %d"
        % (counts["linear"], counts["rnn"], counts["model"]),
    ])


if __name__ == "__main__":
    main()
