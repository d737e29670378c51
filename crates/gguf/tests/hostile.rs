//! Hand-crafted hostile files, each rejected with its specific error variant (and never a panic or a huge
//! allocation).

mod common;

use common::{tt, vt, Raw};
use quarrel_gguf::{Gguf, GgufError};

fn parse(raw: &Raw) -> Result<Gguf, GgufError> {
    Gguf::from_bytes(raw.build())
}

/// A v3 file with one metadata entry (written by `kv`) and the given tensor infos, padded, plus `data_len`
/// zero bytes of data.
fn file_with(kv: impl FnOnce(&mut Raw), tensors: &[(&str, &[u64], u32, u64)], data_len: usize) -> Raw {
    let mut raw = Raw::header(3, tensors.len() as u64, 1);
    kv(&mut raw);
    for &(name, dims, ty, offset) in tensors {
        raw.tensor(name, dims, ty, offset);
    }
    raw.pad(32).zeros(data_len);
    raw
}

fn plain(tensors: &[(&str, &[u64], u32, u64)], data_len: usize) -> Raw {
    file_with(
        |r| {
            r.kv_str("general.architecture", "llama");
        },
        tensors,
        data_len,
    )
}

#[test]
fn a_valid_baseline_parses() {
    // Sanity: the builders below produce good files when nothing is wrong.
    let raw = plain(&[("a", &[8], tt::F32, 0), ("b", &[32, 2], tt::Q8_0, 32)], 32 + 68);
    let gguf = parse(&raw).unwrap();
    assert_eq!(gguf.tensors.len(), 2);
}

#[test]
fn bad_magic() {
    let mut raw = Raw::header(3, 0, 0);
    raw.0[..4].copy_from_slice(b"GGML");
    assert!(matches!(parse(&raw), Err(GgufError::BadMagic { found }) if &found == b"GGML"));
}

#[test]
fn short_files_are_truncated_not_bad_magic() {
    for len in 0..4 {
        let raw = Raw(b"GGUF"[..len].to_vec());
        assert!(
            matches!(parse(&raw), Err(GgufError::Truncated { need: 4, .. })),
            "len {len}"
        );
    }
    let raw = Raw(b"GGUF\x03\0".to_vec());
    assert!(matches!(
        parse(&raw),
        Err(GgufError::Truncated {
            at: 4,
            need: 4,
            file_len: 6,
            ..
        })
    ));
}

#[test]
fn version_1_and_unknown_versions() {
    for version in [0, 1, 4, 0x0300_0000] {
        let raw = Raw::header(version, 0, 0);
        assert!(
            matches!(parse(&raw), Err(GgufError::UnsupportedVersion { version: v }) if v == version),
            "version {version}"
        );
    }
}

#[test]
fn huge_counts_are_capped() {
    let raw = Raw::header(3, 1 << 40, 0);
    assert!(matches!(parse(&raw), Err(GgufError::TooLarge { value, .. }) if value == 1 << 40));
    let raw = Raw::header(3, 0, u64::MAX);
    assert!(matches!(parse(&raw), Err(GgufError::TooLarge { value: u64::MAX, .. })));
    // Within the cap but far more than the file holds: truncated, not a giant allocation.
    let raw = Raw::header(3, 1 << 20, 0);
    assert!(matches!(parse(&raw), Err(GgufError::Truncated { .. })));
    let raw = Raw::header(3, 0, 1 << 20);
    assert!(matches!(parse(&raw), Err(GgufError::Truncated { .. })));
}

#[test]
fn huge_string_lengths() {
    // Key length.
    let mut raw = Raw::header(3, 0, 1);
    raw.u64(u64::MAX).bytes(b"abc");
    assert!(matches!(parse(&raw), Err(GgufError::TooLarge { value: u64::MAX, .. })));
    // String value length above the cap.
    let mut raw = Raw::header(3, 0, 1);
    raw.key("k", vt::STRING).u64(1 << 40).bytes(b"abc");
    assert!(matches!(parse(&raw), Err(GgufError::TooLarge { value, .. }) if value == 1 << 40));
    // Under the cap but past the end of the file.
    let mut raw = Raw::header(3, 0, 1);
    raw.key("k", vt::STRING).u64(1000).bytes(b"abc");
    let at = raw.0.len() as u64 - 3;
    assert!(matches!(parse(&raw), Err(GgufError::Truncated { need: 1000, at: a, .. }) if a == at));
    // Tensor name.
    let mut raw = Raw::header(3, 1, 0);
    raw.u64(u64::MAX / 2);
    assert!(matches!(parse(&raw), Err(GgufError::TooLarge { .. })));
}

#[test]
fn huge_array_lengths() {
    let mut raw = Raw::header(3, 0, 1);
    raw.key("k", vt::ARRAY).u32(vt::U8).u64(u64::MAX);
    assert!(matches!(parse(&raw), Err(GgufError::TooLarge { value: u64::MAX, .. })));
    // Under the cap, but 4-byte elements need more than the file has left.
    let mut raw = Raw::header(3, 0, 1);
    raw.key("k", vt::ARRAY).u32(vt::U32).u64(1 << 20).zeros(100);
    assert!(matches!(parse(&raw), Err(GgufError::Truncated { need, .. }) if need == 4 << 20));
    // Strings need at least their 8-byte length each.
    let mut raw = Raw::header(3, 0, 1);
    raw.key("k", vt::ARRAY).u32(vt::STRING).u64(100).zeros(799);
    assert!(matches!(parse(&raw), Err(GgufError::Truncated { need: 800, .. })));
    // Nested: the inner array's length is checked too.
    let mut raw = Raw::header(3, 0, 1);
    raw.key("k", vt::ARRAY)
        .u32(vt::ARRAY)
        .u64(1)
        .u32(vt::U64)
        .u64(1 << 23)
        .zeros(64);
    assert!(matches!(parse(&raw), Err(GgufError::Truncated { need, .. }) if need == 8 << 23));
}

#[test]
fn deep_array_nesting_is_capped() {
    let mut raw = Raw::header(3, 0, 1);
    raw.key("deep", vt::ARRAY);
    for _ in 0..20 {
        raw.u32(vt::ARRAY).u64(1);
    }
    raw.u32(vt::U8).u64(0);
    assert!(matches!(parse(&raw), Err(GgufError::TooLarge { ref what, value: 9, cap: 8 }) if what.contains("deep")));
}

#[test]
fn unknown_value_types_name_the_key() {
    let mut raw = Raw::header(3, 0, 1);
    raw.key("weird", 13).u32(0);
    assert!(matches!(parse(&raw), Err(GgufError::UnknownValueType { key, type_id: 13 }) if key == "weird"));
    let mut raw = Raw::header(3, 0, 1);
    raw.key("arr", vt::ARRAY).u32(99).u64(1).zeros(16);
    assert!(matches!(parse(&raw), Err(GgufError::UnknownValueType { key, type_id: 99 }) if key == "arr"));
}

#[test]
fn bad_utf8_and_bad_bool() {
    let mut raw = Raw::header(3, 0, 1);
    raw.u64(2).bytes(&[0xff, 0xfe]).u32(vt::U8).u8(0);
    assert!(matches!(parse(&raw), Err(GgufError::BadUtf8 { at: 32, .. })));
    let mut raw = Raw::header(3, 0, 1);
    raw.key("k", vt::STRING).u64(1).u8(0x80);
    assert!(matches!(parse(&raw), Err(GgufError::BadUtf8 { .. })));
    let mut raw = Raw::header(3, 0, 1);
    raw.key("flag", vt::BOOL).u8(2);
    assert!(matches!(parse(&raw), Err(GgufError::BadBool { key, byte: 2, .. }) if key == "flag"));
}

#[test]
fn duplicates() {
    let mut raw = Raw::header(3, 0, 2);
    raw.kv_u32("same", 1).kv_u32("same", 2);
    assert!(matches!(parse(&raw), Err(GgufError::DuplicateKey { key }) if key == "same"));
    let raw = plain(&[("t", &[8], tt::F32, 0), ("t", &[8], tt::F32, 32)], 64);
    assert!(matches!(parse(&raw), Err(GgufError::DuplicateTensor { tensor }) if tensor == "t"));
}

#[test]
fn unknown_tensor_type_names_the_tensor() {
    for type_id in [4, 5, 31, u32::MAX] {
        let raw = plain(&[("w", &[32], type_id, 0)], 1024);
        assert!(
            matches!(parse(&raw), Err(GgufError::UnknownTensorType { ref tensor, type_id: t }) if tensor == "w" && t == type_id),
            "type {type_id}"
        );
    }
}

#[test]
fn bad_shapes() {
    let cases: [(&[u64], u32); 6] = [
        (&[], tt::F32),                  // no dims
        (&[1, 1, 1, 1, 1], tt::F32),     // five dims
        (&[8, 0], tt::F32),              // zero dim
        (&[31], tt::Q4_0),               // not whole blocks
        (&[1 << 32, 1 << 32], tt::F32),  // element count overflows i64
        (&[u64::MAX - 31, 2], tt::Q8_0), // overflows
    ];
    for (dims, ty) in cases {
        let raw = plain(&[("s", dims, ty, 0)], 64);
        assert!(
            matches!(parse(&raw), Err(GgufError::BadShape { ref tensor, .. }) if tensor == "s"),
            "{dims:?}: {:?}",
            parse(&raw)
        );
    }
}

#[test]
fn bad_alignment() {
    for value in [0u32, 3, 48, 1 << 30] {
        let raw = file_with(
            |r| {
                r.kv_u32("general.alignment", value);
            },
            &[],
            0,
        );
        assert!(
            matches!(parse(&raw), Err(GgufError::BadAlignment { value: v, .. }) if v == u64::from(value)),
            "alignment {value}"
        );
    }
    let raw = file_with(
        |r| {
            r.kv_str("general.alignment", "32");
        },
        &[],
        0,
    );
    assert!(matches!(
        parse(&raw),
        Err(GgufError::WrongType {
            expected: "u32",
            found: "string",
            ..
        })
    ));
    let raw = file_with(
        |r| {
            r.key("general.alignment", vt::I32).u32(-64i32 as u32);
        },
        &[],
        0,
    );
    assert!(matches!(parse(&raw), Err(GgufError::OutOfRange { .. })));
}

#[test]
fn custom_alignment_applies_to_offsets() {
    // With alignment 64, offset 32 is misaligned even though it is a multiple of the default.
    let raw = file_with(
        |r| {
            r.kv_u32("general.alignment", 64);
        },
        &[("a", &[8], tt::F32, 0), ("b", &[8], tt::F32, 32)],
        128,
    );
    assert!(matches!(parse(&raw), Err(GgufError::BadOffset { offset: 32, .. })));
}

#[test]
fn misaligned_offset() {
    let raw = plain(&[("t", &[8], tt::F32, 4)], 64);
    assert!(matches!(parse(&raw), Err(GgufError::BadOffset { tensor, offset: 4, .. }) if tensor == "t"));
}

#[test]
fn offset_past_eof() {
    let raw = plain(&[("t", &[8], tt::F32, 1 << 20)], 64);
    assert!(
        matches!(parse(&raw), Err(GgufError::BadOffset { tensor, offset, .. }) if tensor == "t" && offset == 1 << 20)
    );
    // Starts inside the file but runs past its end by one byte.
    let raw = plain(&[("t", &[8], tt::F32, 0)], 31);
    assert!(matches!(parse(&raw), Err(GgufError::BadOffset { n_bytes: 32, .. })));
    // Offsets so large that adding them overflows.
    let raw = plain(&[("t", &[8], tt::F32, !31u64)], 64);
    assert!(matches!(parse(&raw), Err(GgufError::BadOffset { .. })));
}

#[test]
fn overlapping_tensors() {
    // b (64 bytes at 0) covers a (32 bytes at 32); listed out of offset order on purpose.
    let raw = plain(&[("a", &[8], tt::F32, 32), ("b", &[16], tt::F32, 0)], 96);
    match parse(&raw) {
        Err(GgufError::TensorOverlap {
            tensor,
            other,
            start,
            other_end,
            ..
        }) => {
            assert_eq!((tensor.as_str(), other.as_str()), ("a", "b"));
            assert!(start < other_end);
        }
        other => panic!("{other:?}"),
    }
    let raw = plain(&[("a", &[8], tt::F32, 0), ("b", &[8], tt::F32, 0)], 64);
    assert!(matches!(parse(&raw), Err(GgufError::TensorOverlap { .. })));
}

#[test]
fn truncated_tensor_infos() {
    let mut raw = Raw::header(3, 1, 0);
    raw.str("t").u32(2).u64(8);
    assert!(matches!(parse(&raw), Err(GgufError::Truncated { ref what, .. }) if what.contains("dimension 1")));
}

#[test]
fn no_tensors_needs_no_data_section() {
    // The header does not end on an alignment boundary and nothing follows it: fine without tensors.
    let mut raw = Raw::header(3, 0, 1);
    raw.kv_u32("a", 1);
    assert_ne!(raw.0.len() % 32, 0);
    assert!(parse(&raw).is_ok());
}
