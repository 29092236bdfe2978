#!/usr/bin/python3
"""Dynamic quantized linear: cquant against PyTorch 1.13's quantized::linear_dynamic in one run.

    /usr/bin/python3 bench/bench_linear_dynamic.py [--bench BUILD/bench_qgemm] [--engine onednn]
                                                  [--shape M,K,N]... [--threads T]... [--reps R]

Times torch.ops.quantized.linear_dynamic (reduce_range=True, as nnqd.Linear calls it; weights
prepacked once) on the chosen engine with torch.set_num_threads(T), then runs
`bench_qgemm --dynamic` (cquant's dynamic linear with the same engine rule) on the same shapes and
thread counts, and prints one JSON object: median milliseconds of each and the ratio
torch_ms / cquant_ms (> 1: cquant is faster). Defaults: shapes 1,1024,1024 16,1024,1024
256,1024,1024; threads 1 and 2; 9 repetitions. Needs Debian's python3-torch. Not run by `make test`.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import torch


def time_torch(m, k, n, threads, engine, reps):
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine
    gen = torch.Generator().manual_seed(12345)
    x = torch.randn(m, k, generator=gen)
    w = torch.randn(n, k, generator=gen) * 0.05
    wq = torch.quantize_per_tensor(w, float(w.abs().max()) / 127.5, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(wq, torch.randn(n, generator=gen))
    calls = max(1, int(2e8 / (m * k * n)))
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(5):
            torch.ops.quantized.linear_dynamic(x, packed, True)
        for _ in range(reps):
            time.sleep(0.02)
            t0 = time.perf_counter()
            for _ in range(calls):
                torch.ops.quantized.linear_dynamic(x, packed, True)
            times.append((time.perf_counter() - t0) / calls * 1e3)
    times.sort()
    return times[len(times) // 2], times[0]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=os.path.join(here, "..", "build", "bench_qgemm"))
    ap.add_argument("--engine", default="onednn", choices=["onednn", "qnnpack"])
    ap.add_argument("--shape", action="append")
    ap.add_argument("--threads", action="append", type=int)
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    shapes = args.shape or ["1,1024,1024", "16,1024,1024", "256,1024,1024"]
    threads = args.threads or [1, 2]
    if not os.access(args.bench, os.X_OK):
        sys.exit("bench_linear_dynamic.py: %s not found; build first or pass --bench" % args.bench)
    cmd = [args.bench, "--dynamic", "--rule", args.engine, "--reps", str(args.reps)]
    for s in shapes:
        cmd += ["--shape", s]
    for t in threads:
        cmd += ["--threads", str(t)]
    cq = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    results = []
    for r in cq["results"]:
        torch_ms, torch_min = time_torch(r["m"], r["k"], r["n"], r["threads"], args.engine,
                                         args.reps)
        results.append({"m": r["m"], "k": r["k"], "n": r["n"], "threads": r["threads"],
                        "cquant_ms": r["cquant_ms"], "cquant_ms_min": r["cquant_ms_min"],
                        "torch_ms": round(torch_ms, 5), "torch_ms_min": round(torch_min, 5),
                        "ratio": round(torch_ms / r["cquant_ms"], 3)})
    print(json.dumps({"benchmark": "dynamic linear, cquant vs torch.ops.quantized.linear_dynamic",
                      "engine": args.engine, "torch": torch.__version__,
                      "cquant_isa": cq["cquant_isa"], "reps": args.reps, "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
