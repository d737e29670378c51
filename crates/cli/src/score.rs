//! `quarrel score`: BLEU, chrF and ROUGE-L of hypotheses against references, equal to sacrebleu / rouge-score.

use anyhow::{bail, Context, Result};
use clap::Args;
use metrics::Metric;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct ScoreArgs {
    /// Metrics, comma-separated: bleu, rouge-l, chrf.
    #[arg(long, value_delimiter = ',', default_value = "bleu,rouge-l,chrf")]
    pub metric: Vec<String>,
    /// References: a plain file (one segment per line) or JSONL (.jsonl: one JSON string, array of strings, or
    /// object with `references`/`refs`/`reference`/`ref`/`text` per line). Repeat for several references.
    #[arg(long, required = true)]
    pub refs: Vec<PathBuf>,
    /// Hypotheses: a plain file (one segment per line) or JSONL (a string or an object with
    /// `hypothesis`/`hyp`/`prediction`/`output`/`text` per line).
    #[arg(long)]
    pub hyps: PathBuf,
    /// Print a JSON object (keys bleu, rouge_l, chrf) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_metrics(names: &[String]) -> Result<Vec<Metric>> {
    let mut out = Vec::new();
    for n in names.iter().filter(|n| !n.trim().is_empty()) {
        let m = Metric::parse(n)?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        bail!("no metric given (known: bleu, rouge-l, chrf)");
    }
    Ok(out)
}

fn is_jsonl(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson"))
}

/// Lines of a plain file: split on `\n`, one trailing `\r` per line dropped, no segment after a final newline.
pub fn plain_lines(text: &str) -> Vec<String> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

fn strings_of(v: &serde_json::Value, keys: &[&str]) -> Option<Vec<String>> {
    match v {
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        serde_json::Value::Object(o) => keys.iter().find_map(|k| o.get(*k)).and_then(|x| strings_of(x, &[])),
        _ => None,
    }
}

/// Segments of a file: per line, one or more strings.
pub fn read_segments(path: &Path, keys: &[&str]) -> Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if !is_jsonl(path) {
        return Ok(plain_lines(&text).into_iter().map(|l| vec![l]).collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
        let s = strings_of(&v, keys).with_context(|| {
            format!(
                "{} line {}: expected a string, an array of strings or an object with one of {keys:?}",
                path.display(),
                i + 1
            )
        })?;
        out.push(s);
    }
    Ok(out)
}

pub const REF_KEYS: &[&str] = &["references", "refs", "reference", "ref", "text"];
pub const HYP_KEYS: &[&str] = &["hypothesis", "hyp", "prediction", "output", "text"];

/// References per segment from one or more files (each file adds references to every segment).
pub fn read_refs(paths: &[PathBuf]) -> Result<Vec<Vec<String>>> {
    let mut refs: Vec<Vec<String>> = Vec::new();
    for (k, p) in paths.iter().enumerate() {
        let segs = read_segments(p, REF_KEYS)?;
        if k == 0 {
            refs = segs;
        } else if segs.len() != refs.len() {
            bail!(
                "{} has {} segments but {} has {}",
                p.display(),
                segs.len(),
                paths[0].display(),
                refs.len()
            );
        } else {
            for (r, s) in refs.iter_mut().zip(segs) {
                r.extend(s);
            }
        }
    }
    Ok(refs)
}

pub fn score(args: ScoreArgs) -> Result<()> {
    let metrics = parse_metrics(&args.metric)?;
    let refs = read_refs(&args.refs)?;
    let hyps_multi = read_segments(&args.hyps, HYP_KEYS)?;
    let mut hyps = Vec::with_capacity(hyps_multi.len());
    for (i, h) in hyps_multi.into_iter().enumerate() {
        if h.len() != 1 {
            bail!(
                "{} segment {}: one hypothesis expected, found {}",
                args.hyps.display(),
                i + 1,
                h.len()
            );
        }
        hyps.extend(h);
    }
    if hyps.len() != refs.len() {
        bail!(
            "{} has {} segments but the references have {}",
            args.hyps.display(),
            hyps.len(),
            refs.len()
        );
    }
    let mut obj = serde_json::Map::new();
    let mut lines = Vec::new();
    for m in &metrics {
        let v = m.score(&hyps, &refs)?;
        obj.insert(m.key().to_string(), v.into());
        lines.push(match m {
            Metric::Bleu => {
                let b = metrics::bleu(&hyps, &refs)?;
                format!(
                    "BLEU    = {:.4}  ({:.1}/{:.1}/{:.1}/{:.1}, BP = {:.3}, ratio = {:.3}, hyp_len = {}, ref_len = {}; \
                     sacrebleu 13a, exp smoothing)",
                    b.score,
                    b.precisions[0],
                    b.precisions[1],
                    b.precisions[2],
                    b.precisions[3],
                    b.bp,
                    b.sys_len as f64 / b.ref_len.max(1) as f64,
                    b.sys_len,
                    b.ref_len
                )
            }
            Metric::Chrf => format!("chrF2   = {v:.4}  (sacrebleu chrF, char order 6, beta 2)"),
            Metric::RougeL => format!("ROUGE-L = {v:.4}  (rouge-score F-measure, no stemmer, mean over segments)"),
        });
    }
    obj.insert("n_segments".into(), hyps.len().into());
    obj.insert("n_refs".into(), refs.iter().map(Vec::len).max().unwrap_or(0).into());
    if args.json {
        println!("{}", serde_json::Value::Object(obj));
    } else {
        for l in lines {
            println!("{l}");
        }
        println!("{} segments", hyps.len());
    }
    Ok(())
}
