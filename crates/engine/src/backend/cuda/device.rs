//! The CUDA backend's device-side bookkeeping: the kernel table, the per-forward token metadata, scratch buffers
//! that grow to the largest shape seen, and the cache of captured graphs.

use super::err;
use crate::backend::KvShape;
use crate::batch::Batch;
use crate::error::{EngineError, Result};
use cudarc::driver::{CudaFunction, CudaGraph, CudaModule, CudaSlice, CudaStream};
use gguf::GgmlType;
use std::collections::HashMap;
use std::sync::Arc;

/// The kernels of one weight format.
pub struct WeightFuncs {
    pub matvec1: CudaFunction,
    pub matvec8: CudaFunction,
    pub glu1: CudaFunction,
    pub glu8: CudaFunction,
    /// Formats with a float view (`quant::cuda::float_view_suffix`) only: single-token products against f32
    /// activations (the float formats' `matvec1` itself), and ones that normalize their input on the fly (no norm
    /// launch).
    pub matvec1f: Option<CudaFunction>,
    /// `matvec1f` at 4 blocks an SM (`matvec1w`), for rows of at least `decode::MATVEC1_WIDE_MIN_K` elements.
    pub matvec1w: Option<CudaFunction>,
    pub matvec1n: Option<CudaFunction>,
    pub glu1n: Option<CudaFunction>,
    /// Single-token Q/K/V products that rotate Q and K and write K and V into the cache (`matvec1nr`, formats with
    /// a float view only: normalizing the input on the fly).
    pub matvec1r: CudaFunction,
    pub matvec1nr: Option<CudaFunction>,
    pub dequant: CudaFunction,
    /// The fused layer tail's kernels (`layer_tail.cu`, formats with a float view only).
    pub tail: Option<TailFuncs>,
}

/// The three launches of a one-token layer tail (`layer_tail.cu`) for one weight format.
pub struct TailFuncs {
    /// Attention then the output projection into the fixed-point accumulator, by head size 64 and 128.
    pub attn_o64: CudaFunction,
    pub attn_o128: CudaFunction,
    /// The FFN input on x + accumulator; the FFN output folding the accumulator into x.
    pub glu1na: CudaFunction,
    pub matvec1a: CudaFunction,
    /// The FFN output with each warp's rows held from before its wait (`matvec1ah`, rows of at most
    /// `layer_tail::tail_down_held_max` elements).
    pub matvec1ah: CudaFunction,
}

/// Every kernel, looked up once.
pub struct Funcs {
    pub quantize_q8: CudaFunction,
    pub norm_quant: CudaFunction,
    pub rope_store_f16: CudaFunction,
    pub rope_store_f32: CudaFunction,
    pub rms_norm: CudaFunction,
    pub add_bias: CudaFunction,
    pub add: CudaFunction,
    pub gated_act: CudaFunction,
    pub rope: CudaFunction,
    pub kv_store_f16: CudaFunction,
    pub kv_store_f32: CudaFunction,
    pub kv_copy_seq: CudaFunction,
    pub gather_rows: CudaFunction,
    pub to_f16: CudaFunction,
    pub to_f16_q8: CudaFunction,
    pub argmax_rows: CudaFunction,
    pub argmax_combine: CudaFunction,
    pub top_candidates: CudaFunction,
    pub attn_f16: CudaFunction,
    pub attn_f32: CudaFunction,
    pub attn_combine: CudaFunction,
    /// Decode attention by cache precision, for any head size and compiled for 64 and 128.
    pub attn_decode_f16: DecodeAttention,
    pub attn_decode_f32: DecodeAttention,
    pub softmax_causal: CudaFunction,
    pub flash_prefill_64: CudaFunction,
    pub flash_prefill_128: CudaFunction,
    pub regroup_blocks: CudaFunction,
    weights: HashMap<GgmlType, WeightFuncs>,
}

/// One decode-attention kernel for any head size, and instances compiled for the common ones.
pub struct DecodeAttention {
    pub any: CudaFunction,
    pub hd64: CudaFunction,
    pub hd128: CudaFunction,
    /// Head size 256 (`DECODE_LANES_PER_KEY_256` lanes a key).
    pub hd256: CudaFunction,
}

impl DecodeAttention {
    /// The kernel for heads of `head_dim`, and its threads per block.
    pub fn for_head_dim(&self, head_dim: usize) -> (&CudaFunction, u32) {
        let compiled = 128 * super::DECODE_LANES_PER_KEY;
        match head_dim {
            64 => (&self.hd64, compiled),
            128 => (&self.hd128, compiled),
            256 => (&self.hd256, 128 * super::DECODE_LANES_PER_KEY_256),
            _ => (&self.any, 128),
        }
    }
}

impl Funcs {
    pub fn load(module: &Arc<CudaModule>) -> Result<Self> {
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| err(&format!("kernel {name}"), e))
        };
        let mut weights = HashMap::new();
        for ty in GgmlType::ALL {
            let Some(sfx) = quant::cuda::kernel_suffix(ty) else {
                continue;
            };
            let float_only = |name: &str| -> Result<Option<CudaFunction>> {
                match quant::cuda::float_view_suffix(ty) {
                    Some(fsfx) => f(&format!("{name}_{fsfx}")).map(Some),
                    None => Ok(None),
                }
            };
            weights.insert(
                ty,
                WeightFuncs {
                    matvec1: f(&format!("matvec1_{sfx}"))?,
                    matvec8: f(&format!("matvec8_{sfx}"))?,
                    glu1: f(&format!("glu1_{sfx}"))?,
                    glu8: f(&format!("glu8_{sfx}"))?,
                    matvec1f: float_only("matvec1")?,
                    matvec1w: float_only("matvec1w")?,
                    matvec1n: float_only("matvec1n")?,
                    glu1n: float_only("glu1n")?,
                    matvec1r: f(&format!("matvec1r_{sfx}"))?,
                    matvec1nr: float_only("matvec1nr")?,
                    dequant: f(&format!("dequant_{sfx}"))?,
                    tail: match quant::cuda::float_view_suffix(ty) {
                        Some(fsfx) => Some(TailFuncs {
                            attn_o64: f(&format!("attn_o64_{fsfx}"))?,
                            attn_o128: f(&format!("attn_o128_{fsfx}"))?,
                            glu1na: f(&format!("glu1na_{fsfx}"))?,
                            matvec1a: f(&format!("matvec1a_{fsfx}"))?,
                            matvec1ah: f(&format!("matvec1ah_{fsfx}"))?,
                        }),
                        None => None,
                    },
                },
            );
        }
        Ok(Self {
            quantize_q8: f("quantize_q8")?,
            norm_quant: f("norm_quant")?,
            rope_store_f16: f("rope_store_f16")?,
            rope_store_f32: f("rope_store_f32")?,
            rms_norm: f("rms_norm")?,
            add_bias: f("add_bias")?,
            add: f("add")?,
            gated_act: f("gated_act")?,
            rope: f("rope")?,
            kv_store_f16: f("kv_store_f16")?,
            kv_store_f32: f("kv_store_f32")?,
            kv_copy_seq: f("kv_copy_seq")?,
            gather_rows: f("gather_rows")?,
            to_f16: f("to_f16")?,
            to_f16_q8: f("to_f16_q8")?,
            argmax_rows: f("argmax_rows")?,
            argmax_combine: f("argmax_combine")?,
            top_candidates: f("top_candidates")?,
            attn_f16: f("attn_f16")?,
            attn_f32: f("attn_f32")?,
            attn_combine: f("attn_combine")?,
            attn_decode_f16: DecodeAttention {
                any: f("attn_decode_f16")?,
                hd64: f("attn_decode_f16_64")?,
                hd128: f("attn_decode_f16_128")?,
                hd256: f("attn_decode_f16_256")?,
            },
            attn_decode_f32: DecodeAttention {
                any: f("attn_decode_f32")?,
                hd64: f("attn_decode_f32_64")?,
                hd128: f("attn_decode_f32_128")?,
                hd256: f("attn_decode_f32_256")?,
            },
            softmax_causal: f("softmax_causal")?,
            flash_prefill_64: f("flash_prefill_64")?,
            flash_prefill_128: f("flash_prefill_128")?,
            regroup_blocks: f("regroup_blocks")?,
            weights,
        })
    }

    pub fn weight(&self, ty: GgmlType, name: &str) -> Result<&WeightFuncs> {
        self.weights.get(&ty).ok_or_else(|| EngineError::UnsupportedType {
            name: name.into(),
            ty,
            backend: "cuda",
        })
    }
}

fn alloc<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    n: usize,
) -> Result<CudaSlice<T>> {
    stream
        .alloc_zeros::<T>(n.max(1))
        .map_err(|e| err("allocating scratch", e))
}

/// The token metadata of the current forward pass, on the device: [capacity] each.
pub struct Meta {
    pub capacity: usize,
    pub tokens: CudaSlice<i32>,
    pub pos: CudaSlice<i32>,
    pub seq: CudaSlice<i32>,
    /// Rows whose logits are wanted.
    pub rows: CudaSlice<i32>,
    host_tokens: Vec<u32>,
    host_rows: Vec<usize>,
}

impl Meta {
    pub fn new(stream: &Arc<CudaStream>, capacity: usize) -> Result<Self> {
        Ok(Self {
            capacity,
            tokens: alloc(stream, capacity)?,
            pos: alloc(stream, capacity)?,
            seq: alloc(stream, capacity)?,
            rows: alloc(stream, capacity)?,
            host_tokens: Vec::new(),
            host_rows: Vec::new(),
        })
    }

    pub fn upload(&mut self, stream: &Arc<CudaStream>, batch: &Batch) -> Result<()> {
        let as_i32 = |v: &[u32]| v.iter().map(|&x| x as i32).collect::<Vec<_>>();
        let put = |stream: &Arc<CudaStream>, src: &[i32], dst: &mut CudaSlice<i32>| {
            if src.is_empty() {
                return Ok(());
            }
            stream
                .memcpy_htod(src, &mut dst.slice_mut(0..src.len()))
                .map_err(|e| err("uploading the batch", e))
        };
        put(stream, &as_i32(&batch.tokens), &mut self.tokens)?;
        put(stream, &as_i32(&batch.positions), &mut self.pos)?;
        put(stream, &as_i32(&batch.seq_ids), &mut self.seq)?;
        let rows = batch.logit_rows();
        put(
            stream,
            &rows.iter().map(|&r| r as i32).collect::<Vec<_>>(),
            &mut self.rows,
        )?;
        self.host_tokens = batch.tokens.clone();
        self.host_rows = rows;
        Ok(())
    }

    /// A chained batch (`Batch::chained`): its one token and position are on the device already (written by the
    /// previous step's argmax), so nothing is uploaded; its placeholder id stands for the token in host checks.
    pub fn hold_device_token(&mut self, batch: &Batch) -> Result<()> {
        if self.host_rows != [0] || batch.logit_rows() != [0] {
            return Err(err(
                "chained greedy step",
                "follows a one-token step that wants its logits",
            ));
        }
        self.host_tokens = batch.tokens.clone();
        Ok(())
    }

    /// The embedding reads the uploaded ids: they must be the ones the caller passes.
    pub fn check_tokens(&self, ids: &[u32]) -> Result<()> {
        if ids != self.host_tokens.as_slice() {
            return Err(err(
                "embed",
                "token ids differ from the batch uploaded for this forward pass",
            ));
        }
        Ok(())
    }

    /// Makes `rows` the device's row list (uploading them when they are not this forward pass's logit rows).
    pub fn ensure_rows(&mut self, stream: &Arc<CudaStream>, rows: &[usize]) -> Result<()> {
        if rows == self.host_rows.as_slice() {
            return Ok(());
        }
        if rows.len() > self.capacity {
            return Err(err(
                "gather",
                format!("{} rows exceed the batch capacity {}", rows.len(), self.capacity),
            ));
        }
        let v: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        stream
            .memcpy_htod(&v, &mut self.rows.slice_mut(0..v.len()))
            .map_err(|e| err("uploading rows", e))?;
        self.host_rows = rows.to_vec();
        Ok(())
    }
}

/// Scratch that grows to the largest shape seen.
pub struct Scratch {
    /// Quantized activations: [n_tokens, K] int8 and [n_tokens, K / 32] float4
    pub aq: CudaSlice<i8>,
    pub am: CudaSlice<f32>,
    /// Prefill operands: activations and a weight in f16, a weight in f32
    pub x16: CudaSlice<u16>,
    pub w16: CudaSlice<u16>,
    pub w32: CudaSlice<f32>,
    /// Sampled token ids, or candidate ids [n_rows, n]
    pub ids: CudaSlice<i32>,
    /// The argmax's partial results: best value and index per (row, part) [n_rows, parts]
    pub arg_v: CudaSlice<f32>,
    pub arg_i: CudaSlice<i32>,
    /// Candidate logits [n_rows, n] and each row's {max, sum(exp(l - max))} [n_rows, 2]
    pub cand_vals: CudaSlice<f32>,
    pub cand_stats: CudaSlice<f32>,
    /// Prompt attention: scores [n_heads, n_tokens, n_keys] f32 and probabilities f16
    pub att_s: CudaSlice<f32>,
    pub att_p: CudaSlice<u16>,
    /// The fused layer tail's fixed-point accumulator [d] (`layer_tail.cu`): zero between layers
    pub tail_acc: CudaSlice<i64>,
}

fn grow<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    buf: &mut CudaSlice<T>,
    n: usize,
) -> Result<bool> {
    if buf.len() >= n {
        return Ok(false);
    }
    *buf = alloc(stream, n)?;
    Ok(true)
}

impl Scratch {
    pub fn new(stream: &Arc<CudaStream>) -> Result<Self> {
        Ok(Self {
            aq: alloc(stream, 1)?,
            am: alloc(stream, 1)?,
            x16: alloc(stream, 1)?,
            w16: alloc(stream, 1)?,
            w32: alloc(stream, 1)?,
            ids: alloc(stream, 1)?,
            arg_v: alloc(stream, 1)?,
            arg_i: alloc(stream, 1)?,
            cand_vals: alloc(stream, 1)?,
            cand_stats: alloc(stream, 1)?,
            att_s: alloc(stream, 1)?,
            att_p: alloc(stream, 1)?,
            tail_acc: alloc(stream, 1)?,
        })
    }
    /// Room for `elems` quantized activations; true when the buffers moved.
    pub fn ensure_q8(&mut self, stream: &Arc<CudaStream>, elems: usize) -> Result<bool> {
        let a = grow(stream, &mut self.aq, elems)?;
        let b = grow(stream, &mut self.am, elems / 32 * 4)?;
        Ok(a || b)
    }
    pub fn ensure_x16(&mut self, stream: &Arc<CudaStream>, n: usize) -> Result<()> {
        grow(stream, &mut self.x16, n).map(|_| ())
    }
    pub fn ensure_w16(&mut self, stream: &Arc<CudaStream>, n: usize) -> Result<()> {
        grow(stream, &mut self.w16, n).map(|_| ())
    }
    pub fn ensure_w32(&mut self, stream: &Arc<CudaStream>, n: usize) -> Result<()> {
        grow(stream, &mut self.w32, n).map(|_| ())
    }
    pub fn ensure_att(&mut self, stream: &Arc<CudaStream>, n: usize) -> Result<()> {
        grow(stream, &mut self.att_s, n)?;
        grow(stream, &mut self.att_p, n).map(|_| ())
    }
    /// Room for a layer tail accumulator of `n` elements (zeros); true when it moved.
    pub fn ensure_tail_acc(&mut self, stream: &Arc<CudaStream>, n: usize) -> Result<bool> {
        grow(stream, &mut self.tail_acc, n)
    }
    pub fn ensure_ids(&mut self, stream: &Arc<CudaStream>, n: usize) -> Result<()> {
        grow(stream, &mut self.ids, n).map(|_| ())
    }
    pub fn ensure_argmax_parts(&mut self, stream: &Arc<CudaStream>, n: usize) -> Result<()> {
        grow(stream, &mut self.arg_v, n)?;
        grow(stream, &mut self.arg_i, n).map(|_| ())
    }
    /// Room for `n` candidates in all over `rows` rows.
    pub fn ensure_candidates(&mut self, stream: &Arc<CudaStream>, n: usize, rows: usize) -> Result<()> {
        grow(stream, &mut self.ids, n)?;
        grow(stream, &mut self.cand_vals, n)?;
        grow(stream, &mut self.cand_stats, 2 * rows).map(|_| ())
    }
}

/// A captured graph; only touched under the backend's lock.
struct Graph(CudaGraph);
// SAFETY: a CUgraphExec may be launched from any thread as long as calls are serialized, which the Mutex around
// `Graphs` guarantees.
unsafe impl Send for Graph {}

/// What a forward pass of a given key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphStep {
    /// First time: run the ops directly (buffers settle, nothing is allocated during a later capture).
    RunEagerly,
    /// Second time: capture the ops into a graph, then launch it.
    Capture,
    /// Launch the stored graph.
    Replay,
}

#[derive(Default)]
pub struct Graphs {
    seen: HashMap<u64, Option<Graph>>,
}

impl Graphs {
    pub fn prepare(&mut self, key: u64) -> GraphStep {
        match self.seen.get(&key) {
            None => {
                self.seen.insert(key, None);
                GraphStep::RunEagerly
            }
            Some(None) => GraphStep::Capture,
            Some(Some(_)) => GraphStep::Replay,
        }
    }
    pub fn store(&mut self, key: u64, g: CudaGraph) {
        self.seen.insert(key, Some(Graph(g)));
    }
    pub fn launch(&self, key: u64) -> Result<()> {
        match self.seen.get(&key) {
            Some(Some(g)) => g.0.launch().map_err(|e| err("graph launch", e)),
            _ => Err(err("graph launch", "no graph for this batch shape")),
        }
    }
    pub fn clear(&mut self) {
        self.seen.clear();
    }
}

impl super::CudaBackend {
    /// `Backend::forward_scope` after the batch's upload: a decode-sized batch's ops run eagerly the first time, are
    /// captured into a graph the second and replayed after that (`Graphs`), keyed by `graph_key`.
    pub(super) fn run_scope(
        &self,
        batch: &Batch,
        state_id: u64,
        pick: bool,
        f: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        if batch.len() > super::MAX_DECODE_TOKENS {
            return f();
        }
        let key = graph_key(state_id, batch, pick);
        // The step is decided under the lock, which is released before the ops run (they may take it).
        let step = super::lock(&self.graphs).prepare(key);
        match step {
            GraphStep::Replay => super::lock(&self.graphs).launch(key),
            GraphStep::RunEagerly => f(),
            GraphStep::Capture => {
                use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
                self.stream
                    .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
                    .map_err(|e| err("beginning graph capture", e))?;
                let ran = f();
                let graph = self.stream.end_capture(CUgraphInstantiate_flags(0));
                ran?;
                let graph = graph.map_err(|e| err("ending graph capture", e))?;
                let mut graphs = super::lock(&self.graphs);
                match graph {
                    Some(g) => {
                        graphs.store(key, g);
                        graphs.launch(key)
                    }
                    None => Err(err("graph capture", "empty graph")),
                }
            }
        }
    }
}

/// The key of a decode step's graph: everything that changes a launch parameter, and whether the step ends with
/// its chained pick (`pick`). Token ids, positions and sequences are read from device memory, so they are not part
/// of it, except for the split count of decode attention that the furthest position calls for
/// (`decode_split_bucket`: a new graph every 1,024 positions).
pub fn graph_key(state_id: u64, batch: &Batch, pick: bool) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    state_id.hash(&mut h);
    pick.hash(&mut h);
    batch.len().hash(&mut h);
    batch.want_logits.hash(&mut h);
    let max_pos = batch.positions.iter().copied().max().unwrap_or(0) as usize;
    super::attention::decode_split_bucket(max_pos).hash(&mut h);
    h.finish()
}

/// Sequences and positions inside the cache: checked on the host, since the kernels index with them unchecked.
pub fn check_batch_fits(s: &KvShape, batch: &Batch) -> Result<()> {
    for (&seq, &pos) in batch.seq_ids.iter().zip(&batch.positions) {
        if seq as usize >= s.n_seqs {
            return Err(EngineError::BadSequence {
                seq,
                n_seqs: s.n_seqs as u32,
            });
        }
        if pos as usize >= s.n_ctx {
            return Err(EngineError::ContextFull {
                seq,
                pos,
                n_ctx: s.n_ctx as u32,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_run_eagerly_then_capture_then_replay() {
        let mut g = Graphs::default();
        assert_eq!(g.prepare(7), GraphStep::RunEagerly);
        assert_eq!(g.prepare(7), GraphStep::Capture);
        assert_eq!(g.prepare(8), GraphStep::RunEagerly);
        g.clear();
        assert_eq!(g.prepare(7), GraphStep::RunEagerly);
    }

    #[test]
    fn graph_key_ignores_tokens_but_not_shape() {
        let a = Batch::for_sequence(&[5], 0, 10);
        let b = Batch::for_sequence(&[9], 0, 11);
        assert_eq!(
            graph_key(1, &a, false),
            graph_key(1, &b, false),
            "new token, same shape"
        );
        let near = Batch::for_sequence(&[9], 0, 1000);
        assert_eq!(
            graph_key(1, &a, false),
            graph_key(1, &near, false),
            "positions are device data"
        );
        let far = Batch::for_sequence(&[9], 0, 3000);
        assert_ne!(
            graph_key(1, &a, false),
            graph_key(1, &far, false),
            "more attention splits"
        );
        assert_ne!(graph_key(1, &a, false), graph_key(2, &a, false), "another state");
        assert_ne!(
            graph_key(1, &a, false),
            graph_key(1, &a, true),
            "the chained pick in the step"
        );
        let two = Batch::for_sequence(&[1, 2], 0, 10);
        assert_ne!(graph_key(1, &a, false), graph_key(1, &two, false), "more tokens");
        let mut quiet = a.clone();
        quiet.want_logits[0] = false;
        assert_ne!(graph_key(1, &a, false), graph_key(1, &quiet, false), "other logit rows");
    }

    #[test]
    fn batches_outside_the_cache_are_refused() {
        let s = KvShape {
            n_layers: 1,
            n_seqs: 2,
            n_ctx: 16,
            n_kv_heads: 1,
            head_dim: 32,
            precision: crate::backend::KvPrecision::F16,
        };
        assert!(check_batch_fits(&s, &Batch::for_sequence(&[1, 2], 1, 14)).is_ok());
        assert!(matches!(
            check_batch_fits(&s, &Batch::for_sequence(&[1, 2], 1, 15)),
            Err(EngineError::ContextFull { pos: 16, .. })
        ));
        assert!(matches!(
            check_batch_fits(&s, &Batch::for_sequence(&[1], 2, 0)),
            Err(EngineError::BadSequence { seq: 2, .. })
        ));
    }
}
