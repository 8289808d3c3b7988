/* test_quantize.c - danu_quantize against llama.cpp's own converter +
 * llama-quantize output (tests/data/gguf-llamacpp, tiny-q seed 17): every
 * tensor's type and blocks byte for byte, every metadata key, the tensor
 * order and offsets; the quantized files through our loader against the
 * transformers golden and llama.cpp's logits; requantizing GGUFs (ours and
 * llama.cpp's); the recipe's fallbacks and the tied-embedding rule on other
 * shapes; cancellation, existing outputs and bad arguments. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "danu.h"
#include "testutil.h"
#include "gguf_testutil.h"
#include "common/alloc.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/os.h"
#include "format/gguf.h"
#include "model/gguf_model.h"
#include "quant/quant.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static char *tmp;          /* per-run directory; the HF checkpoints live in it */
static char hf_q[512];     /* tiny-q seed 17, HF bf16, named like llama.cpp's source directory */
static char hf_b[512];     /* tiny-b seed 11 (tied embeddings) */
static char hf_a[512];     /* tiny-a seed 7 (hidden 160, ffn 432: rows that do not fill 256-blocks) */

/* ---- helpers ---- */

static int exists(const char *p) { struct stat st; return lstat(p, &st) == 0; }

static danu_options *opts(int threads)
{
    danu_options *o = NULL;
    ck_assert_int_eq(danu_options_create(NULL, &o), DANU_OK);
    if (threads) ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_THREADS, threads), DANU_OK);
    return o;
}

/* tmp/NAME, made by quantizing `in` to `type` unless it already exists. */
static const char *quantized(const char *in, const char *name, const char *type, int threads)
{
    static char paths[8][600];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", tmp, name);
    if (!exists(p)) {
        danu_options *o = opts(threads);
        danu_status s = danu_quantize(in, p, type, o);
        danu_options_free(o);
        ck_assert_msg(s == DANU_OK, "quantize %s -> %s (%s): %s: %s", in, name, type, danu_strerror(s),
                      danu_last_error());
    }
    return p;
}


/* Keys of ours that llama.cpp's files do not have (expected differences):
 * general.alignment (we always state it), the sliding window (llama.cpp's
 * converter never writes one) and the chat template that synth's
 * tokenizer_config.json carries (the directory llama.cpp converted had none). */
static const char *const our_extra_keys[] = { "general.alignment", "llama.attention.sliding_window",
                                              "tokenizer.chat_template" };

static int is_extra(const char *key)
{
    for (int i = 0; i < N(our_extra_keys); i++)
        if (!strcmp(key, our_extra_keys[i])) return 1;
    return 0;
}

/* Metadata: every key of llama.cpp's file in ours, same type and value, in
 * the same order; ours adds exactly our_extra_keys (n_extra of them). */
static void check_metadata(const dn_gguf *m, const dn_gguf *r, int n_extra, const char *tag)
{
    int64_t k = 0;
    for (int64_t i = 0; i < dn_gguf_n_kv(m); i++) {
        const char *key = dn_gguf_key(m, i);
        if (is_extra(key)) continue;
        ck_assert_msg(k < dn_gguf_n_kv(r), "%s: extra key %s", tag, key);
        ck_assert_msg(!strcmp(key, dn_gguf_key(r, k)), "%s: key %lld is %s, llama.cpp has %s", tag, (long long)k, key,
                      dn_gguf_key(r, k));
        ck_assert_msg(same_kv(m, r, key), "%s: metadata %s differs from llama.cpp's", tag, key);
        k++;
    }
    ck_assert_int_eq(k, dn_gguf_n_kv(r));
    ck_assert_int_eq(dn_gguf_n_kv(m), dn_gguf_n_kv(r) + n_extra);
}

/* Dequantized block `b` of a tensor into out (block_size floats). */
static void deq_block(const dn_tensor_desc *t, uint64_t b, float *out)
{
    const dn_type_info *ti = dn_type_get(t->type);
    ck_assert_int_eq(dn_dequantize_row(t->type, t->data + b * ti->type_size, out, ti->block_size), 0);
}

/* Tensors of ours vs llama.cpp's: same order, names, types, shapes and
 * offsets; blocks byte for byte. A differing block must be an exact rounding
 * tie: both reconstruct the source (src: our bf16 file, same layout) with the
 * same squared error. Returns the number of tie blocks. */
static uint64_t check_tensors(const dn_gguf *m, const dn_gguf *r, const dn_gguf *src, const char *tag, uint64_t *n_blocks)
{
    ck_assert_int_eq(dn_gguf_n_tensors(m), dn_gguf_n_tensors(r));
    uint64_t ties = 0;
    *n_blocks = 0;
    float a[256], b[256], x[256];
    for (int64_t i = 0; i < dn_gguf_n_tensors(r); i++) {
        const dn_tensor_desc *tm = dn_gguf_tensor(m, i), *tr = dn_gguf_tensor(r, i);
        ck_assert_msg(!strcmp(tm->name, tr->name), "%s: tensor %lld is %s, llama.cpp has %s", tag, (long long)i,
                      tm->name, tr->name);
        ck_assert_msg(tm->type == tr->type, "%s: %s is %s, llama.cpp chose %s", tag, tm->name,
                      dn_type_get(tm->type)->name, dn_type_get(tr->type)->name);
        ck_assert_int_eq(tm->n_dims, tr->n_dims);
        for (int d = 0; d < tm->n_dims; d++) ck_assert_int_eq(tm->dims[d], tr->dims[d]);
        ck_assert_uint_eq(tm->nbytes, tr->nbytes);
        ck_assert_uint_eq(tm->file_offset - dn_gguf_data_offset(m), tr->file_offset - dn_gguf_data_offset(r));
        const dn_type_info *ti = dn_type_get(tm->type);
        for (uint64_t o = 0, blk = 0; o < tm->nbytes; o += ti->type_size, blk++) {
            (*n_blocks)++;
            if (!memcmp(tm->data + o, tr->data + o, ti->type_size)) continue;
            const dn_tensor_desc *ts = dn_gguf_find_tensor(src, tm->name);
            ck_assert_ptr_nonnull(ts);
            const dn_type_info *si = dn_type_get(ts->type);
            ck_assert_uint_eq(si->block_size, 1);
            deq_block(tm, blk, a);
            deq_block(tr, blk, b);
            ck_assert_int_eq(dn_dequantize_row(ts->type, ts->data + blk * ti->block_size * si->type_size, x,
                                               ti->block_size), 0);
            double ea = 0, eb = 0;
            for (uint32_t e = 0; e < ti->block_size; e++) {
                ea += (double)(a[e] - x[e]) * (a[e] - x[e]);
                eb += (double)(b[e] - x[e]) * (b[e] - x[e]);
            }
            ck_assert_msg(fabs(ea - eb) <= 1e-9 * (ea + eb) + 1e-30, "%s: %s block %llu differs and is not a tie "
                          "(squared error %.9g vs llama.cpp %.9g)", tag, tm->name, (unsigned long long)blk, ea, eb);
            ties++;
        }
    }
    return ties;
}

static const struct { const char *type, *ref; uint32_t ftype; } qfiles[] = {
    { "q8_0", "Q8_0", 7 },     { "q4_0", "Q4_0", 2 },     { "q4_1", "Q4_1", 3 },   { "q5_0", "Q5_0", 8 },
    { "q5_1", "Q5_1", 9 },     { "q6_k", "Q6_K", 18 },    { "q4_k", "Q4_K_S", 14 }, { "q4_k_m", "Q4_K_M", 15 },
    { "q5_k_m", "Q5_K_M", 17 }, { "f16", "F16", 1 },       { "bf16", "bf16", 32 },
};

static const char *ref_path(const char *ref)
{
    static char rel[4][96];
    static int slot;
    char *p = rel[slot++ % 4];
    snprintf(p, sizeof rel[0], "gguf-llamacpp/tiny-q-%s.gguf", ref);
    return tu_data(p);
}

static const char *ours_q(int i)
{
    char name[64];
    snprintf(name, sizeof name, "tiny-q-%s.gguf", qfiles[i].type);
    return quantized(hf_q, name, qfiles[i].type, 2);
}

/* ---- llama.cpp's files ---- */

START_TEST(test_quantize_matches_llamacpp)
{
    const char *ours = ours_q(_i), *srcp = ours_q(N(qfiles) - 1);   /* the bf16 file: source values */
    gfile m, r, s;
    gopen(ours, &m);
    gopen(ref_path(qfiles[_i].ref), &r);
    gopen(srcp, &s);
    ck_assert_uint_eq(dn_gguf_version(m.g), 3);
    ck_assert_uint_eq(dn_gguf_alignment(m.g), 32);
    uint64_t v = 0;
    ck_assert(dn_gguf_get_u64(m.g, "general.file_type", &v) && v == qfiles[_i].ftype);
    ck_assert(dn_gguf_get_u64(m.g, "general.alignment", &v) && v == 32);
    ck_assert(dn_gguf_get_u64(m.g, "llama.attention.sliding_window", &v) && v == 16);
    ck_assert_int_ge(dn_gguf_find(m.g, "tokenizer.chat_template"), 0);
    check_metadata(m.g, r.g, 3, qfiles[_i].ref);
    uint64_t blocks, ties = check_tensors(m.g, r.g, s.g, qfiles[_i].ref, &blocks);
    printf("  quantize tiny-q %-6s vs llama.cpp %-6s: %llu blocks, %llu rounding ties, the rest identical\n",
           qfiles[_i].type, qfiles[_i].ref, (unsigned long long)blocks, (unsigned long long)ties);
    ck_assert_msg(ties * 1000 <= blocks, "%llu ties in %llu blocks", (unsigned long long)ties,
                  (unsigned long long)blocks);
    /* the data section is all that follows the header, so the files are
     * identical from there on */
    ck_assert_uint_eq(m.map.size - dn_gguf_data_offset(m.g), r.map.size - dn_gguf_data_offset(r.g));
    if (ties == 0)
        ck_assert(!memcmp(m.map.data + dn_gguf_data_offset(m.g), r.map.data + dn_gguf_data_offset(r.g),
                          (size_t)(m.map.size - dn_gguf_data_offset(m.g))));
    gclose(&m);
    gclose(&r);
    gclose(&s);
}
END_TEST

/* KL(p || q) of softmaxes, in double. */
static double kl(const float *p_logits, const float *q_logits, int n)
{
    double mp = -INFINITY, mq = -INFINITY, zp = 0, zq = 0, k = 0;
    for (int i = 0; i < n; i++) { if (p_logits[i] > mp) mp = p_logits[i]; if (q_logits[i] > mq) mq = q_logits[i]; }
    for (int i = 0; i < n; i++) { zp += exp(p_logits[i] - mp); zq += exp(q_logits[i] - mq); }
    for (int i = 0; i < n; i++) {
        double lp = p_logits[i] - mp - log(zp), lq = q_logits[i] - mq - log(zq);
        k += exp(lp) * (lp - lq);
    }
    return k;
}

/* Round trip: our file through danu_model_load; KL to the transformers
 * golden on the first 16 positions of tiny-q.rand100 at most llama.cpp's own
 * (from its logits on its file) + 10 %. */
START_TEST(test_quantize_roundtrip_kl)
{
    tu_golden g;
    tu_golden_need("tiny-q.rand100", &g);
    size_t ng;
    float *gold = tu_need_f32(tu_data("golden/tiny-q.rand100.all.f32"), &ng);
    ck_assert_ptr_nonnull(gold);
    const int V = 1024, P = 16;
    float *ours = malloc((size_t)P * V * sizeof(float));
    for (int t = 0; t < N(qfiles); t++) {
        danu_options *o = opts(2);
        danu_model *mdl = NULL;
        CHECK_OK(danu_model_load(ours_q(t), o, &mdl));
        int64_t w = 0;
        ck_assert_int_eq(danu_model_get_int(mdl, DANU_INFO_SLIDING_WINDOW, &w), DANU_OK);
        ck_assert_int_eq(w, 16);
        danu_context *c;
        ck_assert_int_eq(danu_context_create(mdl, o, &c), DANU_OK);
        ck_assert_int_eq(danu_context_eval(c, g.prompt, P, ours), DANU_OK);
        char rel[128];
        snprintf(rel, sizeof rel, "gguf-llamacpp/tiny-q-%s.llamacpp-logits.f32", qfiles[t].ref);
        size_t nl;
        float *theirs = tu_need_f32(tu_data(rel), &nl);
        ck_assert_uint_eq(nl, (size_t)P * V);
        double kl_ours = 0, kl_theirs = 0;
        for (int p = 0; p < P; p++) {
            kl_ours += kl(gold + (size_t)p * V, ours + (size_t)p * V, V) / P;
            kl_theirs += kl(gold + (size_t)p * V, theirs + (size_t)p * V, V) / P;
        }
        printf("  quantize tiny-q %-6s loaded: KL to transformers %.6f, llama.cpp on its file %.6f\n", qfiles[t].type,
               kl_ours, kl_theirs);
        ck_assert_msg(kl_ours <= kl_theirs * 1.1 + 2e-6, "%s: KL %.6g > llama.cpp %.6g + 10%%", qfiles[t].type, kl_ours,
                      kl_theirs);
        free(theirs);
        danu_context_free(c);
        danu_model_free(mdl);
        danu_options_free(o);
    }
    free(ours);
    free(gold);
}
END_TEST

static uint8_t *read_all(const char *p, size_t *n)
{
    uint8_t *b = tu_read(p, n);
    ck_assert_msg(b != NULL, "cannot read %s", p);
    return b;
}

/* GGUF input: our bf16 file requantized to q8_0 is the very file HF -> q8_0
 * gives (q/k rows are not permuted twice, keys end up in the same order). */
START_TEST(test_quantize_requantize_gguf)
{
    const char *bf16 = ours_q(N(qfiles) - 1), *direct = ours_q(0);
    const char *again = quantized(bf16, "requant-bf16-q8_0.gguf", "q8_0", 3);
    size_t na, nb;
    uint8_t *a = read_all(direct, &na), *b = read_all(again, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(!memcmp(a, b, na), "GGUF bf16 -> q8_0 differs from HF -> q8_0");
    free(a);
    free(b);

    /* llama.cpp's own bf16 file -> q4_k_m: llama.cpp's Q4_K_M tensors, its
     * keys plus general.alignment (inserted after general.name) */
    const char *q = quantized(ref_path("bf16"), "requant-llamacpp-bf16-q4_k_m.gguf", "q4_k_m", 2);
    gfile m, r, s;
    gopen(q, &m);
    gopen(ref_path("Q4_K_M"), &r);
    gopen(ref_path("bf16"), &s);
    ck_assert_int_lt(dn_gguf_find(m.g, "llama.attention.sliding_window"), 0);   /* none in the source */
    ck_assert_int_eq(dn_gguf_find(m.g, "general.alignment"), dn_gguf_find(m.g, "general.name") + 1);
    check_metadata(m.g, r.g, 1, "llama.cpp bf16 -> q4_k_m");
    uint64_t blocks, ties = check_tensors(m.g, r.g, s.g, "llama.cpp bf16 -> q4_k_m", &blocks);
    ck_assert_uint_eq(ties, 0);
    gclose(&m);
    gclose(&r);
    gclose(&s);

    /* a quantized source: llama.cpp's Q8_0 -> q8_0 copies every tensor as it is */
    q = quantized(ref_path("Q8_0"), "requant-llamacpp-q8_0-q8_0.gguf", "q8_0", 2);
    gopen(q, &m);
    gopen(ref_path("Q8_0"), &r);
    check_metadata(m.g, r.g, 1, "llama.cpp q8_0 -> q8_0");
    ck_assert_uint_eq(check_tensors(m.g, r.g, r.g, "llama.cpp q8_0 -> q8_0", &blocks), 0);
    gclose(&m);
    gclose(&r);

    /* ... and Q8_0 -> q4_0 dequantizes first: each q4_0 block is the q4_0 of
     * the dequantized q8_0 block (output.weight: q6_K of it) */
    q = quantized(ref_path("Q8_0"), "requant-llamacpp-q8_0-q4_0.gguf", "q4_0", 2);
    gopen(q, &m);
    gopen(ref_path("Q8_0"), &s);
    ck_assert_int_eq(dn_gguf_n_tensors(m.g), dn_gguf_n_tensors(s.g));
    for (int64_t i = 0; i < dn_gguf_n_tensors(m.g); i++) {
        const dn_tensor_desc *t = dn_gguf_tensor(m.g, i), *src = dn_gguf_find_tensor(s.g, t->name);
        ck_assert_ptr_nonnull(src);
        int32_t want = src->n_dims == 1 ? DANU_TYPE_F32 : !strcmp(t->name, "output.weight") ? DANU_TYPE_Q6_K
                                                                                            : DANU_TYPE_Q4_0;
        ck_assert_msg(t->type == want, "%s: type %d", t->name, t->type);
        int64_t cols = t->dims[t->n_dims - 1], rows = (int64_t)(t->n_elements / (uint64_t)cols);
        uint64_t srb = dn_type_row_bytes(src->type, (uint64_t)cols), orb = dn_type_row_bytes(t->type, (uint64_t)cols);
        float *f = malloc((size_t)cols * sizeof *f);
        uint8_t *row = malloc(orb);
        for (int64_t y = 0; y < rows; y++) {
            ck_assert_int_eq(dn_dequantize_row(src->type, src->data + (uint64_t)y * srb, f, cols), 0);
            ck_assert_int_eq(dn_quantize_row(t->type, f, row, cols), 0);
            ck_assert_msg(!memcmp(row, t->data + (uint64_t)y * orb, orb), "%s row %lld", t->name, (long long)y);
        }
        free(f);
        free(row);
    }
    gclose(&m);
    gclose(&s);
}
END_TEST

/* The result does not depend on the thread count. */
START_TEST(test_quantize_threads)
{
    const char *a = quantized(hf_q, "t1-q4_k_m.gguf", "q4_k_m", 1);
    const char *b = quantized(hf_q, "t3-q4_k_m.gguf", "q4_k_m", 3);
    size_t na, nb;
    uint8_t *x = read_all(a, &na), *y = read_all(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert(!memcmp(x, y, na));
    free(x);
    free(y);
}
END_TEST

/* ---- the recipe on other shapes ---- */

static int32_t type_of(const dn_gguf *g, const char *name)
{
    const dn_tensor_desc *t = dn_gguf_find_tensor(g, name);
    ck_assert_msg(t != NULL, "no %s", name);
    return t->type;
}

/* tiny-b ties its embeddings: no output.weight, so token_embd gets the
 * output's treatment (q6_K in a q5_k_m mix, whose default is q5_K); its
 * ffn_down rows of 688 values fit no k or 32-block type: f16. It loads and runs. */
START_TEST(test_quantize_tied)
{
    const char *p = quantized(hf_b, "tiny-b-q5_k_m.gguf", "q5_k_m", 2);
    gfile m;
    gopen(p, &m);
    ck_assert_ptr_null(dn_gguf_find_tensor(m.g, "output.weight"));
    ck_assert_int_eq(type_of(m.g, "token_embd.weight"), DANU_TYPE_Q6_K);
    ck_assert_int_eq(type_of(m.g, "blk.0.attn_q.weight"), DANU_TYPE_Q5_K);
    ck_assert_int_eq(type_of(m.g, "blk.1.attn_v.weight"), DANU_TYPE_Q6_K);
    ck_assert_int_eq(type_of(m.g, "blk.0.ffn_down.weight"), DANU_TYPE_F16);
    ck_assert_int_eq(type_of(m.g, "blk.1.ffn_norm.weight"), DANU_TYPE_F32);
    uint64_t v;
    ck_assert(dn_gguf_get_u64(m.g, "llama.attention.sliding_window", &v) && v == 8);
    gclose(&m);
    danu_model *mdl;
    ck_assert_int_eq(danu_model_load(p, NULL, &mdl), DANU_OK);
    danu_context *c;
    ck_assert_int_eq(danu_context_create(mdl, NULL, &c), DANU_OK);
    danu_token ids[3] = { 1, 100, 200 };
    ck_assert_int_eq(danu_context_eval(c, ids, 3, NULL), DANU_OK);
    ck_assert(isfinite(danu_context_logits(c)[0]));
    danu_context_free(c);
    danu_model_free(mdl);
}
END_TEST

/* tiny-a: rows of 160 (hidden) and 432 (ffn) values do not fill 256-value
 * k-blocks; llama.cpp's fallbacks: q4_K -> q5_0, q6_K -> q8_0, and f16 when
 * even 32-blocks do not fit (432 = 13.5 x 32); the output matrix falls to
 * q8_0 directly. Non-k mixes keep their type where 32-blocks fit. */
START_TEST(test_quantize_fallbacks)
{
    const char *p = quantized(hf_a, "tiny-a-q4_k_m.gguf", "q4_k_m", 2);
    gfile m;
    gopen(p, &m);
    ck_assert_int_eq(type_of(m.g, "output.weight"), DANU_TYPE_Q8_0);
    ck_assert_int_eq(type_of(m.g, "token_embd.weight"), DANU_TYPE_Q5_0);
    ck_assert_int_eq(type_of(m.g, "blk.0.attn_q.weight"), DANU_TYPE_Q5_0);
    ck_assert_int_eq(type_of(m.g, "blk.0.attn_v.weight"), DANU_TYPE_Q5_0);    /* layer 0 of 2: not more bits */
    ck_assert_int_eq(type_of(m.g, "blk.1.attn_v.weight"), DANU_TYPE_Q8_0);    /* q6_K -> q8_0 */
    ck_assert_int_eq(type_of(m.g, "blk.0.ffn_down.weight"), DANU_TYPE_F16);   /* q4_K -> q5_0 -> f16 */
    ck_assert_int_eq(type_of(m.g, "blk.1.ffn_down.weight"), DANU_TYPE_F16);   /* q6_K -> q8_0 -> f16 */
    ck_assert_int_eq(type_of(m.g, "blk.0.ffn_gate.weight"), DANU_TYPE_Q5_0);
    ck_assert_int_eq(type_of(m.g, "blk.0.attn_norm.weight"), DANU_TYPE_F32);
    uint64_t v;
    ck_assert(dn_gguf_get_u64(m.g, "general.file_type", &v) && v == 15);
    gclose(&m);
    danu_model *mdl;
    CHECK_OK(danu_model_load(p, NULL, &mdl));
    danu_model_free(mdl);

    p = quantized(hf_a, "tiny-a-q5_k.gguf", "q5_k", 2);   /* Q5_K_S: q5_K -> q5_1 */
    gopen(p, &m);
    ck_assert_int_eq(type_of(m.g, "blk.0.attn_k.weight"), DANU_TYPE_Q5_1);
    ck_assert_int_eq(type_of(m.g, "blk.1.ffn_down.weight"), DANU_TYPE_F16);
    ck_assert_int_eq(type_of(m.g, "output.weight"), DANU_TYPE_Q8_0);
    gclose(&m);

    /* q4_0: llama.cpp refuses 432-value rows; libdanu stores them in f16, as
     * the synthetic writer does: both give every tensor the same type and
     * the same bytes, but for the output matrix, where the quantizer's mix
     * keeps more bits (q6_K, here its q8_0 fallback) as llama.cpp's does */
    p = quantized(hf_a, "tiny-a-q4_0.gguf", "q4_0", 2);
    gopen(p, &m);
    ck_assert_int_eq(type_of(m.g, "blk.0.ffn_down.weight"), DANU_TYPE_F16);
    ck_assert_int_eq(type_of(m.g, "blk.0.ffn_up.weight"), DANU_TYPE_Q4_0);   /* 160 columns: q4_0 blocks fit */
    char direct[600];
    snprintf(direct, sizeof direct, "%s/tiny-a-q4_0-synth.gguf", tmp);
    const uint8_t *spm;
    size_t spm_len;
    spm = tu_read(tu_data("llama2-tokenizer/tokenizer.model"), &spm_len);
    ck_assert_ptr_nonnull(spm);
    ck_assert_int_eq(danu_synth_write("tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_Q4_0, spm, spm_len, direct, NULL),
                     DANU_OK);
    free((void *)spm);
    gfile d;
    gopen(direct, &d);
    ck_assert_int_eq(dn_gguf_n_tensors(d.g), dn_gguf_n_tensors(m.g));
    for (int64_t i = 0; i < dn_gguf_n_tensors(d.g); i++) {
        const dn_tensor_desc *a = dn_gguf_tensor(d.g, i), *b = dn_gguf_find_tensor(m.g, a->name);
        if (!strcmp(a->name, "output.weight")) {
            ck_assert(b && a->type == DANU_TYPE_Q4_0 && b->type == DANU_TYPE_Q8_0);
            continue;
        }
        ck_assert_msg(b && a->type == b->type && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes),
                      "%s differs between synth and quantize", a->name);
    }
    gclose(&d);
    gclose(&m);
}
END_TEST

/* A Danube GGUF without llama.attention.sliding_window (first-generation
 * community files) gets 4096 in the output. The input is llama.cpp's bf16
 * tiny-q renamed "H2O Danube test" with the metadata list of gguf_model.h. */
START_TEST(test_quantize_danube_window)
{
    gfile r;
    gopen(ref_path("bf16"), &r);
    char src[600], out[600];
    snprintf(src, sizeof src, "%s/danube-no-window.gguf", tmp);
    snprintf(out, sizeof out, "%s/danube-no-window-q8_0.gguf", tmp);
    dn_meta_list l;
    dn_meta_init(&l, dn_alloc_libc());
    ck_assert_int_eq(dn_meta_from_gguf(&l, r.g), DANU_OK);
    dn_meta kv = dn_meta_str("general.name", "H2O Danube test", 15);
    ck_assert_int_eq(dn_meta_put(&l, &kv), DANU_OK);
    dn_gguf_writer *w;
    ck_assert_int_eq(dn_gguf_writer_create(dn_alloc_libc(), 32, &w), DANU_OK);
    ck_assert_int_eq(dn_meta_write(&l, w, NULL), DANU_OK);
    for (int64_t i = 0; i < dn_gguf_n_tensors(r.g); i++) {
        const dn_tensor_desc *t = dn_gguf_tensor(r.g, i);
        ck_assert_int_eq(dn_gguf_w_tensor(w, t->name, t->type, t->n_dims, t->dims), DANU_OK);
    }
    FILE *f = fopen(src, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(dn_gguf_w_begin(w, f), DANU_OK);
    for (int64_t i = 0; i < dn_gguf_n_tensors(r.g); i++)
        ck_assert_int_eq(dn_gguf_w_data(w, f, dn_gguf_tensor(r.g, i)->data, dn_gguf_tensor(r.g, i)->nbytes), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_end(w, f), DANU_OK);
    fclose(f);
    dn_gguf_writer_free(w);
    dn_meta_free(&l);
    gclose(&r);

    ck_assert_int_eq(danu_quantize(src, out, "q8_0", NULL), DANU_OK);
    gfile m;
    gopen(out, &m);
    uint64_t v;
    ck_assert(dn_gguf_get_u64(m.g, "llama.attention.sliding_window", &v) && v == 4096);
    ck_assert_int_eq(dn_gguf_find(m.g, "llama.attention.sliding_window"),
                     dn_gguf_find(m.g, "llama.attention.value_length") + 1);
    const char *s;
    uint64_t len;
    ck_assert(dn_gguf_get_str(m.g, "general.name", &s, &len) && len == 15 && !memcmp(s, "H2O Danube test", 15));
    gclose(&m);
}
END_TEST

/* ---- failure modes ---- */

static int cancel_at;   /* cancel on this call of the progress callback */
static int calls;

static int32_t progress_cb(void *user, float f)
{
    (void)user;
    ck_assert(f >= 0.0f && f <= 1.0f);
    return ++calls >= cancel_at;
}

START_TEST(test_quantize_cancel)
{
    int at[2] = { 1, 5 };   /* before anything is written; in the middle of the tensors */
    for (int k = 0; k < 2; k++) {
        char out[600], tmpf[620];
        snprintf(out, sizeof out, "%s/cancel-%d.gguf", tmp, k);
        snprintf(tmpf, sizeof tmpf, "%s.tmp", out);
        danu_options *o = opts(2);
        calls = 0;
        cancel_at = at[k];
        danu_options_set_progress(o, progress_cb, NULL);
        ck_assert_int_eq(danu_quantize(hf_q, out, "q4_k_m", o), DANU_ERR_CANCELLED);
        ck_assert_int_eq(calls, at[k]);
        ck_assert(!exists(out));
        ck_assert(!exists(tmpf));
        /* without cancelling, the callback ends at 1 */
        cancel_at = 1 << 30;
        calls = 0;
        ck_assert_int_eq(danu_quantize(hf_q, out, "q4_k_m", o), DANU_OK);
        ck_assert_int_gt(calls, 5);
        ck_assert(exists(out) && !exists(tmpf));
        unlink(out);
        danu_options_free(o);
    }
}
END_TEST

START_TEST(test_quantize_errors)
{
    char out[600], tmpf[620];
    snprintf(out, sizeof out, "%s/exists.gguf", tmp);
    FILE *f = fopen(out, "wb");
    fputs("keep me", f);
    fclose(f);
    ck_assert_int_eq(danu_quantize(hf_q, out, "q8_0", NULL), DANU_ERR_INVALID_ARG);
    size_t n;
    uint8_t *b = read_all(out, &n);
    ck_assert(n == 7 && !memcmp(b, "keep me", 7));
    free(b);
    unlink(out);
    /* a leftover OUTPUT.tmp is not overwritten either */
    snprintf(tmpf, sizeof tmpf, "%s.tmp", out);
    f = fopen(tmpf, "wb");
    fclose(f);
    ck_assert_int_eq(danu_quantize(hf_q, out, "q8_0", NULL), DANU_ERR_IO);
    ck_assert(!exists(out));
    unlink(tmpf);
    ck_assert_int_eq(danu_quantize(hf_q, out, "q3_k", NULL), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_quantize(NULL, out, "q8_0", NULL), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_quantize(hf_q, NULL, "q8_0", NULL), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_quantize(hf_q, out, NULL, NULL), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_quantize(hf_q, "", "q8_0", NULL), DANU_ERR_INVALID_ARG);
    /* inputs that are not models */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/not-a-model", tmp);
    f = fopen(bad, "wb");
    fputs("GGUF but not really", f);
    fclose(f);
    ck_assert_int_eq(danu_quantize(bad, out, "q8_0", NULL), DANU_ERR_FORMAT);
    ck_assert_int_eq(danu_quantize(tmp, out, "q8_0", NULL), DANU_ERR_FORMAT);   /* a directory without config.json */
    snprintf(bad, sizeof bad, "%s/no-such-file", tmp);
    ck_assert_int_eq(danu_quantize(bad, out, "q8_0", NULL), DANU_ERR_IO);
    ck_assert(!exists(out) && !exists(tmpf));
    /* the type names are case-insensitive, as llama-quantize's */
    ck_assert_int_eq(danu_quantize(hf_q, out, "Q4_K_M", NULL), DANU_OK);
    unlink(out);
}
END_TEST

static void write_hf(char *dst, size_t cap, const char *name, const char *config, uint64_t seed)
{
    size_t len;
    uint8_t *spm = tu_read(tu_data("llama2-tokenizer/tokenizer.model"), &len);
    if (!spm) { fprintf(stderr, "cannot read the Llama 2 tokenizer.model\n"); exit(1); }
    snprintf(dst, cap, "%s/%s", tmp, name);
    danu_status s = danu_synth_write(config, seed, DANU_FORMAT_HF, DANU_TYPE_BF16, spm, len, dst, NULL);
    free(spm);
    if (s != DANU_OK) { fprintf(stderr, "synth %s: %s\n", config, danu_last_error()); exit(1); }
}

int main(void)
{
    tmp = tu_tmpdir("quantize");
    /* llama.cpp's converter named the model after its directory */
    write_hf(hf_q, sizeof hf_q, "synth-tiny-q-seed17", "tiny-q", 17);
    write_hf(hf_b, sizeof hf_b, "tiny-b", "tiny-b", 11);
    write_hf(hf_a, sizeof hf_a, "tiny-a", "tiny-a", 7);
    Suite *s = suite_create("quantize");
    TCase *tc = tcase_create("llamacpp");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_quantize_matches_llamacpp, 0, N(qfiles));
    tcase_add_test(tc, test_quantize_roundtrip_kl);
    tcase_add_test(tc, test_quantize_requantize_gguf);
    tcase_add_test(tc, test_quantize_threads);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("recipe");
    tcase_set_timeout(tr, 300);
    tcase_add_test(tr, test_quantize_tied);
    tcase_add_test(tr, test_quantize_fallbacks);
    tcase_add_test(tr, test_quantize_danube_window);
    suite_add_tcase(s, tr);
    TCase *te = tcase_create("errors");
    tcase_set_timeout(te, 300);
    tcase_add_test(te, test_quantize_cancel);
    tcase_add_test(te, test_quantize_errors);
    suite_add_tcase(s, te);
    int failed = tu_run(s);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
