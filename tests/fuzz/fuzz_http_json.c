/* fuzz_http_json.c — the HTTP API's request parser (src/server/http_json.c):
 * the input is a POST /v1/score body; what http.c does with it up to the
 * batcher's door is done here: the JSON text check, the parse, the
 * ScoreRequest it builds (prompts, embeddings, messages with string or
 * part-list content, threshold / strong_share, request ids).
 *
 * Properties checked on every input (abort() on a violation, so libFuzzer
 * reports it):
 *   - the parse ends RS_OK, RS_ERR_FORMAT or RS_ERR_INVALID_ARG with a
 *     message: never RS_ERR_NOMEM (the inputs are small, so that would be a
 *     client's mistake reported as a server failure) nor anything else;
 *   - a built request is whole: every counted prompt, embedding, message and
 *     content part is there (packing it walks every pointer, under ASan), it
 *     packs to protobuf that unpacks to the same counts and strings, and it
 *     converts back to JSON (srv_pb_json, the answers' path).
 * The scratch allocations are freed (LeakSanitizer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_json.h"

#define REQUIRE(c)                                                        \
    do {                                                                  \
        if (!(c)) {                                                       \
            fprintf(stderr, "fuzz_http_json: %s (line %d)\n", #c, __LINE__); \
            abort();                                                      \
        }                                                                 \
    } while (0)

static int same_str(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }

static void check_roundtrip(const Routescore__V1__ScoreRequest *m) {
    const size_t n = protobuf_c_message_get_packed_size(&m->base);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return;
    REQUIRE(protobuf_c_message_pack(&m->base, buf) == n);
    Routescore__V1__ScoreRequest *u = routescore__v1__score_request__unpack(NULL, n, buf);
    REQUIRE(u != NULL);
    REQUIRE(u->n_prompts == m->n_prompts && u->n_embeddings == m->n_embeddings && u->n_messages == m->n_messages);
    REQUIRE(same_str(u->router, m->router) && same_str(u->request_key, m->request_key));
    REQUIRE(u->request_id == m->request_id && u->decision_case == m->decision_case);
    for (size_t i = 0; i < m->n_prompts; i++) REQUIRE(m->prompts[i] && same_str(u->prompts[i], m->prompts[i]));
    for (size_t i = 0; i < m->n_embeddings; i++) {
        REQUIRE(m->embeddings[i] && u->embeddings[i]->n_values == m->embeddings[i]->n_values);
        if (m->embeddings[i]->n_values)
            REQUIRE(!memcmp(u->embeddings[i]->values, m->embeddings[i]->values, m->embeddings[i]->n_values * sizeof(float)));
    }
    for (size_t i = 0; i < m->n_messages; i++) {
        const Routescore__V1__ChatMessage *a = m->messages[i], *b = u->messages[i];
        REQUIRE(a && same_str(a->role, b->role) && same_str(a->content, b->content));
        REQUIRE(a->n_content_parts == b->n_content_parts);
        for (size_t k = 0; k < a->n_content_parts; k++)
            REQUIRE(a->content_parts[k] && same_str(a->content_parts[k]->type, b->content_parts[k]->type) &&
                    same_str(a->content_parts[k]->text, b->content_parts[k]->text));
    }
    routescore__v1__score_request__free_unpacked(u, NULL);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    /* http.c hands over the body it has gathered; its NUL terminator is not
     * counted, so give none here (ASan then sees any read past len). */
    char *body = malloc(n ? n : 1);
    if (!body) return 0;
    memcpy(body, data, n);
    srv_jreq j;
    cJSON *root = NULL;
    char msg[256] = "";
    const rs_status st = srv_json_score_request(body, n, &j, &root, msg, sizeof msg);
    REQUIRE(st == RS_OK || st == RS_ERR_FORMAT || st == RS_ERR_INVALID_ARG);
    REQUIRE(st == RS_OK ? root != NULL : root == NULL && msg[0] != 0);
    if (st == RS_OK) {
        check_roundtrip(&j.m);
        cJSON *back = srv_pb_json(&j.m.base);
        if (back) {
            char *text = cJSON_PrintUnformatted(back);
            free(text);
            cJSON_Delete(back);
        }
    }
    srv_jreq_free(&j);
    cJSON_Delete(root);
    free(body);
    return 0;
}
