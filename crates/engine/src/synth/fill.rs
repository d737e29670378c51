//! Random tensor contents: a seeded xoshiro256++ stream, a quantile table of N(0, σ) and the block layouts of
//! the quantized formats (so that each block's scales can be pinned to a known value).

use gguf::GgmlType;
use half::f16;

/// Standard deviation of the F16/F32 random weights.
pub const WEIGHT_STD: f64 = 0.02;
/// The value every quantized block's `d` (and `dmin`, where the format has one) is set to.
pub const BLOCK_SCALE: f32 = 0.0008;

/// Entries of the normal quantile table: one random `u16` picks one.
const N_QUANTILES: usize = 1 << 16;

/// xoshiro256++ (Blackman & Vigna), seeded through splitmix64.
pub struct Xoshiro256 {
    s: [u64; 4],
}

/// One step of splitmix64: advances `state` and returns a well-mixed 64-bit value.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Xoshiro256 {
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut state = seed;
        let s = [
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ];
        Self { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3]))
            .rotate_left(23)
            .wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Fills `out` with random bytes.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        let mut words = out.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        if !tail.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            tail.copy_from_slice(&bytes[..tail.len()]);
        }
    }
}

/// The seed of one chunk of one tensor: independent of how chunks are spread over threads.
pub fn chunk_seed(seed: u64, tensor_index: usize, chunk_index: usize) -> u64 {
    let mut state = seed;
    let base = splitmix64(&mut state);
    let mut state = base ^ (tensor_index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mixed = splitmix64(&mut state);
    let mut state = mixed ^ (chunk_index as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7);
    splitmix64(&mut state)
}

/// The standard normal quantile function Φ⁻¹(p) for 0 < p < 1 (Acklam's rational approximation, relative
/// error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - P_LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// N(0, [`WEIGHT_STD`]) as 65,536 equally likely values (the quantiles at (i + ½) / 65,536), so that one random
/// `u16` draws one normal value.
pub struct NormalTable {
    /// [N_QUANTILES] f16 bit patterns.
    f16_bits: Vec<u16>,
    /// [N_QUANTILES] the same values as f32.
    f32_values: Vec<f32>,
}

impl NormalTable {
    pub fn new() -> Self {
        let f32_values: Vec<f32> = (0..N_QUANTILES)
            .map(|i| {
                let p = (i as f64 + 0.5) / N_QUANTILES as f64;
                (normal_quantile(p) * WEIGHT_STD) as f32
            })
            .collect();
        let f16_bits = f32_values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
        Self { f16_bits, f32_values }
    }

    /// All values of the table, as f32.
    #[cfg(test)]
    pub fn values(&self) -> &[f32] {
        &self.f32_values
    }
}

impl Default for NormalTable {
    fn default() -> Self {
        Self::new()
    }
}

/// What a tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// F32 ones (norm weights).
    Ones,
    /// N(0, σ) in F16 or F32.
    Normal,
    /// Random bytes in the blocks of a quantized type, every block scale set to [`BLOCK_SCALE`].
    RandomBlocks,
}

/// Byte offsets of the f16 scales (`d`, then `dmin` where present) inside one block of `ty`.
pub fn block_scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        // f16 d, then the quants (Q4_0: 16 qs; Q5_0: 4 qh + 16 qs; Q8_0: 32 i8).
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        // f16 d, f16 m (Q4_1 / Q5_1), f16 d, f16 s (Q8_1).
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 => &[0, 2],
        // Q4_K / Q5_K: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, then qh (Q5_K) and qs.
        GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        // Q2_K: 16 scales, 64 qs, f16 d, f16 dmin at the end.
        GgmlType::Q2_K => &[80, 82],
        // Q3_K: 32 hmask, 64 qs, 12 scales, f16 d at the end.
        GgmlType::Q3_K => &[108],
        // Q6_K: 128 ql, 64 qh, 16 i8 scales, f16 d at the end.
        GgmlType::Q6_K => &[208],
        // Q8_K's d is an f32 and it is never a weight type; plain floats have no blocks.
        GgmlType::Q8_K | GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => &[],
    }
}

/// Fills `out` (a whole number of `ty` elements or blocks) with `fill`, drawing from `rng`.
pub fn fill_chunk(fill: Fill, ty: GgmlType, table: &NormalTable, rng: &mut Xoshiro256, out: &mut [u8]) {
    match (fill, ty) {
        (Fill::Ones, GgmlType::F32) => {
            for value in out.chunks_exact_mut(4) {
                value.copy_from_slice(&1.0f32.to_le_bytes());
            }
        }
        (Fill::Ones, _) => {
            let one = f16::from_f32(1.0).to_bits().to_le_bytes();
            for value in out.chunks_exact_mut(2) {
                value.copy_from_slice(&one);
            }
        }
        (Fill::Normal, GgmlType::F32) => {
            // [n, 4 bytes]: one u64 draws four values.
            for quad in out.chunks_mut(16) {
                let mut word = rng.next_u64();
                for value in quad.chunks_exact_mut(4) {
                    let v = table.f32_values[(word & 0xFFFF) as usize];
                    value.copy_from_slice(&v.to_le_bytes());
                    word >>= 16;
                }
            }
        }
        (Fill::Normal, _) => {
            // [n, 2 bytes] f16: one u64 draws four values.
            for quad in out.chunks_mut(8) {
                let mut word = rng.next_u64();
                for value in quad.chunks_exact_mut(2) {
                    let bits = table.f16_bits[(word & 0xFFFF) as usize];
                    value.copy_from_slice(&bits.to_le_bytes());
                    word >>= 16;
                }
            }
        }
        (Fill::RandomBlocks, _) => {
            rng.fill_bytes(out);
            let scale = f16::from_f32(BLOCK_SCALE).to_bits().to_le_bytes();
            let offsets = block_scale_offsets(ty);
            for block in out.chunks_exact_mut(ty.block_bytes()) {
                for &at in offsets {
                    block[at..at + 2].copy_from_slice(&scale);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_known_normal_values() {
        // Textbook values of Φ⁻¹.
        for (p, expected) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.025, -1.959_963_984_540_054),
            (0.841_344_746_068_543, 1.0),
            (0.001, -3.090_232_306_167_813),
            (0.999_968_328_758_166_9, 4.0),
        ] {
            let got = normal_quantile(p);
            assert!((got - expected).abs() < 1e-7, "Φ⁻¹({p}) = {got}, expected {expected}");
        }
    }

    #[test]
    fn normal_table_has_the_asked_moments() {
        let table = NormalTable::new();
        let n = table.values().len() as f64;
        let mean = table.values().iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = table.values().iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-6, "mean {mean}");
        // The table stops at the (½/65536) quantile, which trims a little of the variance.
        let std = var.sqrt();
        assert!((std - WEIGHT_STD).abs() < WEIGHT_STD * 0.005, "std {std}");
        // Sorted ascending, and the f16 copy agrees with the f32 one to f16 precision.
        assert!(table.values().windows(2).all(|w| w[0] <= w[1]));
        for (&bits, &v) in table.f16_bits.iter().zip(table.values()).step_by(997) {
            let back = f16::from_bits(bits).to_f32();
            assert!((back - v).abs() <= v.abs() / 1024.0 + 1e-7, "{back} vs {v}");
        }
    }

    #[test]
    fn xoshiro_is_deterministic_and_spreads_bytes() {
        let mut a = Xoshiro256::seed_from_u64(7);
        let mut b = Xoshiro256::seed_from_u64(7);
        let mut c = Xoshiro256::seed_from_u64(8);
        let (mut buf_a, mut buf_b, mut buf_c) = (vec![0u8; 4099], vec![0u8; 4099], vec![0u8; 4099]);
        a.fill_bytes(&mut buf_a);
        b.fill_bytes(&mut buf_b);
        c.fill_bytes(&mut buf_c);
        assert_eq!(buf_a, buf_b);
        assert_ne!(buf_a, buf_c);
        let mut counts = [0u32; 256];
        let mut big = vec![0u8; 1 << 20];
        a.fill_bytes(&mut big);
        for &byte in &big {
            counts[byte as usize] += 1;
        }
        // 4096 expected per value; a fair generator stays well within ±10 %.
        assert!(counts.iter().all(|&n| (3686..=4506).contains(&n)), "{counts:?}");
    }

    #[test]
    fn chunk_seeds_differ() {
        let seeds = [
            chunk_seed(1, 0, 0),
            chunk_seed(1, 0, 1),
            chunk_seed(1, 1, 0),
            chunk_seed(2, 0, 0),
        ];
        for i in 0..seeds.len() {
            for j in i + 1..seeds.len() {
                assert_ne!(seeds[i], seeds[j]);
            }
        }
    }
}
