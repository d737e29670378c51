//! Register-tiled matrix products for prompt-sized batches: `out[t, r] = Σ_i w[r, i] * x[t, i]` for a block of
//! weight rows against every token of the batch.
//!
//! The per-pair dot products of [`crate::Kernels::vec_dot`] unpack every weight block once per token and reduce
//! every pair to a scalar per block. Here each thread unpacks its weight rows once per call into a format-neutral
//! panel and a microkernel keeps a tile of [`MR`] rows × [`NR`] tokens of 16-lane accumulators in registers.
//!
//! # Integer route (every quantized format)
//! A weight row becomes unsigned 8-bit codes `u`, an f32 scale per four elements `sw` and an f32 correction per
//! sixteen elements `mw`, so that the dequantized weight is exactly `w_i = sw[i / 4] * u_i + mw[i / 16]` (up to
//! the rounding of that expression): `u = q + 128, mw = -128 d` for Q8_0, `mw = -d * min` style terms for the
//! formats with mins, and so on (each format's `unpack_gemm_row` says how). The activations are converted to the
//! weight format's partner format exactly as the per-pair path does (so the integer values equal llama.cpp's) and
//! laid out the same way: signed codes `a`, a scale per four elements `sa`, and per sixteen elements
//! `ma = scale * Σ a`. Then
//!
//! `out = Σ_(4-lane l) sw_l * sa_l * (Σ_(4 elements) u * a) + Σ_(16-group g) mw_g * ma_g`
//!
//! The first sum is one `vpdpbusd` (u8 × i8 → i32, four products a lane) per 64 elements and pair, then a
//! convert, a multiply by `sa` and an FMA with `sw`; the second runs once per 256 elements.
//!
//! A row (of weights or of activations) is stored as `steps = ⌈k / 64⌉` chunks of 128 bytes, `[64 codes][16 f32
//! scales]` (zero past `k`), followed elsewhere by its `⌈k / 256⌉ * 16` corrections.
//!
//! This route sums in another order than the per-pair kernels (results agree to about `k * eps` relative, see the
//! tests), so a prompt taken in one batch and the same prompt decoded token by token differ in the last bits,
//! which 8-bit activation rounding in later layers can grow into differences of tenths in the logits.
//!
//! # Exact route (Q8_0, Q5_0, Q4_0 at AVX-512 VNNI)
//! The same weight panels, activations with exact integer offset terms, and a microkernel that reproduces the
//! per-pair kernel's summation order, so that every result is bit for bit its `vec_dot` ([`exact`]), which is
//! ggml's. Slower than the integer route (its one accumulator a pair is walked block after block); it keeps batched
//! prefill equal to decoding, and to llama.cpp's products, for the formats whose per-pair kernels allow it.
//!
//! # K-quant tiled route (Q2_K … Q6_K at AVX-512 VNNI, from 8 tokens; [`ktiled`])
//! ggml's own tiled order for the K-quants (exact integer sums per superblock, its float epilogue), which the engine
//! takes instead of the integer route so that prompts are llama.cpp's bit for bit. The integer route stays the
//! K-quants' plan where [`Gemm`] is asked directly (its tests, `examples/gemm_speed`).
//!
//! # Float route (F32, F16, BF16)
//! Weight rows are widened to f32 once and interleaved sixteen rows to a vector; the activations stay the f32 input
//! (as the per-pair path keeps them) and are broadcast element by element, so the microkernel is plain FMAs and
//! every lane is one output's sequential dot product (no horizontal sums, see [`float`]).

mod buf;
pub mod exact;
pub mod float;
mod int;
pub mod ktiled;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

pub use buf::Aligned;
pub use float::{float_tile_reference, FloatTileFn, InterleaveFn};
pub use int::{best as int_block_best, int_block_reference, int_tile_reference, IntBlockFn, IntTileFn};

use crate::{GgmlType, Kernels, SimdLevel};

/// Weight rows per register tile.
pub const MR: usize = 4;
/// Tokens per register tile.
pub const NR: usize = 4;
/// Elements per integer k-step (one 64-byte `vpdpbusd`).
pub const KSTEP: usize = 64;
/// Bytes per k-step of a panel row: 64 codes and 16 f32 scales.
pub const STEP_BYTES: usize = 128;
/// Elements per correction group.
pub const GROUP: usize = 16;
/// Elements covered by one 16-lane vector of corrections.
pub const GROUP_VEC: usize = 256;

/// Writes one weight row of `k` elements into an integer panel row: `steps(k)` chunks of `[64 u8 codes][16 f32
/// scales]` in `dst` (codes and scales past `k` zero) and `corrections(k)` f32 in `mw` (zero past `k / 16`).
pub type UnpackFn = fn(row: &[u8], k: usize, dst: &mut [u8], mw: &mut [f32]);
/// Lays out one activation row already converted to the partner format (`act_row`, `k` elements) the same way:
/// signed codes, per-4 scales, per-16 `scale * Σ codes`.
pub type PackActFn = fn(act_row: &[u8], k: usize, dst: &mut [u8], ma: &mut [f32]);

/// Integer k-steps of a row of `k` elements.
pub fn steps(k: usize) -> usize {
    k.div_ceil(KSTEP)
}

/// Bytes of an integer panel row of `k` elements.
pub fn panel_row_bytes(k: usize) -> usize {
    steps(k) * STEP_BYTES
}

/// Corrections (f32) per panel row of `k` elements: whole vectors of 16.
pub fn corrections(k: usize) -> usize {
    k.div_ceil(GROUP_VEC) * (GROUP_VEC / GROUP)
}

/// Writes `scale` into lane `lane` (0..16) of k-step `step` of a panel row.
#[inline]
pub fn put_scale(dst: &mut [u8], step: usize, lane: usize, scale: f32) {
    let at = step * STEP_BYTES + KSTEP + 4 * lane;
    dst[at..at + 4].copy_from_slice(&scale.to_ne_bytes());
}

/// The scale of element `i` of a panel row.
pub fn scale_of(row: &[u8], i: usize) -> f32 {
    let at = (i / KSTEP) * STEP_BYTES + KSTEP + 4 * ((i % KSTEP) / 4);
    f32::from_ne_bytes([row[at], row[at + 1], row[at + 2], row[at + 3]])
}

/// The code of element `i` of a panel row.
pub fn code_of(row: &[u8], i: usize) -> u8 {
    row[(i / KSTEP) * STEP_BYTES + i % KSTEP]
}

/// Sets the code of element `i` of a panel row.
#[inline]
pub fn put_code(dst: &mut [u8], i: usize, code: u8) {
    dst[(i / KSTEP) * STEP_BYTES + i % KSTEP] = code;
}

/// Zeroes the codes and scales of a panel row from element `from` (a multiple of 4) to its end.
pub fn clear_tail(dst: &mut [u8], from: usize) {
    let total = dst.len() / STEP_BYTES * KSTEP;
    for i in from..total {
        put_code(dst, i, 0);
    }
    for i in (from.div_ceil(4) * 4..total).step_by(4) {
        put_scale(dst, i / KSTEP, (i % KSTEP) / 4, 0.0);
    }
}

/// How one weight format goes through the GEMM.
#[derive(Clone, Copy)]
pub enum Route {
    /// Quantized: integer panel of the weights, activations in the partner format laid out alike.
    Int {
        unpack: UnpackFn,
        pack_act: PackActFn,
        tile: IntBlockFn,
    },
    /// Q8_0, Q5_0, Q4_0 with AVX-512 VNNI: bitwise the per-pair `vec_dot` (see [`exact`]), activations laid out
    /// by [`exact::pack_act`] with the format's code offset.
    Exact {
        unpack: UnpackFn,
        offset: u8,
        block: exact::ExactBlockFn,
    },
    /// Plain floats: weights widened to f32 and interleaved, f32 activations.
    Float {
        widen: fn(&[u8], &mut [f32]),
        interleave: InterleaveFn,
        tile: FloatTileFn,
    },
}

/// A GEMM plan for one weight format, row length and SIMD level.
#[derive(Clone, Copy)]
pub struct Gemm {
    pub route: Route,
    /// The per-pair kernels of the format (the activation converter is shared with them).
    pub kernels: Kernels,
    /// Elements per row.
    pub k: usize,
}

/// The integer route's unpacker and activation packer of `ty` at `simd` (lowered to what this CPU runs).
pub fn int_parts(ty: GgmlType, simd: SimdLevel) -> Option<(UnpackFn, PackActFn)> {
    let pack_q8_0: PackActFn = crate::q8_0::pack_gemm_act;
    let pack_q8_1: PackActFn = crate::q8_1::pack_gemm_act;
    let pack_q8_k: PackActFn = crate::q8_k::pack_gemm_act;
    Some(match ty {
        GgmlType::Q8_0 => (crate::q8_0::gemm_unpacker(simd), pack_q8_0),
        GgmlType::Q4_0 => (crate::q4_0::gemm_unpacker(simd), pack_q8_0),
        GgmlType::Q5_0 => (crate::q5_0::gemm_unpacker(simd), pack_q8_0),
        GgmlType::Q4_1 => (crate::q4_1::unpack_gemm_row, pack_q8_1),
        GgmlType::Q5_1 => (crate::q5_1::unpack_gemm_row, pack_q8_1),
        GgmlType::Q2_K => (crate::q2_k::unpack_gemm_row, pack_q8_k),
        GgmlType::Q3_K => (crate::q3_k::unpack_gemm_row, pack_q8_k),
        GgmlType::Q4_K => (crate::q4_k::gemm_unpacker(simd), pack_q8_k),
        GgmlType::Q5_K => (crate::q5_k::unpack_gemm_row, pack_q8_k),
        GgmlType::Q6_K => (crate::q6_k::gemm_unpacker(simd), pack_q8_k),
        _ => return None,
    })
}

impl Gemm {
    /// The plan for `kernels`' weight format with rows of `k` elements at `simd`, or `None` where this CPU has no
    /// microkernel worth running (below AVX-512 VNNI the per-pair path stays) or the format has no route.
    pub fn new(kernels: &Kernels, k: usize, simd: SimdLevel) -> Option<Self> {
        let simd = crate::legacy_common::usable(simd);
        let plan = Self::with_tiles(kernels, k, simd, int::best(simd)?, float::best(simd)?)?;
        // The legacy formats whose per-pair kernels the exact route reproduces bit for bit.
        let offset = match kernels.weight {
            GgmlType::Q8_0 => 128,
            GgmlType::Q5_0 => 16,
            GgmlType::Q4_0 => 8,
            _ => return Some(plan),
        };
        match (plan.route, exact::best(simd)) {
            (Route::Int { unpack, .. }, Some(block)) => Some(Self {
                route: Route::Exact { unpack, offset, block },
                ..plan
            }),
            _ => Some(plan),
        }
    }

    /// The plan with the given microkernels (tests pass the scalar references).
    pub fn with_tiles(
        kernels: &Kernels,
        k: usize,
        simd: SimdLevel,
        int_tile: IntBlockFn,
        float_tile: FloatTileFn,
    ) -> Option<Self> {
        if k == 0 {
            return None;
        }
        let route = match kernels.weight {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Route::Float {
                widen: kernels.dequantize_row,
                interleave: float::best_interleave(simd),
                tile: float_tile,
            },
            ty => {
                let (unpack, pack_act) = int_parts(ty, simd)?;
                Route::Int {
                    unpack,
                    pack_act,
                    tile: int_tile,
                }
            }
        };
        Some(Self {
            route,
            kernels: *kernels,
            k,
        })
    }

    /// Fewest tokens for which this plan beats the per-pair kernels (measured on the 2-core AVX-512 Xeon with
    /// `examples/gemm_speed single N`): unpacking a weight row costs about as much as running a few tokens
    /// against it, less for the legacy formats (whose per-pair kernels are slow) than for the K-quants and floats
    /// (whose per-pair tile kernels are fast).
    pub fn min_tokens(&self) -> usize {
        match (self.route, self.kernels.act) {
            (Route::Exact { .. }, _) | (Route::Int { .. }, GgmlType::Q8_0 | GgmlType::Q8_1) => 8,
            _ => 24,
        }
    }

    /// Weight rows per microkernel tile: a row block whose size is a multiple of it wastes nothing.
    pub fn tile_rows(&self) -> usize {
        match self.route {
            Route::Float { .. } => float::LANES,
            _ => MR,
        }
    }

    /// Bytes of one token in the activation panel (0 on the float route, which reads the input directly).
    pub fn act_token_bytes(&self) -> usize {
        match self.route {
            Route::Int { .. } => panel_row_bytes(self.k),
            Route::Exact { .. } => exact::act_row_bytes(self.k),
            Route::Float { .. } => 0,
        }
    }

    /// Whether the activations go through an [`ActPanel`] (the integer routes) rather than straight from the f32
    /// input.
    pub fn uses_act_panel(&self) -> bool {
        !matches!(self.route, Route::Float { .. })
    }

    /// Sizes `panel` for `n_tokens` tokens of this plan's layout.
    pub fn reset_acts(&self, panel: &mut ActPanel, n_tokens: usize) {
        match self.route {
            Route::Exact { .. } => panel.reset_layout(n_tokens, self.k, exact::act_row_bytes(self.k), 0),
            _ => panel.reset(n_tokens, self.k),
        }
    }
}

/// The activations of a batch laid out for the integer microkernel: [n_tokens] panel rows and corrections.
#[derive(Default)]
pub struct ActPanel {
    /// [n_tokens, panel_row_bytes(k)]
    rows: Aligned<u8>,
    /// [n_tokens, corrections(k)]
    corr: Aligned<f32>,
    n_tokens: usize,
    k: usize,
    row_bytes: usize,
    corr_len: usize,
}

/// One token's slot in an [`ActPanel`] that is being filled, for [`ActPanel::slots`].
pub struct ActSlot<'a> {
    pub row: &'a mut [u8],
    pub corr: &'a mut [f32],
}

impl ActPanel {
    /// Sizes the panel for `n_tokens` rows of `k` elements (keeping its allocation when it is big enough).
    pub fn reset(&mut self, n_tokens: usize, k: usize) {
        self.reset_layout(n_tokens, k, panel_row_bytes(k), corrections(k));
    }

    /// Sizes the panel for `n_tokens` rows of `k` elements laid out in `row_bytes` bytes and `corr_len`
    /// corrections each.
    pub fn reset_layout(&mut self, n_tokens: usize, k: usize, row_bytes: usize, corr_len: usize) {
        self.rows.resize(n_tokens * row_bytes);
        self.corr.resize(n_tokens * corr_len);
        self.n_tokens = n_tokens;
        self.k = k;
        self.row_bytes = row_bytes;
        self.corr_len = corr_len;
    }

    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// The slots of every token, to be filled (in parallel: each slot is a disjoint borrow).
    pub fn slots(&mut self) -> Vec<ActSlot<'_>> {
        let (rb, cb) = (self.row_bytes, self.corr_len);
        let n = self.n_tokens;
        let corr_rows: Vec<&mut [f32]> = if cb == 0 {
            (0..n).map(|_| <&mut [f32]>::default()).collect()
        } else {
            self.corr.as_mut_slice()[..n * cb].chunks_exact_mut(cb).collect()
        };
        self.rows.as_mut_slice()[..n * rb]
            .chunks_exact_mut(rb)
            .zip(corr_rows)
            .map(|(row, corr)| ActSlot { row, corr })
            .collect()
    }

    /// Raw writer over the token slots, shareable by the tasks of a thread pool that each fill other tokens.
    pub fn writer(&mut self) -> ActWriter<'_> {
        ActWriter {
            rows: self.rows.as_mut_slice().as_mut_ptr(),
            corr: self.corr.as_mut_slice().as_mut_ptr(),
            row_bytes: self.row_bytes,
            corr_len: self.corr_len,
            n_tokens: self.n_tokens,
            _panel: std::marker::PhantomData,
        }
    }
}

/// See [`ActPanel::writer`].
pub struct ActWriter<'a> {
    rows: *mut u8,
    corr: *mut f32,
    row_bytes: usize,
    corr_len: usize,
    n_tokens: usize,
    _panel: std::marker::PhantomData<&'a mut ActPanel>,
}
// SAFETY: the writer only hands out token slots through `slot`, whose contract makes concurrent slots disjoint.
unsafe impl Send for ActWriter<'_> {}
// SAFETY: as above.
unsafe impl Sync for ActWriter<'_> {}

impl ActWriter<'_> {
    /// Token `t`'s slot (`None` when `t` is out of range).
    ///
    /// # Safety
    /// No two live slots may be for the same token.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slot(&self, t: usize) -> Option<ActSlot<'_>> {
        if t >= self.n_tokens {
            return None;
        }
        // SAFETY: t < n_tokens, so both ranges lie inside the panel's buffers (sized by `reset`); the caller
        // keeps slots of one token unique, and the writer borrows the panel mutably for its whole life.
        unsafe {
            Some(ActSlot {
                row: std::slice::from_raw_parts_mut(self.rows.add(t * self.row_bytes), self.row_bytes),
                corr: std::slice::from_raw_parts_mut(self.corr.add(t * self.corr_len), self.corr_len),
            })
        }
    }
}

/// A thread's unpacked weight rows: [rows, panel_row_bytes(k)] codes and scales and [rows, corrections(k)]
/// corrections (integer route) or [⌈rows / 16⌉, k, 16] interleaved floats (float route, widened through `wide`,
/// [16, k]).
#[derive(Default)]
pub struct WeightPanel {
    rows: Aligned<u8>,
    corr: Aligned<f32>,
    floats: Aligned<f32>,
    wide: Aligned<f32>,
}

/// Where results go: `out[t * ld + r]`.
pub struct OutView {
    ptr: *mut f32,
    ld: usize,
    n_tokens: usize,
}
// SAFETY: writes go through `OutView::write_tile`, whose callers (the row blocks of one product) write disjoint
// elements (see `OutView::new`).
unsafe impl Send for OutView {}
// SAFETY: as above.
unsafe impl Sync for OutView {}

impl OutView {
    /// A view of `out` as [n_tokens, ld].
    ///
    /// # Safety
    /// `out` must hold `n_tokens * ld` floats and outlive the view; concurrent users must compute disjoint row
    /// ranges.
    pub unsafe fn new(out: *mut f32, ld: usize, n_tokens: usize) -> Self {
        Self { ptr: out, ld, n_tokens }
    }

    /// A view of a slice (single-threaded use).
    pub fn of(out: &mut [f32], ld: usize, n_tokens: usize) -> Option<Self> {
        (out.len() >= ld * n_tokens).then_some(Self {
            ptr: out.as_mut_ptr(),
            ld,
            n_tokens,
        })
    }

    /// Writes a tile's results `[t][r]` for tokens `t0..` and rows `r0..r1` (`r1 - r0 <= R`).
    fn write_tile<const R: usize, const T: usize>(&self, t0: usize, r0: usize, r1: usize, tile: &[[f32; R]; T]) {
        let n_rows = (r1 - r0).min(R);
        if r0 + n_rows > self.ld {
            return;
        }
        for (t, vals) in tile.iter().enumerate() {
            let tok = t0 + t;
            if tok >= self.n_tokens {
                break;
            }
            // SAFETY: tok < n_tokens and r0 + n_rows <= ld, inside the view (`new`'s contract); the rows are this
            // caller's alone.
            unsafe {
                std::ptr::copy_nonoverlapping(vals.as_ptr(), self.ptr.add(tok * self.ld + r0), n_rows);
            }
        }
    }

    /// Tokens in the view.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }
}

/// Errors of [`Gemm::rows`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GemmError {
    /// The weight bytes, the activations or the output are shorter than the shapes say.
    Size(&'static str),
    /// A thread's scratch panel was already in use (a re-entered call).
    Busy,
}

impl std::fmt::Display for GemmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Size(what) => write!(f, "gemm: {what} too short for the shape"),
            Self::Busy => write!(f, "gemm: a thread's scratch panel is already in use"),
        }
    }
}

impl std::error::Error for GemmError {}

/// The activations as the microkernels read them.
pub enum Acts<'a> {
    /// Integer route: a filled [`ActPanel`].
    Int(&'a ActPanel),
    /// Float route: the f32 input [n_tokens, k].
    Float { x: &'a [f32], n_tokens: usize },
}

impl Gemm {
    /// Converts token rows of `x` ([n, k] f32) into `panel` slot by slot: through the partner format in
    /// `scratch` (one row), then laid out. Single-threaded; [`Gemm::pack_token`] is the per-token step.
    pub fn pack_acts(&self, x: &[f32], n_tokens: usize, panel: &mut ActPanel, scratch: &mut Vec<u8>) {
        self.reset_acts(panel, n_tokens);
        for (t, slot) in panel.slots().into_iter().enumerate() {
            self.pack_token(&x[t * self.k..(t + 1) * self.k], scratch, slot);
        }
    }

    /// Lays out one token already converted to the partner format (`act_row`, by
    /// [`crate::Kernels::quantize_act_row`]) in its panel slot.
    pub fn pack_converted(&self, act_row: &[u8], slot: ActSlot<'_>) {
        match self.route {
            Route::Int { pack_act, .. } => pack_act(act_row, self.k, slot.row, slot.corr),
            Route::Exact { offset, .. } => exact::pack_act(act_row, self.k, offset, slot.row),
            Route::Float { .. } => {}
        }
    }

    /// Converts one token (`x`: k floats) into its panel slot, through the partner format in `scratch`.
    pub fn pack_token(&self, x: &[f32], scratch: &mut Vec<u8>, slot: ActSlot<'_>) {
        if !self.uses_act_panel() {
            return;
        }
        let bytes = self.kernels.act.row_bytes(self.k).unwrap_or(0);
        if scratch.len() < bytes {
            scratch.resize(bytes, 0);
        }
        (self.kernels.quantize_act_row)(&x[..self.k], &mut scratch[..bytes]);
        self.pack_converted(&scratch[..bytes], slot);
    }

    /// Computes rows `r0..r1` of the product for every token: `out[t, r] = Σ_i w[r, i] x[t, i]`, with `weights`
    /// the whole matrix (`row_bytes` a row) unpacked into `panel` first.
    pub fn rows(
        &self,
        weights: &[u8],
        row_bytes: usize,
        (r0, r1): (usize, usize),
        acts: &Acts<'_>,
        panel: &mut WeightPanel,
        out: &OutView,
    ) -> Result<(), GemmError> {
        if r1 <= r0 {
            return Ok(());
        }
        let need = self
            .kernels
            .weight
            .row_bytes(self.k)
            .ok_or(GemmError::Size("row length"))?;
        if weights.len() < r1 * row_bytes || row_bytes < need {
            return Err(GemmError::Size("weights"));
        }
        if r1 > out.ld {
            return Err(GemmError::Size("output"));
        }
        let n_rows = r1 - r0;
        let k = self.k;
        match (self.route, acts) {
            (Route::Int { unpack, tile, .. }, Acts::Int(a)) => {
                if a.k != k || a.row_bytes != panel_row_bytes(k) || a.n_tokens < out.n_tokens {
                    return Err(GemmError::Size("activations"));
                }
                let (rb, cb) = (panel_row_bytes(k), corrections(k));
                panel.rows.resize(n_rows * rb);
                panel.corr.resize(n_rows * cb);
                let (prow, pcorr) = (panel.rows.as_mut_slice(), panel.corr.as_mut_slice());
                for i in 0..n_rows {
                    let r = r0 + i;
                    unpack(
                        &weights[r * row_bytes..(r + 1) * row_bytes],
                        k,
                        &mut prow[i * rb..(i + 1) * rb],
                        &mut pcorr[i * cb..(i + 1) * cb],
                    );
                }
                let w = int::Rows {
                    bytes: &panel.rows.as_slice()[..n_rows * rb],
                    corr: &panel.corr.as_slice()[..n_rows * cb],
                    row_bytes: rb,
                    corr_len: cb,
                };
                let av = int::Rows {
                    bytes: &a.rows.as_slice()[..a.n_tokens * rb],
                    corr: &a.corr.as_slice()[..a.n_tokens * cb],
                    row_bytes: rb,
                    corr_len: cb,
                };
                tile(&w, &av, out.n_tokens, out, r0);
            }
            (Route::Exact { unpack, block, .. }, Acts::Int(a)) => {
                let arb = exact::act_row_bytes(k);
                if a.k != k || a.row_bytes != arb || a.n_tokens < out.n_tokens {
                    return Err(GemmError::Size("activations"));
                }
                let (rb, cb) = (panel_row_bytes(k), corrections(k));
                panel.rows.resize(n_rows * rb);
                panel.corr.resize(n_rows * cb);
                let (prow, pcorr) = (panel.rows.as_mut_slice(), panel.corr.as_mut_slice());
                for i in 0..n_rows {
                    let r = r0 + i;
                    unpack(
                        &weights[r * row_bytes..(r + 1) * row_bytes],
                        k,
                        &mut prow[i * rb..(i + 1) * rb],
                        &mut pcorr[i * cb..(i + 1) * cb],
                    );
                }
                block(
                    k,
                    &panel.rows.as_slice()[..n_rows * rb],
                    &a.rows.as_slice()[..a.n_tokens * arb],
                    out,
                    r0,
                );
            }
            (
                Route::Float {
                    widen,
                    interleave,
                    tile,
                },
                Acts::Float { x, n_tokens },
            ) => {
                if x.len() < n_tokens * k || *n_tokens < out.n_tokens {
                    return Err(GemmError::Size("activations"));
                }
                use float::LANES;
                let groups = n_rows.div_ceil(LANES);
                panel.floats.resize(groups * LANES * k);
                panel.wide.resize(LANES * k);
                let pf = panel.floats.as_mut_slice();
                let wide = panel.wide.as_mut_slice();
                // Sixteen rows at a time: widened row-major into `wide`, then interleaved into their group.
                for g in 0..groups {
                    let n = (n_rows - g * LANES).min(LANES);
                    for j in 0..n {
                        let r = r0 + g * LANES + j;
                        widen(
                            &weights[r * row_bytes..(r + 1) * row_bytes],
                            &mut wide[j * k..(j + 1) * k],
                        );
                    }
                    interleave(wide, k, n, k, &mut pf[g * LANES * k..(g + 1) * LANES * k]);
                }
                let w = &panel.floats.as_slice()[..groups * LANES * k];
                let av = float::Rows {
                    x: &x[..n_tokens * k],
                    ld: k,
                };
                let n_tokens = out.n_tokens;
                let mut res = [[0f32; float::FMR]; float::FNR];
                for t0 in (0..n_tokens).step_by(float::FNR) {
                    let ti = std::array::from_fn(|j| (t0 + j).min(n_tokens - 1));
                    for g0 in (0..groups).step_by(float::FGROUPS) {
                        let gn = (groups - g0).min(float::FGROUPS);
                        tile(k, &w[g0 * LANES * k..], gn, &av, ti, &mut res);
                        let (a, b) = (r0 + g0 * LANES, (r0 + (g0 + gn) * LANES).min(r1));
                        out.write_tile(t0, a, b, &res);
                    }
                }
            }
            _ => return Err(GemmError::Size("activations of the other route")),
        }
        Ok(())
    }
}

/// Writes one run of codes (a multiple of 16 long, starting at element `start`, a multiple of 16) with one scale
/// and one correction per 16 elements into a panel row (`dst`) and its corrections (`mw`).
#[inline]
pub fn put_run(dst: &mut [u8], mw: &mut [f32], start: usize, codes: &[u8], scale: f32, corr: f32) {
    let scale = scale.to_ne_bytes();
    let (mut i, mut rest) = (start, codes);
    while !rest.is_empty() {
        // The piece stays inside one k-step: it starts at i and ends at or before the step's end.
        let (step, at) = (i / KSTEP, i % KSTEP);
        let (piece, tail) = rest.split_at((KSTEP - at).min(rest.len()));
        rest = tail;
        let base = step * STEP_BYTES;
        dst[base + at..base + at + piece.len()].copy_from_slice(piece);
        let lanes = &mut dst[base + KSTEP + at..base + KSTEP + at + piece.len()];
        for lane in lanes.chunks_exact_mut(4) {
            lane.copy_from_slice(&scale);
        }
        i += piece.len();
    }
    mw[start / GROUP..(start + codes.len()) / GROUP].fill(corr);
}

/// Zeroes what lies past element `k` in a panel row and its corrections.
pub fn finish_row(dst: &mut [u8], mw: &mut [f32], k: usize) {
    clear_tail(dst, k);
    mw[k / GROUP..].fill(0.0);
}
