// Q5_0: 32 elements in 22 bytes: f16 d, 32 high bits, 16 bytes of nibbles; x = d*(q-16). Regrouped on the GPU: d
// and the high bits are the scalar fields.
__device__ __forceinline__ int spread_bits4(u32 h) {
    // Bits 0..3 of h to bit 4 of bytes 0..3.
    return (int)(((h & 1) << 4) | ((h & 2) << 11) | ((h & 4) << 18) | ((h & 8) << 25));
}
struct FmtQ5_0 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 22;
    static constexpr int SCALAR_BYTES = 6;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* s = rg_scalars<FmtQ5_0>(row, c);
        float d = h2f(ld16(s));
        u32 qh = ld32a2(s + 2);
        u32 qw[4];
        ld_words16<4>(rg_array<FmtQ5_0>(row, c), qw);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            k.v[j] = (qw[j] & 0x0F0F0F0F) | spread_bits4(qh >> (4 * j));
            k.v[j + 4] = ((qw[j] >> 4) & 0x0F0F0F0F) | spread_bits4(qh >> (16 + 4 * j));
        }
        k.d = make_float2(d, d);
        k.m = make_float2(-16.f * d, -16.f * d);
    }
};
