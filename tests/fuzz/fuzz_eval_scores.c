/* fuzz_eval_scores.c — the score-file join behind `eval --scores`
 * (eval_scores.c): arbitrary bytes as JSON lines against a fixed set of
 * rows (duplicate texts, an empty one, non-ASCII), the first byte choosing
 * how many of them; then as one line, and each line copied into an exact-
 * size buffer (no NUL) so ASan sees any read past len. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval_scores.h"

static const char *const ROWS[] = {"a", "dup", "dup", "", "question 1: what is 2 + 2?", "caf\xc3\xa9", "dup", "z"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n == 0) return 0;
    size_t rows = data[0] % (sizeof ROWS / sizeof *ROWS + 1);
    const char *text = (const char *)data + 1;
    size_t len = n - 1;
    rs_err err;
    double scores[sizeof ROWS / sizeof *ROWS + 1];

    rs_eval_join *j;
    if (rs_eval_join_open(ROWS, rows, &j, &err) != RS_OK) abort();
    (void)rs_eval_join_text(j, text, len, &err);
    size_t miss, first;
    rs_status st = rs_eval_join_scores(j, scores, rows, &miss, &first, &err);
    if ((st == RS_OK) != (miss == 0) || (miss && first >= rows)) abort();
    if (rs_eval_join_scores(j, scores, rows + 1, NULL, NULL, &err) != RS_ERR_INVALID_ARG) abort();
    rs_eval_join_free(j);

    if (rs_eval_join_open(ROWS, rows, &j, &err) != RS_OK) abort();
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char *copy = malloc(l ? l : 1);
        if (!copy) break;
        memcpy(copy, text + pos, l);
        (void)rs_eval_join_line(j, copy, l, &err);
        free(copy);
        pos += l + 1;
    }
    (void)rs_eval_join_scores(j, scores, rows, NULL, NULL, &err);
    if (rs_eval_join_unmatched(j) > len) abort();
    rs_eval_join_free(j);
    return 0;
}
