/* cli_engine.h — opening the engine from the flags that score, embed, label
 * and bench share (--model, --threads, --max-tokens, --batch-tokens,
 * --backend, --device). */
#ifndef RS_CLI_ENGINE_H
#define RS_CLI_ENGINE_H

#include "engine.h"

typedef struct rs_cli_engine_flags {
    const char *model;  /* NULL: the default router */
    long threads, max_tokens, batch_tokens; /* 0: engine defaults */
    const char *backend; /* --backend cpu|cuda|auto; NULL: the engine's default (cpu) */
    long device;         /* --device N: GPU index for cuda */
} rs_cli_engine_flags;

/* The --backend / --device entries of a getopt_long table, and their help. */
#define RS_CLI_BACKEND_OPTIONS(backend_code, device_code) \
    {"backend", required_argument, 0, (backend_code)}, {"device", required_argument, 0, (device_code)}
#define RS_CLI_BACKEND_HELP                                                                         \
    "  --backend B      cpu (default), cuda, or auto (cuda when a GPU is present)\n"                \
    "  --device N       the GPU for cuda (default 0)\n"

/* Opens the router the flags name; prints the error (prefixed with
 * "routescore CMD:") and returns NULL on failure. */
rs_engine *rs_cli_open_engine(const char *cmd, const rs_cli_engine_flags *fl);

#endif
