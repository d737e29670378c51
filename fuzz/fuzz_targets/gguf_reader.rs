//! Fuzzes the GGUF reader: any input must give Ok or Err, never a panic, abort or runaway allocation.
//! Inputs that parse are exercised further: every accessor, and writing them back with the writer must give
//! a file that parses and re-writes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quarrel_gguf::{Gguf, GgufWriter, TensorSpec};

fn rewrite(g: &Gguf) -> Vec<u8> {
    let specs: Vec<TensorSpec> = g
        .tensors
        .iter()
        .map(|t| TensorSpec::new(t.name.clone(), t.dims.clone(), t.ty))
        .collect();
    let mut writer = GgufWriter::new(Vec::new(), &g.metadata, &specs, g.alignment)
        .expect("a parsed file re-writes");
    for t in &g.tensors {
        writer.write_tensor(g.tensor_bytes(t)).expect("tensor data has its size");
    }
    writer.finish().expect("all tensors written")
}

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    for t in &g.tensors {
        assert_eq!(g.tensor_bytes(t).len() as u64, t.n_bytes);
        assert!(g.tensor(&t.name).is_some());
    }
    for (key, value) in &g.metadata {
        assert!(g.get(key).is_some());
        let _ = (g.get_u32(key), g.get_f32(key), g.get_str_array(key), g.get_i32_array(key));
        let _ = value.to_string();
    }
    let once = rewrite(&g);
    let again = Gguf::from_bytes(once.clone()).expect("the writer's output parses");
    assert_eq!(rewrite(&again), once, "re-writing is stable");
});
