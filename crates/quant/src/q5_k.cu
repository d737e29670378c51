// Q5_K: 256 elements in 176 bytes: f16 d, f16 dmin, 12 bytes of scales/mins (as Q4_K), 32 bytes of high bits
// (bit j of byte l = element 32*j + l), 128 bytes of nibbles; x = d*sc*q - dmin*mn.
struct FmtQ5_K {
    static constexpr int BLOCK_ELEMS = 256;
    static constexpr int BLOCK_BYTES = 176;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = row + (c >> 3) * BLOCK_BYTES;
        int j = c & 7;
        const u8* qs = b + 48 + 32 * (j >> 1);
        int s = 4 * (j & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            u32 q = (ld32(qs + 4 * i) >> s) & 0x0F0F0F0F;
            u32 h = (ld32(b + 16 + 4 * i) >> j) & 0x01010101;
            k.v[i] = (int)(q | (h << 4));
        }
        float dj, mj;
        K4Head(b).scale_min(j, dj, mj);
        k.d = make_float2(dj, dj);
        k.m = make_float2(mj, mj);
    }
};
