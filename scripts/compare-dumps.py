#!/usr/bin/env python3
"""Compare quarrel's intermediate tensors with llama.cpp's, op by op, and name the first one that differs.

    target/release/quarrel dump -m MODEL -f prompt.txt --steps 2 -o ours.bin -t 2
    target/llama-ref/llama_dump --model MODEL --prompt-file prompt.txt --steps 2 --out ref.bin   (dev/llama-ref/build.sh)
    scripts/compare-dumps.py ours.bin ref.bin [--all]

Both files hold records `u32 step, u32 name length, name, i64 ne[4], f32 values`. Our names are llama.cpp's graph
names (see `engine::model::decoder::forward`); where llama.cpp names two tensors alike in one layer (`Qcur` before
and after RoPE), the last one is compared, and its last layer computes only the rows whose logits are wanted, so
ours are cut to its row count there. Prints each tensor's count of bit-equal values and largest difference (only
the differing ones unless --all), then the first tensor that is not bit for bit equal.
"""
import struct
import sys

import numpy as np

ALIASES = {"inp_embd": ["inp_embd", "inp_scaled"], "ffn_inp": ["ffn_inp", "sa_out"]}


def read(path):
    with open(path, "rb") as f:
        b = f.read()
    out, o = [], 0
    while o < len(b):
        step, n = struct.unpack_from("<II", b, o)
        o += 8
        name = b[o:o + n].decode()
        o += n
        ne = struct.unpack_from("<4q", b, o)
        o += 32
        count = ne[0] * ne[1] * ne[2] * ne[3]
        out.append((step, name, np.frombuffer(b, dtype="<f4", count=count, offset=o)))
        o += 4 * count
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    show_all = "--all" in sys.argv
    ours, ref = read(args[0]), read(args[1])
    last = {}
    for step, name, values in ref:
        last[(step, name)] = values  # the last tensor of each name in each step
    first_bad, compared = None, 0
    for step, name, values in ours:
        r = next((last[(step, n)] for n in ALIASES.get(name, [name]) if (step, n) in last), None)
        if r is None:
            continue
        if r.size != values.size:
            if r.size == 0 or values.size % r.size:
                print(f"{step} {name}: {values.size} values against {r.size}")
                continue
            values = values[-r.size:]
        compared += 1
        equal = int(np.sum(r.view(np.uint32) == values.view(np.uint32)))
        diff = float(np.max(np.abs(r.astype(np.float64) - values.astype(np.float64)))) if r.size else 0.0
        if equal != r.size and first_bad is None:
            first_bad = (step, name)
        if show_all or equal != r.size:
            print(f"{step} {name:24s} {equal:9d} / {r.size:<9d} bit-equal   max |d| {diff:.3g}")
    print(f"{compared} tensors compared; " + (
        "all bit for bit equal" if first_bad is None else f"first difference: step {first_bad[0]}, {first_bad[1]}"))
    sys.exit(0 if first_bad is None else 1)


if __name__ == "__main__":
    main()
