/* bpe_derive.h - the files of a byte-level BPE tokenizer, and a vocabulary
 * derived from (a prefix of) a merge list.
 *
 * `helene pretrain --max-merges N` trains a model on the first N merges of
 * GPT-2's list (a smaller vocabulary for a small model): the vocabulary is
 * then the 256 byte tokens, every merge's result in order, and the
 * family's special tokens, written as vocab.json and merges.txt text that
 * bpe_load reads and that a checkpoint and the output folder carry.
 * Leaves out: training merges from a corpus (the list is given).
 */
#ifndef HELENE_BPE_DERIVE_H
#define HELENE_BPE_DERIVE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* vocab.json and merges.txt of a tokenizer, in memory (malloc'd). */
typedef struct bpe_files {
    char *vocab;
    size_t vocab_len;
    char *merges;
    size_t merges_len;
} bpe_files;

void bpe_files_free(bpe_files *t);

/* The vocabulary of the first max_merges merges of merges_path (0 = all;
 * fewer is an error): ids 0.. for first[0..n_first), then the 256 bytes in
 * GPT-2's alphabet, then each merge's result the first time it appears,
 * then `last` (NULL: none); merges.txt is the used lines under a #version
 * header.  *out is filled only on success. */
hl_status bpe_derive(bpe_files *out, const char *merges_path, int32_t max_merges,
                     const char *const *first, int n_first, const char *last, hl_err *err);

#endif
