#!/usr/bin/env python3
"""Writes crates/quant/tests/fixtures/ggml-vec-dot.json: ggml's own CPU dot products (from the libggml-cpu that
llama-cpp-python ships, built for this machine) on random rows of every weight format against activations in the
format's partner type, as quantized by ggml itself. The Rust test `ggml_vec_dot` feeds the same bytes to our
kernels and reports which formats sum in ggml's order bit for bit.

usage: python3 scripts/ggml-vec-dot-fixture.py   (pip install llama-cpp-python==0.3.36 first)
"""
import ctypes, json, os, random, struct, sys, datetime

import llama_cpp

LIB = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
ctypes.CDLL(os.path.join(LIB, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
cpu = ctypes.CDLL(os.path.join(LIB, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)

FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


class Traits(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(Traits)
cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
cpu.ggml_cpu_init()

# name: (ggml type id, block elements, block bytes)
TYPES = {"q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q5_0": (6, 32, 22), "q5_1": (7, 32, 24), "q8_0": (8, 32, 34),
         "q8_1": (9, 32, 36), "q2_k": (10, 256, 84), "q3_k": (11, 256, 110), "q4_k": (12, 256, 144),
         "q5_k": (13, 256, 176), "q6_k": (14, 256, 210), "q8_k": (15, 256, 292)}
BY_ID = {v[0]: k for k, v in TYPES.items()}


def quantize(type_id, xs):
    name = BY_ID[type_id]
    _, elems, bytes_ = TYPES[name]
    out = ctypes.create_string_buffer(len(xs) // elems * bytes_)
    arr = (ctypes.c_float * len(xs))(*xs)
    FROM_FLOAT(cpu.ggml_get_type_traits_cpu(type_id).contents.from_float)(arr, out, len(xs))
    return out.raw


def main():
    rng = random.Random(20261126)
    cases = []
    for name in ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]:
        type_id = TYPES[name][0]
        traits = cpu.ggml_get_type_traits_cpu(type_id).contents
        act_id = traits.vec_dot_type
        vec_dot = VEC_DOT(traits.vec_dot)
        for n in [256, 1024]:
            for _ in range(3):
                w = [rng.gauss(0, 1) * (1 + 3 * (rng.random() < 0.05)) for _ in range(n)]
                x = [rng.gauss(0, 1) for _ in range(n)]
                wq, xq = quantize(type_id, w), quantize(act_id, x)
                s = ctypes.c_float()
                vec_dot(n, ctypes.byref(s), 0, wq, 0, xq, 0, 1)
                cases.append({"weight": name, "act": BY_ID[act_id], "n": n, "weight_hex": wq.hex(),
                              "act_hex": xq.hex(), "dot_bits": struct.unpack("<I", struct.pack("<f", s.value))[0]})
    out = {"producer": f"ggml CPU of llama-cpp-python {llama_cpp.__version__} (its libggml-cpu, built here)",
           "date": datetime.date.today().isoformat(), "cases": cases}
    path = os.path.join(os.path.dirname(__file__), "..", "crates", "quant", "tests", "fixtures", "ggml-vec-dot.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")


if __name__ == "__main__":
    sys.exit(main())
