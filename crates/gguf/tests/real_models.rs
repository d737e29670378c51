//! The two real models quarrel is tested on parse, and agree with facts known about them.
//! Missing models are fetched with `scripts/fetch-models.sh` (never skipped).

mod common;

use common::{model, GEMMA, QWEN};
use quarrel_gguf::{GgmlType, Gguf};

/// Facts every well-formed model file must satisfy, whatever its architecture.
fn check_layout(gguf: &Gguf) {
    assert!(gguf.version == 2 || gguf.version == 3);
    assert_eq!(gguf.data_offset % gguf.alignment, 0);
    let mut ranges: Vec<(u64, u64)> = gguf.tensors.iter().map(|t| (t.offset, t.offset + t.n_bytes)).collect();
    ranges.sort();
    assert!(ranges[0].0 >= gguf.data_offset);
    assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0));
    assert!(ranges.last().unwrap().1 <= gguf.file_len());
    for t in &gguf.tensors {
        assert_eq!(gguf.tensor_bytes(t).len() as u64, t.n_bytes, "{}", t.name);
    }
}

#[test]
fn qwen2_facts() {
    let gguf = Gguf::open(model(QWEN, "qwen")).unwrap();
    check_layout(&gguf);
    assert_eq!(gguf.architecture().unwrap(), "qwen2");
    assert_eq!(gguf.tensors.len(), 291);
    assert_eq!(gguf.get_u32("qwen2.block_count").unwrap(), 24);
    assert_eq!(gguf.get_u32("qwen2.embedding_length").unwrap(), 896);
    let embd = gguf.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ty, GgmlType::Q5_0);
    assert_eq!(embd.dims, [896, 151936]);
    // Q5_0: 22 bytes per 32 elements.
    assert_eq!(embd.n_bytes, 896 / 32 * 22 * 151936);
    assert_eq!(gguf.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(gguf.get_str("tokenizer.ggml.pre").unwrap(), "qwen2");
    let tokens = gguf.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 151936);
    assert_eq!(
        gguf.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        tokens.len()
    );
    let types: std::collections::BTreeSet<_> = gguf.tensors.iter().map(|t| t.ty.name()).collect();
    assert_eq!(types, ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"].into_iter().collect());
}

#[test]
fn gemma3_facts() {
    let gguf = Gguf::open(model(GEMMA, "gemma3")).unwrap();
    check_layout(&gguf);
    assert_eq!(gguf.architecture().unwrap(), "gemma3");
    assert_eq!(gguf.tensors.len(), 236);
    assert_eq!(gguf.get_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(gguf.get_str("tokenizer.ggml.model").unwrap(), "llama");
    let tokens = gguf.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 262144);
    assert_eq!(gguf.get_f32_array("tokenizer.ggml.scores").unwrap().len(), tokens.len());
}
