// Element-wise and row-wise ops of the decoder. Token metadata (positions, sequences) lives on the device, written
// once per forward pass, so a captured graph replays with new tokens without new launch parameters.

// One block per row: out = x * rsqrt(mean(x^2) + eps) * w. In place when out == x.
extern "C" __global__ void rms_norm(const float* x, const float* __restrict__ w, float* out, int n, float eps) {
    grid_dep_sync();
    __shared__ float partial[32];
    const float* xr = x + (size_t)blockIdx.x * n;
    float* orow = out + (size_t)blockIdx.x * n;
    float s = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += xr[i] * xr[i];
    s = warp_sum(s);
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    if (lane == 0) partial[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.f;
        s = warp_sum(s);
        if (lane == 0) partial[0] = s;
    }
    __syncthreads();
    float scale = rsqrtf(partial[0] / n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * scale * w[i];
}

// x[t, i] += b[i]; x: [n_tokens, n]
extern "C" __global__ void add_bias(float* x, const float* __restrict__ b, int n, int total) {
    grid_dep_sync();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) x[i] += b[i % n];
}

// x += y
extern "C" __global__ void add(float* x, const float* __restrict__ y, int total) {
    grid_dep_sync();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) x[i] += y[i];
}

// gate = act(gate) * up; act 0 = SiLU, 1 = GELU (tanh approximation)
extern "C" __global__ void gated_act(float* gate, const float* __restrict__ up, int total, int act) {
    grid_dep_sync();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    float g = gate[i];
    float a;
    if (act == 0) {
        a = g / (1.f + expf(-g));
    } else {
        const float c = 0.7978845608028654f;  // sqrt(2/pi)
        a = 0.5f * g * (1.f + tanhf(c * (g + 0.044715f * g * g * g)));
    }
    gate[i] = a * up[i];
}

// Rotates x: [n_tokens, n_heads, head_dim] by each token's position. style 0 = adjacent pairs, 1 = halves (NeoX).
// One thread per (token, head, pair).
extern "C" __global__ void rope(float* x, const int* __restrict__ pos, int n_tokens, int n_heads, int head_dim,
                                int style, float theta, float pos_scale, const float* __restrict__ freq_factors) {
    grid_dep_sync();
    int half = head_dim / 2;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_tokens * n_heads * half) return;
    int pair = i % half;
    int th = i / half;  // token * n_heads + head
    int t = th / n_heads;
    float p = (float)pos[t] * pos_scale;
    float angle = p * powf(theta, -2.f * pair / head_dim);
    if (freq_factors) angle /= freq_factors[pair];
    float s, c;
    sincosf(angle, &s, &c);
    float* h = x + (size_t)th * head_dim;
    int a = style == 0 ? 2 * pair : pair;
    int b = style == 0 ? 2 * pair + 1 : pair + half;
    float x0 = h[a], x1 = h[b];
    h[a] = x0 * c - x1 * s;
    h[b] = x0 * s + x1 * c;
}

// The cache: [n_layers, n_seqs, n_kv_heads, n_ctx, head_dim]. Writes k, v: [n_tokens, n_kv_heads * head_dim] of
// layer `layer` at each token's (sequence, position). One thread per element.
template <typename T>
__device__ __forceinline__ void store_kv(T* kc, T* vc, const float* k, const float* v, const int* pos,
                                         const int* seq, int n_tokens, int n_kv_heads, int head_dim, int n_ctx,
                                         int n_seqs, int layer) {
    int kv_dim = n_kv_heads * head_dim;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_tokens * kv_dim) return;
    int t = i / kv_dim, e = i % kv_dim, h = e / head_dim, d = e % head_dim;
    size_t at = ((((size_t)layer * n_seqs + seq[t]) * n_kv_heads + h) * n_ctx + pos[t]) * head_dim + d;
    if (sizeof(T) == 2) {
        ((u16*)kc)[at] = f2h(k[i]);
        ((u16*)vc)[at] = f2h(v[i]);
    } else {
        ((float*)kc)[at] = k[i];
        ((float*)vc)[at] = v[i];
    }
}
extern "C" __global__ void kv_store_f16(u16* kc, u16* vc, const float* k, const float* v, const int* pos,
                                        const int* seq, int n_tokens, int n_kv_heads, int head_dim, int n_ctx,
                                        int n_seqs, int layer) {
    grid_dep_sync();
    store_kv<u16>(kc, vc, k, v, pos, seq, n_tokens, n_kv_heads, head_dim, n_ctx, n_seqs, layer);
}
extern "C" __global__ void kv_store_f32(float* kc, float* vc, const float* k, const float* v, const int* pos,
                                        const int* seq, int n_tokens, int n_kv_heads, int head_dim, int n_ctx,
                                        int n_seqs, int layer) {
    grid_dep_sync();
    store_kv<float>(kc, vc, k, v, pos, seq, n_tokens, n_kv_heads, head_dim, n_ctx, n_seqs, layer);
}

// Copies positions [from, from + n) of sequence src over sequence dst in every layer and head. Elements of
// `elem_bytes` (2 or 4) moved as bytes pairs; one thread per (layer, head, position, 16-bit word).
extern "C" __global__ void kv_copy_seq(u16* kc, u16* vc, int n_layers, int n_seqs, int n_kv_heads, int n_ctx,
                                       int row_words, int src, int dst, int from, int n) {
    grid_dep_sync();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t total = (size_t)n_layers * n_kv_heads * n * row_words;
    if (i >= total) return;
    int w = (int)(i % row_words);
    size_t r = i / row_words;
    int p = from + (int)(r % n);
    r /= n;
    int h = (int)(r % n_kv_heads);
    int l = (int)(r / n_kv_heads);
    size_t s_at = ((((size_t)l * n_seqs + src) * n_kv_heads + h) * n_ctx + p) * row_words + w;
    size_t d_at = ((((size_t)l * n_seqs + dst) * n_kv_heads + h) * n_ctx + p) * row_words + w;
    kc[d_at] = kc[s_at];
    vc[d_at] = vc[s_at];
}

// out[i, :] = x[rows[i], :]
extern "C" __global__ void gather_rows(const float* __restrict__ x, const int* __restrict__ rows,
                                       float* __restrict__ out, int n_rows, int row_len) {
    grid_dep_sync();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_rows * row_len) return;
    int r = (int)(i / row_len), c = (int)(i % row_len);
    out[i] = x[(size_t)rows[r] * row_len + c];
}

// f32 -> f16, n elements (activations of a prefill matmul).
extern "C" __global__ void to_f16(const float* __restrict__ x, u16* __restrict__ out, size_t n) {
    grid_dep_sync();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = f2h(x[i]);
}

// RoPE on q and k, then k and v into the cache, in one launch: per token, threads for the query pairs, the key
// pairs (rotated in place and stored) and the value elements (stored).
template <typename T>
__device__ __forceinline__ void put_kv(T* c, size_t at, float v);
template <>
__device__ __forceinline__ void put_kv<u16>(u16* c, size_t at, float v) { c[at] = f2h(v); }
template <>
__device__ __forceinline__ void put_kv<float>(float* c, size_t at, float v) { c[at] = v; }

template <typename T>
__device__ __forceinline__ void rope_store(float* q, float* k, const float* __restrict__ v, T* kc, T* vc,
                                           const int* __restrict__ pos, const int* __restrict__ seq, int n_tokens,
                                           int n_heads, int n_kv_heads, int head_dim, int style, float theta,
                                           float pos_scale, const float* __restrict__ ff, int n_ctx, int n_seqs,
                                           int layer) {
    int half = head_dim / 2, kv_dim = n_kv_heads * head_dim;
    int per_token = n_heads * half + n_kv_heads * half + kv_dim;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_tokens * per_token) return;
    int t = i / per_token, j = i % per_token;
    size_t base = (((size_t)layer * n_seqs + seq[t]) * n_kv_heads) * n_ctx;
    if (j >= n_heads * half + n_kv_heads * half) {
        int e = j - n_heads * half - n_kv_heads * half, h = e / head_dim, d = e % head_dim;
        put_kv<T>(vc, ((base + (size_t)h * n_ctx) + pos[t]) * head_dim + d, v[(size_t)t * kv_dim + e]);
        return;
    }
    bool is_q = j < n_heads * half;
    int pj = is_q ? j : j - n_heads * half;
    int h = pj / half, pair = pj % half;
    int a = style == 0 ? 2 * pair : pair;
    int b = style == 0 ? 2 * pair + 1 : pair + half;
    float* row = is_q ? q + ((size_t)t * n_heads + h) * head_dim : k + ((size_t)t * n_kv_heads + h) * head_dim;
    float y0 = row[a], y1 = row[b];
    rope_rotate(y0, y1, pos[t], pair, head_dim, theta, pos_scale, ff);
    row[a] = y0;
    row[b] = y1;
    if (!is_q) {
        size_t at = ((base + (size_t)h * n_ctx) + pos[t]) * head_dim;
        put_kv<T>(kc, at + a, y0);
        put_kv<T>(kc, at + b, y1);
    }
}
extern "C" __global__ void rope_store_f16(float* q, float* k, const float* v, u16* kc, u16* vc, const int* pos,
                                          const int* seq, int n_tokens, int n_heads, int n_kv_heads, int head_dim,
                                          int style, float theta, float pos_scale, const float* ff, int n_ctx,
                                          int n_seqs, int layer) {
    grid_dep_sync();
    rope_store<u16>(q, k, v, kc, vc, pos, seq, n_tokens, n_heads, n_kv_heads, head_dim, style, theta, pos_scale, ff,
                    n_ctx, n_seqs, layer);
}
extern "C" __global__ void rope_store_f32(float* q, float* k, const float* v, float* kc, float* vc, const int* pos,
                                          const int* seq, int n_tokens, int n_heads, int n_kv_heads, int head_dim,
                                          int style, float theta, float pos_scale, const float* ff, int n_ctx,
                                          int n_seqs, int layer) {
    grid_dep_sync();
    rope_store<float>(q, k, v, kc, vc, pos, seq, n_tokens, n_heads, n_kv_heads, head_dim, style, theta, pos_scale,
                      ff, n_ctx, n_seqs, layer);
}

// A weight's rows from their GGUF bytes (src, rows of n_blocks blocks back to back) to the regrouped GPU layout
// (dst, rows of dst_row bytes, zeroed beforehand; quant::cuda::regroup, whose host version is the reference):
// one thread per block, copying 16-bit halves (every size and offset is even). bb: block bytes, sb: scalar bytes,
// as0: the array's offset in the GGUF block (0, scalars after it, or sb, scalars before).
extern "C" __global__ void regroup_blocks(const u8* __restrict__ src, u8* __restrict__ dst, int n_blocks,
                                          size_t dst_row, int bb, int sb, int as0, size_t total_blocks) {
    grid_dep_sync();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total_blocks) return;
    size_t r = i / n_blocks;
    int b = (int)(i % n_blocks), j = b & 7, ab = bb - sb;
    const u16* s = (const u16*)(src + i * bb);
    u16* g = (u16*)(dst + r * dst_row + (size_t)(b >> 3) * 8 * bb);
    int scalars_at = as0 == 0 ? ab : 0;
    for (int k = 0; k < sb / 2; k++) g[(sb * j) / 2 + k] = s[scalars_at / 2 + k];
    for (int k = 0; k < ab / 2; k++) g[(8 * sb + ab * j) / 2 + k] = s[as0 / 2 + k];
}
