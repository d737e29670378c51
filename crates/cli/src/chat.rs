//! `quarrel chat`: interactive chat through the model's chat template, streaming replies. Each turn re-renders
//! the whole conversation; the session reuses the KV cache for the part it already holds.

use crate::common::{load_any, ModelArgs};
use crate::run::SamplingArgs;
use anyhow::{bail, Result};
use clap::Args;
use engine::{Backend, Model, Sampler, Session};
use std::io::{BufRead, IsTerminal, Write};
use tokenizer::{ChatMessage, ChatTemplate, StreamDecoder};

#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A system prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn chat(args: ChatArgs) -> Result<()> {
    let mut sampler = args.sampling.sampler()?;
    crate::with_model!(load_any(&args.model)?, model => converse(&model, &args, &mut sampler))
}

fn converse<B: Backend>(model: &Model<B>, args: &ChatArgs, sampler: &mut Sampler) -> Result<()> {
    let tok = &model.tokenizer;
    // The model's own template; Gemma 3 GGUFs often carry none, and then Google's published one applies.
    let source = match (tok.chat_template(), model.config.arch.as_str()) {
        (Some(s), _) => s,
        (None, "gemma3") => tokenizer::GEMMA3_CHAT_TEMPLATE,
        (None, _) => {
            bail!("the model has no chat template (tokenizer.chat_template); use `quarrel run` for raw completion")
        }
    };
    let piece = |id: Option<u32>| id.and_then(|i| tok.token_str(i)).unwrap_or_default().to_string();
    let template = ChatTemplate::new(source, &piece(tok.bos()), &piece(tok.eos()))?;
    let mut session = Session::new(model, &args.model.run_options())?;
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
        });
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chatting with {} — /clear starts over, /exit or Ctrl-D quits",
            model.path.display()
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/clear" => {
                messages.retain(|m: &ChatMessage| m.role == "system");
                session.clear(0)?;
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: line,
        });
        let text = template.render(&messages, true)?;
        let mut ids = Vec::new();
        if tok.add_bos() {
            if let Some(bos) = tok.bos() {
                if !text.starts_with(&piece(Some(bos))) {
                    ids.push(bos);
                }
            }
        }
        ids.extend(tok.encode(&text, false, true)?);
        if ids.len() >= session.n_ctx() as usize {
            bail!(
                "the conversation ({} tokens) no longer fits the context of {} tokens",
                ids.len(),
                session.n_ctx()
            );
        }
        let room = session.n_ctx() as usize - ids.len();
        let mut out = std::io::stdout().lock();
        let mut decoder = StreamDecoder::new(tok);
        let mut reply = String::new();
        session.generate(0, &ids, args.n_predict.min(room), sampler, &mut |t| {
            let s = decoder.feed(t);
            reply.push_str(&s);
            out.write_all(s.as_bytes()).and_then(|_| out.flush()).is_ok()
        })?;
        let rest = decoder.finish();
        reply.push_str(&rest);
        writeln!(out, "{rest}")?;
        messages.push(ChatMessage {
            role: "assistant".into(),
            content: reply,
        });
    }
    Ok(())
}
