/* tokenizer.h — text to token ids, faithful to Hugging Face `tokenizers`.
 *
 * Loaded from a tokenizer.json. The pipeline is the HF one: normalizer ->
 * pre-tokenizer -> model (WordPiece, Unigram, BPE) -> post-processor (special
 * tokens). Components the file names that we do not implement are refused at
 * load with their name (decoders: at decode).
 *
 * Ownership and threads: an rs_tokenizer is immutable after load; any number
 * of threads may call rs_tokenizer_encode on it at once. */
#ifndef RS_TOKENIZER_H
#define RS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct rs_tokenizer rs_tokenizer;

/* path: a tokenizer.json, or a tiktoken rank file (base64 + space + rank
 * lines; read as Llama 3's tokenizer: its split pattern, its 256 special
 * tokens after the ranks, BOS as the post-processor). */
rs_status rs_tokenizer_load(const char *path, rs_tokenizer **out, rs_err *err);
void rs_tokenizer_free(rs_tokenizer *t);

/* Encodes text[0..len) (need not be NUL-terminated), all of it the caller's
 * (untrusted) text: special tokens written in it are encoded as plain text
 * unless rs_tokenizer_set_parse_special turned HF's parsing on. Non-special
 * added tokens always match, as in HF.
 * add_special: apply the post-processor (e.g. [CLS] ... [SEP]).
 * max_tokens: total length bound including specials (0 = none); the
 *   content is cut on the right, as HF truncation does, and *truncated set.
 * ids: caller buffer of capacity cap; RS_ERR_TOO_LARGE if the result does not
 *   fit (with max_tokens <= cap it always fits).
 * Invalid UTF-8 -> RS_ERR_UTF8 (message gives the byte offset). */
rs_status rs_tokenizer_encode(const rs_tokenizer *t, const char *text, size_t len, int add_special,
                              size_t max_tokens, int32_t *ids, size_t cap, size_t *n_out,
                              int *truncated, rs_err *err);

/* A byte range of the text given to rs_tokenizer_encode_spans. */
typedef struct rs_tok_span {
    size_t off, len;
} rs_tok_span;

/* rs_tokenizer_encode for a text that mixes the caller's own template with
 * untrusted text: special tokens are matched everywhere except where they
 * overlap one of the n_plain spans, which are encoded as plain text (unless
 * parse_special is on). A special token that a normalizer changes is matched
 * after normalization, where positions are no longer bytes: it stays plain in
 * any cut-out piece of text that touches a span. */
rs_status rs_tokenizer_encode_spans(const rs_tokenizer *t, const char *text, size_t len, const rs_tok_span *plain,
                                    size_t n_plain, int add_special, size_t max_tokens, int32_t *ids, size_t cap,
                                    size_t *n_out, int *truncated, rs_err *err);

/* on: special-token strings in the caller's text become the special ids,
 * exactly as HF's tokenizer does by default (its encode_special_tokens =
 * False); off (the default): they are encoded as the plain text they are, so
 * a user cannot forge a template (e.g. "<|eot_id|>"). A manifest opts in with
 * "parse_special_tokens": true. Call before the tokenizer is shared. */
void rs_tokenizer_set_parse_special(rs_tokenizer *t, int on);

/* Adds a special token matched in raw text before the model runs (HF
 * add_special_tokens with normalized=false), e.g. Llama 3's rating tokens
 * [[1]]..[[5]] at 128256... Call before the tokenizer is shared: this is the
 * one call that changes it. */
rs_status rs_tokenizer_add_special(rs_tokenizer *t, const char *content, int32_t id, rs_err *err);

/* ids -> text with the tokenizer's decoder (HF Tokenizer.decode): unknown
 * ids are dropped; skip_special drops special added tokens. *text is
 * NUL-terminated, malloc'd, owned by the caller; *text_len may be NULL. */
rs_status rs_tokenizer_decode(const rs_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                              size_t *text_len, rs_err *err);

/* Number of special tokens the post-processor adds to one sequence. */
size_t rs_tokenizer_num_special(const rs_tokenizer *t);
size_t rs_tokenizer_vocab_size(const rs_tokenizer *t);
/* id of a token string, or -1. */
int32_t rs_tokenizer_token_id(const rs_tokenizer *t, const char *token);

#endif
