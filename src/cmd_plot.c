/* cmd_plot.c - `helene plot`: figures of runs from their journals.
 *
 * Reads one or more journals (--log files), each run in them one curve set,
 * and draws loss, dev accuracy, HELENE's alpha_t and clip rate, and each
 * layer's curvature when the journal has it, into one PNG, SVG or PDF
 * (ui/plot.h).  Leaves out: live plots (the workbench draws those).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "plot.h"

const char cmd_plot_usage[] =
    "usage: helene plot JOURNAL.jsonl... -o FILE.png|FILE.svg|FILE.pdf\n"
    "                   [--title TEXT] [--width W] [--height H]\n"
    "\n"
    "Draw runs from their journals (the --log files of helene train) for a report\n"
    "or slides: training loss (its moving average over the raw step losses),\n"
    "dev accuracy (or an analytic objective's exact loss), HELENE's annealing\n"
    "coefficient alpha_t and its clip rate, against the step.  Every run is one\n"
    "colour with its own dash pattern, so the figure also reads in grey; the\n"
    "legend names each run by its journal, method and learning rate.  Several\n"
    "journals overlay; a journal written with --log-append holds several runs,\n"
    "and a resumed run continues its curves.  The format follows the extension.\n"
    "\n"
    "  -o, --out FILE   the figure (.png, .svg or .pdf); written atomically\n"
    "  --title TEXT     figure title (default: the journals' names)\n"
    "  --width W        width in pixels (PNG) or points (default 1200)\n"
    "  --height H       height (default 800; 1100 when a run has per-layer curvature,\n"
    "                   drawn as a fifth panel across the bottom)\n"
    "\n"
    "Example:\n"
    "  helene train --optimizer helene --log helene.jsonl --headless\n"
    "  helene train --optimizer mezo --log mezo.jsonl --headless\n"
    "  helene plot helene.jsonl mezo.jsonl -o compare.png\n";

int cmd_plot(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_plot_usage, stdout);
        return 0;
    }
    /* -o is the one short flag: rewrite it to --out for the shared parser */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-o"))
            argv[i] = "--out";
    const char *out = NULL, *title = NULL;
    long width = 1200, height = -1; /* -1: 800, or 1100 with the per-layer panel */
    cli_flag flags[] = {
        {"out", CLI_KIND_STRING, &out, 0, 0, false},
        {"title", CLI_KIND_STRING, &title, 0, 0, false},
        {"width", CLI_KIND_INT, &width, 320, 10000, false},
        {"height", CLI_KIND_INT, &height, 240, 10000, false},
        {NULL, 0, NULL, 0, 0, false},
    };
    const char *pos[64];
    int n_pos = 0;
    if (!cli_parse("plot", argc, argv, flags, pos, 64, &n_pos))
        return 2;
    if (!out) {
        fprintf(stderr, "helene plot: -o FILE.png|FILE.svg|FILE.pdf is required\n");
        return 2;
    }
    if (n_pos < 1) {
        fprintf(stderr, "helene plot: give at least one journal (the --log file of a run)\n");
        return 2;
    }
    plot_runs runs;
    memset(&runs, 0, sizeof runs);
    hl_err err;
    char auto_title[512] = "";
    for (int i = 0; i < n_pos; i++) {
        const char *base = strrchr(pos[i], '/');
        base = base ? base + 1 : pos[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
        if (plot_journal_read(&runs, pos[i], name, &err)) {
            fprintf(stderr, "helene plot: %s\n", err.msg);
            plot_runs_free(&runs);
            return 1;
        }
        size_t at = strlen(auto_title);
        snprintf(auto_title + at, sizeof auto_title - at, "%s%s", i ? " vs " : "", name);
    }
    int rc = 0;
    if (height < 0)
        height = plot_layers_run(&runs) ? 1100 : 800;
    if (plot_write(out, &runs, title ? title : auto_title, (int)width, (int)height, &err)) {
        fprintf(stderr, "helene plot: %s\n", err.msg);
        rc = 1;
    } else
        printf("plotted %d run%s to %s\n", runs.n, runs.n == 1 ? "" : "s", out);
    plot_runs_free(&runs);
    return rc;
}
