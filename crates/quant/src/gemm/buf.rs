//! A growable buffer of plain values aligned to 64 bytes (a cache line, an AVX-512 register), so that the
//! microkernels' 64-byte loads never straddle two lines.

use std::marker::PhantomData;

/// 64 zeroed-or-written bytes at a 64-byte boundary.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Element types an [`Aligned`] may hold.
///
/// # Safety
/// Implementors have no padding, alignment at most 64, and every bit pattern is a valid value.
pub unsafe trait Plain: Copy {}
// SAFETY: plain integers and floats.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for i8 {}
// SAFETY: as above.
unsafe impl Plain for f32 {}

/// See the module docs. Growing keeps the old contents; new space is zeroed.
pub struct Aligned<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Plain> Default for Aligned<T> {
    fn default() -> Self {
        Self {
            lines: Vec::new(),
            len: 0,
            _t: PhantomData,
        }
    }
}

impl<T: Plain> Aligned<T> {
    /// Makes the buffer `len` elements long (allocating only when it grows past what it ever held).
    pub fn resize(&mut self, len: usize) {
        let lines = (len * size_of::<T>()).div_ceil(64);
        if self.lines.len() < lines {
            self.lines.resize(lines, Line([0; 64]));
        }
        self.len = len;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the lines hold at least len * size_of::<T>() initialized bytes (`resize`), aligned to 64 >=
        // align_of::<T>(), and every bit pattern is a valid T (Plain).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; the borrow is unique because `self` is.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}
