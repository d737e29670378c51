//! The CUDA runtime pieces that are not kernels: finding the driver libraries, assembling the kernel source,
//! compiling it with NVRTC for the device's architecture, and caching the compiled binary on disk.
//!
//! Nothing here needs a CUDA toolkit at build time: cudarc loads `libcuda`, `libnvrtc` and `libcublas` when first
//! used. Because cudarc panics when a library is missing, [`probe_libraries`] looks for them first and turns a
//! missing one into an error that names it.

use crate::error::{EngineError, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The engine's own kernels, concatenated after the format sources.
const ENGINE_KERNELS: [(&str, &str); 8] = [
    ("matvec.cu", include_str!("kernels/matvec.cu")),
    ("held_rows.cu", include_str!("kernels/held_rows.cu")),
    ("matvec_kernels.cu", include_str!("kernels/matvec_kernels.cu")),
    ("ops.cu", include_str!("kernels/ops.cu")),
    ("attention.cu", include_str!("kernels/attention.cu")),
    ("layer_tail.cu", include_str!("kernels/layer_tail.cu")),
    ("flash.cu", include_str!("kernels/flash.cu")),
    ("sampling.cu", include_str!("kernels/sampling.cu")),
];

/// The complete CUDA C source of every kernel: the shared header, the formats' device code, the engine's kernels.
pub fn kernel_source() -> String {
    let mut src = String::with_capacity(64 << 10);
    src.push_str("// quarrel kernels, assembled at run time\n");
    src.push_str(quant::cuda::COMMON);
    for (name, body) in quant::cuda::FORMATS {
        src.push_str(&format!("\n// ---- format {name}\n"));
        src.push_str(body);
    }
    src.push_str(&host_defines());
    for (name, body) in ENGINE_KERNELS {
        src.push_str(&format!("\n// ---- {name}\n"));
        src.push_str(body);
    }
    src
}

/// The launch shapes the kernels are compiled for, as `#define`s ahead of the engine's kernels, from the host's
/// constants: the products' launch bounds name MATVEC_THREADS (a launch of another size would fail), the
/// flash-attention kernel's warps each take 16 of a block's FA_ROWS query rows, and decode attention compiled for
/// a head size scores each key on DECODE_LPK lanes (its blocks are 128 DECODE_LPK threads).
fn host_defines() -> String {
    use super::layer_tail::{TAIL_CHUNKS_PER_THREAD, TAIL_DOWN_ITERS, TAIL_MAX_D};
    use super::{DECODE_LANES_PER_KEY, DECODE_LANES_PER_KEY_256, FLASH_ROWS, FLASH_THREADS, MATVEC_THREADS};
    format!(
        "\n// ---- launch shapes from the host\n#define MATVEC_THREADS {MATVEC_THREADS}\n#define FA_ROWS \
         {FLASH_ROWS}\n#define FA_THREADS {FLASH_THREADS}\n#define DECODE_LPK {DECODE_LANES_PER_KEY}\n#define \
         DECODE_LPK_256 {DECODE_LANES_PER_KEY_256}\n#define TAIL_CPT {TAIL_CHUNKS_PER_THREAD}\n#define TAIL_MAX_D \
         {TAIL_MAX_D}\n#define TAIL_DOWN_ITERS {TAIL_DOWN_ITERS}\n"
    )
}

/// The GPU architecture option for NVRTC: `sm_90` for compute capability 9.0. (`sm_90a` features are not used.)
pub fn arch_option(major: i32, minor: i32) -> String {
    format!("sm_{major}{minor}")
}

/// NVRTC options used for every compile.
pub fn compile_options(arch: &str) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        "--use_fast_math".into(),
        "--fmad=true".into(),
        "--extra-device-vectorization".into(),
    ]
}

/// The cache key of a compiled binary: a hash of everything that changes the binary.
pub fn cache_key(source: &str, arch: &str, driver_version: i32, nvrtc_version: (i32, i32)) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update(b"\0arch=");
    h.update(arch.as_bytes());
    for opt in compile_options(arch) {
        h.update(b"\0opt=");
        h.update(opt.as_bytes());
    }
    h.update(
        format!(
            "\0driver={driver_version}\0nvrtc={}.{}",
            nvrtc_version.0, nvrtc_version.1
        )
        .as_bytes(),
    );
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Where a binary of `key` lives in `dir`.
pub fn cache_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("quarrel-kernels-{key}.cubin"))
}

/// The shared libraries the CUDA backend loads, with the names cudarc tries for each.
pub const LIBRARIES: [(&str, &str); 3] = [("cuda", "the NVIDIA driver"), ("nvrtc", "NVRTC"), ("cublas", "cuBLAS")];

/// Checks that every library cudarc will load can be opened, naming the first that cannot and the file names
/// tried.
pub fn probe_libraries() -> Result<()> {
    for (lib, what) in LIBRARIES {
        let names = cudarc::get_lib_name_candidates(lib);
        // SAFETY: opening a shared library runs its initializers; these are the system's CUDA libraries, which
        // cudarc would open the same way.
        let found = names.iter().any(|n| unsafe { libloading::Library::new(n) }.is_ok());
        if !found {
            let tried = names.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
            return Err(EngineError::DeviceUnavailable {
                device: "cuda".into(),
                reason: format!("{what} library not found (tried {tried}, … on the loader path)"),
            });
        }
    }
    Ok(())
}

/// NVRTC's version (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: plain out-parameters.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(cuda_err("nvrtcVersion", format!("{r:?}")));
    }
    Ok((major, minor))
}

pub fn cuda_err(what: &str, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Cuda {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Compiles `source` for `arch` to a CUBIN with NVRTC. A compile error returns NVRTC's log.
pub fn compile_cubin(source: &str, arch: &str) -> Result<Vec<u8>> {
    use cudarc::nvrtc::{result, sys};
    use std::ffi::{CStr, CString};
    let src = CString::new(source).map_err(|e| cuda_err("kernel source", e))?;
    let name = CString::new("quarrel.cu").map_err(|e| cuda_err("kernel source", e))?;
    let prog = result::create_program(&src, Some(&name)).map_err(|e| cuda_err("nvrtcCreateProgram", e))?;
    struct Guard(sys::nvrtcProgram);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: the program was created above and is destroyed once.
            let _ = unsafe { result::destroy_program(self.0) };
        }
    }
    let guard = Guard(prog);
    let opts = compile_options(arch);
    // SAFETY: the program is live; options are valid C strings.
    if let Err(e) = unsafe { result::compile_program(guard.0, &opts) } {
        // SAFETY: as above.
        let log = unsafe { result::get_program_log(guard.0) }
            .map(|l| {
                // SAFETY: NVRTC's log is NUL-terminated.
                unsafe { CStr::from_ptr(l.as_ptr()) }.to_string_lossy().into_owned()
            })
            .unwrap_or_default();
        return Err(cuda_err(
            "compiling kernels with NVRTC",
            format!("{e:?}: {}", log.lines().take(20).collect::<Vec<_>>().join(" | ")),
        ));
    }
    let mut size = 0usize;
    // SAFETY: out-parameter; program compiled.
    let r = unsafe { sys::nvrtcGetCUBINSize(guard.0, &mut size) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
        return Err(cuda_err("nvrtcGetCUBINSize", format!("{r:?}")));
    }
    let mut cubin = vec![0u8; size];
    // SAFETY: the buffer holds `size` bytes as NVRTC asked.
    let r = unsafe { sys::nvrtcGetCUBIN(guard.0, cubin.as_mut_ptr().cast()) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(cuda_err("nvrtcGetCUBIN", format!("{r:?}")));
    }
    Ok(cubin)
}

/// The compiled kernels for `arch`: read from the cache directory when a binary for this exact source, arch,
/// driver and NVRTC is there, else compiled and written there (a cache that cannot be written only costs the
/// next start a compile). Returns the binary and whether it came from the cache.
pub fn load_or_compile(cache_dir: Option<&Path>, arch: &str, driver_version: i32) -> Result<(Vec<u8>, bool)> {
    let source = kernel_source();
    let key = cache_key(&source, arch, driver_version, nvrtc_version()?);
    if let Some(dir) = cache_dir {
        let path = cache_path(dir, &key);
        if let Ok(bin) = std::fs::read(&path) {
            if !bin.is_empty() {
                return Ok((bin, true));
            }
        }
    }
    let bin = compile_cubin(&source, arch)?;
    if let Some(dir) = cache_dir {
        let path = cache_path(dir, &key);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&tmp, &bin))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!("could not cache compiled kernels in {}: {e}", dir.display());
        }
    }
    Ok((bin, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_holds_every_format_and_kernel() {
        let src = kernel_source();
        for (name, _) in quant::cuda::FORMATS {
            assert!(
                src.contains(&format!("QUARREL_QUANT_KERNELS({name},")),
                "{name} not instantiated"
            );
        }
        // Every format's float view (the kernels taking its rows against f32 activations) is instantiated.
        for ty in gguf::GgmlType::ALL {
            if let Some(sfx) = quant::cuda::float_view_suffix(ty) {
                assert!(
                    src.contains(&format!("QUARREL_FLOAT_KERNELS({sfx},")),
                    "{sfx} not instantiated"
                );
            }
        }
        for k in [
            "quantize_q8",
            "rms_norm",
            "rope",
            "attn_f16",
            "attn_combine",
            "kv_store_f16",
            "argmax_rows",
            "regroup_blocks",
            "to_f16_q8",
        ] {
            assert!(src.contains(&format!("void {k}(")), "{k} missing");
        }
        // Declared with launch bounds: `__launch_bounds__(...) top_candidates(`.
        for k in ["top_candidates", "flash_prefill_64", "flash_prefill_128"] {
            assert!(src.contains(&format!(") {k}(")), "{k} missing");
        }
        assert!(!src.contains("#include"), "kernels must not include toolkit headers");
    }

    /// The kernels' launch bounds and tile shapes name the sizes the host launches with, defined ahead of their use.
    #[test]
    fn the_launch_shapes_come_from_the_host() {
        let src = kernel_source();
        let define = format!("#define MATVEC_THREADS {}\n", super::super::MATVEC_THREADS);
        let at = src.find(&define).expect("MATVEC_THREADS defined");
        assert!(at < src.find("#define MATVEC1_BOUNDS").expect("bounds"));
        let rows = src
            .find(&format!("#define FA_ROWS {}\n", super::super::FLASH_ROWS))
            .expect("FA_ROWS");
        let threads = src
            .find(&format!("#define FA_THREADS {}\n", super::super::FLASH_THREADS))
            .expect("FA_THREADS");
        let kernel = src.find("void flash_prefill(").expect("flash kernel");
        assert!(rows < kernel && threads < kernel);
        let lanes = src
            .find(&format!("#define DECODE_LPK {}\n", super::super::DECODE_LANES_PER_KEY))
            .expect("DECODE_LPK");
        assert!(
            lanes
                < src
                    .find("(attn_decode_f16_128, u16, 128, DECODE_LPK)")
                    .expect("decode attention for 128")
        );
    }

    /// Kernels are launched to overlap their predecessor (programmatic dependent launch): each must wait for it
    /// near its top, with nothing but weight prefetches before. Only the single-token quantized products and the
    /// plain single-token float products (also the fused layer tail's FFN output, `matvec1a`) let their successor
    /// launch before their own wait (`grid_dep_sync_early`):
    /// a kernel that waits first sits between any two of them in a decode step (at most two in a row, where a model
    /// mixes an 8-bit-input gated product with a down projection through Q8_0's float view), so early launches
    /// cannot pile up.
    #[test]
    fn every_kernel_waits_for_its_predecessor_first() {
        let src = kernel_source();
        let mut n = 0;
        let mut early = Vec::new();
        for (at, _) in src.match_indices("__global__ void") {
            let body = at + src[at..].find('{').expect("kernel body");
            let head: String = src[body..].chars().take(400).collect();
            // The kernel's name, as the macros that stamp kernels out per format spell it.
            let signature = &src[at..body];
            let name = signature
                .split(|c: char| c.is_whitespace() || c == '(')
                .find(|w| w.ends_with("##NAME"))
                .unwrap_or(signature);
            let sync = match head.find("grid_dep_sync_early();") {
                Some(i) => {
                    early.push(name.to_string());
                    Some(i)
                }
                None => head.find("grid_dep_sync();"),
            };
            assert!(
                sync.is_some(),
                "kernel at byte {at} does not start with grid_dep_sync: {head}"
            );
            let before = &head[..sync.unwrap_or(0)];
            let allowed = before
                .replace("const AttnToken tok = attn_decode_prefetch", "")
                .replace("const RopePrep rp = rope_prepare", "")
                .replace("const TailWo<FMT> w = tail_wo", "")
                .replace("const RowPair<FMT> pw = rope_rows_load", "")
                .replace("const RowPair<FMT> pw = glu_rows_load", "")
                .replace("const TailDownRows<FMT> pw = two_rows_load", "")
                .replace("prefetch_block_segs", "")
                .replace("prefetch_block_glu", "")
                .replace("attn_decode_prefetch", "");
            assert!(
                !allowed.contains('='),
                "kernel at byte {at} writes before grid_dep_sync: {before}"
            );
            n += 1;
        }
        assert!(n > 30, "only {n} kernel definitions found");
        early.sort();
        assert_eq!(
            early,
            [
                "KIND##_##NAME",
                "glu1_##NAME",
                "matvec1_##NAME",
                "matvec1a_##NAME",
                "matvec1ah_##NAME",
                "matvec1r_##NAME"
            ],
            "early-launching kernels"
        );
    }

    #[test]
    fn cache_key_changes_with_every_input() {
        let base = cache_key("src", "sm_90", 13000, (13, 0));
        assert_eq!(base, cache_key("src", "sm_90", 13000, (13, 0)));
        assert_ne!(base, cache_key("src2", "sm_90", 13000, (13, 0)));
        assert_ne!(base, cache_key("src", "sm_89", 13000, (13, 0)));
        assert_ne!(base, cache_key("src", "sm_90", 13010, (13, 0)));
        assert_ne!(base, cache_key("src", "sm_90", 13000, (13, 1)));
        assert_eq!(arch_option(9, 0), "sm_90");
    }
}
