//! `quarrel tokenize`: token ids as llama.cpp's llama-tokenize prints them by default.

use crate::common::resolve;
use anyhow::{Context, Result};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct TokenizeArgs {
    /// Model path or name (default model when omitted).
    #[arg(short, long)]
    pub model: Option<String>,
    /// Print a JSON array instead of one `id -> 'piece'` line per token.
    #[arg(long)]
    pub json: bool,
    /// Print only the ids, as a list like llama-tokenize --ids.
    #[arg(long)]
    pub ids: bool,
    /// Do not add BOS/EOS even where the model's metadata asks for them.
    #[arg(long)]
    pub no_bos: bool,
    /// Treat special-token text such as `<|im_start|>` as plain text.
    #[arg(long)]
    pub no_parse_special: bool,
    /// The text to tokenize.
    pub text: String,
}

pub fn tokenize(args: TokenizeArgs) -> Result<()> {
    let path = resolve(args.model.as_deref())?;
    let file = gguf::Gguf::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let tok = tokenizer::Tokenizer::from_gguf(&file).with_context(|| format!("tokenizer of {}", path.display()))?;
    let ids = tok.encode(&args.text, !args.no_bos, !args.no_parse_special)?;
    if args.json {
        println!("{}", serde_json::to_string(&ids)?);
    } else if args.ids {
        println!("{ids:?}");
    } else {
        for id in ids {
            println!("{id:>6} -> '{}'", String::from_utf8_lossy(tok.token_bytes(id)));
        }
    }
    Ok(())
}
