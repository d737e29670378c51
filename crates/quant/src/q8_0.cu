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
    // The float view, for single-token products of short rows against f32 activations (no 8-bit conversion of
    // the input, so its norm can run inside the product): elements [i, i + 8) of a row, i % 8 == 0, as d * q.
    // raw8 and decode8: the same as two steps, the loads apart from the arithmetic (a kernel may hold a row's
    // bytes from before its dependency wait).
    struct Raw {
        uint2 q;
        u16 d;
    };
    __device__ static Raw raw8(const u8* row, int i) {
        int c = i >> 5;
        return {*(const uint2*)(rg_array<FmtQ8_0>(row, c) + (i & 31)), ld16(rg_scalars<FmtQ8_0>(row, c))};
    }
    __device__ static void decode8(const Raw& r, float f[8]) {
        float d = h2f(r.d);
        u32 w[2] = {r.q.x, r.q.y};
#pragma unroll
        for (int j = 0; j < 8; j++) f[j] = d * (float)(i8)(w[j >> 2] >> (8 * (j & 3)));
    }
    __device__ static void load8(const u8* row, int i, float f[8]) { decode8(raw8(row, i), f); }
    // Bytes of 256 elements (a regrouped group of 8 blocks), and of a row of K (its last group partial).
    __device__ static constexpr int span_bytes() { return 8 * BLOCK_BYTES; }
    __device__ static int row_span_bytes(int K) {
        int n = K / BLOCK_ELEMS, rem = n % 8;
        return n / 8 * 8 * BLOCK_BYTES + (rem ? 8 * SCALAR_BYTES + rem * (BLOCK_BYTES - SCALAR_BYTES) : 0);
    }
};
