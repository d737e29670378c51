//! q8_1: placeholder until its block and quantizer land.

pub fn dequantize_row_scalar(_src: &[u8], _dst: &mut [f32]) {}
