/* serve_faults.c — `routescore serve` with test-only fault hooks, linked
 * only into this test binary (tests/CMakeLists.txt): nothing in the
 * production code reads an environment variable or carries a fault switch.
 *
 * How: the binary is linked with -Wl,--wrap for the engine's forward entry
 * points, the allocator (malloc, calloc, realloc, aligned_alloc; cJSON is
 * routed here with cJSON_InitHooks) and the server's log function, so the
 * server's own objects call the wrappers below. (Allocations inside shared
 * libraries — libgrpc, protobuf-c, libmicrohttpd, OpenMP, oneDNN — are not
 * reached, as in test_alloc_fail.c.)
 *
 * Environment (read here, in the test binary):
 *   ROUTESCORE_TEST_BACKEND_FAIL_AFTER=N  every forward after the N-th
 *     (rs_engine_score_tokens / _embeddings called by the batcher) fails
 *     with RS_ERR_BACKEND, as a lost GPU would (tests/server/server_fatal.py).
 *   ROUTESCORE_TEST_ALLOC_FAIL_AT=N  counting starts when the server logs
 *     "serving"; the N-th allocation after that (0-based) fails, once.
 *     -1 counts without failing. At exit the binary prints
 *     {"event":"alloc_faults","counted":C,"failed":F} on stderr
 *     (tests/server/server_alloc_fail.py). */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine.h"
#include "srv_log.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t k);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
rs_status __real_rs_engine_score_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n, float threshold,
                                        rs_score *out, rs_err *err);
rs_status __real_rs_engine_score_embeddings(rs_engine *e, const float *emb, size_t n, size_t dim, float threshold,
                                            rs_score *out, rs_err *err);
void __real_rs_log(rs_log_level l, const char *event, const char *fields_fmt, ...);

/* ---- allocation faults ---- */
static _Atomic int g_armed;
static long g_fail_at = -2; /* -2: off; -1: count only */
static _Atomic long g_count, g_failed;

static int should_fail(void) {
    if (!atomic_load(&g_armed)) return 0;
    const long i = atomic_fetch_add(&g_count, 1);
    if (i != g_fail_at) return 0;
    atomic_fetch_add(&g_failed, 1);
    return 1;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t k) { return should_fail() ? NULL : __real_calloc(n, k); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n) { return should_fail() ? NULL : __real_aligned_alloc(a, n); }
static void *cjson_malloc(size_t n) { return __wrap_malloc(n); }

/* ---- backend faults ---- */
static long g_backend_after = -1;
static _Atomic long g_forwards;

static int backend_fault(rs_err *err) {
    if (g_backend_after < 0 || atomic_fetch_add(&g_forwards, 1) < g_backend_after) return 0;
    rs_errf(err, RS_ERR_BACKEND, "injected backend fault after %ld forwards", g_backend_after);
    return 1;
}

rs_status __wrap_rs_engine_score_tokens(rs_engine *e, const int32_t *ids, const size_t *offsets, size_t n, float threshold,
                                        rs_score *out, rs_err *err) {
    if (backend_fault(err)) return RS_ERR_BACKEND;
    return __real_rs_engine_score_tokens(e, ids, offsets, n, threshold, out, err);
}

rs_status __wrap_rs_engine_score_embeddings(rs_engine *e, const float *emb, size_t n, size_t dim, float threshold,
                                            rs_score *out, rs_err *err) {
    if (backend_fault(err)) return RS_ERR_BACKEND;
    return __real_rs_engine_score_embeddings(e, emb, n, dim, threshold, out, err);
}

/* ---- the log: "serving" arms the allocation counter ---- */
void __wrap_rs_log(rs_log_level l, const char *event, const char *fields_fmt, ...) {
    va_list ap;
    va_start(ap, fields_fmt);
    char fields[4096];
    vsnprintf(fields, sizeof fields, fields_fmt, ap);
    va_end(ap);
    __real_rs_log(l, event, "%s", fields);
    if (!strcmp(event, "serving") && g_fail_at >= -1) atomic_store(&g_armed, 1);
}

int main(int argc, char **argv) {
    const char *b = getenv("ROUTESCORE_TEST_BACKEND_FAIL_AFTER");
    if (b && *b) {
        g_backend_after = atol(b);
        fprintf(stderr, "{\"event\":\"fault_injection\",\"backend_fails_after_forwards\":%ld}\n", g_backend_after);
    }
    const char *a = getenv("ROUTESCORE_TEST_ALLOC_FAIL_AT");
    if (a && *a) g_fail_at = atol(a) < -1 ? -1 : atol(a);
    cJSON_Hooks hooks = {cjson_malloc, free};
    cJSON_InitHooks(&hooks);
    /* argv: serve_faults [serve] FLAGS... */
    int shift = argc > 1 && !strcmp(argv[1], "serve") ? 1 : 0;
    const int rc = rs_cli_serve(argc - shift, argv + shift);
    atomic_store(&g_armed, 0);
    if (g_fail_at >= -1)
        fprintf(stderr, "{\"event\":\"alloc_faults\",\"counted\":%ld,\"failed\":%ld}\n", atomic_load(&g_count),
                atomic_load(&g_failed));
    return rc;
}
