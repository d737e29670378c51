// The second half of a decode layer for one token (Backend::attention_ffn) in two launches instead of four:
//
//   attn_o   attention of each head, then that head's output times its columns of wo, added into `A`;
//   glud     the FFN: each block takes 8 rows of gate and up on RMSNorm(x + A), then its 8 columns of down times
//            those 8 activations, added into `F`.
//
// Both products are split over blocks whose partial sums meet in fixed-point accumulators through integer
// atomics. The sum is exact and the same whatever order the blocks arrive in, so a step stays bit-for-bit
// repeatable (float atomics would not). The launches that go are the output projection's and the down
// projection's, each with its boundary (about 1 µs on H100) and its own path from wait to store.
//
// The residual stream then stands as x + A + F until the next layer: its Q/K/V product reads the sum
// (matvec1nra), and its attention folds it into x (x = (x + A) + F, both back to zero) before it adds its own
// heads into the other A. Whatever else reads x first has tail_fold run before it (the host's `settle`).
//
// Measured on H100 (tg128, 2026-11-27), smollm2-135m f16 / q8_0, unfused 2,390 / 2,347 tok/s: attention with the
// output projection, the FFN input and output apart, 2,604 / 2,476; with the FFN input's copy of x + A in 16-byte
// loads, 2,665 / 2,540; the FFN in one launch as well: docs/BENCHMARKS.md. Not kept: each FFN warp reading A beside
// x itself, no shared copy (2,404 / 2,398: 10 MB of L2 reads a layer); the norm weights copied to shared memory
// too (-1.3 %); 16-warp FFN blocks (f16 -1.8 %, q8_0 +1.7 %); wo's conversion to floats pinned before the wait
// (-0.9 % / -1.3 %).
//
// A, F: [d] i64, fixed point with TAIL_FIXED_ONE a unit. A partial beyond ±2^31 saturates (no model's are near).

#define TAIL_FIXED_ONE 4294967296.f          // 2^32
#define TAIL_FIXED_INV 2.3283064365386963e-10f  // 2^-32
// From the host (layer_tail.rs): TAIL_CPT, the chunks of 8 weights of wo each attention thread holds (8 TAIL_CPT
// floats of registers), and TAIL_MAX_D, the longest row d (the shared copy of the residual; a multiple of 256).

__device__ __forceinline__ float tail_fixed_to_f(long long v) { return (float)v * TAIL_FIXED_INV; }
__device__ __forceinline__ void tail_add(long long* acc, float v) {
    atomicAdd((unsigned long long*)acc, (unsigned long long)__float2ll_rn(v * TAIL_FIXED_ONE));
}

// The residual (x + a) + f of a row of K (K % 4 == 0; f may be null) into shared xs, a round of 16-byte loads a
// thread, then a barrier. The folds (tail_fold_at) compute the same sums in the same order.
__device__ __forceinline__ void tail_sum_x(const float* x, const long long* a, const long long* f, int K, float* xs) {
    for (int i = 4 * threadIdx.x; i < K; i += 4 * blockDim.x) {
        float4 v = *(const float4*)(x + i);
        longlong2 a0 = *(const longlong2*)(a + i), a1 = *(const longlong2*)(a + i + 2);
        float4 r = make_float4(v.x + tail_fixed_to_f(a0.x), v.y + tail_fixed_to_f(a0.y), v.z + tail_fixed_to_f(a1.x),
                               v.w + tail_fixed_to_f(a1.y));
        if (f) {
            longlong2 f0 = *(const longlong2*)(f + i), f1 = *(const longlong2*)(f + i + 2);
            r = make_float4(r.x + tail_fixed_to_f(f0.x), r.y + tail_fixed_to_f(f0.y), r.z + tail_fixed_to_f(f1.x),
                            r.w + tail_fixed_to_f(f1.y));
        }
        *(float4*)(xs + i) = r;
    }
    __syncthreads();
}

// x[i] = (x[i] + a[i]) + f[i], then a[i] = f[i] = 0: element i of a fold, by thread i of its launch.
__device__ __forceinline__ void tail_fold_at(int i, int d, float* x, long long* a, long long* f) {
    if (i >= d) return;
    x[i] = (x[i] + tail_fixed_to_f(a[i])) + tail_fixed_to_f(f[i]);
    a[i] = 0;
    f[i] = 0;
}
extern "C" __global__ void tail_fold(float* x, long long* a, long long* f, int d) {
    grid_dep_sync();
    tail_fold_at(blockIdx.x * blockDim.x + threadIdx.x, d, x, a, f);
}

// This thread's share of the block's rows of wo (token-head blockIdx.x, part blockIdx.y): rows [RB part, RB part
// + RB), RB = threads * TAIL_CPT * 8 / HD, columns [HD h, HD h + HD) of head h, chunk k of the thread being chunk
// threadIdx.x + k * threads of that tile (HD / 8 chunks a row). Weights only: loaded before the wait.
struct TailWo {
    float w[TAIL_CPT][8];
};
template <int HD, class F>
__device__ __forceinline__ TailWo tail_wo(const u8* wo, size_t wo_row_bytes, int d, int n_heads) {
    constexpr int NT = 128 * DECODE_LPK, CPR = HD / 8, RB = NT * TAIL_CPT / CPR;
    TailWo r;
    int h = blockIdx.x % n_heads, row0 = blockIdx.y * RB;
#pragma unroll
    for (int k = 0; k < TAIL_CPT; k++) {
        int c = threadIdx.x + k * NT, row = row0 + c / CPR;
        if (row < d) {
            F::load8(wo + (size_t)row * wo_row_bytes, h * HD + 8 * (c % CPR), r.w[k]);
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) r.w[k][j] = 0.f;
        }
    }
    return r;
}

// After the wait: the head's attention (every part's block redoes it; one split, as the host fuses only below a
// split's length: it costs idle SMs, not time on the path), then the block's rows of wo times the head's output,
// each row's sum added into acc.
template <typename T, int HD>
__device__ __forceinline__ void attn_o(const TailWo& wo, const AttnToken& tok, const float* q, const T* kc,
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
        const float* w = wo.w[k];
        const float4* o = (const float4*)(os + 8 * (c % CPR));
        float4 o0 = o[0], o1 = o[1];
        float s = w[0] * o0.x + w[1] * o0.y + w[2] * o0.z + w[3] * o0.w + w[4] * o1.x + w[5] * o1.y + w[6] * o1.z +
                  w[7] * o1.w;
#pragma unroll
        for (int m = 1; m < CPR; m <<= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
        if (c % CPR == 0 && row < d) tail_add(acc + (size_t)t * d + row, s);
    }
}

#define TAIL_ATTN_KERNEL(NAME, T, HD, FMT)                                                                      \
    extern "C" __global__ void NAME(const float* q, const T* kc, const T* vc, const int* pos, const int* seq,   \
                                    const u8* wo, size_t wo_rb, int d, long long* acc, int n_heads,             \
                                    int n_kv_heads, int n_ctx, int n_seqs, int layer, float scale, int window,  \
                                    float* x, long long* fold_a, long long* fold_f) {                           \
        const TailWo w = tail_wo<HD, FMT>(wo, wo_rb, d, n_heads);                                               \
        const AttnToken tok = attn_decode_prefetch<T>(kc, vc, pos, seq, n_heads, n_kv_heads, HD, n_ctx, n_seqs, \
                                                      layer, window, 0, 1);                                     \
        grid_dep_sync();                                                                                        \
        tail_fold_at((blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x, d, x, fold_a, fold_f);   \
        attn_o<T, HD>(w, tok, q, kc, vc, d, acc, n_heads, n_kv_heads, n_ctx, n_seqs, layer, scale, window);     \
    }

// This thread's rows of the block's 8 columns of down (rows threadIdx.x + 256 k): a weight, read before the wait.
struct TailDown {
    float w[TAIL_MAX_D / 256][8];
};
template <class F>
__device__ __forceinline__ TailDown tail_down_cols(const u8* down, size_t down_rb, int d) {
    TailDown r;
#pragma unroll
    for (int k = 0; k < TAIL_MAX_D / 256; k++) {
        int row = threadIdx.x + 256 * k;
        if (row < d) {
            F::load8(down + (size_t)row * down_rb, 8 * blockIdx.x, r.w[k]);
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) r.w[k][j] = 0.f;
        }
    }
    return r;
}

// The FFN in one launch (blocks of 8 warps, a row of gate and up each; ff % 8 == 0): the block's 8 activations go
// to shared memory, then each thread adds its rows' products with them into F.
template <class F>
__device__ __forceinline__ void glu_down(const u8* g, const u8* u, size_t rb, int K, const float* x,
                                         const long long* acc, const float* nw, float eps, const TailDown& dw,
                                         long long* accf, int act) {
    __shared__ __align__(16) float xs[TAIL_MAX_D];
    __shared__ float hs[8];
    tail_sum_x(x, acc, nullptr, K, xs);
    int warp = threadIdx.x / 32, row = blockIdx.x * 8 + warp;
    float gv, uv;
    dot2_fn<F>(g + row * rb, u + row * rb, K, xs, nw, eps, &gv, &uv);
    if ((threadIdx.x & 31) == 0) hs[warp] = glu_act(gv, act) * uv;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TAIL_MAX_D / 256; k++) {
        int r = threadIdx.x + 256 * k;
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) sum += dw.w[k][j] * hs[j];
        if (r < K) tail_add(accf + r, sum);
    }
}

// The FFN (glud: 256 threads a block) and the Q/K/V product on x + A + F (matvec1nra), per format with a float
// view.
#define TAIL_FFN_KERNELS(NAME, FMT)                                                                             \
    TAIL_ATTN_KERNEL(attn_o64_##NAME, u16, 64, FMT)                                                             \
    TAIL_ATTN_KERNEL(attn_o128_##NAME, u16, 128, FMT)                                                           \
    extern "C" __global__ void __launch_bounds__(256) glud_##NAME(                                             \
        const u8* g, const u8* u, size_t rb, int K, const float* x, const long long* acc, const float* nw,    \
        float eps, const u8* down, size_t down_rb, long long* accf, int act) {                                 \
        const TailDown dw = tail_down_cols<FMT>(down, down_rb, K);                                              \
        prefetch_block_glu(g, u, rb, gridDim.x * 8); grid_dep_sync();                                           \
        glu_down<FMT>(g, u, rb, K, x, acc, nw, eps, dw, accf, act);                                             \
    }                                                                                                           \
    extern "C" __global__ void matvec1nra_##NAME(Segs s, size_t rb, int rows, int K, const float* x,           \
                                                 const long long* a, const long long* f, const float* nw,      \
                                                 float eps, RopeArgs ra) {                                      \
        prefetch_block_segs(s, rb, 2); const RopePrep rp = rope_prepare(s, rows, ra); grid_dep_sync();          \
        __shared__ __align__(16) float xs[TAIL_MAX_D];                                                          \
        tail_sum_x(x, a, f, K, xs);                                                                             \
        matvec_rope_pairs(s, rb, rows, ra, rp, [&](const u8* wa, const u8* wb, float* pa, float* pb) {          \
            dot2_fn<FMT>(wa, wb, K, xs, nw, eps, pa, pb);                                                       \
        });                                                                                                     \
    }

TAIL_FFN_KERNELS(f32, FmtF32)
TAIL_FFN_KERNELS(f16, FmtF16)
TAIL_FFN_KERNELS(bf16, FmtBF16)
TAIL_FFN_KERNELS(q8_0f, FmtQ8_0)
