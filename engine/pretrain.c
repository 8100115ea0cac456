/* pretrain.c - see pretrain.h.  Sections: tokenizer, corpus and batches,
 * files and folders, the run.  Elsewhere: the options (pretrain_opts.c), the
 * tokenizer building (data/bpe_derive.c), config.json and
 * tokenizer_config.json (model_config.c, beside their reader), the weights
 * (model_save_hf_weights, shared with `helene export`). */
#include "pretrain.h"

#include "bpe_derive.h"

#include "fileio.h"
#include "jsonval.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backward.h"
#include "checkpoint.h"
#include "lm.h"
#include "rng.h"

#define DIRBUF (PRETRAIN_PATH_MAX + 64) /* a folder given, or its ".tmp-PID" staging twin */
#define FILEBUF (DIRBUF + 64)           /* a file inside such a folder */

/* ----------------------------------------------------------- tokenizer --- */

/* The run's tokenizer files, from the options. */
static hl_status tok_prepare(bpe_files *tf, const pretrain_opts *o, hl_err *err)
{
    memset(tf, 0, sizeof *tf);
    char merges[FILEBUF], vocab[FILEBUF];
    if (o->merges[0])
        snprintf(merges, sizeof merges, "%s", o->merges);
    else if (!lm_bundled_path(merges, sizeof merges, "gpt2/merges.txt"))
        return hl_err_set(err, HL_ERR_IO, "the bundled GPT-2 merges (gpt2/merges.txt) are not "
                          "installed; set HELENE_DATA_DIR or give --merges");
    if ((o->merges[0] && !o->vocab[0]) || o->max_merges > 0) {
        /* each family's special tokens, where its vocabulary has them */
        static const char *const opt_first[4] = {"<s>", "<pad>", "</s>", "<unk>"};
        const bool opt = o->family == MODEL_FAMILY_OPT;
        return bpe_derive(tf, merges, o->max_merges, opt ? opt_first : NULL, opt ? 4 : 0,
                          o->family == MODEL_FAMILY_GPT2 ? "<|endoftext|>" : NULL, err);
    }
    if (o->vocab[0])
        snprintf(vocab, sizeof vocab, "%s", o->vocab);
    else if (!lm_bundled_path(vocab, sizeof vocab, "gpt2/vocab.json"))
        return hl_err_set(err, HL_ERR_IO, "the bundled GPT-2 vocabulary (gpt2/vocab.json) is not "
                          "installed; set HELENE_DATA_DIR or give --vocab and --merges");
    hl_status st = file_read(vocab, (size_t)1 << 28, &tf->vocab, &tf->vocab_len, err);
    if (!st)
        st = file_read(merges, (size_t)1 << 28, &tf->merges, &tf->merges_len, err);
    if (st)
        bpe_files_free(tf);
    return st;
}

/* ------------------------------------------------------- files, folders --- */

static hl_status write_text_in(const char *dir, const char *name, const char *text, hl_err *err)
{
    char p[FILEBUF];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return file_write_all(p, text, strlen(text), err);
}

static bool folder_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return true;
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = false;
    closedir(d);
    return empty;
}

/* ------------------------------------------------------ corpus, batches --- */

static hl_status tokenize_file(int32_t **ids, size_t *n, const bpe *tok, const char *path,
                               hl_err *err)
{
    size_t len;
    char *text;
    hl_status st = file_read(path, (size_t)1 << 31, &text, &len, err);
    if (st)
        return st;
    st = bpe_encode_alloc(tok, text, len, ids, n, err);
    free(text);
    if (st)
        hl_err_prefix(err, "%s", path);
    return st;
}

void pretrain_corpus_free(pretrain_corpus *c)
{
    free(c->train);
    free(c->heldout);
    memset(c, 0, sizeof *c);
}

hl_status pretrain_corpus_load(pretrain_corpus *c, const bpe *tok,
                               const char (*files)[PRETRAIN_PATH_MAX], int n,
                               const char *heldout_file, double fraction, hl_err *err)
{
    memset(c, 0, sizeof *c);
    hl_status st = HL_OK;
    size_t total = 0, cap = 0;
    int32_t *all = NULL;
    for (int i = 0; i < n && !st; i++) {
        int32_t *ids = NULL;
        size_t k = 0;
        if ((st = tokenize_file(&ids, &k, tok, files[i], err)))
            break;
        if (total + k > cap) {
            size_t nc = cap ? cap : 1 << 16;
            while (nc < total + k)
                nc *= 2;
            int32_t *na = realloc(all, nc * sizeof *na);
            if (!na) {
                free(ids);
                st = hl_err_set(err, HL_ERR_NOMEM, "out of memory for the corpus tokens");
                break;
            }
            all = na;
            cap = nc;
        }
        if (k)
            memcpy(all + total, ids, k * sizeof *ids);
        total += k;
        free(ids);
    }
    if (st) {
        free(all);
        return st;
    }
    if (heldout_file && heldout_file[0]) {
        if ((st = tokenize_file(&c->heldout, &c->n_heldout, tok, heldout_file, err))) {
            free(all);
            return st;
        }
        c->train = all;
        c->n_train = total;
    } else {
        size_t h = (size_t)floor((double)total * fraction);
        c->n_train = total - h;
        c->n_heldout = h;
        c->train = all;
        c->heldout = malloc((h ? h : 1) * sizeof *c->heldout);
        if (!c->heldout) {
            pretrain_corpus_free(c);
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the held-out tokens");
        }
        if (h)
            memcpy(c->heldout, all + c->n_train, h * sizeof *all);
    }
    uint64_t hsh = 1469598103934665603ull;
    for (size_t i = 0; i < c->n_train; i++)
        hsh = (hsh ^ (uint64_t)(uint32_t)c->train[i]) * 1099511628211ull;
    hsh = (hsh ^ 0xFFu) * 1099511628211ull;
    for (size_t i = 0; i < c->n_heldout; i++)
        hsh = (hsh ^ (uint64_t)(uint32_t)c->heldout[i]) * 1099511628211ull;
    c->hash = hsh;
    return HL_OK;
}

void pretrain_batch_indices(int64_t *out, int64_t *perm, int64_t *cached_epoch, uint64_t seed,
                            int64_t step, int32_t batch, int64_t n_seqs)
{
    for (int32_t j = 0; j < batch; j++) {
        int64_t k = (step - 1) * (int64_t)batch + j;
        int64_t e = k / n_seqs, i = k % n_seqs;
        if (e != *cached_epoch) {
            uint64_t s = seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)e + 0x5851F42D4C957F2Dull);
            for (int64_t q = 0; q < n_seqs; q++)
                perm[q] = q;
            for (int64_t q = n_seqs - 1; q > 0; q--) {
                int64_t r = (int64_t)(rng_splitmix64(&s) % (uint64_t)(q + 1));
                int64_t t = perm[q];
                perm[q] = perm[r];
                perm[r] = t;
            }
            *cached_epoch = e;
        }
        out[j] = perm[i];
    }
}

/* -------------------------------------------------------------- model --- */

static double normal01(uint64_t *s)
{
    double u1 = ((double)(rng_splitmix64(s) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (double)(rng_splitmix64(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* GPT-2's initialisation, seeded. */
static void init_weights(model *m, uint64_t seed)
{
    uint64_t s = seed ^ 0x70726574726169ull; /* "pretrai" */
    const double resid = 0.02 / sqrt(2.0 * m->cfg.n_layers);
    for (int i = 0; i < m->params.n_layers; i++) {
        const param_layer *l = &m->params.layers[i];
        float *p = param_layer_data(&m->params, i);
        if (l->ndim == 1) {
            bool norm_w = strstr(l->name, ".weight") != NULL;
            for (size_t k = 0; k < l->size; k++)
                p[k] = norm_w ? 1.0f : 0.0f;
            continue;
        }
        bool is_resid = strstr(l->name, "out_proj.weight") || strstr(l->name, "fc2.weight") ||
                        strstr(l->name, "c_proj.weight");
        double sd = is_resid ? resid : 0.02;
        for (size_t k = 0; k < l->size; k++)
            p[k] = (float)(sd * normal01(&s));
    }
}

static hl_status make_config(model_config *c, const pretrain_opts *o, const bpe *tok,
                             hl_err *err)
{
    memset(c, 0, sizeof *c);
    c->family = o->family;
    c->n_layers = o->n_layers;
    c->d_model = o->d_model;
    c->n_heads = o->n_heads;
    c->d_ffn = o->d_ffn > 0 ? o->d_ffn : 4 * o->d_model;
    c->vocab = bpe_vocab_size(tok);
    c->max_pos = o->context;
    c->d_embed = o->d_model;
    c->pos_offset = o->family == MODEL_FAMILY_OPT ? 2 : 0;
    c->pre_ln = c->final_ln = c->ln_affine = c->bias = c->tied_head = true;
    c->ln_eps = 1e-5f;
    c->act = o->family == MODEL_FAMILY_OPT ? MODEL_ACT_RELU : MODEL_ACT_GELU_TANH;
    int32_t eos_opt = tok->id_slash_s >= 0 ? tok->id_slash_s : tok->id_endoftext;
    int32_t eos_gpt2 = tok->id_endoftext >= 0 ? tok->id_endoftext : tok->id_slash_s;
    int32_t eos = o->family == MODEL_FAMILY_OPT ? eos_opt : eos_gpt2;
    if (eos < 0)
        return hl_err_set(err, HL_ERR_FORMAT, "the vocabulary has neither </s> nor "
                          "<|endoftext|>: no BOS/EOS token");
    c->bos_id = c->eos_id = eos;
    c->pad_id = o->family == MODEL_FAMILY_OPT ? (tok->id_pad >= 0 ? tok->id_pad : eos) : -1;
    c->add_bos = o->family == MODEL_FAMILY_OPT;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "float32");
    return HL_OK;
}

/* -------------------------------------------------- Hugging Face folder --- */

static const char *token_name(const bpe *tok, int32_t id, char *buf, size_t cap)
{
    size_t n;
    const char *s = bpe_id_to_token(tok, id, &n);
    snprintf(buf, cap, "%.*s", s ? (int)n : 0, s ? s : "");
    return buf;
}

static hl_status write_tokenizer(const char *dir, const bpe_files *tf, hl_err *err)
{
    char p[FILEBUF];
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    hl_status st = file_write_all(p, tf->vocab, tf->vocab_len, err);
    if (!st) {
        snprintf(p, sizeof p, "%s/merges.txt", dir);
        st = file_write_all(p, tf->merges, tf->merges_len, err);
    }
    return st;
}

/* model.safetensors under HF names: OPT "model." + name (tied head not
 * stored), GPT-2 "transformer." + name with Conv1D weights back to [in, out]. */

/* ---------------------------------------------------------------- run --- */

typedef struct run {
    pretrain_opts o;
    bpe_files tf;
    bpe tok;
    pretrain_corpus corpus;
    model m;
    backward bw;
    adamw opt;
    pool pool;
    bool have_tok, have_model, have_bw, have_opt, have_pool;
    int32_t bos;           /* 1 when sequences start with BOS (OPT) */
    int32_t seq_content;   /* corpus tokens per sequence */
    int64_t n_seqs;        /* training windows */
    int64_t *perm, epoch;  /* batch permutation cache */
    int64_t *idx;          /* [batch] */
    int32_t *tokens, *starts;
    int64_t step, tokens_seen;
    double last_loss;
    char tmpdir[64];       /* tokenizer files for bpe_load */
} run;

static void run_free(run *r)
{
    if (r->have_opt)
        adamw_free(&r->opt);
    if (r->have_bw)
        backward_free(&r->bw);
    if (r->have_model)
        model_free(&r->m);
    if (r->have_tok)
        bpe_free(&r->tok);
    if (r->have_pool)
        pool_free(&r->pool);
    pretrain_corpus_free(&r->corpus);
    bpe_files_free(&r->tf);
    free(r->perm);
    free(r->idx);
    free(r->tokens);
    free(r->starts);
    if (r->tmpdir[0])
        file_remove_tree(r->tmpdir);
}

static hl_status load_tokenizer(run *r, hl_err *err)
{
    const char *base = getenv("TMPDIR");
    snprintf(r->tmpdir, sizeof r->tmpdir, "%.40s/helene-tok-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(r->tmpdir)) {
        r->tmpdir[0] = '\0';
        return hl_err_set(err, HL_ERR_IO, "cannot make a temporary folder: %s", strerror(errno));
    }
    hl_status st = write_tokenizer(r->tmpdir, &r->tf, err);
    if (st)
        return st;
    char v[128], mg[128];
    snprintf(v, sizeof v, "%s/vocab.json", r->tmpdir);
    snprintf(mg, sizeof mg, "%s/merges.txt", r->tmpdir);
    if ((st = bpe_load(&r->tok, v, mg, err)))
        return hl_err_prefix(err, "tokenizer");
    r->have_tok = true;
    return HL_OK;
}

/* Mean NLL per predicted held-out token (NAN without held-out text). */
static hl_status evaluate(run *r, double *nll, int64_t *n_tokens, hl_err *err)
{
    const pretrain_corpus *c = &r->corpus;
    const int32_t S = r->seq_content, mb = r->o.micro_batch > 0 ? r->o.micro_batch : r->o.batch;
    size_t at = 0;
    int64_t seqs = 0;
    double sum = 0;
    size_t count = 0;
    const size_t min_len = r->bos ? 1 : 2;
    while (at < c->n_heldout && (r->o.eval_seqs == 0 || seqs < r->o.eval_seqs)) {
        int32_t nb = 0, used = 0;
        r->starts[0] = 0;
        while (nb < mb && at < c->n_heldout && (r->o.eval_seqs == 0 || seqs < r->o.eval_seqs)) {
            size_t take = c->n_heldout - at < (size_t)S ? c->n_heldout - at : (size_t)S;
            if (take < min_len) {
                at = c->n_heldout;
                break;
            }
            if (r->bos)
                r->tokens[used++] = r->m.cfg.bos_id;
            memcpy(r->tokens + used, c->heldout + at, take * sizeof(int32_t));
            used += (int32_t)take;
            at += take;
            r->starts[++nb] = used;
            seqs++;
        }
        if (!nb)
            break;
        model_batch b = {.tokens = r->tokens, .seq_start = r->starts, .n_seq = nb};
        double s;
        size_t n;
        hl_status st = model_nll(&r->m, &s, &n, &b, 1, err);
        if (st)
            return st;
        sum += s;
        count += n;
    }
    *nll = count ? sum / (double)count : NAN;
    *n_tokens = (int64_t)count;
    return HL_OK;
}

static char *state_json(const run *r, const pretrain_result *res)
{
    char *opts = pretrain_opts_to_json(&r->o);
    cJSON *o = cJSON_CreateObject(), *oj = opts ? cJSON_Parse(opts) : NULL;
    free(opts);
    if (!o || !oj) {
        cJSON_Delete(o);
        cJSON_Delete(oj);
        return NULL;
    }
    char num[64];
    cJSON_AddStringToObject(o, "format", PRETRAIN_FORMAT);
    cJSON_AddNumberToObject(o, "version", PRETRAIN_VERSION);
    snprintf(num, sizeof num, "%" PRId64, r->step);
    cJSON_AddItemToObject(o, "step", cJSON_CreateRaw(num));
    snprintf(num, sizeof num, "%" PRId64, r->tokens_seen);
    cJSON_AddItemToObject(o, "tokens_seen", cJSON_CreateRaw(num));
    snprintf(num, sizeof num, "%.17g", r->last_loss);
    cJSON_AddItemToObject(o, "train_loss", cJSON_CreateRaw(isfinite(r->last_loss) ? num : "null"));
    cJSON_AddNumberToObject(o, "n_params", (double)param_set_count(&r->m.params));
    cJSON_AddNumberToObject(o, "vocab_size", r->m.cfg.vocab);
    cJSON *cj = cJSON_AddObjectToObject(o, "corpus");
    snprintf(num, sizeof num, "%zu", r->corpus.n_train);
    cJSON_AddItemToObject(cj, "train_tokens", cJSON_CreateRaw(num));
    snprintf(num, sizeof num, "%zu", r->corpus.n_heldout);
    cJSON_AddItemToObject(cj, "heldout_tokens", cJSON_CreateRaw(num));
    snprintf(num, sizeof num, "%016" PRIx64, r->corpus.hash);
    cJSON_AddStringToObject(cj, "hash", num);
    snprintf(num, sizeof num, "%" PRId64, r->n_seqs);
    cJSON_AddItemToObject(cj, "train_sequences", cJSON_CreateRaw(num));
    if (res) {
        cJSON *rj = cJSON_AddObjectToObject(o, "result");
        if (isfinite(res->heldout_nll)) {
            cJSON_AddNumberToObject(rj, "heldout_nll", res->heldout_nll);
            cJSON_AddNumberToObject(rj, "heldout_ppl", res->heldout_ppl);
            cJSON_AddNumberToObject(rj, "heldout_tokens", (double)res->heldout_tokens);
        }
        cJSON_AddNumberToObject(rj, "seconds", res->seconds);
    }
    cJSON_AddItemToObject(o, "options", oj);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

static hl_status save_checkpoint(run *r, hl_err *err)
{
    const char *dir = r->o.save;
    struct stat sb;
    char p[FILEBUF], tmp[DIRBUF];
    if (stat(dir, &sb) == 0) {
        snprintf(p, sizeof p, "%s/pretrain.json", dir);
        if (!S_ISDIR(sb.st_mode))
            return hl_err_set(err, HL_ERR_INVALID, "%s exists and is not a folder", dir);
        if (!folder_empty(dir) && access(p, F_OK) != 0)
            return hl_err_set(err, HL_ERR_INVALID, "%s is not empty and holds no pretraining "
                              "checkpoint: refusing to replace it", dir);
    }
    hl_status st = file_stage_dir(tmp, sizeof tmp, dir, err);
    if (st)
        return st;
    snprintf(p, sizeof p, "%s/params.safetensors", tmp);
    if (!(st = checkpoint_write_params(p, &r->m.params, err))) {
        snprintf(p, sizeof p, "%s/adamw.safetensors", tmp);
        st = adamw_state_write(&r->opt, p, err);
    }
    if (!st)
        st = write_tokenizer(tmp, &r->tf, err);
    if (!st) {
        char *text = state_json(r, NULL);
        st = text ? write_text_in(tmp, "pretrain.json", text, err)
                  : hl_err_set(err, HL_ERR_NOMEM, "out of memory");
        free(text);
    }
    if (!st) {
        file_fsync_parent(p);
        st = file_publish_dir(tmp, dir, true, NULL, err);
    }
    if (st)
        file_remove_tree(tmp);
    return st;
}

static cJSON *read_state(const char *dir, hl_err *err)
{
    char p[FILEBUF];
    snprintf(p, sizeof p, "%s/pretrain.json", dir);
    cJSON *j;
    if (json_read_file(p, 1 << 24, &j, err))
        return NULL;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, PRETRAIN_FORMAT) || !cJSON_IsNumber(v) ||
        v->valuedouble != PRETRAIN_VERSION || !cJSON_IsNumber(s) || s->valuedouble < 0 ||
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "options")) ||
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "corpus"))) {
        cJSON_Delete(j);
        hl_err_set(err, HL_ERR_FORMAT, "%s: not a helene pretraining checkpoint (format %s, "
                   "version %d)", p, PRETRAIN_FORMAT, PRETRAIN_VERSION);
        return NULL;
    }
    return j;
}

hl_status pretrain_checkpoint_opts(pretrain_opts *o, const char *dir, hl_err *err)
{
    cJSON *j = read_state(dir, err);
    if (!j)
        return err ? err->code : HL_ERR_FORMAT;
    pretrain_opts_default(o);
    char where[FILEBUF];
    snprintf(where, sizeof where, "%s/pretrain.json", dir);
    hl_status st = pretrain_opts_apply_json(o, cJSON_GetObjectItemCaseSensitive(j, "options"), where, err);
    cJSON_Delete(j);
    return st;
}

/* The options of o and of the checkpoint must agree on every key that
 * fixes the run; compare their JSON forms key by key. */
static hl_status check_resume_opts(const pretrain_opts *o, const char *dir, hl_err *err)
{
    pretrain_opts stored;
    hl_status st = pretrain_checkpoint_opts(&stored, dir, err);
    if (st)
        return st;
    char *a = pretrain_opts_to_json(o), *b = pretrain_opts_to_json(&stored);
    cJSON *ja = a ? cJSON_Parse(a) : NULL, *jb = b ? cJSON_Parse(b) : NULL;
    free(a);
    free(b);
    if (!ja || !jb)
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    for (const cJSON *it = ja ? ja->child : NULL; it && !st; it = it->next) {
        if (pretrain_key_may_change_on_resume(it->string))
            continue;
        const cJSON *other = cJSON_GetObjectItemCaseSensitive(jb, it->string);
        if (!other || !cJSON_Compare(it, other, true))
            st = hl_err_set(err, HL_ERR_INVALID, "%s: '%s' is fixed by the checkpoint and "
                            "cannot change on resume", dir, it->string);
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return st;
}

/* Absolute paths for the inputs, so a checkpoint resumes from any folder. */
static hl_status absolute_inputs(pretrain_opts *o, hl_err *err)
{
    char buf[PATH_MAX];
    char *paths[PRETRAIN_MAX_FILES + 3];
    int n = 0;
    for (int i = 0; i < o->n_corpus; i++)
        paths[n++] = o->corpus[i];
    paths[n++] = o->heldout;
    paths[n++] = o->vocab;
    paths[n++] = o->merges;
    for (int i = 0; i < n; i++) {
        if (!paths[i][0])
            continue;
        if (!realpath(paths[i], buf))
            return hl_err_set(err, HL_ERR_IO, "%s: %s", paths[i], strerror(errno));
        if (strlen(buf) >= PRETRAIN_PATH_MAX)
            return hl_err_set(err, HL_ERR_INVALID, "%s: path too long", buf);
        snprintf(paths[i], PRETRAIN_PATH_MAX, "%s", buf);
    }
    return HL_OK;
}

static void format_duration(char *out, size_t cap, double s)
{
    if (s < 0 || !isfinite(s))
        snprintf(out, cap, "?");
    else if (s < 60)
        snprintf(out, cap, "%.0fs", s);
    else if (s < 3600)
        snprintf(out, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(out, cap, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One optimizer step: forward/backward over the micro-batches, AdamW. */
static hl_status train_step(run *r, double *loss, adamw_stats *stats, hl_err *err)
{
    const int32_t B = r->o.batch, mb = r->o.micro_batch > 0 ? r->o.micro_batch : B;
    const int32_t S = r->seq_content;
    pretrain_batch_indices(r->idx, r->perm, &r->epoch, r->o.seed, r->step + 1, B, r->n_seqs);
    backward_zero_grad(&r->bw);
    double sum = 0;
    size_t count = 0;
    for (int32_t c0 = 0; c0 < B; c0 += mb) {
        int32_t nb = B - c0 < mb ? B - c0 : mb, used = 0;
        r->starts[0] = 0;
        for (int32_t j = 0; j < nb; j++) {
            if (r->bos)
                r->tokens[used++] = r->m.cfg.bos_id;
            memcpy(r->tokens + used, r->corpus.train + (size_t)r->idx[c0 + j] * (size_t)S,
                   (size_t)S * sizeof(int32_t));
            used += S;
            r->starts[j + 1] = used;
        }
        model_batch b = {.tokens = r->tokens, .seq_start = r->starts, .n_seq = nb};
        double s;
        size_t n;
        hl_status st = backward_lm(&r->bw, &s, &n, &b, 1, (double)nb / (double)B, err);
        if (st)
            return st;
        sum += s;
        count += n;
        r->tokens_seen += used;
    }
    *loss = sum / (double)count;
    if (!isfinite(*loss))
        return hl_err_set(err, HL_ERR_NUMERIC, "the training loss is not finite at step %" PRId64,
                          r->step + 1);
    hl_status st = adamw_step(&r->opt, stats, r->bw.grad.data, err);
    if (st)
        return st;
    r->step++;
    return HL_OK;
}

static hl_status write_output(run *r, const pretrain_result *res, hl_err *err)
{
    const char *dir = r->o.out;
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return hl_err_set(err, HL_ERR_INVALID, "%s already exists; nothing written", dir);
    char tmp[DIRBUF], p[FILEBUF];
    hl_status st = file_stage_dir(tmp, sizeof tmp, dir, err);
    if (st)
        return st;
    r->m.cfg.add_bos = r->o.family == MODEL_FAMILY_OPT;
    char eos[256], pad[256];
    token_name(&r->tok, r->m.cfg.eos_id, eos, sizeof eos);
    token_name(&r->tok, r->m.cfg.pad_id, pad, sizeof pad);
    char *cfg = model_config_hf_json(&r->m.cfg, r->o.out_dtype);
    char *tcfg = model_config_hf_tokenizer_json(&r->m.cfg, eos, pad, false);
    char *smap = model_config_hf_tokenizer_json(&r->m.cfg, eos, pad, true);
    char *state = state_json(r, res);
    if (!cfg || !tcfg || !smap || !state)
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    if (!st)
        st = write_text_in(tmp, "config.json", cfg, err);
    if (!st)
        st = write_text_in(tmp, "tokenizer_config.json", tcfg, err);
    if (!st && r->o.family == MODEL_FAMILY_OPT)
        st = write_text_in(tmp, "special_tokens_map.json", smap, err);
    if (!st)
        st = write_text_in(tmp, "pretrain.json", state, err);
    if (!st)
        st = write_tokenizer(tmp, &r->tf, err);
    if (!st) {
        snprintf(p, sizeof p, "%s/model.safetensors", tmp);
        st = model_save_hf_weights(&r->m, p, r->o.out_dtype, true, "written_by",
                                       "helene pretrain", err);
    }
    free(cfg);
    free(tcfg);
    free(smap);
    free(state);
    if (!st) {
        file_fsync_parent(p);
        if (stat(dir, &sb) == 0)
            st = hl_err_set(err, HL_ERR_INVALID, "%s appeared while training; nothing written",
                            dir);
        else
            st = file_publish_dir(tmp, dir, false, NULL, err);
    }
    if (st)
        file_remove_tree(tmp);
    return st;
}

static void say(FILE *log, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void say(FILE *log, const char *fmt, ...)
{
    if (!log)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("pretrain: ", log);
    vfprintf(log, fmt, ap);
    fputc('\n', log);
    va_end(ap);
    fflush(log);
}

static hl_status run_setup(run *r, const char *resume_dir, hl_err *err)
{
    hl_status st;
    if ((st = pretrain_opts_check(&r->o, err)))
        return st;
    struct stat sb;
    if (stat(r->o.out, &sb) == 0)
        return hl_err_set(err, HL_ERR_INVALID, "%s already exists: choose another --out",
                          r->o.out);
    if (resume_dir) {
        if ((st = check_resume_opts(&r->o, resume_dir, err)))
            return st;
        char v[FILEBUF], mg[FILEBUF];
        snprintf(v, sizeof v, "%s/vocab.json", resume_dir);
        snprintf(mg, sizeof mg, "%s/merges.txt", resume_dir);
        if ((st = file_read(v, (size_t)1 << 28, &r->tf.vocab, &r->tf.vocab_len, err)) ||
            (st = file_read(mg, (size_t)1 << 28, &r->tf.merges, &r->tf.merges_len, err)))
            return st;
    } else {
        if ((st = absolute_inputs(&r->o, err)) || (st = tok_prepare(&r->tf, &r->o, err)))
            return st;
    }
    if ((st = load_tokenizer(r, err)))
        return st;
    if ((st = pool_init(&r->pool, r->o.threads, err)))
        return st;
    r->have_pool = true;
    lm_set_blas_threads(1); /* the pool splits every sgemm */
    model_config c;
    if ((st = make_config(&c, &r->o, &r->tok, err)))
        return st;
    if ((st = model_init_from_config(&r->m, &c, err)))
        return st;
    r->have_model = true;
    model_set_pool(&r->m, &r->pool);
    snprintf(r->m.path, sizeof r->m.path, "helene-pretrain");
    init_weights(&r->m, r->o.seed);
    if ((st = backward_init(&r->bw, &r->m, err)))
        return st;
    r->have_bw = true;
    adamw_config ac = r->o.adamw;
    ac.total_steps = r->o.steps;
    if (ac.warmup_steps > r->o.steps)
        ac.warmup_steps = r->o.steps;
    if ((st = adamw_init(&r->opt, &r->m.params, &ac, &r->pool, err)))
        return st;
    r->have_opt = true;

    if ((st = pretrain_corpus_load(&r->corpus, &r->tok, (const char(*)[PRETRAIN_PATH_MAX])r->o.corpus,
                                   r->o.n_corpus, r->o.heldout, r->o.heldout_fraction, err)))
        return st;
    r->bos = r->o.family == MODEL_FAMILY_OPT ? 1 : 0;
    r->seq_content = r->o.context - r->bos;
    r->n_seqs = (int64_t)(r->corpus.n_train / (size_t)r->seq_content);
    if (r->n_seqs < 1)
        return hl_err_set(err, HL_ERR_INVALID, "the corpus has %zu training tokens: fewer than "
                          "one sequence of %d", r->corpus.n_train, r->seq_content);
    const int32_t mb = r->o.micro_batch > 0 && r->o.micro_batch < r->o.batch ? r->o.micro_batch
                                                                               : r->o.batch;
    r->perm = malloc((size_t)r->n_seqs * sizeof *r->perm);
    r->idx = malloc((size_t)r->o.batch * sizeof *r->idx);
    r->tokens = malloc((size_t)mb * (size_t)r->o.context * sizeof *r->tokens);
    r->starts = malloc(((size_t)mb + 1) * sizeof *r->starts);
    if (!r->perm || !r->idx || !r->tokens || !r->starts)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    r->epoch = -1;
    r->last_loss = NAN;

    if (resume_dir) {
        cJSON *j = read_state(resume_dir, err);
        if (!j)
            return err ? err->code : HL_ERR_FORMAT;
        const cJSON *cj = cJSON_GetObjectItemCaseSensitive(j, "corpus");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(cj, "hash");
        char want[32];
        snprintf(want, sizeof want, "%016" PRIx64, r->corpus.hash);
        r->step = (int64_t)cJSON_GetObjectItemCaseSensitive(j, "step")->valuedouble;
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "tokens_seen");
        r->tokens_seen = cJSON_IsNumber(ts) ? (int64_t)ts->valuedouble : 0;
        const cJSON *tl = cJSON_GetObjectItemCaseSensitive(j, "train_loss");
        r->last_loss = cJSON_IsNumber(tl) ? tl->valuedouble : NAN;
        bool same = cJSON_IsString(h) && !strcmp(h->valuestring, want);
        cJSON_Delete(j);
        if (!same)
            return hl_err_set(err, HL_ERR_INVALID, "%s: the corpus files no longer give the token "
                              "stream this checkpoint was trained on", resume_dir);
        char p[FILEBUF];
        snprintf(p, sizeof p, "%s/adamw.safetensors", resume_dir);
        if ((st = adamw_state_read(&r->opt, p, err)))
            return st;
        if (r->opt.step != r->step)
            return hl_err_set(err, HL_ERR_FORMAT, "%s: the optimizer state is at step %" PRId64
                              ", the checkpoint at %" PRId64, resume_dir, r->opt.step, r->step);
        snprintf(p, sizeof p, "%s/params.safetensors", resume_dir);
        if ((st = checkpoint_read_params(p, &r->m.params, err)))
            return st;
    }
    return HL_OK;
}

hl_status pretrain_run(const pretrain_opts *o, const char *resume_dir, pretrain_result *res,
                       FILE *log, volatile sig_atomic_t *stop, hl_err *err)
{
    run *r = calloc(1, sizeof *r);
    if (!r)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    memset(res, 0, sizeof *res);
    res->heldout_nll = res->heldout_ppl = NAN;
    r->o = *o;
    const double t0 = now_s();
    hl_status st = run_setup(r, resume_dir, err);
    if (st)
        goto done;
    const pretrain_opts *po = &r->o;
    say(log, "%s %d x %d (%d heads, FFN %d), context %d, vocabulary %d, %zu parameters",
          model_family_name(po->family), po->n_layers, po->d_model, po->n_heads,
          r->m.cfg.d_ffn, po->context, r->m.cfg.vocab, param_set_count(&r->m.params));
    say(log, "corpus: %zu training tokens (%" PRId64 " sequences of %d), %zu held out%s",
          r->corpus.n_train, r->n_seqs, r->seq_content, r->corpus.n_heldout,
          po->heldout[0] ? " (--heldout)" : "");
    if (resume_dir)
        say(log, "resumed %s at step %" PRId64, resume_dir, r->step);
    const double t_loop = now_s();
    const int64_t step0 = r->step;
    double win_loss = 0, win_gn = 0;
    int64_t win_n = 0, win_tok0 = r->tokens_seen;
    double win_t0 = t_loop;
    while (r->step < po->steps) {
        double loss;
        adamw_stats as;
        if ((st = train_step(r, &loss, &as, err)))
            goto done;
        win_loss += loss;
        win_gn += as.grad_norm;
        win_n++;
        if ((po->log_every && r->step % po->log_every == 0) || r->step == po->steps) {
            double tn = now_s(), rate = (double)(r->tokens_seen - win_tok0) / (tn - win_t0);
            char eta[32];
            format_duration(eta, sizeof eta,
                            (tn - t_loop) / (double)(r->step - step0) *
                                (double)(po->steps - r->step));
            r->last_loss = win_loss / (double)win_n;
            say(log, "step %" PRId64 "/%" PRId64 "  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  "
                  "eta %s", r->step, po->steps, r->last_loss, as.lr, win_gn / (double)win_n, rate,
                  eta);
            win_loss = win_gn = 0;
            win_n = 0;
            win_tok0 = r->tokens_seen;
            win_t0 = tn;
        }
        bool last = r->step == po->steps;
        if (po->eval_every && r->step % po->eval_every == 0 && !last) {
            double nll;
            int64_t nt;
            if ((st = evaluate(r, &nll, &nt, err)))
                goto done;
            if (nt)
                say(log, "step %" PRId64 "  held-out loss %.4f  ppl %.2f  (%" PRId64 " tokens)",
                      r->step, nll, exp(nll), nt);
        }
        bool interrupted = (stop && *stop) || (po->stop_at && r->step == po->stop_at);
        if (interrupted && !po->save[0]) /* never lose the work: OUT.interrupted */
            snprintf(r->o.save, sizeof r->o.save, "%.1000s.interrupted", po->out);
        if (po->save[0] && (last || interrupted ||
                            (po->checkpoint_every && r->step % po->checkpoint_every == 0))) {
            if ((st = save_checkpoint(r, err)))
                goto done;
            say(log, "checkpoint at step %" PRId64 " -> %s", r->step, po->save);
            snprintf(res->save_dir, sizeof res->save_dir, "%s", po->save);
        }
        if (interrupted && !last) {
            res->interrupted = true;
            say(log, "stopped at step %" PRId64 "; resume with --resume %s", r->step, po->save);
            break;
        }
    }
    if (!win_n && !isfinite(r->last_loss))
        r->last_loss = NAN;
    else if (win_n)
        r->last_loss = win_loss / (double)win_n;
    res->steps_done = r->step;
    res->tokens_seen = r->tokens_seen;
    res->n_params = param_set_count(&r->m.params);
    res->vocab_size = r->m.cfg.vocab;
    res->train_loss = r->last_loss;
    if (!res->interrupted) {
        double nll;
        int64_t nt;
        if ((st = evaluate(r, &nll, &nt, err)))
            goto done;
        res->heldout_nll = nll;
        res->heldout_ppl = exp(nll);
        res->heldout_tokens = nt;
        if (nt)
            say(log, "held-out loss %.4f  perplexity %.2f  (%" PRId64 " tokens)", nll, exp(nll),
                  nt);
        res->seconds = now_s() - t0;
        if ((st = write_output(r, res, err)))
            goto done;
        say(log, "wrote %s (%s)", po->out, st_dtype_name(po->out_dtype));
    }
    res->seconds = now_s() - t0;
done:
    run_free(r);
    free(r);
    return st;
}
