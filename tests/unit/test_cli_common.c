/* test_cli_common.c — unit tests of the CLI helpers that need no model:
 * field paths, prompt extraction (prompt / messages / parts), line checks,
 * the bounded reader on plain and gzip input, record formatting, flag
 * parsing. The subcommands trust these, so their edge cases live here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "cli_common.h"
#include "test_util.h"

/* Extracts with field from JSON text; returns the status, text into out. */
static rs_status extract(const char *json, const char *field, char *out, size_t n) {
    cJSON *root = cJSON_Parse(json);
    if (!root) return RS_ERR_FORMAT;
    rs_buf scratch = {0};
    const char *text;
    size_t len;
    rs_err err = {{0}};
    rs_status st = rs_cli_extract_prompt(root, field, &scratch, &text, &len, &err);
    out[0] = '\0';
    if (st == RS_OK) {
        CHECK(strlen(text) == len);
        snprintf(out, n, "%s", text);
    } else {
        CHECK_MSG(err.msg[0] != '\0', "status %d without a message", st);
    }
    rs_buf_free(&scratch);
    cJSON_Delete(root);
    return st;
}

static void test_paths(void) {
    rs_err err;
    const char *good[] = {"prompt", "turns[0]", "a.b[2].c", "[0]", "a[1][2]", "x-y.z_w", "a b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK_MSG(rs_cli_path_check(good[i], &err) == RS_OK, "%s: %s", good[i], err.msg);
    const char *bad[] = {"", "a.", ".a", "a..b", "a[", "a[]", "a[x]", "a[-1]", "a]", "a[0]b", "a[99999999999]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(rs_cli_path_check(bad[i], &err) == RS_ERR_INVALID_ARG, "'%s' accepted", bad[i]);

    char out[256];
    const char *doc = "{\"turns\":[\"first\",\"second\"],\"a\":{\"b\":[0,1,{\"c\":\"deep\"}]},\"n\":3,\"e\":\"\"}";
    CHECK(extract(doc, "turns[0]", out, sizeof out) == RS_OK && !strcmp(out, "first"));
    CHECK(extract(doc, "turns[1]", out, sizeof out) == RS_OK && !strcmp(out, "second"));
    CHECK(extract(doc, "a.b[2].c", out, sizeof out) == RS_OK && !strcmp(out, "deep"));
    CHECK(extract(doc, "turns[2]", out, sizeof out) == RS_ERR_NOT_FOUND);
    CHECK(extract(doc, "a.x", out, sizeof out) == RS_ERR_NOT_FOUND);
    CHECK(extract(doc, "a[0]", out, sizeof out) == RS_ERR_NOT_FOUND);      /* object indexed */
    CHECK(extract(doc, "turns.x", out, sizeof out) == RS_ERR_NOT_FOUND);   /* array keyed */
    CHECK(extract(doc, "n", out, sizeof out) == RS_ERR_INVALID_ARG);       /* not a string */
    CHECK(extract(doc, "a", out, sizeof out) == RS_ERR_INVALID_ARG);
    CHECK(extract(doc, "e", out, sizeof out) == RS_ERR_INVALID_ARG);       /* empty */
    CHECK(extract("[\"top\"]", "[0]", out, sizeof out) == RS_OK && !strcmp(out, "top"));

    cJSON *root = cJSON_Parse(doc);
    rs_err e2 = {{0}};
    CHECK(rs_cli_json_path(root, "a.b[1]", &e2) && rs_cli_json_path(root, "a.b[1]", &e2)->valueint == 1);
    CHECK(!rs_cli_json_path(root, "a.b[7]", &e2) && strstr(e2.msg, "a.b[7]"));
    cJSON_Delete(root);
}

static void test_messages(void) {
    char out[256];
    /* prompt wins over messages */
    CHECK(extract("{\"prompt\":\"p\",\"messages\":[{\"role\":\"user\",\"content\":\"m\"}]}", NULL, out, sizeof out) ==
              RS_OK &&
          !strcmp(out, "p"));
    /* the LAST user message, not the last message */
    CHECK(extract("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":\"u1\"},"
                  "{\"role\":\"assistant\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"u2\"},"
                  "{\"role\":\"assistant\",\"content\":\"a2\"}]}",
                  NULL, out, sizeof out) == RS_OK &&
          !strcmp(out, "u2"));
    /* list content: text parts joined with \n, other parts ignored */
    CHECK(extract("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\"},"
                  "{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}},{\"type\":\"text\",\"text\":\"two\"}]}]}",
                  NULL, out, sizeof out) == RS_OK &&
          !strcmp(out, "one\ntwo"));
    CHECK(extract("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", NULL, out,
                  sizeof out) == RS_ERR_NOT_FOUND);
    CHECK(extract("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"}]}", NULL, out, sizeof out) ==
          RS_ERR_NOT_FOUND);
    CHECK(extract("{\"messages\":[]}", NULL, out, sizeof out) == RS_ERR_NOT_FOUND);
    CHECK(extract("{\"messages\":\"hi\"}", NULL, out, sizeof out) == RS_ERR_INVALID_ARG);
    CHECK(extract("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", NULL, out, sizeof out) == RS_ERR_INVALID_ARG);
    CHECK(extract("{\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}", NULL, out, sizeof out) ==
          RS_ERR_INVALID_ARG);
    CHECK(extract("{\"text\":\"x\"}", NULL, out, sizeof out) == RS_ERR_NOT_FOUND);
    CHECK(extract("{\"prompt\":null}", NULL, out, sizeof out) == RS_ERR_INVALID_ARG);
    CHECK(extract("[1]", NULL, out, sizeof out) == RS_ERR_INVALID_ARG);
    /* an explicit field ignores messages */
    CHECK(extract("{\"messages\":[{\"role\":\"user\",\"content\":\"m\"}],\"q\":\"f\"}", "q", out, sizeof out) ==
              RS_OK &&
          !strcmp(out, "f"));
}

static void test_check_line(void) {
    rs_err err;
    CHECK(rs_json_check_text("{\"a\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"}", 23, &err) == RS_OK);
    CHECK(rs_json_check_text("ab\0cd", 5, &err) == RS_ERR_FORMAT);
    const char *bad_utf8[] = {"\xff", "\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                              "\xf8\x88\x80\x80\x80", "a\xe2\x82", "\x80"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++)
        CHECK_MSG(rs_json_check_text(bad_utf8[i], strlen(bad_utf8[i]), &err) == RS_ERR_UTF8, "case %zu", i);
    const char *esc = "{\"p\":\"a\\u0000b\"}";
    CHECK(rs_json_check_text(esc, strlen(esc), &err) == RS_ERR_FORMAT);
    const char *esc_ok = "{\"p\":\"a\\\\u0000b\"}"; /* an escaped backslash then "u0000" */
    CHECK(rs_json_check_text(esc_ok, strlen(esc_ok), &err) == RS_OK);
    CHECK(rs_jsonl_line_is_blank(" \t\r", 3) && rs_jsonl_line_is_blank("", 0) && !rs_jsonl_line_is_blank(" x", 2));
}

static void write_file(const char *path, const char *data, size_t n, int gz) {
    if (gz) {
        gzFile g = gzopen(path, "wb");
        gzwrite(g, data, (unsigned)n);
        gzclose(g);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

/* rs_jsonl_next_json and rs_cli_load_prompts over one file of good,
 * blank and bad lines, plain and gzip. */
static void test_json_lines(void) {
    char path[] = "/tmp/rs_test_cli_json_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    char data[512];
    size_t n = (size_t)snprintf(data, sizeof data,
                                "{\"prompt\":\"one\"}\n"  /* 1 */
                                "   \n"                    /* 2 blank: skipped silently */
                                "{not json\n"              /* 3 bad */
                                "{\"q\":\"no prompt\"}\n" /* 4 JSON, but no prompt */
                                "\xff\xfe\n"              /* 5 invalid UTF-8 */
                                "%s\n"                     /* 6 over the 64-byte bound */
                                "{\"prompt\":\"two\"}",   /* 7, no final newline */
                                "{\"prompt\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}");
    for (int gz = 0; gz < 2; gz++) {
        write_file(path, data, n, gz);
        rs_jsonl *r = NULL;
        rs_err err;
        CHECK(rs_jsonl_open(path, 64, &r, &err) == RS_OK);
        if (!r) continue;
        cJSON *j;
        uint64_t no = 0;
        int bad = -1;
        CHECK(rs_jsonl_next_json(r, &j, &no, &bad, &err) == RS_OK && j && no == 1 && !bad);
        cJSON_Delete(j);
        CHECK(rs_jsonl_next_json(r, &j, &no, &bad, &err) == RS_ERR_FORMAT && !j && no == 3 && bad &&
              strstr(err.msg, "JSON"));
        CHECK(rs_jsonl_next_json(r, &j, &no, &bad, &err) == RS_OK && j && no == 4 && !bad);
        cJSON_Delete(j);
        CHECK(rs_jsonl_next_json(r, &j, &no, &bad, &err) == RS_ERR_UTF8 && !j && no == 5 && bad);
        CHECK(rs_jsonl_next_json(r, &j, &no, &bad, &err) == RS_ERR_TOO_LARGE && !j && no == 6 && bad);
        CHECK(rs_jsonl_next_json(r, &j, &no, &bad, &err) == RS_OK && j && no == 7 && !bad);
        cJSON_Delete(j);
        CHECK(rs_jsonl_next_json(r, &j, &no, &bad, &err) == RS_OK && !j && !bad);
        rs_jsonl_close(r);
        /* The loader: the two prompts, three lines skipped (the long line
         * fits the loader's default bound, so it is a prompt there). */
        rs_cli_prompts pr;
        CHECK(rs_cli_load_prompts(path, NULL, 100, &pr, &err) == RS_OK);
        CHECK(pr.n == 3 && pr.skipped == 3 && !strcmp(pr.text[0], "one") && pr.len[0] == 3 &&
              !strcmp(pr.text[2], "two") && pr.len[1] == 68);
        rs_cli_prompts_free(&pr);
        CHECK(rs_cli_load_prompts(path, NULL, 1, &pr, &err) == RS_OK && pr.n == 1 && pr.skipped == 0);
        rs_cli_prompts_free(&pr);
        CHECK(rs_cli_load_prompts("/nonexistent/x.jsonl", NULL, 10, &pr, &err) != RS_OK && pr.n == 0 && !pr.text);
    }
    unlink(path);
}

static void test_reader(void) {
    char path[] = "/tmp/rs_test_cli_common_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    /* lines: "a", "" , a 100-byte line (over a 64-byte bound), "b\r", "last" (no newline) */
    char data[256];
    size_t n = 0;
    n += (size_t)sprintf(data + n, "a\n\n");
    memset(data + n, 'x', 100);
    n += 100;
    n += (size_t)sprintf(data + n, "\nb\r\nlast");
    for (int gz = 0; gz < 2; gz++) {
        write_file(path, data, n, gz);
        rs_jsonl *r = NULL;
        rs_err err;
        CHECK(rs_jsonl_open(path, 64, &r, &err) == RS_OK);
        if (!r) continue;
        CHECK(rs_jsonl_is_gzip(r) == gz);
        const char *line;
        size_t len;
        uint64_t no = 0;
        CHECK(rs_jsonl_next(r, &line, &len, &no, &err) == RS_OK && line && !strcmp(line, "a") && no == 1);
        CHECK(rs_jsonl_next(r, &line, &len, &no, &err) == RS_OK && line && len == 0 && no == 2);
        CHECK(rs_jsonl_next(r, &line, &len, &no, &err) == RS_ERR_TOO_LARGE && !line && no == 3);
        CHECK(rs_jsonl_next(r, &line, &len, &no, &err) == RS_OK && line && !strcmp(line, "b") && no == 4);
        CHECK(rs_jsonl_next(r, &line, &len, &no, &err) == RS_OK && line && !strcmp(line, "last") && no == 5);
        CHECK(rs_jsonl_next(r, &line, &len, &no, &err) == RS_OK && !line);
        CHECK(rs_jsonl_next(r, &line, &len, &no, &err) == RS_OK && !line);
        rs_jsonl_close(r);
        uint64_t count = 0;
        rs_status st = rs_jsonl_count_lines(path, &count, &err);
        if (gz) CHECK(st == RS_ERR_UNSUPPORTED);
        else CHECK(st == RS_OK && count == 5);
    }
    /* a truncated gzip stream is an error, not a short file */
    {
        char big[20000];
        for (size_t i = 0; i < sizeof big; i++) big[i] = (i % 61 == 60) ? '\n' : (char)('a' + (i * 7919) % 26);
        write_file(path, big, sizeof big, 1);
        FILE *f = fopen(path, "rb");
        char comp[40000];
        size_t k = fread(comp, 1, sizeof comp, f);
        fclose(f);
        write_file(path, comp, k / 2, 0);
        rs_jsonl *r = NULL;
        rs_err err;
        CHECK(rs_jsonl_open(path, 0, &r, &err) == RS_OK);
        rs_status st = RS_OK;
        const char *line = "";
        size_t len;
        uint64_t no;
        while (r && (st = rs_jsonl_next(r, &line, &len, &no, &err)) == RS_OK && line) {
        }
        CHECK_MSG(st == RS_ERR_FORMAT, "truncated gzip gave status %d", st);
        rs_jsonl_close(r);
    }
    rs_jsonl *r = NULL;
    rs_err err;
    CHECK(rs_jsonl_open("/nonexistent/x.jsonl", 0, &r, &err) == RS_ERR_IO && !r);
    CHECK(rs_jsonl_open("/tmp", 0, &r, &err) == RS_ERR_IO && !r);
    unlink(path);
}

static void test_records(void) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    rs_score s = {0};
    s.win_prob = 0.1f;
    s.route_strong = 0;
    s.tokens = 12;
    rs_cli_write_score_json(f, "81", &s);
    s.n_labels = 3;
    s.label_probs[0] = 0.5f;
    s.label_probs[1] = 0.25f;
    s.label_probs[2] = 0.25f;
    s.route_strong = 1;
    s.truncated = 1;
    s.win_prob = NAN;
    rs_cli_write_score_json(f, "\"q\"", &s);
    rs_cli_write_error_json(f, "3", 3, "bad \"x\"\n\x01");
    fclose(f);
    const char *want = "{\"id\":81,\"win_prob\":0.100000001,\"route\":\"weak\",\"tokens\":12,\"truncated\":false}\n"
                       "{\"id\":\"q\",\"win_prob\":null,\"route\":\"strong\",\"label_probs\":[0.5,0.25,0.25],"
                       "\"tokens\":12,\"truncated\":true}\n"
                       "{\"id\":3,\"line\":3,\"error\":\"bad \\\"x\\\"\\n\\u0001\"}\n";
    CHECK_MSG(!strcmp(buf, want), "got:\n%s", buf);
    free(buf);
    /* a message quoting a corrupt file: invalid UTF-8 as \xNN, valid text kept */
    char safe[64];
    CHECK(!strcmp(rs_cli_safe_msg("a\xff\xc3\xa9\xe2\x82 \x1b[2J", safe, sizeof safe), "a\\xff\xc3\xa9\\xe2\\x82 \\x1b[2J"));
    CHECK(strlen(rs_cli_safe_msg("\xff\xff\xff\xff\xff\xff\xff\xff", safe, 12)) < 12);
    f = open_memstream(&buf, &n);
    rs_cli_write_error_json(f, "1", 1, "bad \xc3 byte\n");
    fclose(f);
    CHECK_MSG(!strcmp(buf, "{\"id\":1,\"line\":1,\"error\":\"bad \\\\xc3 byte\\n\"}\n"), "got: %s", buf);
    free(buf);

    char id[64];
    cJSON *j = cJSON_Parse("{\"id\":\"a\\\"b\",\"question_id\":5}");
    rs_cli_record_id(j, NULL, 9, id, sizeof id);
    CHECK(!strcmp(id, "\"a\\\"b\""));
    cJSON_Delete(j);
    j = cJSON_Parse("{\"question_id\":81}");
    rs_cli_record_id(j, NULL, 9, id, sizeof id);
    CHECK(!strcmp(id, "81"));
    rs_cli_record_id(j, "meta.id", 9, id, sizeof id);
    CHECK(!strcmp(id, "9"));
    cJSON_Delete(j);
    j = cJSON_Parse("{\"meta\":{\"id\":[1,2]},\"id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}");
    rs_cli_record_id(j, "meta.id", 9, id, sizeof id);
    CHECK(!strcmp(id, "[1,2]"));
    rs_cli_record_id(j, NULL, 9, id, sizeof id); /* too long for the buffer */
    CHECK(!strcmp(id, "9"));
    cJSON_Delete(j);
}

static void test_flags(void) {
    rs_err err;
    long v, i, n;
    double d;
    CHECK(rs_cli_parse_int("--n", "42", 1, 100, &v, &err) == RS_OK && v == 42);
    CHECK(rs_cli_parse_int("--n", "0", 1, 100, &v, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_cli_parse_int("--n", "4x", 1, 100, &v, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_cli_parse_int("--n", "", 1, 100, &v, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_cli_parse_int("--n", "99999999999999999999", 1, 100, &v, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_cli_parse_float("--t", "0.25", 0, 1, &d, &err) == RS_OK && d == 0.25);
    CHECK(rs_cli_parse_float("--t", "1", 0, 1, &d, &err) == RS_OK && d == 1.0);
    CHECK(rs_cli_parse_float("--t", "nan", 0, 1, &d, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_cli_parse_float("--t", "1.01", 0, 1, &d, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_cli_parse_shard("--shard", "2/5", &i, &n, &err) == RS_OK && i == 2 && n == 5);
    CHECK(rs_cli_parse_shard("--shard", "0/1", &i, &n, &err) == RS_OK && i == 0 && n == 1);
    const char *bad[] = {"5/5", "1/0", "x", "/3", "1/", "-1/3", "1/3/4", "a/b", ""};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        CHECK_MSG(rs_cli_parse_shard("--shard", bad[k], &i, &n, &err) == RS_ERR_INVALID_ARG, "'%s'", bad[k]);
}

static void test_default_model(void) {
    char buf[4096];
    setenv("ROUTESCORE_MODEL", "/some/where", 1);
    CHECK(rs_cli_default_model(buf, sizeof buf) == RS_OK && !strcmp(buf, "/some/where"));
    CHECK(rs_cli_default_model(buf, 4) == RS_ERR_TOO_LARGE);
    unsetenv("ROUTESCORE_MODEL");
    rs_status st = rs_cli_default_model(buf, sizeof buf);
    CHECK(st == RS_OK || (st == RS_ERR_NOT_FOUND && strstr(buf, "models/routers/minilm-mf")));
}

int main(void) {
    test_paths();
    test_messages();
    test_check_line();
    test_reader();
    test_json_lines();
    test_records();
    test_flags();
    test_default_model();
    return test_done("test_cli_common");
}
