//! `quarrel test-backend`: every op of a device backend, every weight format, a range of shapes, checked against
//! the CPU backend on the same random inputs (as llama.cpp's test-backend-ops). Exit code 1 when a case fails.

use crate::common::{choose_device, cpu_backend, cuda_backend, Device, ModelArgs};
use anyhow::{bail, Result};
use clap::Args;
use engine::backend::parity::{run_all, Case};
use engine::Backend;

#[derive(Args, Debug, Clone)]
pub struct TestBackendArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print every case as JSON (an array) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print only failing cases (and the summary).
    #[arg(long)]
    pub failures_only: bool,
}

pub fn test_backend(args: TestBackendArgs) -> Result<()> {
    let cpu = cpu_backend(&args.model)?;
    let cases = match choose_device(args.model.device) {
        Device::Cuda => {
            let dev = cuda_backend(&args.model)?;
            eprintln!("checking {} against {}", dev.device_info(), cpu.device_info());
            run_all(&cpu, &dev, args.seed)?
        }
        _ => {
            // No device: check the CPU's scalar kernels against its SIMD ones (the same harness, both sides CPU).
            let scalar = engine::CpuBackend::new(engine::CpuConfig {
                n_threads: 1,
                simd: Some(quant::SimdLevel::Scalar),
            })?;
            eprintln!(
                "no GPU chosen: checking the CPU's scalar kernels against {}",
                cpu.device_info()
            );
            run_all(&cpu, &scalar, args.seed)?
        }
    };
    report(&cases, &args)
}

fn report(cases: &[Case], args: &TestBackendArgs) -> Result<()> {
    let failed = cases.iter().filter(|c| !c.passed()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(cases)?);
    } else {
        println!(
            "{:<26} {:<10} {:<52} {:>11} {:>9}  result",
            "op", "format", "shape", "nrmse", "bound"
        );
        for c in cases.iter().filter(|c| !args.failures_only || !c.passed()) {
            println!(
                "{:<26} {:<10} {:<52} {:>11.3e} {:>9.0e}  {}",
                c.op,
                c.format,
                c.shape,
                c.nrmse,
                c.bound,
                if c.passed() { "ok" } else { "FAIL" }
            );
        }
    }
    eprintln!(
        "{} cases, {} passed, {failed} failed",
        cases.len(),
        cases.len() - failed
    );
    if failed > 0 {
        bail!("{failed} of {} backend cases failed", cases.len());
    }
    Ok(())
}
