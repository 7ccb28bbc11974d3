/* test_util.h — tiny assertion helpers shared by the C tests. A failed CHECK
 * prints the expression and location and counts a failure; test_done()
 * returns the exit code (1 if anything failed). */
#ifndef RS_TEST_UTIL_H
#define RS_TEST_UTIL_H

#include <stdio.h>

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
/* Reads dir/embeddings.jsonl (lines of float arrays) into a (n, dim) array
 * the caller frees; NULL when the file is missing. */
float *test_read_embeddings(const char *dir, size_t *n, size_t *dim);

#endif
