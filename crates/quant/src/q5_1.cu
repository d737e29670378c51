// Q5_1: 32 elements in 24 bytes: f16 d, f16 m, 32 high bits, 16 bytes of nibbles; x = d*q + m.
struct FmtQ5_1 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 24;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = row + c * BLOCK_BYTES;
        float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
        u32 qh = ld32(b + 4);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            u32 q = ld32(b + 8 + 4 * j);
            k.v[j] = (q & 0x0F0F0F0F) | spread_bits4(qh >> (4 * j));
            k.v[j + 4] = ((q >> 4) & 0x0F0F0F0F) | spread_bits4(qh >> (16 + 4 * j));
        }
        k.d = make_float2(d, d);
        k.m = make_float2(m, m);
    }
};
