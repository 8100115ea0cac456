/* cli.h - flag parsing shared by the subcommands.
 *
 * A subcommand describes its flags in a table (name, kind, destination,
 * range); cli_parse fills the destinations and collects positional
 * arguments, rejecting unknown flags, missing values and out-of-range
 * numbers with a message naming the flag.  `--flag value` and `--flag=value`
 * are both accepted; `--` ends the flags.  Leaves out: short options,
 * abbreviations (a typo must not silently pick another flag).
 */
#ifndef HELENE_CLI_H
#define HELENE_CLI_H

#include <stdbool.h>
#include <stddef.h>

typedef enum cli_kind {
    CLI_KIND_BOOL,   /* present -> true; takes no value */
    CLI_KIND_STRING, /* const char ** */
    CLI_KIND_INT,    /* long, within [lo, hi] */
    CLI_KIND_DOUBLE, /* double, finite, within [lo, hi] */
} cli_kind;

typedef struct cli_flag {
    const char *name; /* without the leading "--" */
    cli_kind kind;
    void *dest;       /* bool *, const char **, long *, double * */
    double lo, hi;    /* numeric range */
    bool seen;        /* set by cli_parse */
} cli_flag;

/* Parse argv[1..argc) (argv[0] is the subcommand name).  Positional
 * arguments go to pos[0..*n_pos) (at most max_pos).  On error prints
 * "helene CMD: message" to stderr and returns false. */
bool cli_parse(const char *cmd, int argc, char **argv, cli_flag *flags, const char **pos,
               int max_pos, int *n_pos);

/* True if argv asks for help (--help or -h anywhere before "--"). */
bool cli_wants_help(int argc, char **argv);

/* Worker threads to use: flag value if given (> 0), else online CPUs. */
int cli_default_threads(void);

#endif
