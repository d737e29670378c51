//! Tensor shape rules shared by the reader and the writer: dimension count, block divisibility, and the byte
//! size computed with checked math.

use crate::{GgmlType, GgufError};

/// Most dimensions a GGUF tensor may have (ggml's limit).
pub const MAX_DIMS: usize = 4;

/// Validates `dims` for a tensor of type `ty` and returns `(n_elements, n_bytes)`.
///
/// `dims` is in GGUF order: `dims[0]` is the contiguous row length and must be a whole number of blocks.
pub fn tensor_size(tensor: &str, dims: &[u64], ty: GgmlType) -> Result<(u64, u64), GgufError> {
    let bad = |reason: String| GgufError::BadShape {
        tensor: tensor.to_owned(),
        dims: dims.to_vec(),
        reason,
    };
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(bad(format!("{} dimensions (expected 1 to {MAX_DIMS})", dims.len())));
    }
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(bad(format!("dimension {i} is zero")));
    }
    let mut n_elements: u64 = 1;
    for &d in dims {
        n_elements = n_elements
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad("element count overflows".to_owned()))?;
    }
    let block_elems = ty.block_elems() as u64;
    let row_len = dims[0];
    if !row_len.is_multiple_of(block_elems) {
        return Err(bad(format!(
            "row length {row_len} is not a multiple of {ty}'s block of {block_elems}"
        )));
    }
    let n_rows = n_elements / row_len;
    let n_bytes = (row_len / block_elems)
        .checked_mul(ty.block_bytes() as u64)
        .and_then(|row_bytes| row_bytes.checked_mul(n_rows))
        .ok_or_else(|| bad("byte size overflows".to_owned()))?;
    Ok((n_elements, n_bytes))
}

/// `value` rounded up to a multiple of `alignment` (a power of two), or `None` on overflow.
pub fn align_up(value: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    value.checked_add(mask).map(|v| v & !mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_block_geometry() {
        // Q4_K: 256 elements in 144 bytes; 2 rows of 512 = 4 blocks.
        assert_eq!(tensor_size("t", &[512, 2], GgmlType::Q4_K).unwrap(), (1024, 576));
        assert_eq!(tensor_size("t", &[3, 5, 7], GgmlType::F32).unwrap(), (105, 420));
    }

    #[test]
    fn rejects_bad_shapes() {
        for dims in [
            vec![],
            vec![1, 1, 1, 1, 1],
            vec![32, 0],
            vec![100],
            vec![u64::MAX / 2, 4],
        ] {
            let err = tensor_size("t", &dims, GgmlType::Q8_0).unwrap_err();
            assert!(matches!(err, GgufError::BadShape { .. }), "{dims:?}: {err:?}");
        }
    }

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(33, 32), Some(64));
        assert_eq!(align_up(64, 32), Some(64));
        assert_eq!(align_up(u64::MAX, 32), None);
    }
}
