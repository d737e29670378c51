//! Parity of the KV cache and attention: stores, attention over prompt and decode batches (global and sliding,
//! split and combined), a quantized output projection after decode attention, and sequence copies.

use super::{fresh_scope, random_acts, Pair, FORMATS};
use crate::backend::cpu::CpuBackend;
use crate::backend::{AttentionParams, Backend, KvPrecision, KvShape};
use crate::batch::Batch;
use crate::error::Result;
use crate::model::config::LayerKind;
use gguf::GgmlType;
use rand::rngs::StdRng;

/// KV store, attention (global and sliding, prompt-sized and decode-sized batches, several sequences, enough
/// positions for split attention) and sequence copies, on a cache of `precision`.
pub(super) fn check_attention<D: Backend>(
    p: &mut Pair<'_, D>,
    rng: &mut StdRng,
    precision: KvPrecision,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
) -> Result<()> {
    let shape = KvShape {
        n_layers: 2,
        n_seqs: 3,
        // Past one decode split (1,024 keys on a GPU): decode batches are split and combined.
        n_ctx: 1100,
        n_kv_heads,
        head_dim,
        precision,
    };
    let (mut kc, mut kd) = (p.cpu.alloc_kv(shape)?, p.dev.alloc_kv(shape)?);
    let kv_dim = n_kv_heads * head_dim;
    let q_dim = n_heads * head_dim;
    let bound = match precision {
        KvPrecision::F16 => 4e-3,
        KvPrecision::F32 => 1e-4,
    };
    // Fill: sequence 1 with 1,090 positions (in chunks), sequence 0 and 2 with 40 and 20, interleaved in one batch.
    let mut fills = Vec::new();
    for start in (0..1090u32).step_by(200) {
        let len = 200.min(1090 - start) as usize;
        fills.push(Batch::for_sequence(&vec![0; len], 1, start));
    }
    let mut mixed = Batch::new();
    for i in 0..40u32 {
        mixed.push(0, i, 0, false);
        if i < 20 {
            mixed.push(0, i, 2, false);
        }
    }
    fills.push(mixed.clone());
    for layer in 0..2 {
        for batch in &fills {
            let k = random_acts(batch.len() * kv_dim, rng);
            let v = random_acts(batch.len() * kv_dim, rng);
            store_both(p, &mut kc, &mut kd, layer, &k, &v, batch)?;
        }
    }
    let tag = format!("{n_heads}/{n_kv_heads} heads x {head_dim}, {} cache", precision.name());
    // Queries: the mixed prompt batch, and a decode batch over all three sequences (seq 1 at position 1,089, past
    // one decode split of 1,024 keys on a GPU: split and combined).
    let mut decode = Batch::new();
    decode.push(0, 39, 0, true);
    decode.push(0, 1089, 1, true);
    decode.push(0, 19, 2, true);
    // One sequence's prompt (the tiled prompt kernel on a GPU), reaching back over 500 positions.
    let mut single = Batch::new();
    for i in 0..40u32 {
        single.push(0, 520 + i, 1, i == 39);
    }
    // Two sequences' prompts one after the other (a flash-attention launch each on a GPU).
    let mut two = Batch::new();
    for i in 0..40u32 {
        two.push(0, 560 + i, 1, i == 39);
    }
    for i in 0..20u32 {
        two.push(0, 20 + i, 0, i == 19);
    }
    // Runs shorter than a prompt, more tokens than a decode batch (the decode kernel run by run on a GPU).
    let mut short = Batch::new();
    for i in 0..6u32 {
        short.push(0, 594 + i, 1, i == 5);
    }
    for i in 0..5u32 {
        short.push(0, 35 + i, 0, i == 4);
    }
    // Layer 1's attention, with the usual 1/sqrt(head_dim) scale.
    let params_of = |kind| AttentionParams {
        layer: 1,
        n_heads,
        n_kv_heads,
        head_dim,
        scale: 1.0 / (head_dim as f32).sqrt(),
        scale_at: crate::backend::ScaleAt::Scores,
        kind,
    };
    for (what, batch) in [
        ("prompt batch", &mixed),
        ("decode batch", &decode),
        ("one-sequence prompt", &single),
        ("two sequences' prompts", &two),
        ("two short runs", &short),
    ] {
        for kind in [LayerKind::Global, LayerKind::Sliding { window: 16 }] {
            let q = random_acts(batch.len() * q_dim, rng);
            let params = params_of(kind);
            let (a, b) = p.both(
                batch,
                &q,
                &vec![0.0; batch.len() * q_dim],
                |be, x, o| be.attention(x, &kc, batch, params, o),
                |be, x, o| be.attention(x, &kd, batch, params, o),
            )?;
            let k = match kind {
                LayerKind::Global => "global".to_string(),
                LayerKind::Sliding { window } => format!("window {window}"),
            };
            p.record(
                "attention",
                precision.name(),
                format!("{tag}, {what}, {k}"),
                &b,
                &a,
                bound,
            );
        }
    }
    // Decode attention, then a quantized output projection of its output: as two ops, and as the one op that adds
    // the product into the residual stream (on CUDA, attention then writes the product's 8-bit input itself).
    let one = Batch::for_sequence(&[0], 1, 599);
    for (ty, decode, fused) in [
        (GgmlType::Q8_0, &decode, false),
        (GgmlType::Q4_K, &decode, false),
        (GgmlType::Q4_K, &one, false),
        (GgmlType::Q8_0, &decode, true),
        (GgmlType::Q4_K, &one, true),
    ] {
        let src = p.source(&format!("o.{}.{q_dim}", ty.name()))?;
        let (wc, wd) = (p.cpu.load_weight(&src)?, p.dev.load_weight(&src)?);
        let n = decode.len();
        let q = random_acts(n * q_dim, rng);
        let params = params_of(LayerKind::Global);
        #[allow(clippy::too_many_arguments)]
        fn attend_project<B: Backend>(
            be: &B,
            x: &B::Buf,
            kv: &B::Kv,
            batch: &Batch,
            params: AttentionParams,
            w: &B::Weight,
            out: &mut B::Buf,
            fused: bool,
        ) -> Result<()> {
            let n = batch.len();
            let mut attn = be.alloc(n * params.n_heads * params.head_dim)?;
            if fused {
                let mut tmp = be.alloc(n * 64)?;
                return be.attention_output(x, kv, batch, params, &mut attn, w, &mut tmp, out, n * 64);
            }
            be.attention(x, kv, batch, params, &mut attn)?;
            be.matmul(w, &attn, batch.len(), out)
        }
        // (The output starts at 1: the fused op adds into it.)
        let start = if fused { 1.0 } else { 0.0 };
        let (a, b) = p.both(
            decode,
            &q,
            &vec![start; n * 64],
            |be, x, o| attend_project(be, x, &kc, decode, params, &wc, o, fused),
            |be, x, o| attend_project(be, x, &kd, decode, params, &wd, o, fused),
        )?;
        p.record(
            if fused {
                "attention + output proj. added"
            } else {
                "attention + output proj."
            },
            ty.name(),
            format!("{tag}, decode batch of {n}"),
            &b,
            &a,
            // Twice the format's bound, as for the other composed cases (`ffn_input`): attention's output is
            // rounded to 8 bits before the product (see `FORMATS`). With another random draw, Q4_K at 4/1 heads x 256
            // measured 5.8e-2 (H100).
            bound.max(2.0 * FORMATS.iter().find(|(t, _)| *t == ty).map_or(5e-2, |(_, b)| *b)),
        );
    }
    check_layer_tail(p, rng, &kc, &kd, tag.as_str(), params_of)?;
    // Copy sequence 0's 40 positions over sequence 2, then attend from sequence 2.
    p.cpu.kv_copy_seq(&mut kc, 0, 2, 0, 40)?;
    p.dev.kv_copy_seq(&mut kd, 0, 2, 0, 40)?;
    let batch = Batch::for_sequence(&[0], 2, 39);
    let q = random_acts(q_dim, rng);
    let params = AttentionParams {
        layer: 0,
        n_heads,
        n_kv_heads,
        head_dim,
        scale: 0.125,
        scale_at: crate::backend::ScaleAt::Scores,
        kind: LayerKind::Global,
    };
    let (a, b) = p.both(
        &batch,
        &q,
        &vec![0.0; q_dim],
        |be, x, o| be.attention(x, &kc, &batch, params, o),
        |be, x, o| be.attention(x, &kd, &batch, params, o),
    )?;
    p.record("kv_copy_seq + attention", precision.name(), tag, &b, &a, bound);
    Ok(())
}

fn store_both<D: Backend>(
    p: &Pair<'_, D>,
    kc: &mut <CpuBackend as Backend>::Kv,
    kd: &mut D::Kv,
    layer: usize,
    k: &[f32],
    v: &[f32],
    batch: &Batch,
) -> Result<()> {
    let (mut ck, mut cv) = (p.cpu.alloc(k.len())?, p.cpu.alloc(v.len())?);
    p.cpu.write(&mut ck, k)?;
    p.cpu.write(&mut cv, v)?;
    p.cpu.forward_scope(batch, fresh_scope(), false, &mut || {
        p.cpu.kv_store(kc, layer, &ck, &cv, batch)
    })?;
    let (mut dk, mut dv) = (p.dev.alloc(k.len())?, p.dev.alloc(v.len())?);
    p.dev.write(&mut dk, k)?;
    p.dev.write(&mut dv, v)?;
    p.dev.forward_scope(batch, fresh_scope(), false, &mut || {
        p.dev.kv_store(kd, layer, &dk, &dv, batch)
    })
}

/// The residual row length of the layer-tail cases at heads of `head_dim` (on CUDA the fused tail takes rows up to
/// four blocks of wo a head: 576 at heads of 64, 512 at 128).
fn tail_d(head_dim: usize) -> usize {
    if head_dim == 128 {
        512
    } else {
        576
    }
}

/// The rest of a layer after Q/K/V as one op (`Backend::attention_ffn`: attention, output projection and gated FFN
/// added into the residual stream) against the CPU, for one decoded token at two positions (global and windowed),
/// each run twice: on CUDA the fused tail leaves its accumulator at zero, or the second run would differ.
fn check_layer_tail<D: Backend>(
    p: &mut Pair<'_, D>,
    rng: &mut StdRng,
    kc: &<CpuBackend as Backend>::Kv,
    kd: &D::Kv,
    tag: &str,
    params_of: impl Fn(LayerKind) -> AttentionParams,
) -> Result<()> {
    let params = params_of(LayerKind::Global);
    let (q_dim, d) = (params.n_heads * params.head_dim, tail_d(params.head_dim));
    for (ty, ff) in [GgmlType::F16, GgmlType::Q8_0]
        .into_iter()
        .flat_map(|ty| TAIL_FFS.map(|ff| (ty, ff)))
    {
        let load = |p: &Pair<'_, D>, name: String| -> Result<(<CpuBackend as Backend>::Weight, D::Weight)> {
            let src = p.source(&name)?;
            Ok((p.cpu.load_weight(&src)?, p.dev.load_weight(&src)?))
        };
        let t = ty.name();
        let wo = load(p, format!("tail.{t}.o.{d}x{q_dim}"))?;
        let gate = load(p, format!("tail.{t}.gate.{d}.{ff}"))?;
        let up = load(p, format!("tail.{t}.up.{d}.{ff}"))?;
        let down = load(p, format!("tail.{t}.down.{d}.{ff}"))?;
        let norm = load(p, format!("v.{d}"))?;
        #[allow(clippy::too_many_arguments)]
        fn tail<B: Backend>(
            be: &B,
            q: &B::Buf,
            kv: &B::Kv,
            batch: &Batch,
            params: AttentionParams,
            w: [&B::Weight; 5],
            x: &mut B::Buf,
            (d, ff): (usize, usize),
        ) -> Result<()> {
            let [wo, norm, gate, up, down] = w;
            let ffn = crate::backend::FfnBlock {
                norm,
                eps: 1e-6,
                gate,
                up,
                down,
                act: crate::model::config::Activation::Silu,
            };
            let q_dim = params.n_heads * params.head_dim;
            let (mut attn, mut xn) = (be.alloc(q_dim)?, be.alloc(d)?);
            let (mut g, mut u) = (be.alloc(ff)?, be.alloc(ff)?);
            let scratch = crate::backend::TailScratch {
                attn: &mut attn,
                xn: &mut xn,
                gate: &mut g,
                up: &mut u,
                d_len: d,
                ff_len: ff,
            };
            be.attention_ffn(q, kv, batch, params, wo, ffn, scratch, x)
        }
        for (kind, seq, pos) in [
            (LayerKind::Global, 1u32, 599u32),
            (LayerKind::Sliding { window: 16 }, 0, 39),
        ] {
            let batch = Batch::for_sequence(&[0], seq, pos);
            let params = params_of(kind);
            let q = random_acts(q_dim, rng);
            let x = random_acts(d, rng);
            for run in ["", ", again"] {
                let (a, b) = p.both(
                    &batch,
                    &q,
                    &x,
                    |be, q, o| {
                        tail(
                            be,
                            q,
                            kc,
                            &batch,
                            params,
                            [&wo.0, &norm.0, &gate.0, &up.0, &down.0],
                            o,
                            (d, ff),
                        )
                    },
                    |be, q, o| {
                        tail(
                            be,
                            q,
                            kd,
                            &batch,
                            params,
                            [&wo.1, &norm.1, &gate.1, &up.1, &down.1],
                            o,
                            (d, ff),
                        )
                    },
                )?;
                // What the tail added (the residual it started from would dilute any error).
                let added = |v: Vec<f32>| v.iter().zip(&x).map(|(o, i)| o - i).collect::<Vec<_>>();
                p.record(
                    "attention + output proj. + ffn added",
                    t,
                    format!("{tag}, d {d}, ffn {ff}, position {pos}{run}"),
                    &added(b),
                    &added(a),
                    2.0 * FORMATS.iter().find(|(f, _)| *f == ty).map_or(5e-2, |(_, b)| *b),
                );
            }
        }
    }
    Ok(())
}

/// The FFN widths of the layer-tail cases: smollm2-135m's, whose FFN-output rows CUDA holds in registers from
/// before the wait (`matvec1ah`), and a longer one that takes the plain kernel.
pub(super) const TAIL_FFS: [usize; 2] = [1536, 2048];
