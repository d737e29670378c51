//! Engine integration tests, one binary (it links once).

extern crate quarrel_engine as engine;

mod batching;
mod common;
mod cuda_kernels;
mod perplexity;
mod real_models;
