#!/usr/bin/python3
"""Golden data for eager-mode post-training static quantization: fuse_modules, prepare, calibrate,
convert, end to end, as PyTorch 1.13 does it (torch.ao.quantization).

Model cases (`case model/<arch>_<engine>`), each quantized by PyTorch with fixed weights and fixed
calibration batches:

  seed        the seed's static model: Sequential(Conv2d(2,64,3), ReLU, Conv2d(64,128,3), ReLU),
              fused ['0','1'] and ['2','3'], wrapped as Sequential(QuantStub, *m, DeQuantStub)
  classifier  Sequential(QuantStub, Conv2d(3,8,3,padding=1), BatchNorm2d(8), ReLU, MaxPool2d(2),
              Flatten, Linear(128,32), ReLU, Linear(32,10), DeQuantStub), fused ['1','2','3'] and
              ['6','7']
  residual    M(quant, conv1, bn1, relu1, conv2, add, cat, dequant): y = conv2(relu(bn(conv1(x))));
              out = dequant(cat([add.add(y, x), x], dim=1)) with FloatFunctional add / cat, fused
              ['conv1','bn1','relu1']

under two settings: engine "qnnpack" with get_default_qconfig('qnnpack'), and engine "onednn"
(the x86 engine that runs here) with get_default_qconfig('fbgemm') for the seed (its own
backend string) and get_default_qconfig('x86') for the others (reduce_range activations,
per-channel weights).

Weights, BN statistics, calibration data and the test input are dyadic rationals with few bits
(k/8, k/16, ...; BN variances chosen so that running_var + eps is exactly 1/4, 1 or 4): every float
conv / linear / BN-fold computation during calibration is then exact in float32 whatever the
summation order, so cquant's float forward (a different GEMM) sees bit for bit PyTorch's
activations and its observers must produce PyTorch's exact qparams. The generator checks that
bound (sum of |terms| < 2^24 units) for every layer.

Keys of a model case: arch, engine, qconfig (the backend string given to get_default_qconfig),
weights (safetensors, the float model's state dict before fusion), fuse (one group per line,
names separated by commas), calib (one .npy per batch, in order), input, repr_fused,
repr_prepared, repr_calibrated, repr_converted (str(model) at each step), output_q (the int
representation of the last quantized tensor, before DeQuantize: uint8 .npy), out_scale,
out_zero_point (the float output is its dequantization).

Fold cases (`case fold/<name>`): Sequential(layer, bn[, relu]) in eval mode with random float32
parameters and statistics, fused by fuse_modules; `weights` is the state dict before, `fused` after
(safetensors), `fuse` the group, `repr_fused` the fused model's str.

    /usr/bin/python3 tools/golden/gen_qstatic.py  ->  tests/data/golden/qstatic/
"""
import copy
import glob
import os
import sys

import numpy as np
import torch
from torch import nn
import torch.ao.quantization as tq
from torch.ao.nn.quantized import FloatFunctional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from export_safetensors import save_state_dict  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "golden", "qstatic")
SEED = 20240613
RNG = np.random.RandomState(SEED)


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n")


def dyadic(shape, lo, hi, denom):
    """Integers in [lo, hi] divided by denom (a power of two), as float32."""
    return torch.from_numpy((RNG.randint(lo, hi + 1, size=shape) / denom).astype(np.float32))


def bn_stats(bn, denom):
    """Dyadic BN parameters; running_var + eps is exactly 1/4, 1 or 4 in float32."""
    c = bn.num_features
    eps = np.float32(bn.eps)
    var = np.empty(c, np.float32)
    for i in range(c):
        target = np.float32([0.25, 1.0, 4.0][RNG.randint(0, 3)])
        v = np.float32(target - eps)
        for _ in range(8):  # nudge until v + eps rounds to the target exactly
            s = np.float32(v + eps)
            if s == target:
                break
            v = np.nextafter(v, np.float32(np.inf if s < target else -np.inf), dtype=np.float32)
        assert np.float32(v + eps) == target
        var[i] = v
    with torch.no_grad():
        bn.weight.copy_(dyadic((c,), 1, 6, 4))
        bn.bias.copy_(dyadic((c,), -4, 4, denom))
        bn.running_mean.copy_(dyadic((c,), -4, 4, denom))
        bn.running_var.copy_(torch.from_numpy(var))


def set_param(p, t):
    with torch.no_grad():
        p.copy_(t)


# ---- models ----------------------------------------------------------------------------------------


def seed_model():
    m = nn.Sequential(nn.Conv2d(2, 64, 3), nn.ReLU(), nn.Conv2d(64, 128, 3), nn.ReLU())
    set_param(m[0].weight, dyadic(m[0].weight.shape, -4, 4, 16))
    set_param(m[0].bias, dyadic(m[0].bias.shape, -4, 4, 16))
    set_param(m[2].weight, dyadic(m[2].weight.shape, -3, 3, 64))
    set_param(m[2].bias, dyadic(m[2].bias.shape, -8, 8, 64))
    return m


def classifier_model():
    m = nn.Sequential(tq.QuantStub(), nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 32), nn.ReLU(),
                      nn.Linear(32, 10), tq.DeQuantStub())
    set_param(m[1].weight, dyadic(m[1].weight.shape, -2, 2, 8))
    set_param(m[1].bias, dyadic(m[1].bias.shape, -2, 2, 8))
    bn_stats(m[2], 8)
    set_param(m[6].weight, dyadic(m[6].weight.shape, -3, 3, 32))
    set_param(m[6].bias, dyadic(m[6].bias.shape, -3, 3, 32))
    set_param(m[8].weight, dyadic(m[8].weight.shape, -2, 2, 16))
    set_param(m[8].bias, dyadic(m[8].bias.shape, -2, 2, 16))
    return m


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.add = FloatFunctional()
        self.cat = FloatFunctional()
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = self.conv2(self.relu1(self.bn1(self.conv1(x))))
        z = self.add.add(y, x)
        return self.dequant(self.cat.cat([z, x], dim=1))


def residual_model():
    m = M()
    set_param(m.conv1.weight, dyadic(m.conv1.weight.shape, -2, 2, 8))
    set_param(m.conv1.bias, dyadic(m.conv1.bias.shape, -2, 2, 8))
    bn_stats(m.bn1, 8)
    set_param(m.conv2.weight, dyadic(m.conv2.weight.shape, -2, 2, 16))
    set_param(m.conv2.bias, dyadic(m.conv2.bias.shape, -2, 2, 16))
    return m


ARCHS = {
    # builder, fuse groups, calibration batch shape, number of batches, test input shape
    "seed": (seed_model, [["0", "1"], ["2", "3"]], (1, 2, 28, 28), 10, (1, 2, 28, 28)),
    "classifier": (classifier_model, [["1", "2", "3"], ["6", "7"]], (4, 3, 8, 8), 6, (5, 3, 8, 8)),
    "residual": (residual_model, [["conv1", "bn1", "relu1"]], (2, 4, 6, 6), 5, (3, 4, 6, 6)),
}

SETTINGS = [  # (engine, qconfig backend per arch)
    ("qnnpack", {"seed": "qnnpack", "classifier": "qnnpack", "residual": "qnnpack"}),
    ("onednn", {"seed": "fbgemm", "classifier": "x86", "residual": "x86"}),
]


# ---- exactness of the float calibration ------------------------------------------------------------


def units(t):
    """Smallest power-of-two unit the float32 values of t are multiples of."""
    a = t.detach().double().abs()
    a = a[a > 0]
    if a.numel() == 0:
        return 1.0
    e = 0
    while not torch.all(torch.frac(a * 2.0 ** e) == 0):
        e += 1
        assert e < 60
    return 2.0 ** -e


def check_exact(layer, x):
    """Every output of conv/linear `layer` on x is an exact float32 sum in any order."""
    w, b = layer.weight.detach(), layer.bias.detach()
    u = units(x) * units(w)
    xa, wa = x.detach().double().abs(), w.double().abs()
    if isinstance(layer, nn.Conv2d):
        s = torch.nn.functional.conv2d(xa, wa, b.double().abs(), layer.stride, layer.padding,
                                       layer.dilation, layer.groups)
    else:
        s = torch.nn.functional.linear(xa, wa, b.double().abs())
    assert units(b) >= u, "bias finer than the products"
    bound = float(s.max()) / u
    assert bound < 2 ** 24, "%s: partial sums need %.1f bits" % (layer, np.log2(bound))


def exactness_hooks(model):
    handles = []
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            handles.append(mod.register_forward_pre_hook(lambda m, inp: check_exact(m, inp[0])))
    return handles


# ---- cases -----------------------------------------------------------------------------------------


def model_case(f, arch, engine, backend, float_model, inputs):
    groups = ARCHS[arch][1]
    calib, x = inputs
    name = "%s_%s" % (arch, engine)
    torch.backends.quantized.engine = engine
    m = copy.deepcopy(float_model)
    m.eval()
    tq.fuse_modules(m, groups, inplace=True)
    if arch == "seed":
        m = nn.Sequential(tq.QuantStub(), *m, tq.DeQuantStub())
        m.eval()
    repr_fused = str(m)
    m.qconfig = tq.get_default_qconfig(backend)
    tq.prepare(m, inplace=True)
    repr_prepared = str(m)
    handles = exactness_hooks(m)
    with torch.inference_mode():
        for xb in calib:
            m(xb)
    for h in handles:
        h.remove()
    repr_calibrated = str(m)
    tq.convert(m, inplace=True)
    repr_converted = str(m)
    seen = []
    dequant = m.dequant if arch == "residual" else m[len(m) - 1]
    handle = dequant.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0]))
    with torch.inference_mode():
        out = m(x)
    handle.remove()
    q = seen[0]
    assert q.is_quantized and torch.equal(q.dequantize(), out)
    np.save(os.path.join(OUT, name + "_output_q.npy"), q.int_repr().numpy())
    f.write("case model/%s\n" % name)
    f.write("arch %s\nengine %s\nqconfig %s\n" % (arch, engine, backend))
    f.write("weights %s\n" % (arch + "_weights.safetensors"))
    for g in groups:
        f.write("fuse %s\n" % ",".join(g))
    for i in range(len(calib)):
        f.write("calib %s_calib_%d.npy\n" % (arch, i))
    f.write("input %s_input.npy\n" % arch)
    f.write("repr_fused %s\n" % escape(repr_fused))
    f.write("repr_prepared %s\n" % escape(repr_prepared))
    f.write("repr_calibrated %s\n" % escape(repr_calibrated))
    f.write("repr_converted %s\n" % escape(repr_converted))
    f.write("output_q %s_output_q.npy\n" % name)
    f.write("out_scale %r\nout_zero_point %d\n" % (float(q.q_scale()), q.q_zero_point()))
    f.write("end\n")


def fold_cases(f):
    cases = [
        ("conv2d_bn", lambda: nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5)),
         ["0", "1"]),
        ("conv2d_nobias_bn_relu",
         lambda: nn.Sequential(nn.Conv2d(4, 6, (3, 2), stride=2, groups=2, bias=False),
                               nn.BatchNorm2d(6), nn.ReLU()), ["0", "1", "2"]),
        ("conv1d_bn", lambda: nn.Sequential(nn.Conv1d(3, 4, 5), nn.BatchNorm1d(4)), ["0", "1"]),
        ("conv1d_bn_relu", lambda: nn.Sequential(nn.Conv1d(2, 3, 3, bias=False), nn.BatchNorm1d(3),
                                                 nn.ReLU()), ["0", "1", "2"]),
        ("linear_bn", lambda: nn.Sequential(nn.Linear(7, 5), nn.BatchNorm1d(5)), ["0", "1"]),
        ("linear_nobias_bn", lambda: nn.Sequential(nn.Linear(6, 3, bias=False), nn.BatchNorm1d(3)),
         ["0", "1"]),
    ]
    for name, build, group in cases:
        torch.manual_seed(len(name))
        m = build()
        bn = m[1]
        with torch.no_grad():
            c = bn.num_features
            bn.weight.copy_(torch.randn(c) * 0.5 + 1.0)
            bn.bias.copy_(torch.randn(c) * 0.3)
            bn.running_mean.copy_(torch.randn(c) * 0.4)
            bn.running_var.copy_(torch.rand(c) * 2.0 + 0.05)
            bn.num_batches_tracked.fill_(7)
        m.eval()
        save_state_dict(m, os.path.join(OUT, "fold_%s.safetensors" % name))
        tq.fuse_modules(m, group, inplace=True)
        save_state_dict(m, os.path.join(OUT, "fold_%s_fused.safetensors" % name))
        f.write("case fold/%s\n" % name)
        f.write("weights fold_%s.safetensors\n" % name)
        f.write("fused fold_%s_fused.safetensors\n" % name)
        f.write("fuse %s\n" % ",".join(group))
        f.write("repr_before %s\n" % escape(str(build())))
        f.write("repr_fused %s\n" % escape(str(m)))
        f.write("end\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in glob.glob(os.path.join(OUT, "*.npy")) + glob.glob(os.path.join(OUT, "*.safetensors")):
        os.remove(old)
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("# generated by tools/golden/gen_qstatic.py with torch %s, numpy %s, seed %d\n"
                % (torch.__version__, np.__version__, SEED))
        f.write("# engines: %s\n" % " ".join(e for e, _ in SETTINGS))
        fold_cases(f)
        for arch, (build, groups, calib_shape, nbatches, input_shape) in ARCHS.items():
            m = build()
            save_state_dict(m, os.path.join(OUT, arch + "_weights.safetensors"))
            calib = [dyadic(calib_shape, 0, 8, 8) for _ in range(nbatches)]
            x = dyadic(input_shape, 0, 8, 8)
            for i, xb in enumerate(calib):
                np.save(os.path.join(OUT, "%s_calib_%d.npy" % (arch, i)), xb.numpy())
            np.save(os.path.join(OUT, arch + "_input.npy"), x.numpy())
            for engine, backends in SETTINGS:
                model_case(f, arch, engine, backends[arch], m, (calib, x))


if __name__ == "__main__":
    main()
