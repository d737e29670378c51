// Q4_0: 32 elements in 18 bytes: f16 d, 16 bytes of nibbles (low = elements 0..15, high = 16..31); x = d*(q-8).
// Regrouped on the GPU: d is the scalar field.
struct FmtQ4_0 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 18;
    static constexpr int SCALAR_BYTES = 2;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        float d = h2f(ld16(rg_scalars<FmtQ4_0>(row, c)));
        u32 qw[4];
        ld_words16<4>(rg_array<FmtQ4_0>(row, c), qw);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            k.v[j] = qw[j] & 0x0F0F0F0F;
            k.v[j + 4] = (qw[j] >> 4) & 0x0F0F0F0F;
        }
        k.d = make_float2(d, d);
        k.m = make_float2(-8.f * d, -8.f * d);
    }
};
