#!/usr/bin/env python3
"""Writes the Fashion-MNIST subset shipped in this folder from the full dataset.

    python3 data/fashion-mnist/make_subset.py [SOURCE_DIR] [TRAIN_COUNT] [TEST_COUNT]

SOURCE_DIR defaults to Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist). The subset
is the first TRAIN_COUNT images of the training split and the first TEST_COUNT of t10k, in order, as
gzip IDX files with the official names; only the count in each header changes. gzip's timestamp is
zero, so the output is byte-for-byte reproducible.
"""
import gzip
import os
import struct
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
counts = {"train": int(sys.argv[2]) if len(sys.argv) > 2 else 4000,
          "t10k": int(sys.argv[3]) if len(sys.argv) > 3 else 2000}
out = os.path.dirname(os.path.abspath(__file__))

for split, count in counts.items():
    for kind, item_bytes in (("images-idx3-ubyte", 28 * 28), ("labels-idx1-ubyte", 1)):
        name = f"{split}-{kind}.gz"
        with gzip.open(os.path.join(src, name), "rb") as f:
            raw = f.read()
        ndim = raw[3]
        dims = list(struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim]))
        assert raw[:3] == b"\0\0\x08" and count <= dims[0], name
        total = dims[0]
        body = raw[4 + 4 * ndim:4 + 4 * ndim + count * item_bytes]
        dims[0] = count
        header = raw[:4] + struct.pack(">" + "I" * ndim, *dims)
        with open(os.path.join(out, name), "wb") as f:
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as g:
                g.write(header + body)
        print(f"{name}: the first {count} of {total}")
