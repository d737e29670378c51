// Shared by every quarrel CUDA kernel. Self-contained: no toolkit header is included, so NVRTC needs nothing but
// itself (f16/bf16 conversions go through PTX `cvt`, integer dots through PTX `dp4a`).
typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

__device__ __forceinline__ float h2f(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ u16 f2h(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float bf2f(u16 h) { return __uint_as_float(((u32)h) << 16); }
__device__ __forceinline__ int dp4a(int a, int b, int c) {
    int r;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Loads of a field at its natural alignment (a regrouped block's scalar fields keep only 2-byte alignment where
// they are 6 or 14 bytes long).
__device__ __forceinline__ u16 ld16(const u8* p) { return *(const u16*)p; }
__device__ __forceinline__ u32 ld32a2(const u8* p) { return (u32)ld16(p) | ((u32)ld16(p + 2) << 16); }
__device__ __forceinline__ u32 ld32(const u8* p) { return *(const u32*)p; }

// Rows of the formats regrouped on the GPU (quant::cuda::regroup): blocks in groups of 8, the group's 8 scalar
// fields (F::SCALAR_BYTES each) first, then the 8 quant arrays, each 16-byte aligned. Block b's two parts:
template <class F>
__device__ __forceinline__ const u8* rg_scalars(const u8* row, int b) {
    return row + (size_t)(b >> 3) * (8 * F::BLOCK_BYTES) + F::SCALAR_BYTES * (b & 7);
}
template <class F>
__device__ __forceinline__ const u8* rg_array(const u8* row, int b) {
    return row + (size_t)(b >> 3) * (8 * F::BLOCK_BYTES) + 8 * F::SCALAR_BYTES +
           (F::BLOCK_BYTES - F::SCALAR_BYTES) * (b & 7);
}
// 16 bytes of a weight, which a product reads once. Quantized rows are read by a warp's lanes in 16-byte pieces
// 32 bytes apart (a chunk's two halves come from two load instructions), so their lines must reach L1 for the
// second load to hit; they are marked to leave it first. Float rows come in whole 512-byte runs a warp and skip L1
// altogether (ldw4_stream), which leaves it to the activations every warp of the SM rereads. Measured on H100
// (12:35 UTC): 8B q8_0 264.7 -> 272.3, f16 162.6 -> 164.9, q4_k 345.6 -> 349.9 (Q4_K's own loads kept plain: with
// evict_first 343.2), smollm2 f16 1,660 -> 1,675, smollm2 q8_0 1,534 -> 1,494; skipping L1 for quantized rows too
// cost 8B q4_k 13 %.
__device__ __forceinline__ uint4 ldw4(const void* p) {
    uint4 v;
    asm volatile("ld.global.L1::evict_first.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}
__device__ __forceinline__ uint4 ldw4_stream(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// The 32-bit words of a 16-byte-aligned array, N a multiple of 4, in N / 4 16-byte loads.
template <int N>
__device__ __forceinline__ void ld_words16(const u8* p, u32 (&out)[N]) {
#pragma unroll
    for (int i = 0; i < N / 4; i++) {
        uint4 v = ldw4((const uint4*)p + i);
        out[4 * i] = v.x;
        out[4 * i + 1] = v.y;
        out[4 * i + 2] = v.z;
        out[4 * i + 3] = v.w;
    }
}

// The 32 values of one chunk of a weight row, as every quantized format hands them to the integer dot:
// v[0..3] hold elements 0..15 and v[4..7] elements 16..31 as packed 8-bit integers, and element i is
// d.x * q_i + m.x for i < 16, d.y * q_i + m.y otherwise.
struct Chunk {
    int v[8];
    float2 d;
    float2 m;
};

#define QINF __int_as_float(0x7f800000)

// Programmatic dependent launch (sm_90 and later; the host launches with it on): a kernel may start while its
// predecessor finishes. Every kernel calls this before it reads or writes anything another kernel touches: it
// waits until the predecessor has ended and its writes are visible, then lets the successor start launching. Only
// reads of weights and L2 prefetches may come before it. A no-op when the kernel was launched plainly.
__device__ __forceinline__ void grid_dep_sync() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// grid_dep_sync for the single-token quantized products and the plain single-token float product (output
// projections, down, logits): the successor may start launching before this kernel's own wait, so its blocks and
// their weight prefetch overlap this kernel's whole run (it still waits for this kernel's end and writes). Only
// where the successor is a kernel that triggers after its wait, so that no chain of early launches builds up.
// Measured on H100 (tg128): 8B q8_0 289.7 -> 291.4, q4_k 403.1 -> 403.9, smollm2-135m q8_0 2,122 -> 2,129; the
// float product early too, smollm2 f16 2,235 -> 2,263 (q8_0 and 8B unchanged); every kernel triggering early
// instead took smollm2 f16 2,236 -> 2,050 (kernels piling up), and the float norm-fused products early as well
// gained nothing.
__device__ __forceinline__ void grid_dep_sync_early() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }
