#!/usr/bin/python3
"""Golden data for cquant's nn.LSTM and nn.GRU (forward and backward through time), from PyTorch 1.13.

Writes tests/data/golden/nn_rnn/cases.txt and the .npy files it references. Each `run` case is one
module (its options, its str(), every parameter in state_dict order) run on a random input with or
without initial states, then backpropagated from the scalar

    loss = (output * grad_output).sum() [+ (h_n * grad_h_n).sum() [+ (c_n * grad_c_n).sum()]]

where the grad_* tensors are random and `nout` says how many outputs take part (1: output only,
2: output and h_n, 3: all three). Stored: inputs, the upstream gradients, the outputs, and the
gradients of the input, of h0 / c0 (when given) and of every parameter. `repr` cases only print.

Keys of a `run` case (general format: tools/golden/README.md):
  mode (LSTM / GRU), input_size, hidden_size, num_layers, bias, batch_first, bidirectional (0/1),
  dropout (float32 repr), training (0/1: train() / eval()), repr (str(module), newlines escaped)
  param NAME D0 [D1]   one line per parameter, in state_dict order, with its shape
  params, param_grads  float32 .npy: every parameter / its .grad flattened and concatenated in
                       that order
  nin                  1 + number of initial states passed (GRU: h0; LSTM: h0 and c0)
  nout                 how many outputs enter the loss (output, h_n, c_n in that order)
  input, h0, c0        float32 inputs (h0 / c0 only when given)
  output, h_n, c_n     PyTorch's outputs (all of them, whatever nout)
  grad_output, grad_h_n, grad_c_n   the random upstream gradients (the first nout)
  grad_input, grad_h0, grad_c0      the gradients PyTorch's backward produced
`repr/...` cases hold the options, `repr` and the `param` lines only.

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_nn_rnn.py [OUT_DIR]
"""
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_quant_math import SEED, CaseWriter, fmt_f32  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "tests", "data", "golden", "nn_rnn")


def escape(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def f32(t):
    return t.detach().numpy().astype(np.float32)


# Every case runs for both LSTM and GRU (GRU caps nout at 2). B None = unbatched 2-D input;
# states: pass h0 (and c0); dropout 1.0 in training is deterministic (layer outputs zeroed).
RUN_CASES = [
    # (name, I, H, L, bias, batch_first, bidirectional, dropout, training, T, B, states, nout)
    ("basic", 3, 4, 1, True, False, False, 0.0, True, 5, 7, False, 3),
    ("seq1_batch1", 3, 4, 1, True, False, False, 0.0, True, 1, 1, False, 3),
    ("seq1_batch7_states", 5, 3, 1, True, False, False, 0.0, True, 1, 7, True, 3),
    ("states", 4, 5, 1, True, False, False, 0.0, True, 4, 7, True, 3),
    ("two_layers", 3, 4, 2, True, False, False, 0.0, True, 3, 7, True, 3),
    ("three_layers_batch1", 2, 3, 3, True, False, False, 0.0, True, 6, 1, False, 3),
    ("bidirectional", 3, 4, 1, True, False, True, 0.0, True, 5, 1, False, 3),
    ("bidirectional_states", 3, 4, 1, True, False, True, 0.0, True, 4, 7, True, 3),
    ("bidir_two_layers_batch_first", 4, 3, 2, True, True, True, 0.0, True, 4, 7, True, 3),
    ("bidir_three_layers", 2, 5, 3, True, False, True, 0.0, True, 6, 7, True, 3),
    ("no_bias", 3, 4, 2, False, False, False, 0.0, True, 4, 7, True, 3),
    ("no_bias_bidir_batch_first", 3, 4, 2, False, True, True, 0.0, True, 3, 1, False, 3),
    ("batch_first", 3, 4, 1, True, True, False, 0.0, True, 5, 7, True, 3),
    ("batch_first_seq1_batch1", 3, 4, 1, True, True, False, 0.0, True, 1, 1, True, 3),
    ("unbatched", 3, 4, 2, True, False, True, 0.0, True, 5, None, True, 3),
    ("unbatched_batch_first", 3, 4, 1, True, True, False, 0.0, True, 4, None, False, 3),
    ("unbatched_seq1", 2, 3, 1, True, False, False, 0.0, True, 1, None, True, 3),
    ("dropout_train_p1", 3, 4, 2, True, False, True, 1.0, True, 4, 7, True, 3),
    ("dropout_eval", 3, 4, 3, True, False, False, 0.5, False, 4, 7, True, 3),
    ("output_only", 3, 4, 2, True, False, True, 0.0, True, 4, 7, True, 1),
    ("output_and_h_n", 3, 4, 2, True, True, False, 0.0, True, 4, 7, True, 2),
    ("tiny", 1, 1, 1, True, False, False, 0.0, True, 3, 7, True, 3),
    ("long", 4, 6, 1, True, False, False, 0.0, True, 20, 7, True, 3),
]

REPR_CASES = [
    ("LSTM", dict(input_size=10, hidden_size=10)),
    ("LSTM", dict(input_size=10, hidden_size=20, num_layers=2, batch_first=True,
                  bidirectional=True)),
    ("LSTM", dict(input_size=1, hidden_size=3, bias=False)),
    ("LSTM", dict(input_size=7, hidden_size=3, num_layers=3, dropout=0.1)),
    ("LSTM", dict(input_size=7, hidden_size=3, num_layers=2, dropout=0.25, bias=False,
                  batch_first=True, bidirectional=True)),
    ("LSTM", dict(input_size=7, hidden_size=3, num_layers=2, dropout=1.0)),
    ("GRU", dict(input_size=10, hidden_size=10)),
    ("GRU", dict(input_size=10, hidden_size=20, num_layers=2, batch_first=True,
                 bidirectional=True)),
    ("GRU", dict(input_size=0, hidden_size=2, num_layers=4, dropout=0.3)),
    ("GRU", dict(input_size=5, hidden_size=2, bias=False, dropout=1e-05, num_layers=2)),
]


def gen_run(w, mode, spec):
    (name, I, H, L, bias, bf, bidir, dropout, training, T, B, states, nout) = spec
    cls = torch.nn.LSTM if mode == "LSTM" else torch.nn.GRU
    m = cls(I, H, num_layers=L, bias=bias, batch_first=bf, dropout=dropout, bidirectional=bidir)
    m.train(training)
    D = 2 if bidir else 1
    unbatched = B is None
    if unbatched:
        xshape = (T, I)
        sshape = (L * D, H)
    else:
        xshape = (B, T, I) if bf else (T, B, I)
        sshape = (L * D, B, H)
    x = torch.randn(*xshape, requires_grad=True)
    h0 = c0 = None
    if states:
        h0 = (0.5 * torch.randn(*sshape)).requires_grad_(True)
        if mode == "LSTM":
            c0 = (0.5 * torch.randn(*sshape)).requires_grad_(True)
    if not states:
        res = m(x)
    elif mode == "LSTM":
        res = m(x, (h0, c0))
    else:
        res = m(x, h0)
    if mode == "LSTM":
        y, (hn, cn) = res
        outs = [y, hn, cn]
    else:
        y, hn = res
        outs = [y, hn]
        nout = min(nout, 2)
    grads = [torch.randn(*o.shape) for o in outs[:nout]]
    loss = sum((o * g).sum() for o, g in zip(outs[:nout], grads))
    loss.backward()

    cname = "%s/%s" % (mode.lower(), name)
    stem = cname.replace("/", "_")
    e = [("mode", mode), ("input_size", I), ("hidden_size", H), ("num_layers", L),
         ("bias", int(bias)), ("batch_first", int(bf)), ("bidirectional", int(bidir)),
         ("dropout", fmt_f32(dropout)), ("training", int(training)),
         ("repr", escape(str(m)))]
    sd = m.state_dict()
    names = list(sd.keys())
    assert names == [n for n, _ in m.named_parameters()]
    for n in names:
        e.append(("param", "%s %s" % (n, " ".join(str(s) for s in sd[n].shape))))
    params = dict(m.named_parameters())
    e.append(("params", w.npy(stem + "_params",
                              np.concatenate([f32(params[n]).reshape(-1) for n in names]))))
    e.append(("param_grads", w.npy(stem + "_param_grads",
                                   np.concatenate([f32(params[n].grad).reshape(-1)
                                                   for n in names]))))
    nin = 1 + (0 if not states else (2 if mode == "LSTM" else 1))
    e.append(("nin", nin))
    e.append(("nout", nout))
    e.append(("input", w.npy(stem + "_input", f32(x))))
    if states:
        e.append(("h0", w.npy(stem + "_h0", f32(h0))))
        if c0 is not None:
            e.append(("c0", w.npy(stem + "_c0", f32(c0))))
    out_keys = ["output", "h_n", "c_n"]
    for i, o in enumerate(outs):
        e.append((out_keys[i], w.npy(stem + "_" + out_keys[i], f32(o))))
    for i, g in enumerate(grads):
        e.append(("grad_" + out_keys[i], w.npy(stem + "_grad_" + out_keys[i], f32(g))))
    e.append(("grad_input", w.npy(stem + "_grad_input", f32(x.grad))))
    if states:
        e.append(("grad_h0", w.npy(stem + "_grad_h0", f32(h0.grad))))
        if c0 is not None:
            e.append(("grad_c0", w.npy(stem + "_grad_c0", f32(c0.grad))))
    w.case(cname, e)


def gen_repr(w, index, mode, kw):
    cls = torch.nn.LSTM if mode == "LSTM" else torch.nn.GRU
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cls(**kw)
    e = [("mode", mode), ("input_size", kw["input_size"]), ("hidden_size", kw["hidden_size"]),
         ("num_layers", kw.get("num_layers", 1)), ("bias", int(kw.get("bias", True))),
         ("batch_first", int(kw.get("batch_first", False))),
         ("bidirectional", int(kw.get("bidirectional", False))),
         ("dropout", fmt_f32(kw.get("dropout", 0.0))), ("repr", escape(str(m)))]
    for n, t in m.state_dict().items():
        e.append(("param", "%s %s" % (n, " ".join(str(s) for s in t.shape))))
    w.case("repr/%s_%d" % (mode.lower(), index), e)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    w = CaseWriter(out_dir, "cquant golden data: nn.LSTM / nn.GRU forward and backward through time")
    nrun = 0
    for mode in ("LSTM", "GRU"):
        for spec in RUN_CASES:
            gen_run(w, mode, spec)
            nrun += 1
    for i, (mode, kw) in enumerate(REPR_CASES):
        gen_repr(w, i, mode, kw)
    w.write([
        "format: tools/golden/README.md; keys: the docstring of tools/golden/gen_nn_rnn.py",
        "run cases: %d; repr cases: %d" % (nrun, len(REPR_CASES)),
    ])


if __name__ == "__main__":
    main()
