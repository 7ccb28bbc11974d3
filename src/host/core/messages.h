/* messages.h — the prompt of an OpenAI-style chat request: the text of the
 * LAST message whose role is "user".
 *
 * One rule, for every way a conversation arrives (the CLI's JSON records,
 * the server's gRPC and HTTP requests, a gateway's chat body): the
 * conversation is first viewed as an array of rs_message (no copies; the
 * views point into the caller's data), then rs_messages_last_user picks the
 * text.
 *
 *   content a string:   that string;
 *   content a list:     the text of every part whose type is "text" (a part
 *                       without a type, or a bare string, counts as text),
 *                       joined with "\n"; other part types are ignored;
 *   no user message, no content, or no text part: RS_ERR_NOT_FOUND;
 *   a content that is neither, or a text part whose text is not a string:
 *                       RS_ERR_INVALID_ARG.
 * Only the last user message is looked at: earlier messages may hold
 * anything. Thread-safe; no global state. */
#ifndef RS_MESSAGES_H
#define RS_MESSAGES_H

#include <stddef.h>

#include "status.h"

typedef struct cJSON cJSON;

typedef enum rs_content_kind {
    RS_CONTENT_MISSING = 0,
    RS_CONTENT_STRING,
    RS_CONTENT_PARTS,
    RS_CONTENT_OTHER, /* neither a string nor a list */
} rs_content_kind;

typedef struct rs_message_part {
    const char *type; /* NULL: none given (text) */
    const char *text; /* NULL: absent, or not a string (see text_bad) */
    int text_bad;     /* "text" is present but not a string */
} rs_message_part;

typedef struct rs_message {
    const char *role; /* NULL when not a string */
    rs_content_kind kind;
    const char *content;          /* RS_CONTENT_STRING */
    const rs_message_part *parts; /* RS_CONTENT_PARTS: (n_parts) */
    size_t n_parts;
} rs_message;

/* The text of the last user message of msgs[0..n), as a malloc'd
 * NUL-terminated string (*text, *len bytes; the caller frees it). Errors
 * as above; RS_ERR_NOMEM. */
rs_status rs_messages_last_user(const rs_message *msgs, size_t n, char **text, size_t *len, rs_err *err);

/* The same for a cJSON `messages` array (RS_ERR_INVALID_ARG when it is not
 * an array). The views are built and freed inside. */
rs_status rs_messages_last_user_json(const cJSON *messages, char **text, size_t *len, rs_err *err);

#endif
