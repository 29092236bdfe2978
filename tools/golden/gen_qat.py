#!/usr/bin/python3
"""Golden data for quantization-aware training, produced by PyTorch 1.13.

Writes tests/data/golden/qat/: cases.txt, .npy files and .safetensors initial weights.

Two groups of cases (see the key list at the end of this docstring):

* fq/... and lfq/...: one fake-quantize module (FakeQuantize, FusedMovingAvgObsFakeQuantize,
  FixedQParamsFakeQuantize, _LearnableFakeQuantize) fed a stream of batches. Each step may first
  change the module's switches (`ops`), then runs forward and the backward of sum(y * gy), and
  records the output, the input gradient, the scale / zero_point buffers (parameters for the
  learnable module) and, for the learnable module, the scale / zero-point gradients.
  tests/test_fake_quant.c.

* model/...: whole QAT runs. "seed" is the seed's QAT block exactly (fuse_modules in training mode,
  QuantStub/DeQuantStub, get_default_qconfig('fbgemm') handed to prepare_qat, SGD lr 0.1, MSE to a
  target, 10 steps of 10x2x24x24 inputs, convert); "seed_qat_qconfig" the same with
  get_default_qat_qconfig('fbgemm'); "convbn" a Conv-BN-ReLU / Conv-BN / Conv-ReLU / Linear-BN /
  Linear-ReLU / Linear classifier fused with fuse_modules_qat and trained with
  get_default_qat_qconfig('qnnpack'), BN statistics frozen after step 4 and observers disabled after
  step 6; "convbn1d" the 1-D ConvBn / ConvBnReLU modules beside a Conv1d that has no QAT
  version (get_default_qat_qconfig('fbgemm')); "learnable" a Linear-ReLU / Linear model with _LearnableFakeQuantize activations and
  weights, static estimates for 3 steps then parameter learning. Initial weights come from
  tools/export_safetensors.py (the float model's state dict before fusion); inputs and targets are
  uint8 .npy files read as value / 256. Every step's loss, the trees printed after prepare_qat,
  after training (model.eval()) and after convert, the fake-quant states and BN statistics after
  training, and the converted model's output on a test input under the qnnpack engine are
  recorded. tests/test_qat.c.

Keys (per case):
  fq/lfq: preset NAME | fake_quant KIND + config "key=value..." (cq_observer_config_set syntax)
          [+ lfq_scale, lfq_zero_point, lfq_channel_len, lfq_use_grad_scaling];
          steps N; ops OP... (one token per step: "-" or comma-joined ops: disable_observer,
          enable_observer, disable_fake_quant, enable_fake_quant, enable_param_learning,
          enable_static_estimate, enable_static_observation, set_qparams:S1/S2..:Z1/Z2..);
          x, gy, y, gx (.npy [steps, ...]); scale, zero_point (.npy [steps, C], float32 / int32
          or float32 for learnable); grad_scale, grad_zero_point (learnable, [steps, C]);
          repr (the module after the last step).
  model:  init (safetensors), steps, x_K / t_K (uint8 .npy per step), loss (per step),
          repr_prepared, repr_trained, repr_converted, test_x (uint8 .npy), out_q (uint8 .npy:
          the quantized output before DeQuantize), out_scale, out_zero_point, out (float .npy);
          state NAME followed by state_scale / state_zero_point / state_min / state_max lines
          (fake-quant modules, in named_modules order); bn NAME + bn_mean / bn_var lines.

Run: /usr/bin/python3 tools/golden/gen_qat.py [OUT_DIR]
"""
import os
import sys
import warnings

import numpy as np
import torch
import torch.ao.quantization as tq
from torch import nn
from torch.ao.quantization._learnable_fake_quantize import _LearnableFakeQuantize
from torch.ao.quantization.fake_quantize import (FakeQuantize, FixedQParamsFakeQuantize,
                                                 FusedMovingAvgObsFakeQuantize)
from torch.ao.quantization.observer import (MinMaxObserver, MovingAverageMinMaxObserver,
                                            MovingAveragePerChannelMinMaxObserver)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from export_safetensors import save_state_dict  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "golden", "qat")
SEED = 20240917

warnings.filterwarnings("ignore")


def f32(v):
    return float(np.float32(v))


def fmt_floats(values):
    return " ".join(repr(f32(v)) for v in np.asarray(values, dtype=np.float32).reshape(-1))


def fmt_ints(values):
    return " ".join(str(int(v)) for v in np.asarray(values).reshape(-1))


def escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Writer:
    def __init__(self, out_dir):
        self.out = os.path.abspath(out_dir)
        os.makedirs(self.out, exist_ok=True)
        for name in os.listdir(self.out):
            if name.endswith((".npy", ".safetensors")) or name == "cases.txt":
                os.remove(os.path.join(self.out, name))
        self.cases = []
        self.files = set()

    def npy(self, stem, array):
        name = stem.replace("/", "_") + ".npy"
        assert name not in self.files, name
        self.files.add(name)
        np.save(os.path.join(self.out, name), np.ascontiguousarray(array), allow_pickle=False)
        return name

    def safetensors(self, stem, model):
        name = stem.replace("/", "_") + ".safetensors"
        assert name not in self.files, name
        self.files.add(name)
        save_state_dict(model, os.path.join(self.out, name))
        return name

    def case(self, name, entries):
        self.cases.append((name, entries))

    def write(self):
        with open(os.path.join(self.out, "cases.txt"), "w") as f:
            f.write("# quantization-aware training: fake-quantize modules and QAT runs\n")
            f.write("# generated by tools/golden/gen_qat.py with torch %s, numpy %s (seed %d)\n"
                    % (torch.__version__, np.__version__, SEED))
            f.write("# converted models ran on the qnnpack engine\n")
            for name, entries in self.cases:
                f.write("case %s\n" % name)
                for key, value in entries:
                    f.write("%s %s\n" % (key, value))
                f.write("end\n")


# --- fake-quantize modules ----------------------------------------------------------------------

def is_learnable(m):
    return isinstance(m, _LearnableFakeQuantize)


def apply_op(fq, op):
    if op == "-":
        return
    for one in op.split(","):
        if one == "disable_observer":
            fq.disable_observer()
        elif one == "enable_observer":
            fq.enable_observer()
        elif one == "disable_fake_quant":
            fq.disable_fake_quant()
        elif one == "enable_fake_quant":
            fq.enable_fake_quant()
        elif one == "enable_param_learning":
            fq.enable_param_learning()
        elif one == "enable_static_estimate":
            fq.enable_static_estimate()
        elif one == "enable_static_observation":
            fq.enable_static_observation()
        elif one.startswith("set_qparams:"):
            _, s, z = one.split(":")
            with torch.no_grad():
                fq.scale.copy_(torch.tensor([float(v) for v in s.split("/")]))
                fq.zero_point.copy_(torch.tensor([float(v) for v in z.split("/")]))
        else:
            raise ValueError(one)


def fq_case(w, rng, name, make, desc, shape, ops, scale_x=2.0, shift_x=0.0):
    fq = make()
    steps = len(ops)
    xs, gys, ys, gxs, scales, zps, gss, gzs = [], [], [], [], [], [], [], []
    for k in range(steps):
        apply_op(fq, ops[k])
        x = torch.from_numpy((rng.standard_normal(shape) * scale_x + shift_x).astype(np.float32))
        x.requires_grad_(True)
        gy = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        if is_learnable(fq):
            fq.scale.grad = None
            fq.zero_point.grad = None
        y = fq(x)
        (y * gy).sum().backward()
        xs.append(x.detach().numpy().copy())
        gys.append(gy.numpy())
        ys.append(y.detach().numpy().copy())
        gxs.append(x.grad.numpy().copy())
        scales.append(fq.scale.detach().numpy().astype(np.float32).reshape(-1).copy())
        if is_learnable(fq) or fq.zero_point.dtype == torch.float32:
            zps.append(fq.zero_point.detach().numpy().astype(np.float32).reshape(-1).copy())
        else:
            zps.append(fq.zero_point.detach().numpy().astype(np.int32).reshape(-1).copy())
        if is_learnable(fq):
            gs = fq.scale.grad
            gz = fq.zero_point.grad
            gss.append(np.zeros_like(scales[-1]) if gs is None else gs.numpy().copy())
            gzs.append(np.zeros_like(scales[-1]) if gz is None else gz.numpy().copy())
    # buffers can change length (per-channel resize): pad to the last length is not needed as the
    # length is fixed after the first step; check
    assert len({len(s) for s in scales}) == 1, name
    entries = list(desc)
    entries += [("steps", str(steps)), ("ops", " ".join(ops)),
                ("x", w.npy(name + "_x", np.stack(xs))),
                ("gy", w.npy(name + "_gy", np.stack(gys))),
                ("y", w.npy(name + "_y", np.stack(ys))),
                ("gx", w.npy(name + "_gx", np.stack(gxs))),
                ("scale", w.npy(name + "_scale", np.stack(scales))),
                ("zero_point", w.npy(name + "_zero_point", np.stack(zps)))]
    if is_learnable(fq):
        entries += [("grad_scale", w.npy(name + "_grad_scale", np.stack(gss).astype(np.float32))),
                    ("grad_zero_point",
                     w.npy(name + "_grad_zero_point", np.stack(gzs).astype(np.float32)))]
    entries.append(("repr", escape(repr(fq))))
    w.case(name, entries)


def fake_quant_cases(w, rng):
    P = lambda name: [("preset", name)]  # noqa: E731
    fq_case(w, rng, "fq/default_fake_quant", tq.default_fake_quant, P("default_fake_quant"),
            (4, 3, 5), ["-", "-", "disable_observer", "enable_observer,disable_fake_quant", "-"],
            shift_x=0.7)
    fq_case(w, rng, "fq/default_weight_fake_quant", tq.default_weight_fake_quant,
            P("default_weight_fake_quant"), (6, 4), ["-", "-", "-"], scale_x=0.3)
    fq_case(w, rng, "fq/default_per_channel_weight_fake_quant",
            tq.default_per_channel_weight_fake_quant,
            P("default_per_channel_weight_fake_quant"), (5, 3, 2, 2), ["-", "-", "-"],
            scale_x=0.2)
    fq_case(w, rng, "fq/default_histogram_fake_quant", tq.default_histogram_fake_quant,
            P("default_histogram_fake_quant"), (64,), ["-", "-", "-"], shift_x=1.0)
    fq_case(w, rng, "fq/default_fused_act_fake_quant", tq.default_fused_act_fake_quant,
            P("default_fused_act_fake_quant"), (4, 3, 5),
            ["-", "disable_fake_quant", "enable_fake_quant,disable_observer", "enable_observer"],
            shift_x=0.7)
    fq_case(w, rng, "fq/default_fused_wt_fake_quant", tq.default_fused_wt_fake_quant,
            P("default_fused_wt_fake_quant"), (6, 4), ["-", "-", "-"], scale_x=0.3)
    fq_case(w, rng, "fq/default_fused_per_channel_wt_fake_quant",
            tq.default_fused_per_channel_wt_fake_quant,
            P("default_fused_per_channel_wt_fake_quant"), (5, 3, 2, 2), ["-", "-", "-"],
            scale_x=0.2)
    fq_case(w, rng, "fq/fused_wt_fake_quant_range_neg_127_to_127",
            tq.fused_wt_fake_quant_range_neg_127_to_127,
            P("fused_wt_fake_quant_range_neg_127_to_127"), (6, 4), ["-", "-"], scale_x=0.3)
    fq_case(w, rng, "fq/fused_per_channel_wt_fake_quant_range_neg_127_to_127",
            tq.fused_per_channel_wt_fake_quant_range_neg_127_to_127,
            P("fused_per_channel_wt_fake_quant_range_neg_127_to_127"), (4, 6), ["-", "-"],
            scale_x=0.3)
    fq_case(w, rng, "fq/fused_reduce_range",
            FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAverageMinMaxObserver,
                                                    quant_min=0, quant_max=255,
                                                    reduce_range=True),
            [("fake_quant", "fused"),
             ("config", "observer=moving_average_minmax quant_min=0 quant_max=255 "
                        "reduce_range=1")],
            (3, 7), ["-", "-", "-"], shift_x=0.5)
    fq_case(w, rng, "fq/fixed_0to1", tq.default_fixed_qparams_range_0to1_fake_quant,
            P("default_fixed_qparams_range_0to1_fake_quant"), (4, 5), ["-", "disable_observer"],
            scale_x=0.4, shift_x=0.5)
    fq_case(w, rng, "fq/fixed_neg1to1", tq.default_fixed_qparams_range_neg1to1_fake_quant,
            P("default_fixed_qparams_range_neg1to1_fake_quant"), (4, 5), ["-", "-"], scale_x=0.6)
    fq_case(w, rng, "fq/fake_quantize_4bit_minmax",
            FakeQuantize.with_args(observer=MinMaxObserver, quant_min=0, quant_max=15),
            [("fake_quant", "fake_quantize"),
             ("config", "observer=minmax quant_min=0 quant_max=15")],
            (5, 4), ["-", "-", "-"], shift_x=1.0)
    fq_case(w, rng, "fq/fake_quantize_symmetric_ma05",
            FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-128,
                                   quant_max=127, dtype=torch.qint8,
                                   qscheme=torch.per_tensor_symmetric, averaging_constant=0.5),
            [("fake_quant", "fake_quantize"),
             ("config", "observer=moving_average_minmax quant_min=-128 quant_max=127 dtype=qint8 "
                        "qscheme=per_tensor_symmetric averaging_constant=0.5")],
            (5, 4), ["-", "-", "-"], scale_x=1.5, shift_x=0.4)

    # _LearnableFakeQuantize
    def lfq(observer, qmin, qmax, **kw):
        return lambda: _LearnableFakeQuantize(observer, quant_min=qmin, quant_max=qmax, **kw)

    lfq_desc = lambda config, **o: ([("fake_quant", "learnable"), ("config", config)]  # noqa: E731
                                    + [("lfq_" + k, repr(float(v)) if isinstance(v, float)
                                        else str(int(v))) for k, v in o.items()])
    fq_case(w, rng, "lfq/static_affine",
            lfq(MovingAverageMinMaxObserver, 0, 255),
            lfq_desc("observer=moving_average_minmax quant_min=0 quant_max=255"),
            (4, 6), ["-", "-", "disable_fake_quant", "enable_fake_quant"], shift_x=1.0)
    fq_case(w, rng, "lfq/learn_affine_quint8",
            lfq(MovingAverageMinMaxObserver, 0, 255, scale=0.05, zero_point=2.5),
            lfq_desc("observer=moving_average_minmax quant_min=0 quant_max=255",
                     scale=0.05, zero_point=2.5),
            (5, 8), ["enable_param_learning", "set_qparams:0.07:3.5",
                     "set_qparams:0.03:-3.7", "set_qparams:0.04:255.6", "set_qparams:1e-9:7.2"],
            scale_x=4.0, shift_x=5.0)
    fq_case(w, rng, "lfq/learn_affine_qint8",
            lfq(MovingAverageMinMaxObserver, -128, 127, scale=0.02, zero_point=-3.7,
                dtype=torch.qint8),
            lfq_desc("observer=moving_average_minmax quant_min=-128 quant_max=127 dtype=qint8",
                     scale=0.02, zero_point=-3.7),
            (5, 8), ["enable_param_learning", "set_qparams:0.015:2.5", "set_qparams:0.02:-2.5",
                     "set_qparams:0.01:-128.4", "-"],
            scale_x=1.5)
    fq_case(w, rng, "lfq/learn_grad_scaling",
            lfq(MovingAverageMinMaxObserver, 0, 255, scale=0.03, zero_point=100.0,
                use_grad_scaling=True),
            lfq_desc("observer=moving_average_minmax quant_min=0 quant_max=255",
                     scale=0.03, zero_point=100.0, use_grad_scaling=1),
            (6, 5), ["enable_param_learning", "-", "set_qparams:0.01:10.5"], scale_x=3.0)
    fq_case(w, rng, "lfq/learn_symmetric",
            lfq(MovingAverageMinMaxObserver, -128, 127, scale=0.01, zero_point=3.0,
                dtype=torch.qint8, qscheme=torch.per_tensor_symmetric),
            lfq_desc("observer=moving_average_minmax quant_min=-128 quant_max=127 dtype=qint8 "
                     "qscheme=per_tensor_symmetric", scale=0.01, zero_point=3.0),
            (4, 5), ["-", "enable_param_learning", "set_qparams:0.008:5.0"], scale_x=0.8)
    fq_case(w, rng, "lfq/per_channel_affine",
            lfq(MovingAveragePerChannelMinMaxObserver, 0, 255, channel_len=3, ch_axis=0,
                qscheme=torch.per_channel_affine),
            lfq_desc("observer=moving_average_per_channel_minmax quant_min=0 quant_max=255 "
                     "qscheme=per_channel_affine ch_axis=0", channel_len=3),
            (3, 4, 5), ["-", "enable_param_learning",
                        "set_qparams:0.02/0.05/0.011:2.5/-0.6/250.5", "enable_static_estimate"],
            scale_x=2.0, shift_x=1.0)
    fq_case(w, rng, "lfq/per_channel_symmetric_axis1",
            lfq(MovingAveragePerChannelMinMaxObserver, -128, 127, channel_len=4, ch_axis=1,
                dtype=torch.qint8, qscheme=torch.per_channel_symmetric, use_grad_scaling=True),
            lfq_desc("observer=moving_average_per_channel_minmax quant_min=-128 quant_max=127 "
                     "dtype=qint8 qscheme=per_channel_symmetric ch_axis=1",
                     channel_len=4, use_grad_scaling=1),
            (2, 4, 3), ["-", "enable_param_learning", "set_qparams:0.01/0.02/0.005/0.1:1/2/3/4",
                        "enable_static_observation"],
            scale_x=1.0)


# --- whole QAT runs -----------------------------------------------------------------------------

def u8(rng, shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def as_input(a):
    return torch.from_numpy(a.astype(np.float32) / np.float32(256.0))


def fake_quant_states(m):
    entries = []
    for name, mod in m.named_modules():
        if not isinstance(mod, tq.FakeQuantizeBase):
            continue
        obs = mod.activation_post_process
        entries.append(("state", name))
        entries.append(("state_scale", fmt_floats(mod.scale.detach())))
        entries.append(("state_zero_point", " ".join(
            repr(float(v)) for v in mod.zero_point.detach().reshape(-1)) if is_learnable(mod)
            else fmt_ints(mod.zero_point.detach())))
        entries.append(("state_min", fmt_floats(obs.min_val.detach())))
        entries.append(("state_max", fmt_floats(obs.max_val.detach())))
    return entries


def bn_states(m):
    entries = []
    for name, mod in m.named_modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            entries.append(("bn", name))
            entries.append(("bn_mean", fmt_floats(mod.running_mean)))
            entries.append(("bn_var", fmt_floats(mod.running_var)))
    return entries


def train_and_record(w, name, m, data, steps, lr, between=None):
    """SGD on MSE to the targets; returns the entries for losses."""
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    losses = []
    for k in range(steps):
        if between:
            between(m, k)
        x = as_input(data["x"][k])
        out = m(x)
        t = as_input(data["t"][k])
        assert t.shape == out.shape, (t.shape, out.shape)
        loss = torch.pow(t - out, 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return [("loss", " ".join(repr(v) for v in losses))]


def record_convert(w, name, m, test_x):
    torch.backends.quantized.engine = "qnnpack"
    tq.convert(m, inplace=True)
    entries = [("repr_converted", escape(repr(m)))]
    x = as_input(test_x)
    body = m[:-1]
    q = body(x)
    out = m[-1](q)
    entries += [("out_q", w.npy(name + "_out_q", q.int_repr().numpy())),
                ("out_scale", repr(f32(q.q_scale()))),
                ("out_zero_point", str(int(q.q_zero_point()))),
                ("out", w.npy(name + "_out", out.numpy()))]
    return entries


def make_data(w, rng, stem, steps, xshape, tshape):
    data = {"x": [], "t": [], "entries": []}
    for k in range(steps):
        xa, ta = u8(rng, xshape), u8(rng, tshape)
        data["x"].append(xa)
        data["t"].append(ta)
        data["entries"].append(("x_%d" % k, w.npy("%s_x_%d" % (stem, k), xa)))
        data["entries"].append(("t_%d" % k, w.npy("%s_t_%d" % (stem, k), ta)))
    return data


def seed_model():
    return nn.Sequential(nn.Conv2d(2, 64, 8), nn.ReLU(), nn.Conv2d(64, 128, 8), nn.ReLU())


def seed_case(w, name, qconfig, init, data, test_x, test_entry):
    m = seed_model()
    m.load_state_dict(init_state(init))
    tq.fuse_modules(m, ['0', '1'], inplace=True)
    tq.fuse_modules(m, ['2', '3'], inplace=True)
    m = nn.Sequential(tq.QuantStub(), *m, tq.DeQuantStub())
    m.train()
    m.qconfig = qconfig
    tq.prepare_qat(m, inplace=True)
    entries = [("init", init), ("steps", "10")] + data["entries"]
    entries.append(("repr_prepared", escape(repr(m))))
    entries += train_and_record(w, name, m, data, 10, 0.1)
    m.eval()
    entries.append(("repr_trained", escape(repr(m))))
    entries += fake_quant_states(m)
    entries.append(test_entry)
    entries += record_convert(w, name, m, test_x)
    w.case(name, entries)


_INIT = {}


def init_state(name):
    return _INIT[name]


def save_init(w, stem, model):
    name = w.safetensors(stem, model)
    _INIT[name] = {k: v.clone() for k, v in model.state_dict().items()}
    return name


def convbn_model():
    return nn.Sequential(
        tq.QuantStub(),
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),  # 1-3
        nn.Conv2d(8, 8, 3, stride=2), nn.BatchNorm2d(8),                         # 4-5
        nn.ReLU(),                                                               # 6
        nn.Conv2d(8, 8, 1), nn.ReLU(),                                           # 7-8
        nn.Flatten(),                                                            # 9
        nn.Linear(72, 16), nn.BatchNorm1d(16),                                   # 10-11
        nn.ReLU(),                                                               # 12
        nn.Linear(16, 10), nn.ReLU(),                                            # 13-14
        nn.Linear(10, 4),                                                        # 15
        tq.DeQuantStub())


def convbn_case(w, rng):
    name = "model/convbn"
    torch.manual_seed(3)
    m = convbn_model()
    with torch.no_grad():  # non-trivial BN parameters and statistics
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    init = save_init(w, "convbn_init", m)
    steps = 8
    data = make_data(w, rng, "convbn", steps, (6, 3, 8, 8), (6, 4))
    m.train()
    tq.fuse_modules_qat(m, ['1', '2', '3'], inplace=True)
    tq.fuse_modules_qat(m, ['4', '5'], inplace=True)
    tq.fuse_modules_qat(m, ['7', '8'], inplace=True)
    tq.fuse_modules_qat(m, ['10', '11'], inplace=True)
    tq.fuse_modules_qat(m, ['13', '14'], inplace=True)
    m.qconfig = tq.get_default_qat_qconfig("qnnpack")
    tq.prepare_qat(m, inplace=True)
    entries = [("init", init), ("steps", str(steps))] + data["entries"]
    entries.append(("repr_prepared", escape(repr(m))))

    def between(model, k):
        if k == 4:
            model.apply(torch.nn.intrinsic.qat.freeze_bn_stats)
        if k == 6:
            model.apply(tq.disable_observer)

    entries += train_and_record(w, name, m, data, steps, 0.05, between)
    m.eval()
    entries.append(("repr_trained", escape(repr(m))))
    entries += fake_quant_states(m)
    entries += bn_states(m)
    test_x = u8(rng, (3, 3, 8, 8))
    entries.append(("test_x", w.npy("convbn_test_x", test_x)))
    entries += record_convert(w, name, m, test_x)
    w.case(name, entries)


def convbn1d_case(w, rng):
    """Conv1d-BN1d-ReLU and Conv1d-BN1d (nniqat.ConvBnReLU1d / ConvBn1d), then a Conv1d, which has
    no QAT module: it keeps float weights and gets an output fake-quant, and convert quantizes it
    like a post-training module with a fresh qconfig.weight(). (Not fused with the ReLU after it:
    a prepared nni.ConvReLU1d, an nn.Sequential, runs its activation_post_process twice per
    forward, once as its last element and once as the hook.)"""
    name = "model/convbn1d"
    torch.manual_seed(7)
    m = nn.Sequential(tq.QuantStub(),
                      nn.Conv1d(3, 6, 3), nn.BatchNorm1d(6), nn.ReLU(),  # 1-3
                      nn.Conv1d(6, 6, 3, padding=1, bias=False), nn.BatchNorm1d(6),  # 4-5
                      nn.Conv1d(6, 4, 1), nn.ReLU(),  # 6-7
                      tq.DeQuantStub())
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    init = save_init(w, "convbn1d_init", m)
    steps = 6
    data = make_data(w, rng, "convbn1d", steps, (4, 3, 12), (4, 4, 10))
    m.train()
    tq.fuse_modules_qat(m, ['1', '2', '3'], inplace=True)
    tq.fuse_modules_qat(m, ['4', '5'], inplace=True)
    m.qconfig = tq.get_default_qat_qconfig("fbgemm")
    tq.prepare_qat(m, inplace=True)
    entries = [("init", init), ("steps", str(steps))] + data["entries"]
    entries.append(("repr_prepared", escape(repr(m))))
    entries += train_and_record(w, name, m, data, steps, 0.1)
    m.eval()
    entries.append(("repr_trained", escape(repr(m))))
    entries += fake_quant_states(m)
    entries += bn_states(m)
    test_x = u8(rng, (2, 3, 12))
    entries.append(("test_x", w.npy("convbn1d_test_x", test_x)))
    entries += record_convert(w, name, m, test_x)
    w.case(name, entries)


def learnable_case(w, rng):
    name = "model/learnable"
    torch.manual_seed(5)
    m = nn.Sequential(tq.QuantStub(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4),
                      tq.DeQuantStub())
    init = save_init(w, "learnable_init", m)
    steps = 8
    data = make_data(w, rng, "learnable", steps, (12, 8), (12, 4))
    m.train()
    tq.fuse_modules(m, ['1', '2'], inplace=True)
    act = _LearnableFakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0,
                                           quant_max=255, use_grad_scaling=True)
    wt = _LearnableFakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-128,
                                          quant_max=127, dtype=torch.qint8,
                                          qscheme=torch.per_tensor_symmetric,
                                          use_grad_scaling=True)
    m.qconfig = tq.QConfig(activation=act, weight=wt)
    tq.prepare_qat(m, inplace=True)
    entries = [("init", init), ("steps", str(steps))] + data["entries"]
    entries.append(("repr_prepared", escape(repr(m))))

    def between(model, k):
        if k == 3:
            for mod in model.modules():
                if isinstance(mod, _LearnableFakeQuantize):
                    mod.enable_param_learning()

    entries += train_and_record(w, name, m, data, steps, 0.02, between)
    m.eval()
    entries.append(("repr_trained", escape(repr(m))))
    entries += fake_quant_states(m)
    test_x = u8(rng, (5, 8))
    entries.append(("test_x", w.npy("learnable_test_x", test_x)))
    entries += record_convert(w, name, m, test_x)
    w.case(name, entries)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    w = Writer(out)
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    fake_quant_cases(w, rng)

    # the seed's model and data, shared by the two seed cases
    torch.manual_seed(0)
    init = save_init(w, "seed_init", seed_model())
    data = make_data(w, rng, "seed", 10, (10, 2, 24, 24), (10, 128, 10, 10))
    test_x = u8(rng, (2, 2, 24, 24))
    test_entry = ("test_x", w.npy("seed_test_x", test_x))
    seed_case(w, "model/seed", tq.get_default_qconfig("fbgemm"), init, data, test_x, test_entry)
    seed_case(w, "model/seed_qat_qconfig", tq.get_default_qat_qconfig("fbgemm"), init, data,
              test_x, test_entry)
    convbn_case(w, rng)
    convbn1d_case(w, rng)
    learnable_case(w, rng)
    w.write()
    total = sum(os.path.getsize(os.path.join(w.out, f)) for f in os.listdir(w.out))
    print("wrote %d cases, %.1f MB, to %s" % (len(w.cases), total / 1e6, w.out))


if __name__ == "__main__":
    main()
