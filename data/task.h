/* task.h - prompt-based classification tasks: definitions, templates, label words.
 *
 * A task (MeZO / LM-BFF style) turns an example's text fields into a prompt
 * and each class into a label word; the model scores the words after the
 * prompt (causal LM) or at the <mask> (masked LM).  Definitions are JSON
 * files; the built-ins live in data/tasks/ and data/tasks/README.md documents
 * the schema.  This module parses and validates them, and renders prompts
 * into caller buffers, truncating input text from the left to a token
 * budget with a caller-supplied length callback.
 *
 * Rendering contract (tests assert exact bytes):
 *   causal prompt  = the template with placeholders replaced, nothing added.
 *   causal continuation of class c = task.classes[c].causal: the label word
 *     preceded by one space, unless the template ends in whitespace (e.g.
 *     "\n"), in which case the word follows directly - "... It was" + " great",
 *     "...Yes or No?\n" + "Yes", exactly as MeZO's verbalizers do.  Words are
 *     written in the JSON without a leading space.
 *   masked prompt  = the masked template with special tokens spelled out
 *     ("<s>", "<mask>", "</s>"); the word at <mask> is " " + word (LM-BFF).
 *
 * Leaves out: tokenization (the caller's callback), scoring and losses (the
 * model code), reading data files (dataset.h).
 *
 * Ownership: task_load_file / task_find fill a caller-provided task whose
 * strings are owned by it and released by task_free.  Rendering never
 * allocates.
 */
#ifndef HELENE_TASK_H
#define HELENE_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define TASK_MAX_FIELDS 8    /* text fields per example */
#define TASK_MAX_CLASSES 32  /* classes (label words) */
#define TASK_MAX_INPUTS 4    /* accepted input layouts */
#define TASK_MAX_SEGMENTS 64 /* parsed template pieces */
#define TASK_MAX_DEPTH 4     /* nested "[]" arrays in a JSONL path */
#define TASK_NAME_MAX 64

typedef enum task_format {
    TASK_FORMAT_TSV = 0, /* tab-separated, no quoting (GLUE); header or column numbers */
    TASK_FORMAT_CSV = 1, /* comma-separated, RFC 4180 quoting; header or column numbers */
    TASK_FORMAT_JSONL = 2, /* one JSON object per line (SuperGLUE); dotted field paths */
} task_format;

typedef enum task_model {
    TASK_MODEL_CAUSAL = 0, /* OPT, GPT-2, Llama: score the word after the prompt */
    TASK_MODEL_MASKED = 1, /* RoBERTa: score the word at <mask> */
} task_model;

typedef enum task_seg_kind {
    TASK_SEG_TEXT = 0,  /* literal bytes */
    TASK_SEG_FIELD = 1, /* an example's field */
    TASK_SEG_BOS = 2,   /* "<s>"   (masked templates only) */
    TASK_SEG_EOS = 3,   /* "</s>"  (masked templates only) */
    TASK_SEG_MASK = 4,  /* "<mask>" (masked templates only, exactly once) */
} task_seg_kind;

typedef enum task_case {
    TASK_CASE_KEEP = 0,        /* {sentence}, {S1} */
    TASK_CASE_UPPER_FIRST = 1, /* {Question}: first byte upper-cased (ASCII) */
    TASK_CASE_LOWER_FIRST = 2, /* {s2}: first byte lower-cased (ASCII), LM-BFF's sentl */
} task_case;

typedef struct task_segment {
    int32_t kind;        /* task_seg_kind */
    int32_t field;       /* TASK_SEG_FIELD: index into task.fields */
    int32_t fcase;       /* TASK_SEG_FIELD: task_case */
    int32_t strip_punct; /* TASK_SEG_FIELD: drop one trailing . ? or ! (masked "{S1}?") */
    const char *text;    /* TASK_SEG_TEXT: bytes (owned by the template) */
    uint32_t len;        /* TASK_SEG_TEXT: byte count */
} task_segment;

typedef struct task_template {
    char *source;               /* the template as written in the JSON; NULL = absent */
    char *lit;                  /* owned storage for the literal segments */
    task_segment seg[TASK_MAX_SEGMENTS];
    int32_t n_seg;
    uint32_t fixed_bytes;       /* literal + special-token bytes of one rendering */
    int32_t uses[TASK_MAX_FIELDS]; /* how many times each field appears */
} task_template;

/* How one accepted file layout maps onto the task's fields.  Names are TSV/CSV
 * header columns or JSONL paths ("target.span1_text"; "passage.questions[]"
 * iterates an array, one example per element); col >= 0 selects a column of a
 * headerless TSV/CSV instead (0-based). */
typedef struct task_input {
    task_format format;
    bool header;                       /* TSV/CSV: first non-blank line names the columns */
    char *field_name[TASK_MAX_FIELDS]; /* as written; NULL when by column number */
    int32_t field_col[TASK_MAX_FIELDS]; /* -1 when by name */
    char *label_name;
    int32_t label_col;
    /* JSONL paths, split at the "[]" arrays: level 0 is the record, level k
     * an element of array k.  array_path[k] leads from a level-k node to array
     * k+1; field_rel/label_rel lead from the field's level to its value ("" =
     * the element itself).  All paths' arrays form one chain. */
    int32_t depth;                       /* number of arrays iterated */
    char *array_path[TASK_MAX_DEPTH];
    char *field_rel[TASK_MAX_FIELDS];
    int32_t field_level[TASK_MAX_FIELDS];
    char *label_rel;
    int32_t label_level;
} task_input;

typedef struct task_class {
    char *value;  /* declared label value as text: "0", "entailment", "true" (JSON true) */
    char *word;   /* label word or phrase as written, no leading space: "great" */
    char *causal; /* bytes appended after a causal prompt: " great" or "Yes" */
    char *masked; /* the word at <mask>: " great" */
} task_class;

typedef struct task {
    char name[TASK_NAME_MAX];
    char *path;        /* the JSON file it came from */
    char *description; /* one line, may be "" */
    int32_t n_fields;
    char *fields[TASK_MAX_FIELDS]; /* logical field names, as used in templates */
    int32_t n_classes;
    task_class classes[TASK_MAX_CLASSES];
    int32_t n_skip_labels;
    char *skip_labels[TASK_MAX_CLASSES]; /* label values dropped at load and counted (SNLI "-") */
    bool has_causal, has_masked;
    task_model model;      /* the kind the definition targets first */
    task_template causal;  /* "template" */
    task_template masked;  /* "masked_template" */
    int32_t n_inputs;
    task_input inputs[TASK_MAX_INPUTS];
    int32_t max_tokens;     /* prompt token limit (the model's own limit may be lower) */
    int32_t truncate_field; /* field cut first when over budget; -1 = the longest */
    bool trim;              /* strip surrounding ASCII whitespace from fields at load */
    char *data_dir;         /* bundled data folder (absolute or relative to cwd), or NULL */
} task;

/* One example as the renderer sees it: field bytes in task field order (not
 * necessarily NUL-terminated), borrowed from a dataset or the caller. */
typedef struct task_example {
    const char *text[TASK_MAX_FIELDS];
    uint32_t len[TASK_MAX_FIELDS];
    int32_t label; /* class index, or -1 when unknown */
} task_example;

/* Token count of text[0, len), or a negative number on failure.  Supplied by
 * the caller (the BPE tokenizer) so this module does not depend on it; it must
 * not keep the pointer. */
typedef int64_t (*task_token_len_fn)(void *ctx, const char *text, size_t len);

/* Left truncation request: fit the prompt into budget tokens. */
typedef struct task_fit {
    int64_t budget;          /* max tokens of the prompt alone (see task_fit_budget) */
    task_token_len_fn len_fn;
    void *ctx;
} task_fit;

/* What a rendering produced. */
typedef struct task_prompt {
    size_t len;              /* bytes written, excluding the terminating NUL */
    int64_t mask_at;         /* masked: byte offset of "<mask>" in the output; causal: -1 */
    int64_t tokens;          /* with a fit: the callback's count for the output; else -1 */
    uint32_t cut[TASK_MAX_FIELDS]; /* bytes dropped from the left of each field */
} task_prompt;

/* --- loading ------------------------------------------------------------- */

void task_init(task *t);
void task_free(task *t);

/* Parse and validate a definition.  Errors name the file and the JSON key. */
hl_status task_load_file(task *t, const char *path, hl_err *err);

/* Resolve NAME: a path (contains '/' or ends in ".json") is loaded as a file;
 * otherwise "<dir>/tasks/NAME.json" is tried in the data directories, in
 * order: $HELENE_DATA_DIR (if set), HELENE_SRCDATADIR (source tree),
 * HELENE_DATADIR (installed pkgdatadir).  An unknown name's error lists the
 * built-in names. */
hl_status task_find(task *t, const char *name, hl_err *err);

/* task_find over explicit data directories (tests, embedding). */
hl_status task_find_in(task *t, const char *name, const char *const *dirs, int32_t n_dirs,
                       hl_err *err);

/* Write the built-in task names, sorted and comma-separated, into out
 * (the first data directory that has a tasks/ folder). */
hl_status task_list_builtin(char *out, size_t cap, hl_err *err);

/* Parse a template string for a task whose fields are already declared
 * (used by the loader; exposed for tests and for ad-hoc prompts). */
hl_status task_template_parse(task_template *tp, const task *t, task_model kind,
                              const char *src, hl_err *err);
void task_template_free(task_template *tp);

/* --- queries -------------------------------------------------------------- */

/* Index of a field name, or -1. */
int32_t task_field_index(const task *t, const char *name);

/* Class index of a label value given as text ("1", "entailment", "true"),
 * or -1 when it is not declared. */
int32_t task_class_index(const task *t, const char *value, size_t len);

/* True when the task has a template for this model kind. */
bool task_supports(const task *t, task_model kind);

/* Upper bound on the bytes (including the NUL) of any prompt rendered for
 * fields no longer than max_len[f]: allocate this once per dataset. */
size_t task_prompt_max_bytes(const task *t, task_model kind, const uint32_t *max_len);

/* The word bytes scored for class c: classes[c].causal or .masked. */
const char *task_class_word(const task *t, task_model kind, int32_t c);

/* budget for task_fit: max_tokens - (the longest label continuation's token
 * count), so prompt + word fits.  Returns a negative number on callback
 * failure. */
int64_t task_fit_budget(const task *t, task_model kind, int64_t max_tokens,
                        task_token_len_fn len_fn, void *ctx);

/* --- rendering ----------------------------------------------------------- */

/* Render the prompt for ex into out[0, cap) (NUL-terminated).  fit == NULL:
 * no truncation.  Otherwise input text is cut from the left (first the
 * task's truncate field, or the longest field; at word starts where
 * possible) until the callback counts at most fit->budget tokens; the
 * template and the label position (the end, or the <mask>) always survive.
 * Never allocates.  Errors: HL_ERR_INVALID when cap is too small or the
 * template alone exceeds the budget; the callback's failure as HL_ERR_FORMAT. */
hl_status task_render_prompt(char *out, size_t cap, task_prompt *info, const task *t,
                             task_model kind, const task_example *ex, const task_fit *fit,
                             hl_err *err);

#endif
