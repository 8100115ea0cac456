/* dist.c - data-parallel ranks over MPI, or the single process (dist.h). */
#include "dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
#ifdef HAVE_MPI
static bool g_mpi = false; /* MPI_Init done here (and not yet finalized) */
#endif

int dist_launched_size(void)
{
    /* Open MPI's mpirun, then any PMI/PMIx launcher (MPICH's, Slurm's) */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end == '\0' && n >= 1 && n <= 1 << 20)
                return (int)n;
        }
    }
    return 1;
}

hl_status dist_init(int *argc, char ***argv, hl_err *err)
{
    int launched = dist_launched_size();
#ifdef HAVE_MPI
    if (launched > 1 && !g_mpi) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
            return hl_err_set(err, HL_ERR_IO, "MPI_Init_thread failed");
        if (provided < MPI_THREAD_SERIALIZED) {
            MPI_Finalize();
            return hl_err_set(err, HL_ERR_INVALID, "this MPI library cannot be called from the "
                              "engine thread (MPI_THREAD_SERIALIZED not provided)");
        }
        g_mpi = true;
        MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &g_size);
        /* collectives report errors by return value, so a rank can say which
         * step failed before the job ends */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    return HL_OK;
#else
    (void)argc, (void)argv;
    if (launched > 1)
        return hl_err_set(err, HL_ERR_INVALID, "started as one of %d ranks, but this helene was "
                          "built without MPI (./configure --with-mpi; Debian: apt-get install "
                          "libopenmpi-dev openmpi-bin)", launched);
    return HL_OK;
#endif
}

void dist_finalize(void)
{
#ifdef HAVE_MPI
    if (g_mpi) {
        MPI_Finalize();
        g_mpi = false;
    }
#endif
    g_rank = 0;
    g_size = 1;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

_Noreturn void dist_abort(int code, const char *msg)
{
    if (msg)
        fprintf(stderr, "helene train (rank %d of %d): %s\n", g_rank, g_size, msg);
    fflush(stderr);
    fflush(stdout);
#ifdef HAVE_MPI
    if (g_mpi)
        MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

#ifdef HAVE_MPI
/* A collective failed (a rank died or the network broke): nothing sensible
 * is left to do on this rank but end the job. */
static void mpi_check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return;
    char text[MPI_MAX_ERROR_STRING], msg[MPI_MAX_ERROR_STRING + 96];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    snprintf(msg, sizeof msg, "%s failed: %s", what, text);
    dist_abort(1, msg);
}
#endif

bool dist_all_ok(bool ok)
{
#ifdef HAVE_MPI
    if (g_size > 1) {
        int mine = ok ? 1 : 0, all = 0;
        mpi_check(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
                  "the start-up check");
        return all != 0;
    }
#endif
    return ok;
}

bool dist_next_step(bool go)
{
#ifdef HAVE_MPI
    if (g_size > 1) {
        int word = go ? 1 : 0;
        mpi_check(MPI_Bcast(&word, 1, MPI_INT, 0, MPI_COMM_WORLD), "the leader's step broadcast");
        return word != 0;
    }
#endif
    return go;
}

#ifdef HAVE_MPI
/* Every rank's value, gathered; the first rank whose value differs from rank
 * 0's (-1: none), and the two values. */
static int first_differing(uint64_t mine, const char *what, uint64_t *theirs, uint64_t *root)
{
    uint64_t *all = malloc((size_t)g_size * sizeof *all);
    if (!all)
        dist_abort(1, "out of memory for a check across ranks");
    mpi_check(MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD), what);
    int bad = -1;
    for (int r = 1; r < g_size && bad < 0; r++)
        if (all[r] != all[0])
            bad = r;
    *theirs = bad >= 0 ? all[bad] : all[0];
    *root = all[0];
    free(all);
    return bad;
}

/* Fault injection for tests/test_mpi.sh: HELENE_DIST_FAULT=RANK:STEP flips
 * the lowest bit of θ's first element on that rank at that step's check, as
 * a rank computing differently would. */
static void inject_fault(const param_set *ps, uint64_t step)
{
    const char *f = getenv("HELENE_DIST_FAULT");
    int rank;
    unsigned long long at;
    if (!f || sscanf(f, "%d:%llu", &rank, &at) != 2 || rank != g_rank || at != step || !ps->n)
        return;
    uint32_t bits;
    memcpy(&bits, ps->data, sizeof bits);
    bits ^= 1u;
    memcpy(ps->data, &bits, sizeof bits);
}
#endif

bool dist_params_agree(const param_set *ps, uint64_t step, hl_err *err)
{
#ifdef HAVE_MPI
    if (g_size > 1) {
        inject_fault(ps, step);
        uint64_t theirs, root;
        int bad = first_differing(param_set_hash(ps), "the parameter check", &theirs, &root);
        if (bad >= 0)
            hl_err_set(err, HL_ERR_NUMERIC, "step %llu: the parameters of rank %d (hash %016llx) "
                       "differ from rank 0's (%016llx): the ranks no longer compute the same "
                       "update (different builds or libraries?)",
                       (unsigned long long)step, bad, (unsigned long long)theirs,
                       (unsigned long long)root);
        return bad < 0;
    }
#endif
    (void)ps, (void)step, (void)err;
    return true;
}

bool dist_same_text(const char *text, const char *what, hl_err *err)
{
#ifdef HAVE_MPI
    if (g_size > 1) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (const unsigned char *p = (const unsigned char *)text; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
        uint64_t theirs, root;
        int bad = first_differing(h, what, &theirs, &root);
        if (bad >= 0)
            hl_err_set(err, HL_ERR_INVALID, "rank %d's %s differs from rank 0's: every rank "
                       "must run the same command", bad, what);
        return bad < 0;
    }
#endif
    (void)text, (void)what, (void)err;
    return true;
}

hl_status dist_exchange_probes(void *ctx, double *lp, double *lm, int32_t n_probes, int32_t B,
                               hl_err *err)
{
    (void)ctx, (void)err;
#ifdef HAVE_MPI
    for (int32_t p = 0; p < n_probes && g_size > 1; p++) {
        int root = (int)(p % g_size);
        mpi_check(MPI_Bcast(lp + (size_t)p * B, B, MPI_DOUBLE, root, MPI_COMM_WORLD),
                  "the probe exchange");
        mpi_check(MPI_Bcast(lm + (size_t)p * B, B, MPI_DOUBLE, root, MPI_COMM_WORLD),
                  "the probe exchange");
    }
#else
    (void)lp, (void)lm, (void)n_probes, (void)B;
#endif
    return HL_OK;
}

/* ------------------------------------------------ the sharded objective --- */

#ifdef HAVE_MPI
typedef struct dist_obj {
    objective inner;
    int32_t shards;       /* S: the batch's shards, dealt out to the ranks in order */
    int *counts, *displs; /* [size] for MPI_Allgatherv: each rank's examples */
} dist_obj;

/* Rank r evaluates shards [S r / N, S (r+1) / N). */
static void rank_shards(int32_t S, int r, int32_t *first, int32_t *last)
{
    *first = (int32_t)((int64_t)S * r / g_size);
    *last = (int32_t)((int64_t)S * (r + 1) / g_size);
}

static hl_status d_select(void *ctx, int32_t *batch_size, uint64_t step, hl_err *err)
{
    dist_obj *d = ctx;
    hl_status st = objective_select_batch(&d->inner, batch_size, step, err);
    int32_t B = st == HL_OK ? *batch_size : 0;
    for (int r = 0; r < g_size; r++) {
        int32_t first, last, lo, hi, unused;
        rank_shards(d->shards, r, &first, &last);
        objective_shard(B, first, d->shards, &lo, &unused);
        objective_shard(B, last, d->shards, &hi, &unused); /* shard `last`'s start */
        d->counts[r] = hi - lo;
        d->displs[r] = lo;
    }
    return st;
}

/* Evaluate this rank's shard, then gather every rank's into losses[0..B) in
 * example order.  A rank whose forward failed ends the job: the others are
 * waiting for its losses. */
static hl_status d_eval_staged(void *ctx, double *losses, const param_set *ps, pool *workers,
                               int32_t save_stage, int32_t start_stage, hl_err *err)
{
    dist_obj *d = ctx;
    hl_status st = objective_eval_staged(&d->inner, losses, ps, workers, save_stage,
                                         start_stage, err);
    if (st != HL_OK) {
        char msg[HL_ERR_MSG_MAX + 32];
        snprintf(msg, sizeof msg, "forward failed: %s", err->msg);
        dist_abort(1, msg);
    }
    /* in place: this rank's losses already sit at losses[displs[rank]..] */
    mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, losses, d->counts, d->displs,
                             MPI_DOUBLE, MPI_COMM_WORLD),
              "the loss all-gather");
    return HL_OK;
}

static hl_status d_eval(void *ctx, double *losses, const param_set *ps, pool *workers,
                        hl_err *err)
{
    return d_eval_staged(ctx, losses, ps, workers, 0, 0, err);
}

static int32_t d_layer_stage(void *ctx, int32_t layer)
{
    dist_obj *d = ctx;
    return objective_layer_stage(&d->inner, layer);
}

static hl_status d_full_loss(void *ctx, double *loss, const param_set *ps, pool *workers,
                             hl_err *err)
{
    dist_obj *d = ctx;
    return objective_full_loss(&d->inner, loss, ps, workers, err);
}

static void d_destroy(void *ctx)
{
    dist_obj *d = ctx;
    objective_destroy(&d->inner);
    free(d->counts);
    free(d->displs);
    free(d);
}
#endif

hl_status dist_wrap_objective(objective *obj, int32_t shards, hl_err *err)
{
    if (shards <= 0)
        shards = g_size; /* one forward per rank */
    if (shards > 1 && !obj->set_shards) {
        if (shards != g_size)
            return hl_err_set(err, HL_ERR_INVALID, "the %s objective cannot be evaluated in "
                              "shards", obj->name);
        return HL_OK; /* the analytic objectives: evaluated whole on every rank */
    }
    if (g_size <= 1) {
        if (shards > 1)
            obj->set_shards(obj->ctx, shards, 0, shards);
        return HL_OK;
    }
#ifdef HAVE_MPI
    dist_obj *d = calloc(1, sizeof *d);
    if (d) {
        d->counts = malloc((size_t)g_size * sizeof *d->counts);
        d->displs = malloc((size_t)g_size * sizeof *d->displs);
    }
    if (!d || !d->counts || !d->displs) {
        if (d) {
            free(d->counts);
            free(d->displs);
        }
        free(d);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the sharded objective");
    }
    d->inner = *obj;
    d->shards = shards;
    int32_t first, last;
    rank_shards(shards, g_rank, &first, &last);
    d->inner.set_shards(d->inner.ctx, shards, first, last);
    objective w = {.name = obj->name, .ctx = d, .max_batch = obj->max_batch,
                   .select_batch = d_select, .eval = d_eval,
                   .layer_stage = obj->layer_stage ? d_layer_stage : NULL,
                   .eval_staged = obj->eval_staged ? d_eval_staged : NULL,
                   .set_shards = NULL, .full_loss = obj->full_loss ? d_full_loss : NULL,
                   .destroy = d_destroy};
    *obj = w;
    return HL_OK;
#else
    return hl_err_set(err, HL_ERR_INVALID, "built without MPI");
#endif
}
