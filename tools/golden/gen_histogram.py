#!/usr/bin/python3
"""Golden data for cquant's HistogramObserver, produced by PyTorch 1.13.

Writes tests/data/golden/histogram/cases.txt and the .npy batch files it references. Each case is
one torch.ao.quantization.HistogramObserver fed a stream of batches (stacked in one .npy of shape
[nbatches, ...]), then asked for calculate_qparams() and str(observer).

Every case has a `check` key saying what it checks.

check observer (besides the common format of tools/golden/README.md):
  config            cq_observer_config_set key=value pairs (observer=histogram first)
  input             the stacked batches
  error_batch K     PyTorch raised in forward() on batch K (0-based); the stream stops there and
                    the remaining keys describe the observer after the failed call
  error             the exception, for information
  min_val, max_val  the observer's running range
  histogram_fnv1a   FNV-1a (64-bit) of the float32 histogram's little-endian bytes
  histogram_sum     the histogram's exact sum (math.fsum), as a Python float repr
  search_min/max    _non_linear_param_search()'s clipping range (before rule 1.2)
  scale, zero_point calculate_qparams()
  repr              str(observer)

check torch_sum: `input` (a 1-D float32 vector) and `sum`, torch.sum of it (float32).
check aminmax: `input` (1-D, zeros of both signs among other values) and `min_val`/`max_val`,
  torch.aminmax of it, whose zero signs depend on PyTorch's lane order.

PyTorch's CPU kernels are pinned to the AVX2 code path and one thread (the reductions' rounding
depends on the vector width; the histogram counts on the thread count beyond 2^24 per bin).

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_histogram.py [OUT_DIR]
"""
import copy
import math
import os
import sys
import warnings

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.ao.quantization.observer import HistogramObserver  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_quant_math import SEED, CaseWriter, fmt_f32  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "histogram")

DTYPE_NAMES = {torch.quint8: "quint8", torch.qint8: "qint8", torch.qint32: "qint32",
               torch.quint4x2: "quint4x2"}
QSCHEME_NAMES = {torch.per_tensor_affine: "per_tensor_affine",
                 torch.per_tensor_symmetric: "per_tensor_symmetric"}

F32 = np.float32


# --- formatting -------------------------------------------------------------------------------

def config_string(kw):
    parts = ["observer=histogram"]
    for key, value in kw.items():
        if key == "dtype":
            value = DTYPE_NAMES[value]
        elif key == "qscheme":
            value = QSCHEME_NAMES[value]
        elif key == "reduce_range":
            value = "1" if value else "0"
        elif key == "eps":
            value = repr(float(value))
        else:
            value = str(value)
        parts.append("%s=%s" % (key, value))
    return " ".join(parts)


def fnv1a(array):
    h = 0xcbf29ce484222325
    for b in np.ascontiguousarray(array, dtype="<f4").tobytes():
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return "%016x" % h


# --- data -------------------------------------------------------------------------------------

def draw(rng, dist, n):
    """n float64 values from the named distribution (converted to float32 by the caller)."""
    if dist == "normal":
        return rng.standard_normal(n)
    if dist == "relu":
        return np.maximum(rng.standard_normal(n), 0.0)
    if dist == "exponential":
        return rng.exponential(1.0, n) - 0.3
    if dist == "lognormal":
        return rng.lognormal(0.0, 1.0, n)
    if dist == "student_t":
        return rng.standard_t(3.0, n)
    if dist == "cauchy":
        return np.clip(rng.standard_cauchy(n), -1e4, 1e4)
    if dist == "outlier":
        x = rng.standard_normal(n) * 0.1
        x[rng.integers(0, n)] = 50.0 if rng.integers(0, 2) else -50.0
        return x
    if dist == "shifted":
        return rng.uniform(100.0, 101.0, n)
    if dist == "all_negative":
        return -np.abs(rng.standard_normal(n)) - 0.25
    if dist == "tiny":
        return 0.5 + rng.uniform(0.0, 1e-6, n)
    if dist == "tiny_zero":
        return rng.uniform(-1e-6, 1e-6, n)
    if dist == "inside":
        return rng.uniform(-0.9, 0.95, n)
    if dist == "beyond":
        return rng.uniform(-3.7, 5.2, n)
    if dist == "unit":
        return rng.uniform(0.0, 1.0, n)
    if dist == "huge":
        return rng.standard_normal(n) * 1e6
    if dist == "sparse":
        x = np.zeros(n)
        k = max(1, n // 20)
        x[rng.integers(0, n, k)] = rng.standard_normal(k) * 3.0
        return x
    if dist == "integers":
        return rng.integers(-5, 6, n).astype(np.float64)
    if dist == "bimodal":
        pick = rng.random(n) < 0.3
        return np.where(pick, rng.normal(-3.0, 0.5, n), rng.normal(4.0, 1.0, n))
    if dist == "constant":
        return np.full(n, 3.0)
    if dist == "constant_negative":
        return np.full(n, -2.75)
    if dist == "zeros":
        return np.zeros(n)
    raise ValueError(dist)


def stream(rng, dist, pattern, shape, nb):
    """nb batches of `shape`. pattern: steady, growing, shrinking, drift, const_then, then_const,
    alternating (wide and narrow batches in turn)."""
    n = int(np.prod(shape))
    out = []
    for b in range(nb):
        if pattern == "const_then" and b == 0:
            x = np.full(n, 1.5)
        elif pattern == "then_const" and b == nb - 1 and nb > 1:
            x = np.full(n, 0.25)
        else:
            x = draw(rng, dist, n)
            if pattern == "growing":
                x = x * (1.0 + 0.6 * b)
            elif pattern == "shrinking":
                x = x / (1.0 + 0.6 * b)
            elif pattern == "drift":
                x = x + 0.4 * b
            elif pattern == "alternating" and b % 2 == 1:
                x = x * 0.2
        out.append(x.astype(F32).reshape(shape))
    return np.stack(out)


# --- running torch ----------------------------------------------------------------------------

def run(kw, batches):
    """Feeds the batches; returns (observer, index of the batch that raised or None, exception).
    After an exception the observer returned is a copy taken before the failing call: PyTorch may
    have updated min_val/max_val before raising, cquant leaves the observer unchanged."""
    obs = HistogramObserver(**kw)
    for b in range(batches.shape[0]):
        x = torch.from_numpy(np.array(batches[b], dtype=F32))
        before = copy.deepcopy(obs)
        try:
            out = obs(x)
        except (RuntimeError, ValueError, OverflowError) as e:
            return before, b, e
        assert torch.equal(out, x)
    return obs, None, None


def add_case(w, name, kw, batches):
    """Adds the case; returns False (adding nothing) when PyTorch ran out of memory, which a
    merge with a very large downsample rate makes it do: there is no result to compare with."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs, err_batch, err = run(kw, batches)
        if err is not None and "can't allocate memory" in str(err):
            return False
        entries = [("check", "observer"), ("config", config_string(kw)),
                   ("input", w.npy("hist_%04d" % len(w.cases), batches))]
        if err_batch is not None:
            entries.append(("error_batch", str(err_batch)))
            entries.append(("error", "%s: %s" % (type(err).__name__, " ".join(str(err).split())[:120])))
        hist = obs.histogram.numpy()
        entries += [
            ("min_val", fmt_f32(obs.min_val.item())),
            ("max_val", fmt_f32(obs.max_val.item())),
            ("histogram_fnv1a", fnv1a(hist)),
            ("histogram_sum", repr(math.fsum(float(v) for v in hist))),
        ]
        initialized = not (obs.min_val.item() == math.inf and obs.max_val.item() == -math.inf)
        if initialized:
            smin, smax = obs._non_linear_param_search()
            entries += [("search_min", fmt_f32(smin.item())), ("search_max", fmt_f32(smax.item()))]
        scale, zp = obs.calculate_qparams()
        entries += [("scale", fmt_f32(scale.item())), ("zero_point", str(int(zp.item()))),
                    ("repr", str(obs))]
    w.case(name, entries)
    return True


# --- case lists -------------------------------------------------------------------------------

def configs():
    """(label, kwargs): dtype x qscheme x reduce_range, custom ranges, bins, upsample rates, eps."""
    out = [("default", {})]
    for dt in (torch.quint8, torch.qint8):
        for qs in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            for rr in (False, True):
                out.append(("%s_%s_rr%d" % (DTYPE_NAMES[dt], QSCHEME_NAMES[qs], rr),
                            {"dtype": dt, "qscheme": qs, "reduce_range": rr}))
    out += [
        ("default_histogram_observer", {"quant_min": 0, "quant_max": 127}),
        ("qint8_custom_-127_127_symmetric", {"dtype": torch.qint8,
                                             "qscheme": torch.per_tensor_symmetric,
                                             "quant_min": -127, "quant_max": 127}),
        ("quint8_custom_0_255_symmetric", {"qscheme": torch.per_tensor_symmetric,
                                           "quant_min": 0, "quant_max": 255}),
        ("qint8_custom_-64_63_rr", {"dtype": torch.qint8, "quant_min": -64, "quant_max": 63,
                                    "reduce_range": True}),
        ("bins256", {"bins": 256}),
        ("bins512_qint8_symmetric", {"bins": 512, "dtype": torch.qint8,
                                     "qscheme": torch.per_tensor_symmetric}),
        ("bins1000", {"bins": 1000}),
        ("bins100_up16", {"bins": 100, "upsample_rate": 16}),
        ("bins3000", {"bins": 3000}),
        ("bins7_up3", {"bins": 7, "upsample_rate": 3}),
        ("bins1", {"bins": 1}),
        ("up1", {"upsample_rate": 1}),
        ("up64_bins1024", {"upsample_rate": 64, "bins": 1024}),
        ("up200", {"upsample_rate": 200}),
        ("eps_1e-3", {"eps": 1e-3}),
        ("quint4x2", {"dtype": torch.quint4x2}),
        ("qint32_symmetric", {"dtype": torch.qint32, "qscheme": torch.per_tensor_symmetric}),
    ]
    return out


DISTS = ["normal", "relu", "exponential", "lognormal", "student_t", "cauchy", "outlier", "shifted",
         "all_negative", "tiny", "tiny_zero", "inside", "beyond", "unit", "huge", "sparse",
         "integers", "bimodal"]
PATTERNS = ["steady", "growing", "shrinking", "drift", "const_then", "then_const", "alternating"]
SHAPES = [(64,), (4, 33), (2, 3, 5, 7), (300,), (1, 8, 6, 6), (17,), (3, 100), (1000,)]


def gen_sweep(w, rng):
    """Every configuration over rotating distributions, patterns, shapes and batch counts."""
    n = 0
    cfgs = configs()
    for i, (label, kw) in enumerate(cfgs):
        reps = 12 if label == "default" else 6
        for j in range(reps):
            k = i * 7 + j * 5
            dist = DISTS[k % len(DISTS)]
            pattern = PATTERNS[(i + 3 * j) % len(PATTERNS)]
            shape = SHAPES[(i + j) % len(SHAPES)]
            nb = 1 + (i * 3 + j * 4) % 10
            if "qint32" in label or "bins3000" in label:
                shape = SHAPES[j % 3]  # the search is slow in PyTorch for these
            batches = stream(rng, dist, pattern, shape, nb)
            n += add_case(w, "sweep/%s/%s_%s_%db_%s" % (label, dist, pattern, nb,
                                                        "x".join(map(str, shape))), kw, batches)
    return n


def gen_distributions(w, rng):
    """Every distribution with the default observer and with default_histogram_observer's range,
    one and several batches."""
    n = 0
    for i, dist in enumerate(DISTS + ["constant", "constant_negative", "zeros"]):
        for nb, kw in ((1, {}), (4, {"quant_min": 0, "quant_max": 127}),
                       (7, {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric})):
            shape = SHAPES[(i + nb) % len(SHAPES)]
            pattern = "steady" if nb == 1 else PATTERNS[(i + nb) % len(PATTERNS)]
            batches = stream(rng, dist, pattern, shape, nb)
            n += add_case(w, "dist/%s/%s_%db_%s" % (dist, pattern, nb, "x".join(map(str, shape))),
                          kw, batches)
    return n


def explicit(batches):
    return np.stack([np.asarray(b, dtype=F32) for b in batches])


def gen_special(w, rng):
    """Hand-made streams for the quirks of spec 1.6."""
    cases = [
        # histc over [int(min), int(max)]: values outside are dropped from the counts
        ("truncation/beyond_one_batch", {}, explicit([[-3.7, -3.2, -2.9, 0.0, 4.9, 5.0, 5.2]])),
        ("truncation/inside_unit", {}, explicit([[-0.9, -0.5, 0.0, 0.3, 0.95]])),
        ("truncation/positive_fraction", {}, explicit([[0.25, 0.5, 0.75, 1.5, 1.75]])),
        ("truncation/merge_same_int", {}, explicit([[2.1, 2.5, 2.9, 2.2], [2.05, 2.95, 2.4, 2.6]])),
        ("truncation/integers_at_edges", {}, explicit([[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 3.0],
                                                       [-2.0, 3.0, 1.0, 1.0, 0.0, -1.0, 2.0]])),
        ("truncation/two_values", {"dtype": torch.qint8}, explicit([[-1.5, 2.5] * 4])),
        ("truncation/all_dropped", {}, explicit([[3.25, 3.5, 3.75, 3.9], [3.3, 3.6, 3.95, 3.1]])),
        # constant data: the next batch starts over (reset rule)
        ("reset/constant_then_random", {}, np.stack([np.full(50, 2.5, F32),
                                                     rng.standard_normal(50).astype(F32)])),
        ("reset/constant_twice_then_random", {},
         np.stack([np.full(40, -1.0, F32), np.full(40, 4.0, F32),
                   rng.standard_normal(40).astype(F32)])),
        ("reset/constant", {}, explicit([[2.5] * 16])),
        ("reset/constant_negative", {"dtype": torch.qint8}, explicit([[-2.5] * 9, [-2.5] * 9])),
        ("reset/zeros", {}, explicit([[0.0] * 8])),
        ("reset/zeros_symmetric", {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric},
         explicit([[0.0] * 8, [0.0] * 8])),
        ("reset/constant_large", {}, explicit([[1e10, 1e10, 1e10]])),
        ("reset/constant_large_then_random", {}, explicit([[1e10, 1e10], [1.0, 2.0]])),
        ("reset/one_element", {}, explicit([[0.75]])),
        ("reset/one_element_stream", {}, explicit([[0.75], [-1.25], [3.5], [0.0]])),
        # signed zeros (torch.aminmax's lane order decides the sign)
        ("zeros/negative_then_positive", {}, explicit([[-0.0, 0.0]])),
        ("zeros/positive_then_negative", {}, explicit([[0.0, -0.0]])),
        ("zeros/mixed_18", {}, explicit([[0.0] * 9 + [-0.0] * 9])),
        ("zeros/mixed_then_data", {}, explicit([[-0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, 0.0,
                                                -0.0], [0.5] * 5 + [-0.0] * 5])),
        # ranges: growing a lot, shrinking, one-sided, far from zero, tiny
        ("range/grow_x40", {}, np.stack([rng.uniform(-0.5, 0.5, 64).astype(F32),
                                         rng.uniform(-20.0, 20.0, 64).astype(F32)])),
        ("range/grow_right_only", {}, np.stack([rng.uniform(0.0, 1.0, 64).astype(F32),
                                                rng.uniform(0.0, 9.0, 64).astype(F32)])),
        ("range/grow_left_only", {}, np.stack([rng.uniform(-1.0, 0.0, 64).astype(F32),
                                               rng.uniform(-9.0, 0.0, 64).astype(F32)])),
        ("range/inside_previous", {}, np.stack([rng.uniform(-4.0, 4.0, 64).astype(F32),
                                                rng.uniform(-1.0, 1.0, 64).astype(F32),
                                                rng.uniform(-2.0, 2.0, 64).astype(F32)])),
        ("range/shifted_100_101", {}, np.stack([rng.uniform(100.0, 101.0, 200).astype(F32)
                                                for _ in range(3)])),
        ("range/shifted_negative", {"dtype": torch.qint8},
         np.stack([rng.uniform(-101.0, -100.0, 200).astype(F32) for _ in range(3)])),
        ("range/tiny_1e-6", {}, np.stack([(rng.standard_normal(100) * 1e-6).astype(F32)
                                          for _ in range(3)])),
        ("range/tiny_offset", {}, np.stack([(1.0 + rng.uniform(0, 1e-6, 100)).astype(F32)
                                            for _ in range(3)])),
        ("range/large_1e15", {}, np.stack([(rng.standard_normal(100) * 1e15).astype(F32)
                                           for _ in range(2)])),
        ("range/large_1e18", {}, explicit([[1e18, 2e18, -5e17]])),
        ("range/single_outlier", {}, np.stack([
            np.concatenate([rng.standard_normal(499) * 0.1, [40.0]]).astype(F32),
            (rng.standard_normal(500) * 0.1).astype(F32)])),
        ("range/multi_outliers", {"dtype": torch.qint8, "qscheme": torch.per_tensor_symmetric},
         np.stack([np.concatenate([rng.standard_normal(495), [30.0, -25.0, 18.0, 40.0, -33.0]])
                   .astype(F32) for _ in range(3)])),
        # PyTorch raises in forward(): the observer keeps its previous state
        ("error/beyond_int64", {}, explicit([[1e19, 2e19]])),
        ("error/beyond_int64_later", {}, explicit([[1.0, 2.0], [1.0, 3e19]])),
        ("error/denormal_width", {}, explicit([[0.0, 1e-44], [0.0, 1e-43]])),
    ]
    n = 0
    for name, kw, batches in cases:
        n += add_case(w, "special/" + name, kw, batches)
    # realistic activations: conv outputs after ReLU, several batches
    for i, (shape, nb) in enumerate((((1, 16, 14, 14), 3), ((1, 8, 28, 28), 2),
                                     ((2, 32, 7, 7), 4))):
        batches = np.stack([np.maximum(rng.standard_normal(shape) * (1 + 0.2 * b), 0).astype(F32)
                            for b in range(nb)])
        n += add_case(w, "activations/relu_%s_%db" % ("x".join(map(str, shape)), nb), {}, batches)
        batches = np.stack([(rng.standard_normal(shape) * (1 + 0.2 * b)).astype(F32)
                            for b in range(nb)])
        n += add_case(w, "activations/normal_%s_%db_qint8" % ("x".join(map(str, shape)), nb),
                      {"dtype": torch.qint8}, batches)
    return n


def gen_kernels(w, rng):
    """torch.sum and torch.aminmax of vectors, for the emulations of their reduction orders."""
    n = 0
    sizes = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256,
             257, 500, 511, 512, 513, 1000, 1023, 1024, 1025, 2047, 2048, 2049, 3000, 4095, 4096,
             4097, 6000, 8192, 8193, 16384, 20000]
    for size in sizes:
        x = (rng.standard_normal(size) * rng.exponential(1.0, size) * 100.0).astype(F32)
        total = torch.from_numpy(x).sum().item()
        w.case("kernel/torch_sum/%d" % size, [("check", "torch_sum"),
                                             ("input", w.npy("sum_%05d" % size, x)),
                                             ("sum", fmt_f32(total))])
        n += 1
    for i, size in enumerate([1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 25, 31, 40, 64, 100]):
        for variant in range(3):
            x = np.where(rng.random(size) < 0.5, F32(-0.0), F32(0.0)).astype(F32)
            if variant == 1:
                x[rng.random(size) < 0.3] = F32(1.5)
            elif variant == 2:
                x[rng.random(size) < 0.3] = F32(-1.5)
            mn, mx = torch.aminmax(torch.from_numpy(x))
            w.case("kernel/aminmax/%d_%d" % (size, variant),
                   [("check", "aminmax"), ("input", w.npy("aminmax_%03d_%d" % (size, variant), x)),
                    ("min_val", fmt_f32(mn.item())), ("max_val", fmt_f32(mx.item()))])
            n += 1
    return n


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    w = CaseWriter(out_dir, "cquant golden data: HistogramObserver")
    counts = {
        "special": gen_special(w, rng),
        "sweep": gen_sweep(w, rng),
        "dist": gen_distributions(w, rng),
        "kernel": gen_kernels(w, rng),
    }
    w.write([
        "format: tools/golden/README.md and the docstring of tools/golden/gen_histogram.py;",
        "'input' holds the batches stacked on a new first axis",
        "torch CPU capability %s, %d thread(s)" % (os.environ["ATEN_CPU_CAPABILITY"],
                                                   torch.get_num_threads()),
    ] + ["%s: %d cases" % kv for kv in counts.items()])


if __name__ == "__main__":
    main()
