//! A loaded model: its config, its weights on a backend, its tokenizer, and the rules that size its run state.

pub mod arch;
pub mod config;
pub mod decoder;
pub mod names;
pub mod weights;

use crate::backend::{Backend, KvPrecision, KvShape};
use crate::error::{EngineError, Result};
use config::ArchConfig;
use decoder::{DecoderState, Limits};
use gguf::{GgmlType, Gguf};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizer::Tokenizer;
use weights::Weights;

/// Default context when the caller gives none: the model's own, capped here.
pub const DEFAULT_CTX_CAP: u32 = 4096;

/// How to size a model's run state.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Context length per sequence; `None` = min(model's context, 4096), shrunk to fit the memory budget.
    pub ctx: Option<u32>,
    /// Sequences the KV cache holds at once.
    pub n_seqs: usize,
    /// Most tokens per forward pass.
    pub max_batch: usize,
    /// Most tokens whose logits one pass returns.
    pub max_logit_rows: usize,
    /// KV cache precision; `None` = the automatic rule ([`auto_kv_precision`]).
    pub kv_precision: Option<KvPrecision>,
    /// Bytes the model's weights plus run state may use; `None` = three quarters of physical memory.
    pub memory_budget: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            ctx: None,
            n_seqs: 1,
            max_batch: 512,
            max_logit_rows: 8,
            kv_precision: None,
            memory_budget: None,
        }
    }
}

/// The KV precision rule: F16 (half the memory and bandwidth, what llama.cpp uses) unless every matrix weight
/// of the model is F32, in which case the cache is F32 too so that an F32 model runs in full precision.
pub fn auto_kv_precision(file: &Gguf) -> KvPrecision {
    let all_f32 = file
        .tensors
        .iter()
        .filter(|t| t.dims.len() >= 2)
        .all(|t| t.ty == GgmlType::F32);
    if all_f32 {
        KvPrecision::F32
    } else {
        KvPrecision::F16
    }
}

/// Physical memory in bytes (Linux /proc/meminfo), or 8 GiB where unknown.
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

pub struct Model<B: Backend> {
    pub path: PathBuf,
    pub file: Arc<Gguf>,
    pub config: ArchConfig,
    pub tokenizer: Tokenizer,
    pub weights: Weights<B::Weight>,
    pub backend: B,
}

impl<B: Backend> Model<B> {
    /// Opens a GGUF file and loads it onto `backend`. `on_progress(done_bytes, total_bytes)` follows the weights.
    pub fn load(path: &Path, backend: B, on_progress: &mut dyn FnMut(u64, u64)) -> Result<Self> {
        let file = Arc::new(Gguf::open(path)?);
        let config = arch::config_from_gguf(&file)?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        if tokenizer.vocab_size() != config.vocab {
            return Err(EngineError::BadMetadata {
                key: "tokenizer.ggml.tokens".into(),
                value: tokenizer.vocab_size().to_string(),
                reason: format!("the token embedding has {} rows", config.vocab),
            });
        }
        let total: u64 = file.tensors.iter().map(|t| t.n_bytes).sum();
        backend.prepare_load(total)?;
        let mut done = 0u64;
        let weights = weights::load_weights(&file, &config, &backend, &mut |b| {
            done += b;
            on_progress(done, total);
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            config,
            tokenizer,
            weights,
            backend,
        })
    }

    /// Bytes of all tensors in the file.
    pub fn weight_bytes(&self) -> u64 {
        self.file.tensors.iter().map(|t| t.n_bytes).sum()
    }

    /// Resolves `opts` into a KV shape and batch limits, checking them against the model and the memory budget.
    pub fn plan(&self, opts: &RunOptions) -> Result<(KvShape, Limits)> {
        let c = &self.config;
        let precision = opts.kv_precision.unwrap_or_else(|| auto_kv_precision(&self.file));
        let budget = opts
            .memory_budget
            .or_else(|| self.backend.memory_budget())
            .unwrap_or(physical_memory() / 4 * 3);
        if opts.n_seqs == 0 || opts.n_seqs > 1024 {
            return Err(EngineError::BadSetting {
                name: "sequences",
                value: opts.n_seqs.to_string(),
                reason: "must be in 1..=1024".into(),
            });
        }
        if opts.max_batch == 0 || opts.max_logit_rows == 0 || opts.max_logit_rows > opts.max_batch {
            return Err(EngineError::BadSetting {
                name: "batch",
                value: format!("{} tokens, {} logit rows", opts.max_batch, opts.max_logit_rows),
                reason: "need 1 <= logit rows <= batch".into(),
            });
        }
        let shape_for = |n_ctx: u32| KvShape {
            n_layers: c.n_layers,
            n_seqs: opts.n_seqs,
            n_ctx: n_ctx as usize,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            precision,
        };
        let scratch = (opts.max_batch * (2 * c.d_model + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.d_ff)
            + opts.max_logit_rows * (c.d_model + c.vocab)) as u64
            * 4;
        let fixed = self.weight_bytes() + scratch;
        let n_ctx = match opts.ctx {
            Some(0) => {
                return Err(EngineError::BadSetting {
                    name: "ctx",
                    value: "0".into(),
                    reason: "must be >= 1".into(),
                })
            }
            Some(n) if n > c.max_context => {
                return Err(EngineError::BadSetting {
                    name: "ctx",
                    value: n.to_string(),
                    reason: format!("the model was trained for at most {} tokens", c.max_context),
                })
            }
            Some(n) => n,
            None => {
                // The default: as much of the capped context as the budget allows, at least 256.
                let per_token = shape_for(1).bytes();
                let room = budget.saturating_sub(fixed) / per_token.max(1);
                (c.max_context.min(DEFAULT_CTX_CAP) as u64).min(room).max(256) as u32
            }
        };
        let shape = shape_for(n_ctx);
        let need = fixed + shape.bytes();
        if need > budget {
            return Err(EngineError::OverBudget {
                what: format!("weights + {n_ctx}-token KV cache ({} sequences)", opts.n_seqs),
                need,
                budget,
            });
        }
        let limits = Limits {
            max_batch: opts.max_batch.min(n_ctx as usize),
            max_logit_rows: opts.max_logit_rows,
        };
        let limits = Limits {
            max_logit_rows: limits.max_logit_rows.min(limits.max_batch),
            ..limits
        };
        Ok((shape, limits))
    }

    /// Allocates run state for `opts`.
    pub fn new_state(&self, opts: &RunOptions) -> Result<DecoderState<B>> {
        let (shape, limits) = self.plan(opts)?;
        DecoderState::new(&self.backend, &self.config, limits, shape)
    }
}
