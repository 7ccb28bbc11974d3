/* fuzz_tokenizer_load.c — rs_tokenizer_load on arbitrary bytes (tokenizer.json
 * or a tiktoken rank file); a tokenizer that loads must then encode and
 * decode a few texts in both special-token modes without a fault (the load
 * once accepted an added token that crashed every encode). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tokenizer.h"

static const char *const TEXTS[] = {"Hello, world! caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87", "a  b\t\nc [SEP] <|eot_id|>",
                                    "\xcc\x81x\xcc\x81", ""};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = rs_fuzz_file(0, "tokenizer.json", data, n);
    rs_tokenizer *t = NULL;
    rs_err err;
    if (rs_tokenizer_load(path, &t, &err) != RS_OK) return 0;
    int32_t ids[512];
    for (int mode = 0; mode < 2; mode++) {
        rs_tokenizer_set_parse_special(t, mode);
        for (size_t i = 0; i < sizeof TEXTS / sizeof *TEXTS; i++) {
            size_t k = 0;
            int tr = 0;
            if (rs_tokenizer_encode(t, TEXTS[i], strlen(TEXTS[i]), 1, 0, ids, 512, &k, &tr, &err) != RS_OK) continue;
            char *text = NULL;
            if (rs_tokenizer_decode(t, ids, k, mode, &text, NULL, &err) == RS_OK) free(text);
        }
    }
    (void)rs_tokenizer_token_id(t, "[UNK]");
    rs_tokenizer_free(t);
    return 0;
}
