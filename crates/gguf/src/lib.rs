//! GGUF v2/v3: a validated reader over mmap and a writer. No math lives here.
//!
//! Every count, length, shape, offset and type read from a file is checked against the file size and sane caps
//! before it is used; a hostile file yields a [`GgufError`] naming the bad field and value.
//!
//! ```
//! use quarrel_gguf::{write_gguf_to_vec, Gguf, GgmlType, TensorSpec, Value};
//! let metadata = vec![("general.architecture".to_owned(), Value::from("llama"))];
//! let weight = TensorSpec::new("w", [4, 2], GgmlType::F32);
//! let file = write_gguf_to_vec(&metadata, &[(weight, vec![0u8; 32])]).unwrap();
//! let gguf = Gguf::from_bytes(file).unwrap();
//! assert_eq!(gguf.architecture().unwrap(), "llama");
//! assert_eq!(gguf.tensor("w").unwrap().n_elements(), 8);
//! ```
#![deny(unsafe_code)]

mod cursor;
mod dtype;
mod error;
mod getters;
mod reader;
mod shape;
mod value;
mod writer;

pub use dtype::GgmlType;
pub use error::GgufError;
pub use reader::{
    Gguf, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_KVS,
    MAX_NAME_LEN, MAX_STRING_LEN, MAX_TENSORS,
};
pub use shape::{tensor_size, MAX_DIMS};
pub use value::Value;
pub use writer::{write_gguf_to_vec, GgufWriter, TensorSpec, WRITE_VERSION};
