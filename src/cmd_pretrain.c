/* cmd_pretrain.c - `helene pretrain`: train a causal LM from scratch.
 *
 * The options are assembled in one order: defaults; with --resume DIR the
 * checkpoint's own options; --config FILE (a JSON object whose keys are the
 * option names below, with '_' for '-'); then the flags.  Every value goes
 * through pretrain_opts_set, so the flags, the JSON file and a checkpoint
 * accept exactly the same keys.  The work itself is engine/pretrain.c.
 * Leaves out: the workbench (pretraining runs headless, progress on stderr).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "pretrain.h"

const char cmd_pretrain_usage[] =
    "usage: helene pretrain --corpus TEXT_FILE [TEXT_FILE...] --out MODEL_DIR [options]\n"
    "       helene pretrain --config FILE [options]\n"
    "       helene pretrain --resume CHECKPOINT_DIR [--steps N] [--out MODEL_DIR] ...\n"
    "\n"
    "Train a causal language model from scratch with backpropagation and AdamW,\n"
    "then write it as a Hugging Face folder (config.json, model.safetensors,\n"
    "vocab.json, merges.txt, tokenizer_config.json) that helene info, score, eval\n"
    "and train load.  Progress goes to stderr, a summary to stdout.\n"
    "\n"
    "Data:\n"
    "  --corpus FILE...        plain UTF-8 text files, tokenized once, concatenated\n"
    "                          and cut into sequences of --context tokens (OPT:\n"
    "                          </s> + context-1 text tokens); shuffled each epoch\n"
    "                          with --seed\n"
    "  --heldout FILE          held-out text for evaluation (default: the last\n"
    "                          --heldout-fraction of the corpus tokens, never\n"
    "                          trained on)\n"
    "  --heldout-fraction F    default 0.01\n"
    "\n"
    "Tokenizer (GPT-2 byte-level BPE; the model's vocabulary = the tokenizer's size):\n"
    "  (default)               the bundled GPT-2 vocab.json + merges.txt (50257)\n"
    "  --vocab F --merges F    a vocab.json + merges.txt pair, used as is (e.g. the\n"
    "                          truncated tokenizer of data/corpus/make_vocab.py)\n"
    "  --merges F              derive the vocabulary from a merge list: OPT's <s>\n"
    "                          <pad> </s> <unk> (GPT-2: <|endoftext|> last), the 256\n"
    "                          bytes, one token per merge\n"
    "  --max-merges M          derive from the first M merges (of --merges or of\n"
    "                          the bundled list): a smaller vocabulary of 260 + M\n"
    "\n"
    "Model:\n"
    "  --family opt|gpt2       architecture (default opt: pre-LN, ReLU, tied head)\n"
    "  --layers N              default 4\n"
    "  --hidden N              default 256\n"
    "  --heads N               default 4\n"
    "  --ffn N                 default 4 x hidden\n"
    "  --context N             tokens per sequence = positions (default 128)\n"
    "\n"
    "Training:\n"
    "  --batch N               sequences per step (default 16)\n"
    "  --micro-batch N         sequences per forward/backward (default: batch)\n"
    "  --steps N               default 1000\n"
    "  --lr X                  peak learning rate (default 1e-3)\n"
    "  --warmup N              linear warm-up steps (default 100), then cosine decay\n"
    "  --min-lr-ratio X        final lr / peak lr (default 0.1)\n"
    "  --weight-decay X        decoupled, not on biases and norms (default 0.1)\n"
    "  --clip X                global gradient-norm clip, 0 = off (default 1.0)\n"
    "  --beta1 X --beta2 X --eps X   AdamW (default 0.9, 0.95, 1e-8)\n"
    "  --seed S                initialisation and data order (default 1)\n"
    "  --threads N             compute threads (default: all online CPUs)\n"
    "\n"
    "Runs:\n"
    "  --eval-every N          held-out loss and perplexity every N steps (default:\n"
    "                          at the end only)\n"
    "  --eval-seqs N           held-out sequences per evaluation (default all)\n"
    "  --log-every N           progress line every N steps (default 10)\n"
    "  --save DIR              checkpoint folder, replaced atomically (at the end,\n"
    "                          every --checkpoint-every N steps, and on Ctrl-C)\n"
    "  --checkpoint-every N    default: at the end only\n"
    "  --resume DIR            continue a checkpoint bit-identically; only --steps,\n"
    "                          --out, --save, --threads, --dtype and the\n"
    "                          intervals may change\n"
    "  --out MODEL_DIR         the Hugging Face folder to write (must not exist)\n"
    "  --dtype F32|F16|BF16    storage type of model.safetensors (default F32)\n"
    "  --config FILE           options as a JSON object; flags override it\n"
    "\n"
    "Exit status: 0 finished, 1 failed, 2 bad usage, 130/143 interrupted by\n"
    "SIGINT/SIGTERM after writing a checkpoint (the message says how to resume).\n";

static volatile sig_atomic_t g_stop; /* set by the signal handler, polled per step */

static void on_signal(int sig)
{
    g_stop = sig;
}

/* The option flags: pretrain_opt_name(i) with '_' -> '-', each a string
 * handed to pretrain_opts_set under its own name. */
static char option_flags[PRETRAIN_N_OPTS][32];

static int flag_index(const char *name)
{
    for (int i = 0; i < PRETRAIN_N_OPTS; i++)
        if (!strcmp(option_flags[i], name))
            return i;
    return -1;
}

int cmd_pretrain(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_pretrain_usage, stdout);
        return 0;
    }
    const char *values[PRETRAIN_N_OPTS] = {0};
    const char *config = NULL, *resume = NULL;
    cli_flag flags[PRETRAIN_N_OPTS + 3];
    const int nf = PRETRAIN_N_OPTS;
    for (int i = 0; i < nf; i++) {
        const char *name = pretrain_opt_name(i);
        if (!name || strlen(name) >= sizeof option_flags[i]) {
            fprintf(stderr, "helene pretrain: internal error: option table\n");
            return 1;
        }
        for (int c = 0; (option_flags[i][c] = name[c] == '_' ? '-' : name[c]); c++)
            ;
        flags[i] = (cli_flag){option_flags[i], CLI_KIND_STRING, &values[i], 0, 0, false};
    }
    flags[nf] = (cli_flag){"config", CLI_KIND_STRING, &config, 0, 0, false};
    flags[nf + 1] = (cli_flag){"resume", CLI_KIND_STRING, &resume, 0, 0, false};
    flags[nf + 2] = (cli_flag){NULL, CLI_KIND_BOOL, NULL, 0, 0, false};
    const char *pos[PRETRAIN_MAX_FILES];
    int npos = 0;
    if (!cli_parse("pretrain", argc, argv, flags, pos, PRETRAIN_MAX_FILES, &npos))
        return 2;

    pretrain_opts o;
    pretrain_opts_default(&o);
    char thr[16];
    snprintf(thr, sizeof thr, "%d", cli_default_threads());
    hl_err err;
    hl_err_clear(&err);
    if (resume && pretrain_checkpoint_opts(&o, resume, &err)) {
        fprintf(stderr, "helene pretrain: %s\n", err.msg);
        return 1;
    }
    if (!resume)
        pretrain_opts_set(&o, "threads", thr, &err);
    if (config && pretrain_opts_load_json(&o, config, &err)) {
        fprintf(stderr, "helene pretrain: %s\n", err.msg);
        return err.code == HL_ERR_IO ? 1 : 2;
    }
    /* positional arguments are more corpus files: `--corpus a.txt b.txt` */
    const char *corpus_flag = values[flag_index("corpus")];
    if (npos && !corpus_flag) {
        fprintf(stderr, "helene pretrain: unexpected argument '%s' (corpus files follow "
                        "--corpus)\n", pos[0]);
        return 2;
    }
    if (corpus_flag)
        o.n_corpus = 0; /* the command line's corpus replaces the config's */
    for (int i = 0; i < nf; i++) {
        if (!values[i])
            continue;
        const char *key = pretrain_opt_name(i);
        if (resume && !pretrain_key_may_change_on_resume(key)) {
            fprintf(stderr, "helene pretrain: --%s is fixed by the checkpoint %s and cannot "
                            "change on resume\n", option_flags[i], resume);
            return 2;
        }
        if (pretrain_opts_set(&o, key, values[i], &err)) {
            /* the message names the key ("heldout_fraction: ..."): name the flag */
            size_t kl = strlen(key);
            const char *rest = strncmp(err.msg, key, kl) ? err.msg : err.msg + kl;
            fprintf(stderr, "helene pretrain: --%s%s%s\n", option_flags[i],
                    rest == err.msg ? ": " : "", rest);
            return 2;
        }
    }
    for (int i = 0; i < npos; i++)
        if (pretrain_opts_set(&o, "corpus", pos[i], &err)) {
            fprintf(stderr, "helene pretrain: %s\n", err.msg);
            return 2;
        }
    if (pretrain_opts_check(&o, &err)) {
        fprintf(stderr, "helene pretrain: %s\n", err.msg);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pretrain_result res;
    hl_status st = pretrain_run(&o, resume, &res, stderr, &g_stop, &err);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (st) {
        fprintf(stderr, "helene pretrain: %s\n", err.msg);
        return 1;
    }
    if (res.interrupted) {
        fprintf(stderr,
                "helene pretrain: %s at step %lld; resume with:\n"
                "  helene pretrain --resume %s\n",
                g_stop == SIGTERM ? "terminated" : g_stop ? "interrupted" : "stopped (--stop-at)",
                (long long)res.steps_done,
                res.save_dir);
        return g_stop ? 128 + (int)g_stop : 0;
    }
    printf("model          %s\n", o.out);
    printf("steps          %lld\n", (long long)res.steps_done);
    printf("tokens seen    %lld\n", (long long)res.tokens_seen);
    printf("parameters     %zu (vocabulary %d)\n", res.n_params, res.vocab_size);
    printf("train loss     %.4f (mean of the last log window)\n", res.train_loss);
    if (res.heldout_tokens)
        printf("held-out loss  %.4f, perplexity %.2f (%lld tokens)\n", res.heldout_nll,
               res.heldout_ppl, (long long)res.heldout_tokens);
    printf("time           %.1f s\n", res.seconds);
    return 0;
}
