//! Writing GGUF v3: the header, metadata and tensor infos at once, then tensor data streamed tensor by tensor
//! (a synthetic model can be many GB, so data is never all held in memory).
//!
//! Everything the writer accepts, the reader accepts: the same caps and shape rules are checked up front.

use std::collections::HashSet;
use std::io::Write;

use crate::reader::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_KVS, MAX_NAME_LEN,
    MAX_STRING_LEN, MAX_TENSORS,
};
use crate::shape::{align_up, tensor_size};
use crate::value::type_id;
use crate::{GgmlType, GgufError, Value};

/// The GGUF version the writer produces.
pub const WRITE_VERSION: u32 = 3;

/// A tensor to be written: its name, GGUF-order dims (`dims[0]` = row length) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dims: impl Into<Vec<u64>>, ty: GgmlType) -> Self {
        Self {
            name: name.into(),
            dims: dims.into(),
            ty,
        }
    }

    /// Bytes of data for this shape and type, or `BadShape`.
    pub fn n_bytes(&self) -> Result<u64, GgufError> {
        tensor_size(&self.name, &self.dims, self.ty).map(|(_, n_bytes)| n_bytes)
    }
}

struct PlannedTensor {
    name: String,
    n_bytes: u64,
}

/// Streams a GGUF file to `out`. Call [`write_tensor`](Self::write_tensor) (or the chunk pair) once per tensor
/// in spec order, then [`finish`](Self::finish). After an I/O error the writer refuses further calls.
pub struct GgufWriter<W: Write> {
    out: W,
    tensors: Vec<PlannedTensor>,
    alignment: u64,
    data_offset: u64,
    /// Index of the tensor being written (== tensors.len() when all are done).
    next: usize,
    /// Bytes of `tensors[next]` written so far.
    written: u64,
    /// Bytes written to `out` so far.
    pos: u64,
    failed: bool,
}

impl<W: Write> GgufWriter<W> {
    /// Validates everything and writes the header, metadata and tensor infos. Tensor data offsets are laid
    /// out in the given order, each aligned to `alignment` (a power of two; GGUF's default is 32).
    /// `general.alignment` is added to the metadata when `alignment` is not 32; if the metadata already holds
    /// it, it must agree.
    pub fn new(
        mut out: W,
        metadata: &[(String, Value)],
        tensors: &[TensorSpec],
        alignment: u64,
    ) -> Result<Self, GgufError> {
        if alignment == 0 || !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
            return Err(GgufError::BadAlignment {
                value: alignment,
                reason: "must be a nonzero power of two no larger than 16 MiB",
            });
        }
        let mut keys = HashSet::with_capacity(metadata.len());
        for (key, value) in metadata {
            if !keys.insert(key.as_str()) {
                return Err(GgufError::DuplicateKey { key: key.clone() });
            }
            if key == ALIGNMENT_KEY && value.as_u64() != Some(alignment) {
                return Err(GgufError::WriterState {
                    reason: format!("metadata says {ALIGNMENT_KEY} = {value} but the writer was given {alignment}"),
                });
            }
        }
        let add_alignment = alignment != DEFAULT_ALIGNMENT && !keys.contains(ALIGNMENT_KEY);
        let n_kvs = metadata.len() as u64 + u64::from(add_alignment);
        check_cap("metadata count", n_kvs, MAX_KVS)?;
        check_cap("tensor count", tensors.len() as u64, MAX_TENSORS)?;

        let mut header = Vec::new();
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&n_kvs.to_le_bytes());
        let alignment_entry;
        let extra: &[(String, Value)] = if add_alignment {
            let value = u32::try_from(alignment)
                .map(Value::U32)
                .unwrap_or(Value::U64(alignment));
            alignment_entry = [(ALIGNMENT_KEY.to_owned(), value)];
            &alignment_entry
        } else {
            &[]
        };
        for (key, value) in metadata.iter().chain(extra) {
            put_string(&mut header, key, MAX_NAME_LEN, "metadata key")?;
            header.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut header, key, value, 0)?;
        }

        let mut names = HashSet::with_capacity(tensors.len());
        let mut planned = Vec::with_capacity(tensors.len());
        let mut rel_offset = 0u64;
        for spec in tensors {
            if !names.insert(spec.name.as_str()) {
                return Err(GgufError::DuplicateTensor {
                    tensor: spec.name.clone(),
                });
            }
            let n_bytes = spec.n_bytes()?;
            put_string(&mut header, &spec.name, MAX_NAME_LEN, "tensor name")?;
            header.extend_from_slice(&(spec.dims.len() as u32).to_le_bytes());
            for d in &spec.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&spec.ty.id().to_le_bytes());
            header.extend_from_slice(&rel_offset.to_le_bytes());
            rel_offset = rel_offset
                .checked_add(n_bytes)
                .and_then(|end| align_up(end, alignment))
                .ok_or_else(|| GgufError::TooLarge {
                    what: format!("data end after tensor '{}'", spec.name),
                    value: u64::MAX,
                    cap: u64::MAX,
                })?;
            planned.push(PlannedTensor {
                name: spec.name.clone(),
                n_bytes,
            });
        }
        let header_len = header.len() as u64;
        let data_offset = align_up(header_len, alignment).unwrap_or(header_len);
        header.resize(data_offset as usize, 0);
        out.write_all(&header).map_err(|source| GgufError::Write { source })?;
        Ok(Self {
            out,
            tensors: planned,
            alignment,
            data_offset,
            next: 0,
            written: 0,
            pos: data_offset,
            failed: false,
        })
    }

    /// Where the data section starts in the output.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Writes the whole of the next tensor's data; its length must equal the spec's byte size.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<(), GgufError> {
        let tensor = self.current()?;
        if self.written != 0 {
            return Err(GgufError::WriterState {
                reason: format!(
                    "tensor '{}' is partly written in chunks; finish it with end_tensor",
                    tensor.name
                ),
            });
        }
        if data.len() as u64 != tensor.n_bytes {
            return Err(GgufError::TensorSize {
                tensor: tensor.name.clone(),
                expected: tensor.n_bytes,
                got: data.len() as u64,
            });
        }
        self.write_tensor_chunk(data)?;
        self.end_tensor()
    }

    /// Appends a piece of the next tensor's data; the pieces may not add up to more than its byte size.
    pub fn write_tensor_chunk(&mut self, data: &[u8]) -> Result<(), GgufError> {
        let tensor = self.current()?;
        let total = self.written.saturating_add(data.len() as u64);
        if total > tensor.n_bytes {
            return Err(GgufError::TensorSize {
                tensor: tensor.name.clone(),
                expected: tensor.n_bytes,
                got: total,
            });
        }
        self.emit(data)?;
        self.written = total;
        Ok(())
    }

    /// Ends the tensor written in chunks (its size must be complete) and pads to the alignment.
    pub fn end_tensor(&mut self) -> Result<(), GgufError> {
        let tensor = self.current()?;
        if self.written != tensor.n_bytes {
            return Err(GgufError::TensorSize {
                tensor: tensor.name.clone(),
                expected: tensor.n_bytes,
                got: self.written,
            });
        }
        let padded = align_up(self.pos, self.alignment).unwrap_or(self.pos);
        self.pad(padded - self.pos)?;
        self.next += 1;
        self.written = 0;
        Ok(())
    }

    /// Flushes and returns the output; errors if any tensor is missing or incomplete.
    pub fn finish(mut self) -> Result<W, GgufError> {
        if self.failed {
            return Err(failed_state());
        }
        if let Some(tensor) = self.tensors.get(self.next) {
            return Err(GgufError::WriterState {
                reason: format!(
                    "finished after {} of {} tensors; tensor '{}' has {} of {} bytes",
                    self.next,
                    self.tensors.len(),
                    tensor.name,
                    self.written,
                    tensor.n_bytes
                ),
            });
        }
        self.out.flush().map_err(|source| GgufError::Write { source })?;
        Ok(self.out)
    }

    fn current(&self) -> Result<&PlannedTensor, GgufError> {
        if self.failed {
            return Err(failed_state());
        }
        self.tensors.get(self.next).ok_or_else(|| GgufError::WriterState {
            reason: format!("all {} tensors are already written", self.tensors.len()),
        })
    }

    fn emit(&mut self, data: &[u8]) -> Result<(), GgufError> {
        if let Err(source) = self.out.write_all(data) {
            self.failed = true;
            return Err(GgufError::Write { source });
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self, mut n: u64) -> Result<(), GgufError> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let step = n.min(ZEROS.len() as u64) as usize;
            self.emit(&ZEROS[..step])?;
            n -= step as u64;
        }
        Ok(())
    }
}

fn failed_state() -> GgufError {
    GgufError::WriterState {
        reason: "an earlier write failed".to_owned(),
    }
}

/// Writes a whole file to memory (alignment 32). For tests and small fixtures.
pub fn write_gguf_to_vec(
    metadata: &[(String, Value)],
    tensors: &[(TensorSpec, Vec<u8>)],
) -> Result<Vec<u8>, GgufError> {
    let specs: Vec<TensorSpec> = tensors.iter().map(|(spec, _)| spec.clone()).collect();
    let mut writer = GgufWriter::new(Vec::new(), metadata, &specs, DEFAULT_ALIGNMENT)?;
    for (_, data) in tensors {
        writer.write_tensor(data)?;
    }
    writer.finish()
}

fn check_cap(what: &str, value: u64, cap: u64) -> Result<(), GgufError> {
    if value > cap {
        return Err(GgufError::TooLarge {
            what: what.to_owned(),
            value,
            cap,
        });
    }
    Ok(())
}

fn put_string(buf: &mut Vec<u8>, s: &str, cap: u64, what: &str) -> Result<(), GgufError> {
    if s.len() as u64 > cap {
        return Err(GgufError::TooLarge {
            what: format!("length of {what}"),
            value: s.len() as u64,
            cap,
        });
    }
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Encodes a value's payload (its type id is written by the caller). `depth` counts enclosing arrays.
fn put_value(buf: &mut Vec<u8>, key: &str, value: &Value, depth: u32) -> Result<(), GgufError> {
    match value {
        Value::U8(v) => buf.push(*v),
        Value::I8(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => buf.push(u8::from(*v)),
        Value::String(s) => put_string(buf, s, MAX_STRING_LEN, &format!("string in key '{key}'"))?,
        Value::Array(items) => {
            let depth = depth + 1;
            if depth > MAX_ARRAY_DEPTH {
                return Err(GgufError::TooLarge {
                    what: format!("array nesting depth of key '{key}'"),
                    value: depth.into(),
                    cap: MAX_ARRAY_DEPTH.into(),
                });
            }
            check_cap(
                &format!("array length of key '{key}'"),
                items.len() as u64,
                MAX_ARRAY_LEN,
            )?;
            // An empty array still needs an element type; u8 is as good as any.
            let elem_ty = items.first().map_or(type_id::U8, Value::type_id);
            if let Some(odd) = items.iter().find(|v| v.type_id() != elem_ty) {
                return Err(GgufError::MixedArray {
                    key: key.to_owned(),
                    first: items[0].type_name(),
                    other: odd.type_name(),
                });
            }
            buf.extend_from_slice(&elem_ty.to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(buf, key, item, depth)?;
            }
        }
    }
    Ok(())
}
