#!/usr/bin/python3
"""Golden data for cquant's quantized linear kernels, produced by PyTorch 1.13.

Writes tests/data/golden/qlinear/cases.txt and the .npy files it references:
  linear / linear_relu                  torch.ops.quantized.linear(_relu) on the qnnpack and onednn
                                        engines (spec 5.1, 5.2): quint8 input, qint8 weight
                                        (per-tensor or per-channel), float bias, quint8 output
  linear_dynamic / linear_relu_dynamic  torch.ops.quantized.linear(_relu)_dynamic on both engines,
                                        reduce_range on and off (spec 5.4): float in, float out

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_qlinear.py [OUT_DIR]
The format is described in tools/golden/README.md.
"""
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_quant_math  # noqa: E402
from gen_quant_math import CaseWriter, fmt_f32, fmt_floats, fmt_ints  # noqa: E402

SEED = 20240701
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "qlinear")

# (M, K, N): below / at / above the kernels' tiles, K not a multiple of 4, N not of 16.
SHAPES = [(1, 16, 8), (1, 64, 64), (3, 70, 33), (4, 5, 17), (16, 64, 16), (17, 129, 65),
          (32, 100, 48), (33, 256, 31), (2, 1024, 40), (40, 24, 100)]


def quantize_weight(rng, n, k, per_channel, symmetric):
    w = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32)) * 0.3
    if per_channel:
        amax = w.abs().amax(dim=1).clamp(min=1e-3)
        scales = (amax / 127.5).to(torch.float64)
        zps = torch.zeros(n, dtype=torch.int64)
        if not symmetric:
            zps = torch.from_numpy(rng.integers(-20, 21, n)).to(torch.int64)
        wq = torch.quantize_per_channel(w, scales, zps, 0, torch.qint8)
    else:
        scale = float(np.float32(w.abs().max().item() / 127.5))
        zp = 0 if symmetric else int(rng.integers(-20, 21))
        wq = torch.quantize_per_tensor(w, scale, zp, torch.qint8)
    return wq


def weight_params(wq):
    if wq.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return (wq.q_per_channel_scales().numpy().astype(np.float32),
                wq.q_per_channel_zero_points().numpy())
    return np.array([wq.q_scale()], dtype=np.float32), np.array([wq.q_zero_point()])


def gen_static(w, rng, engine):
    torch.backends.quantized.engine = engine
    count = 0
    for si, (m, k, n) in enumerate(SHAPES):
        for variant in range(4):
            per_channel = variant % 2 == 1
            relu = variant // 2 == 1
            has_bias = (si + variant) % 3 != 0
            # oneDNN requires symmetric weights; QNNPACK takes any zero point
            symmetric = engine == "onednn" or (si + variant) % 4 != 1
            x_zp = [0, 128, 255, int(rng.integers(0, 256))][(si + variant) % 4]
            x_scale = float(np.float32(rng.uniform(0.005, 0.05)))
            x = torch.from_numpy(rng.integers(0, 256, (m, k)).astype(np.uint8))
            xq = torch._make_per_tensor_quantized_tensor(x, x_scale, x_zp)
            wq = quantize_weight(rng, n, k, per_channel, symmetric)
            bias = torch.from_numpy(rng.standard_normal(n).astype(np.float32)) if has_bias else None
            y_scale = float(np.float32(rng.uniform(0.02, 0.2) * np.sqrt(k) * 0.3))
            y_zp = [0, 128, 255, 37][(si + 2 * variant) % 4]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                packed = torch.ops.quantized.linear_prepack(wq, bias)
                op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
                y = op(xq, packed, y_scale, y_zp)
            scales, zps = weight_params(wq)
            name = "%s/%s/%dx%dx%d_v%d" % (engine, "linear_relu" if relu else "linear", m, k, n,
                                          variant)
            stem = name.replace("/", "_")
            entries = [("op", "linear_relu" if relu else "linear"), ("engine", engine),
                       ("m", m), ("k", k), ("n", n),
                       ("x_scale", fmt_f32(x_scale)), ("x_zp", x_zp),
                       ("y_scale", fmt_f32(y_scale)), ("y_zp", y_zp),
                       ("per_channel", int(per_channel)),
                       ("w_scales", fmt_floats(scales)), ("w_zps", fmt_ints(zps)),
                       ("input", w.npy(stem + "_x", x.numpy())),
                       ("weight", w.npy(stem + "_w", wq.int_repr().numpy()))]
            if has_bias:
                entries.append(("bias", w.npy(stem + "_b", bias.numpy())))
            entries.append(("output", w.npy(stem + "_y", y.int_repr().numpy())))
            w.case(name, entries)
            count += 1
    return count


def gen_dynamic(w, rng, engine):
    torch.backends.quantized.engine = engine
    count = 0
    for si, (m, k, n) in enumerate(SHAPES):
        for variant in range(4):
            per_channel = variant % 2 == 1
            relu = variant // 2 == 1
            reduce_range = (si + variant) % 2 == 0
            has_bias = (si + variant) % 3 != 2
            kind = (si + variant) % 4
            x = rng.standard_normal((m, k)).astype(np.float32) * 2.0
            if kind == 1:
                x = np.abs(x) + 0.1   # positive only
            elif kind == 2:
                x = x - 3.0           # mostly negative
            xt = torch.from_numpy(x)
            wq = quantize_weight(rng, n, k, per_channel, True)
            bias = torch.from_numpy(rng.standard_normal(n).astype(np.float32)) if has_bias else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                packed = torch.ops.quantized.linear_prepack(wq, bias)
                op = (torch.ops.quantized.linear_relu_dynamic if relu
                      else torch.ops.quantized.linear_dynamic)
                y = op(xt, packed, reduce_range)
            scales, zps = weight_params(wq)
            opname = "linear_relu_dynamic" if relu else "linear_dynamic"
            name = "%s/%s/%dx%dx%d_v%d" % (engine, opname, m, k, n, variant)
            stem = name.replace("/", "_")
            entries = [("op", opname), ("engine", engine), ("m", m), ("k", k), ("n", n),
                       ("reduce_range", int(reduce_range)), ("per_channel", int(per_channel)),
                       ("w_scales", fmt_floats(scales)), ("w_zps", fmt_ints(zps)),
                       ("input", w.npy(stem + "_x", x)),
                       ("weight", w.npy(stem + "_w", wq.int_repr().numpy()))]
            if has_bias:
                entries.append(("bias", w.npy(stem + "_b", bias.numpy())))
            entries.append(("output", w.npy(stem + "_y", y.numpy())))
            w.case(name, entries)
            count += 1
    return count


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    w = CaseWriter(out, "quantized linear (static and dynamic) on the qnnpack and onednn engines")
    counts = {}
    for engine in ("qnnpack", "onednn"):
        counts[engine + " static"] = gen_static(w, rng, engine)
        counts[engine + " dynamic"] = gen_dynamic(w, rng, engine)
    torch.backends.quantized.engine = "onednn"
    gen_quant_math.SEED = SEED  # the header names this generator's seed
    w.write(["keys: op, engine, m, k, n, quantization parameters; input/weight/bias/output .npy",
             "static: input |u1 [m,k], weight |i1 [n,k], bias <f4 [n], output |u1 [m,n]",
             "dynamic: input <f4 [m,k], output <f4 [m,n]; reduce_range as passed to the op"]
            + ["%s: %d cases" % kv for kv in counts.items()])


if __name__ == "__main__":
    main()
