/* pretrain.h - training a causal LM from scratch (`helene pretrain`).
 *
 * The pieces, in the order a run uses them:
 *  - options: one table of keys (the command's flag names) shared by the
 *    command line, --config JSON files and checkpoints;
 *  - tokenizer: GPT-2 byte-level BPE.  Either a vocab.json + merges.txt
 *    pair used as is (the bundled GPT-2 files by default, or --vocab and
 *    --merges, e.g. data/corpus/make_vocab.py's truncated tokenizer), or,
 *    with --merges alone or --max-merges M, a vocabulary derived from (the
 *    first M lines of) a merge list: OPT's <s> <pad> </s> <unk> (GPT-2:
 *    <|endoftext|> last), the 256 byte tokens in byte order, then one token
 *    per merge - the layout make_vocab.py writes.  A truncated merge list
 *    is a valid smaller vocabulary; the model's vocab_size is the
 *    tokenizer's size (max id + 1);
 *  - corpus: plain UTF-8 text files, tokenized once into one token stream
 *    (files concatenated in the given order).  The held-out set is --heldout
 *    FILE, or else the last heldout_fraction (default 1%) of the stream, cut
 *    before any training sequence is formed so no held-out token is trained
 *    on.  The training stream is cut into consecutive windows of context
 *    tokens (context − 1 after OPT's BOS, which every sequence starts with);
 *  - batches: step t (1-based) takes the sequences (t−1)·B .. t·B−1 of the
 *    concatenated epochs, epoch e being a Fisher-Yates permutation seeded by
 *    (seed, e): a pure function of (seed, t), so a resumed run sees exactly
 *    the batches an uninterrupted one would;
 *  - training: GPT-2 initialisation (N(0, 0.02), residual projections
 *    scaled by 1/sqrt(2L), norms 1, biases 0) from the seed, backward_lm on
 *    micro-batches, AdamW with warm-up + cosine (adamw.h);
 *  - checkpoints: a folder (params.safetensors, adamw.safetensors,
 *    pretrain.json, the tokenizer files) written as DIR.tmp-PID and swapped
 *    in with one atomic rename, like engine/checkpoint.c; resuming restores
 *    θ, the AdamW state and the step, re-tokenizes the corpus and checks it
 *    is the same token stream, and continues bit-identically;
 *  - output: a Hugging Face folder (config.json in the family's HF format,
 *    model.safetensors F32/F16/BF16, vocab.json, merges.txt,
 *    tokenizer_config.json, special_tokens_map.json for OPT, and
 *    pretrain.json with what was done) that model_load / lm_open read.
 *
 * Leaves out: data-parallel training, mixed precision, streaming corpora
 * larger than memory (the token stream is held as int32), dropout.
 * Ownership: everything a run allocates is freed before pretrain_run
 * returns; options are plain values (paths are copied in).
 */
#ifndef HELENE_PRETRAIN_H
#define HELENE_PRETRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "adamw.h"
#include "bpe.h"
#include "err.h"
#include "model.h"
#include "safetensors.h"

#define PRETRAIN_PATH_MAX 1024
#define PRETRAIN_MAX_FILES 64
#define PRETRAIN_FORMAT "helene-pretrain"
#define PRETRAIN_VERSION 1

typedef struct pretrain_opts {
    /* architecture */
    model_family family;       /* "family": opt (default) or gpt2 */
    int32_t n_layers;          /* "layers" */
    int32_t d_model;           /* "hidden" */
    int32_t n_heads;           /* "heads" */
    int32_t d_ffn;             /* "ffn" (0: 4 x hidden) */
    int32_t context;           /* "context": tokens per sequence = max positions */
    /* tokenizer */
    char vocab[PRETRAIN_PATH_MAX];  /* "vocab": "" = bundled or derived */
    char merges[PRETRAIN_PATH_MAX]; /* "merges": "" = bundled */
    int32_t max_merges;        /* "max_merges": > 0 derives a vocabulary from the first M */
    /* data */
    char corpus[PRETRAIN_MAX_FILES][PRETRAIN_PATH_MAX]; /* "corpus" */
    int n_corpus;
    char heldout[PRETRAIN_PATH_MAX]; /* "heldout": "" = the last heldout_fraction */
    double heldout_fraction;   /* "heldout_fraction" */
    /* optimisation */
    int32_t batch;             /* "batch": sequences per step */
    int32_t micro_batch;       /* "micro_batch": sequences per forward/backward (0: batch) */
    int64_t steps;             /* "steps" */
    adamw_config adamw;        /* "lr", "min_lr_ratio", "warmup", "weight_decay", "clip",
                                * "beta1", "beta2", "eps"; total_steps = steps */
    uint64_t seed;             /* "seed": initialisation and data order */
    /* running (may change on resume) */
    int32_t threads;           /* "threads" */
    int64_t eval_every;        /* "eval_every": 0 = at the end only */
    int64_t eval_seqs;         /* "eval_seqs": held-out sequences per evaluation, 0 = all */
    int64_t checkpoint_every;  /* "checkpoint_every": 0 = at the end only (with save) */
    int64_t log_every;         /* "log_every" */
    int64_t stop_at;           /* "stop_at": stop after this step with a checkpoint, as if
                                * interrupted (training in sessions); 0 = off */
    char save[PRETRAIN_PATH_MAX];   /* "save": checkpoint folder, "" = none */
    char out[PRETRAIN_PATH_MAX];    /* "out": the Hugging Face folder written at the end */
    st_dtype out_dtype;        /* "dtype": F32, F16 or BF16 */
} pretrain_opts;

void pretrain_opts_default(pretrain_opts *o);

/* Set one option from text ("layers" "4", "corpus" "a.txt" appends a file,
 * "family" "gpt2", "dtype" "F16", ...).  Unknown keys and bad values are
 * errors naming the key. */
hl_status pretrain_opts_set(pretrain_opts *o, const char *key, const char *value, hl_err *err);

/* The option names, in the order of the JSON record: i in
 * [0, PRETRAIN_N_OPTS), NULL past the end.  The command line's flags are
 * these with '_' -> '-'. */
#define PRETRAIN_N_OPTS 33
const char *pretrain_opt_name(int i);

/* True for the keys that may differ when resuming (threads, out, save,
 * steps, stop_at, eval/checkpoint/log intervals, eval_seqs, dtype); every other key
 * is fixed by the checkpoint. */
bool pretrain_key_may_change_on_resume(const char *key);

/* Apply a JSON object {key: value} (numbers, strings, booleans; "corpus"
 * may be a string or an array of strings). */
hl_status pretrain_opts_load_json(pretrain_opts *o, const char *path, hl_err *err);

/* The same for a parsed object (a checkpoint's "options"); where names it in
 * errors.  A "corpus" member replaces the corpus list. */
struct cJSON;
hl_status pretrain_opts_apply_json(pretrain_opts *o, const struct cJSON *j, const char *where,
                                   hl_err *err);

/* The options as a JSON object (malloc'ed text, caller frees; NULL on OOM). */
char *pretrain_opts_to_json(const pretrain_opts *o);

/* Check ranges and consistency (heads divide hidden, a corpus is given,
 * ...).  Run before any work starts. */
hl_status pretrain_opts_check(const pretrain_opts *o, hl_err *err);

/* ---------------------------------------------------------------- data --- */

typedef struct pretrain_corpus {
    int32_t *train;        /* [n_train] token stream (owned) */
    size_t n_train;
    int32_t *heldout;      /* [n_heldout] (owned) */
    size_t n_heldout;
    uint64_t hash;         /* FNV-1a of both streams: resume checks it */
} pretrain_corpus;

/* Read and tokenize files[0..n) (and heldout_file unless NULL or "").
 * Without a held-out file the last `fraction` of the stream is held out. */
hl_status pretrain_corpus_load(pretrain_corpus *c, const bpe *tok, const char (*files)[PRETRAIN_PATH_MAX],
                               int n, const char *heldout_file, double fraction, hl_err *err);
void pretrain_corpus_free(pretrain_corpus *c);

/* Indices (into the n_seqs training windows) of the sequences of step t
 * (1-based): out[0..batch).  perm is [n_seqs] scratch that caches the
 * permutation of *cached_epoch (pass *cached_epoch = -1 the first time).
 * Each epoch is a Fisher-Yates shuffle drawing splitmix64 % (q + 1): the
 * modulo favours some indices by at most n_seqs / 2^64 (< 1e-12 for any
 * corpus that fits in memory).  It stays as it is rather than becoming
 * sample_batcher (which sorts by length and shuffles whole batches): the
 * bundled default model is rebuilt from this order bit for bit. */
void pretrain_batch_indices(int64_t *out, int64_t *perm, int64_t *cached_epoch, uint64_t seed,
                            int64_t step, int32_t batch, int64_t n_seqs);

/* ---------------------------------------------------------------- runs --- */

typedef struct pretrain_result {
    int64_t steps_done;    /* the step the run ended at */
    int64_t tokens_seen;   /* training tokens through the model, over all runs */
    size_t n_params;
    int32_t vocab_size;
    double train_loss;     /* mean loss over the last log window (or last step) */
    double heldout_nll;    /* mean NLL per held-out token at the end (NAN if none) */
    double heldout_ppl;
    int64_t heldout_tokens;
    bool interrupted;      /* *stop was raised: a checkpoint was saved to save_dir */
    char save_dir[PRETRAIN_PATH_MAX + 16]; /* where the last checkpoint went ("" if none) */
    double seconds;
} pretrain_result;

/* Train per o.  With resume_dir (else NULL), continue that checkpoint: o
 * must then hold the checkpoint's options (pretrain_checkpoint_opts) with
 * at most the keys of pretrain_key_may_change_on_resume changed; anything
 * else differing is an error naming the key.  Progress lines go to log (may
 * be NULL).  stop (may be NULL) is polled after every step: when raised (or
 * at step o->stop_at), a
 * checkpoint is saved (to o->save, or OUT.interrupted without one) and the
 * run returns HL_OK with res->interrupted set and no output folder written. */
hl_status pretrain_run(const pretrain_opts *o, const char *resume_dir, pretrain_result *res,
                       FILE *log, volatile sig_atomic_t *stop, hl_err *err);

/* Read the options stored in a checkpoint folder. */
hl_status pretrain_checkpoint_opts(pretrain_opts *o, const char *dir, hl_err *err);

#endif
