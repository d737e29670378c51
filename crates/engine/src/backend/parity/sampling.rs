//! Parity of token selection: the device's greedy argmax and top sampling candidates against the host's.

use super::Pair;
use crate::backend::Backend;
use crate::error::Result;
use rand::rngs::StdRng;
use rand::Rng;

/// The device's top sampling candidates against the host's (`Candidates::from_logits`), on rows with many exact
/// ties (logits on a 1/16 grid): ids, logits and the row maximum must be equal, the normalizer within float
/// rounding of an f64 sum. Backends that pick no candidates themselves (the CPU) are skipped.
pub(super) fn check_sampling<D: Backend>(p: &mut Pair<'_, D>, rng: &mut StdRng) -> Result<()> {
    // Greedy: the device's argmax of rows full of ties (a 1/16 grid) must be the host's, the first of equal maxima.
    for (vocab, rows) in [(1000, 1), (2049, 3), (49152, 1), (262144, 2)] {
        let logits: Vec<f32> = (0..rows * vocab)
            .map(|_| (rng.gen_range(-8.0f32..8.0) * 16.0).round() / 16.0)
            .collect();
        let mut buf = p.dev.alloc(logits.len())?;
        p.dev.write(&mut buf, &logits)?;
        let Some(got) = p.dev.argmax_rows(&buf, rows, vocab)? else {
            break;
        };
        let want: Vec<f32> = logits
            .chunks_exact(vocab)
            .map(|r| crate::sampling::argmax(r) as f32)
            .collect();
        let got: Vec<f32> = got.iter().map(|&i| i as f32).collect();
        p.record(
            "argmax_rows",
            "f32",
            format!("{rows} x {vocab}, ties"),
            &got,
            &want,
            0.0,
        );
    }
    for (vocab, n, rows) in [
        (1000, 1, 1),
        (1000, 40, 2),
        (49152, 256, 1),
        (128256, 1024, 2),
        (3000, 1024, 1),
    ] {
        let logits: Vec<f32> = (0..rows * vocab)
            .map(|_| (rng.gen_range(-8.0f32..8.0) * 16.0).round() / 16.0)
            .collect();
        let mut buf = p.dev.alloc(logits.len())?;
        p.dev.write(&mut buf, &logits)?;
        let Some(got) = p.dev.top_candidates(&buf, rows, vocab, n)? else {
            return Ok(());
        };
        let flat = |c: &[crate::sampling::Candidates]| -> Vec<f32> {
            c.iter()
                .flat_map(|c| {
                    let ids = c.ids.iter().map(|&i| i as f32);
                    ids.chain(c.logits.iter().copied()).chain([c.max])
                })
                .collect()
        };
        let want: Vec<_> = logits
            .chunks_exact(vocab)
            .map(|row| crate::sampling::Candidates::from_logits(row, n))
            .collect();
        p.record(
            "top_candidates",
            "f32",
            format!("{rows} x {vocab}, top {n}: ids, logits, max"),
            &flat(&got),
            &flat(&want),
            0.0,
        );
        // The normalizer against a sum in f64 (a sequential f32 sum over 128K terms is itself ~1e-4 off).
        let exact: Vec<f32> = logits
            .chunks_exact(vocab)
            .map(|row| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                row.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>() as f32
            })
            .collect();
        p.record(
            "top_candidates",
            "f32",
            format!("{rows} x {vocab}: softmax normalizer"),
            &got.iter().map(|c| c.sum_exp).collect::<Vec<_>>(),
            &exact,
            1e-5,
        );
    }
    Ok(())
}
