use std::collections::HashMap;

use gguf::{GgmlType, Gguf, Value};

use super::*;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quarrel-synth-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Parameter counts of the real models the presets copy, as their model cards give them.
#[test]
fn presets_have_the_parameter_counts_of_the_real_models() {
    let expected = [
        ("smollm2-135m", 134_515_008u64),
        ("llama3-1b", 1_235_814_400),
        ("llama3-8b", 8_030_261_248),
        ("mistral-7b", 7_241_732_096),
        ("qwen2.5-0.5b", 494_032_768),
        ("gemma3-270m", 268_098_176),
    ];
    for (name, n_params) in expected {
        let tensors = plan_tensors(preset(name).unwrap(), SynthQuant::F16).unwrap();
        let total: u64 = tensors.iter().map(|t| t.spec.dims.iter().product::<u64>()).sum();
        assert_eq!(total, n_params, "{name}");
    }
}

/// The expected type of each weight under each mix, written out from PRESETS.md (plus the Q4_K → Q5_0,
/// Q6_K → Q8_0 fallback for rows that are not whole 256-element super-blocks).
fn expected_type(quant: SynthQuant, short_name: &str, row_len: u64) -> GgmlType {
    let whole_super_blocks = row_len.is_multiple_of(256);
    match quant {
        SynthQuant::F16 => GgmlType::F16,
        SynthQuant::Q8_0 => GgmlType::Q8_0,
        SynthQuant::Q6_K if whole_super_blocks => GgmlType::Q6_K,
        SynthQuant::Q6_K => GgmlType::Q8_0,
        SynthQuant::Q4_K => match (short_name, whole_super_blocks) {
            ("ffn_down.weight" | "output.weight", true) => GgmlType::Q6_K,
            ("ffn_down.weight" | "output.weight", false) => GgmlType::Q8_0,
            (_, true) => GgmlType::Q4_K,
            (_, false) => GgmlType::Q5_0,
        },
    }
}

#[test]
fn every_preset_and_quant_has_the_right_tensors() {
    for p in presets() {
        let head_dim = p.head_dim() as u64;
        let (d, ff, v) = (p.d_model as u64, p.d_ff as u64, p.vocab as u64);
        let q = p.n_heads as u64 * head_dim;
        let kv = p.n_kv_heads as u64 * head_dim;
        let mut expected: Vec<(String, Vec<u64>)> = vec![
            ("token_embd.weight".into(), vec![d, v]),
            ("output_norm.weight".into(), vec![d]),
        ];
        if !p.tied {
            expected.push(("output.weight".into(), vec![d, v]));
        }
        for i in 0..p.n_layers {
            let mut layer = vec![
                ("attn_norm.weight", vec![d]),
                ("attn_q.weight", vec![d, q]),
                ("attn_k.weight", vec![d, kv]),
                ("attn_v.weight", vec![d, kv]),
                ("attn_output.weight", vec![q, d]),
                ("ffn_norm.weight", vec![d]),
                ("ffn_gate.weight", vec![d, ff]),
                ("ffn_up.weight", vec![d, ff]),
                ("ffn_down.weight", vec![ff, d]),
            ];
            if p.qkv_bias {
                layer.push(("attn_q.bias", vec![q]));
                layer.push(("attn_k.bias", vec![kv]));
                layer.push(("attn_v.bias", vec![kv]));
            }
            if p.is_gemma3() {
                layer.push(("attn_q_norm.weight", vec![head_dim]));
                layer.push(("attn_k_norm.weight", vec![head_dim]));
                layer.push(("post_attention_norm.weight", vec![d]));
                layer.push(("post_ffw_norm.weight", vec![d]));
            }
            expected.extend(layer.into_iter().map(|(n, dims)| (format!("blk.{i}.{n}"), dims)));
        }
        for quant in SynthQuant::ALL {
            let tensors = plan_tensors(p, quant).unwrap();
            assert_eq!(tensors.len(), expected.len(), "{} {quant}", p.name);
            let by_name: HashMap<&str, &PlannedTensor> = tensors.iter().map(|t| (t.spec.name.as_str(), t)).collect();
            for (name, dims) in &expected {
                let t = by_name
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("{} {quant}: no {name}", p.name));
                assert_eq!(&t.spec.dims, dims, "{} {quant} {name}", p.name);
                let short = name
                    .rsplit_once("blk.")
                    .map_or(name.as_str(), |(_, rest)| rest.split_once('.').map_or(rest, |(_, s)| s));
                if dims.len() == 1 {
                    assert_eq!(t.spec.ty, GgmlType::F32, "{} {quant} {name}", p.name);
                } else {
                    let want = expected_type(quant, short, dims[0]);
                    assert_eq!(t.spec.ty, want, "{} {quant} {name}", p.name);
                }
            }
        }
    }
}

#[test]
fn k_quant_mixes_of_the_big_presets_need_no_fallback() {
    // llama.cpp's speed figures were measured on these: every row is whole super-blocks.
    for name in ["llama3-1b", "llama3-8b", "mistral-7b"] {
        let tensors = plan_tensors(preset(name).unwrap(), SynthQuant::Q4_K).unwrap();
        let types: Vec<GgmlType> = tensors.iter().map(|t| t.spec.ty).collect();
        assert!(!types.contains(&GgmlType::Q5_0), "{name}");
        assert!(!types.contains(&GgmlType::Q8_0), "{name}");
        let n_q6k = types.iter().filter(|&&t| t == GgmlType::Q6_K).count();
        let p = preset(name).unwrap();
        assert_eq!(n_q6k, p.n_layers + usize::from(!p.tied), "{name}");
    }
}

#[test]
fn names_parse_and_unknown_ones_list_the_valid_ones() {
    assert_eq!("q4_k".parse::<SynthQuant>().unwrap(), SynthQuant::Q4_K);
    assert_eq!("Q8_0".parse::<SynthQuant>().unwrap(), SynthQuant::Q8_0);
    let err = "q5_k".parse::<SynthQuant>().unwrap_err().to_string();
    assert!(
        err.contains("q5_k") && err.contains("q6_k") && err.contains("f16"),
        "{err}"
    );
    assert_eq!(preset("llama3-8b").unwrap().d_ff, 14336);
    let err = preset("llama3-70b").unwrap_err().to_string();
    assert!(
        err.contains("llama3-70b") && err.contains("smollm2-135m") && err.contains("tiny"),
        "{err}"
    );
}

#[test]
fn bad_presets_are_refused() {
    let tiny = preset("tiny").unwrap();
    let uneven_heads = Preset {
        n_heads: 3,
        ..tiny.clone()
    };
    let err = plan_tensors(&uneven_heads, SynthQuant::F16).unwrap_err();
    assert!(matches!(err, SynthError::BadPreset { .. }), "{err}");
    let odd_rows = Preset {
        d_model: 40,
        n_heads: 4,
        ..tiny.clone()
    };
    let err = plan_tensors(&odd_rows, SynthQuant::Q8_0).unwrap_err();
    assert!(
        matches!(&err, SynthError::RowNotBlockAligned { row_len: 40, .. }),
        "{err}"
    );
    let err = plan_tensors(
        &Preset {
            vocab: 100,
            ..tiny.clone()
        },
        SynthQuant::F16,
    )
    .unwrap_err();
    assert!(err.to_string().contains("vocab 100"), "{err}");
}

fn read_u32(g: &Gguf, key: &str) -> u64 {
    g.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("{key}"))
}

/// Checks a written file against its preset: metadata, vocabulary and tensor contents.
fn check_file(path: &Path, p: &Preset, quant: SynthQuant) {
    let g = Gguf::open(path).unwrap();
    let arch = p.arch;
    assert_eq!(g.architecture().unwrap(), arch);
    assert_eq!(
        g.get_str("general.name").unwrap(),
        format!("quarrel-synth {} {quant}", p.name)
    );
    assert_eq!(read_u32(&g, &format!("{arch}.context_length")), 8192);
    assert_eq!(read_u32(&g, &format!("{arch}.embedding_length")), p.d_model as u64);
    assert_eq!(read_u32(&g, &format!("{arch}.block_count")), p.n_layers as u64);
    assert_eq!(read_u32(&g, &format!("{arch}.feed_forward_length")), p.d_ff as u64);
    assert_eq!(read_u32(&g, &format!("{arch}.attention.head_count")), p.n_heads as u64);
    assert_eq!(
        read_u32(&g, &format!("{arch}.attention.head_count_kv")),
        p.n_kv_heads as u64
    );
    assert_eq!(
        read_u32(&g, &format!("{arch}.rope.dimension_count")),
        p.head_dim() as u64
    );
    if p.key_length > 0 {
        assert_eq!(
            read_u32(&g, &format!("{arch}.attention.key_length")),
            p.key_length as u64
        );
        assert_eq!(
            read_u32(&g, &format!("{arch}.attention.value_length")),
            p.key_length as u64
        );
    }
    if p.is_gemma3() {
        assert_eq!(read_u32(&g, &format!("{arch}.attention.sliding_window")), 512);
    }
    assert_eq!(g.get_f32(&format!("{arch}.rope.freq_base")).unwrap(), p.rope_theta);
    let eps = g.get_f32(&format!("{arch}.attention.layer_norm_rms_epsilon")).unwrap();
    assert_eq!(eps, if arch == "llama" { 1e-5 } else { 1e-6 });

    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    let scores = g.get_f32_array("tokenizer.ggml.scores").unwrap();
    let types = g.get_i32_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!((tokens.len(), scores.len(), types.len()), (p.vocab, p.vocab, p.vocab));
    assert_eq!(&tokens[..3], &["<unk>", "<s>", "</s>"]);
    assert_eq!(&types[..3], &[2, 3, 3]);
    assert_eq!(
        (tokens[3], tokens[3 + 0x0A], tokens[258]),
        ("<0x00>", "<0x0A>", "<0xFF>")
    );
    assert!(types[3..259].iter().all(|&t| t == 6));
    assert_eq!(tokens[259], "\u{2581}t259");
    assert_eq!(tokens[p.vocab - 1], format!("\u{2581}t{}", p.vocab - 1));
    assert!(types[259..].iter().all(|&t| t == 1));
    assert!(scores.iter().enumerate().all(|(id, &s)| s == -(id as f32)));
    assert_eq!(read_u32(&g, "tokenizer.ggml.bos_token_id"), 1);
    assert_eq!(read_u32(&g, "tokenizer.ggml.eos_token_id"), 2);
    assert_eq!(read_u32(&g, "tokenizer.ggml.unknown_token_id"), 0);
    assert!(g.get_bool("tokenizer.ggml.add_bos_token").unwrap());

    let planned = plan_tensors(p, quant).unwrap();
    for t in &planned {
        let info = g.tensor(&t.spec.name).unwrap();
        assert_eq!((&info.dims, info.ty), (&t.spec.dims, t.spec.ty), "{}", t.spec.name);
        let data = g.tensor_data(&t.spec.name).unwrap();
        check_contents(&t.spec.name, info.ty, &info.dims, data);
    }
}

/// Decodes `data` with the quant crate's reference and checks it holds what PRESETS.md promises.
fn check_contents(name: &str, ty: GgmlType, dims: &[u64], data: &[u8]) {
    let n = dims.iter().product::<u64>() as usize;
    let mut values = vec![0f32; n]; // [n_rows, row_len]
    match ty {
        GgmlType::F32 => {
            for (v, bytes) in values.iter_mut().zip(data.chunks_exact(4)) {
                *v = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
        }
        GgmlType::F16 => {
            for (v, bytes) in values.iter_mut().zip(data.chunks_exact(2)) {
                *v = half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32();
            }
        }
        _ => {
            if quant::dequantize_row_reference(ty, data, &mut values).is_none() {
                // The quant crate cannot decode this format yet: check the one thing PRESETS.md fixes, the
                // leading f16 `d` of each block (Q5_0 / Q8_0 put it first).
                assert!(matches!(ty, GgmlType::Q5_0 | GgmlType::Q8_0), "{name}: {ty}");
                let d = half::f16::from_f32(BLOCK_SCALE).to_le_bytes();
                assert!(data.chunks_exact(ty.block_bytes()).all(|b| b[..2] == d), "{name}");
                return;
            }
        }
    }
    assert!(values.iter().all(|v| v.is_finite()), "{name}");
    if name.ends_with("norm.weight") {
        assert!(values.iter().all(|&v| v == 1.0), "{name}");
        return;
    }
    let d = BLOCK_SCALE as f64;
    match ty {
        GgmlType::F16 | GgmlType::F32 => {
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let std = (values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            let tolerance = 0.02 * 6.0 / (n as f64).sqrt();
            assert!(mean.abs() < tolerance, "{name}: mean {mean}");
            assert!((std - 0.02).abs() < 0.02 * 0.1 + tolerance, "{name}: std {std}");
        }
        GgmlType::Q8_0 => {
            // value = d * q with q the block's i8 bytes: dividing by d must give back those bytes exactly.
            let f16_d = half::f16::from_f32(BLOCK_SCALE).to_f32();
            for (block, vals) in data.chunks_exact(34).zip(values.chunks_exact(32)) {
                for (&q, &v) in block[2..].iter().zip(vals) {
                    assert_eq!(v, f16_d * f32::from(q as i8), "{name}");
                }
            }
        }
        GgmlType::Q5_0 => {
            // value = d * (q - 16), q in 0..32
            assert!(values.iter().all(|&v| v.abs() <= (16.0 * d * 1.001) as f32), "{name}");
        }
        GgmlType::Q4_K => {
            // value = d * sc * q - dmin * m with 6-bit sc, m and 4-bit q
            let bound = (63.0 * 15.0 * d + 63.0 * d) * 1.001;
            assert!(values.iter().all(|&v| v.abs() <= bound as f32), "{name}");
        }
        GgmlType::Q6_K => {
            // value = d * scale * (q - 32) with i8 scale and 6-bit q
            let bound = 128.0 * 32.0 * d * 1.001;
            assert!(values.iter().all(|&v| v.abs() <= bound as f32), "{name}");
        }
        other => panic!("{name}: unexpected type {other}"),
    }
    // Random contents: not all equal.
    assert!(values.iter().any(|&v| v != values[0]), "{name}");
}

#[test]
fn tiny_files_read_back_in_every_quant() {
    let dir = temp_dir("tiny");
    let tiny = preset("tiny").unwrap();
    for quant in SynthQuant::ALL {
        let path = dir.join(format!("tiny-{quant}.gguf"));
        let n_bytes = write_synth(tiny, quant, 42, &path).unwrap();
        assert_eq!(n_bytes, std::fs::metadata(&path).unwrap().len());
        assert!(!partial_path(&path).exists());
        check_file(&path, tiny, quant);
    }
    // A qwen2-shaped tiny model: biases and the qwen2 keys.
    let tiny_qwen = Preset {
        arch: "qwen2",
        qkv_bias: true,
        neox: true,
        tied: true,
        ..tiny.clone()
    };
    let path = dir.join("tiny-qwen2.gguf");
    write_synth(&tiny_qwen, SynthQuant::Q8_0, 1, &path).unwrap();
    check_file(&path, &tiny_qwen, SynthQuant::Q8_0);
    // A gemma3-shaped tiny model: its norms and keys, a head size other than d_model / n_heads.
    let tiny_gemma = Preset {
        arch: "gemma3",
        neox: true,
        tied: true,
        key_length: 32,
        ..tiny.clone()
    };
    let path = dir.join("tiny-gemma3.gguf");
    write_synth(&tiny_gemma, SynthQuant::F16, 1, &path).unwrap();
    check_file(&path, &tiny_gemma, SynthQuant::F16);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn smollm2_reads_back() {
    let dir = temp_dir("smollm2");
    let p = preset("smollm2-135m").unwrap();
    let path = dir.join("smollm2-q4_k.gguf");
    let n_bytes = write_synth(p, SynthQuant::Q4_K, 7, &path).unwrap();
    assert_eq!(n_bytes, std::fs::metadata(&path).unwrap().len());
    check_file(&path, p, SynthQuant::Q4_K);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let dir = temp_dir("determinism");
    // Bigger than one chunk per tensor so that the chunk seeding is exercised.
    let p = Preset {
        name: "det",
        vocab: 40_000,
        ..preset("tiny").unwrap().clone()
    };
    let write_with = |threads: usize, seed: u64, file: &str| {
        let path = dir.join(file);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| write_synth(&p, SynthQuant::F16, seed, &path)).unwrap();
        std::fs::read(&path).unwrap()
    };
    let one = write_with(1, 5, "a.gguf");
    let three = write_with(3, 5, "b.gguf");
    let other_seed = write_with(2, 6, "c.gguf");
    assert!(one.len() > 2 * CHUNK_BYTES);
    assert!(one == three, "same seed, different bytes");
    assert_eq!(one.len(), other_seed.len());
    assert!(one != other_seed, "different seeds, same bytes");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unwritable_path_is_an_io_error_naming_it() {
    let path = Path::new("/nonexistent-dir-for-quarrel-synth/x.gguf");
    let err = write_synth(preset("tiny").unwrap(), SynthQuant::F16, 0, path).unwrap_err();
    assert!(matches!(err, SynthError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nonexistent-dir-for-quarrel-synth"), "{err}");
}

/// A gemma3 synth file loads as Gemma 3 (head size from `key_length`, Q/K norms, post-norms, 5 sliding-window
/// layers of 6) and decodes to finite logits on the CPU.
#[test]
fn a_gemma3_synth_model_loads_and_decodes() {
    use crate::backend::cpu::{CpuBackend, CpuConfig};
    use crate::model::config::LayerKind;
    let dir = temp_dir("gemma3");
    let p = Preset {
        arch: "gemma3",
        neox: true,
        tied: true,
        key_length: 32,
        n_layers: 6,
        ..preset("tiny").unwrap().clone()
    };
    let path = dir.join("tiny-gemma3.gguf");
    write_synth(&p, SynthQuant::Q8_0, 3, &path).unwrap();
    let be = CpuBackend::new(CpuConfig {
        n_threads: 1,
        simd: None,
    })
    .unwrap();
    let m = crate::Model::load(&path, be, &mut |_, _| {}).unwrap();
    let c = &m.config;
    assert_eq!((c.head_dim, c.n_heads, c.q_dim()), (32, 4, 128));
    assert!(c.qk_norm && c.post_norms);
    let window = LayerKind::Sliding {
        window: GEMMA3_SLIDING_WINDOW,
    };
    assert_eq!(
        c.layer_kinds,
        [window, window, window, window, window, LayerKind::Global]
    );
    let mut s = crate::Session::new(&m, &Default::default()).unwrap();
    s.prefill(0, &[1, 300, 301]).unwrap();
    let logits = s.decode_step(0, 302).unwrap();
    assert_eq!(logits.len(), p.vocab);
    assert!(logits.iter().all(|v| v.is_finite()));
    std::fs::remove_dir_all(&dir).unwrap();
}
