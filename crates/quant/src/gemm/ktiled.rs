//! The K-quant route in the order of ggml's tiled GEMM, which llama.cpp's CPU backend (build 11312 on) takes for
//! Q2_K … Q6_K weights at batches of 8 tokens or more: so that a prompt's products are bit for bit llama.cpp's.
//!
//! Per weight row, token and superblock of 256 elements, ggml (at AVX-512 VNNI) computes in exact integers
//!
//! `s1 = Σ_sub scale · (Σ_e code_e · a_e − bias · Σ_e a_e)`, `s2 = Σ_sub min · Σ_e a_e`
//!
//! (unsigned weight codes, the format's `bias` taking them back to signed values, `a` the Q8_K activation codes),
//! then in f32 `r = fnmadd(dmin, f32(s2), f32(s1) · d)` (`f32(s1) · d` alone without mins) and `acc = fma(r, d_a,
//! acc)` (its source writes a multiply and an add, which its compiler contracts), superblock after superblock from
//! `acc = 0`. The integer sums are exact whatever the method; the float steps are what this route keeps.
//!
//! Layouts. A weight row becomes, per superblock, [`W_BYTES`] bytes: `[256 u8 codes][16 i32 scales][16 i32
//! mins][f32 d, f32 dmin, pad]`. Activations go in bands of [`BAND`] tokens, per superblock [`A_BYTES`] bytes:
//! `[64 groups of four elements][16 tokens][4 i8 codes]`, then `[16 sums of 16 codes][16 tokens] i32`, then `[16
//! tokens] f32 d` (tokens past the batch are zero).

use super::OutView;
use crate::k_common::blocks;
pub use crate::k_common::QK_K;
use crate::q8_k::BlockQ8K;
use crate::{GgmlType, SimdLevel};

/// Tokens per activation band (the lanes of the kernel's vectors).
pub const BAND: usize = 16;
/// Bytes per superblock of an unpacked weight row.
pub const W_BYTES: usize = 448;
/// Bytes per superblock of an activation band.
pub const A_BYTES: usize = QK_K * BAND + 16 * BAND * 4 + BAND * 4;
/// Fewest tokens for which ggml takes its tiled GEMM.
pub const MIN_TOKENS: usize = 8;

const SCALES_AT: usize = QK_K;
const MINS_AT: usize = QK_K + 64;
const D_AT: usize = QK_K + 128;
const BSUMS_AT: usize = QK_K * BAND;
const AD_AT: usize = BSUMS_AT + 16 * BAND * 4;

/// One superblock of a weight row in integer form.
pub struct Superblock {
    /// Unsigned codes; the weight is `d · scale · (code − bias) − dmin · min`.
    pub codes: [u8; QK_K],
    pub scales: [i32; 16],
    pub mins: [i32; 16],
    pub d: f32,
    pub dmin: f32,
}

impl Default for Superblock {
    fn default() -> Self {
        Self {
            codes: [0; QK_K],
            scales: [0; 16],
            mins: [0; 16],
            d: 0.0,
            dmin: 0.0,
        }
    }
}

/// The integer form of a superblock with Q4_K's header (f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for
/// eight sub-blocks of 32), whose element `i` has code `q(i)`: Q4_K and Q5_K.
pub fn scale_min_superblock(
    d: [u8; 2],
    dmin: [u8; 2],
    packed: &[u8; 12],
    q: impl Fn(usize) -> u8,
    out: &mut Superblock,
) {
    let (scales, mins) = crate::k_common::unpack_scales_mins(packed);
    out.codes = std::array::from_fn(q);
    out.scales = std::array::from_fn(|s| scales.get(s).map_or(0, |&v| v as i32));
    out.mins = std::array::from_fn(|s| mins.get(s).map_or(0, |&v| v as i32));
    (out.d, out.dmin) = (crate::k_common::f16_le(d), crate::k_common::f16_le(dmin));
}

/// How a K-quant format enters the route (ggml's constants for it).
#[derive(Clone, Copy)]
pub struct KFormat {
    /// Elements per sub-block (one scale): 16 or 32.
    pub subblock: usize,
    pub has_min: bool,
    pub bias: i32,
    pub block_bytes: usize,
    pub unpack: fn(&[u8], &mut Superblock),
}

impl KFormat {
    pub fn of(ty: GgmlType) -> Option<Self> {
        let f = |subblock, has_min, bias, unpack| {
            Some(Self {
                subblock,
                has_min,
                bias,
                block_bytes: ty.block_bytes(),
                unpack,
            })
        };
        match ty {
            GgmlType::Q2_K => f(16, true, 0, crate::q2_k::tiled_superblock as fn(&[u8], &mut Superblock)),
            GgmlType::Q3_K => f(16, false, 4, crate::q3_k::tiled_superblock),
            GgmlType::Q4_K => f(32, true, 0, crate::q4_k::tiled_superblock),
            GgmlType::Q5_K => f(32, true, 0, crate::q5_k::tiled_superblock),
            GgmlType::Q6_K => f(16, false, 32, crate::q6_k::tiled_superblock),
            _ => None,
        }
    }

    fn n_sub(&self) -> usize {
        QK_K / self.subblock
    }
}

/// Bytes of an unpacked weight row of `k` elements.
pub fn weight_row_bytes(k: usize) -> usize {
    k.div_ceil(QK_K) * W_BYTES
}

/// Bytes of the activation bands of `n_tokens` rows of `k` elements.
pub fn act_bytes(k: usize, n_tokens: usize) -> usize {
    n_tokens.div_ceil(BAND) * k.div_ceil(QK_K) * A_BYTES
}

/// Unpacks one weight row (`k` elements, the file's bytes) into `dst` ([`weight_row_bytes`]).
pub fn unpack_row(fmt: &KFormat, row: &[u8], k: usize, dst: &mut [u8]) {
    let mut sb = Superblock::default();
    for (b, block) in row.chunks_exact(fmt.block_bytes).take(k / QK_K).enumerate() {
        (fmt.unpack)(block, &mut sb);
        let out = &mut dst[b * W_BYTES..(b + 1) * W_BYTES];
        out[..QK_K].copy_from_slice(&sb.codes);
        for s in 0..16 {
            out[SCALES_AT + 4 * s..SCALES_AT + 4 * s + 4].copy_from_slice(&sb.scales[s].to_le_bytes());
            out[MINS_AT + 4 * s..MINS_AT + 4 * s + 4].copy_from_slice(&sb.mins[s].to_le_bytes());
        }
        out[D_AT..D_AT + 4].copy_from_slice(&sb.d.to_le_bytes());
        out[D_AT + 4..D_AT + 8].copy_from_slice(&sb.dmin.to_le_bytes());
    }
}

/// Lays out token `t`'s Q8_K row (`k` elements) in its band (`bands`: [`act_bytes`], zeroed beforehand).
pub fn pack_act(act_row: &[u8], k: usize, t: usize, bands: &mut [u8]) {
    let nb = k / QK_K;
    let (band, lane) = (t / BAND, t % BAND);
    for (b, block) in blocks::<BlockQ8K>(act_row, nb).iter().enumerate() {
        let base = (band * nb + b) * A_BYTES;
        let dst = &mut bands[base..base + A_BYTES];
        for g in 0..QK_K / 4 {
            for e in 0..4 {
                dst[(g * BAND + lane) * 4 + e] = block.qs[4 * g + e] as u8;
            }
        }
        for (s, sum) in block.bsums.iter().enumerate() {
            let v = i16::from_le_bytes(*sum) as i32;
            let at = BSUMS_AT + (s * BAND + lane) * 4;
            dst[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        dst[AD_AT + 4 * lane..AD_AT + 4 * lane + 4].copy_from_slice(&block.d);
    }
}

/// Runs weight rows `w` ([n_rows, weight_row_bytes(k)]) against every band (`n_tokens` tokens), results to `out`'s
/// rows from `r0`.
pub type KTiledFn = fn(fmt: &KFormat, k: usize, w: &[u8], a: &[u8], n_tokens: usize, out: &OutView, r0: usize);

/// The kernel at `simd`: AVX-512 VNNI where the CPU has it, else the scalar reference.
pub fn best(simd: SimdLevel) -> KTiledFn {
    match crate::legacy_common::usable(simd) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => x86::run_vnni,
        _ => run_reference,
    }
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The reference: the arithmetic spelled out per (row, token, superblock).
pub fn run_reference(fmt: &KFormat, k: usize, w: &[u8], a: &[u8], n_tokens: usize, out: &OutView, r0: usize) {
    let nb = k / QK_K;
    let row_bytes = weight_row_bytes(k);
    let n_rows = w.len() / row_bytes;
    let ns = fmt.subblock / 16;
    for band in 0..n_tokens.div_ceil(BAND) {
        for r in 0..n_rows {
            let mut acc = [0f32; BAND];
            for b in 0..nb {
                let wb = &w[r * row_bytes + b * W_BYTES..][..W_BYTES];
                let ab = &a[(band * nb + b) * A_BYTES..][..A_BYTES];
                for (lane, acc) in acc.iter_mut().enumerate() {
                    let (mut s1, mut s2) = (0i32, 0i32);
                    for s in 0..fmt.n_sub() {
                        let mut raw = 0i32;
                        for e in s * fmt.subblock..(s + 1) * fmt.subblock {
                            let code = ab[((e / 4) * BAND + lane) * 4 + e % 4] as i8 as i32;
                            raw = raw.wrapping_add(wb[e] as i32 * code);
                        }
                        let bsum = (0..ns).fold(0i32, |t, u| {
                            t.wrapping_add(i32_at(ab, BSUMS_AT + ((s * ns + u) * BAND + lane) * 4))
                        });
                        let corr = raw.wrapping_sub(fmt.bias.wrapping_mul(bsum));
                        s1 = s1.wrapping_add(corr.wrapping_mul(i32_at(wb, SCALES_AT + 4 * s)));
                        s2 = s2.wrapping_add(bsum.wrapping_mul(i32_at(wb, MINS_AT + 4 * s)));
                    }
                    let mut res = s1 as f32 * f32_at(wb, D_AT);
                    if fmt.has_min {
                        res = (-f32_at(wb, D_AT + 4)).mul_add(s2 as f32, res);
                    }
                    *acc = res.mul_add(f32_at(ab, AD_AT + 4 * lane), *acc);
                }
            }
            for (lane, &v) in acc.iter().enumerate() {
                out.write_tile::<1, 1>(band * BAND + lane, r0 + r, r0 + r + 1, &[[v]]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// Weight rows per pass (as ggml's band pass): their integer sums stay in registers while a band's codes
    /// stream by.
    const ROWS: usize = 8;

    pub fn run_vnni(fmt: &KFormat, k: usize, w: &[u8], a: &[u8], n_tokens: usize, out: &OutView, r0: usize) {
        // SAFETY: `best` hands this out only where `usable` found AVX-512 F/BW/VL/VNNI.
        unsafe { run_vnni_inner(fmt, k, w, a, n_tokens, out, r0) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn run_vnni_inner(fmt: &KFormat, k: usize, w: &[u8], a: &[u8], n_tokens: usize, out: &OutView, r0: usize) {
        let nb = k / QK_K;
        let row_bytes = weight_row_bytes(k);
        let n_rows = w.len() / row_bytes;
        assert!(
            n_rows > 0 && a.len() >= act_bytes(k, n_tokens) && w.len() >= n_rows * row_bytes,
            "ktiled: panels too short"
        );
        let (n_sub, ns, groups) = (fmt.n_sub(), fmt.subblock / 16, fmt.subblock / 4);
        let bias = _mm512_set1_epi32(fmt.bias);
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        // SAFETY (every read below): offsets stay inside the superblock's W_BYTES / A_BYTES, whose panels the
        // assert above sized; rows past n_rows repeat the last row.
        let word = |p: *const u8, at: usize| unsafe { std::ptr::read_unaligned(p.add(at).cast::<i32>()) };
        let float = |p: *const u8, at: usize| unsafe { std::ptr::read_unaligned(p.add(at).cast::<f32>()) };
        let vec = |p: *const u8, at: usize| unsafe { _mm512_loadu_si512(p.add(at).cast()) };
        for band in 0..n_tokens.div_ceil(BAND) {
            for rb in (0..n_rows).step_by(ROWS) {
                let nr = (n_rows - rb).min(ROWS);
                let rows: [*const u8; ROWS] =
                    std::array::from_fn(|r| unsafe { wp.add((rb + r.min(nr - 1)) * row_bytes) });
                let mut acc = [_mm512_setzero_ps(); ROWS];
                for b in 0..nb {
                    let ab = unsafe { ap.add((band * nb + b) * A_BYTES) };
                    let wb: [*const u8; ROWS] = rows.map(|p| unsafe { p.add(b * W_BYTES) });
                    let (mut s1, mut s2) = ([_mm512_setzero_si512(); ROWS], [_mm512_setzero_si512(); ROWS]);
                    for s in 0..n_sub {
                        let mut raw = [_mm512_setzero_si512(); ROWS];
                        for g in s * groups..(s + 1) * groups {
                            let codes = vec(ab, g * BAND * 4);
                            for (r, raw) in raw.iter_mut().enumerate() {
                                *raw = _mm512_dpbusd_epi32(*raw, _mm512_set1_epi32(word(wb[r], 4 * g)), codes);
                            }
                        }
                        let mut bsum = vec(ab, BSUMS_AT + s * ns * BAND * 4);
                        for u in 1..ns {
                            bsum = _mm512_add_epi32(bsum, vec(ab, BSUMS_AT + (s * ns + u) * BAND * 4));
                        }
                        let corr = _mm512_mullo_epi32(bsum, bias);
                        for (r, s1) in s1.iter_mut().enumerate() {
                            let scale = _mm512_set1_epi32(word(wb[r], SCALES_AT + 4 * s));
                            *s1 = _mm512_add_epi32(*s1, _mm512_mullo_epi32(_mm512_sub_epi32(raw[r], corr), scale));
                        }
                        if fmt.has_min {
                            for (r, s2) in s2.iter_mut().enumerate() {
                                let min = _mm512_set1_epi32(word(wb[r], MINS_AT + 4 * s));
                                *s2 = _mm512_add_epi32(*s2, _mm512_mullo_epi32(bsum, min));
                            }
                        }
                    }
                    let d_a = unsafe { _mm512_loadu_ps(ab.add(AD_AT).cast()) };
                    for r in 0..ROWS {
                        let mut res = _mm512_mul_ps(_mm512_cvtepi32_ps(s1[r]), _mm512_set1_ps(float(wb[r], D_AT)));
                        if fmt.has_min {
                            let dmin = _mm512_set1_ps(float(wb[r], D_AT + 4));
                            res = _mm512_fnmadd_ps(dmin, _mm512_cvtepi32_ps(s2[r]), res);
                        }
                        acc[r] = _mm512_fmadd_ps(res, d_a, acc[r]);
                    }
                }
                let mut lanes = [[0f32; BAND]; ROWS];
                for (l, v) in lanes.iter_mut().zip(acc) {
                    // SAFETY: 16 writable floats.
                    unsafe { _mm512_storeu_ps(l.as_mut_ptr(), v) };
                }
                let tile: [[f32; ROWS]; BAND] = std::array::from_fn(|t| std::array::from_fn(|r| lanes[r][t]));
                out.write_tile(band * BAND, r0 + rb, r0 + rb + nr, &tile);
            }
        }
    }
}
