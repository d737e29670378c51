//! `quarrel info`: metadata, tensor types and sizes, memory estimate, chosen precisions.

use crate::common::{load_any, ModelArgs};
use anyhow::Result;
use clap::Args;
use engine::model::{arch::config_from_gguf, auto_kv_precision, Model};
use engine::Backend;
use gguf::Value;
use std::collections::BTreeMap;

#[derive(Args, Debug, Clone)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// List every tensor.
    #[arg(long)]
    pub tensors: bool,
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() > 80 => {
            format!("{:?}… ({} bytes)", &s[..s.floor_char_boundary(77)], s.len())
        }
        // Everything else as the GGUF crate renders it (long arrays abbreviated).
        other => other.to_string(),
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

pub fn info(args: InfoArgs) -> Result<()> {
    crate::with_model!(load_any(&args.model)?, model => show(&model, &args))
}

fn show<B: Backend>(model: &Model<B>, args: &InfoArgs) -> Result<()> {
    let path = &model.path;
    let f = &model.file;
    println!("file: {}", path.display());
    println!(
        "gguf: v{}, {} metadata keys, {} tensors, {}",
        f.version,
        f.metadata.len(),
        f.tensors.len(),
        mib(f.file_len())
    );
    println!("\n== metadata");
    for (k, v) in &f.metadata {
        println!("{k} = {}", show_value(v));
    }
    let c = config_from_gguf(f)?;
    println!("\n== architecture");
    println!(
        "arch {}: d_model {}, layers {}, heads {} (kv {}), head_dim {}, d_ff {}, vocab {}, context {}",
        c.arch, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.d_ff, c.vocab, c.max_context
    );
    println!(
        "rope {:?} θ={} (local θ={}), activation {:?}, qkv bias {}, qk norm {}, post norms {}, tied embeddings {}",
        c.rope_style,
        c.rope_global.theta,
        c.rope_local.theta,
        c.activation,
        c.qkv_bias,
        c.qk_norm,
        c.post_norms,
        c.tied_embeddings
    );
    let sliding = c
        .layer_kinds
        .iter()
        .filter(|k| matches!(k, engine::model::config::LayerKind::Sliding { .. }))
        .count();
    if sliding > 0 {
        println!(
            "sliding-window layers: {sliding} of {}, window {:?}",
            c.n_layers, c.layer_kinds[0]
        );
    }
    println!("\n== tensors by type");
    let mut by_type: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for t in &f.tensors {
        let e = by_type.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    for (ty, (n, bytes)) in &by_type {
        let act = quant::kernels(
            gguf::GgmlType::from_name(ty).unwrap_or(gguf::GgmlType::F32),
            quant::SimdLevel::Scalar,
        )
        .map(|k| k.act.name())
        .unwrap_or("-");
        println!(
            "{ty:>5}: {n:>4} tensors, {:>10}  (matmul activations: {act})",
            mib(*bytes)
        );
    }
    if args.tensors {
        for t in &f.tensors {
            println!("  {:<32} {:>5} {:?}", t.name, t.ty.name(), t.dims);
        }
    }
    println!("\n== run plan ({})", model.backend.device_info());
    let opts = args.model.run_options();
    let (kv, limits) = model.plan(&opts)?;
    let auto = auto_kv_precision(f);
    println!(
        "KV cache: {} (rule: f16 unless every matrix weight is F32; this model -> {}{}), {} tokens x {} sequence(s) = {}",
        kv.precision.name(),
        auto.name(),
        if kv.precision != auto { ", overridden by --kv-type" } else { "" },
        kv.n_ctx,
        kv.n_seqs,
        mib(kv.bytes())
    );
    let placement = match model.backend.name() {
        "cpu" => "memory-mapped, read in place",
        _ => "uploaded to the device in their GGUF formats",
    };
    println!("weights: {} ({placement})", mib(model.weight_bytes()));
    println!(
        "batch: up to {} tokens per pass, {} logit rows",
        limits.max_batch, limits.max_logit_rows
    );
    println!(
        "memory estimate: {} (weights + KV cache; activation scratch excluded)",
        mib(model.weight_bytes() + kv.bytes())
    );
    Ok(())
}
