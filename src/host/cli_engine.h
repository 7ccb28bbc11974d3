/* cli_engine.h — opening the engine from the flags that score, embed and
 * bench share (--model, --threads, --max-tokens, --batch-tokens; --backend and
 * --device, so far parsed by bench only). */
#ifndef RS_CLI_ENGINE_H
#define RS_CLI_ENGINE_H

#include "engine.h"

typedef struct rs_cli_engine_flags {
    const char *model;  /* NULL: the default router */
    long threads, max_tokens, batch_tokens; /* 0: engine defaults */
    const char *backend; /* --backend cpu|cuda|auto; NULL: the engine's default (cpu) */
    long device;         /* --device N: GPU index for cuda */
} rs_cli_engine_flags;

/* Opens the router the flags name; prints the error (prefixed with
 * "routescore CMD:") and returns NULL on failure. */
rs_engine *rs_cli_open_engine(const char *cmd, const rs_cli_engine_flags *fl);

#endif
