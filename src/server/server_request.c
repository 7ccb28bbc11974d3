/* server_request.c — one Score request, whoever carries it (a gRPC Score
 * call, a ScoreStream message, an HTTP POST /v1/score): unpacking,
 * validation, tokenizing, admission to the router's batcher, the final
 * status and the answer. Also the one mapping from failures to gRPC codes
 * (srv_grpc_code; the HTTP statuses are mapped from it in http.c).
 *
 * Status codes: every failure is an (rs_srv_err, rs_status) pair. */
#include "server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "messages.h"
#include "srv_log.h"

grpc_status_code srv_grpc_code(rs_srv_err e, rs_status st) {
    switch (e) {
    case SRV_OK: return GRPC_STATUS_OK;
    case SRV_MALFORMED:
    case SRV_UNKNOWN_ROUTER: return GRPC_STATUS_INVALID_ARGUMENT;
    case SRV_QUEUE_FULL: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case SRV_NOT_READY:
    case SRV_DRAINING: return GRPC_STATUS_UNAVAILABLE;
    case SRV_EXPIRED: return GRPC_STATUS_DEADLINE_EXCEEDED;
    case SRV_CANCELLED: return GRPC_STATUS_CANCELLED;
    case SRV_UNAUTHENTICATED: return GRPC_STATUS_UNAUTHENTICATED;
    case SRV_UNIMPLEMENTED: return GRPC_STATUS_UNIMPLEMENTED;
    case SRV_UNKNOWN_SERVICE:
    case SRV_UNKNOWN_PATH: return GRPC_STATUS_NOT_FOUND;
    case SRV_BAD_METHOD: return GRPC_STATUS_UNIMPLEMENTED;
    case SRV_ENGINE: break;
    }
    switch (st) {
    case RS_OK: return GRPC_STATUS_OK;
    case RS_ERR_INVALID_ARG:
    case RS_ERR_UTF8:
    case RS_ERR_FORMAT:
    case RS_ERR_TOO_LARGE:
    case RS_ERR_NOT_FOUND:
    case RS_ERR_UNSUPPORTED: return GRPC_STATUS_INVALID_ARGUMENT; /* the client's input */
    case RS_ERR_NOMEM: return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case RS_ERR_BACKEND: return GRPC_STATUS_UNAVAILABLE; /* this replica is going away: retry elsewhere */
    case RS_ERR_IO:
    case RS_ERR_INTERNAL:
    case RS_STATUS_COUNT: break;
    }
    return GRPC_STATUS_INTERNAL;
}

static int wire_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*i >= n) return 0;
        const uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* The HTTP statuses, from the same pairs: the gRPC code, refined where
 * HTTP has a closer word (an unknown router is 404, a request over a limit
 * 413, a full queue 429, a server that cannot take work 503). */
int srv_http_status(rs_srv_err e, rs_status st) {
    switch (e) {
    case SRV_UNKNOWN_ROUTER:
    case SRV_UNKNOWN_PATH:
    case SRV_UNKNOWN_SERVICE: return 404;
    case SRV_BAD_METHOD: return 405;
    case SRV_QUEUE_FULL: return 429;
    case SRV_NOT_READY:
    case SRV_DRAINING: return 503;
    case SRV_EXPIRED: return 504;
    case SRV_CANCELLED: return 499; /* the client went away: nobody reads it */
    case SRV_UNAUTHENTICATED: return 401;
    default: break;
    }
    if (st == RS_ERR_TOO_LARGE) return 413;
    switch (srv_grpc_code(e, st)) {
    case GRPC_STATUS_OK: return 200;
    case GRPC_STATUS_INVALID_ARGUMENT: return 400;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
    case GRPC_STATUS_UNAVAILABLE: return 503;
    case GRPC_STATUS_UNIMPLEMENTED: return 501;
    default: return 500;
    }
}

/* Whether a message of type d, as received, has a string field (at any
 * depth) holding a NUL byte. protobuf-c hands strings over as C strings, so
 * such a string would arrive silently cut at the NUL ("minilm-mf\0evil"
 * would name minilm-mf): it must be refused before unpacking hides it.
 * *field and *index name the top-level field and its repetition. Bytes
 * that are not well-formed say 0: the unpacker refuses them itself. */
int srv_wire_has_nul(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n, int depth, uint32_t *field,
                     size_t *index) {
    size_t i = 0, seen[16] = {0};
    while (i < n) {
        uint64_t key, len;
        if (!wire_varint(p, n, &i, &key)) return 0;
        const uint32_t num = (uint32_t)(key >> 3);
        switch (key & 7) {
        case 0:
            if (!wire_varint(p, n, &i, &len)) return 0;
            break;
        case 1: i += 8; break;
        case 5: i += 4; break;
        case 2: {
            if (!wire_varint(p, n, &i, &len) || len > n - i) return 0;
            const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, num);
            const size_t rep = num < 16 ? seen[num]++ : 0;
            uint32_t f2;
            size_t i2;
            if (fd && ((fd->type == PROTOBUF_C_TYPE_STRING && memchr(p + i, 0, len)) ||
                       (fd->type == PROTOBUF_C_TYPE_MESSAGE && depth < 32 &&
                        srv_wire_has_nul(fd->descriptor, p + i, len, depth + 1, &f2, &i2)))) {
                *field = num;
                *index = rep;
                return 1;
            }
            i += len;
            break;
        }
        default: return 0; /* groups and reserved wire types: malformed for protobuf-c */
        }
    }
    return 0;
}

int srv_find_router(const rs_server *s, const char *name) {
    if (!name || !*name) return 0; /* the default router */
    for (int i = 0; i < s->n_routers; i++)
        if (!strcmp(s->routers[i].name, name)) return i;
    return -1;
}

void srv_req_free(rs_req *r) {
    if (!r) return;
    free(r->work.items);
    free(r->work.scores);
    free(r->ids);
    free(r->emb);
    free(r->truncated);
    free(r->chat_text);
    free(r);
}


static void work_done(rs_work *w) {
    rs_req *r = w->owner;
    r->done(r);
}

rs_req *srv_req_new(rs_server *s, void *owner, void (*done)(rs_req *), double deadline) {
    rs_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->srv = s;
    r->owner = owner;
    r->done = done;
    r->deadline = deadline;
    r->router = -1;
    r->t_recv = rs_clock_now();
    return r;
}

#define FAIL(e, st, ...)                                                 \
    do {                                                                 \
        r->fail = (e);                                                   \
        r->fail_st = (st);                                               \
        snprintf(r->fail_msg, sizeof r->fail_msg, __VA_ARGS__);          \
        goto out;                                                        \
    } while (0)

Routescore__V1__ScoreRequest *srv_req_unpack(rs_req *r, const uint8_t *data, size_t len) {
    Routescore__V1__ScoreRequest *m = routescore__v1__score_request__unpack(NULL, len, data);
    if (!m) FAIL(SRV_MALFORMED, RS_ERR_FORMAT, "malformed ScoreRequest");
    r->request_id = m->request_id;
    uint32_t nul_field;
    size_t nul_index;
    if (srv_wire_has_nul(&routescore__v1__score_request__descriptor, data, len, 0, &nul_field, &nul_index)) {
        if (nul_field == 1) FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "the router name contains a NUL byte");
        if (nul_field == 2) FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "prompts[%zu] contains a NUL byte", nul_index);
        if (nul_field == 7) FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "messages[%zu] contains a NUL byte", nul_index);
        if (nul_field == 8) FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "the request_key contains a NUL byte");
        FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "field %u contains a NUL byte", (unsigned)nul_field);
    }
    return m;
out:
    if (m) routescore__v1__score_request__free_unpacked(m, NULL);
    return NULL;
}

/* Validates and tokenizes m (its strings hold no NUL byte) and queues r, or
 * records why not (r->fail). */
int srv_req_submit(rs_req *r, const Routescore__V1__ScoreRequest *m) {
    rs_server *s = r->srv;
    r->request_id = m->request_id;
    if (m->request_key && m->request_key[0]) {
        const size_t kl = strlen(m->request_key);
        if (kl >= sizeof r->key) FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "request_key: %zu bytes (at most 128)", kl);
        for (size_t i = 0; i < kl; i++)
            if ((unsigned char)m->request_key[i] < 0x20 || m->request_key[i] == 0x7f)
                FAIL(SRV_MALFORMED, RS_ERR_INVALID_ARG, "request_key: control byte at offset %zu", i);
        memcpy(r->key, m->request_key, kl + 1);
    }
    r->router = srv_find_router(s, m->router);
    if (r->router < 0) {
        char esc[160];
        FAIL(SRV_UNKNOWN_ROUTER, RS_ERR_NOT_FOUND, "unknown router '%s' (ListRouters names them)",
             rs_log_esc(esc, sizeof esc, m->router));
    }
    router *rt = &s->routers[r->router];
    /* Before anything that reads rt->info: a router still loading has none yet. */
    if (!atomic_load(&s->ready)) FAIL(SRV_NOT_READY, RS_OK, "not ready: routers are loading");
    r->decision = m->decision_case;
    if (m->decision_case == ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD) {
        r->dvalue = m->threshold;
        if (!(m->threshold >= 0.f && m->threshold <= 1.f))
            FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "threshold %g outside [0, 1]", (double)m->threshold);
    } else if (m->decision_case == ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE) {
        r->dvalue = m->strong_share;
        if (!(m->strong_share > 0.f && m->strong_share <= 1.f))
            FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "strong_share %g outside (0, 1]", (double)m->strong_share);
    }
    const int by_emb = m->n_embeddings > 0, by_chat = m->n_messages > 0;
    const size_t n = by_emb ? m->n_embeddings : by_chat ? 1 : m->n_prompts;
    if (by_emb && m->n_prompts > 0) FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "set prompts or embeddings, not both");
    if (by_chat && (by_emb || m->n_prompts > 0))
        FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "set messages, or prompts or embeddings, not both");
    if (by_chat) { /* the one rule of messages.h, over views of the protobuf messages */
        rs_message *views = calloc(m->n_messages, sizeof *views);
        size_t n_parts = 0;
        for (size_t i = 0; i < m->n_messages; i++) n_parts += m->messages[i]->n_content_parts;
        rs_message_part *parts = calloc(n_parts ? n_parts : 1, sizeof *parts);
        if (!views || !parts) {
            free(views);
            free(parts);
            FAIL(SRV_ENGINE, RS_ERR_NOMEM, "out of memory for %zu messages", m->n_messages);
        }
        rs_message_part *pp = parts;
        for (size_t i = 0; i < m->n_messages; i++) {
            const Routescore__V1__ChatMessage *cm = m->messages[i];
            views[i].role = cm->role;
            if (cm->n_content_parts) {
                views[i].kind = RS_CONTENT_PARTS;
                views[i].parts = pp;
                views[i].n_parts = cm->n_content_parts;
                for (size_t k = 0; k < cm->n_content_parts; k++, pp++) {
                    pp->type = cm->content_parts[k]->type[0] ? cm->content_parts[k]->type : NULL;
                    pp->text = cm->content_parts[k]->text;
                }
            } else if (cm->content[0]) {
                views[i].kind = RS_CONTENT_STRING;
                views[i].content = cm->content;
            }
        }
        size_t tl;
        rs_err merr = {{0}};
        rs_status mst = rs_messages_last_user(views, m->n_messages, &r->chat_text, &tl, &merr);
        free(views);
        free(parts);
        if (mst != RS_OK) FAIL(SRV_ENGINE, mst == RS_ERR_NOT_FOUND ? RS_ERR_INVALID_ARG : mst, "messages: %.200s", merr.msg);
        if (!tl) FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "messages: the last user message is empty");
    }
    if (n == 0) FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "no prompts");
    if (n > (size_t)s->cfg.max_prompts)
        FAIL(SRV_ENGINE, RS_ERR_TOO_LARGE, "%zu prompts in one request (at most %d)", n, s->cfg.max_prompts);
    if (by_emb && rt->info.client_embed_dim <= 0)
        FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "router '%s' (%s) scores prompt text, not embeddings", rt->name, rt->info.kind);
    if (!by_emb && rt->info.max_tokens <= 0)
        FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "router '%s' (%s) has no encoder: send embeddings (%d values each), not text",
             rt->name, rt->info.kind, rt->info.client_embed_dim);
    /* (No draining check: on_new decided whether this call is accepted work,
     * and accepted work is finished.) */
    if (rs_clock_now() >= r->deadline) FAIL(SRV_EXPIRED, RS_OK, "deadline exceeded before scoring");
    rs_work *w = &r->work;
    w->n = n;
    w->items = calloc(n, sizeof *w->items);
    w->scores = calloc(n, sizeof *w->scores);
    r->truncated = calloc(n, 1);
    if (!w->items || !w->scores || !r->truncated) FAIL(SRV_ENGINE, RS_ERR_NOMEM, "out of memory for %zu prompts", n);
    const double t0 = rs_clock_now();
    if (by_emb) {
        const size_t dim = (size_t)rt->info.client_embed_dim;
        float *emb = r->emb = malloc(n * dim * sizeof *emb);
        if (!emb) FAIL(SRV_ENGINE, RS_ERR_NOMEM, "out of memory for %zu embeddings", n);
        for (size_t i = 0; i < n; i++) {
            const Routescore__V1__Embedding *e = m->embeddings[i];
            if (e->n_values != dim)
                FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "embeddings[%zu]: %zu values; router '%s' takes %zu", i, e->n_values,
                     rt->name, dim);
            for (size_t d = 0; d < dim; d++)
                if (!isfinite(e->values[d]))
                    FAIL(SRV_ENGINE, RS_ERR_INVALID_ARG, "embeddings[%zu]: value %zu is not finite", i, d);
            memcpy(emb + i * dim, e->values, dim * sizeof *emb);
            w->items[i].emb = emb + i * dim;
            w->items[i].n_ids = 1; /* an embedding counts as one token in the budgets */
            w->items[i].index = (uint32_t)i;
        }
    } else {
        const size_t maxt = (size_t)rt->info.max_tokens;
        int32_t *ids = r->ids = malloc(n * maxt * sizeof *ids);
        if (!ids) FAIL(SRV_ENGINE, RS_ERR_NOMEM, "out of memory for %zu prompts", n);
        for (size_t i = 0; i < n; i++) {
            const char *prompt = by_chat ? r->chat_text : m->prompts[i];
            size_t plen = strlen(prompt), nid = 0;
            int trunc = 0;
            rs_err terr = {{0}};
            if ((long)plen > s->cfg.max_prompt_bytes)
                FAIL(SRV_ENGINE, RS_ERR_TOO_LARGE, "prompts[%zu]: %zu bytes (at most %ld)", i, plen, s->cfg.max_prompt_bytes);
            rs_status st = rs_engine_tokenize(rt->engine, prompt, plen, ids + i * maxt, maxt, &nid, &trunc, &terr);
            if (st != RS_OK) FAIL(SRV_ENGINE, st, "prompts[%zu]: %.200s", i, terr.msg);
            w->items[i].ids = ids + i * maxt;
            w->items[i].n_ids = (uint32_t)nid;
            w->items[i].index = (uint32_t)i;
            r->truncated[i] = (uint8_t)trunc;
        }
    }
    r->tokenize_s = rs_clock_now() - t0;
    if (s->metrics && !by_emb) rs_metrics_observe(s->metrics, r->router, RS_H_TOKENIZE, r->tokenize_s);
    w->deadline = r->deadline;
    w->done = work_done;
    w->owner = r;
    rs_admit a = rs_batcher_submit(rt->batcher, w);
    if (a == RS_ADMIT_OK) return 1; /* it now belongs to the batcher until done() */
    if (a == RS_ADMIT_FULL) FAIL(SRV_QUEUE_FULL, RS_OK, "queue full: retry later");
    if (a == RS_ADMIT_BUSY)
        FAIL(SRV_QUEUE_FULL, RS_OK, "queue's expected wait exceeds max_queue_wait (%ld ms): retry later or elsewhere",
             rt->cfg.max_queue_wait_ms);
    if (a == RS_ADMIT_LATE) FAIL(SRV_EXPIRED, RS_OK, "deadline exceeded: the queue's expected wait is past it");
    if (a == RS_ADMIT_TOO_BIG)
        FAIL(SRV_ENGINE, RS_ERR_TOO_LARGE, "request has more tokens than the whole queue holds (max_queue_tokens %ld)",
             rt->cfg.max_queue_tokens);
    if (a == RS_ADMIT_INVALID) FAIL(SRV_ENGINE, RS_ERR_INTERNAL, "request items the batcher cannot hold");
    FAIL(SRV_DRAINING, RS_OK, "server is shutting down");
out:
    return 0;
}
#undef FAIL

/* The threshold decision rule `decision` (value dvalue) of router i uses
 * now, and the rule that chose it (with the number of live scores behind a
 * strong_share). The one rule for Score, HTTP and ext_proc. */
float srv_decision_threshold(rs_server *s, int i, Routescore__V1__ScoreRequest__DecisionCase decision, float dvalue,
                             Routescore__V1__DecisionRule *rule, size_t *seen) {
    router *rt = &s->routers[i];
    float base = srv_router_threshold(rt);
    *seen = 0;
    if (decision == ROUTESCORE__V1__SCORE_REQUEST__DECISION_THRESHOLD) {
        *rule = ROUTESCORE__V1__DECISION_RULE__DECISION_RULE_REQUEST_THRESHOLD;
        return dvalue;
    }
    const int by_share = decision == ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE || rt->cfg.online;
    if (!by_share) {
        *rule = ROUTESCORE__V1__DECISION_RULE__DECISION_RULE_ROUTER_THRESHOLD;
        return base;
    }
    const double share = decision == ROUTESCORE__V1__SCORE_REQUEST__DECISION_STRONG_SHARE ? dvalue : rt->cfg.online_share;
    const float t = rs_online_threshold_seen(&rt->online, share, base, seen);
    const int live = *seen >= (size_t)rt->cfg.online_min_samples && *seen > 0;
    *rule = live ? ROUTESCORE__V1__DECISION_RULE__DECISION_RULE_STRONG_SHARE
                 : ROUTESCORE__V1__DECISION_RULE__DECISION_RULE_STRONG_SHARE_WARMING_UP;
    return t;
}

/* The final status of a request: the one place that orders the reasons it
 * can fail. A request with every score is OK; otherwise, first match wins:
 *   1. cancelled by the client;
 *   2. deadline exceeded (also when an input error was found after it
 *      passed: the caller's clock decided first);
 *   3. the server could not take it: draining, not ready, queue full, an
 *      engine that failed;
 *   4. the request's own input (malformed, unknown router, a bad prompt).
 * A prompt dropped because its call was cancelled or expired is never an
 * input error: the batcher leaves no per-prompt error on it. */
rs_srv_err srv_final_status(const outcome_facts *f, rs_status *st, const char **msg) {
    *st = RS_OK;
    *msg = "";
    if (f->scored && f->unavailable == SRV_OK && f->input == SRV_OK) return SRV_OK;
    if (f->cancelled) {
        *msg = "cancelled";
        return SRV_CANCELLED;
    }
    if (f->expired) {
        *msg = "deadline exceeded before scoring";
        return SRV_EXPIRED;
    }
    if (f->unavailable != SRV_OK) {
        *st = f->unavailable_st;
        *msg = f->unavailable_msg;
        return f->unavailable;
    }
    if (f->input != SRV_OK) {
        *st = f->input_st;
        *msg = f->input_msg;
        return f->input;
    }
    *st = RS_ERR_INTERNAL; /* unscored and no reason: a bug */
    *msg = "internal error: prompts neither scored nor dropped";
    return SRV_ENGINE;
}

/* An immediate failure's class: the server's state (retryable) or the input. */
static int srv_err_is_unavailable(rs_srv_err e, rs_status st) {
    return e == SRV_NOT_READY || e == SRV_DRAINING || e == SRV_QUEUE_FULL ||
           (e == SRV_ENGINE && (st == RS_ERR_NOMEM || st == RS_ERR_BACKEND || st == RS_ERR_INTERNAL || st == RS_ERR_IO));
}

rs_srv_err srv_req_outcome(const rs_req *r, rs_status *st, const char **msg) {
    const double deadline = r->deadline;
    outcome_facts f = {0};
    const double now = rs_clock_now();
    if (r->fail != SRV_OK) {
        f.expired = r->fail == SRV_EXPIRED || now >= deadline;
        if (srv_err_is_unavailable(r->fail, r->fail_st)) {
            f.unavailable = r->fail;
            f.unavailable_st = r->fail_st;
            f.unavailable_msg = r->fail_msg;
        } else if (r->fail != SRV_EXPIRED) {
            f.input = r->fail;
            f.input_st = r->fail_st;
            f.input_msg = r->fail_msg;
        }
        return srv_final_status(&f, st, msg);
    }
    const rs_work *w = &r->work;
    f.cancelled = atomic_load(&w->n_cancelled) > 0;
    f.expired = atomic_load(&w->n_expired) > 0;
    f.scored = !f.cancelled && !f.expired && !atomic_load(&w->n_failed);
    if (atomic_load(&w->n_failed)) {
        f.unavailable = SRV_ENGINE; /* the engine's failure, not the input's (RS_ERR_BACKEND -> UNAVAILABLE) */
        f.unavailable_st = w->fail_status;
        f.unavailable_msg = w->fail_msg;
    }
    for (size_t i = 0; i < w->n && f.input == SRV_OK; i++)
        if (w->items[i].fate == RS_FATE_SCORED && w->scores[i].status != RS_OK) { /* a per-prompt refusal by the engine */
            f.input = SRV_ENGINE;
            f.input_st = w->scores[i].status;
            f.input_msg = w->scores[i].error;
        }
    if (!f.scored || f.input != SRV_OK) f.expired = f.expired || now >= deadline;
    return srv_final_status(&f, st, msg);
}

/* Builds the ScoreResponse of a finished request (see server_int.h). */
int srv_req_response(rs_req *r, int with_error, srv_resp *out, rs_srv_err *e_out, grpc_status_code *code,
                     const char **msg) {
    rs_server *s = r->srv;
    rs_status st;
    rs_srv_err e = *e_out = srv_req_outcome(r, &st, msg);
    *code = srv_grpc_code(e, st);
    memset(out, 0, sizeof *out);
    Routescore__V1__ScoreResponse *resp = &out->msg;
    routescore__v1__score_response__init(resp);
    routescore__v1__request_error__init(&out->err);
    resp->request_id = r->request_id;
    resp->request_key = r->key;
    const double now = rs_clock_now();
    if (e != SRV_OK) {
        if (!with_error) return 0;
        out->err.code = (int32_t)*code;
        out->err.message = (char *)*msg;
        resp->error = &out->err;
        if (r->router >= 0) resp->router = s->routers[r->router].name;
        resp->total_us = srv_us(now - r->t_recv);
        return 1;
    }
    router *rt = &s->routers[r->router];
    const rs_work *w = &r->work;
    Routescore__V1__DecisionRule rule;
    size_t seen;
    const float thr = srv_decision_threshold(s, r->router, r->decision, r->dvalue, &rule, &seen);
    Routescore__V1__PromptScore *ps = out->ps = calloc(w->n, sizeof *ps);
    Routescore__V1__PromptScore **pp = out->pp = calloc(w->n, sizeof *pp);
    if (!ps || !pp) {
        srv_resp_free(out);
        return 0;
    }
    for (size_t i = 0; i < w->n; i++) {
        const rs_score *sc = &w->scores[i];
        routescore__v1__prompt_score__init(&ps[i]);
        const int strong = sc->win_prob >= thr;
        ps[i].win_prob = sc->win_prob;
        ps[i].route = strong ? ROUTESCORE__V1__ROUTE__ROUTE_STRONG : ROUTESCORE__V1__ROUTE__ROUTE_WEAK;
        ps[i].model = (char *)(strong ? rt->info.strong_model : rt->info.weak_model);
        ps[i].n_label_probs = (size_t)sc->n_labels;
        ps[i].label_probs = (float *)sc->label_probs;
        ps[i].tokens = (uint32_t)sc->tokens;
        ps[i].truncated = r->truncated[i];
        pp[i] = &ps[i];
        if (s->metrics) rs_metrics_decision(s->metrics, r->router, strong);
    }
    resp->router = rt->name;
    resp->threshold = thr;
    resp->decision_rule = rule;
    resp->strong_share_samples = (uint32_t)(seen > UINT32_MAX ? UINT32_MAX : seen);
    resp->n_scores = w->n;
    resp->scores = pp;
    resp->tokenize_us = srv_us(r->tokenize_s);
    resp->queue_us = srv_us(w->t_first_start - w->t_enqueue);
    resp->inference_us = srv_us(w->t_last_end - w->t_first_start);
    resp->total_us = srv_us(now - r->t_recv);
    return 1;
}

void srv_resp_free(srv_resp *resp) {
    free(resp->ps);
    free(resp->pp);
    resp->ps = NULL;
    resp->pp = NULL;
}

void srv_list_routers(rs_server *s, Routescore__V1__ListRoutersResponse *resp, Routescore__V1__RouterInfo *info,
                      Routescore__V1__RouterInfo **pinfo) {
    for (int i = 0; i < s->n_routers; i++) {
        router *r = &s->routers[i];
        routescore__v1__router_info__init(&info[i]);
        info[i].name = r->name;
        info[i].kind = (char *)r->info.kind;
        info[i].threshold = srv_router_threshold(r);
        info[i].strong_model = (char *)r->info.strong_model;
        info[i].weak_model = (char *)r->info.weak_model;
        info[i].max_tokens = (uint32_t)r->info.max_tokens;
        info[i].architecture = (char *)(r->info.architecture ? r->info.architecture : "");
        info[i].embed_dim = (uint32_t)r->info.embed_dim;
        info[i].n_labels = (uint32_t)r->info.n_labels;
        info[i].online = r->cfg.online;
        info[i].online_strong_share = r->cfg.online ? r->cfg.online_share : 0.f;
        info[i].is_default = i == 0;
        info[i].client_embedding_dim = (uint32_t)(r->info.client_embed_dim > 0 ? r->info.client_embed_dim : 0);
        info[i].takes_text = r->info.max_tokens > 0;
        pinfo[i] = &info[i];
    }
    routescore__v1__list_routers_response__init(resp);
    resp->n_routers = (size_t)s->n_routers;
    resp->routers = pinfo;
}

void srv_log_request(const rs_req *r, const char *transport, int code, const char *x_request_id,
                     const char *traceparent) {
    const int ids = r->key[0] || (x_request_id && *x_request_id) || (traceparent && *traceparent);
    const rs_log_level lvl = ids ? RS_LOG_INFO : RS_LOG_DEBUG;
    if (!rs_log_enabled(lvl)) return;
    char k[300], x[300], t[200], rt[300];
    const rs_work *w = &r->work;
    const int queued = r->fail == SRV_OK && w->n > 0;
    rs_log(lvl, "request",
           "\"transport\":\"%s\",\"router\":\"%s\",\"request_id\":%llu,\"request_key\":\"%s\",\"x_request_id\":\"%s\","
           "\"traceparent\":\"%s\",\"code\":%d,\"prompts\":%zu,\"tokenize_us\":%u,\"queue_us\":%u,\"inference_us\":%u,"
           "\"total_us\":%u",
           transport, r->router >= 0 ? rs_log_esc(rt, sizeof rt, r->srv->routers[r->router].name) : "",
           (unsigned long long)r->request_id, rs_log_esc(k, sizeof k, r->key),
           rs_log_esc(x, sizeof x, x_request_id ? x_request_id : ""), rs_log_esc(t, sizeof t, traceparent ? traceparent : ""),
           code, w->n, srv_us(r->tokenize_s), queued ? srv_us(w->t_first_start - w->t_enqueue) : 0,
           queued ? srv_us(w->t_last_end - w->t_first_start) : 0, srv_us(rs_clock_now() - r->t_recv));
}
