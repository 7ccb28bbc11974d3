/* http_json.c — see http_json.h. */
#include "http_json.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_text.h"
#include "srv_log.h"

/* ---- protobuf-c messages as JSON (field names of the proto) ---- */


static cJSON *pb_value(const ProtobufCFieldDescriptor *f, const void *p) {
    char buf[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT: return cJSON_CreateNumber((double)*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return cJSON_CreateNumber(*(const double *)p);
    case PROTOBUF_C_TYPE_INT32: return cJSON_CreateNumber((double)*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32: return cJSON_CreateNumber((double)*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)p);
        return cJSON_CreateString(buf);
    case PROTOBUF_C_TYPE_BOOL: return cJSON_CreateBool(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
        return v ? cJSON_CreateString(v->name) : cJSON_CreateNumber((double)*(const int *)p);
    }
    case PROTOBUF_C_TYPE_STRING: return cJSON_CreateString(*(char *const *)p ? *(char *const *)p : "");
    case PROTOBUF_C_TYPE_MESSAGE: return srv_pb_json(*(ProtobufCMessage *const *)p);
    default: return cJSON_CreateNull(); /* no other type in the answers */
    }
}

static size_t pb_elem_size(const ProtobufCFieldDescriptor *f) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    default: return 4;
    }
}

cJSON *srv_pb_json(const ProtobufCMessage *m) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    cJSON *o = cJSON_CreateObject();
    for (unsigned i = 0; o && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *p = (const char *)m + f->offset;
        cJSON *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            const size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            const char *arr = *(const char *const *)p;
            v = cJSON_CreateArray();
            for (size_t k = 0; v && k < n; k++) cJSON_AddItemToArray(v, pb_value(f, arr + k * pb_elem_size(f)));
        } else {
            if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
                continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(void *const *)p) continue;
            v = pb_value(f, p);
        }
        if (!v || !cJSON_AddItemToObject(o, f->name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

/* ---- a ScoreRequest from JSON ---- */


static void *jalloc(srv_jreq *j, size_t n, size_t size) {
    if (j->n_allocs == (int)(sizeof j->allocs / sizeof *j->allocs)) return NULL;
    void *p = calloc(n ? n : 1, size);
    if (p) j->allocs[j->n_allocs++] = p;
    return p;
}

void srv_jreq_free(srv_jreq *j) {
    for (int i = 0; i < j->n_allocs; i++) free(j->allocs[i]);
}

#define JFAIL(...) return snprintf(msg, msg_n, __VA_ARGS__), RS_ERR_INVALID_ARG

static rs_status parse_messages(srv_jreq *j, const cJSON *a, char *msg, size_t msg_n) {
    if (!cJSON_IsArray(a)) JFAIL("'messages' is not a list");
    const size_t n = (size_t)cJSON_GetArraySize(a);
    size_t n_parts = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsArray(c)) n_parts += (size_t)cJSON_GetArraySize(c);
    }
    Routescore__V1__ChatMessage *cm = jalloc(j, n, sizeof *cm), **pcm = jalloc(j, n, sizeof *pcm);
    Routescore__V1__ChatContentPart *cp = jalloc(j, n_parts, sizeof *cp), **pcp = jalloc(j, n_parts, sizeof *pcp);
    if (!cm || !pcm || !cp || !pcp) return snprintf(msg, msg_n, "out of memory"), RS_ERR_NOMEM;
    size_t i = 0, k = 0;
    cJSON_ArrayForEach(e, a) {
        routescore__v1__chat_message__init(&cm[i]);
        pcm[i] = &cm[i];
        if (!cJSON_IsObject(e)) JFAIL("messages[%zu] is not an object", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (role && !cJSON_IsString(role)) JFAIL("messages[%zu].role is not a string", i);
        if (role) cm[i].role = role->valuestring;
        if (cJSON_IsString(c)) {
            cm[i].content = c->valuestring;
        } else if (cJSON_IsArray(c)) {
            cm[i].content_parts = &pcp[k];
            size_t q = 0;
            const cJSON *part;
            cJSON_ArrayForEach(part, c) {
                Routescore__V1__ChatContentPart *pp = &cp[k];
                routescore__v1__chat_content_part__init(pp);
                if (cJSON_IsString(part)) {
                    pp->text = part->valuestring;
                } else if (cJSON_IsObject(part)) {
                    const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                    const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
                    if (type && !cJSON_IsString(type)) JFAIL("messages[%zu].content[%zu].type is not a string", i, q);
                    if (text && !cJSON_IsString(text)) JFAIL("messages[%zu].content[%zu].text is not a string", i, q);
                    if (type) pp->type = type->valuestring;
                    if (text) pp->text = text->valuestring;
                } else {
                    JFAIL("messages[%zu].content[%zu] is neither a string nor an object", i, q);
                }
                pcp[k++] = pp;
                q++;
            }
            cm[i].n_content_parts = q;
        } else if (c && !cJSON_IsNull(c)) {
            JFAIL("messages[%zu].content is neither a string nor a list", i);
        }
        i++;
    }
    j->m.n_messages = n;
    j->m.messages = pcm;
    return RS_OK;
}

/* Fills j->m from a parsed body; RS_ERR_INVALID_ARG with msg when the body
 * does not have the ScoreRequest's shape. Strings point into root. */
static rs_status parse_score(srv_jreq *j, const cJSON *root, char *msg, size_t msg_n) {
    Routescore__V1__ScoreRequest *m = &j->m;
    routescore__v1__score_request__init(m);
    if (!cJSON_IsObject(root)) JFAIL("the body is not a JSON object");
    const cJSON *f;
    cJSON_ArrayForEach(f, root) {
        const char *k = f->string;
        for (const cJSON *g = root->child; g != f; g = g->next)
            if (!strcmp(g->string, k)) {
                char esc[80];
                JFAIL("field '%s' given twice", rs_log_esc(esc, sizeof esc, k));
            }
        if (!strcmp(k, "router")) {
            if (!cJSON_IsString(f)) JFAIL("'router' is not a string");
            m->router = f->valuestring;
        } else if (!strcmp(k, "prompt") || !strcmp(k, "prompts")) {
            const int one = !strcmp(k, "prompt");
            if (m->n_prompts) JFAIL("set 'prompt' or 'prompts', not both");
            const size_t n = one ? 1 : (size_t)cJSON_GetArraySize(f);
            if (!one && !cJSON_IsArray(f)) JFAIL("'prompts' is not a list");
            char **p = jalloc(j, n, sizeof *p);
            if (!p) return snprintf(msg, msg_n, "out of memory"), RS_ERR_NOMEM;
            size_t i = 0;
            const cJSON *e;
            if (one) {
                if (!cJSON_IsString(f)) JFAIL("'prompt' is not a string");
                p[i++] = f->valuestring;
            } else {
                cJSON_ArrayForEach(e, f) {
                    if (!cJSON_IsString(e)) JFAIL("prompts[%zu] is not a string", i);
                    p[i++] = e->valuestring;
                }
            }
            m->prompts = p;
            m->n_prompts = n;
        } else if (!strcmp(k, "embeddings")) {
            if (!cJSON_IsArray(f)) JFAIL("'embeddings' is not a list");
            const size_t n = (size_t)cJSON_GetArraySize(f);
            size_t total = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, f) {
                const cJSON *vals = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "values") : e;
                if (!cJSON_IsArray(vals)) JFAIL("each embedding is a list of numbers (or {\"values\": [...]})");
                total += (size_t)cJSON_GetArraySize(vals);
            }
            Routescore__V1__Embedding *em = jalloc(j, n, sizeof *em), **pem = jalloc(j, n, sizeof *pem);
            float *v = jalloc(j, total, sizeof *v);
            if (!em || !pem || !v) return snprintf(msg, msg_n, "out of memory"), RS_ERR_NOMEM;
            size_t i = 0;
            cJSON_ArrayForEach(e, f) {
                const cJSON *vals = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "values") : e;
                routescore__v1__embedding__init(&em[i]);
                em[i].values = v;
                const cJSON *x;
                cJSON_ArrayForEach(x, vals) {
                    if (!cJSON_IsNumber(x)) JFAIL("embeddings[%zu]: a value is not a number", i);
                    *v++ = (float)x->valuedouble;
                    em[i].n_values++;
                }
                pem[i] = &em[i];
                i++;
            }
            m->embeddings = pem;
            m->n_embeddings = n;
        } else if (!strcmp(k, "messages")) {
            rs_status st = parse_messages(j, f, msg, msg_n);
            if (st != RS_OK) return st;
        } else if (!strcmp(k, "threshold") || !strcmp(k, "strong_share")) {
            if (!cJSON_IsNumber(f)) JFAIL("'%s' is not a number", k);
            if (m->decision_case != ROUTESCORE__V1__SCORE_REQUEST__DECISION__NOT_SET)
                JFAIL("set 'threshold' or 'strong_share', not both");
            if (!strcmp(k, "threshold")) {
                m->decision_case = ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD;
                m->threshold = (float)f->valuedouble;
            } else {
                m->decision_case = ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE;
                m->strong_share = (float)f->valuedouble;
            }
        } else if (!strcmp(k, "request_id")) {
            /* A uint64: a string of digits (proto3 JSON) or an exact number. */
            char *end = NULL;
            errno = 0;
            if (cJSON_IsString(f) && f->valuestring[0] >= '0' && f->valuestring[0] <= '9') {
                m->request_id = strtoull(f->valuestring, &end, 10);
                if (*end || errno) JFAIL("'request_id' is not a uint64");
            } else if (cJSON_IsNumber(f) && f->valuedouble >= 0 && f->valuedouble <= 9007199254740992.0 &&
                       f->valuedouble == (double)(uint64_t)f->valuedouble) {
                m->request_id = (uint64_t)f->valuedouble;
            } else {
                JFAIL("'request_id' is not a uint64 (send large ids as strings)");
            }
        } else if (!strcmp(k, "request_key")) {
            if (!cJSON_IsString(f)) JFAIL("'request_key' is not a string");
            m->request_key = f->valuestring;
        } else {
            char esc[80];
            JFAIL("unknown field '%s'", rs_log_esc(esc, sizeof esc, k));
        }
    }
    return RS_OK;
}
#undef JFAIL

rs_status srv_json_score_request(const char *body, size_t len, srv_jreq *j, cJSON **root, char *msg, size_t msg_n) {
    memset(j, 0, sizeof *j);
    routescore__v1__score_request__init(&j->m);
    *root = NULL;
    rs_err verr;
    if (rs_json_check_text(body ? body : "", len, &verr) != RS_OK)
        return snprintf(msg, msg_n, "%s", verr.msg), RS_ERR_FORMAT;
    cJSON *t = len ? cJSON_ParseWithLength(body, len) : NULL;
    if (!t) return snprintf(msg, msg_n, "%s", len ? "the body is not valid JSON" : "empty body"), RS_ERR_FORMAT;
    const rs_status st = parse_score(j, t, msg, msg_n);
    if (st != RS_OK) {
        cJSON_Delete(t);
        return st;
    }
    *root = t;
    return RS_OK;
}
