"""Independent GGML block codec for keye-kernels' tests: the `gguf` Python package (llama.cpp's
gguf-py) quantizes or dequantizes raw little-endian files.

    python3 gguf_quants.py dequantize q4_k blocks.bin values.f32
    python3 gguf_quants.py quantize q8_0 values.f32 blocks.bin

Needs `pip install gguf numpy`. gguf-py has quantizers for Q8_0 and Q4_0 (bit-exact with
ggml's reference ones) and dequantizers for all three types.
"""

import sys

import numpy as np
from gguf import GGMLQuantizationType, quants

TYPES = {
    "q8_0": GGMLQuantizationType.Q8_0,
    "q4_0": GGMLQuantizationType.Q4_0,
    "q4_k": GGMLQuantizationType.Q4_K,
}


def main() -> None:
    mode, name, source, target = sys.argv[1:5]
    qtype = TYPES[name]
    if mode == "dequantize":
        blocks = np.fromfile(source, dtype=np.uint8)
        quants.dequantize(blocks, qtype).astype(np.float32).tofile(target)
    elif mode == "quantize":
        values = np.fromfile(source, dtype=np.float32)
        quants.quantize(values, qtype).astype(np.uint8).tofile(target)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
