#include "CLatheBlockDots.h"
#include <math.h>
#include <string.h>

// Every 32 activations a are rounded to int8 with one scale (a ≈ sx·q, sx = amax / 127); every 32 weights of a block
// are unsigned integers u with a zero point z, a scale s per 16 and an offset o (w = s·(u − z) + o), so that
//   Σ w·a ≈ Σ_halves s·sx·Σ u·q + (o − z·s)·sx·Σ q
// where Σ u·q is vpdpbusd's unsigned-by-signed byte product and sx·Σ q the activations' `half_sums`. The offset too
// multiplies the rounded activations' sum, not the exact one: w's rounding errors then weigh |w|, not |w − o| (for
// Q4_1, whose o is about −8s, the exact sum made the product's error 1.3× larger). Two chunks (64 values) go through
// one 512-bit vpdpbusd.

void lathe_quantize_activations(const float *x, int64_t n, int8_t *q, float *scales, float *half_sums) {
    for (int64_t c = 0; c < n / 32; c++) {
        const float *v = x + 32 * c;
        float amax = 0;
        for (int i = 0; i < 32; i++) {
            float a = fabsf(v[i]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
        int low = 0, high = 0;
        for (int i = 0; i < 32; i++) {
            int r = (int)nearbyintf(v[i] * id);
            q[32 * c + i] = (int8_t)r;
            if (i < 16) low += r; else high += r;
        }
        scales[c] = d;
        half_sums[2 * c] = d * (float)low;
        half_sums[2 * c + 1] = d * (float)high;
    }
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

int lathe_block_dots_available(void) { return 1; }

#define INLINE static inline __attribute__((always_inline))

// F16C's conversion: exact, as every fp16 → fp32 conversion is.
INLINE float half_at(const uint8_t *p, int offset) {
    uint16_t bits;
    memcpy(&bits, p + offset, 2);
    return _cvtsh_ss(bits);
}

INLINE uint32_t u32_at(const uint8_t *p, int offset) {
    uint32_t bits;
    memcpy(&bits, p + offset, 4);
    return bits;
}

// Each type has two parts: `quants` gives the 32 unsigned integers of chunk c of a block, `scales` the scale and
// offset of each half of every chunk (2 per chunk), once per block.

// Element j is the low nibble of byte j, element j + 16 its high nibble (Q4_0, Q4_1, Q5_0, Q5_1).
INLINE __m256i nibbles(const uint8_t *p) {
    __m128i packed = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Byte j is 16 where bit j of `bits` is set: the fifth bit of a 5-bit quant.
INLINE __m256i fifth_bits(uint32_t bits) { return _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(16)); }

INLINE __m256i shifted_nibbles(const uint8_t *p, int shift) {
    __m256i bytes = _mm256_loadu_si256((const __m256i *)p);
    return _mm256_and_si256(_mm256_srl_epi16(bytes, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(0x0F));
}

// One chunk per block: a scale d (and an offset m) at the block's start.
INLINE void d_scales(const uint8_t *b, float *scales, float *offsets) {
    scales[0] = scales[1] = half_at(b, 0);
    offsets[0] = offsets[1] = 0;
}
INLINE void dm_scales(const uint8_t *b, float *scales, float *offsets) {
    scales[0] = scales[1] = half_at(b, 0);
    offsets[0] = offsets[1] = half_at(b, 2);
}

// Q8_0: d, 32 × int8; u = q + 128.
INLINE __m256i q8_0(const uint8_t *b, int c) {
    (void)c;
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(b + 2)), _mm256_set1_epi8((char)0x80));
}
INLINE __m256i q4_0(const uint8_t *b, int c) { (void)c; return nibbles(b + 2); }
INLINE __m256i q4_1(const uint8_t *b, int c) { (void)c; return nibbles(b + 4); }
INLINE __m256i q5_0(const uint8_t *b, int c) { (void)c; return _mm256_or_si256(nibbles(b + 6), fifth_bits(u32_at(b, 2))); }
INLINE __m256i q5_1(const uint8_t *b, int c) { (void)c; return _mm256_or_si256(nibbles(b + 8), fifth_bits(u32_at(b, 4))); }

// Q4_K/Q5_K: d, dmin, the eight 6-bit scales and mins packed in 12 bytes; y = (d·scale)·q − dmin·min.
INLINE void k_scales(const uint8_t *b, float *scales, float *offsets) {
    const uint8_t *p = b + 4;
    float d = half_at(b, 0), dmin = half_at(b, 2);
    for (int j = 0; j < 8; j++) {
        int scale, min;
        if (j < 4) {
            scale = p[j] & 0x3F;
            min = p[j + 4] & 0x3F;
        } else {
            scale = (p[j + 4] & 0x0F) | ((p[j - 4] >> 2) & 0x30);
            min = (p[j + 4] >> 4) | ((p[j] >> 2) & 0x30);
        }
        scales[2 * j] = scales[2 * j + 1] = d * (float)scale;
        offsets[2 * j] = offsets[2 * j + 1] = -(dmin * (float)min);
    }
}
// Sub-block 2i takes the low nibbles of quant bytes 32i..<32i+32, sub-block 2i+1 their high nibbles.
INLINE __m256i q4_K(const uint8_t *b, int sub) { return shifted_nibbles(b + 16 + (sub >> 1) * 32, (sub & 1) * 4); }
// Q5_K: bit `sub` of fifth-bit byte l is the fifth bit of element sub·32 + l.
INLINE __m256i q5_K(const uint8_t *b, int sub) {
    __m256i bits = _mm256_loadu_si256((const __m256i *)(b + 16));
    bits = _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(sub)), _mm256_set1_epi8(1));
    return _mm256_or_si256(shifted_nibbles(b + 48 + (sub >> 1) * 32, (sub & 1) * 4), _mm256_slli_epi16(bits, 4));
}

// Q6_K: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales (one per 16), d; u = q + 32.
INLINE __m256i q6_K(const uint8_t *b, int c) {
    int half = c >> 2, group = c & 3;
    __m256i low = shifted_nibbles(b + half * 64 + (group & 1) * 32, (group >> 1) * 4);
    __m256i high = _mm256_loadu_si256((const __m256i *)(b + 128 + half * 32));
    high = _mm256_and_si256(_mm256_srl_epi16(high, _mm_cvtsi32_si128(group * 2)), _mm256_set1_epi8(3));
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
}
INLINE void q6_K_scales(const uint8_t *b, float *scales, float *offsets) {
    float d = half_at(b, 208);
    const int8_t *s = (const int8_t *)(b + 192);
    for (int j = 0; j < 16; j++) scales[j] = d * (float)s[j];
    for (int j = 0; j < 16; j++) offsets[j] = 0;
}

typedef __m256i (*quants_t)(const uint8_t *, int);
typedef void (*scales_t)(const uint8_t *, float *, float *);

// Lanes 0–3 take s[0], 4–7 s[1], 8–11 s[2], 12–15 s[3]: vpdpbusd's lane l sums bytes 4l..4l+3.
INLINE __m512 spread(__m128 s) {
    const __m512i index = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(index, _mm512_castps128_ps512(s));
}

// The product for `count` (1–4, a constant after inlining) activation rows. Chunks go two at a time through one
// vpdpbusd, in groups that share their scales' decoding: two blocks of one chunk, or one block of eight.
INLINE void dot_rows(quants_t quants, scales_t block_scales, int chunks_per_block, int bytes_per_block,
                     int zero_point, int has_offset, const uint8_t *weight, int64_t row_bytes, int64_t row_begin,
                     int64_t row_end, int64_t columns, const int8_t *q, const float *scales,
                     const float *half_sums, int count, float *out, int64_t out_stride, int accumulate) {
    const int64_t chunks = columns / 32;
    const int group = chunks_per_block == 1 ? 2 : chunks_per_block;
    for (int64_t row = row_begin; row < row_end; row++) {
        const uint8_t *w = weight + row * row_bytes;
        __m512 acc[4];
        __m128 corrections[4];
        for (int i = 0; i < 4; i++) { acc[i] = _mm512_setzero_ps(); corrections[i] = _mm_setzero_ps(); }
        for (int64_t g = 0; g < chunks; g += group) {
            float weight_scales[16], weight_offsets[16];
            for (int k = 0; k < group / chunks_per_block; k++) {
                block_scales(w + (g / chunks_per_block + k) * bytes_per_block, weight_scales + 2 * chunks_per_block * k,
                             weight_offsets + 2 * chunks_per_block * k);
            }
            for (int c = 0; c < group; c += 2) {
                const int64_t j = g + c;
                const uint8_t *b0 = w + (j / chunks_per_block) * bytes_per_block;
                const uint8_t *b1 = w + ((j + 1) / chunks_per_block) * bytes_per_block;
                __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(quants(b0, (int)(j % chunks_per_block))),
                                               quants(b1, (int)((j + 1) % chunks_per_block)), 1);
                __m128 ws = _mm_loadu_ps(weight_scales + 2 * c);
                // o − z·s per half: what multiplies the half's sx·Σ q.
                __m128 sum_weights = _mm_setzero_ps();
                if (has_offset) sum_weights = _mm_loadu_ps(weight_offsets + 2 * c);
                if (zero_point) sum_weights = _mm_fnmadd_ps(_mm_set1_ps((float)zero_point), ws, sum_weights);
                for (int i = 0; i < count; i++) {
                    __m512i x = _mm512_loadu_si512((const void *)(q + i * columns + 32 * j));
                    __m512i products = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, x);
                    __m128 xs = _mm_castpd_ps(_mm_load_sd((const double *)(scales + i * chunks + j)));
                    __m128 s = _mm_mul_ps(ws, _mm_unpacklo_ps(xs, xs));
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(products), spread(s), acc[i]);
                    corrections[i] = _mm_fmadd_ps(sum_weights, _mm_loadu_ps(half_sums + 2 * (i * chunks + j)), corrections[i]);
                }
            }
        }
        for (int i = 0; i < count; i++) {
            __m128 c = corrections[i];
            c = _mm_add_ps(c, _mm_movehl_ps(c, c));
            float total = _mm512_reduce_add_ps(acc[i]) + _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
            float *o = out + i * out_stride + row;
            *o = accumulate ? *o + total : total;
        }
    }
}

int lathe_block_dot(int type, const void *weight, int64_t row_bytes, int64_t row_begin, int64_t row_end,
                    int64_t columns, const int8_t *q, const float *scales,
                    const float *half_sums, int64_t count, float *out, int64_t out_stride, int accumulate) {
    if ((columns / 32) % 2 != 0 || count < 1 || count > 4) return 0;
#define ROWS(quants, block_scales, chunks, bytes, zero, offset, n) \
    dot_rows(quants, block_scales, chunks, bytes, zero, offset, weight, row_bytes, row_begin, row_end, columns, q, \
             scales, half_sums, n, out, out_stride, accumulate)
#define TYPE(quants, block_scales, chunks, bytes, zero, offset) \
    switch (count) { \
    case 1: ROWS(quants, block_scales, chunks, bytes, zero, offset, 1); return 1; \
    case 2: ROWS(quants, block_scales, chunks, bytes, zero, offset, 2); return 1; \
    case 3: ROWS(quants, block_scales, chunks, bytes, zero, offset, 3); return 1; \
    default: ROWS(quants, block_scales, chunks, bytes, zero, offset, 4); return 1; \
    }
    switch (type) {  // ggml's type ids
    case 2: TYPE(q4_0, d_scales, 1, 18, 8, 0)
    case 3: TYPE(q4_1, dm_scales, 1, 20, 0, 1)
    case 6: TYPE(q5_0, d_scales, 1, 22, 16, 0)
    case 7: TYPE(q5_1, dm_scales, 1, 24, 0, 1)
    case 8: TYPE(q8_0, d_scales, 1, 34, 128, 0)
    case 12: TYPE(q4_K, k_scales, 8, 144, 0, 1)
    case 13: TYPE(q5_K, k_scales, 8, 176, 0, 1)
    case 14: TYPE(q6_K, q6_K_scales, 8, 210, 32, 0)
    default: return 0;
    }
#undef TYPE
#undef ROWS
}

#else

int lathe_block_dots_available(void) { return 0; }

int lathe_block_dot(int type, const void *weight, int64_t row_bytes, int64_t row_begin, int64_t row_end,
                    int64_t columns, const int8_t *q, const float *scales,
                    const float *half_sums, int64_t count, float *out, int64_t out_stride, int accumulate) {
    (void)type; (void)weight; (void)row_bytes; (void)row_begin; (void)row_end; (void)columns; (void)q;
    (void)scales; (void)half_sums; (void)count; (void)out; (void)out_stride; (void)accumulate;
    return 0;
}

#endif
