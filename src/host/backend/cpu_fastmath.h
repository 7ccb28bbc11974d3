/* cpu_fastmath.h — a vectorizable exp for the CPU backend's loops
 * (backend_cpu.c: softmax, GELU's erf; backend_cpu_llama.c: attention,
 * SwiGLU). libm's expf is a scalar call and was a quarter of the encoder's
 * CPU profile; this body has no branches, so GCC turns a loop that calls it
 * into AVX2/AVX-512 code. It is a static inline function in a header, by
 * necessity: a loop vectorizes only when it sees the body.
 *
 * exp(x) = 2^n * e^r with n = round(x / ln 2), |r| <= ln2 / 2 (Cody-Waite
 * split of ln 2) and a degree-6 polynomial for e^r: relative error < 2e-7.
 * Inputs below -87 flush to exp(-87) ~ 1.6e-38 (softmax arguments are <= 0;
 * -inf gives that too, which only ever multiplies zeros). */
#ifndef RS_CPU_FASTMATH_H
#define RS_CPU_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float rs_fast_expf(float x) {
    x = x < -87.0f ? -87.0f : x; /* ternaries, not fminf: they vectorize */
    x = x > 88.0f ? 88.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693145751953125f, x);
    r = fmaf(n, -1.428606765330187e-06f, r);
    float p = 1.0f / 720.0f;
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#endif
