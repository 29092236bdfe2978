#!/usr/bin/env python3
"""Writes the small .npy fixtures used by the CLI tests (tests/data/cli/) and the seed's observer
inputs (examples/data/). Needs only numpy; run from the repository root:

    /usr/bin/python3 tools/golden/gen_cli_fixtures.py
"""
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "tests", "data", "cli")
EXAMPLES = os.path.join(ROOT, "examples", "data")

# The seed's two 3x4 inputs, as it prints them.
SEED_X0 = [[-0.0590, 1.1674, 0.7119, -1.1270],
           [-1.3974, 0.5077, -0.5601, 0.0683],
           [-0.0929, 0.9473, 0.7159, -0.4574]]
SEED_X1 = [[-0.0236, -0.7599, 1.0290, 0.8914],
           [-1.1727, -1.2556, -0.2271, 0.9568],
           [-0.2500, 1.4579, 1.4707, 0.4043]]


def main():
    os.makedirs(CLI, exist_ok=True)
    os.makedirs(EXAMPLES, exist_ok=True)
    np.save(os.path.join(EXAMPLES, "seed_x0.npy"), np.array(SEED_X0, dtype=np.float32))
    np.save(os.path.join(EXAMPLES, "seed_x1.npy"), np.array(SEED_X1, dtype=np.float32))

    rng = np.random.default_rng(7)
    np.save(os.path.join(CLI, "conv_weight.npy"), rng.normal(0, 0.1, (4, 2, 3, 3)).astype(np.float32))
    np.save(os.path.join(CLI, "activations_f64.npy"), rng.normal(1, 2, (2, 8)).astype(np.float64))
    np.save(os.path.join(CLI, "uint8.npy"), np.arange(12, dtype=np.uint8).reshape(3, 4))
    nan = np.ones((2, 5), dtype=np.float32)
    nan[1, 2] = np.nan
    np.save(os.path.join(CLI, "nan.npy"), nan)
    inf = np.zeros(6, dtype=np.float32)
    inf[4] = -np.inf
    np.save(os.path.join(CLI, "inf.npy"), inf)
    np.save(os.path.join(CLI, "empty.npy"), np.zeros((0, 4), dtype=np.float32))
    np.save(os.path.join(CLI, "big_endian.npy"), np.ones(3, dtype=">f4"))
    np.save(os.path.join(CLI, "fortran.npy"), np.asfortranarray(np.ones((2, 3), dtype=np.float32)))
    np.save(os.path.join(CLI, "complex.npy"), np.ones(3, dtype=np.complex64))
    good = open(os.path.join(CLI, "conv_weight.npy"), "rb").read()
    with open(os.path.join(CLI, "truncated.npy"), "wb") as f:
        f.write(good[:len(good) - 10])
    with open(os.path.join(CLI, "bad_magic.npy"), "wb") as f:
        f.write(b"\x93NUMPZ" + good[6:])
    # a header that claims a shape far larger than the file
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }"
    header = header + " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    with open(os.path.join(CLI, "huge_dims.npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 16)
    with open(os.path.join(CLI, "not_npy.npy"), "wb") as f:
        f.write(b"this is a text file, not an array\n")


if __name__ == "__main__":
    main()
