#!/usr/bin/env bash
# Record llama.cpp's answers on the two real models as JSON fixtures for the engine's tests, and (on request)
# llama.cpp's own speed on this machine.
#
#   scripts/make-reference-fixtures.sh [greedy] [perplexity] [bench]     (default: greedy perplexity)
#   MODELS="gemma3-270m" scripts/make-reference-fixtures.sh greedy       (one model only)
#
# greedy     -> crates/engine/tests/fixtures/<key>.greedy.json          (KV cache f16, llama.cpp's default)
#               crates/engine/tests/fixtures/<key>.greedy.kv-f32.json   (same prompts, KV cache f32)
#               made by dev/llama-ref (our program on llama.h): last-position logits + 32 greedy steps per prompt
# perplexity -> crates/engine/tests/fixtures/<key>.perplexity.json      (llama-perplexity on GPL-3, n_ctx 512)
# bench      -> bench/results/cpu/llama.cpp-<key>.json                  (llama-bench -p 512 -n 128 -r 3 -t 2)
#               twice: --repack 0, and repacking on with AMX refused by dev/llama-ref/no_amx.c (LD_PRELOAD)
#
# Every run uses 2 threads, CPU only, and llama.cpp's extra CPU buffer types OFF (--no-repack / --repack 0 /
# use_extra_bufts=false): with them on, llama.cpp's AMX matmul segfaults on this machine's CPU for these Q4_K_M
# models (llama.cpp issue #20824), in every tool. (The bench also runs llama.cpp's repacked path, with AMX
# refused through dev/llama-ref/no_amx.so.) Models come from scripts/fetch-models.sh's cache.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
STAGES=${*:-greedy perplexity}
MODELS=${MODELS:-qwen2.5-coder-0.5b gemma3-270m}
THREADS=2
N_CTX=512
N_GEN=32
LLAMA_CPP_VERSION="build 11312 (2026-10-01), from the package llama-cpp-python 0.3.36"
MODEL_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/quarrel/models
PPL_TEXT=/usr/share/common-licenses/GPL-3
FIX=$ROOT/crates/engine/tests/fixtures
BENCH_DIR=$ROOT/bench/results/cpu
mkdir -p "$FIX"

BIN=$(bash "$ROOT/../shared/tools/llama-cpp.sh" | tail -n1)     # llama.cpp's tools
REF=$("$ROOT/dev/llama-ref/build.sh" | tail -n1)                # our llama.h program
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }

model_file() {
  case $1 in
    qwen2.5-coder-0.5b) echo qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ;;
    gemma3-270m) echo gemma-3-270m-q4_k_m.gguf ;;
    *) echo "unknown model key $1" >&2; exit 1 ;;
  esac
}

# prompts KEY OUT: write the prompt list (a JSON array of strings) for one model.
prompts() {
  python3 - "$1" "$2" <<'PY'
import json, sys
key, out = sys.argv[1], sys.argv[2]
common = [
    # prose
    "The old lighthouse keeper climbed the spiral stairs every evening, counting each step as the storm rolled in from the sea. One night,",
    # code
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    # a list
    "Things to pack for a weekend hiking trip:\n1. A waterproof jacket\n2. Sturdy boots\n3.",
    # a question
    "Q: Why is the sky blue during the day but red at sunset?\nA:",
    # non-English: Chinese, then German
    "人工智能正在改变我们的生活方式。在未来十年里，",
    "Die Katze saß auf der Fensterbank und beobachtete die Vögel im Garten. Plötzlich",
    # digits, punctuation, tabs and runs of spaces (tokenizer edge cases)
    "Invoice #20931\tTotal: 1,234,567.89 USD   (due 2024-03-15)\n    - item A:  3 x 19.99\n    - item B:",
]
chat = {
    # Qwen2.5 ChatML, as its chat template renders one system + one user message
    "qwen2.5-coder-0.5b": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                          "<|im_start|>user\nWrite a Python function that checks whether a string is a palindrome.<|im_end|>\n"
                          "<|im_start|>assistant\n",
    # Gemma 3 turns (BOS is added by the tokenizer, per the model's metadata)
    "gemma3-270m": "<start_of_turn>user\nWrite a short poem about autumn leaves.<end_of_turn>\n<start_of_turn>model\n",
}[key]
json.dump(common[:4] + [chat] + common[4:], open(out, "w"), ensure_ascii=False, indent=1)
PY
}

greedy() {
  local key=$1 file; file=$(model_file "$1")
  local model=$MODEL_DIR/$file sha; sha=$(sha256sum "$model" | cut -d' ' -f1)
  prompts "$key" "$TMP/$key.prompts.json"
  local kv out
  for kv in f16 f32; do
    if [ $kv = f16 ]; then out=$FIX/$key.greedy.json; else out=$FIX/$key.greedy.kv-f32.json; fi
    local args="--ctx $N_CTX --threads $THREADS --n-gen $N_GEN --kv $kv --repack 0"
    echo "greedy: $key kv=$kv" >&2
    # shellcheck disable=SC2086
    "$REF" --model "$model" --prompts "$TMP/$key.prompts.json" --out "$TMP/out.json" $args \
      --llama-cpp "$LLAMA_CPP_VERSION" --model-name "$file" --model-sha256 "$sha" --date "$(now)" \
      --command "dev/llama-ref/llama_ref --model \$MODELS/$file --prompts <prompts of scripts/make-reference-fixtures.sh> $args"
    # Cross-check our tokenization against llama-tokenize's before accepting the file.
    python3 - "$TMP/out.json" "$BIN/llama-tokenize" "$model" <<'PY'
import json, subprocess, sys
d = json.load(open(sys.argv[1]))
for c in d["cases"]:
    ids = subprocess.run([sys.argv[2], "-m", sys.argv[3], "--ids", "--log-disable", "--no-escape", "--stdin"],
                         input=c["prompt"].encode(), capture_output=True, check=True).stdout.decode().strip().splitlines()[-1]
    assert json.loads(ids) == c["prompt_ids"], (c["prompt"], ids, c["prompt_ids"])
    assert len(c["greedy_ids"]) == 32 and c["greedy_logits"][0] == c["last_logits_top"][0][1]
PY
    mv "$TMP/out.json" "$out"
    echo "wrote $out" >&2
  done
}

perplexity() {
  local key=$1 file; file=$(model_file "$1")
  local model=$MODEL_DIR/$file sha; sha=$(sha256sum "$model" | cut -d' ' -f1)
  local common="-f $PPL_TEXT -c $N_CTX -t $THREADS --no-repack"
  echo "perplexity: $key (flash attention auto, then off)" >&2
  # shellcheck disable=SC2086
  "$BIN/llama-perplexity" -m "$model" $common > "$TMP/ppl-auto.log" 2>&1
  # shellcheck disable=SC2086
  "$BIN/llama-perplexity" -m "$model" $common -fa off > "$TMP/ppl-off.log" 2>&1
  # llama-perplexity's -f drops one trailing newline before tokenizing (with BOS per the model); count the same text.
  python3 -c 'import sys; t=open(sys.argv[1],"rb").read(); sys.stdout.buffer.write(t[:-1] if t.endswith(b"\n") else t)' \
    "$PPL_TEXT" > "$TMP/ppl-text.txt"
  local n_tokens
  n_tokens=$("$BIN/llama-tokenize" -m "$model" -f "$TMP/ppl-text.txt" --show-count --ids --no-escape --log-disable 2>/dev/null \
    | sed -n 's/^Total number of tokens: //p')
  python3 - "$FIX/$key.perplexity.json" "$TMP/ppl-auto.log" "$TMP/ppl-off.log" "$n_tokens" <<PY
import json, re, sys
out, log_auto, log_off, n_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def parse(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    m = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+)", text)
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", text)
    running = [float(v) for _, v in re.findall(r"\[(\d+)\]([0-9.]+),", text)]
    assert m and final and running, path
    return {"n_chunks": int(m.group(1)), "n_ctx": int(m.group(2)), "ppl": float(final.group(1)),
            "ppl_err": float(final.group(2)), "running_ppl": running}
auto, off = parse(log_auto), parse(log_off)
assert auto["n_chunks"] == len(auto["running_ppl"]) == off["n_chunks"] == len(off["running_ppl"])
cmd = "llama-perplexity -m \$MODELS/$file -f $PPL_TEXT -c $N_CTX -t $THREADS --no-repack"
doc = {
    "llama_cpp": "$LLAMA_CPP_VERSION",
    "model": "$file",
    "model_sha256": "$sha",
    "text_file": "$PPL_TEXT",
    "n_ctx": auto["n_ctx"],
    "n_threads": $THREADS,
    "kv_type": "f16",
    "repack": False,
    "date": "$(now)",
    "n_tokens": n_tokens,
    "n_chunks": auto["n_chunks"],
    "n_tokens_evaluated": auto["n_chunks"] * auto["n_ctx"],
    "n_tokens_scored": auto["n_chunks"] * (auto["n_ctx"] - 1 - auto["n_ctx"] // 2),
    "command": cmd,
    "flash_attn": "auto (llama.cpp resolves it to on for the CPU)",
    "ppl": auto["ppl"],
    "ppl_err": auto["ppl_err"],
    "running_ppl": auto["running_ppl"],
    "fa_off": {"command": cmd + " -fa off", "flash_attn": False, "ppl": off["ppl"], "ppl_err": off["ppl_err"],
               "running_ppl": off["running_ppl"]},
    "notes": "n_tokens: the text (one trailing newline dropped, as llama-perplexity's -f does) tokenized with BOS per the "
             "model, counted by llama-tokenize. The text is cut into n_chunks = n_tokens / n_ctx chunks of n_ctx tokens "
             "(the rest is unused); each chunk is evaluated on its own from position 0, its first token replaced by BOS "
             "when the model adds BOS; only the last n_ctx - 1 - n_ctx/2 predictions of each chunk are scored. "
             "running_ppl[i] is the estimate printed after chunk i+1 (exp of the mean NLL over chunks 1..i+1), so "
             "running_ppl[0] is the first chunk's own perplexity and running_ppl[-1] == ppl. ppl_err is llama.cpp's +/-.",
}
json.dump(doc, open(out, "w"), indent=2)
open(out, "a").write("\n")
PY
  echo "wrote $FIX/$key.perplexity.json" >&2
}

bench() {
  local key=$1 file; file=$(model_file "$1")
  local model=$MODEL_DIR/$file sha; sha=$(sha256sum "$model" | cut -d' ' -f1)
  local shim; shim=$(dirname "$REF")/no_amx.so
  mkdir -p "$BENCH_DIR"
  local load_before; load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "bench: $key (repack off, then repack on without AMX)" >&2
  "$BIN/llama-bench" -m "$model" -p 512 -n 128 -r 3 -t $THREADS --repack 0 -o json > "$TMP/bench0.json" 2> "$TMP/bench.log"
  LD_PRELOAD=$shim "$BIN/llama-bench" -m "$model" -p 512 -n 128 -r 3 -t $THREADS --repack 1 -o json \
    > "$TMP/bench1.json" 2>> "$TMP/bench.log"
  grep -q "AMX is not ready" "$TMP/bench.log" || { echo "bench: the no-AMX shim did not take" >&2; exit 1; }
  local load_after; load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  python3 - "$BENCH_DIR/llama.cpp-$key.json" "$TMP/bench0.json" "$TMP/bench1.json" <<PY
import json, sys
raw0, raw1 = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
def summary(raw):
    return {("pp%d" % r["n_prompt"] if r["n_prompt"] else "tg%d" % r["n_gen"]):
            {"avg_ts": r["avg_ts"], "stddev_ts": r["stddev_ts"]} for r in raw}
cmd = "llama-bench -m \$MODELS/$file -p 512 -n 128 -r 3 -t $THREADS"
doc = {
    "llama_cpp": "$LLAMA_CPP_VERSION",
    "model": "$file",
    "model_sha256": "$sha",
    "command": cmd + " --repack 0 -o json",
    "command_repack_no_amx": "LD_PRELOAD=target/llama-ref/no_amx.so " + cmd + " --repack 1 -o json",
    "cpu": cpu[0] if cpu else "unknown",
    "n_cpus": len(cpu),
    "date": "$(now)",
    "loadavg_before": "$load_before",
    "loadavg_after": "$load_after",
    "summary": summary(raw0),
    "summary_repack_no_amx": summary(raw1),
    "notes": "tokens/s. llama.cpp's default (repacking on, AMX on) segfaults on this CPU (llama.cpp issue #20824), so "
             "llama_bench is with --repack 0 (no extra CPU buffer types) and llama_bench_repack_no_amx with repacking "
             "on and AMX refused by the LD_PRELOAD shim dev/llama-ref/no_amx.c. The machine is shared with other "
             "jobs: see loadavg. The llama_bench* values are llama-bench's own JSON, unchanged.",
    "llama_bench": raw0,
    "llama_bench_repack_no_amx": raw1,
}
json.dump(doc, open(sys.argv[1], "w"), indent=2)
open(sys.argv[1], "a").write("\n")
PY
  echo "wrote $BENCH_DIR/llama.cpp-$key.json" >&2
}

for stage in $STAGES; do
  case $stage in greedy|perplexity|bench) ;; *) echo "unknown stage $stage" >&2; exit 1 ;; esac
  for key in $MODELS; do "$stage" "$key"; done
done
