#!/usr/bin/python3
"""Golden data for the float ops imported ONNX graphs use, and their quantized forms, produced by
PyTorch 1.13.

Writes tests/data/golden/nn_ops_extra/cases.txt and the .npy files it references; read by
tests/test_nn_ops_extra.c.

Float cases ("module" key): build the module, load the recorded state, run forward once on the
recorded input(s), back-propagate a random grad_output, compare output, input gradients and
parameter gradients:

  leaky_relu/* hardsigmoid/* hardswish/*  inputs on the kinks (0, -3, 3) and beyond them
  mul/*          FloatFunctional.mul: same shape and numpy broadcasting (leading dims, size-1 dims,
                 0-d operands)
  binary_const/* torch.add / sub / mul / div of the input and a constant tensor, both orders,
                 broadcast constants (what ONNX Add / Sub / Mul / Div with an initializer are)
  matmul/*       torch.matmul: 1-D x 1-D, 1-D x 2-D, 2-D x 1-D, 2-D x 2-D, batched with broadcast
                 batch dims, N-D x 1-D
  reshape/* permute/* squeeze/* unsqueeze/*  ONNX semantics computed here (0 = copy the input's
                 dimension, one -1 inferred, negative axes), run with torch.reshape / permute /
                 squeeze / unsqueeze
  conv_transpose2d/*  nn.ConvTranspose2d with stride, padding, output_padding, dilation, groups,
                 bias / no bias, unbatched input

Quantized cases ("qop" key), once per engine (qnnpack, and onednn: Debian's PyTorch has no fbgemm;
onednn runs ATen's native kernels for these ops, as x86/fbgemm do); 4-D inputs are channels-last,
as the output of a quantized conv is:

  leaky_relu            torch.nn.functional.leaky_relu on a quantized tensor (input qparams)
  qleaky_relu           nnq.LeakyReLU(scale, zero_point, negative_slope)
  qhardswish            nnq.Hardswish(scale, zero_point)
  hardsigmoid           torch.nn.functional.hardsigmoid on a quantized tensor
  qmul                  nnq.QFunctional.mul (same shape and broadcast)
  reshape permute squeeze unsqueeze   the quantized tensor's integers and qparams after the op

Convert cases ("convert" key): eager-mode Sequential(QuantStub, LeakyReLU, Hardswish, Hardsigmoid,
DeQuantStub) with get_default_qconfig(qconfig) after prepare, calibration and convert: str(model)
and the float output on an input.

Keys (one per line, "KEY VALUE"; files are .npy names relative to this folder):
  module KIND ARGS...  LeakyReLU SLOPE | Hardsigmoid | Hardswish | Mul | BinaryConst OP FIRST |
                       MatMul | Reshape S... | Permute D... | Squeeze A... | Unsqueeze A... |
                       ConvTranspose2d CIN COUT KH KW SH SW PH PW OPH OPW DH DW GROUPS BIAS
  constant FILE        BinaryConst's constant (float32)
  exact 1              outputs and gradients must match bit for bit
  set KEY FILE         parameter loaded before running
  input / output / grad_output / grad_input FILE   as in nn_layers
  grad KEY FILE        parameter gradient
  repr TEXT            str(module) (PyTorch classes only), newlines written as \\n
  qop OP               quantized case; engine qnnpack | onednn; x_dtype quint8 | qint8;
  x_scale x_zero_point input FILE (integers)   one quantized input per "input" line (qmul: two)
  slope                leaky_relu / qleaky_relu negative slope
  args INTS...         reshape shape / permute dims / (un)squeeze axes
  y_scale y_zero_point output FILE (integers) ; y_dtype
  convert ARCH         convert case: qconfig BACKEND, calib FILE (repeated), input FILE,
                       output FILE (float32), repr_converted TEXT

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_nn_ops_extra.py [OUT_DIR]
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.ao.nn.quantized as nnq
import torch.ao.quantization as tq
from torch.ao.nn.quantized import FloatFunctional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_nn_layers  # noqa: E402
from gen_nn_layers import CaseWriter, escape_repr, fmt_f32, to_np  # noqa: E402

SEED = 20240711
gen_nn_layers.SEED = SEED  # the seed CaseWriter names in the header
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "nn_ops_extra")
DTYPE_NAMES = {torch.quint8: "quint8", torch.qint8: "qint8"}


def randn(*shape, scale=1.0, offset=0.0):
    return torch.randn(shape, dtype=torch.float32) * scale + offset


def with_values(x, values):
    flat = x.reshape(-1).clone()
    flat[: len(values)] = torch.tensor(values, dtype=torch.float32)
    return flat.reshape(x.shape)


def ints(values):
    return " ".join(str(int(v)) for v in values)


# --- float cases --------------------------------------------------------------------------------

def record(w, name, spec, module, inputs, forward=None, exact=False, repr_text=None,
           extra=()):
    stem = name.replace("/", "_")
    entries = [("module", spec)] + list(extra)
    if exact:
        entries.append(("exact", 1))
    params = dict(module.named_parameters()) if module is not None else {}
    for key, value in params.items():
        entries.append(("set", "%s %s" % (key, w.npy("%s_set_%s" % (stem, key), to_np(value)))))
    xs = [x.clone().requires_grad_(True) for x in inputs]
    y = forward(*xs) if forward is not None else module(*xs)
    gy = torch.randn(y.shape, dtype=torch.float32)
    y.backward(gy)
    for i, x in enumerate(xs):
        entries.append(("input", w.npy("%s_x%d" % (stem, i), to_np(x))))
    entries.append(("output", w.npy("%s_y0" % stem, to_np(y))))
    entries.append(("grad_output", w.npy("%s_gy0" % stem, to_np(gy))))
    for i, x in enumerate(xs):
        gx = x.grad if x.grad is not None else torch.zeros_like(x)
        entries.append(("grad_input", w.npy("%s_gx%d" % (stem, i), to_np(gx))))
    for key, param in params.items():
        g = param.grad if param.grad is not None else torch.zeros_like(param)
        entries.append(("grad", "%s %s" % (key, w.npy("%s_g_%s" % (stem, key), to_np(g)))))
    if repr_text is None and module is not None:
        repr_text = str(module)
    if repr_text is not None:
        entries.append(("repr", escape_repr(repr_text)))
    w.case(name, entries)


def gen_activations(w):
    kinks = [0.0, -0.0, -3.0, 3.0, -3.0000002, 3.0000002, 2.9999998, -2.9999998, 6.0, -6.0]
    for slope, shape in ((0.01, (4, 3, 5)), (0.2, (2, 70)), (-0.5, (13,)), (1.5, (1, 2, 3, 4))):
        m = nn.LeakyReLU(slope)
        x = with_values(randn(*shape, scale=3.0), kinks)
        record(w, "leaky_relu/slope%s_%s" % (slope, "x".join(map(str, shape))),
               "LeakyReLU %s" % fmt_f32(slope), m, [x], exact=True)
    for kind, cls in (("hardsigmoid", nn.Hardsigmoid), ("hardswish", nn.Hardswish)):
        for shape, scale in (((4, 3, 5), 4.0), ((2, 70), 2.0), ((1, 8, 3, 3), 6.0)):
            x = with_values(randn(*shape, scale=scale), kinks)
            record(w, "%s/%s" % (kind, "x".join(map(str, shape))), cls.__name__, cls(), [x],
                   exact=True)


def gen_mul(w):
    cases = [("same_2x3x4", (2, 3, 4), (2, 3, 4)),
             ("bcast_2x3x4_3x1", (2, 3, 4), (3, 1)),
             ("bcast_4_2x1x4", (4,), (2, 1, 4)),
             ("bcast_nchw_nc11", (2, 5, 3, 4), (2, 5, 1, 1)),
             ("bcast_both_3x1x5_1x4x1", (3, 1, 5), (1, 4, 1)),
             ("bcast_scalar", (), (2, 3))]
    for name, sa, sb in cases:
        f = FloatFunctional()
        record(w, "mul/" + name, "Mul", f, [randn(*sa), randn(*sb)], forward=f.mul,
               repr_text=str(f))


OPS = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}


def gen_binary_const(w):
    cases = [("add", 0, (2, 3, 4), (4,)), ("sub", 0, (2, 3, 4), (3, 1)),
             ("sub", 1, (2, 3, 4), (1, 3, 1)), ("mul", 0, (2, 5, 3, 3), (5, 1, 1)),
             ("mul", 1, (6,), ()), ("div", 0, (3, 4), (3, 4)), ("div", 1, (3, 4), (1, 4)),
             ("add", 1, (3,), (2, 1, 3)), ("div", 0, (2, 3), (2, 1))]
    for op, first, sx, sc in cases:
        c = randn(*sc)
        if op == "div":
            c = torch.where(c.abs() < 0.3, c.sign() * 0.3 + (c == 0) * 0.3, c)
        x = randn(*sx)
        if op == "div" and first:
            x = torch.where(x.abs() < 0.3, x.sign() * 0.3 + (x == 0) * 0.3, x)
        fn = OPS[op]
        forward = (lambda t, c=c, fn=fn: fn(c, t)) if first else (lambda t, c=c, fn=fn: fn(t, c))
        name = "binary_const/%s%s_%s_%s" % ("r" if first else "", op, "x".join(map(str, sx)),
                                            "x".join(map(str, sc)) or "scalar")
        stem = name.replace("/", "_")
        record(w, name, "BinaryConst %s %d" % (op, first), None, [x], forward=forward,
               extra=[("constant", w.npy(stem + "_constant", to_np(c)))])


def gen_matmul(w):
    cases = [((5,), (5,)), ((5,), (5, 3)), ((4, 5), (5,)), ((4, 5), (5, 3)),
             ((2, 4, 5), (5, 3)), ((4, 5), (2, 5, 3)), ((2, 1, 4, 5), (3, 5, 2)),
             ((2, 3, 4, 5), (5,)), ((5,), (2, 5, 3))]
    for sa, sb in cases:
        name = "matmul/%s_%s" % ("x".join(map(str, sa)), "x".join(map(str, sb)))
        record(w, name, "MatMul", None, [randn(*sa), randn(*sb)], forward=torch.matmul)


def onnx_reshape(x, shape):
    resolved = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(resolved)


def onnx_squeeze(x, axes):
    if not axes:
        return x.squeeze()
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


def onnx_unsqueeze(x, axes):
    r = x.dim() + len(axes)
    for a in sorted(a % r for a in axes):
        x = x.unsqueeze(a)
    return x


def onnx_permute(x, dims):
    return x.permute(*(dims if dims else list(range(x.dim() - 1, -1, -1))))


SHAPE_CASES = [
    ("reshape", "Reshape", (2, 3, 4), (0, -1), onnx_reshape),
    ("reshape", "Reshape", (2, 3, 4), (-1,), onnx_reshape),
    ("reshape", "Reshape", (2, 3, 4), (4, 0, 2), onnx_reshape),
    ("reshape", "Reshape", (2, 3, 4), (0, 0, 2, -1), onnx_reshape),
    ("reshape", "Reshape", (6,), (1, 2, 1, 3), onnx_reshape),
    ("permute", "Permute", (2, 3, 4), (0, 2, 1), onnx_permute),
    ("permute", "Permute", (2, 3, 4, 5), (3, 1, 0, 2), onnx_permute),
    ("permute", "Permute", (2, 3, 4), (), onnx_permute),
    ("squeeze", "Squeeze", (2, 1, 4), (1,), onnx_squeeze),
    ("squeeze", "Squeeze", (2, 4, 1), (-1,), onnx_squeeze),
    ("squeeze", "Squeeze", (1, 3, 1, 4, 1), (), onnx_squeeze),
    ("squeeze", "Squeeze", (1, 3, 1, 4), (0, -2), onnx_squeeze),
    ("unsqueeze", "Unsqueeze", (3, 4), (0,), onnx_unsqueeze),
    ("unsqueeze", "Unsqueeze", (3, 4), (-1,), onnx_unsqueeze),
    ("unsqueeze", "Unsqueeze", (3, 4), (1, 3), onnx_unsqueeze),
    ("unsqueeze", "Unsqueeze", (3, 4), (-1, 0), onnx_unsqueeze),
]


def case_label(shape, args):
    return "%s_%s" % ("x".join(map(str, shape)), "_".join(str(a) for a in args) or "none")


def gen_shape_ops(w):
    for kind, mod, shape, args, fn in SHAPE_CASES:
        name = "%s/%s" % (kind, case_label(shape, args))
        spec = " ".join([mod] + [str(a) for a in args])
        record(w, name, spec, None, [randn(*shape)], forward=lambda t, fn=fn, a=args: fn(t, list(a)),
               exact=True)


def gen_conv_transpose(w):
    # cin cout kh kw sh sw ph pw oph opw dh dw groups bias, input shape
    cases = [
        ("default_3to8_k3", (3, 8, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1), (2, 3, 5, 4)),
        ("stride2", (3, 8, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1), (2, 3, 5, 4)),
        ("stride2_pad1_outpad1", (4, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1), (1, 4, 4, 5)),
        ("rect_k3x2_s2x1_p1x0", (2, 3, 3, 2, 2, 1, 1, 0, 1, 0, 1, 1, 1, 1), (2, 2, 3, 4)),
        ("dilation2_nobias", (3, 4, 3, 3, 1, 1, 1, 1, 0, 0, 2, 2, 1, 0), (2, 3, 4, 4)),
        ("dilation2_outpad1", (2, 2, 2, 2, 1, 1, 0, 0, 1, 1, 2, 2, 1, 1), (1, 2, 3, 3)),
        ("groups2", (4, 6, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 2, 1), (2, 4, 3, 3)),
        ("depthwise", (4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4, 0), (1, 4, 3, 3)),
        ("k1_s1", (5, 3, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1), (2, 5, 3, 4)),
        ("k1_s2", (3, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1, 1, 1), (1, 3, 3, 3)),
        ("unbatched", (3, 2, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1), (3, 4, 3)),
    ]
    for name, a, shape in cases:
        cin, cout, kh, kw, sh, sw, ph, pw, oph, opw, dh, dw, groups, bias = a
        m = nn.ConvTranspose2d(cin, cout, (kh, kw), stride=(sh, sw), padding=(ph, pw),
                               output_padding=(oph, opw), groups=groups, bias=bool(bias),
                               dilation=(dh, dw))
        record(w, "conv_transpose2d/" + name, "ConvTranspose2d " + ints(a), m, [randn(*shape)])


# --- quantized cases ----------------------------------------------------------------------------

def int_repr(q):
    r = q.int_repr().contiguous().numpy()
    return r.astype(np.uint8 if q.dtype == torch.quint8 else np.int8)


def f32(v):
    """A float32-exact Python float: the scales convert produces (observers compute float32)."""
    return float(np.float32(v))


def rand_q(shape, scale, zp, dtype):
    scale = f32(scale)
    lo, hi = (0, 255) if dtype == torch.quint8 else (-128, 127)
    v = torch.randint(lo, hi + 1, shape, dtype=torch.int32)
    v = v.to(torch.uint8 if dtype == torch.quint8 else torch.int8)
    q = torch._make_per_tensor_quantized_tensor(v, scale, zp)
    if len(shape) == 4:
        q = q.contiguous(memory_format=torch.channels_last)
    return q


def qcase(w, engine, name, op, qs, y, extra=(), repr_text=None):
    stem = ("%s_%s" % (engine, name)).replace("/", "_")
    entries = [("qop", op), ("engine", engine), ("x_dtype", DTYPE_NAMES[qs[0].dtype])]
    entries.append(("x_scale", " ".join(fmt_f32(q.q_scale()) for q in qs)))
    entries.append(("x_zero_point", ints(q.q_zero_point() for q in qs)))
    for i, q in enumerate(qs):
        entries.append(("input", w.npy("%s_x%d" % (stem, i), int_repr(q))))
    entries += list(extra)
    entries += [("y_dtype", DTYPE_NAMES[y.dtype]), ("y_scale", fmt_f32(y.q_scale())),
                ("y_zero_point", str(y.q_zero_point())),
                ("output", w.npy("%s_y" % stem, int_repr(y)))]
    if repr_text is not None:
        entries.append(("repr", escape_repr(repr_text)))
    w.case("%s/%s" % (engine, name), entries)


# (label, shape, dtype, input scale, input zp, output scale, output zp)
ACT_INPUTS = [
    ("u8_200", (200,), torch.quint8, 0.05, 128, 0.03, 100),
    ("u8_nhwc_2x8x5x7", (2, 8, 5, 7), torch.quint8, 0.0625, 120, 0.03125, 64),
    ("u8_3x50_zp0", (3, 50), torch.quint8, 0.031, 0, 0.017, 3),
    ("s8_200", (200,), torch.qint8, 0.05, 3, 0.03, -20),
    ("s8_nhwc_1x16x3x5", (1, 16, 3, 5), torch.qint8, 0.125, -10, 0.0625, 0),
    ("u8_all256", (256,), torch.quint8, 0.04, 131, 0.02, 127),
]


def gen_quantized(w, engine):
    torch.backends.quantized.engine = engine
    for label, shape, dt, sx, zx, sy, zy in ACT_INPUTS:
        sx, sy = f32(sx), f32(sy)
        q = rand_q(shape, sx, zx, dt)
        if label == "u8_all256":
            q = torch._make_per_tensor_quantized_tensor(torch.arange(256, dtype=torch.uint8),
                                                        sx, zx)
        for slope in (0.01, 0.25):
            qcase(w, engine, "leaky_relu/%s_slope%s" % (label, slope), "leaky_relu", [q],
                  torch.nn.functional.leaky_relu(q, slope), [("slope", fmt_f32(slope))])
            m = nnq.LeakyReLU(sy, zy, slope)
            qcase(w, engine, "qleaky_relu/%s_slope%s" % (label, slope), "qleaky_relu", [q], m(q),
                  [("slope", fmt_f32(slope))], repr_text=str(m))
        m = nnq.Hardswish(sy, zy)
        qcase(w, engine, "qhardswish/" + label, "qhardswish", [q], m(q), repr_text=str(m))
        qcase(w, engine, "hardsigmoid/" + label, "hardsigmoid", [q],
              torch.nn.functional.hardsigmoid(q))
    # QFunctional.mul: same shapes and broadcasting
    for label, sa, sb, dt in (("u8_same_4x30", (4, 30), (4, 30), torch.quint8),
                              ("s8_same_100", (100,), (100,), torch.qint8),
                              ("u8_bcast_2x6x3x4_2x6x1x1", (2, 6, 3, 4), (2, 6, 1, 1),
                               torch.quint8),
                              ("u8_bcast_3x1x5_4x1", (3, 1, 5), (4, 1), torch.quint8)):
        zp = 128 if dt == torch.quint8 else 2
        a = rand_q(sa, 0.05, zp, dt)
        b = rand_q(sb, 0.03, zp - 7, dt)
        f = nnq.QFunctional()
        f.scale, f.zero_point = f32(0.07), (zp // 2 if dt == torch.quint8 else -5)
        qcase(w, engine, "qmul/" + label, "qmul", [a, b], f.mul(a, b))
    # shape ops keep the integers and the qparams
    for kind, _, shape, args, fn in SHAPE_CASES[::3]:
        q = rand_q(shape, 0.1, 7, torch.quint8)
        qcase(w, engine, "%s/%s" % (kind, case_label(shape, args)), kind, [q], fn(q, list(args)),
              [("args", ints(args))])


# --- convert ------------------------------------------------------------------------------------

def gen_convert(w, engine, backend):
    torch.backends.quantized.engine = engine
    model = nn.Sequential(tq.QuantStub(), nn.LeakyReLU(0.1), nn.Hardswish(), nn.Hardsigmoid(),
                          tq.DeQuantStub()).eval()
    model.qconfig = tq.get_default_qconfig(backend)
    tq.prepare(model, inplace=True)
    stem = "convert_%s" % engine
    entries = [("convert", "act_chain"), ("engine", engine), ("qconfig", backend)]
    for i in range(3):
        x = randn(4, 3, 5, scale=3.0, offset=0.5)
        model(x)
        entries.append(("calib", w.npy("%s_calib%d" % (stem, i), to_np(x))))
    tq.convert(model, inplace=True)
    x = randn(2, 3, 5, scale=3.0)
    y = model(x)
    entries += [("input", w.npy(stem + "_x", to_np(x))),
                ("output", w.npy(stem + "_y", to_np(y))),
                ("repr_converted", escape_repr(str(model)))]
    w.case("convert/%s" % engine, entries)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    w = CaseWriter(out, "float ops of imported graphs and their quantized forms (nn_ops_extra)")
    gen_activations(w)
    gen_mul(w)
    gen_binary_const(w)
    gen_matmul(w)
    gen_shape_ops(w)
    gen_conv_transpose(w)
    for engine in ("qnnpack", "onednn"):
        gen_quantized(w, engine)
    gen_convert(w, "qnnpack", "qnnpack")
    gen_convert(w, "onednn", "x86")
    total = w.write(["quantized engines: qnnpack and onednn (the x86 engine's native kernels)"])
    assert total < 1_000_000, total


if __name__ == "__main__":
    main()
