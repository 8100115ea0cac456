/* runargs.c - see runargs.h. */
#include "runargs.h"

#include <locale.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "analytic.h"
#include "app.h"
#include "checkpoint.h"
#include "engine.h"
#include "hparams.h"
#include "lm.h"
#include "peft.h"

static bool flag_is(const char *name, size_t len, const char *want)
{
    /* '-' and '_' are interchangeable, as in runcfg keys */
    size_t i = 0;
    for (; i < len && want[i]; i++) {
        char a = name[i] == '-' ? '_' : name[i], b = want[i] == '-' ? '_' : want[i];
        if (a != b)
            return false;
    }
    return i == len && !want[i];
}

/* Value of --name in argv (the last one), or NULL. */
static const char *find_value(int argc, char **argv, const char *want, bool *missing)
{
    const char *v = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2))
            continue;
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (!flag_is(name, len, want))
            continue;
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else
            *missing = true;
    }
    return v;
}

static bool is_switch(const char *name, size_t len, runargs *ra, bool apply)
{
    static const char *const sw[] = {"headless", "print_config", "no_preset", "no_color",
                                     "paused"};
    bool *dst[] = {&ra->headless, &ra->print_config, &ra->no_preset, &ra->no_color, &ra->paused};
    for (int i = 0; i < 5; i++)
        if (flag_is(name, len, sw[i])) {
            if (apply)
                *dst[i] = true;
            return true;
        }
    return false;
}

/* --skip-bad or --grad-alignment without a value (none follows, or the next
 * argument is another flag): true. */
static bool bare_bool(const char *name, size_t len, bool has_eq, int i, int argc, char **argv)
{
    if (has_eq || (i + 1 < argc && strncmp(argv[i + 1], "--", 2)))
        return false;
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)(len < sizeof key ? len : sizeof key - 1), name);
    return runcfg_key_is_bool(key);
}

static hl_status apply_preset(runcfg *c, const char *preset, hl_err *err)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", preset ? preset : "");
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            continue;
        *eq = '\0';
        hl_status st = runcfg_set(c, tok, eq + 1, err);
        if (st)
            return st;
    }
    return HL_OK;
}

int runargs_parse(runargs *ra, const char *cmd, int argc, char **argv)
{
    memset(ra, 0, sizeof *ra);
    runcfg_init(&ra->cfg);
    hl_err err;
    hl_err_clear(&err);
    bool missing = false;
    const char *resume = find_value(argc, argv, "resume", &missing);
    const char *config = find_value(argc, argv, "config", &missing);
    if (missing) {
        fprintf(stderr, "helene %s: --resume and --config need a value\n", cmd);
        return 2;
    }
    if (resume && checkpoint_read_config(&ra->cfg, resume, &err)) {
        fprintf(stderr, "helene %s: --resume: %s\n", cmd, err.msg);
        return 1;
    }
    if (config && runcfg_load_json(&ra->cfg, config, &err)) {
        fprintf(stderr, "helene %s: --config: %s\n", cmd, err.msg);
        return 1;
    }
    /* first pass: switches, and the objective/optimizer that pick a preset */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) || !a[2]) {
            fprintf(stderr,
                    "helene %s: unexpected argument '%s' (flags are --KEY VALUE; see 'helene "
                    "help %s')\n",
                    cmd, a, cmd);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (is_switch(name, len, ra, true)) {
            if (eq) {
                fprintf(stderr, "helene %s: --%.*s takes no value\n", cmd, (int)len, name);
                return 2;
            }
            continue;
        }
        if (!eq && !bare_bool(name, len, false, i, argc, argv))
            i++;
    }
    const char *obj_name = find_value(argc, argv, "objective", &missing);
    const char *optimizer = find_value(argc, argv, "optimizer", &missing);
    if (obj_name && runcfg_set(&ra->cfg, "objective", obj_name, &err)) {
        fprintf(stderr, "helene %s: --objective: %s\n", cmd, err.msg);
        return 2;
    }
    if (optimizer && runcfg_set(&ra->cfg, "optimizer", optimizer, &err)) {
        fprintf(stderr, "helene %s: --optimizer: %s\n", cmd, err.msg);
        return 2;
    }
    if (!resume && !ra->no_preset && ra->cfg.objective != RUNCFG_OBJECTIVE_MODEL) {
        analytic_kind k = ra->cfg.objective == RUNCFG_OBJECTIVE_QUADRATIC
                              ? ANALYTIC_KIND_QUADRATIC
                              : ANALYTIC_KIND_ROSENBROCK;
        if (apply_preset(&ra->cfg, analytic_preset(k, optim_method_name(ra->cfg.hp.method)),
                         &err)) {
            fprintf(stderr, "helene %s: preset: %s\n", cmd, err.msg);
            return 1;
        }
        /* presets tune hyperparameters; the user's flags still win below */
        ra->cfg.hp.lr_explicit = true;
    }
    /* --peft: MeZO's perturbation scale for the kind (1e-2 LoRA, 1e-1 prefix),
     * unless --eps is given (the second pass applies it after this) */
    const char *peft = find_value(argc, argv, "peft", &missing);
    if (peft && !resume) {
        peft_spec ps;
        if (peft_parse(&ps, peft, &err)) {
            fprintf(stderr, "helene %s: --peft: %s\n", cmd, err.msg);
            return 2;
        }
        char eps[32], lr[32];
        snprintf(eps, sizeof eps, "%g", peft_recommended_eps(ps.kind));
        if (ps.kind != PEFT_NONE &&
            (runcfg_set(&ra->cfg, "peft", peft, &err) || runcfg_set(&ra->cfg, "eps", eps, &err))) {
            fprintf(stderr, "helene %s: --peft: %s\n", cmd, err.msg);
            return 1;
        }
        /* and the method's learning rate for adapters (--lr still wins) */
        snprintf(lr, sizeof lr, "%.17g", runcfg_method_lr(&ra->cfg, ra->cfg.hp.method, NULL));
        if (ps.kind != PEFT_NONE && !ra->cfg.hp.lr_explicit &&
            runcfg_set(&ra->cfg, "lr", lr, &err)) {
            fprintf(stderr, "helene %s: --peft: %s\n", cmd, err.msg);
            return 1;
        }
    }
    /* second pass: every run setting */
    for (int i = 1; i < argc; i++) {
        const char *name = argv[i] + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (is_switch(name, len, ra, false))
            continue;
        const char *value = eq                                           ? eq + 1
                            : bare_bool(name, len, false, i, argc, argv) ? "true"
                            : i + 1 < argc                               ? argv[++i]
                                                                         : NULL;
        if (!value) {
            fprintf(stderr, "helene %s: --%.*s needs a value\n", cmd, (int)len, name);
            return 2;
        }
        if (flag_is(name, len, "config") || flag_is(name, len, "objective") ||
            flag_is(name, len, "optimizer"))
            continue; /* applied above */
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(len < sizeof key ? len : sizeof key - 1), name);
        if (flag_is(name, len, "batch"))
            snprintf(key, sizeof key, "batch_size");
        if (runcfg_set(&ra->cfg, key, value, &err)) {
            fprintf(stderr, "helene %s: --%s: %s\n", cmd, key, err.msg);
            return 2;
        }
    }
    if (!ra->cfg.model[0] && ra->cfg.objective == RUNCFG_OBJECTIVE_MODEL) {
        /* the bundled pretrained model, or an untrained one (and say so) */
        char bundled[RUNCFG_PATH_MAX];
        if (lm_bundled_path(bundled, sizeof bundled, LM_BUNDLED_MODEL "/config.json")) {
            bundled[strlen(bundled) - strlen("/config.json")] = '\0';
            snprintf(ra->cfg.model, sizeof ra->cfg.model, "%s", bundled);
        } else {
            snprintf(ra->cfg.model, sizeof ra->cfg.model, "%s", LM_DEFAULT_MODEL);
            if (!ra->print_config && strcmp(cmd, "tui"))
                fprintf(stderr,
                        "helene %s: no --model given and no bundled model installed: using "
                        "%s, an UNTRAINED model (give --model DIR, or --objective "
                        "quadratic|rosenbrock)\n",
                        cmd, LM_DEFAULT_MODEL);
        }
    }
    return 0;
}

void runargs_free(runargs *ra)
{
    runcfg_free(&ra->cfg);
}

void runargs_print_hparams(FILE *f)
{
    fprintf(f, "\nHyperparameters (--KEY VALUE; '-' and '_' are interchangeable):\n");
    for (int i = 0; i < hparams_count(); i++) {
        const hparam_info *h = hparams_info_at(i);
        char range[128];
        hparams_range_text(range, sizeof range, h);
        fprintf(f, "  %-18s %-22s default %-10s %s\n", h->key, range, h->def, h->help);
    }
    fprintf(f, "\nRun settings (also keys of --config RUN.json):\n");
    for (int i = 0; i < runcfg_key_count(); i++) {
        const runcfg_key *k = runcfg_key_at(i);
        fprintf(f, "  %-18s %s\n", k->key, k->help);
    }
}

const char *runargs_signal_name(int sig)
{
    return sig == SIGINT ? "interrupted" : sig == SIGHUP ? "hung up" : "terminated";
}

bool runargs_checkpoint_and_quit(engine *e, char *dir, size_t cap)
{
    hl_err err;
    uint64_t id = 0, seen = 0;
    engine_event ev[32];
    int n;
    while ((n = engine_events(e, ev, 32, seen)) > 0) /* only answers from now on */
        seen = ev[n - 1].seq;
    engine_cmd c = {.kind = ENGINE_CMD_CHECKPOINT}; /* "": --save, or the run folder */
    bool posted = engine_post(e, &c, &id, &err) == HL_OK;
    if (!posted)
        fprintf(stderr, "helene: cannot ask for a checkpoint: %s\n", err.msg);
    engine_cmd q = {.kind = ENGINE_CMD_QUIT};
    engine_post(e, &q, NULL, NULL);
    engine_join(e);
    bool saved = false;
    while (posted && (n = engine_events(e, ev, 32, seen)) > 0) {
        for (int i = 0; i < n; i++)
            if (ev[i].cmd_id == id) {
                saved = ev[i].kind == ENGINE_EVENT_APPLIED;
                if (!saved)
                    fprintf(stderr, "helene: %s\n", ev[i].text);
            }
        seen = ev[n - 1].seq;
    }
    engine_telemetry t;
    dir[0] = '\0';
    if (engine_snapshot_alloc(e, &t, NULL) == HL_OK) {
        engine_snapshot(e, &t);
        snprintf(dir, cap, "%s", t.save_dir);
        engine_snapshot_free(&t);
    }
    return saved && dir[0];
}

int runargs_run_tui(runargs *ra)
{
    hl_err err;
    hl_err_clear(&err);
    setlocale(LC_ALL, "");
    const char *nc = getenv("NO_COLOR");
    app_options opt = {!ra->no_color && !(nc && *nc), APP_REDRAW_HZ_DEFAULT};
    engine *e = NULL;
    if (engine_create(&e, &ra->cfg, &err) != HL_OK) {
        fprintf(stderr, "helene: %s\n", err.msg);
        return 1;
    }
    if (engine_start(e, ra->paused, &err) != HL_OK) {
        fprintf(stderr, "helene: %s\n", err.msg);
        engine_free(e);
        return 1;
    }
    hl_status st = app_run(e, &opt, &err); /* posts QUIT before returning, unless signalled */
    int sig = app_caught_signal();
    if (st != HL_OK && !sig) {
        engine_cmd q;
        memset(&q, 0, sizeof q);
        q.kind = ENGINE_CMD_QUIT;
        engine_post(e, &q, NULL, NULL);
    }
    /* the terminal is back: a second Ctrl-C while the last step finishes
     * ends the process the ordinary way */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, sig == SIGHUP ? SIG_IGN : SIG_DFL); /* no terminal to report to */
    if (sig) {
        /* Ctrl-C, kill or a closed terminal: keep the run, as headless does */
        fprintf(stderr, "helene: %s: finishing the current step and writing a checkpoint\n",
                runargs_signal_name(sig));
        char dir[RUNCFG_PATH_MAX];
        if (runargs_checkpoint_and_quit(e, dir, sizeof dir))
            fprintf(stderr, "helene: checkpoint written to %s; resume with:\n"
                            "  helene tui --resume %s\n",
                    dir, dir);
        engine_free(e);
        return 128 + sig;
    }
    engine_join(e);
    int rc = 0;
    if (st != HL_OK) {
        fprintf(stderr, "helene: %s\n", err.msg);
        rc = 1;
    } else {
        engine_telemetry t;
        if (engine_snapshot_alloc(e, &t, NULL) == HL_OK) {
            engine_snapshot(e, &t);
            fprintf(stderr, "helene: stopped at step %llu of %llu%s\n",
                    (unsigned long long)t.step, (unsigned long long)t.total_steps,
                    t.unsaved ? " (progress since the last checkpoint was not saved)" : "");
            engine_snapshot_free(&t);
        }
    }
    engine_free(e);
    return rc;
}
