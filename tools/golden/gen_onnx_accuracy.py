#!/usr/bin/python3
"""The ONNX accuracy bar on real Fashion-MNIST: two classifiers trained in PyTorch 1.13, exported
with torch.onnx.export, and PyTorch's own int8 versions of them as the reference.

Writes tests/data/onnx_accuracy/ (read by tests/test_onnx_accuracy.c):
  cnn.onnx    Conv(1,16,3,p1)-BN-ReLU-MaxPool2, Conv(16,32,3,p1)-BN-ReLU-MaxPool2,
              x.reshape(x.size(0), -1), Linear(1568,64)-ReLU-Linear(64,10); input [N,1,28,28]
  lstm.onnx   nn.LSTM(28, 64, batch_first=True) over the 28 image rows, the last time step ->
              Linear(64,10); input [N,28,28]
  Both exported in eval mode with opset 13, do_constant_folding=True (BN folded into the convs)
  and a dynamic batch axis; the CNN's reshape comes out as the Shape/Gather/Unsqueeze/Concat/Reshape
  chain.
  cases.txt   one case per model (format: tools/golden/README.md):
                onnx FILE            the model
                mode static|dynamic  how cquant quantizes it: graph mode with calibration (CNN) or
                                     dynamic (LSTM), as PyTorch's reference was made
                input_shape D...     per-image shape of the model input (after the batch axis)
                float_logits FILE    PyTorch's float32 outputs on the test images [n_test, 10]
                int8_pred FILE       PyTorch's int8 model's predicted class per test image, uint8
                float_correct K, int8_correct K, float_accuracy A, int8_accuracy A
                                     on all n_test test images (A = K / n_test, repr of a double)
                float_correct_quick K, int8_correct_quick K
                                     the same on the first n_quick test images
                quantization         how PyTorch's int8 model was made
                epochs, batch, lr, train_images, train_accuracy (on the last epoch's batches)
              and a case `data` naming the image files and counts, and the inference batch size
              (eval_batch) PyTorch's outputs were computed with.

Data: the images are the subset committed under data/fashion-mnist/ (README there): calibration =
the first 1,000 training images, test = the 2,000 t10k images; pixels / 255 as float32, no mean or
std. Training uses the full training split of Debian's dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist, 60,000 images), never the test images.

PyTorch's int8 models, the references cquant has to match or beat:
  CNN   FX graph mode: prepare_fx(get_default_qconfig_mapping("x86")) on the float model in eval
        mode, calibration on the 1,000 calibration images in batches of 32 in order, convert_fx,
        run under the quantized engine named in the header ("x86" when this build has it, else
        "fbgemm", else "onednn": the x86-class engines).
  LSTM  torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8).

Training is deterministic (fixed seed, one thread, deterministic algorithms), so a rerun on the same
PyTorch build reproduces the weights and every file; the CNN trains in about four minutes on an
idle core, the LSTM in about five (the time is printed, not recorded: it depends on the load).

Run with Debian's PyTorch: /usr/bin/python3 tools/golden/gen_onnx_accuracy.py [OUT_DIR]
"""
import gzip
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_quant_math import SEED, CaseWriter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "onnx_accuracy")
SUBSET_DIR = os.path.join(ROOT, "data", "fashion-mnist")
FULL_DIR = "/usr/share/datasets/fashion-mnist"

N_CALIB = 1000
CALIB_BATCH = 32
N_QUICK = 500  # the test's CQ_TEST_QUICK=1 mode
# Inference batch. It matters for the dynamic LSTM: its activations are quantized with the min/max
# of the whole batch (the input projection over all time steps and images of the batch at once), so
# the test runs cquant in batches of the same size.
EVAL_BATCH = 500
OPSET = 13

CNN_EPOCHS = 2
LSTM_EPOCHS = 5
BATCH = 64
LR = 1e-3


def read_idx(path):
    """A gzip IDX file of uint8 (the only type Fashion-MNIST uses) as a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    assert raw[0] == 0 and raw[1] == 0 and raw[2] == 0x08, path
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    assert data.size == int(np.prod(dims)), path
    return data.reshape(dims)


def images(raw):
    return torch.from_numpy(raw.astype(np.float32) / np.float32(255.0))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        # Exported as Shape/Gather/Unsqueeze/Concat/Reshape, exactly as x.view(x.size(0), -1)
        # would be; view itself fails in PyTorch's int8 model, whose quantized convs give
        # channels-last tensors.
        x = x.reshape(x.size(0), -1)
        return self.fc2(self.relu3(self.fc1(x)))


class RowLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 64, batch_first=True)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


def train(model, x, y, epochs, seed):
    """Adam on shuffled mini-batches; returns (seconds, accuracy on the last epoch's batches)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(x.shape[0], generator=gen)
        correct = 0
        for i in range(0, x.shape[0], BATCH):
            idx = order[i:i + BATCH]
            opt.zero_grad()
            out = model(x[idx])
            loss = loss_fn(out, y[idx])
            loss.backward()
            opt.step()
            correct += int((out.argmax(1) == y[idx]).sum())
        print("  epoch %d: train accuracy %.4f, %.0f s" % (epoch + 1, correct / x.shape[0],
                                                            time.time() - start))
    model.eval()
    return time.time() - start, correct / x.shape[0]


def predict(model, x):
    with torch.no_grad():
        return torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)])


def export(model, example, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, path, opset_version=OPSET, do_constant_folding=True,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def pick_engine():
    supported = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "onednn"):
        if engine in supported:
            torch.backends.quantized.engine = engine
            return engine
    raise SystemExit("no x86-class quantized engine in this PyTorch build: %s" % supported)


def quantize_cnn(model, calib):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (calib[:1],))
        with torch.no_grad():
            for i in range(0, calib.shape[0], CALIB_BATCH):
                prepared(calib[i:i + CALIB_BATCH])
        return convert_fx(prepared)


def quantize_lstm(model):
    from torch.ao.quantization import quantize_dynamic
    return quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)


def model_case(w, name, mode, model, qmodel, test_x, test_y, seconds, train_acc, epochs,
               quantization, out_dir, input_shape):
    path = os.path.join(out_dir, name + ".onnx")
    export(model, test_x[:2], path)
    logits = predict(model, test_x)
    qlogits = predict(qmodel, test_x)
    pred, qpred = logits.argmax(1), qlogits.argmax(1)
    n = test_x.shape[0]
    correct, qcorrect = int((pred == test_y).sum()), int((qpred == test_y).sum())
    quick_c = int((pred[:N_QUICK] == test_y[:N_QUICK]).sum())
    quick_q = int((qpred[:N_QUICK] == test_y[:N_QUICK]).sum())
    print("%s: trained in %.0f s; float %d/%d = %.4f, PyTorch int8 %d/%d = %.4f (%d bytes of ONNX)"
          % (name, seconds, correct, n, correct / n, qcorrect, n, qcorrect / n,
             os.path.getsize(path)))
    w.case(name, [
        ("onnx", name + ".onnx"),
        ("mode", mode),
        ("input_shape", " ".join(str(d) for d in input_shape)),
        ("float_logits", w.npy(name + "_float_logits", logits.numpy().astype(np.float32))),
        ("int8_pred", w.npy(name + "_int8_pred", qpred.numpy().astype(np.uint8))),
        ("float_correct", correct),
        ("int8_correct", qcorrect),
        ("float_accuracy", repr(correct / n)),
        ("int8_accuracy", repr(qcorrect / n)),
        ("float_correct_quick", quick_c),
        ("int8_correct_quick", quick_q),
        ("quantization", quantization),
        ("epochs", epochs),
        ("batch", BATCH),
        ("lr", repr(LR)),
        ("train_images", 60000),
        ("train_accuracy", repr(train_acc)),
    ])


def main():
    out_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    engine = pick_engine()

    train_x = images(read_idx(os.path.join(FULL_DIR, "train-images-idx3-ubyte.gz")))
    train_y = torch.from_numpy(read_idx(os.path.join(FULL_DIR, "train-labels-idx1-ubyte.gz"))
                               .astype(np.int64))
    calib = images(read_idx(os.path.join(SUBSET_DIR, "train-images-idx3-ubyte.gz"))[:N_CALIB])
    test_x = images(read_idx(os.path.join(SUBSET_DIR, "t10k-images-idx3-ubyte.gz")))
    test_y = torch.from_numpy(read_idx(os.path.join(SUBSET_DIR, "t10k-labels-idx1-ubyte.gz"))
                              .astype(np.int64))
    # The subset must be what its README says: the first records of the full files.
    assert torch.equal(calib, train_x[:N_CALIB])

    w = CaseWriter(out_dir, "ONNX accuracy bar: Fashion-MNIST classifiers and PyTorch's int8 "
                            "versions")
    for name in os.listdir(out_dir):
        if name.endswith(".onnx"):
            os.remove(os.path.join(out_dir, name))
    w.case("data", [
        ("calib_images", "data/fashion-mnist/train-images-idx3-ubyte.gz"),
        ("n_calib", N_CALIB),
        ("calib_batch", CALIB_BATCH),
        ("test_images", "data/fashion-mnist/t10k-images-idx3-ubyte.gz"),
        ("test_labels", "data/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
        ("n_test", test_x.shape[0]),
        ("n_quick", N_QUICK),
        ("eval_batch", EVAL_BATCH),
        ("scale", "1/255"),
    ])

    torch.manual_seed(SEED)
    cnn = CNN()
    print("CNN: training %d epochs" % CNN_EPOCHS)
    seconds, acc = train(cnn, train_x.unsqueeze(1), train_y, CNN_EPOCHS, SEED)
    qcnn = quantize_cnn(cnn, calib.unsqueeze(1))
    model_case(w, "cnn", "static", cnn, qcnn, test_x.unsqueeze(1), test_y, seconds, acc,
               CNN_EPOCHS,
               "prepare_fx/convert_fx get_default_qconfig_mapping(x86), engine %s" % engine,
               out_dir, (1, 28, 28))

    torch.manual_seed(SEED + 1)
    lstm = RowLSTM()
    print("LSTM: training %d epochs" % LSTM_EPOCHS)
    seconds, acc = train(lstm, train_x, train_y, LSTM_EPOCHS, SEED + 1)
    qlstm = quantize_lstm(lstm)
    model_case(w, "lstm", "dynamic", lstm, qlstm, test_x, test_y, seconds, acc, LSTM_EPOCHS,
               "quantize_dynamic {LSTM, Linear} qint8, engine %s" % engine, out_dir, (28, 28))

    w.write(["one thread, torch.use_deterministic_algorithms(True); calibration batches of %d"
             % CALIB_BATCH])


if __name__ == "__main__":
    main()
