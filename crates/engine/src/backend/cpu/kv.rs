//! The CPU KV cache: preallocated, several sequences, F16 or F32.

use crate::backend::{KvPrecision, KvShape};
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use half::f16;
use half::slice::HalfFloatSliceExt;

pub enum KvData {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

/// K and V, each [n_layers, n_seqs, n_kv_heads, n_ctx, head_dim].
pub struct CpuKv {
    pub shape: KvShape,
    pub k: KvData,
    pub v: KvData,
}

impl CpuKv {
    pub fn new(shape: KvShape) -> Self {
        let n = shape.n_layers * shape.n_seqs * shape.n_kv_heads * shape.n_ctx * shape.head_dim;
        let make = || match shape.precision {
            KvPrecision::F16 => KvData::F16(vec![f16::ZERO; n]),
            KvPrecision::F32 => KvData::F32(vec![0.0; n]),
        };
        Self {
            shape,
            k: make(),
            v: make(),
        }
    }

    /// Element offset of (layer, seq, head, pos, 0).
    pub fn offset(&self, layer: usize, seq: usize, head: usize, pos: usize) -> usize {
        let s = &self.shape;
        (((layer * s.n_seqs + seq) * s.n_kv_heads + head) * s.n_ctx + pos) * s.head_dim
    }

    /// Writes k, v: [n_tokens, n_kv_heads * head_dim] at each token's (sequence, position).
    pub fn store(&mut self, layer: usize, k: &[f32], v: &[f32], batch: &Batch) -> Result<()> {
        let (hd, nh) = (self.shape.head_dim, self.shape.n_kv_heads);
        for t in 0..batch.len() {
            let (seq, pos) = (batch.seq_ids[t] as usize, batch.positions[t] as usize);
            if seq >= self.shape.n_seqs {
                return Err(EngineError::BadSequence {
                    seq: seq as u32,
                    n_seqs: self.shape.n_seqs as u32,
                });
            }
            if pos >= self.shape.n_ctx {
                return Err(EngineError::ContextFull {
                    seq: seq as u32,
                    pos: pos as u32,
                    n_ctx: self.shape.n_ctx as u32,
                });
            }
            for h in 0..nh {
                let at = self.offset(layer, seq, h, pos);
                let src = t * nh * hd + h * hd;
                write_row(&mut self.k, at, &k[src..src + hd]);
                write_row(&mut self.v, at, &v[src..src + hd]);
            }
        }
        Ok(())
    }

    /// Copies positions [from, from + n) of sequence `src` over sequence `dst`, every layer and head.
    pub fn copy_seq(&mut self, src: usize, dst: usize, from: usize, n: usize) -> Result<()> {
        let s = self.shape;
        for seq in [src, dst] {
            if seq >= s.n_seqs {
                return Err(EngineError::BadSequence {
                    seq: seq as u32,
                    n_seqs: s.n_seqs as u32,
                });
            }
        }
        if from + n > s.n_ctx {
            return Err(EngineError::ContextFull {
                seq: dst as u32,
                pos: (from + n) as u32,
                n_ctx: s.n_ctx as u32,
            });
        }
        if src == dst || n == 0 {
            return Ok(());
        }
        for layer in 0..s.n_layers {
            for h in 0..s.n_kv_heads {
                let a = self.offset(layer, src, h, from);
                let b = self.offset(layer, dst, h, from);
                let len = n * s.head_dim;
                for data in [&mut self.k, &mut self.v] {
                    match data {
                        KvData::F16(d) => d.copy_within(a..a + len, b),
                        KvData::F32(d) => d.copy_within(a..a + len, b),
                    }
                }
            }
        }
        Ok(())
    }
}

fn write_row(data: &mut KvData, at: usize, src: &[f32]) {
    match data {
        KvData::F16(d) => d[at..at + src.len()].convert_from_f32_slice(src),
        KvData::F32(d) => d[at..at + src.len()].copy_from_slice(src),
    }
}
