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
    {"quantize", cmd_quantize, "quantize an ONNX model (static, dynamic or QAT) into ONNX QDQ form"},
    {"run", cmd_run, "run an ONNX model on a .npy input and write the output as .npy"},
    {"eval", cmd_eval, "top-1 accuracy of an ONNX model on labelled .npy data"},
    {"compare", cmd_compare, "per-layer SQNR of a quantized ONNX model against its float original"},
    {"info", cmd_info, "print an ONNX model as PyTorch prints it"},
    {"demo", cmd_demo, "the seed's observer example, then two Fashion-MNIST models quantized three ways"},
    {"bench", cmd_bench, "time a model (MODEL.onnx) or one quantized operator (--op), as JSON"},
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
