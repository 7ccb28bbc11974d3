/* test_safetensors.c — the reader accepts what the writer writes and refuses
 * every malformed file with a message, never reading out of bounds (run under
 * ASan in CI): bad header lengths, bad JSON, unknown dtypes, byte ranges that
 * disagree with shapes, ranges past the end, overlaps, truncation, and
 * random corruption of the header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "test_util.h"

static char dir[] = "/tmp/rs_st_XXXXXX";

static void write_raw(const char *path, const char *header, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    uint64_t len = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(len >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, len, f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* Opens path and expects failure with `status` and a message containing
 * `needle`. */
static void expect_refused(const char *path, rs_status status, const char *needle) {
    rs_st_file *f = NULL;
    rs_err err = {{0}};
    rs_status st = rs_st_open(path, &f, &err);
    CHECK_MSG(st == status, "%s: got %s (%s), want %s", needle, rs_status_str(st), err.msg, rs_status_str(status));
    CHECK_MSG(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    CHECK(f == NULL);
    rs_st_close(f);
}

static void test_roundtrip(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/ok.safetensors", dir);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[1] = {-0.5f};
    rs_st_out_tensor t[2] = {{"w", 2, {2, 3}, a}, {"b", 1, {1}, b}};
    rs_err err = {{0}};
    CHECK(rs_st_write_f32(path, t, 2, &err) == RS_OK);
    rs_st_file *f = NULL;
    CHECK(rs_st_open(path, &f, &err) == RS_OK);
    if (!f) return;
    CHECK(rs_st_count(f) == 2);
    const rs_st_tensor *w = rs_st_find(f, "w");
    CHECK(w && w->dtype == RS_DTYPE_F32 && w->n_dims == 2 && w->shape[0] == 2 && w->shape[1] == 3);
    CHECK(w && w->n_elems == 6 && memcmp(w->data, a, sizeof a) == 0);
    CHECK(w && ((uintptr_t)w->data & 7) == 0); /* header padded: data aligned */
    const rs_st_tensor *bb = rs_st_find(f, "b");
    CHECK(bb && *(const float *)bb->data == -0.5f);
    CHECK(rs_st_find(f, "nope") == NULL);
    rs_st_close(f);
}

static void test_malformed(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    float data[4] = {0};

    FILE *fp = fopen(path, "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    expect_refused(path, RS_ERR_FORMAT, "too short");

    fp = fopen(path, "wb");
    uint64_t huge = 1ull << 40;
    fwrite(&huge, 8, 1, fp);
    fwrite("{}", 1, 2, fp);
    fclose(fp);
    expect_refused(path, RS_ERR_FORMAT, "header length");

    write_raw(path, "{not json", data, 16);
    expect_refused(path, RS_ERR_FORMAT, "not a JSON object");

    write_raw(path, "[1,2]", data, 16);
    expect_refused(path, RS_ERR_FORMAT, "not a JSON object");

    write_raw(path, "{\"x\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, 16);
    expect_refused(path, RS_ERR_UNSUPPORTED, "unknown dtype 'Q4'");

    write_raw(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", data, 16);
    expect_refused(path, RS_ERR_FORMAT, "16 bytes for 3 x F32");

    write_raw(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, 12);
    expect_refused(path, RS_ERR_FORMAT, "truncated");

    write_raw(path,
              "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
              data, 16);
    expect_refused(path, RS_ERR_FORMAT, "overlap");

    write_raw(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", data, 16);
    expect_refused(path, RS_ERR_FORMAT, "bad shape");

    write_raw(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", data, 16);
    expect_refused(path, RS_ERR_FORMAT, "dims");

    write_raw(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", data, 16);
    expect_refused(path, RS_ERR_FORMAT, "bad data_offsets");

    write_raw(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", data, 16);
    expect_refused(path, RS_ERR_FORMAT, "data_offsets");

    /* Shape product that overflows 64 bits must not wrap into a match. */
    write_raw(path,
              "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}",
              data, 16);
    expect_refused(path, RS_ERR_FORMAT, "bad shape");

    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    expect_refused(path, RS_ERR_NOT_FOUND, "No such file");
}

/* Random corruption of a valid file: any outcome but a crash or an
 * out-of-bounds read (ASan) is fine, and success must still be consistent. */
static void test_fuzz(void) {
    char ok[256], path[256];
    snprintf(ok, sizeof ok, "%s/ok.safetensors", dir);
    snprintf(path, sizeof path, "%s/fuzz.safetensors", dir);
    size_t n;
    char *orig = test_read_file(ok, &n);
    CHECK(orig != NULL);
    if (!orig) return;
    srand(1234);
    int accepted = 0;
    for (int it = 0; it < 3000; it++) {
        char *buf = malloc(n);
        memcpy(buf, orig, n);
        int flips = 1 + rand() % 4;
        for (int k = 0; k < flips; k++) buf[rand() % n] = (char)(rand() & 0xff);
        size_t len = (it % 7 == 0) ? (size_t)rand() % n : n; /* sometimes truncate */
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        rs_st_file *sf = NULL;
        rs_err err = {{0}};
        if (rs_st_open(path, &sf, &err) == RS_OK) {
            accepted++;
            for (size_t i = 0; i < rs_st_count(sf); i++) {
                const rs_st_tensor *t = rs_st_at(sf, i);
                CHECK(t->n_bytes == (size_t)t->n_elems * rs_st_dtype_size(t->dtype));
                volatile unsigned char sink = 0;
                for (size_t b = 0; b < t->n_bytes; b++) sink ^= ((const unsigned char *)t->data)[b];
                (void)sink;
            }
        } else {
            CHECK(err.msg[0] != 0);
        }
        rs_st_close(sf);
        free(buf);
    }
    printf("fuzz: %d of 3000 corrupted files still valid\n", accepted);
    free(orig);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    test_roundtrip();
    test_malformed();
    test_fuzz();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return test_done("test_safetensors");
}
