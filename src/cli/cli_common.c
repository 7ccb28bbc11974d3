/* cli_common.c — shared helpers of the routescore subcommands: default model
 * lookup, prompt files over the JSON-lines reader (jsonl.h), field paths, the output
 * record format, flag parsing and a progress line. See cli_common.h. */
#include "cli_common.h"
#include "messages.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

/* ------------------------------------------------------------------ model */

static int dir_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

rs_status rs_cli_default_model(char *buf, size_t n) {
    static const char rel[] = "models/routers/minilm-mf";
    if (!buf || n == 0) return RS_ERR_INVALID_ARG;
    const char *env = getenv("ROUTESCORE_MODEL");
    if (env && *env) {
        if (strlen(env) >= n) return RS_ERR_TOO_LARGE;
        memcpy(buf, env, strlen(env) + 1);
        return RS_OK;
    }
    char cand[3][PATH_MAX + 64];
    int n_cand = 0;
    snprintf(cand[n_cand++], sizeof cand[0], "./%s", rel);
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(cand[n_cand++], sizeof cand[0], "%s/../%s", exe, rel);
            snprintf(cand[n_cand++], sizeof cand[0], "%s/../../%s", exe, rel);
        }
    }
    for (int i = 0; i < n_cand; i++) {
        if (!dir_exists(cand[i])) continue;
        /* Resolve the exe-relative forms so messages show a clean path. */
        char real[PATH_MAX];
        const char *p = (i > 0 && realpath(cand[i], real)) ? real : cand[i];
        if (strlen(p) >= n) return RS_ERR_TOO_LARGE;
        memcpy(buf, p, strlen(p) + 1);
        return RS_OK;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n_cand && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", cand[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return RS_ERR_NOT_FOUND;
}

void rs_cli_prompts_free(rs_cli_prompts *p) {
    for (size_t i = 0; p->text && i < p->n; i++) free(p->text[i]);
    free(p->text);
    free(p->len);
    memset(p, 0, sizeof *p);
}

rs_status rs_cli_load_prompts(const char *path, const char *field, size_t limit, rs_cli_prompts *out, rs_err *err) {
    memset(out, 0, sizeof *out);
    rs_jsonl *r;
    rs_status st = rs_jsonl_open(path, 0, &r, err);
    if (st != RS_OK) return st;
    rs_buf scratch = {0};
    size_t cap = 0;
    while (out->n < limit) {
        cJSON *j;
        uint64_t no;
        int bad;
        rs_err line_err;
        st = rs_jsonl_next_json(r, &j, &no, &bad, &line_err);
        if (st != RS_OK && !bad) {
            rs_errf(err, st, "%s", line_err.msg);
            break;
        }
        if (st == RS_OK && !j) break; /* end of input */
        const char *text;
        size_t tl;
        if (bad || rs_cli_extract_prompt(j, field, &scratch, &text, &tl, &line_err) != RS_OK) {
            cJSON_Delete(j);
            out->skipped++;
            st = RS_OK;
            continue;
        }
        if (out->n == cap) {
            cap = cap ? 2 * cap : 1024;
            char **nt = realloc(out->text, cap * sizeof *nt);
            if (nt) out->text = nt;
            size_t *nl = nt ? realloc(out->len, cap * sizeof *nl) : NULL;
            if (nl) out->len = nl;
            if (!nt || !nl) st = rs_errf(err, RS_ERR_NOMEM, "out of memory reading %s", path);
        }
        char *copy = st == RS_OK ? malloc(tl + 1) : NULL;
        if (copy) { /* text points into j or scratch */
            memcpy(copy, text, tl);
            copy[tl] = 0;
        } else if (st == RS_OK) {
            st = rs_errf(err, RS_ERR_NOMEM, "out of memory reading %s", path);
        }
        cJSON_Delete(j);
        if (st != RS_OK) break;
        out->text[out->n] = copy;
        out->len[out->n++] = tl;
    }
    rs_buf_free(&scratch);
    rs_jsonl_close(r);
    if (st != RS_OK) rs_cli_prompts_free(out);
    return st;
}

/* ------------------------------------------------------------- field path */

#define PATH_KEY_MAX 256

typedef struct path_step {
    int is_index;
    long index;
    char key[PATH_KEY_MAX];
} path_step;

/* Parses the step at *p and advances; 0 at end of path, 1 with a step, -1 on
 * a syntax error (message in err). */
static int path_next(const char **p, int first, path_step *st, rs_err *err, const char *whole) {
    const char *s = *p;
    if (!*s) return first ? (rs_errf(err, RS_ERR_INVALID_ARG, "empty field path"), -1) : 0;
    if (*s == '[') {
        s++;
        if (*s < '0' || *s > '9')
            return rs_errf(err, RS_ERR_INVALID_ARG, "field path '%s': expected a number after '['", whole), -1;
        long v = 0;
        while (*s >= '0' && *s <= '9') {
            if (v > (INT_MAX - 9) / 10)
                return rs_errf(err, RS_ERR_INVALID_ARG, "field path '%s': index too large", whole), -1;
            v = v * 10 + (*s++ - '0');
        }
        if (*s != ']') return rs_errf(err, RS_ERR_INVALID_ARG, "field path '%s': expected ']'", whole), -1;
        s++;
        st->is_index = 1;
        st->index = v;
    } else {
        if (!first) {
            if (*s != '.')
                return rs_errf(err, RS_ERR_INVALID_ARG, "field path '%s': expected '.' or '[' at '%s'", whole, s),
                       -1;
            s++;
        }
        size_t n = strcspn(s, ".[]");
        if (n == 0) return rs_errf(err, RS_ERR_INVALID_ARG, "field path '%s': empty key", whole), -1;
        if (n >= PATH_KEY_MAX) return rs_errf(err, RS_ERR_INVALID_ARG, "field path '%s': key too long", whole), -1;
        memcpy(st->key, s, n);
        st->key[n] = '\0';
        st->is_index = 0;
        s += n;
        if (*s == ']') return rs_errf(err, RS_ERR_INVALID_ARG, "field path '%s': unmatched ']'", whole), -1;
    }
    *p = s;
    return 1;
}

rs_status rs_cli_path_check(const char *path, rs_err *err) {
    if (!path) return rs_errf(err, RS_ERR_INVALID_ARG, "empty field path");
    const char *p = path;
    path_step st;
    for (int first = 1;; first = 0) {
        int r = path_next(&p, first, &st, err, path);
        if (r < 0) return RS_ERR_INVALID_ARG;
        if (r == 0) return RS_OK;
    }
}

const cJSON *rs_cli_json_path(const cJSON *root, const char *path, rs_err *err) {
    const char *p = path;
    const cJSON *cur = root;
    path_step st;
    for (int first = 1;; first = 0) {
        const char *step_start = p;
        int r = path_next(&p, first, &st, err, path);
        if (r < 0) return NULL;
        if (r == 0) return cur;
        int prefix = (int)(step_start - path);
        if (st.is_index) {
            if (!cJSON_IsArray(cur)) {
                rs_errf(err, RS_ERR_NOT_FOUND, "field '%.*s' is not an array", prefix > 0 ? prefix : 1,
                        prefix > 0 ? path : "$");
                return NULL;
            }
            cur = cJSON_GetArrayItem(cur, (int)st.index);
        } else {
            if (!cJSON_IsObject(cur)) {
                rs_errf(err, RS_ERR_NOT_FOUND, "field '%.*s' is not an object", prefix > 0 ? prefix : 1,
                        prefix > 0 ? path : "$");
                return NULL;
            }
            cur = cJSON_GetObjectItemCaseSensitive(cur, st.key);
        }
        if (!cur) {
            rs_errf(err, RS_ERR_NOT_FOUND, "missing field '%.*s'", (int)(p - path), path);
            return NULL;
        }
    }
}

static rs_status take_string(const cJSON *item, const char *what, rs_buf *scratch, rs_err *err) {
    if (!cJSON_IsString(item) || !item->valuestring)
        return rs_errf(err, RS_ERR_INVALID_ARG, "field '%s' is not a string", what);
    rs_status st = rs_buf_append(scratch, item->valuestring, strlen(item->valuestring));
    return st == RS_OK ? RS_OK : rs_errf(err, st, "out of memory");
}

rs_status rs_cli_extract_prompt(const cJSON *root, const char *field, rs_buf *scratch,
                                const char **text, size_t *len, rs_err *err) {
    *text = NULL;
    *len = 0;
    scratch->len = 0;
    rs_status st;
    if (field) {
        const cJSON *item = rs_cli_json_path(root, field, err);
        if (!item) return RS_ERR_NOT_FOUND;
        st = take_string(item, field, scratch, err);
    } else {
        if (!cJSON_IsObject(root)) return rs_errf(err, RS_ERR_INVALID_ARG, "record is not a JSON object");
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (prompt) {
            st = take_string(prompt, "prompt", scratch, err);
        } else if (msgs) {
            char *t;
            size_t tl;
            if ((st = rs_messages_last_user_json(msgs, &t, &tl, err)) != RS_OK) return st;
            st = rs_buf_append(scratch, t, tl);
            free(t);
            if (st != RS_OK) return rs_errf(err, st, "out of memory");
        } else {
            return rs_errf(err, RS_ERR_NOT_FOUND, "missing field 'prompt' (and no 'messages')");
        }
    }
    if (st != RS_OK) return st;
    if (scratch->len == 0) return rs_errf(err, RS_ERR_INVALID_ARG, "empty prompt");
    *text = scratch->data;
    *len = scratch->len;
    return RS_OK;
}

/* ----------------------------------------------------------------- output */

void rs_cli_write_json_string(FILE *f, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    fputc('"', f);
    size_t run = 0; /* bytes not yet written that need no escaping */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        fwrite(s + i - run, 1, run, f);
        run = 0;
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default: fprintf(f, "\\u00%c%c", hex[c >> 4], hex[c & 15]); break;
        }
    }
    fwrite(s + n - run, 1, run, f);
    fputc('"', f);
}

static void write_float(FILE *f, float v) {
    if (isfinite(v)) fprintf(f, "%.9g", (double)v);
    else fputs("null", f);
}

void rs_cli_write_score_json(FILE *f, const char *id_json, const rs_score *s) {
    fprintf(f, "{\"id\":%s,\"win_prob\":", id_json);
    write_float(f, s->win_prob);
    fprintf(f, ",\"route\":\"%s\"", s->route_strong ? "strong" : "weak");
    if (s->n_labels > 0) {
        int n = s->n_labels < RS_MAX_LABELS ? s->n_labels : RS_MAX_LABELS;
        fputs(",\"label_probs\":[", f);
        for (int i = 0; i < n; i++) {
            if (i) fputc(',', f);
            write_float(f, s->label_probs[i]);
        }
        fputc(']', f);
    }
    fprintf(f, ",\"tokens\":%d,\"truncated\":%s}\n", s->tokens, s->truncated ? "true" : "false");
}

/* controls: escape control characters too (for a terminal; JSON escapes its own) */
static const char *safe_msg(const char *msg, char *buf, size_t n, int controls) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)msg;
    size_t len = strlen(msg), i = 0, o = 0;
    if (!n) return "";
    while (i < len && o + 5 < n) {
        size_t good = rs_json_utf8_bad_offset(p + i, len - i); /* a valid run, then one bad byte */
        size_t take = good < n - 1 - o ? good : n - 1 - o;
        while (take && o + 5 >= n) take--;
        /* control characters are escaped too: a message is one line */
        for (size_t k = 0; k < take; k++) {
            unsigned char c = p[i + k];
            if (controls && (c < 0x20 || c == 0x7F)) {
                if (o + 5 >= n) break;
                buf[o++] = '\\', buf[o++] = 'x', buf[o++] = hex[c >> 4], buf[o++] = hex[c & 15];
            } else if (o + 1 < n) {
                buf[o++] = (char)c;
            }
        }
        i += good;
        if (i < len && o + 5 < n) {
            buf[o++] = '\\', buf[o++] = 'x', buf[o++] = hex[p[i] >> 4], buf[o++] = hex[p[i] & 15];
            i++;
        }
    }
    buf[o] = 0;
    return buf;
}

const char *rs_cli_safe_msg(const char *msg, char *buf, size_t n) { return safe_msg(msg, buf, n, 1); }

void rs_cli_write_error_json(FILE *f, const char *id_json, uint64_t line, const char *msg) {
    char safe[2048];
    msg = safe_msg(msg, safe, sizeof safe, 0); /* the JSON string escapes control characters */
    fprintf(f, "{\"id\":%s,\"line\":%llu,\"error\":", id_json, (unsigned long long)line);
    rs_cli_write_json_string(f, msg, strlen(msg));
    fputs("}\n", f);
}

void rs_cli_record_id(const cJSON *root, const char *id_path, uint64_t line_no, char *buf, size_t n) {
    const cJSON *id = NULL;
    if (id_path) {
        id = rs_cli_json_path(root, id_path, NULL);
    } else if (cJSON_IsObject(root)) {
        id = cJSON_GetObjectItemCaseSensitive(root, "id");
        if (!id) id = cJSON_GetObjectItemCaseSensitive(root, "question_id");
    }
    char *s = id ? cJSON_PrintUnformatted(id) : NULL;
    if (s && strlen(s) < n) {
        memcpy(buf, s, strlen(s) + 1);
    } else {
        snprintf(buf, n, "%llu", (unsigned long long)line_no);
    }
    cJSON_free(s);
}

/* ------------------------------------------------------------------ flags */

rs_status rs_cli_parse_int(const char *flag, const char *s, long lo, long hi, long *out, rs_err *err) {
    char *end = NULL;
    errno = 0;
    long v = s && *s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: '%s' is not an integer", flag, s ? s : "");
    if (v < lo || v > hi) return rs_errf(err, RS_ERR_INVALID_ARG, "%s: %ld is outside [%ld, %ld]", flag, v, lo, hi);
    *out = v;
    return RS_OK;
}

rs_status rs_cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out,
                             rs_err *err) {
    char *end = NULL;
    errno = 0;
    double v = s && *s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: '%s' is not a number", flag, s ? s : "");
    if (!(v >= lo && v <= hi)) return rs_errf(err, RS_ERR_INVALID_ARG, "%s: %s is outside [%g, %g]", flag, s, lo, hi);
    *out = v;
    return RS_OK;
}

rs_status rs_cli_parse_shard(const char *flag, const char *s, long *index, long *count, rs_err *err) {
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || slash == s)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: '%s' is not of the form i/N (e.g. 0/4)", flag, s ? s : "");
    char head[32];
    size_t hn = (size_t)(slash - s);
    if (hn >= sizeof head) return rs_errf(err, RS_ERR_INVALID_ARG, "%s: '%s' is not of the form i/N", flag, s);
    memcpy(head, s, hn);
    head[hn] = '\0';
    long i, n;
    rs_err e2;
    if (rs_cli_parse_int(flag, slash + 1, 1, 1L << 30, &n, &e2) != RS_OK)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: '%s': N must be an integer >= 1", flag, s);
    if (rs_cli_parse_int(flag, head, 0, n - 1, &i, &e2) != RS_OK)
        return rs_errf(err, RS_ERR_INVALID_ARG, "%s: '%s': i must be an integer in [0, N-1]", flag, s);
    *index = i;
    *count = n;
    return RS_OK;
}

/* --------------------------------------------------------------- progress */

void rs_cli_progress_init(rs_cli_progress *p, int enabled, uint64_t total) {
    memset(p, 0, sizeof *p);
    p->enabled = enabled;
    p->total = total;
    p->t_start = rs_clock_now();
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void progress_draw(rs_cli_progress *p, double now) {
    double el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    if (p->total) {
        enum { W = 28 };
        double frac = p->done >= p->total ? 1.0 : (double)p->done / (double)p->total;
        char bar[W + 1];
        int fill = (int)(frac * W);
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '-';
        bar[W] = '\0';
        char eta[32];
        fmt_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate : -1);
        fprintf(stderr, "\r[%s] %llu/%llu %5.1f%%  %.1f prompts/s  ETA %s  ", bar, (unsigned long long)p->done,
                (unsigned long long)p->total, 100.0 * frac, rate, eta);
    } else {
        char elapsed[32];
        fmt_duration(elapsed, sizeof elapsed, el);
        fprintf(stderr, "\r%llu prompts  %.1f prompts/s  %s elapsed  ", (unsigned long long)p->done, rate, elapsed);
    }
    fflush(stderr);
}

void rs_cli_progress_lines(rs_cli_progress *p, double every, const char *cmd) {
    p->enabled = every > 0;
    p->lines_every = every;
    p->cmd = cmd;
    p->t_last = p->t_start;
}

static void progress_line(const rs_cli_progress *p, double now) {
    double el = now - p->t_start;
    double rate = el > 0 && p->done > p->base ? (double)(p->done - p->base) / el : 0;
    char total[32] = "null", eta[32] = "null";
    if (p->total) {
        snprintf(total, sizeof total, "%llu", (unsigned long long)p->total);
        if (rate > 0)
            snprintf(eta, sizeof eta, "%.1f",
                     (double)(p->total - (p->done < p->total ? p->done : p->total)) / rate);
    }
    fprintf(stderr, "{\"progress\":{\"cmd\":\"%s\",\"done\":%llu,\"total\":%s,\"elapsed_s\":%.1f,\"rate\":%.2f,\"eta_s\":%s}}\n",
            p->cmd ? p->cmd : "", (unsigned long long)p->done, total, el, rate, eta);
    fflush(stderr);
}

void rs_cli_progress_update(rs_cli_progress *p, uint64_t done) {
    p->done = done;
    if (!p->enabled) return;
    double now = rs_clock_now();
    if (p->lines_every > 0) {
        if (now - p->t_last < p->lines_every) return;
        p->t_last = now;
        progress_line(p, now);
        return;
    }
    if (now - p->t_last < 0.2) return;
    p->t_last = now;
    progress_draw(p, now);
}

void rs_cli_progress_finish(rs_cli_progress *p) {
    if (!p->enabled || p->lines_every > 0) return;
    progress_draw(p, rs_clock_now());
    fputc('\n', stderr);
}
