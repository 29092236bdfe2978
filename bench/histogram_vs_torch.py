#!/usr/bin/python3
"""HistogramObserver: cquant (bench_histogram) against PyTorch 1.13 on the same batches.

Creates realistic activation batches (default: 10 batches of 1x64x56x56, the output of a ResNet
stage-1 convolution after ReLU, with the scale drifting between batches), saves them as .npy in a
temporary folder and times forward() over every batch + calculate_qparams() in two setups:

  single_thread: cquant with 1 thread           vs  PyTorch with torch.set_num_threads(1)
  all_cores:     cquant with --threads N       vs  PyTorch with torch.set_num_threads(N)
                 (N = --threads, by default the number of CPUs: both use every core. PyTorch's
                 own default, torch.get_num_threads() at start-up, is recorded in the report; a
                 build whose default is one thread would otherwise be handicapped)

The setups are measured in --rounds interleaved rounds (each round times all four
configurations, so that load from other processes falls on all of them alike); every timing is the
median of several runs, and the report gives, per setup and implementation, the median over the
rounds and the speed ratio of those medians (plus the range of the per-round ratios, and every
round's figures). Every run of either implementation must give the same range, scale and zero
point bit for bit (floats compared as Python reprs; bench_histogram checks its own runs against
each other); one JSON object is printed.

On a shared machine other processes distort the multi-threaded timings most (a thread that loses
its core stalls the others at the next synchronisation). So each round first samples how busy the
CPUs are (from /proc/stat, over 0.3 s), waits up to --wait-idle seconds for them to fall below
--idle-below percent, and the report lists each round's figure and repeats the summary over the
rounds that started idle ("idle_rounds").

Usage: /usr/bin/python3 bench/histogram_vs_torch.py [--bench PATH] [--batches N]
           [--shape 1,64,56,56] [--data relu|normal] [--rounds N] [--reps N] [--c-reps N]
           [--threads N] [--wait-idle S] [--idle-below P] [--config "key=value ..."]
Exit status 1 if any result differs.
"""
import argparse
import json
import os
import statistics
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


def time_torch(tensors, kw, reps, threads):
    """Median and minimum seconds of `reps` runs with `threads` intra-op threads, and the result
    of every run as (min_val, max_val, scale, zero_point) reprs."""
    torch.set_num_threads(threads)
    times, results = [], set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(reps):
            t0 = time.perf_counter()
            obs = HistogramObserver(**kw)
            for t in tensors:
                obs(t)
            scale, zp = obs.calculate_qparams()
            times.append(time.perf_counter() - t0)
            results.add((repr(obs.min_val.item()), repr(obs.max_val.item()), repr(scale.item()),
                         int(zp.item())))
    return statistics.median(times), min(times), results


def cpu_busy_percent(interval=0.3):
    """Percent of CPU time not idle over `interval` seconds (all CPUs), or None without /proc."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total, idle + iowait
    try:
        t1, i1 = sample()
        time.sleep(interval)
        t2, i2 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 100.0 * (1.0 - (i2 - i1) / max(1, t2 - t1))


def wait_for_idle(limit_s, below):
    """Samples the CPU load until it is below `below` percent or `limit_s` seconds have passed;
    returns the last sample."""
    deadline = time.monotonic() + limit_s
    while True:
        busy = cpu_busy_percent()
        if busy is None or busy < below or time.monotonic() >= deadline:
            return busy
        time.sleep(1.0)


def run_cquant(bench, files, reps, threads, config):
    """bench_histogram's JSON (its timings are the median / minimum of `reps` runs, its result
    that of the last run; the runs are deterministic) and its result as reprs."""
    cmd = [bench, "--reps", str(reps), "--threads", str(threads)]
    if config:
        cmd += ["--config", config]
    c = json.loads(subprocess.run(cmd + files, check=True, capture_output=True, text=True).stdout)
    result = (repr(c["min_val"]), repr(c["max_val"]), repr(c["scale"]), int(c["zero_point"]))
    return c, result


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


def summary(torch_times, cquant_times, threads):
    t_med, c_med = statistics.median(torch_times), statistics.median(cquant_times)
    ratios = [t / c for t, c in zip(torch_times, cquant_times)]
    return {
        "threads": threads,
        "torch_median_s": t_med,
        "cquant_median_s": c_med,
        "speedup": t_med / c_med,
        "speedup_per_round": {"min": min(ratios), "median": statistics.median(ratios),
                              "max": max(ratios)},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--shape", default="1,64,56,56")
    ap.add_argument("--data", default="relu", choices=("relu", "normal"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=7, help="PyTorch runs per round and setup")
    ap.add_argument("--c-reps", type=int, default=31, help="cquant runs per round and setup")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads of the all_cores setup (0: the number of CPUs)")
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="seconds to wait, before each round, for the CPUs to be idle")
    ap.add_argument("--idle-below", type=float, default=20.0,
                    help="CPU busy percentage counted as idle")
    ap.add_argument("--config", default="")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch_default_threads = torch.get_num_threads()
    all_threads = args.threads or os.cpu_count() or 1
    shape = tuple(int(s) for s in args.shape.split(","))
    batches = make_batches(args.batches, shape, args.data, args.seed)
    tensors = [torch.from_numpy(b) for b in batches]
    kw = torch_kwargs(args.config)
    bench = find_bench(args.bench)
    setups = (("single_thread", 1), ("all_cores", all_threads))
    times = {(name, impl): [] for name, _ in setups for impl in ("torch", "cquant")}
    results = set()
    c_phases = {name: [] for name, _ in setups}
    busy_before_round = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, b in enumerate(batches):
            path = os.path.join(tmp, "batch_%03d.npy" % i)
            np.save(path, b)
            files.append(path)
        for _ in range(args.rounds):
            busy = wait_for_idle(args.wait_idle, args.idle_below)
            busy_before_round.append(None if busy is None else round(busy, 1))
            for name, threads in setups:
                t_med, _, t_results = time_torch(tensors, kw, args.reps, threads)
                c, c_result = run_cquant(bench, files, args.c_reps, threads, args.config)
                times[(name, "torch")].append(t_med)
                times[(name, "cquant")].append(c["median_s"])
                c_phases[name].append((c["update_median_s"], c["qparams_median_s"]))
                results |= t_results
                results.add(c_result)
    same = len(results) == 1
    (min_val, max_val, scale, zero_point), = results if same else (("?",) * 4,)
    report = {
        "benchmark": "HistogramObserver forward x%d + calculate_qparams" % args.batches,
        "batch_shape": list(shape),
        "data": args.data,
        "config": args.config or "defaults",
        "torch_version": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_default_threads": torch_default_threads,
        "rounds": args.rounds,
        "cpu_busy_percent_before_each_round": busy_before_round,
        "loadavg_at_end": [round(v, 2) for v in os.getloadavg()],
        "runs_per_round": {"torch": args.reps, "cquant": args.c_reps},
        "identical": same,
        "result": {"min_val": min_val, "max_val": max_val, "scale": scale,
                   "zero_point": zero_point} if same else sorted(results),
    }
    idle = [b is not None and b < args.idle_below for b in busy_before_round]
    report["rounds_started_idle"] = sum(idle)
    for name, threads in setups:
        t_times, c_times = times[(name, "torch")], times[(name, "cquant")]
        s = summary(t_times, c_times, threads)
        s["cquant_update_median_s"] = statistics.median(p[0] for p in c_phases[name])
        s["cquant_qparams_median_s"] = statistics.median(p[1] for p in c_phases[name])
        if any(idle):
            # the same over the rounds that started on idle CPUs
            s["idle_rounds"] = summary([t for t, i in zip(t_times, idle) if i],
                                       [c for c, i in zip(c_times, idle) if i], threads)
        s["per_round"] = [{"cpu_busy_before": b, "torch_s": t, "cquant_s": c}
                          for b, t, c in zip(busy_before_round, t_times, c_times)]
        report[name] = s
    print(json.dumps(report, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
