/* test_gguf.c - GGUF reader and writer: llama.cpp-written files checked
 * against the synthetic-model formula, writer round trips checked byte for
 * byte against an encoder written here, and a battery of corrupt inputs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* memmem */
#endif
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "format/gguf.h"
#include "common/error.h"
#include "quant/quant.h"

/* ------------------------------------------------------------------ */
/* Helpers independent of the library                                  */
/* ------------------------------------------------------------------ */

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Synthetic model element (spec synthetic-model.md) as bf16 bits. */
enum { K_EMBED, K_NORM, K_LINEAR };
static uint16_t synth_bf16(uint64_t seed, uint64_t t, uint64_t i, int kind, int fan_in)
{
    uint64_t z = ((seed << 48) | (t << 32) | i) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    volatile float u = (float)(z >> 40) * 0x1p-24f;
    volatile float r = u * 2.0f - 1.0f, w;
    if (kind == K_EMBED) w = r;
    else if (kind == K_NORM) w = r * 0.0625f + 1.0f;
    else { volatile float s = (float)sqrt(3.0 / fan_in); w = r * s; }
    float wf = w;
    uint32_t bits;
    memcpy(&bits, &wf, 4);
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

static float bf16f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? INFINITY : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* Growing byte buffer: an encoder of GGUF written from the spec. */
typedef struct bb { uint8_t *p; size_t n, cap; } bb;
static void bb_put(bb *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? b->cap * 2 : 256;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u16(bb *b, uint16_t v) { uint8_t x[2] = { (uint8_t)v, (uint8_t)(v >> 8) }; bb_put(b, x, 2); }
static void bb_u32(bb *b, uint32_t v) { uint8_t x[4]; for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> 8 * i); bb_put(b, x, 4); }
static void bb_u64(bb *b, uint64_t v) { uint8_t x[8]; for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> 8 * i); bb_put(b, x, 8); }
static void bb_strn(bb *b, const char *s, size_t n) { bb_u64(b, n); bb_put(b, s, n); }
static void bb_str(bb *b, const char *s) { bb_strn(b, s, strlen(s)); }
static void bb_pad(bb *b, size_t al) { while (b->n % al) bb_u8(b, 0); }
static void bb_set32(bb *b, size_t off, uint32_t v) { for (int i = 0; i < 4; i++) b->p[off + i] = (uint8_t)(v >> 8 * i); }
static void bb_set64(bb *b, size_t off, uint64_t v) { for (int i = 0; i < 8; i++) b->p[off + i] = (uint8_t)(v >> 8 * i); }

static dn_gguf *open_ok(const uint8_t *buf, size_t n, const char *what)
{
    dn_gguf *g = NULL;
    danu_status st = dn_gguf_open(dn_alloc_libc(), buf, n, what, &g);
    ck_assert_msg(st == DANU_OK, "%s: open failed %d: %s", what, st, dn_lasterr());
    ck_assert_ptr_nonnull(g);
    return g;
}

/* ------------------------------------------------------------------ */
/* Files written by llama.cpp                                          */
/* ------------------------------------------------------------------ */

typedef struct qfile { const char *tag; int32_t base; uint32_t ftype; } qfile;
static const qfile qfiles[] = {
    { "F16", DANU_TYPE_F16, 1 },     { "bf16", DANU_TYPE_BF16, 32 },  { "Q8_0", DANU_TYPE_Q8_0, 7 },
    { "Q4_0", DANU_TYPE_Q4_0, 2 },   { "Q4_1", DANU_TYPE_Q4_1, 3 },   { "Q5_0", DANU_TYPE_Q5_0, 8 },
    { "Q5_1", DANU_TYPE_Q5_1, 9 },   { "Q4_K_S", DANU_TYPE_Q4_K, 14 }, { "Q4_K_M", DANU_TYPE_Q4_K, 15 },
    { "Q5_K_M", DANU_TYPE_Q5_K, 17 }, { "Q6_K", DANU_TYPE_Q6_K, 18 },
};
#define N_QFILES ((int)(sizeof qfiles / sizeof qfiles[0]))

enum { VOCAB = 1024, HIDDEN = 256, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 64, FFN = 768, LAYERS = 2, SEED = 17 };

/* One tensor of tiny-q as llama.cpp names it, with the spec's tensor index. */
typedef struct qtensor {
    char name[64];
    int64_t rows, cols;     /* cols = 0: a vector */
    int t, kind, fan_in;
    int permute_heads;      /* q/k: rows permuted per head */
    int layer, is_norm;
    const char *base;       /* name without blk.N. */
} qtensor;

static int tiny_q_tensors(qtensor *q)
{
    int n = 0;
    q[n++] = (qtensor){ "token_embd.weight", VOCAB, HIDDEN, 0, K_EMBED, 0, 0, -1, 0, "token_embd.weight" };
    static const struct { const char *base; int rows, cols, kind, fan_in, perm, norm; } blk[9] = {
        { "attn_norm.weight", HIDDEN, 0, K_NORM, 0, 0, 1 },
        { "attn_q.weight", HEADS * HEAD_DIM, HIDDEN, K_LINEAR, HIDDEN, HEADS, 0 },
        { "attn_k.weight", KV_HEADS * HEAD_DIM, HIDDEN, K_LINEAR, HIDDEN, KV_HEADS, 0 },
        { "attn_v.weight", KV_HEADS * HEAD_DIM, HIDDEN, K_LINEAR, HIDDEN, 0, 0 },
        { "attn_output.weight", HIDDEN, HEADS * HEAD_DIM, K_LINEAR, HEADS * HEAD_DIM, 0, 0 },
        { "ffn_norm.weight", HIDDEN, 0, K_NORM, 0, 0, 1 },
        { "ffn_gate.weight", FFN, HIDDEN, K_LINEAR, HIDDEN, 0, 0 },
        { "ffn_up.weight", FFN, HIDDEN, K_LINEAR, HIDDEN, 0, 0 },
        { "ffn_down.weight", HIDDEN, FFN, K_LINEAR, FFN, 0, 0 },
    };
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k < 9; k++) {
            qtensor *t = &q[n++];
            snprintf(t->name, sizeof t->name, "blk.%d.%s", l, blk[k].base);
            t->rows = blk[k].rows; t->cols = blk[k].cols; t->t = 1 + 9 * l + k;
            t->kind = blk[k].kind; t->fan_in = blk[k].fan_in; t->permute_heads = blk[k].perm;
            t->layer = l; t->is_norm = blk[k].norm; t->base = blk[k].base;
        }
    q[n++] = (qtensor){ "output_norm.weight", HIDDEN, 0, 1 + 9 * LAYERS, K_NORM, 0, 0, -1, 1, "output_norm.weight" };
    q[n++] = (qtensor){ "output.weight", VOCAB, HIDDEN, 2 + 9 * LAYERS, K_LINEAR, HIDDEN, 0, -1, 0, "output.weight" };
    return n;
}

/* What llama-quantize chose for each tensor (learnt from the files once,
 * consistent with its documented mixes: output stays q6_K for <= 6-bit
 * mixes, *_M mixes raise attn_v/ffn_down of some layers to q6_K). */
static int32_t expected_type(const qfile *f, const qtensor *t)
{
    if (t->is_norm) return DANU_TYPE_F32;
    int32_t b = f->base;
    if (!strcmp(t->name, "output.weight"))
        return (b == DANU_TYPE_F16 || b == DANU_TYPE_BF16 || b == DANU_TYPE_Q8_0) ? b : DANU_TYPE_Q6_K;
    int is_v = !strcmp(t->base, "attn_v.weight"), is_down = !strcmp(t->base, "ffn_down.weight");
    if (!strcmp(f->tag, "Q4_K_S") && is_v) return DANU_TYPE_Q5_K;
    if ((!strcmp(f->tag, "Q4_K_M") || !strcmp(f->tag, "Q5_K_M")) && (is_v || is_down) && t->layer == 1)
        return DANU_TYPE_Q6_K;
    return b;
}

static const char *qpath(const qfile *f)
{
    static char rel[64];
    snprintf(rel, sizeof rel, "gguf-llamacpp/tiny-q-%s.gguf", f->tag);
    return tu_data(rel);
}

static void check_u64(const dn_gguf *g, const char *key, uint64_t want)
{
    uint64_t v = 0;
    ck_assert_msg(dn_gguf_get_u64(g, key, &v), "missing %s", key);
    ck_assert_msg(v == want, "%s = %llu, want %llu", key, (unsigned long long)v, (unsigned long long)want);
}

static int cmp_u64pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

START_TEST(test_gguf_llamacpp_metadata)
{
    const qfile *f = &qfiles[_i];
    size_t n;
    uint8_t *buf = tu_read(qpath(f), &n);
    ck_assert_msg(buf != NULL, "cannot read %s", qpath(f));
    dn_gguf *g = open_ok(buf, n, f->tag);
    ck_assert_uint_eq(dn_gguf_version(g), 3);
    ck_assert_uint_eq(dn_gguf_alignment(g), 32);
    ck_assert_uint_eq(dn_gguf_data_offset(g) % 32, 0);
    const char *s;
    uint64_t len;
    ck_assert(dn_gguf_get_str(g, "general.architecture", &s, &len));
    ck_assert(len == 5 && !memcmp(s, "llama", 5));
    check_u64(g, "llama.block_count", LAYERS);
    check_u64(g, "llama.embedding_length", HIDDEN);
    check_u64(g, "llama.attention.head_count", HEADS);
    check_u64(g, "llama.attention.head_count_kv", KV_HEADS);
    check_u64(g, "llama.feed_forward_length", FFN);
    check_u64(g, "llama.context_length", 256);
    check_u64(g, "general.file_type", f->ftype);
    int64_t iv;
    ck_assert(dn_gguf_get_i64(g, "llama.block_count", &iv) && iv == LAYERS);
    double d;
    ck_assert(dn_gguf_get_f64(g, "llama.rope.freq_base", &d) && d == 10000.0);
    ck_assert(dn_gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &d) && d == (double)1e-5f);
    ck_assert(dn_gguf_get_f64(g, "llama.block_count", &d) && d == 2.0);
    /* typed access refuses what does not fit */
    ck_assert(!dn_gguf_get_u64(g, "llama.attention.layer_norm_rms_epsilon", (uint64_t *)&iv));
    ck_assert(!dn_gguf_get_u64(g, "general.architecture", (uint64_t *)&iv));
    ck_assert(!dn_gguf_get_str(g, "llama.block_count", &s, &len));
    ck_assert(!dn_gguf_get_u64(g, "no.such.key", (uint64_t *)&iv));
    int bv = -1;
    ck_assert(dn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bv) && bv == 1);
    ck_assert(!dn_gguf_get_bool(g, "llama.block_count", &bv));
    int64_t ki = dn_gguf_find(g, "general.architecture");
    ck_assert(ki >= 0 && !strcmp(dn_gguf_key(g, ki), "general.architecture"));
    ck_assert_int_eq(dn_gguf_kv_type(g, ki), DN_GGUF_STRING);
    ck_assert_int_eq(dn_gguf_find(g, "general.architectur"), -1);
    ck_assert_ptr_null(dn_gguf_key(g, dn_gguf_n_kv(g)));

    int32_t et;
    uint64_t cnt;
    ck_assert(dn_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &cnt) && et == DN_GGUF_STRING && cnt == VOCAB);
    static const char *first[] = { "<unk>", "<s>", "</s>", "<0x00>", "<0x01>" };
    static const int64_t ttype[] = { 2, 3, 3, 6, 6 };
    for (int i = 0; i < 5; i++) {
        ck_assert(dn_gguf_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)i, &s, &len));
        ck_assert_msg(len == strlen(first[i]) && !memcmp(s, first[i], len), "token %d", i);
        ck_assert(dn_gguf_arr_i64(g, "tokenizer.ggml.token_type", (uint64_t)i, &iv) && iv == ttype[i]);
    }
    ck_assert(dn_gguf_arr_str(g, "tokenizer.ggml.tokens", VOCAB - 1, &s, &len) && len > 0);
    ck_assert(!dn_gguf_arr_str(g, "tokenizer.ggml.tokens", VOCAB, &s, &len));
    ck_assert(!dn_gguf_arr_f64(g, "tokenizer.ggml.tokens", 0, &d));
    ck_assert(dn_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &cnt) && et == DN_GGUF_F32 && cnt == VOCAB);
    ck_assert(dn_gguf_arr_f64(g, "tokenizer.ggml.scores", VOCAB - 1, &d) && isfinite(d));
    ck_assert(!dn_gguf_arr_f64(g, "tokenizer.ggml.scores", VOCAB, &d));
    ck_assert(dn_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &cnt) && et == DN_GGUF_I32 && cnt == VOCAB);
    ck_assert(!dn_gguf_arr_str(g, "tokenizer.ggml.token_type", 0, &s, &len));

    qtensor q[32];
    int nq = tiny_q_tensors(q);
    ck_assert_int_eq(nq, 2 * 9 + 3);
    ck_assert_int_eq(dn_gguf_n_tensors(g), nq);
    uint64_t ranges[32][2];
    for (int i = 0; i < nq; i++) {
        const dn_tensor_desc *t = dn_gguf_find_tensor(g, q[i].name);
        ck_assert_msg(t != NULL, "%s: missing %s", f->tag, q[i].name);
        ck_assert_str_eq(t->name, q[i].name);
        int nd = q[i].cols ? 2 : 1;
        ck_assert_int_eq(t->n_dims, nd);
        ck_assert_int_eq(t->dims[0], q[i].rows);
        if (nd == 2) ck_assert_int_eq(t->dims[1], q[i].cols);
        uint64_t nel = (uint64_t)q[i].rows * (uint64_t)(q[i].cols ? q[i].cols : 1);
        ck_assert_uint_eq(t->n_elements, nel);
        int32_t want = expected_type(f, &q[i]);
        ck_assert_msg(t->type == want, "%s %s: type %d, want %d", f->tag, q[i].name, t->type, want);
        const dn_type_info *ti = dn_type_get(t->type);
        ck_assert_uint_eq(t->nbytes, nel / ti->block_size * ti->type_size);
        ck_assert(t->data == buf + t->file_offset);
        ck_assert_uint_eq((t->file_offset - dn_gguf_data_offset(g)) % 32, 0);
        ranges[i][0] = t->file_offset;
        ranges[i][1] = t->file_offset + t->nbytes;
        ck_assert(ranges[i][1] <= n);
    }
    ck_assert_ptr_null(dn_gguf_find_tensor(g, "blk.2.attn_q.weight"));
    ck_assert_ptr_null(dn_gguf_tensor(g, nq));
    qsort(ranges, (size_t)nq, sizeof ranges[0], cmp_u64pair);
    for (int i = 1; i < nq; i++) ck_assert(ranges[i][0] >= ranges[i - 1][1]);
    ck_assert(ranges[0][0] >= dn_gguf_data_offset(g));
    dn_gguf_close(g);
    free(buf);
}
END_TEST

/* The generator reproduces the spec's published checksums (tiny-b, seed 11). */
START_TEST(test_gguf_synth_oracle)
{
    double s0 = 0, s1 = 0, s1_all = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        s0 += bf16f(synth_bf16(11, 0, i, K_EMBED, 0));
        s1 += bf16f(synth_bf16(11, 1 + 1, i, K_LINEAR, 256));   /* layer 0 q_proj, t = 2 */
    }
    for (uint64_t i = 0; i < 256 * 256; i++) s1_all += bf16f(synth_bf16(11, 2, i, K_LINEAR, 256));
    ck_assert_double_eq_tol(s0, -12.88318920135498, 1e-9);
    ck_assert_double_eq_tol(s1, 3.538412094116211, 1e-9);
    ck_assert_double_eq_tol(s1_all, 24.920381411910057, 1e-7);
}
END_TEST

/* Every value of the F16 and bf16 files against the formula; q/k rows
 * undo llama.cpp's permutation. */
static void check_values(const qfile *f)
{
    size_t n;
    uint8_t *buf = tu_read(qpath(f), &n);
    ck_assert_ptr_nonnull(buf);
    dn_gguf *g = open_ok(buf, n, f->tag);
    qtensor q[32];
    int nq = tiny_q_tensors(q);
    long n_checked = 0, n_bad = 0;
    char first_bad[256] = "";
    for (int k = 0; k < nq; k++) {
        const dn_tensor_desc *t = dn_gguf_find_tensor(g, q[k].name);
        ck_assert_ptr_nonnull(t);
        ck_assert(t->type == DANU_TYPE_F32 || t->type == f->base);
        int64_t rows = q[k].rows, cols = q[k].cols ? q[k].cols : q[k].rows;
        if (!q[k].cols) rows = 1;
        for (int64_t r = 0; r < rows; r++) {
            int64_t hf_row = r;
            if (q[k].permute_heads) {
                int64_t h = r / HEAD_DIM, w = r % HEAD_DIM, j = w / 2, s = w % 2;
                hf_row = h * HEAD_DIM + s * (HEAD_DIM / 2) + j;
            }
            for (int64_t c = 0; c < cols; c++) {
                uint64_t i = (uint64_t)(r * cols + c);
                float want = bf16f(synth_bf16(SEED, (uint64_t)q[k].t, (uint64_t)(hf_row * cols + c), q[k].kind, q[k].fan_in));
                const uint8_t *p;
                double got;
                if (t->type == DANU_TYPE_F32) {
                    p = t->data + 4 * i;
                    uint32_t u = le32(p);
                    float fv;
                    memcpy(&fv, &u, 4);
                    got = fv;
                } else if (t->type == DANU_TYPE_BF16) {
                    got = bf16f(le16(t->data + 2 * i));
                } else {
                    got = half_to_double(le16(t->data + 2 * i));
                }
                /* f16 holds every bf16 value exactly in its normal range;
                 * below 2^-14 it keeps steps of 2^-24 */
                double tol = (t->type == DANU_TYPE_F16 && fabs(want) < 0x1p-14) ? 0x1p-25 : 0.0;
                /* ck_assert marks a point per call (a pipe write): assert once per tensor */
                if (!(fabs(got - (double)want) <= tol) && !n_bad++)
                    snprintf(first_bad, sizeof first_bad, "%.16s %.63s [%lld,%lld]: %.9g vs %.9g",
                             f->tag, q[k].name, (long long)r, (long long)c, got, (double)want);
                n_checked++;
            }
        }
    }
    ck_assert_msg(n_bad == 0, "%ld mismatches, first: %s", n_bad, first_bad);
    ck_assert_int_eq(n_checked, (long)(2 * VOCAB * HIDDEN + LAYERS * (2 * HIDDEN + 2 * HIDDEN * HIDDEN +
                                 2 * KV_HEADS * HEAD_DIM * HIDDEN + 3 * FFN * HIDDEN) + HIDDEN));
    dn_gguf_close(g);
    free(buf);
}

START_TEST(test_gguf_values_bf16) { check_values(&qfiles[1]); }
END_TEST
START_TEST(test_gguf_values_f16) { check_values(&qfiles[0]); }
END_TEST

/* ------------------------------------------------------------------ */
/* Writer round trip                                                   */
/* ------------------------------------------------------------------ */

typedef struct rt_tensor { const char *name; int32_t type; int32_t n_dims; int64_t dims[4]; uint64_t nbytes; } rt_tensor;
static const rt_tensor rt_tensors[] = {
    { "t.f32", DANU_TYPE_F32, 2, { 3, 64 }, 3 * 64 * 4 },
    { "t.vec", DANU_TYPE_F32, 1, { 5 }, 20 },
    { "t.f16", DANU_TYPE_F16, 3, { 2, 3, 32 }, 2 * 3 * 32 * 2 },
    { "t.q8_0", DANU_TYPE_Q8_0, 2, { 4, 64 }, 4 * 2 * 34 },
    { "t.q4_K", DANU_TYPE_Q4_K, 2, { 2, 512 }, 2 * 2 * 144 },
    { "t.bf16.4d", DANU_TYPE_BF16, 4, { 1, 2, 1, 7 }, 14 * 2 },
};
#define N_RT ((int)(sizeof rt_tensors / sizeof rt_tensors[0]))

static const uint8_t rt_u8[] = { 0, 1, 255 };
static const int8_t rt_i8[] = { -128, 0, 127 };
static const uint16_t rt_u16[] = { 0, 65535, 4660 };
static const int16_t rt_i16[] = { -32768, 32767, -2 };
static const uint32_t rt_u32[] = { 4000000000u, 7 };
static const int32_t rt_i32[] = { -5, 2147483647, -2147483647 - 1, 0 };
static const uint64_t rt_u64[] = { 18446744073709551615ull, 1 };
static const int64_t rt_i64[] = { -9223372036854775807ll - 1, 42 };
static const float rt_f32[] = { 1.5f, -0.25f, 3.0e38f };
static const double rt_f64[] = { 3.141592653589793, -1e-300 };
static const uint8_t rt_bool[] = { 1, 0, 1, 1 };
static const char *rt_strs[] = { "alpha", "", "\xe2\x96\x81the", "x y z" };

static void tensor_bytes(int k, uint8_t *out, uint64_t n)
{
    uint32_t x = 0x12345u + (uint32_t)k * 7919u;
    for (uint64_t i = 0; i < n; i++) { x = x * 1664525u + 1013904223u; out[i] = (uint8_t)(x >> 24); }
}

/* Encode with the test's own encoder what rt_write produces with the writer. */
static void rt_expected(bb *b, uint32_t al, int with_alignment_key)
{
    int n_kv = 20 + with_alignment_key;
    bb_put(b, "GGUF", 4);
    bb_u32(b, 3);
    bb_u64(b, N_RT);
    bb_u64(b, (uint64_t)n_kv);
    if (with_alignment_key) { bb_str(b, "general.alignment"); bb_u32(b, DN_GGUF_U32); bb_u32(b, al); }
    bb_str(b, "general.architecture"); bb_u32(b, DN_GGUF_STRING); bb_str(b, "llama");
    bb_str(b, "k.u32"); bb_u32(b, DN_GGUF_U32); bb_u32(b, 4000000000u);
    bb_str(b, "k.i32"); bb_u32(b, DN_GGUF_I32); bb_u32(b, (uint32_t)-123456);
    bb_str(b, "k.u64"); bb_u32(b, DN_GGUF_U64); bb_u64(b, 0xFEDCBA9876543210ull);
    bb_str(b, "k.f32"); bb_u32(b, DN_GGUF_F32); bb_u32(b, 0x3DCCCCCDu);   /* 0.1f */
    bb_str(b, "k.true"); bb_u32(b, DN_GGUF_BOOL); bb_u8(b, 1);
    bb_str(b, "k.false"); bb_u32(b, DN_GGUF_BOOL); bb_u8(b, 0);
    bb_str(b, "k.empty"); bb_u32(b, DN_GGUF_STRING); bb_str(b, "");
#define ARR(key, et, arr, put) do { bb_str(b, key); bb_u32(b, DN_GGUF_ARRAY); bb_u32(b, et); \
        bb_u64(b, sizeof arr / sizeof arr[0]); \
        for (size_t i_ = 0; i_ < sizeof arr / sizeof arr[0]; i_++) put; } while (0)
    ARR("a.u8", DN_GGUF_U8, rt_u8, bb_u8(b, rt_u8[i_]));
    ARR("a.i8", DN_GGUF_I8, rt_i8, bb_u8(b, (uint8_t)rt_i8[i_]));
    ARR("a.u16", DN_GGUF_U16, rt_u16, bb_u16(b, rt_u16[i_]));
    ARR("a.i16", DN_GGUF_I16, rt_i16, bb_u16(b, (uint16_t)rt_i16[i_]));
    ARR("a.u32", DN_GGUF_U32, rt_u32, bb_u32(b, rt_u32[i_]));
    ARR("a.i32", DN_GGUF_I32, rt_i32, bb_u32(b, (uint32_t)rt_i32[i_]));
    ARR("a.u64", DN_GGUF_U64, rt_u64, bb_u64(b, rt_u64[i_]));
    ARR("a.i64", DN_GGUF_I64, rt_i64, bb_u64(b, (uint64_t)rt_i64[i_]));
    ARR("a.f32", DN_GGUF_F32, rt_f32, { uint32_t u_; memcpy(&u_, &rt_f32[i_], 4); bb_u32(b, u_); });
    ARR("a.f64", DN_GGUF_F64, rt_f64, { uint64_t u_; memcpy(&u_, &rt_f64[i_], 8); bb_u64(b, u_); });
    ARR("a.bool", DN_GGUF_BOOL, rt_bool, bb_u8(b, rt_bool[i_]));
    ARR("a.str", DN_GGUF_STRING, rt_strs, bb_str(b, rt_strs[i_]));
#undef ARR
    uint64_t off = 0;
    for (int k = 0; k < N_RT; k++) {
        const rt_tensor *t = &rt_tensors[k];
        bb_str(b, t->name);
        bb_u32(b, (uint32_t)t->n_dims);
        for (int d = t->n_dims - 1; d >= 0; d--) bb_u64(b, (uint64_t)t->dims[d]);
        bb_u32(b, (uint32_t)t->type);
        bb_u64(b, off);
        off += t->nbytes;
        off = (off + al - 1) / al * al;
    }
    bb_pad(b, al);
    for (int k = 0; k < N_RT; k++) {
        uint8_t tmp[4096];
        tensor_bytes(k, tmp, rt_tensors[k].nbytes);
        bb_put(b, tmp, rt_tensors[k].nbytes);
        bb_pad(b, al);
    }
}


static danu_status rt_write(const dn_alloc *a, const char *path, uint32_t al, int with_alignment_key)
{
    dn_gguf_writer *w = NULL;
    danu_status st = dn_gguf_writer_create(a, al, &w);
    if (st) return st;
    size_t lens[4];
    for (int i = 0; i < 4; i++) lens[i] = strlen(rt_strs[i]);
#define T(x) do { st = (x); if (st) goto done; } while (0)
    if (with_alignment_key) T(dn_gguf_w_u32(w, "general.alignment", al));
    T(dn_gguf_w_str(w, "general.architecture", "llama", 5));
    T(dn_gguf_w_u32(w, "k.u32", 4000000000u));
    T(dn_gguf_w_i32(w, "k.i32", -123456));
    T(dn_gguf_w_u64(w, "k.u64", 0xFEDCBA9876543210ull));
    T(dn_gguf_w_f32(w, "k.f32", 0.1f));
    T(dn_gguf_w_bool(w, "k.true", 7));
    T(dn_gguf_w_bool(w, "k.false", 0));
    T(dn_gguf_w_str(w, "k.empty", NULL, 0));
    T(dn_gguf_w_arr(w, "a.u8", DN_GGUF_U8, rt_u8, 3));
    T(dn_gguf_w_arr(w, "a.i8", DN_GGUF_I8, rt_i8, 3));
    T(dn_gguf_w_arr(w, "a.u16", DN_GGUF_U16, rt_u16, 3));
    T(dn_gguf_w_arr(w, "a.i16", DN_GGUF_I16, rt_i16, 3));
    T(dn_gguf_w_arr(w, "a.u32", DN_GGUF_U32, rt_u32, 2));
    T(dn_gguf_w_arr(w, "a.i32", DN_GGUF_I32, rt_i32, 4));
    T(dn_gguf_w_arr(w, "a.u64", DN_GGUF_U64, rt_u64, 2));
    T(dn_gguf_w_arr(w, "a.i64", DN_GGUF_I64, rt_i64, 2));
    T(dn_gguf_w_arr(w, "a.f32", DN_GGUF_F32, rt_f32, 3));
    T(dn_gguf_w_arr(w, "a.f64", DN_GGUF_F64, rt_f64, 2));
    T(dn_gguf_w_arr(w, "a.bool", DN_GGUF_BOOL, rt_bool, 4));
    T(dn_gguf_w_arr_str(w, "a.str", rt_strs, lens, 4));
    for (int k = 0; k < N_RT; k++)
        T(dn_gguf_w_tensor(w, rt_tensors[k].name, rt_tensors[k].type, rt_tensors[k].n_dims, rt_tensors[k].dims));
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    st = dn_gguf_w_begin(w, f);
    for (int k = 0; k < N_RT && !st; k++) {
        uint8_t tmp[4096];
        tensor_bytes(k, tmp, rt_tensors[k].nbytes);
        st = dn_gguf_w_data(w, f, tmp, rt_tensors[k].nbytes);
    }
    if (!st) st = dn_gguf_w_end(w, f);
    fclose(f);
#undef T
done:
    dn_gguf_writer_free(w);
    return st;
}

static void rt_check_read(const uint8_t *buf, size_t n, uint32_t al, int with_alignment_key)
{
    dn_gguf *g = open_ok(buf, n, "roundtrip.gguf");
    ck_assert_uint_eq(dn_gguf_version(g), 3);
    ck_assert_uint_eq(dn_gguf_alignment(g), with_alignment_key ? al : 32);
    ck_assert_int_eq(dn_gguf_n_kv(g), 20 + with_alignment_key);
    ck_assert_str_eq(dn_gguf_key(g, with_alignment_key), "general.architecture");   /* insertion order */
    ck_assert_str_eq(dn_gguf_key(g, dn_gguf_n_kv(g) - 1), "a.str");
    uint64_t u;
    int64_t i;
    double d;
    int bv;
    const char *s;
    uint64_t len;
    ck_assert(dn_gguf_get_str(g, "general.architecture", &s, &len) && len == 5 && !memcmp(s, "llama", 5));
    ck_assert(dn_gguf_get_u64(g, "k.u32", &u) && u == 4000000000u);
    ck_assert(dn_gguf_get_i64(g, "k.u32", &i) && i == 4000000000ll);
    ck_assert(dn_gguf_get_i64(g, "k.i32", &i) && i == -123456);
    ck_assert(!dn_gguf_get_u64(g, "k.i32", &u));                   /* negative does not fit */
    ck_assert(dn_gguf_get_u64(g, "k.u64", &u) && u == 0xFEDCBA9876543210ull);
    ck_assert(!dn_gguf_get_i64(g, "k.u64", &i));                   /* > INT64_MAX */
    ck_assert(dn_gguf_get_f64(g, "k.f32", &d) && d == (double)0.1f);
    ck_assert(!dn_gguf_get_i64(g, "k.f32", &i));                   /* not an integer */
    ck_assert(dn_gguf_get_bool(g, "k.true", &bv) && bv == 1);
    ck_assert(dn_gguf_get_bool(g, "k.false", &bv) && bv == 0);
    ck_assert(!dn_gguf_get_f64(g, "k.true", &d));
    ck_assert(dn_gguf_get_str(g, "k.empty", &s, &len) && len == 0);
    int32_t et;
    uint64_t cnt;
#define CHK_ARR(key, etype, arr) do { \
        ck_assert(dn_gguf_get_arr(g, key, &et, &cnt)); \
        ck_assert_int_eq(et, etype); ck_assert_uint_eq(cnt, sizeof arr / sizeof arr[0]); \
        for (uint64_t k_ = 0; k_ < cnt; k_++) { \
            ck_assert(dn_gguf_arr_f64(g, key, k_, &d)); ck_assert(d == (double)arr[k_]); } \
        ck_assert(!dn_gguf_arr_f64(g, key, cnt, &d)); } while (0)
    CHK_ARR("a.u8", DN_GGUF_U8, rt_u8);
    CHK_ARR("a.i8", DN_GGUF_I8, rt_i8);
    CHK_ARR("a.u16", DN_GGUF_U16, rt_u16);
    CHK_ARR("a.i16", DN_GGUF_I16, rt_i16);
    CHK_ARR("a.u32", DN_GGUF_U32, rt_u32);
    CHK_ARR("a.i32", DN_GGUF_I32, rt_i32);
    CHK_ARR("a.u64", DN_GGUF_U64, rt_u64);
    CHK_ARR("a.i64", DN_GGUF_I64, rt_i64);
    CHK_ARR("a.f32", DN_GGUF_F32, rt_f32);
    CHK_ARR("a.f64", DN_GGUF_F64, rt_f64);
#undef CHK_ARR
    for (uint64_t k = 0; k < 4; k++) {
        ck_assert(dn_gguf_arr_i64(g, "a.i64", k % 2, &i) && i == rt_i64[k % 2]);
        ck_assert(dn_gguf_arr_i64(g, "a.i32", k, &i) && i == rt_i32[k]);
    }
    ck_assert(!dn_gguf_arr_i64(g, "a.u64", 0, &i));               /* 2^64-1 does not fit */
    ck_assert(dn_gguf_arr_i64(g, "a.u64", 1, &i) && i == 1);
    ck_assert(dn_gguf_arr_i64(g, "a.f32", 1, &i) == 0);            /* -0.25 is no integer */
    ck_assert(dn_gguf_get_arr(g, "a.bool", &et, &cnt) && et == DN_GGUF_BOOL && cnt == 4);
    ck_assert(dn_gguf_get_arr(g, "a.str", &et, &cnt) && et == DN_GGUF_STRING && cnt == 4);
    for (uint64_t k = 0; k < 4; k++) {
        ck_assert(dn_gguf_arr_str(g, "a.str", k, &s, &len));
        ck_assert(len == strlen(rt_strs[k]) && !memcmp(s, rt_strs[k], len));
    }
    ck_assert_int_eq(dn_gguf_n_tensors(g), N_RT);
    ck_assert_uint_eq(dn_gguf_data_offset(g) % al, 0);
    for (int k = 0; k < N_RT; k++) {
        const dn_tensor_desc *t = dn_gguf_tensor(g, k);
        const rt_tensor *r = &rt_tensors[k];
        ck_assert_str_eq(t->name, r->name);
        ck_assert(dn_gguf_find_tensor(g, r->name) == t);
        ck_assert_int_eq(t->type, r->type);
        ck_assert_int_eq(t->n_dims, r->n_dims);
        for (int dd = 0; dd < r->n_dims; dd++) ck_assert_int_eq(t->dims[dd], r->dims[dd]);
        ck_assert_uint_eq(t->nbytes, r->nbytes);
        ck_assert_uint_eq(t->file_offset % al, 0);
        uint8_t tmp[4096];
        tensor_bytes(k, tmp, r->nbytes);
        ck_assert(!memcmp(t->data, tmp, r->nbytes));
    }
    ck_assert_uint_eq(n % al, 0);
    dn_gguf_close(g);
}

START_TEST(test_gguf_writer_roundtrip)
{
    static const uint32_t als[] = { 32, 64, 0, 128 };   /* 0 = default 32 */
    char *dir = tu_tmpdir("gguf");
    ck_assert_ptr_nonnull(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/rt.gguf", dir);
    for (int c = 0; c < 4; c++) {
        uint32_t al = als[c] ? als[c] : 32;
        int key = als[c] != 32 && als[c] != 0;   /* the caller adds general.alignment when not default */
        CHECK_OK(rt_write(dn_alloc_libc(), path, als[c], key));
        size_t n;
        uint8_t *buf = tu_read(path, &n);
        ck_assert_ptr_nonnull(buf);
        bb want = { 0 };
        rt_expected(&want, al, key);
        ck_assert_msg(n == want.n, "alignment %u: size %zu, want %zu", al, n, want.n);
        size_t k = 0;
        while (k < n && buf[k] == want.p[k]) k++;
        ck_assert_msg(k == n, "alignment %u: byte %zu is %02x, want %02x", al, k, buf[k], want.p[k]);
        rt_check_read(buf, n, al, key);
        free(want.p);
        free(buf);
    }
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Every scalar type through dn_gguf_w_scalar, read back by the parser:
 * the stored type and the value (edge values of each width). */
START_TEST(test_gguf_writer_scalars)
{
    static const struct { const char *key; int32_t type; int64_t i; double f; } kv[] = {
        { "s.u8", DN_GGUF_U8, 255, 0 }, { "s.i8", DN_GGUF_I8, -128, 0 },
        { "s.u16", DN_GGUF_U16, 65535, 0 }, { "s.i16", DN_GGUF_I16, -32768, 0 },
        { "s.u32", DN_GGUF_U32, 4294967295ll, 0 }, { "s.i32", DN_GGUF_I32, -2147483647ll - 1, 0 },
        { "s.u64", DN_GGUF_U64, (int64_t)0x7FFFFFFFFFFFFFFFull, 0 }, { "s.i64", DN_GGUF_I64, INT64_MIN, 0 },
        { "s.f32", DN_GGUF_F32, 0, 0.25 }, { "s.f64", DN_GGUF_F64, 0, 0.1 }, { "s.bool", DN_GGUF_BOOL, 1, 0 },
    };
    const int n = (int)(sizeof kv / sizeof kv[0]);
    char *dir = tu_tmpdir("gguf");
    ck_assert_ptr_nonnull(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/scalars.gguf", dir);
    dn_gguf_writer *w = NULL;
    CHECK_OK(dn_gguf_writer_create(dn_alloc_libc(), 32, &w));
    for (int k = 0; k < n; k++) CHECK_OK(dn_gguf_w_scalar(w, kv[k].key, kv[k].type, kv[k].i, kv[k].f));
    ck_assert_int_eq(dn_gguf_w_scalar(w, "s.str", DN_GGUF_STRING, 0, 0), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_w_scalar(w, "s.u8", DN_GGUF_U8, 1, 0), DANU_ERR_INVALID_ARG);   /* duplicate */
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    CHECK_OK(dn_gguf_w_begin(w, f));
    CHECK_OK(dn_gguf_w_end(w, f));
    ck_assert_int_eq(fclose(f), 0);
    dn_gguf_writer_free(w);
    size_t len;
    uint8_t *buf = tu_read(path, &len);
    ck_assert_ptr_nonnull(buf);
    dn_gguf *g = NULL;
    CHECK_OK(dn_gguf_open(dn_alloc_libc(), buf, len, path, &g));
    ck_assert_int_eq(dn_gguf_n_kv(g), n);
    for (int k = 0; k < n; k++) {
        int64_t at = dn_gguf_find(g, kv[k].key);
        ck_assert_int_ge(at, 0);
        ck_assert_int_eq(dn_gguf_kv_type(g, at), kv[k].type);
        uint64_t u; int64_t i; double d;
        switch (kv[k].type) {
        case DN_GGUF_U8: case DN_GGUF_U16: case DN_GGUF_U32: case DN_GGUF_U64:
            ck_assert(dn_gguf_get_u64(g, kv[k].key, &u));
            ck_assert_uint_eq(u, (uint64_t)kv[k].i);
            break;
        case DN_GGUF_F32: case DN_GGUF_F64:
            ck_assert(dn_gguf_get_f64(g, kv[k].key, &d));
            ck_assert(d == (kv[k].type == DN_GGUF_F32 ? (double)(float)kv[k].f : kv[k].f));
            break;
        case DN_GGUF_BOOL: { int b; ck_assert(dn_gguf_get_bool(g, kv[k].key, &b) && b == 1); break; }
        default:
            ck_assert(dn_gguf_get_i64(g, kv[k].key, &i));
            ck_assert_int_eq(i, kv[k].i);
        }
    }
    dn_gguf_close(g);
    free(buf);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_gguf_writer_errors)
{
    const dn_alloc *a = dn_alloc_libc();
    dn_gguf_writer *w = NULL;
    ck_assert_int_eq(dn_gguf_writer_create(a, 3, &w), DANU_ERR_INVALID_ARG);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(dn_gguf_writer_create(a, 48, &w), DANU_ERR_INVALID_ARG);
    CHECK_OK(dn_gguf_writer_create(a, 0, &w));
    CHECK_OK(dn_gguf_w_u32(w, "a", 1));
    ck_assert_int_eq(dn_gguf_w_u32(w, "a", 2), DANU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dn_lasterr(), "'a'"));
    ck_assert_int_eq(dn_gguf_w_str(w, "a", "x", 1), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_w_arr(w, "b", DN_GGUF_STRING, "x", 1), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_w_arr(w, "b", 13, "x", 1), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_w_u32(w, NULL, 1), DANU_ERR_INVALID_ARG);
    CHECK_OK(dn_gguf_w_u32(w, "b", 2));
    int64_t d2[2] = { 2, 64 }, dbad[2] = { 2, 33 }, dzero[2] = { 0, 32 }, d5[5] = { 1, 1, 1, 1, 32 };
    CHECK_OK(dn_gguf_w_tensor(w, "t", DANU_TYPE_Q8_0, 2, d2));
    ck_assert_int_eq(dn_gguf_w_tensor(w, "t", DANU_TYPE_F32, 2, d2), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_w_tensor(w, "u", DANU_TYPE_Q4_0, 2, dbad), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_w_tensor(w, "u", DANU_TYPE_F32, 2, dzero), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_w_tensor(w, "u", DANU_TYPE_F32, 5, d5), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_w_tensor(w, "u", 99, 2, d2), DANU_ERR_UNSUPPORTED);
    CHECK_OK(dn_gguf_w_tensor(w, "u", DANU_TYPE_F32, 1, d2 + 1));
    uint8_t data[256] = { 0 };
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(dn_gguf_w_data(w, f, data, 68), DANU_ERR_STATE);   /* before begin */
    CHECK_OK(dn_gguf_w_begin(w, f));
    ck_assert_int_eq(dn_gguf_w_u32(w, "c", 1), DANU_ERR_STATE);
    ck_assert_int_eq(dn_gguf_w_tensor(w, "v", DANU_TYPE_F32, 1, d2 + 1), DANU_ERR_STATE);
    ck_assert_int_eq(dn_gguf_w_data(w, f, data, 67), DANU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(dn_lasterr(), "'t'"));
    CHECK_OK(dn_gguf_w_data(w, f, data, 2 * 2 * 34));
    ck_assert_int_eq(dn_gguf_w_end(w, f), DANU_ERR_STATE);               /* 'u' missing */
    ck_assert_int_eq(dn_gguf_w_data(w, f, data, 64 * 4 + 1), DANU_ERR_INVALID_ARG);
    CHECK_OK(dn_gguf_w_data(w, f, data, 64 * 4));
    ck_assert_int_eq(dn_gguf_w_data(w, f, data, 4), DANU_ERR_STATE);     /* one too many */
    CHECK_OK(dn_gguf_w_end(w, f));
    /* the failed calls left the file consistent */
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = malloc((size_t)n);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    dn_gguf *g = open_ok(buf, (size_t)n, "errors.gguf");
    ck_assert_int_eq(dn_gguf_n_kv(g), 2);
    ck_assert_int_eq(dn_gguf_n_tensors(g), 2);
    uint64_t u;
    ck_assert(dn_gguf_get_u64(g, "a", &u) && u == 1);
    ck_assert(dn_gguf_get_u64(g, "b", &u) && u == 2);
    dn_gguf_close(g);
    free(buf);
    dn_gguf_writer_free(w);

    /* a stream that cannot be written -> IO */
    char *dir = tu_tmpdir("gguf");
    char path[4200];
    snprintf(path, sizeof path, "%s/ro", dir);
    f = fopen(path, "wb");
    fclose(f);
    f = fopen(path, "rb");
    CHECK_OK(dn_gguf_writer_create(a, 32, &w));
    CHECK_OK(dn_gguf_w_u32(w, "a", 1));
    ck_assert_int_eq(dn_gguf_w_begin(w, f), DANU_ERR_IO);
    fclose(f);
    dn_gguf_writer_free(w);
    dn_gguf_writer_free(NULL);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Corrupt inputs                                                      */
/* ------------------------------------------------------------------ */

static long n_variants;

/* ck_assert marks a point on every call (a pipe write in fork mode): the
 * hot loops check first and call Check only on failure. */

/* Open a variant: either success with every tensor inside the buffer and
 * consistent, or a FORMAT/UNSUPPORTED error with a message naming the file. */
static danu_status try_open(const uint8_t *buf, size_t n, const char *what)
{
    dn_gguf *g = NULL;
    dn_clearerr();
    danu_status st = dn_gguf_open(dn_alloc_libc(), buf, n, what, &g);
    n_variants++;
    if (st == DANU_OK) {
        CHECK(g != NULL, "no handle");
        for (int64_t i = 0; i < dn_gguf_n_tensors(g); i++) {
            const dn_tensor_desc *t = dn_gguf_tensor(g, i);
            CHECK(t->data >= buf && t->nbytes <= n && (size_t)(t->data - buf) <= n - t->nbytes, "%s: tensor out of bounds", t->name);
            CHECK(t->n_dims >= 1 && t->n_dims <= 4, "n_dims");
            uint64_t rows = t->n_elements / (uint64_t)t->dims[t->n_dims - 1];
            CHECK(t->nbytes == dn_type_row_bytes(t->type, (uint64_t)t->dims[t->n_dims - 1]) * rows, "nbytes");
            CHECK((t->file_offset - dn_gguf_data_offset(g)) % dn_gguf_alignment(g) == 0, "misaligned");
            CHECK(dn_gguf_find_tensor(g, t->name) == t, "find");
        }
        for (int64_t i = 0; i < dn_gguf_n_kv(g); i++) CHECK(dn_gguf_find(g, dn_gguf_key(g, i)) == i, "find key");
        dn_gguf_close(g);
    } else {
        CHECK(g == NULL, "handle on error");
        CHECK(st == DANU_ERR_FORMAT || st == DANU_ERR_UNSUPPORTED, "status %d: %s", st, dn_lasterr());
        CHECK(strstr(dn_lasterr(), what) != NULL, "message lacks the file name: %s", dn_lasterr());
        CHECK(strstr(dn_lasterr(), "offset") != NULL, "message lacks the offset: %s", dn_lasterr());
    }
    return st;
}

static size_t find_table_start(const uint8_t *buf, size_t n, const char *first_name)
{
    uint8_t pat[80];
    size_t len = strlen(first_name);
    for (int i = 0; i < 8; i++) pat[i] = (uint8_t)((uint64_t)len >> 8 * i);
    memcpy(pat + 8, first_name, len);
    const uint8_t *p = memmem(buf, n, pat, 8 + len);
    ck_assert_ptr_nonnull(p);
    return (size_t)(p - buf);
}

/* Truncate at every byte of the header region and at samples of the data;
 * flip every byte of the first 64 and of the tensor table. */
static void battery(const uint8_t *orig, size_t n, const char *what, int flip_all)
{
    dn_gguf *g = open_ok(orig, n, what);
    uint64_t data_off = dn_gguf_data_offset(g), max_end = 0;
    for (int64_t i = 0; i < dn_gguf_n_tensors(g); i++) {
        const dn_tensor_desc *t = dn_gguf_tensor(g, i);
        if (t->file_offset + t->nbytes > max_end) max_end = t->file_offset + t->nbytes;
    }
    size_t table = find_table_start(orig, n, dn_gguf_tensor(g, 0)->name);
    dn_gguf_close(g);
    ck_assert(table < data_off && data_off <= n);

    uint8_t *buf = malloc(n);
    memcpy(buf, orig, n);
    /* truncation: a fresh allocation of exactly the cut size so that any
     * read past it is caught by ASan/valgrind */
    for (size_t cut = 0; cut < data_off; cut++) {
        uint8_t *c = malloc(cut ? cut : 1);
        memcpy(c, orig, cut);
        danu_status st = try_open(c, cut, what);
        CHECK(st == DANU_ERR_FORMAT, "%s cut at %zu: status %d", what, cut, st);
        free(c);
    }
    for (int k = 0; k <= 64; k++) {
        size_t cut = data_off + (n - data_off) * (size_t)k / 64;
        if (k == 64) cut = n - 1;
        uint8_t *c = malloc(cut);
        memcpy(c, orig, cut);
        danu_status st = try_open(c, cut, what);
        CHECK(st == (cut < max_end ? DANU_ERR_FORMAT : DANU_OK), "data cut at %zu: %d", cut, st);
        free(c);
    }
    static const uint8_t masks[] = { 0xff, 0x01, 0x80, 0x10 };
    size_t flip_end = flip_all ? data_off : 64;
    for (size_t pos = 0; pos < data_off; pos++) {
        if (pos >= flip_end && pos < table) pos = table;
        for (size_t m = 0; m < sizeof masks; m++) {
            buf[pos] ^= masks[m];
            try_open(buf, n, what);
            buf[pos] ^= masks[m];
        }
    }
    free(buf);
}

START_TEST(test_gguf_corrupt_llamacpp)
{
    size_t n;
    uint8_t *buf = tu_read(tu_data("gguf-llamacpp/tiny-q-Q4_0.gguf"), &n);
    ck_assert_ptr_nonnull(buf);
    long before = n_variants;
    battery(buf, n, "tiny-q-Q4_0.gguf", 0);
    fprintf(stderr, "corrupt variants of tiny-q-Q4_0.gguf: %ld\n", n_variants - before);
    free(buf);
}
END_TEST

START_TEST(test_gguf_corrupt_written)
{
    char *dir = tu_tmpdir("gguf");
    char path[4200];
    snprintf(path, sizeof path, "%s/rt.gguf", dir);
    CHECK_OK(rt_write(dn_alloc_libc(), path, 64, 1));
    size_t n;
    uint8_t *buf = tu_read(path, &n);
    ck_assert_ptr_nonnull(buf);
    long before = n_variants;
    battery(buf, n, "rt.gguf", 1);
    fprintf(stderr, "corrupt variants of the written file: %ld\n", n_variants - before);
    free(buf);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A small file built here, with the offsets of every field to patch. */
typedef struct small {
    bb b;
    size_t version, n_tensors, n_kv, key0_len, k0_type, k0_strlen, k2_name, align_val;
    size_t arr_type, arr_count;
    size_t a_ndims, a_ne0, a_ne1, a_type, a_off, b_name, b_ne0, b_type, b_off;
} small;

static void build_small(small *s)
{
    memset(s, 0, sizeof *s);
    bb *b = &s->b;
    bb_put(b, "GGUF", 4);
    s->version = b->n; bb_u32(b, 3);
    s->n_tensors = b->n; bb_u64(b, 2);
    s->n_kv = b->n; bb_u64(b, 3);
    s->key0_len = b->n; bb_str(b, "test.k0");
    s->k0_type = b->n; bb_u32(b, DN_GGUF_STRING);
    s->k0_strlen = b->n; bb_str(b, "llama");
    bb_str(b, "general.alignment"); bb_u32(b, DN_GGUF_U32);
    s->align_val = b->n; bb_u32(b, 32);
    s->k2_name = b->n + 8; bb_str(b, "test.k2"); bb_u32(b, DN_GGUF_ARRAY);
    s->arr_type = b->n; bb_u32(b, DN_GGUF_U64);
    s->arr_count = b->n; bb_u64(b, 3); bb_u64(b, 1); bb_u64(b, 2); bb_u64(b, 3);
    bb_str(b, "a");
    s->a_ndims = b->n; bb_u32(b, 2);
    s->a_ne0 = b->n; bb_u64(b, 32);
    s->a_ne1 = b->n; bb_u64(b, 2);
    s->a_type = b->n; bb_u32(b, DANU_TYPE_F32);
    s->a_off = b->n; bb_u64(b, 0);
    s->b_name = b->n + 8; bb_str(b, "b");
    bb_u32(b, 1);
    s->b_ne0 = b->n; bb_u64(b, 64);
    s->b_type = b->n; bb_u32(b, DANU_TYPE_Q4_0);
    s->b_off = b->n; bb_u64(b, 256);
    bb_pad(b, 32);
    for (int i = 0; i < 256 + 36; i++) bb_u8(b, (uint8_t)i);
    bb_pad(b, 32);
}

typedef struct targeted {
    const char *label;
    danu_status want;
    const char *in_msg;     /* must appear in the message (NULL: none) */
} targeted;

/* Patch the small file for case k; returns 0 past the last case. */
static int patch_small(int k, small *s, targeted *t)
{
    build_small(s);
    bb *b = &s->b;
    switch (k) {
    case 0: *t = (targeted){ "intact", DANU_OK, NULL }; return 1;
    case 1: b->p[0] = 'X'; *t = (targeted){ "bad magic", DANU_ERR_FORMAT, "magic" }; return 1;
    case 2: bb_set32(b, s->version, 1); *t = (targeted){ "version 1", DANU_ERR_UNSUPPORTED, "version 1" }; return 1;
    case 3: bb_set32(b, s->version, 99); *t = (targeted){ "version 99", DANU_ERR_UNSUPPORTED, "version 99" }; return 1;
    case 4: bb_set32(b, s->version, 2); *t = (targeted){ "version 2", DANU_OK, NULL }; return 1;
    case 5: bb_set32(b, s->version, 0x03000000); *t = (targeted){ "big-endian", DANU_ERR_UNSUPPORTED, "big-endian" }; return 1;
    case 6: bb_set64(b, s->n_kv, 1ull << 40); *t = (targeted){ "n_kv huge", DANU_ERR_FORMAT, "keys" }; return 1;
    case 7: bb_set64(b, s->n_kv, UINT64_MAX); *t = (targeted){ "n_kv max", DANU_ERR_FORMAT, "keys" }; return 1;
    case 8: bb_set64(b, s->n_tensors, 1ull << 59); *t = (targeted){ "n_tensors huge", DANU_ERR_FORMAT, "tensors" }; return 1;
    case 9: bb_set64(b, s->n_kv, 4); *t = (targeted){ "n_kv one too many", DANU_ERR_FORMAT, NULL }; return 1;
    case 10: bb_set64(b, s->key0_len, 1ull << 63); *t = (targeted){ "key length huge", DANU_ERR_FORMAT, "key length" }; return 1;
    case 11: bb_set64(b, s->key0_len, 70000); *t = (targeted){ "key length > 64 KiB", DANU_ERR_FORMAT, "limit" }; return 1;
    case 12: bb_set64(b, s->k0_strlen, 1ull << 40); *t = (targeted){ "string length huge", DANU_ERR_FORMAT, "'test.k0'" }; return 1;
    case 13: bb_set64(b, s->k0_strlen, UINT64_MAX); *t = (targeted){ "string length max", DANU_ERR_FORMAT, "'test.k0'" }; return 1;
    case 14: bb_set64(b, s->arr_count, (1ull << 61) + 1); *t = (targeted){ "array count overflow", DANU_ERR_FORMAT, "'test.k2'" }; return 1;
    case 15: bb_set64(b, s->arr_count, 4); *t = (targeted){ "array count one too many", DANU_ERR_FORMAT, "tensor name" }; return 1;
    case 16: bb_set32(b, s->arr_type, DN_GGUF_ARRAY); *t = (targeted){ "nested array", DANU_ERR_UNSUPPORTED, "nested" }; return 1;
    case 17: bb_set32(b, s->arr_type, 13); *t = (targeted){ "array elem type 13", DANU_ERR_FORMAT, "type 13" }; return 1;
    case 18: bb_set32(b, s->arr_type, DN_GGUF_STRING); bb_set64(b, s->arr_count, 1ull << 62);
        *t = (targeted){ "string array count huge", DANU_ERR_FORMAT, "'test.k2'" }; return 1;
    case 19: bb_set32(b, s->k0_type, 13); *t = (targeted){ "value type 13", DANU_ERR_FORMAT, "'test.k0'" }; return 1;
    case 20: bb_set32(b, s->k0_type, 0x80000000u); *t = (targeted){ "value type 2^31", DANU_ERR_FORMAT, "'test.k0'" }; return 1;
    case 21: b->p[s->k2_name + 6] = '0'; *t = (targeted){ "duplicate key", DANU_ERR_FORMAT, "duplicate key" }; return 1;
    case 22: b->p[s->k2_name + 2] = 0; *t = (targeted){ "NUL in key", DANU_ERR_FORMAT, "NUL" }; return 1;
    case 23: bb_set32(b, s->align_val, 0); *t = (targeted){ "alignment 0", DANU_ERR_FORMAT, "alignment" }; return 1;
    case 24: bb_set32(b, s->align_val, 3); *t = (targeted){ "alignment 3", DANU_ERR_FORMAT, "alignment" }; return 1;
    case 25: bb_set32(b, s->align_val, 16); *t = (targeted){ "alignment 16", DANU_OK, NULL }; return 1;
    case 26: bb_set32(b, s->align_val - 4, DN_GGUF_I32); *t = (targeted){ "alignment as i32", DANU_ERR_FORMAT, "alignment" }; return 1;
    case 27: bb_set32(b, s->a_ndims, 5); *t = (targeted){ "n_dims 5", DANU_ERR_FORMAT, "'a'" }; return 1;
    case 28: bb_set32(b, s->a_ndims, 0); *t = (targeted){ "n_dims 0", DANU_ERR_FORMAT, "n_dims" }; return 1;
    case 29: bb_set64(b, s->a_ne0, 1ull << 32); bb_set64(b, s->a_ne1, 1ull << 32);
        *t = (targeted){ "n_elements overflow", DANU_ERR_FORMAT, "overflow" }; return 1;
    case 30: bb_set64(b, s->a_ne0, 1ull << 62); bb_set64(b, s->a_ne1, 2);
        *t = (targeted){ "n_elements > INT64_MAX", DANU_ERR_FORMAT, "'a'" }; return 1;
    case 31: bb_set64(b, s->a_ne0, 1ull << 62); bb_set64(b, s->a_ne1, 1);
        *t = (targeted){ "nbytes overflow", DANU_ERR_FORMAT, "byte size overflows" }; return 1;
    case 32: bb_set64(b, s->a_ne1, 0); *t = (targeted){ "ne 0", DANU_ERR_FORMAT, "ne[1]" }; return 1;
    case 33: bb_set64(b, s->b_ne0, 33); *t = (targeted){ "ne0 not block multiple", DANU_ERR_FORMAT, "block" }; return 1;
    case 34: bb_set64(b, s->b_off, 257); *t = (targeted){ "offset misaligned", DANU_ERR_FORMAT, "alignment" }; return 1;
    case 35: bb_set64(b, s->b_off, 1 << 20); *t = (targeted){ "offset beyond file", DANU_ERR_FORMAT, "'b'" }; return 1;
    case 36: bb_set64(b, s->b_off, UINT64_MAX - 31); *t = (targeted){ "offset overflow", DANU_ERR_FORMAT, "'b'" }; return 1;
    case 37: bb_set64(b, s->b_off, 288); *t = (targeted){ "tensor ends past file", DANU_ERR_FORMAT, "'b'" }; return 1;
    case 38: bb_set32(b, s->a_type, 99); *t = (targeted){ "tensor type 99", DANU_ERR_UNSUPPORTED, "type 99" }; return 1;
    case 39: bb_set32(b, s->a_type, 4); *t = (targeted){ "tensor type 4 (removed q4_2)", DANU_ERR_UNSUPPORTED, "'a'" }; return 1;
    case 40: b->p[s->b_name] = 'a'; *t = (targeted){ "duplicate tensor", DANU_ERR_FORMAT, "duplicate tensor" }; return 1;
    case 41: b->p[s->b_name] = 0; *t = (targeted){ "NUL in tensor name", DANU_ERR_FORMAT, "NUL" }; return 1;
    case 42: bb_set64(b, s->n_tensors, 0); *t = (targeted){ "no tensors", DANU_OK, NULL }; return 1;
    case 43: bb_set64(b, s->n_tensors, 3); *t = (targeted){ "n_tensors one too many", DANU_ERR_FORMAT, NULL }; return 1;
    case 44: b->n = 23; *t = (targeted){ "short header", DANU_ERR_FORMAT, "header" }; return 1;
    default: free(b->p); return 0;
    }
}

START_TEST(test_gguf_corrupt_targeted)
{
    small s;
    targeted t;
    int k;
    for (k = 0; patch_small(k, &s, &t); k++) {
        danu_status st = try_open(s.b.p, s.b.n, "small.gguf");
        ck_assert_msg(st == t.want, "%s: status %d, want %d (%s)", t.label, st, t.want, dn_lasterr());
        if (t.in_msg)
            ck_assert_msg(strstr(dn_lasterr(), t.in_msg) != NULL, "%s: message '%s' lacks '%s'", t.label, dn_lasterr(), t.in_msg);
        if (st == DANU_OK) {
            dn_gguf *g = open_ok(s.b.p, s.b.n, "small.gguf");
            ck_assert_uint_eq(dn_gguf_data_offset(g) % dn_gguf_alignment(g), 0);
            if (dn_gguf_n_tensors(g) == 2) {
                const dn_tensor_desc *tb = dn_gguf_find_tensor(g, "b");
                ck_assert_uint_eq(tb->nbytes, 36);
                ck_assert_uint_eq(tb->data[0], 0);                          /* data starts with bytes 0,1,.. */
                ck_assert_uint_eq(tb->data[-256], 0);
            }
            dn_gguf_close(g);
        }
        free(s.b.p);
    }
    ck_assert_int_eq(k, 45);
    fprintf(stderr, "targeted corrupt cases: %d\n", k);
    /* NULL arguments */
    dn_gguf *g = NULL;
    ck_assert_int_eq(dn_gguf_open(dn_alloc_libc(), NULL, 10, "x", &g), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_open(NULL, (const uint8_t *)"GGUF", 4, "x", &g), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_gguf_open(dn_alloc_libc(), NULL, 0, "x", &g), DANU_ERR_FORMAT);
    dn_gguf_close(NULL);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Out of memory                                                       */
/* ------------------------------------------------------------------ */

typedef struct fail_alloc { long count, fail_at, live; } fail_alloc;
static void *fa_malloc(void *u, size_t n)
{
    fail_alloc *f = u;
    if (f->count++ == f->fail_at) return NULL;
    void *p = malloc(n);
    if (p) f->live++;
    return p;
}
static void *fa_realloc(void *u, void *p, size_t n)
{
    fail_alloc *f = u;
    if (f->count++ == f->fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) f->live++;
    return q;
}
static void fa_free(void *u, void *p) { fail_alloc *f = u; if (p) { f->live--; free(p); } }

START_TEST(test_gguf_oom)
{
    size_t n;
    uint8_t *buf = tu_read(tu_data("gguf-llamacpp/tiny-q-Q4_0.gguf"), &n);
    ck_assert_ptr_nonnull(buf);
    fail_alloc fa;
    dn_alloc a = { fa_malloc, fa_realloc, fa_free, &fa };
    long k;
    for (k = 0;; k++) {
        fa = (fail_alloc){ 0, k, 0 };
        dn_gguf *g = NULL;
        danu_status st = dn_gguf_open(&a, buf, n, "oom.gguf", &g);
        if (st == DANU_OK) { dn_gguf_close(g); ck_assert_int_eq(fa.live, 0); break; }
        ck_assert_int_eq(st, DANU_ERR_NOMEM);
        ck_assert_int_eq(fa.live, 0);
    }
    ck_assert_int_gt(k, 40);   /* 27 keys + 21 names + tables were each refused once */
    free(buf);

    char *dir = tu_tmpdir("gguf");
    char path[4200];
    snprintf(path, sizeof path, "%s/oom.gguf", dir);
    for (k = 0;; k++) {
        fa = (fail_alloc){ 0, k, 0 };
        danu_status st = rt_write(&a, path, 32, 0);
        ck_assert_int_eq(fa.live, 0);
        if (st == DANU_OK) break;
        ck_assert_int_eq(st, DANU_ERR_NOMEM);
    }
    ck_assert_int_gt(k, 5);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

static Suite *gguf_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("read");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_gguf_llamacpp_metadata, 0, N_QFILES);
    tcase_add_test(tc, test_gguf_synth_oracle);
    tcase_add_test(tc, test_gguf_values_bf16);
    tcase_add_test(tc, test_gguf_values_f16);
    suite_add_tcase(s, tc);
    TCase *tw = tcase_create("write");
    tcase_set_timeout(tw, 120);
    tcase_add_test(tw, test_gguf_writer_roundtrip);
    tcase_add_test(tw, test_gguf_writer_errors);
    tcase_add_test(tw, test_gguf_writer_scalars);
    suite_add_tcase(s, tw);
    TCase *tb = tcase_create("corrupt");
    tcase_set_timeout(tb, 300);
    tcase_add_test(tb, test_gguf_corrupt_targeted);
    tcase_add_test(tb, test_gguf_corrupt_llamacpp);
    tcase_add_test(tb, test_gguf_corrupt_written);
    tcase_add_test(tb, test_gguf_oom);
    suite_add_tcase(s, tb);
    return s;
}

int main(void)
{
    int failed = tu_run(gguf_suite());
    return failed ? 1 : 0;
}
