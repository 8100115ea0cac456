/* lm.h - a language model folder: weights + tokenizer, and text scoring.
 *
 * Everything a command needs to go from a Hugging Face folder to numbers:
 * load model.safetensors/config.json (model.h) and vocab.json + merges.txt
 * (bpe.h), apply the family's BOS convention, and score text.  Also sets up
 * the compute threads (the pool and OpenBLAS) so results do not depend on
 * who called first.  Leaves out: tokenizer.json (Llama, later).
 */
#ifndef HELENE_LM_H
#define HELENE_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bpe.h"
#include "err.h"
#include "model.h"
#include "pool.h"

typedef struct lm {
    model model;
    bpe tok;
    pool pool;
    int n_threads;
} lm;

/* A model "folder" spelled random:tiny or random:small is an untrained
 * GPT-2-architecture model (seeded, 2 x 64 or 4 x 128, 512 positions) with
 * the bundled GPT-2 tokenizer: the workbench's default until a pretrained
 * bundled model exists.  Nothing is downloaded or read besides the vocabulary. */
#define LM_RANDOM_PREFIX "random:"
#define LM_DEFAULT_MODEL "random:small"
/* The bundled pretrained model's folder, relative to the data folders. */
#define LM_BUNDLED_MODEL "default-model"

/* Start n_threads compute threads (the pool and OpenBLAS) and load DIR.
 * On failure everything is released and err names the file. */
hl_status lm_open(lm *l, const char *dir, int n_threads, hl_err *err);
void lm_close(lm *l);

/* Find a bundled data file (e.g. "gpt2/vocab.json") in $HELENE_DATA_DIR,
 * the source tree, then the installed pkgdatadir.  False if none has it. */
bool lm_bundled_path(char *out, size_t cap, const char *rel);

/* Set OpenBLAS's thread count (process-wide). */
void lm_set_blas_threads(int n);

/* Token ids of text with the family's BOS prepended when it uses one
 * (RoBERTa: <s> + text + </s>).
 * *ids is malloc'ed, owned by the caller. */
hl_status lm_encode(const lm *l, const char *text, size_t len, int32_t **ids, size_t *n,
                    hl_err *err);

/* Mean NLL per predicted token of a text: BOS + every text token predicted
 * (OPT), or tokens 2..N predicted from their prefixes (GPT-2); for a masked
 * LM (RoBERTa) the pseudo-log-likelihood: every text token predicted with it
 * alone replaced by <mask>, in windows of max_pos - 2 tokens.  Texts longer
 * than the context are scored in consecutive windows that each start where
 * the last one ended (with BOS again for BOS families), so each token is
 * predicted exactly once. */
hl_status lm_score_text(lm *l, double *out_nll, size_t *out_tokens, const char *text, size_t len,
                        hl_err *err);

#endif
