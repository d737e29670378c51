//! Token selection on the device: greedy argmax, and the top candidates a sampler at a temperature needs, so
//! that only ids (or a few hundred candidates) cross the bus instead of a row of logits.

use super::{err, lock, Arg, CudaBackend};
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use crate::sampling::{Candidates, MAX_CANDIDATES};
use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, PinnedHostSlice};
use std::sync::Arc;

/// Threads per block of the argmax kernels.
const ARGMAX_THREADS: u32 = 256;
/// Entries of a row one argmax block reduces (8 a thread).
const ARGMAX_SLICE: usize = 8 * ARGMAX_THREADS as usize;

/// How a row of `vocab` logits is cut for the argmax: (entries per block, blocks per row).
pub fn argmax_plan(vocab: usize) -> (usize, usize) {
    (ARGMAX_SLICE, vocab.div_ceil(ARGMAX_SLICE).max(1))
}

/// Slots of the host-mapped ring that chained greedy steps write their picks to (a generator keeps two steps
/// queued; a slot is reused four positions later).
const CHAIN_RING: usize = 4;

/// Chained greedy decoding (`Backend::argmax_chain`): the ring of picks in page-locked host memory that the argmax
/// kernel writes directly, an event per slot recorded after the kernel, and where the next chained batch must be.
pub struct Chain {
    /// [CHAIN_RING] picks by position slot, page-locked and mapped into the device's address space (owned here,
    /// addressed through the two fields below).
    _memory: PinnedHostSlice<i32>,
    /// The ring's host address, which the host reads (volatile) once the slot's event has completed.
    picks_host: usize,
    /// The same memory as the device addresses it.
    picks_device: u64,
    /// [CHAIN_RING] completes when the slot's pick is written.
    events: Vec<CudaEvent>,
    /// [CHAIN_RING] the run state and position each slot's pick follows (`None`: none queued).
    queued: [Option<(u64, u32)>; CHAIN_RING],
    /// The step whose token the device holds for a chained batch; `None` after any upload.
    pub next: Option<ChainStep>,
}

/// A one-token step of a chained greedy run: the run state whose forward pass it is (`Backend::forward_scope`),
/// and its token's sequence and position. Two generators sharing a device may both chain steps of sequence 0 at
/// the same positions; the state tells their picks apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainStep {
    pub state: u64,
    pub seq: u32,
    pub pos: u32,
}

impl Chain {
    fn new(ctx: &Arc<CudaContext>) -> Result<Self> {
        // SAFETY: the memory is written below before anything reads it.
        let picks =
            unsafe { ctx.alloc_pinned_with_flags::<i32>(CHAIN_RING, cudarc::driver::sys::CU_MEMHOSTALLOC_DEVICEMAP) }
                .map_err(|e| err("allocating the chained picks", e))?;
        let host = picks.as_ptr().map_err(|e| err("chained picks", e))? as *mut i32;
        let mut device = 0u64;
        // SAFETY: `host` is a live page-locked allocation made with DEVICEMAP; out-parameter only.
        unsafe { cudarc::driver::sys::cuMemHostGetDevicePointer_v2(&mut device, host.cast(), 0) }
            .result()
            .map_err(|e| err("mapping the chained picks", e))?;
        for i in 0..CHAIN_RING {
            // SAFETY: in bounds of the allocation, which no kernel uses yet.
            unsafe { host.add(i).write_volatile(-1) };
        }
        let events = (0..CHAIN_RING)
            .map(|_| ctx.new_event(None).map_err(|e| err("creating an event", e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            _memory: picks,
            picks_host: host as usize,
            picks_device: device,
            events,
            queued: [None; CHAIN_RING],
            next: None,
        })
    }
}

/// The ring slot of the pick that follows position `pos`.
pub fn chain_slot(pos: u32) -> usize {
    pos as usize % CHAIN_RING
}

impl CudaBackend {
    /// Queues the argmax kernels of the first `n_rows` rows of `logits` into the ids scratch; `chain` (one row)
    /// also feeds the pick to the next chained step and writes it to the host-mapped ring at that device address.
    fn queue_argmax(&self, logits: &CudaSlice<f32>, n_rows: usize, vocab: usize, chain: u64) -> Result<()> {
        self.check_len("logits", logits.len(), n_rows * vocab)?;
        let (tokens, pos) = if chain != 0 {
            let meta = lock(&self.meta);
            (self.ptr(&meta.tokens), self.ptr(&meta.pos))
        } else {
            (0, 0)
        };
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
                Arg::Ptr(tokens),
                Arg::Ptr(pos),
                Arg::Ptr(chain),
                Arg::I32(CHAIN_RING as i32),
            ],
        )
    }

    /// Argmax of each of the first `n_rows` rows of `logits` ([n_rows, vocab]), computed on the GPU so that only
    /// token ids cross the bus.
    pub fn argmax_on_device(&self, logits: &CudaSlice<f32>, n_rows: usize, vocab: usize) -> Result<Vec<u32>> {
        self.queue_argmax(logits, n_rows, vocab, 0)?;
        let scratch = lock(&self.scratch);
        let mut ids = vec![0i32; n_rows];
        self.stream
            .memcpy_dtoh(&scratch.ids.slice(0..n_rows), &mut ids)
            .map_err(|e| err("reading token ids", e))?;
        self.stream.synchronize().map_err(|e| err("synchronize", e))?;
        Ok(ids.into_iter().map(|i| i as u32).collect())
    }

    /// `Backend::queue_chain_pick`: the argmax kernel of the chained step whose scope is running (recorded with the
    /// step when the scope is captured); the `argmax_chain` that follows launches none.
    pub fn queue_chain_pick_on_device(&self, logits: &CudaSlice<f32>, vocab: usize) -> Result<()> {
        let picks = self.chain_made(&mut lock(&self.chain))?.picks_device;
        self.queue_argmax(logits, 1, vocab, picks)
    }

    /// The chain's ring, made at the first chained step.
    fn chain_made<'a>(&self, chain: &'a mut Option<Chain>) -> Result<&'a mut Chain> {
        if chain.is_none() {
            *chain = Some(Chain::new(&self.ctx)?);
        }
        Ok(chain.as_mut().expect("made above"))
    }

    /// `Backend::argmax_chain`: queues the pick of the one-token step `step` without waiting (its kernel already
    /// ran in the step's scope when that scope was run with `pick` for the same state: `pick_in_scope`).
    pub fn argmax_chain_on_device(&self, logits: &CudaSlice<f32>, vocab: usize, step: ChainStep) -> Result<()> {
        let ChainStep { state, seq, pos } = step;
        let in_scope = lock(&self.pick_in_scope).take() == Some(state);
        let mut chain = lock(&self.chain);
        let c = self.chain_made(&mut chain)?;
        let slot = chain_slot(pos);
        // The kernel writes the slot of the position the device holds, which is `pos` (checked by `upload_batch`).
        if !in_scope {
            self.queue_argmax(logits, 1, vocab, c.picks_device)?;
        }
        c.events[slot]
            .record(&self.stream)
            .map_err(|e| err("recording an event", e))?;
        c.queued[slot] = Some((state, pos));
        c.next = Some(ChainStep {
            state,
            seq,
            pos: pos + 1,
        });
        Ok(())
    }

    /// For `upload_batch`: true when `batch` (run by run state `state`) is chained (its token and position are on
    /// the device already, written by the argmax of the same state's step before, so nothing is uploaded), an error
    /// when the device holds no pick for it. Any other batch voids the pick the device holds (its upload overwrites
    /// the token).
    pub(super) fn take_chained(&self, batch: &Batch, state: u64) -> Result<bool> {
        let next = lock(&self.chain).as_mut().and_then(|c| c.next.take());
        if !batch.chained {
            return Ok(false);
        }
        let want = batch
            .seq_ids
            .first()
            .zip(batch.positions.first())
            .map(|(&seq, &pos)| ChainStep { state, seq, pos });
        if batch.len() != 1 || next.is_none() || want != next {
            return Err(err(
                "chained greedy step",
                format!("the device holds the pick for {next:?}, the batch is {want:?}"),
            ));
        }
        lock(&self.meta).hold_device_token(batch)?;
        Ok(true)
    }

    /// `Backend::chain_pick`: waits for the pick queued for run state `state`'s step at `pos`.
    pub fn chain_pick_on_device(&self, state: u64, pos: u32) -> Result<u32> {
        let chain = lock(&self.chain);
        let slot = chain_slot(pos);
        let c = chain
            .as_ref()
            .filter(|c| c.queued[slot] == Some((state, pos)))
            .ok_or_else(|| {
                err(
                    "chained greedy pick",
                    format!("no step of run state {state} at position {pos} is queued"),
                )
            })?;
        c.events[slot]
            .synchronize()
            .map_err(|e| err("waiting for a chained pick", e))?;
        // SAFETY: the slot is in bounds of the live allocation, and its event says the kernel that wrote it ended.
        let id = unsafe { (c.picks_host as *const i32).add(slot).read_volatile() };
        u32::try_from(id).map_err(|_| err("chained greedy pick", format!("the device wrote {id}")))
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
