/* main.c - the helene command line: subcommand dispatch, --help, --version.
 *
 * Each subcommand is a function taking (argc, argv) after the subcommand name
 * and returning the process exit status; its help text lives beside it in the
 * table, so `helene help CMD`, `helene CMD --help` and the man page agree.
 */
#include <stdio.h>
#include <string.h>

#include "cmd_tui.h"
#include "commands.h"

typedef struct command {
    const char *name;
    const char *summary;
    const char *usage; /* full help text */
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"info", "describe a model folder (architecture, parameters, memory)", cmd_info_usage,
     cmd_info},
    {"score", "mean NLL and perplexity of a text under a model", cmd_score_usage, cmd_score},
    {"eval", "accuracy of a model on a prompt-based task", cmd_eval_usage, cmd_eval},
    {"data", "show the examples, splits and prompts a task produces", cmd_data_usage,
     cmd_data},
    {"train", "fine-tune a model (or an analytic objective) with a ZO optimizer",
     cmd_train_usage, cmd_train},
    {"export", "write a checkpoint as a Hugging Face model folder", cmd_export_usage,
     cmd_export},
    {"pretrain", "train a causal LM from scratch (backpropagation, AdamW)", cmd_pretrain_usage,
     cmd_pretrain},
    {"race", "race 2-4 optimizers on identical data and probes (headless)", cmd_race_usage,
     cmd_race},
    {"plot", "draw runs from their journals into a PNG, SVG or PDF figure", cmd_plot_usage,
     cmd_plot},
    {"tui", "the workbench: train live, watch and steer (also: helene alone)", cmd_tui_usage,
     cmd_tui},
    {NULL, NULL, NULL, NULL},
};

static void print_usage(FILE *f)
{
    fprintf(f, "usage: helene [--help] [--version] COMMAND [ARGS]\n\n"
               "Fine-tune language models with zeroth-order optimizers (HELENE, MeZO, ...).\n\n"
               "Commands:\n");
    for (const command *c = commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nRun 'helene help COMMAND' for the options of one command.\n"
               "See also: man helene\n");
}

static const command *find_command(const char *name)
{
    for (const command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) { /* no arguments: open the workbench on the default run */
        char *tui_argv[] = {"tui", NULL};
        return cmd_tui(1, tui_argv);
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("helene %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            print_usage(stdout);
            return 0;
        }
        const command *c = find_command(argv[2]);
        if (!c) {
            fprintf(stderr, "helene: no such command '%s'\n", argv[2]);
            return 2;
        }
        /* the command's own --help, so both spellings print the same */
        char *help_argv[] = {argv[2], "--help", NULL};
        return c->run(2, help_argv);
    }
    const command *c = find_command(cmd);
    if (!c) {
        fprintf(stderr, "helene: unknown command '%s'\n", cmd);
        print_usage(stderr);
        return 2;
    }
    return c->run(argc - 1, argv + 1);
}
