/* commands.h - the subcommands registered in main.c.  Each returns the
 * process exit status: 0 success, 1 failure (message on stderr), 2 usage. */
#ifndef HELENE_COMMANDS_H
#define HELENE_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_export(int argc, char **argv);
extern const char cmd_train_usage[];
extern const char cmd_export_usage[];
int cmd_data(int argc, char **argv);
extern const char cmd_info_usage[];
extern const char cmd_eval_usage[];
extern const char cmd_data_usage[];
extern const char cmd_score_usage[];
int cmd_pretrain(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_race(int argc, char **argv);
extern const char cmd_race_usage[];
extern const char cmd_plot_usage[];
extern const char cmd_pretrain_usage[];

#endif
