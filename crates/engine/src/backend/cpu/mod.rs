//! The CPU backend: weights read in place from the mmapped GGUF, kernels chosen once from the CPU's features,
//! work split over a private thread pool.

mod attention;
mod kv;
mod lanes16;
mod matmul;
mod ops;
mod pool;
mod vec_ops;

pub use kv::CpuKv;

use super::{AttentionParams, Backend, KvShape, WeightSource};
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use crate::model::config::{Activation, RopeParams, RopeStyle};
use gguf::GgmlType;
use quant::{Kernels, SimdLevel};
use std::sync::Mutex;

/// Settings of the CPU backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuConfig {
    /// Worker threads (0 = one per physical core as the OS reports logical CPUs).
    pub n_threads: usize,
    /// Kernel level; `None` = the best this CPU has.
    pub simd: Option<SimdLevel>,
}

/// A weight in its GGUF format, read from the mapped file.
pub struct CpuWeight {
    src: WeightSource,
    ty: GgmlType,
    /// Number of rows (1 for vectors).
    rows: usize,
    /// Elements per row.
    row_len: usize,
    /// Row bytes in the storage format.
    row_bytes: usize,
    kernels: Option<Kernels>,
    /// Vectors (norm weights, biases, rope factors) dequantized once: [row_len]
    vector: Vec<f32>,
}

impl CpuWeight {
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn row_len(&self) -> usize {
        self.row_len
    }
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    fn bytes(&self) -> &[u8] {
        self.src.bytes()
    }
}

pub struct CpuBackend {
    /// The forward pass's thread pool (the caller works too; helpers spin between ops).
    work: pool::WorkPool,
    n_threads: usize,
    simd: SimdLevel,
    /// Activations converted to a weight's partner format: [n_tokens, act_row_bytes]
    act_scratch: Mutex<Vec<u8>>,
}

impl CpuBackend {
    pub fn new(cfg: CpuConfig) -> Result<Self> {
        let n_threads = if cfg.n_threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            cfg.n_threads
        };
        if n_threads > 1024 {
            return Err(EngineError::BadSetting {
                name: "threads",
                value: n_threads.to_string(),
                reason: "at most 1024".into(),
            });
        }
        let detected = SimdLevel::detect();
        let simd = match cfg.simd {
            Some(s) if s > detected => {
                return Err(EngineError::BadSetting {
                    name: "simd",
                    value: s.name().into(),
                    reason: format!("this CPU supports up to {}", detected.name()),
                })
            }
            Some(s) => s,
            None => detected,
        };
        let work = pool::WorkPool::new(n_threads).map_err(|e| EngineError::BadSetting {
            name: "threads",
            value: n_threads.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            work,
            n_threads,
            simd,
            act_scratch: Mutex::new(Vec::new()),
        })
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(offset, piece)` over pieces of `x` (whole multiples of `unit` elements, `offset` the first
    /// element's index), split over the pool when `x` is prompt-sized, else over all of `x` on this thread. For
    /// row-wise and element-wise ops, whose results do not depend on the split.
    fn split(&self, x: &mut [f32], unit: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
        const MIN_PIECE: usize = 16 * 1024;
        let unit = unit.max(1);
        if x.len() < 2 * MIN_PIECE || self.n_threads < 2 {
            return f(0, x);
        }
        let per = x.len().div_ceil(self.n_threads * 2).next_multiple_of(unit);
        let pieces: Vec<Mutex<&mut [f32]>> = x.chunks_mut(per).map(Mutex::new).collect();
        self.work.run(pieces.len(), &|i| {
            let mut piece = pieces[i].lock().unwrap_or_else(|e| e.into_inner());
            f(i * per, &mut piece);
        });
    }

    pub fn simd(&self) -> SimdLevel {
        self.simd
    }
}

/// The CPU model name from /proc/cpuinfo, or the architecture where that is unavailable.
pub fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

impl Backend for CpuBackend {
    type Weight = CpuWeight;
    type Buf = Vec<f32>;
    type Kv = CpuKv;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_info(&self) -> String {
        format!(
            "{} ({} threads, {})",
            cpu_model_name(),
            self.n_threads,
            self.simd.name()
        )
    }

    fn supports_matmul(&self, ty: GgmlType) -> bool {
        quant::kernels(ty, self.simd).is_some()
    }

    fn load_weight(&self, src: &WeightSource) -> Result<CpuWeight> {
        let info = &src.info;
        let ty = info.ty;
        let row_len = info.dims.first().copied().unwrap_or(1) as usize;
        let rows = info.dims.iter().skip(1).product::<u64>() as usize;
        let kernels = quant::kernels(ty, self.simd);
        let row_bytes = ty.row_bytes(row_len).ok_or_else(|| EngineError::Shape {
            name: info.name.clone(),
            expected: vec![ty.block_elems() as u64],
            found: info.dims.clone(),
        })?;
        let mut vector = Vec::new();
        if info.dims.len() == 1 {
            let k = kernels.ok_or(EngineError::UnsupportedType {
                name: info.name.clone(),
                ty,
                backend: "cpu",
            })?;
            vector = vec![0.0; row_len];
            (k.dequantize_row)(src.bytes(), &mut vector);
        }
        Ok(CpuWeight {
            src: src.clone(),
            ty,
            rows,
            row_len,
            row_bytes,
            kernels,
            vector,
        })
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn alloc_kv(&self, shape: KvShape) -> Result<CpuKv> {
        Ok(CpuKv::new(shape))
    }

    fn write(&self, dst: &mut Vec<f32>, src: &[f32]) -> Result<()> {
        if dst.len() < src.len() {
            return Err(EngineError::BadSetting {
                name: "write",
                value: src.len().to_string(),
                reason: format!("the buffer holds {} floats", dst.len()),
            });
        }
        dst[..src.len()].copy_from_slice(src);
        Ok(())
    }

    fn read(&self, src: &Vec<f32>, dst: &mut [f32]) -> Result<()> {
        dst.copy_from_slice(&src[..dst.len()]);
        Ok(())
    }

    fn embed(&self, table: &CpuWeight, ids: &[u32], scale: f32, out: &mut Vec<f32>) -> Result<()> {
        ops::embed(table, ids, scale, out)
    }

    fn rms_norm(&self, x: &Vec<f32>, w: &CpuWeight, eps: f32, n_rows: usize, out: &mut Vec<f32>) -> Result<()> {
        let n = w.vector.len();
        self.split(&mut out[..n_rows * n], n, &|at, piece| {
            for (xr, or) in x[at..at + piece.len()].chunks_exact(n).zip(piece.chunks_exact_mut(n)) {
                ops::rms_norm_row(xr, &w.vector, eps, or);
            }
        });
        Ok(())
    }

    fn rms_norm_in_place(&self, x: &mut Vec<f32>, w: &CpuWeight, eps: f32, n_rows: usize) -> Result<()> {
        let n = w.vector.len();
        self.split(&mut x[..n_rows * n], n, &|_, piece| {
            for xr in piece.chunks_exact_mut(n) {
                ops::rms_norm_row_in_place(xr, &w.vector, eps);
            }
        });
        Ok(())
    }

    fn matmul(&self, w: &CpuWeight, x: &Vec<f32>, n_tokens: usize, out: &mut Vec<f32>) -> Result<()> {
        matmul::matmul(self, w, x, n_tokens, out)
    }

    fn add_bias(&self, x: &mut Vec<f32>, bias: &CpuWeight, n_tokens: usize) -> Result<()> {
        let n = bias.vector.len();
        for row in x[..n_tokens * n].chunks_exact_mut(n) {
            row.iter_mut().zip(&bias.vector).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        batch: &Batch,
        n_heads: usize,
        head_dim: usize,
        style: RopeStyle,
        params: RopeParams,
        freq_factors: Option<&CpuWeight>,
    ) -> Result<()> {
        ops::rope(
            x,
            &batch.positions,
            n_heads,
            head_dim,
            style,
            params,
            freq_factors.map(|w| &w.vector[..]),
        );
        Ok(())
    }

    fn kv_store(&self, kv: &mut CpuKv, layer: usize, k: &Vec<f32>, v: &Vec<f32>, batch: &Batch) -> Result<()> {
        kv.store(layer, k, v, batch)
    }

    fn attention(
        &self,
        q: &Vec<f32>,
        kv: &CpuKv,
        batch: &Batch,
        params: AttentionParams,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        attention::attention(&self.work, self.simd, q, kv, batch, params, out);
        Ok(())
    }

    fn gated_activation(&self, gate: &mut Vec<f32>, up: &Vec<f32>, len: usize, act: Activation) -> Result<()> {
        self.split(&mut gate[..len], 64, &|at, g| {
            ops::gated_activation(g, &up[at..at + g.len()], act, self.simd)
        });
        Ok(())
    }

    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>, len: usize) -> Result<()> {
        self.split(&mut x[..len], 64, &|at, piece| {
            let y = &y[at..at + piece.len()];
            piece.iter_mut().zip(y).for_each(|(a, b)| *a += b)
        });
        Ok(())
    }

    fn gather_rows(&self, x: &Vec<f32>, rows: &[usize], row_len: usize, out: &mut Vec<f32>) -> Result<()> {
        for (i, &r) in rows.iter().enumerate() {
            out[i * row_len..(i + 1) * row_len].copy_from_slice(&x[r * row_len..(r + 1) * row_len]);
        }
        Ok(())
    }

    fn kv_copy_seq(&self, kv: &mut CpuKv, src: usize, dst: usize, from: usize, n: usize) -> Result<()> {
        kv.copy_seq(src, dst, from, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element-wise ops split over the pool for prompt-sized inputs: every element exactly as on one thread,
    /// lengths that leave a short last piece included.
    #[test]
    fn split_ops_equal_one_thread() {
        let one = CpuBackend::new(CpuConfig {
            n_threads: 1,
            simd: None,
        })
        .expect("backend");
        let three = CpuBackend::new(CpuConfig {
            n_threads: 3,
            simd: None,
        })
        .expect("backend");
        for len in [100, 40_000, 100_003] {
            let x: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.13).collect();
            let y: Vec<f32> = (0..len).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.07).collect();
            let (mut a, mut b) = (x.clone(), x.clone());
            one.add(&mut a, &y, len).expect("add");
            three.add(&mut b, &y, len).expect("add");
            assert_eq!(a, b, "add, {len}");
            let want: Vec<f32> = x.iter().zip(&y).map(|(p, q)| p + q).collect();
            assert_eq!(a, want, "add, {len}");
            for act in [Activation::Silu, Activation::GeluTanh] {
                let (mut a, mut b) = (x.clone(), x.clone());
                one.gated_activation(&mut a, &y, len, act).expect("activation");
                three.gated_activation(&mut b, &y, len, act).expect("activation");
                assert_eq!(a, b, "{act:?}, {len}");
            }
        }
    }
}
