/* cmd_model.c - `helene info` and `helene score`: look at a model folder. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "fileio.h"
#include "lm.h"

const char cmd_info_usage[] =
    "usage: helene info --model DIR [--tensors] [--trainable REGEX] [--json]\n"
    "                   [--threads N]\n"
    "\n"
    "Load a Hugging Face model folder (config.json, model.safetensors or shards,\n"
    "vocab.json + merges.txt), check every tensor, and print its architecture:\n"
    "family, layers, hidden size, heads, vocabulary, parameters, storage dtype and\n"
    "the fp32 memory the weights take once loaded.\n"
    "\n"
    "  --model DIR   the model folder (required)\n"
    "  --tensors     also list every tensor: name, shape, parameters\n"
    "  --trainable REGEX\n"
    "                mark which tensors `helene train --trainable REGEX` would tune\n"
    "                (POSIX extended regex searched in the name) and count them\n"
    "  --json        print one JSON object (keys: family, n_layers, n_params, ...;\n"
    "                with --tensors or --trainable also \"tensors\")\n"
    "  --threads N   compute threads (default: all online CPUs)\n";

const char cmd_score_usage[] =
    "usage: helene score --model DIR [--json] [--threads N] FILE\n"
    "\n"
    "Mean negative log-likelihood per predicted token of the text in FILE ('-' reads\n"
    "standard input), and its perplexity.  Families whose tokenizer adds a BOS token\n"
    "(OPT: </s>) predict every text token; others (GPT-2) predict tokens 2..N from\n"
    "their prefixes.  Text longer than the model's context is scored in consecutive\n"
    "windows, each token predicted once.  A masked LM (RoBERTa) gets its pseudo-\n"
    "log-likelihood (Salazar et al., 2020): each token is replaced by <mask> in turn\n"
    "and predicted from all the others in its window (one forward per token).\n"
    "\n"
    "  --model DIR   the model folder (required)\n"
    "  --json        print {\"tokens\": N, \"nll\": X, \"ppl\": Y}\n"
    "  --threads N   compute threads (default: all online CPUs)\n";

static int open_model(lm *l, const char *cmd, const char *dir, long threads)
{
    if (!dir) {
        fprintf(stderr, "helene %s: --model DIR is required (see 'helene help %s')\n", cmd, cmd);
        return 2;
    }
    hl_err err;
    hl_err_clear(&err);
    if (lm_open(l, dir, (int)threads, &err)) {
        fprintf(stderr, "helene %s: %s\n", cmd, err.msg);
        return 1;
    }
    return 0;
}

int cmd_info(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_info_usage, stdout);
        return 0;
    }
    const char *dir = NULL, *trainable = NULL;
    bool json = false, tensors = false;
    long threads = cli_default_threads();
    cli_flag flags[] = {
        {"model", CLI_KIND_STRING, &dir, 0, 0, false},
        {"tensors", CLI_KIND_BOOL, &tensors, 0, 0, false},
        {"trainable", CLI_KIND_STRING, &trainable, 0, 0, false},
        {"json", CLI_KIND_BOOL, &json, 0, 0, false},
        {"threads", CLI_KIND_INT, &threads, 1, POOL_MAX_THREADS, false},
        {NULL, CLI_KIND_BOOL, NULL, 0, 0, false},
    };
    const char *pos[1];
    int npos;
    if (!cli_parse("info", argc, argv, flags, pos, 0, &npos))
        return 2;
    lm l;
    int rc = open_model(&l, "info", dir, threads);
    if (rc)
        return rc;
    param_set *ps = &l.model.params;
    if (trainable) {
        hl_err err;
        if (param_set_select(ps, trainable, &err)) {
            fprintf(stderr, "helene info: %s\n", err.msg);
            lm_close(&l);
            return 2;
        }
        tensors = true;
    }
    int n_tuned_layers = 0;
    size_t n_tuned = param_set_count_trainable(ps, &n_tuned_layers);
    const model_config *c = &l.model.cfg;
    size_t n_params = param_set_count(&l.model.params);
    double mib = (double)n_params * 4.0 / (1024.0 * 1024.0);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", dir);
        cJSON_AddStringToObject(o, "family", model_family_name(c->family));
        cJSON_AddNumberToObject(o, "n_layers", c->n_layers);
        cJSON_AddNumberToObject(o, "hidden_size", c->d_model);
        cJSON_AddNumberToObject(o, "n_heads", c->n_heads);
        cJSON_AddNumberToObject(o, "n_kv_heads", c->n_kv_heads > 0 ? c->n_kv_heads : c->n_heads);
        cJSON_AddNumberToObject(o, "head_dim", model_head_dim(c));
        cJSON_AddNumberToObject(o, "ffn_dim", c->d_ffn);
        cJSON_AddNumberToObject(o, "vocab_size", c->vocab);
        cJSON_AddNumberToObject(o, "tokenizer_size", bpe_vocab_size(&l.tok));
        cJSON_AddNumberToObject(o, "max_positions", c->max_pos);
        cJSON_AddNumberToObject(o, "n_params", (double)n_params);
        cJSON_AddNumberToObject(o, "n_tensors", l.model.params.n_layers);
        cJSON_AddStringToObject(o, "storage_dtype", l.model.storage_dtype);
        cJSON_AddNumberToObject(o, "fp32_bytes", (double)n_params * 4.0);
        cJSON_AddBoolToObject(o, "pre_layer_norm", c->pre_ln);
        cJSON_AddBoolToObject(o, "tied_head", c->tied_head);
        cJSON_AddBoolToObject(o, "adds_bos", c->add_bos);
        cJSON_AddStringToObject(o, "objective", model_is_masked_lm(c) ? "masked_lm" : "causal_lm");
        if (tensors) {
            cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
            for (int i = 0; i < ps->n_layers; i++) {
                const param_layer *pl = &ps->layers[i];
                cJSON *t = cJSON_CreateObject();
                cJSON_AddStringToObject(t, "name", pl->name);
                cJSON *sh = cJSON_AddArrayToObject(t, "shape");
                for (int d = 0; d < pl->ndim; d++)
                    cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)pl->shape[d]));
                cJSON_AddNumberToObject(t, "n_params", (double)pl->size);
                cJSON_AddBoolToObject(t, "tuned", !pl->frozen);
                cJSON_AddItemToArray(arr, t);
            }
            cJSON_AddNumberToObject(o, "n_params_tuned", (double)n_tuned);
        }
        char *s = cJSON_PrintUnformatted(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("model        %s\n", dir);
        if (c->family == MODEL_FAMILY_LLAMA)
            printf("family       llama (%s: RMSNorm, rotary positions theta %g%s, %s, SwiGLU%s)\n",
                   c->model_type, c->rope_theta,
                   c->rope_scaling == MODEL_ROPE_LINEAR   ? " scaled linearly"
                   : c->rope_scaling == MODEL_ROPE_LLAMA3 ? " scaled as llama3"
                                                          : "",
                   c->n_kv_heads < c->n_heads ? "grouped-query attention" : "multi-head attention",
                   c->qkv_bias ? ", q/k/v biases" : "");
        else
            printf("family       %s (%s-LN%s%s)\n", model_family_name(c->family),
                   c->pre_ln ? "pre" : "post",
                   c->d_embed != c->d_model ? ", project_in/out" : "",
                   model_is_masked_lm(c) ? ", bidirectional masked LM: scores the word at <mask>"
                                         : "");
        printf("layers       %d\n", c->n_layers);
        if (c->n_kv_heads > 0 && c->n_kv_heads != c->n_heads)
            printf("hidden       %d (%d query heads and %d key/value heads x %d, FFN %d)\n",
                   c->d_model, c->n_heads, c->n_kv_heads, model_head_dim(c), c->d_ffn);
        else
            printf("hidden       %d (%d heads x %d, FFN %d)\n", c->d_model, c->n_heads,
                   model_head_dim(c), c->d_ffn);
        printf("vocabulary   %d (tokenizer %d)\n", c->vocab, bpe_vocab_size(&l.tok));
        printf("context      %d tokens\n", c->max_pos);
        printf("parameters   %zu in %d tensors\n", n_params, l.model.params.n_layers);
        printf("storage      %s\n", l.model.storage_dtype);
        printf("fp32 memory  %.1f MiB\n", mib);
        printf("head         %s\n", c->tied_head ? "tied to the word embeddings" : "separate");
        printf("BOS          %s\n", model_is_masked_lm(c) ? "<s> and </s> spelled by the "
                                                              "masked templates"
                                     : c->add_bos ? "prepended"
                                                  : "none");
        if (l.model.n_unused_tensors)
            printf("note         %d tensor(s) in the file are not used by this architecture\n",
                   l.model.n_unused_tensors);
        if (trainable)
            printf("tuned        %zu parameters (%.2f%%) in %d of %d tensors (--trainable '%s')\n",
                   n_tuned, 100.0 * (double)n_tuned / (double)(n_params ? n_params : 1),
                   n_tuned_layers, ps->n_layers, trainable);
        if (tensors) {
            printf("\n%-48s %-14s %12s%s\n", "tensor", "shape", "parameters",
                   trainable ? "  tuned" : "");
            for (int i = 0; i < ps->n_layers; i++) {
                const param_layer *pl = &ps->layers[i];
                char shape[64];
                int at = 0;
                for (int d = 0; d < pl->ndim && at < (int)sizeof shape; d++)
                    at += snprintf(shape + at, sizeof shape - (size_t)at, "%s%lld",
                                   d ? "x" : "", (long long)pl->shape[d]);
                printf("%-48s %-14s %12zu%s\n", pl->name, shape, pl->size,
                       trainable ? (pl->frozen ? "  -" : "  yes") : "");
            }
        }
    }
    lm_close(&l);
    return 0;
}

int cmd_score(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_score_usage, stdout);
        return 0;
    }
    const char *dir = NULL;
    bool json = false;
    long threads = cli_default_threads();
    cli_flag flags[] = {
        {"model", CLI_KIND_STRING, &dir, 0, 0, false},
        {"json", CLI_KIND_BOOL, &json, 0, 0, false},
        {"threads", CLI_KIND_INT, &threads, 1, POOL_MAX_THREADS, false},
        {NULL, CLI_KIND_BOOL, NULL, 0, 0, false},
    };
    const char *pos[1];
    int npos;
    if (!cli_parse("score", argc, argv, flags, pos, 1, &npos))
        return 2;
    if (npos != 1) {
        fprintf(stderr, "helene score: give one text FILE (or '-' for stdin)\n");
        return 2;
    }
    size_t len = 0;
    hl_err rerr;
    char *text = NULL;
    if (file_read(pos[0], (size_t)1 << 31, &text, &len, &rerr)) {
        fprintf(stderr, "helene score: %s\n", rerr.msg);
        return 1;
    }
    lm l;
    int rc = open_model(&l, "score", dir, threads);
    if (rc) {
        free(text);
        return rc;
    }
    hl_err err;
    hl_err_clear(&err);
    double nll = 0;
    size_t ntok = 0;
    if (lm_score_text(&l, &nll, &ntok, text, len, &err)) {
        fprintf(stderr, "helene score: %s: %s\n", pos[0], err.msg);
        rc = 1;
    } else if (ntok == 0) {
        fprintf(stderr, "helene score: %s: no tokens to predict (the text is %s)\n", pos[0],
                len ? "a single token" : "empty");
        rc = 1;
    } else if (json) {
        printf("{\"tokens\":%zu,\"nll\":%.6f,\"ppl\":%.4f,\"pseudo\":%s}\n", ntok, nll,
               exp(nll), model_is_masked_lm(&l.model.cfg) ? "true" : "false");
    } else if (model_is_masked_lm(&l.model.cfg)) {
        printf("tokens %zu (each masked in turn)\npnll   %.6f nats/token (pseudo-log-"
               "likelihood)\npppl   %.4f\n", ntok, nll, exp(nll));
    } else {
        printf("tokens %zu\nnll    %.6f nats/token\nppl    %.4f\n", ntok, nll, exp(nll));
    }
    free(text);
    lm_close(&l);
    return rc;
}
