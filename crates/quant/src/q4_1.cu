// Q4_1: 32 elements in 20 bytes: f16 d, f16 m, 16 bytes of nibbles; x = d*q + m. Regrouped on the GPU: d and m
// are the scalar fields.
struct FmtQ4_1 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 20;
    static constexpr int SCALAR_BYTES = 4;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        u32 dm = ld32(rg_scalars<FmtQ4_1>(row, c));
        float d = h2f((u16)(dm & 0xFFFF)), m = h2f((u16)(dm >> 16));
        u32 qw[4];
        ld_words16<4>(rg_array<FmtQ4_1>(row, c), qw);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            k.v[j] = qw[j] & 0x0F0F0F0F;
            k.v[j + 4] = (qw[j] >> 4) & 0x0F0F0F0F;
        }
        k.d = make_float2(d, d);
        k.m = make_float2(m, m);
    }
};
