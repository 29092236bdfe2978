/* cquant: the command-line tool. Each command lives in its own cmd_*.c file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"observe", cmd_observe, "run an observer over .npy batches and print its scale/zero point"},
    {"demo", cmd_demo, "the seed's examples, computed by cquant"},
    {"bench", cmd_bench, "time a quantized operator (--op linear|conv2d) and print the median, as JSON"},
};

static void print_usage(FILE *f) {
  fprintf(f, "usage: cquant COMMAND [OPTIONS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
  }
  fprintf(f, "\n'cquant COMMAND --help' describes a command. Results are JSON on stdout;\n"
             "exit status 0 on success, 1 on bad input or a failed operation, 2 on a usage error.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stderr);
    return CLI_USAGE;
  }
  const char *name = argv[1];
  if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
    print_usage(stdout);
    return CLI_OK;
  }
  if (!strcmp(name, "--version")) {
    printf("cquant %s\n", CQ_VERSION_STRING);
    return CLI_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (!strcmp(name, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  }
  fprintf(stderr, "cquant: unknown command '%s' (see 'cquant --help')\n", name);
  return CLI_USAGE;
}
