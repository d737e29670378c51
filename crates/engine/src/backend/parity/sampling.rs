//! Parity of token selection: the device's greedy argmax and top sampling candidates against the host's.

use super::Pair;
use crate::backend::Backend;
use crate::batch::Batch;
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

/// Chained greedy steps (devices that chain them; the CPU does not): three steps queued as a generator queues them,
/// each before the previous pick is read, with the pick queued after each step and then inside it. Each pick, read
/// back through the device's ring, must be the host's argmax of its step's logits; each chained step's embedding
/// must be the table's row of the pick before it (the device fed it without the host); and a chained batch where
/// the device holds no pick must be refused.
pub(super) fn check_chain<D: Backend>(p: &mut Pair<'_, D>, rng: &mut StdRng) -> Result<()> {
    if !p.dev.chains_greedy() {
        return Ok(());
    }
    let (vocab, k) = (97usize, 576usize);
    let src = p.source(&format!("w.{}.{vocab}x{k}", gguf::GgmlType::F32.name()))?;
    let (table_cpu, table_dev) = (p.cpu.load_weight(&src)?, p.dev.load_weight(&src)?);
    let (first, pos0, steps) = (11u32, 5u32, 3usize);
    let rows: Vec<Vec<f32>> = (0..steps)
        .map(|_| {
            (0..vocab)
                .map(|_| (rng.gen_range(-4.0f32..4.0) * 4.0).round() / 4.0)
                .collect()
        })
        .collect();
    // One logits buffer, written before each step, as a decoder's steps write theirs: a recorded step that queues
    // its pick itself reads it from there.
    let mut logits = p.dev.alloc(vocab)?;
    // The rows each step embeds, read back after the step: the steps share one run state, whose recorded forward
    // pass a device may replay, so they write one buffer, as a decoder's steps do.
    let mut out = p.dev.alloc(k)?;
    let want: Vec<u32> = rows.iter().map(|r| crate::sampling::argmax(r)).collect();
    // The rows each step embedded: the first token, then the pick of the step before.
    let fed: Vec<u32> = std::iter::once(first)
        .chain(want[..steps - 1].iter().copied())
        .collect();
    let mut want_rows = p.cpu.alloc(steps * k)?;
    p.cpu.embed(&table_cpu, &fed, 1.0, &mut want_rows)?;
    let mut want_rows_host = vec![0f32; steps * k];
    p.cpu.read(&want_rows, &mut want_rows_host)?;
    let as_f32 = |v: &[u32]| v.iter().map(|&i| i as f32).collect::<Vec<_>>();
    let other = super::fresh_scope();
    let mut refused_other_state = Vec::new();
    // The pick queued by `argmax_chain` after each step, then by the step's own scope (`queue_chain_pick`, which a
    // device records with the step: the third step replays the second's recording).
    for in_scope in [false, true] {
        let state = super::fresh_scope();
        let mut got_rows = vec![0f32; steps * k];
        let mut picks = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let pos = pos0 + i as u32;
            let mut batch = Batch::for_sequence(&[if i == 0 { first } else { 0 }], 0, pos);
            batch.chained = i > 0;
            p.dev.write(&mut logits, row)?;
            p.dev.forward_scope(&batch, state, in_scope, &mut || {
                p.dev.embed(&table_dev, &batch.tokens, 1.0, &mut out)?;
                if in_scope {
                    p.dev.queue_chain_pick(&logits, vocab)?;
                }
                Ok(())
            })?;
            p.dev.argmax_chain(&logits, vocab, state, 0, pos)?;
            p.dev.read(&out, &mut got_rows[i * k..(i + 1) * k])?;
            if i > 0 {
                picks.push(p.dev.chain_pick(state, pos - 1)?);
            }
            // Another run state's pick read in between is refused.
            if i == 0 && !in_scope {
                refused_other_state.push(p.dev.chain_pick(other, pos).is_err());
            }
        }
        picks.push(p.dev.chain_pick(state, pos0 + steps as u32 - 1)?);
        let how = if in_scope { ", queued in the step" } else { "" };
        p.record(
            "argmax_chain",
            "f32",
            format!("{steps} steps of {vocab}, ties: picks{how}"),
            &as_f32(&picks),
            &as_f32(&want),
            0.0,
        );
        p.record(
            "argmax_chain",
            "f32",
            format!("{steps} steps: embedding of the token the device fed{how}"),
            &got_rows,
            &want_rows_host,
            0.0,
        );
    }
    // After the last pick the device holds position pos0 + steps; the right position in another state's scope is
    // refused, and so is a chained batch anywhere else, and any chained batch once a plain batch has replaced the
    // device's token.
    let mut right_pos = Batch::for_sequence(&[0], 0, pos0 + steps as u32);
    right_pos.chained = true;
    refused_other_state.push(
        p.dev
            .forward_scope(&right_pos, other, false, &mut || {
                p.dev.embed(&table_dev, &right_pos.tokens, 1.0, &mut out)
            })
            .is_err(),
    );
    p.record(
        "argmax_chain",
        "-",
        "another run state's pick and chained step: refused".into(),
        &refused_other_state.iter().map(|&r| r as u8 as f32).collect::<Vec<_>>(),
        &[1.0, 1.0],
        0.0,
    );
    let mut wrong = Batch::for_sequence(&[0], 0, pos0 + steps as u32 + 1);
    wrong.chained = true;
    let refused_wrong_pos = p
        .dev
        .forward_scope(&wrong, super::fresh_scope(), false, &mut || {
            p.dev.embed(&table_dev, &wrong.tokens, 1.0, &mut out)
        })
        .is_err();
    let plain = Batch::for_sequence(&[first], 0, 0);
    p.dev.forward_scope(&plain, super::fresh_scope(), false, &mut || {
        p.dev.embed(&table_dev, &plain.tokens, 1.0, &mut out)
    })?;
    let mut after_plain = Batch::for_sequence(&[0], 0, 1);
    after_plain.chained = true;
    let refused_after_plain = p
        .dev
        .forward_scope(&after_plain, super::fresh_scope(), false, &mut || {
            p.dev.embed(&table_dev, &after_plain.tokens, 1.0, &mut out)
        })
        .is_err();
    p.record(
        "argmax_chain",
        "-",
        "chained batches where the device holds no pick: refused".into(),
        &[refused_wrong_pos as u8 as f32, refused_after_plain as u8 as f32],
        &[1.0, 1.0],
        0.0,
    );
    Ok(())
}
