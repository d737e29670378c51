// Attention over the KV cache: a warp per (token, head, split of the positions), lanes own head dimensions,
// online softmax. With several splits (long contexts, few tokens: flash-decoding) each warp writes a partial
// (max, sum, unnormalized output) and `attn_combine` merges them; with one split the warp writes the output.
//
// q, out: [n_tokens, n_heads, head_dim] f32; cache: [n_layers, n_seqs, n_kv_heads, n_ctx, head_dim];
// part: [n_tokens * n_heads, n_splits, head_dim + 2]. head_dim <= 256 and a multiple of 32.

template <typename T>
__device__ __forceinline__ float kv_at(const T* p, size_t i);
template <>
__device__ __forceinline__ float kv_at<u16>(const u16* p, size_t i) { return h2f(p[i]); }
template <>
__device__ __forceinline__ float kv_at<float>(const float* p, size_t i) { return p[i]; }

template <typename T>
__device__ __forceinline__ void attn_partial(const float* __restrict__ q, const T* __restrict__ kc,
                                             const T* __restrict__ vc, const int* __restrict__ pos,
                                             const int* __restrict__ seq, float* __restrict__ out,
                                             float* __restrict__ part, int n_heads, int n_kv_heads, int head_dim,
                                             int n_ctx, int n_seqs, int layer, float scale, int window,
                                             int split_len) {
    constexpr int MAXJ = 8;  // head_dim / 32
    int th = blockIdx.x;     // token * n_heads + head
    int split = blockIdx.y, n_splits = gridDim.y;
    int lane = threadIdx.x;
    int t = th / n_heads, h = th % n_heads;
    int p = pos[t];
    int lo = window > 0 ? max(0, p + 1 - window) : 0;
    int start = max(lo, split * split_len);
    int end = min(p + 1, (split + 1) * split_len);
    int nj = head_dim / 32;
    float qv[MAXJ], acc[MAXJ];
#pragma unroll
    for (int j = 0; j < MAXJ; j++) {
        qv[j] = j < nj ? q[(size_t)th * head_dim + lane + 32 * j] * scale : 0.f;
        acc[j] = 0.f;
    }
    int kvh = h / (n_heads / n_kv_heads);
    size_t base = (((size_t)layer * n_seqs + seq[t]) * n_kv_heads + kvh) * n_ctx * head_dim;
    float m = (-QINF), l = 0.f;
    for (int k = start; k < end; k++) {
        size_t row = base + (size_t)k * head_dim + lane;
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < MAXJ; j++)
            if (j < nj) s += qv[j] * kv_at<T>(kc, row + 32 * j);
        s = warp_sum(s);
        float m_new = fmaxf(m, s);
        float corr = expf(m - m_new), e = expf(s - m_new);
        l = l * corr + e;
#pragma unroll
        for (int j = 0; j < MAXJ; j++)
            if (j < nj) acc[j] = acc[j] * corr + e * kv_at<T>(vc, row + 32 * j);
        m = m_new;
    }
    if (n_splits == 1) {
        float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
        for (int j = 0; j < MAXJ; j++)
            if (j < nj) out[(size_t)th * head_dim + lane + 32 * j] = acc[j] * inv;
        return;
    }
    float* pp = part + ((size_t)th * n_splits + split) * (head_dim + 2);
#pragma unroll
    for (int j = 0; j < MAXJ; j++)
        if (j < nj) pp[lane + 32 * j] = acc[j];
    if (lane == 0) {
        pp[head_dim] = m;
        pp[head_dim + 1] = l;
    }
}

extern "C" __global__ void attn_f16(const float* q, const u16* kc, const u16* vc, const int* pos, const int* seq,
                                    float* out, float* part, int n_heads, int n_kv_heads, int head_dim, int n_ctx,
                                    int n_seqs, int layer, float scale, int window, int split_len) {
    grid_dep_sync();
    attn_partial<u16>(q, kc, vc, pos, seq, out, part, n_heads, n_kv_heads, head_dim, n_ctx, n_seqs, layer, scale,
                      window, split_len);
}
extern "C" __global__ void attn_f32(const float* q, const float* kc, const float* vc, const int* pos,
                                    const int* seq, float* out, float* part, int n_heads, int n_kv_heads,
                                    int head_dim, int n_ctx, int n_seqs, int layer, float scale, int window,
                                    int split_len) {
    grid_dep_sync();
    attn_partial<float>(q, kc, vc, pos, seq, out, part, n_heads, n_kv_heads, head_dim, n_ctx, n_seqs, layer,
                        scale, window, split_len);
}

// Element i of the attention output, v, stored in out and, when aq is not null, in the 8-bit activations of the
// output projection that follows (quant_chunk: the warp holds 32 consecutive elements, head_dim % 32 == 0): one
// conversion launch less a layer for quantized weights.
__device__ __forceinline__ void attn_store(float* __restrict__ out, i8* __restrict__ aq, float4* __restrict__ am,
                                           size_t i, float v) {
    out[i] = v;
    if (aq) {
        size_t first = i - (threadIdx.x & 31);
        quant_chunk(v, aq + first, am + first / 32);
    }
}

// Merges the splits of one (token, head): a block of head_dim threads.
extern "C" __global__ void attn_combine(const float* __restrict__ part, float* __restrict__ out, int n_splits,
                                        int head_dim, i8* aq, float4* am) {
    grid_dep_sync();
    int th = blockIdx.x, d = threadIdx.x;
    if (d >= head_dim) return;
    const float* pp = part + (size_t)th * n_splits * (head_dim + 2);
    float m = (-QINF);
    for (int s = 0; s < n_splits; s++) m = fmaxf(m, pp[s * (head_dim + 2) + head_dim]);
    float num = 0.f, den = 0.f;
    for (int s = 0; s < n_splits; s++) {
        const float* ps = pp + s * (head_dim + 2);
        float ms = ps[head_dim];
        if (ms == (-QINF)) continue;
        float w = expf(ms - m);
        num += w * ps[d];
        den += w * ps[head_dim + 1];
    }
    attn_store(out, aq, am, (size_t)th * head_dim + d, den > 0.f ? num / den : 0.f);
}

// Decode attention (few queries, many keys): a block of 4 warps per (token, head, split). Splits divide the
// token's window evenly (computed here from its position; the split count, from the batch's furthest position,
// keys the step's captured graph); warps take tiles of 32 keys, lane j scoring key j over the whole head (no
// reduction per key), then lanes own head dimensions for the values. The 4 warps merge in shared memory; with
// several splits the block writes a partial for attn_combine. A warp's work is a long chain of dependent
// instructions (with one block per head, nothing hides their latency), so head sizes 64 and 128 get kernels
// compiled for them: exact loops, one wide load of a lane's values per key, and DECODE_LPK lanes scoring each key
// in blocks of as many times more warps (measured on H100, tg128: smollm2-135m f16 1,879 -> 2,003 tok/s compiled,
// 2,132 with 4 lanes a key; 8B q4_k 383.7 -> 390.0 -> 395-398). Head size 256 (Gemma 3) is compiled too, with
// DECODE_LPK_256 lanes a key: synth gemma3-270m f16 1,171 -> 1,274 with one lane, 1,307 with two.
template <typename T>
__device__ __forceinline__ float kv_dot8(const T* row, int d, const float* qs);
template <>
__device__ __forceinline__ float kv_dot8<u16>(const u16* row, int d, const float* qs) {
    uint4 w = *(const uint4*)(row + d);
    u32 a[4] = {w.x, w.y, w.z, w.w};
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++)
        s += qs[d + 2 * i] * h2f((u16)(a[i] & 0xFFFF)) + qs[d + 2 * i + 1] * h2f((u16)(a[i] >> 16));
    return s;
}
template <>
__device__ __forceinline__ float kv_dot8<float>(const float* row, int d, const float* qs) {
    float4 a = *(const float4*)(row + d), b = *(const float4*)(row + d + 4);
    return qs[d] * a.x + qs[d + 1] * a.y + qs[d + 2] * a.z + qs[d + 3] * a.w + qs[d + 4] * b.x + qs[d + 5] * b.y +
           qs[d + 6] * b.z + qs[d + 7] * b.w;
}

// The keys a decode block reads: split `split` of token t's window split evenly over `n_splits`, [start, end).
__device__ __forceinline__ void decode_span(int p, int window, int split, int n_splits, int& start, int& end) {
    int lo = window > 0 ? max(0, p + 1 - window) : 0;
    int per = (p + 1 - lo + n_splits - 1) / n_splits;
    start = lo + split * per;
    end = min(p + 1, start + per);
}

// Before grid_dep_sync: the cache rows this block will read that no kernel of the step writes come into L1 while
// the predecessor (the Q/K/V product storing this step's rows) finishes, so the block's first loads after the
// wait hit L1 instead of DRAM. Only rows before the smallest position any token of the same sequence stores in
// this step, at most ATTN_PREFETCH_KEYS of them, and only whole 128-byte lines below that limit: a line holding a
// byte of a row being written could be read stale from L1. `pos` and `seq` are uploaded before the step's first
// kernel, so reading them here is safe.
#define ATTN_PREFETCH_KEYS 128
// The block's token: its position and sequence, read here (before the wait) so that the block's first loads after
// it need nothing but the queries.
struct AttnToken {
    int p, sq;
};
template <typename T>
__device__ __forceinline__ AttnToken attn_decode_prefetch(const T* kc, const T* vc, const int* __restrict__ pos,
                                                          const int* __restrict__ seq, int n_heads, int n_kv_heads,
                                                          int head_dim, int n_ctx, int n_seqs, int layer,
                                                          int window, int split, int n_splits) {
    int n_tokens = gridDim.x / n_heads, th = blockIdx.x, t = th / n_heads, h = th % n_heads;
    int p = pos[t], sq = seq[t], written = p;
    for (int u = 0; u < n_tokens; u++)
        if (seq[u] == sq) written = min(written, pos[u]);
    int start, end;
    decode_span(p, window, split, n_splits, start, end);
    end = min(min(end, written), start + ATTN_PREFETCH_KEYS);
    if (start >= end) return {p, sq};
    int kvh = h / (n_heads / n_kv_heads);
    size_t base = (((size_t)layer * n_seqs + sq) * n_kv_heads + kvh) * n_ctx * head_dim;
    size_t row_bytes = (size_t)head_dim * sizeof(T);
    const T* caches[2] = {kc, vc};
#pragma unroll
    for (int c = 0; c < 2; c++) {
        size_t a0 = (size_t)(caches[c] + base) + start * row_bytes, a1 = (size_t)(caches[c] + base) + end * row_bytes;
        size_t first = a0 & ~(size_t)127;
        for (size_t line = first + 128 * threadIdx.x; line + 128 <= a1; line += 128 * blockDim.x)
            asm volatile("prefetch.global.L1 [%0];" ::"l"(line));
    }
    return {p, sq};
}

// A lane's NJ consecutive elements of a value row (NJ * sizeof(T) bytes, aligned to that size) as floats.
template <typename T, int NJ>
__device__ __forceinline__ void load_slice(const T* p, float f[NJ]) {
    constexpr int BYTES = NJ * (int)sizeof(T);
    u32 w[BYTES >= 4 ? BYTES / 4 : 1];
    if constexpr (BYTES >= 16) {
#pragma unroll
        for (int i = 0; i < BYTES / 16; i++) {
            uint4 v = ((const uint4*)p)[i];
            w[4 * i] = v.x;
            w[4 * i + 1] = v.y;
            w[4 * i + 2] = v.z;
            w[4 * i + 3] = v.w;
        }
    } else if constexpr (BYTES == 8) {
        uint2 v = *(const uint2*)p;
        w[0] = v.x;
        w[1] = v.y;
    } else if constexpr (BYTES == 4) {
        w[0] = *(const u32*)p;
    } else {
        w[0] = *(const u16*)p;
    }
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        if constexpr (sizeof(T) == 2) {
            f[j] = h2f((u16)(j & 1 ? w[j / 2] >> 16 : w[j / 2] & 0xFFFF));
        } else {
            f[j] = __uint_as_float(w[j]);
        }
    }
}

// Value rows u = 0..VR-1 of a pass starting at key r0 of a tile (n_keys keys; rows past the last repeat it).
template <typename T, int HD, int NJ, int VR>
__device__ __forceinline__ void load_values(const T* vt, int r0, int n_keys, int head_dim, int nj, float vv[VR][NJ]) {
#pragma unroll
    for (int u = 0; u < VR; u++) {
        const T* vrow = vt + (size_t)min(r0 + u, n_keys - 1) * head_dim;
        if constexpr (HD != 0) {
            load_slice<T, NJ>(vrow, vv[u]);
        } else {
#pragma unroll
            for (int j = 0; j < NJ; j++) vv[u][j] = j < nj ? kv_at<T>(vrow, j) : 0.f;
        }
    }
}

// Queries of compiled head sizes whose lane share (head_dim / LPK elements) is at most QREG_MAX live in registers,
// loaded straight from global memory together with the first keys and values (no shared-memory round and
// barrier first); and where a tile's values are one pass of at most EARLY_V_MAX registers a lane, those loads are
// issued before the scores, which they do not depend on. With the token read before the wait (AttnToken), a
// block's path from the wait to its store has one round of loads from L2 instead of four. Measured on H100 (tg128,
// 2026-11-26): smollm2-135m f16 2,262 -> 2,331 tok/s, q8_0 2,236 -> 2,317, gemma3-270m f16 1,302 -> 1,310.
#define QREG_MAX 32
#define EARLY_V_MAX 32
// HD is the head size, known at compile time (the common sizes: exact loops, wide loads of the values), or 0 for
// the head_dim argument (a multiple of 32, at most 256). LPK lanes score each key, each over head_dim / LPK
// dimensions, so a warp's tile is 32 / LPK keys and the block has 4 LPK warps (a round of 128 keys either way).
// Lane l owns value dimensions [nj l, nj l + nj), nj = head_dim / 32. With `os` (one split: the fused layer tail,
// layer_tail.cu) the block's head output goes to that shared array instead of out.
template <typename T, int HD, int LPK>
__device__ __forceinline__ void attn_decode(const float* __restrict__ q, const T* __restrict__ kc,
                                            const T* __restrict__ vc, AttnToken tok, float* __restrict__ out,
                                            float* __restrict__ part, int n_heads, int n_kv_heads, int head_dim_arg,
                                            int n_ctx, int n_seqs, int layer, float scale, int window, int split,
                                            int n_splits, i8* aq, float4* am, float* os = nullptr) {
    constexpr int MAX_HD = HD ? HD : 256, NJ = MAX_HD / 32;  // NJ: the most value elements a lane owns
    constexpr int NW = 4 * LPK, KPW = 32 / LPK, VR = KPW < 8 ? KPW : 8;  // warps, keys a tile, values a pass
    constexpr bool QREG = HD != 0 && HD / LPK <= QREG_MAX;
    constexpr bool EARLY_V = KPW == VR && VR * NJ <= EARLY_V_MAX;
    const int head_dim = HD ? HD : head_dim_arg, nj = head_dim / 32, span = head_dim / LPK;
    __shared__ __align__(16) float qs[QREG ? 1 : MAX_HD];
    __shared__ float wm[NW], wl[NW];
    __shared__ float wacc[NW][MAX_HD];
    int th = blockIdx.x;
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31, sub = lane % LPK;
    int h = th % n_heads;
    int start, end;
    decode_span(tok.p, window, split, n_splits, start, end);
    float qr[QREG ? HD / LPK : 1];
    if constexpr (QREG) {
        const float4* qp = (const float4*)(q + (size_t)th * head_dim + sub * span);
#pragma unroll
        for (int i = 0; i < HD / LPK / 4; i++) {
            float4 v = qp[i];
            qr[4 * i] = v.x * scale;
            qr[4 * i + 1] = v.y * scale;
            qr[4 * i + 2] = v.z * scale;
            qr[4 * i + 3] = v.w * scale;
        }
    } else {
        for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = q[(size_t)th * head_dim + d] * scale;
        __syncthreads();
    }
    const float* qsub = QREG ? qr : qs + sub * span;
    int kvh = h / (n_heads / n_kv_heads);
    size_t base = (((size_t)layer * n_seqs + tok.sq) * n_kv_heads + kvh) * n_ctx * head_dim;
    const T* kb = kc + base + sub * span;
    const T* vb = vc + base + nj * lane;
    float m = -QINF, l = 0.f, acc[NJ];
#pragma unroll
    for (int j = 0; j < NJ; j++) acc[j] = 0.f;
    for (int k0 = start + KPW * warp; k0 < end; k0 += KPW * NW) {
        int key = k0 + lane / LPK;
        bool valid = key < end;
        int n_keys = min(KPW, end - k0);
        const T* vt = vb + (size_t)k0 * head_dim;
        float vv[VR][NJ];
        if constexpr (EARLY_V) load_values<T, HD, NJ, VR>(vt, 0, n_keys, head_dim, nj, vv);
        float s = 0.f;
        if (valid) {
            if (!EARLY_V && sub == 0) {
                // This key's value row into L1 now, while the scores are computed.
                const char* vrow = (const char*)(vc + base + (size_t)key * head_dim);
#pragma unroll
                for (int off = 0; off < head_dim * (int)sizeof(T); off += 128)
                    asm volatile("prefetch.global.L1 [%0];" ::"l"(vrow + off));
            }
            const T* row = kb + (size_t)key * head_dim;
#pragma unroll
            for (int d = 0; d < span; d += 8) s += kv_dot8<T>(row, d, qsub);
        }
#pragma unroll
        for (int o = 1; o < LPK; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (!valid) s = -QINF;
        float m_new = fmaxf(m, warp_max(s));
        float corr = __expf(m - m_new), e = valid ? __expf(s - m_new) : 0.f;
        l = l * corr + warp_sum(sub == 0 ? e : 0.f);
#pragma unroll
        for (int j = 0; j < NJ; j++) acc[j] *= corr;
        m = m_new;
        // Values VR keys at a time, every load of those rows issued before the first use.
        for (int r0 = 0; r0 < n_keys; r0 += VR) {
            if (!EARLY_V) load_values<T, HD, NJ, VR>(vt, r0, n_keys, head_dim, nj, vv);
#pragma unroll
            for (int u = 0; u < VR; u++) {
                float pr = __shfl_sync(0xffffffffu, e, ((r0 + u) * LPK) & 31);
                if (r0 + u < n_keys) {
#pragma unroll
                    for (int j = 0; j < NJ; j++) acc[j] += pr * vv[u][j];
                }
            }
        }
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int j = 0; j < NJ; j++)
        if (j < nj) wacc[warp][nj * lane + j] = acc[j];
    __syncthreads();
    float M = -QINF;
#pragma unroll
    for (int w = 0; w < NW; w++) M = fmaxf(M, wm[w]);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float num = 0.f, den = 0.f;
#pragma unroll
        for (int w = 0; w < NW; w++) {
            if (wm[w] == -QINF) continue;
            float f = __expf(wm[w] - M);
            num += f * wacc[w][d];
            den += f * wl[w];
        }
        if (os) {
            os[d] = den > 0.f ? num / den : 0.f;
        } else if (n_splits == 1) {
            attn_store(out, aq, am, (size_t)th * head_dim + d, den > 0.f ? num / den : 0.f);
        } else {
            float* pp = part + ((size_t)th * n_splits + split) * (head_dim + 2);
            pp[d] = num;
            if (d == 0) {
                pp[head_dim] = M;
                pp[head_dim + 1] = den;
            }
        }
    }
}

// The decode-attention kernels, by cache element T, compiled head size HD (0: the head_dim argument) and lanes a
// key.
#define ATTN_DECODE_KERNEL(NAME, T, HD, LPK)                                                                    \
    extern "C" __global__ void NAME(const float* q, const T* kc, const T* vc, const int* pos, const int* seq,   \
                                    float* out, float* part, int n_heads, int n_kv_heads, int head_dim,         \
                                    int n_ctx, int n_seqs, int layer, float scale, int window, i8* aq,          \
                                    float4* am) {                                                               \
        const AttnToken tok = attn_decode_prefetch<T>(kc, vc, pos, seq, n_heads, n_kv_heads, head_dim, n_ctx,   \
                                                      n_seqs, layer, window, blockIdx.y, gridDim.y);            \
        grid_dep_sync();                                                                                        \
        attn_decode<T, HD, LPK>(q, kc, vc, tok, out, part, n_heads, n_kv_heads, head_dim, n_ctx, n_seqs, layer, \
                                scale, window, blockIdx.y, gridDim.y, aq, am);                                  \
    }
ATTN_DECODE_KERNEL(attn_decode_f16_64, u16, 64, DECODE_LPK)
ATTN_DECODE_KERNEL(attn_decode_f16_128, u16, 128, DECODE_LPK)
ATTN_DECODE_KERNEL(attn_decode_f16_256, u16, 256, DECODE_LPK_256)
ATTN_DECODE_KERNEL(attn_decode_f16, u16, 0, 1)
ATTN_DECODE_KERNEL(attn_decode_f32_64, float, 64, DECODE_LPK)
ATTN_DECODE_KERNEL(attn_decode_f32_128, float, 128, DECODE_LPK)
ATTN_DECODE_KERNEL(attn_decode_f32_256, float, 256, DECODE_LPK_256)
ATTN_DECODE_KERNEL(attn_decode_f32, float, 0, 1)

// Prompt attention through GEMMs: S = scale * Q Kᵀ is computed by cuBLAS, this kernel turns each row of S into
// causal (and windowed) softmax probabilities in f16 for the second GEMM, P V. S: [n_heads, n_tokens, n_keys] f32,
// P: same shape, f16. A block per row.
__device__ __forceinline__ float block_reduce(float v, bool is_max, float* sh) {
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nw = blockDim.x / 32;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float x = lane < nw ? sh[lane] : (is_max ? -QINF : 0.f);
        x = is_max ? warp_max(x) : warp_sum(x);
        if (lane == 0) sh[0] = x;
    }
    __syncthreads();
    return sh[0];
}

extern "C" __global__ void softmax_causal(const float* __restrict__ S, u16* __restrict__ P,
                                          const int* __restrict__ pos, int n_tokens, int n_keys, int window) {
    grid_dep_sync();
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    int t = (int)(row % n_tokens);
    int p = pos[t];
    int lo = window > 0 ? max(0, p + 1 - window) : 0;
    int hi = min(p, n_keys - 1);
    const float* s = S + row * n_keys;
    u16* o = P + row * n_keys;
    float m = -QINF;
    for (int j = lo + threadIdx.x; j <= hi; j += blockDim.x) m = fmaxf(m, s[j]);
    m = block_reduce(m, true, sh);
    float sum = 0.f;
    for (int j = lo + threadIdx.x; j <= hi; j += blockDim.x) sum += __expf(s[j] - m);
    sum = block_reduce(sum, false, sh);
    float inv = sum > 0.f ? 1.f / sum : 0.f;
    for (int j = threadIdx.x; j < n_keys; j += blockDim.x)
        o[j] = f2h(j >= lo && j <= hi ? __expf(s[j] - m) * inv : 0.f);
}
