/* eval.c — RouteLLM's routing-quality metrics; see eval.h for the procedure
 * and why numpy's interp search is reproduced exactly. */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double rs_eval_quantile_sorted(const double *v, size_t n, double q) {
    /* numpy: virtual index (n - 1) * q; floor; gamma = index - floor; _lerp. */
    const double vi = (double)(n - 1) * q;
    if (vi <= 0) return v[0];
    if (vi >= (double)(n - 1)) return v[n - 1];
    const double fl = floor(vi);
    const size_t lo = (size_t)fl;
    const double a = v[lo], b = v[lo + 1], t = vi - fl;
    const double diff = b - a;
    return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

/* numpy/core/src/multiarray/compiled_base.c: binary_search_with_guess. */
#define LIKELY_IN_CACHE_SIZE 8
static long np_search(double key, const double *arr, long len, long guess) {
    long imin = 0, imax = len;
    if (key > arr[len - 1]) return len;
    if (key < arr[0]) return -1;
    if (len <= 4) {
        long i;
        for (i = 1; i < len && key >= arr[i]; ++i) {}
        return i - 1;
    }
    if (guess > len - 3) guess = len - 3;
    if (guess < 1) guess = 1;
    if (key < arr[guess]) {
        if (key < arr[guess - 1]) {
            imax = guess - 1;
            if (guess > LIKELY_IN_CACHE_SIZE && key >= arr[guess - LIKELY_IN_CACHE_SIZE])
                imin = guess - LIKELY_IN_CACHE_SIZE;
        } else {
            return guess - 1;
        }
    } else {
        if (key < arr[guess + 1]) return guess;
        if (key < arr[guess + 2]) return guess + 1;
        imin = guess + 2;
        if (guess < len - LIKELY_IN_CACHE_SIZE - 1 && key < arr[guess + LIKELY_IN_CACHE_SIZE])
            imax = guess + LIKELY_IN_CACHE_SIZE;
    }
    while (imin < imax) {
        const long imid = imin + ((imax - imin) >> 1);
        if (key >= arr[imid])
            imin = imid + 1;
        else
            imax = imid;
    }
    return imin - 1;
}

double rs_eval_np_interp(double x, const double *xp, const double *fp, size_t n) {
    const long len = (long)n;
    if (isnan(x)) return x;
    if (len == 1) return fp[0];
    const long j = np_search(x, xp, len, 0);
    if (j == -1) return fp[0];
    if (j == len) return fp[len - 1];
    if (j == len - 1) return fp[j];
    if (xp[j] == x) return fp[j];
    const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    double r = slope * (x - xp[j]) + fp[j];
    if (isnan(r)) {
        r = slope * (x - xp[j + 1]) + fp[j + 1];
        if (isnan(r) && fp[j] == fp[j + 1]) r = fp[j];
    }
    return r;
}

double rs_eval_trapz(const double *y, const double *x, size_t n) {
    /* numpy: (d * (y[1:] + y[:-1]) / 2.0).sum(); numpy sums pairwise, which
     * equals this left-to-right sum for fewer than 8 terms and differs in the
     * last bits otherwise (far below the 1e-6 the figures are printed at). */
    double s = 0;
    for (size_t i = 1; i < n; i++) s += (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2.0;
    return s;
}

double rs_eval_quality(const rs_eval_item *items, const unsigned char *strong, size_t n, double scale,
                       double *share) {
    double sum = 0, rows = 0, rows_strong = 0;
    for (size_t i = 0; i < n; i++) {
        if (strong[i]) {
            sum += items[i].sum_strong;
            rows += items[i].rows_strong;
            rows_strong += items[i].rows_strong;
        } else {
            sum += items[i].sum_weak;
            rows += items[i].rows_weak;
        }
    }
    if (share) *share = rows > 0 ? rows_strong / rows * 100 : 0;
    return rows > 0 ? sum / rows * scale : 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_double_desc(const void *a, const void *b) { return cmp_double(b, a); }

rs_status rs_eval_run(const rs_eval_item *items, const double *scores, size_t n, double scale,
                      rs_eval_result *out, rs_err *err) {
    memset(out, 0, sizeof *out);
    if (n == 0) return rs_errf(err, RS_ERR_INVALID_ARG, "no items to evaluate");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(scores[i])) return rs_errf(err, RS_ERR_INVALID_ARG, "score %zu is not finite", i);
    double *sorted = malloc(n * sizeof *sorted);
    unsigned char *strong = malloc(n);
    if (!sorted || !strong) {
        free(sorted);
        free(strong);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory for %zu scores", n);
    }
    memcpy(sorted, scores, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_double);
    out->n_items = n;

    /* Points in edge order (share descending), then a stable sort by share. */
    rs_eval_point pts[RS_EVAL_EDGES];
    for (int k = 0; k < RS_EVAL_EDGES; k++) {
        const double q = k == RS_EVAL_BINS ? 1.0 : (double)k * (1.0 / RS_EVAL_BINS); /* np.linspace */
        const double edge = rs_eval_quantile_sorted(sorted, n, q);
        for (size_t i = 0; i < n; i++) strong[i] = k == RS_EVAL_BINS ? scores[i] > edge : scores[i] >= edge;
        pts[k].edge = edge;
        pts[k].quality = rs_eval_quality(items, strong, n, scale, &pts[k].strong_share);
    }
    for (int k = 0; k < RS_EVAL_EDGES; k++) { /* insertion sort: stable */
        rs_eval_point p = pts[k];
        int j = k - 1;
        for (; j >= 0 && out->points[j].strong_share > p.strong_share; j--) out->points[j + 1] = out->points[j];
        out->points[j + 1] = p;
    }
    memset(strong, 0, n);
    out->weak_quality = rs_eval_quality(items, strong, n, scale, NULL);
    memset(strong, 1, n);
    out->strong_quality = rs_eval_quality(items, strong, n, scale, NULL);
    free(sorted);
    free(strong);

    double x[RS_EVAL_EDGES], y[RS_EVAL_EDGES], wy[RS_EVAL_EDGES], sy[RS_EVAL_EDGES];
    for (int k = 0; k < RS_EVAL_EDGES; k++) {
        x[k] = out->points[k].strong_share / 100;
        y[k] = out->points[k].quality;
        wy[k] = out->weak_quality;
        sy[k] = out->strong_quality;
    }
    const double W = out->weak_quality, S = out->strong_quality;
    out->auc = rs_eval_trapz(y, x, RS_EVAL_EDGES);
    const double weak_auc = rs_eval_trapz(wy, x, RS_EVAL_EDGES);
    const double strong_auc = rs_eval_trapz(sy, x, RS_EVAL_EDGES);
    out->apgr = (out->auc - weak_auc) / (strong_auc - weak_auc);
    double share[RS_EVAL_EDGES];
    for (int k = 0; k < RS_EVAL_EDGES; k++) share[k] = out->points[k].strong_share;
    out->cpt50 = rs_eval_np_interp(0.5 * (S - W) + W, y, share, RS_EVAL_EDGES);
    out->cpt80 = rs_eval_np_interp(0.8 * (S - W) + W, y, share, RS_EVAL_EDGES);
    return RS_OK;
}

double rs_eval_oracle_quality(const rs_eval_item *items, size_t n, double scale, double share,
                              double *gains) {
    double sum = 0, rows = 0;
    for (size_t i = 0; i < n; i++) {
        sum += items[i].sum_weak;
        rows += items[i].rows_weak;
        gains[i] = items[i].sum_strong - items[i].sum_weak;
    }
    qsort(gains, n, sizeof *gains, cmp_double_desc);
    double calls = share * (double)n;
    for (size_t i = 0; i < n && calls > 0 && gains[i] > 0; i++) {
        sum += gains[i] * (calls >= 1 ? 1 : calls);
        calls -= 1;
    }
    return rows > 0 ? sum / rows * scale : 0;
}
