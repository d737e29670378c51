//! Typed metadata getters: conversions they allow, and the errors (naming the key) for the ones they refuse.

use quarrel_gguf::{write_gguf_to_vec, Gguf, GgufError, Value};

fn file() -> Gguf {
    let kv = |k: &str, v: Value| (k.to_owned(), v);
    let metadata = vec![
        kv("general.architecture", Value::from("qwen2")),
        kv("u8", Value::U8(9)),
        kv("i32_neg", Value::I32(-5)),
        kv("u64_small", Value::U64(24)),
        kv("u64_big", Value::U64(1 << 40)),
        kv("f32", Value::F32(1e-6)),
        kv("f64", Value::F64(0.5)),
        kv("flag", Value::Bool(true)),
        kv("name", Value::from("hi")),
        kv("strs", Value::from(vec!["a", "b"])),
        kv("u32s", Value::from(vec![1u32, 2, 3])),
        kv("i64s_small", Value::from(vec![-1i64, 7])),
        kv("i64s_big", Value::from(vec![-1i64, 1 << 40])),
        kv("f32s", Value::from(vec![0.25f32, -2.0])),
        kv("empty", Value::Array(vec![])),
    ];
    Gguf::from_bytes(write_gguf_to_vec(&metadata, &[]).unwrap()).unwrap()
}

#[test]
fn integers_convert_when_they_fit() {
    let g = file();
    assert_eq!(g.get_u32("u8").unwrap(), 9);
    assert_eq!(g.get_u32("u64_small").unwrap(), 24);
    assert_eq!(g.get_u64("u64_big").unwrap(), 1 << 40);
    assert_eq!(g.get_i64("i32_neg").unwrap(), -5);
    assert!(matches!(
        g.get_u32("u64_big"),
        Err(GgufError::OutOfRange { key, target: "u32", .. }) if key == "u64_big"
    ));
    assert!(matches!(g.get_u64("i32_neg"), Err(GgufError::OutOfRange { .. })));
    assert!(matches!(
        g.get_u32("f32"),
        Err(GgufError::WrongType { key, expected: "u32", found: "f32" }) if key == "f32"
    ));
}

#[test]
fn floats_accept_floats_and_integers() {
    let g = file();
    assert_eq!(g.get_f32("f32").unwrap(), 1e-6);
    assert_eq!(g.get_f32("f64").unwrap(), 0.5);
    assert_eq!(g.get_f32("u8").unwrap(), 9.0);
    assert!(matches!(
        g.get_f32("name"),
        Err(GgufError::WrongType { found: "string", .. })
    ));
}

#[test]
fn strings_bools_arrays() {
    let g = file();
    assert_eq!(g.architecture().unwrap(), "qwen2");
    assert_eq!(g.get_str("name").unwrap(), "hi");
    assert!(g.get_bool("flag").unwrap());
    assert!(matches!(
        g.get_bool("u8"),
        Err(GgufError::WrongType {
            expected: "bool",
            found: "u8",
            ..
        })
    ));
    assert!(matches!(
        g.get_str("u8"),
        Err(GgufError::WrongType { expected: "string", .. })
    ));
    assert_eq!(g.get_array("u32s").unwrap().len(), 3);
    assert!(matches!(
        g.get_array("name"),
        Err(GgufError::WrongType { expected: "array", .. })
    ));
}

#[test]
fn typed_arrays() {
    let g = file();
    assert_eq!(g.get_str_array("strs").unwrap(), ["a", "b"]);
    assert!(matches!(
        g.get_str_array("u32s"),
        Err(GgufError::WrongType { key, expected: "array of string", found: "array of u32" }) if key == "u32s"
    ));
    assert_eq!(g.get_i32_array("u32s").unwrap(), [1, 2, 3]);
    assert_eq!(g.get_i32_array("i64s_small").unwrap(), [-1, 7]);
    assert!(matches!(
        g.get_i32_array("i64s_big"),
        Err(GgufError::OutOfRange { target: "i32", .. })
    ));
    assert!(matches!(
        g.get_i32_array("f32s"),
        Err(GgufError::WrongType {
            found: "array of f32",
            ..
        })
    ));
    assert_eq!(g.get_f32_array("f32s").unwrap(), [0.25, -2.0]);
    assert_eq!(g.get_f32_array("u32s").unwrap(), [1.0, 2.0, 3.0]);
    assert!(matches!(g.get_f32_array("strs"), Err(GgufError::WrongType { .. })));
    assert!(g.get_str_array("empty").unwrap().is_empty());
    assert!(g.get_i32_array("empty").unwrap().is_empty());
}

#[test]
fn missing_keys_and_optional_getters() {
    let g = file();
    assert!(matches!(g.get_u32("nope"), Err(GgufError::MissingKey { key }) if key == "nope"));
    assert!(matches!(g.get_str_array("nope"), Err(GgufError::MissingKey { .. })));
    assert_eq!(g.opt_u32("nope").unwrap(), None);
    assert_eq!(g.opt_u32("u8").unwrap(), Some(9));
    assert!(matches!(g.opt_u32("name"), Err(GgufError::WrongType { .. })));
    assert_eq!(g.opt_f32("nope").unwrap(), None);
    assert_eq!(g.opt_f32("f64").unwrap(), Some(0.5));
    assert!(matches!(g.opt_f32("flag"), Err(GgufError::WrongType { .. })));
    assert_eq!(g.opt_bool("flag").unwrap(), Some(true));
    assert_eq!(g.opt_bool("nope").unwrap(), None);
    assert!(matches!(g.opt_bool("u8"), Err(GgufError::WrongType { .. })));
    assert_eq!(g.opt_str("name").unwrap(), Some("hi"));
    assert_eq!(g.opt_str("nope").unwrap(), None);
    assert!(matches!(g.opt_str("u8"), Err(GgufError::WrongType { .. })));
}

#[test]
fn errors_render_with_the_key() {
    let g = file();
    let message = g.get_u32("u64_big").unwrap_err().to_string();
    assert!(
        message.contains("u64_big") && message.contains("1099511627776"),
        "{message}"
    );
}
