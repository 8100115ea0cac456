/* dist.h - data-parallel zeroth-order training across processes (MPI).
 *
 * `mpirun -np N helene train --headless ...` runs N ranks that each hold the
 * whole model and run the same optimizer code.  Ranks share the run seed, so
 * they select the same batch and draw the same probe z.  Each batch is cut
 * into S contiguous shards (--shards, default N), each evaluated by one
 * forward of its own; rank r evaluates shards [S r/N, S (r+1)/N) and the
 * per-example losses are all-gathered, so every rank then holds the whole
 * loss vector and applies the identical update: parameters never travel.
 * Communication per forward is B doubles in all (plus MPI's headers),
 * whatever the model size.
 *
 * Bit-identity: a run's parameters are bit-identical to those of any other
 * run with the same batches and the same S, whatever the number of ranks
 * (`helene train --shards 2` in one process = `mpirun -np 2`).  Why: a
 * shard's losses depend on its examples alone (a forward's reductions are in
 * a fixed order for any thread count), the gathered vector is in example
 * order, and every sum over it (means, c_b, Σ c_b², HiZOO's L0) is then taken
 * by the same code in that order on every rank: no floating-point reduction
 * happens inside MPI.  S matters because OpenBLAS's result for a row depends
 * on the rows beside it in a product (its micro-kernels treat tile positions
 * and tails differently), so the whole batch in one forward and the same
 * batch in two halves differ in the last bits.
 *
 * Roles: rank 0 (the leader) owns the journal, evaluation, checkpoints and
 * the decision to take another step, which it broadcasts before each step;
 * the others (followers) only step.  Every `--check-every` steps the ranks
 * compare a hash of θ and the job stops with a message if any differs.  A
 * failed step on any rank aborts the whole job (MPI_Abort): under MPI there
 * is no paused state to roll back from, and the last checkpoint, written
 * atomically, is intact.
 *
 * Built without MPI (the default; configure --with-mpi to have it), every
 * function here is the single-process case: rank 0 of 1.
 * Threads: MPI is initialised for serialized use; the engine thread makes
 * every call between dist_init and dist_finalize (the main thread's).
 */
#ifndef HELENE_DIST_H
#define HELENE_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "objective.h"
#include "params.h"

/* Did a launcher (mpirun) start this process as one of several ranks?
 * Reads the environment only; no MPI call. */
int dist_launched_size(void);

/* Initialise MPI when launched as one of several ranks (else a no-op with
 * rank 0 of 1).  An error if the launcher asks for more than one rank but
 * this helene was built without MPI. */
hl_status dist_init(int *argc, char ***argv, hl_err *err);
void dist_finalize(void);
int dist_rank(void);
int dist_size(void);
static inline bool dist_active(void) { return dist_size() > 1; }
static inline bool dist_leader(void) { return dist_rank() == 0; }

/* End every rank of the job now, with exit status code (after printing msg
 * on this rank's stderr).  Single process: exit(code). */
_Noreturn void dist_abort(int code, const char *msg);

/* True on every rank iff ok is true on every rank (a collective). */
bool dist_all_ok(bool ok);

/* The leader's word before each step: true = take another step, false =
 * the run is over.  The leader passes its decision; followers' argument is
 * ignored and they get the leader's. */
bool dist_next_step(bool go);

/* Every rank's hash of θ at step `step`, compared; false (and err names the
 * ranks and the step) if they differ. */
bool dist_params_agree(const param_set *ps, uint64_t step, hl_err *err);

/* True if `text` (e.g. a run's configuration) is the same on every rank;
 * else false, err naming the first rank that differs and `what`. */
bool dist_same_text(const char *text, const char *what, hl_err *err);

/* Split every batch of *obj into `shards` contiguous shards (0 = one per
 * rank), each evaluated by a forward of its own, and deal them out to the
 * ranks in order (rank r: shards [S r/N, S (r+1)/N)); under mpirun *obj
 * becomes a wrapper (owning and destroying the original) that all-gathers
 * the losses.  A run is bit-identical to any other with the same shards,
 * whatever its number of ranks.  Objectives without shards (the analytic
 * ones) are evaluated whole on every rank: nothing to gather. */
hl_status dist_wrap_objective(objective *obj, int32_t shards, hl_err *err);

/* optim_share_probes' exchange (--probes-per-rank): probe p's loss rows
 * lp[p B ..), lm[p B ..) are broadcast from rank p mod N, in probe order. */
hl_status dist_exchange_probes(void *ctx, double *lp, double *lm, int32_t n_probes, int32_t B,
                               hl_err *err);

/* Bytes of losses all-gathered per forward for a batch of B (payload). */
static inline uint64_t dist_bytes_per_forward(int32_t B) { return (uint64_t)B * sizeof(double); }

#endif
