/* train.h — the math of `routescore train`: fitting an mf router head
 * p = sigmoid(w . e [+ lw * lenf] + b) by L2-regularised, weighted logistic
 * regression (Newton's method with backtracking, Cholesky solves), optional
 * standardisation folded back into the head, and the held-out metrics and
 * the threshold quantile the command reports. All arithmetic in double.
 *
 * The examples are a view (rs_train_rows) over arrays the caller owns; the
 * rows with heldout[i] != 0 take no part in the fit or the moments. */
#ifndef RS_TRAIN_H
#define RS_TRAIN_H

#include <stddef.h>

#include "status.h"

#define RS_TRAIN_MAX_ITERS 100 /* Newton steps at most */
#define RS_TRAIN_GRAD_TOL 1e-6 /* stop when |grad| of the summed loss is below */

/* theta = [w (d), lw (nf > d only), b]: nf + 1 values. */
typedef struct rs_train_rows {
    size_t n;
    int d;               /* embedding width */
    int nf;              /* features: d, or d + 1 with the length term */
    const float *emb;    /* (n, d) */
    const double *lenf;  /* (n) the length feature; read only when nf > d */
    const int *label;    /* (n) 0 or 1 */
    const double *weight; /* (n) > 0: a row of weight k fits as k copies */
    const int *heldout;  /* (n) nonzero: not fitted */
} rs_train_rows;

double rs_train_sigmoid(double z);
/* The logit of row i under theta. */
double rs_train_row_logit(const rs_train_rows *t, size_t i, const double *theta);
/* sum_i v_i logloss_i over the training rows + (l2/2)(|w|^2 + lw^2). */
double rs_train_loss(const rs_train_rows *t, const double *theta, double l2);
/* In-place Cholesky of the m x m SPD matrix a (row-major, lower triangle
 * read), then solves a x = b into b. 0, or -1 when a is not positive
 * definite. */
int rs_train_cholesky_solve(double *a, double *b, int m);
/* Minimises rs_train_loss from theta (in/out, nf + 1 values; the caller's
 * start, e.g. w = 0 and b = logit of the positive rate). *iters: Newton
 * steps taken; *gnorm: |grad| at the end (>= RS_TRAIN_GRAD_TOL when it
 * stopped early). */
rs_status rs_train_fit(const rs_train_rows *t, double l2, double *theta, int *iters, double *gnorm, rs_err *err);
/* The z-scored copy of t->emb (*z, (n, d), caller frees) with the mean and
 * sd of each column over the training rows (*mu, *sd, (d), caller frees; a
 * constant column gets sd 1). */
rs_status rs_train_standardize(const rs_train_rows *t, float **z, double **mu, double **sd, rs_err *err);
/* theta over z-scored features -> theta over the raw ones (same logits). */
void rs_train_fold_standardization(int d, int nf, double *theta, const double *mu, const double *sd);

/* Row counts, summed weights and weighted positive rates of the two parts. */
typedef struct rs_train_split {
    size_t n_train, n_held, n_pos_train; /* n_pos_train: unweighted count */
    double w_train, w_held, pos_train, pos_held; /* pos_*: weighted rate (NaN when the part is empty) */
    int weighted;                                /* some row's weight is not 1 */
} rs_train_split;
rs_train_split rs_train_split_of(const rs_train_rows *t);

/* A scored example: score, weight, label. */
typedef struct rs_train_scored {
    double p, w;
    int y;
} rs_train_scored;
typedef struct rs_train_metrics {
    double logloss, auc, brier;
} rs_train_metrics;
/* Weighted AUC: P(score of a positive > a negative's), ties half, each pair
 * weighted by the product of its weights. NaN when a class is absent.
 * Sorts s. */
double rs_train_auc(rs_train_scored *s, size_t n);
/* Weighted mean log-loss (p clipped to [1e-15, 1 - 1e-15]), Brier score,
 * and the AUC; NaNs when n == 0. Sorts s. */
rs_train_metrics rs_train_evaluate(rs_train_scored *s, size_t n);
/* numpy.quantile(x, q) (linear) of the scores with each row repeated w
 * times: for integer weights exactly the duplicated rows' quantile. NaN when
 * n == 0. Sorts s. */
double rs_train_quantile(rs_train_scored *s, size_t n, double q);

#endif
