/* gpu_pair.h — what the GPU op tests (test_gpu_ops.c, test_gpu_llama_ops.c)
 * share: the CPU backend (the reference) and the CUDA backend side by side,
 * seeded bf16-representable random data, activation buffers and weights that
 * hold the same values on both, and the normalised-error comparison. Each
 * test creates `cpu` and `gpu` itself. */
#ifndef RS_TEST_GPU_PAIR_H
#define RS_TEST_GPU_PAIR_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

extern rs_backend *cpu, *gpu;

void seed_rng(uint64_t seed);
float urand(void);          /* xorshift64*, uniform in [-1, 1) */
int irand(int n);           /* in [0, n) */
float bf16_round(float f);  /* to the nearest bf16 (ties to even), as float */
float *rand_vec(size_t n, float scale); /* n bf16-representable values in [-scale, scale) */

/* An activation buffer on each backend holding the same host values (NaN
 * when host is NULL, so unwritten outputs show). */
typedef struct pair {
    float *c, *g; /* CPU buffer (host), GPU buffer (device, bf16) */
    size_t n;
} pair;

pair pair_new(const float *host, size_t n);
void pair_free(pair *p);

/* A random weight (rows x cols, values scale * U[-1, 1) + offset, bf16) on
 * both backends. */
typedef struct wpair {
    rs_bweight *c, *g;
    float *host; /* kept alive: the CPU backend points into it */
} wpair;

wpair wpair_new(int64_t rows, int64_t cols, float scale, float offset);
void wpair_free(wpair *w);

/* Normalised error (max |gpu - cpu| / max |cpu|) of the first n elements of
 * p; prints it and fails the test above bound. */
double compare(const char *what, const pair *p, size_t n, double bound);

#endif
