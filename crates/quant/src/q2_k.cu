// Q2_K: 256 elements in 84 bytes: 16 scale bytes (low nibble scale, high nibble min, one per 16 elements),
// 64 bytes of 2-bit codes, f16 d, f16 dmin; x = d*sc*q - dmin*mn. Chunk j of a superblock: codes at
// qs[32*(j/4) + l] >> 2*(j%4), scales 8*(j/4) + 2*(j%4) (+1 for its second half). Regrouped on the GPU: d and dmin
// are the scalar fields, scales and codes the array.
struct FmtQ2_K {
    static constexpr int BLOCK_ELEMS = 256;
    static constexpr int BLOCK_BYTES = 84;
    static constexpr int SCALAR_BYTES = 4;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        int j = c & 7, n = j >> 2, s = 2 * (j & 3);
        u32 dd = ld32(rg_scalars<FmtQ2_K>(row, c >> 3));
        float d = h2f((u16)(dd & 0xFFFF)), dmin = h2f((u16)(dd >> 16));
        const u8* b = rg_array<FmtQ2_K>(row, c >> 3);
        u32 qw[8];
        ld_words16<8>(b + 16 + 32 * n, qw);
#pragma unroll
        for (int i = 0; i < 8; i++) k.v[i] = (qw[i] >> s) & 0x03030303;
        u8 s0 = b[8 * n + s], s1 = b[8 * n + s + 1];
        k.d = make_float2(d * (s0 & 15), d * (s1 & 15));
        k.m = make_float2(-dmin * (s0 >> 4), -dmin * (s1 >> 4));
    }
};
