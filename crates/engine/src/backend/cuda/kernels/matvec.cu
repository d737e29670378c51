// Matrix-vector products for decoding (1..8 tokens): a warp per weight row, each lane a 32-element chunk at a
// time, integer dot products (dp4a) against activations quantized to 8 bits per 32 elements.
//
// Activations, per token t: aq [n_tokens, K] int8 and am [n_tokens, K/32] float4 {d, d*sum(q[0..16]),
// d*sum(q[16..32]), 0}.

// One warp's 32 consecutive values v (one per lane) to 8 bits: aq[lane] and the chunk's {d, d*sum(q[0..16]),
// d*sum(q[16..32]), 0} in *am (written by lane 0). The one conversion every activation goes through.
// Rounded as the CPU (and llama.cpp on x86) rounds its Q8_0 activations: q = round_ties_even(v * (127 / amax)),
// d = amax / 127 kept as f16, both divisions IEEE-rounded whatever --use_fast_math says.
// The 8-bit value of this lane's v and the warp's scale d (every lane gets both).
__device__ __forceinline__ int q8_of(float v, float& d) {
    float amax = warp_max(fabsf(v));
    d = h2f(f2h(__fdiv_rn(amax, 127.f)));
    return amax == 0.f ? 0 : __float2int_rn(v * __fdiv_rn(127.f, amax));
}
__device__ __forceinline__ void quant_chunk(float v, i8* aq, float4* am) {
    int lane = threadIdx.x & 31;
    float d;
    int q = q8_of(v, d);
    aq[lane] = (i8)q;
    float lo = warp_sum(lane < 16 ? (float)q : 0.f);
    float hi = warp_sum(lane >= 16 ? (float)q : 0.f);
    if (lane == 0) *am = make_float4(d, d * lo, d * hi, 0.f);
}

// x: [n_tokens, K] f32 -> aq, am. One warp per 32-element chunk.
extern "C" __global__ void quantize_q8(const float* __restrict__ x, i8* __restrict__ aq, float4* __restrict__ am,
                                       int K, int n_chunks_total) {
    grid_dep_sync();
    int chunk = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (chunk >= n_chunks_total) return;
    quant_chunk(x[(size_t)chunk * 32 + (threadIdx.x & 31)], aq + (size_t)chunk * 32, am + chunk);
}

// x: [n, K] f32 -> f16 values d * q of its 8-bit form (quant_chunk's rounding): a prefill GEMM against a quantized
// weight then multiplies the activations the single-token products (and the CPU) use, not finer ones. One warp per
// 32-element chunk.
extern "C" __global__ void to_f16_q8(const float* __restrict__ x, u16* __restrict__ out, size_t n_chunks_total) {
    grid_dep_sync();
    size_t chunk = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (chunk >= n_chunks_total) return;
    size_t i = chunk * 32 + (threadIdx.x & 31);
    float d;
    int q = q8_of(x[i], d);
    out[i] = f2h(d * (float)q);
}

// rsqrt(mean(x^2) + eps) of one row, computed by the whole block (every thread gets it). K % 4 == 0 and x 16-byte
// aligned. Every block that calls it on the same row gets the same value (same order of summation).
__device__ __forceinline__ float block_rms_scale(const float* __restrict__ x, int K, float eps) {
    __shared__ float partial[32];
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nw = blockDim.x / 32;
    float s = 0.f;
    for (int i = 4 * threadIdx.x; i < K; i += 4 * blockDim.x) {
        float4 v = *(const float4*)(x + i);
        s += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    s = warp_sum(s);
    if (lane == 0) partial[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < nw ? partial[lane] : 0.f;
        s = warp_sum(s);
        if (lane == 0) partial[0] = s;
    }
    __syncthreads();
    float scale = rsqrtf(partial[0] / K + eps);
    __syncthreads();  // partial is reused by the next call
    return scale;
}

// RMSNorm of each token row into xn, and into the 8-bit activations when aq is not null: the norm and the
// activation conversion of a matmul's input in one launch. Grid (rows, K / (32 * warps)): every block of a row
// redoes the row's sum of squares (K floats from L2) and converts a warp's chunk, so a long row is spread over
// many SMs instead of one block walking it.
extern "C" __global__ void norm_quant(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ xn,
                                      i8* __restrict__ aq, float4* __restrict__ am, int K, float eps) {
    grid_dep_sync();
    size_t r = blockIdx.x;
    const float* xr = x + r * K;
    float scale = block_rms_scale(xr, K, eps);
    int c = blockIdx.y * (blockDim.x / 32) + threadIdx.x / 32;
    if (c >= K / 32) return;
    int i = 32 * c + (threadIdx.x & 31);
    float v = xr[i] * scale * w[i];
    xn[r * K + i] = v;
    if (aq) quant_chunk(v, aq + r * K + 32 * c, am + r * (K / 32) + c);
}

// acc[t] += row · activations of token t, summed over the warp's lanes (every lane ends with the total).
template <class F, int NT>
__device__ __forceinline__ void dot_q(const u8* __restrict__ wr, int K, const i8* __restrict__ aq,
                                      const float4* __restrict__ am, int n_tokens, float acc[NT]) {
    int lane = threadIdx.x & 31;
    int n_chunks = K / 32;
    // Several chunks in flight per lane: the loads of the next ones overlap the dot products of this one. (Single
    // tokens take two rows a warp through dot2_q instead.)
#pragma unroll 4
    for (int c = lane; c < n_chunks; c += 32) {
        Chunk k;
        F::load32(wr, c, k);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t < n_tokens) {
                const int4* a = (const int4*)(aq + (size_t)t * K + 32 * c);
                int4 a0 = a[0], a1 = a[1];
                int s0 = dp4a(k.v[0], a0.x, 0);
                s0 = dp4a(k.v[1], a0.y, s0);
                s0 = dp4a(k.v[2], a0.z, s0);
                s0 = dp4a(k.v[3], a0.w, s0);
                int s1 = dp4a(k.v[4], a1.x, 0);
                s1 = dp4a(k.v[5], a1.y, s1);
                s1 = dp4a(k.v[6], a1.z, s1);
                s1 = dp4a(k.v[7], a1.w, s1);
                float4 m = am[(size_t)t * n_chunks + c];
                acc[t] += m.x * (k.d.x * (float)s0 + k.d.y * (float)s1) + k.m.x * m.y + k.m.y * m.z;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = warp_sum(acc[t]);
}

// Up to three weights of one format and row length in one launch (Q, K and V; or one weight): the rows of the
// launch run through segment 0, then 1, then 2. out_s[t, r] = (acc ? out_s[t, r] : 0) + row_r · x_t + bias_s[r].
struct Segs {
    u64 w[3];
    u64 out[3];
    u64 bias[3];
    int rows[3];
};

__device__ __forceinline__ int seg_of(const Segs& s, int& row) {
    if (row < s.rows[0]) return 0;
    row -= s.rows[0];
    if (row < s.rows[1]) return 1;
    row -= s.rows[1];
    return 2;
}

__device__ __forceinline__ void seg_store(const Segs& s, int seg, int row, int t, float v, int accumulate) {
    float* o = (float*)s.out[seg] + (size_t)t * s.rows[seg] + row;
    const float* b = (const float*)s.bias[seg];
    if (b) v += b[row];
    *o = accumulate ? *o + v : v;
}

template <class F, int NT>
__device__ __forceinline__ void dot2_q(const u8* __restrict__ wa, const u8* __restrict__ wb, int K,
                                       const i8* __restrict__ aq, const float4* __restrict__ am, int n_tokens,
                                       float acc_a[NT], float acc_b[NT]);

// Before grid_dep_sync, a block pulls the start of its weight rows into L2 (128-byte lines spread over its
// threads), so its warps' first loads hit L2 while the previous kernel was still finishing. Only the first
// PREFETCH_ROW_BYTES of each row: a whole wave of blocks prefetching 8 KB rows would overflow the L2.
// Only blocks of the first wave (a couple per SM) prefetch: later ones start after the predecessor has ended.
// Rows of at most PREFETCH_L1_ROW_BYTES (small models) come whole into L1 instead: the block's warps then start
// from L1 (weights are read-only, so no line can go stale).
#define PREFETCH_ROW_BYTES 1024
#define PREFETCH_L1_ROW_BYTES 2048
#define PREFETCH_BLOCKS_PER_SM 2
__device__ __forceinline__ void prefetch_rows(const u8* w, size_t row_bytes, int first, int n) {
    u32 n_sms;
    asm("mov.u32 %0, %%nsmid;" : "=r"(n_sms));
    if (blockIdx.x >= PREFETCH_BLOCKS_PER_SM * n_sms) return;
    if (row_bytes <= PREFETCH_L1_ROW_BYTES) {
        int lines = (int)((row_bytes + 127) / 128);
        for (int i = threadIdx.x; i < n * lines; i += blockDim.x)
            asm volatile("prefetch.global.L1 [%0];" ::"l"(w + (size_t)(first + i / lines) * row_bytes + 128 * (i % lines)));
        return;
    }
    int lines = (int)((min(row_bytes, (size_t)PREFETCH_ROW_BYTES) + 127) / 128);
    for (int i = threadIdx.x; i < n * lines; i += blockDim.x)
        prefetch_l2(w + (size_t)(first + i / lines) * row_bytes + 128 * (i % lines));
}

// The block's rows of a segmented launch, `rows_per_warp` rows a warp.
__device__ __forceinline__ void prefetch_block_segs(const Segs& s, size_t row_bytes, int rows_per_warp) {
    int n = rows_per_warp * (blockDim.x / 32), first = blockIdx.x * n, start = 0;
#pragma unroll
    for (int k = 0; k < 3; k++) {
        int lo = max(first, start), hi = min(first + n, start + s.rows[k]);
        if (lo < hi) prefetch_rows((const u8*)s.w[k], row_bytes, lo - start, hi - lo);
        start += s.rows[k];
    }
}

// The block's gate and up rows (a row each a warp).
__device__ __forceinline__ void prefetch_block_glu(const u8* g, const u8* u, size_t row_bytes, int rows) {
    int nw = blockDim.x / 32, first = blockIdx.x * nw, n = min(nw, rows - first);
    if (n <= 0) return;
    prefetch_rows(g, row_bytes, first, n);
    prefetch_rows(u, row_bytes, first, n);
}

// Single-token products give each warp two rows (rows 2w and 2w + 1 of the launch, through any segments), both
// rows' loads in flight together; a launch with fewer warps than row pairs walks them grid-stride. `store(seg,
// row, v)` takes each result (lane 0).
template <class Dot2, class Store>
__device__ __forceinline__ void matvec_two_rows(const Segs& s, size_t row_bytes, int total_rows, Dot2 dot2,
                                                Store store) {
    int n_warps = gridDim.x * (blockDim.x / 32);
    // Grid-stride over the row pairs: the host may launch fewer warps than pairs.
    for (int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; 2 * w < total_rows; w += n_warps) {
        int r0 = 2 * w;
        int r1 = min(r0 + 1, total_rows - 1);  // a lone last row is computed twice and stored once
        int row0 = r0, row1 = r1;
        int s0 = seg_of(s, row0), s1 = seg_of(s, row1);
        float a[1] = {0.f}, b[1] = {0.f};
        dot2((const u8*)s.w[s0] + row0 * row_bytes, (const u8*)s.w[s1] + row1 * row_bytes, a, b);
        if ((threadIdx.x & 31) == 0) {
            store(s0, row0, a[0]);
            if (r1 != r0) store(s1, row1, b[0]);
        }
    }
}

// RoPE of one pair of a head's elements (x0, x1) = (x[a], x[b]) at position pos; `pair` is the pair's index in
// the head (a = 2 pair, b = a + 1 for style 0; a = pair, b = pair + head_dim / 2 for NeoX).
__device__ __forceinline__ void rope_sincos(int pos, int pair, int head_dim, float theta, float pos_scale,
                                            const float* __restrict__ ff, float& s, float& c) {
    float angle = (float)pos * pos_scale * powf(theta, -2.f * pair / head_dim);
    if (ff) angle /= ff[pair];
    sincosf(angle, &s, &c);
}
__device__ __forceinline__ void rope_apply(float& x0, float& x1, float s, float c) {
    float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
    x0 = y0;
    x1 = y1;
}
__device__ __forceinline__ void rope_rotate(float& x0, float& x1, int pos, int pair, int head_dim, float theta,
                                            float pos_scale, const float* __restrict__ ff) {
    float s, c;
    rope_sincos(pos, pair, head_dim, theta, pos_scale, ff, s, c);
    rope_apply(x0, x1, s, c);
}

// The cache side of a fused Q/K/V product (single token): where keys and values go and how they turn. Mirrors
// `RopeArgs` in decode.rs.
struct RopeArgs {
    u64 kc, vc;   // caches [n_layers, n_seqs, n_kv_heads, n_ctx, head_dim], f16 (kv_f16) or f32
    u64 pos, seq; // the token's position and sequence (int, on the device)
    u64 ff;       // rope frequency factors [head_dim / 2] or 0
    float theta, pos_scale;
    int head_dim, n_kv_heads, style, n_ctx, n_seqs, layer, kv_f16, pad;
};

// A warp's token and rotation in a fused Q/K/V product, taken before the wait (grid_dep_sync): the position and
// sequence are uploaded before the step's first kernel and the frequency factors are weights, so none of it waits
// for the predecessor, and the rotation's powf and sincosf leave the path from the wait to the cache store.
// Measured on H100 (tg128, 2026-11-26): smollm2-135m f16 2,331 -> 2,362 tok/s, 8B q4_k 404.5 -> 409.1 (with the
// attention kernel's AttnToken).
struct RopePrep {
    int pos, sq;
    float s, c;
};
__device__ __forceinline__ RopePrep rope_prepare(const Segs& s, int total_rows, const RopeArgs& ra) {
    RopePrep p = {0, 0, 0.f, 1.f};
    int r = 2 * (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32);
    if (r >= total_rows) return p;
    int seg = seg_of(s, r);
    p.pos = *(const int*)ra.pos;
    p.sq = *(const int*)ra.seq;
    if (seg < 2)
        rope_sincos(p.pos, (r % ra.head_dim) / 2, ra.head_dim, ra.theta, ra.pos_scale, (const float*)ra.ff, p.s,
                    p.c);
    return p;
}

// This warp's rotation pair: its segment, its rows ra_ and rb_ within the segment, and the segment's head (false
// for a warp past the last pair).
__device__ __forceinline__ bool rope_pair_of(const Segs& s, int total_rows, const RopeArgs& ra, int& seg, int& head,
                                             int& ra_, int& rb_) {
    int r = 2 * (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32);
    if (r >= total_rows) return false;
    seg = seg_of(s, r);
    int hd = ra.head_dim, j = (r % hd) / 2;
    head = r / hd;
    ra_ = head * hd + (seg < 2 && ra.style == 1 ? j : 2 * j);
    rb_ = ra_ + (seg < 2 && ra.style == 1 ? hd / 2 : 1);
    return true;
}

// Q/K/V rows in rotation pairs: warp w takes the w-th pair of the launch (Q's heads, then K's, then V's); with
// RoPE style 0 the pair is rows (2j, 2j + 1) of a head, with NeoX (j, j + head_dim / 2). Q's pair is rotated into
// its output; K's is rotated and V's copied into the caches. Each segment's rows are whole heads. `rp`: the warp's
// rope_prepare.
template <class Dot2>
__device__ __forceinline__ void matvec_rope_pairs(const Segs& s, size_t row_bytes, int total_rows,
                                                  const RopeArgs& ra, const RopePrep& rp, Dot2 dot2) {
    int seg, head, ra_, rb_;
    if (!rope_pair_of(s, total_rows, ra, seg, head, ra_, rb_)) return;
    int hd = ra.head_dim;
    const u8* wseg = (const u8*)s.w[seg];
    float a[1] = {0.f}, b[1] = {0.f};
    dot2(wseg + ra_ * row_bytes, wseg + rb_ * row_bytes, a, b);
    if ((threadIdx.x & 31) != 0) return;
    const float* bias = (const float*)s.bias[seg];
    float x0 = a[0] + (bias ? bias[ra_] : 0.f), x1 = b[0] + (bias ? bias[rb_] : 0.f);
    int pos = rp.pos, sq = rp.sq;
    if (seg < 2) rope_apply(x0, x1, rp.s, rp.c);
    if (seg == 0) {
        float* q = (float*)s.out[0];
        q[ra_] = x0;
        q[rb_] = x1;
        return;
    }
    size_t at = ((((size_t)ra.layer * ra.n_seqs + sq) * ra.n_kv_heads + head) * ra.n_ctx + pos) * hd - head * hd;
    u64 cache = seg == 1 ? ra.kc : ra.vc;
    if (ra.kv_f16) {
        ((u16*)cache)[at + ra_] = f2h(x0);
        ((u16*)cache)[at + rb_] = f2h(x1);
    } else {
        ((float*)cache)[at + ra_] = x0;
        ((float*)cache)[at + rb_] = x1;
    }
}

template <class F, int NT>
__device__ __forceinline__ void matvec_q(Segs s, size_t row_bytes, int total_rows, int K, const i8* __restrict__ aq,
                                         const float4* __restrict__ am, int n_tokens, int accumulate) {
    if (NT == 1) {
        matvec_two_rows(
            s, row_bytes, total_rows,
            [&](const u8* wa, const u8* wb, float* a, float* b) { dot2_q<F, 1>(wa, wb, K, aq, am, 1, a, b); },
            [&](int seg, int row, float v) { seg_store(s, seg, row, 0, v, accumulate); });
        return;
    }
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= total_rows) return;
    int seg = seg_of(s, row);
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.f;
    dot_q<F, NT>((const u8*)s.w[seg] + row * row_bytes, K, aq, am, n_tokens, acc);
    if ((threadIdx.x & 31) == 0)
#pragma unroll
        for (int t = 0; t < NT; t++)
            if (t < n_tokens) seg_store(s, seg, row, t, acc[t], accumulate);
}

__device__ __forceinline__ float glu_act(float g, int act) {
    if (act == 0) return g / (1.f + __expf(-g));
    const float c = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * g * (1.f + tanhf(c * (g + 0.044715f * g * g * g)));
}

// Formats whose chunks come in pairs sharing their bytes (F::load_pair fills chunks F::pair_first(u) and
// F::pair_first(u) + F::PAIR_STRIDE from one read of those bytes): single-token products walk units of two chunks.
template <class F>
struct PairLoads {
    static constexpr bool value = false;
};
template <>
struct PairLoads<FmtQ4_K> {
    static constexpr bool value = true;
};
template <>
struct PairLoads<FmtQ6_K> {
    static constexpr bool value = true;
};

// Rolling L2 prefetch for single-token float products: while a warp works on iteration `it` of two rows (each
// iteration spanning `span` bytes of a row), lane l pulls line l of iteration it + PREFETCH_AHEAD into L2, so the
// loads find it there. (Measured on H100: smollm2 f16 1,560 -> 1,675, 8B f16 156.5 -> 157.4 at 2 iterations
// ahead, slower at 4 and 8; the quantized products lost with it: 8B q8_0 255.9 -> 245.3.)
#define PREFETCH_AHEAD 2
__device__ __forceinline__ void prefetch_ahead(const u8* wa, const u8* wb, int span, int it, int row_span) {
    int lane = threadIdx.x & 31, at = (it + PREFETCH_AHEAD) * span + 128 * lane;
    if (128 * lane < span && at < row_span) {
        prefetch_l2(wa + at);
        prefetch_l2(wb + at);
    }
}

// Chunk c of two rows (ka, kb) against one token's activations, read once for both.
__device__ __forceinline__ void chunk_dot2(const Chunk& ka, const Chunk& kb, const i8* __restrict__ aq,
                                           const float4* __restrict__ am, int c, float& acc_a, float& acc_b) {
    const int4* a = (const int4*)(aq + 32 * c);
    int4 a0 = a[0], a1 = a[1];
    float4 m = am[c];
    int x0 = dp4a(ka.v[0], a0.x, dp4a(ka.v[1], a0.y, dp4a(ka.v[2], a0.z, dp4a(ka.v[3], a0.w, 0))));
    int x1 = dp4a(ka.v[4], a1.x, dp4a(ka.v[5], a1.y, dp4a(ka.v[6], a1.z, dp4a(ka.v[7], a1.w, 0))));
    int y0 = dp4a(kb.v[0], a0.x, dp4a(kb.v[1], a0.y, dp4a(kb.v[2], a0.z, dp4a(kb.v[3], a0.w, 0))));
    int y1 = dp4a(kb.v[4], a1.x, dp4a(kb.v[5], a1.y, dp4a(kb.v[6], a1.z, dp4a(kb.v[7], a1.w, 0))));
    acc_a += m.x * (ka.d.x * (float)x0 + ka.d.y * (float)x1) + ka.m.x * m.y + ka.m.y * m.z;
    acc_b += m.x * (kb.d.x * (float)y0 + kb.d.y * (float)y1) + kb.m.x * m.y + kb.m.y * m.z;
}

#define PAIR_UNROLL 2
// dot2_q for one token over units of two chunks (PairLoads formats).
template <class F>
__device__ __forceinline__ void dot2_q_pairs(const u8* __restrict__ wa, const u8* __restrict__ wb, int K,
                                             const i8* __restrict__ aq, const float4* __restrict__ am, float& acc_a,
                                             float& acc_b) {
    int lane = threadIdx.x & 31, n_units = K / 64;
#pragma unroll PAIR_UNROLL
    for (int u = lane; u < n_units; u += 32) {
        Chunk a0, a1, b0, b1;
        F::load_pair(wa, u, a0, a1);
        F::load_pair(wb, u, b0, b1);
        int c = F::pair_first(u);
        chunk_dot2(a0, b0, aq, am, c, acc_a, acc_b);
        chunk_dot2(a1, b1, aq, am, c + F::PAIR_STRIDE, acc_a, acc_b);
    }
    acc_a = warp_sum(acc_a);
    acc_b = warp_sum(acc_b);
}

// Two rows against the same activations in one pass: both rows' loads are in flight together and each activation
// chunk is read once for both (the gate and up rows of the gated FFN).
template <class F, int NT>
__device__ __forceinline__ void dot2_q(const u8* __restrict__ wa, const u8* __restrict__ wb, int K,
                                       const i8* __restrict__ aq, const float4* __restrict__ am, int n_tokens,
                                       float acc_a[NT], float acc_b[NT]) {
    if constexpr (NT == 1 && PairLoads<F>::value) {
        dot2_q_pairs<F>(wa, wb, K, aq, am, acc_a[0], acc_b[0]);
        return;
    }
    int lane = threadIdx.x & 31;
    int n_chunks = K / 32;
#pragma unroll(NT == 1 ? 4 : 2)
    for (int c = lane; c < n_chunks; c += 32) {
        Chunk ka, kb;
        F::load32(wa, c, ka);
        F::load32(wb, c, kb);
        // (The same arithmetic as chunk_dot2, written out: calling it measured slower, smollm2 q8_0 1,497 ->
        // 1,471 on H100.)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t < n_tokens) {
                const int4* a = (const int4*)(aq + (size_t)t * K + 32 * c);
                int4 a0 = a[0], a1 = a[1];
                float4 m = am[(size_t)t * n_chunks + c];
                int x0 = dp4a(ka.v[0], a0.x, dp4a(ka.v[1], a0.y, dp4a(ka.v[2], a0.z, dp4a(ka.v[3], a0.w, 0))));
                int x1 = dp4a(ka.v[4], a1.x, dp4a(ka.v[5], a1.y, dp4a(ka.v[6], a1.z, dp4a(ka.v[7], a1.w, 0))));
                int y0 = dp4a(kb.v[0], a0.x, dp4a(kb.v[1], a0.y, dp4a(kb.v[2], a0.z, dp4a(kb.v[3], a0.w, 0))));
                int y1 = dp4a(kb.v[4], a1.x, dp4a(kb.v[5], a1.y, dp4a(kb.v[6], a1.z, dp4a(kb.v[7], a1.w, 0))));
                acc_a[t] += m.x * (ka.d.x * (float)x0 + ka.d.y * (float)x1) + ka.m.x * m.y + ka.m.y * m.z;
                acc_b[t] += m.x * (kb.d.x * (float)y0 + kb.d.y * (float)y1) + kb.m.x * m.y + kb.m.y * m.z;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        acc_a[t] = warp_sum(acc_a[t]);
        acc_b[t] = warp_sum(acc_b[t]);
    }
}

// Gated FFN input: a warp takes row r of gate and of up, h[t, r] = act(gate_r · x_t) * (up_r · x_t).
template <class F, int NT>
__device__ __forceinline__ void glu_q(const u8* __restrict__ gate, const u8* __restrict__ up, size_t row_bytes,
                                      int rows, int K, const i8* __restrict__ aq, const float4* __restrict__ am,
                                      float* __restrict__ h, int n_tokens, int act) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row < rows) {
        float g[NT], u[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) g[t] = u[t] = 0.f;
        dot2_q<F, NT>(gate + row * row_bytes, up + row * row_bytes, K, aq, am, n_tokens, g, u);
        if ((threadIdx.x & 31) == 0)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (t < n_tokens) h[(size_t)t * rows + row] = glu_act(g[t], act) * u[t];
    }
}

// Float weights (F32, F16, BF16) against f32 activations, 8 elements a lane at a time; K % 8 == 0. The same
// kernels take Q8_0 rows through its float view (FmtQ8_0::load8; the `q8_0f` instances): span_bytes and
// row_span_bytes give the bytes of 256 elements and of a row.
template <int ELEM_BYTES>
struct FloatRows {
    __device__ static constexpr int span_bytes() { return 256 * ELEM_BYTES; }
    __device__ static int row_span_bytes(int K) { return K * ELEM_BYTES; }
};
// Each format reads elements [i, i + 8) of a row as raw bytes (`raw8`, the loads) and turns them into floats
// (`decode8`), so that a kernel may load its rows before its dependency wait and decode them after it
// (`RowPair`); load8 is the two together.
struct FmtF32 : FloatRows<4> {
    struct Raw {
        uint4 a, b;
    };
    __device__ static Raw raw8(const u8* row, int i) {
        return {ldw4_stream(row + 4 * (size_t)i), ldw4_stream(row + 4 * (size_t)i + 16)};
    }
    __device__ static void decode8(const Raw& r, float f[8]) {
        u32 w[8] = {r.a.x, r.a.y, r.a.z, r.a.w, r.b.x, r.b.y, r.b.z, r.b.w};
#pragma unroll
        for (int j = 0; j < 8; j++) f[j] = __uint_as_float(w[j]);
    }
    __device__ static void load8(const u8* row, int i, float f[8]) { decode8(raw8(row, i), f); }
};
struct FmtF16 : FloatRows<2> {
    typedef uint4 Raw;
    __device__ static Raw raw8(const u8* row, int i) { return ldw4_stream(row + 2 * (size_t)i); }
    __device__ static void decode8(const Raw& a, float f[8]) {
        u32 w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            f[2 * j] = h2f((u16)(w[j] & 0xFFFF));
            f[2 * j + 1] = h2f((u16)(w[j] >> 16));
        }
    }
    __device__ static void load8(const u8* row, int i, float f[8]) { decode8(raw8(row, i), f); }
};
struct FmtBF16 : FloatRows<2> {
    typedef uint4 Raw;
    __device__ static Raw raw8(const u8* row, int i) { return ldw4_stream(row + 2 * (size_t)i); }
    __device__ static void decode8(const Raw& a, float f[8]) {
        u32 w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            f[2 * j] = bf2f((u16)(w[j] & 0xFFFF));
            f[2 * j + 1] = bf2f((u16)(w[j] >> 16));
        }
    }
    __device__ static void load8(const u8* row, int i, float f[8]) { decode8(raw8(row, i), f); }
};

template <class F, int NT>
__device__ __forceinline__ void dot_f(const u8* __restrict__ wr, int K, const float* __restrict__ x, int n_tokens,
                                      float acc[NT]) {
    int lane = threadIdx.x & 31;
#pragma unroll 4
    for (int i = 8 * lane; i < K; i += 256) {
        float f[8];
        F::load8(wr, i, f);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t < n_tokens) {
                const float4* a = (const float4*)(x + (size_t)t * K + i);
                float4 a0 = a[0], a1 = a[1];
                acc[t] += f[0] * a0.x + f[1] * a0.y + f[2] * a0.z + f[3] * a0.w + f[4] * a1.x + f[5] * a1.y +
                          f[6] * a1.z + f[7] * a1.w;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = warp_sum(acc[t]);
}

// Two float rows against the same activations in one pass (gate and up): both rows' loads in flight together.
template <class F, int NT>
__device__ __forceinline__ void dot2_f(const u8* __restrict__ wa, const u8* __restrict__ wb, int K,
                                       const float* __restrict__ x, int n_tokens, float acc_a[NT], float acc_b[NT]) {
    int lane = threadIdx.x & 31;
    const int span = F::span_bytes(), row_span = F::row_span_bytes(K);
#pragma unroll(NT == 1 ? 4 : 2)
    for (int i = 8 * lane; i < K; i += 256) {
        if (NT == 1) prefetch_ahead(wa, wb, span, i >> 8, row_span);
        float fa[8], fb[8];
        F::load8(wa, i, fa);
        F::load8(wb, i, fb);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t < n_tokens) {
                const float4* a = (const float4*)(x + (size_t)t * K + i);
                float4 a0 = a[0], a1 = a[1];
                acc_a[t] += fa[0] * a0.x + fa[1] * a0.y + fa[2] * a0.z + fa[3] * a0.w + fa[4] * a1.x +
                            fa[5] * a1.y + fa[6] * a1.z + fa[7] * a1.w;
                acc_b[t] += fb[0] * a0.x + fb[1] * a0.y + fb[2] * a0.z + fb[3] * a0.w + fb[4] * a1.x +
                            fb[5] * a1.y + fb[6] * a1.z + fb[7] * a1.w;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        acc_a[t] = warp_sum(acc_a[t]);
        acc_b[t] = warp_sum(acc_b[t]);
    }
}

// One step of dot2_fn: 8 elements of two rows (fa, fb) against x * nw, and x's squares into ss.
__device__ __forceinline__ void norm_dot8(const float fa[8], const float fb[8], const float* __restrict__ x,
                                          const float* __restrict__ nw, float& a, float& b, float& ss) {
    const float4* xp = (const float4*)x;
    const float4* wp = (const float4*)nw;
    float4 x0 = xp[0], x1 = xp[1], w0 = wp[0], w1 = wp[1];
    float v[8] = {x0.x * w0.x, x0.y * w0.y, x0.z * w0.z, x0.w * w0.w, x1.x * w1.x, x1.y * w1.y, x1.z * w1.z, x1.w * w1.w};
    ss += x0.x * x0.x + x0.y * x0.y + x0.z * x0.z + x0.w * x0.w + x1.x * x1.x + x1.y * x1.y + x1.z * x1.z +
          x1.w * x1.w;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        a += fa[j] * v[j];
        b += fb[j] * v[j];
    }
}

// dot2_f for one token whose activations are RMSNorm(x) * nw, normalized on the fly: the rows are dotted with
// x * nw while the lanes also sum x^2 over the row they walk anyway, and the sums are scaled by rsqrt(mean + eps)
// at the end. No norm launch, no pass over x before the weights stream, no shared memory.
template <class F>
__device__ __forceinline__ void dot2_fn(const u8* __restrict__ wa, const u8* __restrict__ wb, int K,
                                        const float* __restrict__ x, const float* __restrict__ nw, float eps,
                                        float* acc_a, float* acc_b) {
    int lane = threadIdx.x & 31;
    float a = 0.f, b = 0.f, ss = 0.f;
    const int span = F::span_bytes(), row_span = F::row_span_bytes(K);
#pragma unroll 4
    for (int i = 8 * lane; i < K; i += 256) {
        prefetch_ahead(wa, wb, span, i >> 8, row_span);
        float fa[8], fb[8];
        F::load8(wa, i, fa);
        F::load8(wb, i, fb);
        norm_dot8(fa, fb, x + i, nw + i, a, b, ss);
    }
    float scale = rsqrtf(warp_sum(ss) / K + eps);
    acc_a[0] = warp_sum(a) * scale;
    acc_b[0] = warp_sum(b) * scale;
}

// nw not null (one token): the activations are RMSNorm(x) * nw, normalized on the fly (dot2_fn).
template <class F, int NT>
__device__ __forceinline__ void matvec_f(Segs s, size_t row_bytes, int total_rows, int K, const float* __restrict__ x,
                                         int n_tokens, int accumulate, const float* nw = nullptr, float eps = 0.f) {
    if (NT == 1) {
        matvec_two_rows(
            s, row_bytes, total_rows,
            [&](const u8* wa, const u8* wb, float* a, float* b) {
                if (nw) dot2_fn<F>(wa, wb, K, x, nw, eps, a, b);
                else dot2_f<F, 1>(wa, wb, K, x, 1, a, b);
            },
            [&](int seg, int row, float v) { seg_store(s, seg, row, 0, v, accumulate); });
        return;
    }
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= total_rows) return;
    int seg = seg_of(s, row);
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t] = 0.f;
    dot_f<F, NT>((const u8*)s.w[seg] + row * row_bytes, K, x, n_tokens, acc);
    if ((threadIdx.x & 31) == 0)
#pragma unroll
        for (int t = 0; t < NT; t++)
            if (t < n_tokens) seg_store(s, seg, row, t, acc[t], accumulate);
}

template <class F, int NT>
__device__ __forceinline__ void glu_f(const u8* __restrict__ gate, const u8* __restrict__ up, size_t row_bytes,
                                      int rows, int K, const float* __restrict__ x, float* __restrict__ h,
                                      int n_tokens, int act, const float* nw = nullptr, float eps = 0.f) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row < rows) {
        float g[NT], u[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) g[t] = u[t] = 0.f;
        if (NT == 1 && nw) dot2_fn<F>(gate + row * row_bytes, up + row * row_bytes, K, x, nw, eps, g, u);
        else dot2_f<F, NT>(gate + row * row_bytes, up + row * row_bytes, K, x, n_tokens, g, u);
        if ((threadIdx.x & 31) == 0)
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (t < n_tokens) h[(size_t)t * rows + row] = glu_act(g[t], act) * u[t];
    }
}

// Dequantizes rows of a quantized weight to f16 (prefill through cuBLAS) or f32 (embedding lookups): one
// thread per 32-element chunk. `ids` picks the rows (nullptr: rows 0..n_rows).
template <class F>
__device__ __forceinline__ void dequant_rows(const u8* __restrict__ w, size_t row_bytes, int K,
                                             const int* __restrict__ ids, int n_rows, float scale,
                                             float* __restrict__ out_f32, u16* __restrict__ out_f16) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    int n_chunks = K / 32;
    if (i >= (size_t)n_rows * n_chunks) return;
    int r = (int)(i / n_chunks), c = (int)(i % n_chunks);
    int src = ids ? ids[r] : r;
    Chunk k;
    F::load32(w + (size_t)src * row_bytes, c, k);
    size_t o = (size_t)r * K + 32 * c;
    // Each thread writes its 32 values with 16-byte stores (2-byte stores strided 64 bytes apart across a warp
    // would touch a sector per element).
    u32 h2[16];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        float d = j < 4 ? k.d.x : k.d.y, m = j < 4 ? k.m.x : k.m.y;
        float v[4];
#pragma unroll
        for (int b = 0; b < 4; b++) v[b] = (d * (float)(int)(i8)((k.v[j] >> (8 * b)) & 0xFF) + m) * scale;
        if (out_f32) {
            ((float4*)(out_f32 + o))[j] = make_float4(v[0], v[1], v[2], v[3]);
        } else {
            h2[2 * j] = (u32)f2h(v[0]) | ((u32)f2h(v[1]) << 16);
            h2[2 * j + 1] = (u32)f2h(v[2]) | ((u32)f2h(v[3]) << 16);
        }
    }
    if (!out_f32) {
        uint4* dst = (uint4*)(out_f16 + o);
#pragma unroll
        for (int j = 0; j < 4; j++) dst[j] = make_uint4(h2[4 * j], h2[4 * j + 1], h2[4 * j + 2], h2[4 * j + 3]);
    }
}

template <class F>
__device__ __forceinline__ void dequant_rows_f(const u8* __restrict__ w, size_t row_bytes, int K,
                                               const int* __restrict__ ids, int n_rows, float scale,
                                               float* __restrict__ out_f32, u16* __restrict__ out_f16) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    int n8 = K / 8;
    if (i >= (size_t)n_rows * n8) return;
    int r = (int)(i / n8), c = (int)(i % n8);
    int src = ids ? ids[r] : r;
    float f[8];
    F::load8(w + (size_t)src * row_bytes, 8 * c, f);
    size_t o = (size_t)r * K + 8 * c;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        if (out_f32) out_f32[o + j] = f[j] * scale;
        else out_f16[o + j] = f2h(f[j] * scale);
    }
}
