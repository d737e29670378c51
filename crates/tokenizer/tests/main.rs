//! Integration tests, one binary (see DESIGN.md): llama.cpp fixtures for both real models and for variants of
//! their metadata, chat templates against jinja2's renderings, streaming, and malformed metadata.

#[path = "suite/chat.rs"]
mod chat;
#[path = "suite/common.rs"]
mod common;
#[path = "suite/errors.rs"]
mod errors;
#[path = "suite/fixtures.rs"]
mod fixtures;
#[path = "suite/stream.rs"]
mod stream;
