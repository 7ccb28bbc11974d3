/* test_sw_ranking.c — the sw_ranking router (battle file with precomputed
 * embeddings, tiers, similarity-weighted Bradley–Terry fit) against a numpy
 * rendering of RouteLLM's SWRankingRouter (tools/gen/gen_sw_ranking.py). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "test_util.h"

/* Opens a router made of a manifest and a one-file battle set in a fresh
 * temporary directory; returns the status of rs_engine_open. */
static rs_status open_with(const char *manifest, const char *battles, rs_err *err) {
    char dir[] = "/tmp/rs_sw_XXXXXX", path[64];
    if (!mkdtemp(dir)) return RS_ERR_IO;
    snprintf(path, sizeof path, "%s/routescore.json", dir);
    FILE *f = fopen(path, "w");
    fputs(manifest, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/battles.jsonl", dir);
    f = fopen(path, "w");
    fputs(battles, f);
    fclose(f);
    rs_engine *e = NULL;
    rs_status st = rs_engine_open(dir, NULL, &e, err);
    rs_engine_close(e);
    remove(path);
    snprintf(path, sizeof path, "%s/routescore.json", dir);
    remove(path);
    rmdir(dir);
    return st;
}

static void check_errors(void) {
    rs_err err = {{0}};
    const char *m = "{\"kind\": \"sw_ranking\", \"strong_model\": \"a\", \"weak_model\": \"b\", \"num_tiers\": 2}";
    const char *ok = "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"model_a\", \"embedding\": [1, 0]}\n"
                     "{\"model_a\": \"b\", \"model_b\": \"a\", \"winner\": \"tie\", \"embedding\": [0, 1]}\n";
    CHECK_MSG(open_with(m, ok, &err) == RS_OK, "%s", err.msg);
    CHECK(open_with(m, "", &err) == RS_ERR_FORMAT);
    CHECK(open_with(m, "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"draw\", \"embedding\": [1]}\n", &err) ==
          RS_ERR_FORMAT);
    CHECK(open_with(m, "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"tie\", \"embedding\": [1]}\n"
                       "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"tie\", \"embedding\": [1, 2]}\n", &err) ==
          RS_ERR_FORMAT);
    CHECK(open_with(m, "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"tie\", \"embedding\": [0, 0]}\n", &err) ==
          RS_ERR_FORMAT);
    /* a prompt but no encoder to embed it */
    CHECK(open_with(m, "{\"model_a\": \"a\", \"model_b\": \"b\", \"winner\": \"tie\", \"prompt\": \"hi\"}\n", &err) ==
          RS_ERR_INVALID_ARG);
    CHECK(open_with(m, "not json\n", &err) == RS_ERR_FORMAT);
    /* the strong model fights no battle */
    CHECK(open_with("{\"kind\": \"sw_ranking\", \"strong_model\": \"z\", \"weak_model\": \"b\"}", ok, &err) ==
          RS_ERR_INVALID_ARG);
    CHECK(open_with("{\"kind\": \"sw_ranking\", \"strong_model\": \"a\", \"weak_model\": \"b\", \"num_tiers\": 0}", ok,
                    &err) == RS_ERR_INVALID_ARG);
}

int main(void) {
    const char *data = test_env("RS_TEST_DATA");
    if (!data) {
        fprintf(stderr, "RS_TEST_DATA not set\n");
        return 77;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/sw_ranking", data);
    rs_engine *e = NULL;
    rs_err err = {{0}};
    rs_status st = rs_engine_open(dir, NULL, &e, &err);
    CHECK_MSG(st == RS_OK, "%s: %s", dir, err.msg);
    if (st != RS_OK) return test_done("test_sw_ranking");
    rs_router_info info;
    rs_engine_info(e, &info);
    CHECK(!strcmp(info.kind, "sw_ranking"));
    CHECK(info.embed_dim == 16);

    test_emb_case c;
    st = test_emb_case_run(&c, e, dir) == 0 ? RS_OK : RS_ERR_INTERNAL;
    CHECK(c.dim == 16 && c.n == 10);
    if (st != RS_OK) {
        test_emb_case_free(&c);
        rs_engine_close(e);
        return test_done("test_sw_ranking");
    }
    CHECK_MSG(c.worst < 1e-4, "max |p - numpy| = %g", c.worst);
    printf("sw_ranking: %zu prompts, max |p - numpy| = %.3g\n", c.n, c.worst);
    /* One prompt at a time gives the same scores as the batch. */
    rs_score one;
    CHECK(rs_engine_score_embeddings(e, c.emb + 3 * c.dim, 1, c.dim, NAN, &one, &err) == RS_OK);
    CHECK(fabsf(one.win_prob - c.out[3].win_prob) < 1e-6f);
    /* A zero vector is a per-prompt error. */
    memset(c.emb, 0, c.dim * sizeof *c.emb);
    CHECK(rs_engine_score_embeddings(e, c.emb, 2, c.dim, NAN, c.out, &err) == RS_OK);
    CHECK(c.out[0].status == RS_ERR_INVALID_ARG && c.out[1].status == RS_OK);
    test_emb_case_free(&c);
    rs_engine_close(e);
    check_errors();
    return test_done("test_sw_ranking");
}
