#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses into fuzz/corpus/<target>/ (standard library only).

Seeds are small valid files and a few invalid ones, each named after what it is, plus the
repository's own test files (tests/data/npy, tests/data/cli, examples/data,
tests/data/golden/safetensors). fuzz_observe's seeds are 4 option bytes (see fuzz/fuzz_observe.c)
followed by a .npy file. Files named by libFuzzer (40 hex digits: inputs a run found and merged in,
see fuzz/README.md) are left alone. Run from anywhere: python3 fuzz/make_corpus.py
"""
import gzip
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def npy(descr, shape, data, version=1, fortran=False):
    """A .npy image as numpy writes it (header padded so the data starts on a 64-byte boundary)."""
    shape_repr = "(" + "".join("%d, " % d for d in shape)[:-2] + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", shape_repr)
    pre = 10 if version == 1 else 12
    total = pre + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode("latin1") + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def idx(code, dims, payload, gz=False):
    raw = bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload
    return gzip.compress(raw, mtime=0) if gz else raw


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy_dir(target, src, suffix, prefix=""):
    src = os.path.join(ROOT, src)
    for name in sorted(os.listdir(src)):
        if name.endswith(suffix):
            with open(os.path.join(src, name), "rb") as f:
                write(target, prefix + name, f.read())


def npy_seeds():
    x = [0.5, -1.25, 3.0, 0.0, -0.0, 7.5]
    seeds = {
        "f4_2x3.npy": npy("<f4", (2, 3), f32(x)),
        "f4_2x3_v2.npy": npy("<f4", (2, 3), f32(x), version=2),
        "f4_2x3_v3.npy": npy("<f4", (2, 3), f32(x), version=3),
        "f8_3.npy": npy("<f8", (3,), struct.pack("<3d", 1.0, -2.0, 1e300)),
        "u1_4.npy": npy("|u1", (4,), bytes([0, 1, 127, 255])),
        "i1_4.npy": npy("|i1", (4,), bytes([0x80, 0xFF, 0, 0x7F])),
        "i4_2x2.npy": npy("<i4", (2, 2), struct.pack("<4i", -2**31, -1, 0, 2**31 - 1)),
        "i8_2.npy": npy("<i8", (2,), struct.pack("<2q", -2**63, 2**63 - 1)),
        "scalar_f4.npy": npy("<f4", (), f32([42.0])),
        "empty_0x3.npy": npy("<f4", (0, 3), b""),
        "f4_8d.npy": npy("<f4", (1, 1, 1, 1, 1, 1, 1, 2), f32([1.0, 2.0])),
        "nan_inf.npy": npy("<f4", (3,), f32([float("nan"), float("inf"), -float("inf")])),
        "reject_truncated.npy": npy("<f4", (2, 3), f32(x))[:-5],
        "reject_trailing.npy": npy("<f4", (2,), f32([1.0, 2.0]) + b"xx"),
        "reject_huge_shape.npy": npy("<f4", (2**40, 2**40), b""),
        "reject_big_endian.npy": npy(">f4", (1,), b"\x3f\x80\x00\x00"),
        "reject_fortran.npy": npy("<f4", (2, 1), f32([1.0, 2.0]), fortran=True),
        "reject_9d.npy": npy("<f4", (1,) * 9, f32([1.0])),
        "reject_magic_only.npy": b"\x93NUMPY\x01\x00",
        "reject_empty.npy": b"",
    }
    for name, data in seeds.items():
        write("npy", name, data)
    copy_dir("npy", "tests/data/npy", ".npy", "tests_")
    copy_dir("npy", "tests/data/cli", ".npy", "cli_")
    copy_dir("npy", "examples/data", ".npy", "examples_")
    return seeds


def idx_seeds():
    seeds = {
        "u8_2x3": idx(0x08, [2, 3], bytes(range(250, 256))),
        "s8_4": idx(0x09, [4], bytes([0x80, 0xFF, 0, 0x7F])),
        "s16_3": idx(0x0B, [3], struct.pack(">3h", -32768, -1, 32767)),
        "s32_2": idx(0x0C, [2], struct.pack(">2i", -2**31, 2**31 - 1)),
        "f32_2x2": idx(0x0D, [2, 2], struct.pack(">4f", 1.0, -2.5, float("nan"), float("inf"))),
        "f64_2": idx(0x0E, [2], struct.pack(">2d", 1e-300, -1e300)),
        "u8_mnist_like": idx(0x08, [3, 4, 4], bytes((i * 37) % 256 for i in range(48))),
        "u8_empty_dim": idx(0x08, [0, 28], b""),
        "labels": idx(0x08, [10], bytes(range(10))),
        "reject_truncated": idx(0x08, [2, 3], b"\x01\x02"),
        "reject_trailing": idx(0x08, [2], b"\x01\x02\x03"),
        "reject_type": idx(0x07, [1], b"\x00"),
        "reject_9d": idx(0x08, [1] * 9, b"\x00"),
        "reject_0d": bytes([0, 0, 0x08, 0]),
        "reject_huge": idx(0x0E, [0xFFFFFFFF] * 4, b""),
        "reject_magic": b"\x01\x02\x08\x01\x00\x00\x00\x01\x00",
        "reject_short": b"\x00\x00",
    }
    for name, data in seeds.items():
        write("idx", name + ".idx", data)
        if not name.startswith("reject_") or name in ("reject_truncated", "reject_huge"):
            write("idx", name + ".idx.gz", gzip.compress(data, mtime=0))
    write("idx", "reject_gzip_truncated.idx.gz", gzip.compress(seeds["u8_mnist_like"], mtime=0)[:-9])
    write("idx", "reject_gzip_crc.idx.gz", gzip.compress(seeds["u8_2x3"], mtime=0)[:-8] + b"\0" * 8)


def safetensors(entries, data, metadata=None, raw_header=None):
    if raw_header is None:
        head = {}
        if metadata is not None:
            head["__metadata__"] = metadata
        head.update(entries)
        raw_header = json.dumps(head, separators=(",", ":")).encode()
    raw_header += b" " * ((8 - len(raw_header) % 8) % 8)
    return struct.pack("<Q", len(raw_header)) + raw_header + data


def mlp_entries(dtype, size):
    shapes = [("0.weight", [7, 5]), ("0.bias", [7]), ("2.weight", [3, 7]), ("2.bias", [3])]
    entries, off = {}, 0
    for key, shape in shapes:
        n = size
        for d in shape:
            n *= d
        entries[key] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    return entries, off


def safetensors_seeds():
    copy_dir("safetensors", "tests/data/golden/safetensors", ".safetensors", "golden_")
    for dtype, size in (("F32", 4), ("F64", 8), ("F16", 2), ("BF16", 2), ("I64", 8), ("I32", 4),
                        ("I8", 1), ("U8", 1)):
        entries, n = mlp_entries(dtype, size)
        data = bytes((i * 7 + 3) % 251 for i in range(n))
        write("safetensors", "mlp_%s.safetensors" % dtype.lower(), safetensors(entries, data))
    entries, n = mlp_entries("F32", 4)
    data = bytes(n)
    write("safetensors", "mlp_metadata.safetensors",
          safetensors(entries, data, metadata={"format": "pt"}))
    partial = {"2.bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}
    write("safetensors", "partial_2_bias.safetensors", safetensors(partial, f32([1, 2, 3])))
    extra = dict(entries)
    extra["9.unknown"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    write("safetensors", "extra_key.safetensors", safetensors(extra, data))
    write("safetensors", "empty_object.safetensors", safetensors({}, b""))
    bad_shape = {"0.weight": {"dtype": "F32", "shape": [5, 7], "data_offsets": [0, 140]}}
    write("safetensors", "reject_shape.safetensors", safetensors(bad_shape, bytes(140)))
    bad_off = {"0.bias": {"dtype": "F32", "shape": [7], "data_offsets": [4, 32]}}
    write("safetensors", "reject_offsets.safetensors", safetensors(bad_off, bytes(28)))
    write("safetensors", "reject_dtype.safetensors",
          safetensors({"0.bias": {"dtype": "C64", "shape": [7], "data_offsets": [0, 56]}}, bytes(56)))
    write("safetensors", "reject_not_json.safetensors", safetensors(None, b"", raw_header=b"{not json"))
    write("safetensors", "reject_header_len.safetensors", struct.pack("<Q", 2**62) + b"{}")
    write("safetensors", "reject_short.safetensors", b"\x02\x00\x00")


OBSERVE_OPTIONS = [
    # (name, 4 option bytes) -- see fuzz_observe.c for the layout
    ("minmax", bytes([0, 0, 0, 0])),
    ("moving_average", bytes([1, 0, 0, 0x40])),
    ("histogram_default", bytes([2, 0, 0, 0])),
    ("histogram_small", bytes([2, 0, 4 | (1 << 6), 0xC0])),
    ("histogram_bins1", bytes([2, 0, 1, 0x80])),
    ("per_channel", bytes([3, 2 | (4 << 3), 1 << 3, 0])),
    ("per_channel_float_qparams", bytes([3, 1 | (5 << 3), 3 << 3, 0])),
    ("ma_per_channel", bytes([4, 0, 2 << 3, 0x40])),
    ("percentile", bytes([5, 0, 5, 1])),
    ("mse", bytes([6, 2 | (2 << 3), 5, (2 << 2) | (1 << 4)])),
    ("entropy", bytes([7, 0, 5, (2 << 2) | (2 << 4)])),
    ("symmetric_reduce", bytes([0, 2 | (2 << 3) | 0x40, 0, 0])),
    ("custom_range", bytes([0 | (1 << 3), 2 | 0x80, 0, 0])),
    ("qint32", bytes([0, 3, 0, 0])),
    ("quint4x2", bytes([0, 4, 0, 0])),
    ("eps_zero", bytes([0 | (4 << 5), 0, 0, 0])),
]


def observe_seeds(npys):
    batches = {
        "seed_x0": open(os.path.join(ROOT, "examples/data/seed_x0.npy"), "rb").read(),
        "f4_2x3": npys["f4_2x3.npy"],
        "u1_4": npys["u1_4.npy"],
        "f8_3": npys["f8_3.npy"],
        "empty": npys["empty_0x3.npy"],
        "nan": npys["nan_inf.npy"],
        "conv_weight": open(os.path.join(ROOT, "tests/data/cli/conv_weight.npy"), "rb").read(),
    }
    for oname, opt in OBSERVE_OPTIONS:
        for bname, data in batches.items():
            write("observe", "%s__%s.bin" % (oname, bname), opt + data)


def main():
    npys = npy_seeds()
    idx_seeds()
    safetensors_seeds()
    observe_seeds(npys)
    for t in sorted(os.listdir(OUT)):
        print("%s: %d seeds" % (t, len(os.listdir(os.path.join(OUT, t)))))


if __name__ == "__main__":
    main()
