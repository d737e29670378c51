#!/usr/bin/env python3
"""Writes the K-quant dequantization fixtures used by crates/quant/tests/kquant_*.rs.

An independent reference: the PyPI `gguf` package's `gguf.quants.dequantize` (numpy, written apart from both
llama.cpp's C and our Rust). For each of Q2_K..Q6_K it draws a few blocks of random bytes, sets the f16 scale
fields to small finite values (random bytes there could be inf/NaN), adds one block of all-ones bits (every
quant, scale and min at its maximum) and one of all-zero quants, dequantizes them with `gguf`, and writes

    crates/quant/tests/fixtures/kquant/<name>.bin:
        b"KQF1", u32 n_blocks, u32 block_bytes   (little-endian)
        n_blocks * block_bytes   block bytes
        n_blocks * 256 f32       expected values, little-endian

(`gguf` has no K-quant quantizer, so only dequantization is fixed here; the round trip of our quantizers is
tested against error bounds instead.)

Usage: pip install gguf numpy && python3 scripts/kquant-fixtures.py
"""

import pathlib
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/quant/tests/fixtures/kquant"
QK_K = 256
RANDOM_BLOCKS = 4

# name -> (type, block bytes, byte offsets of its f16 fields, byte range of its quants)
FORMATS = {
    "q2_k": (T.Q2_K, 84, [80, 82], (16, 80)),
    "q3_k": (T.Q3_K, 110, [108], (0, 96)),
    "q4_k": (T.Q4_K, 144, [0, 2], (16, 144)),
    "q5_k": (T.Q5_K, 176, [0, 2], (16, 176)),
    "q6_k": (T.Q6_K, 210, [208], (0, 192)),
}


def small_f16(rng: np.random.Generator) -> bytes:
    """A finite f16 of either sign with magnitude in [2^-12, 2^-2]: the range real scales live in."""
    value = rng.choice([-1.0, 1.0]) * 2.0 ** rng.uniform(-12, -2)
    return np.float16(value).tobytes()


def make_blocks(rng: np.random.Generator, size: int, f16_offsets: list[int], quants: tuple[int, int]) -> bytes:
    out = bytearray()
    for i in range(RANDOM_BLOCKS + 2):
        if i < RANDOM_BLOCKS:
            block = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        elif i == RANDOM_BLOCKS:
            block = bytearray(b"\xff" * size)
        else:
            block = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
            block[quants[0] : quants[1]] = bytes(quants[1] - quants[0])
        for off in f16_offsets:
            block[off : off + 2] = small_f16(rng) if i != RANDOM_BLOCKS else np.float16(0.5).tobytes()
        out += block
    return bytes(out)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261001)
    for name, (qtype, size, f16_offsets, quants) in FORMATS.items():
        raw = make_blocks(rng, size, f16_offsets, quants)
        n_blocks = len(raw) // size
        values = dequantize(np.frombuffer(raw, dtype=np.uint8), qtype).astype("<f4")
        assert values.size == n_blocks * QK_K and np.isfinite(values).all(), name
        path = OUT / f"{name}.bin"
        path.write_bytes(b"KQF1" + struct.pack("<II", n_blocks, size) + raw + values.tobytes())
        print(f"{path}: {n_blocks} blocks, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
