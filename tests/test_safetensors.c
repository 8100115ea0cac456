/* test_safetensors.c - the safetensors reader, writer and model folders.
 *
 * Every file is built programmatically in a mkdtemp directory: round trips for
 * each dtype, exhaustive and property checks of the fp16/bf16 conversions,
 * sharded folders, and a table of malformed files, each of which must fail
 * with a message naming the file (and the tensor when one is involved).
 * Mutation and truncation loops make ASan look for over-reads.
 */
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"

static char tmpdir[256];

/* ------------------------------------------------------------- helpers */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int suite_init(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/helene-st-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int suite_clean(void)
{
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* tmpdir/name in buf. */
static const char *tpath(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

static void put_bytes(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    if (n)
        CU_ASSERT_EQUAL(fwrite(p, 1, n, fp), n);
    CU_ASSERT_EQUAL(fclose(fp), 0);
}

/* Build u64 N + header (N = strlen unless hlen_override) + data_len bytes. */
static void mk_st(const char *path, const char *header, uint64_t hlen_override, size_t data_len)
{
    size_t hn = strlen(header);
    uint64_t n = hlen_override ? hlen_override : hn;
    size_t total = 8 + hn + data_len;
    unsigned char *b = malloc(total);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, header, hn);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hn + i] = (unsigned char)(i * 7 + 1);
    put_bytes(path, b, total);
    free(b);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, fp) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *n = (size_t)sz;
    return b;
}

/* Number of entries in dir whose name contains ".tmp.". */
static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp."))
            n++;
    closedir(d);
    return n;
}

/* Open must fail with code; the message must name the file and the tensor. */
static void expect_open_fail(const char *label, const char *path, hl_status code,
                             const char *tensor)
{
    st_file f;
    hl_err err;
    hl_err_clear(&err);
    hl_status st = st_file_open(&f, path, &err);
    bool ok = st == code && err.code == code && strstr(err.msg, path) != NULL &&
              (!tensor || strstr(err.msg, tensor) != NULL);
    if (!ok)
        fprintf(stderr, "\n  case %s: status %d (want %d), message: %s\n", label, (int)st,
                (int)code, err.msg);
    CU_ASSERT(ok);
    CU_ASSERT_PTR_NULL(f.map);
    CU_ASSERT_PTR_NULL(f.tensors);
    st_file_close(&f); /* harmless on a failed open */
}

static double f16_reference(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0)
        return s * ldexp(m, -24);
    if (e == 31)
        return m ? NAN : s * INFINITY;
    return s * ldexp(1024 + m, e - 25);
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float ffrom(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------- dtypes */

static void test_dtype_table(void)
{
    CU_ASSERT_EQUAL(st_dtype_size(ST_DTYPE_F64), 8);
    CU_ASSERT_EQUAL(st_dtype_size(ST_DTYPE_BF16), 2);
    CU_ASSERT_EQUAL(st_dtype_size(ST_DTYPE_BOOL), 1);
    CU_ASSERT_EQUAL(st_dtype_size(ST_DTYPE_COUNT), 0);
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        CU_ASSERT_EQUAL(st_dtype_from_name(st_dtype_name((st_dtype)i)), i);
    CU_ASSERT_EQUAL(st_dtype_from_name("F8_E4M3"), -1);
    CU_ASSERT_EQUAL(st_dtype_from_name("f32"), -1);
}

/* ------------------------------------------------------ fp16 and bf16 */

static void test_f16_to_f32_exhaustive(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = st_f16_to_f32((uint16_t)h);
        double want = f16_reference((uint16_t)h);
        bool ok = isnan(want) ? isnan(got) : (double)got == want && !signbit(got) == !signbit(want);
        if (!ok && bad++ < 5)
            fprintf(stderr, "\n  f16 0x%04x: got %.9g want %.9g", h, (double)got, want);
        /* Every non-NaN half survives the trip back exactly. */
        if (!isnan(want) && st_f32_to_f16(got) != h && bad++ < 5)
            fprintf(stderr, "\n  f16 0x%04x: round trip gave 0x%04x", h, st_f32_to_f16(got));
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* NaN payloads keep their top bits and stay NaN. */
    CU_ASSERT(isnan(st_f16_to_f32(0x7c01)));
    CU_ASSERT(isnan(st_f16_to_f32(0xfe00)));
    CU_ASSERT_EQUAL(fbits(st_f16_to_f32(0x7c01)) & 0x7f800000u, 0x7f800000u);
}

static void test_f32_to_f16_rounding(void)
{
    CU_ASSERT_EQUAL(st_f32_to_f16(1.0f), 0x3c00);
    CU_ASSERT_EQUAL(st_f32_to_f16(-2.0f), 0xc000);
    CU_ASSERT_EQUAL(st_f32_to_f16(0.0f), 0x0000);
    CU_ASSERT_EQUAL(st_f32_to_f16(-0.0f), 0x8000);
    CU_ASSERT_EQUAL(st_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);         /* tie -> even (down) */
    CU_ASSERT_EQUAL(st_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);     /* tie -> even (up) */
    CU_ASSERT_EQUAL(st_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    CU_ASSERT_EQUAL(st_f32_to_f16(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(st_f32_to_f16(65519.99f), 0x7bff);
    CU_ASSERT_EQUAL(st_f32_to_f16(65520.0f), 0x7c00); /* tie with an odd max -> inf */
    CU_ASSERT_EQUAL(st_f32_to_f16(1e10f), 0x7c00);
    CU_ASSERT_EQUAL(st_f32_to_f16(-INFINITY), 0xfc00);
    CU_ASSERT_EQUAL(st_f32_to_f16(0x1p-24f), 0x0001);   /* smallest subnormal */
    CU_ASSERT_EQUAL(st_f32_to_f16(0x1p-25f), 0x0000);   /* tie -> 0 */
    CU_ASSERT_EQUAL(st_f32_to_f16(0x1.000002p-25f), 0x0001);
    CU_ASSERT_EQUAL(st_f32_to_f16(3 * 0x1p-25f), 0x0002); /* 1.5 ulp -> even 2 */
    CU_ASSERT_EQUAL(st_f32_to_f16(5 * 0x1p-25f), 0x0002); /* 2.5 ulp -> even 2 */
    CU_ASSERT_EQUAL(st_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400); /* carries into normal */
    CU_ASSERT_EQUAL(st_f32_to_f16(1e-30f), 0x0000);
    CU_ASSERT_EQUAL(st_f32_to_f16(ffrom(0x00000001u)), 0x0000); /* f32 subnormal */
    uint16_t qn = st_f32_to_f16(NAN);
    CU_ASSERT((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff) != 0);
    uint16_t sn = st_f32_to_f16(ffrom(0x7f800001u)); /* signalling, tiny payload */
    CU_ASSERT((sn & 0x7c00) == 0x7c00 && (sn & 0x3ff) != 0);

    /* Property: over a stride of all float bit patterns, the result is a
     * nearest half, and on a tie the even one. */
    int bad = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 7919) {
        float x = ffrom((uint32_t)u);
        if (isnan(x) || fabsf(x) >= 65520.0f)
            continue;
        uint16_t h = st_f32_to_f16(x);
        double got = f16_reference(h), dx = x;
        double err0 = fabs(dx - got);
        for (int dlt = -1; dlt <= 1; dlt += 2) {
            int nb = (int)(h & 0x7fff) + dlt;
            if (nb < 0 || nb > 0x7bff)
                continue;
            double alt = f16_reference((uint16_t)((h & 0x8000) | nb));
            double err1 = fabs(dx - alt);
            if (err1 < err0 || (err1 == err0 && (h & 1))) {
                if (bad++ < 5)
                    fprintf(stderr, "\n  %.9g -> 0x%04x (%.9g) but 0x%04x (%.9g) is nearer/even",
                            dx, h, got, (h & 0x8000) | nb, alt);
            }
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_bf16_conversions(void)
{
    CU_ASSERT_EQUAL(st_f32_to_bf16(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(st_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);     /* tie -> even (down) */
    CU_ASSERT_EQUAL(st_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82); /* tie -> even (up) */
    CU_ASSERT_EQUAL(st_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    CU_ASSERT_EQUAL(st_f32_to_bf16(INFINITY), 0x7f80);
    CU_ASSERT_EQUAL(st_f32_to_bf16(ffrom(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to inf */
    CU_ASSERT_EQUAL(st_f32_to_bf16(-0.0f), 0x8000);
    uint16_t nan16 = st_f32_to_bf16(ffrom(0x7f800001u)); /* payload below bf16's mantissa */
    CU_ASSERT(isnan(st_bf16_to_f32(nan16)));
    CU_ASSERT(isnan(st_bf16_to_f32(st_f32_to_bf16(ffrom(0xffffffffu)))));
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_bf16_to_f32((uint16_t)h);
        if (fbits(f) != h << 16)
            bad++;
        if (!isnan(f) && st_f32_to_bf16(f) != h)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* ------------------------------------------------------- round trips */

static void test_roundtrip_every_dtype(void)
{
    char path[512];
    tpath(path, sizeof path, "all.safetensors");
    double f64[3] = {1.5, -1e300, 0.1};
    float f32[6] = {1, -2, 3.5f, 1e-40f, INFINITY, -0.0f};
    uint16_t f16raw[2] = {0x3c00, 0x0001};
    uint16_t bf16raw[2] = {0x3f80, 0xc000};
    int64_t i64[2] = {INT64_MIN, 42};
    int32_t i32[1] = {-7};
    int16_t i16[3] = {1, -2, 3};
    int8_t i8[2] = {-128, 127};
    uint8_t u8[5] = {0, 1, 2, 254, 255};
    uint8_t bools[2] = {1, 0};
    float src[4] = {1.0f, 0.1f, -65504.0f, 1e-6f};
    int64_t s3[1] = {3}, s23[2] = {2, 3}, s2[1] = {2}, s1[1] = {1}, s5[1] = {5}, s4[1] = {4},
            s00[2] = {0, 7}, s221[3] = {2, 2, 1};
    st_write_tensor ts[] = {
        {"f64", ST_DTYPE_F64, ST_SRC_RAW, 1, s3, f64},
        {"f32", ST_DTYPE_F32, ST_SRC_RAW, 2, s23, f32},
        {"f16", ST_DTYPE_F16, ST_SRC_RAW, 1, s2, f16raw},
        {"bf16", ST_DTYPE_BF16, ST_SRC_RAW, 1, s2, bf16raw},
        {"i64", ST_DTYPE_I64, ST_SRC_RAW, 1, s2, i64},
        {"i32", ST_DTYPE_I32, ST_SRC_RAW, 1, s1, i32},
        {"i16", ST_DTYPE_I16, ST_SRC_RAW, 1, s3, i16},
        {"i8", ST_DTYPE_I8, ST_SRC_RAW, 1, s2, i8},
        {"u8", ST_DTYPE_U8, ST_SRC_RAW, 1, s5, u8},
        {"bool", ST_DTYPE_BOOL, ST_SRC_RAW, 1, s2, bools},
        {"scalar", ST_DTYPE_F32, ST_SRC_F32, 0, NULL, src},
        {"empty", ST_DTYPE_F16, ST_SRC_F32, 2, s00, NULL},
        {"from32.f16", ST_DTYPE_F16, ST_SRC_F32, 3, s221, src},
        {"from32.bf16", ST_DTYPE_BF16, ST_SRC_F32, 1, s4, src},
        {"from32.f64", ST_DTYPE_F64, ST_SRC_F32, 1, s4, src},
        {"from32.f32", ST_DTYPE_F32, ST_SRC_F32, 1, s4, src},
    };
    int n = (int)(sizeof ts / sizeof ts[0]);
    const char *meta[] = {"format", "pt", "note", "quote \" backslash \\ newline \n é"};
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(st_write(path, ts, n, meta, 2, &err), HL_OK);
    CU_ASSERT_EQUAL(count_temps(tmpdir), 0);

    size_t sz;
    unsigned char *raw = slurp(path, &sz);
    CU_ASSERT_PTR_NOT_NULL_FATAL(raw);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | raw[i];
    CU_ASSERT_EQUAL(hlen % 8, 0);
    CU_ASSERT_EQUAL(raw[8], '{');
    free(raw);

    st_file f;
    CU_ASSERT_EQUAL_FATAL(st_file_open(&f, path, &err), HL_OK);
    CU_ASSERT_EQUAL(st_file_count(&f), n);
    CU_ASSERT_EQUAL(f.header_len, hlen);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_file_tensor(&f, i);
        CU_ASSERT_STRING_EQUAL(t->name, ts[i].name); /* header order is kept */
        CU_ASSERT_EQUAL(st_file_find(&f, ts[i].name), t);
        CU_ASSERT_EQUAL(t->dtype, ts[i].dtype);
        CU_ASSERT_EQUAL(t->ndim, ts[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            CU_ASSERT_EQUAL(t->shape[d], ts[i].shape[d]);
        if (ts[i].src == ST_SRC_RAW)
            CU_ASSERT(memcmp(t->data, ts[i].data, t->nbytes) == 0);
    }
    CU_ASSERT_PTR_NULL(st_file_find(&f, "nope"));
    CU_ASSERT_PTR_NULL(st_file_find(&f, ""));
    CU_ASSERT_STRING_EQUAL(st_file_meta(&f, "format"), "pt");
    CU_ASSERT_STRING_EQUAL(st_file_meta(&f, "note"), meta[3]);
    CU_ASSERT_PTR_NULL(st_file_meta(&f, "nope"));

    const st_tensor *t = st_file_find(&f, "scalar");
    CU_ASSERT_EQUAL(t->n_elems, 1);
    CU_ASSERT_EQUAL(t->nbytes, 4);
    t = st_file_find(&f, "empty");
    CU_ASSERT_EQUAL(t->n_elems, 0);
    CU_ASSERT_EQUAL(t->nbytes, 0);
    float dummy = 123;
    CU_ASSERT_EQUAL(st_tensor_to_f32(t, &dummy, &err), HL_OK);
    CU_ASSERT_EQUAL(dummy, 123);

    float out[6];
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "f32"), out, &err), HL_OK);
    CU_ASSERT(memcmp(out, f32, sizeof f32) == 0);
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "f64"), out, &err), HL_OK);
    CU_ASSERT_EQUAL(out[0], 1.5f);
    CU_ASSERT(isinf(out[1]) && out[1] < 0);
    CU_ASSERT_EQUAL(out[2], 0.1f);
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "f16"), out, &err), HL_OK);
    CU_ASSERT_EQUAL(out[0], 1.0f);
    CU_ASSERT_EQUAL(out[1], 0x1p-24f);
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "bf16"), out, &err), HL_OK);
    CU_ASSERT_EQUAL(out[0], 1.0f);
    CU_ASSERT_EQUAL(out[1], -2.0f);
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "from32.f32"), out, &err), HL_OK);
    CU_ASSERT(memcmp(out, src, sizeof src) == 0);
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "from32.f64"), out, &err), HL_OK);
    CU_ASSERT(memcmp(out, src, sizeof src) == 0);
    float want16[4], want_bf[4];
    for (int i = 0; i < 4; i++) {
        want16[i] = st_f16_to_f32(st_f32_to_f16(src[i]));
        want_bf[i] = st_bf16_to_f32(st_f32_to_bf16(src[i]));
    }
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "from32.f16"), out, &err), HL_OK);
    CU_ASSERT_EQUAL(test_close_floats("f16", out, want16, 4, 0, 0), 0);
    CU_ASSERT_EQUAL(out[1], 0.0999755859375f); /* 0.1 in half precision */
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "from32.bf16"), out, &err), HL_OK);
    CU_ASSERT_EQUAL(test_close_floats("bf16", out, want_bf, 4, 0, 0), 0);
    CU_ASSERT_EQUAL(out[1], 0.10009765625f); /* 0.1 in bfloat16 */

    /* Integer dtypes do not convert; the message names file and tensor. */
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "i32"), out, &err), HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "i32") && strstr(err.msg, path));
    st_file_close(&f);
    CU_ASSERT_PTR_NULL(f.map);
}

static void test_f16_specials_roundtrip(void)
{
    char path[512];
    tpath(path, sizeof path, "f16special.safetensors");
    float src[] = {0x1p-24f, 0x1p-25f, 3 * 0x1p-25f, 0x1.8p-20f, 0x1p-14f, 6.1e-5f, -0x1p-24f,
                   INFINITY, -INFINITY, NAN, -0.0f, 65504.0f, 65520.0f, 1.0f + 0x1p-11f,
                   2049.0f, 2051.0f, 1e-8f, 0.333333333f};
    int n = (int)(sizeof src / sizeof src[0]);
    float want[] = {0x1p-24f, 0.0f, 2 * 0x1p-24f, 0x1.8p-20f, 0x1p-14f, 0x1.ff8p-15f, -0x1p-24f,
                    INFINITY, -INFINITY, NAN, -0.0f, 65504.0f, INFINITY, 1.0f,
                    2048.0f, 2052.0f, 0.0f, 0.333251953125f};
    int64_t shape[1] = {n};
    st_write_tensor t = {"w", ST_DTYPE_F16, ST_SRC_F32, 1, shape, src};
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(st_write(path, &t, 1, NULL, 0, &err), HL_OK);
    st_file f;
    CU_ASSERT_EQUAL_FATAL(st_file_open(&f, path, &err), HL_OK);
    float out[32];
    CU_ASSERT_EQUAL(st_tensor_to_f32(st_file_find(&f, "w"), out, &err), HL_OK);
    for (int i = 0; i < n; i++) {
        bool ok = isnan(want[i]) ? isnan(out[i])
                                 : out[i] == want[i] && !signbit(out[i]) == !signbit(want[i]);
        if (!ok)
            fprintf(stderr, "\n  [%d] %.9g -> %.9g, want %.9g", i, (double)src[i],
                    (double)out[i], (double)want[i]);
        CU_ASSERT(ok);
    }
    st_file_close(&f);
}

static void test_transposed_and_unaligned(void)
{
    enum { R = 70, C = 45 };
    static float m[R * C], want[R * C], out[R * C];
    for (int i = 0; i < R * C; i++)
        m[i] = (float)(i % 97) * 0.25f - 3.0f; /* exact in bf16 and f16 */
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            want[c * R + r] = m[r * C + c];
    char path[512];
    tpath(path, sizeof path, "transpose.safetensors");
    /* A 1-byte tensor first puts every later tensor on an odd address. */
    uint8_t one = 9;
    int64_t s1[1] = {1}, s2[2] = {R, C}, s3[3] = {2, 2, 2};
    st_write_tensor ts[] = {
        {"pad", ST_DTYPE_U8, ST_SRC_RAW, 1, s1, &one},
        {"w32", ST_DTYPE_F32, ST_SRC_F32, 2, s2, m},
        {"w16", ST_DTYPE_F16, ST_SRC_F32, 2, s2, m},
        {"wbf", ST_DTYPE_BF16, ST_SRC_F32, 2, s2, m},
        {"w64", ST_DTYPE_F64, ST_SRC_F32, 2, s2, m},
        {"cube", ST_DTYPE_F32, ST_SRC_F32, 3, s3, m},
        /* from a source stored transposed ([C, R]): the file holds m again */
        {"t32", ST_DTYPE_F32, ST_SRC_F32_T, 2, s2, want},
        {"t16", ST_DTYPE_F16, ST_SRC_F32_T, 2, s2, want},
    };
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(st_write(path, ts, 8, NULL, 0, &err), HL_OK);
    st_file f;
    CU_ASSERT_EQUAL_FATAL(st_file_open(&f, path, &err), HL_OK);
    const char *names[] = {"w32", "w16", "wbf", "w64"};
    for (int k = 0; k < 4; k++) {
        const st_tensor *t = st_file_find(&f, names[k]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_EQUAL((uintptr_t)t->data % 2, 1);
        memset(out, 0, sizeof out);
        CU_ASSERT_EQUAL(st_tensor_to_f32(t, out, &err), HL_OK);
        CU_ASSERT_EQUAL(test_close_floats(names[k], out, m, R * C, 0, 0), 0);
        memset(out, 0, sizeof out);
        CU_ASSERT_EQUAL(st_tensor_to_f32_transposed(t, out, &err), HL_OK);
        CU_ASSERT_EQUAL(test_close_floats(names[k], out, want, R * C, 0, 0), 0);
    }
    for (int k = 0; k < 2; k++) {
        const char *tn = k ? "t16" : "t32";
        const st_tensor *t = st_file_find(&f, tn);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT(t->shape[0] == R && t->shape[1] == C);
        memset(out, 0, sizeof out);
        CU_ASSERT_EQUAL(st_tensor_to_f32(t, out, &err), HL_OK);
        CU_ASSERT_EQUAL(test_close_floats(tn, out, m, R * C, 0, 0), 0);
    }
    CU_ASSERT_EQUAL(st_tensor_to_f32_transposed(st_file_find(&f, "cube"), out, &err),
                    HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "cube") && strstr(err.msg, path));
    CU_ASSERT_EQUAL(st_tensor_to_f32_transposed(st_file_find(&f, "pad"), out, &err),
                    HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "pad") && strstr(err.msg, "U8"));
    st_file_close(&f);
    /* a transposed source must be 2-D */
    st_write_tensor bad = {"cube", ST_DTYPE_F32, ST_SRC_F32_T, 3, s3, m};
    CU_ASSERT_EQUAL(st_write(path, &bad, 1, NULL, 0, &err), HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "cube") != NULL);
}

static void test_empty_and_tiny_files(void)
{
    char path[512];
    hl_err err;
    st_file f;
    /* Valid: no tensors at all, with and without metadata and padding. */
    tpath(path, sizeof path, "empty_list.safetensors");
    mk_st(path, "{}      ", 0, 0);
    CU_ASSERT_EQUAL(st_file_open(&f, path, &err), HL_OK);
    CU_ASSERT_EQUAL(st_file_count(&f), 0);
    CU_ASSERT_PTR_NULL(st_file_find(&f, "x"));
    st_file_close(&f);
    tpath(path, sizeof path, "meta_only.safetensors");
    mk_st(path, "{\"__metadata__\":{\"a\":\"b\"}}", 0, 0);
    CU_ASSERT_EQUAL(st_file_open(&f, path, &err), HL_OK);
    CU_ASSERT_STRING_EQUAL(st_file_meta(&f, "a"), "b");
    st_file_close(&f);
    CU_ASSERT_EQUAL(st_write(path, NULL, 0, NULL, 0, &err), HL_OK);
    CU_ASSERT_EQUAL(st_file_open(&f, path, &err), HL_OK);
    CU_ASSERT_EQUAL(st_file_count(&f), 0);
    CU_ASSERT_EQUAL(f.n_meta, 0);
    st_file_close(&f);
    /* Zero-element tensors at either end and in the middle are valid. */
    tpath(path, sizeof path, "zeros.safetensors");
    mk_st(path,
          "{\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
          "\"z1\":{\"dtype\":\"I8\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
          "\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[4,5]},"
          "\"z2\":{\"dtype\":\"BOOL\",\"shape\":[0,0],\"data_offsets\":[5,5]},"
          "\"extra\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[5,5],\"note\":1}}",
          0, 5);
    CU_ASSERT_EQUAL(st_file_open(&f, path, &err), HL_OK);
    CU_ASSERT_EQUAL(st_file_count(&f), 6);
    st_file_close(&f);

    /* Zero-size and short files, a directory, a missing file. */
    tpath(path, sizeof path, "zero_bytes.safetensors");
    put_bytes(path, "", 0);
    expect_open_fail("zero bytes", path, HL_ERR_FORMAT, NULL);
    tpath(path, sizeof path, "seven_bytes.safetensors");
    put_bytes(path, "\x02\0\0\0\0\0\0", 7);
    expect_open_fail("seven bytes", path, HL_ERR_FORMAT, NULL);
    tpath(path, sizeof path, "eight_bytes.safetensors");
    put_bytes(path, "\0\0\0\0\0\0\0\0", 8);
    expect_open_fail("N = 0", path, HL_ERR_FORMAT, NULL);
    expect_open_fail("directory", tmpdir, HL_ERR_IO, NULL);
    tpath(path, sizeof path, "missing.safetensors");
    expect_open_fail("missing", path, HL_ERR_IO, NULL);
    tpath(path, sizeof path, "fifo.safetensors");
    CU_ASSERT_EQUAL_FATAL(mkfifo(path, 0600), 0);
    expect_open_fail("fifo (must not block)", path, HL_ERR_IO, NULL);
}

/* A hostile name cannot smuggle terminal escapes or newlines into messages. */
static void test_messages_have_no_control_bytes(void)
{
    char path[512];
    tpath(path, sizeof path, "escape.safetensors");
    mk_st(path,
          "{\"evil\\u001b[2J\\nname\":{\"dtype\":\"X\\r\",\"shape\":[1],"
          "\"data_offsets\":[0,1]}}",
          0, 1);
    st_file f;
    hl_err err;
    CU_ASSERT_EQUAL(st_file_open(&f, path, &err), HL_ERR_FORMAT);
    CU_ASSERT(strstr(err.msg, "evil?[2J?name") != NULL);
    bool clean = true;
    for (const char *p = err.msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            clean = false;
    CU_ASSERT(clean);
}

/* ------------------------------------------------------- malformed files */

#define T_F32_2(name, b, e) "\"" name "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[" #b "," #e "]}"

typedef struct bad_case {
    const char *label;
    const char *header;
    size_t data_len;
    uint64_t hlen; /* 0: the header's length */
    hl_status code;
    const char *tensor; /* must appear in the message, or NULL */
} bad_case;

static const bad_case bad_cases[] = {
    {"truncated data", "{" T_F32_2("w", 0, 8) "}", 5, 0, HL_ERR_FORMAT, "w"},
    {"N past EOF", "{" T_F32_2("w", 0, 8) "}", 8, 4000, HL_ERR_FORMAT, NULL},
    {"N > 1e8", "{}", 0, 100000001ull, HL_ERR_FORMAT, NULL},
    {"N huge", "{}", 0, UINT64_MAX, HL_ERR_FORMAT, NULL},
    {"no brace", " {}", 0, 0, HL_ERR_FORMAT, NULL},
    {"array header", "[1, 2]", 0, 0, HL_ERR_FORMAT, NULL},
    {"invalid JSON", "{\"w\":", 0, 0, HL_ERR_FORMAT, NULL},
    {"trailing comma", "{\"w\":{\"dtype\":\"F32\",}}", 0, 0, HL_ERR_FORMAT, NULL},
    {"garbage after object", "{} x", 0, 0, HL_ERR_FORMAT, NULL},
    {"two objects", "{}{}", 0, 0, HL_ERR_FORMAT, NULL},
    {"NUL in header", "{\"w\0\":1}", 0, 8, HL_ERR_FORMAT, NULL},
    {"bad UTF-8", "{\"w\xff\":1}", 0, 0, HL_ERR_FORMAT, NULL},
    {"overlong UTF-8", "{\"w\xc0\xaf\":1}", 0, 0, HL_ERR_FORMAT, NULL},
    {"unterminated nesting", "{\"w\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 0, 0,
     HL_ERR_FORMAT, NULL},
    {"entry not object", "{\"w\":5}", 0, 0, HL_ERR_FORMAT, "w"},
    {"shape a string", "{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8,
     0, HL_ERR_FORMAT, "w"},
    {"shape negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"shape float", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"shape elem string", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}",
     8, 0, HL_ERR_FORMAT, "w"},
    {"shape elem bool", "{\"w\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,4]}}", 4,
     0, HL_ERR_FORMAT, "w"},
    {"shape 1e300", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"shape inf", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1e999],\"data_offsets\":[0,8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"nine dims",
     "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, 0,
     HL_ERR_FORMAT, "w"},
    {"offsets negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"offsets float", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"offsets three", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4,8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"offsets one", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"offsets strings", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}",
     8, 0, HL_ERR_FORMAT, "w"},
    {"offsets object", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"a\":0}}}", 8,
     0, HL_ERR_FORMAT, "w"},
    {"offsets reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"dtype a number", "{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"missing dtype", "{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, HL_ERR_FORMAT, "w"},
    {"missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, 0, HL_ERR_FORMAT,
     "w"},
    {"missing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, HL_ERR_FORMAT, "w"},
    {"duplicate key in entry",
     "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"unknown dtype", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, 0,
     HL_ERR_FORMAT, "F8_E4M3"},
    {"unknown dtype names tensor",
     "{\"w.weight\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, 0,
     HL_ERR_FORMAT, "w.weight"},
    {"overlap", "{" T_F32_2("a", 0, 8) "," T_F32_2("b", 4, 12) "}", 12, 0, HL_ERR_FORMAT, "b"},
    {"same range twice", "{" T_F32_2("a", 0, 8) "," T_F32_2("b", 0, 8) "}", 8, 0, HL_ERR_FORMAT,
     "b"},
    {"gap", "{" T_F32_2("a", 0, 8) "," T_F32_2("b", 12, 20) "}", 20, 0, HL_ERR_FORMAT, "b"},
    {"gap at start", "{" T_F32_2("a", 4, 12) "}", 12, 0, HL_ERR_FORMAT, "a"},
    {"zero-size inside another",
     "{" T_F32_2("a", 0, 8) ",\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
     0, HL_ERR_FORMAT, "a"},
    {"out of range", "{" T_F32_2("a", 0, 8) "," T_F32_2("b", 8, 16) "}", 12, 0, HL_ERR_FORMAT,
     "b"},
    {"offset past 2^53", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1e17,1e17]}}",
     0, 0, HL_ERR_FORMAT, "a"},
    {"size mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
     HL_ERR_FORMAT, "w"},
    {"size mismatch dtype", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     0, HL_ERR_FORMAT, "w"},
    {"dims overflow",
     "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],"
     "\"data_offsets\":[0,0]}}",
     0, 0, HL_ERR_FORMAT, "w"},
    {"dims overflow then zero",
     "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296,0],"
     "\"data_offsets\":[0,0]}}",
     0, 0, HL_ERR_FORMAT, "w"},
    {"bytes overflow",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,0]}}", 0, 0,
     HL_ERR_FORMAT, "w"},
    {"wrapping product",
     "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,536870912],\"data_offsets\":[0,0]}}", 0, 0,
     HL_ERR_FORMAT, "w"},
    {"duplicate names", "{" T_F32_2("dup", 0, 8) "," T_F32_2("dup", 8, 16) "}", 16, 0,
     HL_ERR_FORMAT, "dup"},
    {"duplicate via \\u0000", "{" T_F32_2("d\\u0000x", 0, 8) "," T_F32_2("d", 8, 16) "}", 16, 0,
     HL_ERR_FORMAT, "d"},
    {"metadata number", "{\"__metadata__\":{\"k\":1}}", 0, 0, HL_ERR_FORMAT, "k"},
    {"metadata null", "{\"__metadata__\":{\"k\":\"v\",\"n\":null}}", 0, 0, HL_ERR_FORMAT, "n"},
    {"metadata nested", "{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}", 0, 0, HL_ERR_FORMAT, "k"},
    {"metadata not object", "{\"__metadata__\":\"x\"}", 0, 0, HL_ERR_FORMAT, "__metadata__"},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, HL_ERR_FORMAT,
     "__metadata__"},
    {"metadata key twice", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, 0, HL_ERR_FORMAT,
     "k"},
    {"trailing bytes", "{" T_F32_2("w", 0, 8) "}", 12, 0, HL_ERR_FORMAT, "w"},
    {"empty list, data", "{}", 4, 0, HL_ERR_FORMAT, NULL},
};

static void test_malformed_files(void)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        char name[64], path[512];
        snprintf(name, sizeof name, "bad%02zu.safetensors", i);
        tpath(path, sizeof path, name);
        /* The NUL case needs its real length: strlen would stop at the NUL. */
        if (strcmp(c->label, "NUL in header") == 0) {
            unsigned char b[16] = {8};
            memcpy(b + 8, "{\"w\0\":1}", 8);
            put_bytes(path, b, 16);
        } else {
            mk_st(path, c->header, c->hlen, c->data_len);
        }
        expect_open_fail(c->label, path, c->code, c->tensor);
    }

    /* Nesting far past cJSON's limit must fail cleanly, not overflow the stack. */
    enum { DEPTH = 200000 };
    char *deep = malloc(DEPTH + 16);
    CU_ASSERT_PTR_NOT_NULL_FATAL(deep);
    strcpy(deep, "{\"w\":");
    memset(deep + 5, '[', DEPTH);
    strcpy(deep + 5 + DEPTH, "}");
    char path[512];
    tpath(path, sizeof path, "deep.safetensors");
    mk_st(path, deep, 0, 0);
    free(deep);
    expect_open_fail("deep nesting", path, HL_ERR_FORMAT, NULL);
}

/* Every truncation of a valid file fails; header mutations never crash and,
 * when they happen to parse, still describe an exactly tiled buffer. */
static void test_truncation_and_mutation(void)
{
    char path[512], mpath[512];
    tpath(path, sizeof path, "valid.safetensors");
    tpath(mpath, sizeof mpath, "mutant.safetensors");
    float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t s23[2] = {2, 3}, s4[1] = {4};
    st_write_tensor ts[] = {
        {"a.weight", ST_DTYPE_F32, ST_SRC_RAW, 2, s23, v},
        {"b", ST_DTYPE_F16, ST_SRC_F32, 1, s4, v},
    };
    const char *meta[] = {"format", "pt"};
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(st_write(path, ts, 2, meta, 1, &err), HL_OK);
    size_t n;
    unsigned char *orig = slurp(path, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
    st_file f;
    int unexpected = 0;
    for (size_t len = 0; len < n; len++) {
        put_bytes(mpath, orig, len);
        if (st_file_open(&f, mpath, &err) == HL_OK) {
            unexpected++;
            st_file_close(&f);
        }
    }
    CU_ASSERT_EQUAL(unexpected, 0);

    static const unsigned char subst[] = {0, '"', '9', '0', '}', ']', ',', ' ', 0xff, '-', 'e'};
    unsigned char *mut = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mut);
    int opened = 0;
    for (size_t pos = 0; pos < n && pos < 8 + 200; pos++)
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(mut, orig, n);
            if (mut[pos] == subst[k])
                continue;
            mut[pos] = subst[k];
            put_bytes(mpath, mut, n);
            if (st_file_open(&f, mpath, &err) != HL_OK) {
                if (!strstr(err.msg, mpath))
                    unexpected++;
                continue;
            }
            opened++;
            uint64_t total = 0;
            for (int32_t i = 0; i < st_file_count(&f); i++) {
                const st_tensor *t = st_file_tensor(&f, i);
                total += t->nbytes;
                if ((const uint8_t *)t->data + t->nbytes > f.map + f.map_size)
                    unexpected++;
            }
            if (total != f.buffer_size || 8 + f.header_len + f.buffer_size != f.map_size)
                unexpected++;
            st_file_close(&f);
        }
    CU_ASSERT_EQUAL(unexpected, 0);
    CU_ASSERT(opened > 0); /* e.g. spaces and digits inside the metadata value */
    free(mut);
    free(orig);
}

/* ------------------------------------------------------------- models */

static void mk_dir(char *buf, size_t cap, const char *name)
{
    tpath(buf, cap, name);
    CU_ASSERT_EQUAL_FATAL(mkdir(buf, 0755), 0);
}

static void put_text(const char *dir, const char *name, const char *text)
{
    char p[1100]; /* dir is at most 512 bytes */
    snprintf(p, sizeof p, "%s/%s", dir, name);
    put_bytes(p, text, strlen(text));
}

/* Shard file with the given tensor names, each F32 [2] = {base, base + 1}. */
static void mk_shard(const char *dir, const char *name, const char *const *tensors, int n,
                     float base)
{
    char p[1100]; /* dir is at most 512 bytes */
    snprintf(p, sizeof p, "%s/%s", dir, name);
    float vals[16][2];
    st_write_tensor ts[16];
    static const int64_t s2[1] = {2};
    for (int i = 0; i < n; i++) {
        vals[i][0] = base + (float)i;
        vals[i][1] = base + (float)i + 0.5f;
        ts[i] = (st_write_tensor){tensors[i], ST_DTYPE_F32, ST_SRC_RAW, 1, s2, vals[i]};
    }
    hl_err err;
    CU_ASSERT_EQUAL(st_write(p, ts, n, NULL, 0, &err), HL_OK);
}

static const char *const shard1_names[] = {"emb", "layer.0"};
static const char *const shard2_names[] = {"layer.1", "head"};
#define GOOD_INDEX                                                                          \
    "{\"metadata\":{\"total_size\":32},\"weight_map\":{\"emb\":\"m-1.safetensors\","      \
    "\"layer.0\":\"m-1.safetensors\",\"layer.1\":\"m-2.safetensors\","                      \
    "\"head\":\"m-2.safetensors\"}}"

static void test_model_single_and_sharded(void)
{
    char dir[512];
    hl_err err;
    st_model m;
    mk_dir(dir, sizeof dir, "single");
    mk_shard(dir, "model.safetensors", shard1_names, 2, 10);
    put_text(dir, "pytorch_model.bin", "ignored when safetensors exist");
    CU_ASSERT_EQUAL_FATAL(st_model_open(&m, dir, &err), HL_OK);
    CU_ASSERT_EQUAL(st_model_count(&m), 2);
    const st_tensor *t = st_model_find(&m, "layer.0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    float out[2];
    CU_ASSERT_EQUAL(st_tensor_to_f32(t, out, &err), HL_OK);
    CU_ASSERT_EQUAL(out[0], 11.0f);
    CU_ASSERT_PTR_NULL(st_model_find(&m, "head"));
    st_model_close(&m);

    mk_dir(dir, sizeof dir, "sharded");
    mk_shard(dir, "m-1.safetensors", shard1_names, 2, 10);
    mk_shard(dir, "m-2.safetensors", shard2_names, 2, 20);
    put_text(dir, "model.safetensors.index.json", GOOD_INDEX);
    CU_ASSERT_EQUAL_FATAL(st_model_open(&m, dir, &err), HL_OK);
    CU_ASSERT_EQUAL(m.n_files, 2);
    CU_ASSERT_EQUAL(st_model_count(&m), 4);
    const char *sorted[] = {"emb", "head", "layer.0", "layer.1"};
    for (int i = 0; i < 4; i++)
        CU_ASSERT_STRING_EQUAL(st_model_tensor(&m, i)->name, sorted[i]);
    t = st_model_find(&m, "head");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT(strstr(t->path, "m-2.safetensors") != NULL);
    CU_ASSERT_EQUAL(st_tensor_to_f32(t, out, &err), HL_OK);
    CU_ASSERT_EQUAL(out[0], 21.0f);
    CU_ASSERT_EQUAL(out[1], 21.5f);
    CU_ASSERT_PTR_NOT_NULL(st_model_find(&m, "emb"));
    CU_ASSERT_PTR_NULL(st_model_find(&m, "nope"));
    st_model_close(&m);
    CU_ASSERT_PTR_NULL(m.files);
}

typedef struct bad_model {
    const char *label;
    const char *index;  /* model.safetensors.index.json, or NULL for none */
    bool shard2;        /* write m-2.safetensors */
    bool shard2_dup;    /* m-2 also holds "emb" */
    bool shard2_extra;  /* m-2 also holds "stray" */
    hl_status code;
    const char *must[2]; /* substrings of the message besides the folder */
} bad_model;

static const bad_model bad_models[] = {
    {"missing shard", GOOD_INDEX, false, false, false, HL_ERR_IO, {"m-2.safetensors", NULL}},
    {"slash in shard",
     "{\"weight_map\":{\"emb\":\"m-1.safetensors\",\"layer.0\":\"m-1.safetensors\","
     "\"layer.1\":\"../m-2.safetensors\",\"head\":\"m-2.safetensors\"}}",
     true, false, false, HL_ERR_FORMAT, {"layer.1", "../m-2.safetensors"}},
    {"dotdot shard", "{\"weight_map\":{\"emb\":\"..\"}}", true, false, false, HL_ERR_FORMAT,
     {"emb", NULL}},
    {"empty shard name", "{\"weight_map\":{\"emb\":\"\"}}", true, false, false, HL_ERR_FORMAT,
     {"emb", NULL}},
    {"tensor in two shards", GOOD_INDEX, true, true, false, HL_ERR_FORMAT, {"emb", "two shards"}},
    {"unlisted tensor", GOOD_INDEX, true, false, true, HL_ERR_FORMAT, {"stray", NULL}},
    {"wrong shard",
     "{\"weight_map\":{\"emb\":\"m-2.safetensors\",\"layer.0\":\"m-1.safetensors\","
     "\"layer.1\":\"m-2.safetensors\",\"head\":\"m-2.safetensors\"}}",
     true, false, false, HL_ERR_FORMAT, {"emb", "m-1.safetensors"}},
    {"tensor not in shard",
     "{\"weight_map\":{\"emb\":\"m-1.safetensors\",\"layer.0\":\"m-1.safetensors\","
     "\"layer.1\":\"m-2.safetensors\",\"head\":\"m-2.safetensors\",\"ghost\":\"m-2.safetensors\"}}",
     true, false, false, HL_ERR_FORMAT, {"ghost", NULL}},
    {"listed twice",
     "{\"weight_map\":{\"emb\":\"m-1.safetensors\",\"layer.0\":\"m-1.safetensors\","
     "\"layer.1\":\"m-2.safetensors\",\"head\":\"m-2.safetensors\",\"head\":\"m-2.safetensors\"}}",
     true, false, false, HL_ERR_FORMAT, {"head", NULL}},
    {"no weight_map", "{\"metadata\":{}}", true, false, false, HL_ERR_FORMAT, {"weight_map", NULL}},
    {"weight_map array", "{\"weight_map\":[]}", true, false, false, HL_ERR_FORMAT,
     {"weight_map", NULL}},
    {"shard not a string", "{\"weight_map\":{\"emb\":1}}", true, false, false, HL_ERR_FORMAT,
     {"emb", NULL}},
    {"index not JSON", "{\"weight_map\":", true, false, false, HL_ERR_FORMAT, {NULL, NULL}},
    {"index trailing", "{\"weight_map\":{}} {}", true, false, false, HL_ERR_FORMAT, {NULL, NULL}},
    {"malformed shard",
     "{\"weight_map\":{\"emb\":\"m-1.safetensors\",\"layer.0\":\"m-1.safetensors\","
     "\"x\":\"bad.safetensors\"}}",
     true, false, false, HL_ERR_FORMAT, {"bad.safetensors", NULL}},
    {"pickle only", NULL, false, false, false, HL_ERR_INVALID, {"pytorch_model.bin", "save_file"}},
};

static void test_model_malformed(void)
{
    for (size_t i = 0; i < sizeof bad_models / sizeof bad_models[0]; i++) {
        const bad_model *c = &bad_models[i];
        char name[64], dir[512];
        snprintf(name, sizeof name, "badmodel%02zu", i);
        mk_dir(dir, sizeof dir, name);
        if (c->index) {
            mk_shard(dir, "m-1.safetensors", shard1_names, 2, 10);
            put_text(dir, "model.safetensors.index.json", c->index);
            char bp[600];
            snprintf(bp, sizeof bp, "%s/bad.safetensors", dir);
            put_bytes(bp, "\x02\0\0\0\0\0\0\0[]", 10); /* header not starting with '{' */
        } else {
            put_text(dir, "pytorch_model.bin", "PK\3\4 pickle");
        }
        if (c->shard2) {
            const char *names[3] = {"layer.1", "head",
                                    c->shard2_dup ? "emb" : c->shard2_extra ? "stray" : NULL};
            mk_shard(dir, "m-2.safetensors", names, names[2] ? 3 : 2, 20);
        }
        st_model m;
        hl_err err;
        hl_err_clear(&err);
        hl_status st = st_model_open(&m, dir, &err);
        bool ok = st == c->code && strstr(err.msg, dir) != NULL;
        for (int k = 0; k < 2; k++)
            if (c->must[k] && !strstr(err.msg, c->must[k]))
                ok = false;
        if (!ok)
            fprintf(stderr, "\n  case %s: status %d (want %d), message: %s\n", c->label, (int)st,
                    (int)c->code, err.msg);
        CU_ASSERT(ok);
        CU_ASSERT_PTR_NULL(m.files);
        CU_ASSERT_EQUAL(m.n_entries, 0);
        st_model_close(&m);
    }

    char dir[512];
    st_model m;
    hl_err err;
    mk_dir(dir, sizeof dir, "emptymodel");
    CU_ASSERT_EQUAL(st_model_open(&m, dir, &err), HL_ERR_IO);
    CU_ASSERT(strstr(err.msg, dir) && strstr(err.msg, "model.safetensors"));
    tpath(dir, sizeof dir, "no-such-folder");
    CU_ASSERT_EQUAL(st_model_open(&m, dir, &err), HL_ERR_IO);
    CU_ASSERT(strstr(err.msg, dir) != NULL);
    st_model_close(&m);
}

/* ------------------------------------------------------------- writer */

static void test_write_failures_keep_old_file(void)
{
    char path[512], missing[512];
    hl_err err;
    float v[4] = {1, 2, 3, 4};
    int64_t s4[1] = {4}, sneg[1] = {-1};
    st_write_tensor good = {"w", ST_DTYPE_F32, ST_SRC_RAW, 1, s4, v};

    /* A directory that does not exist. */
    tpath(missing, sizeof missing, "no-such-dir/out.safetensors");
    CU_ASSERT_EQUAL(st_write(missing, &good, 1, NULL, 0, &err), HL_ERR_IO);
    CU_ASSERT(strstr(err.msg, missing) != NULL);

    tpath(path, sizeof path, "keep.safetensors");
    CU_ASSERT_EQUAL_FATAL(st_write(path, &good, 1, NULL, 0, &err), HL_OK);
    size_t n0, n1;
    unsigned char *before = slurp(path, &n0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);

    /* Bad arguments: rejected before anything touches the disk. */
    st_write_tensor dup[2] = {good, good};
    st_write_tensor bad_shape = {"w", ST_DTYPE_F32, ST_SRC_RAW, 1, sneg, v};
    st_write_tensor no_data = {"w", ST_DTYPE_F32, ST_SRC_RAW, 1, s4, NULL};
    st_write_tensor int_from_f32 = {"w", ST_DTYPE_I32, ST_SRC_F32, 1, s4, v};
    st_write_tensor meta_name = {"__metadata__", ST_DTYPE_F32, ST_SRC_RAW, 1, s4, v};
    st_write_tensor bad_utf8 = {"w\xff", ST_DTYPE_F32, ST_SRC_RAW, 1, s4, v};
    const char *dup_meta[] = {"k", "a", "k", "b"};
    CU_ASSERT_EQUAL(st_write(path, dup, 2, NULL, 0, &err), HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, path) && strstr(err.msg, "'w'"));
    CU_ASSERT_EQUAL(st_write(path, &bad_shape, 1, NULL, 0, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(st_write(path, &no_data, 1, NULL, 0, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(st_write(path, &int_from_f32, 1, NULL, 0, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(st_write(path, &meta_name, 1, NULL, 0, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(st_write(path, &bad_utf8, 1, NULL, 0, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(st_write(path, &good, 1, dup_meta, 2, &err), HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "'k'") != NULL);

    /* A real I/O failure half-way through the data: a file size limit makes
     * write() fail with EFBIG once the temp file passes 4 KiB. */
    enum { BIG = 1 << 16 };
    float *big = calloc(BIG, sizeof *big);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    int64_t sbig[1] = {BIG};
    st_write_tensor large = {"big", ST_DTYPE_F32, ST_SRC_RAW, 1, sbig, big};
    st_write_tensor large16 = {"big", ST_DTYPE_F16, ST_SRC_F32, 1, sbig, big};
    struct rlimit old;
    CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {4096, old.rlim_max};
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 4096)
        lim.rlim_cur = old.rlim_max;
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
    hl_status st1 = st_write(path, &large, 1, NULL, 0, &err);
    hl_err err2;
    hl_status st2 = st_write(path, &large16, 1, NULL, 0, &err2);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    CU_ASSERT_EQUAL(st1, HL_ERR_IO);
    CU_ASSERT(strstr(err.msg, path) != NULL);
    CU_ASSERT_EQUAL(st2, HL_ERR_IO);
    free(big);

    /* The target is a directory: the rename fails, the temp file goes. */
    char dpath[512];
    mk_dir(dpath, sizeof dpath, "target-is-dir");
    char inner[600];
    snprintf(inner, sizeof inner, "%s/x", dpath);
    put_bytes(inner, "x", 1); /* non-empty, so rename cannot replace it */
    CU_ASSERT_EQUAL(st_write(dpath, &good, 1, NULL, 0, &err), HL_ERR_IO);
    CU_ASSERT(strstr(err.msg, dpath) != NULL);

    unsigned char *after = slurp(path, &n1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(after);
    CU_ASSERT(n0 == n1 && memcmp(before, after, n0) == 0);
    CU_ASSERT_EQUAL(count_temps(tmpdir), 0);
    free(before);
    free(after);

    /* A successful write replaces the old file. */
    float v2[2] = {7, 8};
    int64_t s2[1] = {2};
    st_write_tensor repl = {"other", ST_DTYPE_BF16, ST_SRC_F32, 1, s2, v2};
    CU_ASSERT_EQUAL(st_write(path, &repl, 1, NULL, 0, &err), HL_OK);
    st_file f;
    CU_ASSERT_EQUAL_FATAL(st_file_open(&f, path, &err), HL_OK);
    CU_ASSERT_PTR_NULL(st_file_find(&f, "w"));
    CU_ASSERT_PTR_NOT_NULL(st_file_find(&f, "other"));
    st_file_close(&f);
    CU_ASSERT_EQUAL(count_temps(tmpdir), 0);
}

static void register_safetensors(void)
{
    CU_pSuite s = CU_add_suite("safetensors", suite_init, suite_clean);
    TEST_ADD(s, test_dtype_table);
    TEST_ADD(s, test_f16_to_f32_exhaustive);
    TEST_ADD(s, test_f32_to_f16_rounding);
    TEST_ADD(s, test_bf16_conversions);
    TEST_ADD(s, test_roundtrip_every_dtype);
    TEST_ADD(s, test_f16_specials_roundtrip);
    TEST_ADD(s, test_transposed_and_unaligned);
    TEST_ADD(s, test_empty_and_tiny_files);
    TEST_ADD(s, test_malformed_files);
    TEST_ADD(s, test_messages_have_no_control_bytes);
    TEST_ADD(s, test_truncation_and_mutation);
    TEST_ADD(s, test_model_single_and_sharded);
    TEST_ADD(s, test_model_malformed);
    TEST_ADD(s, test_write_failures_keep_old_file);
}

TEST_MAIN(register_safetensors)
