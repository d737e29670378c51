//! The non-K formats against an independent implementation: gguf-py's `gguf.quants`, whose outputs
//! `scripts/quant-fixtures.py` wrote into `tests/fixtures/legacy/` (format described there). Dequantizing must be
//! bit-exact at every SIMD level, and the round-to-nearest quantizers must produce gguf-py's bytes.

use std::path::PathBuf;

use quarrel_quant::{bf16, f16, kernels, q4_0, q4_1, q5_0, q5_1, q8_0, GgmlType, SimdLevel};

/// One fixture file.
struct Fixture {
    ty: GgmlType,
    /// [n_blocks, block_bytes]
    blocks: Vec<u8>,
    /// [n_blocks * block_elems]: gguf-py's dequantization of `blocks`.
    dequantized: Vec<f32>,
    /// [n_inputs]: floats gguf-py quantized (empty when it has no quantizer for the format).
    inputs: Vec<f32>,
    /// [n_inputs / block_elems, block_bytes]: gguf-py's quantization of `inputs`.
    quantized: Vec<u8>,
}

/// Reads little-endian fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.0.len() >= n,
            "fixture truncated: want {n} more bytes, have {}",
            self.0.len()
        );
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u32(&mut self) -> usize {
        let b = self.take(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    }
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.take(4 * n)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

fn load(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/legacy")
        .join(format!("{name}.bin"));
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/quant-fixtures.py)", path.display()));
    let mut r = Reader(&bytes);
    assert_eq!(r.take(4), b"QFX1", "{name}: magic");
    let ty = GgmlType::from_id(r.u32() as u32).unwrap_or_else(|| panic!("{name}: unknown type id"));
    let (block_elems, block_bytes) = (r.u32(), r.u32());
    assert_eq!(
        (block_elems, block_bytes),
        (ty.block_elems(), ty.block_bytes()),
        "{name}: block geometry"
    );
    let n_blocks = r.u32();
    let blocks = r.take(n_blocks * block_bytes).to_vec();
    let dequantized = r.f32s(n_blocks * block_elems);
    let n_inputs = r.u32();
    let inputs = r.f32s(n_inputs);
    let quantized = r.take(n_inputs / block_elems * block_bytes).to_vec();
    assert!(r.0.is_empty(), "{name}: {} trailing bytes", r.0.len());
    Fixture {
        ty,
        blocks,
        dequantized,
        inputs,
        quantized,
    }
}

const NAMES: [&str; 8] = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0"];

#[test]
fn dequantize_matches_gguf_py_bit_for_bit_at_every_level() {
    for name in NAMES {
        let fx = load(name);
        for level in SimdLevel::available() {
            let k = kernels(fx.ty, level).unwrap_or_else(|| panic!("{name} has kernels"));
            let mut got = vec![f32::NAN; fx.dequantized.len()]; // [n_blocks * block_elems]
            (k.dequantize_row)(&fx.blocks, &mut got);
            for (i, (g, e)) in got.iter().zip(&fx.dequantized).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    e.to_bits(),
                    "{name} at {} element {i}: {g} vs gguf-py {e}",
                    level.name()
                );
            }
        }
    }
}

#[test]
fn quantize_row_scalar_matches_gguf_py_bytes() {
    type Quantize = fn(&[f32], &mut [u8]);
    let quantizers: [(&str, Quantize); 5] = [
        ("q4_0", q4_0::quantize_row_scalar),
        ("q4_1", q4_1::quantize_row_scalar),
        ("q5_0", q5_0::quantize_row_scalar),
        ("q5_1", q5_1::quantize_row_scalar),
        ("q8_0", q8_0::quantize_row_scalar),
    ];
    for (name, quantize) in quantizers {
        let fx = load(name);
        assert!(!fx.inputs.is_empty(), "{name}: fixture has quantize inputs");
        let mut got = vec![0u8; fx.quantized.len()]; // [n_inputs / 32, block_bytes]
        quantize(&fx.inputs, &mut got);
        let block_bytes = fx.ty.block_bytes();
        for (b, (g, e)) in got
            .chunks(block_bytes)
            .zip(fx.quantized.chunks(block_bytes))
            .enumerate()
        {
            assert_eq!(g, e, "{name} block {b}: inputs {:?}", &fx.inputs[32 * b..32 * (b + 1)]);
        }
    }
}

#[test]
fn float_narrowing_matches_gguf_py_at_every_level() {
    // F16 is numpy's astype(float16); BF16 is gguf-py's port of ggml's rounding (NaN made quiet).
    for (name, converter) in [
        (
            "f16",
            f16::f32_to_f16_converter as fn(SimdLevel) -> fn(&[f32], &mut [u8]),
        ),
        ("bf16", bf16::f32_to_bf16_converter),
    ] {
        let fx = load(name);
        assert!(!fx.inputs.is_empty(), "{name}: fixture has conversion inputs");
        for level in SimdLevel::available() {
            let mut got = vec![0u8; fx.quantized.len()]; // [n_inputs] halves
            converter(level)(&fx.inputs, &mut got);
            for (i, (g, e)) in got.chunks(2).zip(fx.quantized.chunks(2)).enumerate() {
                assert_eq!(
                    g,
                    e,
                    "{name} at {} element {i}: {:e} ({:#x})",
                    level.name(),
                    fx.inputs[i],
                    fx.inputs[i].to_bits()
                );
            }
        }
    }
}
