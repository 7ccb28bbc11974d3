/* test_train.c — unit tests of src/host/train/train.c (the fit behind
 * `routescore train`), against closed forms and independent brute-force
 * renderings: a Cholesky system with a known solution, the unpenalised
 * logistic MLE on two points (w = ln 3, b = 0), the bias-only optimum
 * (logit of the weighted rate), the optimality condition (the gradient,
 * computed here from scratch, vanishes), weights as copies, affine
 * invariance of the unpenalised fit under standardisation, the weighted AUC
 * against all pairs, and the weighted quantile against eval.c's numpy
 * quantile of the duplicated rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "test_util.h"
#include "train.h"

static int near(double a, double b, double tol) { return fabs(a - b) <= tol * (1 + fabs(b)); }

/* xorshift: a fixed stream for every run */
static unsigned long long rng = 88172645463325252ULL;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void test_cholesky(void) {
    /* A = L L^T, L = [[2,0,0],[1,3,0],[-1,0.5,1.5]]; x = [1,-2,3] */
    const double L[9] = {2, 0, 0, 1, 3, 0, -1, 0.5, 1.5}, x[3] = {1, -2, 3};
    double a[9] = {0}, b[3] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) a[i * 3 + j] += L[i * 3 + k] * L[j * 3 + k];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) b[i] += a[i * 3 + j] * x[j];
    CHECK(rs_train_cholesky_solve(a, b, 3) == 0);
    for (int i = 0; i < 3; i++) CHECK_MSG(near(b[i], x[i], 1e-12), "x[%d] = %.17g", i, b[i]);
    for (int i = 0; i < 3; i++) /* the factor it left in the lower triangle */
        for (int j = 0; j <= i; j++) CHECK(near(a[i * 3 + j], L[i * 3 + j], 1e-12));
    double not_pd[4] = {1, 2, 2, 1}, c[2] = {1, 1};
    CHECK(rs_train_cholesky_solve(not_pd, c, 2) == -1);
}

typedef struct rows_buf {
    float *emb;
    double *lenf, *weight;
    int *label, *heldout;
    rs_train_rows r;
} rows_buf;

static void rows_alloc(rows_buf *b, size_t n, int d, int length_term) {
    b->emb = calloc(n * (size_t)d + 1, sizeof *b->emb);
    b->lenf = calloc(n + 1, sizeof *b->lenf);
    b->weight = calloc(n + 1, sizeof *b->weight);
    b->label = calloc(n + 1, sizeof *b->label);
    b->heldout = calloc(n + 1, sizeof *b->heldout);
    b->r = (rs_train_rows){.n = n, .d = d, .nf = d + (length_term ? 1 : 0), .emb = b->emb, .lenf = b->lenf,
                           .label = b->label, .weight = b->weight, .heldout = b->heldout};
    for (size_t i = 0; i < n; i++) b->weight[i] = 1.0;
}

static void rows_free(rows_buf *b) {
    free(b->emb);
    free(b->lenf);
    free(b->weight);
    free(b->label);
    free(b->heldout);
}

/* Random rows: labels drawn from a logistic model (not separable). */
static void rows_random(rows_buf *b, size_t n, int d, int length_term, int weighted, int holdout) {
    rows_alloc(b, n, d, length_term);
    for (size_t i = 0; i < n; i++) {
        double z = 0.3;
        for (int k = 0; k < d; k++) {
            double e = 2 * urand() - 1 + (k == 0 ? 5.0 : 0.0); /* column 0 off-centre: standardising matters */
            b->emb[i * (size_t)d + (size_t)k] = (float)e;
            z += (k % 2 ? -1.0 : 1.0) * e * (k == 0 ? 0.2 : 1.0);
        }
        b->lenf[i] = 3 * urand() - 1.5;
        z += 0.8 * b->lenf[i] - 1.0;
        b->label[i] = urand() < 1.0 / (1.0 + exp(-z));
        if (weighted) b->weight[i] = 1 + (double)(int)(urand() * 3);
        b->heldout[i] = holdout && i % 5 == 0;
    }
}

static double start_bias(const rs_train_rows *r) {
    rs_train_split sp = rs_train_split_of(r);
    return log(sp.pos_train / (1 - sp.pos_train));
}

static void test_fit_two_points(void) {
    /* x = +1: 3 positives, 1 negative; x = -1: the mirror. The MLE has
     * p(+1) = 3/4, p(-1) = 1/4: w = ln 3, b = 0. Weights 3 and 1 on two rows
     * per point must give the same. */
    rows_buf b;
    rows_alloc(&b, 4, 1, 0);
    const float x[4] = {1, 1, -1, -1};
    const int y[4] = {1, 0, 1, 0};
    const double w[4] = {3, 1, 1, 3};
    for (int i = 0; i < 4; i++) {
        b.emb[i] = x[i];
        b.label[i] = y[i];
        b.weight[i] = w[i];
    }
    double theta[2] = {0, start_bias(&b.r)};
    int iters = -1;
    double g = NAN;
    rs_err err = {{0}};
    CHECK(rs_train_fit(&b.r, 0.0, theta, &iters, &g, &err) == RS_OK);
    CHECK_MSG(near(theta[0], log(3.0), 1e-9), "w = %.17g, want ln 3", theta[0]);
    CHECK_MSG(fabs(theta[1]) < 1e-9, "b = %.17g", theta[1]);
    CHECK(g < RS_TRAIN_GRAD_TOL && iters > 0 && iters < RS_TRAIN_MAX_ITERS);
    /* the loss there: 8 * H(3/4) in nats */
    const double want = -8 * (0.75 * log(0.75) + 0.25 * log(0.25));
    CHECK_MSG(near(rs_train_loss(&b.r, theta, 0.0), want, 1e-12), "loss %.17g want %.17g",
              rs_train_loss(&b.r, theta, 0.0), want);
    rows_free(&b);
}

static void test_fit_bias_only(void) {
    /* All embeddings 0: w stays 0 (its gradient is l2 w), b = logit of the
     * weighted positive rate of the training rows; held-out rows ignored. */
    rows_buf b;
    rows_alloc(&b, 50, 3, 0);
    double pos = 0, tot = 0;
    for (size_t i = 0; i < 50; i++) {
        b.label[i] = i % 3 == 0;
        b.weight[i] = 0.5 + (double)(i % 4);
        b.heldout[i] = i % 7 == 0;
        if (!b.heldout[i]) {
            tot += b.weight[i];
            pos += b.label[i] ? b.weight[i] : 0;
        }
    }
    double theta[4] = {0, 0, 0, 0};
    int iters;
    double g;
    rs_err err = {{0}};
    CHECK(rs_train_fit(&b.r, 1.0, theta, &iters, &g, &err) == RS_OK);
    CHECK_MSG(near(theta[3], log(pos / (tot - pos)), 1e-9), "b = %.17g want %.17g", theta[3], log(pos / (tot - pos)));
    for (int k = 0; k < 3; k++) CHECK(theta[k] == 0);
    rs_train_split sp = rs_train_split_of(&b.r);
    CHECK(sp.n_train + sp.n_held == 50 && sp.n_held == 8 && sp.weighted);
    CHECK(near(sp.w_train, tot, 1e-15) && near(sp.pos_train, pos / tot, 1e-15));
    rows_free(&b);
}

/* The gradient of the penalised loss, from scratch. */
static double grad_norm(const rs_train_rows *r, const double *theta, double l2) {
    const int m = r->nf + 1;
    double *g = calloc((size_t)m, sizeof *g), s = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->heldout[i]) continue;
        double z = theta[r->nf];
        for (int k = 0; k < r->d; k++) z += r->emb[i * (size_t)r->d + (size_t)k] * theta[k];
        if (r->nf > r->d) z += theta[r->d] * r->lenf[i];
        double p = 1.0 / (1.0 + exp(-z)), v = r->weight[i] * (p - r->label[i]);
        for (int k = 0; k < r->d; k++) g[k] += v * r->emb[i * (size_t)r->d + (size_t)k];
        if (r->nf > r->d) g[r->d] += v * r->lenf[i];
        g[r->nf] += v;
    }
    for (int k = 0; k < r->nf; k++) g[k] += l2 * theta[k];
    for (int k = 0; k < m; k++) s += g[k] * g[k];
    free(g);
    return sqrt(s);
}

static void test_fit_optimum(void) {
    rows_buf b;
    rows_random(&b, 400, 6, 1, 1, 1);
    double theta[8] = {0}, again[8] = {0};
    theta[7] = start_bias(&b.r);
    int iters;
    double g;
    rs_err err = {{0}};
    CHECK(rs_train_fit(&b.r, 0.7, theta, &iters, &g, &err) == RS_OK);
    double gn = grad_norm(&b.r, theta, 0.7);
    CHECK_MSG(gn < 1e-5, "|grad| = %.3g at the returned optimum (fit says %.3g)", gn, g);
    CHECK(fabs(theta[6]) > 0.1); /* the length term was fitted (true weight 0.8) */
    /* held-out rows do not count: flip their labels, same fit */
    for (size_t i = 0; i < b.r.n; i++)
        if (b.heldout[i]) b.label[i] = !b.label[i];
    memcpy(again, theta, sizeof again);
    again[0] += 0.5; /* another start */
    CHECK(rs_train_fit(&b.r, 0.7, again, &iters, &g, &err) == RS_OK);
    for (int k = 0; k < 8; k++) CHECK_MSG(near(again[k], theta[k], 1e-7), "theta[%d] %.17g vs %.17g", k, again[k], theta[k]);

    /* integer weights = duplicated rows */
    size_t n2 = 0;
    for (size_t i = 0; i < b.r.n; i++) n2 += (size_t)b.weight[i];
    rows_buf c;
    rows_alloc(&c, n2, 6, 1);
    size_t j = 0;
    for (size_t i = 0; i < b.r.n; i++)
        for (int k = 0; k < (int)b.weight[i]; k++, j++) {
            memcpy(c.emb + j * 6, b.emb + i * 6, 6 * sizeof *c.emb);
            c.lenf[j] = b.lenf[i];
            c.label[j] = b.label[i];
            c.heldout[j] = b.heldout[i];
        }
    double dup[8] = {0};
    dup[7] = start_bias(&c.r);
    CHECK(rs_train_fit(&c.r, 0.7, dup, &iters, &g, &err) == RS_OK);
    for (int k = 0; k < 8; k++) CHECK_MSG(near(dup[k], theta[k], 1e-7), "dup theta[%d] %.17g vs %.17g", k, dup[k], theta[k]);
    rows_free(&c);
    rows_free(&b);
}

static void test_standardize(void) {
    rows_buf b;
    rows_random(&b, 300, 4, 0, 0, 1);
    for (size_t i = 0; i < b.r.n; i++) b.emb[i * 4 + 3] = 2.5f; /* a constant column */
    float *z = NULL;
    double *mu = NULL, *sd = NULL;
    rs_err err = {{0}};
    CHECK(rs_train_standardize(&b.r, &z, &mu, &sd, &err) == RS_OK);
    for (int k = 0; k < 4; k++) { /* moments over the training rows, population sd */
        double m = 0, v = 0, n = 0;
        for (size_t i = 0; i < b.r.n; i++)
            if (!b.heldout[i]) m += b.emb[i * 4 + (size_t)k], n++;
        m /= n;
        for (size_t i = 0; i < b.r.n; i++)
            if (!b.heldout[i]) v += (b.emb[i * 4 + (size_t)k] - m) * (b.emb[i * 4 + (size_t)k] - m);
        double s = k == 3 ? 1.0 : sqrt(v / n);
        CHECK_MSG(near(mu[k], m, 1e-12) && near(sd[k], s, 1e-12), "column %d: mu %.17g/%.17g sd %.17g/%.17g", k, mu[k],
                  m, sd[k], s);
        for (size_t i = 0; i < b.r.n; i++)
            CHECK(near(z[i * 4 + (size_t)k], (float)((b.emb[i * 4 + (size_t)k] - m) / s), 1e-6));
    }
    /* Unpenalised, the optimum is affine-invariant: a fit on z folded back
     * equals the fit on the raw rows (column 3 is constant: drop it by
     * fitting on 3 columns, the bias carries it). */
    rows_buf r3, z3;
    rows_alloc(&r3, b.r.n, 3, 0);
    rows_alloc(&z3, b.r.n, 3, 0);
    for (size_t i = 0; i < b.r.n; i++) {
        for (int k = 0; k < 3; k++) {
            r3.emb[i * 3 + (size_t)k] = b.emb[i * 4 + (size_t)k];
            z3.emb[i * 3 + (size_t)k] = z[i * 4 + (size_t)k];
        }
        r3.label[i] = z3.label[i] = b.label[i];
        r3.heldout[i] = z3.heldout[i] = b.heldout[i];
    }
    double tr[4] = {0, 0, 0, start_bias(&r3.r)}, tz[4] = {0, 0, 0, start_bias(&z3.r)};
    int it;
    double g;
    CHECK(rs_train_fit(&r3.r, 0.0, tr, &it, &g, &err) == RS_OK);
    CHECK(rs_train_fit(&z3.r, 0.0, tz, &it, &g, &err) == RS_OK);
    rs_train_fold_standardization(3, 3, tz, mu, sd);
    /* z was rounded to float: agreement to that precision */
    for (int k = 0; k < 4; k++) CHECK_MSG(near(tz[k], tr[k], 1e-5), "theta[%d] folded %.9g raw %.9g", k, tz[k], tr[k]);
    free(z);
    free(mu);
    free(sd);
    rows_free(&r3);
    rows_free(&z3);
    rows_free(&b);
}

static void test_auc_evaluate(void) {
    enum { N = 300 };
    rs_train_scored s[N];
    double pairs = 0, wp = 0, wn = 0, ll = 0, br = 0, wt = 0;
    for (int i = 0; i < N; i++) {
        s[i] = (rs_train_scored){.p = round(urand() * 10) / 10, .w = 0.5 + urand(), .y = urand() < 0.4};
        if (i % 2) s[i].p = s[i].y ? fmin(1, s[i].p + 0.2) : s[i].p; /* some signal, and ties */
        double p = fmin(fmax(s[i].p, 1e-15), 1 - 1e-15);
        ll -= s[i].w * (s[i].y ? log(p) : log(1 - p));
        br += s[i].w * (s[i].p - s[i].y) * (s[i].p - s[i].y);
        wt += s[i].w;
    }
    for (int i = 0; i < N; i++) {
        if (!s[i].y) {
            wn += s[i].w;
            continue;
        }
        wp += s[i].w;
        for (int j = 0; j < N; j++)
            if (!s[j].y) pairs += s[i].w * s[j].w * (s[i].p > s[j].p ? 1.0 : s[i].p == s[j].p ? 0.5 : 0.0);
    }
    rs_train_metrics m = rs_train_evaluate(s, N);
    CHECK_MSG(near(m.auc, pairs / (wp * wn), 1e-12), "auc %.17g want %.17g", m.auc, pairs / (wp * wn));
    CHECK(near(m.logloss, ll / wt, 1e-12) && near(m.brier, br / wt, 1e-12));
    rs_train_scored sep[4] = {{0.9, 1, 1}, {0.1, 1, 0}, {0.8, 2, 1}, {0.2, 1, 0}};
    CHECK(rs_train_auc(sep, 4) == 1.0);
    for (int i = 0; i < 4; i++) sep[i].y = !sep[i].y;
    CHECK(rs_train_auc(sep, 4) == 0.0);
    for (int i = 0; i < 4; i++) sep[i].y = 1;
    CHECK(isnan(rs_train_auc(sep, 4)));
    m = rs_train_evaluate(sep, 0);
    CHECK(isnan(m.logloss) && isnan(m.auc) && isnan(m.brier));
}

static int dbl_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_quantile(void) {
    enum { N = 37 };
    rs_train_scored s[N];
    double flat[N * 4];
    size_t nf = 0;
    for (int i = 0; i < N; i++) {
        s[i] = (rs_train_scored){.p = urand(), .w = 1 + (double)(int)(urand() * 4), .y = 0};
        for (int k = 0; k < (int)s[i].w; k++) flat[nf++] = s[i].p;
    }
    qsort(flat, nf, sizeof *flat, dbl_cmp);
    static const double qs[] = {0.0, 0.1, 0.25, 0.5, 0.5123, 0.77, 0.9, 1.0};
    for (size_t k = 0; k < sizeof qs / sizeof *qs; k++) {
        double got = rs_train_quantile(s, N, qs[k]), want = rs_eval_quantile_sorted(flat, nf, qs[k]);
        CHECK_MSG(near(got, want, 1e-12), "q %g: %.17g want %.17g (duplicated rows)", qs[k], got, want);
    }
    /* unit weights: numpy's own quantile of the scores */
    for (int i = 0; i < N; i++) {
        s[i].w = 1;
        flat[i] = s[i].p;
    }
    qsort(flat, N, sizeof *flat, dbl_cmp);
    for (size_t k = 0; k < sizeof qs / sizeof *qs; k++)
        CHECK(near(rs_train_quantile(s, N, qs[k]), rs_eval_quantile_sorted(flat, N, qs[k]), 1e-12));
    CHECK(isnan(rs_train_quantile(s, 0, 0.5)));
}

int main(void) {
    test_cholesky();
    test_fit_two_points();
    test_fit_bias_only();
    test_fit_optimum();
    test_standardize();
    test_auc_evaluate();
    test_quantile();
    return test_done("test_train");
}
