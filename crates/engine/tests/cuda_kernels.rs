//! The CUDA kernels compile with NVRTC, without a GPU or a toolkit: the CPU-side half of the CUDA backend that CI
//! can check. NVRTC comes from the Python package registry (scripts/fetch-nvrtc.sh), never skipped.

use engine::backend::cuda::runtime;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Loads the fetched libnvrtc once, by full path, so that cudarc's later load by name finds it.
fn load_nvrtc() {
    static LOADED: OnceLock<PathBuf> = OnceLock::new();
    LOADED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-nvrtc.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("running scripts/fetch-nvrtc.sh");
        assert!(
            out.status.success(),
            "fetch-nvrtc.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        // The builtins first: libnvrtc opens them by name, and finds them among the loaded libraries.
        for name in ["libnvrtc-builtins.so.13.0", "libnvrtc.so.13"] {
            let lib = dir.join(name);
            // SAFETY: NVIDIA's NVRTC libraries; their initializers only set up the compiler.
            let handle = unsafe { libloading::Library::new(&lib) }.unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
            std::mem::forget(handle);
        }
        dir
    });
}

#[test]
fn every_kernel_compiles_for_hopper_and_ampere() {
    load_nvrtc();
    let (major, minor) = runtime::nvrtc_version().expect("nvrtc version");
    assert!(major >= 12, "NVRTC {major}.{minor}");
    let src = runtime::kernel_source();
    for arch in ["sm_90", "sm_80"] {
        let cubin = runtime::compile_cubin(&src, arch).unwrap_or_else(|e| panic!("{arch}: {e}"));
        assert_eq!(&cubin[..4], b"\x7fELF", "{arch}: not an ELF cubin");
        let text = String::from_utf8_lossy(&cubin);
        let mut names = vec![
            "quantize_q8",
            "rms_norm",
            "rope",
            "attn_f16",
            "attn_f32",
            "attn_combine",
        ];
        names.extend([
            "kv_store_f16",
            "kv_copy_seq",
            "gather_rows",
            "to_f16",
            "argmax_rows",
            "gated_act",
        ]);
        names.extend(["attn_decode_f16", "softmax_causal", "norm_quant", "rope_store_f16"]);
        let per_format: Vec<String> = gguf::GgmlType::ALL
            .iter()
            .filter_map(|&t| quant::cuda::kernel_suffix(t))
            .flat_map(|s| [format!("matvec1_{s}"), format!("matvec8_{s}"), format!("dequant_{s}")])
            .collect();
        for name in names.iter().copied().chain(per_format.iter().map(|s| s.as_str())) {
            assert!(text.contains(name), "{arch}: kernel {name} missing from the binary");
        }
    }
}

#[test]
fn a_broken_kernel_reports_the_compiler_log() {
    load_nvrtc();
    let e = runtime::compile_cubin("extern \"C\" __global__ void k() { undefined_thing(); }", "sm_90")
        .expect_err("must not compile");
    let msg = e.to_string();
    assert!(
        msg.contains("undefined_thing"),
        "log should name the bad identifier: {msg}"
    );
}
