//! `quarrel eval`: greedy generation for each task's prompt, scored against its references (BLEU, chrF,
//! ROUGE-L as `quarrel score` computes them), per task (BLEU as sacrebleu's sentence_bleu) and over all tasks.

use crate::common::{load_any, ModelArgs};
use crate::score::parse_metrics;
use anyhow::{bail, Context, Result};
use clap::Args;
use engine::{Backend, Model, Sampler, SamplerConfig, Session};
use indicatif::{ProgressBar, ProgressStyle};
use metrics::Metric;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tasks, JSONL: one object per line with `prompt`, `references` (a string or an array of strings) and
    /// optionally `max_tokens`, `stop` (strings that end the output) and `id`.
    #[arg(long)]
    pub tasks: PathBuf,
    /// Metrics, comma-separated: bleu, rouge-l, chrf.
    #[arg(long, value_delimiter = ',', default_value = "bleu,rouge-l,chrf")]
    pub metric: Vec<String>,
    /// Tokens to generate when a task gives no max_tokens.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 64)]
    pub max_tokens: usize,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Task {
    #[serde(default)]
    id: Option<serde_json::Value>,
    prompt: String,
    #[serde(alias = "reference", alias = "refs")]
    references: OneOrMany,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    stop: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

fn read_tasks(path: &PathBuf) -> Result<Vec<Task>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let t: Task = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: expected {{\"prompt\": …, \"references\": […]}}",
                path.display(),
                i + 1
            )
        })?;
        if matches!(&t.references, OneOrMany::Many(v) if v.is_empty()) {
            bail!("{} line {}: no reference", path.display(), i + 1);
        }
        tasks.push(t);
    }
    if tasks.is_empty() {
        bail!("{} holds no task", path.display());
    }
    Ok(tasks)
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let metrics = parse_metrics(&args.metric)?;
    let tasks = read_tasks(&args.tasks)?;
    let loaded = load_any(&args.model)?;
    crate::with_model!(loaded, model => run(&model, &args, &metrics, tasks))
}

/// Cuts `text` at the first of `stop`.
fn apply_stop(text: &str, stop: &[String]) -> String {
    let cut = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
        .unwrap_or(text.len());
    text[..cut].to_string()
}

fn run<B: Backend>(model: &Model<B>, args: &EvalArgs, metrics: &[Metric], tasks: Vec<Task>) -> Result<()> {
    let mut session = Session::new(model, &args.model.run_options())?;
    let bar = ProgressBar::new(tasks.len() as u64).with_style(
        ProgressStyle::with_template("task {pos}/{len} {bar:30} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    let (mut hyps, mut refs) = (Vec::new(), Vec::new());
    let t_all = Instant::now();
    for (i, task) in tasks.into_iter().enumerate() {
        let ids = model.tokenizer.encode(&task.prompt, true, true)?;
        if ids.is_empty() {
            bail!("task {}: the prompt is empty and the model adds no BOS token", i + 1);
        }
        let room = (session.n_ctx() as usize).saturating_sub(ids.len());
        if room == 0 {
            bail!(
                "task {}: prompt of {} tokens does not fit the context of {}",
                i + 1,
                ids.len(),
                session.n_ctx()
            );
        }
        let n = task.max_tokens.unwrap_or(args.max_tokens).min(room);
        let mut sampler = Sampler::new(SamplerConfig::greedy())?;
        let mut out = Vec::new();
        let t0 = Instant::now();
        session.clear(0)?;
        let stats = session.generate(0, &ids, n, &mut sampler, &mut |t| {
            out.push(t);
            true
        })?;
        let secs = t0.elapsed().as_secs_f64();
        let text = apply_stop(&model.tokenizer.decode(&out), &task.stop);
        let task_refs = task.references.into_vec();
        let mut scores = serde_json::Map::new();
        for m in metrics {
            // Per task, BLEU is sacrebleu's sentence_bleu (effective order: a short exact answer scores 100).
            let v = match m {
                Metric::Bleu => metrics::sentence_bleu(&text, &task_refs)?.score,
                _ => m.score(&[&text], std::slice::from_ref(&task_refs))?,
            };
            scores.insert(m.key().into(), v.into());
        }
        rows.push(serde_json::json!({
            "id": task.id.unwrap_or_else(|| (i + 1).into()),
            "prompt": task.prompt,
            "output": text,
            "references": task_refs,
            "generated_tokens": stats.generated_tokens,
            "seconds": secs,
            "scores": scores,
        }));
        hyps.push(text);
        refs.push(task_refs);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut agg = serde_json::Map::new();
    for m in metrics {
        agg.insert(m.key().into(), m.score(&hyps, &refs)?.into());
    }
    agg.insert("n_tasks".into(), hyps.len().into());
    agg.insert("seconds".into(), t_all.elapsed().as_secs_f64().into());
    if args.json {
        let v = serde_json::json!({
            "model": model.path.display().to_string(),
            "backend": model.backend.name(),
            "tasks": rows,
            "aggregate": agg,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let keys: Vec<&str> = metrics.iter().map(|m| m.key()).collect();
    println!("| task | tokens | {} | output |", keys.join(" | "));
    println!("| --- | ---: |{} --- |", " ---: |".repeat(keys.len()));
    for r in &rows {
        let out: String = r["output"].as_str().unwrap_or("").trim().chars().take(60).collect();
        let vals: Vec<String> = keys
            .iter()
            .map(|k| format!("{:.4}", r["scores"][k].as_f64().unwrap_or(0.0)))
            .collect();
        println!(
            "| {} | {} | {} | {} |",
            r["id"].to_string().trim_matches('"'),
            r["generated_tokens"],
            vals.join(" | "),
            out.replace('|', "\\|").replace('\n', "⏎")
        );
    }
    let vals: Vec<String> = keys
        .iter()
        .map(|k| format!("{k} {:.4}", agg[*k].as_f64().unwrap_or(0.0)))
        .collect();
    println!();
    println!(
        "all {} tasks: {}  (BLEU and chrF over the corpus, 0-100; ROUGE-L mean F, 0-1)",
        rows.len(),
        vals.join(", ")
    );
    Ok(())
}
