"""Reads a GGUF file with the `gguf` package (llama.cpp's gguf-py) and prints, as JSON, its
architecture, every tensor's name, GGML type and dimensions (innermost first, as GGUF stores
them), and the values of the first tensor of each type, decoded by `gguf.quants.dequantize`."""

import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main(path):
    reader = GGUFReader(path)
    field = reader.fields["general.architecture"]
    architecture = bytes(field.parts[field.data[0]]).decode("utf-8")
    tensors = []
    decoded = set()
    for tensor in reader.tensors:
        entry = {
            "name": tensor.name,
            "type": tensor.tensor_type.name,
            "ne": [int(d) for d in tensor.shape],
        }
        if tensor.tensor_type.name not in decoded:
            decoded.add(tensor.tensor_type.name)
            values = dequantize(tensor.data, tensor.tensor_type)
            entry["values"] = np.asarray(values, dtype=np.float32).ravel().tolist()
        tensors.append(entry)
    json.dump({"architecture": architecture, "tensors": tensors}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
