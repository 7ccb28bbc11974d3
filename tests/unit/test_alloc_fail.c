/* test_alloc_fail.c — allocation fault injection, as SQLite does it: the Nth
 * allocation fails, for N = 0, 1, 2, ... over opening a router and scoring
 * with it, until a run needs no more allocations than N. Every failing run
 * must end in a clean status (no crash, no success with missing parts, no
 * leak: the sanitizer build's LeakSanitizer checks at exit).
 *
 * How: the binary is linked with -Wl,--wrap=malloc,--wrap=calloc,
 * --wrap=realloc,--wrap=aligned_alloc (tests/CMakeLists.txt), so every
 * allocation that rs_host's code makes goes through the counters below;
 * cJSON's own allocations are routed here with cJSON_InitHooks. Nothing in
 * production code changes. Allocations inside other shared libraries
 * (utf8proc, PCRE2, oneDNN, OpenMP, libcrypto) are not counted.
 *
 * Routers: the tiny XLM-R classifier with its tokenizer (bert), the tiny
 * causal router (Llama, tiktoken-free tokenizer.json, chat template), the
 * mf_routellm checkpoint on client embeddings. RS_ALLOC_FAIL_STRIDE (default
 * 1: every N) makes a quicker pass over big N. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "test_util.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t k);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);

static long g_fail_at = -1; /* the allocation that fails; -1: none */
static long g_count;        /* allocations seen since the run began */
static int g_failed;        /* the injected failure happened */

static int should_fail(void) {
    if (g_fail_at < 0) return 0;
    if (g_count++ != g_fail_at) return 0;
    g_failed = 1;
    return 1;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t k) { return should_fail() ? NULL : __real_calloc(n, k); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { return should_fail() ? NULL : __real_aligned_alloc(a, n); }

static void *cjson_malloc(size_t n) { return __wrap_malloc(n); }

typedef struct router_case {
    const char *name, *dir;
    int embeddings; /* scores client embeddings (of the router's width), not text */
} router_case;

/* One open + score; returns the status of the first failing step. */
static rs_status run_once(const router_case *rc, rs_err *err) {
    rs_engine_opts o;
    rs_engine_opts_default(&o);
    o.n_threads = 1;
    o.max_batch_tokens = 512;
    rs_engine *e = NULL;
    rs_status st = rs_engine_open(rc->dir, &o, &e, err);
    if (st != RS_OK) return st;
    rs_score s[2];
    if (rc->embeddings) {
        rs_router_info info;
        rs_engine_info(e, &info);
        size_t dim = (size_t)info.client_embed_dim;
        float *emb = __real_malloc(2 * dim * sizeof *emb + 1); /* the test's own: not counted */
        for (size_t i = 0; i < 2 * dim; i++) emb[i] = sinf((float)i);
        st = rs_engine_score_embeddings(e, emb, 2, dim, NAN, s, err);
        free(emb);
    } else {
        const char *p[2] = {"Why is the sky blue?", "Prove that sqrt(2) is irrational <|eot_id|>."};
        size_t len[2] = {strlen(p[0]), strlen(p[1])};
        st = rs_engine_score(e, p, len, 2, NAN, s, err);
        for (int i = 0; st == RS_OK && i < 2; i++)
            if (s[i].status != RS_OK) { /* a per-prompt failure is a clean one too, with its message */
                st = s[i].status;
                snprintf(err->msg, sizeof err->msg, "%s", s[i].error);
            }
    }
    rs_engine_close(e);
    return st;
}

static void loop(const router_case *rc, long stride) {
    rs_err err;
    g_fail_at = -1;
    g_count = 0;
    rs_status st = run_once(rc, &err);
    CHECK_MSG(st == RS_OK, "%s: without faults: %s", rc->name, st ? err.msg : "");
    if (st != RS_OK) return;
    long n_fail = 0, worst = 0;
    for (long n = 0;; n += n < 2000 ? 1 : stride) {
        g_fail_at = n;
        g_count = 0;
        g_failed = 0;
        memset(&err, 0, sizeof err);
        st = run_once(rc, &err);
        g_fail_at = -1;
        if (!g_failed) { /* the run needed fewer than n + 1 allocations: all covered */
            CHECK_MSG(st == RS_OK, "%s: no fault injected at %ld but status %d: %s", rc->name, n, st, err.msg);
            worst = n;
            break;
        }
        n_fail++;
        /* a failed allocation must fail the run, with a message */
        CHECK_MSG(st != RS_OK && err.msg[0], "%s: allocation %ld failed but the run reported %s", rc->name, n,
                  st == RS_OK ? "success" : "an empty message");
        if (st == RS_ERR_INTERNAL) CHECK_MSG(0, "%s: allocation %ld: internal error: %s", rc->name, n, err.msg);
    }
    printf("%s: %ld allocations per open + score, %ld failure runs, each a clean status\n", rc->name, worst, n_fail);
}

int main(void) {
    cJSON_Hooks hooks = {cjson_malloc, free};
    cJSON_InitHooks(&hooks);
    const char *data = getenv("RS_TEST_DATA");
    if (!data) data = "tests/data";
    const char *stride_env = getenv("RS_ALLOC_FAIL_STRIDE");
    long stride = stride_env ? atol(stride_env) : 1;
    if (stride < 1) stride = 1;
    char bert[1024], causal[1024], mf[1024];
    snprintf(bert, sizeof bert, "%s/fidelity/xlmr_tiny_text", data);
    snprintf(causal, sizeof causal, "%s/causal_tiny/router", data);
    snprintf(mf, sizeof mf, "%s/mf_routellm", data);
    const router_case cases[] = {{"mf_routellm", mf, 1}, {"causal_tiny", causal, 0}, {"xlmr_tiny_text", bert, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) loop(&cases[i], stride);
    return test_done("test_alloc_fail");
}
