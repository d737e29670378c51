//! Prompt attention through cuBLAS: for each KV head, one strided-batched GEMM over its query heads gives the
//! scores S = scale · Q Kᵀ, a kernel turns them into causal softmax probabilities (f16), and a second batched GEMM
//! gives P V straight into the output rows. Tensor cores do the O(n²) work; used for prompts of one sequence on an
//! F16 cache. Long prompts run in chunks of query rows so that the scores stay within a fixed size.

use super::device::WeightFuncs;
use super::{err, lock, Arg, CudaBackend, CudaKv, CudaWeight};
use crate::backend::AttentionParams;
use crate::batch::Batch;
use crate::error::Result;
use crate::model::config::LayerKind;
use cudarc::driver::CudaSlice;
use gguf::GgmlType;

/// Most bytes of scores (f32) and probabilities (f16) one GEMM attention pass may hold: longer prompts (a
/// perplexity run at a large context is one batch) run their queries in chunks, each seeing only the keys up to its
/// last position.
const PROMPT_ATTENTION_SCRATCH: usize = 256 << 20;

/// Bytes of scores and probabilities per (head, query, key).
const SCORE_BYTES: usize = 4 + 2;

/// The query chunks of a one-sequence prompt at `positions` for the GEMM attention: (first row, rows, keys seen),
/// each chunk's `n_heads * rows * keys * SCORE_BYTES` within `cap` (a chunk has at least one row).
pub fn prompt_query_chunks(positions: &[u32], n_heads: usize, cap: usize) -> Vec<(usize, usize, usize)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < positions.len() {
        let (mut end, mut keys) = (start, 0);
        while end < positions.len() {
            let k = keys.max(positions[end] as usize + 1);
            if end > start && n_heads * (end + 1 - start) * k * SCORE_BYTES > cap {
                break;
            }
            keys = k;
            end += 1;
        }
        chunks.push((start, end - start, keys));
        start = end;
    }
    chunks
}

impl CudaBackend {
    pub(super) fn attention_gemm(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: AttentionParams,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let n_all = batch.len();
        let hd = p.head_dim;
        let q_dim = p.n_heads * hd;
        let chunks = prompt_query_chunks(&batch.positions, p.n_heads, PROMPT_ATTENTION_SCRATCH);
        let att_max = chunks.iter().map(|&(_, n, k)| n * k).max().unwrap_or(0);
        let seq = batch.seq_ids[0] as usize;
        let window = match p.kind {
            LayerKind::Global => 0,
            LayerKind::Sliding { window } => window as i32,
        };
        let mut scratch = lock(&self.scratch);
        scratch.ensure_x16(&self.stream, n_all * q_dim)?;
        scratch.ensure_att(&self.stream, p.n_heads * att_max)?;
        self.launch_1d(
            &self.funcs.to_f16,
            n_all * q_dim,
            &[
                Arg::Ptr(self.ptr(q)),
                Arg::Ptr(self.ptr(&scratch.x16)),
                Arg::Usize(n_all * q_dim),
            ],
        )?;
        let (s32, p16) = (self.ptr(&scratch.att_s), self.ptr(&scratch.att_p));
        let (kc, vc) = (self.ptr(&kv.k), self.ptr(&kv.v));
        let pos = self.ptr(&lock(&self.meta).pos);
        for (first, n, n_keys) in chunks {
            // This chunk's query rows, output rows and positions.
            let q16 = self.ptr(&scratch.x16) + (first * q_dim * 2) as u64;
            let o32 = self.ptr(out) + (first * q_dim * 4) as u64;
            let pos = pos + (first * 4) as u64;
            self.attention_gemm_chunk(&p, kv, (q16, o32, pos, s32, p16), (n, n_keys), (kc, vc, seq, window))?;
        }
        Ok(())
    }

    /// The GEMM attention of `n` consecutive query rows of one sequence against its first `n_keys` keys.
    #[allow(clippy::type_complexity)]
    fn attention_gemm_chunk(
        &self,
        p: &AttentionParams,
        kv: &CudaKv,
        (q16, o32, pos, s32, p16): (u64, u64, u64, u64, u64),
        (n, n_keys): (usize, usize),
        (kc, vc, seq, window): (u64, u64, usize, i32),
    ) -> Result<()> {
        use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
        let s = kv.shape;
        let hd = p.head_dim;
        let q_dim = p.n_heads * hd;
        let group = p.n_heads / p.n_kv_heads;
        let handle = *self.blas.handle();
        let (one, zero, scale) = (1.0f32, 0.0f32, p.scale);
        for g in 0..p.n_kv_heads {
            let head0 = g * group;
            let kv_off = ((((p.layer * s.n_seqs + seq) * s.n_kv_heads + g) * s.n_ctx) * hd * 2) as u64;
            // SAFETY: K_g is [n_ctx, hd] f16 at kv_off (n_keys <= n_ctx rows read); Q16 rows of n_heads*hd halves,
            // heads hd apart; S holds n_heads blocks of [n, n_keys] f32. All sizes ensured above.
            unsafe {
                cudarc::cublas::result::gemm_strided_batched_ex(
                    handle,
                    cublasOperation_t::CUBLAS_OP_T,
                    cublasOperation_t::CUBLAS_OP_N,
                    n_keys as i32,
                    n as i32,
                    hd as i32,
                    (&scale as *const f32).cast(),
                    (kc + kv_off) as *const std::ffi::c_void,
                    cudaDataType::CUDA_R_16F,
                    hd as i32,
                    0,
                    (q16 + (head0 * hd * 2) as u64) as *const std::ffi::c_void,
                    cudaDataType::CUDA_R_16F,
                    q_dim as i32,
                    hd as i64,
                    (&zero as *const f32).cast(),
                    (s32 + (head0 * n * n_keys * 4) as u64) as *mut std::ffi::c_void,
                    cudaDataType::CUDA_R_32F,
                    n_keys as i32,
                    (n * n_keys) as i64,
                    group as i32,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| err("attention scores GEMM", e))?;
        }
        self.launch(
            &self.funcs.softmax_causal,
            ((p.n_heads * n) as u32, 1, 1),
            256,
            &[
                Arg::Ptr(s32),
                Arg::Ptr(p16),
                Arg::Ptr(pos),
                Arg::I32(n as i32),
                Arg::I32(n_keys as i32),
                Arg::I32(window),
            ],
        )?;
        for g in 0..p.n_kv_heads {
            let head0 = g * group;
            let kv_off = ((((p.layer * s.n_seqs + seq) * s.n_kv_heads + g) * s.n_ctx) * hd * 2) as u64;
            // SAFETY: V_g is [n_ctx, hd] f16; P blocks of [n, n_keys] f16; out rows of n_heads*hd floats, heads hd
            // apart.
            unsafe {
                cudarc::cublas::result::gemm_strided_batched_ex(
                    handle,
                    cublasOperation_t::CUBLAS_OP_N,
                    cublasOperation_t::CUBLAS_OP_N,
                    hd as i32,
                    n as i32,
                    n_keys as i32,
                    (&one as *const f32).cast(),
                    (vc + kv_off) as *const std::ffi::c_void,
                    cudaDataType::CUDA_R_16F,
                    hd as i32,
                    0,
                    (p16 + (head0 * n * n_keys * 2) as u64) as *const std::ffi::c_void,
                    cudaDataType::CUDA_R_16F,
                    n_keys as i32,
                    (n * n_keys) as i64,
                    (&zero as *const f32).cast(),
                    (o32 + (head0 * hd * 4) as u64) as *mut std::ffi::c_void,
                    cudaDataType::CUDA_R_32F,
                    q_dim as i32,
                    hd as i64,
                    group as i32,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| err("attention values GEMM", e))?;
        }
        Ok(())
    }

    /// Prefill: the weight dequantized to f16 (or f32 for F32/BF16 weights) and one cuBLAS GEMM; against a
    /// quantized weight, the activations rounded as their 8-bit form first.
    pub(super) fn matmul_prefill(
        &self,
        w: &CudaWeight,
        x: &CudaSlice<f32>,
        n: usize,
        out: &mut CudaSlice<f32>,
        accumulate: bool,
    ) -> Result<()> {
        use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
        let (rows, k) = (w.rows, w.row_len);
        let fns = self.funcs.weight(w.ty, &w.name)?;
        let mut scratch = lock(&self.scratch);
        let wide = matches!(w.ty, GgmlType::F32 | GgmlType::BF16);
        let (a_ptr, b_ptr, ab_type) = if wide {
            let a = if w.ty == GgmlType::F32 {
                self.ptr(&w.data)
            } else {
                scratch.ensure_w32(&self.stream, rows * k)?;
                self.dequant(fns, w, rows, &scratch.w32, true)?;
                self.ptr(&scratch.w32)
            };
            (a, self.ptr(x), cudaDataType::CUDA_R_32F)
        } else {
            let a = if w.ty == GgmlType::F16 {
                self.ptr(&w.data)
            } else {
                scratch.ensure_w16(&self.stream, rows * k)?;
                self.dequant(fns, w, rows, &scratch.w16, false)?;
                self.ptr(&scratch.w16)
            };
            scratch.ensure_x16(&self.stream, n * k)?;
            // A quantized weight multiplies the 8-bit form of the activations, as in decoding and on the CPU (f16
            // activations against it differed from the CPU by up to 1.1 in a synth Q8_0 model's logits). One thread
            // an element either way; the 8-bit form's kernel counts 32-element chunks.
            let (convert, count) = if w.ty == GgmlType::F16 {
                (&self.funcs.to_f16, n * k)
            } else {
                (&self.funcs.to_f16_q8, n * k / 32)
            };
            self.launch_1d(
                convert,
                n * k,
                &[
                    Arg::Ptr(self.ptr(x)),
                    Arg::Ptr(self.ptr(&scratch.x16)),
                    Arg::Usize(count),
                ],
            )?;
            (a, self.ptr(&scratch.x16), cudaDataType::CUDA_R_16F)
        };
        let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0 });
        // Row-major out[n, rows] = x[n, k] · W[rows, k]ᵀ is column-major outᵀ[rows, n] = Wᵀ(op T of the
        // column-major [k, rows] view) · x(column-major [k, n]).
        // SAFETY: the pointers address buffers of at least rows*k, n*k and n*rows elements of the stated types
        // (checked by the caller and the ensure_* calls); alpha/beta are host floats as the default pointer
        // mode expects.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *self.blas.handle(),
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                rows as i32,
                n as i32,
                k as i32,
                (&alpha as *const f32).cast(),
                a_ptr as *const std::ffi::c_void,
                ab_type,
                k as i32,
                b_ptr as *const std::ffi::c_void,
                ab_type,
                k as i32,
                (&beta as *const f32).cast(),
                self.ptr(out) as *mut std::ffi::c_void,
                cudaDataType::CUDA_R_32F,
                rows as i32,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| err("cuBLAS GEMM", e))
    }

    /// Dequantizes the first `n_rows` rows of `w` into `dst` (f32 when `f32_out`, else f16).
    fn dequant<T>(
        &self,
        fns: &WeightFuncs,
        w: &CudaWeight,
        n_rows: usize,
        dst: &CudaSlice<T>,
        f32_out: bool,
    ) -> Result<()> {
        let per_row = if quant::cuda::is_float(w.ty) {
            w.row_len / 8
        } else {
            w.row_len / 32
        };
        let (o32, o16) = if f32_out {
            (self.ptr(dst), 0)
        } else {
            (0, self.ptr(dst))
        };
        self.launch_1d(
            &fns.dequant,
            n_rows * per_row,
            &[
                Arg::Ptr(self.ptr(&w.data)),
                Arg::Usize(w.row_bytes),
                Arg::I32(w.row_len as i32),
                Arg::Ptr(0),
                Arg::I32(n_rows as i32),
                Arg::F32(1.0),
                Arg::Ptr(o32),
                Arg::Ptr(o16),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_prompt_is_one_chunk() {
        let pos: Vec<u32> = (0..512).collect();
        assert_eq!(
            prompt_query_chunks(&pos, 32, PROMPT_ATTENTION_SCRATCH),
            vec![(0, 512, 512)]
        );
        // A prompt continuing a sequence sees the keys before it.
        let pos: Vec<u32> = (100..140).collect();
        assert_eq!(
            prompt_query_chunks(&pos, 8, PROMPT_ATTENTION_SCRATCH),
            vec![(0, 40, 140)]
        );
    }

    #[test]
    fn long_prompts_are_cut_within_the_cap_and_cover_every_row() {
        let pos: Vec<u32> = (0..8192).collect();
        let (heads, cap) = (32, PROMPT_ATTENTION_SCRATCH);
        let chunks = prompt_query_chunks(&pos, heads, cap);
        assert!(chunks.len() > 1, "{chunks:?}");
        let mut next = 0;
        for &(first, n, keys) in &chunks {
            assert_eq!(first, next, "rows in order, none skipped");
            assert!(n >= 1);
            assert_eq!(
                keys,
                pos[first + n - 1] as usize + 1,
                "keys up to the chunk's last position"
            );
            assert!(heads * n * keys * SCORE_BYTES <= cap, "chunk {first}+{n} over the cap");
            next = first + n;
        }
        assert_eq!(next, pos.len());
        // Early chunks see fewer keys, so they take more rows.
        assert!(chunks[0].1 > chunks[chunks.len() - 1].1);
    }

    #[test]
    fn a_row_over_the_cap_still_runs_alone() {
        let pos: Vec<u32> = (0..4).collect();
        assert_eq!(
            prompt_query_chunks(&pos, 1, 1),
            vec![(0, 1, 1), (1, 1, 2), (2, 1, 3), (3, 1, 4)]
        );
    }
}
