/* fuzz_jsonl.c — the core's JSON-lines reader (jsonl.h) that label, embed,
 * train, eval and the sw_ranking router use (plain or gzip, CRLF, long
 * lines), each record checked and its prompt extracted the way label does
 * (prompt, messages, field paths). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "fuzz_util.h"
#include "jsonl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    const char *path = rs_fuzz_file(0, "in.jsonl", data, n);
    rs_jsonl *r = NULL;
    rs_err err;
    if (rs_jsonl_open(path, 1 << 16, &r, &err) != RS_OK) return 0;
    static const char *const fields[] = {NULL, "turns[0]", "a.b[2].c", "messages"};
    rs_buf scratch = {0};
    for (int i = 0; i < 10000; i++) {
        cJSON *j = NULL;
        uint64_t line = 0;
        int bad = 0;
        rs_status st = rs_jsonl_next_json(r, &j, &line, &bad, &err);
        if (st != RS_OK && !bad) break; /* end of input, or an I/O / gzip error */
        if (!j) continue;
        const char *text;
        size_t len;
        (void)rs_cli_extract_prompt(j, fields[i & 3], &scratch, &text, &len, &err);
        char id[256];
        rs_cli_record_id(j, (i & 4) ? "id" : NULL, line, id, sizeof id);
        cJSON_Delete(j);
    }
    rs_buf_free(&scratch);
    rs_jsonl_close(r);
    /* error messages quote inputs: the escaper on the raw bytes */
    char *msg = malloc(n + 1), safe[96];
    if (msg) {
        memcpy(msg, data, n);
        msg[n] = 0;
        (void)rs_cli_safe_msg(msg, safe, sizeof safe);
        free(msg);
    }
    return 0;
}
