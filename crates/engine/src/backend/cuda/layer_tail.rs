//! The rest of a layer after Q/K/V for one decoded token (`Backend::attention_ffn`) in three launches
//! (`kernels/layer_tail.cu`): attention with the output projection, the FFN input, the FFN output. The four of the
//! plain ops lose the output projection's launch; its product is split by heads over the attention blocks, whose
//! partial sums meet in a fixed-point accumulator (exact, so a step stays repeatable bit for bit).

use super::attention::{decode_splits, max_pos};
use super::{lock, Arg, CudaBackend, CudaKv, CudaWeight, DECODE_LANES_PER_KEY, MATVEC_THREADS};
use crate::backend::{AttentionParams, FfnBlock, KvPrecision};
use crate::batch::Batch;
use crate::error::Result;
use cudarc::driver::CudaSlice;

/// Chunks of 8 weights of the output projection each attention thread holds in registers (`TAIL_CPT`). Measured
/// on H100 (tg128, smollm2-135m f16 / q8_0 against 2,390 / 2,347 tok/s unfused): 4 chunks (109 registers a
/// thread, 3 blocks a head) 2,364 / 2,236; 2 chunks (95 registers, 5 blocks a head) 2,604 / 2,476; 1 chunk
/// 2,603 / 2,347. At 4 a block's 57 K registers leave no room beside the Q/K/V product's blocks still running
/// (the boundary before it took 1.8 µs instead of 0.95).
pub(super) const TAIL_CHUNKS_PER_THREAD: usize = 2;
/// Longest residual row the fused tail takes (`TAIL_MAX_D`: the FFN input block's shared copy of it).
pub(super) const TAIL_MAX_D: usize = 1024;
/// Chunks of 256 elements of each of its two rows a warp of the held FFN output kernel (`matvec1ah`) holds in
/// registers from before its wait (`TAIL_DOWN_ITERS`; half as many for F32 rows). Measured on H100 (tg128,
/// against the FFN-output rows loaded after the wait): smollm2-135m f16 2,790 -> 2,903 tok/s, q8_0 2,649 ->
/// 2,841. Launched for longer rows as well, at 128 registers a thread (then its cap) it cost Qwen2.5-0.5B f16
/// (rows of 4,864) 7 % (1,437 -> 1,331), so longer rows take the plain kernel.
pub(super) const TAIL_DOWN_ITERS: usize = 6;

/// Longest FFN-output row (elements) the held kernel takes for weights of `ty`: 256 elements a chunk, and F32's
/// raw chunks twice as large (so half as many).
pub(super) fn tail_down_held_max(ty: gguf::GgmlType) -> usize {
    256 * if ty == gguf::GgmlType::F32 {
        TAIL_DOWN_ITERS / 2
    } else {
        TAIL_DOWN_ITERS
    }
}

/// Most blocks a head's output projection is split over (each redoes the head's attention).
const TAIL_MAX_PARTS: usize = 8;

/// Blocks per head of the fused attention and output projection for a residual row of `d` and heads of
/// `head_dim`: each holds `threads * TAIL_CHUNKS_PER_THREAD * 8 / head_dim` rows of wo. `None` for head sizes
/// without a compiled kernel, rows too long for the FFN input's shared copy, or more than TAIL_MAX_PARTS blocks.
pub(super) fn tail_parts(d: usize, head_dim: usize) -> Option<usize> {
    if !matches!(head_dim, 64 | 128) || d == 0 || d > TAIL_MAX_D || !d.is_multiple_of(32) {
        return None;
    }
    let threads = 128 * DECODE_LANES_PER_KEY as usize;
    let rows_per_block = threads * TAIL_CHUNKS_PER_THREAD * 8 / head_dim;
    Some(d.div_ceil(rows_per_block)).filter(|&p| p <= TAIL_MAX_PARTS)
}

impl CudaBackend {
    /// `Backend::attention_ffn` in three launches; `false` (nothing done) where the batch or the shapes call for
    /// the plain ops: one token, one attention split, an F16 cache, heads of 64 or 128, and weights whose
    /// single-token products take f32 activations (float formats, short Q8_0 rows), the FFN's norm inside its input
    /// product.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attention_ffn_fused(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
        wo: &CudaWeight,
        ffn: FfnBlock<'_, CudaWeight>,
        h: &mut CudaSlice<f32>,
        x: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        let (d, (g, u, down)) = (ffn.norm.row_len, (ffn.gate, ffn.up, ffn.down));
        let parts = match tail_parts(d, p.head_dim) {
            Some(parts) if batch.len() == 1 => parts,
            _ => return Ok(false),
        };
        let Some(nw) = ffn.norm.vector.as_ref() else {
            return Ok(false);
        };
        let fits = kv.shape.precision == KvPrecision::F16
            && decode_splits(max_pos(&batch.positions), p.n_heads) == 1
            && wo.rows == d
            && wo.row_len == p.n_heads * p.head_dim
            && self.takes_f32(wo, 1)
            && g.ty == u.ty
            && g.rows == u.rows
            && g.row_len == d
            && u.row_len == d
            && self.norm_in_kernel(g)
            && (down.rows, down.row_len) == (d, g.rows)
            && self.takes_f32(down, 1)
            && [wo, g, u, down].iter().all(|w| w.vector.is_none());
        let funcs = |w: &CudaWeight| self.funcs.weight(w.ty, &w.name).map(|f| f.tail.as_ref());
        let (Some(fo), Some(fg), Some(fd)) = (funcs(wo)?, funcs(g)?, funcs(down)?) else {
            return Ok(false);
        };
        if !fits {
            return Ok(false);
        }
        let window = self.check_attention(q, kv, batch, p)?;
        self.check_len("layer input", x.len(), d)?;
        self.check_len("ffn activations", h.len(), g.rows)?;
        let acc = {
            let mut scratch = lock(&self.scratch);
            if scratch.ensure_tail_acc(&self.stream, d)? {
                lock(&self.graphs).clear();
            }
            self.ptr(&scratch.tail_acc)
        };
        let (pos, seq) = {
            let meta = lock(&self.meta);
            (self.ptr(&meta.pos), self.ptr(&meta.seq))
        };
        let s = kv.shape;
        let attn_o = if p.head_dim == 64 { &fo.attn_o64 } else { &fo.attn_o128 };
        self.launch(
            attn_o,
            (p.n_heads as u32, parts as u32, 1),
            128 * DECODE_LANES_PER_KEY,
            &[
                Arg::Ptr(self.ptr(q)),
                Arg::Ptr(self.ptr(&kv.k)),
                Arg::Ptr(self.ptr(&kv.v)),
                Arg::Ptr(pos),
                Arg::Ptr(seq),
                Arg::Ptr(self.ptr(&wo.data)),
                Arg::Usize(wo.row_bytes),
                Arg::I32(d as i32),
                Arg::Ptr(acc),
                Arg::I32(p.n_heads as i32),
                Arg::I32(p.n_kv_heads as i32),
                Arg::I32(s.n_ctx as i32),
                Arg::I32(s.n_seqs as i32),
                Arg::I32(p.layer as i32),
                Arg::F32(p.scale),
                Arg::I32(window),
            ],
        )?;
        let (xp, hp) = (self.ptr(x), self.ptr(h));
        self.glu_norm(&fg.glu1na, [g, u], xp, Some(acc), (self.ptr(nw), ffn.eps), hp, ffn.act)?;
        let (segs, rows) = self.segs(&[(down, xp, 0)]);
        let down_kernel = if down.row_len <= tail_down_held_max(down.ty) {
            &fd.matvec1ah
        } else {
            &fd.matvec1a
        };
        self.launch(
            down_kernel,
            (self.matvec1_blocks(rows) as u32, 1, 1),
            MATVEC_THREADS,
            &[
                Arg::Segs(segs),
                Arg::Usize(down.row_bytes),
                Arg::I32(rows as i32),
                Arg::I32(down.row_len as i32),
                Arg::Ptr(hp),
                Arg::Ptr(acc),
            ],
        )?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_parts_split_wo_over_few_blocks_a_head() {
        // 512 threads x 2 chunks of 8: 128 rows of wo a block at heads of 64, 64 at heads of 128.
        assert_eq!(tail_parts(576, 64), Some(5)); // smollm2-135m: 9 heads x 5 blocks
        assert_eq!(tail_parts(896, 64), Some(7)); // Qwen2.5-0.5B
        assert_eq!(tail_parts(1024, 64), Some(8));
        assert_eq!(tail_parts(512, 128), Some(8));
        assert_eq!(tail_parts(128, 64), Some(1));
        // More than eight blocks a head, rows past the FFN input's shared copy, other head sizes: the plain ops.
        assert_eq!(tail_parts(576, 128), None);
        assert_eq!(tail_parts(2048, 64), None);
        assert_eq!(tail_parts(4096, 128), None);
        assert_eq!(tail_parts(640, 256), None);
        assert_eq!(tail_parts(576, 96), None);
        assert_eq!(tail_parts(0, 64), None);
        assert_eq!(tail_parts(600, 64), None);
    }

    #[test]
    fn held_ffn_output_rows_fit_the_kernels_registers() {
        // smollm2-135m's FFN rows (1,536) are held in F16 and Q8_0; Qwen2.5-0.5B's (4,864) are not.
        assert_eq!(tail_down_held_max(gguf::GgmlType::F16), 1536);
        assert_eq!(tail_down_held_max(gguf::GgmlType::Q8_0), 1536);
        assert_eq!(tail_down_held_max(gguf::GgmlType::F32), 768);
        assert!(4864 > tail_down_held_max(gguf::GgmlType::BF16));
    }
}
