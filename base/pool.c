/* pool.c - see pool.h.  A generation counter under one mutex: simple and
 * correct; the loops it runs are long (whole arenas, whole layers), so the
 * wake-up latency of a condition variable does not matter. */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

typedef struct worker_arg {
    pool *p;
    int tid;
} worker_arg;

static void *pool_worker(void *varg)
{
    pool *p = ((worker_arg *)varg)->p;
    int tid = ((worker_arg *)varg)->tid;
    free(varg);
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);

        fn(arg, tid, p->n_threads);

        pthread_mutex_lock(&p->mu);
        if (--p->n_running == 0)
            pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

hl_status pool_init(pool *p, int n_threads, hl_err *err)
{
    memset(p, 0, sizeof *p);
    if (n_threads < 1 || n_threads > POOL_MAX_THREADS)
        return hl_err_set(err, HL_ERR_INVALID, "thread count %d out of range 1..%d", n_threads,
                          POOL_MAX_THREADS);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n_threads = 1;
    for (int t = 1; t < n_threads; t++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            pool_free(p);
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory starting threads");
        }
        wa->p = p;
        wa->tid = t;
        if (pthread_create(&p->threads[t], NULL, pool_worker, wa) != 0) {
            free(wa);
            pool_free(p);
            return hl_err_set(err, HL_ERR_IO, "cannot start thread %d of %d", t, n_threads);
        }
        p->n_threads = t + 1;
    }
    return HL_OK;
}

void pool_free(pool *p)
{
    if (!p || p->n_threads == 0)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->n_threads; t++)
        pthread_join(p->threads[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    p->n_threads = 0;
}

int pool_size(const pool *p)
{
    return (p && p->n_threads > 0) ? p->n_threads : 1;
}

void pool_run(pool *p, pool_fn fn, void *arg)
{
    if (!p || p->n_threads <= 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n_running = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->n_threads);

    pthread_mutex_lock(&p->mu);
    while (p->n_running > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void pool_range(size_t total, int tid, int n, size_t align, size_t *begin, size_t *end)
{
    if (align < 1)
        align = 1;
    size_t blocks = (total + align - 1) / align;
    size_t per = blocks / (size_t)n, rem = blocks % (size_t)n;
    size_t t = (size_t)tid;
    size_t b0 = t * per + (t < rem ? t : rem);
    size_t b1 = b0 + per + (t < rem ? 1 : 0);
    *begin = b0 * align < total ? b0 * align : total;
    *end = b1 * align < total ? b1 * align : total;
}
