// llama_ref: record reference facts from llama.cpp (through its public API, llama.h) as one JSON file.
//
// For each prompt of a JSON list of strings:
//   1. tokenize it (BOS added iff the model's metadata says so, special tokens parsed),
//   2. decode the whole prompt in one batch, with output requested for the last position only,
//   3. record the last position's logits: the top 40 (id, logit), and over the full vocabulary the mean,
//      the max and the values at a few fixed probe ids,
//   4. greedy decode n_gen tokens: step 0 takes the argmax of the prompt's last logits, each later step
//      decodes the previous choice as a one-token batch and takes the argmax again. Recorded per step:
//      the chosen id, its logit, and the margin best - second best (0 for an exact tie). Ties go to the
//      lowest id. End-of-generation tokens do NOT stop the loop (so every case has exactly n_gen steps).
// The KV cache is cleared between prompts. CPU only, flash attention off, KV cache type as asked
// (default f16, which is llama.cpp's own default), weight repacking/AMX off unless --repack 1 (see run()),
// every other setting llama.cpp's default.
//
// usage: llama_ref --model M.gguf --prompts prompts.json --out out.json
//                  [--ctx 512] [--threads 2] [--n-gen 32] [--kv f16|f32] [--repack 0|1]
//                  [--llama-cpp "build ..."] [--model-name NAME] [--model-sha256 HEX]
//                  [--command "..."] [--date "..."]
// The last five are copied verbatim into the output (the caller knows them better than this program).

#include "llama.h"
#include "llama_common.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

const int kTopK = 40;

// ---------------------------------------------------------------- tiny JSON reading: an array of strings

void append_utf8(std::string & out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

struct JsonReader {
    const std::string & s;
    size_t i = 0;

    [[noreturn]] void fail(const char * what) const {
        throw std::runtime_error(std::string("prompts JSON: ") + what + " at byte " + std::to_string(i));
    }
    void skip_ws() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
    }
    char peek() {
        skip_ws();
        if (i >= s.size()) fail("unexpected end");
        return s[i];
    }
    void expect(char c) {
        if (peek() != c) fail((std::string("expected '") + c + "'").c_str());
        i++;
    }
    uint32_t hex4() {
        if (i + 4 > s.size()) fail("short \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            char c = s[i++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
            else fail("bad hex digit");
        }
        return v;
    }
    std::string string() {
        expect('"');
        std::string out;
        while (true) {
            if (i >= s.size()) fail("unterminated string");
            char c = s[i++];
            if (c == '"') return out;
            if (c != '\\') { out += c; continue; }
            if (i >= s.size()) fail("unterminated escape");
            char e = s[i++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00) {
                        if (i + 2 > s.size() || s[i] != '\\' || s[i + 1] != 'u') fail("lone high surrogate");
                        i += 2;
                        uint32_t lo = hex4();
                        if (lo < 0xDC00 || lo >= 0xE000) fail("bad low surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: fail("unknown escape");
            }
        }
    }
    std::vector<std::string> string_array() {
        std::vector<std::string> out;
        expect('[');
        if (peek() == ']') { i++; return out; }
        while (true) {
            out.push_back(string());
            char c = peek();
            i++;
            if (c == ']') break;
            if (c != ',') fail("expected ',' or ']'");
        }
        skip_ws();
        if (i != s.size()) fail("trailing bytes");
        return out;
    }
};

// ---------------------------------------------------------------- JSON writing

// Escape as a JSON string. Invalid UTF-8 bytes (a token piece cut mid-character) become U+FFFD.
std::string json_str(const std::string & in) {
    std::string out = "\"";
    size_t i = 0;
    while (i < in.size()) {
        unsigned char c = (unsigned char) in[i];
        if (c < 0x80) {
            switch (c) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                default:
                    if (c < 0x20 || c == 0x7F) {
                        char buf[8];
                        snprintf(buf, sizeof buf, "\\u%04x", c);
                        out += buf;
                    } else {
                        out += char(c);
                    }
            }
            i++;
            continue;
        }
        int len = (c >= 0xF0 && c <= 0xF4) ? 4 : (c >= 0xE0) ? 3 : (c >= 0xC2 && c < 0xE0) ? 2 : 0;
        bool ok = len > 0 && i + len <= in.size();
        for (int k = 1; ok && k < len; k++) ok = (((unsigned char) in[i + k]) & 0xC0) == 0x80;
        if (ok && len == 3) {
            unsigned char c1 = (unsigned char) in[i + 1];
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) ok = false;
        }
        if (ok && len == 4) {
            unsigned char c1 = (unsigned char) in[i + 1];
            if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90)) ok = false;
        }
        if (ok) {
            out.append(in, i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            i++;
        }
    }
    return out + "\"";
}

// Shortest-enough decimal that reads back to the same float.
std::string json_f32(float v) {
    if (!std::isfinite(v)) return v > 0 ? "1e999" : (v < 0 ? "-1e999" : "null");
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", (double) v);
    return buf;
}

// ---------------------------------------------------------------- llama.cpp helpers

std::string detokenize(const llama_vocab * vocab, const std::vector<llama_token> & ids) {
    // remove_special=false, unparse_special=true: the text shows exactly what was generated, markers included.
    std::vector<char> buf(ids.size() * 64 + 64);
    int n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), buf.data(), (int32_t) buf.size(), false, true);
    if (n < 0) {
        buf.resize(-n);
        n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), buf.data(), (int32_t) buf.size(), false, true);
    }
    if (n < 0) throw std::runtime_error("llama_detokenize failed");
    return std::string(buf.data(), n);
}

struct Argmax {
    llama_token id;
    float logit;
    float margin; // best - second best
};

Argmax argmax(const float * logits, int n_vocab) {
    int best = 0;
    for (int k = 1; k < n_vocab; k++) if (logits[k] > logits[best]) best = k; // ties: lowest id
    float second = -INFINITY;
    for (int k = 0; k < n_vocab; k++) if (k != best && logits[k] > second) second = logits[k];
    return {best, logits[best], logits[best] - second};
}

struct Case {
    std::string prompt;
    std::vector<llama_token> prompt_ids;
    std::vector<std::pair<int, float>> top;
    double mean = 0;
    float max = 0;
    std::vector<std::pair<int, float>> probe;
    std::vector<llama_token> greedy_ids;
    std::vector<float> greedy_logits;
    std::vector<float> greedy_margins;
    std::string greedy_text;
};

std::vector<int> probe_ids(int n_vocab) {
    std::vector<int> out;
    for (int id : {0, 1, 2, 3, 10, 100, 1000, 10000, 100000, 200000}) if (id < n_vocab) out.push_back(id);
    out.push_back(n_vocab / 2);
    out.push_back(n_vocab - 1);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Case run_case(llama_context * ctx, const llama_vocab * vocab, const std::string & prompt, int n_gen, int n_ctx) {
    const int n_vocab = llama_vocab_n_tokens(vocab);
    Case c;
    c.prompt = prompt;
    c.prompt_ids = tokenize(vocab, prompt);
    if (c.prompt_ids.empty()) throw std::runtime_error("prompt tokenized to nothing");
    if ((int) c.prompt_ids.size() + n_gen > n_ctx) throw std::runtime_error("prompt + n_gen exceeds n_ctx");

    llama_memory_clear(llama_get_memory(ctx), true);
    decode(ctx, c.prompt_ids, 0);
    const float * logits = llama_get_logits_ith(ctx, -1); // [n_vocab]
    if (!logits) throw std::runtime_error("no logits for the last prompt position");

    std::vector<int> order(n_vocab);
    for (int k = 0; k < n_vocab; k++) order[k] = k;
    std::partial_sort(order.begin(), order.begin() + kTopK, order.end(), [&](int a, int b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int k = 0; k < kTopK; k++) c.top.emplace_back(order[k], logits[order[k]]);
    double sum = 0;
    float mx = -INFINITY;
    for (int k = 0; k < n_vocab; k++) { sum += logits[k]; mx = std::max(mx, logits[k]); }
    c.mean = sum / n_vocab;
    c.max = mx;
    for (int id : probe_ids(n_vocab)) c.probe.emplace_back(id, logits[id]);

    int pos = (int) c.prompt_ids.size();
    for (int step = 0; step < n_gen; step++) {
        if (step > 0) {
            decode(ctx, {c.greedy_ids.back()}, pos++);
            logits = llama_get_logits_ith(ctx, -1);
            if (!logits) throw std::runtime_error("no logits at greedy step " + std::to_string(step));
        }
        Argmax a = argmax(logits, n_vocab);
        c.greedy_ids.push_back(a.id);
        c.greedy_logits.push_back(a.logit);
        c.greedy_margins.push_back(a.margin);
    }
    c.greedy_text = detokenize(vocab, c.greedy_ids);
    return c;
}

template <typename T, typename F> std::string list(const std::vector<T> & xs, F fmt) {
    std::string out = "[";
    for (size_t k = 0; k < xs.size(); k++) out += (k ? ", " : "") + fmt(xs[k]);
    return out + "]";
}

std::string pair_list(const std::vector<std::pair<int, float>> & xs) {
    return list(xs, [](const std::pair<int, float> & p) { return "[" + std::to_string(p.first) + ", " + json_f32(p.second) + "]"; });
}

void quiet_log(enum ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

struct Args {
    std::string model, prompts, out, kv = "f16";
    int ctx = 512, threads = 2, n_gen = 32;
    bool repack = false;
    std::string llama_cpp, model_name, model_sha256, command, date;
};

Args parse_args(int argc, char ** argv) {
    Args a;
    for (int k = 1; k < argc; k++) {
        std::string key = argv[k];
        if (k + 1 >= argc) throw std::runtime_error("missing value for " + key);
        std::string val = argv[++k];
        if (key == "--model") a.model = val;
        else if (key == "--prompts") a.prompts = val;
        else if (key == "--out") a.out = val;
        else if (key == "--kv") a.kv = val;
        else if (key == "--ctx") a.ctx = std::stoi(val);
        else if (key == "--threads") a.threads = std::stoi(val);
        else if (key == "--n-gen") a.n_gen = std::stoi(val);
        else if (key == "--repack") a.repack = val == "1";
        else if (key == "--llama-cpp") a.llama_cpp = val;
        else if (key == "--model-name") a.model_name = val;
        else if (key == "--model-sha256") a.model_sha256 = val;
        else if (key == "--command") a.command = val;
        else if (key == "--date") a.date = val;
        else throw std::runtime_error("unknown argument " + key);
    }
    if (a.model.empty() || a.prompts.empty() || a.out.empty()) throw std::runtime_error("need --model, --prompts and --out");
    if (a.kv != "f16" && a.kv != "f32") throw std::runtime_error("--kv must be f16 or f32");
    if (a.model_name.empty()) {
        size_t slash = a.model.find_last_of('/');
        a.model_name = slash == std::string::npos ? a.model : a.model.substr(slash + 1);
    }
    return a;
}

int run(const Args & a) {
    std::vector<std::string> prompts = JsonReader{read_file(a.prompts)}.string_array();

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0; // CPU only (this build has no GPU backend anyway)
    // Extra buffer types (weight repacking, and AMX on CPUs that have it) are OFF by default here: on an AMX CPU
    // (Sapphire Rapids class) llama.cpp's AMX matmul segfaults on these Q4_K_M models (llama.cpp issue #20824),
    // and llama-completion/-perplexity/-bench crash the same way unless given --no-repack / --repack 0.
    mp.use_extra_bufts = a.repack;
    llama_model * model = llama_model_load_from_file(a.model.c_str(), mp);
    if (!model) throw std::runtime_error("cannot load model " + a.model);
    const llama_vocab * vocab = llama_model_get_vocab(model);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) a.ctx;
    cp.n_threads = a.threads;
    cp.n_threads_batch = a.threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = a.kv == "f32" ? GGML_TYPE_F32 : GGML_TYPE_F16;
    cp.type_v = cp.type_k;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) throw std::runtime_error("cannot create context");

    std::vector<Case> cases;
    for (size_t k = 0; k < prompts.size(); k++) {
        fprintf(stderr, "llama_ref: case %zu/%zu\n", k + 1, prompts.size());
        cases.push_back(run_case(ctx, vocab, prompts[k], a.n_gen, a.ctx));
    }

    const int n_vocab = llama_vocab_n_tokens(vocab);
    std::string o = "{\n";
    o += "  \"llama_cpp\": " + json_str(a.llama_cpp) + ",\n";
    o += "  \"model\": " + json_str(a.model_name) + ",\n";
    o += "  \"model_sha256\": " + json_str(a.model_sha256) + ",\n";
    o += "  \"n_ctx\": " + std::to_string(llama_n_ctx(ctx)) + ",\n";
    o += "  \"kv_type\": " + json_str(a.kv) + ",\n";
    o += "  \"flash_attn\": false,\n";
    o += "  \"repack\": " + std::string(a.repack ? "true" : "false") + ",\n";
    o += "  \"n_threads\": " + std::to_string(a.threads) + ",\n";
    o += "  \"n_vocab\": " + std::to_string(n_vocab) + ",\n";
    o += "  \"add_bos\": " + std::string(llama_vocab_get_add_bos(vocab) ? "true" : "false") + ",\n";
    o += "  \"command\": " + json_str(a.command) + ",\n";
    o += "  \"date\": " + json_str(a.date) + ",\n";
    o += "  \"notes\": " + json_str(
        "CPU backend only; flash attention disabled; KV cache type as kv_type; extra CPU buffer types (weight "
        "repacking, AMX) as repack (off: llama.cpp's AMX path segfaults on this CPU, issue #20824), so matmuls take "
        "ggml's plain vec_dot path (activations quantized to Q8_K for K-quant weights, Q8_0 for Q5_0/Q8_0); all other "
        "llama_context/llama_model parameters at llama.cpp defaults (n_batch 2048, n_ubatch 512). "
        "Prompt tokenized with add_special=true (BOS iff add_bos) and parse_special=true, decoded as one batch "
        "with output for the last position only. last_logits_* are that position's logits; greedy_ids[0] is "
        "their argmax, so greedy_logits[0] == last_logits_top[0][1]. Each later step decodes the previous id as a "
        "one-token batch. Argmax ties go to the lowest id; greedy_margins[i] = best - second best logit. "
        "End-of-generation ids do not stop the loop. greedy_text = llama_detokenize(greedy_ids, remove_special=false, "
        "unparse_special=true), invalid UTF-8 replaced by U+FFFD. last_logits_stats.mean is over the full vocab, "
        "accumulated in double.") + ",\n";
    o += "  \"cases\": [\n";
    for (size_t k = 0; k < cases.size(); k++) {
        const Case & c = cases[k];
        o += "    {\n";
        o += "      \"prompt\": " + json_str(c.prompt) + ",\n";
        o += "      \"prompt_ids\": " + list(c.prompt_ids, [](llama_token t) { return std::to_string(t); }) + ",\n";
        o += "      \"last_logits_top\": " + pair_list(c.top) + ",\n";
        char mean[40];
        snprintf(mean, sizeof mean, "%.9g", c.mean);
        o += "      \"last_logits_stats\": {\"mean\": " + std::string(mean) + ", \"max\": " + json_f32(c.max) +
             ", \"probe\": " + pair_list(c.probe) + "},\n";
        o += "      \"greedy_ids\": " + list(c.greedy_ids, [](llama_token t) { return std::to_string(t); }) + ",\n";
        o += "      \"greedy_logits\": " + list(c.greedy_logits, json_f32) + ",\n";
        o += "      \"greedy_margins\": " + list(c.greedy_margins, json_f32) + ",\n";
        o += "      \"greedy_text\": " + json_str(c.greedy_text) + "\n";
        o += std::string("    }") + (k + 1 < cases.size() ? "," : "") + "\n";
    }
    o += "  ]\n}\n";

    std::ofstream f(a.out, std::ios::binary);
    if (!f) throw std::runtime_error("cannot write " + a.out);
    f << o;

    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}

} // namespace

int main(int argc, char ** argv) {
    try {
        return run(parse_args(argc, argv));
    } catch (const std::exception & e) {
        fprintf(stderr, "llama_ref: %s\n", e.what());
        return 1;
    }
}
