/* test_util.c — see test_util.h. */
#include "test_util.h"

#include <stdlib.h>

int rs_test_failures = 0;

const char *test_env(const char *name) {
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len) *len = (size_t)n;
    }
    return buf;
}

int test_done(const char *name) {
    if (rs_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, rs_test_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}
