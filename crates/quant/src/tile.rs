//! Tile kernels for prompt-sized matrix products: one weight row against four consecutive activation rows.
//!
//! [`crate::Kernels::vec_dot`] unpacks every weight block once per activation row; the tile kernels unpack (or
//! widen) it once and keep four accumulators, one per activation row. Each format's reference is four calls of
//! its scalar `vec_dot` ([`x4_by_rows`]); the SIMD versions sum the same terms in another order.

use crate::legacy_common::DotFn;

/// [`crate::Kernels::vec_dot_x4`]'s type: `out[t] = vec_dot(n, weight_row, act row t)` for the four activation
/// rows at `act_rows[t * act_row_bytes..]`.
pub type DotX4Fn = fn(n: usize, weight_row: &[u8], act_rows: &[u8], act_row_bytes: usize, out: &mut [f32; 4]);

/// The four activation rows of a tile.
///
/// # Panics
/// When `act_rows` is shorter than four rows of `act_row_bytes` (a caller bug).
pub fn split_rows4(act_rows: &[u8], act_row_bytes: usize) -> [&[u8]; 4] {
    assert!(
        act_rows.len() >= 4 * act_row_bytes,
        "{} bytes hold fewer than 4 activation rows of {act_row_bytes} bytes",
        act_rows.len()
    );
    std::array::from_fn(|t| &act_rows[t * act_row_bytes..(t + 1) * act_row_bytes])
}

/// Four calls of `vec_dot`: the reference of every tile kernel (and the fallback where a format has none).
pub fn x4_by_rows(
    vec_dot: DotFn,
    n: usize,
    weight_row: &[u8],
    act_rows: &[u8],
    act_row_bytes: usize,
    out: &mut [f32; 4],
) {
    for (o, act_row) in out.iter_mut().zip(split_rows4(act_rows, act_row_bytes)) {
        *o = vec_dot(n, weight_row, act_row);
    }
}
