/* test_util.h — tiny assertion helpers shared by the C tests. A failed CHECK
 * prints the expression and location and counts a failure; test_done()
 * returns the exit code (1 if anything failed). */
#ifndef RS_TEST_UTIL_H
#define RS_TEST_UTIL_H

#include <stdio.h>

#include "engine.h"

extern int rs_test_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            rs_test_failures++;                                                      \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            rs_test_failures++;                                                      \
        }                                                                            \
    } while (0)

/* Path helpers: env var value or NULL. */
const char *test_env(const char *name);
/* Reads a whole file; caller frees. NULL on error. */
char *test_read_file(const char *path, size_t *len);
int test_done(const char *name);
/* GPU tests: the visible CUDA devices (>= 1); 0 after printing why the test
 * skips (no CUDA in the build, no GPU); -1 after printing the error when a
 * driver is there but unusable (the test must fail, not skip). */
int test_cuda_devices(const char *name);
/* Monotonic seconds. */
double test_now(void);
/* rs_engine_open with backend (NULL: cpu), max_batch_tokens (0: default)
 * and 2 threads; CHECKs that it opened. NULL on failure. */
rs_engine *test_open_engine(const char *dir, const char *backend, int batch_tokens);
/* Reads dir/embeddings.jsonl (lines of float arrays) into a (n, dim) array
 * the caller frees; NULL when the file is missing. */
float *test_read_embeddings(const char *dir, size_t *n, size_t *dim);

/* An embedding router's golden case: dir/embeddings.jsonl scored with e in
 * one call and compared with dir/expected.json's "win_prob" list (made by a
 * numpy rendering). Fills every field; CHECKs that the files agree, the call
 * works and every prompt scored. Returns 0, or -1 when nothing was scored. */
typedef struct test_emb_case {
    float *emb;    /* (n, dim) */
    size_t n, dim;
    rs_score *out; /* (n) */
    double worst;  /* max |win_prob - expected| */
} test_emb_case;
int test_emb_case_run(test_emb_case *c, rs_engine *e, const char *dir);
void test_emb_case_free(test_emb_case *c);

#endif
