// Token selection on the device: the argmax of each row (greedy), or the top n candidates of each row, so that
// only they cross to the host (the host's sampler finishes the chain on them; see sampling.rs).

// Greedy sampling on the device: the argmax of each logits row (lowest index among equal maxima), in two launches
// so that a long row is read by many blocks at once (one block walking a 262,144-entry row takes ~100 µs): blocks
// (row, part) reduce `slice` entries each, then a block per row reduces the parts.

// The block's best (value, index) of every thread's (bv, bi), lowest index on ties; valid in thread 0.
__device__ __forceinline__ void block_argmax(float& bv, int& bi) {
    __shared__ float best_v[32];
    __shared__ int best_i[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    if (lane == 0) { best_v[warp] = bv; best_i[warp] = bi; }
    __syncthreads();
    if (warp == 0) {
        int nw = blockDim.x / 32;
        bv = lane < nw ? best_v[lane] : (-QINF);
        bi = lane < nw ? best_i[lane] : 0x7fffffff;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
        }
    }
}

// logits: [n_rows, vocab]; part_v, part_i: [n_rows, gridDim.y], block (r, p) taking entries [p * slice, ..).
extern "C" __global__ void argmax_rows(const float* __restrict__ logits, int vocab, int slice,
                                       float* __restrict__ part_v, int* __restrict__ part_i) {
    grid_dep_sync();
    const float* row = logits + (size_t)blockIdx.x * vocab;
    int lo = blockIdx.y * slice, hi = min(vocab, lo + slice);
    float bv = (-QINF);
    int bi = 0x7fffffff;
    for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        float v = row[i];
        if (v > bv) { bv = v; bi = i; }
    }
    block_argmax(bv, bi);
    if (threadIdx.x == 0) {
        part_v[(size_t)blockIdx.x * gridDim.y + blockIdx.y] = bv;
        part_i[(size_t)blockIdx.x * gridDim.y + blockIdx.y] = bi;
    }
}

// out[r] = the best of row r's n_parts partial results. With `picks` (a chained greedy step: one row), the pick also
// becomes the next step's token (`tokens[0]`, the batch's token ids) at the next position (`pos[0]`), and goes to
// the host-mapped ring `picks` at the slot of the step's position.
extern "C" __global__ void argmax_combine(const float* __restrict__ part_v, const int* __restrict__ part_i,
                                          int n_parts, int* __restrict__ out, int* tokens, int* pos, int* picks,
                                          int ring) {
    grid_dep_sync();
    float bv = (-QINF);
    int bi = 0x7fffffff;
    for (int p = threadIdx.x; p < n_parts; p += blockDim.x) {
        float v = part_v[(size_t)blockIdx.x * n_parts + p];
        int i = part_i[(size_t)blockIdx.x * n_parts + p];
        if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
    }
    block_argmax(bv, bi);
    if (threadIdx.x == 0) {
        out[blockIdx.x] = bi;
        if (picks != nullptr) {
            int p = pos[0];
            tokens[0] = bi;
            pos[0] = p + 1;
            picks[p % ring] = bi;
            __threadfence_system();
        }
    }
}

// Top candidates. logits: [n_rows, vocab]; ids, vals: [n_rows, n] (sorted by logit, descending, ties by the smaller
// id); stats: [n_rows, 2] = {max logit, sum(exp(l - max)) over the row}. n <= TOPK_MAX.
#define TOPK_MAX 1024
#define TOPK_THREADS 1024

// Order-preserving map of a float to an unsigned key: a larger float has a larger key.
__device__ __forceinline__ u32 order_key(float f) {
    u32 u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Exclusive prefix count of `flag` over the block's threads in thread order; *total gets the block's count.
// Uses sh[0..32]; every thread must call it.
__device__ __forceinline__ int block_rank(bool flag, int* sh, int* total) {
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    u32 ballot = __ballot_sync(0xffffffffu, flag);
    int in_warp = __popc(ballot & ((1u << lane) - 1u));
    __syncthreads();
    if (lane == 0) sh[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, all = 0;
    for (int w = 0; w < (int)(blockDim.x / 32); w++) {
        int c = sh[w];
        if (w < warp) before += c;
        all += c;
    }
    *total = all;
    return before + in_warp;
}

extern "C" __global__ void __launch_bounds__(TOPK_THREADS) top_candidates(const float* __restrict__ logits, int vocab,
                                                                          int n, int* __restrict__ ids,
                                                                          float* __restrict__ vals,
                                                                          float* __restrict__ stats) {
    grid_dep_sync();
    __shared__ u32 hist[32][256];  // per-warp digit counts
    __shared__ u32 ckey[TOPK_MAX];
    __shared__ int cid[TOPK_MAX];
    __shared__ int sh[32];
    __shared__ u32 s_prefix, s_need, s_count;
    __shared__ float s_red[32];
    const float* row = logits + (size_t)blockIdx.x * vocab;
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;

    // 1. The key of the n-th largest logit, a byte at a time from the top (radix select).
    u32 prefix = 0, mask = 0, need = n;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 32 * 256; i += blockDim.x) (&hist[0][0])[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            u32 k = order_key(row[i]);
            if ((k & mask) == prefix) atomicAdd(&hist[warp][(k >> shift) & 255], 1u);
        }
        __syncthreads();
        if (threadIdx.x < 256) {
            u32 c = 0;
            for (int w = 0; w < 32; w++) c += hist[w][threadIdx.x];
            hist[0][threadIdx.x] = c;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            u32 above = 0;
            int digit = 255;
            for (; digit > 0; digit--) {
                if (above + hist[0][digit] >= need) break;
                above += hist[0][digit];
            }
            s_prefix = prefix | ((u32)digit << shift);
            s_need = need - above;
        }
        __syncthreads();
        prefix = s_prefix;
        need = s_need;
        mask |= 255u << shift;
    }
    // prefix is now the threshold key T: every key above it is a candidate, and the first `need` keys equal to
    // it in id order fill the rest.
    if (threadIdx.x == 0) s_count = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        u32 k = order_key(row[i]);
        if (k > prefix) {
            u32 slot = atomicAdd(&s_count, 1u);
            ckey[slot] = k;
            cid[slot] = i;
        }
    }
    __syncthreads();
    int above = (int)s_count, taken = 0;
    for (int base = 0; base < vocab && taken < (int)need; base += blockDim.x) {
        int i = base + threadIdx.x;
        bool eq = i < vocab && order_key(row[i]) == prefix;
        int total;
        int rank = block_rank(eq, sh, &total);
        if (eq && taken + rank < (int)need) {
            ckey[above + taken + rank] = prefix;
            cid[above + taken + rank] = i;
        }
        taken += total;
    }
    __syncthreads();

    // 2. Sort the n candidates: key descending, id ascending (bitonic over a power of two, padded).
    int p2 = 1;
    while (p2 < n) p2 <<= 1;
    for (int i = n + threadIdx.x; i < p2; i += blockDim.x) {
        ckey[i] = 0;
        cid[i] = 0x7fffffff;
    }
    __syncthreads();
    for (int size = 2; size <= p2; size <<= 1) {
        for (int stride = size / 2; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < p2; i += blockDim.x) {
                int j = i ^ stride;
                if (j > i) {
                    // "a before b" in the final order: larger key, then smaller id.
                    bool i_first = ckey[i] > ckey[j] || (ckey[i] == ckey[j] && cid[i] < cid[j]);
                    bool ascending_block = (i & size) == 0;
                    if (i_first != ascending_block) {
                        u32 tk = ckey[i];
                        ckey[i] = ckey[j];
                        ckey[j] = tk;
                        int ti = cid[i];
                        cid[i] = cid[j];
                        cid[j] = ti;
                    }
                }
            }
            __syncthreads();
        }
    }

    // 3. Outputs, and the row's softmax normalizer around its largest logit (the first candidate).
    size_t o = (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        ids[o + i] = cid[i];
        vals[o + i] = row[cid[i]];
    }
    float mx = row[cid[0]];
    float s = 0.f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) s += expf(row[i] - mx);
    s = warp_sum(s);
    if (lane == 0) s_red[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < (int)(blockDim.x / 32) ? s_red[lane] : 0.f;
        s = warp_sum(s);
        if (lane == 0) {
            stats[2 * blockIdx.x] = mx;
            stats[2 * blockIdx.x + 1] = s;
        }
    }
}
