// Q4_0: 32 elements in 18 bytes: f16 d, 16 bytes of nibbles (low = elements 0..15, high = 16..31); x = d*(q-8).
struct FmtQ4_0 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 18;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = row + c * BLOCK_BYTES;
        float d = h2f(ld16(b));
        u32 qw[4];
        ld_words_a2<4>(b + 2, qw);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            k.v[j] = qw[j] & 0x0F0F0F0F;
            k.v[j + 4] = (qw[j] >> 4) & 0x0F0F0F0F;
        }
        k.d = make_float2(d, d);
        k.m = make_float2(-8.f * d, -8.f * d);
    }
};
