/* fuzz_router.c — a router directory's small files, all at once: the input is
 * config.json, routescore.json and head.safetensors separated by lines of
 * "%%%%"; beside them the tiny XLM-R checkpoint's weights and tokenizer
 * (RS_FUZZ_ENCODER, set by CTest). rs_engine_open must refuse what is wrong
 * with a status; a router that opens scores one prompt. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *enc = getenv("RS_FUZZ_ENCODER");
    if (!enc) {
        fprintf(stderr, "fuzz_router: set RS_FUZZ_ENCODER to a model directory\n");
        exit(1);
    }
    char src[1024], dst[1024];
    const char *names[] = {"model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", enc, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", rs_fuzz_dir(), names[i]);
        if (symlink(src, dst) != 0) {
            perror(dst);
            exit(1);
        }
    }
    return 0;
}

static const uint8_t *part(const uint8_t **p, const uint8_t *end, size_t *len) {
    const uint8_t *s = *p;
    const uint8_t *m = NULL;
    for (const uint8_t *q = s; q + 5 <= end; q++)
        if (!memcmp(q, "\n%%%%", 5)) {
            m = q;
            break;
        }
    *len = (size_t)((m ? m : end) - s);
    *p = m ? m + 5 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const uint8_t *p = data, *end = data + n;
    size_t lc, lm, lh;
    const uint8_t *c = part(&p, end, &lc), *m = part(&p, end, &lm), *h = part(&p, end, &lh);
    rs_fuzz_file(0, "config.json", c, lc);
    rs_fuzz_file(1, "routescore.json", m, lm);
    rs_fuzz_file(2, "head.safetensors", h, lh);
    rs_engine_opts o;
    rs_engine_opts_default(&o);
    o.n_threads = 1;
    o.max_batch_tokens = 256;
    rs_engine *e = NULL;
    rs_err err;
    if (rs_engine_open(rs_fuzz_dir(), &o, &e, &err) != RS_OK) return 0;
    const char *prompt = "Why is the sky blue?";
    size_t len = strlen(prompt);
    rs_score s;
    (void)rs_engine_score(e, &prompt, &len, 1, NAN, &s, &err);
    rs_engine_close(e);
    return 0;
}
