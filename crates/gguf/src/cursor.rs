//! Bounds-checked little-endian reads over a byte slice. Every read checks the bytes it needs are there
//! before touching them; error descriptions are built only when an error happens.

use crate::GgufError;

pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Byte position of the next read.
    pub fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Bytes left after the read position.
    pub fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// The error for needing `need` bytes at the read position.
    pub fn truncated(&self, what: String, need: u64) -> GgufError {
        GgufError::Truncated {
            what,
            at: self.pos(),
            need,
            file_len: self.file_len(),
        }
    }

    /// The next `n` bytes, or `Truncated` naming `what`.
    pub fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.truncated(what(), n));
        }
        // n <= remaining <= usize::MAX, so the cast is exact.
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: impl FnOnce() -> String) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn i8(&mut self, what: impl FnOnce() -> String) -> Result<i8, GgufError> {
        Ok(i8::from_le_bytes(self.array(what)?))
    }
    pub fn u16(&mut self, what: impl FnOnce() -> String) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn i16(&mut self, what: impl FnOnce() -> String) -> Result<i16, GgufError> {
        Ok(i16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn i32(&mut self, what: impl FnOnce() -> String) -> Result<i32, GgufError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: impl FnOnce() -> String) -> Result<i64, GgufError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub fn f32(&mut self, what: impl FnOnce() -> String) -> Result<f32, GgufError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    pub fn f64(&mut self, what: impl FnOnce() -> String) -> Result<f64, GgufError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes. The length is checked against `cap` and against the
    /// bytes left before anything is allocated.
    pub fn string(&mut self, cap: u64, what: impl Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(|| format!("length of {}", what()))?;
        if len > cap {
            return Err(GgufError::TooLarge {
                what: format!("length of {}", what()),
                value: len,
                cap,
            });
        }
        let at = self.pos();
        let raw = self.take(len, &what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::BadUtf8 { what: what(), at }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_reports_truncation() {
        let bytes = [1u8, 0, 0, 0, 0xff];
        let mut cur = Cursor::new(&bytes);
        assert_eq!(cur.u32(|| "x".into()).unwrap(), 1);
        match cur.u16(|| "y".into()) {
            Err(GgufError::Truncated {
                what,
                at,
                need,
                file_len,
            }) => {
                assert_eq!((what.as_str(), at, need, file_len), ("y", 4, 2, 5));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cur.u8(|| "z".into()).unwrap(), 0xff);
    }

    #[test]
    fn string_length_is_checked_before_allocating() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let err = Cursor::new(&bytes).string(1 << 20, || "s".into()).unwrap_err();
        assert!(matches!(err, GgufError::TooLarge { value: u64::MAX, .. }), "{err:?}");
        let mut bytes = 10u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let err = Cursor::new(&bytes).string(1 << 20, || "s".into()).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { need: 10, at: 8, .. }), "{err:?}");
    }
}
