/* fuzz_util.c — see fuzz_util.h. */
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

static void cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", g_dir);
}

const char *rs_fuzz_dir(void) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/rs_fuzz.XXXXXX");
        if (!mkdtemp(g_dir)) abort();
        atexit(cleanup);
    }
    return g_dir;
}

const char *rs_fuzz_file(int slot, const char *name, const uint8_t *data, size_t n) {
    static char paths[4][512];
    char *p = paths[slot & 3];
    snprintf(p, 512, "%s/%s", rs_fuzz_dir(), name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) abort();
    return p;
}
