/* cmd_tui.c - `helene tui` (and `helene` alone): the workbench.
 *
 * The flags are exactly `helene train`'s (runargs.h: every runcfg key and
 * hyperparameter as --key VALUE, --config, --resume, presets for analytic
 * objectives) plus --no-color and --paused; runargs_run_tui() builds the
 * engine and hands the terminal to ui/app.h.  Leaves out: headless runs
 * (`helene train --headless`), drawing (ui/).
 */
#include "cmd_tui.h"

#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "runargs.h"

const char cmd_tui_usage[] =
    "usage: helene tui [--config FILE.json] [--no-color] [--paused] [--KEY VALUE ...]\n"
    "       helene            (no arguments: the workbench on the default run)\n"
    "\n"
    "Open the workbench: an ncurses screen where the engine trains while you watch\n"
    "the losses, dev accuracy, the projected gradient, per-layer curvature and\n"
    "clipping, and HELENE's annealing schedule live, and change hyperparameters,\n"
    "pause, step, evaluate or checkpoint with one key ('?' lists every key).\n"
    "\n"
    "It takes the same run settings as 'helene train': every run-config key and\n"
    "every hyperparameter as --KEY VALUE, e.g.\n"
    "  helene tui --objective quadratic --optimizer helene --steps 5000 --save runs/q\n"
    "  helene tui --model DIR --task sst2 --lr 1e-4\n"
    "\n"
    "  --config FILE   JSON run config applied first; flags override it\n"
    "  --resume DIR    continue a checkpointed run (its charts show the whole past)\n"
    "  --no-color      monochrome (also when NO_COLOR is set in the environment)\n"
    "  --paused        start paused: Space runs, s steps once\n"
    "\n"
    "Charts use braille dots when the locale is UTF-8 and ASCII otherwise.  The\n"
    "terminal must be at least 80x24.\n";

int cmd_tui(int argc, char **argv)
{
    if (argc > 1 && cli_wants_help(argc, argv)) {
        fputs(cmd_tui_usage, stdout);
        runargs_print_hparams(stdout);
        return 0;
    }
    runargs ra;
    int rc = runargs_parse(&ra, "tui", argc, argv);
    if (rc == 0) {
        if (ra.headless) {
            fprintf(stderr, "helene tui: --headless runs belong to 'helene train --headless'\n");
            rc = 2;
        } else if (ra.print_config) {
            char *json = runcfg_to_json(&ra.cfg);
            if (json)
                puts(json);
            free(json);
            rc = json ? 0 : 1;
        } else {
            rc = runargs_run_tui(&ra);
        }
    }
    runargs_free(&ra);
    return rc;
}
