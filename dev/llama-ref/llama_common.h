// Helpers shared by llama_ref.cpp and llama_dump.cpp: reading a file, tokenizing as both tools do, and decoding a
// batch of one sequence.
#pragma once

#include "llama.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

// The whole file at `path`.
inline std::string read_file(const std::string & path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

inline std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & text) {
    const bool add_special = true;   // BOS/EOS per the model's metadata (tokenizer.ggml.add_bos_token ...)
    const bool parse_special = true; // "<|im_start|>" etc. become their special ids
    int n = -llama_tokenize(vocab, text.data(), (int32_t) text.size(), nullptr, 0, add_special, parse_special);
    std::vector<llama_token> ids(std::max(n, 0));
    int got = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(),
                             add_special, parse_special);
    if (got < 0) throw std::runtime_error("llama_tokenize failed");
    ids.resize(got);
    return ids;
}

// Decode `ids` at positions start_pos.., sequence 0, output only for the last one.
inline void decode(llama_context * ctx, const std::vector<llama_token> & ids, int start_pos) {
    llama_batch batch = llama_batch_init((int32_t) ids.size(), 0, 1);
    for (size_t k = 0; k < ids.size(); k++) {
        batch.token[k] = ids[k];
        batch.pos[k] = start_pos + (llama_pos) k;
        batch.n_seq_id[k] = 1;
        batch.seq_id[k][0] = 0;
        batch.logits[k] = k + 1 == ids.size();
    }
    batch.n_tokens = (int32_t) ids.size();
    int rc = llama_decode(ctx, batch);
    llama_batch_free(batch);
    if (rc != 0) throw std::runtime_error("llama_decode returned " + std::to_string(rc));
}
