//! What several commands share: model flags, resolution, loading with a progress bar, device choice.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use engine::resolve::{resolve_model, ResolveOptions};
use engine::{CpuBackend, CpuConfig, CudaBackend, CudaConfig, KvPrecision, Model, RunOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    Cpu,
    Cuda,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KvType {
    F16,
    F32,
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a .gguf path, an Ollama name (`smollm2:135m`, `ns/model:tag`), or the default model when omitted.
    #[arg(short, long)]
    pub model: Option<String>,
    /// Worker threads (default: all logical CPUs).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Context length (default: the model's, capped at 4096 and by the memory budget).
    #[arg(long)]
    pub ctx: Option<u32>,
    /// Compute device.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,
    /// KV cache precision (default: f16, or f32 for all-F32 models).
    #[arg(long, value_enum)]
    pub kv_type: Option<KvType>,
    /// Memory budget for weights + run state, in MiB (default: 3/4 of physical memory).
    #[arg(long)]
    pub memory_budget_mib: Option<u64>,
    /// CUDA: start each kernel only after the previous one has ended (by default a kernel launches while its
    /// predecessor finishes, on sm_90 and later). For diagnosis and A/B timing.
    #[arg(long)]
    pub serial_launches: bool,
    /// CUDA: prompt attention through cuBLAS GEMMs and a softmax kernel instead of the flash-attention kernel. For
    /// A/B timing.
    #[arg(long)]
    pub gemm_attention: bool,
    /// CUDA: quantized weights always take 8-bit activations, as llama.cpp's CUDA products do (by default
    /// single-token products of short Q8_0 rows take f32 activations: fewer launches a decode step).
    #[arg(long)]
    pub int8_activations: bool,
}

impl ModelArgs {
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            ctx: self.ctx,
            kv_precision: self.kv_type.map(|k| match k {
                KvType::F16 => KvPrecision::F16,
                KvType::F32 => KvPrecision::F32,
            }),
            memory_budget: self.memory_budget_mib.map(|m| m << 20),
            ..RunOptions::default()
        }
    }
}

/// Where models are cached: `$XDG_CACHE_HOME/quarrel/models` or `~/.cache/quarrel/models`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("quarrel").join("models")
}

pub fn resolve_options() -> ResolveOptions {
    let ollama_models = std::env::var_os("OLLAMA_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ollama").join("models")));
    ResolveOptions {
        ollama_models,
        cache_dir: cache_dir(),
    }
}

pub fn resolve(spec: Option<&str>) -> Result<PathBuf> {
    Ok(resolve_model(spec, &resolve_options())?)
}

/// A model loaded on whichever backend `--device` chose.
pub enum Loaded {
    Cpu(Box<Model<CpuBackend>>),
    Cuda(Box<Model<CudaBackend>>),
}

/// Runs `$body` with `$m` bound to the loaded model, whatever its backend (`$body` is generic code).
#[macro_export]
macro_rules! with_model {
    ($loaded:expr, $m:ident => $body:expr) => {
        match $loaded {
            $crate::common::Loaded::Cpu(boxed) => {
                let $m = *boxed;
                $body
            }
            $crate::common::Loaded::Cuda(boxed) => {
                let $m = *boxed;
                $body
            }
        }
    };
}

/// Where compiled CUDA kernels are cached: next to the models, under `kernels/`.
pub fn kernel_cache_dir() -> PathBuf {
    cache_dir().with_file_name("kernels")
}

pub fn cpu_backend(args: &ModelArgs) -> Result<CpuBackend> {
    Ok(CpuBackend::new(CpuConfig {
        n_threads: args.threads,
        simd: None,
    })?)
}

/// The CUDA backend on the first GPU, with the CUDA switches of `args`.
pub fn cuda_backend(args: &ModelArgs) -> Result<CudaBackend> {
    let be = CudaBackend::new(CudaConfig {
        ordinal: 0,
        kernel_cache: Some(kernel_cache_dir()),
        dependent_launch: !args.serial_launches,
        gemm_prompt_attention: args.gemm_attention,
        int8_activations: args.int8_activations,
    })?;
    tracing::info!(
        "CUDA kernels {}",
        if be.kernels_cached {
            "read from the cache"
        } else {
            "compiled"
        }
    );
    Ok(be)
}

/// The device `--device` resolves to: `auto` is CUDA when its libraries load and a GPU is present, else the CPU.
pub fn choose_device(requested: Device) -> Device {
    match requested {
        Device::Auto => match engine::backend::cuda::probe_libraries() {
            Ok(()) => Device::Cuda,
            Err(e) => {
                tracing::info!("--device auto: using the CPU ({e})");
                Device::Cpu
            }
        },
        d => d,
    }
}

/// Resolves and loads the model on the device `--device` chose, with a progress bar on stderr. With `auto`, a GPU
/// that fails to start (no device, no memory) falls back to the CPU with a warning.
pub fn load_any(args: &ModelArgs) -> Result<Loaded> {
    let path = resolve(args.model.as_deref())?;
    let device = choose_device(args.device);
    if device == Device::Cuda {
        match cuda_backend(args).and_then(|be| load_on(&path, be)) {
            Ok(m) => return Ok(Loaded::Cuda(Box::new(m))),
            Err(e) if args.device == Device::Auto => tracing::warn!("CUDA unavailable, using the CPU: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    Ok(Loaded::Cpu(Box::new(load_on(&path, cpu_backend(args)?)?)))
}

/// Loads `path` onto `backend` with a progress bar.
pub fn load_on<B: engine::Backend>(path: &std::path::Path, backend: B) -> Result<Model<B>> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("loading {msg} {bar:30} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(
        path.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let model = Model::load(path, backend, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .with_context(|| format!("loading {}", path.display()))?;
    bar.finish_and_clear();
    tracing::info!(
        "loaded {} ({}, {} layers) on {}",
        path.display(),
        model.config.arch,
        model.config.n_layers,
        engine::Backend::device_info(&model.backend)
    );
    Ok(model)
}
