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

Second, where llama.cpp's static libraries are at hand (`--llama-cpp DIR`, default the peer build under
~/.cache/quarrel-peers), it compiles a small C program against `libggml-cpu.a` (llama.cpp used as a black box
through its public API: `ggml_get_type_traits_cpu(type)->from_float` / `->vec_dot`) that draws random weight
rows and one activation row, quantizes the activations to Q8_K and takes ggml's dot products, and writes

    crates/quant/tests/fixtures/kquant/ggml_dots_<name>.bin:
        b"KQD1", u32 n, u32 n_rows, u32 row_bytes, u32 act_bytes   (little-endian)
        n f32                    the activation row
        act_bytes                ggml's Q8_K quantization of it
        n_rows * row_bytes       weight rows
        n_rows f32               ggml's vec_dot of each row with the activations

Usage: pip install gguf numpy && python3 scripts/kquant-fixtures.py [--llama-cpp DIR]
"""

import argparse
import pathlib
import struct
import subprocess
import tempfile

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


GGML_DOTS_C = r"""
#include "ggml.h"
#include "ggml-cpu.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t state = 20261001u;
static uint32_t next(void) { state = state * 1664525u + 1013904223u; return state >> 8; }
static float uniform(void) { return (next() + 0.5f) / 16777216.0f; }

int main(int argc, char **argv) {
    ggml_cpu_init();
    const int n = 1024, n_rows = 6;
    const enum ggml_type types[5] = {GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    const char *names[5] = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
    const int f16_at[5][2] = {{80, 82}, {108, -1}, {0, 2}, {0, 2}, {208, -1}};
    float act[1024];
    for (int i = 0; i < n; i++) {  /* gaussian, with the scale changing per block */
        act[i] = sqrtf(-2.0f * logf(uniform())) * cosf(6.2831853f * uniform()) * (1.0f + (i / 256) % 3);
    }
    for (int t = 0; t < 5; t++) {
        const struct ggml_type_traits_cpu *tr = ggml_get_type_traits_cpu(types[t]);
        const struct ggml_type_traits_cpu *q8 = ggml_get_type_traits_cpu(tr->vec_dot_type);
        const uint32_t row_bytes = ggml_row_size(types[t], n), act_bytes = ggml_row_size(tr->vec_dot_type, n);
        const size_t block_bytes = ggml_type_size(types[t]);
        uint8_t *w = malloc((size_t)n_rows * row_bytes), *aq = malloc(act_bytes);
        for (size_t i = 0; i < (size_t)n_rows * row_bytes; i++) w[i] = next() & 0xFF;
        for (size_t b = 0; b < (size_t)n_rows * row_bytes / block_bytes; b++) {
            for (int k = 0; k < 2; k++) {
                if (f16_at[t][k] < 0) continue;
                float v = ((next() & 1) ? 1.0f : -1.0f) * powf(2.0f, -12.0f + 10.0f * uniform());
                ggml_fp16_t h = ggml_fp32_to_fp16(v);
                memcpy(w + b * block_bytes + f16_at[t][k], &h, 2);
            }
        }
        q8->from_float(act, aq, n);
        float dots[6];
        for (int r = 0; r < n_rows; r++) tr->vec_dot(n, &dots[r], 0, w + (size_t)r * row_bytes, 0, aq, 0, 1);
        char path[4096];
        snprintf(path, sizeof path, "%s/ggml_dots_%s.bin", argv[1], names[t]);
        FILE *f = fopen(path, "wb");
        if (!f) return 1;
        const uint32_t header[4] = {(uint32_t)n, (uint32_t)n_rows, row_bytes, act_bytes};
        fwrite("KQD1", 1, 4, f);
        fwrite(header, 4, 4, f);
        fwrite(act, 4, n, f);
        fwrite(aq, 1, act_bytes, f);
        fwrite(w, 1, (size_t)n_rows * row_bytes, f);
        fwrite(dots, 4, n_rows, f);
        fclose(f);
        printf("%s\n", path);
    }
    return 0;
}
"""


def write_ggml_dots(llama_cpp: pathlib.Path) -> None:
    libs = [llama_cpp / "build/ggml/src/libggml-cpu.a", llama_cpp / "build/ggml/src/libggml-base.a"]
    include = llama_cpp / "src/ggml/include"
    if not all(p.exists() for p in libs) or not include.exists():
        print(f"skipping ggml dot fixtures: no llama.cpp build at {llama_cpp}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = pathlib.Path(tmp) / "dots.c", pathlib.Path(tmp) / "dots"
        src.write_text(GGML_DOTS_C)
        cmd = ["gcc", "-O2", f"-I{include}", str(src), *map(str, libs)]
        subprocess.run([*cmd, "-lstdc++", "-lm", "-lpthread", "-fopenmp", "-o", str(exe)], check=True)
        subprocess.run([str(exe), str(OUT)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = pathlib.Path.home() / ".cache/quarrel-peers/llama.cpp-0.3.36"
    parser.add_argument("--llama-cpp", type=pathlib.Path, default=default, help="llama.cpp source + build dir")
    args = parser.parse_args()
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
    write_ggml_dots(args.llama_cpp)


if __name__ == "__main__":
    main()
