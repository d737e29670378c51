//! `quarrel bench`: prompt-processing (pp) and generation (tg) speed, like llama-bench, with md/json/csv output.

use crate::common::{cpu_backend, resolve, ModelArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use engine::model::Model;
use engine::{Backend, RunOptions, Session};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Md,
    Json,
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt lengths to test, comma-separated (0 = none).
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "512")]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test, comma-separated (0 = none).
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "128")]
    pub n_gen: Vec<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Md)]
    pub output: Format,
}

#[derive(Serialize)]
struct TestResult {
    model: String,
    model_filename: String,
    model_size: u64,
    model_n_params: u64,
    model_type: String,
    backend: String,
    device: String,
    n_threads: usize,
    simd: String,
    n_prompt: usize,
    n_gen: usize,
    n_ctx: u32,
    kv_type: String,
    avg_ns: u64,
    stddev_ns: u64,
    avg_ts: f64,
    stddev_ts: f64,
    samples_ns: Vec<u64>,
    samples_ts: Vec<f64>,
    cpu_info: String,
    gpu_info: String,
    build_commit: String,
    quarrel_version: String,
    test_time: String,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let path = resolve(args.model.model.as_deref())?;
    let backend = cpu_backend(&args.model)?;
    let n_threads = backend.n_threads();
    let simd = backend.simd().name().to_string();
    let model = Model::load(&path, backend, &mut |_, _| {}).with_context(|| format!("loading {}", path.display()))?;
    let mut tests: Vec<(usize, usize)> = Vec::new();
    tests.extend(args.n_prompt.iter().filter(|&&p| p > 0).map(|&p| (p, 0)));
    tests.extend(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)));
    if tests.is_empty() {
        bail!("nothing to measure: give a positive -p or -n");
    }
    let need = tests.iter().map(|&(p, n)| p + n).max().unwrap_or(1) as u32;
    let opts = RunOptions {
        ctx: Some(args.model.ctx.unwrap_or(need.max(512))),
        ..args.model.run_options()
    };
    let kv_precision = model.plan(&opts)?.0.precision;
    let mut session = Session::new(&model, &opts)?;
    let vocab = model.config.vocab as u32;
    let n_params: u64 = model.file.tensors.iter().map(|t| t.n_elements()).sum();
    let label = model
        .file
        .get("general.size_label")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let ftype = model
        .file
        .get("general.file_type")
        .and_then(|v| v.as_u64())
        .map(|v| format!(" ftype {v}"))
        .unwrap_or_default();
    let model_type = format!("{} {}{}", model.config.arch, label, ftype).trim().to_string();
    let mut results = Vec::new();
    let mut rng_state = 0x9e37_79b9_u32;
    let mut next_token = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        rng_state % vocab
    };
    for &(n_prompt, n_gen) in &tests {
        let mut samples_ns = Vec::new();
        // One warm-up run, then the measured repetitions.
        for rep in 0..=args.repetitions {
            session.clear(0)?;
            let t0 = Instant::now();
            if n_prompt > 0 {
                let prompt: Vec<u32> = (0..n_prompt).map(|_| next_token()).collect();
                session.prefill(0, &prompt)?;
            }
            let mut tok = next_token();
            for _ in 0..n_gen {
                let logits = session.decode_step(0, tok)?;
                tok = engine::sampling::argmax(logits);
            }
            let ns = t0.elapsed().as_nanos() as u64;
            if rep > 0 {
                samples_ns.push(ns);
            }
        }
        let n_tokens = (n_prompt + n_gen) as f64;
        let samples_ts: Vec<f64> = samples_ns.iter().map(|&ns| n_tokens * 1e9 / ns as f64).collect();
        let (avg_ts, stddev_ts) = mean_sd(&samples_ts);
        let (avg_ns, stddev_ns) = mean_sd(&samples_ns.iter().map(|&v| v as f64).collect::<Vec<_>>());
        results.push(TestResult {
            model: model
                .file
                .get("general.name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            model_filename: path.display().to_string(),
            model_size: model.weight_bytes(),
            model_n_params: n_params,
            model_type: model_type.clone(),
            backend: model.backend.name().to_string(),
            device: model.backend.device_info(),
            n_threads,
            simd: simd.clone(),
            n_prompt,
            n_gen,
            n_ctx: session.n_ctx(),
            kv_type: kv_precision.name().to_string(),
            avg_ns: avg_ns as u64,
            stddev_ns: stddev_ns as u64,
            avg_ts,
            stddev_ts,
            samples_ns,
            samples_ts,
            cpu_info: engine::backend::cpu::cpu_model_name(),
            gpu_info: String::new(),
            build_commit: option_env!("QUARREL_GIT_COMMIT").unwrap_or("unknown").to_string(),
            quarrel_version: env!("CARGO_PKG_VERSION").to_string(),
            test_time: format!("{:?}", std::time::SystemTime::now()),
        });
        if args.output == Format::Md && results.len() == 1 {
            println!("| model | size | params | backend | threads | test | t/s |");
            println!("| --- | ---: | ---: | --- | ---: | ---: | ---: |");
        }
        if args.output == Format::Md {
            let r = results.last().expect("just pushed");
            let test = if n_prompt > 0 {
                format!("pp{n_prompt}")
            } else {
                format!("tg{n_gen}")
            };
            println!(
                "| {} | {:.2} MiB | {:.2} M | {} | {} | {} | {:.2} ± {:.2} |",
                r.model_type,
                r.model_size as f64 / (1u64 << 20) as f64,
                r.model_n_params as f64 / 1e6,
                r.backend,
                r.n_threads,
                test,
                r.avg_ts,
                r.stddev_ts
            );
        }
    }
    match args.output {
        Format::Md => {}
        Format::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        Format::Csv => {
            println!("model_type,model_size,backend,n_threads,n_prompt,n_gen,avg_ts,stddev_ts");
            for r in &results {
                println!(
                    "\"{}\",{},{},{},{},{},{:.4},{:.4}",
                    r.model_type, r.model_size, r.backend, r.n_threads, r.n_prompt, r.n_gen, r.avg_ts, r.stddev_ts
                );
            }
        }
    }
    Ok(())
}
