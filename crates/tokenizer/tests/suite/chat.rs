//! Chat templates of both real models against jinja2's renderings (fixtures/chat_templates.json).

use crate::common;
use quarrel_tokenizer::{ChatMessage, ChatTemplate};

#[test]
fn chat_templates_render_as_jinja2_does() {
    let fixture = common::read_fixture("chat_templates.json");
    let gemma_source = quarrel_tokenizer::GEMMA3_CHAT_TEMPLATE.to_owned();
    let qwen_source = common::qwen().chat_template().expect("qwen has a template").to_owned();
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for case in cases {
        let source = match case["template"].as_str() {
            Some("qwen2.5-coder-0.5b") => &qwen_source,
            Some("gemma3-270m") => &gemma_source,
            other => panic!("unknown template {other:?}"),
        };
        let template = ChatTemplate::new(
            source,
            case["bos_token"].as_str().expect("bos"),
            case["eos_token"].as_str().expect("eos"),
        )
        .expect("compiles");
        let messages: Vec<ChatMessage> = case["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                ChatMessage::new(
                    m["role"].as_str().expect("role"),
                    m["content"].as_str().expect("content"),
                )
            })
            .collect();
        let add_generation_prompt = case["add_generation_prompt"].as_bool().expect("flag");
        let rendered = template.render(&messages, add_generation_prompt);
        match (case.get("expected"), case.get("error")) {
            (Some(expected), _) => assert_eq!(
                rendered.expect("renders"),
                expected.as_str().expect("expected"),
                "{case}"
            ),
            (None, Some(error)) => {
                let message = rendered.expect_err("should fail").to_string();
                assert!(message.contains(error.as_str().expect("error")), "{message}");
            }
            _ => panic!("case without expectation: {case}"),
        }
    }
}

#[test]
fn qwen_template_from_the_file_renders_its_default_system_prompt() {
    let template = common::qwen()
        .compiled_chat_template()
        .expect("compiles")
        .expect("present");
    let out = template
        .render(&[ChatMessage::new("user", "hi")], true)
        .expect("renders");
    assert!(
        out.starts_with("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud."),
        "{out}"
    );
    assert!(
        out.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        "{out}"
    );
    assert!(common::gemma().compiled_chat_template().expect("no error").is_none());
}

/// A rendered conversation tokenizes with the special tokens as single tokens.
#[test]
fn rendered_prompt_tokenizes_special_tokens() {
    let g = common::gemma();
    let template = ChatTemplate::new(quarrel_tokenizer::GEMMA3_CHAT_TEMPLATE, "<bos>", "<eos>").expect("compiles");
    let prompt = template
        .render(&[ChatMessage::new("user", "Hello")], true)
        .expect("renders");
    let ids = g.encode(&prompt, false, true).expect("encode");
    let start = g.token_id("<start_of_turn>").expect("token");
    assert_eq!(ids[0], g.bos().expect("bos"));
    assert_eq!(ids[1], start);
    assert_eq!(ids.iter().filter(|&&id| id == start).count(), 2);
}
