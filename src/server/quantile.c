/* quantile.c — see quantile.h. */
#include "quantile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rs_status rs_quantile_init(rs_quantile *q, size_t window, rs_err *err) {
    memset(q, 0, sizeof *q);
    if (window < 1 || window > (1u << 24)) return rs_errf(err, RS_ERR_INVALID_ARG, "window %zu outside [1, 2^24]", window);
    q->window = window;
    q->ring = malloc(window * sizeof(float));
    q->sorted = malloc(window * sizeof(float));
    if (!q->ring || !q->sorted) {
        rs_quantile_free(q);
        return rs_errf(err, RS_ERR_NOMEM, "no memory for a quantile window of %zu", window);
    }
    return RS_OK;
}

void rs_quantile_free(rs_quantile *q) {
    free(q->ring);
    free(q->sorted);
    memset(q, 0, sizeof *q);
}

/* First index i with sorted[i] >= x (or count). */
static size_t lower_bound(const float *a, size_t n, float x) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void rs_quantile_add(rs_quantile *q, float x) {
    if (isnan(x)) return;
    if (q->count == q->window) {
        /* Evict the oldest: it is in the sorted array at some position with
         * the same value (any equal one will do). */
        float old = q->ring[q->head];
        size_t i = lower_bound(q->sorted, q->count, old);
        memmove(q->sorted + i, q->sorted + i + 1, (q->count - i - 1) * sizeof(float));
        q->count--;
        q->ring[q->head] = x;
        q->head = (q->head + 1) % q->window;
    } else {
        q->ring[(q->head + q->count) % q->window] = x;
    }
    size_t i = lower_bound(q->sorted, q->count, x);
    memmove(q->sorted + i + 1, q->sorted + i, (q->count - i) * sizeof(float));
    q->sorted[i] = x;
    q->count++;
}

float rs_quantile_get(const rs_quantile *q, double p) {
    if (!q->count) return NAN;
    if (p <= 0) return q->sorted[0];
    if (p >= 1) return q->sorted[q->count - 1];
    double pos = p * (double)(q->count - 1);
    size_t i = (size_t)pos;
    double frac = pos - (double)i;
    if (i + 1 >= q->count) return q->sorted[q->count - 1];
    return (float)((double)q->sorted[i] + frac * ((double)q->sorted[i + 1] - (double)q->sorted[i]));
}

rs_status rs_online_init(rs_online *o, size_t window, size_t min_samples, rs_err *err) {
    memset(o, 0, sizeof *o);
    rs_status st = rs_quantile_init(&o->q, window, err);
    if (st != RS_OK) return st;
    o->min_samples = min_samples;
    pthread_mutex_init(&o->mu, NULL);
    return RS_OK;
}

void rs_online_free(rs_online *o) {
    if (!o->q.ring) return;
    pthread_mutex_destroy(&o->mu);
    rs_quantile_free(&o->q);
}

void rs_online_observe(rs_online *o, const float *scores, size_t n) {
    pthread_mutex_lock(&o->mu);
    for (size_t i = 0; i < n; i++) rs_quantile_add(&o->q, scores[i]);
    pthread_mutex_unlock(&o->mu);
}

float rs_online_threshold(rs_online *o, double share, float fallback) {
    size_t seen;
    return rs_online_threshold_seen(o, share, fallback, &seen);
}

float rs_online_threshold_seen(rs_online *o, double share, float fallback, size_t *seen) {
    pthread_mutex_lock(&o->mu);
    *seen = o->q.count;
    float t = o->q.count >= o->min_samples && o->q.count ? rs_quantile_get(&o->q, 1.0 - share) : fallback;
    pthread_mutex_unlock(&o->mu);
    return t;
}

size_t rs_online_count(rs_online *o) {
    pthread_mutex_lock(&o->mu);
    size_t n = o->q.count;
    pthread_mutex_unlock(&o->mu);
    return n;
}
