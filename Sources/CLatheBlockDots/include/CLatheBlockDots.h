#ifndef CLATHE_BLOCK_DOTS_H
#define CLATHE_BLOCK_DOTS_H
#include <stdint.h>

// Dot products of ggml weight blocks with int8-quantized activations (llama.cpp's scheme: each 32 activations
// rounded to int8 with one float scale), on AVX512-VNNI's byte dot products. Swift's SIMD types cannot emit
// vpdpbusd, hence C.

/// Whether the int8 dot products run here (AVX512-VNNI with BW and VL); without, `lathe_block_dot` returns 0.
int lathe_block_dots_available(void);

/// n (a multiple of 32) activations as int8: q[n]; per 32 values their scale (value ≈ scale · q), and per 16 values
/// scale · Σq (`half_sums`, two per 32).
void lathe_quantize_activations(const float *x, int64_t n, int8_t *q, float *scales, float *half_sums);

/// out[i · out_stride + row] (+)= Σ_k a_i[k] · W[row, k] for weight rows [row_begin, row_end) and the `count` (1–4)
/// quantized activation rows i (`columns` apart in q, `columns / 32` apart in scales, twice that in half_sums). `type` is the ggml type id. Returns 0 (writing nothing) for a
/// type it does not multiply or without VNNI.
int lathe_block_dot(int type, const void *weight, int64_t row_bytes, int64_t row_begin, int64_t row_end,
                    int64_t columns, const int8_t *q, const float *scales, const float *half_sums, int64_t count, float *out, int64_t out_stride, int accumulate);
#endif
