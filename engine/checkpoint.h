/* checkpoint.h - checkpoint folders: save, validate, load, prune.
 *
 * A checkpoint is a folder:
 *   params.safetensors  θ, one F32 tensor per layer, under the layer names
 *   optim.safetensors   the optimizer's state (optim_state_write)
 *   checkpoint.json     {"format": "helene-checkpoint", "version": 1, "step",
 *                        "n_params", "layers", "journal": {"path", "offset"},
 *                        "run": the resolved run configuration}
 * It is written into DIR.tmp-PID, every file fsynced, then swapped with DIR
 * in one atomic rename (renameat2 RENAME_EXCHANGE when DIR exists), so a
 * crash or kill -9 at any instant leaves either the old or the new
 * checkpoint complete at DIR.  checkpoint.json is written last and read
 * first: a folder without it is not a checkpoint.
 *
 * Loading validates before it changes anything: the same layer names and
 * shapes as the running model, the optimizer state's method and sizes; on
 * any mismatch nothing is overwritten and the message says what differs.
 * Leaves out: cloud storage, compression, 16-bit state.
 */
#ifndef HELENE_CHECKPOINT_H
#define HELENE_CHECKPOINT_H

#include <stdint.h>

#include "err.h"
#include "optim.h"
#include "params.h"
#include "runcfg.h"

#define CHECKPOINT_FORMAT "helene-checkpoint"
#define CHECKPOINT_VERSION 1

typedef struct checkpoint_info {
    uint64_t step;
    uint64_t journal_offset;
    char journal_path[RUNCFG_PATH_MAX];
} checkpoint_info;

/* Writes more files into the folder before it is swapped in (e.g. the
 * first-order optimizer's state); tmp_dir is the folder being built. */
typedef hl_status (*checkpoint_extra_fn)(void *ctx, const char *tmp_dir, hl_err *err);

hl_status checkpoint_save(const char *dir, const runcfg *cfg, const param_set *ps,
                          const optim *opt, uint64_t step, const char *journal_path,
                          uint64_t journal_offset, hl_err *err);
hl_status checkpoint_save_with(const char *dir, const runcfg *cfg, const param_set *ps,
                               const optim *opt, uint64_t step, const char *journal_path,
                               uint64_t journal_offset, checkpoint_extra_fn extra,
                               void *extra_ctx, hl_err *err);

/* Read the run configuration stored in DIR/checkpoint.json into cfg (which
 * must be initialised; its previous contents are replaced). */
hl_status checkpoint_read_config(runcfg *cfg, const char *dir, hl_err *err);

/* Restore θ (and the optimizer state when opt is not NULL) from DIR. */
hl_status checkpoint_load(const char *dir, param_set *ps, optim *opt, checkpoint_info *info,
                          hl_err *err);

/* θ alone, as one safetensors file (best-dev snapshots, export). */
hl_status checkpoint_write_params(const char *path, const param_set *ps, hl_err *err);
hl_status checkpoint_read_params(const char *path, param_set *ps, hl_err *err);

/* Keep the newest keep_last folders DIR/step-N; remove older ones. */
void checkpoint_prune(const char *save_dir, int keep_last);

#endif
