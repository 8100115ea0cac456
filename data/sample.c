/* sample.c - splitmix64, shuffles, MeZO/LM-BFF splits, length-grouped batches.
 * See sample.h for the definitions the code follows.
 *
 * Leaves out: anything that depends on file contents beyond labels.
 */
#include "sample.h"

#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* ---------------------------------------------------------------------------
 * generator
 * ------------------------------------------------------------------------- */

uint64_t sample_rng_next(sample_rng *r)
{
    return rng_splitmix64(&r->state);
}

uint64_t sample_rng_below(sample_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    uint64_t threshold = (0 - n) % n; /* 2^64 mod n */
    for (;;) {
        uint64_t x = sample_rng_next(r);
        if (x >= threshold)
            return x % n;
    }
}

void sample_shuffle_u32(uint32_t *a, uint32_t n, sample_rng *r)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)sample_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

uint64_t sample_seed_derive(uint64_t seed, uint64_t tag)
{
    sample_rng t = sample_rng_init(tag);
    sample_rng s = sample_rng_init(seed ^ sample_rng_next(&t));
    return sample_rng_next(&s);
}

/* ---------------------------------------------------------------------------
 * views
 * ------------------------------------------------------------------------- */

void sample_view_free(sample_view *v)
{
    free(v->idx);
    memset(v, 0, sizeof *v);
}

static hl_status view_alloc(sample_view *v, const dataset *ds, uint32_t cap, hl_err *err)
{
    memset(v, 0, sizeof *v);
    v->ds = ds;
    if (cap == 0)
        return HL_OK;
    v->idx = malloc((size_t)cap * sizeof *v->idx);
    if (!v->idx)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for %u indices", cap);
    return HL_OK;
}

hl_status sample_view_all(sample_view *out, const dataset *ds, hl_err *err)
{
    hl_status st = view_alloc(out, ds, ds->n, err);
    if (st != HL_OK)
        return st;
    for (uint32_t i = 0; i < ds->n; i++)
        out->idx[i] = i;
    out->n = ds->n;
    return HL_OK;
}

void sample_view_class_counts(uint32_t *counts, const sample_view *v)
{
    memset(counts, 0, (size_t)v->ds->n_classes * sizeof *counts);
    for (uint32_t i = 0; i < v->n; i++)
        counts[v->ds->ex[v->idx[i]].label]++;
}

void sample_splits_free(sample_splits *s)
{
    sample_view_free(&s->train);
    sample_view_free(&s->dev);
    sample_view_free(&s->test);
}

/* ---------------------------------------------------------------------------
 * splits
 * ------------------------------------------------------------------------- */

/* A source shuffled once, carved into disjoint parts. */
typedef struct carver {
    const dataset *ds;
    uint32_t *order; /* [ds->n] shuffled example indices */
    uint8_t *taken;  /* [ds->n] by example index */
} carver;

static hl_status carver_init(carver *c, const dataset *ds, uint64_t seed, hl_err *err)
{
    memset(c, 0, sizeof *c);
    c->ds = ds;
    c->order = malloc((size_t)ds->n * sizeof *c->order + 1);
    c->taken = calloc((size_t)ds->n + 1, 1);
    if (!c->order || !c->taken) {
        free(c->order);
        free(c->taken);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for sampling");
    }
    for (uint32_t i = 0; i < ds->n; i++)
        c->order[i] = i;
    sample_rng r = sample_rng_init(seed);
    sample_shuffle_u32(c->order, ds->n, &r);
    return HL_OK;
}

static void carver_free(carver *c)
{
    free(c->order);
    free(c->taken);
}

/* k per class in shuffled order. */
static hl_status carve_k(sample_view *out, carver *c, int32_t k, const char *what, hl_err *err)
{
    const dataset *ds = c->ds;
    uint64_t want = (uint64_t)k * (uint64_t)ds->n_classes;
    if (want > ds->n)
        want = ds->n;
    hl_status st = view_alloc(out, ds, (uint32_t)want, err);
    if (st != HL_OK)
        return st;
    uint32_t got[TASK_MAX_CLASSES] = {0};
    for (uint32_t i = 0; i < ds->n && out->n < want; i++) {
        uint32_t e = c->order[i];
        int32_t cls = ds->ex[e].label;
        if (c->taken[e] || got[cls] >= (uint32_t)k)
            continue;
        c->taken[e] = 1;
        got[cls]++;
        out->idx[out->n++] = e;
    }
    for (int32_t cls = 0; cls < ds->n_classes; cls++)
        if (got[cls] < (uint32_t)k) {
            sample_view_free(out);
            return hl_err_set(err, HL_ERR_INVALID,
                              "%s: class %d has only %u examples left for %s, which asks for "
                              "k = %d per class",
                              ds->path, (int)cls, got[cls], what, (int)k);
        }
    return HL_OK;
}

/* The next n (exact, or at most n when cap) in shuffled order; n = 0 with
 * cap takes everything left. */
static hl_status carve_n(sample_view *out, carver *c, uint64_t n, bool cap, const char *what,
                         hl_err *err)
{
    const dataset *ds = c->ds;
    uint32_t left = 0;
    for (uint32_t i = 0; i < ds->n; i++)
        left += !c->taken[i];
    if (n > left) {
        if (!cap)
            return hl_err_set(err, HL_ERR_INVALID,
                              "%s: %s asks for %llu examples, only %u are left", ds->path, what,
                              (unsigned long long)n, left);
        n = left;
    }
    if (n == 0 && cap)
        n = left;
    hl_status st = view_alloc(out, ds, (uint32_t)n, err);
    if (st != HL_OK)
        return st;
    for (uint32_t i = 0; i < ds->n && out->n < n; i++) {
        uint32_t e = c->order[i];
        if (c->taken[e])
            continue;
        c->taken[e] = 1;
        out->idx[out->n++] = e;
    }
    return HL_OK;
}

/* A separate source: k per class, n (at most), or all in file order. */
static hl_status take_from(sample_view *out, const dataset *ds, uint64_t seed, int32_t k,
                           int64_t n, const char *what, hl_err *err)
{
    if (k <= 0 && n <= 0)
        return sample_view_all(out, ds, err);
    carver c;
    hl_status st = carver_init(&c, ds, seed, err);
    if (st != HL_OK)
        return st;
    st = k > 0 ? carve_k(out, &c, k, what, err) : carve_n(out, &c, (uint64_t)n, true, what, err);
    carver_free(&c);
    return st;
}

hl_status sample_make_splits(sample_splits *out, const dataset *train_src,
                             const dataset *dev_src, const dataset *test_src,
                             const sample_opts *o, hl_err *err)
{
    memset(out, 0, sizeof *out);
    if (!train_src || train_src->n == 0)
        return hl_err_set(err, HL_ERR_INVALID, "no training examples");
    if (o->k_train < 0 || o->k_dev < 0 || o->n_train < 0 || o->n_dev < 0 || o->n_test < 0)
        return hl_err_set(err, HL_ERR_INVALID, "negative split size");
    if (o->n_train > UINT32_MAX || o->n_dev > UINT32_MAX || o->n_test > UINT32_MAX)
        return hl_err_set(err, HL_ERR_INVALID, "split size too large");
    bool dev_here = !dev_src || o->dev_from_train;
    bool test_here = !test_src && o->n_test > 0;
    bool train_sized = o->k_train > 0 || o->n_train > 0;
    carver c;
    hl_status st = carver_init(&c, train_src, o->seed, err);
    if (st != HL_OK)
        return st;
    if (train_sized)
        st = o->k_train > 0 ? carve_k(&out->train, &c, o->k_train, "train", err)
                            : carve_n(&out->train, &c, (uint64_t)o->n_train, false, "train", err);
    if (st == HL_OK && dev_here) {
        if (o->k_dev > 0)
            st = carve_k(&out->dev, &c, o->k_dev, "dev", err);
        else if (o->n_dev > 0)
            st = carve_n(&out->dev, &c, (uint64_t)o->n_dev, false, "dev", err);
        else
            out->dev.ds = train_src;
    }
    if (st == HL_OK && test_here)
        st = carve_n(&out->test, &c, (uint64_t)o->n_test, false, "test", err);
    if (st == HL_OK && !train_sized) {
        st = carve_n(&out->train, &c, 0, true, "train", err);
        if (st == HL_OK && out->train.n == 0)
            st = hl_err_set(err, HL_ERR_INVALID, "%s: no examples left for train",
                            train_src->path);
    }
    carver_free(&c);
    if (st == HL_OK && !dev_here)
        st = take_from(&out->dev, dev_src, o->seed + 1, o->k_dev, o->n_dev, "dev", err);
    if (st == HL_OK && test_src)
        st = take_from(&out->test, test_src, o->seed + 2, 0, o->n_test, "test", err);
    if (st != HL_OK)
        sample_splits_free(out);
    return st;
}

/* ---------------------------------------------------------------------------
 * batches
 * ------------------------------------------------------------------------- */

/* Stable bottom-up merge sort of a[0, n) by lens[a[i]], using tmp[0, n). */
static void sort_by_length(uint32_t *a, uint32_t *tmp, uint32_t n, const uint32_t *lens)
{
    uint32_t *src = a, *dst = tmp;
    for (uint32_t width = 1; width < n; width *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * width) {
            uint32_t mid = lo + width < n ? lo + width : n;
            uint32_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            uint32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = lens[src[j]] < lens[src[i]] ? src[j++] : src[i++];
            while (i < mid)
                dst[k++] = src[i++];
            while (j < hi)
                dst[k++] = src[j++];
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
        if (width > UINT32_MAX / 2)
            break;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof *a);
}

void sample_order_by_length(uint32_t *out, uint32_t *scratch, const uint32_t *lens, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        out[i] = i;
    sort_by_length(out, scratch, n, lens);
}

hl_status sample_batcher_init(sample_batcher *b, uint32_t n, uint32_t batch,
                              const uint32_t *lens, uint32_t group, uint64_t seed, hl_err *err)
{
    memset(b, 0, sizeof *b);
    if (n == 0 || batch == 0)
        return hl_err_set(err, HL_ERR_INVALID, "batcher needs examples and a batch size (n = %u, "
                          "batch = %u)", n, batch);
    b->n = n;
    b->batch = batch;
    b->group = lens ? group : 0;
    b->seed = seed;
    b->lens = lens;
    b->n_batches = (uint32_t)(((uint64_t)n + batch - 1) / batch);
    b->order = malloc((size_t)n * sizeof *b->order);
    b->scratch = malloc((size_t)n * sizeof *b->scratch);
    b->bstart = malloc((size_t)b->n_batches * sizeof *b->bstart);
    if (!b->order || !b->scratch || !b->bstart) {
        sample_batcher_free(b);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for a batcher of %u", n);
    }
    return HL_OK;
}

void sample_batcher_free(sample_batcher *b)
{
    free(b->order);
    free(b->scratch);
    free(b->bstart);
    memset(b, 0, sizeof *b);
}

static void batcher_build_epoch(sample_batcher *b, uint64_t epoch)
{
    sample_rng r = sample_rng_init(sample_seed_derive(b->seed, epoch));
    for (uint32_t i = 0; i < b->n; i++)
        b->order[i] = i;
    sample_shuffle_u32(b->order, b->n, &r);
    for (uint32_t j = 0; j < b->n_batches; j++)
        b->bstart[j] = j * b->batch;
    if (b->group > 0) {
        uint64_t w = (uint64_t)b->group * b->batch;
        for (uint64_t lo = 0; lo < b->n; lo += w) {
            uint32_t len = (uint32_t)(lo + w < b->n ? w : b->n - lo);
            sort_by_length(b->order + lo, b->scratch, len, b->lens);
        }
        /* sorted windows put short batches first: shuffle which batch runs when */
        sample_shuffle_u32(b->bstart, b->n_batches, &r);
    }
    b->cached_epoch = epoch;
    b->cached = true;
}

uint32_t sample_batcher_get(uint32_t *out, sample_batcher *b, uint64_t step)
{
    uint64_t epoch = step / b->n_batches;
    uint32_t j = (uint32_t)(step % b->n_batches);
    if (!b->cached || b->cached_epoch != epoch)
        batcher_build_epoch(b, epoch);
    uint32_t start = b->bstart[j];
    uint32_t m = b->n - start < b->batch ? b->n - start : b->batch;
    memcpy(out, b->order + start, (size_t)m * sizeof *out);
    return m;
}

uint32_t sample_batcher_next(uint32_t *out, sample_batcher *b, sample_cursor *cur)
{
    if (cur->seed != b->seed) {
        b->seed = cur->seed;
        b->cached = false;
    }
    return sample_batcher_get(out, b, cur->step++);
}
