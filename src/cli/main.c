/* main.c — the `routescore` binary: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} subcommand;

static const subcommand SUBCOMMANDS[] = {
    {"score", rs_cli_score, "score prompts given on the command line"},
    {"label", rs_cli_label, "score a JSON-lines file (resumable, sharded, gzip ok)"},
    {"embed", rs_cli_embed, "write sentence embeddings of a JSON-lines file"},
    {"train", rs_cli_train, "fit an mf head on labelled prompts"},
    {"tokenize", rs_cli_tokenize, "print token ids of texts"},
    {"bench", rs_cli_bench, "measure the engine's throughput on a prompt file"},
    {"serve", rs_cli_serve, "gRPC scoring service with dynamic batching, health and metrics"},
    {"calibrate", rs_cli_calibrate, "set a router's threshold from a traffic sample and a strong share"},
    {"eval", rs_cli_eval, "RouteLLM routing-quality evaluation (APGR, CPT) on MMLU, GSM8K, MT-Bench"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: routescore <command> [options]   (routescore <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0]; i++)
        fprintf(f, "  %-10s %s\n", SUBCOMMANDS[i].name, SUBCOMMANDS[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("routescore %s\n", RS_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0]; i++)
        if (!strcmp(argv[1], SUBCOMMANDS[i].name)) return SUBCOMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "routescore: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
