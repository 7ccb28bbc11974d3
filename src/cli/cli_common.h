/* cli_common.h — helpers shared by the subcommands of the `routescore` binary.
 *
 * Every subcommand that reads prompt files (label, score, embed, bench, train)
 * needs the same five things, so they live here once:
 *   - where the default router is (rs_cli_default_model);
 *   - prompt files read through the core's JSON-lines reader (jsonl.h:
 *     plain or gzip, bounded lines, one bad line never stops the run);
 *   - the prompt of a record: a field path such as `turns[0]`, or by default
 *     `prompt`, else the last user message of an OpenAI-style `messages` list
 *     (rs_cli_extract_prompt; the messages rule itself is messages.h);
 *   - the output record format, shared so `label` and `score` print the same
 *     thing (rs_cli_write_score_json, rs_cli_write_error_json);
 *   - strict number parsing for flags (rs_cli_parse_*), used with getopt_long.
 *
 * Ownership: an rs_buf (buf.h) is caller-owned and freed with rs_buf_free.
 * Nothing here keeps global state, so every helper is thread-compatible
 * (distinct objects on distinct threads). */
#ifndef RS_CLI_COMMON_H
#define RS_CLI_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "clock.h"
#include "engine.h"
#include "json_text.h"
#include "jsonl.h"
#include "status.h"

/* The router used when no --model is given, first match wins:
 *   1. $ROUTESCORE_MODEL (taken as given, even if it does not exist, so a
 *      typo there is reported rather than silently replaced);
 *   2. ./models/routers/minilm-mf;
 *   3. <dir of /proc/self/exe>/../models/routers/minilm-mf  (installed layout);
 *   4. <dir of /proc/self/exe>/../../models/routers/minilm-mf (binary in
 *      build/ or build-x/ of a checkout).
 * RS_OK: buf holds the path. RS_ERR_NOT_FOUND: no candidate exists; buf holds
 * a human-readable list of the places tried. RS_ERR_TOO_LARGE: n too small. */
rs_status rs_cli_default_model(char *buf, size_t n);

/* ---- field paths ---- */

/* Syntax: KEY ( "." KEY | "[" INDEX "]" )*, e.g. `prompt`, `turns[0]`,
 * `a.b[2].c`, `[0]` (the record itself is an array). KEY is any run of bytes
 * other than '.', '[' and ']'; INDEX is a decimal integer >= 0.
 * Checks a path once, at flag parsing time. */
rs_status rs_cli_path_check(const char *path, rs_err *err);

/* The item at path in root, or NULL (RS_ERR_NOT_FOUND in err naming the first
 * missing step) when some step does not exist or has the wrong type. */
const cJSON *rs_cli_json_path(const cJSON *root, const char *path, rs_err *err);

/* The prompt text of a parsed record.
 *   field != NULL: the string at that path (RS_ERR_NOT_FOUND when absent,
 *     RS_ERR_INVALID_ARG when not a string).
 *   field == NULL: "prompt" if present (must be a string); else, when the
 *     record has "messages" (an array of {role, content}), the content of the
 *     LAST message whose role is "user". content may be a string or a list of
 *     parts; the "text" of every part whose type is "text" are joined with
 *     "\n" (other part types are ignored). No user message, or no text part,
 *     is RS_ERR_NOT_FOUND.
 * The text goes into scratch (reset first) so the result never aliases the
 * cJSON tree: *text and *len point into scratch->data. An empty result is
 * RS_ERR_INVALID_ARG. (cJSON decodes "\u0000" into a NUL that would silently
 * cut the text; rs_json_check_text rejects such lines before parsing.) */
rs_status rs_cli_extract_prompt(const cJSON *root, const char *field, rs_buf *scratch,
                                const char **text, size_t *len, rs_err *err);

/* ---- a whole prompt file in memory (bench, calibrate) ---- */

typedef struct rs_cli_prompts {
    char **text;    /* (n) NUL-terminated copies */
    size_t *len;    /* (n) their byte lengths */
    size_t n;
    size_t skipped; /* lines that held no prompt (bad line, no field) */
} rs_cli_prompts;

/* Reads the prompts of a JSON-lines file (plain or gzip) in file order, at
 * most limit of them, each as rs_cli_extract_prompt finds it under field.
 * Lines without one are counted, not fatal. Fails (with nothing to free)
 * only when the input cannot be read or memory runs out. */
rs_status rs_cli_load_prompts(const char *path, const char *field, size_t limit, rs_cli_prompts *out, rs_err *err);
void rs_cli_prompts_free(rs_cli_prompts *p);

/* ---- output records (one JSON object per line, no spaces) ---- */

/* Writes s[0..n) as a JSON string literal (quotes included), escaping
 * quotes, backslashes and control characters. Bytes >= 0x80 pass through. */
void rs_cli_write_json_string(FILE *f, const char *s, size_t n);

/* {"id":ID,"win_prob":P,"route":"strong"|"weak","label_probs":[..],
 *  "tokens":N,"truncated":true|false}\n
 * id_json is already-serialised JSON (e.g. "81", "\"q-1\""); label_probs only
 * when s->n_labels > 0; floats with "%.9g" (round-trip exact for float),
 * non-finite values as null. */
void rs_cli_write_score_json(FILE *f, const char *id_json, const rs_score *s);

/* {"id":ID,"line":LINE,"error":"MSG"}\n — the per-record failure format.
 * Keeps this exact key order: `label --resume` counts error records by
 * looking for the structural `"error":` key. */
void rs_cli_write_error_json(FILE *f, const char *id_json, uint64_t line, const char *msg);

/* msg with invalid UTF-8 bytes and control characters written as "\xNN"
 * (an error can quote a corrupt file), cut to fit buf[n]; returns buf. */
const char *rs_cli_safe_msg(const char *msg, char *buf, size_t n);

/* Serialises the record's id into buf (any JSON value, compact), else the
 * decimal line number. id_path NULL: "id", else "question_id" (the key of
 * MT-Bench / FastChat question files); otherwise the value at that field path.
 * Ids that do not fit (longer than n - 1) fall back to the line number, so the
 * output stays valid JSON. Numbers are re-printed by cJSON (a double): integer
 * ids beyond 2^53 lose digits. */
void rs_cli_record_id(const cJSON *root, const char *id_path, uint64_t line_no, char *buf, size_t n);

/* ---- flag parsing (use with getopt_long; each rejects trailing junk) ---- */
rs_status rs_cli_parse_int(const char *flag, const char *s, long lo, long hi, long *out, rs_err *err);
rs_status rs_cli_parse_float(const char *flag, const char *s, double lo, double hi, double *out,
                             rs_err *err);
/* "i/N" with 0 <= i < N, N >= 1. */
rs_status rs_cli_parse_shard(const char *flag, const char *s, long *index, long *count, rs_err *err);

/* A progress line on stderr, drawn only when enabled (stderr is a terminal
 * and not --quiet) and at most every 200 ms. total 0: count and rate only.
 * Off a terminal (a batch job's log), rs_cli_progress_lines switches it to one
 * JSON object per line every `every` seconds instead:
 *   {"progress":{"cmd":"label","done":N,"total":T|null,"elapsed_s":E,
 *    "rate":R,"eta_s":S|null}}
 * (no redraws, no final line: the command's own summary ends the run). */
typedef struct rs_cli_progress {
    int enabled;
    uint64_t total;
    uint64_t done;
    double t_start;
    double t_last;
    double lines_every; /* > 0: JSON lines mode */
    const char *cmd;
    uint64_t base;      /* done before this run (resumed): not counted in the rate */
} rs_cli_progress;

void rs_cli_progress_init(rs_cli_progress *p, int enabled, uint64_t total);
/* After init: JSON lines every `every` seconds (> 0), labelled with cmd. */
void rs_cli_progress_lines(rs_cli_progress *p, double every, const char *cmd);
void rs_cli_progress_update(rs_cli_progress *p, uint64_t done);
/* Draws the final state and ends the line (no-op when disabled). */
void rs_cli_progress_finish(rs_cli_progress *p);

#endif
