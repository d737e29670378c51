//! Random-weight GGUF models in known shapes (`/work/shared/PRESETS.md`), so that speed can be measured where
//! real weights cannot travel. Same preset, quant and seed → a byte-identical file.
//!
//! Files are streamed: tensor data is generated in chunks (in parallel on rayon's pool, each chunk seeded from
//! its tensor and chunk index so the output does not depend on the thread count) and written in order.

mod fill;
mod plan;

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use gguf::{GgmlType, GgufError, GgufWriter, DEFAULT_ALIGNMENT};
use rayon::prelude::*;

pub use fill::{normal_quantile, BLOCK_SCALE, WEIGHT_STD};
pub use plan::{metadata, plan_tensors, spm_vocabulary, PlannedTensor, CONTEXT_LENGTH};

use fill::{chunk_seed, fill_chunk, NormalTable, Xoshiro256};

/// The tensor-type mix of a synthetic model (see PRESETS.md).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthQuant {
    /// Every 2-D weight F16.
    F16,
    /// Every 2-D weight Q8_0.
    Q8_0,
    /// Every 2-D weight Q4_K, except `ffn_down` and `output` in Q6_K.
    Q4_K,
    /// Every 2-D weight Q6_K.
    Q6_K,
}

impl SynthQuant {
    pub const ALL: [SynthQuant; 4] = [Self::F16, Self::Q8_0, Self::Q4_K, Self::Q6_K];

    /// The spelling used on the command line and in `general.name`: `f16`, `q8_0`, `q4_k`, `q6_k`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_K => "q4_k",
            Self::Q6_K => "q6_k",
        }
    }
}

impl fmt::Display for SynthQuant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SynthQuant {
    type Err = SynthError;

    /// Parses `f16`, `q8_0`, `q4_k`, `q6_k` (case-insensitive).
    fn from_str(name: &str) -> Result<Self, SynthError> {
        Self::ALL
            .into_iter()
            .find(|q| q.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| SynthError::UnknownQuant {
                name: name.to_owned(),
                valid: Self::ALL.map(SynthQuant::name).join(", "),
            })
    }
}

/// The shape of a synthetic model.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    /// GGUF `general.architecture`: `llama`, `qwen2` or `gemma3` (which adds Q/K norms, post-norms and
    /// sliding-window layers, as llama.cpp reads them from the architecture).
    pub arch: &'static str,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_ff: usize,
    pub vocab: usize,
    pub rope_theta: f32,
    /// No `output.weight`: the output projection is the token embedding.
    pub tied: bool,
    /// Q, K and V projections carry F32 biases (qwen2).
    pub qkv_bias: bool,
    /// NEOX-style RoPE (qwen2, gemma3; llama.cpp derives it from the architecture).
    pub neox: bool,
    /// The head size where it is not d_model / n_heads (gemma3: `attention.key_length`); 0 derives it.
    pub key_length: usize,
}

impl Preset {
    pub fn head_dim(&self) -> usize {
        match self.key_length {
            0 => self.d_model / self.n_heads.max(1),
            k => k,
        }
    }

    /// RMSNorm epsilon: 1e-6 for qwen2 and gemma3, 1e-5 otherwise.
    pub fn norm_eps(&self) -> f32 {
        if self.arch == "qwen2" || self.is_gemma3() {
            1e-6
        } else {
            1e-5
        }
    }

    /// Gemma 3's layer: Q/K norms, norms after attention and after the FFN, sliding-window layers.
    pub fn is_gemma3(&self) -> bool {
        self.arch == "gemma3"
    }
}

/// Window of gemma3's sliding-window layers (5 of every 6), as Gemma 3 270M has it.
pub const GEMMA3_SLIDING_WINDOW: u32 = 512;

const fn llama_preset(
    name: &'static str,
    [d_model, n_layers, n_heads, n_kv_heads, d_ff, vocab]: [usize; 6],
    rope_theta: f32,
    tied: bool,
) -> Preset {
    Preset {
        name,
        arch: "llama",
        d_model,
        n_layers,
        n_heads,
        n_kv_heads,
        d_ff,
        vocab,
        rope_theta,
        tied,
        qkv_bias: false,
        neox: false,
        key_length: 0,
    }
}

/// The PRESETS.md table, Gemma 3 270M's shape (head size 256), and `tiny` for tests.
static PRESETS: [Preset; 7] = [
    llama_preset("smollm2-135m", [576, 30, 9, 3, 1536, 49_152], 100_000.0, true),
    llama_preset("llama3-1b", [2048, 16, 32, 8, 8192, 128_256], 500_000.0, true),
    llama_preset("llama3-8b", [4096, 32, 32, 8, 14336, 128_256], 500_000.0, false),
    llama_preset("mistral-7b", [4096, 32, 32, 8, 14336, 32_000], 10_000.0, false),
    Preset {
        name: "qwen2.5-0.5b",
        arch: "qwen2",
        d_model: 896,
        n_layers: 24,
        n_heads: 14,
        n_kv_heads: 2,
        d_ff: 4864,
        vocab: 151_936,
        rope_theta: 1_000_000.0,
        tied: true,
        qkv_bias: true,
        neox: true,
        key_length: 0,
    },
    Preset {
        name: "gemma3-270m",
        arch: "gemma3",
        d_model: 640,
        n_layers: 18,
        n_heads: 4,
        n_kv_heads: 1,
        d_ff: 2048,
        vocab: 262_144,
        rope_theta: 1_000_000.0,
        tied: true,
        qkv_bias: false,
        neox: true,
        key_length: 256,
    },
    llama_preset("tiny", [64, 2, 4, 2, 128, 512], 10_000.0, false),
];

/// Every preset.
pub fn presets() -> &'static [Preset] {
    &PRESETS
}

/// The preset called `name`.
pub fn preset(name: &str) -> Result<&'static Preset, SynthError> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| SynthError::UnknownPreset {
            name: name.to_owned(),
            valid: PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
        })
}

/// What went wrong making a synthetic model.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown synthetic preset '{name}' (valid: {valid})")]
    UnknownPreset { name: String, valid: String },
    #[error("unknown synthetic quant '{name}' (valid: {valid})")]
    UnknownQuant { name: String, valid: String },
    #[error("preset '{preset}' is not a valid model: {reason}")]
    BadPreset { preset: String, reason: String },
    #[error("preset '{preset}' with {quant}: tensor '{tensor}' has rows of {row_len}, not a whole number of blocks of any fallback type")]
    RowNotBlockAligned {
        preset: String,
        tensor: String,
        row_len: usize,
        quant: SynthQuant,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Gguf {
        path: PathBuf,
        #[source]
        source: GgufError,
    },
}

/// Bytes of tensor data generated per task (rounded to whole blocks).
const CHUNK_BYTES: usize = 4 << 20;

/// One chunk of one tensor's data.
#[derive(Debug, Clone, Copy)]
struct ChunkJob {
    tensor_index: usize,
    chunk_index: usize,
    n_bytes: usize,
    /// This is the tensor's last chunk.
    last: bool,
}

fn chunk_jobs(tensors: &[PlannedTensor]) -> Result<Vec<ChunkJob>, GgufError> {
    let mut jobs = Vec::new();
    for (tensor_index, tensor) in tensors.iter().enumerate() {
        let n_bytes = tensor.spec.n_bytes()?;
        let block = tensor.spec.ty.block_bytes() as u64;
        let chunk = (CHUNK_BYTES as u64 / block).max(1) * block;
        let n_chunks = n_bytes.div_ceil(chunk).max(1);
        for chunk_index in 0..n_chunks {
            let start = chunk_index * chunk;
            jobs.push(ChunkJob {
                tensor_index,
                chunk_index: chunk_index as usize,
                n_bytes: (n_bytes - start).min(chunk) as usize,
                last: chunk_index + 1 == n_chunks,
            });
        }
    }
    Ok(jobs)
}

/// Writes the synthetic model `preset` in `quant` to `out` (through `out.partial`, renamed at the end) and
/// returns the file's size in bytes.
pub fn write_synth(preset: &Preset, quant: SynthQuant, seed: u64, out: &Path) -> Result<u64, SynthError> {
    let tensors = plan_tensors(preset, quant)?;
    let metadata = metadata(preset, quant);
    let partial = partial_path(out);
    let gguf_err = |source| SynthError::Gguf {
        path: partial.clone(),
        source,
    };
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| SynthError::Io { path, source }
    };

    let file = File::create(&partial).map_err(io_err(&partial))?;
    let specs: Vec<_> = tensors.iter().map(|t| t.spec.clone()).collect();
    let result = (|| {
        let mut writer = GgufWriter::new(
            BufWriter::with_capacity(1 << 20, file),
            &metadata,
            &specs,
            DEFAULT_ALIGNMENT,
        )
        .map_err(gguf_err)?;
        write_data(&mut writer, &tensors, seed).map_err(gguf_err)?;
        let n_bytes = writer.position();
        let buffered = writer.finish().map_err(gguf_err)?;
        let file = buffered.into_inner().map_err(|e| SynthError::Io {
            path: partial.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&partial))?;
        Ok(n_bytes)
    })();
    match result {
        Ok(n_bytes) => {
            std::fs::rename(&partial, out).map_err(io_err(out))?;
            Ok(n_bytes)
        }
        Err(e) => {
            // Best effort: the partial file is useless, and the error above is the one to report.
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Generates every tensor's data in parallel batches of chunks and streams it to `writer` in order; the next
/// batch is generated while the previous one is written.
fn write_data<W: Write + Send>(
    writer: &mut GgufWriter<W>,
    tensors: &[PlannedTensor],
    seed: u64,
) -> Result<(), GgufError> {
    let table = NormalTable::new();
    let jobs = chunk_jobs(tensors)?;
    let batch_len = (rayon::current_num_threads() * 2).max(2);
    let generate = |batch: &[ChunkJob], buffers: &mut Vec<Vec<u8>>| {
        buffers.resize_with(batch.len(), Vec::new);
        batch.par_iter().zip(buffers.par_iter_mut()).for_each(|(job, buffer)| {
            let tensor = &tensors[job.tensor_index];
            buffer.resize(job.n_bytes, 0);
            let mut rng = Xoshiro256::seed_from_u64(chunk_seed(seed, job.tensor_index, job.chunk_index));
            fill_chunk(tensor.fill, tensor.spec.ty, &table, &mut rng, buffer);
        });
    };
    let emit = |writer: &mut GgufWriter<W>, batch: &[ChunkJob], buffers: &[Vec<u8>]| {
        for (job, buffer) in batch.iter().zip(buffers) {
            writer.write_tensor_chunk(buffer)?;
            if job.last {
                writer.end_tensor()?;
            }
        }
        Ok::<_, GgufError>(())
    };

    let mut batches = jobs.chunks(batch_len);
    let (mut ready, mut next) = (Vec::new(), Vec::new());
    let Some(mut ready_batch) = batches.next() else {
        return Ok(());
    };
    generate(ready_batch, &mut ready);
    for next_batch in batches {
        let (written, ()) = rayon::join(|| emit(writer, ready_batch, &ready), || generate(next_batch, &mut next));
        written?;
        std::mem::swap(&mut ready, &mut next);
        ready_batch = next_batch;
    }
    emit(writer, ready_batch, &ready)
}

/// The storage type the `quant` mix gives a 2-D weight with rows of `row_len` (`down_or_output`: it is
/// `ffn_down` or `output`), after the K-quant fallback for rows that are not whole super-blocks.
pub fn weight_type(quant: SynthQuant, down_or_output: bool, row_len: usize) -> Option<GgmlType> {
    plan::weight_type(quant, down_or_output, row_len)
}

#[cfg(test)]
mod tests;
