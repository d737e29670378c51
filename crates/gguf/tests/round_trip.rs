//! Writer → reader round trips: every value type, every tensor type, alignment, streaming in chunks.

mod common;

use common::filler;
use quarrel_gguf::{write_gguf_to_vec, GgmlType, Gguf, GgufError, GgufWriter, TensorSpec, Value, DEFAULT_ALIGNMENT};

fn every_value() -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_owned(), v);
    vec![
        kv("general.architecture", Value::from("llama")),
        kv("t.u8", Value::U8(200)),
        kv("t.i8", Value::I8(-100)),
        kv("t.u16", Value::U16(60_000)),
        kv("t.i16", Value::I16(-30_000)),
        kv("t.u32", Value::U32(4_000_000_000)),
        kv("t.i32", Value::I32(-2_000_000_000)),
        kv("t.f32", Value::F32(-1.25e-3)),
        kv("t.bool_true", Value::Bool(true)),
        kv("t.bool_false", Value::Bool(false)),
        kv("t.string", Value::from("héllo ✓ \0 nul")),
        kv("t.empty_string", Value::from("")),
        kv("t.u64", Value::U64(u64::MAX)),
        kv("t.i64", Value::I64(i64::MIN)),
        kv("t.f64", Value::F64(std::f64::consts::PI)),
        kv("t.arr_u8", Value::from(vec![1u8, 2, 255])),
        kv("t.arr_i8", Value::from(vec![-1i8, 0, 127])),
        kv("t.arr_u16", Value::from(vec![1u16, 65535])),
        kv("t.arr_i16", Value::from(vec![-32768i16, 5])),
        kv("t.arr_u32", Value::from(vec![7u32, 8, 9])),
        kv("t.arr_i32", Value::from(vec![-7i32, 8, -9])),
        kv("t.arr_f32", Value::from(vec![0.5f32, -0.25, f32::INFINITY])),
        kv("t.arr_bool", Value::from(vec![true, false, true])),
        kv("t.arr_string", Value::from(vec!["a", "", "ccc"])),
        kv("t.arr_u64", Value::from(vec![u64::MAX, 0])),
        kv("t.arr_i64", Value::from(vec![i64::MIN, i64::MAX])),
        kv("t.arr_f64", Value::from(vec![1e300f64, -0.0])),
        kv("t.arr_empty", Value::Array(vec![])),
        kv(
            "t.arr_nested",
            Value::Array(vec![
                Value::from(vec![1u32, 2]),
                Value::from(vec!["x", "y", "z"]),
                Value::Array(vec![]),
            ]),
        ),
    ]
}

#[test]
fn every_value_type_round_trips_in_order() {
    let metadata = every_value();
    let file = write_gguf_to_vec(&metadata, &[]).unwrap();
    let gguf = Gguf::from_bytes(file).unwrap();
    assert_eq!(gguf.version, 3);
    assert_eq!(gguf.alignment, DEFAULT_ALIGNMENT);
    assert_eq!(gguf.metadata, metadata, "values and file order survive");
    for (key, value) in &metadata {
        assert_eq!(gguf.get(key), Some(value), "{key}");
    }
    assert!(gguf.tensors.is_empty());
}

#[test]
fn every_tensor_type_round_trips_with_its_data() {
    let mut tensors = Vec::new();
    for (i, ty) in GgmlType::ALL.into_iter().enumerate() {
        let row_len = ty.block_elems() as u64 * (i as u64 % 3 + 1);
        let dims = match i % 4 {
            0 => vec![row_len],
            1 => vec![row_len, 3],
            2 => vec![row_len, 2, 3],
            _ => vec![row_len, 1, 2, 2],
        };
        let spec = TensorSpec::new(format!("tensor.{}", ty.name()), dims, ty);
        let n_bytes = spec.n_bytes().unwrap() as usize;
        tensors.push((spec, filler(i as u64, n_bytes)));
    }
    let metadata = vec![("general.architecture".to_owned(), Value::from("llama"))];
    let gguf = Gguf::from_bytes(write_gguf_to_vec(&metadata, &tensors).unwrap()).unwrap();
    assert_eq!(gguf.tensors.len(), tensors.len());
    for ((spec, data), info) in tensors.iter().zip(&gguf.tensors) {
        assert_eq!(info.name, spec.name);
        assert_eq!(info.dims, spec.dims);
        assert_eq!(info.ty, spec.ty);
        // The byte size from the type table: whole blocks of each row times the rows.
        let blocks_per_row = spec.dims[0] / spec.ty.block_elems() as u64;
        let rows: u64 = spec.dims[1..].iter().product();
        assert_eq!(info.n_bytes, blocks_per_row * spec.ty.block_bytes() as u64 * rows);
        assert_eq!(info.offset % 32, 0, "{}", info.name);
        assert!(info.offset >= gguf.data_offset);
        assert_eq!(gguf.tensor_bytes(info), &data[..], "{}", info.name);
        assert_eq!(gguf.tensor(&spec.name), Some(info));
    }
}

#[test]
fn custom_alignment_is_recorded_and_honoured() {
    let specs = vec![
        TensorSpec::new("a", [3], GgmlType::F32),
        TensorSpec::new("b", [5, 2], GgmlType::F16),
    ];
    let datas = [filler(1, 12), filler(2, 20)];
    let mut writer = GgufWriter::new(Vec::new(), &[], &specs, 256).unwrap();
    for d in &datas {
        writer.write_tensor(d).unwrap();
    }
    let gguf = Gguf::from_bytes(writer.finish().unwrap()).unwrap();
    assert_eq!(gguf.alignment, 256);
    assert_eq!(gguf.get_u32("general.alignment").unwrap(), 256);
    assert_eq!(gguf.data_offset % 256, 0);
    for (info, d) in gguf.tensors.iter().zip(&datas) {
        assert_eq!(info.offset % 256, 0);
        assert_eq!(gguf.tensor_bytes(info), &d[..]);
    }
}

#[test]
fn default_alignment_is_not_written_as_a_key() {
    let file = write_gguf_to_vec(&[], &[]).unwrap();
    let gguf = Gguf::from_bytes(file).unwrap();
    assert!(gguf.get("general.alignment").is_none());
}

#[test]
fn chunked_writes_equal_whole_writes() {
    let specs = vec![
        TensorSpec::new("a", [64, 3], GgmlType::Q8_0),
        TensorSpec::new("b", [7], GgmlType::F32),
    ];
    let a = filler(10, specs[0].n_bytes().unwrap() as usize);
    let b = filler(11, 28);
    let whole = write_gguf_to_vec(&[], &[(specs[0].clone(), a.clone()), (specs[1].clone(), b.clone())]).unwrap();
    let mut writer = GgufWriter::new(Vec::new(), &[], &specs, 32).unwrap();
    for piece in a.chunks(50) {
        writer.write_tensor_chunk(piece).unwrap();
    }
    writer.end_tensor().unwrap();
    writer.write_tensor_chunk(&b[..3]).unwrap();
    writer.write_tensor_chunk(&b[3..]).unwrap();
    writer.end_tensor().unwrap();
    assert_eq!(writer.finish().unwrap(), whole);
}

#[test]
fn writer_rejects_misuse() {
    let specs = vec![TensorSpec::new("a", [4], GgmlType::F32)];
    let mut writer = GgufWriter::new(Vec::new(), &[], &specs, 32).unwrap();
    assert!(matches!(
        writer.write_tensor(&[0; 15]),
        Err(GgufError::TensorSize {
            expected: 16,
            got: 15,
            ..
        })
    ));
    assert!(matches!(
        writer.write_tensor_chunk(&[0; 17]),
        Err(GgufError::TensorSize {
            expected: 16,
            got: 17,
            ..
        })
    ));
    writer.write_tensor_chunk(&[0; 8]).unwrap();
    assert!(matches!(
        writer.end_tensor(),
        Err(GgufError::TensorSize {
            expected: 16,
            got: 8,
            ..
        })
    ));
    assert!(matches!(writer.finish(), Err(GgufError::WriterState { .. })));

    let mut writer = GgufWriter::new(Vec::new(), &[], &specs, 32).unwrap();
    writer.write_tensor(&[0; 16]).unwrap();
    assert!(matches!(
        writer.write_tensor(&[0; 16]),
        Err(GgufError::WriterState { .. })
    ));

    let bad_shape = [TensorSpec::new("q", [31], GgmlType::Q4_0)];
    assert!(matches!(
        GgufWriter::new(Vec::new(), &[], &bad_shape, 32),
        Err(GgufError::BadShape { .. })
    ));
    let dup = [specs[0].clone(), specs[0].clone()];
    assert!(matches!(
        GgufWriter::new(Vec::new(), &[], &dup, 32),
        Err(GgufError::DuplicateTensor { .. })
    ));
    let kv = ("k".to_owned(), Value::U8(1));
    assert!(matches!(
        GgufWriter::new(Vec::new(), &[kv.clone(), kv], &[], 32),
        Err(GgufError::DuplicateKey { .. })
    ));
    let mixed = ("m".to_owned(), Value::Array(vec![Value::U8(1), Value::I8(1)]));
    assert!(matches!(
        GgufWriter::new(Vec::new(), &[mixed], &[], 32),
        Err(GgufError::MixedArray { .. })
    ));
    assert!(matches!(
        GgufWriter::new(Vec::new(), &[], &[], 48),
        Err(GgufError::BadAlignment { value: 48, .. })
    ));
}

#[test]
fn writer_bytes_match_a_hand_built_file() {
    let data = filler(3, 8);
    let mut expected = common::Raw::header(3, 1, 2);
    expected
        .kv_u32("a.count", 7)
        .kv_str("general.name", "x")
        .tensor("t", &[2], common::tt::F32, 0)
        .pad(32)
        .bytes(&data)
        .pad(32);
    let metadata = vec![
        ("a.count".to_owned(), Value::U32(7)),
        ("general.name".to_owned(), Value::from("x")),
    ];
    let written = write_gguf_to_vec(&metadata, &[(TensorSpec::new("t", [2], GgmlType::F32), data)]).unwrap();
    assert_eq!(written, expected.build());
}

#[test]
fn version_2_files_are_read() {
    let mut raw = common::Raw::header(2, 1, 1);
    raw.kv_str("general.architecture", "llama")
        .tensor("t", &[4], common::tt::F32, 0)
        .pad(32)
        .bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    let gguf = Gguf::from_bytes(raw.build()).unwrap();
    assert_eq!(gguf.version, 2);
    assert_eq!(gguf.tensor_data("t").unwrap()[15], 16);
}

#[test]
fn open_maps_a_written_file() {
    let path = std::env::temp_dir().join(format!("quarrel-gguf-open-{}.gguf", std::process::id()));
    let data = filler(9, 64 * 34 / 32);
    let file = write_gguf_to_vec(&[], &[(TensorSpec::new("q", [64], GgmlType::Q8_0), data.clone())]).unwrap();
    std::fs::write(&path, &file).unwrap();
    let opened = Gguf::open(&path);
    std::fs::remove_file(&path).unwrap();
    let gguf = opened.unwrap();
    assert_eq!(gguf.bytes(), &file[..]);
    assert_eq!(gguf.tensor_data("q").unwrap(), &data[..]);
}

#[test]
fn open_reports_io_errors_and_empty_files() {
    let missing = std::env::temp_dir().join("quarrel-gguf-definitely-missing.gguf");
    match Gguf::open(&missing) {
        Err(GgufError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("{other:?}"),
    }
    let empty = std::env::temp_dir().join(format!("quarrel-gguf-empty-{}.gguf", std::process::id()));
    std::fs::write(&empty, b"").unwrap();
    let opened = Gguf::open(&empty);
    std::fs::remove_file(&empty).unwrap();
    assert!(
        matches!(
            opened,
            Err(GgufError::Truncated {
                at: 0,
                need: 4,
                file_len: 0,
                ..
            })
        ),
        "{opened:?}"
    );
}

#[test]
fn gguf_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gguf>();
    assert_send_sync::<GgufError>();
}
