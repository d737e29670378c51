//! The engine: GGUF bytes to tokens.
