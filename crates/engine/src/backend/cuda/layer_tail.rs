//! The rest of a layer after Q/K/V for one decoded token (`Backend::attention_ffn`) in two launches
//! (`kernels/layer_tail.cu`): attention with the output projection, and the FFN. Both products are split over
//! blocks whose partial sums meet in fixed-point accumulators (exact, so a step stays repeatable bit for bit). The
//! residual stream is then x + A + F, pending in this backend (`TailPending`) until the next layer's Q/K/V product
//! reads the sum and its attention folds it into x; any other op settles it first (`settle`: one small launch).

use super::attention::{decode_splits, max_pos};
use super::{lock, Arg, CudaBackend, CudaKv, CudaWeight, DECODE_LANES_PER_KEY};
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

/// A residual row whose value is x + A[a] + F, the last fused tail's sums not yet folded into x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TailPending {
    /// The residual buffer's device address.
    pub x: u64,
    /// Which of the two A accumulators holds the output projection's sums.
    pub a: usize,
    /// The row's length.
    pub d: usize,
}

/// The accumulators a fused tail over `x` (row `d`) folds and fills: (`fold`: a pending sum of another row, to
/// settle first), the A it folds with F, the A it adds its heads into. A tail right after another over the same
/// row alternates between the two A's; the fold of a zero A and F changes nothing.
pub(super) fn tail_slots(pending: Option<TailPending>, x: u64, d: usize) -> (Option<TailPending>, usize, usize) {
    match pending {
        Some(p) if p.x == x && p.d == d => (None, p.a, 1 - p.a),
        other => (other, 1, 0),
    }
}

impl CudaBackend {
    /// Device addresses of the accumulators: [A0, A1, F], TAIL_MAX_D each (allocated once at that size, so that
    /// they never move under a pending sum), zeros where nothing is pending.
    fn tail_accs(&self) -> Result<[u64; 3]> {
        let mut scratch = lock(&self.scratch);
        if scratch.ensure_tail_acc(&self.stream, 3 * TAIL_MAX_D)? {
            lock(&self.graphs).clear();
        }
        let (base, n) = (self.ptr(&scratch.tail_acc), 8 * TAIL_MAX_D as u64);
        Ok([base, base + n, base + 2 * n])
    }

    /// Folds a pending tail's sums into its residual row (a launch), so that ops other than the fused tail's read
    /// the row itself. Nothing to do when none is pending.
    pub(super) fn settle(&self) -> Result<()> {
        let Some(p) = lock(&self.tail_pending).take() else {
            return Ok(());
        };
        self.fold(p)
    }

    fn fold(&self, p: TailPending) -> Result<()> {
        let acc = self.tail_accs()?;
        let args = [
            Arg::Ptr(p.x),
            Arg::Ptr(acc[p.a]),
            Arg::Ptr(acc[2]),
            Arg::I32(p.d as i32),
        ];
        self.launch_1d(&self.funcs.tail_fold, p.d, &args)
    }

    /// The pending sums of the residual row at `x` of `d` (A, F addresses), for a product that reads the row;
    /// `None` when nothing is pending for it.
    pub(super) fn pending_sums(&self, x: u64, d: usize) -> Result<Option<(u64, u64)>> {
        let pending = *lock(&self.tail_pending);
        match pending {
            Some(p) if p.x == x && p.d == d => {
                let acc = self.tail_accs()?;
                Ok(Some((acc[p.a], acc[2])))
            }
            _ => Ok(None),
        }
    }

    /// `Backend::attention_ffn` in two launches, leaving the residual pending; `false` (nothing done) where the
    /// batch or the shapes call for the plain ops: one token, one attention split, an F16 cache, heads of 64 or 128,
    /// and weights whose single-token products take f32 activations (float formats, short Q8_0 rows), the FFN's
    /// norm inside its input product.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attention_ffn_fused(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
        wo: &CudaWeight,
        ffn: FfnBlock<'_, CudaWeight>,
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
            && g.rows.is_multiple_of(8)
            && g.row_len == d
            && u.row_len == d
            && self.norm_in_kernel(g)
            && (down.ty, down.rows, down.row_len) == (g.ty, d, g.rows)
            && [wo, g, u, down].iter().all(|w| w.vector.is_none());
        let funcs = |w: &CudaWeight| self.funcs.weight(w.ty, &w.name).map(|f| f.tail.as_ref());
        let (Some(fo), Some(fg)) = (funcs(wo)?, funcs(g)?) else {
            return Ok(false);
        };
        if !fits {
            return Ok(false);
        }
        let window = self.check_attention(q, kv, batch, p)?;
        self.check_len("layer input", x.len(), d)?;
        let xp = self.ptr(x);
        let (other, fold_a, a) = tail_slots(*lock(&self.tail_pending), xp, d);
        if let Some(o) = other {
            self.fold(o)?;
        }
        let acc = self.tail_accs()?;
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
                Arg::Ptr(acc[a]),
                Arg::I32(p.n_heads as i32),
                Arg::I32(p.n_kv_heads as i32),
                Arg::I32(s.n_ctx as i32),
                Arg::I32(s.n_seqs as i32),
                Arg::I32(p.layer as i32),
                Arg::F32(p.scale),
                Arg::I32(window),
                Arg::Ptr(xp),
                Arg::Ptr(acc[fold_a]),
                Arg::Ptr(acc[2]),
            ],
        )?;
        self.launch(
            &fg.glud,
            ((g.rows / 8) as u32, 1, 1),
            256,
            &[
                Arg::Ptr(self.ptr(&g.data)),
                Arg::Ptr(self.ptr(&u.data)),
                Arg::Usize(g.row_bytes),
                Arg::I32(d as i32),
                Arg::Ptr(xp),
                Arg::Ptr(acc[a]),
                Arg::Ptr(self.ptr(nw)),
                Arg::F32(ffn.eps),
                Arg::Ptr(self.ptr(&down.data)),
                Arg::Usize(down.row_bytes),
                Arg::Ptr(acc[2]),
                Arg::I32(super::decode::act_code(ffn.act)),
            ],
        )?;
        *lock(&self.tail_pending) = Some(TailPending { x: xp, a, d });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_after_a_tail_over_the_same_row_takes_the_other_accumulator() {
        let p = |x, a, d| Some(TailPending { x, a, d });
        // Nothing pending: fold A1 (zero) and F, add into A0.
        assert_eq!(tail_slots(None, 0x1000, 576), (None, 1, 0));
        // The previous layer's tail over the same row left A0: fold A0 and F, add into A1; and back.
        assert_eq!(tail_slots(p(0x1000, 0, 576), 0x1000, 576), (None, 0, 1));
        assert_eq!(tail_slots(p(0x1000, 1, 576), 0x1000, 576), (None, 1, 0));
        // Another row (or another length) pending: settle it first, then start afresh.
        assert_eq!(tail_slots(p(0x2000, 0, 576), 0x1000, 576), (p(0x2000, 0, 576), 1, 0));
        assert_eq!(tail_slots(p(0x1000, 1, 512), 0x1000, 576), (p(0x1000, 1, 512), 1, 0));
    }

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
}
