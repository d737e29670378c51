//! BLEU, chrF and ROUGE-L against the reference packages (sacrebleu, rouge-score), run through python3 at test
//! time on varied random corpora: unicode, punctuation, HTML entities, numbers, dashes, empty segments, several
//! references. A missing python3 or package fails the test (CI installs them: `.ci/run`).

use quarrel_metrics::{bleu, chrf, rouge_l, sentence_bleu};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::process::{Command, Stdio};

const PY: &str = r#"
import json, sys
import sacrebleu
from rouge_score import rouge_scorer
cases = json.load(sys.stdin)
sc = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=False)
out = []
for c in cases:
    hyps, refs = c['hyps'], c['refs']  # refs: one list of references per segment
    n_ref = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(n_ref)]
    b = sacrebleu.corpus_bleu(hyps, streams).score
    f = sacrebleu.corpus_chrf(hyps, streams).score
    rl = [sc.score_multi(r, h)['rougeL'].fmeasure for h, r in zip(hyps, refs)]
    sb = [sacrebleu.sentence_bleu(h, r).score for h, r in zip(hyps, refs)]
    out.append({'bleu': b, 'chrf': f, 'rouge_l': sum(rl) / len(rl) if rl else 0.0, 'sentence_bleu': sb})
print(json.dumps(out))
"#;

const WORDS: &[&str] = &[
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "The",
    "a",
    "quick",
    "brown",
    "fox",
    "jumps",
    "über",
    "naïve",
    "café",
    "日本語",
    "テスト",
    "Привет",
    "мир",
    "İstanbul",
    "K",
    "straße",
    "ΣΟΦΊΑ",
    "emoji😀",
    "don't",
    "it's",
    "U.S.A.",
    "e-mail",
    "1990-1995",
    "3.14",
    "1,000",
    "42",
    "-7",
    "x_y",
    "C++",
    "<skipped>",
    "&amp;",
    "&quot;",
    "&lt;b&gt;",
    "(paren)",
    "[bracket]",
    "{brace}",
    "a/b",
    "50%",
    "$9.99",
    "#tag",
    "@user",
    "~tilde",
    "`tick`",
    "back\\slash",
    "...",
    "--",
    "—",
    "«quote»",
    "“smart”",
    "ok.",
    "yes,",
    "no;",
    "why?",
    "wow!",
    "end.",
    "1.",
    ",start",
    "a.b",
    "x,y",
    "9-",
];

fn random_segment(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.08) {
        return String::new();
    }
    let n = rng.gen_range(1..18);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(match rng.gen_range(0..20) {
                0 => "  ",
                1 => "\t",
                2 => "\u{a0}",
                3 => "",
                4 => "\u{3000}",
                _ => " ",
            });
        }
        if rng.gen_bool(0.1) {
            // A random code point from a few blocks (Latin-1, Greek, CJK, symbols, digits).
            let c = match rng.gen_range(0..5) {
                0 => rng.gen_range(0x21u32..0x7f),
                1 => rng.gen_range(0xa1u32..0x180),
                2 => rng.gen_range(0x391u32..0x3c9),
                3 => rng.gen_range(0x4e00u32..0x4e80),
                _ => rng.gen_range(0x2010u32..0x2030),
            };
            s.push(char::from_u32(c).unwrap_or('?'));
        } else {
            s.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        }
    }
    if rng.gen_bool(0.1) {
        s.push(' ');
    }
    s
}

/// A hypothesis close to a reference: some words dropped, swapped or replaced.
fn perturb(rng: &mut StdRng, r: &str) -> String {
    let mut w: Vec<String> = r.split(' ').map(str::to_string).collect();
    for _ in 0..rng.gen_range(0..4) {
        if w.is_empty() {
            break;
        }
        let i = rng.gen_range(0..w.len());
        match rng.gen_range(0..3) {
            0 => {
                w.remove(i);
            }
            1 => w[i] = WORDS[rng.gen_range(0..WORDS.len())].to_string(),
            _ => {
                let j = rng.gen_range(0..w.len());
                w.swap(i, j);
            }
        }
    }
    w.join(" ")
}

struct Case {
    hyps: Vec<String>,
    refs: Vec<Vec<String>>,
}

fn cases() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(20_240_601);
    let mut out = Vec::new();
    for k in 0..60 {
        let n_seg = rng.gen_range(1..25);
        let n_refs = if k % 4 == 3 { rng.gen_range(2..4) } else { 1 };
        let mut hyps = Vec::new();
        let mut refs = Vec::new();
        for _ in 0..n_seg {
            let rs: Vec<String> = (0..n_refs).map(|_| random_segment(&mut rng)).collect();
            let h = if rng.gen_bool(0.7) {
                perturb(&mut rng, &rs[0])
            } else {
                random_segment(&mut rng)
            };
            hyps.push(h);
            refs.push(rs);
        }
        out.push(Case { hyps, refs });
    }
    // Edge cases: everything empty, identical, one-word segments.
    out.push(Case {
        hyps: vec![String::new(), String::new()],
        refs: vec![vec![String::new()], vec!["a".into()]],
    });
    out.push(Case {
        hyps: vec!["Hello, world.".into(), "It costs $3.50 (1990-1995).".into()],
        refs: vec![vec!["Hello, world.".into()], vec!["It costs $3.50 (1990-1995).".into()]],
    });
    out.push(Case {
        hyps: vec!["a".into(), "b".into(), "c".into()],
        refs: vec![vec!["a".into()], vec!["b".into()], vec!["d".into()]],
    });
    out
}

#[test]
fn bleu_chrf_rouge_l_equal_the_python_packages_to_4_decimals() {
    let cases = cases();
    let input = serde_json::Value::Array(
        cases
            .iter()
            .map(|c| serde_json::json!({"hyps": c.hyps, "refs": c.refs}))
            .collect(),
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for this test (see .ci/run)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 with sacrebleu and rouge-score must be installed for this test (pip install sacrebleu rouge-score): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(want.len(), cases.len());
    let mut worst = [0.0f64; 3];
    for (i, (c, w)) in cases.iter().zip(&want).enumerate() {
        let got = [
            bleu(&c.hyps, &c.refs).unwrap().score,
            chrf(&c.hyps, &c.refs).unwrap(),
            rouge_l(&c.hyps, &c.refs).unwrap(),
        ];
        for (k, key) in ["bleu", "chrf", "rouge_l"].iter().enumerate() {
            let e = w[key].as_f64().unwrap();
            let d = (got[k] - e).abs();
            worst[k] = worst[k].max(d);
            assert!(
                d < 5e-5,
                "case {i}: {key} {} vs python {e}\nhyps {:?}\nrefs {:?}",
                got[k],
                c.hyps,
                c.refs
            );
        }
    }
    // sacrebleu's sentence_bleu (effective order) per segment.
    let mut n_sent = 0;
    for (c, w) in cases.iter().zip(&want) {
        for (k, (h, r)) in c.hyps.iter().zip(&c.refs).enumerate() {
            let e = w["sentence_bleu"][k].as_f64().unwrap();
            let g = sentence_bleu(h, r).unwrap().score;
            assert!((g - e).abs() < 5e-5, "sentence_bleu {g} vs python {e}: {h:?} / {r:?}");
            n_sent += 1;
        }
    }
    assert!(n_sent > 500, "{n_sent} segments");
    eprintln!(
        "largest differences: bleu {:.2e}, chrf {:.2e}, rouge_l {:.2e}",
        worst[0], worst[1], worst[2]
    );
}
