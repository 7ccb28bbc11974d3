/* tok_internal.h — the pieces of the tokenizer pipeline, shared by the tok_*.c
 * files and tokenizer.c; not a public interface.
 *
 * Text moves through the pipeline as arrays of code points (int32_t, the type
 * utf8proc works in), so normalizers and pre-tokenizers never re-decode UTF-8.
 * The model sees each pre-tokenized word as UTF-8 bytes because vocabularies
 * are keyed by bytes. Everything here is immutable after load except the
 * per-call rs_tok_scratch, which is why encode is thread-safe. */
#ifndef RS_TOK_INTERNAL_H
#define RS_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* ---- Unicode classes as HF uses them (tok_unicode_tables.c, generated) ---- */
int rs_tok_is_control(uint32_t cp);         /* clean_text drops these */
int rs_tok_is_mark_nonspacing(uint32_t cp); /* BertNormalizer strip_accents drops */
int rs_tok_is_combining_mark(uint32_t cp);  /* StripAccents normalizer drops */
int rs_tok_is_punctuation(uint32_t cp);     /* Unicode P* (BertPreTokenizer) */
uint32_t rs_tok_lower_simple(uint32_t cp);  /* Rust to_lowercase, 1-char results */
/* 1 where HF's NFD (compat: NFKD) changes cp; utf8proc decomposes characters
 * newer than HF's normalization tables, so we ask this first. */
int rs_tok_has_decomposition(uint32_t cp, int compat);
/* 1 where HF's tables give cp a nonzero combining class (marks newer than
 * them count as starters there, so they must not be reordered here). */
int rs_tok_is_nonstarter(uint32_t cp);
int rs_tok_is_word(uint32_t cp); /* regex \w (Rust regex's Unicode tables) */

/* Rust char::is_whitespace (the White_Space property; stable for years). */
static inline int rs_tok_is_whitespace(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* ---- growable code-point buffer (per-call scratch) ---- */
typedef struct rs_tok_cps {
    int32_t *v;
    size_t n, cap;
} rs_tok_cps;

rs_status rs_tok_cps_reserve(rs_tok_cps *b, size_t need); /* capacity >= need */

/* ---- normalizers ---- */
typedef enum rs_tok_norm_kind {
    RS_TOK_NORM_BERT,
    RS_TOK_NORM_LOWERCASE,
    RS_TOK_NORM_NFD,
    RS_TOK_NORM_NFKD,
    RS_TOK_NORM_NFC,
    RS_TOK_NORM_NFKC,
    RS_TOK_NORM_STRIP_ACCENTS,
    RS_TOK_NORM_STRIP,
    RS_TOK_NORM_REPLACE,
    RS_TOK_NORM_PREPEND,
    RS_TOK_NORM_PRECOMPILED,
} rs_tok_norm_kind;

typedef struct rs_tok_pattern rs_tok_pattern;         /* tok_regex.c */
typedef struct rs_tok_precompiled rs_tok_precompiled; /* tok_precompiled.c */

typedef struct rs_tok_norm {
    rs_tok_norm_kind kind;
    /* BERT */
    int clean_text, handle_chinese_chars, strip_accents, lowercase;
    /* STRIP */
    int strip_left, strip_right;
    /* REPLACE (pattern -> content), PREPEND (content) */
    rs_tok_pattern *pattern;
    int32_t *content; /* owned */
    size_t n_content;
    /* PRECOMPILED */
    rs_tok_precompiled *pc;
} rs_tok_norm;

void rs_tok_norm_free(rs_tok_norm *n); /* the owned parts */

/* Applies steps[0..n) to *io, using *tmp as the second buffer (swapped in). */
rs_status rs_tok_normalize(const rs_tok_norm *steps, size_t n, rs_tok_cps *io, rs_tok_cps *tmp);
/* 1 when normalizing pieces cut after ASCII whitespace equals normalizing the
 * whole (true for per-character steps; false for Strip). */
int rs_tok_norm_chunkable(const rs_tok_norm *steps, size_t n);

/* ---- regex-level classes (tok_regex_tables.c, generated from the oracles) ---- */
#define RS_TOK_CLASS_L 1u       /* \p{L} */
#define RS_TOK_CLASS_N 2u       /* \p{N} */
#define RS_TOK_CLASS_NUMERIC 4u /* Rust char::is_numeric (Digits) */
unsigned rs_tok_regex_class(uint32_t cp);

/* ---- patterns (tok_regex.c): Split / Replace patterns ---- */
/* Known split patterns run as hand-written scanners over the oracles' Unicode
 * tables; anything else goes to PCRE2 (JIT, UTF + UCP) or is a literal. */
rs_status rs_tok_pattern_regex(const char *re, rs_tok_pattern **out, rs_err *err);
rs_status rs_tok_pattern_literal(const char *s, rs_tok_pattern **out, rs_err *err);
rs_status rs_tok_pattern_known(int which, rs_tok_pattern **out); /* RS_TOK_PAT_GPT2 / RS_TOK_PAT_LLAMA3 */
void rs_tok_pattern_free(rs_tok_pattern *p);
enum { RS_TOK_PAT_LITERAL, RS_TOK_PAT_PCRE2, RS_TOK_PAT_GPT2, RS_TOK_PAT_LLAMA3, RS_TOK_PAT_SPACES2 };
int rs_tok_pattern_kind(const rs_tok_pattern *p);
/* Calls fn(ctx, ms, me) for each non-overlapping match in cps[start..end), in
 * order (empty matches are skipped). Returns nonzero if fn did, or
 * RS_ERR_NOMEM-ish failures as -1. */
typedef int (*rs_tok_match_fn)(void *ctx, size_t ms, size_t me);
int rs_tok_pattern_find(const rs_tok_pattern *p, const int32_t *cps, size_t start, size_t end, rs_tok_match_fn fn,
                        void *ctx);

/* ---- SentencePiece precompiled charsmap (tok_precompiled.c) ---- */
rs_status rs_tok_precompiled_load(const char *base64, rs_tok_precompiled **out, rs_err *err);
void rs_tok_precompiled_free(rs_tok_precompiled *pc);
rs_status rs_tok_precompiled_apply(const rs_tok_precompiled *pc, const rs_tok_cps *in, rs_tok_cps *out);

/* ---- base64 (tok_tiktoken.c) ---- */
/* Decodes standard base64 (with padding); returns the length or -1. out
 * needs (len / 4) * 3 bytes. */
long rs_tok_base64_decode(const char *s, size_t len, unsigned char *out);

/* ---- vocabulary: string -> id hash table ---- */
typedef struct rs_tok_vocab {
    char *arena;       /* all token bytes */
    uint32_t *off;     /* (n_ids) byte offset into arena; */
    uint32_t *len;     /* (n_ids) length, UINT32_MAX where the id is unused */
    uint32_t *slot_id; /* (mask+1) id + 1, 0 = empty */
    uint32_t *slot_h;  /* (mask+1) hash of the key in the slot */
    size_t mask;
    size_t n_ids;   /* 1 + largest id */
    size_t n_keys;  /* number of tokens */
    size_t max_len; /* longest token in bytes */
} rs_tok_vocab;

/* Builds from a JSON object {token: id}. */
rs_status rs_tok_vocab_init(rs_tok_vocab *v, const void *cjson_object, rs_err *err);
void rs_tok_vocab_free(rs_tok_vocab *v);
/* id of the key a[0..alen) ++ b[0..blen), or -1. Two parts so WordPiece can look
 * up "##" + piece without copying. */
int32_t rs_tok_vocab_find2(const rs_tok_vocab *v, const char *a, size_t alen, const char *b, size_t blen);
/* Builds from parallel arrays: key[id] (len[id] bytes), NULL where id is unused. */
rs_status rs_tok_vocab_build(rs_tok_vocab *v, size_t n_ids, const char *const *key, const uint32_t *len, rs_err *err);
/* The bytes of id, or NULL. */
static inline const char *rs_tok_vocab_str(const rs_tok_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= v->n_ids || v->len[id] == UINT32_MAX) return NULL;
    *len = v->len[id];
    return v->arena + v->off[id];
}

/* ---- where the model writes ids ---- */
/* Writes while n < limit but always counts, so the caller sees "more than
 * limit" (truncation) and a word can be rolled back by resetting n. */
typedef struct rs_tok_sink {
    int32_t *ids;
    size_t n, limit;
} rs_tok_sink;

static inline void rs_tok_emit(rs_tok_sink *s, int32_t id) {
    if (s->n < s->limit) s->ids[s->n] = id;
    s->n++;
}

/* ---- models ---- */
typedef struct rs_tok_model_ops {
    const char *name;
    /* Appends the ids of one pre-tokenized word (UTF-8, n_chars code points). */
    void (*encode_word)(const void *model, const char *word, size_t len, size_t n_chars, rs_tok_sink *sink);
    int32_t (*token_id)(const void *model, const char *tok, size_t len);
    size_t (*n_ids)(const void *model); /* 1 + largest id */
    /* The token's text as the decoder sees it (byte-level models: the raw
     * bytes), or NULL for an unknown id. */
    const char *(*id_to_token)(const void *model, int32_t id, size_t *len);
    void (*free)(void *model);
} rs_tok_model_ops;

/* WordPiece from the tokenizer.json "model" object. */
rs_status rs_tok_wordpiece_load(const void *cjson_model, void **out, rs_err *err);
extern const rs_tok_model_ops rs_tok_wordpiece_ops;

/* Unigram (tok_unigram.c). */
rs_status rs_tok_unigram_load(const void *cjson_model, void **out, rs_err *err);
extern const rs_tok_model_ops rs_tok_unigram_ops;

/* BPE (tok_bpe.c). byte_level: the vocabulary is written in GPT-2's
 * byte-to-char alphabet and the model runs on raw UTF-8 bytes (the ByteLevel
 * pre-tokenizer's mapping folded into the vocabulary). */
rs_status rs_tok_bpe_load(const void *cjson_model, int byte_level, void **out, rs_err *err);
/* A tiktoken rank file: ranked byte strings, merges implied by the ranks. */
rs_status rs_tok_bpe_load_ranks(const char *text, size_t len, void **out, rs_err *err);
extern const rs_tok_model_ops rs_tok_bpe_ops;
/* GPT-2's byte-level alphabet (bytes_to_unicode) read back: the byte of a
 * char, -1 for chars outside it. */
int rs_tok_char_to_byte(uint32_t c);

/* ---- pre-tokenizers ---- */
typedef enum rs_tok_pre_kind {
    RS_TOK_PRE_BERT,
    RS_TOK_PRE_WHITESPACE,       /* regex \w+|[^\w\s]+ */
    RS_TOK_PRE_WHITESPACE_SPLIT, /* split on whitespace */
    RS_TOK_PRE_METASPACE,
    RS_TOK_PRE_BYTELEVEL,
    RS_TOK_PRE_SPLIT,
    RS_TOK_PRE_DIGITS,
    RS_TOK_PRE_PUNCTUATION,
} rs_tok_pre_kind;

typedef enum rs_tok_behavior {
    RS_TOK_REMOVED,
    RS_TOK_ISOLATED,
    RS_TOK_MERGED_WITH_PREVIOUS,
    RS_TOK_MERGED_WITH_NEXT,
    RS_TOK_CONTIGUOUS,
} rs_tok_behavior;

typedef struct rs_tok_pre {
    rs_tok_pre_kind kind;
    rs_tok_behavior behavior; /* SPLIT, PUNCTUATION */
    int invert;               /* SPLIT */
    rs_tok_pattern *pattern;  /* SPLIT; BYTELEVEL with use_regex (owned) */
    int32_t replacement;      /* METASPACE */
    int prepend_scheme;       /* METASPACE: 0 never, 1 first, 2 always */
    int split;                /* METASPACE */
    int add_prefix_space;     /* BYTELEVEL */
    int individual_digits;    /* DIGITS */
} rs_tok_pre;

#define RS_TOK_MAX_PRE 16
/* regex \w as HF uses it (Whitespace pre-tokenizer, single_word added tokens). */
static inline int rs_tok_is_word_char(uint32_t c) {
    if (c < 0x80) return (c - 'a' < 26u) || (c - 'A' < 26u) || (c - '0' < 10u) || c == '_';
    return rs_tok_is_word(c);
}

/* Called for each word [start, end) of a code-point array; returns nonzero
 * to stop early (enough tokens). */
typedef int (*rs_tok_word_fn)(void *ctx, const int32_t *cps, size_t start, size_t end);

/* Per-call state of a pre-tokenizer chain: stages that rewrite text
 * (Metaspace, ByteLevel's prefix space) write into their own buffer, which
 * stays valid while later stages run. */
typedef struct rs_tok_pre_run {
    const rs_tok_pre *pre;
    size_t n;
    rs_tok_word_fn fn;
    void *ctx;
    rs_tok_cps buf[RS_TOK_MAX_PRE];
    rs_status st;
} rs_tok_pre_run;

/* Runs the chain over cps[start..end); first: the range starts the text
 * (Metaspace prepend_scheme "first"). Returns nonzero if fn asked to stop or
 * on error (run->st). */
int rs_tok_pretokenize(rs_tok_pre_run *run, const int32_t *cps, size_t start, size_t end, int first);
void rs_tok_pre_run_free(rs_tok_pre_run *run);
void rs_tok_pre_free(rs_tok_pre *p);

/* ------------------------------------------------ the tokenizer object
 * Built by tok_load.c (tokenizer.json, tiktoken rank files), read by the
 * encode and decode pipelines of tokenizer.c. */

#define RS_TOK_MAX_NORM 16

/* How ids become text again (the tokenizer.json "decoder"). */
typedef enum rs_tok_decoder_kind {
    RS_TOK_DEC_NONE,      /* no decoder: tokens joined with spaces */
    RS_TOK_DEC_BYTES,     /* byte-level (ByteLevel decoder, tiktoken): raw bytes, lossy UTF-8 */
    RS_TOK_DEC_METASPACE, /* replacement -> space, leading space of the first token dropped */
    RS_TOK_DEC_WORDPIECE, /* "##" pieces glued, others space-separated, optional cleanup */
    RS_TOK_DEC_UNSUPPORTED,
} rs_tok_decoder_kind;

typedef struct rs_tok_added {
    char *content; /* raw pattern (normalized == 0) */
    size_t len;
    int32_t *ncps; /* normalized pattern (normalized == 1) */
    size_t n_ncps;
    int32_t id;
    int single_word, lstrip, rstrip, normalized, special;
} rs_tok_added;

struct rs_tokenizer {
    rs_tok_norm norm[RS_TOK_MAX_NORM];
    size_t n_norm;
    rs_tok_pre pre[RS_TOK_MAX_PRE];
    size_t n_pre;
    int byte_level; /* a ByteLevel pre-tokenizer: the BPE model runs on bytes */
    const rs_tok_model_ops *model_ops;
    void *model;
    rs_tok_added *added;
    size_t n_added;
    int has_raw_added, has_norm_added;
    uint8_t raw_first_byte[256]; /* 1 where some raw added token starts with it */
    int32_t *prefix_ids, *suffix_ids; /* post-processor, single sequence */
    size_t n_prefix, n_suffix;
    int chunkable;
    size_t n_ids;
    size_t cap_added; /* allocated entries of added */
    /* decoder */
    rs_tok_decoder_kind dec;
    char dec_name[48]; /* RS_TOK_DEC_UNSUPPORTED: its type */
    int32_t dec_replacement;
    int dec_prepend; /* METASPACE: drop the first leading space */
    char dec_prefix[16]; /* WORDPIECE */
    int dec_cleanup;
    int tiktoken; /* loaded from a rank file */
    int parse_special; /* special tokens in the caller's text become their ids (HF's default) */
};

/* s[0..len) (valid UTF-8) as code points into out. */
rs_status rs_tok_cps_from_utf8(const char *s, size_t len, rs_tok_cps *out);
/* Offset of the first invalid byte, or len when s[0..len) is valid UTF-8. */
size_t rs_tok_utf8_invalid_at(const char *s, size_t len);

#endif
