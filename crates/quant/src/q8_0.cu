// Q8_0: 32 elements in 34 bytes: f16 d, 32 signed bytes; x = d*q. Regrouped on the GPU: d is the scalar field.
struct FmtQ8_0 {
    static constexpr int BLOCK_ELEMS = 32;
    static constexpr int BLOCK_BYTES = 34;
    static constexpr int SCALAR_BYTES = 2;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        float d = h2f(ld16(rg_scalars<FmtQ8_0>(row, c)));
        u32 q[8];
        ld_words16<8>(rg_array<FmtQ8_0>(row, c), q);
#pragma unroll
        for (int j = 0; j < 8; j++) k.v[j] = (int)q[j];
        k.d = make_float2(d, d);
        k.m = make_float2(0.f, 0.f);
    }
};
