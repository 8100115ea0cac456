/* dataset.h - read classification examples from TSV, CSV, JSONL files and folders.
 *
 * A dataset is one file's examples for one task: each example keeps its
 * text fields (in the task's field order), its class index and the line it
 * started on.  Formats (chosen by the task's "inputs" and the file name):
 *   .tsv   tab-separated, GLUE style: no quoting, a '"' is a plain character;
 *   .csv   comma-separated, RFC 4180: "quoted, fields" with "" for a quote
 *          and line breaks allowed inside quotes;
 *   .jsonl one JSON object per line (SuperGLUE; also .json); dotted paths
 *          reach nested keys and "[]" iterates arrays (MultiRC: one example
 *          per answer);
 *   a file with another extension is read with the task's first layout.
 * TSV/CSV have a header row naming columns, or use 0-based column numbers.
 * A UTF-8 BOM, CRLF line ends, blank lines (skipped and counted) and lines of
 * any length are handled.  Anything else wrong with a record - a label
 * outside the declared set, a missing field, invalid UTF-8 or a NUL byte, a
 * wrong number of columns, bad JSON - is an error naming file:line and what
 * was expected, or, with skip_bad, skipped and counted (n_bad, first_bad).
 * Labels listed in the task's "skip_labels" (SNLI's "-") are dropped and
 * counted in n_filtered.  A file with no examples is an error.
 *
 * Folders (LM-BFF k-shot and GLUE/SuperGLUE layouts): a split is found as
 *   train: train.*            dev: dev.*, dev_matched.*, val.*, validation.*
 *   test:  test.*, test_matched.*
 * with extension tsv, csv or jsonl, in the order of the task's inputs.  Only
 * the requested split is read, so an unlabeled SuperGLUE test.jsonl does not
 * get in the way of dev.
 *
 * Leaves out: sampling and batching (sample.h), tokenization, unlabeled data.
 *
 * Ownership: dataset_load* fill a caller-provided dataset that owns all its
 * arrays and text; dataset_free releases them.  Field pointers from
 * dataset_example_view borrow from the dataset.
 */
#ifndef HELENE_DATASET_H
#define HELENE_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "task.h"

typedef enum dataset_split {
    DATASET_SPLIT_TRAIN = 0,
    DATASET_SPLIT_DEV = 1,
    DATASET_SPLIT_TEST = 2,
} dataset_split;

typedef struct dataset_example {
    int32_t label; /* class index into task.classes */
    int32_t sub;   /* JSONL "[]" layouts: index within its record; else 0 */
    int64_t line;  /* 1-based line the record starts on */
} dataset_example;

typedef struct dataset_opts {
    bool skip_bad; /* skip and count bad records instead of failing */
} dataset_opts;

typedef struct dataset {
    char *path;                 /* the file read */
    int32_t n_fields;           /* = task.n_fields */
    int32_t n_classes;          /* = task.n_classes */
    uint32_t n;                 /* examples */
    dataset_example *ex;        /* [n] */
    uint64_t *field_off;        /* [n * n_fields] offsets into text */
    uint32_t *field_len;        /* [n * n_fields] byte lengths (text is also NUL-terminated) */
    char *text;                 /* all field bytes */
    size_t text_len, text_cap;
    uint32_t max_len[TASK_MAX_FIELDS];     /* longest value of each field, bytes */
    uint32_t class_count[TASK_MAX_CLASSES]; /* examples per class */
    int32_t input;              /* which task.inputs layout was used */
    /* load report */
    int64_t n_lines;            /* physical lines read */
    int64_t n_records;          /* non-blank records (header excluded) */
    int64_t n_blank;            /* blank lines skipped */
    int64_t n_bad;              /* bad records skipped (skip_bad) */
    int64_t n_filtered;         /* records dropped by the task's skip_labels */
    char first_bad[HL_ERR_MSG_MAX]; /* message of the first skipped bad record, or "" */
} dataset;

void dataset_init(dataset *ds);
void dataset_free(dataset *ds);

/* Read one file.  opts may be NULL (strict). */
hl_status dataset_load_file(dataset *ds, const task *t, const char *path,
                            const dataset_opts *opts, hl_err *err);

/* Path of a folder's split file into out[0, cap).  HL_ERR_IO when absent,
 * with a message listing the names tried. */
hl_status dataset_find_split(char *out, size_t cap, const task *t, const char *dir,
                             dataset_split split, hl_err *err);

/* A file, or a folder's split file (split ignored for a file). */
hl_status dataset_load(dataset *ds, const task *t, const char *path, dataset_split split,
                       const dataset_opts *opts, hl_err *err);

/* True when path names a folder. */
bool dataset_is_folder(const char *path);

/* "train", "dev", "test". */
const char *dataset_split_name(dataset_split split);

/* Parse "train" / "dev" / "test" (also "val", "validation"); false if unknown. */
bool dataset_split_parse(dataset_split *out, const char *name);

/* Example i's fields and label for the renderer (borrows ds). */
void dataset_example_view(task_example *out, const dataset *ds, uint32_t i);

/* Field f of example i (NUL-terminated, borrows ds); its byte length goes
 * to *len unless len is NULL. */
const char *dataset_field(uint32_t *len, const dataset *ds, uint32_t i, int32_t f);

/* Strict UTF-8 check (no overlongs, surrogates or code points > U+10FFFF).
 * Returns true when valid; otherwise the offset of the first bad byte goes
 * to *bad_at (bad_at may be NULL). */
bool dataset_utf8_valid(size_t *bad_at, const char *s, size_t n);

#endif
