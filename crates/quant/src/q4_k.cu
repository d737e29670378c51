// Q4_K: 256 elements in 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
// (64-element groups: low nibbles = first 32, high = next 32); x = d*sc*q - dmin*mn.
// The 16-byte head of a Q4_K / Q5_K superblock (f16 d, f16 dmin, 12 bytes of 6-bit scales and mins) in one load,
// and its 8 scales and 8 mins as bytes: scale j is byte j & 3 of sc[j >> 2], min j of mn[j >> 2].
struct K4Head {
    float d, dmin;
    u32 sc[2], mn[2];
    __device__ __forceinline__ K4Head(const u8* b) {
        uint4 h = *(const uint4*)b;
        d = h2f((u16)(h.x & 0xFFFF));
        dmin = h2f((u16)(h.x >> 16));
        // Scales and mins 0..3: the low 6 bits of bytes 0..3 and 4..7; 4..7: the nibbles of bytes 8..11 with the
        // top 2 bits of bytes 0..3 (scales) and 4..7 (mins) above them.
        sc[0] = h.y & 0x3F3F3F3F;
        mn[0] = h.z & 0x3F3F3F3F;
        sc[1] = (h.w & 0x0F0F0F0F) | ((h.y >> 2) & 0x30303030);
        mn[1] = ((h.w >> 4) & 0x0F0F0F0F) | ((h.z >> 2) & 0x30303030);
    }
    __device__ __forceinline__ void scale_min(int j, float& dj, float& mj) const {
        int sh = 8 * (j & 3);
        dj = d * (float)(((j < 4 ? sc[0] : sc[1]) >> sh) & 0xFF);
        mj = -dmin * (float)(((j < 4 ? mn[0] : mn[1]) >> sh) & 0xFF);
    }
};
struct FmtQ4_K {
    static constexpr int BLOCK_ELEMS = 256;
    static constexpr int BLOCK_BYTES = 144;
    __device__ static void load32(const u8* row, int c, Chunk& k) {
        const u8* b = row + (c >> 3) * BLOCK_BYTES;
        int j = c & 7;
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
        float dj, mj;
        K4Head(b).scale_min(j, dj, mj);
        k.d = make_float2(dj, dj);
        k.m = make_float2(mj, mj);
    }
    // Chunks 2p and 2p + 1 of a superblock share their 32 bytes (low and high nibbles): unit u = 4 * superblock + p
    // loads them together (single-token products; see PairLoads in matvec.cu).
    static constexpr int PAIR_STRIDE = 1;
    __device__ static int pair_first(int u) { return 8 * (u >> 2) + 2 * (u & 3); }
    __device__ static void load_pair(const u8* row, int u, Chunk& k0, Chunk& k1) {
        const u8* b = row + (u >> 2) * BLOCK_BYTES;
        int p = u & 3;
        K4Head head(b);
        const uint4* qs = (const uint4*)(b + 16 + 32 * p);
        uint4 a = qs[0], e = qs[1];
        u32 w[8] = {a.x, a.y, a.z, a.w, e.x, e.y, e.z, e.w};
#pragma unroll
        for (int i = 0; i < 8; i++) {
            k0.v[i] = w[i] & 0x0F0F0F0F;
            k1.v[i] = (w[i] >> 4) & 0x0F0F0F0F;
        }
        float dj, mj;
        head.scale_min(2 * p, dj, mj);
        k0.d = make_float2(dj, dj);
        k0.m = make_float2(mj, mj);
        head.scale_min(2 * p + 1, dj, mj);
        k1.d = make_float2(dj, dj);
        k1.m = make_float2(mj, mj);
    }
};
