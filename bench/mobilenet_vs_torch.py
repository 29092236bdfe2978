#!/usr/bin/python3
"""A MobileNet-style int8 model at batch 1: cquant against PyTorch 1.13 on this machine.

Model: a 3x3 stride-2 stem (3 -> 32), ten inverted-residual blocks (1x1 expansion x6, 3x3 / 5x5 /
7x7 depthwise, 1x1 projection, BatchNorm, ReLU6, residual adds where the shapes allow), a 1x1 conv
to 320, global average pool and a linear head, on 1x3x112x112 (torch.manual_seed(0); BatchNorm
gammas 4-12, so the ReLU6s clip). It is exported to ONNX (opset 13), quantized by
`cquant quantize --mode static --backend onednn` on 8 calibration images, and timed by
`cquant bench` (median ms per run). PyTorch's side: the same float model through FX graph mode
(prepare_fx with get_default_qconfig_mapping, calibration on the same images, convert_fx) on its
onednn and qnnpack engines, and the float model; medians of --reps runs, torch.set_num_threads(T).
Both int8 models are also compared with the float model's output (mean absolute difference of the
10 logits), so a fast model that lost its accuracy would show.

Prints one JSON object: per thread count the medians and torch_onednn_ms / cquant_ms.

Usage: /usr/bin/python3 bench/mobilenet_vs_torch.py [--cquant build/cquant] [--threads 1 2]
       [--reps 200]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

HERE = os.path.dirname(os.path.abspath(__file__))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expand, k, stride):
        super().__init__()
        h = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.b = nn.Sequential(
            nn.Conv2d(cin, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, h, k, stride, k // 2, groups=h, bias=False), nn.BatchNorm2d(h),
            nn.ReLU6(), nn.Conv2d(h, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b(x)
        return x + y if self.use_res else y


def build_model():
    torch.manual_seed(0)
    blocks = [(32, 16, 1, 3, 1), (16, 24, 6, 3, 2), (24, 24, 6, 3, 1), (24, 40, 6, 5, 2),
              (40, 40, 6, 5, 1), (40, 80, 6, 3, 2), (80, 80, 6, 3, 1), (80, 112, 6, 5, 1),
              (112, 160, 6, 5, 2), (160, 160, 6, 7, 1)]
    m = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
                      *[InvertedResidual(*b) for b in blocks],
                      nn.Conv2d(160, 320, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(320, 10)).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(4, 12)
    return m


def median_ms(fn, reps):
    times = []
    with torch.no_grad():
        for r in range(reps + 10):
            t0 = time.perf_counter()
            fn()
            if r >= 10:
                times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def torch_int8(model, calib, engine):
    torch.backends.quantized.engine = engine
    qm = prepare_fx(model, get_default_qconfig_mapping(engine), example_inputs=(calib[:1],))
    with torch.no_grad():
        qm(calib)
    return convert_fx(qm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cquant", default=os.path.join(HERE, "..", "build", "cquant"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    model = build_model()
    calib = torch.rand(8, 3, 112, 112)
    x = calib[:1].clone()
    with torch.no_grad():
        want = model(x).numpy()
    result = {"torch": torch.__version__, "input": [1, 3, 112, 112], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        f32, q8 = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model_int8.onnx")
        calib_npy, x_npy, y_npy = (os.path.join(tmp, n) for n in ("calib.npy", "x.npy", "y.npy"))
        torch.onnx.export(model, x, f32, opset_version=13)
        np.save(calib_npy, calib.numpy())
        np.save(x_npy, x.numpy())
        subprocess.run([args.cquant, "quantize", f32, "-o", q8, "--mode", "static", "--calib",
                        calib_npy, "--backend", "onednn"], check=True, capture_output=True)
        subprocess.run([args.cquant, "run", q8, x_npy, "-o", y_npy], check=True,
                       capture_output=True)
        result["float_logits_mean_abs"] = float(np.abs(want).mean())
        result["cquant_error"] = float(np.abs(np.load(y_npy) - want).mean())
        engines = {e: torch_int8(model, calib, e) for e in ("onednn", "qnnpack")}
        with torch.no_grad():
            result["torch_onednn_error"] = float(np.abs(engines["onednn"](x).numpy() - want).mean())
        for t in args.threads:
            out = subprocess.run([args.cquant, "bench", q8, "--input", x_npy, "--threads", str(t)],
                                 check=True, capture_output=True, text=True)
            ours = json.loads(out.stdout)["median_ms"]
            torch.set_num_threads(t)
            run = {"threads": t, "cquant_ms": ours}
            for e, qm in engines.items():
                torch.backends.quantized.engine = e
                run["torch_%s_ms" % e] = median_ms(lambda: qm(x), args.reps)
            run["torch_float_ms"] = median_ms(lambda: model(x), args.reps // 2)
            run["torch_onednn_over_cquant"] = round(run["torch_onednn_ms"] / ours, 2)
            result["runs"].append(run)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
