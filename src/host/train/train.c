/* train.c — fitting an mf router head (train.h): weighted, L2-regularised
 * logistic regression by Newton's method, standardisation, and the metrics.
 *
 * Choices, and why:
 *   - Newton, not SGD: d is a few hundred, so the (d+1)^2 Hessian is small,
 *     and Newton converges to the exact optimum in ~10 steps with no learning
 *     rate to tune; the result is deterministic for a given input.
 *   - Loss = sum of per-example log-losses, each times the row's weight, +
 *     (l2/2)(|w|^2 + lw^2), bias unpenalised. A row of weight k fits exactly
 *     as k copies of it would (the loss, gradient and Hessian are the same
 *     sums), and so do the metrics and the quantile, which count a row k
 *     times. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"


double rs_train_sigmoid(double z) {
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* log(1 + exp(z)) without overflow. */
static double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }

static double dot_row(const float *e, const double *w, int d) {
    double s = 0;
    for (int k = 0; k < d; k++) s += (double)e[k] * w[k];
    return s;
}

/* The logit of row i under theta = [w (d), lw (with the length term), b]. */
double rs_train_row_logit(const rs_train_rows *t, size_t i, const double *theta) {
    double z = dot_row(t->emb + i * (size_t)t->d, theta, t->d) + theta[t->nf];
    if (t->nf > t->d) z += theta[t->d] * t->lenf[i];
    return z;
}

/* Weighted summed loss of theta over the training rows. */
double rs_train_loss(const rs_train_rows *t, const double *theta, double l2) {
    double loss = 0;
#pragma omp parallel for reduction(+ : loss) schedule(static)
    for (size_t i = 0; i < t->n; i++) {
        if (t->heldout[i]) continue;
        double z = rs_train_row_logit(t, i, theta);
        loss += t->weight[i] * (softplus(z) - (t->label[i] ? z : 0.0));
    }
    double ww = 0;
    for (int k = 0; k < t->nf; k++) ww += theta[k] * theta[k];
    return loss + 0.5 * l2 * ww;
}

/* In-place Cholesky of the m x m SPD matrix a (lower triangle used), then
 * solves a x = b into b. 0 on success, -1 when a is not positive definite. */
int rs_train_cholesky_solve(double *a, double *b, int m) {
    for (int j = 0; j < m; j++) {
        double s = a[(size_t)j * m + j];
        for (int k = 0; k < j; k++) s -= a[(size_t)j * m + k] * a[(size_t)j * m + k];
        if (!(s > 0)) return -1;
        double l = sqrt(s);
        a[(size_t)j * m + j] = l;
        for (int i = j + 1; i < m; i++) {
            double v = a[(size_t)i * m + j];
            for (int k = 0; k < j; k++) v -= a[(size_t)i * m + k] * a[(size_t)j * m + k];
            a[(size_t)i * m + j] = v / l;
        }
    }
    for (int i = 0; i < m; i++) { /* L y = b */
        double v = b[i];
        for (int k = 0; k < i; k++) v -= a[(size_t)i * m + k] * b[k];
        b[i] = v / a[(size_t)i * m + i];
    }
    for (int i = m - 1; i >= 0; i--) { /* L^T x = y */
        double v = b[i];
        for (int k = i + 1; k < m; k++) v -= a[(size_t)k * m + i] * b[k];
        b[i] = v / a[(size_t)i * m + i];
    }
    return 0;
}

/* Newton's method with backtracking on the summed loss. theta [nf + 1]
 * in/out (starts at w = 0, lw = 0, b = logit of the weighted positive rate). */
rs_status rs_train_fit(const rs_train_rows *t, double l2, double *theta, int *iters, double *gnorm_out, rs_err *err) {
    const int d = t->d, nf = t->nf, m = nf + 1;
    double *H = malloc((size_t)m * m * sizeof *H);
    double *g = malloc((size_t)m * sizeof *g);
    double *step = malloc((size_t)m * sizeof *step);
    double *trial = malloc((size_t)m * sizeof *trial);
    rs_status st = RS_OK;
    if (!H || !g || !step || !trial) {
        st = rs_errf(err, RS_ERR_NOMEM, "out of memory for the Hessian");
        goto out;
    }
    double loss = rs_train_loss(t, theta, l2);
    double gnorm = INFINITY;
    int it;
    for (it = 0; it < RS_TRAIN_MAX_ITERS; it++) {
        memset(H, 0, (size_t)m * m * sizeof *H);
        memset(g, 0, (size_t)m * sizeof *g);
        /* Lower triangle of sum_i v_i p_i (1 - p_i) x_i x_i^T with v_i the
         * row's weight and x_i = [e_i, lenf_i (length term only), 1]; each
         * thread accumulates a private copy, merged under a lock. */
#pragma omp parallel
        {
            double *Hl = calloc((size_t)m * m, sizeof *Hl), *gl = calloc((size_t)m, sizeof *gl);
            double x[m];
            if (Hl && gl) {
#pragma omp for schedule(static)
                for (size_t i = 0; i < t->n; i++) {
                    if (t->heldout[i]) continue;
                    const float *e = t->emb + i * (size_t)d;
                    for (int k = 0; k < d; k++) x[k] = e[k];
                    if (nf > d) x[d] = t->lenf[i];
                    x[nf] = 1.0;
                    double p = rs_train_sigmoid(rs_train_row_logit(t, i, theta)), v = t->weight[i];
                    double r = v * (p - t->label[i]), s = v * p * (1.0 - p);
                    for (int a = 0; a < m; a++) {
                        gl[a] += r * x[a];
                        double sa = s * x[a];
                        double *row = Hl + (size_t)a * m;
                        for (int c = 0; c <= a; c++) row[c] += sa * x[c];
                    }
                }
            }
#pragma omp critical
            {
                if (!Hl || !gl) {
                    H[0] = NAN; /* reported below */
                } else {
                    for (size_t k = 0; k < (size_t)m * m; k++) H[k] += Hl[k];
                    for (int k = 0; k < m; k++) g[k] += gl[k];
                }
            }
            free(Hl);
            free(gl);
        }
        if (isnan(H[0])) {
            st = rs_errf(err, RS_ERR_NOMEM, "out of memory for the Hessian");
            goto out;
        }
        for (int k = 0; k < nf; k++) {
            g[k] += l2 * theta[k];
            H[(size_t)k * m + k] += l2;
        }
        gnorm = 0;
        for (int k = 0; k < m; k++) gnorm += g[k] * g[k];
        gnorm = sqrt(gnorm);
        if (gnorm < RS_TRAIN_GRAD_TOL) break;
        memcpy(step, g, (size_t)m * sizeof *step);
        /* Without a penalty a separable set has no optimum and H goes
         * singular; a tiny ridge keeps the step defined. */
        if (rs_train_cholesky_solve(H, step, m) != 0) {
            for (int k = 0; k < m; k++) step[k] = g[k];
        }
        double t_step = 1.0, new_loss = loss;
        for (int ls = 0; ls < 40; ls++, t_step *= 0.5) {
            for (int k = 0; k < m; k++) trial[k] = theta[k] - t_step * step[k];
            new_loss = rs_train_loss(t, trial, l2);
            if (new_loss <= loss) break;
        }
        if (!(new_loss <= loss)) break; /* no descent left: at the optimum to rounding */
        memcpy(theta, trial, (size_t)m * sizeof *theta);
        if (loss - new_loss == 0 && t_step < 1.0) break;
        loss = new_loss;
    }
    *iters = it;
    *gnorm_out = gnorm;
out:
    free(H);
    free(g);
    free(step);
    free(trial);
    return st;
}

rs_status rs_train_standardize(const rs_train_rows *t, float **z_out, double **mu_out, double **sd_out, rs_err *err) {
    const int d = t->d;
    double *mu = calloc((size_t)d, sizeof *mu), *sd = calloc((size_t)d, sizeof *sd);
    float *z = malloc(t->n * (size_t)d * sizeof *z + 1);
    if (!mu || !sd || !z) {
        free(mu);
        free(sd);
        free(z);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory for the standardized embeddings");
    }
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->heldout[i]) continue;
        const float *e = t->emb + i * (size_t)d;
        for (int k = 0; k < d; k++) mu[k] += e[k];
        n++;
    }
    for (int k = 0; k < d; k++) mu[k] /= (double)n;
    for (size_t i = 0; i < t->n; i++) {
        if (t->heldout[i]) continue;
        const float *e = t->emb + i * (size_t)d;
        for (int k = 0; k < d; k++) sd[k] += (e[k] - mu[k]) * (e[k] - mu[k]);
    }
    for (int k = 0; k < d; k++) {
        sd[k] = sqrt(sd[k] / (double)n);
        if (!(sd[k] > 0)) sd[k] = 1.0;
    }
    for (size_t i = 0; i < t->n; i++)
        for (int k = 0; k < d; k++) {
            const size_t j = i * (size_t)d + (size_t)k;
            z[j] = (float)((t->emb[j] - mu[k]) / sd[k]);
        }
    *z_out = z;
    *mu_out = mu;
    *sd_out = sd;
    return RS_OK;
}

void rs_train_fold_standardization(int d, int nf, double *theta, const double *mu, const double *sd) {
    for (int k = 0; k < d; k++) {
        theta[k] /= sd[k];
        theta[nf] -= theta[k] * mu[k];
    }
}

rs_train_split rs_train_split_of(const rs_train_rows *t) {
    rs_train_split sp = {0};
    for (size_t i = 0; i < t->n; i++) {
        double w = t->weight[i];
        sp.weighted |= w != 1.0;
        if (t->heldout[i]) {
            sp.n_held++;
            sp.w_held += w;
            sp.pos_held += t->label[i] ? w : 0.0;
        } else {
            sp.n_train++;
            sp.w_train += w;
            sp.pos_train += t->label[i] ? w : 0.0;
            sp.n_pos_train += (size_t)t->label[i];
        }
    }
    sp.pos_train = sp.n_train ? sp.pos_train / sp.w_train : NAN;
    sp.pos_held = sp.n_held ? sp.pos_held / sp.w_held : NAN;
    return sp;
}

/* ------------------------------------------------------------ the metrics */

static int scored_cmp(const void *a, const void *b) {
    double x = ((const rs_train_scored *)a)->p, y = ((const rs_train_scored *)b)->p;
    return (x > y) - (x < y);
}

/* Weighted AUC: P(score of a positive > score of a negative), ties counted
 * half, each pair weighted by the product of its rows' weights (with unit
 * weights the Mann-Whitney U / rank formula). NaN when a class is absent.
 * Sorts s. */
double rs_train_auc(rs_train_scored *s, size_t n) {
    qsort(s, n, sizeof *s, scored_cmp);
    double pairs = 0, neg_below = 0, w_pos = 0;
    for (size_t i = 0; i < n;) {
        double pos_g = 0, neg_g = 0;
        size_t j = i;
        for (; j < n && s[j].p == s[i].p; j++) {
            if (s[j].y) pos_g += s[j].w;
            else neg_g += s[j].w;
        }
        pairs += pos_g * (neg_below + 0.5 * neg_g);
        neg_below += neg_g;
        w_pos += pos_g;
        i = j;
    }
    if (!(w_pos > 0) || !(neg_below > 0)) return NAN;
    return pairs / (w_pos * neg_below);
}

/* Weighted mean log-loss and Brier score, and the AUC. Sorts s. */
rs_train_metrics rs_train_evaluate(rs_train_scored *s, size_t n) {
    rs_train_metrics m = {NAN, NAN, NAN};
    if (!n) return m;
    double ll = 0, br = 0, wsum = 0;
    for (size_t i = 0; i < n; i++) {
        double p = fmin(fmax(s[i].p, 1e-15), 1.0 - 1e-15);
        ll -= s[i].w * (s[i].y ? log(p) : log1p(-p));
        br += s[i].w * (s[i].p - s[i].y) * (s[i].p - s[i].y);
        wsum += s[i].w;
    }
    m.logloss = ll / wsum;
    m.brier = br / wsum;
    m.auc = rs_train_auc(s, n);
    return m;
}

/* The value at position x (0-based) of the sorted scores with each row
 * repeated w times: the row whose cumulative weight first exceeds x. */
static double expanded_at(const rs_train_scored *s, size_t n, double x) {
    double c = 0;
    for (size_t i = 0; i < n; i++) {
        c += s[i].w;
        if (x < c) return s[i].p;
    }
    return s[n - 1].p;
}

/* numpy.quantile(x, q) (default linear interpolation, as
 * rs_eval_quantile_sorted) of the scores with each row repeated w times;
 * for integer weights exactly the quantile of the duplicated rows, and for
 * unit weights numpy's own. Sorts s. */
double rs_train_quantile(rs_train_scored *s, size_t n, double q) {
    if (!n) return NAN;
    qsort(s, n, sizeof *s, scored_cmp);
    double total = 0;
    for (size_t i = 0; i < n; i++) total += s[i].w;
    const double vi = (total - 1) * q;
    if (vi <= 0) return s[0].p;
    if (vi >= total - 1) return s[n - 1].p;
    const double fl = floor(vi), t = vi - fl;
    const double a = expanded_at(s, n, fl), b = expanded_at(s, n, fl + 1), diff = b - a;
    return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}
