/* messages.c — the last user message of a chat conversation (messages.h). */
#include "messages.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

rs_status rs_messages_last_user(const rs_message *msgs, size_t n, char **text, size_t *len, rs_err *err) {
    *text = NULL;
    *len = 0;
    const rs_message *last = NULL;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].role && !strcmp(msgs[i].role, "user")) last = &msgs[i];
    if (!last) return rs_errf(err, RS_ERR_NOT_FOUND, "no message with role \"user\"");
    switch (last->kind) {
    case RS_CONTENT_MISSING: return rs_errf(err, RS_ERR_NOT_FOUND, "last user message has no content");
    case RS_CONTENT_OTHER:
        return rs_errf(err, RS_ERR_INVALID_ARG, "last user message: content is neither a string nor a list");
    case RS_CONTENT_STRING: {
        if (!last->content) return rs_errf(err, RS_ERR_INVALID_ARG, "field 'messages[].content' is not a string");
        const size_t l = strlen(last->content);
        char *t = malloc(l + 1);
        if (!t) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
        memcpy(t, last->content, l + 1);
        *text = t;
        *len = l;
        return RS_OK;
    }
    case RS_CONTENT_PARTS: break;
    }
    size_t total = 0;
    int parts = 0;
    for (size_t i = 0; i < last->n_parts; i++) {
        const rs_message_part *p = &last->parts[i];
        if (p->type && strcmp(p->type, "text")) continue;
        if (p->text_bad) return rs_errf(err, RS_ERR_INVALID_ARG, "field 'messages[].content[].text' is not a string");
        if (!p->text) continue;
        total += strlen(p->text) + (parts++ ? 1 : 0);
    }
    if (!parts) return rs_errf(err, RS_ERR_NOT_FOUND, "last user message has no text part");
    char *t = malloc(total + 1), *o = t;
    if (!t) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
    parts = 0;
    for (size_t i = 0; i < last->n_parts; i++) {
        const rs_message_part *p = &last->parts[i];
        if ((p->type && strcmp(p->type, "text")) || !p->text) continue;
        if (parts++) *o++ = '\n';
        const size_t l = strlen(p->text);
        memcpy(o, p->text, l);
        o += l;
    }
    *o = 0;
    *text = t;
    *len = total;
    return RS_OK;
}

rs_status rs_messages_last_user_json(const cJSON *messages, char **text, size_t *len, rs_err *err) {
    *text = NULL;
    *len = 0;
    if (!cJSON_IsArray(messages)) return rs_errf(err, RS_ERR_INVALID_ARG, "field 'messages' is not a list");
    const int n = cJSON_GetArraySize(messages);
    /* Only the last user message needs its parts viewed. */
    const cJSON *last = NULL, *m;
    cJSON_ArrayForEach(m, messages) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(role) && !strcmp(role->valuestring, "user")) last = m;
    }
    (void)n;
    if (!last) return rs_messages_last_user(NULL, 0, text, len, err);
    rs_message msg = {.role = "user"};
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
    rs_message_part *parts = NULL;
    if (!content) {
        msg.kind = RS_CONTENT_MISSING;
    } else if (cJSON_IsString(content)) {
        msg.kind = RS_CONTENT_STRING;
        msg.content = content->valuestring;
    } else if (cJSON_IsArray(content)) {
        msg.kind = RS_CONTENT_PARTS;
        const int np = cJSON_GetArraySize(content);
        parts = calloc(np > 0 ? (size_t)np : 1, sizeof *parts);
        if (!parts) return rs_errf(err, RS_ERR_NOMEM, "out of memory");
        const cJSON *part;
        cJSON_ArrayForEach(part, content) {
            rs_message_part *p = &parts[msg.n_parts];
            if (cJSON_IsString(part)) {
                p->text = part->valuestring;
            } else if (cJSON_IsObject(part)) {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (cJSON_IsString(type)) p->type = type->valuestring;
                if (cJSON_IsString(t)) p->text = t->valuestring;
                else if (t) p->text_bad = 1;
            } else {
                continue; /* neither a string nor an object: not a text part */
            }
            msg.n_parts++;
        }
        msg.parts = parts;
    } else {
        msg.kind = RS_CONTENT_OTHER;
    }
    rs_status st = rs_messages_last_user(&msg, 1, text, len, err);
    free(parts);
    return st;
}
