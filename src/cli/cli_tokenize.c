/* cli_tokenize.c — `routescore tokenize`: print the token ids of texts.
 *
 * Exists so the tokenizer can be checked against HF `tokenizers` from a
 * script (tests/fidelity/tokenizer_oracle.py) and inspected by hand. One output line
 * per input text or JSON line, in order, so outputs align with inputs; a text
 * that fails prints {"line": N, "error": "..."} in its place and the run goes
 * on (exit 1 at the end). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "cli_common.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: routescore tokenize --tokenizer FILE|DIR [--add-special] [--parse-special] [--max-tokens N] TEXT...\n"
            "       routescore tokenize --tokenizer FILE|DIR --decode [--add-special] '[ID, ...]'...\n"
            "       routescore tokenize --tokenizer FILE|DIR [--add-special] [--max-tokens N] --in FILE.jsonl "
            "[--field NAME]\n"
            "\n"
            "Prints the ids of each text as a JSON array, one line per text.\n"
            "  --tokenizer FILE|DIR  a tokenizer.json, or a directory holding one\n"
            "  --add-special         add the post-processor's special tokens ([CLS] ... [SEP])\n"
            "  --max-tokens N        truncate to N ids in all (specials included)\n"
            "  --in FILE.jsonl       read texts from a JSON-lines file\n"
            "  --field NAME          the text's field (default \"prompt\"; paths like turns[0] or a.b work)\n"
            "  --parse-special       special-token strings in the text become their ids, as HF parses\n"
            "                        them (default: encoded as the plain text they are; a router's\n"
            "                        manifest opts in with \"parse_special_tokens\": true)\n"
            "  --decode              inputs are JSON arrays of ids; print each text as a JSON string\n"
            "                        (special tokens skipped unless --add-special)\n"
            "  --bench N             encode the inputs N times, print only a timing summary (JSON)\n"
            "A text that fails prints {\"line\": N, \"error\": \"...\"} instead; exit 1 if any did.\n"
            "FILE may be a tokenizer.json or a tiktoken rank file (read as Llama 3's).\n");
}

static void print_error(long line, const char *msg) {
    printf("{\"line\": %ld, \"error\": \"", line);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    printf("\"}\n");
}

typedef struct ids_buf {
    int32_t *v;
    size_t cap;
    int quiet;    /* --bench: count, print nothing */
    size_t total; /* ids produced while quiet */
} ids_buf;

static void print_json_string(const char *s, size_t len) {
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\u%04x", c);
        /* U+2028, U+2029 and U+0085 end lines for some readers: escaped */
        else if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 && ((unsigned char)s[i + 2] & 0xFE) == 0xA8) {
            printf("\\u%04x", (unsigned char)s[i + 2] == 0xA8 ? 0x2028 : 0x2029);
            i += 2;
        } else if (c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] == 0x85) {
            fputs("\\u0085", stdout);
            i++;
        } else putchar(c);
    }
    fputs("\"\n", stdout);
}

/* --decode: a JSON array of ids -> the text as a JSON string */
static int decode_one(const rs_tokenizer *tok, const cJSON *arr, int skip_special, long line) {
    if (!cJSON_IsArray(arr)) {
        print_error(line, "not a JSON array of ids");
        return 1;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), k = 0;
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    if (!ids) {
        print_error(line, "out of memory");
        return 1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 0x7FFFFFFF) {
            free(ids);
            print_error(line, "ids must be integers >= 0");
            return 1;
        }
        ids[k++] = (int32_t)e->valuedouble;
    }
    char *text = NULL;
    size_t len = 0;
    rs_err err;
    rs_status st = rs_tokenizer_decode(tok, ids, k, skip_special, &text, &len, &err);
    free(ids);
    if (st) {
        print_error(line, err.msg);
        return 1;
    }
    print_json_string(text, len);
    free(text);
    return 0;
}

/* Encodes and prints one text; returns 0 on success, 1 if it printed an error. */
static int tokenize_one(const rs_tokenizer *tok, const char *text, size_t len, int add_special, size_t max_tokens,
                        ids_buf *buf, long line) {
    size_t want = max_tokens ? max_tokens : len + rs_tokenizer_num_special(tok) + 16;
    for (;;) {
        if (want > buf->cap) {
            int32_t *v = realloc(buf->v, want * sizeof *v);
            if (!v) {
                print_error(line, "out of memory");
                return 1;
            }
            buf->v = v;
            buf->cap = want;
        }
        size_t n = 0;
        int truncated = 0;
        rs_err err;
        rs_status st = rs_tokenizer_encode(tok, text, len, add_special, max_tokens, buf->v, buf->cap, &n, &truncated, &err);
        if (st == RS_ERR_TOO_LARGE && !max_tokens) {
            want = buf->cap * 2; /* normalization can expand a text: retry bigger */
            continue;
        }
        if (st) {
            print_error(line, err.msg);
            return 1;
        }
        if (buf->quiet) {
            buf->total += n;
            return 0;
        }
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", (int)buf->v[i]);
        fputs("]\n", stdout);
        return 0;
    }
}

/* Follows a path like `prompt`, `turns[0]` or `a.b[2].c` from a JSON object. */
static int tokenize_jsonl(const rs_tokenizer *tok, const char *path, const char *field, int add_special,
                          size_t max_tokens, ids_buf *buf, int *failed, int decode) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "routescore tokenize: %s: %s\n", path, strerror(errno));
        return 2;
    }
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t n;
    long lineno = 0;
    char msg[600];
    while ((n = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        /* NUL (raw or "\u0000") and lone surrogates are refused as label refuses them */
        rs_err chk;
        if (rs_json_check_text(line, (size_t)n, &chk) != RS_OK) {
            print_error(lineno, chk.msg);
            *failed = 1;
            continue;
        }
        cJSON *root = cJSON_ParseWithLength(line, (size_t)n);
        const cJSON *v = root ? rs_cli_json_path(root, field, NULL) : NULL;
        if (!root) {
            print_error(lineno, "malformed JSON");
            *failed = 1;
        } else if (decode) {
            if (decode_one(tok, v, !add_special, lineno)) *failed = 1;
        } else if (!cJSON_IsString(v)) {
            snprintf(msg, sizeof msg, "no string field '%s'", field);
            print_error(lineno, msg);
            *failed = 1;
        } else if (tokenize_one(tok, v->valuestring, strlen(v->valuestring), add_special, max_tokens, buf, lineno)) {
            *failed = 1;
        }
        cJSON_Delete(root);
    }
    free(line);
    int io_err = ferror(f);
    if (f != stdin) fclose(f);
    if (io_err) {
        fprintf(stderr, "routescore tokenize: %s: read error\n", path);
        return 2;
    }
    return 0;
}

/* --bench: every text in memory first, then only the encode calls are timed */
static int bench(const rs_tokenizer *tok, const char *path, const char *field, int add_special, size_t max_tokens,
                 long passes) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "routescore tokenize: %s: %s\n", path, strerror(errno));
        return 2;
    }
    char **texts = NULL, *line = NULL;
    size_t n = 0, cap = 0, line_cap = 0, bytes = 0;
    ssize_t k;
    while ((k = getline(&line, &line_cap, f)) >= 0) {
        cJSON *root = cJSON_ParseWithLength(line, (size_t)k);
        const cJSON *v = root ? rs_cli_json_path(root, field, NULL) : NULL;
        if (cJSON_IsString(v)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                char **t = realloc(texts, cap * sizeof *t);
                if (!t) return 2;
                texts = t;
            }
            texts[n] = strdup(v->valuestring);
            bytes += strlen(v->valuestring);
            n++;
        }
        cJSON_Delete(root);
    }
    free(line);
    if (f != stdin) fclose(f);
    ids_buf buf = {.quiet = 1};
    int failed = 0;
    struct timespec t0, t1, c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (long p = 0; p < passes; p++)
        for (size_t i = 0; i < n; i++)
            if (tokenize_one(tok, texts[i], strlen(texts[i]), add_special, max_tokens, &buf, (long)i + 1)) failed = 1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    /* CPU time is what a loaded, shared machine measures fairly */
    printf("{\"texts\": %zu, \"bytes\": %zu, \"passes\": %ld, \"tokens\": %zu, \"seconds\": %.6f, "
           "\"cpu_seconds\": %.6f, \"tokens_per_s\": %.1f, \"tokens_per_cpu_s\": %.1f}\n",
           n, bytes, passes, buf.total / (size_t)(passes > 0 ? passes : 1), sec, cpu,
           sec > 0 ? (double)buf.total / sec : 0.0, cpu > 0 ? (double)buf.total / cpu : 0.0);
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(buf.v);
    return failed;
}

int rs_cli_tokenize(int argc, char **argv) {
    const char *tok_path = NULL, *in_path = NULL, *field = "prompt";
    int add_special = 0, decode = 0, parse_special = 0;
    long bench_passes = 0;
    size_t max_tokens = 0;
    int first_text = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--add-special")) {
            add_special = 1;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--parse-special")) {
            parse_special = 1;
        } else if (!strcmp(a, "--tokenizer") || !strcmp(a, "--max-tokens") || !strcmp(a, "--in") ||
                   !strcmp(a, "--field") || !strcmp(a, "--bench")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "routescore tokenize: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--tokenizer")) tok_path = v;
            else if (!strcmp(a, "--in")) in_path = v;
            else if (!strcmp(a, "--field")) field = v;
            else {
                char *end;
                errno = 0;
                unsigned long long k = strtoull(v, &end, 10);
                if (*end || end == v || errno || v[0] == '-') {
                    fprintf(stderr, "routescore tokenize: bad %s '%s'\n", a, v);
                    return 2;
                }
                if (!strcmp(a, "--bench")) bench_passes = k > 1000000 ? 1000000 : (long)k;
                else max_tokens = (size_t)k;
            }
        } else if (!strcmp(a, "--")) {
            first_text = i + 1;
            break;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "routescore tokenize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            first_text = i;
            break;
        }
    }
    if (!tok_path || (in_path && first_text < argc) || (!in_path && first_text >= argc) ||
        (bench_passes && (!in_path || decode))) {
        usage(stderr);
        return 2;
    }
    char *file = NULL;
    struct stat sb;
    if (stat(tok_path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        /* a model directory: its tokenizer.json, else a rank file beside it */
        const char *names[] = {"tokenizer.json", "tokenizer.model"};
        for (int k = 0; k < 2 && !file; k++) {
            size_t n = strlen(tok_path) + strlen(names[k]) + 2;
            file = malloc(n);
            if (!file) return 2;
            snprintf(file, n, "%s/%s", tok_path, names[k]);
            if (stat(file, &sb) != 0 && k == 0) {
                free(file);
                file = NULL;
            }
        }
    }
    rs_tokenizer *tok = NULL;
    rs_err err;
    rs_status st = rs_tokenizer_load(file ? file : tok_path, &tok, &err);
    free(file);
    if (st) {
        fprintf(stderr, "routescore tokenize: %s\n", err.msg);
        return 2;
    }
    rs_tokenizer_set_parse_special(tok, parse_special);
    if (max_tokens && add_special && max_tokens < rs_tokenizer_num_special(tok)) {
        fprintf(stderr, "routescore tokenize: --max-tokens %zu leaves no room for %zu special tokens\n", max_tokens,
                rs_tokenizer_num_special(tok));
        rs_tokenizer_free(tok);
        return 2;
    }
    ids_buf buf = {0};
    int failed = 0, rc = 0;
    if (bench_passes) {
        rc = bench(tok, in_path, field, add_special, max_tokens, bench_passes);
    } else if (in_path) {
        rc = tokenize_jsonl(tok, in_path, field, add_special, max_tokens, &buf, &failed, decode);
    } else {
        for (int i = first_text; i < argc; i++) {
            long line = i - first_text + 1;
            if (decode) {
                cJSON *arr = cJSON_Parse(argv[i]);
                if (decode_one(tok, arr, !add_special, line)) failed = 1;
                cJSON_Delete(arr);
            } else if (tokenize_one(tok, argv[i], strlen(argv[i]), add_special, max_tokens, &buf, line)) {
                failed = 1;
            }
        }
    }
    free(buf.v);
    rs_tokenizer_free(tok);
    if (fflush(stdout)) return 2;
    return rc ? rc : failed ? 1 : 0;
}
