/* cli_label_io.h — the input and output formats of `routescore label`, and
 * the fingerprint that makes --resume safe.
 *
 *   - Sniffing: the head of the input decides (or checks) its format, and
 *     refuses what label cannot read (Parquet, other binary containers) with
 *     one error up front instead of an error record per line.
 *   - CSV input: RFC 4180 records (quoted fields may hold newlines) read
 *     through the same bounded line reader as JSON lines, so plain and gzip
 *     input and the line bound are shared; each record is parsed by csv.c.
 *   - gzip output: every batch is written as its own gzip member. A gzip
 *     file is the concatenation of its members (RFC 1952 §2.2; zcat and
 *     Python's gzip read them all), so whatever reached the disk is complete
 *     members plus possibly one torn one, which --resume cuts off: the same
 *     prefix property as plain output.
 *   - Fingerprint: OUT.fingerprint.json records what an output was made of
 *     (the input's size and a CRC-32 of its first MiB, the router's identity,
 *     the prompt field, shard, batch, max_tokens, threshold); --resume
 *     refuses to append under any other.
 *
 * Ownership: rs_label_csv owns its buffers (rs_label_csv_free); the reader
 * it reads from stays the caller's. Fingerprints are cJSON objects the
 * caller owns. */
#ifndef RS_CLI_LABEL_IO_H
#define RS_CLI_LABEL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "cli_common.h"
#include "csv.h"
#include "engine.h"
#include "status.h"

typedef enum rs_label_format { RS_LABEL_AUTO = 0, RS_LABEL_JSONL, RS_LABEL_CSV } rs_label_format;

/* Bytes hashed at the head of the input for its identity. */
#define RS_LABEL_HEAD_BYTES (1u << 20)

/* Decides the format from head (the first decompressed bytes of the input)
 * and the name: *fmt AUTO becomes CSV for a name ending in .csv or .csv.gz,
 * else JSONL; an explicit *fmt is kept. Refuses (RS_ERR_UNSUPPORTED, naming
 * the file and what it is) Parquet ("PAR1"), ORC, Avro, zip, xz, zstd,
 * bzip2 and a first line holding a NUL byte; for JSON lines also a first
 * record that does not start with '{' or '['. */
rs_status rs_label_sniff(const char *path, const char *head, size_t len, rs_label_format *fmt, rs_err *err);

/* ---- CSV records ---- */
typedef struct rs_label_csv {
    rs_jsonl *r;
    rs_buf rec;   /* the raw record: its lines joined with "\n" */
    rs_csv csv;
    rs_csv_field *fields;
    size_t max_fields;
    size_t n_cols;
    size_t col;       /* the prompt column */
    long id_col;      /* -1: ids are line numbers */
    int pending_eof;
} rs_label_csv;

/* Reads the header record and finds column (default "prompt") and id_column
 * (NULL: "id" when present, else line numbers). RS_ERR_NOT_FOUND lists the
 * header when a named column is missing. */
rs_status rs_label_csv_open(rs_label_csv *c, rs_jsonl *r, const char *column, const char *id_column,
                            rs_err *err);
void rs_label_csv_free(rs_label_csv *c);

typedef struct rs_label_csv_rec {
    uint64_t line;      /* first physical line of the record */
    int blank;          /* an empty line between records: no record */
    int bad;            /* 1: msg says why it cannot be scored */
    const char *prompt; /* !bad: the prompt field, valid until the next call */
    size_t prompt_len;
    char id[512];       /* the id as JSON (a string), or the line number */
    char msg[512];
} rs_label_csv_rec;

/* The next record. RS_OK with *eof at the end of input. Fatal only for what
 * ends the input (I/O, a corrupt gzip stream, memory); a record that cannot
 * be parsed (wrong field count, bad quoting, too long, invalid UTF-8) comes
 * back with bad = 1. */
rs_status rs_label_csv_next(rs_label_csv *c, rs_label_csv_rec *rec, int *eof, rs_err *err);

/* ---- gzip output ---- */

/* Writes data[0..len) to f as one complete gzip member. */
rs_status rs_label_gz_member(FILE *f, const char *data, size_t len, rs_err *err);

/* The resume scan of a gzip output: counts the records of its complete
 * members (and the error records among them), cuts a torn trailing member
 * off, and refuses a file that is not gzip or whose last record is not a
 * label record. A missing file is 0 records. */
rs_status rs_label_gz_resume_scan(const char *path, uint64_t *n_records, uint64_t *n_errors, rs_err *err);

/* ---- the resume fingerprint ---- */

/* path + ".fingerprint.json" into buf. */
rs_status rs_label_fp_path(const char *out_path, char *buf, size_t n, rs_err *err);

/* Adds the input's identity: "input.path" (informational), "input.size" and
 * "input.head_crc32" (CRC-32 of the first RS_LABEL_HEAD_BYTES raw bytes);
 * stdin is "input.size": "stdin". */
rs_status rs_label_fp_input(cJSON *fp, const char *path, rs_err *err);

/* Adds the router's identity: its directory (informational), name, kind,
 * architecture, default threshold, max_tokens, embed_dim, n_labels and a
 * CRC-32 over the names, sizes and first MiB of the files in its directory
 * (manifest, config, weights, tokenizer). */
rs_status rs_label_fp_router(cJSON *fp, const char *dir, const rs_router_info *info, rs_err *err);

/* Writes the fingerprint beside the output (atomically: temp file + rename). */
rs_status rs_label_fp_write(const char *out_path, const cJSON *fp, rs_err *err);

/* Compares fp with the one beside the output. RS_ERR_NOT_FOUND: there is
 * none. RS_ERR_INVALID_ARG: they differ; err names every key that differs,
 * with the old and the new value. Keys ending in ".path" are not compared
 * (a moved file is the same file). */
rs_status rs_label_fp_check(const char *out_path, const cJSON *fp, rs_err *err);

#endif
