//! `quarrel dump`: every intermediate tensor of a prompt's forward pass (and of a few greedy steps after it), named
//! as llama.cpp's graph names them, in the file format of `dev/llama-ref/llama_dump`, so that
//! `scripts/compare-dumps.py` can find the first op where the two engines part.
//!
//! Record: `u32 step` (0 = the prompt, then one per greedy step), `u32 name length`, the name, `i64 ne[4]` (element
//! count, 1, 1, 1), `f32 values` (little endian). The CPU backend only: a GPU replays decode steps from a captured
//! graph, whose buffers cannot be read in the middle.

use crate::common::{Device, ModelArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Args, Debug, Clone)]
pub struct DumpArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (BOS as the model's metadata says, special tokens parsed).
    #[arg(short, long, conflicts_with = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from this file instead (byte for byte: a trailing newline stays).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Greedy steps to take (and dump) after the prompt.
    #[arg(long, default_value_t = 0)]
    pub steps: usize,
    /// Where to write the tensors.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn dump(args: DumpArgs) -> Result<()> {
    if matches!(args.model.device, Device::Cuda) {
        bail!("dump runs on the CPU backend only (--device cpu)");
    }
    let prompt = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        (None, None) => bail!("give the prompt with --prompt or --file"),
    };
    let margs = ModelArgs {
        device: Device::Cpu,
        ..args.model.clone()
    };
    let model = match crate::common::load_any(&margs)? {
        crate::common::Loaded::Cpu(m) => *m,
        crate::common::Loaded::Cuda(_) => bail!("dump runs on the CPU backend only"),
    };
    let file = std::fs::File::create(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(file)));
    let step = Arc::new(AtomicU32::new(0));
    let failed: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    let (o, s, f) = (out.clone(), step.clone(), failed.clone());
    let mut session = engine::Session::new(&model, &margs.run_options())?;
    session.set_tap(Some(Box::new(move |name: &str, values: &[f32]| {
        let mut w = o.lock().unwrap_or_else(|e| e.into_inner());
        let mut record = Vec::with_capacity(8 + name.len() + 32 + 4 * values.len());
        record.extend_from_slice(&s.load(Ordering::Relaxed).to_le_bytes());
        record.extend_from_slice(&(name.len() as u32).to_le_bytes());
        record.extend_from_slice(name.as_bytes());
        for n in [values.len() as i64, 1, 1, 1] {
            record.extend_from_slice(&n.to_le_bytes());
        }
        values.iter().for_each(|v| record.extend_from_slice(&v.to_le_bytes()));
        if let Err(e) = w.write_all(&record) {
            f.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
        }
    })));
    let ids = model.tokenizer.encode(&prompt, true, true)?;
    let mut next = engine::sampling::argmax(session.prefill(0, &ids)?);
    let mut tokens = vec![next];
    for _ in 0..args.steps {
        step.fetch_add(1, Ordering::Relaxed);
        next = engine::sampling::argmax(session.decode_step(0, next)?);
        tokens.push(next);
    }
    session.set_tap(None);
    if let Some(e) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e).with_context(|| format!("writing {}", args.output.display()));
    }
    out.lock()
        .unwrap_or_else(|e| e.into_inner())
        .flush()
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "{} prompt tokens, greedy tokens {tokens:?}: tensors in {}",
        ids.len(),
        args.output.display()
    );
    Ok(())
}
