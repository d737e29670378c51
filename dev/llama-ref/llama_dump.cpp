// llama_dump: write every intermediate tensor llama.cpp computes for one prompt to a binary file, to find the
// first op where another engine's forward pass parts from ggml's.
//
// The prompt is tokenized (BOS as the metadata says, special tokens parsed) and decoded as one batch with output
// for its last position, then `--steps` greedy tokens are decoded one at a time; every graph node of every decode
// (through llama.cpp's eval callback) is written as a record:
//   u32 decode index, u32 name length, name bytes, i64 ne[4], f32 data[ne0*ne1*ne2*ne3]   (little endian)
// Contiguous F32 and F16 tensors only (F16 widened to f32); views and permutes are skipped (their sources are
// recorded). Settings as llama_ref: CPU, flash attention off, KV cache f16 unless --kv f32, repacking off.
//
// usage: llama_dump --model M.gguf (--prompt TEXT | --prompt-file FILE) --out FILE [--steps 0] [--ctx 512] [--threads 2] [--kv f16|f32]

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"
#include "llama_common.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Dump {
    FILE * out = nullptr;
    uint32_t decode_index = 0;
    std::vector<uint8_t> raw;
    std::vector<float> f32;
};

bool on_tensor(struct ggml_tensor * t, bool ask, void * user) {
    auto * d = static_cast<Dump *>(user);
    const bool wanted = (t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_F16) && ggml_is_contiguous(t) &&
                        t->op != GGML_OP_VIEW && t->op != GGML_OP_PERMUTE && t->op != GGML_OP_RESHAPE &&
                        t->op != GGML_OP_TRANSPOSE;
    if (ask) return wanted;
    if (!wanted) return true;
    const size_t n = (size_t) ggml_nelements(t);
    d->raw.resize(ggml_nbytes(t));
    ggml_backend_tensor_get(t, d->raw.data(), 0, d->raw.size());
    d->f32.resize(n);
    if (t->type == GGML_TYPE_F32) {
        memcpy(d->f32.data(), d->raw.data(), n * sizeof(float));
    } else {
        ggml_fp16_to_fp32_row(reinterpret_cast<const ggml_fp16_t *>(d->raw.data()), d->f32.data(), (int64_t) n);
    }
    const char * name = ggml_get_name(t);
    const uint32_t len = (uint32_t) strlen(name);
    fwrite(&d->decode_index, 4, 1, d->out);
    fwrite(&len, 4, 1, d->out);
    fwrite(name, 1, len, d->out);
    fwrite(t->ne, 8, 4, d->out);
    fwrite(d->f32.data(), 4, n, d->out);
    return true;
}

void quiet_log(enum ggml_log_level, const char *, void *) {}

int run(int argc, char ** argv) {
    std::string model_path, prompt, out_path, kv = "f16";
    int steps = 0, n_ctx = 512, threads = 2;
    for (int i = 1; i < argc; i++) {
        std::string key = argv[i];
        if (i + 1 >= argc) throw std::runtime_error("missing value for " + key);
        std::string val = argv[++i];
        if (key == "--model") model_path = val;
        else if (key == "--prompt") prompt = val;
        else if (key == "--prompt-file") prompt = read_file(val);
        else if (key == "--out") out_path = val;
        else if (key == "--steps") steps = std::stoi(val);
        else if (key == "--ctx") n_ctx = std::stoi(val);
        else if (key == "--threads") threads = std::stoi(val);
        else if (key == "--kv") kv = val;
        else throw std::runtime_error("unknown flag " + key);
    }
    if (model_path.empty() || out_path.empty()) throw std::runtime_error("--model and --out are required");

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.use_extra_bufts = false; // llama.cpp's AMX path segfaults on this CPU (see llama_ref.cpp)
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) throw std::runtime_error("cannot load model " + model_path);
    const llama_vocab * vocab = llama_model_get_vocab(model);

    Dump dump;
    dump.out = fopen(out_path.c_str(), "wb");
    if (!dump.out) throw std::runtime_error("cannot write " + out_path);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) n_ctx;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = kv == "f32" ? GGML_TYPE_F32 : GGML_TYPE_F16;
    cp.type_v = cp.type_k;
    cp.cb_eval = on_tensor;
    cp.cb_eval_user_data = &dump;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) throw std::runtime_error("cannot create context");

    const std::vector<llama_token> ids = tokenize(vocab, prompt);
    decode(ctx, ids, 0);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    int pos = (int) ids.size();
    for (int s = 0; s < steps; s++) {
        const float * logits = llama_get_logits_ith(ctx, -1);
        llama_token best = 0;
        for (int t = 1; t < n_vocab; t++)
            if (logits[t] > logits[best]) best = t;
        dump.decode_index++;
        decode(ctx, {best}, pos++);
        fprintf(stderr, "step %d: token %d\n", s, best);
    }
    fclose(dump.out);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}

} // namespace

int main(int argc, char ** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception & e) {
        fprintf(stderr, "llama_dump: %s\n", e.what());
        return 1;
    }
}
