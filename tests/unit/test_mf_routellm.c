/* test_mf_routellm.c — the mf_routellm router against a numpy rendering of
 * RouteLLM's MFModel.pred_win_rate (tools/gen/gen_mf_routellm.py), on client
 * embeddings: a 6-model checkpoint named by the manifest's "models" list and
 * a 64-model one using RouteLLM's own MODEL_IDS table. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "test_util.h"

static void check_router(const char *data, const char *name, const char *strong) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", data, name);
    rs_engine *e = NULL;
    rs_err err = {{0}};
    rs_status st = rs_engine_open(dir, NULL, &e, &err);
    CHECK_MSG(st == RS_OK, "%s: %s", dir, err.msg);
    if (st != RS_OK) return;
    rs_router_info info;
    rs_engine_info(e, &info);
    CHECK(!strcmp(info.kind, "mf_routellm"));
    CHECK(!strcmp(info.strong_model, strong));
    CHECK(info.embed_dim == 32);

    test_emb_case c;
    st = test_emb_case_run(&c, e, dir) == 0 ? RS_OK : RS_ERR_INTERNAL;
    CHECK(c.dim == 32 && c.n == 12);
    if (st != RS_OK) {
        test_emb_case_free(&c);
        rs_engine_close(e);
        return;
    }
    for (size_t i = 0; st == RS_OK && i < c.n; i++) CHECK(c.out[i].route_strong == (c.out[i].win_prob >= 0.5f));
    CHECK_MSG(c.worst < 1e-5, "%s: max |p - numpy| = %g", name, c.worst);
    printf("%s: %zu prompts, max |p - numpy| = %.3g\n", name, c.n, c.worst);

    /* Wrong width: the call fails as a whole. A non-finite vector: per prompt. */
    CHECK(rs_engine_score_embeddings(e, c.emb, c.n, c.dim - 1, NAN, c.out, &err) == RS_ERR_INVALID_ARG);
    c.emb[3] = NAN;
    CHECK(rs_engine_score_embeddings(e, c.emb, 2, c.dim, NAN, c.out, &err) == RS_OK);
    CHECK(c.out[0].status == RS_ERR_INVALID_ARG && c.out[1].status == RS_OK);
    /* No encoder in the manifest: text cannot be scored. */
    const char *prompt = "hello";
    size_t plen = 5;
    CHECK(rs_engine_score(e, &prompt, &plen, 1, NAN, c.out, &err) == RS_ERR_UNSUPPORTED);
    test_emb_case_free(&c);
    rs_engine_close(e);
}

/* rs_engine_open's status for a manifest in a fresh temporary directory. */
static rs_status open_manifest(const char *manifest, rs_err *err) {
    char dir[] = "/tmp/rs_mf_XXXXXX", path[64];
    if (!mkdtemp(dir)) return RS_ERR_IO;
    snprintf(path, sizeof path, "%s/routescore.json", dir);
    FILE *f = fopen(path, "w");
    fputs(manifest, f);
    fclose(f);
    rs_engine *e = NULL;
    rs_status st = rs_engine_open(dir, NULL, &e, err);
    rs_engine_close(e);
    remove(path);
    rmdir(dir);
    return st;
}

static void check_errors(const char *data) {
    char m[2048];
    rs_err err = {{0}};
    /* 6-model checkpoint: RouteLLM's 64-name table does not fit it. */
    snprintf(m, sizeof m, "{\"kind\": \"mf_routellm\", \"checkpoint\": \"%s/mf_routellm/model.safetensors\"}", data);
    CHECK(open_manifest(m, &err) == RS_ERR_FORMAT);
    /* a strong model that is not in the list */
    snprintf(m, sizeof m, "{\"kind\": \"mf_routellm\", \"checkpoint\": \"%s/mf_routellm/model.safetensors\", "
             "\"models\": [\"a\", \"b\"], \"strong_model\": \"a\", \"weak_model\": \"c\"}", data);
    CHECK(open_manifest(m, &err) == RS_ERR_INVALID_ARG);
    snprintf(m, sizeof m, "{\"kind\": \"mf_routellm\", \"checkpoint\": \"%s/mf_routellm/model.safetensors\", "
             "\"models\": [\"a\", \"b\"], \"strong_model\": \"a\", \"weak_model\": \"b\"}", data);
    CHECK_MSG(open_manifest(m, &err) == RS_OK, "%s", err.msg);
    /* not an MFModel checkpoint */
    snprintf(m, sizeof m, "{\"kind\": \"mf_routellm\", \"checkpoint\": \"%s/fidelity/minilm_cls_head.safetensors\"}", data);
    CHECK(open_manifest(m, &err) == RS_ERR_NOT_FOUND);
    CHECK(open_manifest("{\"kind\": \"mf_routellm\", \"checkpoint\": \"/nonexistent.safetensors\"}", &err) != RS_OK);
}

int main(void) {
    const char *data = test_env("RS_TEST_DATA");
    if (!data) {
        fprintf(stderr, "RS_TEST_DATA not set\n");
        return 77;
    }
    check_router(data, "mf_routellm", "model-4");
    check_router(data, "mf_routellm64", "gpt-4-1106-preview");
    check_errors(data);
    return test_done("test_mf_routellm");
}
