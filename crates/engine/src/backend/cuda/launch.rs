//! Kernel launches: the argument list, and the one launch path every kernel takes (`cuLaunchKernelEx`, with
//! programmatic dependent launch where the device has it).

use super::{decode, err, CudaBackend};
use crate::error::Result;
use cudarc::driver::CudaFunction;

/// Most arguments a kernel takes (`rope_store_*` take 18).
const MAX_KERNEL_ARGS: usize = 24;

/// One launch argument.
pub(super) enum Arg {
    Ptr(u64),
    I32(i32),
    F32(f32),
    Usize(usize),
    Segs(decode::Segs),
    Rope(decode::RopeArgs),
}

impl CudaBackend {
    /// A launch on the backend's stream. With `dependent_launch` (sm_90 and later) the launch
    /// may overlap the previous kernel's tail (programmatic dependent launch): every kernel starts with
    /// `grid_dep_sync()`, which waits for its predecessor's writes before touching anything it wrote or reads,
    /// so what overlaps is the launch itself, block scheduling and the L2 prefetch of weights.
    pub(super) fn launch(&self, f: &CudaFunction, grid: (u32, u32, u32), block: u32, args: &[Arg]) -> Result<()> {
        use cudarc::driver::sys;
        use std::ffi::c_void;
        // The kernels' parameter pointers, without a heap allocation per launch (a decode step launches hundreds).
        let mut params = [std::ptr::null_mut::<c_void>(); MAX_KERNEL_ARGS];
        if args.len() > MAX_KERNEL_ARGS {
            return Err(err(
                "kernel launch",
                format!("{} arguments, at most {MAX_KERNEL_ARGS}", args.len()),
            ));
        }
        for (p, a) in params.iter_mut().zip(args) {
            *p = match a {
                Arg::Ptr(v) => v as *const u64 as *mut c_void,
                Arg::I32(v) => v as *const i32 as *mut c_void,
                Arg::F32(v) => v as *const f32 as *mut c_void,
                Arg::Usize(v) => v as *const usize as *mut c_void,
                Arg::Segs(v) => v as *const decode::Segs as *mut c_void,
                Arg::Rope(v) => v as *const decode::RopeArgs as *mut c_void,
            };
        }
        // SAFETY: a zeroed attribute is a valid "ignore" value; the fields set below are the ones the id names.
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let cfg = sys::CUlaunchConfig {
            gridDimX: grid.0,
            gridDimY: grid.1,
            gridDimZ: grid.2,
            blockDimX: block,
            blockDimY: 1,
            blockDimZ: 1,
            sharedMemBytes: 0,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: u32::from(self.dependent_launch),
        };
        self.ctx.bind_to_thread().map_err(|e| err("binding the context", e))?;
        // SAFETY: every kernel's arguments are listed in its CUDA signature's order and types (pointers as u64),
        // and `params` points into `args`, which outlives the call; buffer sizes are checked by the callers
        // against the shapes the kernels index.
        unsafe { sys::cuLaunchKernelEx(&cfg, f.cu_function(), params.as_mut_ptr(), std::ptr::null_mut()) }
            .result()
            .map_err(|e| err("kernel launch", e))?;
        Ok(())
    }

    /// A 1-D launch of `n` threads in blocks of 256.
    pub(super) fn launch_1d(&self, f: &CudaFunction, n: usize, args: &[Arg]) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.launch(f, (n.div_ceil(256) as u32, 1, 1), 256, args)
    }
}
