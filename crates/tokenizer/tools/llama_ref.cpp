// Reference oracle for the tokenizer fixtures: asks llama.cpp's public C API (black box) how it tokenizes,
// detokenizes and renders pieces. Built and run by scripts/tokenizer-fixtures.py; not part of the Rust build.
//
//   llama_ref MODEL cases CASES.bin   -> one line per case and mode (see below)
//   llama_ref MODEL vocab             -> one line per token: id attr is_eog piece_plain_hex piece_special_hex
//   llama_ref MODEL bench TEXT_FILE   -> tokens and best-of-5 llama_tokenize time for the file (speed reference)
//
// CASES.bin: a sequence of cases, each a little-endian u32 byte length followed by the UTF-8 text.
// Output of `cases`, per case, six lines:
//   ids <add_special> <parse_special> <id> <id> ...      for (1,1), (0,0)
//   detok <remove_special> <unparse_special> <hex>       for (0,0), (0,1), (1,0) applied to the (1,1) ids,
//                                                        then (0,0) applied to the (0,0) ids
#include "llama.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

static void quiet_log(enum ggml_log_level, const char *, void *) {}

static std::string hex(const std::string & s) {
    static const char * digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out.empty() ? std::string("-") : out;
}

static std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & text, bool add_special,
                                         bool parse_special) {
    std::vector<llama_token> ids(text.size() + 8);
    int32_t n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(),
                               add_special, parse_special);
    if (n < 0) {
        ids.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(), add_special,
                           parse_special);
    }
    ids.resize(n);
    return ids;
}

static std::string detokenize(const llama_vocab * vocab, const std::vector<llama_token> & ids, bool remove_special,
                              bool unparse_special) {
    std::string text(ids.size() * 16 + 16, '\0');
    int32_t n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), text.data(), (int32_t) text.size(),
                                 remove_special, unparse_special);
    if (n < 0) {
        text.resize(-n);
        n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), text.data(), (int32_t) text.size(),
                             remove_special, unparse_special);
    }
    text.resize(n);
    return text;
}

static std::string piece(const llama_vocab * vocab, llama_token id, bool special) {
    char buf[512];
    int32_t n = llama_token_to_piece(vocab, id, buf, sizeof(buf), 0, special);
    if (n < 0) {
        return std::string("<too long>");
    }
    return std::string(buf, n);
}

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL cases CASES.bin | MODEL vocab\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params params = llama_model_default_params();
    params.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], params);
    if (!model) {
        fprintf(stderr, "failed to load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const std::string mode = argv[2];
    if (mode == "vocab") {
        const int32_t n_tokens = llama_vocab_n_tokens(vocab);
        for (llama_token id = 0; id < n_tokens; ++id) {
            printf("%d %d %d %s %s\n", id, (int) llama_vocab_get_attr(vocab, id), (int) llama_vocab_is_eog(vocab, id),
                   hex(piece(vocab, id, false)).c_str(), hex(piece(vocab, id, true)).c_str());
        }
    } else if (mode == "bench" && argc >= 4) {
        FILE * f = fopen(argv[3], "rb");
        if (!f) {
            fprintf(stderr, "cannot open %s\n", argv[3]);
            return 1;
        }
        std::string text;
        char buf[65536];
        size_t got;
        while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
            text.append(buf, got);
        }
        fclose(f);
        double best_ms = 1e30;
        size_t n = 0;
        for (int rep = 0; rep < 5; ++rep) {
            const auto start = std::chrono::steady_clock::now();
            n = tokenize(vocab, text, true, true).size();
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
            best_ms = ms < best_ms ? ms : best_ms;
        }
        printf("%zu bytes, %zu tokens, best of 5: %.2f ms = %.2f MB/s\n", text.size(), n, best_ms,
               text.size() / best_ms / 1e3);
    } else if (mode == "cases" && argc >= 4) {
        FILE * f = fopen(argv[3], "rb");
        if (!f) {
            fprintf(stderr, "cannot open %s\n", argv[3]);
            return 1;
        }
        uint32_t len;
        while (fread(&len, 4, 1, f) == 1) {
            std::string text(len, '\0');
            if (len && fread(text.data(), 1, len, f) != len) {
                fprintf(stderr, "truncated cases file\n");
                return 1;
            }
            std::vector<llama_token> with_special;
            std::vector<llama_token> plain;
            for (int variant = 0; variant < 2; ++variant) {
                const bool flag = variant == 0;
                std::vector<llama_token> ids = tokenize(vocab, text, flag, flag);
                (flag ? with_special : plain) = ids;
                printf("ids %d %d", (int) flag, (int) flag);
                for (llama_token id : ids) {
                    printf(" %d", id);
                }
                printf("\n");
            }
            for (int unparse = 0; unparse < 2; ++unparse) {
                printf("detok 0 %d %s\n", unparse, hex(detokenize(vocab, with_special, false, unparse)).c_str());
            }
            printf("detok 1 0 %s\n", hex(detokenize(vocab, with_special, true, false)).c_str());
            printf("detok 0 0 %s\n", hex(detokenize(vocab, plain, false, false)).c_str());
        }
        fclose(f);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
