// Q4_1: 32 elements in 20 bytes: f16 d, f16 m, 16 bytes of nibbles; x = d*q + m.
struct FmtQ4_1 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 20;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = row + c * BLOCK_BYTES;
        float d = h2f(ld16(b)), m = h2f(ld16(b + 2));
#pragma unroll
        for (int j = 0; j < 4; j++) {
            u32 q = ld32(b + 4 + 4 * j);
            k.v[j] = q & 0x0F0F0F0F;
            k.v[j + 4] = (q >> 4) & 0x0F0F0F0F;
        }
        k.d = make_float2(d, d);
        k.m = make_float2(m, m);
    }
};
