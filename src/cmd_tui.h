/* cmd_tui.h - `helene tui` (and `helene` with no arguments): the workbench.
 * Takes the same run flags as `helene train` (every runcfg key as --key
 * VALUE, --config FILE) plus --no-color and --paused.  Returns 0 after a
 * normal quit, 1 when the run cannot start, 2 on bad usage. */
#ifndef HELENE_CMD_TUI_H
#define HELENE_CMD_TUI_H

int cmd_tui(int argc, char **argv);
extern const char cmd_tui_usage[];

#endif
