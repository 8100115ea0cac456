/* cli.c - see cli.h. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool parse_value(const char *cmd, cli_flag *f, const char *v)
{
    char *end;
    switch (f->kind) {
    case CLI_KIND_STRING:
        *(const char **)f->dest = v;
        return true;
    case CLI_KIND_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(stderr, "helene %s: --%s expects an integer, got '%s'\n", cmd, f->name, v);
            return false;
        }
        if ((double)x < f->lo || (double)x > f->hi) {
            fprintf(stderr, "helene %s: --%s %ld is out of range (%.0f..%.0f)\n", cmd, f->name, x,
                    f->lo, f->hi);
            return false;
        }
        *(long *)f->dest = x;
        return true;
    }
    case CLI_KIND_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) {
            fprintf(stderr, "helene %s: --%s expects a finite number, got '%s'\n", cmd, f->name,
                    v);
            return false;
        }
        if (x < f->lo || x > f->hi) {
            fprintf(stderr, "helene %s: --%s %g is out of range (%g..%g)\n", cmd, f->name, x,
                    f->lo, f->hi);
            return false;
        }
        *(double *)f->dest = x;
        return true;
    }
    case CLI_KIND_BOOL:
        break;
    }
    return false;
}

bool cli_parse(const char *cmd, int argc, char **argv, cli_flag *flags, const char **pos,
               int max_pos, int *n_pos)
{
    *n_pos = 0;
    bool flags_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (flags_done || a[0] != '-' || !strcmp(a, "-")) {
            if (*n_pos >= max_pos) {
                fprintf(stderr, "helene %s: unexpected argument '%s'\n", cmd, a);
                return false;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            flags_done = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "helene %s: unknown option '%s' (see 'helene help %s')\n", cmd, a,
                    cmd);
            return false;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_flag *f = NULL;
        for (cli_flag *g = flags; g && g->name; g++)
            if (strlen(g->name) == len && !strncmp(g->name, name, len)) {
                f = g;
                break;
            }
        if (!f) {
            fprintf(stderr, "helene %s: unknown option '--%.*s' (see 'helene help %s')\n", cmd,
                    (int)len, name, cmd);
            return false;
        }
        if (f->seen) {
            fprintf(stderr, "helene %s: --%s given twice\n", cmd, f->name);
            return false;
        }
        f->seen = true;
        if (f->kind == CLI_KIND_BOOL) {
            if (eq) {
                fprintf(stderr, "helene %s: --%s takes no value\n", cmd, f->name);
                return false;
            }
            *(bool *)f->dest = true;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) {
                fprintf(stderr, "helene %s: --%s needs a value\n", cmd, f->name);
                return false;
            }
            v = argv[++i];
        }
        if (!parse_value(cmd, f, v))
            return false;
    }
    return true;
}

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            return false;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    }
    return false;
}

int cli_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > 64 ? 64 : (int)n;
}
