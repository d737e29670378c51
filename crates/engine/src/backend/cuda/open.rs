//! Opening a device: its driver libraries, context and stream, the kernels compiled for its architecture (or read
//! from the on-disk cache), and the buffers every forward pass shares.

use super::device::{Funcs, Graphs, Meta, Scratch};
use super::{err, probe_libraries, runtime, CudaBackend, CudaConfig};
use crate::error::{EngineError, Result};
use cudarc::driver::CudaContext;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Mutex;

impl CudaBackend {
    /// Opens GPU `cfg.ordinal`: loads the driver libraries, compiles (or reads cached) kernels for its
    /// architecture, and makes the stream every op runs on.
    pub fn new(cfg: CudaConfig) -> Result<Self> {
        probe_libraries()?;
        let n = CudaContext::device_count().map_err(|e| err("counting devices", e))?;
        if n <= 0 || cfg.ordinal >= n as usize {
            return Err(EngineError::DeviceUnavailable {
                device: format!("cuda:{}", cfg.ordinal),
                reason: format!("{n} CUDA device(s) present"),
            });
        }
        let ctx = CudaContext::new(cfg.ordinal).map_err(|e| err("creating the context", e))?;
        // SAFETY: called before any buffer or stream exists; every op then orders itself on the one stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| err("creating a stream", e))?;
        let compute_capability = ctx.compute_capability().map_err(|e| err("compute capability", e))?;
        let name = ctx.name().map_err(|e| err("device name", e))?;
        let total_mem = ctx.total_mem().map_err(|e| err("device memory", e))?;
        let n_sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| err("multiprocessor count", e))?
            .max(1) as usize;
        let mut driver_version = 0i32;
        // SAFETY: plain out-parameter.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(|e| err("driver version", e))?;
        let arch = runtime::arch_option(compute_capability.0, compute_capability.1);
        let (cubin, kernels_cached) = runtime::load_or_compile(cfg.kernel_cache.as_deref(), &arch, driver_version)?;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
            .map_err(|e| err("loading the kernel module", e))?;
        let funcs = Funcs::load(&module)?;
        let blas = cudarc::cublas::CudaBlas::new(stream.clone()).map_err(|e| err("creating a cuBLAS handle", e))?;
        let meta = Meta::new(&stream, 512)?;
        let scratch = Scratch::new(&stream)?;
        Ok(Self {
            ctx,
            stream,
            blas,
            funcs,
            name,
            compute_capability,
            n_sms,
            total_mem,
            loaded: AtomicU64::new(0),
            max_row_len: AtomicUsize::new(0),
            meta: Mutex::new(meta),
            scratch: Mutex::new(scratch),
            graphs: Mutex::new(Graphs::default()),
            chain: Mutex::new(None),
            pick_in_scope: Mutex::new(None),
            dependent_launch: cfg.dependent_launch && compute_capability.0 >= 9,
            flash_prefill: !cfg.gemm_prompt_attention,
            int8_activations: cfg.int8_activations,
            kernels_cached,
        })
    }

    /// Free and total device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().map_err(|e| err("querying memory", e))
    }
}
