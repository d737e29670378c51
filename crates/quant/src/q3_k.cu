// Q3_K: 256 elements in 110 bytes: 32 bytes of high bits, 64 bytes of 2-bit codes, 12 bytes of 6-bit scales
// (offset 96), f16 d; x = d*(sc-32)*(q - (high bit ? 0 : 4)). Chunk j: codes qs[32*(j/4) + l] >> 2*(j%4), high
// bit j of hmask[l], scales 8*(j/4) + 2*(j%4) (+1). Regrouped on the GPU: scales and d are the scalar fields
// (14 bytes), high bits and codes the array.
__device__ __forceinline__ int q3k_scale(const u8* sc, int is) {
    // 16 six-bit scales: low 4 bits in bytes 0..7 (nibbles), high 2 bits in bytes 8..11.
    int lo = is < 8 ? (sc[is] & 15) : (sc[is - 8] >> 4);
    int hi = (sc[8 + (is & 3)] >> (2 * (is >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}
struct FmtQ3_K {
    static constexpr int BLOCK_ELEMS = 256;
    static constexpr int BLOCK_BYTES = 110;
    static constexpr int SCALAR_BYTES = 14;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        int j = c & 7, n = j >> 2, s = 2 * (j & 3);
        const u8* sc = rg_scalars<FmtQ3_K>(row, c >> 3);
        const u8* b = rg_array<FmtQ3_K>(row, c >> 3);
        float d = h2f(ld16(sc + 12));
        u32 qw[8], hw[8];
        ld_words16<8>(b + 32 + 32 * n, qw);
        ld_words16<8>(b, hw);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            u32 q = (qw[i] >> s) & 0x03030303;
            u32 h = (hw[i] >> j) & 0x01010101;
            k.v[i] = (int)(q | (h << 2));
        }
        float d0 = d * q3k_scale(sc, 8 * n + s), d1 = d * q3k_scale(sc, 8 * n + s + 1);
        k.d = make_float2(d0, d1);
        k.m = make_float2(-4.f * d0, -4.f * d1);
    }
};
