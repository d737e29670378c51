//! Parsing and validating a GGUF v2/v3 file: header, metadata, tensor infos, data layout.

use std::collections::HashMap;
use std::path::Path;

use crate::cursor::Cursor;
use crate::shape::{align_up, tensor_size, MAX_DIMS};
use crate::value::{min_encoded_size, type_id, type_id_name};
use crate::{GgmlType, GgufError, Value};

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Most tensors a file may declare.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most metadata entries a file may declare.
pub const MAX_KVS: u64 = 1 << 20;
/// Longest string value, in bytes.
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// Longest metadata key or tensor name, in bytes.
pub const MAX_NAME_LEN: u64 = 65_535;
/// Most elements in one metadata array.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Deepest nesting of arrays inside arrays (1 = a plain array).
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// Largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 1 << 24;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// One tensor's description, validated against the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the contiguous row length.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the tensor's data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Product of the dims (saturating, so hand-made infos cannot overflow).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |n, &d| n.saturating_mul(d))
    }

    /// Number of rows: every dim but the first, multiplied.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).fold(1u64, |n, &d| n.saturating_mul(d))
    }
}

enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A validated GGUF file: metadata and tensor infos parsed, tensor data left in place (mmap or owned bytes).
///
/// The public fields are a read-only view; the lookup indexes are built at open and are not updated if the
/// fields are changed.
pub struct Gguf {
    pub version: u32,
    pub alignment: u64,
    /// In file order.
    pub metadata: Vec<(String, Value)>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset where the data section starts.
    pub data_offset: u64,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
    storage: Storage,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .field("file_len", &self.file_len())
            .finish()
    }
}

impl Gguf {
    /// Maps the file read-only and validates it.
    ///
    /// The file must not be modified while the returned value lives (the usual mmap caveat).
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let path = path.as_ref();
        let io_err = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            // Mapping an empty file is not portable; parse the empty slice instead.
            return Self::from_storage(Storage::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this value; quarrel does not write model files while they
        // are open, and the caveat that others must not either is documented above.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        Self::from_storage(Storage::Mmap(map))
    }

    /// Validates an in-memory file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Self::from_storage(Storage::Owned(bytes))
    }

    fn from_storage(storage: Storage) -> Result<Gguf, GgufError> {
        let bytes: &[u8] = match &storage {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        };
        let parsed = parse(bytes)?;
        Ok(Gguf {
            version: parsed.version,
            alignment: parsed.alignment,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            data_offset: parsed.data_offset,
            key_index: parsed.key_index,
            tensor_index: parsed.tensor_index,
            storage,
        })
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.key_index.get(key)?;
        match self.metadata.get(i) {
            Some((k, v)) if k == key => Some(v),
            _ => None,
        }
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let &i = self.tensor_index.get(name)?;
        self.tensors.get(i).filter(|t| t.name == name)
    }

    /// The data of a tensor of this file. Infos from this file were bounds-checked at open; for any other info
    /// whose range is not inside the file this returns an empty slice.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(t.n_bytes).ok()?)?;
            Some(start..end)
        });
        range.and_then(|r| self.bytes().get(r)).unwrap_or(&[])
    }

    /// The data of the tensor named `name`.
    pub fn tensor_data(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| self.tensor_bytes(t))
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }

    pub fn file_len(&self) -> u64 {
        self.bytes().len() as u64
    }
}

struct Parsed {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    data_offset: u64,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

fn parse(bytes: &[u8]) -> Result<Parsed, GgufError> {
    let mut cur = Cursor::new(bytes);
    let magic: [u8; 4] = cur
        .take(4, || "magic".to_owned())?
        .try_into()
        .map_err(|_| cur.truncated("magic".to_owned(), 4))?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = cur.u32(|| "version".to_owned())?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let n_tensors = cur.u64(|| "tensor count".to_owned())?;
    check_cap("tensor count", n_tensors, MAX_TENSORS)?;
    let n_kvs = cur.u64(|| "metadata count".to_owned())?;
    check_cap("metadata count", n_kvs, MAX_KVS)?;

    // Each entry takes at least a key length and a type; never reserve more than the file could hold.
    let mut metadata = Vec::with_capacity(n_kvs.min(cur.remaining() / 12) as usize);
    let mut key_index = HashMap::with_capacity(metadata.capacity());
    for i in 0..n_kvs {
        let key = cur.string(MAX_NAME_LEN, || format!("key of metadata entry #{i}"))?;
        let ty = cur.u32(|| format!("value type of key '{key}'"))?;
        let value = read_value(&mut cur, ty, &key, 0)?;
        if key_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey { key });
        }
        metadata.push((key, value));
    }
    let alignment = match key_index.get(ALIGNMENT_KEY) {
        Some(&i) => alignment_from(&metadata[i].1)?,
        None => DEFAULT_ALIGNMENT,
    };

    // Name length + n_dims + one dim + type + offset.
    let mut raw_tensors = Vec::with_capacity(n_tensors.min(cur.remaining() / 32) as usize);
    let mut tensor_index = HashMap::with_capacity(raw_tensors.capacity());
    for i in 0..n_tensors {
        let name = cur.string(MAX_NAME_LEN, || format!("name of tensor #{i}"))?;
        let n_dims = cur.u32(|| format!("dimension count of tensor '{name}'"))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadShape {
                tensor: name,
                dims: Vec::new(),
                reason: format!("{n_dims} dimensions (expected 1 to {MAX_DIMS})"),
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(cur.u64(|| format!("dimension {d} of tensor '{name}'"))?);
        }
        let type_id = cur.u32(|| format!("type of tensor '{name}'"))?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            tensor: name.clone(),
            type_id,
        })?;
        let offset = cur.u64(|| format!("data offset of tensor '{name}'"))?;
        let (_, n_bytes) = tensor_size(&name, &dims, ty)?;
        if tensor_index.insert(name.clone(), raw_tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        raw_tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
            n_bytes,
        });
    }

    let header_end = cur.pos();
    let data_offset = align_up(header_end, alignment).ok_or(GgufError::TooLarge {
        what: "header end".to_owned(),
        value: header_end,
        cap: u64::MAX - alignment,
    })?;
    let file_len = cur.file_len();
    let mut tensors = raw_tensors;
    for t in &mut tensors {
        let bad = |reason| GgufError::BadOffset {
            tensor: t.name.clone(),
            offset: t.offset,
            data_offset,
            n_bytes: t.n_bytes,
            file_len,
            reason,
        };
        if t.offset % alignment != 0 {
            return Err(bad("not a multiple of the alignment"));
        }
        let start = data_offset
            .checked_add(t.offset)
            .ok_or_else(|| bad("offset overflows"))?;
        let end = start.checked_add(t.n_bytes).ok_or_else(|| bad("end overflows"))?;
        if end > file_len {
            return Err(bad("data runs past the end of the file"));
        }
        t.offset = start;
    }
    check_no_overlap(&tensors)?;

    Ok(Parsed {
        version,
        alignment,
        metadata,
        tensors,
        data_offset,
        key_index,
        tensor_index,
    })
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

/// `general.alignment`: a non-negative integer that is a nonzero power of two no larger than the cap.
fn alignment_from(value: &Value) -> Result<u64, GgufError> {
    if !value.is_integer() {
        return Err(GgufError::WrongType {
            key: ALIGNMENT_KEY.to_owned(),
            expected: "u32",
            found: value.type_name(),
        });
    }
    let alignment = value.as_u64().ok_or_else(|| GgufError::OutOfRange {
        key: ALIGNMENT_KEY.to_owned(),
        value: value.to_string(),
        target: "u32",
    })?;
    let reason = if alignment == 0 {
        "zero"
    } else if !alignment.is_power_of_two() {
        "not a power of two"
    } else if alignment > MAX_ALIGNMENT {
        "above the cap of 16 MiB"
    } else {
        return Ok(alignment);
    };
    Err(GgufError::BadAlignment {
        value: alignment,
        reason,
    })
}

/// Tensors' data ranges (absolute, validated in-file) must not share a byte.
fn check_no_overlap(tensors: &[TensorInfo]) -> Result<(), GgufError> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // Both ends were checked not to overflow.
        let a_end = a.offset + a.n_bytes;
        if b.offset < a_end {
            return Err(GgufError::TensorOverlap {
                tensor: b.name.clone(),
                start: b.offset,
                end: b.offset + b.n_bytes,
                other: a.name.clone(),
                other_start: a.offset,
                other_end: a_end,
            });
        }
    }
    Ok(())
}

/// Reads one value of type `ty` for metadata key `key`; `depth` counts enclosing arrays.
fn read_value(cur: &mut Cursor, ty: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
    let what = || format!("value of key '{key}'");
    Ok(match ty {
        type_id::U8 => Value::U8(cur.u8(what)?),
        type_id::I8 => Value::I8(cur.i8(what)?),
        type_id::U16 => Value::U16(cur.u16(what)?),
        type_id::I16 => Value::I16(cur.i16(what)?),
        type_id::U32 => Value::U32(cur.u32(what)?),
        type_id::I32 => Value::I32(cur.i32(what)?),
        type_id::F32 => Value::F32(cur.f32(what)?),
        type_id::U64 => Value::U64(cur.u64(what)?),
        type_id::I64 => Value::I64(cur.i64(what)?),
        type_id::F64 => Value::F64(cur.f64(what)?),
        type_id::BOOL => {
            let at = cur.pos();
            match cur.u8(what)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                byte => {
                    return Err(GgufError::BadBool {
                        key: key.to_owned(),
                        at,
                        byte,
                    })
                }
            }
        }
        type_id::STRING => Value::String(cur.string(MAX_STRING_LEN, || format!("string in key '{key}'"))?),
        type_id::ARRAY => Value::Array(read_array(cur, key, depth + 1)?),
        type_id => {
            return Err(GgufError::UnknownValueType {
                key: key.to_owned(),
                type_id,
            })
        }
    })
}

fn read_array(cur: &mut Cursor, key: &str, depth: u32) -> Result<Vec<Value>, GgufError> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::TooLarge {
            what: format!("array nesting depth of key '{key}'"),
            value: depth.into(),
            cap: MAX_ARRAY_DEPTH.into(),
        });
    }
    let elem_ty = cur.u32(|| format!("array element type of key '{key}'"))?;
    let min_size = min_encoded_size(elem_ty).ok_or_else(|| GgufError::UnknownValueType {
        key: key.to_owned(),
        type_id: elem_ty,
    })?;
    let len = cur.u64(|| format!("array length of key '{key}'"))?;
    check_cap(&format!("array length of key '{key}'"), len, MAX_ARRAY_LEN)?;
    // len <= 2^24 and min_size <= 12: no overflow.
    let need = len * min_size;
    if need > cur.remaining() {
        let elem_name = type_id_name(elem_ty).unwrap_or("?");
        return Err(cur.truncated(format!("array of {len} {elem_name} in key '{key}'"), need));
    }
    let mut items = Vec::with_capacity(len as usize);
    for _ in 0..len {
        items.push(read_value(cur, elem_ty, key, depth)?);
    }
    Ok(items)
}
