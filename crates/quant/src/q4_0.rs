//! q4_0: placeholder until its block, reference and SIMD kernels land.
use crate::{Kernels, SimdLevel};

pub fn kernels(_simd: SimdLevel) -> Option<Kernels> {
    None
}
