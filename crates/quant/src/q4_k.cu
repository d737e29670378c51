// Q4_K: 256 elements in 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
// (64-element groups: low nibbles = first 32, high = next 32); x = d*sc*q - dmin*mn.
__device__ __forceinline__ void k4_scale_min(const u8* q, int j, int& sc, int& mn) {
    if (j < 4) {
        sc = q[j] & 63;
        mn = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
struct FmtQ4_K {
    static constexpr int BLOCK_ELEMS = 256;
    static constexpr int BLOCK_BYTES = 144;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = row + (c >> 3) * BLOCK_BYTES;
        int j = c & 7;
        float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
        const uint4* qs = (const uint4*)(b + 16 + 32 * (j >> 1));
        int s = 4 * (j & 1);
        uint4 a = qs[0], e = qs[1];
        k.v[0] = (a.x >> s) & 0x0F0F0F0F;
        k.v[1] = (a.y >> s) & 0x0F0F0F0F;
        k.v[2] = (a.z >> s) & 0x0F0F0F0F;
        k.v[3] = (a.w >> s) & 0x0F0F0F0F;
        k.v[4] = (e.x >> s) & 0x0F0F0F0F;
        k.v[5] = (e.y >> s) & 0x0F0F0F0F;
        k.v[6] = (e.z >> s) & 0x0F0F0F0F;
        k.v[7] = (e.w >> s) & 0x0F0F0F0F;
        int sc, mn;
        k4_scale_min(b + 4, j, sc, mn);
        k.d = make_float2(d * sc, d * sc);
        k.m = make_float2(-dmin * mn, -dmin * mn);
    }
    // Chunks 2p and 2p + 1 of a superblock share their 32 bytes (low and high nibbles): unit u = 4 * superblock + p
    // loads them together (single-token products; see PairLoads in matvec.cu).
    static constexpr int PAIR_STRIDE = 1;
    __device__ static int pair_first(int u) { return 8 * (u >> 2) + 2 * (u & 3); }
    __device__ static void load_pair(const u8* row, int u, Chunk& k0, Chunk& k1) {
        const u8* b = row + (u >> 2) * BLOCK_BYTES;
        int p = u & 3;
        u32 dd = ld32(b);
        float d = h2f((u16)(dd & 0xFFFF)), dmin = h2f((u16)(dd >> 16));
        const uint4* qs = (const uint4*)(b + 16 + 32 * p);
        uint4 a = qs[0], e = qs[1];
        u32 w[8] = {a.x, a.y, a.z, a.w, e.x, e.y, e.z, e.w};
#pragma unroll
        for (int i = 0; i < 8; i++) {
            k0.v[i] = w[i] & 0x0F0F0F0F;
            k1.v[i] = (w[i] >> 4) & 0x0F0F0F0F;
        }
        int sc, mn;
        k4_scale_min(b + 4, 2 * p, sc, mn);
        k0.d = make_float2(d * sc, d * sc);
        k0.m = make_float2(-dmin * mn, -dmin * mn);
        k4_scale_min(b + 4, 2 * p + 1, sc, mn);
        k1.d = make_float2(d * sc, d * sc);
        k1.m = make_float2(-dmin * mn, -dmin * mn);
    }
};
