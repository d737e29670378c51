//! Engine integration tests, one binary (it links once).

mod batching;
mod common;
mod real_models;
