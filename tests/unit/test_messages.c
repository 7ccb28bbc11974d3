/* test_messages.c — the last-user-message rule (src/host/messages.h), over
 * cJSON input and over views, case by case as messages.h states it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages.h"

static int failures;

static void expect_json(const char *json, rs_status want, const char *want_text) {
    cJSON *j = cJSON_Parse(json);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    char *text = NULL;
    size_t len = 0;
    rs_err err = {{0}};
    rs_status st = rs_messages_last_user_json(msgs, &text, &len, &err);
    int ok = st == want && (want != RS_OK || (text && !strcmp(text, want_text) && len == strlen(want_text)));
    printf("%s %s -> %d %s%s\n", ok ? "ok  " : "FAIL", json, (int)st, text ? text : "", st != RS_OK ? err.msg : "");
    failures += !ok;
    free(text);
    cJSON_Delete(j);
}

int main(void) {
    expect_json("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"},"
                "{\"role\":\"user\",\"content\":\"c\"}]}", RS_OK, "c");
    expect_json("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"},"
                "{\"type\":\"image_url\",\"image_url\":{}},\"y\",{\"text\":\"z\"}]}]}", RS_OK, "x\ny\nz");
    expect_json("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", RS_ERR_NOT_FOUND, NULL);
    expect_json("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"}]}", RS_ERR_NOT_FOUND, NULL);
    expect_json("{\"messages\":[{\"role\":\"user\"}]}", RS_ERR_NOT_FOUND, NULL);
    expect_json("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", RS_ERR_INVALID_ARG, NULL);
    expect_json("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":7}]}]}", RS_ERR_INVALID_ARG, NULL);
    expect_json("{\"messages\":{\"role\":\"user\"}}", RS_ERR_INVALID_ARG, NULL);
    /* Earlier messages may hold anything. */
    expect_json("{\"messages\":[{\"role\":\"user\",\"content\":5},{\"role\":\"user\",\"content\":\"ok\"}]}", RS_OK, "ok");
    /* Views: the same rule without JSON. */
    rs_message_part parts[2] = {{"text", "p1", 0}, {NULL, "p2", 0}};
    rs_message msgs[2] = {{"user", RS_CONTENT_STRING, "first", NULL, 0}, {"user", RS_CONTENT_PARTS, NULL, parts, 2}};
    char *text = NULL;
    size_t len = 0;
    rs_err err = {{0}};
    rs_status st = rs_messages_last_user(msgs, 2, &text, &len, &err);
    int ok = st == RS_OK && text && !strcmp(text, "p1\np2") && len == 5;
    printf("%s views -> %s\n", ok ? "ok  " : "FAIL", text ? text : err.msg);
    failures += !ok;
    free(text);
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
