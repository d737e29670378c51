//! Helpers shared by the integration tests: a raw GGUF byte builder for crafting hostile files, and filler data.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Value type ids as the GGUF spec numbers them (written out here, independently of the crate).
pub mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Tensor type ids used in hand-made files.
pub mod tt {
    pub const F32: u32 = 0;
    pub const Q4_0: u32 = 2;
    pub const Q8_0: u32 = 8;
}

/// Builds GGUF bytes field by field, with no validation, so tests can write anything.
#[derive(Default, Clone)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    /// Magic, version, tensor count, metadata count.
    pub fn header(version: u32, n_tensors: u64, n_kvs: u64) -> Self {
        let mut raw = Raw(b"GGUF".to_vec());
        raw.u32(version).u64(n_tensors).u64(n_kvs);
        raw
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A key and a value type id (the value follows).
    pub fn key(&mut self, key: &str, type_id: u32) -> &mut Self {
        self.str(key).u32(type_id)
    }
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.key(key, vt::U32).u32(v)
    }
    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.key(key, vt::STRING).str(v)
    }
    /// A tensor info: name, n_dims, dims, type id, offset relative to the data section.
    pub fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }
    /// Zero bytes up to the next multiple of `alignment`.
    pub fn pad(&mut self, alignment: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(alignment) {
            self.0.push(0);
        }
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn build(&self) -> Vec<u8> {
        self.0.clone()
    }
}

/// Deterministic filler bytes (xorshift), distinct per seed, so misplaced data cannot compare equal.
pub fn filler(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("neither XDG_CACHE_HOME nor HOME is set");
    cache.join("quarrel/models")
}

/// The model's path, fetching it first when it is not cached.
pub fn model(name: &str, which: &str) -> PathBuf {
    let path = model_dir().join(name);
    if !path.exists() {
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/fetch-models.sh"))
            .arg(which)
            .current_dir(repo_root())
            .status()
            .expect("running scripts/fetch-models.sh");
        assert!(status.success(), "scripts/fetch-models.sh {which} failed: {status}");
    }
    assert!(path.exists(), "{} still missing after fetching", path.display());
    path
}
