//! K-quant kernels on real weights: every Q2_K..Q6_K tensor of the cached models (first, middle and last row),
//! SIMD against scalar and scalar against an f64 dot of the dequantized rows, with the tolerances of
//! `kquant_formats.rs`. Rows are read in place from the file, so they sit at whatever byte offsets GGUF gives
//! them. A model that is not cached is fetched with `scripts/fetch-models.sh` first.

use gguf::{GgmlType, Gguf};
use quarrel_quant::{kernels, q8_k, SimdLevel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

const MODELS: [&str; 2] = ["qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "gemma-3-270m-q4_k_m.gguf"];

fn model_path(name: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("quarrel/models").join(name)
}

fn is_k_quant(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K
    )
}

#[test]
fn kernels_agree_on_real_weights() {
    let mut rng = StdRng::seed_from_u64(5);
    for name in MODELS {
        let path = model_path(name);
        if !path.exists() {
            // Never skipped: fetch with the project's script, as a new user would.
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let ok = std::process::Command::new("bash")
                .arg(root.join("scripts/fetch-models.sh"))
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "scripts/fetch-models.sh failed");
        }
        assert!(path.exists(), "{} missing after fetching", path.display());
        let model = Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut checked = 0;
        for info in model.tensors.iter().filter(|t| is_k_quant(t.ty)) {
            let n = info.dims[0] as usize;
            let n_rows = info.n_rows() as usize;
            let row_bytes = info.ty.row_bytes(n).expect("K-quant rows are whole super-blocks");
            let data = model.tensor_bytes(info); // [n_rows, row_bytes]
            let act_f32: Vec<f32> = (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let scalar = kernels(info.ty, SimdLevel::Scalar).expect("K-quant kernels");
            let mut act = vec![0u8; GgmlType::Q8_K.row_bytes(n).expect("whole blocks")];
            (scalar.quantize_act_row)(&act_f32, &mut act);
            let mut a = vec![0f32; n];
            q8_k::dequantize_row_scalar(&act, &mut a);
            for r in [0, n_rows / 2, n_rows - 1] {
                let row = &data[r * row_bytes..(r + 1) * row_bytes];
                let mut w = vec![0f32; n];
                (scalar.dequantize_row)(row, &mut w);
                assert!(
                    w.iter().all(|v| v.is_finite()),
                    "{} row {r}: non-finite weight",
                    info.name
                );
                let magnitude: f64 = w.iter().zip(&a).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum();
                let exact: f64 = w.iter().zip(&a).map(|(&x, &y)| x as f64 * y as f64).sum();
                let want = (scalar.vec_dot)(n, row, &act) as f64;
                let ratio = (want - exact).abs() / magnitude;
                assert!(
                    ratio <= 1e-6,
                    "{} row {r}: {want} vs f64 {exact} ({ratio:e})",
                    info.name
                );
                for level in SimdLevel::available() {
                    let fast = kernels(info.ty, level).expect("K-quant kernels");
                    let mut w_fast = vec![0f32; n];
                    (fast.dequantize_row)(row, &mut w_fast);
                    let same = w.iter().zip(&w_fast).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{} row {r} {}: dequantize differs", info.name, level.name());
                    let have = (fast.vec_dot)(n, row, &act) as f64;
                    let ratio = (have - want).abs() / magnitude;
                    assert!(
                        ratio <= 1e-6,
                        "{} row {r} {}: {have} vs scalar {want} ({ratio:e})",
                        info.name,
                        level.name()
                    );
                }
            }
            checked += 1;
        }
        assert!(checked > 0, "{name} has no K-quant tensors");
        eprintln!("{name}: {checked} K-quant tensors checked");
    }
}
