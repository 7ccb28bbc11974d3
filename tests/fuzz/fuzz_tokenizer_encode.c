/* fuzz_tokenizer_encode.c — encode and decode arbitrary bytes with the real
 * tokenizers (WordPiece, Unigram, byte-level BPE with Llama 3's specials):
 * the first byte picks the tokenizer and the options, the rest is the text
 * (invalid UTF-8 included) and, read as little-endian int32s, ids to decode.
 * RS_FUZZ_TOKENIZERS: ':'-separated tokenizer files (set by CTest). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define MAX_TOK 8
static rs_tokenizer *g_tok[MAX_TOK];
static int g_n;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *list = getenv("RS_FUZZ_TOKENIZERS");
    if (!list) {
        fprintf(stderr, "fuzz_tokenizer_encode: set RS_FUZZ_TOKENIZERS\n");
        exit(1);
    }
    char *copy = strdup(list);
    for (char *p = strtok(copy, ":"); p && g_n < MAX_TOK; p = strtok(NULL, ":")) {
        rs_err err;
        if (rs_tokenizer_load(p, &g_tok[g_n], &err) != RS_OK) {
            fprintf(stderr, "fuzz_tokenizer_encode: %s\n", err.msg);
            exit(1);
        }
        g_n++;
    }
    free(copy);
    if (!g_n) exit(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    rs_tokenizer *t = g_tok[data[0] % g_n];
    int add_special = data[0] >> 7 & 1;
    size_t max_tokens = data[0] >> 4 & 7 ? (size_t)(data[0] >> 4 & 7) * 3 : 0;
    const char *text = (const char *)data + 1;
    size_t len = n - 1;
    size_t cap = len * 4 + 64;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return 0;
    size_t k = 0;
    int tr = 0;
    rs_err err;
    /* specials plain, then parsed, then over a span in the middle */
    rs_status st = rs_tokenizer_encode(t, text, len, add_special, max_tokens, ids, cap, &k, &tr, &err);
    if (st == RS_OK && max_tokens && k > max_tokens) __builtin_trap();
    rs_tok_span span = {len / 3, len / 3};
    (void)rs_tokenizer_encode_spans(t, text, len, &span, 1, add_special, max_tokens, ids, cap, &k, &tr, &err);
    char *out = NULL;
    size_t n_ids = len / 4;
    int32_t *raw = malloc((n_ids ? n_ids : 1) * sizeof *raw);
    if (raw) {
        memcpy(raw, text, n_ids * sizeof *raw);
        if (rs_tokenizer_decode(t, raw, n_ids, data[0] & 1, &out, NULL, &err) == RS_OK) free(out);
        free(raw);
    }
    free(ids);
    return 0;
}
