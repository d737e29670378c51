// Prompt attention in one kernel (flash attention): a block of 4 warps takes 64 consecutive query rows of one head,
// each warp 16 of them; the block walks the keys its rows can see in tiles of 64 (K and V tiles in shared memory),
// the warps multiply on tensor cores (mma.sync m16n8k16, f16 in, f32 accumulate): S = Q Kᵀ, then the online
// softmax (causal and sliding-window masks from the rows' positions), then O += P V with P rounded to f16 straight
// from S's accumulator layout. Nothing of size n² reaches memory.
//
// q16: [n_tokens, n_heads, HD] f16 (the prompt's queries, one sequence); cache: [n_layers, n_seqs, n_kv_heads,
// n_ctx, HD] f16; pos: [n_tokens]; out: [n_tokens, n_heads, HD] f32. HD is 64 or 128.

// FA_ROWS (query rows a block) and FA_THREADS (its threads) are defined ahead of this file from the host's constants.
#define FA_KEYS 64
static_assert(FA_ROWS == 16 * (FA_THREADS / 32), "a warp takes 16 query rows");

__device__ __forceinline__ void mma_16816(float* d, const u32* a, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ u32 pack_h2(float lo, float hi) { return (u32)f2h(lo) | ((u32)f2h(hi) << 16); }
__device__ __forceinline__ u32 pack_u16(u16 lo, u16 hi) { return (u32)lo | ((u32)hi << 16); }

template <int HD>
__device__ __forceinline__ void flash_prefill(const u16* __restrict__ q16, const u16* __restrict__ kc,
                                              const u16* __restrict__ vc, const int* __restrict__ pos,
                                              float* __restrict__ out, int n_tokens, int n_heads, int n_kv_heads,
                                              int n_ctx, int n_seqs, int layer, int seq, float scale, int window) {
    constexpr int PAD = HD + 8;  // halves per shared row: conflict-free fragment loads
    __shared__ __align__(16) u16 ks[FA_KEYS * PAD];
    __shared__ __align__(16) u16 vs[FA_KEYS * PAD];
    __shared__ int key_lo, key_hi;
    const int h = blockIdx.y, q0 = blockIdx.x * FA_ROWS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int kvh = h / (n_heads / n_kv_heads);
    const size_t base = (((size_t)layer * n_seqs + seq) * n_kv_heads + kvh) * n_ctx * HD;

    // The keys any row of the block sees.
    if (threadIdx.x == 0) {
        key_lo = 0x7fffffff;
        key_hi = -1;
    }
    __syncthreads();
    if (threadIdx.x < FA_ROWS && q0 + (int)threadIdx.x < n_tokens) {
        int p = pos[q0 + threadIdx.x];
        atomicMin(&key_lo, window > 0 ? max(0, p + 1 - window) : 0);
        atomicMax(&key_hi, min(p, n_ctx - 1));
    }
    __syncthreads();

    // This thread's two rows (g and g + 8 of the warp's 16), their positions and first visible keys.
    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
    const int p0 = r0 < n_tokens ? pos[r0] : -1, p1 = r1 < n_tokens ? pos[r1] : -1;
    const int lo0 = window > 0 ? p0 + 1 - window : 0, lo1 = window > 0 ? p1 + 1 - window : 0;

    // Q fragments (A operands), HD / 16 of them.
    u32 qa[HD / 16][4];
    {
        const u16* qr0 = q16 + ((size_t)min(r0, n_tokens - 1) * n_heads + h) * HD;
        const u16* qr1 = q16 + ((size_t)min(r1, n_tokens - 1) * n_heads + h) * HD;
#pragma unroll
        for (int c = 0; c < HD / 16; c++) {
            int d = 16 * c + 2 * t;
            qa[c][0] = *(const u32*)(qr0 + d);
            qa[c][1] = *(const u32*)(qr1 + d);
            qa[c][2] = *(const u32*)(qr0 + d + 8);
            qa[c][3] = *(const u32*)(qr1 + d + 8);
        }
    }
    float o[HD / 8][4];
#pragma unroll
    for (int j = 0; j < HD / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float m0 = -QINF, m1 = -QINF, l0 = 0.f, l1 = 0.f;

    for (int k0 = key_lo / FA_KEYS * FA_KEYS; k0 <= key_hi; k0 += FA_KEYS) {
        __syncthreads();
        // K and V tiles: 64 rows of HD halves, 16 bytes a thread a step.
        for (int i = threadIdx.x; i < FA_KEYS * HD / 8; i += blockDim.x) {
            int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
            int key = min(k0 + r, n_ctx - 1);
            *(uint4*)(ks + r * PAD + c) = *(const uint4*)(kc + base + (size_t)key * HD + c);
            *(uint4*)(vs + r * PAD + c) = *(const uint4*)(vc + base + (size_t)key * HD + c);
        }
        __syncthreads();

        // S = Q Kᵀ: 8 blocks of 8 keys.
        float s[FA_KEYS / 8][4];
#pragma unroll
        for (int nb = 0; nb < FA_KEYS / 8; nb++) {
            s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
            const u16* krow = ks + (nb * 8 + g) * PAD + 2 * t;
#pragma unroll
            for (int c = 0; c < HD / 16; c++)
                mma_16816(s[nb], qa[c], *(const u32*)(krow + 16 * c), *(const u32*)(krow + 16 * c + 8));
        }
        // Scale, mask, and the rows' running maxima.
        float mt0 = -QINF, mt1 = -QINF;
#pragma unroll
        for (int nb = 0; nb < FA_KEYS / 8; nb++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int key = k0 + nb * 8 + 2 * t + e;
                float a = s[nb][e] * scale, b = s[nb][2 + e] * scale;
                s[nb][e] = (key <= p0 && key >= lo0) ? a : -QINF;
                s[nb][2 + e] = (key <= p1 && key >= lo1) ? b : -QINF;
                mt0 = fmaxf(mt0, s[nb][e]);
                mt1 = fmaxf(mt1, s[nb][2 + e]);
            }
        }
#pragma unroll
        for (int x = 1; x < 4; x <<= 1) {
            mt0 = fmaxf(mt0, __shfl_xor_sync(0xffffffffu, mt0, x));
            mt1 = fmaxf(mt1, __shfl_xor_sync(0xffffffffu, mt1, x));
        }
        float mn0 = fmaxf(m0, mt0), mn1 = fmaxf(m1, mt1);
        // Rows with nothing visible yet keep m = -inf: their factors must not be NaN.
        float c0 = mn0 == -QINF ? 1.f : __expf(m0 - mn0), c1 = mn1 == -QINF ? 1.f : __expf(m1 - mn1);
        float ms0 = mn0 == -QINF ? 0.f : mn0, ms1 = mn1 == -QINF ? 0.f : mn1;
        float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
        for (int nb = 0; nb < FA_KEYS / 8; nb++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                s[nb][e] = __expf(s[nb][e] - ms0);
                s[nb][2 + e] = __expf(s[nb][2 + e] - ms1);
                sum0 += s[nb][e];
                sum1 += s[nb][2 + e];
            }
        }
#pragma unroll
        for (int x = 1; x < 4; x <<= 1) {
            sum0 += __shfl_xor_sync(0xffffffffu, sum0, x);
            sum1 += __shfl_xor_sync(0xffffffffu, sum1, x);
        }
        l0 = l0 * c0 + sum0;
        l1 = l1 * c1 + sum1;
        m0 = mn0;
        m1 = mn1;
#pragma unroll
        for (int j = 0; j < HD / 8; j++) {
            o[j][0] *= c0;
            o[j][1] *= c0;
            o[j][2] *= c1;
            o[j][3] *= c1;
        }
        // O += P V: P's accumulator layout is the A operand's, 16 keys (two blocks of S) at a time.
#pragma unroll
        for (int kk = 0; kk < FA_KEYS / 16; kk++) {
            u32 pa[4] = {pack_h2(s[2 * kk][0], s[2 * kk][1]), pack_h2(s[2 * kk][2], s[2 * kk][3]),
                         pack_h2(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_h2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            const u16* v0 = vs + (16 * kk + 2 * t) * PAD + g;
#pragma unroll
            for (int j = 0; j < HD / 8; j++) {
                const u16* v = v0 + 8 * j;
                mma_16816(o[j], pa, pack_u16(v[0], v[PAD]), pack_u16(v[8 * PAD], v[9 * PAD]));
            }
        }
    }
    float i0 = l0 > 0.f ? 1.f / l0 : 0.f, i1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
    for (int j = 0; j < HD / 8; j++) {
        int d = 8 * j + 2 * t;
        if (r0 < n_tokens) {
            float* o0 = out + ((size_t)r0 * n_heads + h) * HD + d;
            o0[0] = o[j][0] * i0;
            o0[1] = o[j][1] * i0;
        }
        if (r1 < n_tokens) {
            float* o1 = out + ((size_t)r1 * n_heads + h) * HD + d;
            o1[0] = o[j][2] * i1;
            o1[1] = o[j][3] * i1;
        }
    }
}

extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_prefill_64(const u16* q16, const u16* kc, const u16* vc,
                                                                   const int* pos, float* out, int n_tokens,
                                                                   int n_heads, int n_kv_heads, int n_ctx,
                                                                   int n_seqs, int layer, int seq, float scale,
                                                                   int window) {
    grid_dep_sync();
    flash_prefill<64>(q16, kc, vc, pos, out, n_tokens, n_heads, n_kv_heads, n_ctx, n_seqs, layer, seq, scale,
                      window);
}
extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_prefill_128(const u16* q16, const u16* kc, const u16* vc,
                                                                    const int* pos, float* out, int n_tokens,
                                                                    int n_heads, int n_kv_heads, int n_ctx,
                                                                    int n_seqs, int layer, int seq, float scale,
                                                                    int window) {
    grid_dep_sync();
    flash_prefill<128>(q16, kc, vc, pos, out, n_tokens, n_heads, n_kv_heads, n_ctx, n_seqs, layer, seq, scale,
                       window);
}
