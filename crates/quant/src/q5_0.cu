// Q5_0: 32 elements in 22 bytes: f16 d, 32 high bits, 16 bytes of nibbles; x = d*(q-16).
__device__ __forceinline__ int spread_bits4(u32 h) {
    // Bits 0..3 of h to bit 4 of bytes 0..3.
    return (int)(((h & 1) << 4) | ((h & 2) << 11) | ((h & 4) << 18) | ((h & 8) << 25));
}
struct FmtQ5_0 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 22;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = row + c * BLOCK_BYTES;
        float d = h2f(ld16(b));
        u32 w5[5];
        ld_words_a2<5>(b + 2, w5);
        u32 qh = w5[0];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            u32 q = w5[1 + j];
            k.v[j] = (q & 0x0F0F0F0F) | spread_bits4(qh >> (4 * j));
            k.v[j + 4] = ((q >> 4) & 0x0F0F0F0F) | spread_bits4(qh >> (16 + 4 * j));
        }
        k.d = make_float2(d, d);
        k.m = make_float2(-16.f * d, -16.f * d);
    }
};
