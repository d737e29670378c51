//! GGUF v2/v3: a validated reader over mmap and a writer. No math lives here.
//!
//! Every count, length, shape, offset and type read from a file is checked against the file size and sane caps
//! before it is used; a hostile file yields a [`GgufError`] naming the bad field and value.

mod dtype;
pub use dtype::GgmlType;
