/* params.c - see params.h. */
#include "params.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void param_set_init(param_set *ps)
{
    memset(ps, 0, sizeof *ps);
}

void param_set_free(param_set *ps)
{
    if (ps->owns_data)
        free(ps->data);
    free(ps->layers);
    memset(ps, 0, sizeof *ps);
}

hl_status param_set_add(param_set *ps, const char *name, int32_t ndim, const int64_t *shape,
                        bool decay, int32_t block, hl_err *err)
{
    if (ps->data)
        return hl_err_set(err, HL_ERR_INVALID, "param_set_add after alloc (%s)", name);
    if (ndim < 1 || ndim > PARAM_MAX_DIMS)
        return hl_err_set(err, HL_ERR_INVALID, "%s: %d dimensions (1..%d allowed)", name, ndim,
                          PARAM_MAX_DIMS);
    if (strlen(name) >= PARAM_NAME_MAX)
        return hl_err_set(err, HL_ERR_INVALID, "tensor name too long: %.60s...", name);
    size_t size = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0 || (uint64_t)shape[d] > SIZE_MAX / 4 / size)
            return hl_err_set(err, HL_ERR_INVALID, "%s: bad dimension %lld", name,
                              (long long)shape[d]);
        size *= (size_t)shape[d];
    }
    if (ps->n_layers == ps->cap_layers) {
        int cap = ps->cap_layers ? ps->cap_layers * 2 : 32;
        param_layer *nl = realloc(ps->layers, (size_t)cap * sizeof *nl);
        if (!nl)
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for layer table");
        ps->layers = nl;
        ps->cap_layers = cap;
    }
    param_layer *l = &ps->layers[ps->n_layers++];
    memset(l, 0, sizeof *l);
    strcpy(l->name, name);
    l->ndim = ndim;
    memcpy(l->shape, shape, (size_t)ndim * sizeof *shape);
    l->offset = ps->n;
    l->size = size;
    l->decay = decay;
    l->block = block;
    ps->n += param_padded_size(size);
    return HL_OK;
}

void *param_arena_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    const bool big = bytes >= 2 * huge;
    void *mem = NULL;
    if (posix_memalign(&mem, big ? huge : 64, bytes ? bytes : 64) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (big) /* a hint: refused or ignored, the arena just keeps 4 KiB pages */
        (void)madvise(mem, bytes / huge * huge, MADV_HUGEPAGE);
#endif
    return mem;
}

hl_status param_set_alloc(param_set *ps, hl_err *err)
{
    size_t bytes = (ps->n ? ps->n : PARAM_ALIGN_FLOATS) * sizeof(float);
    void *mem = param_arena_alloc(bytes);
    if (!mem)
        return hl_err_set(err, HL_ERR_NOMEM, "cannot allocate %zu MiB for parameters",
                          bytes >> 20);
    memset(mem, 0, bytes);
    ps->data = mem;
    ps->owns_data = true;
    return HL_OK;
}

int param_set_find(const param_set *ps, const char *name)
{
    for (int i = 0; i < ps->n_layers; i++)
        if (strcmp(ps->layers[i].name, name) == 0)
            return i;
    return -1;
}

size_t param_set_count(const param_set *ps)
{
    size_t n = 0;
    for (int i = 0; i < ps->n_layers; i++)
        n += ps->layers[i].size;
    return n;
}

size_t param_set_count_trainable(const param_set *ps, int *n_layers)
{
    size_t n = 0;
    int k = 0;
    for (int i = 0; i < ps->n_layers; i++)
        if (!ps->layers[i].frozen) {
            n += ps->layers[i].size;
            k++;
        }
    if (n_layers)
        *n_layers = k;
    return n;
}

hl_status param_set_select(param_set *ps, const char *pattern, hl_err *err)
{
    if (!pattern || !*pattern) {
        for (int i = 0; i < ps->n_layers; i++)
            ps->layers[i].frozen = false;
        return HL_OK;
    }
    regex_t re;
    int rc = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char why[128];
        regerror(rc, &re, why, sizeof why);
        return hl_err_set(err, HL_ERR_INVALID,
                          "trainable: '%.200s' is not a valid regular expression (%s)", pattern,
                          why);
    }
    int matched = 0;
    for (int i = 0; i < ps->n_layers; i++)
        if (regexec(&re, ps->layers[i].name, 0, NULL, 0) == 0)
            matched++;
    if (matched == 0) {
        regfree(&re);
        return hl_err_set(err, HL_ERR_INVALID,
                          "trainable: '%.200s' matches none of the %d tensor names (they look "
                          "like '%s'; helene info --tensors lists them)",
                          pattern, ps->n_layers, ps->n_layers ? ps->layers[0].name : "");
    }
    for (int i = 0; i < ps->n_layers; i++)
        ps->layers[i].frozen = regexec(&re, ps->layers[i].name, 0, NULL, 0) != 0;
    regfree(&re);
    return HL_OK;
}

uint64_t param_set_hash(const param_set *ps)
{
    /* FNV-1a over 64-bit words, each word mixed in whole: a fraction of a
     * second for 125M parameters */
    uint64_t h = 0xcbf29ce484222325ull;
    const uint64_t prime = 0x100000001b3ull;
    for (int l = 0; l < ps->n_layers; l++) {
        const param_layer *pl = &ps->layers[l];
        for (const char *c = pl->name; *c; c++)
            h = (h ^ (uint8_t)*c) * prime;
        for (int d = 0; d < pl->ndim; d++)
            h = (h ^ (uint64_t)pl->shape[d]) * prime;
        const float *p = ps->data + pl->offset;
        size_t k = 0;
        for (; k + 2 <= pl->size; k += 2) {
            uint64_t w;
            memcpy(&w, p + k, sizeof w);
            h = (h ^ w) * prime;
        }
        if (k < pl->size) {
            uint32_t w;
            memcpy(&w, p + k, sizeof w);
            h = (h ^ w) * prime;
        }
    }
    return h;
}
