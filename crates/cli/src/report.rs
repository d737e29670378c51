//! `quarrel report`: saved JSON results (quarrel bench, llama-bench `-o json`, quarrel perplexity / KL / score /
//! eval / check) into one Markdown report: speed side by side per configuration, with a plot, and a table per
//! kind of quality result.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// JSON result files.
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Write the report to FILE (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Speed plot (.svg or .png; default: next to --output, same name with .svg; none on stdout).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// One speed measurement, from either tool.
#[derive(Debug, Clone)]
struct Speed {
    model: String,
    test: String,
    threads: u64,
    backend: String,
    mean: f64,
    sd: f64,
    n: usize,
}

#[derive(Default)]
struct Collected {
    /// Source label -> its measurements, in file order.
    speed: Vec<(String, Vec<Speed>)>,
    /// Source label -> system lines.
    systems: Vec<(String, String)>,
    perplexity: Vec<String>,
    kl: Vec<String>,
    scores: Vec<String>,
    checks: Vec<String>,
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn speed_of(e: &Value) -> Option<Speed> {
    let mean = e["avg_ts"].as_f64()?;
    let (p, n) = (e["n_prompt"].as_u64()?, e["n_gen"].as_u64()?);
    // Files written before `n_parallel` existed ran one sequence.
    let parallel = e.get("n_parallel").and_then(Value::as_u64).unwrap_or(1);
    let test = crate::bench::test_name(p, n, parallel);
    let backend = if e.get("backends").is_some() {
        s(e, "backends")
    } else {
        s(e, "backend")
    };
    Some(Speed {
        model: crate::bench::short_model(&s(e, "model_filename")),
        test,
        threads: e["n_threads"].as_u64().unwrap_or(0),
        backend,
        mean,
        sd: e["stddev_ts"].as_f64().unwrap_or(0.0),
        n: e["samples_ts"].as_array().map_or(0, Vec::len),
    })
}

fn tool_of(e: &Value) -> &'static str {
    if e.get("quarrel_version").is_some() {
        "quarrel"
    } else if e.get("build_number").is_some() || e.get("n_ubatch").is_some() {
        "llama.cpp"
    } else {
        "bench"
    }
}

fn collect(path: &Path, v: &Value, c: &mut Collected) -> Result<()> {
    let name = stem(path);
    // A bench array (ours or llama-bench's), or an object wrapping llama-bench's array.
    let arr = match v {
        Value::Array(a) => Some(a.clone()),
        Value::Object(o) => o.get("llama_bench").and_then(|x| x.as_array()).cloned(),
        _ => None,
    };
    if let Some(arr) = arr {
        let rows: Vec<Speed> = arr.iter().filter_map(speed_of).collect();
        if rows.is_empty() {
            bail!("{}: no benchmark entries (avg_ts, n_prompt, n_gen)", path.display());
        }
        let tool = arr.first().map_or("bench", tool_of);
        let label = format!("{tool} ({name})");
        let e = &arr[0];
        let or_none = |x: String| if x.is_empty() { "none".to_string() } else { x };
        let mut sys = format!(
            "{}; GPU {}; commit {}",
            or_none(s(e, "cpu_info")),
            or_none(s(e, "gpu_info")),
            or_none(s(e, "build_commit"))
        );
        if let Some(flags) = e["cpu_flags"].as_array() {
            let fl: Vec<String> = flags.iter().filter_map(|x| x.as_str().map(str::to_string)).collect();
            let _ = write!(sys, "; flags {}", fl.join(" "));
        }
        if let Some(llama) = v.get("llama_cpp").and_then(|x| x.as_str()) {
            let _ = write!(sys, "; {llama}");
        }
        c.systems.push((label.clone(), sys));
        c.speed.push((label, rows));
        return Ok(());
    }
    if v.get("kld_mean").is_some() {
        c.kl.push(format!(
            "| {name} | {:.4} ± {:.4} | {:.4} ± {:.4} | {:.5} ± {:.5} | {:.6} ± {:.6} | {:.2} % | {} |",
            f(v, "ppl"),
            f(v, "ppl_err"),
            f(v, "ppl_base"),
            f(v, "ppl_base_err"),
            f(v, "ppl_ratio"),
            f(v, "ppl_ratio_err"),
            f(v, "kld_mean"),
            f(v, "kld_err"),
            100.0 * f(v, "same_top"),
            s(v, "count")
        ));
    } else if v.get("ppl").is_some() {
        c.perplexity.push(format!(
            "| {name} | {} | {:.4} ± {:.5} | {} | {} | {} |",
            crate::bench::short_model(&s(v, "model")),
            f(v, "ppl"),
            f(v, "ppl_stderr"),
            s(v, "n_ctx"),
            s(v, "n_chunks"),
            s(v, "n_tokens")
        ));
    } else if v.get("aggregate").is_some()
        || v.get("bleu").is_some()
        || v.get("chrf").is_some()
        || v.get("rouge_l").is_some()
    {
        let a = v.get("aggregate").unwrap_or(v);
        let cell = |k: &str| a[k].as_f64().map_or("-".to_string(), |x| format!("{x:.4}"));
        let n = if v.get("aggregate").is_some() {
            s(a, "n_tasks")
        } else {
            s(a, "n_segments")
        };
        c.scores.push(format!(
            "| {name} | {} | {} | {} | {n} |",
            cell("bleu"),
            cell("rouge_l"),
            cell("chrf")
        ));
    } else if v.get("passed").is_some() {
        let mut parts = Vec::new();
        if let Some(d) = v.get("determinism") {
            parts.push(format!(
                "determinism {}",
                if d["passed"] == true { "pass" } else { "FAIL" }
            ));
        }
        for k in ["backend_parity", "reference_parity", "llama_cpp_parity"] {
            if let Some(p) = v.get(k) {
                let cases = p["cases"].as_array().cloned().unwrap_or_default();
                let top1: Vec<String> = cases
                    .iter()
                    .map(|c| format!("{:.0} %", 100.0 * c["top1_agreement"].as_f64().unwrap_or(0.0)))
                    .collect();
                parts.push(format!(
                    "{} {} (top-1 {})",
                    s(p, "against"),
                    if p["passed"] == true { "pass" } else { "FAIL" },
                    top1.join(", ")
                ));
            }
        }
        c.checks.push(format!(
            "| {name} | {} | {} |",
            if v["passed"] == true { "pass" } else { "FAIL" },
            parts.join("; ")
        ));
    } else {
        bail!(
            "{}: not a result this report knows (bench, perplexity, KL, score, eval, check)",
            path.display()
        );
    }
    Ok(())
}

pub fn report(args: ReportArgs) -> Result<()> {
    let mut c = Collected::default();
    for p in &args.results {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))?;
        collect(p, &v, &mut c)?;
    }
    let plot = args
        .plot
        .clone()
        .or_else(|| args.output.as_ref().map(|o| o.with_extension("svg")));
    let md = render(&c, plot.as_deref(), args.output.as_deref())?;
    match &args.output {
        Some(o) => std::fs::write(o, md).with_context(|| format!("writing {}", o.display()))?,
        None => print!("{md}"),
    }
    Ok(())
}

fn render(c: &Collected, plot: Option<&Path>, out: Option<&Path>) -> Result<String> {
    let mut md = String::from("# quarrel report\n\n");
    if !c.speed.is_empty() {
        // Configurations in first-seen order.
        let mut keys: Vec<(String, String, u64)> = Vec::new();
        let mut table: BTreeMap<(usize, usize), Speed> = BTreeMap::new();
        for (si, (_, rows)) in c.speed.iter().enumerate() {
            for r in rows {
                let k = (r.model.clone(), r.test.clone(), r.threads);
                let ki = keys.iter().position(|x| *x == k).unwrap_or_else(|| {
                    keys.push(k);
                    keys.len() - 1
                });
                table.insert((ki, si), r.clone());
            }
        }
        md.push_str("## Speed (tokens / s, mean ± sd over the repetitions)\n\n| model | test | threads |");
        for (label, _) in &c.speed {
            let _ = write!(md, " {label} |");
        }
        let two = c.speed.len() == 2;
        if two {
            md.push_str(" ratio |");
        }
        md.push_str("\n| --- | --- | ---: |");
        md.push_str(&" ---: |".repeat(c.speed.len() + usize::from(two)));
        md.push('\n');
        for (ki, (model, test, threads)) in keys.iter().enumerate() {
            let _ = write!(md, "| {model} | {test} | {threads} |");
            for si in 0..c.speed.len() {
                match table.get(&(ki, si)) {
                    Some(r) => {
                        let _ = write!(md, " {:.2} ± {:.2} ({}, n={}) |", r.mean, r.sd, r.backend, r.n);
                    }
                    None => md.push_str(" - |"),
                }
            }
            if two {
                match (table.get(&(ki, 0)), table.get(&(ki, 1))) {
                    (Some(a), Some(b)) if b.mean > 0.0 => {
                        let _ = write!(md, " {:.2}x |", a.mean / b.mean);
                    }
                    _ => md.push_str(" - |"),
                }
            }
            md.push('\n');
        }
        md.push('\n');
        if let Some(p) = plot {
            let cats: Vec<String> = keys.iter().map(|(m, t, th)| format!("{m} {t} t{th}")).collect();
            let series: Vec<crate::plot::Series> = c
                .speed
                .iter()
                .enumerate()
                .map(|(si, (label, _))| crate::plot::Series {
                    name: label.clone(),
                    values: (0..keys.len())
                        .map(|ki| table.get(&(ki, si)).map(|r| (r.mean, r.sd)))
                        .collect(),
                })
                .collect();
            crate::plot::bar_chart(p, "tokens per second (mean ± sd)", &cats, &series)?;
            // Link relative to the report's directory where both are on disk.
            let link = match out.and_then(|o| o.parent()) {
                Some(dir) if !dir.as_os_str().is_empty() => p.strip_prefix(dir).unwrap_or(p).to_path_buf(),
                _ => p.to_path_buf(),
            };
            let _ = writeln!(md, "![tokens per second]({})\n", link.display());
        }
        md.push_str("Systems:\n\n");
        for (label, sys) in &c.systems {
            let _ = writeln!(md, "- {label}: {sys}");
        }
        md.push('\n');
    }
    let mut section = |title: &str, head: &str, rows: &[String]| {
        if !rows.is_empty() {
            let cols = head.matches('|').count() - 1;
            let _ = writeln!(md, "## {title}\n\n{head}\n|{}", " --- |".repeat(cols));
            for r in rows {
                let _ = writeln!(md, "{r}");
            }
            md.push('\n');
        }
    };
    section(
        "Perplexity",
        "| result | model | PPL ± stderr | ctx | chunks | tokens |",
        &c.perplexity,
    );
    section(
        "KL divergence against base logits",
        "| result | PPL(Q) | PPL(base) | PPL ratio | mean KLD | same top | positions |",
        &c.kl,
    );
    section(
        "Text metrics",
        "| result | BLEU | ROUGE-L | chrF | segments |",
        &c.scores,
    );
    section("Checks", "| result | verdict | details |", &c.checks);
    Ok(md)
}
