#!/usr/bin/python3
"""Golden data for cquant's TensorRT-style calibrators (observer kinds percentile, mse, entropy).

The reference is NVIDIA's pytorch-quantization (NVIDIA/TensorRT, tools/pytorch-quantization):
HistogramCalibrator.collect with torch_hist=True, num_bins=2048, skip_zeros=False, and
compute_amax("percentile" | "mse" | "entropy") from pytorch_quantization/calib/histogram.py, the
MSE search quantizing with fake_tensor_quant's CPU path (_tensor_quant in tensor_quant.py).
pytorch-quantization cannot be installed here, so this file re-implements those functions from
their public source, step by step (torch for what the source does with torch, NumPy for what it does
with NumPy). The KL divergence is scipy.stats.entropy when scipy is installed (Debian's
python3-scipy; much faster), else a written-out copy of it (same numpy sums, libm log through
math.log); on the smaller cases both run and must agree bit for bit. A literal line-by-line
transcription of the source's entropy loop is checked against the vectorised one on a few cases.

cquant's choices on top of the reference (see src/quant/observer_calibrators.c):
* num_bits = 8; "unsigned" = no negative value was observed (also picks the [0, amax] range);
* the clipping range [0, amax] or [-amax, amax] becomes (scale, zero_point) with PyTorch 1.13's
  _calculate_qparams for the observer's dtype / qscheme / quant range;
* the MSE search sums its float32 error terms in order in double (the reference takes a float32
  mean, on CUDA); where a float32 mean (torch CPU) would pick another bin, the case also records
  that pick as amax_f32_mean.

torch runs with one thread: for grids over 32768 edges, torch's float32 linspace/arange results
depend on how many threads split them.

Each case feeds one calibrator a stream of batches (stacked on a new first axis in one .npy) and
records: amax (float32), num_bins (histogram length), last_edge, min_val/max_val, scale, zero_point.

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_calibrators.py [OUT_DIR]
"""
import math
import os
import sys
import warnings
from collections import Counter

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_quant_math import DTYPES, QSCHEMES, SEED, CaseWriter, RuleObserver, fmt_f32  # noqa: E402

try:
    import scipy.stats
    HAVE_SCIPY = True
except ImportError:  # the written-out entropy is then the only one
    HAVE_SCIPY = False

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "calibrators")
NUM_BITS = 8


# --- HistogramCalibrator.collect (torch_hist=True, skip_zeros=False) --------------------------

class Histogram:
    """The collection half of pytorch-quantization's HistogramCalibrator, per its source."""

    def __init__(self, num_bins=2048):
        self.num_bins = num_bins
        self.calib_bin_edges = None
        self.calib_hist = None
        self.saw_negative = False      # cquant: decides unsigned and the clipping range
        self.min_val = math.inf         # cquant: the real running range, for the repr
        self.max_val = -math.inf

    def collect(self, x):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.min_val = min(self.min_val, float(x.min()))
        self.max_val = max(self.max_val, float(x.max()))
        if torch.min(x) < 0.:
            self.saw_negative = True
            x = x.abs()
        x = x.float()
        with torch.no_grad():
            x_max = x.max()
            if self.calib_bin_edges is None and self.calib_hist is None:
                self.calib_hist = torch.histc(x, bins=self.num_bins, min=0, max=x_max)
                self.calib_bin_edges = torch.linspace(0, x_max, self.num_bins + 1)
            else:
                if x_max > self.calib_bin_edges[-1]:
                    width = self.calib_bin_edges[1] - self.calib_bin_edges[0]
                    self.num_bins = int((x_max / width).ceil().item())
                    self.calib_bin_edges = torch.arange(0, x_max + width, width, device=x.device)
                hist = torch.histc(x, bins=self.num_bins, min=0, max=self.calib_bin_edges[-1])
                hist[:self.calib_hist.numel()] += self.calib_hist
                self.calib_hist = hist

    def numpy(self):
        """What compute_amax starts from: int32 counts and the float32 edges."""
        return self.calib_hist.int().cpu().numpy(), self.calib_bin_edges.cpu().numpy()


# --- scipy.stats.entropy, written out ----------------------------------------------------------

def rel_entr(x, y):
    """scipy.special.rel_entr (its C code calls libm log, as math.log does)."""
    if math.isnan(x) or math.isnan(y):
        return math.nan
    if x > 0 and y > 0:
        return x * math.log(x / y)
    if x == 0 and y >= 0:
        return 0.0
    return math.inf


def entropy_written_out(pk, qk):
    """scipy.stats.entropy(pk, qk) of scipy 1.10: normalise both with np.sum, sum rel_entr."""
    pk = np.asarray(pk)
    pk = 1.0 * pk / np.sum(pk, axis=0, keepdims=True)
    qk = np.asarray(qk)
    with np.errstate(invalid="ignore", divide="ignore"):
        qk = 1.0 * qk / np.sum(qk, axis=0, keepdims=True)
    vec = np.array([rel_entr(float(a), float(b)) for a, b in zip(pk, qk)], dtype=np.float64)
    return np.sum(vec, axis=0)


def entropy(pk, qk, cross_check):
    """scipy.stats.entropy when scipy is installed (fast), else the written-out version; with
    cross_check both, asserting equal bits."""
    if not HAVE_SCIPY:
        return entropy_written_out(pk, qk)
    with np.errstate(invalid="ignore", divide="ignore"):
        theirs = scipy.stats.entropy(pk, qk)
    if cross_check:
        ours = entropy_written_out(pk, qk)
        assert np.array_equal(np.float64(ours), np.float64(theirs), equal_nan=True), (ours, theirs)
    return theirs


# --- compute_amax ------------------------------------------------------------------------------

def compute_amax_entropy(calib_hist, calib_bin_edges, num_bits, unsigned, stride=1, start_bin=128,
                         cross_check=False):
    """_compute_amax_entropy, with the per-bin Python loops done by np.bincount (which adds in the
    same index order)."""
    bins = calib_hist[:]
    bins[0] = bins[1]
    total_data = np.sum(bins)
    divergences = []
    arguments = []
    nbins = 1 << (num_bits - 1 + int(unsigned))
    starting = start_bin
    stop = len(bins)
    new_density_counts = np.zeros(nbins, dtype=np.float64)
    for i in range(starting, stop + 1, stride):
        new_density_counts.fill(0)
        space = np.linspace(0, i, num=nbins + 1)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        present = digitized_space != -1
        new_density_counts[:] = np.bincount(digitized_space[present],
                                            weights=bins[:i][present].astype(np.float64),
                                            minlength=nbins)
        counter = np.bincount(digitized_space[present], minlength=nbins)
        for key in np.nonzero(counter)[0]:
            new_density_counts[key] = new_density_counts[key] / counter[key]
        new_density = np.zeros(i, dtype=np.float64)
        new_density[present] = new_density_counts[digitized_space[present]]
        total_counts_new = np.sum(new_density) + np.sum(bins[i:])
        reference_density = np.array(bins[:len(digitized_space)])
        reference_density[-1] += np.sum(bins[i:])
        total_counts_old = np.sum(reference_density)
        if round(total_counts_new) != total_data or round(total_counts_old) != total_data:
            raise RuntimeError("Count mismatch! total_counts_new={}, total_counts_old={}, total_data={}"
                               .format(total_counts_new, total_counts_old, total_data))
        divergences.append(entropy(reference_density, new_density, cross_check))
        arguments.append(i)
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(nan_as_inf(divergences)[::-1])
    return calib_bin_edges[last_argmin * stride + starting], divergences


def compute_amax_entropy_literal(calib_hist, calib_bin_edges, num_bits, unsigned, stride=1,
                                 start_bin=128):
    """The source's loop transcribed as is (slow); only used to check the vectorised one."""
    bins = calib_hist[:]
    bins[0] = bins[1]
    divergences = []
    nbins = 1 << (num_bits - 1 + int(unsigned))
    new_density_counts = np.zeros(nbins, dtype=np.float64)
    for i in range(start_bin, len(bins) + 1, stride):
        new_density_counts.fill(0)
        space = np.linspace(0, i, num=nbins + 1)
        digitized_space = np.digitize(range(i), space) - 1
        digitized_space[bins[:i] == 0] = -1
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density_counts[digitized] += bins[idx]
        counter = Counter(digitized_space)
        for key, val in counter.items():
            if key != -1:
                new_density_counts[key] = new_density_counts[key] / val
        new_density = np.zeros(i, dtype=np.float64)
        for idx, digitized in enumerate(digitized_space):
            if digitized != -1:
                new_density[idx] = new_density_counts[digitized]
        reference_density = np.array(bins[:len(digitized_space)])
        reference_density[-1] += np.sum(bins[i:])
        divergences.append(entropy_written_out(reference_density, new_density))
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(nan_as_inf(divergences)[::-1])
    return calib_bin_edges[last_argmin * stride + start_bin], divergences


def fake_tensor_quant(inputs, amax, num_bits=8, unsigned=False, narrow_range=True):
    """FakeTensorQuantFunction.forward on CPU: _tensor_quant, then outputs / scale."""
    min_amax = amax.min()
    if min_amax < 0:
        raise ValueError("Negative values in amax")
    max_bound = torch.tensor((2.0 ** (num_bits - 1 + int(unsigned))) - 1.0, device=amax.device)
    if unsigned:
        min_bound = torch.tensor(0.0)
    elif narrow_range:
        min_bound = -max_bound
    else:
        min_bound = -max_bound - 1
    scale = max_bound / amax
    epsilon = 1. / (1 << 24)
    if min_amax <= epsilon:
        zero_amax_mask = (amax <= epsilon)
        scale[zero_amax_mask] = 0
    outputs = torch.clamp((inputs * scale).round_(), min_bound, max_bound)
    if min_amax <= epsilon:
        scale[zero_amax_mask] = 1.
    return outputs / scale.to(inputs.dtype)


def nan_as_inf(values):
    """cquant's one deviation from the reference: a NaN candidate (an empty Q, an overflowing error)
    never wins the argmin; the reference would pick it and clip at a meaningless threshold."""
    values = np.array(values, dtype=np.float64)
    return np.where(np.isnan(values), np.inf, values)


def compute_amax_mse(calib_hist, calib_bin_edges, num_bits, unsigned, stride=1, start_bin=128):
    """_compute_amax_mse on CPU. Returns cquant's pick (the float32 terms summed in order in
    double, first minimum) and the pick of the reference's float32 mean (torch CPU order), which
    can differ by a bin where the error curve is flat."""
    counts = torch.from_numpy(calib_hist[:]).float()
    edges = torch.from_numpy(calib_bin_edges[:]).float()
    centers = (edges[1:] + edges[:-1]) / 2
    mses, mses_double, arguments = [], [], []
    for i in range(start_bin, len(centers), stride):
        amax = centers[i]
        quant_centers = fake_tensor_quant(centers, amax, num_bits, unsigned)
        terms = (quant_centers - centers) ** 2 * counts
        mses.append(terms.mean().item())
        mses_double.append(np.cumsum(terms.numpy().astype(np.float64))[-1])
        arguments.append(i)
    argmin = int(np.argmin(nan_as_inf(mses)))
    argmin_double = int(np.argmin(nan_as_inf(mses_double)))
    reference = centers[arguments[argmin]].item()
    return centers[arguments[argmin_double]].item(), reference


def compute_amax_percentile(calib_hist, calib_bin_edges, percentile):
    if percentile < 0 or percentile > 100:
        raise ValueError("Invalid percentile. Must be in range 0 <= percentile <= 100.")
    total = calib_hist.sum()
    cdf = np.cumsum(calib_hist / total)
    idx = np.searchsorted(cdf, percentile / 100)
    return calib_bin_edges[idx]


# --- cases -------------------------------------------------------------------------------------

DEFAULTS = {"bins": 2048, "percentile": 99.99, "start_bin": 128, "stride": 1}
LITERAL_CHECKS = []  # names of cases whose entropy was also run through the literal loop
MSE_DIFFERENT = []   # mse cases where a float32 mean would pick another threshold
SCIPY_CHECKS = []    # entropy cases whose divergences were computed both ways


def qparams_of(opts, lo, hi):
    """PyTorch 1.13's _calculate_qparams for the observer options in `opts`."""
    kw = {"dtype": DTYPES[opts.get("dtype", "quint8")],
          "qscheme": QSCHEMES[opts.get("qscheme", "per_tensor_affine")],
          "reduce_range": bool(int(opts.get("reduce_range", "0")))}
    if "quant_min" in opts:
        kw["quant_min"] = int(opts["quant_min"])
        kw["quant_max"] = int(opts["quant_max"])
    obs = RuleObserver(**kw)
    s, z = obs._calculate_qparams(torch.tensor(lo), torch.tensor(hi))
    return s.item(), int(z.item()), obs.quant_min, obs.quant_max


def run_case(w, name, method, batches, input_file, opts=None, literal=False):
    opts = dict(opts or {})
    cfg = dict(DEFAULTS)
    for key in ("bins", "start_bin", "stride"):
        if key in opts:
            cfg[key] = int(opts[key])
    if "percentile" in opts:
        cfg["percentile"] = float(opts["percentile"])
    h = Histogram(cfg["bins"])
    extra = []
    for b in batches:
        h.collect(b)
    hist, edges = h.numpy()
    unsigned = not h.saw_negative
    if method == "percentile":
        amax = compute_amax_percentile(hist, edges, cfg["percentile"])
    elif method == "mse":
        amax, amax_f32_mean = compute_amax_mse(hist, edges, NUM_BITS, unsigned, cfg["stride"],
                                               cfg["start_bin"])
        if amax_f32_mean != amax:
            MSE_DIFFERENT.append(name)
            extra.append(("amax_f32_mean", fmt_f32(amax_f32_mean)))
    else:
        cross_check = len(hist) <= 640 or literal or name.startswith("random/0")
        if cross_check and HAVE_SCIPY:
            SCIPY_CHECKS.append(name)
        amax, div = compute_amax_entropy(hist.copy(), edges, NUM_BITS, unsigned, cfg["stride"],
                                         cfg["start_bin"], cross_check)
        if literal:
            amax2, div2 = compute_amax_entropy_literal(hist.copy(), edges, NUM_BITS, unsigned,
                                                       cfg["stride"], cfg["start_bin"])
            assert np.array_equal(div, div2, equal_nan=True) and amax == amax2, name
            LITERAL_CHECKS.append(name)
    amax = np.float32(amax)
    lo = np.float32(-amax) if h.saw_negative else np.float32(0.0)
    scale, zp, qmin, qmax = qparams_of(opts, float(lo), float(amax))
    config = " ".join(["observer=" + method] + ["%s=%s" % kv for kv in opts.items()])
    w.case(name, [
        ("config", config),
        ("input", input_file),
        ("quant_min", qmin),
        ("quant_max", qmax),
        ("num_bins", len(hist)),
        ("hist_fnv1a", fnv1a64(hist)),
        ("last_edge", fmt_f32(edges[-1])),
        ("min_val", fmt_f32(h.min_val)),
        ("max_val", fmt_f32(h.max_val)),
        ("unsigned", int(unsigned)),
        ("amax", fmt_f32(amax)),
        ("scale", fmt_f32(scale)),
        ("zero_point", zp),
    ] + extra)


def fnv1a64(counts):
    """FNV-1a (64-bit) of the int32 counts as little-endian bytes: a fingerprint of the whole
    histogram for the test to compare."""
    h = 0xcbf29ce484222325
    for byte in np.asarray(counts, dtype="<i4").tobytes():
        h = ((h ^ byte) * 0x100000001b3) & 0xffffffffffffffff
    return h


def stack(batches):
    return np.stack([np.asarray(b, dtype=np.float32) for b in batches])


def streams(rng):
    """(stem, batches) pairs: the data sets every method runs on."""
    out = []

    def add(stem, batches):
        out.append((stem, stack(batches)))

    add("normal", [rng.standard_normal(512) for _ in range(4)])
    add("normal_4d", [rng.standard_normal((2, 3, 8, 8)) * 0.5 + 0.1 for _ in range(3)])
    add("heavy_tailed", [rng.standard_t(2, 1024) for _ in range(3)])
    add("laplace", [rng.laplace(0.0, 0.2, 1024) for _ in range(2)])
    add("relu", [np.maximum(rng.standard_normal(1024), 0) for _ in range(4)])
    add("relu_lognormal", [rng.lognormal(-1.0, 1.0, 1024) for _ in range(3)])
    outl = [rng.standard_normal(1024) for _ in range(3)]
    outl[0][17] = 60.0
    outl[2][5] = -45.0
    add("outliers", outl)
    relu_outl = [np.maximum(rng.standard_normal(1024), 0) for _ in range(2)]
    relu_outl[0][3] = 40.0
    add("relu_outliers", relu_outl)
    add("growing", [rng.standard_normal(512) * s for s in (1.0, 1.4, 2.1)])
    add("growing_relu", [np.maximum(rng.standard_normal(512), 0) * s for s in (0.5, 0.8, 1.2)])
    add("shrinking", [rng.standard_normal(512) * s for s in (8.0, 1.0, 0.25)])
    add("grow_then_fit", [rng.uniform(-1, 1, 512), rng.uniform(-2.3, 2.3, 512),
                          rng.uniform(-2, 2, 512)])
    add("constant_pos", [np.full(64, 2.5)] * 2)
    add("constant_neg", [np.full(64, -1.5)] * 2)
    add("all_zero", [np.zeros(100)] * 2)
    add("tiny_5", [np.array([0.3, -1.2, 2.0, 0.7, 1.1])])
    add("tiny_1", [np.array([0.75])])
    add("tiny_pos_3", [np.array([1.0, 2.0, 3.0])])
    add("two_values", [np.array([0.0, 1.0] * 20)])
    add("small_scale", [rng.standard_normal(512) * 1e-6 for _ in range(2)])
    add("large_scale", [rng.standard_normal(512) * 1e20 for _ in range(2)])
    add("denormal_scale", [rng.standard_normal(256) * 1e-38 for _ in range(2)])
    add("negative_only", [-np.abs(rng.standard_normal(512)) for _ in range(2)])
    add("integers", [rng.integers(-20, 21, 1000).astype(np.float32) for _ in range(2)])
    add("mostly_zero", [np.where(rng.random(1024) < 0.9, 0.0, rng.standard_normal(1024))
                        for _ in range(2)])
    add("bimodal", [np.concatenate([rng.normal(-3, 0.1, 256), rng.normal(2, 0.3, 256)])
                    for _ in range(2)])
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Please use quant_min and quant_max")
    rng = np.random.default_rng(SEED)
    w = CaseWriter(out_dir, "cquant golden data: TensorRT-style histogram calibrators "
                            "(pytorch-quantization HistogramCalibrator)")
    ncases = 0
    print("scipy:", "cross-checking entropy" if HAVE_SCIPY else "not installed")
    for stem, data in streams(rng):
        f = w.npy(stem, data)
        for method in ("percentile", "mse", "entropy"):
            literal = method == "entropy" and stem in ("tiny_5", "constant_pos", "relu_outliers")
            run_case(w, "%s/%s" % (method, stem), method, list(data), f, literal=literal)
            ncases += 1

    # Options: the method parameters, the histogram size, and the qparam rule.
    normal = stack([rng.standard_normal(700) for _ in range(3)])
    fn = w.npy("options_normal", normal)
    relu = stack([np.maximum(rng.standard_normal(700), 0) for _ in range(3)])
    fr = w.npy("options_relu", relu)
    grow = stack([rng.standard_normal(300) * s for s in (1.0, 1.3, 1.9)])
    fg = w.npy("options_growing", grow)
    option_sets = [
        ("percentile", {"percentile": "99.9"}),
        ("percentile", {"percentile": "99"}),
        ("percentile", {"percentile": "50"}),
        ("percentile", {"percentile": "100"}),
        ("percentile", {"bins": "512"}),
        ("percentile", {"bins": "4095"}),
        ("mse", {"stride": "4"}),
        ("mse", {"start_bin": "1000"}),
        ("mse", {"bins": "512", "start_bin": "16"}),
        ("mse", {"bins": "4095"}),
        ("mse", {"bins": "100", "start_bin": "1"}),
        ("entropy", {"stride": "8"}),
        ("entropy", {"start_bin": "1024"}),
        ("entropy", {"bins": "512", "start_bin": "16"}),
        ("entropy", {"bins": "4095", "stride": "3"}),
        ("entropy", {"bins": "127", "start_bin": "1"}),
        ("entropy", {"bins": "2", "start_bin": "1"}),
        ("percentile", {"dtype": "qint8"}),
        ("mse", {"qscheme": "per_tensor_symmetric"}),
        ("entropy", {"dtype": "qint8", "qscheme": "per_tensor_symmetric"}),
        ("percentile", {"reduce_range": "1"}),
        ("mse", {"quant_min": "0", "quant_max": "127"}),
        ("entropy", {"dtype": "qint8", "quant_min": "-127", "quant_max": "127",
                     "qscheme": "per_tensor_symmetric"}),
        ("percentile", {"dtype": "quint4x2"}),
    ]
    # Values on a lattice land exactly on bin boundaries (histc's rounding matters).
    lattice = stack([np.round(rng.standard_normal(400) * 8) * 0.37 for _ in range(2)])
    fl = w.npy("options_lattice", lattice)
    for idx, (method, opts) in enumerate(option_sets):
        tag = "_".join("%s%s" % (k, v) for k, v in opts.items())
        for stem, data, f in (("normal", normal, fn), ("relu", relu, fr), ("growing", grow, fg),
                              ("lattice", lattice, fl)):
            run_case(w, "options/%s/%s/%s" % (method, tag, stem), method, list(data), f, opts)
            ncases += 1

    # A much wider later batch makes the histogram long (the bin width never changes).
    far = stack([rng.standard_normal(400) * s for s in (1.0, 6.0, 17.0)])
    ff = w.npy("growing_far", far)
    for method, opts in (("percentile", {}), ("mse", {"stride": "64", "start_bin": "2000"}),
                         ("entropy", {"stride": "97"})):
        tag = "_".join("%s%s" % (k, v) for k, v in opts.items()) or "default"
        run_case(w, "long/%s/%s" % (method, tag), method, list(far), ff, opts)
        ncases += 1

    # Randomised streams, every method, default options.
    for k in range(24):
        nb = int(rng.integers(1, 5))
        size = int(rng.integers(16, 600))
        scale = float(10.0 ** rng.uniform(-3, 3))
        kind = int(rng.integers(0, 4))
        batches = []
        for _ in range(nb):
            s = scale * float(rng.uniform(0.6, 1.6))
            if kind == 0:
                b = rng.standard_normal(size) * s
            elif kind == 1:
                b = np.maximum(rng.standard_normal(size), 0) * s
            elif kind == 2:
                b = rng.standard_t(3, size) * s
            else:
                b = rng.exponential(1.0, size) * s
            batches.append(b)
        data = stack(batches)
        f = w.npy("random_%02d" % k, data)
        for method in ("percentile", "mse", "entropy"):
            run_case(w, "random/%02d/%s" % (k, method), method, list(data), f)
            ncases += 1

    print("mse cases where a float32 mean picks another bin: %d %s" % (len(MSE_DIFFERENT),
                                                                     " ".join(MSE_DIFFERENT)))
    w.write([
        "format: tools/golden/README.md; 'input' holds the batches stacked on a new first axis",
        "reference: pytorch-quantization HistogramCalibrator.collect (torch_hist=True) and",
        "compute_amax, re-implemented from its public source (see gen_calibrators.py); torch with",
        "one thread; entropy: %s" % ("scipy.stats.entropy, equal bit for bit to the written-out "
                                     "version on %d cases" % len(SCIPY_CHECKS) if HAVE_SCIPY
                                     else "written-out scipy.stats.entropy"),
        "amax: the threshold; unsigned: 1 if no negative value was seen; the clipping range is",
        "[0, amax] if unsigned else [-amax, amax], turned into scale/zero_point by PyTorch's",
        "_calculate_qparams with the config's dtype/qscheme/range",
        "num_bins: histogram length; last_edge: calib_bin_edges[-1]; hist_fnv1a: FNV-1a 64 of",
        "the int32 counts as little-endian bytes",
        "entropy also checked against the literal source loop on: %s" % " ".join(LITERAL_CHECKS),
        "amax_f32_mean (mse only, when different): the pick of the reference's float32 mean;",
        "cquant sums the float32 error terms in order in double (amax)",
        "%d cases" % ncases,
    ])


if __name__ == "__main__":
    main()
