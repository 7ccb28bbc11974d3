/* test_llama_logits.c — rs_llama (CPU) against HF transformers' LlamaForCausalLM
 * on SmolLM2-135M-Instruct (models/fetch_smollm2_model.sh: the GGUF dequantised
 * to fp32): logits at every position of 50 prompts, the top 8 per position of
 * tests/data/smollm2_logits.json (tools/gen/gen_smollm2_logits.py), relative
 * error <= 1e-3 (against the position's largest |logit|). Skips (77) when the
 * model is not fetched. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "llama.h"
#include "file.h"
#include "model_files.h"

int main(void) {
    const char *cache = getenv("RS_MODEL_CACHE"), *data = getenv("RS_TEST_DATA");
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/smollm2-135m", cache ? cache : "models/cache");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        printf("SKIP: %s missing (bash models/fetch_smollm2_model.sh)\n", path);
        return 77;
    }
    snprintf(path, sizeof path, "%s/smollm2_logits.json", data ? data : "tests/data");
    cJSON *g = NULL;
    rs_err err = {{0}};
    rs_model_files *files = NULL;
    rs_backend *b = NULL;
    rs_llama *m = NULL;
    if (rs_file_read_json(path, &g, &err) != RS_OK || rs_model_files_open(dir, &files, &err) != RS_OK ||
        rs_backend_cpu_create(0, 1, &b, &err) != RS_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    const cJSON *prompts = cJSON_GetObjectItem(g, "prompts");
    int max_len = 0;
    for (const cJSON *p = prompts->child; p; p = p->next) {
        int n = cJSON_GetArraySize(cJSON_GetObjectItem(p, "ids"));
        max_len = n > max_len ? n : max_len;
    }
    rs_llama_limits lim = {.max_tokens = max_len, .max_slots = 1, .slot_len = max_len, .max_logit_rows = max_len};
    if (rs_llama_create(files, b, &lim, &m, &err) != RS_OK) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    const int V = rs_llama_get_config(m)->vocab_size;
    int32_t *ids = malloc((size_t)max_len * sizeof *ids), *slot = calloc((size_t)max_len, sizeof *slot);
    int32_t *pos = malloc((size_t)max_len * sizeof *pos);
    float *logits = malloc((size_t)max_len * (size_t)V * sizeof *logits);
    int fails = 0, n_pos = 0, n_prompts = 0;
    double worst = 0;
    for (const cJSON *p = prompts->child; p; p = p->next, n_prompts++) {
        const cJSON *jids = cJSON_GetObjectItem(p, "ids");
        int n = 0;
        for (const cJSON *it = jids->child; it; it = it->next, n++) {
            ids[n] = it->valueint;
            pos[n] = n;
        }
        if (rs_llama_forward(m, ids, slot, pos, n, pos, n, logits, &err) != RS_OK) {
            fprintf(stderr, "FAIL: %s\n", err.msg);
            return 1;
        }
        const cJSON *ti = cJSON_GetObjectItem(p, "top_ids")->child, *tl = cJSON_GetObjectItem(p, "top_logits")->child;
        for (int t = 0; t < n; t++, ti = ti->next, tl = tl->next, n_pos++) {
            double scale = 0, e = 0;
            for (const cJSON *v = tl->child; v; v = v->next) scale = fmax(scale, fabs(v->valuedouble));
            const cJSON *i = ti->child, *v = tl->child;
            for (; i && v; i = i->next, v = v->next)
                e = fmax(e, fabs(logits[(size_t)t * V + i->valueint] - v->valuedouble) / fmax(scale, 1.0));
            worst = fmax(worst, e);
            if (e > 1e-3 && fails++ < 10)
                fprintf(stderr, "FAIL: prompt %d position %d: relative error %.2e\n", n_prompts, t, e);
        }
    }
    printf("%d prompts, %d positions: worst relative error %.2e (limit 1e-3), %d failures\n", n_prompts, n_pos, worst,
           fails);
    free(ids);
    free(slot);
    free(pos);
    free(logits);
    rs_llama_free(m);
    b->ops->destroy(b);
    rs_model_files_close(files);
    cJSON_Delete(g);
    return fails ? 1 : 0;
}
