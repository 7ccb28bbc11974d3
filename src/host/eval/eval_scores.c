/* eval_scores.c — the score-file join (eval_scores.h): open addressing over
 * the rows' prompts (FNV-1a), duplicate texts chained through next[]. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "eval_scores.h"
#include "json_text.h"

struct rs_eval_join {
    const char *const *prompts;
    size_t n, cap;    /* rows; slots (a power of two > 2 n) */
    long *slot;       /* row of the first prompt with this hash position, or -1 */
    long *next;       /* the next row with the same text, or -1 */
    double *score;
    unsigned char *have;
    size_t unmatched;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void rs_eval_join_free(rs_eval_join *j) {
    if (!j) return;
    free(j->slot);
    free(j->next);
    free(j->score);
    free(j->have);
    free(j);
}

rs_status rs_eval_join_open(const char *const *prompts, size_t n, rs_eval_join **out, rs_err *err) {
    *out = NULL;
    if (n > (size_t)LONG_MAX / 4 || n > SIZE_MAX / 4 / sizeof(long))
        return rs_errf(err, RS_ERR_TOO_LARGE, "%zu rows: too many to index", n);
    rs_eval_join *j = calloc(1, sizeof *j);
    if (!j) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    j->prompts = prompts;
    j->n = n;
    j->cap = 1;
    while (j->cap < n * 2 + 1) j->cap <<= 1;
    j->slot = malloc(j->cap * sizeof *j->slot);
    j->next = malloc((n ? n : 1) * sizeof *j->next);
    j->score = calloc(n ? n : 1, sizeof *j->score);
    j->have = calloc(n ? n : 1, 1);
    if (!j->slot || !j->next || !j->score || !j->have) {
        rs_eval_join_free(j);
        return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < j->cap; i++) j->slot[i] = -1;
    for (size_t i = 0; i < n; i++) {
        j->next[i] = -1;
        for (size_t h = hash_str(prompts[i]) & (j->cap - 1);; h = (h + 1) & (j->cap - 1)) {
            if (j->slot[h] < 0) {
                j->slot[h] = (long)i;
                break;
            }
            if (!strcmp(prompts[j->slot[h]], prompts[i])) { /* duplicate text: chain */
                long k = j->slot[h];
                while (j->next[k] >= 0) k = j->next[k];
                j->next[k] = (long)i;
                break;
            }
        }
    }
    *out = j;
    return RS_OK;
}

static int is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

rs_status rs_eval_join_line(rs_eval_join *j, const char *line, size_t len, rs_err *err) {
    if (is_blank(line, len)) return RS_OK;
    rs_status st = rs_json_check_text(line, len, err);
    if (st != RS_OK) return st;
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!o) return rs_errf(err, RS_ERR_FORMAT, "not valid JSON");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "win_prob");
    const char *why = NULL;
    if (!cJSON_IsNumber(w) || !isfinite(w->valuedouble)) why = "no finite number \"win_prob\"";
    else if (p && !cJSON_IsString(p)) why = "\"prompt\" is not a string";
    else if (!p && !(cJSON_IsNumber(id) && isfinite(id->valuedouble) && id->valuedouble == floor(id->valuedouble)))
        why = "neither a \"prompt\" string nor an integer \"id\"";
    if (why) {
        cJSON_Delete(o);
        return rs_errf(err, RS_ERR_FORMAT, "%s", why);
    }
    long row = -1;
    if (p) {
        for (size_t h = hash_str(p->valuestring) & (j->cap - 1); j->slot[h] >= 0; h = (h + 1) & (j->cap - 1))
            if (!strcmp(j->prompts[j->slot[h]], p->valuestring)) {
                row = j->slot[h];
                break;
            }
    } else if (id->valuedouble >= 0 && id->valuedouble < (double)j->n) {
        row = (long)id->valuedouble;
    }
    if (row < 0) j->unmatched++;
    for (long k = row; k >= 0; k = p ? j->next[k] : -1) {
        j->score[k] = w->valuedouble;
        j->have[k] = 1;
    }
    cJSON_Delete(o);
    return RS_OK;
}

rs_status rs_eval_join_text(rs_eval_join *j, const char *data, size_t len, rs_err *err) {
    size_t no = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (data + pos)) : len - pos;
        no++;
        rs_err e;
        rs_status st = rs_eval_join_line(j, data + pos, l, &e);
        if (st != RS_OK) return rs_errf(err, st, "line %zu: %s", no, e.msg);
        pos += l + 1;
    }
    return RS_OK;
}

size_t rs_eval_join_unmatched(const rs_eval_join *j) { return j->unmatched; }

rs_status rs_eval_join_scores(const rs_eval_join *j, double *scores, size_t n, size_t *missing,
                              size_t *first_missing, rs_err *err) {
    if (n != j->n) return rs_errf(err, RS_ERR_INVALID_ARG, "%zu scores asked of a join over %zu rows", n, j->n);
    size_t miss = 0, first = 0;
    for (size_t i = n; i-- > 0;) {
        scores[i] = j->have[i] ? j->score[i] : 0;
        if (!j->have[i]) {
            miss++;
            first = i;
        }
    }
    if (missing) *missing = miss;
    if (first_missing) *first_missing = first;
    if (miss) return rs_errf(err, RS_ERR_NOT_FOUND, "%zu of %zu rows have no score (first: row %zu)", miss, n, first);
    return RS_OK;
}
