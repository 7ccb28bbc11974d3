/* eval_scores.h — joining a score file to the evaluated rows (`routescore
 * eval --scores`): JSON lines {"prompt": TEXT, "win_prob": P}, joined by
 * exact prompt text (every row with that text gets P), or, without
 * "prompt", {"id": I, "win_prob": P} with I the 0-based row index. A later
 * line for the same row overwrites an earlier one; lines that match no row
 * are counted and ignored (one file may cover several benchmarks); every
 * row must end up with a score.
 *
 * Bounds: every line is read only within [line, line + len) (no NUL
 * terminator needed), its raw text checked by rs_json_check_text before
 * cJSON parses it; "win_prob" must be a finite number, "id" an integer
 * (a whole double) and is used only when 0 <= I < n_rows; the row count is
 * capped so the index cannot overflow.
 *
 * Ownership: the join keeps pointers to the caller's prompts (which must
 * outlive it) and owns its index and the scores joined so far. Not
 * thread-safe; one join per file. */
#ifndef RS_EVAL_SCORES_H
#define RS_EVAL_SCORES_H

#include <stddef.h>

#include "status.h"

typedef struct rs_eval_join rs_eval_join;

/* An index over prompts[0 .. n_rows) (NUL-terminated texts). RS_ERR_NOMEM,
 * RS_ERR_TOO_LARGE (n_rows beyond what the index can address). */
rs_status rs_eval_join_open(const char *const *prompts, size_t n_rows, rs_eval_join **out, rs_err *err);
void rs_eval_join_free(rs_eval_join *j);

/* One JSON line, [line, line + len). A blank line (space, \t \r \f \v) is
 * skipped. A bad line (not UTF-8/JSON text, no finite "win_prob", a
 * "prompt" that is not a string, neither "prompt" nor an integer "id")
 * returns RS_ERR_FORMAT or RS_ERR_UTF8 with the cause, and joins nothing. */
rs_status rs_eval_join_line(rs_eval_join *j, const char *line, size_t len, rs_err *err);

/* Every line of a buffer [data, data + len) (lines end in LF; the last may
 * not); stops at the first bad line, whose 1-based number starts the
 * error message ("line N: cause"). */
rs_status rs_eval_join_text(rs_eval_join *j, const char *data, size_t len, rs_err *err);

/* Lines that matched no row so far. */
size_t rs_eval_join_unmatched(const rs_eval_join *j);

/* The joined scores into scores[0 .. n) (n must be the row count:
 * RS_ERR_INVALID_ARG otherwise). When some rows have no score,
 * RS_ERR_NOT_FOUND ("K of N rows have no score (first: row R)"), with
 * *missing = K and *first_missing = R (either pointer may be NULL); scores
 * then holds 0 for those rows. */
rs_status rs_eval_join_scores(const rs_eval_join *j, double *scores, size_t n, size_t *missing,
                              size_t *first_missing, rs_err *err);

#endif
