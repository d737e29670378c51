//! System and build information for benchmark results: CPU model and SIMD flags, cores, memory, OS, GPU (through
//! nvidia-smi when it is on PATH), quarrel version and git commit.

use serde::Serialize;
use std::collections::BTreeSet;
use std::process::Command;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SystemInfo {
    pub cpu_info: String,
    /// The SIMD-relevant CPU flags present (x86: SSE4.2 … AVX-512, AMX; Arm: NEON, SVE, dot product, i8mm).
    pub cpu_flags: Vec<String>,
    pub n_cpus_logical: usize,
    pub n_cpus_physical: usize,
    pub ram_bytes: u64,
    pub os: String,
    /// GPU names, comma-separated; `none` without nvidia-smi or GPU.
    pub gpu_info: String,
    pub gpu_driver: String,
    pub cuda_version: String,
    pub quarrel_version: String,
    pub build_commit: String,
}

const FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
    "sve2",
];

pub fn build_commit() -> &'static str {
    option_env!("QUARREL_GIT_COMMIT").unwrap_or("unknown")
}

fn nvidia_smi(args: &[&str]) -> Option<String> {
    let out = Command::new("nvidia-smi").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// (names, driver, CUDA version) from nvidia-smi, or `none`.
fn gpu() -> (String, String, String) {
    let none = || ("none".to_string(), "none".to_string(), "none".to_string());
    let Some(q) = nvidia_smi(&["--query-gpu=name,driver_version", "--format=csv,noheader"]) else {
        return none();
    };
    let rows: Vec<(String, String)> = q
        .lines()
        .filter_map(|l| l.split_once(','))
        .map(|(n, d)| (n.trim().to_string(), d.trim().to_string()))
        .collect();
    if rows.is_empty() {
        return none();
    }
    let cuda = nvidia_smi(&[])
        .and_then(|s| {
            s.split("CUDA Version:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into());
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    (names.join(", "), rows[0].1.clone(), cuda)
}

pub fn collect() -> SystemInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut flags = BTreeSet::new();
    let mut cores = BTreeSet::new();
    let (mut phys, mut logical) = (String::new(), 0usize);
    for line in cpuinfo.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        match k.trim() {
            "flags" | "Features" => {
                flags.extend(v.split_whitespace().filter(|f| FLAGS.contains(f)).map(str::to_string))
            }
            "processor" => logical += 1,
            "physical id" => phys = v.trim().to_string(),
            "core id" => {
                cores.insert((phys.clone(), v.trim().to_string()));
            }
            _ => {}
        }
    }
    let avail = std::thread::available_parallelism().map_or(1, |n| n.get());
    let logical = if logical == 0 { avail } else { logical };
    let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| format!("{} {}", std::env::consts::OS, r.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string());
    let (gpu_info, gpu_driver, cuda_version) = gpu();
    SystemInfo {
        cpu_info: engine::backend::cpu::cpu_model_name(),
        cpu_flags: FLAGS
            .iter()
            .filter(|f| flags.contains(**f))
            .map(|f| f.to_string())
            .collect(),
        n_cpus_logical: logical,
        n_cpus_physical: if cores.is_empty() { logical } else { cores.len() },
        ram_bytes: engine::model::physical_memory(),
        os,
        gpu_info,
        gpu_driver,
        cuda_version,
        quarrel_version: env!("CARGO_PKG_VERSION").to_string(),
        build_commit: build_commit().to_string(),
    }
}
