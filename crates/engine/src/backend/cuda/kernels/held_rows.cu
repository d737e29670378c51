// Single-token float-view products whose rows are held in registers from before the dependency wait (the
// fused Q/K/V product, the FFN input and output of the fused layer tail: matvec_kernels.cu, layer_tail.cu), and
// the block copy of norm weights those kernels make before it. Built on matvec.cu's formats and dot products.

// A weight's K floats into the block's shared memory (before the wait: only the block reads it). K % 4 == 0.
__device__ __forceinline__ void block_copy(float* dst, const float* src, int K) {
    for (int i = 4 * threadIdx.x; i < K; i += 4 * blockDim.x) *(float4*)(dst + i) = *(const float4*)(src + i);
}

// A warp's two rows of a single-token float-view product held in registers: each lane's raw bytes of elements
// [8 lane + 256 j, + 8) of both rows, loaded before the kernel's dependency wait (the weights are read-only), so
// that after the wait the rows cost no load at all. Rows of at most RowPair::MAX_K elements; longer ones load as
// before (the `dot2_*_held` functions check). Measured on H100 (block trace, synth smollm2-135m f16): the Q/K/V
// and FFN-input warps spent 1.76 µs of their 2.0-2.3 µs after the wait in this loop, their rows prefetched into
// L1 (`prefetch_rows`) notwithstanding. The kernels still issue that prefetch: without it they were slower
// (smollm2 f16 2,904 -> 2,853 tok/s).
// `wa` is the first row held (null: none), which the consumers compare with the row they are given.
template <class F, int N = (sizeof(typename F::Raw) > 16 ? 2 : 4)>
struct RowPair {
    static constexpr int ITERS = N;
    static constexpr int MAX_K = 256 * ITERS;
    const u8* wa;
    typename F::Raw a[ITERS], b[ITERS];
};
template <class F, int N = RowPair<F>::ITERS>
__device__ __forceinline__ RowPair<F, N> row_pair_load(const u8* __restrict__ wa, const u8* __restrict__ wb, int K) {
    RowPair<F, N> p;
    int lane = threadIdx.x & 31;
    p.wa = wa && K <= RowPair<F, N>::MAX_K ? wa : nullptr;
    if (p.wa) {
#pragma unroll
        for (int j = 0; j < N; j++) {
            int i = 8 * lane + 256 * j;
            if (i < K) {
                p.a[j] = F::raw8(wa, i);
                p.b[j] = F::raw8(wb, i);
            }
        }
    }
    return p;
}

// dot2_fn over rows held by row_pair_load (same arithmetic, same order), or over wa and wb for longer rows.
template <class F>
__device__ __forceinline__ void dot2_fn_held(const RowPair<F>& p, const u8* __restrict__ wa,
                                             const u8* __restrict__ wb, int K, const float* __restrict__ x,
                                             const float* __restrict__ nw, float eps, float* acc_a, float* acc_b) {
    if (p.wa != wa) {
        dot2_fn<F>(wa, wb, K, x, nw, eps, acc_a, acc_b);
        return;
    }
    int lane = threadIdx.x & 31;
    float a = 0.f, b = 0.f, ss = 0.f;
#pragma unroll
    for (int j = 0; j < RowPair<F>::ITERS; j++) {
        int i = 8 * lane + 256 * j;
        if (i < K) {
            float fa[8], fb[8];
            F::decode8(p.a[j], fa);
            F::decode8(p.b[j], fb);
            norm_dot8(fa, fb, x + i, nw + i, a, b, ss);
        }
    }
    float scale = rsqrtf(warp_sum(ss) / K + eps);
    acc_a[0] = warp_sum(a) * scale;
    acc_b[0] = warp_sum(b) * scale;
}

// dot2_f for one token over rows held by row_pair_load (same arithmetic, same order), or over wa and wb when
// they are not the rows held.
template <class F, int N>
__device__ __forceinline__ void dot2_f_held(const RowPair<F, N>& p, const u8* __restrict__ wa,
                                            const u8* __restrict__ wb, int K, const float* __restrict__ x,
                                            float* acc_a, float* acc_b) {
    if (p.wa != wa) {
        dot2_f<F, 1>(wa, wb, K, x, 1, acc_a, acc_b);
        return;
    }
    int lane = threadIdx.x & 31;
    float a = 0.f, b = 0.f;
#pragma unroll
    for (int j = 0; j < N; j++) {
        int i = 8 * lane + 256 * j;
        if (i < K) {
            float fa[8], fb[8];
            F::decode8(p.a[j], fa);
            F::decode8(p.b[j], fb);
            const float4* xp = (const float4*)(x + i);
            float4 a0 = xp[0], a1 = xp[1];
            a += fa[0] * a0.x + fa[1] * a0.y + fa[2] * a0.z + fa[3] * a0.w + fa[4] * a1.x + fa[5] * a1.y +
                 fa[6] * a1.z + fa[7] * a1.w;
            b += fb[0] * a0.x + fb[1] * a0.y + fb[2] * a0.z + fb[3] * a0.w + fb[4] * a1.x + fb[5] * a1.y +
                 fb[6] * a1.z + fb[7] * a1.w;
        }
    }
    acc_a[0] = warp_sum(a);
    acc_b[0] = warp_sum(b);
}

// The first row pair of this warp in matvec_two_rows, held before the wait.
template <class F, int N>
__device__ __forceinline__ RowPair<F, N> two_rows_load(const Segs& s, size_t row_bytes, int total_rows, int K) {
    int r0 = 2 * (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32);
    int r1 = min(r0 + 1, total_rows - 1), row0 = r0, row1 = r1;
    int s0 = seg_of(s, row0), s1 = seg_of(s, row1);
    return row_pair_load<F, N>(r0 < total_rows ? (const u8*)s.w[s0] + row0 * row_bytes : nullptr,
                               (const u8*)s.w[s1] + row1 * row_bytes, K);
}

// The gated FFN input over rows held by row_pair_load (glu_f for one token with its norm inside).
template <class F>
__device__ __forceinline__ void glu_fn_held(const RowPair<F>& p, const u8* __restrict__ gate,
                                            const u8* __restrict__ up, size_t row_bytes, int rows, int K,
                                            const float* __restrict__ x, float* __restrict__ h, int act,
                                            const float* __restrict__ nw, float eps) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row < rows) {
        float g = 0.f, u = 0.f;
        dot2_fn_held<F>(p, gate + row * row_bytes, up + row * row_bytes, K, x, nw, eps, &g, &u);
        if ((threadIdx.x & 31) == 0) h[row] = glu_act(g, act) * u;
    }
}

// The rotation pair of this warp (matvec_rope_pairs'), held before the wait.
template <class F>
__device__ __forceinline__ RowPair<F> rope_rows_load(const Segs& s, size_t row_bytes, int total_rows, int K,
                                                     const RopeArgs& ra) {
    int seg = 0, head, ra_ = 0, rb_ = 0;
    bool ok = rope_pair_of(s, total_rows, ra, seg, head, ra_, rb_);
    const u8* w = (const u8*)s.w[seg];
    return row_pair_load<F>(ok ? w + ra_ * row_bytes : nullptr, w + rb_ * row_bytes, K);
}

// The gate and up rows of this warp (glu_f's row), held before the wait.
template <class F>
__device__ __forceinline__ RowPair<F> glu_rows_load(const u8* gate, const u8* up, size_t row_bytes, int rows,
                                                    int K) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    return row_pair_load<F>(row < rows ? gate + row * row_bytes : nullptr, up + row * row_bytes, K);
}
