/* http_json.h — the HTTP/JSON API's message mapping (http_json.c): a
 * POST /v1/score body as the ScoreRequest it carries, and protobuf-c
 * messages as JSON (field names of the proto, uint64 as strings, enums by
 * name: the proto3 JSON mapping). Private to src/server/ (http.c and the
 * fuzz harness tests/fuzz/fuzz_http_json.c). */
#ifndef RS_HTTP_JSON_H
#define RS_HTTP_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "routescore/v1/scorer.pb-c.h"
#include "status.h"

/* A ScoreRequest built from JSON: its arrays, freed together; its strings
 * point into the cJSON tree it was built from. */
typedef struct srv_jreq {
    Routescore__V1__ScoreRequest m;
    void *allocs[8];
    int n_allocs;
} srv_jreq;

/* The body (len bytes; need not be NUL-terminated) into j->m: RS_OK, with
 * *root the parsed tree (cJSON_Delete it after j); else RS_ERR_FORMAT (not
 * JSON text: invalid UTF-8, a \u0000 escape, malformed), RS_ERR_INVALID_ARG
 * (not a ScoreRequest's shape: a wrong type, an unknown or repeated field)
 * or RS_ERR_NOMEM, with the message in msg, *root NULL and nothing to free
 * but j (srv_jreq_free, always). */
rs_status srv_json_score_request(const char *body, size_t len, srv_jreq *j, cJSON **root, char *msg, size_t msg_n);
void srv_jreq_free(srv_jreq *j);

/* m as a JSON object; NULL when out of memory. */
cJSON *srv_pb_json(const ProtobufCMessage *m);

#endif
