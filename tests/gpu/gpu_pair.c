/* gpu_pair.c — see gpu_pair.h. */
#include "gpu_pair.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

rs_backend *cpu, *gpu;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

void seed_rng(uint64_t seed) { rng = seed; }

float urand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((rng * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 23) - 1.f;
}

int irand(int n) { return (int)(((urand() + 1.f) * 0.5f) * (float)n) % n; }

float bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

float *rand_vec(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; v && i < n; i++) v[i] = bf16_round(scale * urand());
    return v;
}

pair pair_new(const float *host, size_t n) {
    pair p = {NULL, NULL, n};
    CHECK(cpu->ops->alloc(cpu, n * sizeof(float), (void **)&p.c) == RS_OK);
    CHECK(gpu->ops->alloc(gpu, n * sizeof(float), (void **)&p.g) == RS_OK);
    float *nan = NULL;
    if (!host) {
        nan = malloc(n * sizeof *nan);
        for (size_t i = 0; nan && i < n; i++) nan[i] = NAN;
        host = nan;
    }
    if (host && p.c && p.g) {
        memcpy(p.c, host, n * sizeof(float));
        CHECK(gpu->ops->from_host(gpu, p.g, host, n) == RS_OK);
    }
    free(nan);
    return p;
}

void pair_free(pair *p) {
    cpu->ops->release(cpu, p->c);
    gpu->ops->release(gpu, p->g);
}

wpair wpair_new(int64_t rows, int64_t cols, float scale, float offset) {
    wpair w = {NULL, NULL, rand_vec((size_t)(rows * cols), scale)};
    for (int64_t i = 0; offset != 0.f && i < rows * cols; i++) w.host[i] = bf16_round(w.host[i] + offset);
    CHECK(cpu->ops->weight_load(cpu, w.host, rows, cols, &w.c) == RS_OK);
    CHECK(gpu->ops->weight_load(gpu, w.host, rows, cols, &w.g) == RS_OK);
    return w;
}

void wpair_free(wpair *w) {
    cpu->ops->weight_free(cpu, w->c);
    gpu->ops->weight_free(gpu, w->g);
    free(w->host);
}

double compare(const char *what, const pair *p, size_t n, double bound) {
    float *g = malloc(n * sizeof *g);
    if (!g) {
        CHECK_MSG(0, "%s: no memory", what);
        return INFINITY;
    }
    CHECK(gpu->ops->to_host(gpu, g, p->g, n) == RS_OK);
    double worst = 0, ref = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - (double)p->c[i]);
        if (!(d <= worst)) { /* NaN counts as worst */
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
        if (fabs(p->c[i]) > ref) ref = fabs(p->c[i]);
    }
    double e = worst / (ref > 1e-6 ? ref : 1e-6);
    printf("  %-66s n=%-9zu nerr %.2e (bound %.0e)\n", what, n, e, bound);
    CHECK_MSG(e <= bound, "%s: normalised error %.3e > %.0e (worst at %zu: gpu %g cpu %g)", what, e, bound, at,
              (double)g[at], (double)p->c[at]);
    free(g);
    return e;
}
