//! Token selection on the device: greedy argmax, and the top candidates a sampler at a temperature needs, so
//! that only ids (or a few hundred candidates) cross the bus instead of a row of logits.

use super::{err, lock, Arg, CudaBackend};
use crate::error::{EngineError, Result};
use crate::sampling::{Candidates, MAX_CANDIDATES};
use cudarc::driver::CudaSlice;

/// Threads per block of the argmax kernels.
const ARGMAX_THREADS: u32 = 256;
/// Entries of a row one argmax block reduces (8 a thread).
const ARGMAX_SLICE: usize = 8 * ARGMAX_THREADS as usize;

/// How a row of `vocab` logits is cut for the argmax: (entries per block, blocks per row).
pub fn argmax_plan(vocab: usize) -> (usize, usize) {
    (ARGMAX_SLICE, vocab.div_ceil(ARGMAX_SLICE).max(1))
}

impl CudaBackend {
    /// Argmax of each of the first `n_rows` rows of `logits` ([n_rows, vocab]), computed on the GPU so that only
    /// token ids cross the bus.
    pub fn argmax_on_device(&self, logits: &CudaSlice<f32>, n_rows: usize, vocab: usize) -> Result<Vec<u32>> {
        self.check_len("logits", logits.len(), n_rows * vocab)?;
        let (slice, parts) = argmax_plan(vocab);
        let mut scratch = lock(&self.scratch);
        scratch.ensure_ids(&self.stream, n_rows)?;
        scratch.ensure_argmax_parts(&self.stream, n_rows * parts)?;
        let (part_v, part_i) = (self.ptr(&scratch.arg_v), self.ptr(&scratch.arg_i));
        self.launch(
            &self.funcs.argmax_rows,
            (n_rows as u32, parts as u32, 1),
            ARGMAX_THREADS,
            &[
                Arg::Ptr(self.ptr(logits)),
                Arg::I32(vocab as i32),
                Arg::I32(slice as i32),
                Arg::Ptr(part_v),
                Arg::Ptr(part_i),
            ],
        )?;
        self.launch(
            &self.funcs.argmax_combine,
            (n_rows as u32, 1, 1),
            ARGMAX_THREADS,
            &[
                Arg::Ptr(part_v),
                Arg::Ptr(part_i),
                Arg::I32(parts as i32),
                Arg::Ptr(self.ptr(&scratch.ids)),
            ],
        )?;
        let mut ids = vec![0i32; n_rows];
        self.stream
            .memcpy_dtoh(&scratch.ids.slice(0..n_rows), &mut ids)
            .map_err(|e| err("reading token ids", e))?;
        self.stream.synchronize().map_err(|e| err("synchronize", e))?;
        Ok(ids.into_iter().map(|i| i as u32).collect())
    }
    /// The top `n` candidates of each of the first `n_rows` rows of `logits`, picked on the GPU (a block per row:
    /// radix select, then a bitonic sort), so that only they cross the bus.
    pub fn top_candidates_on_device(
        &self,
        logits: &CudaSlice<f32>,
        n_rows: usize,
        vocab: usize,
        n: usize,
    ) -> Result<Vec<Candidates>> {
        self.check_len("logits", logits.len(), n_rows * vocab)?;
        if n == 0 || n > vocab || n > MAX_CANDIDATES {
            return Err(EngineError::BadSetting {
                name: "sampling candidates",
                value: n.to_string(),
                reason: format!("must be in 1..={}", vocab.min(MAX_CANDIDATES)),
            });
        }
        let mut scratch = lock(&self.scratch);
        scratch.ensure_candidates(&self.stream, n_rows * n, n_rows)?;
        self.launch(
            &self.funcs.top_candidates,
            (n_rows as u32, 1, 1),
            1024,
            &[
                Arg::Ptr(self.ptr(logits)),
                Arg::I32(vocab as i32),
                Arg::I32(n as i32),
                Arg::Ptr(self.ptr(&scratch.ids)),
                Arg::Ptr(self.ptr(&scratch.cand_vals)),
                Arg::Ptr(self.ptr(&scratch.cand_stats)),
            ],
        )?;
        let mut ids = vec![0i32; n_rows * n];
        let mut vals = vec![0f32; n_rows * n];
        let mut stats = vec![0f32; 2 * n_rows];
        let read = |e| err("reading sampling candidates", e);
        self.stream
            .memcpy_dtoh(&scratch.ids.slice(0..n_rows * n), &mut ids)
            .map_err(read)?;
        self.stream
            .memcpy_dtoh(&scratch.cand_vals.slice(0..n_rows * n), &mut vals)
            .map_err(read)?;
        self.stream
            .memcpy_dtoh(&scratch.cand_stats.slice(0..2 * n_rows), &mut stats)
            .map_err(read)?;
        self.stream.synchronize().map_err(|e| err("synchronize", e))?;
        Ok((0..n_rows)
            .map(|r| Candidates {
                ids: ids[r * n..(r + 1) * n].iter().map(|&i| i as u32).collect(),
                logits: vals[r * n..(r + 1) * n].to_vec(),
                max: stats[2 * r],
                sum_exp: stats[2 * r + 1],
                row_len: vocab,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_parts_cover_the_row() {
        for vocab in [1, 1000, 2048, 2049, 49152, 128256, 262144] {
            let (slice, parts) = argmax_plan(vocab);
            assert!(slice * parts >= vocab, "{vocab}: {parts} x {slice}");
            assert!(slice * (parts - 1) < vocab, "{vocab}: an empty part");
        }
        assert_eq!(argmax_plan(262144).1, 128);
    }
}
