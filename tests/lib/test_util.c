/* test_util.c — see test_util.h. */
#include "test_util.h"

#include "backend.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include <stdlib.h>
#include <time.h>

int rs_test_failures = 0;

const char *test_env(const char *name) {
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len) *len = (size_t)n;
    }
    return buf;
}

int test_done(const char *name) {
    if (rs_test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, rs_test_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

/* Reads dir/embeddings.jsonl (lines of float arrays) into a (n, dim) array. */
float *test_read_embeddings(const char *dir, size_t *n, size_t *dim) {
    char path[1200];
    snprintf(path, sizeof path, "%s/embeddings.jsonl", dir);
    size_t len;
    char *text = test_read_file(path, &len);
    if (!text) return NULL;
    float *out = NULL;
    *n = *dim = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        size_t d = (size_t)cJSON_GetArraySize(j);
        if (!*dim) *dim = d;
        CHECK(d == *dim);
        out = realloc(out, (*n + 1) * *dim * sizeof *out);
        size_t k = 0;
        for (const cJSON *it = j->child; it && k < *dim; it = it->next) out[*n * *dim + k++] = (float)it->valuedouble;
        cJSON_Delete(j);
        (*n)++;
    }
    free(text);
    return out;
}

int test_emb_case_run(test_emb_case *c, rs_engine *e, const char *dir) {
    memset(c, 0, sizeof *c);
    c->emb = test_read_embeddings(dir, &c->n, &c->dim);
    char path[1200];
    snprintf(path, sizeof path, "%s/expected.json", dir);
    char *text = test_read_file(path, NULL);
    cJSON *exp = text ? cJSON_Parse(text) : NULL;
    const cJSON *probs = cJSON_GetObjectItemCaseSensitive(exp, "win_prob");
    int ok = c->emb && cJSON_GetArraySize(probs) == (int)c->n;
    CHECK_MSG(ok, "%s: embeddings.jsonl and expected.json disagree or are missing", dir);
    c->out = ok ? calloc(c->n, sizeof *c->out) : NULL;
    rs_err err = {{0}};
    if (ok && rs_engine_score_embeddings(e, c->emb, c->n, c->dim, NAN, c->out, &err) != RS_OK) {
        CHECK_MSG(0, "%s: %s", dir, err.msg);
        ok = 0;
    }
    size_t i = 0;
    for (const cJSON *it = ok ? probs->child : NULL; it && i < c->n; it = it->next, i++) {
        CHECK(c->out[i].status == RS_OK);
        double d = fabs(c->out[i].win_prob - it->valuedouble);
        c->worst = d > c->worst ? d : c->worst;
    }
    cJSON_Delete(exp);
    free(text);
    return ok ? 0 : -1;
}

void test_emb_case_free(test_emb_case *c) {
    free(c->emb);
    free(c->out);
}

rs_engine *test_open_engine(const char *dir, const char *backend, int batch_tokens) {
    rs_engine_opts o;
    rs_engine_opts_default(&o);
    if (backend) o.backend = backend;
    o.max_batch_tokens = batch_tokens;
    o.n_threads = 2;
    rs_engine *e = NULL;
    rs_err err = {{0}};
    CHECK_MSG(rs_engine_open(dir, &o, &e, &err) == RS_OK, "open %s on %s: %s", dir, o.backend, err.msg);
    return e;
}

int test_cuda_devices(const char *name) {
#ifdef RS_HAVE_CUDA
    rs_err err = {{0}};
    const int n = rs_cuda_device_count(&err);
    if (n < 0) {
        printf("%s: FAIL: CUDA is installed but unusable: %s\n", name, err.msg);
        return -1;
    }
    if (n == 0) printf("%s: SKIP: no CUDA device visible\n", name);
    return n;
#else
    printf("%s: SKIP: this build has no CUDA backend (RS_WITH_CUDA=OFF or no nvcc)\n", name);
    return 0;
#endif
}

double test_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
