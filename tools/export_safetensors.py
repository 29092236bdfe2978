#!/usr/bin/env python3
"""Writes a PyTorch model's state_dict as a .safetensors file that cquant loads with
cq_load_safetensors (keys are the state-dict names: "0.weight", "1.running_mean", ...).

Library use:   from export_safetensors import save_state_dict; save_state_dict(model, "m.safetensors")
Command line:  /usr/bin/python3 tools/export_safetensors.py MODEL.pt OUT.safetensors
               (MODEL.pt: a whole model saved with torch.save(model), or a state_dict)

The format is written directly (8-byte little-endian header length, JSON header, raw little-endian
data), so the `safetensors` Python package is not needed.
"""
import json
import struct
import sys

import torch

DTYPES = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int8: "I8", torch.uint8: "U8",
}


def save_tensors(tensors, path, metadata=None):
    """tensors: an ordered mapping name -> torch.Tensor."""
    header = {"__metadata__": dict(metadata or {"format": "pt"})}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype not in DTYPES:
            raise ValueError("%s: dtype %s cannot be stored" % (name, t.dtype))
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def save_state_dict(model, path):
    save_tensors(model.state_dict(), path)


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: export_safetensors.py MODEL.pt OUT.safetensors\n")
        return 2
    obj = torch.load(argv[1], map_location="cpu")
    state = obj.state_dict() if hasattr(obj, "state_dict") else obj
    save_tensors(state, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
