//! The engine: GGUF bytes to tokens. A model is data ([`model::config::ArchConfig`]) fed to one decoder
//! ([`model::decoder::forward`]) that runs on a [`backend::Backend`].

pub mod backend;
pub mod batch;
pub mod check;
pub mod error;
pub mod greedy_chain;
pub mod kl;
pub mod model;
pub mod perplexity;
pub mod resolve;
pub mod sampling;
pub mod session;
pub mod synth;

pub use backend::cpu::{CpuBackend, CpuConfig};
pub use backend::cuda::{CudaBackend, CudaConfig};
pub use backend::{Backend, KvPrecision};
pub use batch::Batch;
pub use error::{EngineError, Result};
pub use model::{Model, RunOptions};
pub use sampling::{Sampler, SamplerConfig};
pub use session::{GenerationStats, Session, StopReason};
