#!/usr/bin/python3
"""Golden data for cquant's static quantized modules and the float modules that run on quantized
tensors, produced by PyTorch 1.13 under its two runnable quantized engines (qnnpack and onednn).

Writes tests/data/golden/qmodules/cases.txt and the .npy files it references; read by
tests/test_qmodules.c. Every case is run once per engine (torch.backends.quantized.engine is set
before the module is built and run, as convert and the forward see it), its name starts with the
engine: qnnpack/linear/..., onednn/linear/...

Weighted modules are built the way convert builds them: a float module (nn.Linear, nn.Conv1d,
nn.Conv2d, or the fused nni.LinearReLU / ConvReLU1d / ConvReLU2d) gets a qconfig, an activation
observer calibrated on the float output, and from_float() of the quantized class runs a fresh weight
observer on the weight, quantizes it and packs it. The case records everything the C side needs to
call cq_qmodule_linear / cq_qmodule_conv with the same numbers: the float weight and bias, the
weight observer's qparams (scale, zero point, quant_min/quant_max), the output qparams; then the
quantized input (integers and qparams), the expected weight integers, the output integers and
str(module).

  linear/*       per-tensor symmetric / affine (qnnpack only: onednn rejects weight zero points) /
                 per-channel symmetric / -127..127 clamped weights; bias on/off; 2-D and 3-D
                 inputs; fused ReLU; "ties" cases with power-of-two scales and integer-valued
                 weights, where the engines' rounding rules disagree most often
  conv1d/* conv2d/*  stride, padding, dilation, groups (grouped, depthwise, depthwise multiplier),
                 1x1, rectangular kernels, bias on/off, fused ReLU, unbatched input, per-tensor
                 and per-channel weights
  quantize/* dequantize/*  nnq.Quantize (quint8, qint8) and nnq.DeQuantize
  functional/*   nnq.QFunctional add / add_relu / mul / cat (dims 0, 1, -1, channels-last inputs)
  passthrough/*  float modules on quantized tensors: ReLU, ReLU6, Hardtanh, MaxPool2d, AvgPool2d,
                 AdaptiveAvgPool2d, Flatten, Dropout (eval), Identity, Sigmoid, Tanh, torch.cat;
                 quint8 and qint8, NCHW-contiguous and channels-last inputs (the memory format
                 decides between ATen's kernels); plus nnq.ReLU6 and nnq.Dropout

Keys (one per line, "KEY VALUE"; files are .npy names relative to this folder; floats are the repr
of the float32 value):
  op              linear | conv | quantize | dequantize | functional | relu | relu6 | hardtanh |
                  maxpool2d | avgpool2d | adaptive_avgpool2d | flatten | dropout | identity |
                  sigmoid | tanh | cat | qrelu6 | qdropout
  engine          qnnpack | onednn
  relu            0/1 (linear, conv: the fused ReLU variants)
  in_features out_features                          (linear)
  dims in_channels out_channels kernel_size stride padding dilation groups   (conv; 1 or 2 ints)
  weight FILE     float32 weight; bias FILE float32 bias (absent: bias=False)
  w_qscheme       per_tensor_affine | per_tensor_symmetric | per_channel_affine |
                  per_channel_symmetric (the weight observer's qscheme)
  w_scale / w_zero_point   the weight observer's calculate_qparams() (one per channel)
  w_quant_min / w_quant_max  the weight observer's range
  weight_int FILE int8 weight as from_float quantized it (clamped to the observer's range)
  layout          nchw | nhwc: the memory format of 4-D quantized inputs (values are stored in
                  logical NCHW order either way)
  x_dtype         quint8 | qint8 (quantized inputs)
  x_scale / x_zero_point   one value per input
  input FILE      per input: integers (quantized) or float32 (quantize)
  y_dtype y_scale y_zero_point   output qparams
  output FILE     integers (or float32 for dequantize)
  fn              add | add_relu | mul | cat   (functional); cat_dim
  scale zero_point dtype       (quantize)
  min_val max_val              (hardtanh)
  kernel_size stride padding dilation ceil_mode count_include_pad divisor_override  (pools;
                  divisor_override 0 = None)
  output_size                  (adaptive_avgpool2d)
  start_dim end_dim            (flatten)
  p                            (dropout, qdropout)
  dim                          (cat)
  note TEXT       where PyTorch's own output was not recorded, and why (a PyTorch bug)
  repr TEXT       str(module), newlines written as \\n
  op model        a whole converted CNN: layers N, then every layer's keys prefixed "lK." (K =
                  its index), input (float), output (quantized integers before DeQuantize),
                  output_float (the model's output), repr (str(model))

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_qmodules.py [OUT_DIR]
"""
import os
import sys
import zlib

import numpy as np
import torch
import torch.ao.nn.quantized as nnq
import torch.nn as nn
import torch.nn.intrinsic as nni
import torch.nn.intrinsic.quantized as nniq
from torch.ao.quantization import (QConfig, MinMaxObserver, PerChannelMinMaxObserver)

SEED = 20240620
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "qmodules")
ENGINES = ("qnnpack", "onednn")


class CaseWriter:
    """Collects cases and writes cases.txt plus .npy files into one folder."""

    def __init__(self, out_dir, title):
        self.out_dir = os.path.abspath(out_dir)
        self.title = title
        self.cases = []
        self.names = set()
        self.files = {}
        os.makedirs(self.out_dir, exist_ok=True)
        for name in os.listdir(self.out_dir):
            if name.endswith(".npy") or name == "cases.txt":
                os.remove(os.path.join(self.out_dir, name))

    def npy(self, stem, array):
        name = stem.replace("/", "_") + ".npy"
        assert name not in self.files, name
        array = np.array(array, order="C")
        np.save(os.path.join(self.out_dir, name), array, allow_pickle=False)
        self.files[name] = array.nbytes
        return name

    def case(self, name, entries):
        assert name not in self.names, name
        assert " " not in name, name
        self.names.add(name)
        self.cases.append((name, entries))

    def write(self, header_lines):
        path = os.path.join(self.out_dir, "cases.txt")
        with open(path, "w") as f:
            f.write("# %s\n" % self.title)
            f.write("# generated by tools/golden/%s with torch %s, numpy %s (seed %d)\n"
                    % (os.path.basename(sys.argv[0]), torch.__version__, np.__version__, SEED))
            for line in header_lines:
                f.write("# %s\n" % line)
            for name, entries in self.cases:
                f.write("case %s\n" % name)
                for key, value in entries:
                    assert "\n" not in str(value), (name, key)
                    f.write("%s %s\n" % (key, value))
                f.write("end\n")
        total = os.path.getsize(path) + sum(
            os.path.getsize(os.path.join(self.out_dir, n)) for n in self.files)
        print("%s: %d cases, %d .npy files, %d bytes" % (path, len(self.cases), len(self.files),
                                                         total))
        return total


def fmt_f32(v):
    return repr(float(np.float32(v)))


def fmt_floats(values):
    return " ".join(fmt_f32(v) for v in np.asarray(values, dtype=np.float32).reshape(-1))


def fmt_ints(values):
    return " ".join(str(int(v)) for v in np.asarray(values).reshape(-1))


def escape_repr(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


DTYPE_NAMES = {torch.quint8: "quint8", torch.qint8: "qint8"}
QSCHEME_NAMES = {
    torch.per_tensor_affine: "per_tensor_affine",
    torch.per_tensor_symmetric: "per_tensor_symmetric",
    torch.per_channel_affine: "per_channel_affine",
    torch.per_channel_symmetric: "per_channel_symmetric",
}


def int_repr(q):
    """The integers of a quantized tensor in logical (NCHW) order."""
    r = q.int_repr().contiguous().numpy()
    return r.astype(np.uint8 if q.dtype == torch.quint8 else np.int8)


def layout_of(q):
    if q.dim() == 4 and q.is_contiguous(memory_format=torch.channels_last) and \
            not q.is_contiguous():
        return "nhwc"
    return "nchw"


def quantized_input_entries(w, stem, qs, with_layout=True):
    entries = [("x_dtype", DTYPE_NAMES[qs[0].dtype]),
               ("x_scale", fmt_floats([q.q_scale() for q in qs])),
               ("x_zero_point", fmt_ints([q.q_zero_point() for q in qs]))]
    if with_layout and qs[0].dim() == 4:
        entries.append(("layout", layout_of(qs[0])))
    for i, q in enumerate(qs):
        entries.append(("input", w.npy("%s_x%d" % (stem, i), int_repr(q))))
    return entries


def output_entries(w, stem, y):
    return [("y_dtype", DTYPE_NAMES[y.dtype]), ("y_scale", fmt_f32(y.q_scale())),
            ("y_zero_point", str(y.q_zero_point())),
            ("output", w.npy("%s_y" % stem, int_repr(y)))]


def rand_q(shape, scale, zp, dtype=torch.quint8, channels_last=False, lo=None, hi=None):
    """A quantized tensor with uniformly random integers in [lo, hi] (default: the dtype range)."""
    if dtype == torch.quint8:
        lo = 0 if lo is None else lo
        hi = 255 if hi is None else hi
        ints = torch.randint(lo, hi + 1, shape, dtype=torch.int32).to(torch.uint8)
    else:
        lo = -128 if lo is None else lo
        hi = 127 if hi is None else hi
        ints = torch.randint(lo, hi + 1, shape, dtype=torch.int32).to(torch.int8)
    q = torch._make_per_tensor_quantized_tensor(ints, scale, zp)
    if channels_last:
        q = q.contiguous(memory_format=torch.channels_last)
    return q


# --- weighted modules ---------------------------------------------------------------------------

WEIGHT_OBSERVERS = {
    "pt_sym": MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
    "pt_aff": MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_affine),
    "pc_sym": PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                 qscheme=torch.per_channel_symmetric),
    "pc_aff": PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                 qscheme=torch.per_channel_affine),
    "pt_127": MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric,
                                       quant_min=-127, quant_max=127),
    "pc_127": PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                 qscheme=torch.per_channel_symmetric,
                                                 quant_min=-127, quant_max=127),
}


def weight_entries(w, stem, float_mod, qmod, wkind):
    """The float weight/bias, the weight observer's qparams and the packed integers."""
    obs = WEIGHT_OBSERVERS[wkind]()
    obs(float_mod.weight.detach())
    scale, zp = obs.calculate_qparams()
    entries = [("weight", w.npy(stem + "_w", float_mod.weight.detach().numpy().astype(np.float32)))]
    if float_mod.bias is not None:
        entries.append(("bias", w.npy(stem + "_b", float_mod.bias.detach().numpy())))
    entries += [("w_qscheme", QSCHEME_NAMES[obs.qscheme]),
                ("w_scale", fmt_floats(scale.reshape(-1).numpy())),
                ("w_zero_point", fmt_ints(zp.reshape(-1).numpy())),
                ("w_quant_min", str(obs.quant_min)), ("w_quant_max", str(obs.quant_max))]
    qw = qmod.weight()
    entries.append(("weight_int", w.npy(stem + "_wq", int_repr(qw))))
    # the module must have used exactly these qparams
    if qw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        assert np.array_equal(qw.q_per_channel_scales().float().numpy(), scale.numpy())
        assert np.array_equal(qw.q_per_channel_zero_points().numpy(), zp.numpy())
    else:
        assert qw.q_scale() == float(scale) and qw.q_zero_point() == int(zp)
    return entries


def act_observer(engine):
    # x86's default activation observer uses reduce_range ([0, 127]); qnnpack's does not
    return MinMaxObserver.with_args(dtype=torch.quint8, reduce_range=(engine != "qnnpack"))


def set_qconfig(float_mod, engine, wkind):
    qconfig = QConfig(activation=act_observer(engine), weight=WEIGHT_OBSERVERS[wkind])
    for m in float_mod.modules():  # as propagate_qconfig_ does
        m.qconfig = qconfig


def build_quantized(float_mod, qclass, wkind, engine, calib_out):
    set_qconfig(float_mod, engine, wkind)
    float_mod.activation_post_process = float_mod.qconfig.activation()
    float_mod.activation_post_process(calib_out)
    return qclass.from_float(float_mod)


def quantize_input(x, engine):
    obs = act_observer(engine)()
    obs(x)
    s, z = obs.calculate_qparams()
    return torch.quantize_per_tensor(x, float(s), int(z), torch.quint8)


def ties_weights(mod, gen):
    """Integer-valued weights and biases scaled by powers of two: many exact ties downstream."""
    with torch.no_grad():
        mod.weight.copy_(torch.randint(-8, 9, mod.weight.shape, generator=gen).float() / 8.0)
        if mod.bias is not None:
            mod.bias.copy_(torch.randint(-16, 17, mod.bias.shape, generator=gen).float() / 4.0)


def linear_case(w, engine, name, in_f, out_f, x_shape, bias, wkind, relu=False, ties=False):
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    lin = nn.Linear(in_f, out_f, bias=bias)
    if ties:
        ties_weights(lin, gen)
        x = torch.randint(-40, 41, x_shape, generator=gen).float() / 16.0
        xq = torch.quantize_per_tensor(x, 1.0 / 16.0, 64, torch.quint8)
    else:
        x = torch.randn(x_shape)
        xq = quantize_input(x, engine)
    xf = xq.dequantize()
    if relu:
        float_mod = nni.LinearReLU(lin, nn.ReLU())
        qclass = nniq.LinearReLU
        calib = torch.relu(lin(xf))
    else:
        float_mod = lin
        qclass = nnq.Linear
        calib = lin(xf)
    if ties:
        # a power-of-two output scale
        set_qconfig(float_mod, engine, wkind)
        qmod = qclass.from_float(_with_fixed_act(float_mod, 0.125, 100 if not relu else 0))
    else:
        qmod = build_quantized(float_mod, qclass, wkind, engine, calib.detach())
    y = qmod(xq)
    stem = "%s_linear_%s" % (engine, name)
    entries = [("op", "linear"), ("engine", engine), ("relu", 1 if relu else 0),
               ("in_features", in_f), ("out_features", out_f)]
    entries += weight_entries(w, stem, lin, qmod, wkind)
    entries += quantized_input_entries(w, stem, [xq])
    entries += output_entries(w, stem, y)
    entries.append(("repr", escape_repr(str(qmod))))
    w.case("%s/linear/%s" % (engine, name), entries)


class _FixedObserver(torch.nn.Module):
    """An activation observer stand-in with given qparams (for the power-of-two ties cases)."""

    def __init__(self, scale, zp):
        super().__init__()
        self.scale, self.zp = scale, zp
        self.dtype = torch.quint8

    def forward(self, x):
        return x

    def calculate_qparams(self):
        return torch.tensor([self.scale]), torch.tensor([self.zp])


def _with_fixed_act(mod, scale, zp):
    mod.activation_post_process = _FixedObserver(scale, zp)
    return mod


def gen_linear(w, engine):
    pt = "pt_sym"
    cases = [
        ("pt_sym_10x4", 10, 4, (5, 10), True, pt, False, False),
        ("pt_sym_nobias", 12, 7, (3, 12), False, pt, False, False),
        ("pc_sym_37x19_3d", 37, 19, (2, 3, 37), True, "pc_sym", False, False),
        ("pc_sym_64x33", 64, 33, (9, 64), True, "pc_sym", False, False),
        ("pt_127", 20, 16, (4, 20), True, "pt_127", False, False),
        ("pc_127", 20, 16, (4, 20), True, "pc_127", False, False),
        ("relu_pt_sym", 16, 10, (6, 16), True, pt, True, False),
        ("relu_pc_sym", 16, 10, (6, 16), True, "pc_sym", True, False),
        ("ties_pt", 24, 20, (16, 24), True, pt, False, True),
        ("ties_pc", 24, 20, (16, 24), True, "pc_sym", False, True),
        ("ties_relu_pc", 24, 20, (16, 24), True, "pc_sym", True, True),
        ("single_row", 130, 5, (1, 130), True, "pc_sym", False, False),
        ("big_pt_sym", 128, 64, (32, 128), True, pt, False, False),
        ("big_pc_sym", 256, 96, (24, 256), True, "pc_sym", False, False),
        ("big_relu_pc", 200, 80, (20, 200), True, "pc_sym", True, False),
    ]
    if engine == "qnnpack":  # onednn refuses weight zero points
        cases += [("pt_aff", 18, 6, (4, 18), True, "pt_aff", False, False),
                  ("pc_aff", 18, 6, (4, 18), True, "pc_aff", False, False),
                  ("relu_pc_aff", 18, 6, (4, 18), False, "pc_aff", True, False)]
    for name, in_f, out_f, shape, bias, wkind, relu, ties in cases:
        linear_case(w, engine, name, in_f, out_f, shape, bias, wkind, relu, ties)


def as_list(v, dims):
    return list(v) if isinstance(v, (tuple, list)) else [v] * dims


def conv_case(w, engine, name, dims, cin, cout, k, x_shape, stride=1, padding=0, dilation=1,
              groups=1, bias=True, wkind="pt_sym", relu=False, ties=False):
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    conv_cls = nn.Conv1d if dims == 1 else nn.Conv2d
    conv = conv_cls(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    bias=bias)
    if ties:
        ties_weights(conv, gen)
        x = torch.randint(-40, 41, x_shape, generator=gen).float() / 16.0
        xq = torch.quantize_per_tensor(x, 1.0 / 16.0, 64, torch.quint8)
    else:
        x = torch.randn(x_shape)
        xq = quantize_input(x, engine)
    xf = xq.dequantize()
    if relu:
        float_mod = (nni.ConvReLU1d if dims == 1 else nni.ConvReLU2d)(conv, nn.ReLU())
        qclass = nniq.ConvReLU1d if dims == 1 else nniq.ConvReLU2d
        calib = torch.relu(conv(xf))
    else:
        float_mod = conv
        qclass = nnq.Conv1d if dims == 1 else nnq.Conv2d
        calib = conv(xf)
    if ties:
        set_qconfig(float_mod, engine, wkind)
        qmod = qclass.from_float(_with_fixed_act(float_mod, 0.25, 90 if not relu else 0))
    else:
        qmod = build_quantized(float_mod, qclass, wkind, engine, calib.detach())
    y = qmod(xq)
    stem = "%s_conv%dd_%s" % (engine, dims, name)
    entries = [("op", "conv"), ("engine", engine), ("relu", 1 if relu else 0), ("dims", dims),
               ("in_channels", cin), ("out_channels", cout),
               ("kernel_size", fmt_ints(as_list(k, dims))), ("stride", fmt_ints(as_list(stride, dims))),
               ("padding", fmt_ints(as_list(padding, dims))),
               ("dilation", fmt_ints(as_list(dilation, dims))), ("groups", groups)]
    entries += weight_entries(w, stem, conv, qmod, wkind)
    entries += quantized_input_entries(w, stem, [xq], with_layout=False)
    entries += output_entries(w, stem, y)
    entries.append(("repr", escape_repr(str(qmod))))
    w.case("%s/conv%dd/%s" % (engine, dims, name), entries)


def gen_conv(w, engine):
    c2 = [
        # name, cin, cout, k, x_shape, kwargs
        ("basic_3x3", 3, 8, 3, (2, 3, 9, 8), {}),
        ("pc_3x3", 3, 8, 3, (2, 3, 9, 8), {"wkind": "pc_sym"}),
        ("rect_stride_pad_dil", 4, 6, (3, 5), (1, 4, 11, 13),
         {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "wkind": "pc_sym"}),
        ("groups2", 4, 6, 3, (2, 4, 7, 7), {"groups": 2, "padding": 1}),
        ("groups2_pc", 6, 4, 3, (1, 6, 8, 6), {"groups": 2, "stride": 2, "wkind": "pc_sym"}),
        ("depthwise", 8, 8, 3, (2, 8, 6, 7), {"groups": 8, "padding": 1}),
        ("depthwise_pc", 8, 8, 3, (1, 8, 9, 9), {"groups": 8, "padding": 1, "stride": 2,
                                                "wkind": "pc_sym"}),
        ("depthwise_mult2", 4, 8, (3, 2), (1, 4, 6, 7), {"groups": 4, "wkind": "pc_sym"}),
        ("pointwise", 16, 24, 1, (2, 16, 5, 4), {"wkind": "pc_sym"}),
        ("nobias", 3, 5, 3, (1, 3, 6, 6), {"bias": False}),
        ("nobias_pc_pad", 3, 5, 2, (1, 3, 6, 5), {"bias": False, "padding": 1, "wkind": "pc_sym"}),
        ("pad_gt_kernel", 2, 3, 2, (1, 2, 4, 4), {"padding": 3}),
        ("relu", 3, 8, 3, (2, 3, 8, 8), {"relu": True}),
        ("relu_pc_groups", 4, 8, 3, (2, 4, 8, 8), {"relu": True, "groups": 2, "wkind": "pc_sym",
                                                   "padding": 1}),
        ("pc_127", 5, 7, 3, (1, 5, 7, 7), {"wkind": "pc_127"}),
        ("ties_pt", 4, 6, 3, (2, 4, 6, 6), {"ties": True}),
        ("ties_pc", 4, 6, 3, (2, 4, 6, 6), {"ties": True, "wkind": "pc_sym"}),
        ("ties_depthwise", 6, 6, 3, (2, 6, 6, 6), {"ties": True, "groups": 6, "padding": 1}),
        ("ties_relu", 4, 6, 3, (2, 4, 6, 6), {"ties": True, "relu": True, "wkind": "pc_sym"}),
        ("wide", 32, 40, 3, (1, 32, 6, 6), {"wkind": "pc_sym", "padding": 1}),
        ("big_pc", 16, 32, 3, (2, 16, 12, 12), {"wkind": "pc_sym", "padding": 1}),
        ("big_pt_s2", 8, 16, 5, (2, 8, 14, 14), {"stride": 2, "padding": 2}),
        ("big_depthwise_relu", 24, 24, 3, (2, 24, 10, 10), {"groups": 24, "padding": 1,
                                                            "relu": True, "wkind": "pc_sym"}),
    ]
    if engine == "qnnpack":
        c2 += [("affine_w", 3, 5, 3, (1, 3, 6, 6), {"wkind": "pt_aff"}),
               ("affine_pc_groups", 4, 6, 3, (1, 4, 6, 6), {"wkind": "pc_aff", "groups": 2})]
    for name, cin, cout, k, shape, kw in c2:
        conv_case(w, engine, name, 2, cin, cout, k, shape, **kw)
    c1 = [
        ("basic", 3, 5, 3, (2, 3, 12), {}),
        ("options", 4, 6, 3, (2, 4, 17), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2,
                                          "wkind": "pc_sym"}),
        ("depthwise", 5, 5, 4, (1, 5, 10), {"groups": 5, "padding": 2}),
        ("nobias", 3, 4, 2, (1, 3, 9), {"bias": False, "wkind": "pc_sym"}),
        ("relu", 3, 6, 3, (2, 3, 10), {"relu": True, "wkind": "pc_sym"}),
        ("ties", 4, 6, 3, (2, 4, 10), {"ties": True, "wkind": "pc_sym"}),
    ]
    for name, cin, cout, k, shape, kw in c1:
        conv_case(w, engine, name, 1, cin, cout, k, shape, **kw)


# --- Quantize / DeQuantize ----------------------------------------------------------------------

def gen_quant_dequant(w, engine):
    for name, shape, scale, zp, dtype in [("quint8", (3, 4, 5), 0.026, 131, torch.quint8),
                                          ("qint8", (2, 7), 0.011, -3, torch.qint8),
                                          ("quint8_4d", (2, 3, 4, 4), 0.5, 0, torch.quint8)]:
        m = nnq.Quantize(scale, zp, dtype)
        x = torch.randn(shape) * 2.0
        # exact ties of the quantization grid and saturation
        flat = x.view(-1)
        flat[:6] = torch.tensor([0.5, 1.5, -2.5, 1e6, -1e6, 0.0]) * float(m.scale)
        y = m(x)
        stem = "%s_quantize_%s" % (engine, name)
        w.case("%s/quantize/%s" % (engine, name), [
            ("op", "quantize"), ("engine", engine), ("dtype", DTYPE_NAMES[dtype]),
            ("scale", fmt_f32(m.scale)), ("zero_point", str(int(m.zero_point))),
            ("input", w.npy(stem + "_x", x.numpy()))] + output_entries(w, stem, y) +
            [("repr", escape_repr(str(m)))])
        d = nnq.DeQuantize()
        out = d(y)
        stem = "%s_dequantize_%s" % (engine, name)
        w.case("%s/dequantize/%s" % (engine, name), [
            ("op", "dequantize"), ("engine", engine)] + quantized_input_entries(w, stem, [y]) +
            [("output", w.npy(stem + "_y", out.numpy())), ("repr", escape_repr(str(d)))])


# --- QFunctional --------------------------------------------------------------------------------

def gen_functional(w, engine):
    cases = [
        # name, fn, shapes, input qparams, output qparams, channels_last, cat_dim
        ("add_2d", "add", [(7, 33), (7, 33)], [(0.05, 120), (0.03, 80)], (0.07, 110), False, 0),
        ("add_4d", "add", [(2, 5, 6, 7)] * 2, [(0.1, 128), (0.1, 128)], (0.2, 128), False, 0),
        ("add_4d_cl", "add", [(2, 12, 5, 6)] * 2, [(0.02, 0), (0.07, 200)], (0.09, 60), True, 0),
        ("add_ties", "add", [(4, 100)] * 2, [(0.25, 100), (0.5, 3)], (1.0, 64), False, 0),
        ("add_long", "add", [(1, 3000)] * 2, [(0.013, 77), (0.021, 140)], (0.031, 101), False, 0),
        ("add_relu", "add_relu", [(6, 40)] * 2, [(0.05, 128), (0.04, 90)], (0.06, 20), False, 0),
        ("add_relu_ties", "add_relu", [(8, 64)] * 2, [(0.5, 128), (0.25, 30)], (0.5, 60), False,
         0),
        ("mul", "mul", [(5, 40)] * 2, [(0.05, 128), (0.04, 90)], (0.1, 100), False, 0),
        ("mul_4d", "mul", [(2, 3, 4, 5)] * 2, [(0.1, 10), (0.2, 250)], (0.5, 128), False, 0),
        ("cat_dim0", "cat", [(2, 5), (3, 5)], [(0.05, 100), (0.1, 30)], (0.1, 60), False, 0),
        ("cat_dim1_4d", "cat", [(2, 3, 4, 4), (2, 5, 4, 4)], [(0.05, 100), (0.02, 30)],
         (0.06, 90), False, 1),
        ("cat_dim1_4d_cl", "cat", [(2, 40, 3, 3), (2, 13, 3, 3)], [(0.05, 100), (0.02, 30)],
         (0.06, 90), True, 1),
        ("cat_dim1_cl_same", "cat", [(1, 8, 3, 3), (1, 8, 3, 3)], [(0.06, 90), (0.06, 90)],
         (0.06, 90), True, 1),
        ("cat_last", "cat", [(2, 3, 4), (2, 3, 2), (2, 3, 1)], [(0.05, 100), (0.1, 30), (0.2, 0)],
         (0.15, 50), False, -1),
        ("cat_same_qparams", "cat", [(3, 4), (3, 4)], [(0.05, 100), (0.05, 100)], (0.05, 100),
         False, 0),
    ]
    s8 = [
        ("add_s8", "add", [(5, 77)] * 2, [(0.05, -3), (0.03, 10)], (0.07, 5), False, 0),
        ("add_relu_s8", "add_relu", [(5, 77)] * 2, [(0.05, -3), (0.03, 10)], (0.07, 5), False, 0),
        ("mul_s8", "mul", [(5, 77)] * 2, [(0.05, -3), (0.03, 10)], (0.07, 5), False, 0),
        ("cat_s8", "cat", [(2, 3, 4), (2, 5, 4)], [(0.05, -3), (0.03, 10)], (0.07, 5), False, 1),
    ]
    for name, fn, shapes, in_qp, (ys, yz), cl, dim in cases + s8:
        dt = torch.qint8 if name.endswith("_s8") else torch.quint8
        qs = [rand_q(s, sc, z, dt, channels_last=cl and len(s) == 4)
              for s, (sc, z) in zip(shapes, in_qp)]
        f = nnq.QFunctional()
        f.scale = float(np.float32(ys))
        f.zero_point = yz
        if fn == "add":
            y = f.add(qs[0], qs[1])
        elif fn == "add_relu":
            y = f.add_relu(qs[0], qs[1])
        elif fn == "mul":
            y = f.mul(qs[0], qs[1])
        else:
            y = f.cat(qs, dim=dim)
        stem = "%s_functional_%s" % (engine, name)
        entries = [("op", "functional"), ("engine", engine), ("fn", fn), ("cat_dim", dim)]
        entries += quantized_input_entries(w, stem, qs)
        entries += output_entries(w, stem, y)
        entries.append(("repr", escape_repr(str(f))))
        w.case("%s/functional/%s" % (engine, name), entries)


# --- float modules on quantized tensors ---------------------------------------------------------

QNNPACK_CLAMP_NOTE = ("torch 1.13 bug: under qnnpack, clamp/hardtanh/relu6 of a channels-last "
                      "quint8 tensor returns its NHWC-ordered integers as an NCHW tensor; the "
                      "output recorded is the op on the same values in NCHW order")


def passthrough_case(w, engine, name, op, module, qs, extra, fwd=None):
    extra = list(extra)
    if (engine == "qnnpack" and op in ("relu6", "qrelu6", "hardtanh") and
            layout_of(qs[0]) == "nhwc" and qs[0].dtype == torch.quint8):
        scrambled = module(qs[0])
        y = module(qs[0].contiguous())
        # the bug, exactly: y's NHWC-ordered values laid out as NCHW
        nhwc_order = y.int_repr().permute(0, 2, 3, 1).contiguous().reshape(-1)
        assert torch.equal(scrambled.int_repr().reshape(-1), nhwc_order)
        extra.append(("note", QNNPACK_CLAMP_NOTE))
    else:
        y = fwd(*qs) if fwd is not None else module(qs[0])
    stem = "%s_pass_%s" % (engine, name)
    entries = [("op", op), ("engine", engine)] + extra
    entries += quantized_input_entries(w, stem, qs)
    entries += output_entries(w, stem, y)
    if module is not None:
        entries.append(("repr", escape_repr(str(module))))
    w.case("%s/passthrough/%s" % (engine, name), entries)


def pool_entries(k, s, p, d, ceil, cip=True, div=None):
    return [("kernel_size", fmt_ints(as_list(k, 2))), ("stride", fmt_ints(as_list(s, 2))),
            ("padding", fmt_ints(as_list(p, 2))), ("dilation", fmt_ints(as_list(d, 2))),
            ("ceil_mode", 1 if ceil else 0), ("count_include_pad", 1 if cip else 0),
            ("divisor_override", div or 0)]


def gen_passthrough(w, engine):
    u8, s8 = torch.quint8, torch.qint8
    # elementwise
    for name, dt, shape, sc, zp, cl in [("u8", u8, (3, 50), 0.05, 100, False),
                                        ("s8", s8, (2, 3, 5, 7), 0.02, -20, False),
                                        ("u8_cl", u8, (2, 9, 4, 3), 0.1, 255, True),
                                        ("u8_zp0", u8, (4, 33), 0.03, 0, False)]:
        q = rand_q(shape, sc, zp, dt, cl)
        passthrough_case(w, engine, "relu_" + name, "relu", nn.ReLU(), [q], [])
        passthrough_case(w, engine, "relu6_" + name, "relu6", nn.ReLU6(), [q], [])
        passthrough_case(w, engine, "qrelu6_" + name, "qrelu6", nnq.ReLU6(), [q], [])
        ht = nn.Hardtanh(-0.5, 1.25)
        passthrough_case(w, engine, "hardtanh_" + name, "hardtanh", ht, [q],
                         [("min_val", fmt_f32(-0.5)), ("max_val", fmt_f32(1.25))])
        passthrough_case(w, engine, "sigmoid_" + name, "sigmoid", nn.Sigmoid(), [q], [])
        passthrough_case(w, engine, "tanh_" + name, "tanh", nn.Tanh(), [q], [])
        passthrough_case(w, engine, "identity_" + name, "identity", nn.Identity(), [q], [])
        drop = nn.Dropout(0.3).eval()
        passthrough_case(w, engine, "dropout_" + name, "dropout", drop, [q], [("p", fmt_f32(0.3))])
        qdrop = nnq.Dropout(0.3)
        passthrough_case(w, engine, "qdropout_" + name, "qdropout", qdrop, [q],
                         [("p", fmt_f32(0.3))])
    # relu6 whose upper bound saturates, hardtanh bounds exactly on the grid / ties
    q = rand_q((4, 40), 0.03, 60)
    passthrough_case(w, engine, "relu6_saturating", "relu6", nn.ReLU6(), [q], [])
    q = rand_q((4, 40), 0.5, 128)
    ht = nn.Hardtanh(-1.25, 0.75)
    passthrough_case(w, engine, "hardtanh_ties", "hardtanh", ht, [q],
                     [("min_val", fmt_f32(-1.25)), ("max_val", fmt_f32(0.75))])
    # long inputs: vector body and scalar tail of ATen's kernels
    for name, dt, n in [("u8_long", u8, 1000), ("s8_long", s8, 777)]:
        q = rand_q((1, n), 0.031, 7 if dt == u8 else -7, dt)
        passthrough_case(w, engine, "sigmoid_" + name, "sigmoid", nn.Sigmoid(), [q], [])
        passthrough_case(w, engine, "tanh_" + name, "tanh", nn.Tanh(), [q], [])
    # flatten
    for name, shape, sd, ed, cl in [("default", (2, 3, 4, 5), 1, -1, False),
                                    ("default_cl", (2, 3, 4, 5), 1, -1, True),
                                    ("middle", (2, 3, 4, 5), 1, 2, False),
                                    ("all", (3, 4), 0, -1, False)]:
        q = rand_q(shape, 0.07, 33, channels_last=cl)
        passthrough_case(w, engine, "flatten_" + name, "flatten", nn.Flatten(sd, ed), [q],
                         [("start_dim", sd), ("end_dim", ed)])
    # max pool
    maxpools = [("k2", 2, None, 0, 1, False, (2, 5, 8, 9)),
                ("k3s2p1", 3, 2, 1, 1, False, (2, 12, 9, 8)),
                ("dil2", 3, 1, 1, 2, False, (1, 4, 9, 9)),
                ("ceil", 3, 2, 0, 1, True, (2, 3, 8, 8)),
                ("rect", (3, 2), (2, 1), (1, 0), (1, 2), True, (1, 9, 7, 8))]
    for name, k, s, p, d, ceil, shape in maxpools:
        for dt in (u8, s8):
            for cl in (False, True):
                mp = nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)
                q = rand_q(shape, 0.05, 100 if dt == u8 else 10, dt, cl)
                tag = "%s_%s%s" % (name, "u8" if dt == u8 else "s8", "_cl" if cl else "")
                passthrough_case(w, engine, "maxpool2d_" + tag, "maxpool2d", mp, [q],
                                 pool_entries(k, s if s is not None else k, p, d, ceil))
    # avg pool: qnnpack's kernel (quint8, no ceil_mode) ignores count_include_pad and
    # divisor_override; the native kernels differ between NCHW and channels-last
    avgpools = [("k2", 2, None, 0, False, True, None, (2, 5, 8, 9)),
                ("k3s2p1", 3, 2, 1, False, True, None, (2, 12, 9, 8)),
                ("k3s2p1_nopad", 3, 2, 1, False, False, None, (1, 20, 9, 8)),
                ("rect_ceil", (3, 2), (1, 2), 1, True, True, None, (2, 3, 7, 6)),
                ("ceil_nopad", 3, 3, (1, 0), True, False, None, (1, 9, 7, 8)),
                ("divisor", 2, 2, 1, False, True, 3, (2, 11, 7, 6)),
                ("k3x2", (3, 2), (3, 2), 0, False, True, None, (2, 17, 9, 6))]
    for name, k, s, p, ceil, cip, div, shape in avgpools:
        for dt in (u8, s8):
            for cl in (False, True):
                ap = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=cip,
                                  divisor_override=div)
                q = rand_q(shape, 0.05, 100 if dt == u8 else -5, dt, cl)
                tag = "%s_%s%s" % (name, "u8" if dt == u8 else "s8", "_cl" if cl else "")
                passthrough_case(w, engine, "avgpool2d_" + tag, "avgpool2d", ap, [q],
                                 pool_entries(k, s if s is not None else k, p, 1, ceil, cip, div))
    # adaptive avg pool: qnnpack handles divisible sizes, the native kernels the rest
    adaptives = [("1x1", (1, 1), (2, 12, 7, 5)), ("div", (4, 4), (1, 20, 8, 8)),
                 ("div_3x2", (3, 3), (2, 12, 9, 6)), ("nondiv", (3, 4), (2, 9, 7, 6)),
                 ("same", (4, 5), (1, 3, 4, 5)), ("larger", (5, 3), (1, 10, 3, 2))]
    for name, out, shape in adaptives:
        for dt in (u8, s8):
            for cl in (False, True):
                ap = nn.AdaptiveAvgPool2d(out)
                q = rand_q(shape, 0.04, 91 if dt == u8 else 3, dt, cl)
                tag = "%s_%s%s" % (name, "u8" if dt == u8 else "s8", "_cl" if cl else "")
                passthrough_case(w, engine, "adaptive_avgpool2d_" + tag, "adaptive_avgpool2d",
                                 ap, [q], [("output_size", fmt_ints(out))])
    # torch.cat on quantized tensors (FloatFunctional.cat after convert leaves it unconverted):
    # the first input's qparams
    for name, shapes, qps, dim, cl in [
            ("dim0", [(2, 5), (3, 5)], [(0.05, 100), (0.1, 30)], 0, False),
            ("dim1_cl", [(1, 17, 3, 2), (1, 9, 3, 2)], [(0.04, 7), (0.09, 130)], 1, True),
            ("dim1_nchw", [(1, 17, 3, 2), (1, 9, 3, 2)], [(0.04, 7), (0.09, 130)], 1, False),
            ("last", [(2, 3), (2, 4), (2, 1)], [(0.2, 10), (0.2, 10), (0.3, 200)], -1, False)]:
        qs = [rand_q(s, sc, z, channels_last=cl) for s, (sc, z) in zip(shapes, qps)]
        passthrough_case(w, engine, "cat_" + name, "cat", None, qs, [("dim", dim)],
                         fwd=lambda *a, d=dim: torch.cat(list(a), dim=d))


# --- a whole converted model -----------------------------------------------------------------------

def gen_model(w, engine):
    """A small CNN quantized by PyTorch's own eager flow (fuse, prepare, calibrate, convert), each
    converted layer recorded with the keys above under the prefix "lN." (N = its index in the
    Sequential), the float input, the model's float output and the quantized integers before
    DeQuantize. The C side rebuilds the same Sequential from cq_qmodule_* and the float modules."""
    from torch.ao.quantization import (DeQuantStub, QuantStub, convert, fuse_modules,
                                       get_default_qconfig, prepare)
    qconfig_name = "qnnpack" if engine == "qnnpack" else "x86"
    wkind = "pt_sym" if engine == "qnnpack" else "pc_sym"
    float_model = nn.Sequential(
        QuantStub(), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, groups=2), nn.ReLU(), nn.AvgPool2d(2, stride=1),
        nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(32, 5), nn.Sigmoid(),
        DeQuantStub()).eval()
    float_model = fuse_modules(float_model, [["1", "2"]])
    float_model.qconfig = get_default_qconfig(qconfig_name)
    prepared = prepare(float_model)
    for _ in range(4):
        prepared(torch.randn(4, 3, 12, 12))
    floats = {name: mod for name, mod in prepared.named_children()}
    model = convert(prepared)
    x = torch.randn(4, 3, 12, 12) * 1.2
    stem = "%s_model_cnn" % engine
    entries = [("op", "model"), ("engine", engine), ("qconfig", qconfig_name),
               ("input", w.npy(stem + "_x", x.numpy()))]
    for index, (name, mod) in enumerate(model.named_children()):
        pre = "l%d." % index
        lstem = "%s_l%d" % (stem, index)
        kind = type(mod).__name__
        layer = []
        if isinstance(mod, nnq.Quantize):
            layer = [("op", "quantize"), ("scale", fmt_f32(mod.scale)),
                     ("zero_point", str(int(mod.zero_point))), ("dtype", "quint8")]
        elif isinstance(mod, nnq.DeQuantize):
            layer = [("op", "dequantize")]
        elif isinstance(mod, (nnq.Conv2d, nniq.ConvReLU2d)):
            conv = floats[name][0] if isinstance(mod, nniq.ConvReLU2d) else floats[name]
            layer = [("op", "conv"), ("relu", 1 if isinstance(mod, nniq.ConvReLU2d) else 0),
                     ("dims", 2), ("in_channels", conv.in_channels),
                     ("out_channels", conv.out_channels),
                     ("kernel_size", fmt_ints(conv.kernel_size)), ("stride", fmt_ints(conv.stride)),
                     ("padding", fmt_ints(conv.padding)), ("dilation", fmt_ints(conv.dilation)),
                     ("groups", conv.groups), ("y_scale", fmt_f32(mod.scale)),
                     ("y_zero_point", str(mod.zero_point))]
            layer += weight_entries(w, lstem, conv, mod, wkind)
        elif isinstance(mod, nnq.Linear):
            lin = floats[name]
            layer = [("op", "linear"), ("relu", 0), ("in_features", lin.in_features),
                     ("out_features", lin.out_features), ("y_scale", fmt_f32(mod.scale)),
                     ("y_zero_point", str(mod.zero_point))]
            layer += weight_entries(w, lstem, lin, mod, wkind)
        elif isinstance(mod, nn.Identity):
            layer = [("op", "identity")]
        elif isinstance(mod, nn.ReLU):
            layer = [("op", "relu")]
        elif isinstance(mod, nn.Sigmoid):
            layer = [("op", "sigmoid")]
        elif isinstance(mod, nn.Flatten):
            layer = [("op", "flatten"), ("start_dim", mod.start_dim), ("end_dim", mod.end_dim)]
        elif isinstance(mod, nn.MaxPool2d):
            layer = [("op", "maxpool2d")] + pool_entries(mod.kernel_size, mod.stride, mod.padding,
                                                         mod.dilation, mod.ceil_mode)
        elif isinstance(mod, nn.AvgPool2d):
            layer = [("op", "avgpool2d")] + pool_entries(mod.kernel_size, mod.stride, mod.padding,
                                                         1, mod.ceil_mode, mod.count_include_pad,
                                                         mod.divisor_override)
        elif isinstance(mod, nn.AdaptiveAvgPool2d):
            layer = [("op", "adaptive_avgpool2d"), ("output_size", fmt_ints(mod.output_size))]
        else:
            raise AssertionError("unexpected layer %s" % kind)
        entries += [(pre + k, v) for k, v in layer]
    # the integers before DeQuantize, and the float output
    body = nn.Sequential(*list(model.children())[:-1])
    yq = body(x)
    entries += [("layers", len(list(model.children()))), ("y_dtype", "quint8"),
                ("y_scale", fmt_f32(yq.q_scale())), ("y_zero_point", str(yq.q_zero_point())),
                ("output", w.npy(stem + "_yq", int_repr(yq))),
                ("output_float", w.npy(stem + "_y", model(x).numpy())),
                ("repr", escape_repr(str(model)))]
    w.case("%s/model/cnn" % engine, entries)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    w = CaseWriter(out_dir, "static quantized modules and float modules on quantized tensors")
    for engine in ENGINES:
        torch.backends.quantized.engine = engine
        torch.manual_seed(SEED)
        gen_linear(w, engine)
        gen_conv(w, engine)
        gen_quant_dequant(w, engine)
        gen_functional(w, engine)
        gen_passthrough(w, engine)
        gen_model(w, engine)
    total = w.write(["engines: %s (each case name starts with its engine)" % ", ".join(ENGINES),
                     "format: see the docstring of tools/golden/gen_qmodules.py"])
    assert total < 3 * 1024 * 1024, total


if __name__ == "__main__":
    main()
