// Q8_0: 32 elements in 34 bytes: f16 d, 32 signed bytes; x = d*q.
struct FmtQ8_0 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 34;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = row + c * BLOCK_BYTES;
        float d = h2f(ld16(b));
        u32 q[8];
        ld_words_a2<8>(b + 2, q);
#pragma unroll
        for (int j = 0; j < 8; j++) k.v[j] = (int)q[j];
        k.d = make_float2(d, d);
        k.m = make_float2(0.f, 0.f);
    }
};
