/* test_core_file.c — the core's whole-file reader and router-relative paths
 * (file.h): sizes at and over the bound, missing files, directories, NUL
 * bytes in text, JSON errors, and joins that fit or overflow by one byte;
 * the router manifest (manifest.h): typed fields, and each kind of bad key
 * refused with the file and the key named. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "manifest.h"
#include "test_util.h"

static char dir[256];

static void put(const char *name, const void *data, size_t n, char *path, size_t pn) {
    snprintf(path, pn, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n);
    if (f) fclose(f);
}

static void test_read(void) {
    char path[512];
    char *buf = (char *)1;
    size_t len = 99;
    rs_err err = {{0}};
    put("ten.txt", "0123456789", 10, path, sizeof path);
    CHECK(rs_file_read(path, 10, RS_FILE_TEXT, &buf, &len, &err) == RS_OK);
    CHECK(buf && len == 10 && !strcmp(buf, "0123456789"));
    free(buf);
    /* one byte over the bound */
    CHECK(rs_file_read(path, 9, RS_FILE_TEXT, &buf, &len, &err) == RS_ERR_TOO_LARGE);
    CHECK(buf == NULL && len == 0 && strstr(err.msg, "limit 9"));
    /* empty file: an empty string, not an error */
    put("empty.txt", "", 0, path, sizeof path);
    CHECK(rs_file_read(path, 10, RS_FILE_TEXT, &buf, &len, &err) == RS_OK && buf && len == 0 && buf[0] == 0);
    free(buf);
    /* NUL in text is refused with its offset; binary reads keep it */
    put("nul.bin", "ab\0cd", 5, path, sizeof path);
    CHECK(rs_file_read(path, 100, RS_FILE_TEXT, &buf, &len, &err) == RS_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "offset 2") != NULL, "%s", err.msg);
    CHECK(rs_file_read(path, 100, RS_FILE_BINARY, &buf, &len, &err) == RS_OK && len == 5 && !memcmp(buf, "ab\0cd", 5));
    free(buf);
    /* missing file, and a directory */
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    CHECK(rs_file_read(path, 100, RS_FILE_TEXT, &buf, &len, &err) == RS_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "missing.txt") != NULL);
    CHECK(rs_file_read(dir, 100, RS_FILE_TEXT, &buf, &len, &err) == RS_ERR_IO && buf == NULL);
    CHECK(!rs_file_exists(dir) && !rs_file_exists(path));
    snprintf(path, sizeof path, "%s/ten.txt", dir);
    CHECK(rs_file_exists(path));
    /* an unreadable file (root reads anything: only checked otherwise) */
    if (geteuid() != 0) {
        put("noperm.txt", "x", 1, path, sizeof path);
        chmod(path, 0);
        CHECK(rs_file_read(path, 100, RS_FILE_TEXT, &buf, &len, &err) == RS_ERR_IO);
    }
}

static void test_json(void) {
    char path[512];
    cJSON *j = (cJSON *)1;
    rs_err err = {{0}};
    put("ok.json", "{\"a\": [1, 2]}", 13, path, sizeof path);
    CHECK(rs_file_read_json(path, &j, &err) == RS_OK && cJSON_IsArray(cJSON_GetObjectItem(j, "a")));
    cJSON_Delete(j);
    put("bad.json", "{\"a\": [1, 2}", 12, path, sizeof path);
    CHECK(rs_file_read_json(path, &j, &err) == RS_ERR_FORMAT && j == NULL);
    CHECK_MSG(strstr(err.msg, "bad.json") && strstr(err.msg, "near byte 11"), "%s", err.msg);
    put("nul.json", "{\"a\": 1}\0", 9, path, sizeof path);
    CHECK(rs_file_read_json(path, &j, &err) == RS_ERR_FORMAT && j == NULL);
}

static void test_join(void) {
    char out[16];
    rs_err err = {{0}};
    CHECK(rs_path_join(out, sizeof out, "/r", "head.st", &err) == RS_OK && !strcmp(out, "/r/head.st"));
    CHECK(rs_path_join(out, sizeof out, "/r", "/abs/x", &err) == RS_OK && !strcmp(out, "/abs/x"));
    CHECK(rs_path_join(out, sizeof out, "", "rel", &err) == RS_OK && !strcmp(out, "rel"));
    CHECK(rs_path_join(out, sizeof out, NULL, "rel", &err) == RS_OK && !strcmp(out, "rel"));
    CHECK(rs_path_join(out, sizeof out, "../a", "b/c", &err) == RS_OK && !strcmp(out, "../a/b/c"));
    /* 15 characters fit 16 bytes; 16 do not, and nothing half-written stays */
    CHECK(rs_path_join(out, sizeof out, "/012345", "789abcd", &err) == RS_OK && strlen(out) == 15);
    CHECK(rs_path_join(out, sizeof out, "/012345", "789abcde", &err) == RS_ERR_TOO_LARGE && out[0] == 0);
    CHECK(strstr(err.msg, "too long") != NULL);
    CHECK(rs_path_join(out, sizeof out, "/0123456789", "/abcdefghijklmno", &err) == RS_ERR_TOO_LARGE);
    CHECK(rs_path_join(out, sizeof out, "/r", "", &err) == RS_ERR_INVALID_ARG);
}

/* Opens dir/routescore.json holding text; the status, with err. */
static rs_status open_manifest(const char *text, rs_manifest *m, int *found, rs_err *err) {
    char path[512];
    put("routescore.json", text, strlen(text), path, sizeof path);
    return rs_manifest_open(dir, m, found, err);
}

static void test_manifest(void) {
    rs_manifest m;
    int found = 1;
    rs_err err = {{0}};
    char path[512];
    snprintf(path, sizeof path, "%s/routescore.json", dir);
    unlink(path);
    CHECK(rs_manifest_open(dir, &m, &found, &err) == RS_OK && !found && !m.json);
    CHECK(open_manifest("{\"kind\": \"mf\", \"encoder\": \"../enc\", \"head\": \"h.st\", \"threshold\": 0.25, "
                        "\"max_tokens\": 64, \"strong_labels\": [0, 2], \"normalize\": false, \"pooling\": \"cls\", "
                        "\"models\": [\"a\", \"b\"], \"num_tiers\": 3, \"sha256\": {}}",
                        &m, &found, &err) == RS_OK);
    CHECK(found && !strcmp(m.kind, "mf") && !strcmp(m.head, "h.st") && m.has_threshold && m.threshold == 0.25f);
    CHECK(m.max_tokens == 64 && m.n_strong_labels == 2 && m.strong_labels[1] == 2 && m.has_normalize && !m.normalize);
    CHECK(!strcmp(m.pooling, "cls") && cJSON_GetArraySize(m.models) == 2 && m.num_tiers == 3 && m.sha256);
    char want[600];
    snprintf(want, sizeof want, "%s/../enc", dir);
    CHECK_MSG(!strcmp(m.encoder_dir, want), "%s", m.encoder_dir);
    CHECK(!m.name && !m.checkpoint && !m.has_parse_special && !m.encoder_layers);
    rs_manifest_close(&m);
    CHECK(m.json == NULL);
    /* defaults and an absolute encoder */
    CHECK(open_manifest("{\"encoder\": \"/abs/enc\"}", &m, &found, &err) == RS_OK);
    CHECK(!strcmp(m.kind, "bert") && !strcmp(m.encoder_dir, "/abs/enc"));
    rs_manifest_close(&m);
    /* every refusal names the key */
    static const char *const bad[][2] = {
        {"[1, 2]", "not a JSON object"},
        {"{\"threshold\": 1.5}", "threshold"},
        {"{\"threshold\": \"0.5\"}", "threshold"},
        {"{\"max_tokens\": 2}", "max_tokens"},
        {"{\"kind\": 3}", "kind must be a non-empty string"},
        {"{\"head\": \"\"}", "head must be a non-empty string"},
        {"{\"pooling\": \"max\"}", "pooling must be"},
        {"{\"precision\": \"fp16\"}", "precision must be"},
        {"{\"normalize\": 1}", "normalize must be a boolean"},
        {"{\"parse_special_tokens\": \"yes\"}", "parse_special_tokens must be a boolean"},
        {"{\"encoder_layers\": 2.5}", "encoder_layers must be a whole number"},
        {"{\"num_tiers\": 65}", "num_tiers"},
        {"{\"max_slots\": 0}", "max_slots"},
        {"{\"tensor_parallel\": -1}", "tensor_parallel"},
        {"{\"allreduce_timeout_ms\": 4000000}", "allreduce_timeout_ms"},
        {"{\"strong_labels\": []}", "strong_labels"},
        {"{\"strong_labels\": [8]}", "strong_labels"},
        {"{\"strong_labels\": [0.5]}", "strong_labels"},
        {"{\"models\": [\"a\", 1]}", "models must be"},
        {"{\"sha256\": []}", "sha256"},
        {"{\"kind\": \"mf\",}", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rs_status st = open_manifest(bad[i][0], &m, &found, &err);
        CHECK_MSG(st != RS_OK && found && m.json == NULL && strstr(err.msg, bad[i][1]) && strstr(err.msg, "routescore.json"),
                  "%s: %s", bad[i][0], err.msg);
    }
    CHECK(rs_manifest_known_key("battles") && !rs_manifest_known_key("battle"));
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/rs_core_file_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_read();
    test_json();
    test_join();
    test_manifest();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_done("test_core_file");
}
