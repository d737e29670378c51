//! From ids back to text: llama.cpp's space clean-up for detokenization, and streaming UTF-8 assembly.

use crate::Tokenizer;

/// Tidies detokenized text as llama.cpp's `clean_spaces` does, in three passes over bytes: drop a space before
/// `? ! . ,`; turn ` ' ` into `'`; drop a space before `'s 'm 're 've` (but not `'t 'd 'll`).
pub fn clean_spaces(text: &[u8]) -> Vec<u8> {
    clean_contractions(&clean_lone_quotes(&clean_before_punctuation(text)))
}

fn clean_before_punctuation(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for (i, &x) in s.iter().enumerate() {
        if i > 0 && s[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    out
}

fn clean_lone_quotes(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    // Whether the byte before `i` was a space swallowed by a ` ' ` (it no longer counts as a space).
    let mut prev_swallowed = false;
    while i < s.len() {
        let x = s[i];
        let prev_is_space = i > 0 && !prev_swallowed && s[i - 1] == b' ';
        prev_swallowed = false;
        if x == b'\'' && prev_is_space && i + 1 < s.len() && s[i + 1] == b' ' {
            out.pop();
            out.push(x);
            i += 2;
            prev_swallowed = true;
            continue;
        }
        out.push(x);
        i += 1;
    }
    out
}

fn clean_contractions(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for (i, &x) in s.iter().enumerate() {
        if i > 0 && s[i - 1] == b' ' && x == b'\'' && i + 1 < s.len() {
            let x1 = s[i + 1];
            let x2 = s.get(i + 2).copied();
            let drop_space = matches!(x1, b's' | b'm') || matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e')));
            if drop_space {
                out.pop();
            }
        }
        out.push(x);
    }
    out
}

/// Assembles a byte stream into text, holding back an incomplete UTF-8 sequence at the end until its remaining
/// bytes arrive; invalid bytes become U+FFFD.
#[derive(Debug, Clone, Default)]
pub struct Utf8Stream {
    /// The bytes of an incomplete trailing sequence (at most 3).
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the text they complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    out.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // The prefix was just checked to be valid UTF-8.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete sequence at the end: keep it for the next push.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Whatever is still held back, lossily.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Streaming detokenization: feed ids one at a time, get back the text they complete. Renders each token as
/// [`Tokenizer::token_bytes`] does (control tokens empty), without detokenization's space clean-up, as llama.cpp's
/// streaming output does.
#[derive(Debug, Clone)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    bytes: Utf8Stream,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            bytes: Utf8Stream::new(),
        }
    }

    /// The newly completed text after token `id`.
    pub fn feed(&mut self, id: u32) -> String {
        self.bytes.push(self.tokenizer.token_bytes(id))
    }

    /// Whatever is still held back, lossily.
    pub fn finish(&mut self) -> String {
        self.bytes.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_spaces_examples() {
        let c = |s: &str| String::from_utf8(clean_spaces(s.as_bytes())).unwrap();
        assert_eq!(c("Hello , world 's ! ? ."), "Hello, world's!?.");
        assert_eq!(c("'s 't 're 've 'm 'll 'd 'x '"), "'s 't're've'm 'll 'd 'x '");
        assert_eq!(
            c("Hello , world 's ! ? . n't ' test ' 'd 'll 're 've 'm"),
            "Hello, world's!?. n't'test''d 'll're've'm"
        );
        assert_eq!(c(""), "");
        assert_eq!(c(" ."), ".");
    }

    #[test]
    fn utf8_stream_holds_back_split_sequences() {
        let text = "a€😀b";
        let bytes = text.as_bytes();
        let mut s = Utf8Stream::new();
        let mut out = String::new();
        for b in bytes {
            out.push_str(&s.push(std::slice::from_ref(b)));
        }
        out.push_str(&s.finish());
        assert_eq!(out, text);
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(&bytes[..2]), "a");
        assert_eq!(s.push(&bytes[2..4]), "€");
        assert_eq!(s.push(&[0xFF, b'x']), "\u{FFFD}x");
        assert_eq!(s.push(&[0xF0, 0x9F]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
