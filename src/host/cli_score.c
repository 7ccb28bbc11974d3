/* placeholder: being written (replace wholesale). */
#include <stdio.h>
#include "cli.h"
int rs_cli_score(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "routescore score: not built yet\n"); return 2; }
