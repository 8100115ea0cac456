/* params.h - the trainable set: one fp32 arena plus a table of layers.
 *
 * Everything that perturbs, updates, clips or reports per layer (the
 * optimizers, telemetry, the TUI) sees only this.  A layer is one named
 * tensor occupying data[offset, offset + size).  The arena need not be a
 * model's own weights: LoRA adapters or prefix parameters are just another
 * param_set.  Optimizer state arenas (m, h, ...) reuse the same offsets.
 *
 * Ownership: param_set_init allocates the layer table; the arena is either
 * allocated by param_set_alloc (owned, freed by param_set_free) or attached
 * by the caller (not owned).
 */
#ifndef HELENE_PARAMS_H
#define HELENE_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define PARAM_NAME_MAX 128
#define PARAM_MAX_DIMS 4

typedef struct param_layer {
    char name[PARAM_NAME_MAX]; /* e.g. "decoder.layers.3.fc1.weight" */
    int32_t ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t offset;             /* in floats, from the arena start; 16-float aligned */
    size_t size;               /* number of floats = prod(shape) */
    bool decay;                /* weight decay applies (false for bias and norms) */
    int32_t block;             /* transformer block index, -1 for embeddings/head */
    bool frozen;               /* not tuned: optimizers neither perturb nor update it */
} param_layer;

typedef struct param_set {
    float *data;               /* [n] the arena, 64-byte aligned */
    size_t n;                  /* total floats including alignment padding */
    param_layer *layers;       /* [n_layers] ordered by offset */
    int n_layers;
    int cap_layers;
    bool owns_data;
} param_set;

void param_set_init(param_set *ps);
void param_set_free(param_set *ps);

/* Append a layer (before param_set_alloc). Offsets are assigned in order and
 * padded to 16 floats so each layer starts on a 64-byte boundary. */
hl_status param_set_add(param_set *ps, const char *name, int32_t ndim, const int64_t *shape,
                        bool decay, int32_t block, hl_err *err);

/* Memory for an arena of `bytes` (free with free()): 64-byte aligned; from
 * 4 MiB on, 2 MiB aligned and advised to the kernel as huge pages
 * (madvise MADV_HUGEPAGE), so first touching it takes 512x fewer page
 * faults (in a VM: seconds a gigabyte) and the passes over it fewer TLB
 * misses.  Not written: the caller touches every page. */
void *param_arena_alloc(size_t bytes);

/* Allocate and zero the arena for the layers added so far. */
hl_status param_set_alloc(param_set *ps, hl_err *err);

/* Index of the layer with this name, or -1. */
int param_set_find(const param_set *ps, const char *name);

/* Floats a layer of `size` occupies in an arena: padded to 16 (64 bytes),
 * so every layer starts on a cache line.  State arenas use the same rule. */
#define PARAM_ALIGN_FLOATS 16
static inline size_t param_padded_size(size_t size)
{
    return (size + PARAM_ALIGN_FLOATS - 1) / PARAM_ALIGN_FLOATS * PARAM_ALIGN_FLOATS;
}

/* Pointer to a layer's first float. */
static inline float *param_layer_data(const param_set *ps, int i)
{
    return ps->data + ps->layers[i].offset;
}

/* Number of floats in all layers (excluding padding). */
size_t param_set_count(const param_set *ps);

/* Floats and layers that are not frozen. */
size_t param_set_count_trainable(const param_set *ps, int *n_layers);

/* A 64-bit fingerprint of the layers' values (and names and shapes), to
 * tell whether two arenas hold the same weights.  Not cryptographic. */
uint64_t param_set_hash(const param_set *ps);

/* Freeze every layer whose name does not match pattern, a POSIX extended
 * regular expression searched anywhere in the name ("" or NULL: tune all).
 * A pattern that does not compile or matches no layer is an error that
 * names it, and changes nothing. */
hl_status param_set_select(param_set *ps, const char *pattern, hl_err *err);

#endif
