// Q5_1: 32 elements in 24 bytes: f16 d, f16 m, 32 high bits, 16 bytes of nibbles; x = d*q + m. Regrouped on the
// GPU: d, m and the high bits are the scalar fields.
struct FmtQ5_1 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 24;
    static constexpr int SCALAR_BYTES = 8;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        uint2 s = *(const uint2*)rg_scalars<FmtQ5_1>(row, c);
        float d = h2f((u16)(s.x & 0xFFFF)), m = h2f((u16)(s.x >> 16));
        u32 qh = s.y;
        u32 qw[4];
        ld_words16<4>(rg_array<FmtQ5_1>(row, c), qw);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            k.v[j] = (qw[j] & 0x0F0F0F0F) | spread_bits4(qh >> (4 * j));
            k.v[j + 4] = ((qw[j] >> 4) & 0x0F0F0F0F) | spread_bits4(qh >> (16 + 4 * j));
        }
        k.d = make_float2(d, d);
        k.m = make_float2(m, m);
    }
};
