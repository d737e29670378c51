//! The `quarrel` binary as a user runs it: streams, exit codes, error lines, JSON outputs, model resolution.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn quarrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarrel"))
        .args(args)
        .output()
        .expect("quarrel runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cached real model, fetched by the project's script when missing.
fn qwen() -> String {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let p = base.join("quarrel/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    if !p.exists() {
        let ok = Command::new("bash")
            .arg(repo_root().join("scripts/fetch-models.sh"))
            .arg("qwen")
            .status()
            .unwrap();
        assert!(ok.success());
    }
    p.display().to_string()
}

/// A tiny synthetic model written by `quarrel synth` into the test's temp dir.
fn tiny(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let o = quarrel(&[
        "synth",
        "--preset",
        "tiny",
        "--quant",
        "q8_0",
        "-o",
        p.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    p
}

fn assert_one_error_line(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "exit code; stderr: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "error should mention {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn run_streams_exactly_the_greedy_continuation() {
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("crates/engine/tests/fixtures/qwen2.5-coder-0.5b.greedy.json"))
            .unwrap(),
    )
    .unwrap();
    // The code prompt, whose 32 greedy tokens agree with llama.cpp's.
    let case = &fx["cases"][1];
    let prompt = case["prompt"].as_str().unwrap();
    let want = case["greedy_text"].as_str().unwrap();
    let o = quarrel(&["run", "-m", &qwen(), "-p", prompt, "-n", "12", "--temp", "0", "-t", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stdout(&o);
    assert!(
        !got.is_empty() && want.starts_with(&got),
        "stdout {got:?} is not a prefix of llama.cpp's {want:?}"
    );
    assert!(stderr(&o).contains("tok/s"));
}

#[test]
fn tokenize_parses_special_tokens_like_llama_tokenize() {
    // llama-tokenize (build 11312) on this text gives [9707, 220, 151644, 1879].
    let o = quarrel(&["tokenize", "-m", &qwen(), "--json", "Hello <|im_start|> world"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ids: Vec<u32> = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(ids, vec![9707, 220, 151644, 1879]);
}

#[test]
fn bad_input_gets_one_clear_error_line() {
    assert_one_error_line(
        &quarrel(&["run", "-m", "/nonexistent/model.gguf", "-p", "x"]),
        "/nonexistent/model.gguf",
    );
    assert_one_error_line(&quarrel(&["run", "--temp", "warm", "-p", "x"]), "warm");
    assert_one_error_line(&quarrel(&["frobnicate"]), "frobnicate");
    let m = tiny("errors.gguf");
    let m = m.to_str().unwrap();
    assert_one_error_line(&quarrel(&["run", "-m", m, "-p", "x", "--top-p", "0"]), "top-p");
    assert_one_error_line(&quarrel(&["run", "-m", m, "-p", "x", "--device", "cuda"]), "cuda");
    assert_one_error_line(&quarrel(&["run", "-m", m, "-p", "x", "--ctx", "100000"]), "ctx");
    // A prompt longer than the context.
    let long = "t5 ".repeat(400);
    assert_one_error_line(&quarrel(&["run", "-m", m, "-p", &long, "--ctx", "64"]), "context");
    // Hostile files: garbage, and a real header cut short.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a gguf file at all").unwrap();
    assert_one_error_line(&quarrel(&["run", "-m", garbage.to_str().unwrap(), "-p", "x"]), "magic");
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &std::fs::read(m).unwrap()[..5000]).unwrap();
    assert_one_error_line(&quarrel(&["info", "-m", cut.to_str().unwrap()]), "cut.gguf");
}

#[test]
fn synth_model_runs_and_reports() {
    let m = tiny("run.gguf");
    let m = m.to_str().unwrap();
    let a = quarrel(&["run", "-m", m, "-p", "t5 t6", "-n", "6", "--temp", "0"]);
    assert!(a.status.success(), "{}", stderr(&a));
    let b = quarrel(&["run", "-m", m, "-p", "t5 t6", "-n", "6", "--temp", "0"]);
    assert_eq!(stdout(&a), stdout(&b), "greedy is deterministic");
    let s1 = quarrel(&["run", "-m", m, "-p", "t5", "-n", "8", "--temp", "1", "--seed", "3"]);
    let s2 = quarrel(&["run", "-m", m, "-p", "t5", "-n", "8", "--temp", "1", "--seed", "3"]);
    assert_eq!(stdout(&s1), stdout(&s2), "same seed, same output");
    let info = quarrel(&["info", "-m", m]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(
        text.contains("KV cache: f16") && text.contains("Q8_0") && text.contains("arch llama"),
        "{text}"
    );
}

#[test]
fn bench_json_has_llama_bench_fields() {
    let m = tiny("bench.gguf");
    let o = quarrel(&[
        "bench",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "16,32",
        "-n",
        "4",
        "-r",
        "2",
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let tests = v.as_array().unwrap();
    assert_eq!(tests.len(), 3, "pp16, pp32, tg4");
    for t in tests {
        for key in [
            "model",
            "model_size",
            "model_type",
            "backend",
            "device",
            "n_threads",
            "n_prompt",
            "n_gen",
            "avg_ts",
            "stddev_ts",
            "samples_ts",
            "cpu_info",
            "gpu_info",
        ] {
            assert!(t.get(key).is_some(), "missing {key} in {t}");
        }
        assert_eq!(t["samples_ts"].as_array().unwrap().len(), 2);
        assert!(t["avg_ts"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(tests[1]["n_prompt"], 32);
    assert_eq!(tests[2]["n_gen"], 4);
}

#[test]
fn ollama_names_resolve_through_the_store() {
    let m = tiny("ollama-src.gguf");
    let store = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ollama-store");
    let _ = std::fs::remove_dir_all(&store);
    let digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(store.join("blobs")).unwrap();
    let blob = store.join("blobs").join(format!("sha256-{digest}"));
    std::fs::copy(&m, &blob).unwrap();
    let size = std::fs::metadata(&blob).unwrap().len();
    let manifest_dir = store.join("manifests/registry.ollama.ai/library/tinyllama");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    let manifest = serde_json::json!({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:00", "size": 1},
        {"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{digest}"), "size": size}]});
    std::fs::write(manifest_dir.join("latest"), manifest.to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_quarrel"))
        .args(["run", "-m", "tinyllama", "-p", "t5", "-n", "3", "--temp", "0"])
        .env("OLLAMA_MODELS", &store)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let missing = Command::new(env!("CARGO_BIN_EXE_quarrel"))
        .args(["run", "-m", "library/nosuch:7b", "-p", "t5"])
        .env("OLLAMA_MODELS", &store)
        .output()
        .unwrap();
    assert_one_error_line(&missing, "nosuch");
}

#[test]
fn chat_answers_piped_turns_through_the_template() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_quarrel"))
        .args(["chat", "-m", &qwen(), "--temp", "0", "-n", "24", "-t", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France? Answer in one word.\n/exit\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let reply = stdout(&o);
    assert!(reply.contains("Paris"), "chat reply: {reply:?}");
    assert!(
        !reply.contains("<|im_end|>") && !reply.contains("<|im_start|>"),
        "special tokens leaked: {reply:?}"
    );
}

/// `dump` writes every tensor of the prompt pass and of each greedy step, under llama.cpp's names; the last layer
/// past its attention carries only the row whose logits are wanted.
#[test]
fn dump_writes_the_forward_pass_under_llama_cpp_names() {
    let m = tiny("dump.gguf");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dump.bin");
    let o = quarrel(&[
        "dump",
        "-m",
        m.to_str().unwrap(),
        "-p",
        "t5 t6 t7",
        "--steps",
        "2",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let (mut at, mut records) = (0, Vec::new());
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    while at < bytes.len() {
        let (step, len) = (u32_at(&bytes, at), u32_at(&bytes, at + 4) as usize);
        let name = String::from_utf8(bytes[at + 8..at + 8 + len].to_vec()).unwrap();
        let count = i64::from_le_bytes(bytes[at + 8 + len..at + 16 + len].try_into().unwrap()) as usize;
        records.push((step, name, count));
        at += 8 + len + 32 + 4 * count;
    }
    assert_eq!(at, bytes.len(), "records end where the file ends");
    let find = |step: u32, name: &str| records.iter().find(|r| r.0 == step && r.1 == name).map(|r| r.2);
    let d = find(1, "inp_embd").expect("step 1 embeddings"); // one token
    let n_prompt = find(0, "inp_embd").expect("prompt embeddings") / d;
    assert!(n_prompt >= 2, "{records:?}");
    let layers = records.iter().filter(|r| r.0 == 0 && r.1.starts_with("l_out-")).count();
    assert!(layers >= 1);
    assert_eq!(find(0, "l_out-0"), Some(n_prompt * d));
    // Attention takes every prompt row in every layer (later tokens need their keys and values).
    let kqv = format!("kqv_out-{}", layers - 1);
    assert_eq!(find(0, &kqv), find(1, &kqv).map(|one| one * n_prompt));
    assert_eq!(
        find(0, &format!("l_out-{}", layers - 1)),
        Some(d),
        "only the logits row goes on in the last layer"
    );
    for step in 0..3 {
        assert_eq!(find(step, "result_norm"), Some(d), "step {step}");
        assert!(find(step, "result_output").is_some_and(|v| v > d), "step {step}");
    }
    assert_one_error_line(
        &quarrel(&[
            "dump",
            "-m",
            m.to_str().unwrap(),
            "-p",
            "t5",
            "--device",
            "cuda",
            "-o",
            out.to_str().unwrap(),
        ]),
        "CPU",
    );
}
