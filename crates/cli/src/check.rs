//! `quarrel check`: determinism (alone and batched), parity with another backend (`--against DEVICE`), with
//! llama.cpp (`--against-llama-cpp`, through the `llama_cpp` Python module) or with a saved reference file
//! (`--reference`; `--write-reference` writes ours in the same format).

use crate::common::{load_any, Device, ModelArgs};
use anyhow::{bail, Context, Result};
use clap::Args;
use engine::check::{
    compare_full, compare_partial, determinism, greedy_batched, teacher_forced, validate_reference, DeterminismReport,
    ParityCase, RefCase, RefStep, Reference, REFERENCE_FORMAT,
};
use engine::{Backend, Model, RunOptions, Session};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompts (repeatable; default: four built-in ones). Determinism runs on the first; the others fill batches.
    #[arg(short, long)]
    pub prompt: Vec<String>,
    /// Tokens to generate greedily per prompt.
    #[arg(short = 'n', long = "n-gen", default_value_t = 32)]
    pub n_gen: usize,
    /// Runs of the prompt alone (the first is the reference).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Batch sizes at which the prompt runs together with other sequences.
    #[arg(long, value_delimiter = ',', default_value = "1,2,8")]
    pub batch_sizes: Vec<usize>,
    /// Skip the determinism check.
    #[arg(long)]
    pub no_determinism: bool,
    /// Compare greedy tokens and logits with the same model on another device.
    #[arg(long, value_enum)]
    pub against: Option<Device>,
    /// Compare with llama.cpp through the `llama_cpp` Python module (pip install llama-cpp-python).
    #[arg(long)]
    pub against_llama_cpp: bool,
    /// Compare with a reference file (format quarrel-reference/1, docs/MEASURING.md).
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,
    /// Write our greedy tokens and logits on the prompts as a reference file.
    #[arg(long, value_name = "FILE")]
    pub write_reference: Option<PathBuf>,
    /// Logits kept per step in written references.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Python interpreter for --against-llama-cpp.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

const DEFAULT_PROMPTS: &[&str] = &[
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea,",
    "1, 2, 3, 4, 5, 6, 7, 8,",
];

pub fn check(args: CheckArgs) -> Result<()> {
    if args.n_gen == 0 {
        bail!("--n-gen must be at least 1");
    }
    if let Some(&b) = args.batch_sizes.iter().find(|&&b| b == 0 || b > 64) {
        bail!("batch size {b} out of range 1..=64");
    }
    let reference = match &args.reference {
        Some(p) => Some(read_reference(p)?),
        None => None,
    };
    // The model on --device, and for --against the same file loaded again on that device: any pair of backends.
    let loaded = load_any(&args.model)?;
    let other = match args.against {
        Some(d) => Some(load_any(&ModelArgs {
            device: d,
            ..args.model.clone()
        })?),
        None => None,
    };
    crate::with_model!(loaded, model => match other {
        None => run::<_, engine::CpuBackend>(&model, None, reference, &args),
        Some(other) => crate::with_model!(other, b => run(&model, Some(&b), reference, &args)),
    })
}

fn read_reference(p: &Path) -> Result<Reference> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a {REFERENCE_FORMAT} file", p.display()))
}

fn prompts(args: &CheckArgs) -> Vec<String> {
    if args.prompt.is_empty() {
        DEFAULT_PROMPTS.iter().map(|s| s.to_string()).collect()
    } else {
        args.prompt.clone()
    }
}

fn session_opts(args: &CheckArgs, longest: usize, n_seqs: usize) -> RunOptions {
    let need = (longest + args.n_gen + 1) as u32;
    RunOptions {
        ctx: Some(args.model.ctx.unwrap_or(need.max(128))),
        n_seqs,
        max_logit_rows: n_seqs.max(8),
        ..args.model.run_options()
    }
}

fn encode_all<B: Backend>(model: &Model<B>, prompts: &[String]) -> Result<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    for p in prompts {
        let ids = model.tokenizer.encode(p, true, true)?;
        if ids.is_empty() {
            bail!("prompt {p:?} gives no token");
        }
        out.push(ids);
    }
    Ok(out)
}

/// Our greedy run on each prompt, as a reference.
fn our_reference<B: Backend>(model: &Model<B>, args: &CheckArgs, prompts: &[String]) -> Result<Reference> {
    let ids = encode_all(model, prompts)?;
    let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
    let mut s = Session::new(model, &session_opts(args, longest, 1))?;
    let mut cases = Vec::new();
    for (p, ids) in prompts.iter().zip(ids) {
        let t = greedy_batched(&mut s, std::slice::from_ref(&ids), args.n_gen, 0)?.swap_remove(0);
        cases.push(RefCase {
            prompt: p.clone(),
            prompt_ids: ids,
            greedy_ids: t.tokens,
            steps: t.logits.iter().map(|l| RefStep::from_logits(l, args.top_k)).collect(),
        });
    }
    Ok(Reference {
        format: REFERENCE_FORMAT.into(),
        producer: format!(
            "quarrel {} ({})",
            env!("CARGO_PKG_VERSION"),
            crate::sysinfo::build_commit()
        ),
        model: file_name(&model.path),
        n_vocab: model.config.vocab,
        top_k: args.top_k,
        cases,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Our logits along a reference's tokens, compared with its saved top-K.
fn against_reference<B: Backend>(model: &Model<B>, args: &CheckArgs, r: &Reference) -> Result<Vec<ParityCase>> {
    validate_reference(r, model.config.vocab).map_err(|e| anyhow::anyhow!("reference: {e}"))?;
    let longest = r
        .cases
        .iter()
        .map(|c| c.prompt_ids.len() + c.greedy_ids.len())
        .max()
        .unwrap_or(1);
    let opts = RunOptions {
        ctx: Some(args.model.ctx.unwrap_or((longest as u32 + 1).max(128))),
        ..session_opts(args, 1, 1)
    };
    let mut s = Session::new(model, &opts)?;
    let mut out = Vec::new();
    for c in &r.cases {
        let ours = model.tokenizer.encode(&c.prompt, true, true)?;
        let rows = teacher_forced(&mut s, &c.prompt_ids, &c.greedy_ids)?;
        let steps = c
            .steps
            .iter()
            .zip(&rows)
            .map(|(st, row)| compare_partial(st, row))
            .collect();
        out.push(ParityCase::new(
            &c.prompt,
            Some(ours == c.prompt_ids),
            &c.greedy_ids,
            &rows,
            steps,
        ));
    }
    Ok(out)
}

/// Another model (backend) along our greedy tokens, compared over the whole vocabulary.
fn against_model<A: Backend, B: Backend>(
    a: &Model<A>,
    b: &Model<B>,
    args: &CheckArgs,
    prompts: &[String],
) -> Result<Vec<ParityCase>> {
    let ids = encode_all(a, prompts)?;
    let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
    let mut sa = Session::new(a, &session_opts(args, longest, 1))?;
    let mut sb = Session::new(b, &session_opts(args, longest, 1))?;
    let mut out = Vec::new();
    for (p, ids) in prompts.iter().zip(&ids) {
        let t = greedy_batched(&mut sa, std::slice::from_ref(ids), args.n_gen, 0)?.swap_remove(0);
        let rows = teacher_forced(&mut sb, ids, &t.tokens)?;
        let steps = t.logits.iter().zip(&rows).map(|(x, y)| compare_full(x, y)).collect();
        let ids_b = b.tokenizer.encode(p, true, true)?;
        out.push(ParityCase::new(p, Some(&ids_b == ids), &t.tokens, &rows, steps));
    }
    Ok(out)
}

fn run<A: Backend, B: Backend>(
    model: &Model<A>,
    other: Option<&Model<B>>,
    reference: Option<Reference>,
    args: &CheckArgs,
) -> Result<()> {
    let prompts = prompts(args);
    let mut report = serde_json::Map::new();
    report.insert("model".into(), model.path.display().to_string().into());
    report.insert("backend".into(), model.backend.name().into());
    report.insert("n_gen".into(), args.n_gen.into());
    let mut failures = Vec::new();
    if !args.no_determinism {
        let ids = encode_all(model, &prompts)?;
        let max_bs = args.batch_sizes.iter().copied().max().unwrap_or(1).max(1);
        let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
        let mut s = Session::new(model, &session_opts(args, longest, max_bs))?;
        let mut fillers: Vec<Vec<u32>> = ids[1..].to_vec();
        if fillers.is_empty() {
            fillers = encode_all(
                model,
                &DEFAULT_PROMPTS[1..].iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )?;
        }
        let d = determinism(&mut s, &ids[0], &fillers, args.n_gen, args.repeats, &args.batch_sizes)?;
        if !args.json {
            print_determinism(&d, &prompts[0]);
        }
        if !d.passed {
            failures.push("determinism");
        }
        report.insert("determinism".into(), serde_json::to_value(&d)?);
    }
    let mut parity = |name: &str, label: String, cases: Vec<ParityCase>| -> Result<()> {
        let ok = cases.iter().all(|c| c.first_divergence.is_none());
        if !args.json {
            print_parity(&label, &cases);
        }
        if !ok {
            failures.push("parity");
        }
        report.insert(
            name.into(),
            serde_json::json!({"against": label, "passed": ok, "cases": cases}),
        );
        Ok(())
    };
    if let Some(b) = other {
        let label = format!("{} vs {}", model.backend.device_info(), b.backend.device_info());
        parity("backend_parity", label, against_model(model, b, args, &prompts)?)?;
    }
    if let Some(r) = &reference {
        let label = format!(
            "reference {} ({})",
            args.reference.as_deref().map(file_name).unwrap_or_default(),
            r.producer
        );
        parity("reference_parity", label, against_reference(model, args, r)?)?;
    }
    if args.against_llama_cpp {
        let r = crate::llama_py::llama_cpp_reference(
            &args.python,
            &model.path,
            &prompts,
            args.n_gen,
            args.top_k,
            args.model.threads,
        )?;
        let label = r.producer.clone();
        parity("llama_cpp_parity", label, against_reference(model, args, &r)?)?;
    }
    if let Some(p) = &args.write_reference {
        let r = our_reference(model, args, &prompts)?;
        std::fs::write(p, serde_json::to_string_pretty(&r)?).with_context(|| format!("writing {}", p.display()))?;
        if !args.json {
            println!(
                "wrote the greedy tokens and top-{} logits of {} prompts to {}",
                args.top_k,
                r.cases.len(),
                p.display()
            );
        }
        report.insert("wrote_reference".into(), p.display().to_string().into());
    }
    report.insert("passed".into(), failures.is_empty().into());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(report))?);
    }
    if !failures.is_empty() {
        bail!("check failed: {}", failures.join(", "));
    }
    Ok(())
}

fn print_determinism(d: &DeterminismReport, prompt: &str) {
    println!(
        "determinism: {:?} ({} tokens), {} greedy tokens",
        prompt, d.prompt_tokens, d.n_gen
    );
    for r in &d.runs {
        let verdict = match &r.first_divergence {
            None if r.bit_identical => "identical tokens, bit-identical logits".to_string(),
            None => format!("identical tokens, logits within {:.3e}", r.max_abs_logit_diff),
            Some(x) => match r.near_tie_margin {
                Some(m) => format!(
                    "parts at step {} at a near-tie: token {} alone, {} batched; alone's margin {m:.3e} within twice \
                     the logits' max |Δ| {:.3e} (batches take other kernels)",
                    x.step, x.expected, x.got, r.max_abs_logit_diff
                ),
                None => format!(
                    "DIVERGES at step {}: expected token {}, got {} (logits max |Δ| {:.3e} up to it)",
                    x.step, x.expected, x.got, r.max_abs_logit_diff
                ),
            },
        };
        println!("  {:<18} {verdict}", r.label);
    }
    println!("  {}", if d.passed { "PASS" } else { "FAIL" });
}

fn print_parity(label: &str, cases: &[ParityCase]) {
    println!("parity: {label}");
    println!("  | prompt | same ids | steps | first divergence | max |Δ logit| | mean KL | max KL | top-1 |");
    for c in cases {
        let p: String = c.prompt.chars().take(28).collect::<String>().replace('\n', "⏎");
        let div = c.first_divergence.as_ref().map_or("none".to_string(), |d| {
            format!("step {} ({} vs {})", d.step, d.expected, d.got)
        });
        let same = c.prompt_ids_equal.map_or("-", |b| if b { "yes" } else { "NO" });
        println!(
            "  | {p:?} | {same} | {} | {div} | {:.4} | {:.2e} | {:.2e} | {:.1} % |",
            c.n_steps,
            c.max_abs_diff,
            c.mean_kl,
            c.max_kl,
            100.0 * c.top1_agreement
        );
    }
    let ok = cases.iter().all(|c| c.first_divergence.is_none());
    println!("  {}", if ok { "PASS" } else { "FAIL" });
}
