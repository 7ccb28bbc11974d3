/* eval.h — RouteLLM's routing-quality metrics (docs/QUALITY.md), as plain math
 * over arrays so they can be unit-tested without data or a model.
 *
 * An item is one routed unit (an MMLU/GSM8K prompt, an MT-Bench question).
 * Its quality under each model is a sum over the item's judged rows and the
 * row count (MMLU: correct 0/1 over 1 row; MT-Bench: the judged scores of
 * both turns over 2 rows). A routing's quality is (sum of the routed rows) /
 * (count of the routed rows) * scale (100 for accuracy in %, 1 for scores),
 * and its strong share is strong rows / all rows * 100: exactly what
 * RouteLLM's benchmarks compute (pandas merge of routed model x judgements,
 * then mean; Counter of models / len).
 *
 * The procedure (rs_eval_run): edges = numpy.quantile(scores,
 * linspace(0, 1, 11)) (linear interpolation); for edge k route strong where
 * score >= edge (the last edge: score > edge); points sorted by share
 * (stable); AUC = numpy.trapz(quality, share / 100); APGR = (AUC - W*span) /
 * (S*span - W*span); CPT(q) = numpy.interp(W + q (S - W), quality, share)
 * over the points in share order — numpy's own search, reproduced bit for bit
 * (rs_eval_np_interp), because quality need not be monotone in share.
 *
 * Nothing here allocates except rs_eval_run's scratch copy of the scores;
 * all functions are pure and thread-compatible. */
#ifndef RS_EVAL_H
#define RS_EVAL_H

#include <stddef.h>

#include "status.h"

#define RS_EVAL_BINS 10
#define RS_EVAL_EDGES (RS_EVAL_BINS + 1)

typedef struct rs_eval_item {
    double sum_weak, rows_weak;     /* the weak model's judged rows */
    double sum_strong, rows_strong; /* the strong model's */
} rs_eval_item;

typedef struct rs_eval_point {
    double edge;         /* threshold */
    double strong_share; /* % of rows routed strong */
    double quality;      /* mean quality of the routed rows, times scale */
} rs_eval_point;

typedef struct rs_eval_result {
    size_t n_items;
    rs_eval_point points[RS_EVAL_EDGES]; /* sorted by strong_share, ascending */
    double weak_quality, strong_quality; /* all-weak W and all-strong S */
    double auc, apgr;
    double cpt50, cpt80; /* strong share in % */
} rs_eval_result;

/* numpy.quantile(v, q) with the default "linear" method; v sorted, n >= 1. */
double rs_eval_quantile_sorted(const double *v, size_t n, double q);

/* numpy.interp(x, xp, fp) for a scalar x, including numpy's search with a
 * guess, so results match numpy also when xp is not increasing. n >= 1. */
double rs_eval_np_interp(double x, const double *xp, const double *fp, size_t n);

/* numpy.trapz(y, x). */
double rs_eval_trapz(const double *y, const double *x, size_t n);

/* Quality (times scale) of routing strong exactly the items with strong[i]
 * != 0; *share gets the strong share in %. */
double rs_eval_quality(const rs_eval_item *items, const unsigned char *strong, size_t n, double scale,
                       double *share);

/* The whole procedure above. scores[i] is item i's router score (finite).
 * RS_ERR_INVALID_ARG for n == 0 or a non-finite score. */
rs_status rs_eval_run(const rs_eval_item *items, const double *scores, size_t n, double scale,
                      rs_eval_result *out, rs_err *err);

/* The oracle's quality at a strong share (in [0, 1] of items): the items
 * with the largest per-row gain (strong mean - weak mean) go strong first,
 * only while the gain is positive; a fractional item contributes its part.
 * RouteLLM's get_optimal_accuracy for MMLU/GSM8K is this rule. */
double rs_eval_oracle_quality(const rs_eval_item *items, size_t n, double scale, double share,
                              double *gains_scratch);

#endif
