/* quantile.h — exact quantiles over a sliding window of recent scores, and the
 * online threshold built on it.
 *
 * RouteLLM calibrates a router's threshold once, as the (1 - f) quantile of
 * its scores on a traffic sample, so that a share f of prompts goes to the
 * strong model. That share only holds while live traffic looks like the
 * sample. The online mode keeps it on live traffic: the threshold is the
 * (1 - f) quantile (linear interpolation, numpy's default) of the last W
 * scores the router produced. When the score distribution drifts, the
 * threshold follows within W prompts.
 *
 * rs_quantile keeps the window twice: a ring in arrival order (to know which
 * value leaves) and a sorted array (to read any quantile in O(1)). An insert
 * or eviction is a binary search plus a memmove, O(W) bytes moved: for
 * W = 4096 that is ~16 KB per score, far below a forward pass.
 *
 * Threads: rs_quantile is not thread-safe. rs_online wraps it with a mutex:
 * the engine worker observes, request threads read thresholds. */
#ifndef RS_QUANTILE_H
#define RS_QUANTILE_H

#include <pthread.h>
#include <stddef.h>

#include "status.h"

typedef struct rs_quantile {
    size_t window; /* capacity W */
    size_t count;  /* values held, <= W */
    size_t head;   /* ring index of the oldest value */
    float *ring;   /* (W) arrival order */
    float *sorted; /* (W) ascending, first count valid */
} rs_quantile;

rs_status rs_quantile_init(rs_quantile *q, size_t window, rs_err *err);
void rs_quantile_free(rs_quantile *q);
/* Adds x (NaN is ignored), evicting the oldest value when the window is full. */
void rs_quantile_add(rs_quantile *q, float x);
/* The p-quantile (p in [0, 1]) of the window with linear interpolation
 * between order statistics; NaN when empty. */
float rs_quantile_get(const rs_quantile *q, double p);

/* The online threshold of one router. */
typedef struct rs_online {
    pthread_mutex_t mu;
    rs_quantile q;
    size_t min_samples; /* below this many scores, thresholds fall back */
} rs_online;

rs_status rs_online_init(rs_online *o, size_t window, size_t min_samples, rs_err *err);
void rs_online_free(rs_online *o);
void rs_online_observe(rs_online *o, const float *scores, size_t n);
/* The threshold that sends a share `share` (in (0, 1]) of recent traffic to
 * the strong model: the (1 - share) quantile of the window; `fallback` until
 * min_samples scores have been seen. */
float rs_online_threshold(rs_online *o, double share, float fallback);
/* The same, and *seen gets the number of scores in the window at that
 * moment, so that a caller can tell a live quantile from the fallback. */
float rs_online_threshold_seen(rs_online *o, double share, float fallback, size_t *seen);
size_t rs_online_count(rs_online *o);

#endif
