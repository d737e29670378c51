// The second half of a decode layer for one token (Backend::attention_ffn) in three launches instead of four:
//
//   attn_o    attention of each head, then that head's output times its columns of wo, added into `acc`;
//   glu1na    the FFN input: RMSNorm(x + acc) through gate and up, activation (as glu1n, on x + acc);
//   matvec1a  the FFN output: x = (x + acc) + down · h, and acc back to zero.
//
// The launch that goes is the output projection's (with its boundary, about 1 µs on H100, and its own path from
// wait to store). Each attention block holds its share of wo's rows in registers, loaded before its wait.
// Measured on H100 (tg128, 2026-11-27): smollm2-135m f16 2,390 -> 2,604 tok/s, q8_0 2,347 -> 2,476; with the
// FFN input's copy of x + acc in 16-byte loads (one round of loads a thread instead of three), 2,665 / 2,540; with
// its norm weights copied to shared memory before the wait (no load of them after it), 2,704 / 2,579.
// Not kept: each warp of the FFN input reading acc beside x itself, no shared copy (2,404 / 2,398: 10 MB of L2
// reads a layer); the norm weights copied to shared memory after the wait, in the scalar copy (-1.3 %); 16-warp
// FFN input blocks (f16 -1.8 %, q8_0 +1.7 %); wo's conversion to floats pinned before the wait (-0.9 % / -1.3 %);
// the FFN in one launch too, the residual left pending as x + A + F until the next layer's Q/K/V product (2,629 /
// 2,510, qwen2.5-0.5b f16 1,346 -> 1,099: the fold and the Q/K/V product's copy of the sum cost more than the
// launch, see docs/BENCHMARKS.md).
//
// acc: [d] i64, fixed point with TAIL_FIXED_ONE a unit, zero between layers. The heads' partial products meet in
// it through integer atomics, so their sum is exact and the same whatever order the blocks arrive in: a step stays
// bit-for-bit repeatable (float atomics would not). A partial beyond ±2^31 saturates (no model's are near that).

// The FFN output's held kernel (`matvec1ah`): each warp holds its row pair from before the wait (RowPair), rows of
// up to 256 TAIL_DOWN_ITERS elements (half that for F32), at up to 168 registers a thread (3 blocks an SM; its
// 72 blocks for smollm2 take one an SM anyway). At 128 (4 blocks) the decoded rows spilled to local memory right
// after the wait (52 spill stores and loads for F16, 70 for Q8_0); at 166 none do. H100 tg128: smollm2-135m f16
// 3,073 -> 3,213 tok/s, q8_0 3,001 -> 3,147, qwen2.5-0.5b (plain kernel) unchanged. From the host (layer_tail.rs,
// which launches it only for rows that short): TAIL_DOWN_ITERS.
template <class F>
using TailDownRows = RowPair<F, (sizeof(typename F::Raw) > 16 ? TAIL_DOWN_ITERS / 2 : TAIL_DOWN_ITERS)>;
#define TAIL_DOWN_BOUNDS __launch_bounds__(MATVEC_THREADS, 3)

#define TAIL_FIXED_ONE 4294967296.f          // 2^32
#define TAIL_FIXED_INV 2.3283064365386963e-10f  // 2^-32
// From the host (layer_tail.rs): TAIL_CPT, the chunks of 8 weights of wo each attention thread holds (8 TAIL_CPT
// floats of registers), and TAIL_MAX_D, the longest row d of the FFN input kernel's shared copy of x + acc.

__device__ __forceinline__ float tail_fixed_to_f(long long v) { return (float)v * TAIL_FIXED_INV; }

// This thread's share of the block's rows of wo (token-head blockIdx.x, part blockIdx.y): rows [RB part, RB part
// + RB), RB = threads * TAIL_CPT * 8 / HD, columns [HD h, HD h + HD) of head h, chunk k of the thread being chunk
// threadIdx.x + k * threads of that tile (HD / 8 chunks a row). Weights only: loaded before the wait, held raw
// (F::raw8) and decoded after the attention, so that no warp waits for them before its own wait: decoded here, the
// first chunk's conversion held back the second chunk's load, and the block trace had the attention warps reach
// their wait only after the Q/K/V product had ended (now about 1 µs before). H100 tg128: smollm2-135m f16 2,914 ->
// 3,100 tok/s, q8_0 2,914 -> 3,027, qwen2.5-0.5b f16 1,488 -> 1,560.
template <class F>
struct TailWo {
    typename F::Raw w[TAIL_CPT];
};
template <int HD, class F>
__device__ __forceinline__ TailWo<F> tail_wo(const u8* wo, size_t wo_row_bytes, int d, int n_heads) {
    constexpr int NT = 128 * DECODE_LPK, CPR = HD / 8, RB = NT * TAIL_CPT / CPR;
    TailWo<F> r;
    int h = blockIdx.x % n_heads, row0 = blockIdx.y * RB;
#pragma unroll
    for (int k = 0; k < TAIL_CPT; k++) {
        int c = threadIdx.x + k * NT, row = min(row0 + c / CPR, d - 1);  // rows past d: read, never stored
        r.w[k] = F::raw8(wo + (size_t)row * wo_row_bytes, h * HD + 8 * (c % CPR));
    }
    return r;
}

// After the wait: the head's attention (every part's block redoes it; one split, as the host fuses only below a
// split's length: it costs idle SMs, not time on the path), then the block's rows of wo times the head's output,
// each row's sum added into acc.
template <typename T, int HD, class F>
__device__ __forceinline__ void attn_o(const TailWo<F>& wo, const AttnToken& tok, const float* q, const T* kc,
                                       const T* vc, int d, long long* acc, int n_heads, int n_kv_heads, int n_ctx,
                                       int n_seqs, int layer, float scale, int window) {
    constexpr int NT = 128 * DECODE_LPK, CPR = HD / 8, RB = NT * TAIL_CPT / CPR;  // threads, chunks a row, rows
    static_assert(32 % CPR == 0, "a row's chunks lie in one warp");
    __shared__ __align__(16) float os[HD];
    int t = blockIdx.x / n_heads, row0 = blockIdx.y * RB;
    attn_decode<T, HD, DECODE_LPK>(q, kc, vc, tok, nullptr, nullptr, n_heads, n_kv_heads, HD, n_ctx, n_seqs, layer,
                                   scale, window, 0, 1, nullptr, nullptr, os);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TAIL_CPT; k++) {
        int c = threadIdx.x + k * NT, row = row0 + c / CPR;
        float w[8];
        F::decode8(wo.w[k], w);
        const float4* o = (const float4*)(os + 8 * (c % CPR));
        float4 o0 = o[0], o1 = o[1];
        float s = w[0] * o0.x + w[1] * o0.y + w[2] * o0.z + w[3] * o0.w + w[4] * o1.x + w[5] * o1.y + w[6] * o1.z +
                  w[7] * o1.w;
#pragma unroll
        for (int m = 1; m < CPR; m <<= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
        if (c % CPR == 0 && row < d)
            atomicAdd((unsigned long long*)(acc + (size_t)t * d + row),
                      (unsigned long long)__float2ll_rn(s * TAIL_FIXED_ONE));
    }
}

#define TAIL_ATTN_KERNEL(NAME, T, HD, FMT)                                                                      \
    extern "C" __global__ void NAME(const float* q, const T* kc, const T* vc, const int* pos, const int* seq,   \
                                    const u8* wo, size_t wo_rb, int d, long long* acc, int n_heads,             \
                                    int n_kv_heads, int n_ctx, int n_seqs, int layer, float scale, int window) { \
        const TailWo<FMT> w = tail_wo<HD, FMT>(wo, wo_rb, d, n_heads);                                          \
        const AttnToken tok = attn_decode_prefetch<T>(kc, vc, pos, seq, n_heads, n_kv_heads, HD, n_ctx, n_seqs, \
                                                      layer, window, 0, 1);                                     \
        grid_dep_sync();                                                                                        \
        attn_o<T, HD, FMT>(w, tok, q, kc, vc, d, acc, n_heads, n_kv_heads, n_ctx, n_seqs, layer, scale, window); \
    }

// One row of the FFN output: x = (x + acc) + v from the row's residual xo and accumulator ao, acc back to zero.
__device__ __forceinline__ void tail_fold(float* out, long long* acc, int row, float xo, long long ao, float v) {
    out[row] = (xo + tail_fixed_to_f(ao)) + v;
    acc[row] = 0;
}

// The FFN output after its wait: x = (x + acc) + down · h, acc back to zero, by row pairs (`dot2` one pair).
template <class Dot2>
__device__ __forceinline__ void tail_down(const Segs& s, size_t rb, int rows, long long* acc, Dot2 dot2) {
    float* out = (float*)s.out[0];
    matvec_two_rows(s, rb, rows, dot2, [&](int, int row, float v) { tail_fold(out, acc, row, out[row], acc[row], v); });
}

// tail_down for the held kernel: lane 0 of each warp reads its first pair's residual and accumulator entries right
// after the wait, in flight with the activations' loads, instead of after the product (the block trace had the
// store 0.4 µs after the sums). H100 tg128: smollm2 q8_0 2,844 -> 2,857, f16 and qwen2.5-0.5b unchanged.
template <class Dot2>
__device__ __forceinline__ void tail_down_held(const Segs& s, size_t rb, int rows, long long* acc, Dot2 dot2) {
    int r0 = 2 * (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32), r1 = min(r0 + 1, rows - 1);
    float* out = (float*)s.out[0];
    float x0 = 0.f, x1 = 0.f;
    long long a0 = 0, a1 = 0;
    if ((threadIdx.x & 31) == 0 && r0 < rows) {
        x0 = out[r0];
        x1 = out[r1];
        a0 = acc[r0];
        a1 = acc[r1];
    }
    matvec_two_rows(s, rb, rows, dot2, [&](int, int row, float v) {
        float xo = row == r0 ? x0 : row == r1 ? x1 : out[row];
        long long ao = row == r0 ? a0 : row == r1 ? a1 : acc[row];
        tail_fold(out, acc, row, xo, ao, v);
    });
}

// The tail's kernels, per format with a float view: attention with the output projection (heads of 64 and 128),
// the FFN input and the FFN output.
#define TAIL_FFN_KERNELS(NAME, FMT)                                                                             \
    TAIL_ATTN_KERNEL(attn_o64_##NAME, u16, 64, FMT)                                                             \
    TAIL_ATTN_KERNEL(attn_o128_##NAME, u16, 128, FMT)                                                           \
    extern "C" __global__ void glu1na_##NAME(const u8* g, const u8* u, size_t rb, int rows, int K,             \
                                             const float* x, const long long* acc, const float* nw, float eps, \
                                             float* h, int act) {                                              \
        __shared__ __align__(16) float xs[TAIL_MAX_D], ws[TAIL_MAX_D];                                          \
        const RowPair<FMT> pw = glu_rows_load<FMT>(g, u, rb, rows, K);                                         \
        prefetch_block_glu(g, u, rb, rows); block_copy(ws, nw, K); grid_dep_sync();                              \
        for (int i = 4 * threadIdx.x; i < K; i += 4 * blockDim.x) {                                             \
            float4 v = *(const float4*)(x + i);                                                                 \
            longlong2 a0 = *(const longlong2*)(acc + i), a1 = *(const longlong2*)(acc + i + 2);                 \
            *(float4*)(xs + i) = make_float4(v.x + tail_fixed_to_f(a0.x), v.y + tail_fixed_to_f(a0.y),         \
                                             v.z + tail_fixed_to_f(a1.x), v.w + tail_fixed_to_f(a1.y));        \
        }                                                                                                       \
        __syncthreads();                                                                                        \
        glu_fn_held<FMT>(pw, g, u, rb, rows, K, xs, h, act, ws, eps);                                           \
    }                                                                                                           \
    extern "C" __global__ void MATVEC1_BOUNDS matvec1a_##NAME(Segs s, size_t rb, int rows, int K,              \
                                                              const float* h, long long* acc) {                 \
        prefetch_block_segs(s, rb, 2); grid_dep_sync_early();                                                   \
        tail_down(s, rb, rows, acc, [&](const u8* wa, const u8* wb, float* a, float* b) {                      \
            dot2_f<FMT, 1>(wa, wb, K, h, 1, a, b);                                                              \
        });                                                                                                     \
    }                                                                                                           \
    extern "C" __global__ void TAIL_DOWN_BOUNDS matvec1ah_##NAME(Segs s, size_t rb, int rows, int K,           \
                                                                 const float* h, long long* acc) {              \
        const TailDownRows<FMT> pw = two_rows_load<FMT, TailDownRows<FMT>::ITERS>(s, rb, rows, K);              \
        prefetch_block_segs(s, rb, 2); grid_dep_sync_early();                                                   \
        tail_down_held(s, rb, rows, acc, [&](const u8* wa, const u8* wb, float* a, float* b) {                 \
            dot2_f_held(pw, wa, wb, K, h, a, b);                                                                \
        });                                                                                                     \
    }

TAIL_FFN_KERNELS(f32, FmtF32)
TAIL_FFN_KERNELS(f16, FmtF16)
TAIL_FFN_KERNELS(bf16, FmtBF16)
TAIL_FFN_KERNELS(q8_0f, FmtQ8_0)
