//! Tokenizers built from GGUF metadata: SentencePiece-style (`tokenizer.ggml.model = llama`) and byte-level BPE
//! (`gpt2`, pre-tokenizer named by `tokenizer.ggml.pre`), special tokens, streaming UTF-8 detokenization, and chat
//! templates rendered with minijinja.
