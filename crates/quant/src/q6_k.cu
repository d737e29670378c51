// Q6_K: 256 elements in 210 bytes: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed 8-bit scales
// (one per 16 elements), f16 d; x = d*sc*(q-32). Chunk j = 4*n + k of a superblock: low nibbles at
// ql[64n + 32(k&1) + l] (high nibble when k >= 2), highs (qh[32n + l] >> 2k) & 3, scales 8n + 2k (+1).
// Regrouped on the GPU: d is the scalar field, the other 208 bytes the array.
// Signed scale i of 8 packed in a word.
__device__ __forceinline__ float q6k_scale(u64 sc, int i) { return (float)(i8)(u8)(sc >> (8 * i)); }
struct FmtQ6_K {
    static constexpr int BLOCK_ELEMS = 256;
    static constexpr int BLOCK_BYTES = 210;
    static constexpr int SCALAR_BYTES = 2;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = rg_array<FmtQ6_K>(row, c >> 3);
        int j = c & 7, n = j >> 2, kk = j & 3;
        const u8* ql = b + 64 * n + 32 * (kk & 1);
        const u8* qh = b + 128 + 32 * n;
        int ls = (kk >> 1) * 4, hs = 2 * kk;
        u32 lw[8], hw[8];
        ld_words16<8>(ql, lw);
        ld_words16<8>(qh, hw);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            u32 lo = (lw[i] >> ls) & 0x0F0F0F0F;
            u32 hi = (hw[i] >> hs) & 0x03030303;
            k.v[i] = (int)(lo | (hi << 4));
        }
        float d = h2f(ld16(rg_scalars<FmtQ6_K>(row, c >> 3)));
        u64 sc = *(const u64*)(b + 192 + 8 * n);  // this half's 8 scales in one load
        float d0 = d * q6k_scale(sc, 2 * kk), d1 = d * q6k_scale(sc, 2 * kk + 1);
        k.d = make_float2(d0, d1);
        k.m = make_float2(-32.f * d0, -32.f * d1);
    }
    // Chunks 4n + k and 4n + k + 2 (k < 2) share their low-nibble bytes (low and high nibbles) and their 2-bit bytes:
    // unit u = 4 * superblock + 2n + k loads them together (single-token products; see PairLoads in matvec.cu).
    static constexpr int PAIR_STRIDE = 2;
    __device__ static int pair_first(int u) { return 8 * (u >> 2) + 4 * ((u >> 1) & 1) + (u & 1); }
    __device__ static void load_pair(const u8* row, int u, Chunk& k0, Chunk& k1) {
        const u8* b = rg_array<FmtQ6_K>(row, u >> 2);
        int n = (u >> 1) & 1, kk = u & 1;
        u32 lw[8], hw[8];
        ld_words16<8>(b + 64 * n + 32 * kk, lw);
        ld_words16<8>(b + 128 + 32 * n, hw);
        int h0 = 2 * kk, h1 = 2 * kk + 4;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            k0.v[i] = (int)((lw[i] & 0x0F0F0F0F) | (((hw[i] >> h0) & 0x03030303) << 4));
            k1.v[i] = (int)(((lw[i] >> 4) & 0x0F0F0F0F) | (((hw[i] >> h1) & 0x03030303) << 4));
        }
        float d = h2f(ld16(rg_scalars<FmtQ6_K>(row, u >> 2)));
        u64 sc = *(const u64*)(b + 192 + 8 * n);
        float d0 = d * q6k_scale(sc, 2 * kk), d1 = d * q6k_scale(sc, 2 * kk + 1);
        float d2 = d * q6k_scale(sc, 2 * kk + 4), d3 = d * q6k_scale(sc, 2 * kk + 5);
        k0.d = make_float2(d0, d1);
        k0.m = make_float2(-32.f * d0, -32.f * d1);
        k1.d = make_float2(d2, d3);
        k1.m = make_float2(-32.f * d2, -32.f * d3);
    }
};
