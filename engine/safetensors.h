/* safetensors.h - read and write Hugging Face .safetensors files.
 *
 * Reading maps the file read-only and validates the whole header before any
 * tensor is handed out: every length and offset comes from a possibly hostile
 * file, so all of them are checked.  A tensor is
 * a view into the mapping; st_tensor_to_f32 converts it to fp32 master weights.
 * st_model_open resolves a model folder: one file or shards plus an index.
 * Writing is atomic (temp file, fsync, rename, fsync of the directory).
 *
 * Leaves out: pickle checkpoints (never loaded, only recognised to say how to
 * convert them), big-endian hosts, dtypes beyond the ten listed below (F8 and
 * complex types are rejected with a clear error), integer -> fp32 conversion,
 * shape dims and offsets above 2^53 (cJSON reads numbers as doubles, so larger
 * values could not be read exactly; no real file needs them), and protection
 * against another process truncating a file while it is mapped (that raises
 * SIGBUS, as with any mmap reader).  Messages replace control bytes from
 * names with '?', so a hostile name cannot write escapes to the terminal.
 *
 * Ownership: st_file_open / st_model_open allocate everything they hand out
 * (tensor table, names, metadata, the mapping); the pointers stay valid until
 * st_file_close / st_model_close.  Callers own the output buffers of the
 * conversions and everything passed to st_write (which copies nothing it
 * keeps).
 */
#ifndef HELENE_SAFETENSORS_H
#define HELENE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define ST_MAX_DIMS 8                         /* tensors with more dims are rejected */
#define ST_HEADER_MAX UINT64_C(100000000)     /* N <= 100 MB, as the reference reader */

typedef enum st_dtype {
    ST_DTYPE_F64,
    ST_DTYPE_F32,
    ST_DTYPE_F16,
    ST_DTYPE_BF16,
    ST_DTYPE_I64,
    ST_DTYPE_I32,
    ST_DTYPE_I16,
    ST_DTYPE_I8,
    ST_DTYPE_U8,
    ST_DTYPE_BOOL,
    ST_DTYPE_COUNT
} st_dtype;

/* Bytes per element (0 for an invalid value). */
size_t st_dtype_size(st_dtype dt);
/* "F16", "BF16", ... ("?" for an invalid value). */
const char *st_dtype_name(st_dtype dt);
/* Parse a header dtype string; returns -1 if unknown. */
int st_dtype_from_name(const char *s);

/* One tensor of an open file.  data points into the read-only mapping and may
 * be unaligned: read it with memcpy or the conversions below, never by
 * casting.  For a 0-element tensor nbytes is 0 and data must not be read. */
typedef struct st_tensor {
    const char *name;            /* owned by the st_file */
    const char *path;            /* the file it lives in (for messages), owned by the st_file */
    st_dtype dtype;
    int32_t ndim;                /* 0 (scalar) .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];  /* [ndim], the rest 0 */
    uint64_t n_elems;            /* prod(shape), 1 for a scalar */
    uint64_t nbytes;             /* n_elems * st_dtype_size(dtype) */
    uint64_t offset;             /* begin of data_offsets, from the buffer start */
    const void *data;            /* into the mapping */
} st_tensor;

typedef struct st_file {
    char *path;                  /* owned copy of the path given to st_file_open */
    const uint8_t *map;          /* [map_size] read-only mapping of the whole file */
    size_t map_size;
    uint64_t header_len;         /* N */
    const uint8_t *buffer;       /* map + 8 + N: start of the data buffer */
    uint64_t buffer_size;
    st_tensor *tensors;          /* [n_tensors] in header order */
    int32_t n_tensors;
    int32_t *by_name;            /* [n_tensors] tensor indices sorted by name */
    const char **meta;           /* [2 * n_meta] key, value, key, value, ... sorted by key */
    int32_t n_meta;
    char *strings;               /* arena holding names, keys and values */
} st_file;

/* Open, map and validate path.  On failure f is left closed (safe to pass to
 * st_file_close) and err names the file and, when one is involved, the
 * tensor.  Codes: HL_ERR_IO (open/stat/mmap), HL_ERR_FORMAT (anything wrong
 * with the contents, including an unknown dtype), HL_ERR_NOMEM. */
hl_status st_file_open(st_file *f, const char *path, hl_err *err);
void st_file_close(st_file *f);

/* The tensor with this name, or NULL.  O(log n). */
const st_tensor *st_file_find(const st_file *f, const char *name);
/* Iteration in header order: for (i = 0; i < st_file_count(f); i++) st_file_tensor(f, i). */
static inline int32_t st_file_count(const st_file *f) { return f->n_tensors; }
static inline const st_tensor *st_file_tensor(const st_file *f, int32_t i) { return &f->tensors[i]; }
/* A __metadata__ value, or NULL if the key is absent. */
const char *st_file_meta(const st_file *f, const char *key);

/* Convert a F32/F16/BF16/F64 tensor to fp32 (out has n_elems floats).  F16
 * subnormals, infinities and NaNs are exact; F64 rounds to nearest.  Other
 * dtypes -> HL_ERR_INVALID naming the file and tensor. */
hl_status st_tensor_to_f32(const st_tensor *t, float *out, hl_err *err);

/* As st_tensor_to_f32 for a 2-D tensor [R, C], writing its transpose [C, R]
 * (GPT-2's Conv1D weights are stored [in, out]; the engine wants [out, in]).
 * Not 2-D -> HL_ERR_INVALID. */
hl_status st_tensor_to_f32_transposed(const st_tensor *t, float *out, hl_err *err);

/* ---- model folders ---- */

typedef struct st_model_entry {
    const char *name;            /* owned by the shard's st_file */
    int32_t file;                /* index into files */
    int32_t tensor;              /* index into files[file].tensors */
} st_model_entry;

typedef struct st_model {
    char *dir;                   /* owned copy */
    st_file *files;              /* [n_files] one per shard (1 without an index) */
    int32_t n_files;
    st_model_entry *entries;     /* [n_entries] every tensor of every shard, sorted by name */
    int32_t n_entries;
} st_model;

/* Open DIR/model.safetensors, or else DIR/model.safetensors.index.json and its
 * shards.  The index must be consistent with the shards: every shard a plain
 * file name that exists, every mapped tensor in the shard the map names, no
 * tensor in two shards and none missing from the map.  A folder with only
 * pytorch_model.bin gets HL_ERR_INVALID explaining how to convert it. */
hl_status st_model_open(st_model *m, const char *dir, hl_err *err);
void st_model_close(st_model *m);
/* Search every shard; NULL if absent. */
const st_tensor *st_model_find(const st_model *m, const char *name);
/* Iteration in name order. */
static inline int32_t st_model_count(const st_model *m) { return m->n_entries; }
const st_tensor *st_model_tensor(const st_model *m, int32_t i);

/* ---- writing ---- */

/* How st_write_tensor.data is laid out. */
typedef enum st_src {
    ST_SRC_RAW, /* already in dtype's little-endian layout: written as is */
    ST_SRC_F32, /* fp32 values, converted to dtype (F64, F32, F16 or BF16) with
                 * round-to-nearest-even; NaN stays NaN, overflow becomes inf */
    ST_SRC_F32_T, /* as ST_SRC_F32, from a 2-D source stored transposed: data is
                   * [shape[1], shape[0]] row-major, the file gets [shape[0],
                   * shape[1]] (GPT-2's Conv1D weights, written without a copy) */
} st_src;

typedef struct st_write_tensor {
    const char *name;            /* non-empty, not "__metadata__", unique */
    st_dtype dtype;              /* as stored in the file */
    st_src src;
    int32_t ndim;                /* 0 .. ST_MAX_DIMS */
    const int64_t *shape;        /* [ndim], each >= 0 */
    const void *data;            /* may be NULL only for 0 elements */
} st_write_tensor;

/* Write n tensors (in the given order, contiguous offsets) and n_meta
 * __metadata__ pairs meta_kv[2i], meta_kv[2i+1] to path.  The header is padded
 * with spaces to a multiple of 8.  Writes path.tmp.PID, fsyncs it, renames it
 * over path and fsyncs the directory; on failure before the rename the temp
 * file is removed and an existing file at path is untouched.  If only the
 * directory fsync fails, HL_ERR_IO is returned but the new file is in place.
 * The file gets mode 0644 less the umask.  Not safe for two threads of one
 * process writing the same path at once (they share the temp name). */
hl_status st_write(const char *path, const st_write_tensor *tensors, int n,
                   const char *const *meta_kv, int n_meta, hl_err *err);

/* Scalar conversions, exposed for tests and for code converting on the fly. */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);  /* round to nearest even */
uint16_t st_f32_to_bf16(float f); /* round to nearest even */

#endif
