/* cli.h — the subcommands of the `routescore` binary. Each takes the argv that
 * follows its name (argv[0] is the subcommand) and returns the process exit
 * code: 0 success, 1 some inputs failed (reported per record), 2 usage or
 * fatal error. */
#ifndef RS_CLI_H
#define RS_CLI_H

int rs_cli_score(int argc, char **argv);
int rs_cli_label(int argc, char **argv);
int rs_cli_embed(int argc, char **argv);
int rs_cli_train(int argc, char **argv);
int rs_cli_tokenize(int argc, char **argv);
int rs_cli_bench(int argc, char **argv);
int rs_cli_serve(int argc, char **argv); /* src/cli/cli_serve.c */
int rs_cli_calibrate(int argc, char **argv);
int rs_cli_eval(int argc, char **argv);

#endif
