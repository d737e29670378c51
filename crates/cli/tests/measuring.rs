//! The measuring kit as a user runs it: perplexity (JSON keys, saved logits, KL against itself), check
//! (determinism, backend parity, reference round trip, a tampered reference failing), score against the Python
//! packages, eval, bench sweep with a plot, report from fixture JSON (ours and llama-bench's) with valid plots.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn quarrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarrel"))
        .args(args)
        .output()
        .expect("quarrel runs")
}

fn ok(args: &[&str]) -> String {
    let o = quarrel(args);
    assert!(
        o.status.success(),
        "quarrel {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("quarrel {args:?}: not JSON ({e}): {out}"))
}

fn one_error_line(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !lines.is_empty() && lines.last().unwrap().starts_with("error: "),
        "{err}"
    );
    assert!(err.contains(needle), "error should mention {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("measuring");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A tiny synthetic model (random weights, 512-token vocabulary), written once per name.
fn tiny(name: &str) -> String {
    let p = tmp(name);
    ok(&[
        "synth",
        "--preset",
        "tiny",
        "--quant",
        "q8_0",
        "-o",
        p.to_str().unwrap(),
    ]);
    p.display().to_string()
}

const TEXT: &str = "/usr/share/common-licenses/GPL-3";

#[test]
fn perplexity_json_save_logits_and_kl_against_itself() {
    let m = tiny("ppl.gguf");
    let base = tmp("tiny.kld");
    let base_s = base.to_str().unwrap();
    let v = json(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        TEXT,
        "--ctx",
        "64",
        "--chunks",
        "3",
        "-t",
        "1",
        "--json",
        "--save-logits",
        base_s,
    ]);
    for k in ["ppl", "ppl_stderr", "n_chunks", "n_ctx", "n_tokens"] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert_eq!(v["n_chunks"], 3);
    assert_eq!(v["n_ctx"], 64);
    let ppl = v["ppl"].as_f64().unwrap();
    assert!(
        ppl > 1.0 && ppl.is_finite() && v["ppl_stderr"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    // Header + tokens + 3 chunks x 31 positions x (512 + 4) u16.
    let len = std::fs::metadata(&base).unwrap().len();
    assert_eq!(len, 20 + 4 * 3 * 64 + 3 * 31 * 516 * 2);
    let k = json(&["perplexity", "-m", &m, "--kl-divergence", base_s, "-t", "2", "--json"]);
    assert_eq!(k["count"], 93);
    assert!(k["kld_mean"].as_f64().unwrap().abs() < 1e-4, "{k}");
    assert_eq!(k["same_top"], 1.0);
    assert!((k["ppl"].as_f64().unwrap() - ppl).abs() / ppl < 1e-3, "{k} vs {ppl}");
    assert!((k["ppl_ratio"].as_f64().unwrap() - 1.0).abs() < 1e-3);
    // The human report has llama-perplexity's sections.
    let text = ok(&[
        "perplexity",
        "-m",
        &m,
        "--kl-divergence",
        base_s,
        "-t",
        "1",
        "--chunks",
        "1",
    ]);
    for s in ["Mean PPL(Q)", "Mean    KLD", "Same top p", "RMS Δp"] {
        assert!(text.contains(s), "{s}: {text}");
    }
    // Bad inputs: one error line each.
    one_error_line(&quarrel(&["perplexity", "-m", &m]), "-f FILE");
    std::fs::write(tmp("junk.kld"), b"garbage").unwrap();
    one_error_line(
        &quarrel(&[
            "perplexity",
            "-m",
            &m,
            "--kl-divergence",
            tmp("junk.kld").to_str().unwrap(),
        ]),
        "not a saved-logits file",
    );
}

#[test]
fn check_passes_on_an_honest_model_and_fails_on_a_tampered_reference() {
    let m = tiny("check.gguf");
    let r = tmp("tiny.ref.json");
    let v = json(&[
        "check",
        "-m",
        &m,
        "-n",
        "6",
        "--against",
        "cpu",
        "--write-reference",
        r.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["passed"], true, "{v}");
    let runs = v["determinism"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "repeats 2 and 3, batch 2 and 8: {v}");
    assert!(runs.iter().all(|r| r["tokens_equal"] == true));
    for c in v["backend_parity"]["cases"].as_array().unwrap() {
        assert_eq!(c["max_abs_diff"], 0.0, "cpu vs cpu differs: {c}");
        assert_eq!(c["top1_agreement"], 1.0);
    }
    let v = json(&[
        "check",
        "-m",
        &m,
        "-n",
        "6",
        "--no-determinism",
        "--reference",
        r.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["reference_parity"]["passed"], true, "{v}");
    // Tamper: the third greedy token of the first case now names another token.
    let mut refj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
    let case = &mut refj["cases"][0];
    let t = case["greedy_ids"][2].as_u64().unwrap();
    let other = (t + 1) % 512;
    case["greedy_ids"][2] = other.into();
    case["steps"][2]["top"][0][0] = other.into();
    let bad = tmp("tampered.ref.json");
    std::fs::write(&bad, refj.to_string()).unwrap();
    let o = quarrel(&[
        "check",
        "-m",
        &m,
        "-n",
        "6",
        "--no-determinism",
        "--reference",
        bad.to_str().unwrap(),
    ]);
    one_error_line(&o, "check failed: parity");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("step 2"), "the divergence is reported at its step: {out}");
}

/// sacrebleu / rouge-score on the same files (python3 with both packages must be installed: .ci/run).
fn python_scores(refs: &[String], hyps: &[String]) -> serde_json::Value {
    use std::io::Write;
    let py = r#"
import json, sys
import sacrebleu
from rouge_score import rouge_scorer
d = json.load(sys.stdin)
sc = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=False)
rl = [sc.score(r, h)['rougeL'].fmeasure for r, h in zip(d['refs'], d['hyps'])]
print(json.dumps({'bleu': sacrebleu.corpus_bleu(d['hyps'], [d['refs']]).score,
                  'chrf': sacrebleu.corpus_chrf(d['hyps'], [d['refs']]).score,
                  'rouge_l': sum(rl) / len(rl)}))
"#;
    let mut child = Command::new("python3")
        .args(["-c", py])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for this test (.ci/run installs it)");
    let input = serde_json::json!({"refs": refs, "hyps": hyps}).to_string();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "python3 needs sacrebleu and rouge-score (pip install sacrebleu rouge-score): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn score_equals_sacrebleu_and_rouge_score_on_plain_and_jsonl_files() {
    let refs: Vec<String> = [
        "The quick brown fox jumps over the lazy dog.",
        "Prices rose 3.5% in 1990-1995, to $1,200.",
        "",
        "Ünïcödé — «quotes» &amp; entities, e-mail: a@b.c",
        "日本語のテキストです。",
        "fn main() { println!(\"hi\"); }",
    ]
    .map(String::from)
    .to_vec();
    let hyps: Vec<String> = [
        "A quick brown fox jumped over the lazy dog",
        "Prices rose 3.5 % in 1990 - 1995 to $1,200",
        "something",
        "Unicode — quotes & entities, email: a@b.c",
        "日本語のテキスト。",
        "fn main() { println!(\"hello\"); }",
    ]
    .map(String::from)
    .to_vec();
    let want = python_scores(&refs, &hyps);
    let (rp, hp) = (tmp("refs.txt"), tmp("hyps.txt"));
    std::fs::write(&rp, refs.join("\n") + "\n").unwrap();
    std::fs::write(&hp, hyps.join("\n") + "\n").unwrap();
    let (rj, hj) = (tmp("refs.jsonl"), tmp("hyps.jsonl"));
    let jl = |v: &[String], key: &str| -> String {
        v.iter()
            .map(|s| serde_json::json!({ key: s }).to_string() + "\n")
            .collect()
    };
    std::fs::write(&rj, jl(&refs, "references")).unwrap();
    std::fs::write(&hj, jl(&hyps, "hypothesis")).unwrap();
    for (r, h) in [(&rp, &hp), (&rj, &hj), (&rp, &hj)] {
        let got = json(&[
            "score",
            "--metric",
            "bleu,rouge-l,chrf",
            "--refs",
            r.to_str().unwrap(),
            "--hyps",
            h.to_str().unwrap(),
            "--json",
        ]);
        for k in ["bleu", "rouge_l", "chrf"] {
            let (g, w) = (got[k].as_f64().unwrap(), want[k].as_f64().unwrap());
            assert!((g - w).abs() < 5e-5, "{k}: quarrel {g} vs python {w}");
        }
    }
    std::fs::write(&hp, "one line only\n").unwrap();
    one_error_line(
        &quarrel(&["score", "--refs", rp.to_str().unwrap(), "--hyps", hp.to_str().unwrap()]),
        "segments",
    );
}

#[test]
fn eval_generates_and_scores_each_task() {
    let m = tiny("eval.gguf");
    let tasks = tmp("tasks.jsonl");
    std::fs::write(
        &tasks,
        "{\"prompt\": \"Hello\", \"references\": [\"world\", \"there\"], \"max_tokens\": 4}\n\
         {\"id\": \"b\", \"prompt\": \"1, 2, 3,\", \"reference\": \"4, 5, 6\"}\n",
    )
    .unwrap();
    let v = json(&[
        "eval",
        "-m",
        &m,
        "--tasks",
        tasks.to_str().unwrap(),
        "-n",
        "5",
        "--json",
    ]);
    let t = v["tasks"].as_array().unwrap();
    assert_eq!(t.len(), 2);
    assert!(t[0]["generated_tokens"].as_u64().unwrap() <= 4);
    assert_eq!(t[1]["id"], "b");
    for k in ["bleu", "rouge_l", "chrf"] {
        assert!(v["aggregate"][k].is_number(), "{v}");
        assert!(t[0]["scores"][k].is_number());
    }
    std::fs::write(&tasks, "{\"prompt\": \"x\"}\n").unwrap();
    one_error_line(
        &quarrel(&["eval", "-m", &m, "--tasks", tasks.to_str().unwrap()]),
        "line 1",
    );
}

/// An SVG document with bars (rects) and the given labels.
fn assert_svg(path: &Path, labels: &[&str]) {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(
        s.trim_start().starts_with("<svg") && s.trim_end().ends_with("</svg>"),
        "not an SVG document"
    );
    assert!(s.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(s.matches("<rect").count() >= 3, "no bars");
    assert!(
        s.matches("<line").count() + s.matches("<polyline").count() >= 2,
        "no error bars or axes"
    );
    for l in labels {
        assert!(s.contains(l), "label {l:?} missing");
    }
}

/// A PNG: signature, IHDR first with a plausible size, IEND last.
fn assert_png(path: &Path) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&b[12..16], b"IHDR");
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    assert!((300..5000).contains(&w) && (200..5000).contains(&h), "{w}x{h}");
    assert_eq!(&b[b.len() - 8..b.len() - 4], b"IEND");
}

#[test]
fn bench_sweeps_threads_and_lengths_with_statistics_and_a_plot() {
    let m = tiny("bench.gguf");
    let plot = tmp("bench.svg");
    let v = json(&[
        "bench",
        "-m",
        &m,
        "-p",
        "8,16",
        "-n",
        "4",
        "-r",
        "2",
        "--warmup",
        "1",
        "-t",
        "1,2",
        "-o",
        "json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 6, "2 thread counts x (pp8, pp16, tg4)");
    for e in a {
        for k in [
            "model_filename",
            "model_type",
            "backend",
            "device",
            "n_threads",
            "n_prompt",
            "n_gen",
            "avg_ns",
            "stddev_ns",
            "avg_ts",
            "stddev_ts",
            "samples_ns",
            "samples_ts",
            "min_ts",
            "max_ts",
            "cpu_info",
            "cpu_flags",
            "gpu_info",
            "cuda_version",
            "build_commit",
            "quarrel_version",
            "ram_bytes",
        ] {
            assert!(e.get(k).is_some(), "missing {k}");
        }
        assert_eq!(e["samples_ts"].as_array().unwrap().len(), 2);
        let (lo, mean, hi) = (
            e["min_ts"].as_f64().unwrap(),
            e["avg_ts"].as_f64().unwrap(),
            e["max_ts"].as_f64().unwrap(),
        );
        assert!(lo <= mean && mean <= hi && lo > 0.0);
    }
    assert_eq!(a[0]["n_threads"], 1);
    assert_eq!(a[5]["n_threads"], 2);
    assert_svg(&plot, &["pp16", "tg4", "tokens / s"]);
    one_error_line(&quarrel(&["bench", "-m", &m, "--plot", "x.gif"]), ".svg or .png");
}

/// `--parallel N` decodes N sequences together in generation tests (a batch of N tokens a step); prompt-only tests
/// keep one sequence. A count of 0 is refused.
#[test]
fn bench_decodes_several_sequences_together() {
    let m = tiny("bench-parallel.gguf");
    let v = json(&[
        "bench",
        "-m",
        &m,
        "-p",
        "8",
        "-n",
        "6",
        "-r",
        "1",
        "--warmup",
        "0",
        "--parallel",
        "3",
        "-o",
        "json",
    ]);
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 2, "pp8 and tg6");
    assert_eq!(
        (a[0]["n_gen"].as_u64(), a[0]["n_parallel"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(
        (a[1]["n_gen"].as_u64(), a[1]["n_parallel"].as_u64()),
        (Some(6), Some(3))
    );
    assert!(a[1]["avg_ts"].as_f64().unwrap() > 0.0);
    let md = ok(&["bench", "-m", &m, "-p", "0", "-n", "4", "-r", "1", "--parallel", "2"]);
    assert!(md.contains("tg4 x2"), "{md}");
    one_error_line(&quarrel(&["bench", "-m", &m, "--parallel", "0"]), "parallel");
}

#[test]
fn report_renders_fixtures_side_by_side_with_plots() {
    let out = tmp("report.md");
    ok(&[
        "report",
        fixture("quarrel-bench-qwen2.5-coder-0.5b.json").to_str().unwrap(),
        fixture("llama-bench-qwen2.5-coder-0.5b.json").to_str().unwrap(),
        fixture("perplexity.json").to_str().unwrap(),
        fixture("kl.json").to_str().unwrap(),
        fixture("score.json").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let md = std::fs::read_to_string(&out).unwrap();
    for s in [
        "## Speed",
        "quarrel (quarrel-bench-qwen2.5-coder-0.5b)",
        "llama.cpp (llama-bench-qwen2.5-coder-0.5b)",
        "| qwen2.5-coder-0.5b-instruct-q4_k_m | pp512 | 2 |",
        "| qwen2.5-coder-0.5b-instruct-q4_k_m | tg128 | 2 |",
        "132.10 ± 1.3",
        "247.36 ± 1.86",
        "![tokens per second](report.svg)",
        "## Perplexity",
        "## KL divergence",
        "## Text metrics",
    ] {
        assert!(md.contains(s), "{s:?} missing from:\n{md}");
    }
    // Both tools on one row, with their ratio.
    let row = md.lines().find(|l| l.contains("| tg128 |")).unwrap();
    assert_eq!(row.matches('±').count(), 2, "{row}");
    assert!(row.trim_end().ends_with("x |"), "{row}");
    assert_svg(&tmp("report.svg"), &["pp512", "tg128", "llama.cpp"]);
    // llama-bench's array wrapped in an object (as bench/results keeps it), a PNG plot, the report on stdout.
    let png = tmp("report.png");
    let md = ok(&[
        "report",
        fixture("quarrel-bench-qwen2.5-coder-0.5b.json").to_str().unwrap(),
        fixture("llama-bench-wrapped-qwen2.5-coder-0.5b.json").to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert!(md.contains("235.45 ± 0.90"), "{md}");
    assert_png(&png);
    std::fs::write(tmp("other.json"), "{\"hello\": 1}").unwrap();
    one_error_line(
        &quarrel(&["report", tmp("other.json").to_str().unwrap()]),
        "not a result",
    );
}

#[test]
fn check_against_llama_cpp_says_clearly_when_the_python_module_is_missing() {
    use std::os::unix::fs::PermissionsExt;
    let m = tiny("llama-missing.gguf");
    // A python3 in which `import llama_cpp` fails, whatever is installed.
    let fake = tmp("python-without-llama-cpp");
    std::fs::write(
        &fake,
        "#!/bin/sh\nexec python3 -c \"import sys; sys.modules['llama_cpp'] = None; exec(sys.argv[2])\" \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = quarrel(&[
        "check",
        "-m",
        &m,
        "-n",
        "2",
        "--no-determinism",
        "--against-llama-cpp",
        "--python",
        fake.to_str().unwrap(),
    ]);
    one_error_line(&o, "llama_cpp Python module is not installed");
    let o = quarrel(&[
        "check",
        "-m",
        &m,
        "--no-determinism",
        "--against-llama-cpp",
        "--python",
        "/nonexistent/python3",
    ]);
    one_error_line(&o, "could not run /nonexistent/python3");
}
