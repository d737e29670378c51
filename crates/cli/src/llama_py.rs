//! llama.cpp as a reference, through the `llama_cpp` Python module (the llama-cpp-python package): a small script
//! run by python3 returns the greedy tokens and logits of each prompt in the `quarrel-reference/1` format.
//!
//! llama.cpp's CPU backend repacks weights into its "extra buffer types" at load; on CPUs with AMX that path
//! crashes (llama.cpp issue #20824), which llama.cpp's tools avoid with `--no-repack`. llama-cpp-python's `Llama`
//! does not expose the switch, but the model parameters it starts from carry it (`use_extra_bufts`, "use extra
//! buffer types (used for weight repacking)"): the script patches `llama_model_default_params` to turn it off.

use anyhow::{bail, Context, Result};
use engine::check::Reference;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const SCRIPT: &str = r#"
import json, sys
cfg = json.load(sys.stdin)
try:
    import numpy as np
    import llama_cpp
    import llama_cpp.llama_cpp as low
except ImportError as e:
    print(json.dumps({"missing": str(e)}))
    sys.exit(3)
_default = low.llama_model_default_params
def _no_repack():
    p = _default()
    if hasattr(p, "use_extra_bufts"):
        p.use_extra_bufts = False  # llama.cpp --no-repack (AMX repack crash, llama.cpp #20824)
    return p
low.llama_model_default_params = _no_repack
# The context must hold the longest prompt in tokens (which may outnumber its bytes: byte-fallback vocabularies
# spell one character as several byte tokens) plus the generated ones: tokenize with the vocabulary alone first.
vocab = llama_cpp.Llama(model_path=cfg["model"], vocab_only=True, verbose=False)
prompt_ids = [vocab.tokenize(p.encode("utf-8"), add_bos=True, special=True) for p in cfg["prompts"]]
del vocab
n_ctx = max(len(i) for i in prompt_ids) + cfg["n_gen"] + 16
llm = llama_cpp.Llama(model_path=cfg["model"], n_ctx=max(n_ctx, 64), n_batch=512, n_gpu_layers=0,
                      n_threads=cfg["threads"] or None, logits_all=True, flash_attn=False, verbose=False)
cases = []
for prompt, ids in zip(cfg["prompts"], prompt_ids):
    llm.reset()
    llm.eval(ids)
    greedy, steps = [], []
    for i in range(cfg["n_gen"]):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        m = row.max()
        lse = float(m + np.log(np.exp(row - m).sum()))
        k = min(cfg["top_k"], row.shape[0])
        top = np.argpartition(-row, k - 1)[:k]
        top = sorted(top.tolist(), key=lambda t: (-row[t], t))
        tok = int(top[0])
        greedy.append(tok)
        steps.append({"logsumexp": lse, "top": [[int(t), float(np.float32(row[t]))] for t in top]})
        if i + 1 < cfg["n_gen"]:
            llm.eval([tok])
    cases.append({"prompt": prompt, "prompt_ids": [int(t) for t in ids], "greedy_ids": greedy, "steps": steps})
print(json.dumps({"format": "quarrel-reference/1",
                  "producer": "llama.cpp via llama-cpp-python " + llama_cpp.__version__ + " (no repack, flash attention off)",
                  "model": cfg["model"].rsplit("/", 1)[-1], "n_vocab": llm.n_vocab(), "top_k": cfg["top_k"],
                  "cases": cases}))
"#;

/// Runs llama.cpp on `prompts` through python3 and returns its greedy tokens and logits.
pub fn llama_cpp_reference(
    python: &str,
    model: &Path,
    prompts: &[String],
    n_gen: usize,
    top_k: usize,
    threads: usize,
) -> Result<Reference> {
    let cfg = serde_json::json!({
        "model": model.display().to_string(),
        "prompts": prompts,
        "n_gen": n_gen,
        "top_k": top_k,
        "threads": threads,
    });
    let mut child = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("--against-llama-cpp needs {python} with the llama_cpp module; could not run {python}")
        })?;
    child
        .stdin
        .take()
        .context("python stdin")?
        .write_all(cfg.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) {
        bail!(
            "the llama_cpp Python module is not installed for {python} (pip install llama-cpp-python), so \
             --against-llama-cpp cannot run; compare with a saved reference instead (--reference FILE)"
        );
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        bail!("llama.cpp (through {python}) failed: {last}");
    }
    serde_json::from_str(stdout.trim()).context("llama.cpp script output is not a reference")
}
