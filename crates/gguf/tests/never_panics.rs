//! Property tests: random bytes, and random mutations and truncations of valid files, only ever yield Ok or Err.
//! Files that do parse are exercised further (every accessor; re-writing them is stable).

mod common;

use proptest::prelude::*;
use quarrel_gguf::{GgmlType, Gguf, GgufWriter, TensorSpec, Value};

/// A small valid file with a bit of everything: scalars, strings, nested arrays, several tensor types.
fn valid_file() -> Vec<u8> {
    let kv = |k: &str, v: Value| (k.to_owned(), v);
    let metadata = vec![
        kv("general.architecture", Value::from("llama")),
        kv("llama.block_count", Value::U32(2)),
        kv("f", Value::F32(0.5)),
        kv("b", Value::Bool(true)),
        kv("toks", Value::from(vec!["a", "bc", ""])),
        kv(
            "nest",
            Value::Array(vec![Value::from(vec![1i16, 2]), Value::Array(vec![])]),
        ),
        kv("big", Value::U64(u64::MAX)),
    ];
    let specs = [
        TensorSpec::new("a", [4, 2], GgmlType::F32),
        TensorSpec::new("b", [32], GgmlType::Q8_0),
        TensorSpec::new("c", [256], GgmlType::Q4_K),
    ];
    let mut w = GgufWriter::new(Vec::new(), &metadata, &specs, 32).unwrap();
    for (i, s) in specs.iter().enumerate() {
        w.write_tensor(&common::filler(i as u64, s.n_bytes().unwrap() as usize))
            .unwrap();
    }
    w.finish().unwrap()
}

/// Re-writes a parsed file with this crate's writer.
fn rewrite(g: &Gguf) -> Vec<u8> {
    let specs: Vec<TensorSpec> = g
        .tensors
        .iter()
        .map(|t| TensorSpec::new(t.name.clone(), t.dims.clone(), t.ty))
        .collect();
    let mut w = GgufWriter::new(Vec::new(), &g.metadata, &specs, g.alignment).expect("a parsed file re-writes");
    for t in &g.tensors {
        w.write_tensor(g.tensor_bytes(t)).unwrap();
    }
    w.finish().unwrap()
}

/// Every accessor on a parsed file, plus: writing it back and reading that gives the same bytes again.
fn exercise(g: &Gguf) {
    for t in &g.tensors {
        assert_eq!(g.tensor_bytes(t).len() as u64, t.n_bytes);
        assert!(g.tensor(&t.name).is_some());
        let _ = t.n_elements();
    }
    for (k, v) in &g.metadata {
        assert!(g.get(k).is_some());
        let _ = (
            g.get_u32(k),
            g.get_f32(k),
            g.get_str_array(k),
            g.get_i32_array(k),
            g.get_f32_array(k),
        );
        let _ = v.to_string();
    }
    let once = rewrite(g);
    let again = Gguf::from_bytes(once.clone()).expect("the writer's output parses");
    assert_eq!(again.tensors.len(), g.tensors.len());
    for (a, b) in again.tensors.iter().zip(&g.tensors) {
        assert_eq!(again.tensor_bytes(a), g.tensor_bytes(b));
    }
    assert_eq!(rewrite(&again), once, "re-writing is stable");
}

fn check(bytes: Vec<u8>) {
    if let Ok(g) = Gguf::from_bytes(bytes) {
        exercise(&g);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(bytes);
    }

    #[test]
    fn random_bytes_after_a_good_header(version in 2u32..=3, n_tensors in 0u64..4, n_kvs in 0u64..4,
                                         rest in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = common::Raw::header(version, n_tensors, n_kvs).build();
        bytes.extend(rest);
        check(bytes);
    }

    #[test]
    fn single_byte_mutation(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = valid_file();
        let i = index.index(bytes.len());
        bytes[i] = byte;
        check(bytes);
    }

    #[test]
    fn several_byte_mutations(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = valid_file();
        for (index, byte) in edits {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        check(bytes);
    }

    #[test]
    fn truncation(index in any::<prop::sample::Index>()) {
        let bytes = valid_file();
        let len = index.index(bytes.len());
        let last_end = Gguf::from_bytes(bytes.clone()).unwrap().tensors.iter().map(|t| t.offset + t.n_bytes).max().unwrap();
        let result = Gguf::from_bytes(bytes[..len].to_vec());
        // Cutting into the header or any tensor's data must fail; only trailing padding may go.
        prop_assert_eq!(result.is_ok(), len as u64 >= last_end, "len {}", len);
    }
}

#[test]
fn the_base_file_is_valid() {
    let g = Gguf::from_bytes(valid_file()).unwrap();
    assert_eq!(g.tensors.len(), 3);
    exercise(&g);
}
