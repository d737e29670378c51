//! How quantized rows lie in GPU memory. GGUF blocks of 18, 20, 22, 24, 34, 84, 110 and 210 bytes keep only 2-byte
//! alignment, so a kernel reading them in place assembles every 32-bit word from halves and cannot use 16-byte
//! loads. On the GPU those rows are regrouped: blocks go in groups of 8, and a group holds first the 8 blocks'
//! scalar fields (scales, mins, high bits: `scalar_bytes` each, 8 of them always a multiple of 16 bytes), then
//! their quant arrays (`array_bytes` each, a multiple of 16). Every array then starts 16-byte aligned.
//!
//! The bytes are the GGUF bytes, only reordered within each row: block `b` of a row has its scalars at
//! `group + scalar_bytes * (b % 8)` and its array at `group + 8 * scalar_bytes + array_bytes * (b % 8)`, where
//! `group = row + 8 * block_bytes * (b / 8)`. A last group of fewer than 8 blocks keeps room for 8 scalar fields,
//! so those offsets never depend on the row length. Formats whose blocks are already multiples of 16 bytes
//! (Q4_K, Q5_K) and the float formats stay as they are.

use crate::GgmlType;

/// Blocks per group.
pub const GROUP: usize = 8;

/// Where a block's 16-byte-multiple quant array lies in the GGUF block; the other bytes are its scalar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSplit {
    pub block_bytes: usize,
    /// Offset of the array in the GGUF block: 0 (array first, scalars after) or `scalar_bytes` (scalars first).
    pub array_start: usize,
    pub array_bytes: usize,
}

impl BlockSplit {
    pub fn scalar_bytes(&self) -> usize {
        self.block_bytes - self.array_bytes
    }
}

/// The split of a format regrouped on the GPU, or `None` for formats stored as in the file.
pub fn block_split(ty: GgmlType) -> Option<BlockSplit> {
    // (block bytes, array start, array bytes): the arrays are the quants (with Q2_K's scales, Q3_K's high-bit
    // mask and Q6_K's 2-bit highs and scales, which sit beside them); the scalars are the f16 factors, Q5's high
    // bits and Q3_K's 6-bit scales.
    let (block_bytes, array_start, array_bytes) = match ty {
        GgmlType::Q4_0 => (18, 2, 16),
        GgmlType::Q4_1 => (20, 4, 16),
        GgmlType::Q5_0 => (22, 6, 16),
        GgmlType::Q5_1 => (24, 8, 16),
        GgmlType::Q8_0 => (34, 2, 32),
        GgmlType::Q2_K => (84, 0, 80),
        GgmlType::Q3_K => (110, 0, 96),
        GgmlType::Q6_K => (210, 0, 208),
        _ => return None,
    };
    Some(BlockSplit {
        block_bytes,
        array_start,
        array_bytes,
    })
}

/// Bytes of one row of `n_blocks` blocks on the GPU (a multiple of 16 for every regrouped format).
pub fn device_row_bytes(ty: GgmlType, n_blocks: usize) -> usize {
    match block_split(ty) {
        Some(s) => n_blocks.div_ceil(GROUP) * GROUP * s.scalar_bytes() + n_blocks * s.array_bytes,
        None => n_blocks * ty.block_bytes(),
    }
}

/// Rewrites whole rows of `n_blocks` blocks from their GGUF bytes (`src`, rows back to back) into the GPU layout
/// (`dst`, rows of [`device_row_bytes`]). Formats that are not regrouped are copied. Padding bytes are zeroed.
pub fn regroup_rows(ty: GgmlType, n_blocks: usize, src: &[u8], dst: &mut [u8]) {
    let src_row = n_blocks * ty.block_bytes();
    let dst_row = device_row_bytes(ty, n_blocks);
    debug_assert_eq!(src.len() / src_row.max(1), dst.len() / dst_row.max(1));
    let Some(split) = block_split(ty) else {
        dst.copy_from_slice(src);
        return;
    };
    let (sb, ab, bb) = (split.scalar_bytes(), split.array_bytes, split.block_bytes);
    let scalar_start = if split.array_start == 0 { ab } else { 0 };
    for (s_row, d_row) in src.chunks_exact(src_row).zip(dst.chunks_exact_mut(dst_row)) {
        d_row.fill(0);
        for (b, block) in s_row.chunks_exact(bb).enumerate() {
            let group = GROUP * bb * (b / GROUP);
            let j = b % GROUP;
            d_row[group + sb * j..group + sb * (j + 1)].copy_from_slice(&block[scalar_start..scalar_start + sb]);
            let a = group + GROUP * sb + ab * j;
            d_row[a..a + ab].copy_from_slice(&block[split.array_start..split.array_start + ab]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_their_blocks_and_align_the_arrays() {
        for ty in GgmlType::ALL {
            let Some(s) = block_split(ty) else { continue };
            assert_eq!(s.block_bytes, ty.block_bytes(), "{ty:?}");
            assert_eq!(s.array_bytes % 16, 0, "{ty:?}");
            assert_eq!((GROUP * s.scalar_bytes()) % 16, 0, "{ty:?}");
            assert!(s.array_start == 0 || s.array_start == s.scalar_bytes(), "{ty:?}");
            for n in [1, 7, 8, 9, 18, 56, 128] {
                assert_eq!(device_row_bytes(ty, n) % 16, 0, "{ty:?} x {n}");
                if n % GROUP == 0 {
                    assert_eq!(device_row_bytes(ty, n), n * s.block_bytes, "{ty:?} x {n}");
                }
            }
        }
        assert!(block_split(GgmlType::Q4_K).is_none() && block_split(GgmlType::F16).is_none());
    }

    /// Every byte of every block lands where the documented offsets say, for full and partial last groups.
    #[test]
    fn regrouped_rows_hold_each_block_at_its_offsets() {
        for ty in GgmlType::ALL {
            let Some(s) = block_split(ty) else { continue };
            let sb = s.scalar_bytes();
            let scalar_start = if s.array_start == 0 { s.array_bytes } else { 0 };
            for n_blocks in [3, 8, 18] {
                let rows = 3;
                let src: Vec<u8> = (0..rows * n_blocks * s.block_bytes)
                    .map(|i| (i * 7 + i / 251) as u8)
                    .collect();
                let dst_row = device_row_bytes(ty, n_blocks);
                let mut dst = vec![0xAAu8; rows * dst_row];
                regroup_rows(ty, n_blocks, &src, &mut dst);
                let mut placed = 0;
                for r in 0..rows {
                    for b in 0..n_blocks {
                        let block = &src[(r * n_blocks + b) * s.block_bytes..][..s.block_bytes];
                        let group = r * dst_row + GROUP * s.block_bytes * (b / GROUP);
                        let j = b % GROUP;
                        assert_eq!(&dst[group + sb * j..][..sb], &block[scalar_start..][..sb], "{ty:?}");
                        let a = group + GROUP * sb + s.array_bytes * j;
                        assert_eq!(&dst[a..][..s.array_bytes], &block[s.array_start..][..s.array_bytes]);
                        placed += s.block_bytes;
                    }
                }
                assert_eq!(placed, src.len());
                // The rest is zero padding (a partial last group's unused scalar room).
                let pad = dst.len() - src.len();
                assert_eq!(pad, rows * (n_blocks.div_ceil(GROUP) * GROUP - n_blocks) * sb);
            }
        }
    }
}
