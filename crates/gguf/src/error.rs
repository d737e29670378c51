//! The one error type of this crate: every variant carries the offending value and where it was found.

use std::path::PathBuf;

/// What went wrong reading, querying or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing GGUF: {source}")]
    Write {
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file: magic bytes {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {version} (quarrel reads versions 2 and 3)")]
    UnsupportedVersion { version: u32 },
    #[error("truncated GGUF: {what} at byte {at} needs {need} bytes, but the file has {file_len}")]
    Truncated {
        what: String,
        at: u64,
        need: u64,
        file_len: u64,
    },
    #[error("{what} is {value}, above the cap of {cap}")]
    TooLarge { what: String, value: u64, cap: u64 },
    #[error("{what} at byte {at} is not valid UTF-8")]
    BadUtf8 { what: String, at: u64 },
    #[error("key '{key}' has a bool byte {byte} at byte {at} (expected 0 or 1)")]
    BadBool { key: String, at: u64, byte: u8 },
    #[error("key '{key}' has unknown value type id {type_id}")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("tensor '{tensor}' has unknown tensor type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error("tensor '{tensor}' has bad shape {dims:?}: {reason}")]
    BadShape {
        tensor: String,
        dims: Vec<u64>,
        reason: String,
    },
    #[error("general.alignment = {value} is invalid: {reason}")]
    BadAlignment { value: u64, reason: &'static str },
    #[error("tensor '{tensor}' has bad data offset {offset} (relative to the data section at {data_offset}, {n_bytes} bytes, file of {file_len} bytes): {reason}")]
    BadOffset {
        tensor: String,
        /// The offset as stored in the file (relative to the data section).
        offset: u64,
        data_offset: u64,
        n_bytes: u64,
        file_len: u64,
        reason: &'static str,
    },
    #[error("tensor '{tensor}' data [{start}, {end}) overlaps tensor '{other}' data [{other_start}, {other_end})")]
    TensorOverlap {
        tensor: String,
        start: u64,
        end: u64,
        other: String,
        other_start: u64,
        other_end: u64,
    },
    #[error("duplicate metadata key '{key}'")]
    DuplicateKey { key: String },
    #[error("duplicate tensor name '{tensor}'")]
    DuplicateTensor { tensor: String },
    #[error("missing metadata key '{key}'")]
    MissingKey { key: String },
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("metadata key '{key}': value {value} does not fit in {target}")]
    OutOfRange {
        key: String,
        value: String,
        target: &'static str,
    },
    #[error("metadata key '{key}': array elements must all have one type, found {first} and {other}")]
    MixedArray {
        key: String,
        first: &'static str,
        other: &'static str,
    },
    #[error("tensor '{tensor}': expected {expected} bytes of data, got {got}")]
    TensorSize { tensor: String, expected: u64, got: u64 },
    #[error("GGUF writer: {reason}")]
    WriterState { reason: String },
}
