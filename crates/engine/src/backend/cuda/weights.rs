//! Weights on the GPU: matrices uploaded in their GGUF formats (the formats with 2-byte-aligned blocks regrouped
//! within each row so that their quants load in 16-byte words: `quant::cuda::regroup`), vectors (norms, biases,
//! rope factors) as f32.

use super::launch::Arg;
use super::{err, CudaBackend};
use crate::backend::WeightSource;
use crate::error::{EngineError, Result};
use cudarc::driver::CudaSlice;
use gguf::GgmlType;
use quant::cuda::regroup;
use std::sync::atomic::Ordering;

/// A weight on the GPU: matrices in their GGUF format, vectors (norms, biases, rope factors) as f32.
pub struct CudaWeight {
    pub(super) name: String,
    pub(super) ty: GgmlType,
    pub(super) rows: usize,
    pub(super) row_len: usize,
    pub(super) row_bytes: usize,
    /// [rows, row_bytes] in the storage format, regrouped (`quant::cuda::regroup`; empty for vectors)
    pub(super) data: CudaSlice<u8>,
    /// [row_len] f32, for vectors only
    pub(super) vector: Option<CudaSlice<f32>>,
}

impl CudaWeight {
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
}

impl CudaBackend {
    /// Uploads one tensor: matrices stay in their GGUF format (regrouped, with 16 bytes of padding), vectors become
    /// f32.
    pub(super) fn upload_weight(&self, src: &WeightSource) -> Result<CudaWeight> {
        let info = &src.info;
        let ty = info.ty;
        let row_len = info.dims.first().copied().unwrap_or(1) as usize;
        let rows = info.dims.iter().skip(1).product::<u64>() as usize;
        ty.row_bytes(row_len).ok_or_else(|| EngineError::Shape {
            name: info.name.clone(),
            expected: vec![ty.block_elems() as u64],
            found: info.dims.clone(),
        })?;
        let n_blocks = row_len / ty.block_elems();
        let row_bytes = regroup::device_row_bytes(ty, n_blocks);
        let unsupported = || EngineError::UnsupportedType {
            name: info.name.clone(),
            ty,
            backend: "cuda",
        };
        if info.dims.len() == 1 {
            let mut v = vec![0f32; row_len];
            quant::dequantize_row_reference(ty, src.bytes(), &mut v).ok_or_else(unsupported)?;
            let vector = self.stream.clone_htod(&v).map_err(|e| err("uploading a vector", e))?;
            let data = self.stream.alloc_zeros::<u8>(1).map_err(|e| err("alloc", e))?;
            return Ok(CudaWeight {
                name: info.name.clone(),
                ty,
                rows: 1,
                row_len,
                row_bytes,
                data,
                vector: Some(vector),
            });
        }
        quant::cuda::kernel_suffix(ty).ok_or_else(unsupported)?;
        let granule = if quant::cuda::is_float(ty) { 8 } else { 32 };
        if !row_len.is_multiple_of(granule) {
            return Err(EngineError::Shape {
                name: info.name.clone(),
                expected: vec![granule as u64],
                found: info.dims.clone(),
            });
        }
        let bytes = src.bytes();
        // 16 bytes of padding past the last row.
        let mut data = self
            .stream
            .alloc_zeros::<u8>(rows * row_bytes + 16)
            .map_err(|e| err(&format!("allocating {}", info.name), e))?;
        match regroup::block_split(ty) {
            None => self
                .stream
                .memcpy_htod(bytes, &mut data.slice_mut(0..bytes.len()))
                .map_err(|e| err(&format!("uploading {}", info.name), e))?,
            Some(split) => {
                // The GGUF bytes go up as they are and are regrouped on the device (the load stays a plain copy).
                let file = self
                    .stream
                    .clone_htod(bytes)
                    .map_err(|e| err(&format!("uploading {}", info.name), e))?;
                self.launch_1d(
                    &self.funcs.regroup_blocks,
                    rows * n_blocks,
                    &[
                        Arg::Ptr(self.ptr(&file)),
                        Arg::Ptr(self.ptr(&data)),
                        Arg::I32(n_blocks as i32),
                        Arg::Usize(row_bytes),
                        Arg::I32(split.block_bytes as i32),
                        Arg::I32(split.scalar_bytes() as i32),
                        Arg::I32(split.array_start as i32),
                        Arg::Usize(rows * n_blocks),
                    ],
                )?;
            }
        }
        self.loaded.fetch_add(src.bytes().len() as u64, Ordering::Relaxed);
        self.max_row_len.fetch_max(row_len, Ordering::Relaxed);
        Ok(CudaWeight {
            name: info.name.clone(),
            ty,
            rows,
            row_len,
            row_bytes,
            data,
            vector: None,
        })
    }
}
