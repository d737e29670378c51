//! A batch of tokens from one or several sequences, each with its position, as llama.cpp's `llama_batch`.

/// Tokens to run through the decoder in one forward pass.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// [n_tokens]
    pub tokens: Vec<u32>,
    /// [n_tokens] position of each token in its sequence
    pub positions: Vec<u32>,
    /// [n_tokens] sequence (KV cache slot) of each token
    pub seq_ids: Vec<u32>,
    /// [n_tokens] whether the caller wants this token's logits
    pub want_logits: Vec<bool>,
    /// The batch's one token is the device's greedy pick of the step before (`Backend::argmax_chain`), not yet
    /// known to the host: its entry in `tokens` is a placeholder, and the device already holds the token and its
    /// position.
    pub chained: bool,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch of consecutive tokens of one sequence starting at `start_pos`; logits for the last one only.
    pub fn for_sequence(tokens: &[u32], seq: u32, start_pos: u32) -> Self {
        let mut b = Self::new();
        for (i, &t) in tokens.iter().enumerate() {
            b.push(t, start_pos + i as u32, seq, i + 1 == tokens.len());
        }
        b
    }

    pub fn push(&mut self, token: u32, pos: u32, seq: u32, want_logits: bool) {
        self.tokens.push(token);
        self.positions.push(pos);
        self.seq_ids.push(seq);
        self.want_logits.push(want_logits);
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.positions.clear();
        self.seq_ids.clear();
        self.want_logits.clear();
        self.chained = false;
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Indices of the tokens whose logits are wanted, in batch order.
    pub fn logit_rows(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.want_logits[i]).collect()
    }
}
