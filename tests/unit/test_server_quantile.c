/* test_server_quantile.c — the sliding-window quantile and the server's online
 * threshold mode (src/server/quantile.h).
 *
 *   - rs_quantile equals a brute-force sort of the last W values with numpy's
 *     linear interpolation, for windows 1..1000, duplicates and all p;
 *   - rs_online on synthetic drift: scores move from one distribution to
 *     another; decisions taken the way the server takes them (threshold read
 *     before the batch, the batch observed after) keep the strong share at the
 *     target in every steady block, stay within a bounded error during the
 *     drift, while a threshold calibrated once on the first distribution
 *     (RouteLLM's offline rule) misses the target by far after the drift;
 *   - the fallback before min_samples, share 1 (everything strong). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quantile.h"
#include "test_util.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift64*, uniform in [0, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static int cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* numpy.quantile(v, p), method "linear". */
static float brute(const float *vals, size_t n, double p) {
    float *s = malloc(n * sizeof *s);
    memcpy(s, vals, n * sizeof *s);
    qsort(s, n, sizeof *s, cmpf);
    double pos = p * (double)(n - 1);
    size_t i = (size_t)pos;
    double f = pos - (double)i;
    float r = i + 1 < n ? (float)((double)s[i] + f * ((double)s[i + 1] - (double)s[i])) : s[n - 1];
    free(s);
    return r;
}

static void test_exact(void) {
    const size_t windows[] = {1, 2, 7, 100, 1000};
    for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++) {
        const size_t W = windows[wi];
        rs_quantile q;
        rs_err err;
        CHECK(rs_quantile_init(&q, W, &err) == RS_OK);
        CHECK(isnan(rs_quantile_get(&q, 0.5)));
        const size_t N = 3 * W + 50;
        float *all = malloc(N * sizeof *all);
        int bad = 0;
        for (size_t t = 0; t < N; t++) {
            /* Coarse values so duplicates are common. */
            all[t] = (float)(floor(urand() * 20.0) / 20.0);
            rs_quantile_add(&q, all[t]);
            size_t n = t + 1 < W ? t + 1 : W;
            const float *win = all + (t + 1 - n);
            for (int k = 0; k <= 20; k++) {
                double p = k / 20.0;
                float got = rs_quantile_get(&q, p), want = brute(win, n, p);
                if (fabsf(got - want) > 1e-6f && bad++ < 5)
                    fprintf(stderr, "W=%zu t=%zu p=%.2f: got %g want %g\n", W, t, p, (double)got, (double)want);
            }
        }
        CHECK_MSG(bad == 0, "window %zu: %d mismatches", W, bad);
        rs_quantile_add(&q, NAN); /* ignored */
        CHECK(q.count == W);
        free(all);
        rs_quantile_free(&q);
    }
    rs_quantile q;
    rs_err err;
    CHECK(rs_quantile_init(&q, 0, &err) == RS_ERR_INVALID_ARG);
}

/* A score in (0, 1) around `center`: a logistic of a noisy logit. */
static float score_around(double center) {
    double u = urand() * 0.998 + 0.001;
    double logit = log(center / (1 - center)) + 1.2 * log(u / (1 - u)) * 0.6;
    return (float)(1.0 / (1.0 + exp(-logit)));
}

static void test_online_drift(void) {
    const double target = 0.3;
    const size_t W = 2000, batch = 32;
    rs_online o;
    rs_err err;
    CHECK(rs_online_init(&o, W, 200, &err) == RS_OK);
    CHECK(rs_online_threshold(&o, target, 0.42f) == 0.42f); /* no samples: fallback */

    /* Phase A (centre 0.2) for 10000, drift to 0.75 over 6000, phase B for 10000. */
    const size_t nA = 10016, nD = 6016, nB = 10016, N = nA + nD + nB; /* multiples of the batch */
    uint8_t *online_strong = malloc(N), *static_strong = malloc(N);
    float static_thr = NAN, buf[32];
    for (size_t t = 0; t < N; t += batch) {
        float thr = rs_online_threshold(&o, target, 0.5f); /* read before the batch, as the server does */
        for (size_t i = 0; i < batch; i++) {
            size_t k = t + i;
            double c = k < nA ? 0.2 : k < nA + nD ? 0.2 + 0.55 * (double)(k - nA) / (double)nD : 0.75;
            buf[i] = score_around(c);
            online_strong[k] = buf[i] >= thr;
            static_strong[k] = !isnan(static_thr) && buf[i] >= static_thr;
        }
        rs_online_observe(&o, buf, batch);
        /* RouteLLM's offline calibration, once, on the first window of phase A. */
        if (isnan(static_thr) && t + batch >= W) static_thr = rs_online_threshold(&o, target, 0.5f);
    }
    /* Shares over consecutive blocks of W decisions. */
    double worst_steady = 0, worst_drift = 0, static_B = 0;
    for (size_t b0 = W; b0 + W <= N; b0 += W) {
        double on = 0, st = 0;
        for (size_t k = b0; k < b0 + W; k++) {
            on += online_strong[k];
            st += static_strong[k];
        }
        on /= (double)W;
        st /= (double)W;
        const int in_drift = b0 + W > nA && b0 < nA + nD + W; /* the drift plus one window of lag */
        double dev = fabs(on - target);
        if (in_drift)
            worst_drift = dev > worst_drift ? dev : worst_drift;
        else
            worst_steady = dev > worst_steady ? dev : worst_steady;
        if (b0 >= nA + nD) static_B = st;
        printf("decisions %5zu..%5zu%s: online strong share %.3f, static threshold %.3f\n", b0, b0 + W,
               in_drift ? " (drift)" : "        ", on, st);
    }
    printf("target %.2f: worst steady deviation %.3f, worst during drift %.3f, static share after drift %.3f\n", target,
           worst_steady, worst_drift, static_B);
    CHECK_MSG(worst_steady < 0.04, "online share off target by %.3f in a steady phase", worst_steady);
    CHECK_MSG(worst_drift < 0.2, "online share off target by %.3f during the drift", worst_drift);
    CHECK_MSG(static_B > 0.8, "a fixed threshold should have drifted far from the target (share %.3f)", static_B);

    /* share 1: the threshold is the window's minimum, so everything is strong. */
    float t1 = rs_online_threshold(&o, 1.0, 0.5f);
    CHECK(t1 <= o.q.sorted[0] + 1e-7f);
    CHECK(rs_online_count(&o) == W);
    free(online_strong);
    free(static_strong);
    rs_online_free(&o);
}

int main(void) {
    test_exact();
    test_online_drift();
    return test_done("test_server_quantile");
}
