//! Our dot products against ggml's own on the same bytes: `tests/fixtures/ggml-vec-dot.json`, written by
//! `scripts/ggml-vec-dot-fixture.py` from the libggml-cpu that llama-cpp-python 0.3.36 builds on this machine (the
//! llama.cpp version our agreement fixtures come from). Weights and activations are ggml's own quantizations, so only
//! the order of the float sums can differ.
//!
//! Every result must be within float rounding of ggml's (a wrong kernel is off by far more). Which formats sum in
//! exactly ggml's order is printed, and those that do at the time of writing must keep doing so: bit-equal products
//! are a precondition for token-for-token agreement with llama.cpp (docs/BENCHMARKS.md, "Agreement").

use std::path::PathBuf;

use quarrel_quant::{kernels, GgmlType, SimdLevel};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Weight formats whose products equal ggml's bit for bit on every fixture case, at AVX2 and AVX-512 (the scalar
/// reference sums in plain order): all of them.
const EXACT: &[&str] = &[
    "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k",
];

#[test]
fn dot_products_match_ggml_within_rounding_and_report_exactness() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ggml-vec-dot.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 50, "fixture has {} cases", cases.len());
    let best = SimdLevel::detect();
    let mut report = Vec::new();
    for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
        if level > best {
            continue;
        }
        let mut exact: Vec<(String, bool)> = Vec::new();
        for case in cases {
            let name = case["weight"].as_str().expect("weight");
            let ty = GgmlType::from_name(name).unwrap_or_else(|| panic!("format {name}"));
            let k = kernels(ty, level).unwrap_or_else(|| panic!("no kernels for {name}"));
            assert_eq!(
                k.act.name().to_lowercase(),
                case["act"].as_str().expect("act"),
                "{name}: activation format"
            );
            let n = case["n"].as_u64().expect("n") as usize;
            let (w, a) = (
                unhex(case["weight_hex"].as_str().expect("weight_hex")),
                unhex(case["act_hex"].as_str().expect("act_hex")),
            );
            let want = f32::from_bits(case["dot_bits"].as_u64().expect("dot_bits") as u32);
            let ours = (k.vec_dot)(n, &w, &a);
            // Bound: a few ulp of the sum of |terms| (estimated by |ggml's result| + n), far below a wrong kernel's.
            let bound = 1e-5 * (want.abs() + n as f32);
            assert!(
                (ours - want).abs() <= bound,
                "{name} at {level:?}, n {n}: ours {ours}, ggml {want}"
            );
            let same = ours.to_bits() == want.to_bits();
            match exact.iter_mut().find(|(f, _)| f == name) {
                Some((_, e)) => *e &= same,
                None => exact.push((name.to_string(), same)),
            }
        }
        for (name, same) in &exact {
            if level != SimdLevel::Scalar && EXACT.contains(&name.as_str()) {
                assert!(*same, "{name} at {level:?} no longer sums in ggml's order");
            }
        }
        report.push(format!(
            "{level:?}: bit-equal to ggml: [{}]; not: [{}]",
            exact
                .iter()
                .filter(|e| e.1)
                .map(|e| e.0.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            exact
                .iter()
                .filter(|e| !e.1)
                .map(|e| e.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    eprintln!("{}", report.join("\n"));
}
