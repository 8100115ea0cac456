/* taskobj.c - see taskobj.h. */
#include "taskobj.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "sample.h"
#include "task.h"

#define EVAL_CHUNK 32

typedef struct tsplit {
    cls_example *ex;  /* [n] prompts point into tok */
    int32_t *tok;     /* all prompt tokens of the split */
    int32_t n;
} tsplit;

struct taskobj {
    task task;
    char name[TASK_NAME_MAX];
    lm *lm;                 /* NULL for a data-only taskobj */
    const bpe *tok;
    task_model kind;        /* causal (OPT, GPT-2) or masked (RoBERTa) */
    bool add_bos;
    int32_t bos_id, max_pos;
    sample_splits sp;       /* which dataset examples each split holds */
    int32_t *words[CLS_MAX_CLASSES];
    int32_t n_words[CLS_MAX_CLASSES];
    int64_t budget;         /* prompt token budget (without BOS) */
    dataset ds[3];
    bool have_ds[3];
    tsplit split[TASKOBJ_SPLIT_COUNT];
    cls_scorer scorer;
    sample_batcher batcher;
    int32_t batch_size;
    /* per-step state, preallocated */
    uint32_t *pos;          /* [batch_size] positions drawn for the step */
    cls_example *batch;     /* [max(batch_size, EVAL_CHUNK)] */
    int32_t n_batch;
    int32_t shards, shard_first, shard_last; /* objective set_shards */
    int64_t batch_tokens;
    double *eval_loss;
    int32_t *eval_pred;
    double *eval_scores;
    char *prompt_buf;       /* rendering buffer */
    size_t prompt_cap;
};

/* ------------------------------------------------------ tokenization --- */

/* The special tokens a masked prompt spells out, matched in the text as
 * Hugging Face's tokenizers do (so a literal "<mask>" in the data is one). */
static int32_t special_at(const bpe *tok, const char *p, size_t left, size_t *skip)
{
    static const struct {
        const char *s;
        size_t n;
    } sp[] = {{"<s>", 3}, {"</s>", 4}, {"<mask>", 6}};
    const int32_t ids[] = {tok->id_s, tok->id_slash_s, tok->id_mask};
    for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++)
        if (ids[k] >= 0 && left >= sp[k].n && !memcmp(p, sp[k].s, sp[k].n)) {
            *skip = sp[k].n;
            return ids[k];
        }
    return -1;
}

/* Token ids of a rendered prompt into out[0, cap) (out NULL: count only):
 * causal prompts are plain text; masked ones map <s>, </s> and <mask> to
 * their ids and BPE-encode the text between them.  *n gets the count. */
static hl_status encode_prompt(const taskobj *t, const char *text, size_t len, int32_t *out,
                               size_t cap, size_t *n, hl_err *err)
{
    if (t->kind == TASK_MODEL_CAUSAL)
        return bpe_encode(t->tok, text, len, out, cap, n, err);
    size_t got = 0, run = 0;
    for (size_t i = 0; i <= len;) {
        size_t skip = 0;
        int32_t id = i < len ? special_at(t->tok, text + i, len - i, &skip) : -1;
        if (id < 0 && i < len) {
            i++;
            continue;
        }
        if (i > run) { /* the text before the special token (or the end) */
            size_t k = 0;
            hl_status st = bpe_encode(t->tok, text + run, i - run, out ? out + got : NULL,
                                      out ? cap - got : 0, &k, err);
            if (st && (out || k == 0))
                return st;
            got += k;
        }
        if (i == len)
            break;
        if (out) {
            if (got >= cap)
                return hl_err_set(err, HL_ERR_INVALID, "prompt tokens exceed the buffer");
            out[got] = id;
        }
        got++;
        i += skip;
        run = i;
    }
    *n = got;
    return HL_OK;
}

static int64_t token_len(void *ctx, const char *text, size_t len)
{
    const taskobj *t = ctx;
    size_t n = 0;
    if (encode_prompt(t, text, len, NULL, 0, &n, NULL) != HL_OK && n == 0)
        return -1;
    return (int64_t)n;
}

/* Render and tokenize every example of a view into split s. */
static hl_status build_split(taskobj *t, tsplit *s, const sample_view *v, int64_t budget,
                             hl_err *err)
{
    const bpe *tok = t->tok;
    const bool bos = t->add_bos;
    s->n = (int32_t)v->n;
    s->ex = calloc(v->n ? v->n : 1, sizeof *s->ex);
    size_t cap = 1024, used = 0;
    s->tok = malloc(cap * sizeof *s->tok);
    size_t *off = calloc(v->n ? v->n : 1, sizeof *off);
    if (!s->ex || !s->tok || !off) {
        free(off);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory tokenizing the data");
    }
    task_fit fit = {.budget = budget, .len_fn = token_len, .ctx = (void *)t};
    for (uint32_t i = 0; i < v->n; i++) {
        task_example te;
        dataset_example_view(&te, v->ds, v->idx[i]);
        task_prompt info;
        hl_status st = task_render_prompt(t->prompt_buf, t->prompt_cap, &info, &t->task,
                                          t->kind, &te, &fit, err);
        if (st) {
            free(off);
            return hl_err_prefix(err, "%s:%lld", v->ds->path, (long long)v->ds->ex[v->idx[i]].line);
        }
        size_t need = 0;
        encode_prompt(t, t->prompt_buf, info.len, NULL, 0, &need, NULL);
        while (used + need + 1 > cap) {
            cap *= 2;
            int32_t *nt = realloc(s->tok, cap * sizeof *nt);
            if (!nt) {
                free(off);
                return hl_err_set(err, HL_ERR_NOMEM, "out of memory tokenizing the data");
            }
            s->tok = nt;
        }
        off[i] = used;
        if (bos)
            s->tok[used++] = t->bos_id;
        size_t got = 0;
        if ((st = encode_prompt(t, t->prompt_buf, info.len, s->tok + used, cap - used, &got,
                                err))) {
            free(off);
            return st;
        }
        s->ex[i].mask_pos = -1;
        if (t->kind == TASK_MODEL_MASKED) {
            /* the <mask> the template placed: as many tokens precede it as
             * its prefix encodes to (special tokens split the text) */
            size_t before = 0;
            encode_prompt(t, t->prompt_buf, (size_t)info.mask_at, NULL, 0, &before, NULL);
            s->ex[i].mask_pos = (int32_t)(used - off[i] + before);
            if (before >= got || s->tok[used + before] != tok->id_mask) {
                free(off);
                return hl_err_set(err, HL_ERR_INVALID, "%s:%lld: the <mask> of the template "
                                  "did not tokenize to the mask token", v->ds->path,
                                  (long long)v->ds->ex[v->idx[i]].line);
            }
        }
        used += got;
        s->ex[i].n_prompt = (int32_t)(used - off[i]);
        s->ex[i].label = te.label;
        if (s->ex[i].n_prompt < 1) {
            free(off);
            return hl_err_set(err, HL_ERR_FORMAT, "%s:%lld: the prompt is empty", v->ds->path,
                              (long long)v->ds->ex[v->idx[i]].line);
        }
    }
    for (uint32_t i = 0; i < v->n; i++) /* pointers only once tok stops moving */
        s->ex[i].prompt = s->tok + off[i];
    free(off);
    return HL_OK;
}

/* ------------------------------------------------------- objective ops --- */

static hl_status op_select(void *ctx, int32_t *batch_size, uint64_t step, hl_err *err)
{
    taskobj *t = ctx;
    (void)err;
    /* steps are 1-based; the batcher's are 0-based */
    uint32_t n = sample_batcher_get(t->pos, &t->batcher, step - 1);
    const tsplit *s = &t->split[TASKOBJ_SPLIT_TRAIN];
    t->batch_tokens = 0;
    for (uint32_t i = 0; i < n; i++) {
        t->batch[i] = s->ex[t->pos[i]];
        t->batch_tokens += t->batch[i].n_prompt;
    }
    t->n_batch = (int32_t)n;
    *batch_size = (int32_t)n;
    return HL_OK;
}


static int32_t op_layer_stage(void *ctx, int32_t layer)
{
    taskobj *t = ctx;
    return model_layer_stage(t->scorer.m, layer);
}

/* The selected batch, or shards [first, last) of it (set_shards), each its
 * own forward: a shard's losses then do not depend on the other shards
 * (OpenBLAS's results for a row depend on the rows beside it in a product).
 * Several shards share no stage cache, so they are evaluated whole. */
static hl_status op_eval_staged(void *ctx, double *losses, const param_set *ps, pool *workers,
                                int32_t save_stage, int32_t start_stage, hl_err *err)
{
    taskobj *t = ctx;
    (void)ps, (void)workers; /* the model reads its own arena, which is ps */
    if (t->shards <= 1)
        return cls_score_staged(&t->scorer, losses, NULL, NULL, t->batch, t->n_batch,
                                save_stage, start_stage, err);
    const bool one = t->shard_last - t->shard_first == 1;
    for (int32_t sh = t->shard_first; sh < t->shard_last; sh++) {
        int32_t lo, hi;
        objective_shard(t->n_batch, sh, t->shards, &lo, &hi);
        if (hi == lo)
            continue;
        hl_status st = cls_score_staged(&t->scorer, losses + lo, NULL, NULL, t->batch + lo,
                                        hi - lo, one ? save_stage : 0, one ? start_stage : 0,
                                        err);
        if (st)
            return st;
    }
    return HL_OK;
}

static void op_set_shards(void *ctx, int32_t shards, int32_t first, int32_t last)
{
    taskobj *t = ctx;
    t->shards = shards;
    t->shard_first = first;
    t->shard_last = last;
}

static hl_status op_eval(void *ctx, double *losses, const param_set *ps, pool *workers,
                         hl_err *err)
{
    return op_eval_staged(ctx, losses, ps, workers, 0, 0, err);
}

static void op_destroy(void *ctx)
{
    taskobj *t = ctx;
    if (!t)
        return;
    cls_scorer_free(&t->scorer);
    sample_batcher_free(&t->batcher);
    for (int i = 0; i < TASKOBJ_SPLIT_COUNT; i++) {
        free(t->split[i].ex);
        free(t->split[i].tok);
    }
    for (int i = 0; i < 3; i++)
        if (t->have_ds[i])
            dataset_free(&t->ds[i]);
    sample_splits_free(&t->sp);
    for (int c = 0; c < CLS_MAX_CLASSES; c++)
        free(t->words[c]);
    task_free(&t->task);
    free(t->pos);
    free(t->batch);
    free(t->eval_loss);
    free(t->eval_pred);
    free(t->eval_scores);
    free(t->prompt_buf);
    free(t);
}

/* ------------------------------------------------------------ create --- */

/* Dev examples drawn from train when there is no dev file: a fifth, at most
 * 500 (MeZO's OPT protocol), at least 1. */
static int64_t default_dev_size(uint32_t n_train)
{
    int64_t d = n_train / 5;
    return d < 1 ? 1 : d > 500 ? 500 : d;
}

static hl_status load_data(taskobj *t, const runcfg *cfg, int eval_split, sample_splits *sp,
                           hl_err *err)
{
    const char *path = cfg->data[0] ? cfg->data : t->task.data_dir;
    if (!path || !path[0])
        return hl_err_set(err, HL_ERR_INVALID,
                          "task %s has no bundled data: give --data FILE or FOLDER",
                          t->task.name);
    dataset_opts dopt = {.skip_bad = cfg->skip_bad};
    hl_status st;
    if (eval_split >= 0) {
        /* evaluation: a file is evaluated whole; a folder gives one split */
        dataset_init(&t->ds[eval_split]);
        t->have_ds[eval_split] = true;
        st = dataset_is_folder(path)
                 ? dataset_load(&t->ds[eval_split], &t->task, path, (dataset_split)eval_split,
                                &dopt, err)
                 : dataset_load_file(&t->ds[eval_split], &t->task, path, &dopt, err);
        if (st)
            return st;
        sample_view *v = eval_split == TASKOBJ_SPLIT_TEST  ? &sp->test
                         : eval_split == TASKOBJ_SPLIT_DEV ? &sp->dev
                                                           : &sp->train;
        return sample_view_all(v, &t->ds[eval_split], err);
    }
    sample_opts so;
    memset(&so, 0, sizeof so);
    so.seed = cfg->data_seed;
    if (cfg->k_shot > 0) {
        /* LM-BFF / MeZO: k per class for train and for dev, both from the
         * training data; the test set is the data's test file, else its dev
         * file (GLUE's test has no labels, so LM-BFF tests on dev), else the
         * rest of the training data; at most 1000 test examples */
        if (cfg->train_size || cfg->dev_size)
            return hl_err_set(err, HL_ERR_INVALID, "k_shot sizes train and dev itself: drop "
                              "train_size / dev_size");
        dataset_init(&t->ds[0]);
        t->have_ds[0] = true;
        int test_from = -1; /* split file used as the test source */
        if (dataset_is_folder(path)) {
            if ((st = dataset_load(&t->ds[0], &t->task, path, DATASET_SPLIT_TRAIN, &dopt, err)))
                return st;
            for (int s = 2; s >= 1 && test_from < 0; s--) {
                char file[4096];
                hl_err probe;
                if (dataset_find_split(file, sizeof file, &t->task, path, (dataset_split)s,
                                       &probe) == HL_OK)
                    test_from = s;
            }
            if (test_from >= 0) {
                dataset_init(&t->ds[2]);
                t->have_ds[2] = true;
                if ((st = dataset_load(&t->ds[2], &t->task, path, (dataset_split)test_from,
                                       &dopt, err)))
                    return st;
            }
        } else if ((st = dataset_load_file(&t->ds[0], &t->task, path, &dopt, err)))
            return st;
        so.k_train = so.k_dev = cfg->k_shot;
        so.dev_from_train = true;
        int64_t left = t->have_ds[2] ? (int64_t)t->ds[2].n
                                     : (int64_t)t->ds[0].n -
                                           2 * (int64_t)cfg->k_shot * t->task.n_classes;
        so.n_test = left < 0 ? 0 : left < 1000 ? left : 1000;
        return sample_make_splits(sp, &t->ds[0], NULL, t->have_ds[2] ? &t->ds[2] : NULL, &so,
                                  err);
    }
    if (dataset_is_folder(path)) {
        for (int s = 0; s < 3; s++) {
            char file[4096];
            hl_err probe;
            if (s > 0 && dataset_find_split(file, sizeof file, &t->task, path,
                                            (dataset_split)s, &probe) != HL_OK)
                continue; /* a folder may lack dev or test */
            dataset_init(&t->ds[s]);
            t->have_ds[s] = true;
            if ((st = dataset_load(&t->ds[s], &t->task, path, (dataset_split)s, &dopt, err)))
                return st;
        }
        so.n_train = cfg->train_size;
        so.n_dev = cfg->dev_size;
        if (!t->have_ds[1]) { /* no dev file: draw dev from train */
            so.dev_from_train = true;
            if (!so.n_dev)
                so.n_dev = default_dev_size(t->ds[0].n);
        }
    } else {
        dataset_init(&t->ds[0]);
        t->have_ds[0] = true;
        if ((st = dataset_load_file(&t->ds[0], &t->task, path, &dopt, err)))
            return st;
        /* one file: split with the data seed into train and dev */
        so.n_train = cfg->train_size;
        so.n_dev = cfg->dev_size ? cfg->dev_size : default_dev_size(t->ds[0].n);
        so.dev_from_train = true;
    }
    return sample_make_splits(sp, &t->ds[0], t->have_ds[1] ? &t->ds[1] : NULL,
                              t->have_ds[2] ? &t->ds[2] : NULL, &so, err);
}

/* Everything but the scorer: task, data, splits, tokens, label words. */
static hl_status prepare(taskobj *t, const runcfg *cfg, int eval_split, hl_err *err)
{
    task_init(&t->task);
    hl_status st = task_find(&t->task, cfg->task[0] ? cfg->task : "default", err);
    if (st)
        return st;
    snprintf(t->name, sizeof t->name, "%s", t->task.name);
    if (!task_supports(&t->task, t->kind))
        return hl_err_set(err, HL_ERR_INVALID,
                          t->kind == TASK_MODEL_MASKED
                              ? "task %s has no masked-LM template (\"masked_template\"), "
                                "which a masked LM such as RoBERTa needs"
                              : "task %s has no causal-LM template (\"template\")",
                          t->name);
    if (t->task.n_classes > CLS_MAX_CLASSES)
        return hl_err_set(err, HL_ERR_INVALID, "task %s has too many classes", t->name);
    if ((st = load_data(t, cfg, eval_split, &t->sp, err)))
        return st;
    if (eval_split < 0 && t->sp.train.n == 0)
        return hl_err_set(err, HL_ERR_INVALID, "no training examples after sampling");

    int32_t max_word = 0;
    for (int32_t c = 0; c < t->task.n_classes; c++) {
        const char *w = task_class_word(&t->task, t->kind, c);
        size_t n = 0;
        if ((st = bpe_encode_alloc(t->tok, w, strlen(w), &t->words[c], &n, err)))
            return st;
        t->n_words[c] = (int32_t)n;
        if (n == 0)
            return hl_err_set(err, HL_ERR_FORMAT, "task %s: label word %d is empty", t->name, c);
        if (t->kind == TASK_MODEL_MASKED && n != 1)
            return hl_err_set(err, HL_ERR_FORMAT,
                              "task %s: label word \"%s\" is %zu tokens; a masked LM predicts "
                              "one token at <mask>, so each word must be one token",
                              t->name, w, n);
        if (t->n_words[c] > max_word)
            max_word = t->n_words[c];
    }
    /* prompt token budget: the task's limit, the user's, and the context */
    int64_t max_tokens = t->task.max_tokens > 0 ? t->task.max_tokens : t->max_pos;
    if (cfg->max_tokens > 0 && cfg->max_tokens < max_tokens)
        max_tokens = cfg->max_tokens;
    /* masked: the word sits at <mask>, inside the prompt */
    int64_t room = t->max_pos - (t->add_bos ? 1 : 0) -
                   (t->kind == TASK_MODEL_MASKED ? 0 : max_word);
    if (max_tokens > room)
        max_tokens = room;
    if (max_tokens < 1)
        return hl_err_set(err, HL_ERR_INVALID,
                          "the model's context (%d) leaves no room for a prompt", t->max_pos);
    t->budget = max_tokens;
    uint32_t max_len[TASK_MAX_FIELDS] = {0};
    for (int d = 0; d < 3; d++)
        if (t->have_ds[d])
            for (int f = 0; f < t->task.n_fields; f++)
                if (t->ds[d].max_len[f] > max_len[f])
                    max_len[f] = t->ds[d].max_len[f];
    t->prompt_cap = task_prompt_max_bytes(&t->task, t->kind, max_len) + 1;
    t->prompt_buf = malloc(t->prompt_cap);
    if (!t->prompt_buf)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    const sample_view *views[3] = {&t->sp.train, &t->sp.dev, &t->sp.test};
    for (int s = 0; s < 3 && !st; s++)
        st = build_split(t, &t->split[s], views[s], t->budget, err);
    return st;
}

static hl_status create(taskobj **out, objective *obj, lm *l, const runcfg *cfg, int eval_split,
                        hl_err *err)
{
    *out = NULL;
    taskobj *t = calloc(1, sizeof *t);
    if (!t)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    t->lm = l;
    t->tok = &l->tok;
    t->kind = model_is_masked_lm(&l->model.cfg) ? TASK_MODEL_MASKED : TASK_MODEL_CAUSAL;
    t->add_bos = l->model.cfg.add_bos;
    t->bos_id = l->model.cfg.bos_id;
    t->max_pos = l->model.cfg.max_pos;
    hl_status st = prepare(t, cfg, eval_split, err);
    if (st)
        goto fail;
    int32_t max_prompt = 1;
    for (int s = 0; s < 3; s++)
        for (int32_t i = 0; i < t->split[s].n; i++)
            if (t->split[s].ex[i].n_prompt > max_prompt)
                max_prompt = t->split[s].ex[i].n_prompt;
    t->batch_size = cfg->batch_size;
    int32_t cap = t->batch_size > EVAL_CHUNK ? t->batch_size : EVAL_CHUNK;
    if ((st = cls_scorer_init(&t->scorer, &l->model, (const int32_t *const *)t->words,
                              t->n_words, t->task.n_classes, cap, max_prompt, err)))
        goto fail;
    t->pos = malloc((size_t)cap * sizeof *t->pos);
    t->batch = malloc((size_t)cap * sizeof *t->batch);
    t->eval_loss = malloc((size_t)cap * sizeof *t->eval_loss);
    t->eval_pred = malloc((size_t)cap * sizeof *t->eval_pred);
    t->eval_scores = malloc((size_t)cap * CLS_MAX_CLASSES * sizeof *t->eval_scores);
    if (!t->pos || !t->batch || !t->eval_loss || !t->eval_pred || !t->eval_scores) {
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (t->split[0].n > 0) {
        int32_t nb = t->batch_size < t->split[0].n ? t->batch_size : t->split[0].n;
        if ((st = sample_batcher_init(&t->batcher, (uint32_t)t->split[0].n, (uint32_t)nb, NULL,
                                      0, cfg->seed, err)))
            goto fail;
    }
    if (obj) {
        memset(obj, 0, sizeof *obj);
        obj->name = "model";
        obj->ctx = t;
        obj->max_batch = cap;
        obj->select_batch = op_select;
        obj->eval = op_eval;
        obj->layer_stage = op_layer_stage;
        obj->eval_staged = op_eval_staged;
        obj->set_shards = op_set_shards;
        obj->full_loss = NULL;
        obj->destroy = op_destroy;
    }
    *out = t;
    return HL_OK;
fail:
    op_destroy(t);
    return st;
}

hl_status taskobj_create(taskobj **out, objective *obj, lm *l, const runcfg *cfg, hl_err *err)
{
    return create(out, obj, l, cfg, -1, err);
}

hl_status taskobj_create_eval(taskobj **out, lm *l, const runcfg *cfg, taskobj_split split,
                              hl_err *err)
{
    return create(out, NULL, l, cfg, (int)split, err);
}

hl_status taskobj_create_data(taskobj **out, const bpe *tok, bool masked, bool add_bos,
                              int32_t bos_id, int32_t max_pos, const runcfg *cfg, hl_err *err)
{
    *out = NULL;
    taskobj *t = calloc(1, sizeof *t);
    if (!t)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    t->tok = tok;
    t->kind = masked ? TASK_MODEL_MASKED : TASK_MODEL_CAUSAL;
    t->add_bos = add_bos;
    t->bos_id = bos_id;
    t->max_pos = max_pos;
    hl_status st = prepare(t, cfg, -1, err);
    if (st) {
        op_destroy(t);
        return st;
    }
    *out = t;
    return HL_OK;
}

void taskobj_free(taskobj *t)
{
    op_destroy(t);
}

const task *taskobj_task(const taskobj *t)
{
    return &t->task;
}

hl_status taskobj_render(const taskobj *t, char *out, size_t cap, taskobj_split split,
                         int32_t i, hl_err *err)
{
    const sample_view *v = split == TASKOBJ_SPLIT_TRAIN ? &t->sp.train
                           : split == TASKOBJ_SPLIT_DEV ? &t->sp.dev
                                                        : &t->sp.test;
    if (i < 0 || (uint32_t)i >= v->n)
        return hl_err_set(err, HL_ERR_INVALID, "example %d of %u", i, v->n);
    task_example te;
    dataset_example_view(&te, v->ds, v->idx[i]);
    task_prompt info;
    task_fit fit = {.budget = t->budget, .len_fn = token_len, .ctx = (void *)t};
    return task_render_prompt(out, cap, &info, &t->task, t->kind, &te, &fit, err);
}

const cls_example *taskobj_examples(const taskobj *t, taskobj_split split, int32_t *n)
{
    *n = t->split[split].n;
    return t->split[split].ex;
}

/* ------------------------------------------------------------ queries --- */

hl_status taskobj_evaluate(taskobj *t, double *accuracy, double *loss, taskobj_split split,
                           FILE *predictions, hl_err *err)
{
    const tsplit *s = &t->split[split];
    if (s->n == 0) {
        *accuracy = NAN;
        *loss = NAN;
        return HL_OK;
    }
    const int32_t K = t->task.n_classes, chunk = t->scorer.max_batch;
    int64_t correct = 0;
    double sum = 0;
    for (int32_t i0 = 0; i0 < s->n; i0 += chunk) {
        int32_t n = s->n - i0 < chunk ? s->n - i0 : chunk;
        hl_status st = cls_score(&t->scorer, t->eval_loss, t->eval_pred, t->eval_scores,
                                 s->ex + i0, n, err);
        if (st)
            return st;
        for (int32_t i = 0; i < n; i++) {
            correct += t->eval_pred[i] == s->ex[i0 + i].label;
            sum += t->eval_loss[i];
            if (predictions) {
                fprintf(predictions, "%d\t%d\t%d", i0 + i, s->ex[i0 + i].label,
                        t->eval_pred[i]);
                for (int32_t c = 0; c < K; c++)
                    fprintf(predictions, "\t%.6f", t->eval_scores[(size_t)i * K + c]);
                fputc('\n', predictions);
            }
        }
    }
    *accuracy = (double)correct / s->n;
    *loss = sum / s->n;
    return HL_OK;
}

int64_t taskobj_bad_lines(const taskobj *t, char *first, size_t cap)
{
    int64_t n = 0;
    if (cap)
        first[0] = '\0';
    for (int i = 0; i < 3; i++)
        if (t->have_ds[i]) {
            if (cap && !first[0] && t->ds[i].n_bad)
                snprintf(first, cap, "%s", t->ds[i].first_bad);
            n += t->ds[i].n_bad;
        }
    return n;
}

int32_t taskobj_split_size(const taskobj *t, taskobj_split split)
{
    return t->split[split].n;
}

const char *taskobj_task_name(const taskobj *t)
{
    return t->name;
}

const cls_scorer *taskobj_scorer(const taskobj *t)
{
    return &t->scorer;
}

const cls_example *taskobj_batch(const taskobj *t, int32_t *n)
{
    *n = t->n_batch;
    return t->batch;
}

int64_t taskobj_batch_tokens(const taskobj *t)
{
    return t->batch_tokens;
}
