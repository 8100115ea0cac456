/* pool.h - a fork-join thread pool for data-parallel loops.
 *
 * pool_run(p, fn, arg) calls fn(arg, tid, n) once on each of the n threads
 * (the caller is thread 0) and returns when all have finished.  Work is split
 * by the callee with pool_range(), a pure function of (total, tid, n), so a
 * loop whose per-element result does not depend on the split gives the same
 * bits for any thread count.  Leaves out: work stealing, nested runs, futures.
 *
 * Not reentrant: one pool_run at a time per pool (the engine thread owns it).
 */
#ifndef HELENE_POOL_H
#define HELENE_POOL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define POOL_MAX_THREADS 64

typedef void (*pool_fn)(void *arg, int tid, int n_threads);

typedef struct pool {
    int n_threads;                 /* including the caller */
    pthread_t threads[POOL_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t go;             /* workers wait for a new generation */
    pthread_cond_t done;           /* caller waits for n_running == 0 */
    uint64_t generation;
    int n_running;
    int quit;
    pool_fn fn;
    void *arg;
} pool;

/* Start n_threads - 1 workers (n_threads in 1..POOL_MAX_THREADS). */
hl_status pool_init(pool *p, int n_threads, hl_err *err);
void pool_free(pool *p);
/* p may be NULL: then fn runs on the caller alone as (arg, 0, 1). */
void pool_run(pool *p, pool_fn fn, void *arg);
int pool_size(const pool *p);

/* [*begin, *end) of total items for thread tid of n, in chunks aligned to
 * `align` items (align >= 1) so vectorised loops see whole blocks. */
void pool_range(size_t total, int tid, int n, size_t align, size_t *begin, size_t *end);

#endif
