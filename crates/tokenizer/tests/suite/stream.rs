//! Streaming detokenization: tokens that split a multi-byte character must not produce broken text.

use crate::common;
use quarrel_tokenizer::{Tokenizer, Utf8Stream};

/// Feeds every id and checks the pieces join into the full decoding; returns how many feeds held bytes back.
fn stream_all(tokenizer: &Tokenizer, ids: &[u32]) -> (String, usize) {
    let mut decoder = tokenizer.stream_decoder();
    let mut out = String::new();
    let mut held_back = 0;
    for &id in ids {
        let piece = decoder.feed(id);
        if piece.len() < tokenizer.token_bytes(id).len() {
            held_back += 1;
        }
        out.push_str(&piece);
    }
    out.push_str(&decoder.finish());
    (out, held_back)
}

#[test]
fn stream_decoder_reassembles_characters_split_across_tokens() {
    // Emoji and rare CJK come out of both models as several byte-level / byte tokens.
    let text = "emoji 😀😃 family 👨‍👩‍👧‍👦 rare 鼷 𝔘𝔫𝔦 and ✓";
    for tokenizer in [common::qwen(), common::gemma()] {
        let ids = tokenizer.encode(text, false, false).expect("encode");
        let (streamed, held_back) = stream_all(tokenizer, &ids);
        assert_eq!(streamed, text);
        assert!(
            held_back > 0,
            "the text should split some character across tokens (ids {ids:?})"
        );
        assert!(!streamed.contains('\u{FFFD}'));
    }
}

#[test]
fn stream_decoder_skips_control_tokens_and_flushes_leftovers() {
    let q = common::qwen();
    let ids = q.encode("<|im_start|>user\nhi<|im_end|>", false, true).expect("encode");
    let (streamed, _) = stream_all(q, &ids);
    assert_eq!(streamed, "user\nhi");
    // A lone lead byte of a 4-byte sequence is held, then flushed lossily.
    let mut s = Utf8Stream::new();
    assert_eq!(s.push(&[0xF0]), "");
    assert_eq!(s.finish(), "\u{FFFD}");
}
