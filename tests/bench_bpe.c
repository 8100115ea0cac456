/* bench_bpe.c - GPT-2 BPE speed: load time, then encode MB/s on one thread and
 * on two threads sharing one tokenizer.  Text: the file named on the command
 * line, or by default the 64-language golden test file (mixed scripts, emoji,
 * digits) repeated to 8 MB.  Prints numbers only; asserts nothing beyond
 * "the encodings agree". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bpe.h"

#define TARGET_BYTES (8u << 20)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *load_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0) {
        fclose(f);
        return NULL;
    }
    size_t reps = (TARGET_BYTES + (size_t)n - 1) / (size_t)n;
    char *buf = malloc((size_t)n * reps);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    for (size_t r = 1; r < reps; r++)
        memcpy(buf + r * (size_t)n, buf, (size_t)n);
    *len = (size_t)n * reps;
    return buf;
}

typedef struct job {
    const bpe *t;
    const char *text;
    size_t len;
    size_t n_ids;
    int failed;
} job;

static void *encode_job(void *arg)
{
    job *j = arg;
    hl_err err;
    j->failed = bpe_encode(j->t, j->text, j->len, NULL, 0, &j->n_ids, &err) != HL_OK;
    return NULL;
}

static void print_machine(void)
{
    char line[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0)
            break;
    if (f)
        fclose(f);
    char *colon = strchr(line, ':');
    printf("machine: %s", colon ? colon + 2 : line);
    if (!strchr(line, '\n'))
        printf("\n");
    printf("cores online: %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : HELENE_TESTDIR "/fixtures/gpt2_testplans.txt";
    print_machine();
    bpe t;
    hl_err err;
    double t0 = now_s();
    if (bpe_load(&t, HELENE_SRCDATADIR "/gpt2/vocab.json", HELENE_SRCDATADIR "/gpt2/merges.txt",
                 &err) != HL_OK) {
        fprintf(stderr, "bench_bpe: %s\n", err.msg);
        return 1;
    }
    printf("load: %.1f ms (%d tokens)\n", 1e3 * (now_s() - t0), bpe_vocab_size(&t));
    size_t len;
    char *text = load_text(path, &len);
    if (!text) {
        fprintf(stderr, "bench_bpe: cannot read %s\n", path);
        bpe_free(&t);
        return 1;
    }
    printf("text: %s, repeated to %.1f MB\n", path, len / 1e6);

    /* One thread: best of 3. */
    double best = 1e30;
    size_t n_ids = 0;
    for (int rep = 0; rep < 3; rep++) {
        job j = {&t, text, len, 0, 0};
        t0 = now_s();
        encode_job(&j);
        double dt = now_s() - t0;
        if (j.failed) {
            fprintf(stderr, "bench_bpe: encode failed\n");
            return 1;
        }
        n_ids = j.n_ids;
        if (dt < best)
            best = dt;
    }
    printf("encode, 1 thread, one call (word cache on; repeated text flatters it):\n"
           "  %.1f MB/s, %.2f M tokens/s, %.2f bytes/token\n", len / best / 1e6,
           n_ids / best / 1e6, (double)len / (double)n_ids);

    /* Line by line, as when encoding a dataset one example at a time: short
     * calls, so no per-call word cache helps; this is the raw BPE speed. */
    double t_lines = 0;
    size_t n_lines = 0, n_line_ids = 0;
    t0 = now_s();
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) + 1 : len, k;
        if (bpe_encode(&t, text + p, e - p, NULL, 0, &k, &err) != HL_OK) {
            fprintf(stderr, "bench_bpe: %s\n", err.msg);
            return 1;
        }
        n_line_ids += k;
        n_lines++;
        p = e;
    }
    t_lines = now_s() - t0;
    printf("encode, 1 thread, one call per line (%zu lines): %.1f MB/s, %.2f M tokens/s\n",
           n_lines, len / t_lines / 1e6, n_line_ids / t_lines / 1e6);

    /* Two threads, each encoding half of the text concurrently. */
    job js[2] = {{&t, text, len / 2, 0, 0}, {&t, text + len / 2, len - len / 2, 0, 0}};
    pthread_t th[2];
    t0 = now_s();
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, encode_job, &js[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    double dt = now_s() - t0;
    printf("encode, 2 threads, one call each: %.1f MB/s (aggregate)\n", len / dt / 1e6);

    /* Decode the first MB's ids back: a sanity check, and its speed. */
    int32_t *ids;
    size_t n, mb = len < (1u << 20) ? len : (1u << 20);
    while (mb < len && (text[mb] & 0xC0) == 0x80)
        mb++;
    if (bpe_encode_alloc(&t, text, mb, &ids, &n, &err) == HL_OK) {
        char *back;
        size_t blen;
        t0 = now_s();
        hl_status st = bpe_decode_alloc(&t, ids, n, &back, &blen, &err);
        dt = now_s() - t0;
        if (st == HL_OK) {
            printf("decode: %.1f MB/s, round trip %s\n", blen / dt / 1e6,
                   blen == mb && memcmp(back, text, mb) == 0 ? "ok" : "MISMATCH");
            free(back);
        }
        free(ids);
    }
    free(text);
    bpe_free(&t);
    return 0;
}
