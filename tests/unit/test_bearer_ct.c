/* test_bearer_ct.c — the bearer-token comparison (rs_srv_bearer_ok).
 *
 * Correctness: listed tokens are accepted (scheme case-insensitive), a
 * wrong token, a prefix, an extension, a wrong scheme, an embedded NUL and
 * an over-long value are refused.
 *
 * Constant time, checked the way ctgrind does: run under valgrind's
 * memcheck with the tokens' bytes marked undefined (secret), any branch or
 * memory index that depends on them is reported ("Conditional jump or move
 * depends on uninitialised value(s)") and fails the run
 * (--error-exitcode). The result itself is derived from the secret and is
 * marked defined before it is looked at. Without valgrind only the
 * correctness part runs (the CTest test then needs valgrind: it skips). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <valgrind/memcheck.h>

#include "srv_config.h"

static int fails;
#define CHECK(c, ...)                                  \
    do {                                               \
        if (!(c)) {                                    \
            fails++;                                   \
            printf("FAIL " __VA_ARGS__);               \
            printf("\n");                              \
        }                                              \
    } while (0)

static int try_value(char (*tok)[256], int n, const char *v, size_t vl) {
    if (RUNNING_ON_VALGRIND) VALGRIND_MAKE_MEM_UNDEFINED(tok, (size_t)n * 256); /* the secret */
    int ok = rs_srv_bearer_ok((const char (*)[256])tok, n, v, vl);
    if (RUNNING_ON_VALGRIND) {
        VALGRIND_MAKE_MEM_DEFINED(&ok, sizeof ok);
        VALGRIND_MAKE_MEM_DEFINED(tok, (size_t)n * 256);
    }
    return ok;
}

static int try(char (*tok)[256], int n, const char *v) { return try_value(tok, n, v, strlen(v)); }

int main(void) {
    char (*tok)[256] = calloc(3, 256);
    if (!tok) return 1;
    snprintf(tok[0], 256, "s3cret-token-1");
    snprintf(tok[1], 256, "x");
    memset(tok[2], 'k', 255); /* the longest token: 255 bytes */
    char big[300] = "Bearer ";
    memset(big + 7, 'k', 255);
    big[262] = 0;
    CHECK(try(tok, 3, "Bearer s3cret-token-1"), "first token accepted");
    CHECK(try(tok, 3, "bearer x"), "scheme case-insensitive, one-byte token");
    CHECK(try(tok, 3, big), "255-byte token accepted");
    big[261] = 'j';
    CHECK(!try(tok, 3, big), "255-byte token with its last byte wrong refused");
    big[261] = 'k';
    big[262] = 'k';
    big[263] = 0;
    CHECK(!try(tok, 3, big), "256-byte value refused");
    CHECK(!try(tok, 3, "Bearer s3cret-token-"), "a prefix refused");
    CHECK(!try(tok, 3, "Bearer s3cret-token-12"), "an extension refused");
    CHECK(!try(tok, 3, "Bearer S3cret-token-1"), "token bytes are case-sensitive");
    CHECK(!try(tok, 3, "Basic s3cret-token-1"), "another scheme refused");
    CHECK(!try(tok, 3, "Bearer "), "an empty token refused");
    CHECK(!try(tok, 3, "Bearer"), "no token refused");
    CHECK(!try(tok, 3, ""), "empty header refused");
    CHECK(!try_value(tok, 3, "Bearer x\0yz", 11), "a NUL inside the value refused (not cut at it)");
    CHECK(!try(tok, 0, "Bearer x"), "no tokens: nothing accepted");
    /* The same comparisons with tokens differing at every position: under
     * valgrind each must take the same path (no report). */
    char v[300];
    for (int pos = 0; pos < 14; pos++) {
        snprintf(v, sizeof v, "Bearer s3cret-token-1");
        v[7 + pos] ^= 1;
        CHECK(!try(tok, 3, v), "one byte wrong at %d refused", pos);
    }
    free(tok);
    printf("%s: %d failure(s)%s\n", fails ? "FAIL" : "ok", fails, RUNNING_ON_VALGRIND ? " (under valgrind)" : "");
    return fails ? 1 : 0;
}
