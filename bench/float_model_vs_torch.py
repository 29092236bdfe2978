#!/usr/bin/python3
"""Float forward of the seed's static model: cquant against PyTorch 1.13 on this machine.

Model: Sequential(Conv2d(2, 64, 3), ReLU(), Conv2d(64, 128, 3), ReLU()) on 1x2x28x28 and
16x2x28x28. Both run with the same weights (exported to safetensors), one thread each (OpenBLAS and
torch), median of many runs; the outputs are compared. Prints one JSON object per batch size with
both medians and cquant's time as a fraction of PyTorch's (the bar is <= 1.5).

Usage: /usr/bin/python3 bench/float_model_vs_torch.py [--bench build/bench_float_model] [--reps 50]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"
import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from export_safetensors import save_state_dict  # noqa: E402


def torch_median_ms(model, x, reps):
    times = []
    with torch.no_grad():
        for r in range(reps + 3):
            t0 = time.perf_counter()
            model(x)
            t1 = time.perf_counter()
            if r >= 3:
                times.append((t1 - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=os.path.join(HERE, "..", "build", "bench_float_model"))
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 64, 3), torch.nn.ReLU(),
                                torch.nn.Conv2d(64, 128, 3), torch.nn.ReLU()).eval()
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "w.safetensors")
        save_state_dict(model, weights)
        for batch in (1, 16):
            x = torch.rand(batch, 2, 28, 28)
            np.save(os.path.join(tmp, "x.npy"), x.numpy())
            out = subprocess.run([args.bench, weights, os.path.join(tmp, "x.npy"),
                                  os.path.join(tmp, "y.npy"), str(args.reps)],
                                 check=True, capture_output=True, text=True)
            ours = json.loads(out.stdout)
            theirs = torch_median_ms(model, x, args.reps)
            with torch.no_grad():
                want = model(x).numpy()
            got = np.load(os.path.join(tmp, "y.npy"))
            err = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12))
            print(json.dumps({"batch": batch, "cquant_median_ms": ours["median_ms"],
                              "torch_median_ms": round(theirs, 4),
                              "cquant_over_torch": round(ours["median_ms"] / theirs, 3),
                              "max_error_relative_to_max": err}))


if __name__ == "__main__":
    main()
