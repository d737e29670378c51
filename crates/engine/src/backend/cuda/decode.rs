//! The decode path (1..=8 tokens): matrix-vector kernels, and the fused ops that keep a decode step to a few
//! launches per layer (a captured graph replays every launch, each overlapping its predecessor's end): the norm
//! and 8-bit conversion of a product's input in one launch (or inside the product, for short float rows), Q/K/V
//! with RoPE and the cache store in one, products that add into the residual stream directly, and gate and up
//! with the activation in one.

use super::{err, lock, Arg, CudaBackend, CudaKv, CudaWeight, MATVEC_THREADS, MAX_DECODE_TOKENS};
use crate::backend::KvPrecision;
use crate::batch::Batch;
use crate::error::Result;
use crate::model::config::{Activation, RopeParams, RopeStyle};
use cudarc::driver::{CudaFunction, CudaSlice};

/// Up to three weights of one format and row length in one launch; mirrors `struct Segs` in matvec.cu.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Segs {
    pub w: [u64; 3],
    pub out: [u64; 3],
    pub bias: [u64; 3],
    pub rows: [i32; 3],
}
// SAFETY: plain old data with the C layout of the kernels' struct (u64 x 9, i32 x 3, padded to 8).
unsafe impl cudarc::driver::DeviceRepr for Segs {}

/// The cache side of a fused single-token Q/K/V product; mirrors `struct RopeArgs` in matvec.cu.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct RopeArgs {
    pub kc: u64,
    pub vc: u64,
    pub pos: u64,
    pub seq: u64,
    pub ff: u64,
    pub theta: f32,
    pub pos_scale: f32,
    pub head_dim: i32,
    pub n_kv_heads: i32,
    pub style: i32,
    pub n_ctx: i32,
    pub n_seqs: i32,
    pub layer: i32,
    pub kv_f16: i32,
    pub pad: i32,
}
// SAFETY: plain old data with the C layout of the kernels' struct (u64 x 5, f32 x 2, i32 x 8: 80 bytes).
unsafe impl cudarc::driver::DeviceRepr for RopeArgs {}

/// Where a product's activations are: f32 (float weights) or the 8-bit scratch (quantized weights).
#[derive(Clone, Copy)]
enum Acts {
    F32(u64),
    Q8 { aq: u64, am: u64 },
}

/// Longest float row whose single-token products normalize their input on the fly (each warp while its rows
/// stream, `dot2_fn`) instead of after a norm launch. Measured on an H100: smollm2-135m f16 went 1,369 -> 1,543
/// tok/s; with Llama-3-8B rows (K = 4096) it cost 2 % (155.0 -> 151.7: x and the norm weights read beside every
/// row). Quantized weights that take 8-bit activations take the norm launch, which also converts the row to 8 bits:
/// under dependent launch it overlaps its neighbours, and measured it beat every block normalizing and converting the
/// row in shared memory (smollm2 q8_0 1,323-1,351 -> 1,366-1,378) as well as every block only converting it
/// (1,355 -> 1,290). Short Q8_0 rows take f32 activations through the format's float view instead
/// (`FLOAT_VIEW_MAX`), and so normalize on the fly as float rows do.
const NORM_IN_KERNEL_MAX: usize = 1024;
// The fused Q/K/V product copies its norm weights into a shared array of TAIL_MAX_D floats (`matvec1nr`).
const _: () = assert!(NORM_IN_KERNEL_MAX <= super::layer_tail::TAIL_MAX_D);

/// Longest row whose single-token products of a quantized format with a float view (Q8_0:
/// `quant::cuda::float_view_suffix`) take f32 activations instead of 8-bit ones, like float weights: no conversion
/// launch before them, and for rows up to NORM_IN_KERNEL_MAX their input's norm inside the product. Longer rows
/// keep the integer dot products, whose bytes a lane streams are what counts there. Measured on an H100 (tg128,
/// synth smollm2-135m q8_0, 5 kernels a layer instead of 8): 2,120 -> 2,199 tok/s; greedy tokens against the CPU
/// part as early as with 8-bit activations (the random-weight preset's flat logits), and test-backend holds.
const FLOAT_VIEW_MAX: usize = 2048;

/// Largest weight (bytes) whose single-token products take the float view: a bigger one is bound by bandwidth,
/// where the integer path's wider loads stream faster than the one launch it saves (Gemma 3 270M's 178 MB Q8_0
/// logits product: 1,321 -> 1,246 tok/s through the float view).
const FLOAT_VIEW_MAX_BYTES: usize = 16 << 20;

/// Whether a product of `n` tokens over `ty` rows of length `k` takes f32 activations (else 8-bit ones; always,
/// for quantized weights, with `int8_activations`).
fn takes_f32(ty: gguf::GgmlType, k: usize, bytes: usize, n: usize, int8_activations: bool) -> bool {
    quant::cuda::is_float(ty)
        || (n == 1
            && !int8_activations
            && quant::cuda::float_view_suffix(ty).is_some()
            && k <= FLOAT_VIEW_MAX
            && bytes <= FLOAT_VIEW_MAX_BYTES)
}

impl CudaBackend {
    pub(super) fn takes_f32(&self, w: &CudaWeight, n: usize) -> bool {
        takes_f32(w.ty, w.row_len, w.rows * w.row_bytes, n, self.int8_activations)
    }

    /// Whether a single-token product of `w` takes its input's RMSNorm inside the kernel.
    pub(super) fn norm_in_kernel(&self, w: &CudaWeight) -> bool {
        self.takes_f32(w, 1) && w.row_len <= NORM_IN_KERNEL_MAX
    }

    /// RMSNorm of `n_rows` rows at `x` by the vector weight `w` into `out` (which may be `x`): a block a row.
    pub(super) fn norm_rows(&self, x: u64, w: &CudaWeight, eps: f32, n_rows: usize, out: u64) -> Result<()> {
        let wv = w.vector.as_ref().ok_or_else(|| err("norm weight", "not a vector"))?;
        if n_rows == 0 {
            return Ok(());
        }
        let threads = if w.row_len <= 256 { 32 } else { 256 };
        self.launch(
            &self.funcs.rms_norm,
            (n_rows as u32, 1, 1),
            threads,
            &[
                Arg::Ptr(x),
                Arg::Ptr(self.ptr(wv)),
                Arg::Ptr(out),
                Arg::I32(w.row_len as i32),
                Arg::F32(eps),
            ],
        )
    }
}

/// A float-only kernel of a weight's format (`WeightFuncs`), or the error naming the weight.
fn float_kernel<'a>(f: &'a Option<CudaFunction>, w: &CudaWeight) -> Result<&'a CudaFunction> {
    f.as_ref().ok_or_else(|| {
        err(
            &format!("f32-activation product of {}", w.name),
            "its format has no float view",
        )
    })
}

/// Warps per block of the norm-fused products.
const NORM_BLOCK_ROWS: usize = 8;

/// Most blocks per SM of the single-token products, whose warps walk their row pairs grid-stride: it caps only the
/// output projection (tens of thousands of rows), which gained from it on H100 (8B q8_0 256.3 -> 259.4, smollm2
/// q8_0 1,507 -> 1,554 tok/s; 8 blocks did as well, 2 or 3 were slower, capping the 4,096-row products too).
const MATVEC1_BLOCKS_PER_SM: usize = 12;

/// Shortest row (elements) for which a single-token product against f32 activations takes `matvec1w`, the kernel
/// capped at 4 blocks an SM (128 registers) instead of MATVEC1_MIN_BLOCKS. Measured on H100 (tg128, 2026-11-27):
/// every such product at 4 blocks gave 8B f16 (rows of 4,096 and 14,336) 173.3 -> 174.6 tok/s but cost smollm2 f16
/// (output head rows of 576) 0.7 % and qwen2.5-0.5b f16 (896) 1.1 %.
pub(super) const MATVEC1_WIDE_MIN_K: usize = 4096;

/// Rows a warp of the single-token products takes (both rows' loads in flight together): `matvec_two_rows` in
/// matvec.cu.
const MATVEC1_ROWS_PER_WARP: usize = 2;

impl CudaBackend {
    /// Blocks of MATVEC_THREADS for a single-token product over `rows` rows (MATVEC1_ROWS_PER_WARP a warp, at
    /// most MATVEC1_BLOCKS_PER_SM a multiprocessor: the warps walk the rest grid-stride).
    pub(super) fn matvec1_blocks(&self, rows: usize) -> usize {
        rows.div_ceil(MATVEC1_ROWS_PER_WARP * (MATVEC_THREADS / 32) as usize)
            .min(self.n_sms * MATVEC1_BLOCKS_PER_SM)
    }

    /// The segment table of up to three (weight, output, bias) triples, and their rows in all.
    pub(super) fn segs(&self, ws: &[(&CudaWeight, u64, u64)]) -> (Segs, usize) {
        let mut segs = Segs::default();
        for (i, &(w, out, bias)) in ws.iter().enumerate().take(3) {
            segs.w[i] = self.ptr(&w.data);
            segs.out[i] = out;
            segs.bias[i] = bias;
            segs.rows[i] = w.rows as i32;
        }
        (segs, ws.iter().take(3).map(|(w, _, _)| w.rows).sum())
    }

    /// Single-token product of up to three weights of one format with the RMSNorm of `x` done in each block.
    fn matvec_norm_segs(&self, ws: &[(&CudaWeight, u64, u64)], x: u64, norm: &CudaWeight, eps: f32) -> Result<()> {
        let w0 = ws[0].0;
        let nw = norm.vector.as_ref().ok_or_else(|| err("norm weight", "not a vector"))?;
        let fns = self.funcs.weight(w0.ty, &w0.name)?;
        let (segs, total) = self.segs(ws);
        self.launch(
            float_kernel(&fns.matvec1n, w0)?,
            (total.div_ceil(MATVEC1_ROWS_PER_WARP * NORM_BLOCK_ROWS) as u32, 1, 1),
            32 * NORM_BLOCK_ROWS as u32,
            &[
                Arg::Segs(segs),
                Arg::Usize(w0.row_bytes),
                Arg::I32(total as i32),
                Arg::I32(w0.row_len as i32),
                Arg::Ptr(x),
                Arg::Ptr(self.ptr(nw)),
                Arg::F32(eps),
                Arg::I32(0),
            ],
        )
    }

    /// Converts `n` rows of `k` activations at `x` to the 8-bit scratch; returns its pointers.
    fn quantize_acts(&self, x: u64, n: usize, k: usize) -> Result<Acts> {
        let mut scratch = lock(&self.scratch);
        if scratch.ensure_q8(&self.stream, n * k)? {
            lock(&self.graphs).clear();
        }
        let chunks = n * k / 32;
        let (aq, am) = (self.ptr(&scratch.aq), self.ptr(&scratch.am));
        self.launch(
            &self.funcs.quantize_q8,
            (chunks.div_ceil(8) as u32, 1, 1),
            256,
            &[
                Arg::Ptr(x),
                Arg::Ptr(aq),
                Arg::Ptr(am),
                Arg::I32(k as i32),
                Arg::I32(chunks as i32),
            ],
        )?;
        Ok(Acts::Q8 { aq, am })
    }

    /// RMSNorm of `n` rows into `xn`, also converted to 8 bits when `quantize` (one launch).
    fn norm_acts(&self, x: u64, norm: &CudaWeight, eps: f32, n: usize, xn: u64, quantize: bool) -> Result<Acts> {
        let k = norm.row_len;
        let w = norm.vector.as_ref().ok_or_else(|| err("norm weight", "not a vector"))?;
        let (aq, am) = if quantize {
            let mut scratch = lock(&self.scratch);
            if scratch.ensure_q8(&self.stream, n * k)? {
                lock(&self.graphs).clear();
            }
            (self.ptr(&scratch.aq), self.ptr(&scratch.am))
        } else {
            (0, 0)
        };
        // A block of 8 warps per 256 elements of each row (each block redoes the row's sum of squares).
        self.launch(
            &self.funcs.norm_quant,
            (n as u32, k.div_ceil(256) as u32, 1),
            256,
            &[
                Arg::Ptr(x),
                Arg::Ptr(self.ptr(w)),
                Arg::Ptr(xn),
                Arg::Ptr(aq),
                Arg::Ptr(am),
                Arg::I32(k as i32),
                Arg::F32(eps),
            ],
        )?;
        Ok(if quantize { Acts::Q8 { aq, am } } else { Acts::F32(xn) })
    }

    /// One matvec launch over up to three weights of the same format and row length.
    fn matvec_segs(&self, ws: &[(&CudaWeight, u64, u64)], acts: Acts, n: usize, accumulate: bool) -> Result<()> {
        let w0 = ws[0].0;
        let fns = self.funcs.weight(w0.ty, &w0.name)?;
        let f = match (n, acts) {
            (1, Acts::F32(_)) if w0.row_len >= MATVEC1_WIDE_MIN_K => float_kernel(&fns.matvec1w, w0)?,
            (1, Acts::F32(_)) if !quant::cuda::is_float(w0.ty) => float_kernel(&fns.matvec1f, w0)?,
            (1, _) => &fns.matvec1,
            _ => &fns.matvec8,
        };
        let (segs, total) = self.segs(ws);
        let blocks = if n == 1 {
            self.matvec1_blocks(total)
        } else {
            total.div_ceil((MATVEC_THREADS / 32) as usize)
        };
        let grid = (blocks as u32, 1, 1);
        let mut args = vec![
            Arg::Segs(segs),
            Arg::Usize(w0.row_bytes),
            Arg::I32(total as i32),
            Arg::I32(w0.row_len as i32),
        ];
        match acts {
            Acts::F32(x) => args.push(Arg::Ptr(x)),
            Acts::Q8 { aq, am } => args.extend([Arg::Ptr(aq), Arg::Ptr(am)]),
        }
        args.extend([Arg::I32(n as i32), Arg::I32(accumulate as i32)]);
        self.launch(f, grid, MATVEC_THREADS, &args)
    }

    /// The activations a weight's kernels read: `x` itself where they take f32 (`takes_f32`), else its 8-bit form
    /// (one launch).
    fn acts_for(&self, w: &CudaWeight, x: u64, n: usize) -> Result<Acts> {
        if self.takes_f32(w, n) {
            Ok(Acts::F32(x))
        } else {
            self.quantize_acts(x, n, w.row_len)
        }
    }

    pub(super) fn matmul_decode(
        &self,
        w: &CudaWeight,
        x: &CudaSlice<f32>,
        n: usize,
        out: &mut CudaSlice<f32>,
        accumulate: bool,
    ) -> Result<()> {
        let acts = self.acts_for(w, self.ptr(x), n)?;
        self.matvec_segs(&[(w, self.ptr(out), 0)], acts, n, accumulate)
    }

    /// Fused attention input for decode-sized batches; `None` when the shapes call for the plain ops.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attn_input_fused(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        eps: f32,
        n: usize,
        w: [&CudaWeight; 3],
        bias: [Option<&CudaWeight>; 3],
        xn: &mut CudaSlice<f32>,
        qkv: [&mut CudaSlice<f32>; 3],
    ) -> Result<bool> {
        let k = norm.row_len;
        let float = quant::cuda::is_float(w[0].ty);
        if n > MAX_DECODE_TOKENS
            || !k.is_multiple_of(32)
            || w.iter()
                .any(|wi| wi.row_len != k || quant::cuda::is_float(wi.ty) != float || wi.vector.is_some())
        {
            return Ok(false);
        }
        let bias_ptr = |b: Option<&CudaWeight>| b.and_then(|b| b.vector.as_ref()).map_or(0, |v| self.ptr(v));
        let outs: Vec<u64> = qkv.iter().map(|o| self.ptr(*o)).collect();
        let segs: Vec<(&CudaWeight, u64, u64)> = (0..3).map(|i| (w[i], outs[i], bias_ptr(bias[i]))).collect();
        let same_type = w.iter().all(|wi| wi.ty == w[0].ty);
        if n == 1 && same_type && self.norm_in_kernel(w[0]) {
            return self.matvec_norm_segs(&segs, self.ptr(x), norm, eps).map(|_| true);
        }
        let acts = self.norm_acts(self.ptr(x), norm, eps, n, self.ptr(xn), !float)?;
        if same_type {
            self.matvec_segs(&segs, acts, n, false)?;
        } else {
            for seg in &segs {
                self.matvec_segs(std::slice::from_ref(seg), acts, n, false)?;
            }
        }
        Ok(true)
    }

    /// Single-token Q/K/V products whose warps also apply RoPE and write K and V into the cache (one launch for
    /// what is otherwise the products and `rope_store`); false when the shapes call for the separate ops.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attn_input_rope_fused(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        eps: f32,
        n: usize,
        w: [&CudaWeight; 3],
        bias: [Option<&CudaWeight>; 3],
        xn: &mut CudaSlice<f32>,
        q: &mut CudaSlice<f32>,
        rope: &super::super::RopeStore<'_, CudaKv, CudaWeight>,
    ) -> Result<bool> {
        let k = norm.row_len;
        let (n_heads, n_kv_heads, head_dim) = rope.heads;
        let s = rope.kv.shape;
        let ty = w[0].ty;
        if n != 1
            || !k.is_multiple_of(32)
            || !head_dim.is_multiple_of(2)
            || w.iter().any(|wi| wi.ty != ty || wi.row_len != k || wi.vector.is_some())
            || w[0].rows != n_heads * head_dim
            || w[1].rows != n_kv_heads * head_dim
            || w[2].rows != n_kv_heads * head_dim
            || head_dim != s.head_dim
            || n_kv_heads != s.n_kv_heads
            || rope.layer >= s.n_layers
        {
            return Ok(false);
        }
        super::device::check_batch_fits(&s, rope.batch)?;
        let ff = match rope.freq_factors {
            Some(f) => self.ptr(f.vector.as_ref().ok_or_else(|| err("rope factors", "not a vector"))?),
            None => 0,
        };
        let bias_ptr = |b: Option<&CudaWeight>| b.and_then(|b| b.vector.as_ref()).map_or(0, |v| self.ptr(v));
        let q_ptr = self.ptr(q);
        // K's and V's products go straight to the cache: their output slots are unused.
        let segs: Vec<(&CudaWeight, u64, u64)> = (0..3).map(|i| (w[i], q_ptr, bias_ptr(bias[i]))).collect();
        let (segs, total) = self.segs(&segs);
        let meta = lock(&self.meta);
        let ra = RopeArgs {
            kc: self.ptr(&rope.kv.k),
            vc: self.ptr(&rope.kv.v),
            pos: self.ptr(&meta.pos),
            seq: self.ptr(&meta.seq),
            ff,
            theta: rope.params.theta,
            pos_scale: rope.params.position_scale,
            head_dim: head_dim as i32,
            n_kv_heads: n_kv_heads as i32,
            style: match rope.style {
                RopeStyle::Normal => 0,
                RopeStyle::Neox => 1,
            },
            n_ctx: s.n_ctx as i32,
            n_seqs: s.n_seqs as i32,
            layer: rope.layer as i32,
            kv_f16: (s.precision == KvPrecision::F16) as i32,
            pad: 0,
        };
        drop(meta);
        let fns = self.funcs.weight(ty, &w[0].name)?;
        let pairs = total / 2;
        if self.norm_in_kernel(w[0]) {
            let nw = norm.vector.as_ref().ok_or_else(|| err("norm weight", "not a vector"))?;
            self.launch(
                float_kernel(&fns.matvec1nr, w[0])?,
                (pairs.div_ceil(NORM_BLOCK_ROWS) as u32, 1, 1),
                32 * NORM_BLOCK_ROWS as u32,
                &[
                    Arg::Segs(segs),
                    Arg::Usize(w[0].row_bytes),
                    Arg::I32(total as i32),
                    Arg::I32(k as i32),
                    Arg::Ptr(self.ptr(x)),
                    Arg::Ptr(self.ptr(nw)),
                    Arg::F32(eps),
                    Arg::Rope(ra),
                ],
            )?;
            return Ok(true);
        }
        let acts = self.norm_acts(self.ptr(x), norm, eps, 1, self.ptr(xn), !quant::cuda::is_float(ty))?;
        let mut args = vec![
            Arg::Segs(segs),
            Arg::Usize(w[0].row_bytes),
            Arg::I32(total as i32),
            Arg::I32(k as i32),
        ];
        match acts {
            Acts::F32(p) => args.push(Arg::Ptr(p)),
            Acts::Q8 { aq, am } => args.extend([Arg::Ptr(aq), Arg::Ptr(am)]),
        }
        args.push(Arg::Rope(ra));
        let grid = (pairs.div_ceil((MATVEC_THREADS / 32) as usize) as u32, 1, 1);
        self.launch(&fns.matvec1r, grid, MATVEC_THREADS, &args)?;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn rope_store_fused(
        &self,
        q: &mut CudaSlice<f32>,
        k: &mut CudaSlice<f32>,
        v: &CudaSlice<f32>,
        kv: &mut CudaKv,
        layer: usize,
        batch: &Batch,
        heads: (usize, usize, usize),
        style: RopeStyle,
        params: RopeParams,
        freq_factors: Option<&CudaWeight>,
    ) -> Result<()> {
        let (n_heads, n_kv_heads, head_dim) = heads;
        let s = kv.shape;
        super::device::check_batch_fits(&s, batch)?;
        let n = batch.len();
        self.check_len("rope queries", q.len(), n * n_heads * head_dim)?;
        self.check_len("rope keys", k.len().min(v.len()), n * n_kv_heads * head_dim)?;
        if head_dim != s.head_dim || n_kv_heads != s.n_kv_heads {
            return Err(err(
                "rope_store",
                format!("{n_kv_heads} kv heads of {head_dim} vs the cache's {s:?}"),
            ));
        }
        let ff = match freq_factors {
            Some(w) => self.ptr(w.vector.as_ref().ok_or_else(|| err("rope factors", "not a vector"))?),
            None => 0,
        };
        let f = match s.precision {
            KvPrecision::F16 => &self.funcs.rope_store_f16,
            KvPrecision::F32 => &self.funcs.rope_store_f32,
        };
        let half = head_dim / 2;
        let per_token = n_heads * half + n_kv_heads * half + n_kv_heads * head_dim;
        let meta = lock(&self.meta);
        self.launch_1d(
            f,
            n * per_token,
            &[
                Arg::Ptr(self.ptr(q)),
                Arg::Ptr(self.ptr(k)),
                Arg::Ptr(self.ptr(v)),
                Arg::Ptr(self.ptr(&kv.k)),
                Arg::Ptr(self.ptr(&kv.v)),
                Arg::Ptr(self.ptr(&meta.pos)),
                Arg::Ptr(self.ptr(&meta.seq)),
                Arg::I32(n as i32),
                Arg::I32(n_heads as i32),
                Arg::I32(n_kv_heads as i32),
                Arg::I32(head_dim as i32),
                Arg::I32(match style {
                    RopeStyle::Normal => 0,
                    RopeStyle::Neox => 1,
                }),
                Arg::F32(params.theta),
                Arg::F32(params.position_scale),
                Arg::Ptr(ff),
                Arg::I32(s.n_ctx as i32),
                Arg::I32(s.n_seqs as i32),
                Arg::I32(layer as i32),
            ],
        )
    }

    /// Attention of a decode batch followed by a quantized output projection added into `x`: attention writes the
    /// 8-bit activations of its output itself (no conversion launch). `false` when the shapes call for the plain
    /// ops.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attention_output_fused(
        &self,
        q: &CudaSlice<f32>,
        kv: &CudaKv,
        batch: &Batch,
        p: crate::backend::AttentionParams,
        attn: &mut CudaSlice<f32>,
        wo: &CudaWeight,
        x: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<bool> {
        let n = batch.len();
        let k = p.n_heads * p.head_dim;
        if n == 0 || n > MAX_DECODE_TOKENS || self.takes_f32(wo, n) || wo.row_len != k || !p.head_dim.is_multiple_of(32)
        {
            return Ok(false);
        }
        self.check_len("attention output product", x.len().min(len), n * wo.rows)?;
        let (aq, am) = {
            let mut scratch = lock(&self.scratch);
            if scratch.ensure_q8(&self.stream, n * k)? {
                lock(&self.graphs).clear();
            }
            (self.ptr(&scratch.aq), self.ptr(&scratch.am))
        };
        self.attention_any(q, kv, batch, p, attn, Some((aq, am)))?;
        self.matvec_segs(&[(wo, self.ptr(x), 0)], Acts::Q8 { aq, am }, n, true)?;
        Ok(true)
    }

    /// `Backend::norm_matmul`. For one token, the norm (and the activations' conversion, for 8-bit activations) in
    /// one launch, then the product; else the norm and the product. The norm stays out of the product even where
    /// the weight's rows would take it (`norm_in_kernel`): over a vocabulary's rows every warp redoing it cost more
    /// than the launch it saves. Measured on H100 (tg128, against a gather, a norm and a conversion launch before
    /// the product): smollm2-135m f16 2,360 -> 2,372 tok/s, q8_0 2,316 -> 2,338, 8B q4_k 408.8 -> 410.5; with the
    /// norm inside the f16 product, 2,331 -> 2,324.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm_matmul_any(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        eps: f32,
        n: usize,
        w: &CudaWeight,
        xn: &mut CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        use crate::backend::Backend;
        let k = norm.row_len;
        self.check_len("output head input", x.len().min(xn.len()), n * k)?;
        self.check_len("output head output", out.len(), n * w.rows)?;
        if n == 1 && w.vector.is_none() && w.row_len == k && k.is_multiple_of(32) {
            let acts = self.norm_acts(self.ptr(x), norm, eps, n, self.ptr(xn), !self.takes_f32(w, n))?;
            return self.matvec_segs(&[(w, self.ptr(out), 0)], acts, n, false);
        }
        self.rms_norm(x, norm, eps, n, xn)?;
        self.matmul(w, xn, n, out)
    }

    /// Fused gated-FFN input for decode-sized batches; `None` when the shapes call for the plain ops.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ffn_input_fused(
        &self,
        x: &CudaSlice<f32>,
        norm: &CudaWeight,
        eps: f32,
        n: usize,
        gate_up: [&CudaWeight; 2],
        act: Activation,
        xn: &mut CudaSlice<f32>,
        h: &mut CudaSlice<f32>,
    ) -> Result<bool> {
        let [g, u] = gate_up;
        let k = norm.row_len;
        if n > MAX_DECODE_TOKENS
            || !k.is_multiple_of(32)
            || g.ty != u.ty
            || g.rows != u.rows
            || g.row_len != k
            || u.row_len != k
            || g.vector.is_some()
        {
            return Ok(false);
        }
        self.check_len("ffn output", h.len(), n * g.rows)?;
        let float = quant::cuda::is_float(g.ty);
        if n == 1 && self.norm_in_kernel(g) {
            let nw = norm.vector.as_ref().ok_or_else(|| err("norm weight", "not a vector"))?;
            let fns = self.funcs.weight(g.ty, &g.name)?;
            let (x, nw, h) = (self.ptr(x), self.ptr(nw), self.ptr(h));
            return self
                .glu_norm(float_kernel(&fns.glu1n, g)?, gate_up, x, None, (nw, eps), h, act)
                .map(|_| true);
        }
        let act = act_code(act);
        let acts = self.norm_acts(self.ptr(x), norm, eps, n, self.ptr(xn), !float)?;
        let fns = self.funcs.weight(g.ty, &g.name)?;
        let f = if n == 1 { &fns.glu1 } else { &fns.glu8 };
        let mut args = vec![
            Arg::Ptr(self.ptr(&g.data)),
            Arg::Ptr(self.ptr(&u.data)),
            Arg::Usize(g.row_bytes),
            Arg::I32(g.rows as i32),
            Arg::I32(k as i32),
        ];
        match acts {
            Acts::F32(xp) => args.push(Arg::Ptr(xp)),
            Acts::Q8 { aq, am } => args.extend([Arg::Ptr(aq), Arg::Ptr(am)]),
        }
        args.extend([Arg::Ptr(self.ptr(h)), Arg::I32(n as i32), Arg::I32(act)]);
        let grid = (g.rows.div_ceil((MATVEC_THREADS / 32) as usize) as u32, 1, 1);
        self.launch(f, grid, MATVEC_THREADS, &args)?;
        Ok(true)
    }

    /// One token's gated FFN input with its input's norm on the fly: `glu1n` on `x`, or (`acc`) the fused layer
    /// tail's `glu1na` on x + acc. `norm`: the norm weight's pointer and epsilon.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn glu_norm(
        &self,
        f: &CudaFunction,
        [g, u]: [&CudaWeight; 2],
        x: u64,
        acc: Option<u64>,
        (nw, eps): (u64, f32),
        h: u64,
        act: Activation,
    ) -> Result<()> {
        let mut args = vec![
            Arg::Ptr(self.ptr(&g.data)),
            Arg::Ptr(self.ptr(&u.data)),
            Arg::Usize(g.row_bytes),
            Arg::I32(g.rows as i32),
            Arg::I32(g.row_len as i32),
            Arg::Ptr(x),
        ];
        args.extend(acc.map(Arg::Ptr));
        args.extend([Arg::Ptr(nw), Arg::F32(eps), Arg::Ptr(h), Arg::I32(act_code(act))]);
        let blocks = g.rows.div_ceil(NORM_BLOCK_ROWS) as u32;
        self.launch(f, (blocks, 1, 1), 32 * NORM_BLOCK_ROWS as u32, &args)
    }
}

/// The kernels' activation argument.
fn act_code(act: Activation) -> i32 {
    match act {
        Activation::Silu => 0,
        Activation::GeluTanh => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf::GgmlType;

    #[test]
    fn short_q8_0_rows_of_one_token_take_f32_activations() {
        // Float weights always do; Q8_0 for one token and rows up to FLOAT_VIEW_MAX, unless told not to.
        let mb = 1 << 20;
        assert!(takes_f32(GgmlType::F16, 4096, 512 * mb, 8, true));
        assert!(takes_f32(GgmlType::Q8_0, 576, mb, 1, false));
        assert!(takes_f32(
            GgmlType::Q8_0,
            FLOAT_VIEW_MAX,
            FLOAT_VIEW_MAX_BYTES,
            1,
            false
        ));
        assert!(!takes_f32(GgmlType::Q8_0, FLOAT_VIEW_MAX + 32, mb, 1, false));
        // A weight bound by bandwidth (a big vocabulary's logits) keeps the integer path.
        assert!(!takes_f32(GgmlType::Q8_0, 576, FLOAT_VIEW_MAX_BYTES + 1, 1, false));
        assert!(!takes_f32(GgmlType::Q8_0, 576, mb, 2, false));
        assert!(!takes_f32(GgmlType::Q8_0, 576, mb, 1, true));
        // Formats without a float view keep 8-bit activations.
        assert!(!takes_f32(GgmlType::Q4_K, 576, mb, 1, false));
        assert!(!takes_f32(GgmlType::Q4_0, 576, mb, 1, false));
    }
}
