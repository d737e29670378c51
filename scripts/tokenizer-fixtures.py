#!/usr/bin/env python3
"""Regenerate the tokenizer fixtures in crates/tokenizer/tests/fixtures/ from llama.cpp (the black-box reference).

    scripts/tokenizer-fixtures.py [--llama-cpp DIR] [--models DIR]

For each model (the two real ones, plus tensor-less copies of their metadata with one key changed, to exercise
other pre-tokenizers and the SentencePiece space prefix) it writes NAME.tokens.json:
  {"llama_cpp": ..., "model": "FILE sha256:PREFIX", "overrides": {key: value}, "cases": [
     {"text": T,
      "ids": llama-tokenize's ids (BOS per metadata, special tokens parsed)   == encode(T, true, true)
      "ids_plain": llama_tokenize(add_special=false, parse_special=false)        == encode(T, false, false)
      "detok": llama_detokenize(ids, remove_special=false, unparse_special=false) == decode(ids)
      "detok_special": same with unparse_special=true      == decode_with(ids, false, true)
      "detok_remove": same with remove_special=true         == decode_with(ids, true, false)
      "detok_plain": llama_detokenize(ids_plain, false, false) == decode(ids_plain)}]}
(detok values are strings where the bytes are valid UTF-8, else {"hex": ...}), and for the real models
NAME.vocab.json: end-of-generation ids, token attributes and rendered pieces, checked as a digest over all tokens
plus an explicit sample; and chat_templates.json: conversations rendered by Python's jinja2 the way Hugging Face
renders chat templates (trim_blocks, lstrip_blocks, raise_exception, tojson), for the Qwen template stored in its
GGUF and the Gemma 3 template in crates/tokenizer/src/templates/gemma3.jinja (the Gemma GGUF carries none).

Needs: g++, python `gguf` (pip install gguf), llama.cpp built (llama-tokenize, libllama.a, headers).
"""
import argparse, hashlib, json, os, struct, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates/tokenizer/tests/fixtures")
HARNESS = os.path.join(ROOT, "crates/tokenizer/tools/llama_ref.cpp")
LLAMA_CPP_BUILD = "build 11312 (2026-10-01)"
QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"

# (fixture name, model file, metadata overrides or None for the real file)
MODELS = [
    ("qwen2.5-coder-0.5b", QWEN, None),
    ("gemma3-270m", GEMMA, None),
    ("qwen-vocab-pre-llama-bpe", QWEN, {"tokenizer.ggml.pre": "llama-bpe"}),
    ("qwen-vocab-pre-gpt-2", QWEN, {"tokenizer.ggml.pre": "gpt-2"}),
    ("qwen-vocab-pre-smollm", QWEN, {"tokenizer.ggml.pre": "smollm"}),
    ("qwen-vocab-pre-default", QWEN, {"tokenizer.ggml.pre": "default"}),
    ("gemma-vocab-space-prefix", GEMMA, {"tokenizer.ggml.add_space_prefix": True}),
] + [
    # QWEN's metadata with the tiny digits vocabulary (written to digits-vocab.json for the tests)
    (f"digits-vocab-pre-{pre}", QWEN, {"digits": True, "tokenizer.ggml.pre": pre})
    for pre in ["qwen2", "llama-bpe", "gpt-2", "smollm", "default"]
]

CASES = [
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "Hello world",
    "Hello, world!",
    " Hello world",
    "Hello  world   ",
    "trailing spaces   ",
    "   leading spaces",
    "line one\nline two\n\nline four\n",
    "a\r\nb\r\n\r\nc",
    "tabs\tand\t\tmore\ttabs",
    "\t\tindented with tabs",
    "mixed \t \n \t whitespace \n\n  \n",
    "don't won't can't I'm you're we've they'll he'd it's",
    "DON'T WON'T I'M YOU'RE WE'VE THEY'LL HE'D IT'S",
    "'s 't 're 've 'm 'll 'd 'x '",
    "Hello , world 's ! ? . n't ' test ' 'd 'll 're 've 'm",
    "1",
    "12",
    "123",
    "1234",
    "12345678901234567890",
    "3.14159 and 2,718,281 and 1e-10 and 0x1F",
    "Call 555-0100 or +1 (800) 123-4567.",
    "The year 2026 had 365 days.",
    "https://example.com/path/to/page?query=1&b=two#frag",
    "email: someone@example.org, ftp://files.example.net/a_b-c.txt",
    "def main():\n    print(\"hi\")\n    return 0\n",
    "fn main() {\n\tlet x = vec![1, 2, 3];\n\tfor i in x { println!(\"{i}\"); }\n}\n",
    "if (a && b || !c) { x += 1; } else { y -= 2; }",
    "    four spaces\n        eight spaces\n",
    "<html><body><table><tr><td>cell</td></tr></table></body></html>",
    "<div class=\"x\">text</div> <span>and</span> <b>bold</b> <s>strike</s>",
    "café naïve résumé façade Ångström",
    "Ünïcödé àéîõü ÀÉÎÕÜ ñ ç ß ø å",
    "日本語のテキストです。東京は大きい。",
    "中文测试：你好，世界！",
    "한국어 텍스트 안녕하세요",
    "Русский текст: привет, мир!",
    "Ελληνικά: γειά σου κόσμε",
    "العربية: مرحبا بالعالم",
    "עברית: שלום עולם",
    "हिन्दी: नमस्ते दुनिया",
    "ไทย: สวัสดีชาวโลก",
    "emoji 😀😃😄 🎉 👍🏽",
    "family 👨‍👩‍👧‍👦 and flag 🇯🇵 and 🏳️‍🌈",
    "math ∑∫√∞ ≤ ≥ ≠ ± × ÷ → ⇒",
    "quotes “double” ‘single’ «guillemets» — dash – en",
    "zero\u200bwidth\u200cjoiner\u200d and nbsp\u00a0here",
    "control \u0001\u0002 chars \u007f del",
    "Ideographic\u3000space and em\u2003space",
    "!!!???...,,,;;;:::",
    "$100 + 50% = ~€150 | a^b <=> c",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>",
    "text<|endoftext|>more text",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text<eos>",
    "<unk> and <pad> and <mask>",
    "<unused0><unused1> unused",
    "</s> end of sentence",
    "[multimodal] <start_of_image>",
    "almost special <|im_start| and <start_of_turn",
    "<|im_start|><|im_start|><|im_end|>",
    "▁ already has the SentencePiece space ▁▁",
    "Ġ and Ċ byte-level look-alikes",
    "a\u0300 combining grave, e\u0301 combining acute",
    "\u00ad soft hyphen \ufeff bom",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟘𝟙𝟚",
    "½ ¾ ² ³ Ⅻ ⅷ ① ②",
    "x" + " " * 20 + "y",
    "\n \n \n",
    " \n",
    "end with newline\n",
]


def sha256_prefix(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def build_harness(llama_dir, out_dir):
    exe = os.path.join(out_dir, "llama_ref")
    libs = [
        "build/src/libllama.a",
        "build/ggml/src/libggml.a",
        "build/ggml/src/libggml-cpu.a",
        "build/ggml/src/libggml-base.a",
    ]
    cmd = ["g++", "-O1", "-std=c++17", "-I", os.path.join(llama_dir, "src/include"),
           "-I", os.path.join(llama_dir, "src/ggml/include"), HARNESS]
    cmd += [os.path.join(llama_dir, lib) for lib in libs] + ["-lpthread", "-fopenmp", "-ldl", "-o", exe]
    subprocess.run(cmd, check=True)
    return exe


def add_value(writer, key, value):
    import gguf

    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, list) and value and isinstance(value[0], int):
        writer.add_array(key, value)  # token types
    elif isinstance(value, list):
        writer.add_key_value(key, value, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.STRING)
    else:
        writer.add_string(key, value)


def digits_vocab():
    """A tiny byte-level BPE vocabulary whose only merges join digits ("1 2" -> "12", "12 3" -> "123"), to see
    how each pre-tokenizer groups digits, plus one control, one unknown and one user-defined token."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    stand_in, extra = {}, 0
    for b in range(256):
        if b in printable:
            stand_in[b] = chr(b)
        else:
            stand_in[b] = chr(0x100 + extra)
            extra += 1
    tokens = [stand_in[b] for b in range(256)]
    merges = []
    digits = "0123456789"
    for a in digits:
        for b in digits:
            tokens.append(a + b)
            merges.append(f"{a} {b}")
    for a in digits:
        for b in digits:
            for c in digits:
                tokens.append(a + b + c)
                merges.append(f"{a}{b} {c}")
    types = [1] * len(tokens)
    tokens += ["<|endoftext|>", "<unk>", "<user>"]
    types += [3, 2, 4]
    eot = tokens.index("<|endoftext|>")
    return {
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": eot,
        "tokenizer.ggml.eos_token_id": eot,
        "tokenizer.ggml.padding_token_id": eot,
    }


DIGIT_CASES = [
    "1234567",
    " 12345",
    "a1234b",
    "12 345 6789",
    "3.14159",
    "٣٤٥ 123",
    "0000000",
    "1,234,567.89",
    "x=10000;",
    "½123",
    "v1.2.3-rc45",
    "2026-10-01T12:34:56Z",
    "<user>123<unk>4567<|endoftext|>89",
]


def write_variant(src, dst, overrides):
    """A tensor-less GGUF holding src's metadata with `overrides` applied (llama.cpp loads it vocab-only)."""
    import gguf

    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        if key in overrides:
            add_value(writer, key, overrides[key])
        elif vtype == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), vtype, sub_type=field.types[1])
        else:
            writer.add_key_value(key, field.contents(), vtype)
    for key, value in overrides.items():
        if key not in reader.fields:
            add_value(writer, key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def text_or_hex(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": raw.hex()}


def unhex(field):
    return b"" if field == "-" else bytes.fromhex(field)


def run_cases(harness, model, tmp, texts):
    path = os.path.join(tmp, "cases.bin")
    with open(path, "wb") as f:
        for text in texts:
            raw = text.encode("utf-8")
            f.write(struct.pack("<I", len(raw)) + raw)
    out = subprocess.run([harness, model, "cases", path], check=True, capture_output=True).stdout
    lines = out.decode("ascii").splitlines()
    assert len(lines) == 6 * len(texts), (len(lines), len(texts))
    cases = []
    for i, text in enumerate(texts):
        ids_special, ids_plain, detok, detok_special, detok_remove, detok_plain = (
            lines[6 * i + k].split(" ") for k in range(6))
        assert ids_special[:3] == ["ids", "1", "1"] and ids_plain[:3] == ["ids", "0", "0"]
        assert detok[:3] == ["detok", "0", "0"] and detok_special[:3] == ["detok", "0", "1"]
        assert detok_remove[:3] == ["detok", "1", "0"] and detok_plain[:3] == ["detok", "0", "0"]
        cases.append({
            "text": text,
            "ids": [int(x) for x in ids_special[3:]],
            "ids_plain": [int(x) for x in ids_plain[3:]],
            "detok": text_or_hex(unhex(detok[3])),
            "detok_special": text_or_hex(unhex(detok_special[3])),
            "detok_remove": text_or_hex(unhex(detok_remove[3])),
            "detok_plain": text_or_hex(unhex(detok_plain[3])),
        })
    return cases


def llama_tokenize_ids(llama_dir, model, text):
    exe = os.path.join(llama_dir, "build/bin/llama-tokenize")
    out = subprocess.run([exe, "-m", model, "--stdin", "--no-escape", "--ids", "--log-disable"],
                         input=text.encode("utf-8"), check=True, capture_output=True).stdout
    return json.loads(out.decode("ascii").strip().splitlines()[-1])


def vocab_fixture(harness, model):
    out = subprocess.run([harness, model, "vocab"], check=True, capture_output=True).stdout.decode("ascii")
    digest_plain, digest_special = hashlib.sha256(), hashlib.sha256()
    attrs, eog, sample = {}, [], []
    for line in out.splitlines():
        tid, attr, is_eog, plain, special = line.split(" ")
        tid, attr = int(tid), int(attr)
        plain, special = unhex(plain), unhex(special)
        # digest: per token, little-endian u32 length then the bytes
        digest_plain.update(struct.pack("<I", len(plain)) + plain)
        digest_special.update(struct.pack("<I", len(special)) + special)
        attrs[attr] = attrs.get(attr, 0) + 1
        if is_eog == "1":
            eog.append(tid)
        # every special-looking token but the thousands of reserved ones, and a sample of the rest
        if (attr != 4 and attr != 10) or tid % 997 == 0:
            sample.append({"id": tid, "attr": attr, "piece": plain.hex(), "piece_special": special.hex()})
    return {
        "eog": eog,
        "attr_counts": {str(k): v for k, v in sorted(attrs.items())},
        "pieces_sha256": digest_plain.hexdigest(),
        "pieces_special_sha256": digest_special.hexdigest(),
        "sample": sample,
    }


CONVERSATIONS = [
    ([("user", "Hello")], True),
    ([("user", "Hello")], False),
    ([("system", "You are terse."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "What is 2+2?")], True),
    ([("system", "You are terse."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "What is 2+2?")], False),
    ([("user", "  padded content \n\n"), ("assistant", "\tanswer  ")], True),
    ([("user", "日本語 ✓ 😀 \"quotes\" <tags> {{ not jinja }}")], True),
    ([("user", "one"), ("user", "two")], True),
    ([("assistant", "I speak first")], True),
]


def chat_fixture(qwen_model):
    """Renders CONVERSATIONS with jinja2 set up as Hugging Face's apply_chat_template sets it up."""
    import gguf
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    reader = gguf.GGUFReader(qwen_model)
    qwen_template = reader.fields["tokenizer.chat_template"].contents()
    with open(os.path.join(ROOT, "crates/tokenizer/src/templates/gemma3.jinja"), encoding="utf-8") as f:
        gemma_template = f.read()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    templates = [
        ("qwen2.5-coder-0.5b", qwen_template, "<|endoftext|>", "<|im_end|>"),
        ("gemma3-270m", gemma_template, "<bos>", "<eos>"),
    ]
    cases = []
    for name, source, bos, eos in templates:
        compiled = env.from_string(source)
        for conversation, add_generation_prompt in CONVERSATIONS:
            messages = [{"role": role, "content": content} for role, content in conversation]
            case = {"template": name, "bos_token": bos, "eos_token": eos, "messages": messages,
                    "add_generation_prompt": add_generation_prompt}
            try:
                case["expected"] = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                   bos_token=bos, eos_token=eos)
            except jinja2.exceptions.TemplateError as e:
                case["error"] = str(e)
            cases.append(case)
    dump(os.path.join(FIXTURES, "chat_templates.json"), {"renderer": f"jinja2 {jinja2.__version__}", "cases": cases})


# Other `tokenizer.ggml.pre` names to classify: each is loaded by llama.cpp with the digits vocabulary and its
# results compared with those of the canonical names (written to pre-aliases.json).
ALIAS_CANDIDATES = [
    "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "deepseek-r1-qwen", "qwen3",
    "megrez", "hunyuan-dense", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "mellum",
    "olmo", "stablelm2", "starcoder", "refact", "falcon", "mpt", "dbrx", "smaug-bpe", "poro-chat", "tekken",
    "gpt-4o", "command-r", "deepseek-llm", "deepseek-coder", "deepseek-v3", "exaone", "chatglm-bpe", "viking",
    "jais", "bloom", "seed-coder", "kimi-k2", "grok-2", "trillion", "bailingmoe", "llada-moe", "gpt2",
]
CANONICAL_PRES = ["qwen2", "llama-bpe", "gpt-2", "smollm", "default"]


def classify_aliases(harness, src, tmp):
    """Two tests per name: the digits vocabulary (digit grouping, space clean-up) and Qwen's own vocabulary (how
    letters, spaces and punctuation split), each against the canonical names' results."""
    digits = digits_vocab()

    def outcome(pre, vocab, texts):
        model = os.path.join(tmp, f"alias-{pre}.gguf")
        write_variant(src, model, {"tokenizer.ggml.pre": pre, **vocab})
        try:
            return run_cases(harness, model, tmp, texts)
        except subprocess.CalledProcessError:
            return None
        finally:
            os.remove(model)

    def qwen_fixture(pre):
        name = "qwen2.5-coder-0.5b" if pre == "qwen2" else f"qwen-vocab-pre-{pre}"
        with open(os.path.join(FIXTURES, name + ".tokens.json"), encoding="utf-8") as f:
            return json.load(f)["cases"]

    canonical_digits = {pre: outcome(pre, digits, CASES + DIGIT_CASES) for pre in CANONICAL_PRES}
    canonical_qwen = {pre: qwen_fixture(pre) for pre in CANONICAL_PRES}
    result = {}
    for alias in ALIAS_CANDIDATES:
        on_digits = outcome(alias, digits, CASES + DIGIT_CASES)
        if on_digits is None:
            result[alias] = {"loads": False}
            continue
        same = [pre for pre, ref in canonical_digits.items() if ref == on_digits]
        if same:
            on_qwen = outcome(alias, {}, CASES)
            same = [pre for pre in same if canonical_qwen[pre] == on_qwen]
        result[alias] = {"loads": True, "same_as": same}
        print(f"  {alias}: {result[alias]}", file=sys.stderr)
    dump(os.path.join(FIXTURES, "pre-aliases.json"), {
        "llama_cpp": LLAMA_CPP_BUILD,
        "method": "each name loaded by llama.cpp with the digits vocabulary and with Qwen's vocabulary; same_as "
                  "lists the canonical names whose ids and detokenizations equal its own on every case of both",
        "aliases": result,
    })


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", default=os.path.expanduser("~/.cache/quarrel-peers/llama.cpp-0.3.36"))
    parser.add_argument("--models", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "quarrel/models"))
    parser.add_argument("--only", nargs="*", help="fixture names to regenerate (default: all, and chat_templates)")
    args = parser.parse_args()
    os.makedirs(FIXTURES, exist_ok=True)
    if not args.only or "chat_templates" in args.only:
        chat_fixture(os.path.join(args.models, QWEN))
    with tempfile.TemporaryDirectory() as tmp:
        harness = build_harness(args.llama_cpp, tmp)
        if not args.only or "pre-aliases" in args.only:
            classify_aliases(harness, os.path.join(args.models, QWEN), tmp)
        for name, file, overrides in MODELS:
            if args.only and name not in args.only:
                continue
            src = os.path.join(args.models, file)
            if not os.path.exists(src):
                subprocess.run([os.path.join(ROOT, "scripts/fetch-models.sh")], check=True)
            model = src
            texts = CASES
            if overrides and overrides.get("digits"):
                vocab = digits_vocab()
                dump(os.path.join(FIXTURES, "digits-vocab.json"), vocab)
                overrides = {k: v for k, v in overrides.items() if k != "digits"}
                texts = CASES + DIGIT_CASES
                model = os.path.join(tmp, name + ".gguf")
                write_variant(src, model, {**overrides, **vocab})
                overrides = {**overrides, "digits_vocab": "digits-vocab.json"}
            elif overrides:
                model = os.path.join(tmp, name + ".gguf")
                write_variant(src, model, overrides)
            print(f"{name}: {len(texts)} cases", file=sys.stderr)
            cases = run_cases(harness, model, tmp, texts)
            if overrides is None:
                # the ids the brief asks for come from the llama-tokenize tool itself; the API must agree
                for case in cases:
                    tool_ids = llama_tokenize_ids(args.llama_cpp, model, case["text"])
                    if tool_ids != case["ids"]:
                        sys.exit(f"{name}: llama-tokenize and llama_tokenize disagree on {case['text']!r}")
            dump(os.path.join(FIXTURES, name + ".tokens.json"), {
                "llama_cpp": LLAMA_CPP_BUILD,
                "model": f"{file} sha256:{sha256_prefix(src)}",
                "overrides": overrides or {},
                "cases": cases,
            })
            if overrides is None:
                vocab = vocab_fixture(harness, model)
                vocab = {"llama_cpp": LLAMA_CPP_BUILD, "model": f"{file} sha256:{sha256_prefix(src)}", **vocab}
                dump(os.path.join(FIXTURES, name + ".vocab.json"), vocab)


if __name__ == "__main__":
    main()
