//! `quarrel bench`: prompt-processing (pp) and generation (tg) speed, like llama-bench, as a sweep over models,
//! devices, thread counts, prompt and generation lengths; warm-up runs, repetitions, mean ± sd, min/max, system
//! and build information; md/json/csv output and an optional plot.

use crate::common::{load_any, Device, KvType, ModelArgs};
use crate::sysinfo::SystemInfo;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use engine::model::Model;
use engine::{Backend, Batch, RunOptions, Session};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Md,
    Json,
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Models, comma-separated (.gguf paths or Ollama names; default: the default model).
    #[arg(short, long, value_delimiter = ',')]
    pub model: Vec<String>,
    /// Worker thread counts, comma-separated (0 = all logical CPUs).
    #[arg(short = 't', long, value_delimiter = ',', default_value = "0")]
    pub threads: Vec<usize>,
    /// Devices, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "auto")]
    pub device: Vec<Device>,
    /// CUDA: start each kernel only after the previous one has ended (see `run --serial-launches`).
    #[arg(long)]
    pub serial_launches: bool,
    /// CUDA: prompt attention through cuBLAS GEMMs instead of the flash-attention kernel (see `run
    /// --gemm-attention`).
    #[arg(long)]
    pub gemm_attention: bool,
    /// CUDA: quantized weights always take 8-bit activations (see `run --int8-activations`).
    #[arg(long)]
    pub int8_activations: bool,
    /// Context length (default: the longest test, at least 512).
    #[arg(long)]
    pub ctx: Option<u32>,
    /// KV cache precision (default: f16, or f32 for all-F32 models).
    #[arg(long, value_enum)]
    pub kv_type: Option<KvType>,
    /// Memory budget for weights + run state, in MiB.
    #[arg(long)]
    pub memory_budget_mib: Option<u64>,
    /// Prompt lengths to test, comma-separated (0 = none).
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "512")]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test, comma-separated (0 = none).
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "128")]
    pub n_gen: Vec<usize>,
    /// Measured repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Unmeasured warm-up runs before each test.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Sequences decoding together in tests that generate (as llama-batched-bench does): each holds its own
    /// prompt, and each generation step is one batch of a token of every sequence. tok/s counts every sequence's
    /// tokens.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Md)]
    pub output: Format,
    /// Also draw tok/s per configuration with ± sd error bars (.svg or .png).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// One test's result. The fields up to `samples_ts` mirror llama-bench's JSON; the rest are ours.
#[derive(Serialize, Clone, Debug)]
pub struct TestResult {
    pub model: String,
    pub model_filename: String,
    pub model_size: u64,
    pub model_n_params: u64,
    pub model_type: String,
    pub backend: String,
    pub device: String,
    pub n_threads: usize,
    pub simd: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Sequences decoding together (`--parallel`; 1 in tests that only take a prompt).
    pub n_parallel: usize,
    pub n_ctx: u32,
    pub kv_type: String,
    pub avg_ns: u64,
    pub stddev_ns: u64,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ns: Vec<u64>,
    pub samples_ts: Vec<f64>,
    pub min_ts: f64,
    pub max_ts: f64,
    pub warmup: usize,
    pub repetitions: usize,
    pub test_time: String,
    #[serde(flatten)]
    pub system: SystemInfo,
}

impl TestResult {
    pub fn test_name(&self) -> String {
        test_name(self.n_prompt as u64, self.n_gen as u64, self.n_parallel as u64)
    }
}

/// A test's name as llama-bench spells it (`pp512`, `tg128`, `pp512+tg128`), with ` xN` for N sequences decoding
/// together.
pub fn test_name(n_prompt: u64, n_gen: u64, n_parallel: u64) -> String {
    let name = match (n_prompt, n_gen) {
        (p, 0) => format!("pp{p}"),
        (0, n) => format!("tg{n}"),
        (p, n) => format!("pp{p}+tg{n}"),
    };
    match n_parallel {
        0 | 1 => name,
        n => format!("{name} x{n}"),
    }
}

pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// RFC 3339 UTC time of now, as llama-bench writes `test_time`.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    let mut tests: Vec<(usize, usize)> = Vec::new();
    tests.extend(args.n_prompt.iter().filter(|&&p| p > 0).map(|&p| (p, 0)));
    tests.extend(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)));
    if tests.is_empty() {
        bail!("nothing to measure: give a positive -p or -n");
    }
    if let Some(p) = &args.plot {
        crate::plot::check_plot_path(p)?;
    }
    let models: Vec<Option<String>> = if args.model.is_empty() {
        vec![None]
    } else {
        args.model.iter().map(|m| Some(m.clone())).collect()
    };
    let system = crate::sysinfo::collect();
    let mut results = Vec::new();
    let mut printed_header = false;
    for model in &models {
        for &device in &args.device {
            for &threads in &args.threads {
                let margs = ModelArgs {
                    model: model.clone(),
                    threads,
                    ctx: args.ctx,
                    device,
                    kv_type: args.kv_type,
                    memory_budget_mib: args.memory_budget_mib,
                    serial_launches: args.serial_launches,
                    gemm_attention: args.gemm_attention,
                    int8_activations: args.int8_activations,
                };
                let loaded = load_any(&margs)?;
                let n_threads = if threads == 0 {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                } else {
                    threads
                };
                let rows = crate::with_model!(loaded, m => bench_model(&m, &margs, &args, &tests, n_threads, &system))?;
                for r in rows {
                    if args.output == Format::Md {
                        if !printed_header {
                            println!("| model | size | params | backend | threads | test | t/s | min | max |");
                            println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
                            printed_header = true;
                        }
                        println!(
                            "| {} | {:.2} MiB | {:.2} M | {} | {} | {} | {:.2} ± {:.2} | {:.2} | {:.2} |",
                            r.model_type,
                            r.model_size as f64 / (1u64 << 20) as f64,
                            r.model_n_params as f64 / 1e6,
                            r.backend,
                            r.n_threads,
                            r.test_name(),
                            r.avg_ts,
                            r.stddev_ts,
                            r.min_ts,
                            r.max_ts
                        );
                    }
                    results.push(r);
                }
            }
        }
    }
    match args.output {
        Format::Md => {
            let s = &system;
            println!();
            println!(
                "{} ({} logical / {} physical CPUs; {}), {:.1} GiB RAM, GPU {}, {}; quarrel {} ({}); {} warm-up + {} runs each",
                s.cpu_info,
                s.n_cpus_logical,
                s.n_cpus_physical,
                s.cpu_flags.join(" "),
                s.ram_bytes as f64 / (1u64 << 30) as f64,
                s.gpu_info,
                s.os,
                s.quarrel_version,
                s.build_commit,
                args.warmup,
                args.repetitions
            );
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        Format::Csv => {
            println!("model_type,model_size,backend,device,n_threads,n_prompt,n_gen,avg_ts,stddev_ts,min_ts,max_ts");
            for r in &results {
                println!(
                    "\"{}\",{},{},\"{}\",{},{},{},{:.4},{:.4},{:.4},{:.4}",
                    r.model_type.replace('"', "'"),
                    r.model_size,
                    r.backend,
                    r.device.replace('"', "'"),
                    r.n_threads,
                    r.n_prompt,
                    r.n_gen,
                    r.avg_ts,
                    r.stddev_ts,
                    r.min_ts,
                    r.max_ts
                );
            }
        }
    }
    if let Some(p) = &args.plot {
        let cats: Vec<String> = results
            .iter()
            .map(|r| format!("{} {} t{}", short_model(&r.model_filename), r.test_name(), r.n_threads))
            .collect();
        let series = crate::plot::Series {
            name: format!("quarrel {}", system.build_commit),
            values: results.iter().map(|r| Some((r.avg_ts, r.stddev_ts))).collect(),
        };
        crate::plot::bar_chart(p, "quarrel bench: tokens per second (mean ± sd)", &cats, &[series])?;
        eprintln!("plot written to {}", p.display());
    }
    Ok(())
}

/// A model file's name without directory and `.gguf`.
pub fn short_model(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".gguf").unwrap_or(base).to_string()
}

fn bench_model<B: Backend>(
    model: &Model<B>,
    margs: &ModelArgs,
    args: &BenchArgs,
    tests: &[(usize, usize)],
    n_threads: usize,
    system: &SystemInfo,
) -> Result<Vec<TestResult>> {
    let need = tests.iter().map(|&(p, n)| p + n).max().unwrap_or(1) as u32;
    let parallel = args.parallel as usize;
    let opts = RunOptions {
        ctx: Some(args.ctx.unwrap_or(need.max(512))),
        n_seqs: parallel,
        ..margs.run_options()
    };
    let kv_precision = model.plan(&opts)?.0.precision;
    let mut session = Session::new(model, &opts)?;
    let vocab = model.config.vocab as u32;
    let n_params: u64 = model.file.tensors.iter().map(|t| t.n_elements()).sum();
    let meta = |k: &str| model.file.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let ftype = model
        .file
        .get("general.file_type")
        .and_then(|v| v.as_u64())
        .map(|v| format!(" ftype {v}"))
        .unwrap_or_default();
    let model_type = format!("{} {}{}", model.config.arch, meta("general.size_label"), ftype)
        .trim()
        .to_string();
    let device = model.backend.device_info();
    // The SIMD level the CPU backend reports in its device string, "model (N threads, simd)"; none on a GPU.
    let simd = match model.backend.name() {
        "cpu" => device
            .rsplit_once(", ")
            .map(|(_, s)| s.trim_end_matches(')').to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut rng_state = 0x9e37_79b9_u32;
    let mut next_token = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        rng_state % vocab
    };
    let mut results = Vec::new();
    for &(n_prompt, n_gen) in tests {
        // Prompt-only tests run one sequence.
        let n_seqs = if n_gen == 0 { 1 } else { parallel };
        let mut samples_ns = Vec::new();
        for rep in 0..args.warmup + args.repetitions {
            for seq in 0..n_seqs as u32 {
                session.clear(seq)?;
            }
            let t0 = Instant::now();
            if n_seqs == 1 {
                if n_prompt > 0 {
                    let prompt: Vec<u32> = (0..n_prompt).map(|_| next_token()).collect();
                    session.prefill(0, &prompt)?;
                }
                // Greedy generation as `run --temp 0` does it (on a GPU, each step queued before the last pick
                // is read).
                session.decode_greedy(0, next_token(), n_gen, &mut |_| true)?;
            } else {
                decode_together(&mut session, n_seqs, n_prompt, n_gen, &mut next_token)?;
            }
            let ns = t0.elapsed().as_nanos() as u64;
            if rep >= args.warmup {
                samples_ns.push(ns.max(1));
            }
        }
        let n_tokens = (n_seqs * (n_prompt + n_gen)) as f64;
        let samples_ts: Vec<f64> = samples_ns.iter().map(|&ns| n_tokens * 1e9 / ns as f64).collect();
        let (avg_ts, stddev_ts) = mean_sd(&samples_ts);
        let (avg_ns, stddev_ns) = mean_sd(&samples_ns.iter().map(|&v| v as f64).collect::<Vec<_>>());
        results.push(TestResult {
            model: meta("general.name"),
            model_filename: model.path.display().to_string(),
            model_size: model.weight_bytes(),
            model_n_params: n_params,
            model_type: model_type.clone(),
            backend: model.backend.name().to_string(),
            device: device.clone(),
            n_threads,
            simd: simd.clone(),
            n_prompt,
            n_gen,
            n_parallel: n_seqs,
            n_ctx: session.n_ctx(),
            kv_type: kv_precision.name().to_string(),
            avg_ns: avg_ns as u64,
            stddev_ns: stddev_ns as u64,
            avg_ts,
            stddev_ts,
            min_ts: samples_ts.iter().cloned().fold(f64::INFINITY, f64::min),
            max_ts: samples_ts.iter().cloned().fold(0.0, f64::max),
            samples_ns,
            samples_ts,
            warmup: args.warmup,
            repetitions: args.repetitions,
            test_time: now_utc(),
            system: system.clone(),
        });
    }
    Ok(results)
}

/// `n_seqs` sequences, each with its own random prompt of `n_prompt` tokens (prefilled one after the other), then
/// `n_gen` greedy steps each as one batch of every sequence's next token.
fn decode_together<B: Backend>(
    session: &mut Session<'_, B>,
    n_seqs: usize,
    n_prompt: usize,
    n_gen: usize,
    next_token: &mut dyn FnMut() -> u32,
) -> Result<()> {
    for seq in 0..n_seqs as u32 {
        if n_prompt > 0 {
            let prompt: Vec<u32> = (0..n_prompt).map(|_| next_token()).collect();
            session.prefill(seq, &prompt)?;
        }
    }
    let mut tokens: Vec<u32> = (0..n_seqs).map(|_| next_token()).collect();
    for _ in 0..n_gen {
        let mut batch = Batch::new();
        for (seq, &t) in tokens.iter().enumerate() {
            let seq = seq as u32;
            batch.push(t, session.seq_len(seq), seq, true);
        }
        tokens = session.forward_greedy(&batch)?;
    }
    Ok(())
}
