/* test_tokenizer.c — unit tests of the tokenizer on tiny tokenizer.json files
 * written here, one behaviour each (WordPiece edge cases, BERT normalization,
 * added tokens, truncation, UTF-8 errors, refusals, early stop, threads).
 * The real-vocabulary comparison with HF lives in tokenizer_oracle.py. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "tokenizer.h"

/* ids of the test vocabulary */
enum { PAD, UNK, CLS, SEP, MASK, HELLO, WORLD, UN, AFF, ABLE, COMMA, BANG, CAFE, ZHONG, WEN, A, SUB_A, NAIVE, LB, RB, DOT };

static const char *VOCAB =
    "\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,\"[MASK]\":4,\"hello\":5,\"world\":6,\"un\":7,"
    "\"##aff\":8,\"##able\":9,\",\":10,\"!\":11,\"cafe\":12,\"\xe4\xb8\xad\":13,\"\xe6\x96\x87\":14,"
    "\"a\":15,\"##a\":16,\"naive\":17,\"[\":18,\"]\":19,\".\":20";

static const char *ADDED =
    "[{\"id\":0,\"content\":\"[PAD]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":1,\"content\":\"[UNK]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":2,\"content\":\"[CLS]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":3,\"content\":\"[SEP]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":4,\"content\":\"[MASK]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}]";

static const char *BERT_NORM =
    "{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,\"strip_accents\":null,\"lowercase\":true}";
static const char *TEMPLATE =
    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"[SEP]\",\"type_id\":0}}],"
    "\"pair\":[],\"special_tokens\":{\"[CLS]\":{\"id\":\"[CLS]\",\"ids\":[2],\"tokens\":[\"[CLS]\"]},"
    "\"[SEP]\":{\"id\":\"[SEP]\",\"ids\":[3],\"tokens\":[\"[SEP]\"]}}}";

static char g_dir[256];

/* Writes a tokenizer.json from its parts and loads it; NULL on failure (err set). */
static rs_tokenizer *make_tok(const char *name, const char *normalizer, const char *pre, const char *model_type,
                              int max_chars, const char *post, rs_status *st_out, rs_err *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f,
            "{\"version\":\"1.0\",\"truncation\":{\"max_length\":3},\"padding\":null,\"added_tokens\":%s,"
            "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":%s,"
            "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
            "\"model\":{\"type\":\"%s\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
            "\"max_input_chars_per_word\":%d,\"vocab\":{%s}}}",
            ADDED, normalizer, pre, post, model_type, max_chars, VOCAB);
    fclose(f);
    rs_tokenizer *t = NULL;
    rs_status st = rs_tokenizer_load(path, &t, err);
    if (st_out) *st_out = st;
    return st ? NULL : t;
}

static rs_tokenizer *bert_tok(int max_chars) {
    rs_err err;
    rs_tokenizer *t = make_tok("bert", BERT_NORM, "{\"type\":\"BertPreTokenizer\"}", "WordPiece", max_chars, TEMPLATE,
                               NULL, &err);
    CHECK_MSG(t != NULL, "load: %s", err.msg);
    return t;
}

/* Encodes s and compares with want[0..n_want). */
static void expect(const rs_tokenizer *t, const char *s, size_t len, int special, const int32_t *want, size_t n_want,
                   int line) {
    int32_t ids[256];
    size_t n = 0;
    int trunc = -1;
    rs_err err;
    rs_status st = rs_tokenizer_encode(t, s, len, special, 0, ids, 256, &n, &trunc, &err);
    int ok = st == RS_OK && n == n_want && !memcmp(ids, want, n * sizeof *ids) && trunc == 0;
    if (!ok) {
        fprintf(stderr, "line %d: encode(\"%.40s\"): st=%d (%s) n=%zu ids:", line, s, st, st ? err.msg : "", n);
        for (size_t i = 0; i < n && i < 20; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "  want:");
        for (size_t i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
        fputc('\n', stderr);
    }
    CHECK(ok);
}

#define EXPECT(t, s, special, ...)                                                                    \
    do {                                                                                              \
        const int32_t want_[] = {__VA_ARGS__};                                                        \
        expect((t), (s), strlen(s), (special), want_, sizeof want_ / sizeof want_[0], __LINE__);       \
    } while (0)
#define EXPECT_LEN(t, s, len, special, ...)                                                           \
    do {                                                                                              \
        const int32_t want_[] = {__VA_ARGS__};                                                        \
        expect((t), (s), (len), (special), want_, sizeof want_ / sizeof want_[0], __LINE__);          \
    } while (0)

static void test_wordpiece(const rs_tokenizer *t) {
    EXPECT(t, "Hello, World!", 1, CLS, HELLO, COMMA, WORLD, BANG, SEP);
    EXPECT(t, "Hello, World!", 0, HELLO, COMMA, WORLD, BANG);
    EXPECT(t, "zzz hello", 0, UNK, HELLO);               /* unknown word */
    EXPECT(t, "unaffable", 0, UN, AFF, ABLE);             /* ## continuation */
    EXPECT(t, "unaffablez unaff", 0, UNK, UN, AFF);       /* one bad piece: whole word unk */
    EXPECT(t, "affable", 0, UNK);                         /* "##aff" never starts a word */
    EXPECT(t, "aaaaaaaaaa", 0, A, SUB_A, SUB_A, SUB_A, SUB_A, SUB_A, SUB_A, SUB_A, SUB_A, SUB_A); /* 10 chars */
    EXPECT(t, "aaaaaaaaaaa", 0, UNK);                     /* 11 chars > max_input_chars_per_word */
    EXPECT(t, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 0, UNK);
    EXPECT(t, "hello...world", 0, HELLO, DOT, DOT, DOT, WORLD); /* punctuation isolated */
    EXPECT(t, "a$a", 0, A, UNK, A);                       /* ASCII symbols count as punctuation */
    EXPECT(t, "hello\xe2\x80\x94world", 0, HELLO, UNK, WORLD); /* U+2014 is Unicode punctuation */
    EXPECT(t, "", 1, CLS, SEP);                           /* empty text */
    int32_t ids[4];
    size_t n = 99;
    int tr;
    rs_err err;
    CHECK(rs_tokenizer_encode(t, "", 0, 0, 0, ids, 4, &n, &tr, &err) == RS_OK && n == 0);
    CHECK(rs_tokenizer_encode(t, NULL, 0, 0, 0, ids, 0, &n, &tr, &err) == RS_OK && n == 0);
}

static void test_normalizer(const rs_tokenizer *t) {
    EXPECT(t, "Caf\xc3\xa9 NA\xc3\x8fVE", 0, CAFE, NAIVE);          /* accents stripped, lowercased */
    EXPECT(t, "Cafe\xcc\x81", 0, CAFE);                                /* combining acute */
    EXPECT(t, "\xe4\xb8\xad\xe6\x96\x87", 0, ZHONG, WEN);             /* CJK split per char */
    EXPECT(t, "a\xe4\xb8\xad" "a", 0, A, ZHONG, A);
    EXPECT(t, "hel\x01lo\x7f", 0, HELLO);                            /* controls removed */
    EXPECT_LEN(t, "hel\0lo", 6, 0, HELLO);                            /* NUL removed */
    EXPECT(t, "hel\xef\xbf\xbdlo", 0, HELLO);                         /* U+FFFD removed */
    EXPECT(t, "hel\xe2\x80\x8blo", 0, HELLO);                         /* U+200B (Cf) removed */
    EXPECT(t, "hello\tworld\r\nhello\xc2\xa0world\xe3\x80\x80", 0, HELLO, WORLD, HELLO, WORLD); /* whitespace */
    EXPECT(t, "hello\x0bworld", 0, UNK);                              /* \v is Cc: removed, joins words */
    EXPECT(t, " \t\n ", 1, CLS, SEP);
}

static void test_added_tokens(rs_tokenizer *t) {
    /* by default a special token written in the text is the plain text it is
     * (tokenizer_oracle.py checks both modes against HF on real tokenizers) */
    EXPECT(t, "hello [SEP] world", 1, CLS, HELLO, LB, UNK, RB, WORLD, SEP);
    EXPECT(t, "[CLS][SEP]", 0, LB, UNK, RB, LB, UNK, RB);
    int32_t ids[16];
    size_t n;
    int tr;
    rs_err err;
    /* a span marks where the caller's text is: specials outside it still match */
    const char *tpl = "[CLS]hello[SEP][SEP]";
    rs_tok_span user = {10, 5}; /* the first [SEP] */
    CHECK(rs_tokenizer_encode_spans(t, tpl, strlen(tpl), &user, 1, 0, 0, ids, 16, &n, &tr, &err) == RS_OK && n == 6 &&
          ids[0] == CLS && ids[1] == HELLO && ids[2] == LB && ids[3] == UNK && ids[4] == RB && ids[5] == SEP);
    rs_tok_span straddle = {12, 4}; /* "EP][": both [SEP]s touch it */
    CHECK(rs_tokenizer_encode_spans(t, tpl, strlen(tpl), &straddle, 1, 0, 0, ids, 16, &n, &tr, &err) == RS_OK &&
          n == 8 && ids[0] == CLS && ids[7] == RB);
    CHECK(rs_tokenizer_encode_spans(t, tpl, strlen(tpl), NULL, 0, 0, 0, ids, 16, &n, &tr, &err) == RS_OK && n == 4 &&
          ids[3] == SEP);
    rs_tokenizer_set_parse_special(t, 1); /* HF's parsing: the checks below */
    EXPECT(t, "hello [SEP] world", 1, CLS, HELLO, SEP, WORLD, SEP);
    EXPECT(t, "hello[MASK]world", 0, HELLO, MASK, WORLD);
    EXPECT(t, "[CLS][SEP]", 0, CLS, SEP);
    EXPECT(t, "[UNK] [PAD]", 0, UNK, PAD);
    EXPECT(t, "[sep]", 0, LB, UNK, RB);      /* case matters: normalized=false */
    EXPECT(t, "[[SEP]]", 0, LB, SEP, RB);
    EXPECT(t, "[SEP", 0, LB, UNK);
    rs_tokenizer_set_parse_special(t, 0);
    CHECK(rs_tokenizer_token_id(t, "[MASK]") == MASK);
    CHECK(rs_tokenizer_token_id(t, "##able") == ABLE);
    CHECK(rs_tokenizer_token_id(t, "nope") == -1);
    CHECK(rs_tokenizer_num_special(t) == 2);
    CHECK(rs_tokenizer_vocab_size(t) == 21);
}

static void test_truncation(const rs_tokenizer *t) {
    int32_t ids[64];
    size_t n;
    int tr;
    rs_err err;
    const char *s = "hello world hello world";
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 1, 4, ids, 64, &n, &tr, &err) == RS_OK);
    CHECK(n == 4 && tr == 1 && ids[0] == CLS && ids[1] == HELLO && ids[2] == WORLD && ids[3] == SEP);
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 0, 3, ids, 64, &n, &tr, &err) == RS_OK);
    CHECK(n == 3 && tr == 1 && ids[0] == HELLO && ids[2] == HELLO);
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 1, 6, ids, 64, &n, &tr, &err) == RS_OK); /* exactly fits */
    CHECK(n == 6 && tr == 0 && ids[5] == SEP);
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 1, 2, ids, 64, &n, &tr, &err) == RS_OK); /* specials only */
    CHECK(n == 2 && tr == 1 && ids[0] == CLS && ids[1] == SEP);
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 1, 1, ids, 64, &n, &tr, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 1, 0, ids, 5, &n, &tr, &err) == RS_ERR_TOO_LARGE);
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 1, 0, ids, 6, &n, &tr, &err) == RS_OK && n == 6);
    /* a word that would overflow and then fails as a whole is one unk */
    CHECK(rs_tokenizer_encode(t, "hello unaffablez", 16, 0, 2, ids, 64, &n, &tr, &err) == RS_OK);
    CHECK(n == 2 && tr == 0 && ids[1] == UNK);
    /* the file's own truncation section (max_length 3) is ignored */
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 0, 0, ids, 64, &n, &tr, &err) == RS_OK && n == 4 && tr == 0);
}

static void test_utf8(const rs_tokenizer *t) {
    int32_t ids[64];
    size_t n;
    int tr;
    rs_err err;
    struct { const char *s; const char *where; } bad[] = {
        {"abc\xff" "def", "offset 3"},   {"ab\xc3", "offset 2"},           {"\xed\xa0\x80", "offset 0"},
        {"x\xc0\xaf", "offset 1"},       {"12345678\xf4\x90\x80\x80", "offset 8"}, {"\x80", "offset 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rs_status st = rs_tokenizer_encode(t, bad[i].s, strlen(bad[i].s), 1, 0, ids, 64, &n, &tr, &err);
        CHECK_MSG(st == RS_ERR_UTF8 && strstr(err.msg, bad[i].where), "case %zu: st=%d msg=%s", i, st, err.msg);
    }
}

static char *repeat(const char *unit, size_t total, size_t *len) {
    size_t u = strlen(unit);
    char *s = malloc(total + 1);
    for (size_t i = 0; i < total; i++) s[i] = unit[i % u];
    s[total] = 0;
    *len = total;
    return s;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_long_inputs(const rs_tokenizer *t) {
    rs_err err;
    size_t len, n;
    int tr;
    /* 10k-char word: over max_input_chars_per_word -> unk */
    char *w = repeat("a", 10000, &len);
    EXPECT_LEN(t, w, len, 0, UNK);
    free(w);
    /* a tokenizer without the small char limit: a ##a ##a ... 10k tokens */
    rs_tokenizer *big = bert_tok(100000);
    if (big) {
        w = repeat("a", 10000, &len);
        int32_t *ids = malloc(10002 * sizeof *ids);
        double t0 = now_s();
        CHECK(rs_tokenizer_encode(big, w, len, 1, 0, ids, 10002, &n, &tr, &err) == RS_OK);
        double dt = now_s() - t0;
        CHECK(n == 10002 && ids[1] == A && ids[2] == SUB_A && ids[10000] == SUB_A && ids[10001] == SEP);
        CHECK_MSG(dt < 0.5, "10k-char word took %.3f s", dt);
        free(ids);
        free(w);
        rs_tokenizer_free(big);
    }
    /* text longer than one chunk: every word still counted once */
    char *s = repeat("hello world ", 12 * 2000, &len);
    int32_t *ids = malloc(5000 * sizeof *ids);
    CHECK(rs_tokenizer_encode(t, s, len, 0, 0, ids, 5000, &n, &tr, &err) == RS_OK);
    int alternating = n == 4000;
    for (size_t i = 0; i < n && alternating; i++) alternating = ids[i] == (i % 2 ? WORLD : HELLO);
    CHECK_MSG(alternating, "n=%zu", n);
    free(s);
    /* 1 MB prompt, max_tokens 256: stops early, but still validates the end */
    s = repeat("hello, world! unaffable caf\xc3\xa9 ", 1 << 20, &len);
    while (len && ((unsigned char)s[len - 1] & 0xC0) == 0x80) s[--len] = 0; /* whole chars */
    int32_t full[512];
    double t0 = now_s();
    CHECK(rs_tokenizer_encode(t, s, len, 1, 256, ids, 5000, &n, &tr, &err) == RS_OK);
    double dt = now_s() - t0;
    CHECK(n == 256 && tr == 1 && ids[0] == CLS && ids[255] == SEP);
    size_t n2;
    size_t head = 1500;
    while (((unsigned char)s[head] & 0xC0) == 0x80) head--;
    CHECK(rs_tokenizer_encode(t, s, head, 1, 0, full, 512, &n2, &tr, &err) == RS_OK);
    CHECK(n2 > 256 && !memcmp(ids, full, 255 * sizeof *ids)); /* same prefix as an untruncated encode */
    CHECK_MSG(dt < 0.05, "1 MB prompt with max_tokens 256 took %.3f s", dt);
    s[len - 2] = (char)0xFF;
    CHECK(rs_tokenizer_encode(t, s, len, 1, 256, ids, 5000, &n, &tr, &err) == RS_ERR_UTF8);
    char want[64];
    snprintf(want, sizeof want, "offset %zu", len - 2);
    CHECK_MSG(strstr(err.msg, want) != NULL, "%s", err.msg);
    free(s);
    free(ids);
    /* throughput on English-like text, whole input (reported, loosely bounded) */
    s = repeat("The quick brown fox, who was Naive about caf\xc3\xa9s, jumped over 13 lazy dogs. ", 8 << 20, &len);
    while (len && ((unsigned char)s[len - 1] & 0xC0) == 0x80) s[--len] = 0;
    ids = malloc(len * sizeof *ids);
    t0 = now_s();
    CHECK(rs_tokenizer_encode(t, s, len, 1, 0, ids, len, &n, &tr, &err) == RS_OK);
    dt = now_s() - t0;
    printf("throughput: %.1f MB/s (%zu bytes -> %zu ids in %.3f s)\n", len / dt / 1e6, len, n, dt);
    free(ids);
    free(s);
}

static void test_refusals(void) {
    struct { const char *norm, *pre, *model, *post, *name; } cases[] = {
        {"{\"type\":\"ByteLevel\"}", "null", "WordPiece", "null", "ByteLevel"},
        {"null", "{\"type\":\"UnicodeScripts\"}", "WordPiece", "null", "UnicodeScripts"},
        {"null", "{\"type\":\"ByteLevel\"}", "WordPiece", "null", "ByteLevel"},
        {"null", "null", "BPE", "null", "BPE"},
        {"null", "null", "WordLevel", "null", "WordLevel"},
        {"null", "null", "WordPiece", "{\"type\":\"Custom\"}", "Custom"},
        {"{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Replace\",\"pattern\":"
         "{\"Regex\":\"(\"},\"content\":\"x\"}]}",
         "null", "WordPiece", "null", "regex"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rs_status st = RS_OK;
        rs_err err;
        rs_tokenizer *t = make_tok("refuse", cases[i].norm, cases[i].pre, cases[i].model, 100, cases[i].post, &st, &err);
        CHECK_MSG(!t && st == RS_ERR_UNSUPPORTED && strstr(err.msg, cases[i].name), "case %zu: st=%d msg=%s", i, st,
                  err.msg);
        rs_tokenizer_free(t);
    }
    rs_tokenizer *t = NULL;
    rs_err err;
    CHECK(rs_tokenizer_load("/nonexistent/tokenizer.json", &t, &err) == RS_ERR_IO && !t);
    /* An added token that normalizes to nothing (a lone combining accent
     * under strip_accents): it used to load and then crash every encode on
     * its empty pattern. HF accepts it and splits the text between every
     * character; routescore refuses it at load, naming it. */
    const char *data = getenv("RS_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer/regress/empty_normalized_added.json", data ? data : "tests/data");
    rs_status st = rs_tokenizer_load(path, &t, &err);
    CHECK_MSG(st == RS_ERR_FORMAT && !t && strstr(err.msg, "normalizes to nothing") && strstr(err.msg, "id 5"),
              "st=%d msg=%s", st, st ? err.msg : "");
    rs_tokenizer_free(t);
}

static void test_other_components(void) {
    rs_err err;
    /* Sequence of normalizers, WhitespaceSplit, BertProcessing */
    rs_tokenizer *t = make_tok("seq",
                               "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFD\"},{\"type\":\"Lowercase\"},"
                               "{\"type\":\"StripAccents\"},{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}]}",
                               "{\"type\":\"WhitespaceSplit\"}", "WordPiece", 100,
                               "{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",3],\"cls\":[\"[CLS]\",2]}", NULL, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        EXPECT(t, "  CAF\xc3\x89 Hello,  ", 1, CLS, CAFE, UNK, SEP); /* "hello," is one word here */
        rs_tokenizer_free(t);
    }
    /* no pre-tokenizer: the whole text is one word, however long (no chunk cuts) */
    t = make_tok("nopre", "null", "null", "WordPiece", 100000, "null", NULL, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        size_t len;
        char *s = repeat("hello ", 6000, &len);
        EXPECT_LEN(t, s, len, 0, UNK);
        free(s);
        rs_tokenizer_free(t);
    }
    t = make_tok("ws", "{\"type\":\"NFKC\"}", "{\"type\":\"Whitespace\"}", "WordPiece", 100, "null", NULL, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        EXPECT(t, "hello,,world!", 1, HELLO, UNK, WORLD, BANG); /* no post-processor: no specials */
        EXPECT(t, "\xef\xbd\x88\xef\xbd\x85llo", 0, HELLO);   /* fullwidth "he" -> NFKC */
        CHECK(rs_tokenizer_num_special(t) == 0);
        rs_tokenizer_free(t);
    }
}

typedef struct thread_arg {
    const rs_tokenizer *t;
    const char *text;
    size_t len;
    const int32_t *want;
    size_t n_want;
    int ok;
} thread_arg;

static void *thread_main(void *p) {
    thread_arg *a = p;
    int32_t ids[4096];
    a->ok = 1;
    for (int it = 0; it < 200; it++) {
        size_t n;
        int tr;
        rs_err err;
        if (rs_tokenizer_encode(a->t, a->text, a->len, 1, 0, ids, 4096, &n, &tr, &err) != RS_OK || n != a->n_want ||
            memcmp(ids, a->want, n * sizeof *ids))
            a->ok = 0;
    }
    return NULL;
}

static rs_tokenizer *write_and_load(const char *name, const char *json, rs_status *st, rs_err *err) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(json, f);
    fclose(f);
    rs_tokenizer *t = NULL;
    *st = rs_tokenizer_load(path, &t, err);
    return t;
}

/* Llama 3's rank file (skipped when models/fetch_llama3_tokenizer.sh has not
 * run): the check, BOS, special tokens in text, the rating tokens
 * added through the API, decoding. */
static void test_tiktoken(void) {
    const char *cache = test_env("RS_MODEL_CACHE");
    char path[1024];
    snprintf(path, sizeof path, "%s/llama3/tokenizer.model", cache ? cache : "models/cache");
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("test_tiktoken: skipped (%s not found)\n", path);
        return;
    }
    fclose(f);
    rs_tokenizer *t = NULL;
    rs_err err;
    CHECK_MSG(rs_tokenizer_load(path, &t, &err) == RS_OK, "%s", err.msg);
    if (!t) return;
    int32_t ids[64];
    size_t n;
    int tr;
    const char *s = "This is a test sentence.";
    const int32_t want[] = {128000, 2028, 374, 264, 1296, 11914, 13};
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 0, 0, ids, 64, &n, &tr, &err) == RS_OK && n == 6 &&
          !memcmp(ids, want + 1, sizeof want - sizeof want[0]));
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 1, 0, ids, 64, &n, &tr, &err) == RS_OK && n == 7 &&
          !memcmp(ids, want, sizeof want));
    CHECK(rs_tokenizer_num_special(t) == 1 && rs_tokenizer_vocab_size(t) == 128256);
    CHECK(rs_tokenizer_token_id(t, "<|eot_id|>") == 128009 && rs_tokenizer_token_id(t, "<|reserved_special_token_245|>") == 128255);
    /* the rating tokens, as the causal router adds them */
    char name[16];
    for (int k = 1; k <= 5; k++) {
        snprintf(name, sizeof name, "[[%d]]", k);
        CHECK(rs_tokenizer_add_special(t, name, 128255 + k, &err) == RS_OK);
    }
    CHECK(rs_tokenizer_vocab_size(t) == 128261 && rs_tokenizer_token_id(t, "[[3]]") == 128258);
    s = "<|start_header_id|>user<|end_header_id|>\n\n[[4]]x[[5]]";
    /* plain by default: no special id at all */
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 0, 0, ids, 64, &n, &tr, &err) == RS_OK && n > 7);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] < 128000);
    rs_tokenizer_set_parse_special(t, 1);
    CHECK(rs_tokenizer_encode(t, s, strlen(s), 0, 0, ids, 64, &n, &tr, &err) == RS_OK && n == 7 && ids[0] == 128006 &&
          ids[2] == 128007 && ids[4] == 128259 && ids[6] == 128260);
    char *text = NULL;
    size_t len = 0;
    CHECK(rs_tokenizer_decode(t, ids, n, 0, &text, &len, &err) == RS_OK && text && !strcmp(text, s));
    free(text);
    CHECK(rs_tokenizer_decode(t, ids, n, 1, &text, &len, &err) == RS_OK && text && !strcmp(text, "user\n\nx"));
    free(text);
    /* a lone continuation byte decodes to U+FFFD, as tiktoken's errors="replace" */
    int32_t lone[] = {2028, 128}; /* "This", the lone lead byte 0xC4 (rank 128) */
    CHECK(rs_tokenizer_decode(t, lone, 2, 1, &text, &len, &err) == RS_OK && text && !strcmp(text, "This\xef\xbf\xbd"));
    free(text);
    rs_tokenizer_free(t);
}

/* Corrupt inputs for the new loaders: clear errors, never a crash. */
static void test_corrupt_files(void) {
    rs_status st;
    rs_err err;
    rs_tokenizer *t;
    /* rank files */
    t = write_and_load("ranks1", "IQ== 0\nIg== x\n", &st, &err);
    CHECK_MSG(!t && st == RS_ERR_FORMAT, "%s", err.msg);
    t = write_and_load("ranks2", "IQ== 0\nIQ== 1\n", &st, &err);
    CHECK_MSG(!t && st == RS_ERR_FORMAT, "%s", err.msg);
    t = write_and_load("ranks3", "IQ== 0\nIg== 1\n", &st, &err); /* not all 256 bytes */
    CHECK_MSG(!t && st == RS_ERR_FORMAT && strstr(err.msg, "byte"), "%s", err.msg);
    /* a Precompiled charsmap whose trie size overruns the blob, then one
     * whose trie points everywhere: the first is refused, the second loads
     * and normalizes within bounds */
    const char *fmt =
        "{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"},\"pre_tokenizer\":"
        "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\",\"split\":true},"
        "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0],[\"\u2581a\",-1.0],[\"a\",-2.0]]}}";
    char json[1024];
    snprintf(json, sizeof json, fmt, "/////w=="); /* trie size 0xFFFFFFFF */
    t = write_and_load("pc1", json, &st, &err);
    CHECK_MSG(!t && st == RS_ERR_FORMAT && strstr(err.msg, "Precompiled"), "%s", err.msg);
    /* size 8, units 0xFFFFFFFF x2, then "b\0" */
    snprintf(json, sizeof json, fmt, "CAAAAP//////////YgA=");
    t = write_and_load("pc2", json, &st, &err);
    CHECK_MSG(t && st == RS_OK, "%s", err.msg);
    if (t) {
        int32_t ids[16];
        size_t n;
        int tr;
        CHECK(rs_tokenizer_encode(t, "a a\xc3\xa9", 5, 0, 0, ids, 16, &n, &tr, &err) == RS_OK && n >= 2 && ids[0] == 1);
        rs_tokenizer_free(t);
    }
}

static void test_threads(const rs_tokenizer *t) {
    const char *text = "Hello, World! unaffable caf\xc3\xa9 [SEP] \xe4\xb8\xad\xe6\x96\x87 zzz aaaa";
    int32_t want[4096];
    size_t n;
    int tr;
    rs_err err;
    CHECK(rs_tokenizer_encode(t, text, strlen(text), 1, 0, want, 4096, &n, &tr, &err) == RS_OK);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){t, text, strlen(text), want, n, 0};
        pthread_create(&th[i], NULL, thread_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].ok);
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rs_test_tokenizer.%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
    if (system(cmd) != 0) return 1;
    rs_tokenizer *t = bert_tok(10);
    if (!t) return test_done("test_tokenizer");
    test_wordpiece(t);
    test_normalizer(t);
    test_added_tokens(t);
    test_truncation(t);
    test_utf8(t);
    test_long_inputs(t);
    test_threads(t);
    test_refusals();
    test_other_components();
    test_tiktoken();
    test_corrupt_files();
    rs_tokenizer_free(t);
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_done("test_tokenizer");
}
