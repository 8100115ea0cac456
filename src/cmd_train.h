/* cmd_train.h - `helene train`: run an optimizer on an objective headless.
 * Now the analytic objectives (engine/analytic.h); models come later with the
 * same flags.  Returns 0 on success, 1 when the run fails, 2 on bad usage. */
#ifndef HELENE_CMD_TRAIN_H
#define HELENE_CMD_TRAIN_H

int cmd_train(int argc, char **argv);
extern const char cmd_train_usage[];

#endif
