// The products' kernels (entry points), stamped out per weight format from matvec.cu's device functions.

// Register cap of the single-token products (launch bounds: at most 65,536 / (6 * 128) = 85 registers a thread, so
// that MATVEC1_MIN_BLOCKS blocks of MATVEC_THREADS fit an SM). Measured on H100 (tg128, 16:10 UTC): 8B q8_0
// 270.8 -> 278.7, 8B f16 162.6 -> 167.5, smollm2 q8_0 1,652 -> 1,756, 8B q4_k and smollm2 f16 within noise;
// 7 blocks (73 registers) cost 8B q4_k 2 %, 8 blocks 10 % and 12 blocks half its speed (spills). The norm-fusing
// products (256 threads a block) stay uncapped: capped alike, smollm2 f16 went 1,885-1,893 -> 1,828-1,867.
// MATVEC_THREADS comes from decode.rs.
#define MATVEC1_MIN_BLOCKS 6
#define MATVEC1_BOUNDS __launch_bounds__(MATVEC_THREADS, MATVEC1_MIN_BLOCKS)
// The float gated-input and rotating Q/K/V products (taken by models whose norm does not fit inside the products,
// so never by the small ones) at 4 blocks (up to 128 registers): H100 tg128, 2026-11-27, 8B f16 171.6 -> 173.3,
// smollm2 and qwen2.5-0.5b f16 unchanged. Every float single-token product at 4 gave 8B f16 174.6 but cost smollm2
// f16 0.7 % and qwen2.5-0.5b f16 1.1 % (their output heads and qwen's FFN output take matvec1 / matvec1a), so the
// plain product takes this cap (matvec1w) only for long rows.
#define MATVEC1_WIDE_BOUNDS __launch_bounds__(MATVEC_THREADS, 4)
// Quantized formats may take another cap: Q4_K and Q6_K (the 8B q4_k model's) run best at 4 blocks (128
// registers): 8B q4_k 353.5 / 353.4 -> 379.7 / 377.6 tok/s at 5 blocks (16:40 UTC, where q8_0 lost 1 % and f16
// 0.3 % with 5), 379.8 / 380.5 -> 383.3 / 383.4 at 4 (16:50 UTC).
// Q8_0 too, since (2026-11-27, H100 tg128): 8B q8_0 291.9 -> 297.3 at 4 blocks, 289.6 at 5, 275.9 at 8; smollm2
// q8_0 (its output head takes this kernel) 3,131 -> 3,121, within its noise.
template <class F>
struct Matvec1MinBlocks {
    static constexpr int value = MATVEC1_MIN_BLOCKS;
};
template <>
struct Matvec1MinBlocks<FmtQ4_K> {
    static constexpr int value = 4;
};
template <>
struct Matvec1MinBlocks<FmtQ6_K> {
    static constexpr int value = 4;
};
template <>
struct Matvec1MinBlocks<FmtQ8_0> {
    static constexpr int value = 4;
};
#define MATVEC1_QBOUNDS(FMT) __launch_bounds__(MATVEC_THREADS, Matvec1MinBlocks<FMT>::value)
#define QUARREL_QUANT_KERNELS(NAME, FMT)                                                                        \
    extern "C" __global__ void MATVEC1_QBOUNDS(FMT) matvec1_##NAME(Segs s, size_t rb, int rows, int K, const i8* aq, const float4* am, \
                                              int n, int acc) {                                               \
        prefetch_block_segs(s, rb, 2); grid_dep_sync_early();                                                        \
        matvec_q<FMT, 1>(s, rb, rows, K, aq, am, n, acc);                                                  \
    }                                                                                                          \
    extern "C" __global__ void matvec8_##NAME(Segs s, size_t rb, int rows, int K, const i8* aq, const float4* am, \
                                              int n, int acc) {                                               \
        prefetch_block_segs(s, rb, 1); grid_dep_sync();                                                        \
        matvec_q<FMT, 8>(s, rb, rows, K, aq, am, n, acc);                                                  \
    }                                                                                                          \
    extern "C" __global__ void MATVEC1_QBOUNDS(FMT) glu1_##NAME(const u8* g, const u8* u, size_t rb, int rows, int K, const i8* aq,    \
                                           const float4* am, float* h, int n, int act) {                         \
        prefetch_block_glu(g, u, rb, rows); grid_dep_sync_early();                                                   \
        glu_q<FMT, 1>(g, u, rb, rows, K, aq, am, h, n, act);                                                    \
    }                                                                                                          \
    extern "C" __global__ void glu8_##NAME(const u8* g, const u8* u, size_t rb, int rows, int K, const i8* aq,    \
                                           const float4* am, float* h, int n, int act) {                      \
        prefetch_block_glu(g, u, rb, rows); grid_dep_sync();                                                   \
        glu_q<FMT, 8>(g, u, rb, rows, K, aq, am, h, n, act);                              \
    }                                                                                                          \
    extern "C" __global__ void dequant_##NAME(const u8* w, size_t rb, int K, const int* ids, int n_rows,      \
                                              float scale, float* o32, u16* o16) {                            \
        grid_dep_sync();                                                                                       \
        dequant_rows<FMT>(w, rb, K, ids, n_rows, scale, o32, o16);                                             \
    }                                                                                                          \
    extern "C" __global__ void MATVEC1_QBOUNDS(FMT) matvec1r_##NAME(Segs s, size_t rb, int rows, int K, const i8* aq, const float4* am, \
                                               RopeArgs ra) {                                                 \
        prefetch_block_segs(s, rb, 2); const RopePrep rp = rope_prepare(s, rows, ra); grid_dep_sync_early();      \
        matvec_rope_pairs(s, rb, rows, ra, rp, [&](const u8* wa, const u8* wb, float* a, float* b) {           \
            dot2_q<FMT, 1>(wa, wb, K, aq, am, 1, a, b);                              \
        });                                                                                                    \
    }

// The plain single-token float product, stamped out under two register caps: KIND matvec1 (MATVEC1_BOUNDS) and
// matvec1w (MATVEC1_WIDE_BOUNDS, which the host launches for rows of at least MATVEC1_WIDE_MIN_K elements).
#define MATVEC1_FLOAT_KERNEL(KIND, BOUNDS, NAME, FMT)                                                           \
    extern "C" __global__ void BOUNDS KIND##_##NAME(Segs s, size_t rb, int rows, int K, const float* x, int n,  \
                                                    int acc) {                                                \
        prefetch_block_segs(s, rb, 2); grid_dep_sync_early();                                                  \
        matvec_f<FMT, 1>(s, rb, rows, K, x, n, acc);                                                           \
    }
#define QUARREL_FLOAT_KERNELS(NAME, FMT)                                                                        \
    MATVEC1_FLOAT_KERNEL(matvec1, MATVEC1_BOUNDS, NAME, FMT)                                                    \
    MATVEC1_FLOAT_KERNEL(matvec1w, MATVEC1_WIDE_BOUNDS, NAME, FMT)                                              \
    extern "C" __global__ void matvec8_##NAME(Segs s, size_t rb, int rows, int K, const float* x, int n,        \
                                              int acc) {                                                      \
        prefetch_block_segs(s, rb, 1); grid_dep_sync();                                                        \
        matvec_f<FMT, 8>(s, rb, rows, K, x, n, acc);                                                           \
    }                                                                                                          \
    extern "C" __global__ void MATVEC1_WIDE_BOUNDS glu1_##NAME(const u8* g, const u8* u, size_t rb, int rows, int K, const float* x,  \
                                           float* h, int n, int act) {                                                \
        prefetch_block_glu(g, u, rb, rows); grid_dep_sync();                                                   \
        glu_f<FMT, 1>(g, u, rb, rows, K, x, h, n, act);                                                            \
    }                                                                                                          \
    extern "C" __global__ void glu8_##NAME(const u8* g, const u8* u, size_t rb, int rows, int K, const float* x,  \
                                           float* h, int n, int act) {                                        \
        prefetch_block_glu(g, u, rb, rows); grid_dep_sync();                                                   \
        glu_f<FMT, 8>(g, u, rb, rows, K, x, h, n, act);                                      \
    }                                                                                                          \
    extern "C" __global__ void dequant_##NAME(const u8* w, size_t rb, int K, const int* ids, int n_rows,      \
                                              float scale, float* o32, u16* o16) {                            \
        grid_dep_sync();                                                                                       \
        dequant_rows_f<FMT>(w, rb, K, ids, n_rows, scale, o32, o16);                                           \
    }                                                                                                          \
    extern "C" __global__ void matvec1n_##NAME(Segs s, size_t rb, int rows, int K, const float* x,             \
                                               const float* nw, float eps, int acc) {                         \
        prefetch_block_segs(s, rb, 2); grid_dep_sync();                                                        \
        matvec_f<FMT, 1>(s, rb, rows, K, x, 1, acc, nw, eps);                                                  \
    }                                                                                                          \
    extern "C" __global__ void MATVEC1_WIDE_BOUNDS matvec1r_##NAME(Segs s, size_t rb, int rows, int K, const float* x,             \
                                               RopeArgs ra) {                                                 \
        prefetch_block_segs(s, rb, 2); const RopePrep rp = rope_prepare(s, rows, ra); grid_dep_sync();            \
        matvec_rope_pairs(s, rb, rows, ra, rp, [&](const u8* wa, const u8* wb, float* a, float* b) {           \
            dot2_f<FMT, 1>(wa, wb, K, x, 1, a, b);                                                             \
        });                                                                                                    \
    }                                                                                                          \
    extern "C" __global__ void matvec1nr_##NAME(Segs s, size_t rb, int rows, int K, const float* x,            \
                                                const float* nw, float eps, RopeArgs ra) {                    \
        __shared__ __align__(16) float ws[TAIL_MAX_D]; /* the norm weights, K at most NORM_IN_KERNEL_MAX */   \
        const RowPair<FMT> pw = rope_rows_load<FMT>(s, rb, rows, K, ra);                                       \
        prefetch_block_segs(s, rb, 2); const RopePrep rp = rope_prepare(s, rows, ra); block_copy(ws, nw, K);      \
        grid_dep_sync();                                                                                       \
        __syncthreads();                                                                                       \
        matvec_rope_pairs(s, rb, rows, ra, rp, [&](const u8* wa, const u8* wb, float* a, float* b) {           \
            dot2_fn_held<FMT>(pw, wa, wb, K, x, ws, eps, a, b);                                                \
        });                                                                                                    \
    }                                                                                                          \
    extern "C" __global__ void glu1n_##NAME(const u8* g, const u8* u, size_t rb, int rows, int K,              \
                                            const float* x, const float* nw, float eps, float* h, int act) {  \
        const RowPair<FMT> pw = glu_rows_load<FMT>(g, u, rb, rows, K);                                         \
        prefetch_block_glu(g, u, rb, rows); grid_dep_sync();                                                   \
        glu_fn_held<FMT>(pw, g, u, rb, rows, K, x, h, act, nw, eps);                                           \
    }

// matvec1nr copies its norm weights into shared memory before its wait, as the tail's FFN input does (its warps
// then read only x after the wait). H100 tg128, with tail_down_held: smollm2 q8_0 2,857 -> 2,911, qwen2.5-0.5b
// f16 1,436 -> 1,488, smollm2 f16 2,898 -> 2,889.
QUARREL_FLOAT_KERNELS(f32, FmtF32)
QUARREL_FLOAT_KERNELS(f16, FmtF16)
QUARREL_FLOAT_KERNELS(bf16, FmtBF16)
QUARREL_FLOAT_KERNELS(q8_0f, FmtQ8_0)
QUARREL_QUANT_KERNELS(q4_0, FmtQ4_0)
QUARREL_QUANT_KERNELS(q4_1, FmtQ4_1)
QUARREL_QUANT_KERNELS(q5_0, FmtQ5_0)
QUARREL_QUANT_KERNELS(q5_1, FmtQ5_1)
QUARREL_QUANT_KERNELS(q8_0, FmtQ8_0)
QUARREL_QUANT_KERNELS(q2_k, FmtQ2_K)
QUARREL_QUANT_KERNELS(q3_k, FmtQ3_K)
QUARREL_QUANT_KERNELS(q4_k, FmtQ4_K)
QUARREL_QUANT_KERNELS(q5_k, FmtQ5_K)
QUARREL_QUANT_KERNELS(q6_k, FmtQ6_K)
