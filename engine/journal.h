/* journal.h - the run journal: append-only JSONL, one line per step and one
 * per event (set, switch, pause, eval, checkpoint, error).  It is the
 * `--log` output, the source of the TUI's history after a resume, and a
 * replayable record of what happened at which step.
 *
 * Step lines: {"step", "seed", "loss", "loss_plus", "loss_minus",
 * "proj_grad", "q", "lr", "alpha" (HELENE), "refresh", "forwards",
 * "batch", "ms_perturb", "ms_forward", "ms_update"}.  Event lines carry
 * "event" and "step"; each run or resume starts with a "run" event holding
 * its configuration.  Eval lines add "dev_accuracy" (models) or
 * "exact_loss" (analytic objectives) and "dev_loss".
 *
 * A closed journal (path "") accepts every call and writes nothing.
 * Leaves out: rotation, compression.
 */
#ifndef HELENE_JOURNAL_H
#define HELENE_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "optim.h"

typedef struct journal {
    FILE *f;
    uint64_t lines_since_flush;
} journal;

/* Open path for appending.  resume_offset > 0: the file is cut to that
 * byte offset first (what a checkpoint recorded), so the journal of a
 * resumed run continues exactly where its checkpoint was taken. */
hl_status journal_open(journal *j, const char *path, uint64_t resume_offset, hl_err *err);
void journal_close(journal *j);
void journal_flush(journal *j);
/* Byte offset of the end of the journal (flushes first); 0 when closed. */
uint64_t journal_offset(journal *j);

/* The first line of every run and resume: {"event":"run","step", "resumed",
 * "version", "config": the resolved run configuration (runcfg_to_json)}. */
void journal_run(journal *j, uint64_t step, bool resumed, const char *version,
                 const char *config_json);

/* grad_cosine: the alignment diagnostic, or NAN (omitted). */
void journal_step(journal *j, const optim_step_stats *s, double loss, double grad_cosine);
void journal_event(journal *j, uint64_t step, const char *event, const char *key,
                   const char *value);
void journal_eval(journal *j, uint64_t step, double accuracy_or_exact, double loss,
                  bool is_accuracy);
void journal_test(journal *j, uint64_t step, const char *which, double accuracy, double loss);
/* Per-layer curvature for plots: after the run line, the layer names
 * ({"event":"layer_names","names":[...]}); at every evaluation, each
 * layer's mean curvature as the optimizer sees it ({"event":"layers",
 * "step","h":[...]}, null for frozen layers).  Methods without a curvature
 * write no "layers" lines. */
void journal_layer_names(journal *j, uint64_t step, const char *const *names, int n);
void journal_layers(journal *j, uint64_t step, const float *h, const bool *frozen, int n);

/* Read back the step and eval lines of a journal file with step <= max_step. */
typedef void (*journal_visit_fn)(void *ctx, bool is_eval, uint64_t step, double loss,
                                 double loss_plus, double loss_minus, double proj_grad,
                                 double alpha, double lr, double dev);
hl_status journal_scan(const char *path, uint64_t max_step, journal_visit_fn fn, void *ctx,
                       hl_err *err);

#endif
