//! Measures what a kernel boundary (programmatic dependent launch inside a graph) costs against a barrier between
//! the rounds of one kernel (a counter in global memory), empty and with a weight stream per round.
//! Run on a CUDA device: `cargo run --release --example sync_cost`.
//!
//! Measured on an H100 80GB HBM3 (2026-11-26, driver 580.159.04), µs a step of 150 in one graph: an empty kernel
//! under dependent launch 0.55 (60 blocks) to 0.65 (264 blocks), whatever the functions, shared memory, parameter
//! size or grid shapes in turn; a counter barrier between rounds of one kernel 0.93 (60 blocks) to 1.40 (264).
//! With 4 / 8 / 16 KB streamed a block a step (132 blocks): kernels 1.16 / 1.45 / 2.22, barrier rounds 1.72 /
//! 2.05 / 2.92 even with the next round's bytes prefetched. So a persistent kernel with grid barriers loses to a
//! chain of dependent launches; a step is kept short by what each kernel does after its wait.

use cudarc::driver::sys;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DevicePtr};
use std::ffi::c_void;
use std::sync::Arc;
use std::time::Instant;

const SRC: &str = r#"
extern "C" __global__ void empty_pdl(unsigned* sink, int r) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
__device__ __forceinline__ void bar(unsigned* ctr, unsigned target) {
    __syncthreads();
    if (threadIdx.x == 0) {
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" :: "l"(ctr) : "memory");
        unsigned v;
        do { asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(ctr) : "memory"); } while (v < target);
    }
    __syncthreads();
}
extern "C" __global__ void barrier_rounds(unsigned* ctr, int rounds) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    for (int r = 0; r < rounds; r++) bar(ctr, (r + 1) * gridDim.x);
}
__device__ __forceinline__ unsigned stream_chunk(const uint4* w, size_t n16, int r, int per_block) {
    size_t base = ((size_t)r * gridDim.x + blockIdx.x) * per_block % n16;
    unsigned s = 0;
    for (int i = threadIdx.x; i < per_block; i += blockDim.x) {
        uint4 v = w[(base + i) % n16];
        s += v.x ^ v.y ^ v.z ^ v.w;
    }
    return s;
}
extern "C" __global__ void work_pdl(const uint4* w, size_t n16, int per_block, int r, unsigned* sink) {
    size_t base = ((size_t)r * gridDim.x + blockIdx.x) * per_block % n16;
    for (int i = threadIdx.x * 8; i < per_block; i += blockDim.x * 8)
        asm volatile("prefetch.global.L2 [%0];" :: "l"(w + (base + i) % n16));
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    unsigned s = stream_chunk(w, n16, r, per_block);
    if (s == 0x12345678u) sink[blockIdx.x] = s;
}
extern "C" __global__ void work_rounds(const uint4* w, size_t n16, int per_block, int rounds, unsigned* ctr,
                                       unsigned* sink, int prefetch) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    unsigned acc = 0;
    for (int r = 0; r < rounds; r++) {
        if (prefetch && r + 1 < rounds) {
            size_t base = ((size_t)(r + 1) * gridDim.x + blockIdx.x) * per_block % n16;
            for (int i = threadIdx.x * 8; i < per_block; i += blockDim.x * 8)
                asm volatile("prefetch.global.L2 [%0];" :: "l"(w + (base + i) % n16));
        }
        acc += stream_chunk(w, n16, r, per_block);
        bar(ctr, (r + 1) * gridDim.x);
    }
    if (acc == 0x12345678u) sink[blockIdx.x] = acc;
}

#define EMPTY_VARIANT(N) extern "C" __global__ void empty_##N(unsigned* sink, int r) { \
    asm volatile("griddepcontrol.wait;" ::: "memory"); \
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); \
    if (r < 0) sink[N] = r; }
EMPTY_VARIANT(0) EMPTY_VARIANT(1) EMPTY_VARIANT(2) EMPTY_VARIANT(3) EMPTY_VARIANT(4)
extern "C" __global__ void empty_smem(unsigned* sink, int r) {
    __shared__ float buf[1024];
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    buf[threadIdx.x] = r;
    __syncthreads();
    if (r < 0) sink[0] = buf[(threadIdx.x + 1) % 256];
}
struct Big { unsigned long long a[22]; };
extern "C" __global__ void empty_big(Big b, int r) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    if (r < 0) ((unsigned*)b.a[0])[0] = r;
}
extern "C" __global__ void empty_prefetch(const unsigned char* w, size_t bytes, int per_block, int r, int l1) {
    size_t base = ((size_t)r * gridDim.x + blockIdx.x) * per_block % bytes;
    for (int i = threadIdx.x * 128; i < per_block; i += blockDim.x * 128) {
        if (l1) asm volatile("prefetch.global.L1 [%0];" :: "l"(w + (base + i) % bytes));
        else asm volatile("prefetch.global.L2 [%0];" :: "l"(w + (base + i) % bytes));
    }
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
"#;

enum A {
    P(u64),
    I(i32),
    U(usize),
    B([u64; 22]),
}

fn launch(stream: &Arc<CudaStream>, f: &CudaFunction, grid: u32, args: &[A]) {
    launch_t(stream, f, grid, 256, args)
}

fn launch_t(stream: &Arc<CudaStream>, f: &CudaFunction, grid: u32, threads: u32, args: &[A]) {
    let mut vals: Vec<*mut c_void> = args
        .iter()
        .map(|a| match a {
            A::P(v) => v as *const u64 as *mut c_void,
            A::I(v) => v as *const i32 as *mut c_void,
            A::U(v) => v as *const usize as *mut c_void,
            A::B(v) => v as *const [u64; 22] as *mut c_void,
        })
        .collect();
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let cfg = sys::CUlaunchConfig {
        gridDimX: grid,
        gridDimY: 1,
        gridDimZ: 1,
        blockDimX: threads,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: 0,
        hStream: stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    unsafe { sys::cuLaunchKernelEx(&cfg, f.cu_function(), vals.as_mut_ptr(), std::ptr::null_mut()) }
        .result()
        .expect("launch");
}

fn time_graph(stream: &Arc<CudaStream>, body: &dyn Fn()) -> f64 {
    stream
        .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        .expect("capture");
    body();
    let g = stream
        .end_capture(sys::CUgraphInstantiate_flags(0))
        .expect("end capture")
        .expect("graph");
    for _ in 0..5 {
        g.launch().expect("replay");
    }
    stream.synchronize().expect("sync");
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..20 {
            g.launch().expect("replay");
        }
        stream.synchronize().expect("sync");
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / 20.0);
    }
    best
}

fn main() {
    let ctx = CudaContext::new(0).expect("context");
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().expect("stream");
    let n_sms = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .expect("sms") as u32;
    let (maj, min) = ctx.compute_capability().expect("cc");
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(
        SRC,
        cudarc::nvrtc::CompileOptions {
            arch: Some(Box::leak(format!("sm_{maj}{min}").into_boxed_str())),
            ..Default::default()
        },
    )
    .expect("compile");
    let m = ctx.load_module(ptx).expect("module");
    let f = |n: &str| m.load_function(n).expect("function");
    let (empty, rounds, work, work_r) = (f("empty_pdl"), f("barrier_rounds"), f("work_pdl"), f("work_rounds"));
    let ctr = stream.alloc_zeros::<u32>(64).expect("alloc");
    let sink = stream.alloc_zeros::<u32>(4096).expect("alloc");
    let wbytes: usize = 256 << 20;
    let w = stream.alloc_zeros::<u8>(wbytes).expect("alloc");
    let (ctr_p, _g1) = ctr.device_ptr(&stream);
    let (sink_p, _g2) = sink.device_ptr(&stream);
    let (w_p, _g3) = w.device_ptr(&stream);
    let n16 = wbytes / 16;
    let n: i32 = 150;
    println!(
        "device {} ({n_sms} SMs), {n} steps a graph; µs a step",
        ctx.name().unwrap_or_default()
    );
    for grid in [60u32, n_sms, 2 * n_sms] {
        let t = time_graph(&stream, &|| {
            for r in 0..n {
                launch(&stream, &empty, grid, &[A::P(sink_p), A::I(r)]);
            }
        });
        println!("empty kernels (PDL) grid {grid:4}: {:.3}", t / n as f64);
        let t = time_graph(&stream, &|| {
            unsafe { sys::cuMemsetD32Async(ctr_p, 0, 64, stream.cu_stream()) }
                .result()
                .expect("memset");
            launch(&stream, &rounds, grid, &[A::P(ctr_p), A::I(n)]);
        });
        println!("counter barrier   grid {grid:4}: {:.3}", t / n as f64);
    }
    let per = |t: f64| t / n as f64;
    let v: Vec<CudaFunction> = (0..5).map(|i| f(&format!("empty_{i}"))).collect();
    let t = time_graph(&stream, &|| {
        for r in 0..n {
            launch(&stream, &v[r as usize % 5], 60, &[A::P(sink_p), A::I(r)]);
        }
    });
    println!("five functions in turn, grid 60: {:.3}", per(t));
    let smem = f("empty_smem");
    let t = time_graph(&stream, &|| {
        for r in 0..n {
            let g = if r % 2 == 0 { &smem } else { &v[0] };
            launch(&stream, g, 60, &[A::P(sink_p), A::I(r)]);
        }
    });
    println!("4 KB smem kernel and none in turn, grid 60: {:.3}", per(t));
    let t = time_graph(&stream, &|| {
        for r in 0..n {
            launch(&stream, &smem, 60, &[A::P(sink_p), A::I(r)]);
        }
    });
    println!("4 KB smem kernels only, grid 60: {:.3}", per(t));
    let big = f("empty_big");
    let t = time_graph(&stream, &|| {
        for r in 0..n {
            let mut b = [0u64; 22];
            b[0] = sink_p;
            launch(&stream, &big, 60, &[A::B(b), A::I(r)]);
        }
    });
    println!("176-byte parameters, grid 60: {:.3}", per(t));
    let t = time_graph(&stream, &|| {
        for r in 0..n {
            let (g, th) = match r % 5 {
                0 => (60, 256),
                1 => (9, 512),
                2 => (72, 128),
                3 => (192, 256),
                _ => (72, 128),
            };
            launch_t(&stream, &v[r as usize % 5], g, th, &[A::P(sink_p), A::I(r)]);
        }
    });
    println!(
        "layer-like shapes (60x256, 9x512, 72x128, 192x256, 72x128): {:.3}",
        per(t)
    );
    let pf = f("empty_prefetch");
    for (bytes, l1) in [(16384i32, 1i32), (16384, 0), (4096, 1)] {
        let t = time_graph(&stream, &|| {
            for r in 0..n {
                launch(
                    &stream,
                    &pf,
                    60,
                    &[A::P(w_p), A::U(wbytes), A::I(bytes), A::I(r), A::I(l1)],
                );
            }
        });
        println!(
            "prefetch {bytes} B a block (L1 {l1}) before the wait, grid 60: {:.3}",
            per(t)
        );
    }
    for per_block_bytes in [4096usize, 8192, 16384] {
        let per_block = (per_block_bytes / 16) as i32;
        let grid = n_sms;
        let t = time_graph(&stream, &|| {
            for r in 0..n {
                launch(
                    &stream,
                    &work,
                    grid,
                    &[A::P(w_p), A::U(n16), A::I(per_block), A::I(r), A::P(sink_p)],
                );
            }
        });
        println!(
            "stream {per_block_bytes:5} B a block, kernels:          {:.3}",
            t / n as f64
        );
        for pf in [0, 1] {
            let t = time_graph(&stream, &|| {
                unsafe { sys::cuMemsetD32Async(ctr_p, 0, 64, stream.cu_stream()) }
                    .result()
                    .expect("memset");
                launch(
                    &stream,
                    &work_r,
                    grid,
                    &[
                        A::P(w_p),
                        A::U(n16),
                        A::I(per_block),
                        A::I(n),
                        A::P(ctr_p),
                        A::P(sink_p),
                        A::I(pf),
                    ],
                );
            });
            println!(
                "stream {per_block_bytes:5} B a block, barrier rounds (prefetch {pf}): {:.3}",
                t / n as f64
            );
        }
    }
}
