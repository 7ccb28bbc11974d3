/* test_engine.c — the engine on the small random XLM-R classifier in
 * tests/data/fidelity (its golden probabilities come from HF transformers,
 * tools/gen/gen_fidelity.py):
 *   - probabilities equal the golden within 1e-4 whatever the packing: one
 *     sequence per forward, all in one, and a tiny arena forcing many batches;
 *   - every way a model directory can be broken is refused with an error
 *     naming the file or tensor;
 *   - bad arguments (ids out of range, empty sequences, bad thresholds) are
 *     errors, not crashes. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "test_util.h"

#define MAX_SEQ 64
#define MAX_IDS 16384

static int32_t ids[MAX_IDS];
static size_t offsets[MAX_SEQ + 1];
static float golden[MAX_SEQ][3];
static int n_seq;

static int load_golden(const char *path) {
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) return 0;
    offsets[0] = 0;
    for (char *line = strtok(text, "\n"); line && n_seq < MAX_SEQ; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *a = cJSON_GetObjectItem(j, "ids"), *p = cJSON_GetObjectItem(j, "probs");
        size_t o = offsets[n_seq];
        for (const cJSON *it = a ? a->child : NULL; it; it = it->next) ids[o++] = it->valueint;
        int k = 0;
        for (const cJSON *it = p ? p->child : NULL; it && k < 3; it = it->next) golden[n_seq][k++] = (float)it->valuedouble;
        offsets[++n_seq] = o;
        cJSON_Delete(j);
    }
    free(text);
    return n_seq;
}

static rs_engine *open_model(const char *dir, int batch_tokens, rs_err *err) {
    rs_engine_opts o;
    rs_engine_opts_default(&o);
    o.max_batch_tokens = batch_tokens;
    o.n_threads = 2;
    rs_engine *e = NULL;
    rs_status st = rs_engine_open(dir, &o, &e, err);
    return st == RS_OK ? e : NULL;
}

static float max_diff(const rs_score *s, int n) {
    float worst = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            float d = fabsf(s[i].label_probs[k] - golden[i][k]);
            if (!(d <= worst)) worst = d; /* NaN counts as worst */
        }
    return worst;
}

static void test_fidelity_and_packing(const char *model) {
    rs_err err = {{0}};
    static rs_score all[MAX_SEQ], one[MAX_SEQ], small[MAX_SEQ];
    rs_engine *e = open_model(model, 0, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    if (!e) return;
    rs_router_info info;
    rs_engine_info(e, &info);
    CHECK(!strcmp(info.kind, "bert") && info.n_labels == 3 && info.max_tokens == 128);
    CHECK(rs_engine_score_tokens(e, ids, offsets, (size_t)n_seq, NAN, all, &err) == RS_OK);
    for (int i = 0; i < n_seq; i++) {
        size_t off[2] = {0, offsets[i + 1] - offsets[i]};
        CHECK(rs_engine_score_tokens(e, ids + offsets[i], off, 1, NAN, &one[i], &err) == RS_OK);
    }
    float d_all = max_diff(all, n_seq), d_one = max_diff(one, n_seq);
    printf("xlmr_tiny: %d sequences, max |p - golden| packed %.2e, one by one %.2e\n", n_seq, d_all, d_one);
    CHECK(d_all <= 1e-4f);
    CHECK(d_one <= 1e-4f);
    for (int i = 0; i < n_seq; i++) {
        CHECK(all[i].tokens == (int)(offsets[i + 1] - offsets[i]));
        CHECK(all[i].route_strong == (all[i].win_prob >= info.threshold));
        CHECK(fabsf(all[i].win_prob - all[i].label_probs[0]) < 1e-7f); /* strong wins = label 0 */
    }
    rs_engine_close(e);

    /* An arena of 130 tokens: nearly every sequence gets a forward of its own. */
    e = open_model(model, 130, &err);
    CHECK(e != NULL);
    if (!e) return;
    CHECK(rs_engine_score_tokens(e, ids, offsets, (size_t)n_seq, 0.3f, small, &err) == RS_OK);
    CHECK(max_diff(small, n_seq) <= 1e-4f);
    for (int i = 0; i < n_seq; i++) CHECK(small[i].route_strong == (small[i].win_prob >= 0.3f));

    /* Bad input: each an error with a message, none a crash. */
    int32_t bad[3] = {0, 5000, 2};
    size_t off3[2] = {0, 3}, off0[2] = {0, 0}, off_long[2] = {0, 129};
    rs_score s;
    CHECK(rs_engine_score_tokens(e, bad, off3, 1, NAN, &s, &err) == RS_ERR_INVALID_ARG && strstr(err.msg, "5000"));
    bad[1] = -1;
    CHECK(rs_engine_score_tokens(e, bad, off3, 1, NAN, &s, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_engine_score_tokens(e, bad, off0, 1, NAN, &s, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_engine_score_tokens(e, ids, off_long, 1, NAN, &s, &err) == RS_ERR_INVALID_ARG);
    CHECK(rs_engine_score_tokens(e, ids, offsets, 1, 1.5f, &s, &err) == RS_ERR_INVALID_ARG);
    const char *p = "hello";
    size_t plen = 5;
    CHECK(rs_engine_score(e, &p, &plen, 1, NAN, &s, &err) == RS_OK);
    CHECK_MSG(s.status == RS_ERR_NOT_FOUND && strstr(s.error, "tokenizer"), "%s", s.error);
    rs_engine_close(e);
}

/* Copies the model into a scratch dir with one file replaced or edited. */
static char scratch[] = "/tmp/rs_engine_XXXXXX";

static void copy_model(const char *model) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s/m && mkdir -p %s/m && cp %s/* %s/m/", scratch, scratch, model, scratch);
    CHECK(system(cmd) == 0);
}

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/m/%s", scratch, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void expect_open_fails(const char *needle) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/m", scratch);
    rs_err err = {{0}};
    rs_engine *e = open_model(dir, 0, &err);
    CHECK_MSG(e == NULL, "opened a broken model (%s)", needle);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "error '%s' lacks '%s'", err.msg, needle);
    rs_engine_close(e);
}

static void edit_config(const char *key, const char *json_value) {
    char path[512];
    snprintf(path, sizeof path, "%s/m/config.json", scratch);
    char *text = test_read_file(path, NULL);
    cJSON *c = cJSON_Parse(text);
    free(text);
    cJSON_DeleteItemFromObject(c, key);
    if (json_value) cJSON_AddItemToObject(c, key, cJSON_Parse(json_value));
    char *out = cJSON_Print(c);
    write_file("config.json", out);
    free(out);
    cJSON_Delete(c);
}

static void test_broken_models(const char *model) {
    char path[512];
    CHECK(mkdtemp(scratch) != NULL);
    expect_open_fails("no such router directory");

    copy_model(model);
    snprintf(path, sizeof path, "%s/m/model.safetensors", scratch);
    unlink(path);
    expect_open_fails("no model.safetensors");

    copy_model(model);
    CHECK(truncate(path, 4096) == 0);
    expect_open_fails("truncated");

    copy_model(model);
    write_file("config.json", "{\"model_type\": \"xlm-roberta\",");
    expect_open_fails("invalid JSON");

    copy_model(model);
    edit_config("hidden_size", "96");
    expect_open_fails("shape");

    copy_model(model);
    edit_config("num_hidden_layers", "3");
    expect_open_fails("encoder.layer.2");

    copy_model(model);
    edit_config("hidden_act", "\"relu\"");
    expect_open_fails("hidden_act 'relu'");

    copy_model(model);
    edit_config("model_type", "\"gpt2\"");
    expect_open_fails("model_type 'gpt2'");

    copy_model(model);
    edit_config("architectures", "[\"BertForSequenceClassification\"]");
    expect_open_fails("does not match");

    copy_model(model);
    write_file("routescore.json", "{\"kind\": \"mf\"}");
    expect_open_fails("head");

    copy_model(model);
    write_file("routescore.json", "{\"kind\": \"bert\", \"threshold\": 2}");
    expect_open_fails("threshold");

    copy_model(model);
    write_file("routescore.json", "{\"kind\": \"bert\", \"strong_labels\": [5]}");
    expect_open_fails("strong label 5");

    /* A manifest that works: labels 0 and 1 (strong wins or tie). */
    copy_model(model);
    write_file("routescore.json", "{\"kind\": \"bert\", \"strong_labels\": [0, 1], \"threshold\": 0.25, "
                                  "\"name\": \"tiny\", \"strong_model\": \"big\", \"weak_model\": \"small\"}");
    snprintf(path, sizeof path, "%s/m", scratch);
    rs_err err = {{0}};
    rs_engine *e = open_model(path, 0, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    if (e) {
        rs_router_info info;
        rs_engine_info(e, &info);
        CHECK(!strcmp(info.name, "tiny") && !strcmp(info.strong_model, "big") && info.threshold == 0.25f);
        rs_score s[MAX_SEQ];
        CHECK(rs_engine_score_tokens(e, ids, offsets, (size_t)n_seq, NAN, s, &err) == RS_OK);
        for (int i = 0; i < n_seq; i++) CHECK(fabsf(s[i].win_prob - (golden[i][0] + golden[i][1])) < 1e-4f);
        rs_engine_close(e);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    CHECK(system(cmd) == 0);
}

int main(void) {
    const char *data = test_env("RS_TEST_DATA");
    if (!data) {
        printf("skipped: RS_TEST_DATA not set\n");
        return 77;
    }
    char model[512], gold[512];
    snprintf(model, sizeof model, "%s/fidelity/xlmr_tiny", data);
    snprintf(gold, sizeof gold, "%s/fidelity/xlmr_tiny_golden.jsonl", data);
    CHECK_MSG(load_golden(gold) >= 10, "cannot read %s", gold);
    test_fidelity_and_packing(model);
    test_broken_models(model);
    return test_done("test_engine");
}
