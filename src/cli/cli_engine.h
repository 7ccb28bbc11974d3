/* cli_engine.h — opening the engine from the flags that score, embed, label
 * and bench share (--model, --threads, --max-tokens, --batch-tokens,
 * --backend, --device, --precision). */
#ifndef RS_CLI_ENGINE_H
#define RS_CLI_ENGINE_H

#include "engine.h"

typedef struct rs_cli_engine_flags {
    const char *model;  /* NULL: the default router */
    long threads, max_tokens, batch_tokens; /* 0: engine defaults */
    const char *backend; /* --backend cpu|cuda|auto; NULL: the engine's default (cpu) */
    long device;         /* --device N: GPU index for cuda */
    const char *precision; /* --precision fp32|bf16|bf16-emulated; NULL: the router's (manifest, else fp32) */
} rs_cli_engine_flags;

/* The --backend / --device entries of a getopt_long table, and their help. */
#define RS_CLI_BACKEND_OPTIONS(backend_code, device_code) \
    {"backend", required_argument, 0, (backend_code)}, {"device", required_argument, 0, (device_code)}
#define RS_CLI_BACKEND_HELP                                                                         \
    "  --backend B      cpu (default), cuda, or auto (cuda when a GPU is present)\n"                \
    "  --device N       the GPU for cuda (default 0)\n"                                              \
    RS_CLI_PRECISION_HELP
/* --precision, for the commands that open an engine. */
#define RS_CLI_PRECISION_OPTION(code) {"precision", required_argument, 0, (code)}
#define RS_CLI_PRECISION_HELP                                                                        \
    "  --precision P    CPU GEMMs: fp32 (default: the reference), bf16 (needs AVX-512 BF16),\n"       \
    "                   bf16-emulated (bf16's numbers on any AVX-512 CPU, slowly)\n"

/* Opens the router the flags name; prints the error (prefixed with
 * "routescore CMD:") and returns NULL on failure. */
rs_engine *rs_cli_open_engine(const char *cmd, const rs_cli_engine_flags *fl);

#endif
