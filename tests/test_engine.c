/* test_engine.c - the engine thread, checkpoints and resume.
 *
 * Command-queue semantics are tested on the analytic quadratic (fast and
 * exact): pause holds, step-once runs exactly one step, an invalid SET is
 * rejected with nothing changed, QUIT is clean.  Resume is tested for every
 * method: a run of 2N steps and a run of N steps resumed to 2N must end
 * with byte-identical parameter and optimizer-state files.  Checkpoint
 * writing is killed with SIGKILL at many instants; the folder must always
 * load.  A short fine-tuning of a tiny fixture model must lower the loss on
 * its data.
 */
#include <cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "analytic.h"
#include "checkpoint.h"
#include "engine.h"
#include "dist.h"
#include "journal.h"
#include "lm.h"
#include "model.h"
#include "safetensors.h"
#include "taskobj.h"
#include "testutil.h"

static char tmp[256];

static int suite_init(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/helene-test-engine-XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int suite_clean(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void set(runcfg *c, const char *k, const char *v)
{
    hl_err err;
    if (runcfg_set(c, k, v, &err) != HL_OK) {
        fprintf(stderr, "\n  runcfg_set %s=%s: %s", k, v, err.msg);
        CU_FAIL("runcfg_set");
    }
}

/* Wait for the answer to cmd_id; returns its kind or -1 on timeout. */
static int wait_answer(engine *e, uint64_t cmd_id, engine_event *out, int timeout_ms)
{
    uint64_t after = 0;
    for (int waited = 0; waited < timeout_ms; waited += 5) {
        engine_event ev[64];
        int n;
        while ((n = engine_events(e, ev, 64, after)) > 0) {
            for (int i = 0; i < n; i++) {
                after = ev[i].seq;
                if (ev[i].cmd_id == cmd_id) {
                    if (out)
                        *out = ev[i];
                    return (int)ev[i].kind;
                }
            }
        }
        sleep_ms(5);
    }
    return -1;
}

static uint64_t post(engine *e, engine_cmd_kind kind, const char *key, const char *value)
{
    engine_cmd c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    if (key)
        snprintf(c.key, sizeof c.key, "%s", key);
    if (value)
        snprintf(c.value, sizeof c.value, "%s", value);
    uint64_t id = 0;
    hl_err err;
    CU_ASSERT_EQUAL(engine_post(e, &c, &id, &err), HL_OK);
    return id;
}

static uint64_t current_step(engine *e, engine_telemetry *t)
{
    engine_snapshot(e, t);
    return t->step;
}

/* ------------------------------------------------------- commands --- */

static void test_command_queue_semantics(void)
{
    runcfg c;
    runcfg_init(&c);
    set(&c, "objective", "quadratic");
    set(&c, "optimizer", "helene");
    set(&c, "steps", "100000000");
    set(&c, "eval_every", "0");
    set(&c, "threads", "2");
    engine *e;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(engine_create(&e, &c, &err), HL_OK);
    engine_telemetry t;
    CU_ASSERT_EQUAL_FATAL(engine_snapshot_alloc(e, &t, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(engine_start(e, true, &err), HL_OK);
    engine_snapshot(e, &t);
    CU_ASSERT_EQUAL(t.state, ENGINE_STATE_PAUSED);
    CU_ASSERT_EQUAL(t.step, 0);

    /* step-once runs exactly one step, then the pause holds */
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_STEP_ONCE, NULL, NULL), NULL, 5000),
                    ENGINE_EVENT_APPLIED);
    for (int i = 0; i < 200 && current_step(e, &t) < 1; i++)
        sleep_ms(5);
    CU_ASSERT_EQUAL(t.step, 1);
    sleep_ms(100);
    CU_ASSERT_EQUAL(current_step(e, &t), 1);
    CU_ASSERT_EQUAL(t.state, ENGINE_STATE_PAUSED);

    /* step-once while running is rejected */
    /* invalid SET: rejected, nothing changes */
    double lr0 = t.hp.lr;
    engine_event ev;
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SET, "lr", "-1"), &ev, 5000),
                    ENGINE_EVENT_REJECTED);
    CU_ASSERT(strstr(ev.text, "lr") != NULL);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SET, "no_such_key", "1"), &ev, 5000),
                    ENGINE_EVENT_REJECTED);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SET, "beta1", "nan"), &ev, 5000),
                    ENGINE_EVENT_REJECTED);
    sleep_ms(60);
    engine_snapshot(e, &t);
    CU_ASSERT_DOUBLE_EQUAL(t.hp.lr, lr0, 0.0);
    CU_ASSERT_EQUAL(t.step, 1);

    /* valid SET applies, and says from which step */
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SET, "lr", "0.0005"), &ev, 5000),
                    ENGINE_EVENT_APPLIED);
    CU_ASSERT_EQUAL(ev.step, 1);
    CU_ASSERT(strstr(ev.text, "from step 2") != NULL);
    sleep_ms(60);
    engine_snapshot(e, &t);
    CU_ASSERT_DOUBLE_EQUAL(t.hp.lr, 0.0005, 1e-15);

    /* resume, let it run, pause: the step count then holds */
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_RESUME, NULL, NULL), NULL, 5000),
                    ENGINE_EVENT_APPLIED);
    for (int i = 0; i < 400 && current_step(e, &t) < 20; i++)
        sleep_ms(5);
    CU_ASSERT(t.step >= 20);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_STEP_ONCE, NULL, NULL), NULL, 5000),
                    ENGINE_EVENT_REJECTED);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_PAUSE, NULL, NULL), &ev, 5000),
                    ENGINE_EVENT_APPLIED);
    uint64_t held = ev.step;
    sleep_ms(100);
    CU_ASSERT_EQUAL(current_step(e, &t), held);

    /* switch keeps θ and reports the new method; η becomes the new method's
     * own (here the objective's preset for MeZO), and switching back brings
     * the η the user set for HELENE (0.0005 above) */
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SWITCH, NULL, "mezo"), &ev, 5000),
                    ENGINE_EVENT_APPLIED);
    CU_ASSERT(strstr(ev.text, "lr 3e-05: mezo's preset") != NULL);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SWITCH, NULL, "helene"), &ev, 5000),
                    ENGINE_EVENT_APPLIED);
    CU_ASSERT(strstr(ev.text, "lr 0.0005: the one you set for helene") != NULL);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SWITCH, NULL, "mezo"), &ev, 5000),
                    ENGINE_EVENT_APPLIED);
    sleep_ms(60);
    engine_snapshot(e, &t);
    CU_ASSERT_DOUBLE_EQUAL(t.hp.lr, 3e-5, 1e-12);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SWITCH, NULL, "sgd"), &ev, 5000),
                    ENGINE_EVENT_REJECTED);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SWITCH, NULL, "ft-adam"), &ev, 5000),
                    ENGINE_EVENT_REJECTED);
    CU_ASSERT(strstr(ev.text, "needs a model") != NULL);
    sleep_ms(60);
    engine_snapshot(e, &t);
    CU_ASSERT_STRING_EQUAL(optim_method_name(t.method), "mezo");

    /* a checkpoint without --save goes to a run folder runs/<task>-<method>-<UTC>/
     * under the working directory, shown in the telemetry */
    char cwd[1024];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof cwd));
    CU_ASSERT_EQUAL_FATAL(chdir(tmp), 0);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_CHECKPOINT, NULL, ""), &ev, 5000),
                    ENGINE_EVENT_APPLIED);
    CU_ASSERT(strstr(ev.text, "checkpoint runs/quadratic-mezo-") != NULL);
    sleep_ms(60);
    engine_snapshot(e, &t);
    CU_ASSERT(!strncmp(t.save_dir, "runs/quadratic-mezo-", 20));
    char ck[4400];
    snprintf(ck, sizeof ck, "%s/%s/checkpoint.json", tmp, t.save_dir);
    CU_ASSERT_EQUAL(access(ck, R_OK), 0);
    CU_ASSERT_EQUAL(chdir(cwd), 0);

    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_QUIT, NULL, NULL), NULL, 5000),
                    ENGINE_EVENT_APPLIED);
    engine_join(e);
    engine_snapshot(e, &t);
    CU_ASSERT_EQUAL(t.state, ENGINE_STATE_QUIT);
    CU_ASSERT_NOT_EQUAL(engine_post(e, &(engine_cmd){.kind = ENGINE_CMD_PAUSE}, NULL, &err),
                        HL_OK);
    engine_snapshot_free(&t);
    engine_free(e);
    runcfg_free(&c);
}

/* ---------------------------------------------------------- resume --- */

/* Run cfg headless to the end; returns the final state. */
static engine_state run_headless(const runcfg *c)
{
    engine *e;
    hl_err err;
    if (engine_create(&e, c, &err) != HL_OK) {
        fprintf(stderr, "\n  engine_create: %s", err.msg);
        return ENGINE_STATE_ERROR;
    }
    engine_start(e, false, &err);
    engine_state s = ENGINE_STATE_RUNNING;
    for (int i = 0; i < 6000; i++) {
        s = engine_wait(e, s, 100);
        if (s == ENGINE_STATE_FINISHED || s == ENGINE_STATE_ERROR ||
            s == ENGINE_STATE_PAUSED)
            break;
    }
    post(e, ENGINE_CMD_QUIT, NULL, NULL);
    engine_join(e);
    engine_free(e);
    return s;
}

static bool same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int x = fgetc(fa), y = fgetc(fb);
        if (x != y)
            same = false;
        if (x == EOF || y == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

/* --trainable for the next resume_case runs (NULL: tune everything), and
 * one more setting (key, value) */
static const char *resume_trainable, *resume_key, *resume_value, *resume_tag = "";

static void resume_case(const char *obj_name, const char *method, const char *model_dir,
                        const char *task_data, int n)
{
    char a[512], b[512], cdir[512], steps[32], steps2[32];
    snprintf(a, sizeof a, "%s/%s-%s%s-a", tmp, obj_name, method, resume_tag);
    snprintf(b, sizeof b, "%s/%s-%s%s-b", tmp, obj_name, method, resume_tag);
    snprintf(cdir, sizeof cdir, "%s/%s-%s%s-c", tmp, obj_name, method, resume_tag);
    snprintf(steps, sizeof steps, "%d", n);
    snprintf(steps2, sizeof steps2, "%d", 2 * n);
    runcfg c;
    runcfg_init(&c);
    set(&c, "objective", obj_name);
    if (model_dir) {
        set(&c, "model", model_dir);
        set(&c, "task", "sst2");
        set(&c, "data", task_data);
        set(&c, "batch_size", "4");
    }
    set(&c, "optimizer", method);
    if (resume_trainable)
        set(&c, "trainable", resume_trainable);
    if (resume_key)
        set(&c, resume_key, resume_value);
    set(&c, "anneal_horizon", "7"); /* else T follows the total steps */
    set(&c, "eval_every", "5");
    set(&c, "threads", "2");
    set(&c, "seed", "1234");
    set(&c, "steps", steps2);
    set(&c, "save", a);
    CU_ASSERT_EQUAL(run_headless(&c), ENGINE_STATE_FINISHED);
    set(&c, "steps", steps);
    set(&c, "save", b);
    CU_ASSERT_EQUAL(run_headless(&c), ENGINE_STATE_FINISHED);

    /* resume: the checkpoint's own config, then the new flags */
    runcfg r;
    runcfg_init(&r);
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(checkpoint_read_config(&r, b, &err), HL_OK);
    CU_ASSERT_STRING_EQUAL(optim_method_name(r.hp.method), method);
    set(&r, "steps", steps2);
    set(&r, "save", cdir);
    CU_ASSERT_EQUAL(run_headless(&r), ENGINE_STATE_FINISHED);
    char pa[600], pc[600];
    for (int f = 0; f < 3; f++) {
        const char *name = f == 0 ? "params.safetensors" : f == 1 ? "optim.safetensors"
                                                                  : "adamw.safetensors";
        snprintf(pa, sizeof pa, "%s/%s", a, name);
        snprintf(pc, sizeof pc, "%s/%s", cdir, name);
        if (f == 2 && strcmp(method, "ft-adam"))
            continue;
        if (!same_file(pa, pc)) {
            fprintf(stderr, "\n  %s %s: %s differs after resume", obj_name, method, name);
            CU_FAIL("resume is not bit-identical");
        }
    }
    runcfg_free(&r);
    runcfg_free(&c);
}

static void test_resume_bit_identical_every_method(void)
{
    static const char *const methods[] = {"mezo", "zo-sgd-mmt", "zo-sign",
                                          "zo-adam", "hizoo", "helene", "layer-newton"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        resume_case("quadratic", methods[i], NULL, NULL, 25);
    resume_case("rosenbrock", "helene", NULL, NULL, 25);
    /* HELENE's measured layer curvature is part of the state */
    resume_key = "precondition", resume_value = "perturbation";
    resume_case("quadratic", "helene", NULL, NULL, 25);
    resume_key = "lambda_mode", resume_value = "measured";
    resume_case("quadratic", "helene", NULL, NULL, 25);
    /* 16-bit state: the rounding bits are a function of the step, so a
     * resumed run rounds as the uninterrupted one did */
    resume_key = "state_bf16", resume_value = "on", resume_tag = "-bf16";
    resume_case("quadratic", "helene", NULL, NULL, 25);
    resume_case("quadratic", "zo-adam", NULL, NULL, 25);
    resume_case("quadratic", "hizoo", NULL, NULL, 25);
    resume_key = resume_value = NULL, resume_tag = "";
}

static void test_resume_bit_identical_model(void)
{
    resume_case("model", "helene", HELENE_TESTDIR "/fixtures/models/opt-tiny-f32",
                HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    resume_case("model", "mezo", HELENE_TESTDIR "/fixtures/models/gpt2-tiny-f32",
                HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    /* layer-newton: past its warm-up (19 groups), with forwards from stages */
    resume_case("model", "layer-newton", HELENE_TESTDIR "/fixtures/models/opt-tiny-f32",
                HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 15);
    /* the first-order comparator resumes bit-identically too (AdamW's m, v, step) */
    resume_case("model", "ft-adam", HELENE_TESTDIR "/fixtures/models/opt350-tiny-f32",
                HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
}

/* Frozen tensors end bit-identical to the model's, tuned ones move, and a
 * run with frozen layers still resumes bit-identically (its optimizer state
 * holds only the tuned layers). */
static void frozen_case(const char *method, const char *dir, const char *pattern,
                        const char *other)
{
    resume_trainable = pattern;
    resume_case("model", method, dir, HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    resume_trainable = NULL;
    model before, after;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(model_load(&before, dir, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(model_load(&after, dir, &err), HL_OK);
    char p[600];
    snprintf(p, sizeof p, "%s/model-%s-a/params.safetensors", tmp, method);
    CU_ASSERT_EQUAL_FATAL(checkpoint_read_params(p, &after.params, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(param_set_select(&after.params, pattern, &err), HL_OK);
    int moved = 0, frozen = 0;
    for (int l = 0; l < after.params.n_layers; l++) {
        const param_layer *pl = &after.params.layers[l];
        bool same = !memcmp(param_layer_data(&before.params, l),
                            param_layer_data(&after.params, l), pl->size * sizeof(float));
        if (pl->frozen) {
            frozen++;
            if (!same)
                fprintf(stderr, "\n  %s: frozen %s changed", method, pl->name);
            CU_ASSERT(same);
        } else
            moved += !same;
    }
    CU_ASSERT(frozen > 0);
    CU_ASSERT(moved > 0);
    model_free(&before);
    model_free(&after);
    if (!other)
        return;
    /* resuming with another set of the same size must not load the state
     * of one tensor into another */
    runcfg r;
    runcfg_init(&r);
    snprintf(p, sizeof p, "%s/model-%s-b", tmp, method);
    CU_ASSERT_EQUAL_FATAL(checkpoint_read_config(&r, p, &err), HL_OK);
    set(&r, "trainable", other);
    engine *e = NULL;
    CU_ASSERT_NOT_EQUAL(engine_create(&e, &r, &err), HL_OK);
    CU_ASSERT(strstr(err.msg, "different set of tensors") != NULL);
    if (e)
        engine_free(e);
    runcfg_free(&r);
}

/* layer-newton's forwards that start at the probed group's block give the
 * numbers of full forwards, bit for bit. */
static void test_layer_newton_shared_forwards(void)
{
    char dir[2][512], p[2][600];
    for (int k = 0; k < 2; k++) {
        snprintf(dir[k], sizeof dir[k], "%s/ln-share-%d", tmp, k);
        runcfg c;
        runcfg_init(&c);
        set(&c, "model", HELENE_TESTDIR "/fixtures/models/opt-tiny-f32");
        set(&c, "task", "sst2");
        set(&c, "data", HELENE_TESTDIR "/fixtures/tasks/sst2.tsv");
        set(&c, "batch_size", "4");
        set(&c, "optimizer", "layer-newton");
        set(&c, "share_forward", k ? "off" : "on");
        set(&c, "newton_k", "3");
        set(&c, "eval_every", "0");
        set(&c, "threads", "2");
        set(&c, "steps", "40");
        set(&c, "save", dir[k]);
        CU_ASSERT_EQUAL(run_headless(&c), ENGINE_STATE_FINISHED);
        snprintf(p[k], sizeof p[k], "%s/params.safetensors", dir[k]);
        runcfg_free(&c);
    }
    CU_ASSERT(same_file(p[0], p[1]));
    model m;
    hl_err err;
    const char *fx = HELENE_TESTDIR "/fixtures/models/opt-tiny-f32";
    CU_ASSERT_EQUAL_FATAL(model_load(&m, fx, &err), HL_OK);
    float *before = malloc(m.params.n * sizeof(float));
    memcpy(before, m.params.data, m.params.n * sizeof(float));
    CU_ASSERT_EQUAL_FATAL(checkpoint_read_params(p[0], &m.params, &err), HL_OK);
    CU_ASSERT(memcmp(before, m.params.data, m.params.n * sizeof(float)) != 0); /* it moved */
    free(before);
    model_free(&m);
}

/* Shards (data-parallel ranks' unit of work, dist.h): a shard's losses do
 * not depend on who evaluates it or on the other shards, so evaluating the
 * shards one at a time (as ranks do) gives the bits of evaluating them all in
 * one process; and --shards S makes runs with any thread count agree. */
static void test_shards_are_independent(void)
{
    static const char *const fixtures[] = {HELENE_TESTDIR "/fixtures/models/opt-tiny-f32",
                                           HELENE_SRCDATADIR "/default-model"};
    for (int f = 0; f < 2; f++) {
        runcfg c;
        runcfg_init(&c);
        set(&c, "model", fixtures[f]);
        if (f == 0) {
            set(&c, "task", "sst2");
            set(&c, "data", HELENE_TESTDIR "/fixtures/tasks/sst2.tsv");
        }
        set(&c, "batch_size", "16");
        lm l;
        taskobj *t = NULL;
        objective obj;
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(lm_open(&l, fixtures[f], 2, &err), HL_OK);
        CU_ASSERT_EQUAL_FATAL(taskobj_create(&t, &obj, &l, &c, &err), HL_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(obj.set_shards);
        int32_t B = 0;
        CU_ASSERT_EQUAL_FATAL(objective_select_batch(&obj, &B, 3, &err), HL_OK);
        CU_ASSERT_FATAL(B == 16);
        const param_set *ps = model_trainable(&l.model);
        double whole[16], all[16], one_by_one[16];
        obj.set_shards(obj.ctx, 1, 0, 1);
        CU_ASSERT_EQUAL(objective_eval(&obj, whole, ps, &l.pool, &err), HL_OK);
        for (int S = 2; S <= 5; S += 3) {
            obj.set_shards(obj.ctx, S, 0, S);
            CU_ASSERT_EQUAL(objective_eval(&obj, all, ps, &l.pool, &err), HL_OK);
            for (int32_t k = 0; k < S; k++) {
                obj.set_shards(obj.ctx, S, k, k + 1);
                CU_ASSERT_EQUAL(objective_eval(&obj, one_by_one, ps, &l.pool, &err), HL_OK);
            }
            CU_ASSERT(memcmp(all, one_by_one, sizeof all) == 0);
            int differ = 0; /* OpenBLAS: the same rows in another product */
            double worst = 0;
            for (int b = 0; b < 16; b++) {
                differ += all[b] != whole[b];
                worst = fmax(worst, fabs(all[b] - whole[b]) / fmax(fabs(whole[b]), 1e-30));
            }
            CU_ASSERT(worst < 1e-5); /* the same losses, to rounding */
            fprintf(stderr, "\n  %s, %d shards: %d of 16 losses differ from one forward's "
                    "(relative %.1e)", f ? "default model" : "opt-tiny", S, differ, worst);
        }
        objective_destroy(&obj);
        lm_close(&l);
        runcfg_free(&c);
    }
}

/* PEFT: every ZO method tunes only the adapters, resumes bit-identically,
 * and its checkpoints hold the adapters alone, tied to the base weights. */
static void peft_case(const char *method, const char *dir, const char *spec, const char *tag)
{
    resume_key = "peft", resume_value = spec, resume_tag = tag;
    resume_case("model", method, dir, HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    resume_key = resume_value = NULL, resume_tag = "";
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/model-%s%s-a/params.safetensors", tmp, method, tag);
    snprintf(b, sizeof b, "%s/model-%s%s-b", tmp, method, tag);
    st_file f;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(st_file_open(&f, a, &err), HL_OK);
    int n = st_file_count(&f), adapters = 0, moved = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_file_tensor(&f, i);
        adapters += strstr(t->name, "lora_") || strstr(t->name, "prefix.");
    }
    CU_ASSERT(n > 0 && adapters == n); /* no base weight in a PEFT checkpoint */
    /* the adapters moved; LoRA's B starts at zero and must have left it */
    model m;
    CU_ASSERT_EQUAL_FATAL(model_load(&m, dir, &err), HL_OK);
    peft_spec ps;
    CU_ASSERT_EQUAL_FATAL(peft_parse(&ps, spec, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(model_peft_attach(&m, &ps, 1234, &err), HL_OK);
    float *init = malloc(m.peft_params.n * sizeof *init);
    memcpy(init, m.peft_params.data, m.peft_params.n * sizeof *init);
    CU_ASSERT_EQUAL_FATAL(checkpoint_read_params(a, &m.peft_params, &err), HL_OK);
    for (int l = 0; l < m.peft_params.n_layers; l++)
        moved += memcmp(init + m.peft_params.layers[l].offset,
                        param_layer_data(&m.peft_params, l),
                        m.peft_params.layers[l].size * sizeof *init) != 0;
    CU_ASSERT_EQUAL(moved, m.peft_params.n_layers);
    free(init);
    model_free(&m);
    st_file_close(&f);
    /* a resume onto other base weights is refused */
    runcfg r;
    runcfg_init(&r);
    CU_ASSERT_EQUAL_FATAL(checkpoint_read_config(&r, b, &err), HL_OK);
    CU_ASSERT_EQUAL(strlen(r.base_hash), 16);
    r.base_hash[0] = r.base_hash[0] == '0' ? '1' : '0';
    engine *e = NULL;
    CU_ASSERT_NOT_EQUAL(engine_create(&e, &r, &err), HL_OK);
    CU_ASSERT(strstr(err.msg, "other base weights") != NULL);
    if (e)
        engine_free(e);
    runcfg_free(&r);
}

static void test_peft_every_method(void)
{
    static const char *const methods[] = {"mezo", "zo-sgd-mmt", "zo-sign", "zo-adam",
                                          "hizoo", "helene", "layer-newton"};
    const char *opt = HELENE_TESTDIR "/fixtures/models/opt-tiny-f32";
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        peft_case(methods[i], opt, "lora:r=2,alpha=4", "-lora");
    peft_case("helene", opt, "prefix:tokens=3", "-prefix");
    peft_case("mezo", HELENE_TESTDIR "/fixtures/models/gpt2-tiny-f32",
              "lora:r=2,targets=q+v+o+fc1+fc2", "-lora-gpt2");
    peft_case("layer-newton", HELENE_TESTDIR "/fixtures/models/gpt2-tiny-f32",
              "prefix:tokens=2", "-prefix-gpt2");
    /* RoBERTa (masked LM): full-parameter, LoRA and prefix */
    const char *rob = HELENE_TESTDIR "/fixtures/models/roberta-tiny-f32";
    resume_tag = "-rob";
    resume_case("model", "helene", rob, HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    resume_case("model", "layer-newton", rob, HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 15);
    resume_tag = "";
    peft_case("zo-adam", rob, "lora:r=2,targets=q+v+o", "-lora-rob");
    peft_case("hizoo", rob, "prefix:tokens=2", "-prefix-rob");
    resume_tag = "-rob";
    resume_case("model", "ft-adam", rob, HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    resume_tag = "";
    peft_case("ft-adam", rob, "lora:r=2", "-lora-rob");
    peft_case("ft-adam", rob, "prefix:tokens=2", "-prefix-rob");
    /* the Llama family: GQA + biases (Qwen2), head_dim != C/NH (Mistral), a
     * sharded BF16 folder with llama3 rope scaling */
    resume_tag = "-llama";
    resume_case("model", "mezo", HELENE_TESTDIR "/fixtures/models/llama-tiny-f32",
                HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    resume_case("model", "layer-newton", HELENE_TESTDIR "/fixtures/models/qwen2-tiny-f16",
                HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 15);
    resume_case("model", "helene", HELENE_TESTDIR "/fixtures/models/llama-tiny-bf16",
                HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    /* ... and the first-order comparator (AdamW over the Llama backward) */
    resume_case("model", "ft-adam", HELENE_TESTDIR "/fixtures/models/qwen2-tiny-f16",
                HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", 6);
    resume_tag = "";
    peft_case("zo-adam", HELENE_TESTDIR "/fixtures/models/mistral-tiny-f32",
              "lora:r=2,targets=q+k+v+o+fc1+fc2", "-lora-mistral");
    peft_case("helene", HELENE_TESTDIR "/fixtures/models/qwen2-tiny-f16", "prefix:tokens=2",
              "-prefix-qwen2");
    peft_case("ft-adam", HELENE_TESTDIR "/fixtures/models/mistral-tiny-f32",
              "lora:r=2,targets=q+k+v+o+fc1+fc2", "-lora-mistral");
    /* the first-order comparator tunes LoRA too (AdamW state over the adapters) */
    peft_case("ft-adam", opt, "lora:r=2,alpha=4,targets=q+v+fc1", "-lora");
    peft_case("ft-adam", HELENE_TESTDIR "/fixtures/models/opt350-tiny-f32", "lora:r=2",
              "-lora-post");
    /* ... and prefix adapters, and RoBERTa full and with adapters */
    peft_case("ft-adam", opt, "prefix:tokens=2", "-prefix");
}

static void test_trainable_subset(void)
{
    frozen_case("helene", HELENE_TESTDIR "/fixtures/models/opt-tiny-f32", "q_proj|fc1",
                "k_proj|fc1");
    frozen_case("zo-adam", HELENE_TESTDIR "/fixtures/models/gpt2-tiny-f32", "attn|ln_f", NULL);
    frozen_case("layer-newton", HELENE_TESTDIR "/fixtures/models/gpt2-tiny-f32", "ln_|mlp",
                "attn|ln_f");
    frozen_case("ft-adam", HELENE_TESTDIR "/fixtures/models/opt350-tiny-f32", "q_proj|v_proj",
                NULL);
}

static int n_visits;
static void count_visit(void *ctx, bool is_eval, uint64_t step, double loss, double lp,
                        double lmi, double c, double alpha, double lr, double dev)
{
    (void)ctx, (void)is_eval, (void)loss, (void)lp, (void)lmi, (void)c, (void)alpha, (void)lr,
        (void)dev;
    CU_ASSERT_EQUAL(step, 3);
    n_visits++;
}

static void test_bad_checkpoints_are_refused(void)
{
    char a[512], p[700];
    snprintf(a, sizeof a, "%s/quadratic-helene-a", tmp); /* made by the resume test */
    runcfg r;
    runcfg_init(&r);
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(checkpoint_read_config(&r, a, &err), HL_OK);
    /* other optimizer than the state's */
    set(&r, "optimizer", "zo-adam");
    engine *e;
    CU_ASSERT_NOT_EQUAL(engine_create(&e, &r, &err), HL_OK);
    CU_ASSERT(strstr(err.msg, "optimizer") != NULL);
    /* another model (rosenbrock has other layers) */
    set(&r, "optimizer", "helene");
    set(&r, "objective", "rosenbrock");
    CU_ASSERT_NOT_EQUAL(engine_create(&e, &r, &err), HL_OK);
    CU_ASSERT(strstr(err.msg, "another model") != NULL);
    runcfg_free(&r);
    /* truncated params file */
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s-trunc' && truncate -s 100 '%s-trunc/params.safetensors'",
             a, a, a);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    snprintf(p, sizeof p, "%s-trunc", a);
    runcfg_init(&r);
    CU_ASSERT_EQUAL(checkpoint_read_config(&r, p, &err), HL_OK);
    CU_ASSERT_NOT_EQUAL(engine_create(&e, &r, &err), HL_OK);
    CU_ASSERT(strstr(err.msg, "params.safetensors") != NULL);
    runcfg_free(&r);
    /* edited JSON */
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s-json' && echo '{\"format\": 3}' > '%s-json/checkpoint.json'",
             a, a, a);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    snprintf(p, sizeof p, "%s-json", a);
    runcfg_init(&r);
    CU_ASSERT_NOT_EQUAL(checkpoint_read_config(&r, p, &err), HL_OK);
    CU_ASSERT(strstr(err.msg, "checkpoint.json") != NULL);
    runcfg_free(&r);
    /* hostile numbers in checkpoint.json (issue 15): an unexpected version
     * (read after free once), and steps, offsets and counts that are huge,
     * negative or fractional (undefined casts once) are refused */
    static const struct {
        const char *key, *sub, *raw, *needle;
        bool at_read; /* refused by checkpoint_read_config already */
    } bad[] = {
        {"version", NULL, "2", "checkpoint version 2", true},
        {"step", NULL, "1e30", "whole", true},
        {"step", NULL, "-1", "whole", true},
        {"step", NULL, "2.5", "whole", true},
        {"journal", "offset", "1e30", "journal.offset", false},
        {"journal", "offset", "-3", "journal.offset", false},
        {"n_params", NULL, "1450.5", "n_params", false},
        {"n_params", NULL, "1e300", "n_params", false},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(p, sizeof p, "%s-bad%zu", a, i);
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", p, a, p);
        CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
        char meta[800];
        snprintf(meta, sizeof meta, "%s/checkpoint.json", p);
        FILE *f = fopen(meta, "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        char text[1 << 15];
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        cJSON *j = cJSON_Parse(text);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        cJSON *parent = bad[i].sub ? cJSON_GetObjectItemCaseSensitive(j, bad[i].key) : j;
        cJSON_ReplaceItemInObjectCaseSensitive(parent, bad[i].sub ? bad[i].sub : bad[i].key,
                                               cJSON_CreateRaw(bad[i].raw));
        char *out = cJSON_Print(j);
        f = fopen(meta, "wb");
        fputs(out, f);
        fclose(f);
        free(out);
        cJSON_Delete(j);
        runcfg_init(&r);
        hl_status st = checkpoint_read_config(&r, p, &err);
        if (!bad[i].at_read) {
            CU_ASSERT_EQUAL(st, HL_OK);
            st = engine_create(&e, &r, &err);
        }
        CU_ASSERT_NOT_EQUAL(st, HL_OK);
        if (st == HL_OK)
            engine_free(e);
        if (!strstr(err.msg, bad[i].needle))
            fprintf(stderr, "  %s = %s: want '%s' in: %s\n", bad[i].sub ? bad[i].sub : bad[i].key,
                    bad[i].raw, bad[i].needle, err.msg);
        CU_ASSERT(strstr(err.msg, bad[i].needle) != NULL);
        runcfg_free(&r);
    }
    /* a journal line with a step no integer can hold is skipped, not cast */
    {
        char jp[700];
        snprintf(jp, sizeof jp, "%s/hostile.jsonl", tmp);
        FILE *f = fopen(jp, "wb");
        fputs("{\"step\":1e30,\"loss\":1}\n{\"step\":-5,\"loss\":1}\n{\"step\":2.5,\"loss\":1}\n"
              "{\"step\":3,\"loss\":1}\n", f);
        fclose(f);
        n_visits = 0;
        CU_ASSERT_EQUAL(journal_scan(jp, 100, count_visit, NULL, &err), HL_OK);
        CU_ASSERT_EQUAL(n_visits, 1);
    }
    /* a folder holding other files is never replaced by a checkpoint */
    snprintf(p, sizeof p, "%s/not-a-checkpoint", tmp);
    mkdir(p, 0755);
    snprintf(cmd, sizeof cmd, "echo precious > '%s/notes.txt'", p);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    param_set ps;
    param_set_init(&ps);
    int64_t shape[1] = {4};
    param_set_add(&ps, "w", 1, shape, true, -1, &err);
    param_set_alloc(&ps, &err);
    optim *o;
    CU_ASSERT_EQUAL_FATAL(optim_init(&o, &ps, NULL, 1, &err), HL_OK);
    runcfg_init(&r);
    CU_ASSERT_NOT_EQUAL(checkpoint_save(p, &r, &ps, o, 1, "", 0, &err), HL_OK);
    CU_ASSERT(strstr(err.msg, "refusing") != NULL);
    snprintf(cmd, sizeof cmd, "test \"$(cat '%s/notes.txt')\" = precious", p);
    CU_ASSERT_EQUAL(system(cmd), 0);
    runcfg_free(&r);
    optim_free(o);
    param_set_free(&ps);
}

/* ----------------------------------------------------- fault injection --- */

static void test_checkpoint_survives_kill(void)
{
    /* a parameter set big enough that one write takes a few milliseconds */
    param_set ps;
    param_set_init(&ps);
    hl_err err;
    int64_t shape[2] = {256, 1024};
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer%d.weight", i);
        CU_ASSERT_EQUAL_FATAL(param_set_add(&ps, name, 2, shape, true, i, &err), HL_OK);
    }
    CU_ASSERT_EQUAL_FATAL(param_set_alloc(&ps, &err), HL_OK);
    optim *o;
    CU_ASSERT_EQUAL_FATAL(optim_init(&o, &ps, NULL, 7, &err), HL_OK);
    runcfg r;
    runcfg_init(&r);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/killed", tmp);
    for (size_t i = 0; i < ps.n; i++)
        ps.data[i] = -1.0f;
    CU_ASSERT_EQUAL_FATAL(checkpoint_save(dir, &r, &ps, o, 1, "", 0, &err), HL_OK);
    int loaded_new = 0;
    for (int trial = 0; trial < 12; trial++) {
        /* the child reports every completed write, so each kill lands at a
         * known distance after one: no dependence on the machine's speed */
        int fds[2];
        CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            for (uint64_t v = 2;; v++) { /* keep replacing the checkpoint */
                for (size_t i = 0; i < ps.n; i++)
                    ps.data[i] = (float)v;
                if (checkpoint_save(dir, &r, &ps, o, v, "", 0, NULL))
                    _exit(3);
                if (write(fds[1], "w", 1) != 1)
                    _exit(4);
            }
        }
        close(fds[1]);
        char b;
        int done = 0;
        for (int k = 0; k < 1 + trial % 3; k++) /* wait for 1..3 completed writes */
            done += read(fds[0], &b, 1) == 1;
        CU_ASSERT(done > 0);
        sleep_ms(trial * 3); /* then die somewhere in the next write */
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        close(fds[0]);
        CU_ASSERT(WIFSIGNALED(status));
        /* whatever instant it died at, the folder is a complete checkpoint */
        checkpoint_info ci;
        hl_err lerr;
        if (checkpoint_load(dir, &ps, NULL, &ci, &lerr) != HL_OK) {
            fprintf(stderr, "\n  trial %d: %s", trial, lerr.msg);
            CU_FAIL("checkpoint unreadable after kill -9");
            continue;
        }
        /* and consistent: θ is the value the recorded step wrote */
        float want = ci.step == 1 ? -1.0f : (float)ci.step;
        CU_ASSERT_EQUAL(ps.data[0], want);
        CU_ASSERT_EQUAL(ps.data[ps.layers[3].offset + 5], want);
        loaded_new += ci.step > 1;
    }
    CU_ASSERT(loaded_new > 0);
    optim_free(o);
    param_set_free(&ps);
    runcfg_free(&r);
}

/* --------------------------------------------------- real fine-tuning --- */

static void test_short_finetune_lowers_loss(void)
{
    /* train = dev = the 20-line SST-2 fixture: the dev loss is the training
     * objective, which ZO must lower */
    char data[300], cmd[1400];
    snprintf(data, sizeof data, "%s/sst2-folder", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/train.tsv' && cp '%s' '%s/dev.tsv'",
             data, HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", data,
             HELENE_TESTDIR "/fixtures/tasks/sst2.tsv", data);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    static const char *const methods[] = {"mezo", "helene"};
    for (int mi = 0; mi < 2; mi++) {
        runcfg c;
        runcfg_init(&c);
        set(&c, "model", HELENE_TESTDIR "/fixtures/models/opt-tiny-f32");
        set(&c, "task", "sst2");
        set(&c, "data", data);
        set(&c, "batch_size", "20");
        set(&c, "optimizer", methods[mi]);
        set(&c, "lr", "0.001");
        set(&c, "eps", "0.001");
        set(&c, "steps", "150");
        set(&c, "eval_every", "150");
        set(&c, "threads", "2");
        char log[600];
        snprintf(log, sizeof log, "%s/ft-%s.jsonl", tmp, methods[mi]);
        set(&c, "log", log);
        engine *e;
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(engine_create(&e, &c, &err), HL_OK);
        engine_telemetry t;
        engine_snapshot_alloc(e, &t, &err);
        /* the loss before any step */
        CU_ASSERT_EQUAL_FATAL(engine_start(e, true, &err), HL_OK);
        engine_event ev = {0};
        CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_EVAL, NULL, NULL), &ev, 20000),
                        ENGINE_EVENT_APPLIED);
        double acc0 = ev.value;
        engine_event evs[16];
        int n = engine_events(e, evs, 16, 0);
        double loss0 = NAN;
        for (int i = 0; i < n; i++)
            if (evs[i].kind == ENGINE_EVENT_EVAL)
                sscanf(strstr(evs[i].text, "loss") + 5, "%lf", &loss0);
        post(e, ENGINE_CMD_RESUME, NULL, NULL);
        engine_state s = ENGINE_STATE_RUNNING;
        for (int i = 0; i < 600 && s != ENGINE_STATE_FINISHED; i++)
            s = engine_wait(e, s, 100);
        CU_ASSERT_EQUAL(s, ENGINE_STATE_FINISHED);
        double loss1 = NAN;
        uint64_t after = 0;
        while ((n = engine_events(e, evs, 16, after)) > 0)
            for (int i = 0; i < n; i++) {
                after = evs[i].seq;
                if (evs[i].kind == ENGINE_EVENT_EVAL && evs[i].step == 150)
                    sscanf(strstr(evs[i].text, "loss") + 5, "%lf", &loss1);
            }
        fprintf(stderr, "\n  %s: dev loss %.4f -> %.4f (accuracy %.2f at start)", methods[mi],
                loss0, loss1, acc0);
        CU_ASSERT(loss1 < loss0 - 0.01);
        post(e, ENGINE_CMD_QUIT, NULL, NULL);
        engine_join(e);
        engine_snapshot_free(&t);
        engine_free(e);
        runcfg_free(&c);
    }
}

/* Rollback puts back the last checkpoint: step, θ and optimizer state. */
static void test_rollback_restores_checkpoint(void)
{
    char dir[512], again[600];
    snprintf(dir, sizeof dir, "%s/rollback", tmp);
    snprintf(again, sizeof again, "%s/rollback-again", tmp);
    runcfg c;
    runcfg_init(&c);
    set(&c, "objective", "quadratic");
    set(&c, "optimizer", "helene");
    set(&c, "steps", "100000");
    set(&c, "eval_every", "0");
    set(&c, "save", dir);
    engine *e;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(engine_create(&e, &c, &err), HL_OK);
    engine_telemetry t;
    engine_snapshot_alloc(e, &t, &err);
    CU_ASSERT_EQUAL_FATAL(engine_start(e, true, &err), HL_OK);
    /* nothing to roll back to yet */
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_ROLLBACK, NULL, NULL), NULL, 5000),
                    ENGINE_EVENT_REJECTED);
    for (int i = 0; i < 3; i++) {
        uint64_t id = post(e, ENGINE_CMD_STEP_ONCE, NULL, NULL);
        CU_ASSERT_EQUAL(wait_answer(e, id, NULL, 5000), ENGINE_EVENT_APPLIED);
        for (int k = 0; k < 200 && current_step(e, &t) < (uint64_t)i + 1; k++)
            sleep_ms(5);
    }
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_CHECKPOINT, NULL, ""), NULL, 5000),
                    ENGINE_EVENT_APPLIED);
    post(e, ENGINE_CMD_RESUME, NULL, NULL);
    for (int k = 0; k < 400 && current_step(e, &t) < 50; k++)
        sleep_ms(5);
    CU_ASSERT(t.step >= 50);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_ROLLBACK, NULL, NULL), NULL, 5000),
                    ENGINE_EVENT_APPLIED);
    sleep_ms(60);
    engine_snapshot(e, &t);
    CU_ASSERT_EQUAL(t.step, 3);
    CU_ASSERT_EQUAL(t.state, ENGINE_STATE_PAUSED);
    /* the rolled-back state is the checkpoint's, byte for byte */
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_CHECKPOINT, NULL, again), NULL, 5000),
                    ENGINE_EVENT_APPLIED);
    char pa[700], pb[700];
    for (int f = 0; f < 2; f++) {
        const char *name = f ? "optim.safetensors" : "params.safetensors";
        snprintf(pa, sizeof pa, "%s/%s", dir, name);
        snprintf(pb, sizeof pb, "%s/%s", again, name);
        CU_ASSERT(same_file(pa, pb));
    }
    post(e, ENGINE_CMD_QUIT, NULL, NULL);
    engine_join(e);
    engine_snapshot_free(&t);
    engine_free(e);
    runcfg_free(&c);
}

/* --grad-alignment: each step's cos(c·z, ∇L) is >= 0 up to the finite
 * difference's error (c ≈ z·∇L, so c·z·∇L ≈ (z·∇L)² >= 0), and on average
 * near the single-probe expectation sqrt(2 / (pi d)); a flipped sign or a z
 * that is not the optimizer's would break both. */
static void test_grad_alignment_diagnostic(void)
{
    char log[512];
    snprintf(log, sizeof log, "%s/align.jsonl", tmp);
    runcfg c;
    runcfg_init(&c);
    set(&c, "model", HELENE_TESTDIR "/fixtures/models/opt-tiny-f32");
    set(&c, "task", "sst2");
    set(&c, "data", HELENE_TESTDIR "/fixtures/tasks/sst2.tsv");
    set(&c, "optimizer", "mezo");
    set(&c, "lr", "1e-4");
    set(&c, "steps", "60");
    set(&c, "eval_every", "0");
    set(&c, "grad_alignment", "true");
    set(&c, "log", log);
    CU_ASSERT_EQUAL(run_headless(&c), ENGINE_STATE_FINISHED);
    FILE *f = fopen(log, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[4096];
    int n = 0, negative = 0;
    double sum = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"grad_cosine\":");
        if (!p)
            continue;
        double v = atof(p + 14);
        sum += v;
        negative += v < -1e-3;
        n++;
    }
    fclose(f);
    CU_ASSERT_EQUAL(n, 60);
    CU_ASSERT_EQUAL(negative, 0);
    double d = 54144, expect = sqrt(2.0 / (3.141592653589793 * d));
    fprintf(stderr, "\n  mean cos %.5f, expected about %.5f", sum / n, expect);
    CU_ASSERT(sum / n > expect / 3 && sum / n < expect * 3);
    runcfg_free(&c);
}

/* ------------------------------------------------------ time limit --- */

static void test_time_limit_parsing(void)
{
    static const struct {
        const char *text;
        double seconds;
    } ok[] = {{"0", 0},        {"600", 600},    {"90s", 90},    {"10m", 600},
              {"1.5h", 5400},  {"1h30m", 5400}, {"2m30s", 150}, {"0.25s", 0.25}};
    static const char *const bad[] = {"", "-5", "10x", "m", "1h-5m", "nan", "inf",
                                      "1e9", "10 m", "3d"};
    runcfg c;
    runcfg_init(&c);
    hl_err err;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CU_ASSERT_EQUAL(runcfg_set(&c, "time-limit", ok[i].text, &err), HL_OK);
        CU_ASSERT_DOUBLE_EQUAL(c.time_limit, ok[i].seconds, 1e-12);
    }
    runcfg_set(&c, "time_limit", "42", &err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_NOT_EQUAL(runcfg_set(&c, "time_limit", bad[i], &err), HL_OK);
        CU_ASSERT(strstr(err.msg, "time_limit") != NULL);
        CU_ASSERT_DOUBLE_EQUAL(c.time_limit, 42, 0); /* unchanged */
    }
    /* it round-trips through the JSON form checkpoints and --config use */
    char *j = runcfg_to_json(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const char *at = strstr(j, "\"time_limit\":");
    double back = -1;
    CU_ASSERT(at && sscanf(at + strlen("\"time_limit\":"), " %lf", &back) == 1 && back == 42);
    free(j);
    runcfg_free(&c);
}

/* A run ends at its time limit with the usual finish (final checkpoint,
 * FINISHED with the reason); raising the limit lets it continue. */
static void test_time_limit_ends_run(void)
{
    char save[512];
    snprintf(save, sizeof save, "%s/timed", tmp);
    runcfg c;
    runcfg_init(&c);
    set(&c, "objective", "quadratic");
    set(&c, "optimizer", "mezo");
    set(&c, "steps", "1000000000");
    set(&c, "time_limit", "0.3s");
    set(&c, "eval_every", "0");
    set(&c, "threads", "1");
    set(&c, "save", save);
    engine *e;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(engine_create(&e, &c, &err), HL_OK);
    engine_telemetry t;
    CU_ASSERT_EQUAL_FATAL(engine_snapshot_alloc(e, &t, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(engine_start(e, false, &err), HL_OK);
    engine_state s = ENGINE_STATE_RUNNING;
    for (int i = 0; i < 600 && s != ENGINE_STATE_FINISHED; i++)
        s = engine_wait(e, s, 100);
    engine_snapshot(e, &t);
    CU_ASSERT_EQUAL_FATAL(t.state, ENGINE_STATE_FINISHED);
    CU_ASSERT(t.step > 0 && t.step < 1000000000);
    CU_ASSERT(t.run_s >= 0.3);
    CU_ASSERT(strstr(t.reason, "time limit") != NULL);
    char p[600];
    snprintf(p, sizeof p, "%s/params.safetensors", save);
    CU_ASSERT_EQUAL(access(p, F_OK), 0);
    uint64_t first = t.step;

    /* more time: paused with the reason, then runs to the new limit */
    engine_event ev;
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_SET, "time_limit", "0.6"), &ev, 5000),
                    ENGINE_EVENT_APPLIED);
    sleep_ms(50);
    engine_snapshot(e, &t);
    CU_ASSERT_EQUAL(t.state, ENGINE_STATE_PAUSED);
    CU_ASSERT(strstr(t.reason, "more time") != NULL);
    CU_ASSERT_DOUBLE_EQUAL(t.time_limit, 0.6, 0);
    CU_ASSERT_EQUAL(wait_answer(e, post(e, ENGINE_CMD_RESUME, NULL, NULL), NULL, 5000),
                    ENGINE_EVENT_APPLIED);
    s = ENGINE_STATE_RUNNING;
    for (int i = 0; i < 600 && s != ENGINE_STATE_FINISHED; i++)
        s = engine_wait(e, s, 100);
    engine_snapshot(e, &t);
    CU_ASSERT_EQUAL(t.state, ENGINE_STATE_FINISHED);
    CU_ASSERT(t.step > first);
    CU_ASSERT(t.run_s >= 0.6);
    post(e, ENGINE_CMD_QUIT, NULL, NULL);
    engine_join(e);
    engine_snapshot_free(&t);
    engine_free(e);
    runcfg_free(&c);
}

static void register_engine(void)
{
    CU_pSuite s = CU_add_suite("engine", suite_init, suite_clean);
    TEST_ADD(s, test_command_queue_semantics);
    TEST_ADD(s, test_time_limit_parsing);
    TEST_ADD(s, test_shards_are_independent);
    TEST_ADD(s, test_time_limit_ends_run);
    TEST_ADD(s, test_resume_bit_identical_every_method);
    TEST_ADD(s, test_resume_bit_identical_model);
    TEST_ADD(s, test_peft_every_method);
    TEST_ADD(s, test_trainable_subset);
    TEST_ADD(s, test_layer_newton_shared_forwards);
    TEST_ADD(s, test_bad_checkpoints_are_refused);
    TEST_ADD(s, test_checkpoint_survives_kill);
    TEST_ADD(s, test_rollback_restores_checkpoint);
    TEST_ADD(s, test_grad_alignment_diagnostic);
    TEST_ADD(s, test_short_finetune_lowers_loss);
}

TEST_MAIN(register_engine)
