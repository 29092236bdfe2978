#!/usr/bin/python3
"""Golden data for cquant's min/max observers, produced by PyTorch 1.13.

Writes tests/data/golden/observers/cases.txt and the .npy batch files it references, for
MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver and
MovingAveragePerChannelMinMaxObserver over many option combinations and data distributions.

Each case is one observer fed a stream of batches (stacked in one .npy of shape [nbatches, ...]),
then asked for calculate_qparams() and str(observer). See tools/golden/README.md.

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_observers.py [OUT_DIR]
"""
import os
import sys
import warnings

import numpy as np
import torch
from torch.ao.quantization.observer import (MinMaxObserver, MovingAverageMinMaxObserver,
                                            MovingAveragePerChannelMinMaxObserver,
                                            PerChannelMinMaxObserver)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_quant_math import (DTYPES, EPS_2_12, QSCHEMES, SEED, CaseWriter, fmt_f32,  # noqa: E402
                            fmt_floats, fmt_ints)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "observers")

KINDS = {
    "minmax": MinMaxObserver,
    "moving_average_minmax": MovingAverageMinMaxObserver,
    "per_channel_minmax": PerChannelMinMaxObserver,
    "moving_average_per_channel_minmax": MovingAveragePerChannelMinMaxObserver,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
QSCHEME_NAMES = {v: k for k, v in QSCHEMES.items()}


def escape(text):
    """One-line form of a (possibly multi-line) string: backslash and newline escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def config_string(kind, kw):
    """The constructor arguments as cq_observer_config_set key=value pairs."""
    parts = ["observer=" + kind]
    for key, value in kw.items():
        if key == "dtype":
            value = DTYPE_NAMES[value]
        elif key == "qscheme":
            value = QSCHEME_NAMES[value]
        elif key == "reduce_range":
            value = "1" if value else "0"
        elif key in ("eps", "averaging_constant"):
            value = repr(float(value))
        else:
            value = str(value)
        parts.append("%s=%s" % (key, value))
    return " ".join(parts)


# --- data -------------------------------------------------------------------------------------

def distribution(rng, name, shape):
    """A float32 batch of `shape` drawn from the named distribution."""
    n = int(np.prod(shape)) if len(shape) else 1
    if name == "normal":
        x = rng.standard_normal(n)
    elif name == "skewed":
        x = rng.exponential(1.0, n) - 0.3
    elif name == "lognormal":
        x = rng.lognormal(0.0, 1.0, n)
    elif name == "heavy_tails":
        x = rng.standard_cauchy(n)
    elif name == "outlier":
        x = rng.standard_normal(n) * 0.1
        x[rng.integers(0, n)] = 50.0 * (1 if rng.integers(0, 2) else -1)
    elif name == "shifted":
        x = rng.standard_normal(n) + 5.0
    elif name == "all_negative":
        x = -np.abs(rng.standard_normal(n)) - 0.25
    elif name == "relu":
        x = np.maximum(rng.standard_normal(n), 0.0)
    elif name == "tiny":
        x = 0.5 + rng.uniform(0.0, 1e-6, n)
    elif name == "tiny_zero":
        x = rng.uniform(-1e-6, 1e-6, n)
    elif name == "huge":
        x = rng.standard_normal(n) * 1e6
    elif name == "constant":
        x = np.full(n, 3.0)
    elif name == "constant_negative":
        x = np.full(n, -2.75)
    elif name == "zeros":
        x = np.zeros(n)
    elif name == "uniform":
        x = rng.uniform(-2.0, 7.0, n)
    else:
        raise ValueError(name)
    return x.astype(np.float32).reshape(shape)


PER_TENSOR_DISTS = ["normal", "skewed", "lognormal", "heavy_tails", "outlier", "shifted",
                    "all_negative", "relu", "tiny", "tiny_zero", "huge", "constant",
                    "constant_negative", "zeros", "uniform"]


def stream(rng, dist, shape, nbatches):
    """nbatches batches; "drift" makes the range move between batches (moving averages)."""
    batches = []
    for b in range(nbatches):
        x = distribution(rng, dist, shape)
        if dist not in ("constant", "constant_negative", "zeros") and b % 3 == 2:
            x = (x * np.float32(1.5 + 0.25 * b)).astype(np.float32)
        batches.append(x)
    return np.stack(batches) if batches else np.zeros((0,) + tuple(shape), dtype=np.float32)


def per_channel_batch(rng, shape, axis, b):
    """Channels with different ranges: scaled normals, a constant, an all-zero, an all-negative, a
    positive-only and a tiny-range channel."""
    x = rng.standard_normal(shape).astype(np.float32)
    xm = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    rows = xm.reshape(xm.shape[0], -1)
    nch = rows.shape[0]
    for c in range(nch):
        kind = c % 7
        if kind == 0:
            rows[c] *= np.float32(10.0 ** ((c % 5) - 2))
        elif kind == 1:
            rows[c] = np.float32(1.25)
        elif kind == 2:
            rows[c] = 0.0
        elif kind == 3:
            rows[c] = -np.abs(rows[c]) - np.float32(0.5)
        elif kind == 4:
            rows[c] = np.abs(rows[c]) * np.float32(3.0)
        elif kind == 5:
            rows[c] = np.float32(-0.25) + rows[c] * np.float32(1e-7)
        else:
            rows[c] = rows[c] * np.float32(0.5 + b) + np.float32(b)
    return np.ascontiguousarray(np.moveaxis(xm, 0, axis)).astype(np.float32)


# --- running torch ----------------------------------------------------------------------------

def run_observer(kind, kw, batches, empty_before):
    """Feeds the batches (and empty batches before the listed indices) to a fresh observer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = KINDS[kind](**kw)
        nb = batches.shape[0]
        for b in range(nb + 1):
            if b in empty_before:
                obs(torch.zeros((0,) + tuple(batches.shape[2:]), dtype=torch.float32))
            if b < nb:
                out = obs(torch.from_numpy(np.array(batches[b], dtype=np.float32)))
                assert torch.equal(out, torch.from_numpy(np.array(batches[b], dtype=np.float32)))
        scale, zp = obs.calculate_qparams()
    return obs, scale, zp


def add_case(w, name, kind, kw, batches, empty_before=(), note=None):
    obs, scale, zp = run_observer(kind, kw, batches, empty_before)
    stem = "obs_%04d" % len(w.cases)
    entries = [("config", config_string(kind, kw))]
    if note:
        entries.append(("note", note))
    entries.append(("input", w.npy(stem, batches)))
    if empty_before:
        entries.append(("empty_before", " ".join(str(b) for b in sorted(empty_before))))
    entries += [
        ("quant_min", obs.quant_min),
        ("quant_max", obs.quant_max),
        ("min_val", fmt_floats(obs.min_val.reshape(-1).numpy())),
        ("max_val", fmt_floats(obs.max_val.reshape(-1).numpy())),
        ("scale", fmt_floats(scale.numpy())),
    ]
    if zp.dtype.is_floating_point:
        entries.append(("zero_point_float", fmt_floats(zp.numpy())))
    else:
        entries.append(("zero_point", fmt_ints(zp.numpy())))
    entries.append(("repr", escape(str(obs))))
    w.case(name, entries)
    return obs, scale, zp


def add_error_case(w, name, kind, kw, batches=None, stage="create"):
    """A configuration PyTorch rejects, in the constructor or at the first forward."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs = KINDS[kind](**kw)
            if batches is not None:
                for b in range(batches.shape[0]):
                    obs(torch.from_numpy(batches[b].copy()))
    except (AssertionError, NotImplementedError, IndexError, RuntimeError) as e:
        entries = [("config", config_string(kind, kw))]
        if batches is not None:
            entries.append(("input", w.npy("obs_%04d" % len(w.cases), batches)))
        entries += [("expect_error", stage),
                    ("error", "%s: %s" % (type(e).__name__, " ".join(str(e).split())))]
        w.case(name, entries)
        return
    raise AssertionError("torch accepted %s %r" % (kind, kw))


# --- case lists -------------------------------------------------------------------------------

def per_tensor_configs():
    """(label, kwargs) pairs covering dtype x qscheme x reduce_range x custom range x eps."""
    out = [("defaults", {})]
    for dname in ("quint8", "qint8", "qint32", "quint4x2"):
        for qs in ("per_tensor_affine", "per_tensor_symmetric"):
            for rr in (False, True):
                if qs == "per_tensor_symmetric" and rr and dname == "quint8":
                    continue  # rejected by the constructor (error cases below)
                out.append(("%s_%s_rr%d" % (dname, qs, rr),
                            {"dtype": DTYPES[dname], "qscheme": QSCHEMES[qs], "reduce_range": rr}))
    customs = [("quint8", 0, 127), ("quint8", 0, 255), ("quint8", -64, 63), ("qint8", -127, 127),
               ("qint8", -64, 63), ("qint8", 0, 127), ("qint32", -2 ** 30, 2 ** 30 - 1),
               ("quint4x2", 0, 15), ("qint8", -8, 7)]
    for dname, qmin, qmax in customs:
        for qs in ("per_tensor_affine", "per_tensor_symmetric"):
            for rr in (False, True):
                if qs == "per_tensor_symmetric" and rr and dname == "quint8":
                    continue
                out.append(("%s_%s_rr%d_custom_%d_%d" % (dname, qs, rr, qmin, qmax),
                            {"dtype": DTYPES[dname], "qscheme": QSCHEMES[qs], "reduce_range": rr,
                             "quant_min": qmin, "quant_max": qmax}))
    # the predefined factories (spec 1.8) and eps variants
    out.append(("default_observer", {"quant_min": 0, "quant_max": 127}))
    out.append(("default_weight_observer",
                {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric}))
    out.append(("weight_observer_range_neg_127_to_127",
                {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric, "quant_min": -127,
                 "quant_max": 127, "eps": EPS_2_12}))
    out.append(("quint8_affine_eps_2e-12", {"eps": EPS_2_12}))
    out.append(("qint8_affine_eps_1e-3", {"dtype": torch.qint8, "eps": 1e-3}))
    return out


def per_channel_configs():
    out = [("defaults", {})]
    for dname in ("quint8", "qint8", "qint32", "quint4x2"):
        for qs in ("per_channel_affine", "per_channel_symmetric",
                   "per_channel_affine_float_qparams"):
            for rr in (False, True):
                if qs == "per_channel_symmetric" and rr and dname == "quint8":
                    continue
                out.append(("%s_%s_rr%d" % (dname, qs, rr),
                            {"dtype": DTYPES[dname], "qscheme": QSCHEMES[qs], "reduce_range": rr}))
    customs = [("quint8", 0, 127), ("quint8", 0, 255), ("qint8", -127, 127), ("qint8", -64, 63),
               ("quint4x2", 0, 15)]
    for dname, qmin, qmax in customs:
        for qs in ("per_channel_affine", "per_channel_symmetric",
                   "per_channel_affine_float_qparams"):
            out.append(("%s_%s_custom_%d_%d" % (dname, qs, qmin, qmax),
                        {"dtype": DTYPES[dname], "qscheme": QSCHEMES[qs], "quant_min": qmin,
                         "quant_max": qmax}))
    out.append(("default_per_channel_weight_observer",
                {"dtype": torch.qint8, "qscheme": torch.per_channel_symmetric}))
    out.append(("per_channel_weight_observer_range_neg_127_to_127",
                {"dtype": torch.qint8, "qscheme": torch.per_channel_symmetric, "quant_min": -127,
                 "quant_max": 127, "eps": EPS_2_12}))
    out.append(("default_float_qparams_observer",
                {"dtype": torch.quint8, "qscheme": torch.per_channel_affine_float_qparams}))
    out.append(("default_float_qparams_observer_4bit",
                {"dtype": torch.quint4x2, "qscheme": torch.per_channel_affine_float_qparams}))
    out.append(("qint8_symmetric_eps_1e-2", {"dtype": torch.qint8,
                                             "qscheme": torch.per_channel_symmetric, "eps": 1e-2}))
    return out


PER_TENSOR_SHAPES = [(4, 5), (3, 4), (17,), (2, 3, 4), (2, 2, 3, 5), (1,), (130,)]
PER_CHANNEL_LAYOUTS = [
    # batch shape, ch_axis
    ((6, 5), 0), ((5, 6), 1), ((5, 7), -1), ((4, 3, 5), 0), ((3, 9, 4), 1), ((3, 4, 8), 2),
    ((3, 4, 8), -1), ((8, 2, 3, 2), 0), ((2, 7, 3, 3), 1), ((2, 3, 9, 2), 2), ((2, 2, 3, 7), -1),
    ((2, 2, 3, 7), 3),
]
AVERAGING_CONSTANTS = [0.01, 0.5, 1.0, 0.1, 0.9, 0.003]


def gen_per_tensor(w, rng):
    n = 0
    configs = per_tensor_configs()
    for kind in ("minmax", "moving_average_minmax"):
        for i, (label, kw) in enumerate(configs):
            # three streams per config, rotating through distributions, shapes and batch counts
            for j in range(3):
                dist = PER_TENSOR_DISTS[(3 * i + j + (kind != "minmax")) % len(PER_TENSOR_DISTS)]
                shape = PER_TENSOR_SHAPES[(i + 2 * j) % len(PER_TENSOR_SHAPES)]
                nb = 1 + (i * 3 + j * 5) % 8
                kw2 = dict(kw)
                if kind == "moving_average_minmax":
                    kw2["averaging_constant"] = AVERAGING_CONSTANTS[(i + j) % len(
                        AVERAGING_CONSTANTS)]
                batches = stream(rng, dist, shape, nb)
                add_case(w, "%s/%s/%s_%db_%s" % (kind, label, dist, nb, "x".join(map(str, shape))),
                         kind, kw2, batches)
                n += 1
        # a 0-d batch stream and every distribution with the default config
        add_case(w, "%s/defaults/scalar_batches" % kind, kind, {},
                 np.array([1.5, -0.25, 4.0], dtype=np.float32))
        n += 1
        for dist in PER_TENSOR_DISTS:
            kw = {"averaging_constant": 0.25} if kind == "moving_average_minmax" else {}
            add_case(w, "%s/defaults/all_%s_5b" % (kind, dist), kind, kw,
                     stream(rng, dist, (3, 7), 5))
            n += 1
    return n


def gen_per_channel(w, rng):
    n = 0
    configs = per_channel_configs()
    for kind in ("per_channel_minmax", "moving_average_per_channel_minmax"):
        for i, (label, kw) in enumerate(configs):
            for j in range(2):
                shape, axis = PER_CHANNEL_LAYOUTS[(i + 5 * j + (kind != "per_channel_minmax"))
                                                  % len(PER_CHANNEL_LAYOUTS)]
                nb = 1 + (i * 5 + j * 3) % 8
                kw2 = dict(kw)
                kw2["ch_axis"] = axis
                if kind == "moving_average_per_channel_minmax":
                    kw2["averaging_constant"] = AVERAGING_CONSTANTS[(i + j) % len(
                        AVERAGING_CONSTANTS)]
                batches = np.stack([per_channel_batch(rng, shape, axis, b) for b in range(nb)])
                add_case(w, "%s/%s/axis%d_%db_%s" % (kind, label, axis, nb,
                                                      "x".join(map(str, shape))), kind, kw2, batches)
                n += 1
        # every layout with the default qscheme, including negative ch_axis
        for shape, axis in PER_CHANNEL_LAYOUTS:
            kw = {"ch_axis": axis}
            if kind == "moving_average_per_channel_minmax":
                kw["averaging_constant"] = 0.2
            batches = np.stack([per_channel_batch(rng, shape, axis, b) for b in range(4)])
            add_case(w, "%s/layout/axis%d_%s" % (kind, axis, "x".join(map(str, shape))), kind, kw,
                     batches)
            n += 1
        # distributions shared by all channels (per_channel_batch mixes them within a batch)
        for dist in ("heavy_tails", "tiny", "huge", "zeros", "constant", "outlier"):
            kw = {"ch_axis": 1, "dtype": torch.qint8, "qscheme": torch.per_channel_symmetric}
            add_case(w, "%s/dist/%s" % (kind, dist), kind, kw, stream(rng, dist, (3, 4, 5), 3))
            n += 1
        # a wide tensor: torch's repr wraps the per-channel values over several lines
        kw = {"ch_axis": 0}
        batches = np.stack([per_channel_batch(rng, (64, 3), 0, b) for b in range(2)])
        add_case(w, "%s/wide_64_channels" % kind, kind, kw, batches)
        batches = (rng.standard_normal((2, 3, 20)) * 1e-6).astype(np.float32)
        add_case(w, "%s/wide_tiny_values" % kind, kind, {"ch_axis": 1}, batches)
        batches = (rng.standard_normal((1, 12, 2)) * 1e5).astype(np.float32)
        add_case(w, "%s/huge_values" % kind, kind, {"ch_axis": 0}, batches)
        n += 3
    return n


def gen_special(w, rng):
    n = 0
    # The seed example: two [3, 4] batches as printed (4 decimals).
    seed = np.array([
        [[-0.0590, 1.1674, 0.7119, -1.1270], [-1.3974, 0.5077, -0.5601, 0.0683],
         [-0.0929, 0.9473, 0.7159, -0.4574]],
        [[-0.0236, -0.7599, 1.0290, 0.8914], [-1.1727, -1.2556, -0.2271, 0.9568],
         [-0.2500, 1.4579, 1.4707, 0.4043]],
    ], dtype=np.float32)
    _, s, z = add_case(w, "seed/minmax", "minmax", {}, seed,
                       note="seed example: scale 0.0112, zero_point 124")
    assert round(s.item(), 4) == 0.0112 and z.item() == 124
    _, s, z = add_case(w, "seed/moving_average_minmax", "moving_average_minmax", {}, seed,
                       note="seed example: scale 0.0101, zero_point 139")
    assert round(s.item(), 4) == 0.0101 and z.item() == 139
    n += 2
    # Spec 1.2 worked example and 1.4 / 1.5 examples.
    add_case(w, "spec/worked_example", "minmax", {},
             np.array([[-1.0, 0.5, 2.0]], dtype=np.float32))
    add_case(w, "spec/moving_average_example", "moving_average_minmax", {},
             np.array([[-1.0, 1.0], [-3.0, 5.0]], dtype=np.float32))
    add_case(w, "spec/per_channel_symmetric_example", "per_channel_minmax",
             {"dtype": torch.qint8, "qscheme": torch.per_channel_symmetric},
             np.array([[[1, -2, 3], [0, 0, 0], [-0.5, 0.25, 0.1], [4, 4, 4]]], dtype=np.float32))
    add_case(w, "spec/float_qparams_constant_row", "per_channel_minmax",
             {"qscheme": torch.per_channel_affine_float_qparams},
             np.array([[[4, 4, 4], [-1, 0.5, 2]]], dtype=np.float32))
    n += 4
    # Never run: no batches at all, or only empty batches.
    for kind in KINDS:
        per_channel = "per_channel" in kind
        kw = {"ch_axis": 1} if per_channel else {}
        add_case(w, "%s/never_run" % kind, kind, kw, np.zeros((0, 3, 4), dtype=np.float32))
        add_case(w, "%s/only_empty_batches" % kind, kind, kw, np.zeros((2, 0, 4), dtype=np.float32))
        add_case(w, "%s/empty_then_data" % kind, kind, kw,
                 stream(rng, "normal", (3, 4), 3), empty_before=(0, 2, 3))
        sym = {"dtype": torch.qint8,
               "qscheme": torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric}
        sym.update(kw)
        add_case(w, "%s/never_run_symmetric" % kind, kind, sym, np.zeros((0, 2, 2), dtype=np.float32))
        n += 4
    add_case(w, "per_channel_minmax/never_run_float_qparams", "per_channel_minmax",
             {"qscheme": torch.per_channel_affine_float_qparams}, np.zeros((0, 2, 2), np.float32))
    n += 1
    # Moving averages whose first batch sets the state exactly, then averaging_constant 1.
    add_case(w, "moving_average_minmax/constant_1", "moving_average_minmax",
             {"averaging_constant": 1.0}, stream(rng, "uniform", (4, 4), 4))
    add_case(w, "moving_average_minmax/first_batch_inf_check", "moving_average_minmax",
             {"averaging_constant": 0.5},
             np.array([[0.0, 0.0], [2.0, 4.0], [-8.0, 1.0]], dtype=np.float32))
    n += 2
    # Errors PyTorch raises.
    add_error_case(w, "error/minmax_per_channel_qscheme", "minmax",
                   {"qscheme": torch.per_channel_affine})
    add_error_case(w, "error/per_channel_minmax_per_tensor_qscheme", "per_channel_minmax",
                   {"qscheme": torch.per_tensor_affine})
    add_error_case(w, "error/moving_average_minmax_float_qparams", "moving_average_minmax",
                   {"qscheme": torch.per_channel_affine_float_qparams})
    add_error_case(w, "error/minmax_symmetric_quint8_reduce_range", "minmax",
                   {"qscheme": torch.per_tensor_symmetric, "reduce_range": True})
    add_error_case(w, "error/moving_average_minmax_symmetric_quint8_reduce_range",
                   "moving_average_minmax",
                   {"qscheme": torch.per_tensor_symmetric, "reduce_range": True})
    add_error_case(w, "error/per_channel_symmetric_quint8_reduce_range", "per_channel_minmax",
                   {"qscheme": torch.per_channel_symmetric, "reduce_range": True})
    add_error_case(w, "error/custom_range_without_zero", "minmax",
                   {"quant_min": 1, "quant_max": 100})
    add_error_case(w, "error/custom_range_empty", "minmax", {"quant_min": 0, "quant_max": 0})
    add_error_case(w, "error/qint8_custom_range_too_long", "minmax",
                   {"dtype": torch.qint8, "quant_min": -200, "quant_max": 100})
    add_error_case(w, "error/qint32_custom_range_too_long", "per_channel_minmax",
                   {"dtype": torch.qint32, "quant_min": -2 ** 31, "quant_max": 2 ** 31 - 1})
    add_error_case(w, "error/per_channel_ch_axis_out_of_range", "per_channel_minmax",
                   {"ch_axis": 3}, batches=stream(rng, "normal", (2, 3, 4), 1), stage="update")
    add_error_case(w, "error/moving_average_per_channel_ch_axis_negative_out_of_range",
                   "moving_average_per_channel_minmax", {"ch_axis": -3},
                   batches=stream(rng, "normal", (3, 4), 1), stage="update")
    add_error_case(w, "error/per_channel_1d_input", "per_channel_minmax", {"ch_axis": 0},
                   batches=stream(rng, "normal", (9,), 1), stage="update")
    n += 13
    return n


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED + 1)
    w = CaseWriter(out_dir, "cquant golden data: MinMax / MovingAverage / PerChannel observers")
    counts = {
        "special": gen_special(w, rng),
        "per_tensor": gen_per_tensor(w, rng),
        "per_channel": gen_per_channel(w, rng),
    }
    w.write([
        "format: tools/golden/README.md; 'input' holds the batches stacked on a new first axis,",
        "'empty_before K' feeds an empty batch before batch K; 'repr' is str(observer) with",
        "backslash and newline escaped",
    ] + ["%s: %d cases" % kv for kv in counts.items()])


if __name__ == "__main__":
    main()
