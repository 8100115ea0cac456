/* sample.h - seeded k-shot sampling, train/dev/test splits and length-grouped batches.
 *
 * Everything here is a pure function of its integer inputs, identical on
 * every machine: the generator is splitmix64 (Steele, Lea & Flood 2014),
 *     state += 0x9E3779B97F4A7C15;
 *     z = state; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 *     z = (z ^ z>>27) * 0x94D049BB133111EB; return z ^ z>>31;
 * bounded draws reject the low 2^64 mod n values (no modulo bias), and a
 * shuffle is Fisher-Yates from the end (swap a[i] with a[below(i + 1)]).
 * data/sentiment/convert.py implements the same three in Python.
 *
 * Splits follow MeZO / LM-BFF (see sample_make_splits).  Batches: an epoch's
 * order is a function of (seed, epoch) only, and batch `step` is a function
 * of (seed, step) only, so the data cursor a checkpoint stores is just the
 * two integers of sample_cursor.
 *
 * Leaves out: reading files (dataset.h), tokenization (callers pass lengths).
 *
 * Ownership: sample_view and sample_batcher own their index arrays (freed by
 * sample_view_free / sample_batcher_free); they borrow the dataset and the
 * length array, which must outlive them.  sample_batcher_get never allocates.
 */
#ifndef HELENE_SAMPLE_H
#define HELENE_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "err.h"

/* --- generator ------------------------------------------------------------ */

typedef struct sample_rng {
    uint64_t state;
} sample_rng;

static inline sample_rng sample_rng_init(uint64_t seed)
{
    sample_rng r = {seed};
    return r;
}

uint64_t sample_rng_next(sample_rng *r);

/* Uniform in [0, n), n >= 1. */
uint64_t sample_rng_below(sample_rng *r, uint64_t n);

/* Fisher-Yates shuffle of a[0, n). */
void sample_shuffle_u32(uint32_t *a, uint32_t n, sample_rng *r);

/* A seed for stream `tag` of `seed`: the first splitmix64 output of state
 * seed ^ (the first output of state tag).  Used for per-epoch orders. */
uint64_t sample_seed_derive(uint64_t seed, uint64_t tag);

/* --- views and splits ----------------------------------------------------- */

/* Some examples of one dataset, in a chosen order. */
typedef struct sample_view {
    const dataset *ds; /* borrowed */
    uint32_t *idx;     /* [n] example indices into ds, owned */
    uint32_t n;
} sample_view;

void sample_view_free(sample_view *v);

/* Every example of ds in file order. */
hl_status sample_view_all(sample_view *out, const dataset *ds, hl_err *err);

/* counts[c] = examples of class c in the view (counts has ds->n_classes entries). */
void sample_view_class_counts(uint32_t *counts, const sample_view *v);

typedef struct sample_opts {
    uint64_t seed;    /* data seed (MeZO / LM-BFF: 13, 21, 42, 87, 100) */
    int32_t k_train;  /* > 0: k examples per class for train (LM-BFF k-shot) */
    int32_t k_dev;    /* > 0: k per class for dev */
    int64_t n_train;  /* > 0: train size (MeZO OPT: 1000); 0: all that is left */
    int64_t n_dev;    /* > 0: dev size (MeZO OPT: 500) */
    int64_t n_test;   /* > 0: at most this many test examples (MeZO: 1000); 0: all */
    bool dev_from_train; /* draw dev from the train source even if a dev source exists */
} sample_opts;

typedef struct sample_splits {
    sample_view train, dev, test; /* empty (n = 0, idx = NULL) when not made */
} sample_splits;

/* Make train/dev/test views.  train_src is required; dev_src and test_src
 * may be NULL.
 *
 * The train source is shuffled once with splitmix64(seed) and carved in this
 * order, each part disjoint from the previous ones:
 *   1. train, when sized: the first k_train of each class (LM-BFF), or the
 *      first n_train examples (MeZO);
 *   2. dev, when dev_src is NULL or dev_from_train: the next k_dev of each
 *      class, or the next n_dev examples (none when both are 0);
 *   3. test, when test_src is NULL and n_test > 0: the next n_test examples;
 *   4. train, when unsized: everything left.
 * A separate dev source gives k_dev per class / n_dev examples drawn with
 * seed + 1, or all of it in file order when both are 0; a separate test
 * source gives n_test examples drawn with seed + 2, or all of it.  Sampled
 * views keep the shuffled order.  Asking for more than exists (per class for
 * k) is an error naming the class and the counts.
 *
 * Recipes: LM-BFF k-shot from full data = {k_train = k_dev = 16} with the
 * original train as train_src and original dev as test_src; MeZO OPT =
 * {n_train = 1000, n_dev = 500, n_test = 1000, dev_from_train}; one file
 * split in three = {n_dev, n_test} with only train_src; a prepared folder
 * (LM-BFF k-shot, the bundled sets) = all zero with all three sources. */
hl_status sample_make_splits(sample_splits *out, const dataset *train_src,
                             const dataset *dev_src, const dataset *test_src,
                             const sample_opts *opts, hl_err *err);

void sample_splits_free(sample_splits *s);

/* --- batches -------------------------------------------------------------- */

/* Where a run is in its data: batch `step` of the order defined by `seed`.
 * This is all a checkpoint needs to store. */
typedef struct sample_cursor {
    uint64_t seed;
    uint64_t step;
} sample_cursor;

/* Batches over positions 0..n-1 of a view.  Epoch e: positions are shuffled
 * with sample_seed_derive(seed, e); with lengths, each window of
 * group * batch consecutive shuffled positions is sorted by (length, shuffled
 * rank) and cut into batches, so batches hold similar lengths (less padding);
 * the batch order is then shuffled with the same generator.  Every epoch has
 * ceil(n / batch) batches; only the last of a window can be short (at the
 * epoch's end). */
typedef struct sample_batcher {
    uint32_t n;              /* positions */
    uint32_t batch;          /* batch size B */
    uint32_t group;          /* length-grouping window, in batches (0 = no grouping) */
    uint64_t seed;
    const uint32_t *lens;    /* [n] token lengths, borrowed; NULL = no grouping */
    uint32_t n_batches;      /* per epoch = ceil(n / B) */
    uint32_t *order;         /* [n] the cached epoch's positions, batch by batch */
    uint32_t *scratch;       /* [n] sort scratch */
    uint32_t *bstart;        /* [n_batches] start of each batch in order, in batch order */
    uint64_t cached_epoch;
    bool cached;
} sample_batcher;

hl_status sample_batcher_init(sample_batcher *b, uint32_t n, uint32_t batch,
                              const uint32_t *lens, uint32_t group, uint64_t seed,
                              hl_err *err);
void sample_batcher_free(sample_batcher *b);

/* Positions (into the view) of batch `step`: writes up to b->batch values to
 * out and returns how many.  Recomputes the epoch's order when the epoch
 * changes (O(n log n), no allocation); a pure function of (seed, step). */
uint32_t sample_batcher_get(uint32_t *out, sample_batcher *b, uint64_t step);

/* sample_batcher_get for cur->step, then cur->step++. */
uint32_t sample_batcher_next(uint32_t *out, sample_batcher *b, sample_cursor *cur);

/* Positions 0..n-1 ordered by (length, position), for evaluation batches
 * with little padding.  scratch has n entries. */
void sample_order_by_length(uint32_t *out, uint32_t *scratch, const uint32_t *lens, uint32_t n);

#endif
