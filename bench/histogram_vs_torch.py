#!/usr/bin/python3
"""HistogramObserver: cquant (bench_histogram) against PyTorch 1.13 on the same batches.

Creates realistic activation batches (default: 10 batches of 1x64x56x56, the output of a ResNet
stage-1 convolution after ReLU, with the scale drifting between batches), saves them as .npy in a
temporary folder, times PyTorch's HistogramObserver (forward over every batch + calculate_qparams,
median of several runs, one thread as cquant uses one), runs the C benchmark on the same files,
checks that both give the same range, scale and zero point bit for bit, and prints one JSON object
with both timings and the speed ratio.

Usage: /usr/bin/python3 bench/histogram_vs_torch.py [--bench PATH] [--batches N]
           [--shape 1,64,56,56] [--data relu|normal] [--reps N] [--c-reps N]
           [--config "key=value ..."]
Exit status 1 if the results differ.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.ao.quantization.observer import HistogramObserver  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPES = {"quint8": torch.quint8, "qint8": torch.qint8, "qint32": torch.qint32,
          "quint4x2": torch.quint4x2}
QSCHEMES = {"per_tensor_affine": torch.per_tensor_affine,
            "per_tensor_symmetric": torch.per_tensor_symmetric}


def torch_kwargs(config):
    """cq_observer_config_set pairs -> HistogramObserver keyword arguments."""
    kw = {}
    for pair in config.split():
        key, value = pair.split("=", 1)
        if key == "observer":
            continue
        if key == "dtype":
            kw[key] = DTYPES[value]
        elif key == "qscheme":
            kw[key] = QSCHEMES[value]
        elif key == "reduce_range":
            kw[key] = value in ("1", "true", "True")
        elif key == "eps":
            kw[key] = float(value)
        else:
            kw[key] = int(value)
    return kw


def make_batches(n, shape, data, seed):
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n):
        x = rng.standard_normal(shape) * (1.0 + 0.15 * b) + 0.05 * b
        if data == "relu":
            x = np.maximum(x, 0.0)
        out.append(x.astype(np.float32))
    return out


def time_torch(batches, kw, reps):
    tensors = [torch.from_numpy(b) for b in batches]
    times, result = [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(reps):
            t0 = time.perf_counter()
            obs = HistogramObserver(**kw)
            for t in tensors:
                obs(t)
            scale, zp = obs.calculate_qparams()
            times.append(time.perf_counter() - t0)
            result = (obs.min_val.item(), obs.max_val.item(), scale.item(), int(zp.item()))
    return float(np.median(times)), float(np.min(times)), result


def find_bench(path):
    """--bench, else build/bench_histogram (make's default), else the newest build-*/ one."""
    if path:
        return path
    root = os.path.abspath(os.path.join(HERE, ".."))
    candidates = [os.path.join(root, "build", "bench_histogram")]
    others = [os.path.join(root, d, "bench_histogram") for d in os.listdir(root)
              if d.startswith("build-")]
    candidates += sorted((c for c in others if os.path.exists(c)), key=os.path.getmtime,
                         reverse=True)
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    sys.exit("bench_histogram not found; build first (make) or pass --bench")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--shape", default="1,64,56,56")
    ap.add_argument("--data", default="relu", choices=("relu", "normal"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--c-reps", type=int, default=31)
    ap.add_argument("--config", default="")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(1)
    shape = tuple(int(s) for s in args.shape.split(","))
    batches = make_batches(args.batches, shape, args.data, args.seed)
    kw = torch_kwargs(args.config)
    bench = find_bench(args.bench)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, b in enumerate(batches):
            path = os.path.join(tmp, "batch_%03d.npy" % i)
            np.save(path, b)
            files.append(path)
        cmd = [bench, "--reps", str(args.c_reps)]
        if args.config:
            cmd += ["--config", args.config]
        c = json.loads(subprocess.run(cmd + files, check=True, capture_output=True,
                                      text=True).stdout)
    t_med, t_min, (tmin, tmax, tscale, tzp) = time_torch(batches, kw, args.reps)
    same = (c["min_val"] == tmin and c["max_val"] == tmax and c["scale"] == tscale
            and c["zero_point"] == tzp)
    print(json.dumps({
        "benchmark": "HistogramObserver forward x%d + calculate_qparams" % args.batches,
        "batch_shape": list(shape),
        "data": args.data,
        "config": args.config or "defaults",
        "torch": {"version": torch.__version__, "threads": torch.get_num_threads(),
                  "median_s": t_med, "min_s": t_min, "scale": tscale, "zero_point": tzp},
        "cquant": {"median_s": c["median_s"], "min_s": c["min_s"],
                   "update_median_s": c["update_median_s"],
                   "qparams_median_s": c["qparams_median_s"], "scale": c["scale"],
                   "zero_point": c["zero_point"]},
        "identical": same,
        "speedup": t_med / c["median_s"],
    }, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
