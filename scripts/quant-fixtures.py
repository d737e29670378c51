#!/usr/bin/env python3
"""Writes the fixtures of quarrel-quant's legacy-format tests from an independent implementation: gguf-py's
`gguf.quants` (pip install gguf numpy). The Rust tests read them; no Python runs at test time.

    python3 scripts/quant-fixtures.py [OUT_DIR]   # default crates/quant/tests/fixtures/legacy

One file per format, `<name>.bin`, all little-endian:

    b"QFX1"  u32 ggml type id  u32 block_elems  u32 block_bytes
    u32 n_blocks   n_blocks * block_bytes raw blocks   n_blocks * block_elems f32: gguf-py's dequantize
    u32 n_inputs   n_inputs f32 inputs   (n_inputs / block_elems) * block_bytes: gguf-py's quantize (0 if none)

Dequantize blocks are random bytes with finite scales (and a few chosen edge blocks); quantize inputs are random
normal blocks plus edge blocks (zeros, ties, one large value, negative extremes).
"""

import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20261126
N_RANDOM_BLOCKS = 16

# name -> (type, has gguf-py quantize, byte offsets of f16 scale fields in a block)
FORMATS = {
    "f32": (T.F32, False, []),
    "f16": (T.F16, True, []),
    "bf16": (T.BF16, True, []),
    "q4_0": (T.Q4_0, True, [0]),
    "q4_1": (T.Q4_1, True, [0, 2]),
    "q5_0": (T.Q5_0, True, [0]),
    "q5_1": (T.Q5_1, True, [0, 2]),
    "q8_0": (T.Q8_0, True, [0]),
}


def random_scale_bytes(rng, n):
    """f16 scales, finite, of both signs, magnitudes spread over 1e-4..10 (a few exact zeros)."""
    mags = np.exp(rng.uniform(np.log(1e-4), np.log(10.0), n)).astype(np.float32)
    signs = np.where(rng.random(n) < 0.3, -1.0, 1.0).astype(np.float32)
    vals = (mags * signs).astype(np.float16)
    vals[rng.random(n) < 0.05] = 0
    return vals.view(np.uint8).reshape(n, 2)


def dequant_blocks(rng, qtype, scale_fields):
    block_elems, block_bytes = quants.GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        vals = rng.standard_normal(N_RANDOM_BLOCKS * 8).astype(np.float32)
        vals[:6] = [0.0, -0.0, np.inf, -np.inf, 1e-42, -3.4e38]
        return vals.view(np.uint8)
    if qtype == T.F16:
        bits = rng.integers(0, 1 << 16, N_RANDOM_BLOCKS * 16, dtype=np.uint16)
        bits = bits[(bits & 0x7C00) != 0x7C00]  # no inf/NaN from random bits ...
        special = np.array([0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0x7C00, 0xFC00], dtype=np.uint16)
        return np.concatenate([special, bits]).view(np.uint8)  # ... but ±inf, ±0, subnormals on purpose
    if qtype == T.BF16:
        bits = rng.integers(0, 1 << 16, N_RANDOM_BLOCKS * 16, dtype=np.uint16)
        bits = bits[(bits & 0x7F80) != 0x7F80]
        special = np.array([0x0000, 0x8000, 0x0001, 0x807F, 0x7F7F, 0x7F80, 0xFF80], dtype=np.uint16)
        return np.concatenate([special, bits]).view(np.uint8)
    raw = rng.integers(0, 256, (N_RANDOM_BLOCKS, block_bytes), dtype=np.uint8)
    for off in scale_fields:
        raw[:, off : off + 2] = random_scale_bytes(rng, N_RANDOM_BLOCKS)
    return raw.reshape(-1)


def quant_inputs(rng, qtype):
    block_elems, _ = quants.GGML_QUANT_SIZES[qtype]
    if block_elems == 1:
        x = (rng.standard_normal(256) * np.exp(rng.uniform(-12, 12, 256))).astype(np.float32)
        special = np.array(
            [0.0, -0.0, 65504.0, 65520.0, 70000.0, -1e-8, 6.1e-5, 5.96e-8, 2.98e-8, 1.0 + 2**-11, 1.0 + 3 * 2**-11,
             3.4e38, np.inf, -np.inf],
            dtype=np.float32,
        )
        x = np.concatenate([special, x])
        if qtype == T.BF16:
            nan_bits = np.array([0x7FC00000, 0x7F800001, 0xFFA00000, 0x3F808000, 0x3F818000], dtype=np.uint32)
            x = np.concatenate([x, nan_bits.view(np.float32)])
        return x
    blocks = [rng.standard_normal(32) * np.exp(rng.uniform(-6, 3)) for _ in range(N_RANDOM_BLOCKS)]
    blocks.append(np.zeros(32))
    blocks.append(np.concatenate([[5.0], np.zeros(31)]))
    blocks.append(np.concatenate([[-5.0], rng.standard_normal(31)]))
    blocks.append(np.concatenate([[-8.0, 8.0], np.arange(-7.5, 7.5, 0.5)]))  # ties, both extremes
    blocks.append(np.concatenate([[127.0, -127.0], np.arange(-15, 15, 1) + 0.5]))  # ties after scaling by 1
    blocks.append(np.full(32, 0.25))
    return np.concatenate(blocks).astype(np.float32)


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("crates/quant/tests/fixtures/legacy")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for name, (qtype, has_quantize, scale_fields) in FORMATS.items():
        block_elems, block_bytes = quants.GGML_QUANT_SIZES[qtype]
        raw = dequant_blocks(rng, qtype, scale_fields)
        n_blocks = raw.size // block_bytes
        expected = quants.dequantize(raw.reshape(1, -1), qtype).astype(np.float32).reshape(-1)
        assert expected.size == n_blocks * block_elems
        parts = [b"QFX1", struct.pack("<4I", int(qtype), block_elems, block_bytes, n_blocks), raw.tobytes(),
                 expected.tobytes()]
        if has_quantize:
            x = quant_inputs(rng, qtype)
            q = np.asarray(quants.quantize(x.reshape(1, -1), qtype)).view(np.uint8).reshape(-1)
            assert q.size == x.size // block_elems * block_bytes
            parts += [struct.pack("<I", x.size), x.tobytes(), q.tobytes()]
        else:
            parts.append(struct.pack("<I", 0))
        path = out_dir / f"{name}.bin"
        path.write_bytes(b"".join(parts))
        print(f"{path}: {n_blocks} blocks, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
