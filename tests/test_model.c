/* test_model.c - model loading through the public API: the architecture
 * numbers of each format against the spec table and config files, the
 * transformers-written sharded checkpoint, llama.cpp's GGUFs, first-
 * generation Danube GGUFs without a window key, load options and callbacks. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"
#include "format/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/quant.h"
#include "options.h"

static char *tmp;

static int64_t info(const danu_model *m, danu_info k)
{
    int64_t v = -12345;
    ck_assert_int_eq(danu_model_get_int(m, k, &v), DANU_OK);
    return v;
}

/* The spec's configuration table (synthetic-model.md), independent of the loader. */
typedef struct shape { const char *name; int64_t vocab, hidden, heads, kv, hd, ffn, layers, window, ctx, tied; } shape;
static const shape tiny_b = { "tiny-b", 1024, 256, 8, 2, 32, 688, 2, 8, 256, 1 };
static const shape tiny_q = { "tiny-q", 1024, 256, 4, 2, 64, 768, 2, 16, 256, 0 };
static const shape tiny_a = { "tiny-a", 32000, 160, 2, 1, 80, 432, 2, 32, 512, 0 };

static void check_shape(const danu_model *m, const shape *s, int64_t window)
{
    ck_assert_int_eq(info(m, DANU_INFO_VOCAB), s->vocab);
    ck_assert_int_eq(info(m, DANU_INFO_HIDDEN), s->hidden);
    ck_assert_int_eq(info(m, DANU_INFO_HEADS), s->heads);
    ck_assert_int_eq(info(m, DANU_INFO_KV_HEADS), s->kv);
    ck_assert_int_eq(info(m, DANU_INFO_HEAD_DIM), s->hd);
    ck_assert_int_eq(info(m, DANU_INFO_FFN), s->ffn);
    ck_assert_int_eq(info(m, DANU_INFO_LAYERS), s->layers);
    ck_assert_int_eq(info(m, DANU_INFO_SLIDING_WINDOW), window);
    ck_assert_int_eq(info(m, DANU_INFO_CONTEXT_LENGTH), s->ctx);
    ck_assert_int_eq(info(m, DANU_INFO_TIED_EMBEDDINGS), s->tied);
    ck_assert_int_eq(info(m, DANU_INFO_BOS), 1);
    ck_assert_int_eq(info(m, DANU_INFO_EOS), 2);
    double theta, eps;
    ck_assert_int_eq(danu_model_get_float(m, DANU_INFO_ROPE_THETA, &theta), DANU_OK);
    ck_assert_int_eq(danu_model_get_float(m, DANU_INFO_RMS_EPS, &eps), DANU_OK);
    ck_assert(fabs(theta - 10000) < 1e-3 && fabs(eps - 1e-5) < 1e-9);
    /* weight bytes = sum of the tensors' sizes from their shapes and types */
    int64_t n = info(m, DANU_INFO_TENSOR_COUNT), bytes = 0;
    ck_assert_int_eq(n, 2 + 9 * s->layers + (s->tied ? 0 : 1));
    for (int64_t i = 0; i < n; i++) {
        const char *name;
        int32_t type, nd;
        int64_t dims[4];
        ck_assert_int_eq(danu_model_tensor(m, i, &name, &type, &nd, dims), DANU_OK);
        int64_t e = 1;
        for (int d = 0; d < nd; d++) e *= dims[d];
        const dn_type_info *ti = dn_type_get(type);
        ck_assert_msg(ti && e % ti->block_size == 0, "%s: %lld elements, not whole blocks of type %d", name,
                      (long long)e, type);
        bytes += e / ti->block_size * ti->type_size;
    }
    ck_assert_int_eq(bytes, info(m, DANU_INFO_WEIGHT_BYTES));
    ck_assert_int_eq(danu_model_tensor(m, n, NULL, NULL, NULL, NULL), DANU_ERR_INVALID_ARG);
}

START_TEST(test_model_hf_transformers_checkpoint)
{
    danu_model *m;
    ck_assert_int_eq(danu_model_load(tu_data("tiny-b-hf"), NULL, &m), DANU_OK);
    check_shape(m, &tiny_b, 8);
    ck_assert_int_eq(info(m, DANU_INFO_FORMAT), DANU_FORMAT_HF);
    ck_assert_int_eq(info(m, DANU_INFO_WEIGHT_BYTES), 3295744);   /* index.json total_size */
    ck_assert_ptr_null(danu_model_tokenizer(m));                  /* no tokenizer.model there */
    danu_model_free(m);
}
END_TEST

START_TEST(test_model_synth_formats)
{
    const shape *shapes[] = { &tiny_a, &tiny_b, &tiny_q };
    const uint64_t seeds[] = { 7, 11, 17 };
    int32_t types[] = { DANU_TYPE_BF16, DANU_TYPE_F16, DANU_TYPE_F32, DANU_TYPE_Q8_0 };
    for (int s = 0; s < 3; s++)
        for (int f = 0; f < 2; f++)
            for (int t = 0; t < (f ? 4 : 3); t++) {
                const char *p = gd_synth(tmp, shapes[s]->name, seeds[s], f ? DANU_FORMAT_GGUF : DANU_FORMAT_HF, types[t]);
                ck_assert_ptr_nonnull(p);
                danu_model *m;
                ck_assert_msg(danu_model_load(p, NULL, &m) == DANU_OK, "%s: %s", p, danu_last_error());
                check_shape(m, shapes[s], shapes[s]->window);
                ck_assert_int_eq(info(m, DANU_INFO_FORMAT), f ? DANU_FORMAT_GGUF : DANU_FORMAT_HF);
                ck_assert_int_eq(danu_tokenizer_vocab_size(danu_model_tokenizer(m)), shapes[s]->vocab);
                danu_model_free(m);
            }
}
END_TEST

/* llama.cpp's files carry no window key and are not Danube: window 0. */
START_TEST(test_model_llamacpp_files)
{
    static const char *types[] = { "bf16", "F16", "Q8_0", "Q6_K", "Q5_0", "Q5_1", "Q5_K_M", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M" };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "gguf-llamacpp/tiny-q-%s.gguf", types[i]);
        danu_model *m;
        ck_assert_msg(danu_model_load(tu_data(rel), NULL, &m) == DANU_OK, "%s: %s", rel, danu_last_error());
        check_shape(m, &tiny_q, 0);
        ck_assert_int_eq(info(m, DANU_INFO_FORMAT), DANU_FORMAT_GGUF);
        danu_model_free(m);
    }
}
END_TEST

/* A small GGUF written here like a first-generation H2O-Danube conversion:
 * llama architecture, 16384 context, no sliding-window key. */
static void write_danube_like(const char *path, const char *name)
{
    dn_gguf_writer *w;
    ck_assert_int_eq(dn_gguf_writer_create(dn_alloc_libc(), 32, &w), DANU_OK);
    dn_gguf_w_str(w, "general.architecture", "llama", 5);
    dn_gguf_w_str(w, "general.name", name, strlen(name));
    dn_gguf_w_u32(w, "llama.block_count", 1);
    dn_gguf_w_u32(w, "llama.embedding_length", 64);
    dn_gguf_w_u32(w, "llama.attention.head_count", 2);
    dn_gguf_w_u32(w, "llama.attention.head_count_kv", 1);
    dn_gguf_w_u32(w, "llama.feed_forward_length", 64);
    dn_gguf_w_u32(w, "llama.context_length", 16384);
    dn_gguf_w_u32(w, "llama.vocab_size", 32);
    dn_gguf_w_f32(w, "llama.rope.freq_base", 10000.0f);
    dn_gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    static const struct { const char *n; int64_t r, c; } t[] = {
        { "token_embd.weight", 32, 64 }, { "blk.0.attn_norm.weight", 0, 64 }, { "blk.0.attn_q.weight", 64, 64 },
        { "blk.0.attn_k.weight", 32, 64 }, { "blk.0.attn_v.weight", 32, 64 }, { "blk.0.attn_output.weight", 64, 64 },
        { "blk.0.ffn_norm.weight", 0, 64 }, { "blk.0.ffn_gate.weight", 64, 64 }, { "blk.0.ffn_up.weight", 64, 64 },
        { "blk.0.ffn_down.weight", 64, 64 }, { "output_norm.weight", 0, 64 }, { "output.weight", 32, 64 } };
    for (int i = 0; i < 12; i++) {
        int64_t d[2] = { t[i].r, t[i].c };
        ck_assert_int_eq(dn_gguf_w_tensor(w, t[i].n, DANU_TYPE_F32, t[i].r ? 2 : 1, t[i].r ? d : d + 1), DANU_OK);
    }
    FILE *f = fopen(path, "wb");
    ck_assert_int_eq(dn_gguf_w_begin(w, f), DANU_OK);
    for (int i = 0; i < 12; i++) {
        int64_t n = (t[i].r ? t[i].r : 1) * t[i].c;
        float *v = malloc((size_t)n * 4);
        for (int64_t k = 0; k < n; k++) v[k] = t[i].r ? (float)((k * 37 + i * 11) % 17 - 8) / 64.0f : 1.0f;
        ck_assert_int_eq(dn_gguf_w_data(w, f, v, (uint64_t)n * 4), DANU_OK);
        free(v);
    }
    ck_assert_int_eq(dn_gguf_w_end(w, f), DANU_OK);
    fclose(f);
    dn_gguf_writer_free(w);
}

static char logbuf[4096];
static void log_cb(void *u, int32_t level, const char *msg)
{
    (void)u; (void)level;
    strncat(logbuf, msg, sizeof logbuf - strlen(logbuf) - 2);
    strcat(logbuf, "\n");
}

START_TEST(test_model_danube_window_detection)
{
    char p1[1024], p2[1024];
    snprintf(p1, sizeof p1, "%s/danube-like.gguf", tmp);
    snprintf(p2, sizeof p2, "%s/other.gguf", tmp);
    write_danube_like(p1, "h2o-danube-1.8b-chat");
    write_danube_like(p2, "some-llama");
    danu_options *o;
    danu_options_create(NULL, &o);
    danu_options_set_log(o, log_cb, NULL);
    danu_model *m;
    logbuf[0] = 0;
    ck_assert_int_eq(danu_model_load(p1, o, &m), DANU_OK);
    ck_assert_int_eq(info(m, DANU_INFO_SLIDING_WINDOW), 4096);
    ck_assert_ptr_nonnull(strstr(logbuf, "4096"));
    danu_model_free(m);
    ck_assert_int_eq(danu_model_load(p2, o, &m), DANU_OK);
    ck_assert_int_eq(info(m, DANU_INFO_SLIDING_WINDOW), 0);
    danu_model_free(m);
    /* the load option overrides either way */
    danu_options_set_int(o, DANU_OPT_SLIDING_WINDOW, 0);
    ck_assert_int_eq(danu_model_load(p1, o, &m), DANU_OK);
    ck_assert_int_eq(info(m, DANU_INFO_SLIDING_WINDOW), 0);
    danu_model_free(m);
    danu_options_set_int(o, DANU_OPT_SLIDING_WINDOW, 100);
    ck_assert_int_eq(danu_model_load(p2, o, &m), DANU_OK);
    ck_assert_int_eq(info(m, DANU_INFO_SLIDING_WINDOW), 100);
    danu_model_free(m);
    danu_options_free(o);
}
END_TEST

static int progress_calls;
static float last_fraction;
static int32_t progress_cb(void *u, float f)
{
    progress_calls++;
    last_fraction = f;
    return u != NULL && f > 0.0f; /* cancel after the first step when asked */
}

/* tiny-b as transformers wrote it (HF) and as our GGUF, with options for
 * the same layout in both (auto repacks only a mapped file); *o is the
 * caller's to free. */
static const char *tiny_b_path(int i, danu_options **o)
{
    CHECK_OK(danu_options_create(NULL, o));
    CHECK_OK(danu_options_set_int(*o, DANU_OPT_REPACK, i ? DANU_REPACK_ON : DANU_REPACK_OFF));
    const char *p = i ? gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_GGUF, DANU_TYPE_BF16) : tu_data("tiny-b-hf");
    ck_assert_ptr_nonnull(p);
    return p;
}

/* A load reports progress, ending at 1.0. */
START_TEST(test_model_load_progress_reaches_one)
{
    for (int i = 0; i < 2; i++) {
        danu_options *o;
        const char *path = tiny_b_path(i, &o);
        CHECK_OK(danu_options_set_progress(o, progress_cb, NULL));
        progress_calls = 0;
        last_fraction = -1.0f;
        danu_model *m;
        ck_assert_int_eq(danu_model_load(path, o, &m), DANU_OK);
        ck_assert_int_ge(progress_calls, 1);
        ck_assert_msg(last_fraction == 1.0f, "%s: last progress %g", path, last_fraction);
        danu_model_free(m);
        danu_options_free(o);
    }
}
END_TEST

/* A progress callback returning nonzero cancels the load: DANU_ERR_CANCELLED
 * and a NULL model. */
START_TEST(test_model_load_cancelled_by_progress)
{
    for (int i = 0; i < 2; i++) {
        danu_options *o;
        const char *path = tiny_b_path(i, &o);
        int dummy;
        CHECK_OK(danu_options_set_progress(o, progress_cb, &dummy));
        danu_model *c = (danu_model *)1;
        ck_assert_int_eq(danu_model_load(path, o, &c), DANU_ERR_CANCELLED);
        ck_assert_ptr_null(c);
        danu_options_free(o);
    }
}
END_TEST

/* Read instead of mmap (DANU_OPT_USE_MMAP 0): the same logits. */
START_TEST(test_model_read_equals_mmap)
{
    for (int i = 0; i < 2; i++) {
        danu_options *o;
        const char *path = tiny_b_path(i, &o);
        danu_model *m, *m2;
        ck_assert_int_eq(danu_model_load(path, o, &m), DANU_OK);
        CHECK_OK(danu_options_set_int(o, DANU_OPT_USE_MMAP, 0));
        ck_assert_int_eq(danu_model_load(path, o, &m2), DANU_OK);
        danu_context *c1, *c2;
        CHECK_OK(danu_context_create(m, NULL, &c1));
        CHECK_OK(danu_context_create(m2, NULL, &c2));
        danu_token t[5] = { 1, 50, 60, 70, 80 };
        ck_assert_int_eq(danu_context_eval(c1, t, 5, NULL), DANU_OK);
        ck_assert_int_eq(danu_context_eval(c2, t, 5, NULL), DANU_OK);
        ck_assert_mem_eq(danu_context_logits(c1), danu_context_logits(c2), 1024 * sizeof(float));
        danu_context_free(c1);
        danu_context_free(c2);
        danu_model_free(m);
        danu_model_free(m2);
        danu_options_free(o);
    }
}
END_TEST

/* Bad paths: a missing file (IO, message names it), a directory without
 * config.json (message names it), a file of another kind (FORMAT). */
START_TEST(test_model_load_bad_paths)
{
    danu_model *m;
    ck_assert_int_eq(danu_model_load("/nonexistent/model.gguf", NULL, &m), DANU_ERR_IO);
    ck_assert(strstr(danu_last_error(), "/nonexistent/model.gguf") != NULL);
    danu_status st = danu_model_load(tu_data("golden"), NULL, &m);   /* a directory without config.json */
    ck_assert(st == DANU_ERR_IO || st == DANU_ERR_FORMAT);
    ck_assert(strstr(danu_last_error(), "config.json") != NULL);
    ck_assert_int_eq(danu_model_load(tu_data("llama2-tokenizer/cases.tsv"), NULL, &m), DANU_ERR_FORMAT);
}
END_TEST

/* DANU_OPT_REPACK: bounds, default, what auto/on/off repack, matrices
 * without whole 16-row groups left alone, the same logits, states that
 * move between repacked and stored models, cancel during the repack. */
static danu_model *load_repack(const char *path, int repack, int use_mmap)
{
    danu_options *o;
    danu_options_create(NULL, &o);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_REPACK, repack), DANU_OK);
    danu_options_set_int(o, DANU_OPT_USE_MMAP, use_mmap);
    danu_model *m = NULL;
    ck_assert_msg(danu_model_load(path, o, &m) == DANU_OK, "%s: %s", path, danu_last_error());
    danu_options_free(o);
    return m;
}

/* DANU_OPT_REPACK: bounds, name, default auto, out-of-range values refused
 * and leaving the option as it was. */
START_TEST(test_model_repack_option)
{
    double lo, hi;
    ck_assert_int_eq(danu_param_bounds(DANU_OPT_REPACK, &lo, &hi), DANU_OK);
    ck_assert(lo == DANU_REPACK_AUTO && hi == DANU_REPACK_ON);
    ck_assert_int_eq(danu_param_from_name("repack"), DANU_OPT_REPACK);
    danu_options *o;
    danu_options_create(NULL, &o);
    ck_assert_int_eq(o->repack, DANU_REPACK_AUTO);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_REPACK, 2), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_REPACK, -2), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(o->repack, DANU_REPACK_AUTO);
    danu_options_free(o);
}
END_TEST

/* A q8_0 GGUF, untied, whose wk/wv (40 rows) and output (300) are not whole
 * 16-row groups: written once under tmp, its path (static). */
static const char *odd_rows_path(void)
{
    static const dn_synth_config odd = { .name = "odd-rows", .vocab = 300, .hidden = 160, .heads = 4, .kv_heads = 1,
                                         .head_dim = 40, .ffn = 256, .layers = 2, .window = 0, .max_ctx = 64,
                                         .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tied = 0 };
    static char path[1024];
    snprintf(path, sizeof path, "%s/odd-rows-q8_0.gguf", tmp);
    struct stat sb;
    if (stat(path, &sb) == 0) return path;
    size_t spm_len;
    uint8_t *spm = tu_read(tu_data("llama2-tokenizer/tokenizer.model"), &spm_len);
    ck_assert_ptr_nonnull(spm);
    dn_synth_request r = { .cfg = &odd, .seed = 3, .format = DN_SYNTH_GGUF, .type = DANU_TYPE_Q8_0, .out_path = path,
                           .spm = spm, .spm_len = spm_len };
    CHECK_OK(dn_synth_write(dn_alloc_libc(), &r));
    free(spm);
    return path;
}

/* Repack on: the matrices with whole 16-row groups become q8_0x16 (their
 * bytes counted), the others, the output and the embeddings stay as stored;
 * off repacks nothing. */
START_TEST(test_model_repack_on_layout)
{
    const char *path = odd_rows_path();
    danu_model *off = load_repack(path, DANU_REPACK_OFF, 1), *on = load_repack(path, DANU_REPACK_ON, 1);
    ck_assert_int_eq(info(off, DANU_INFO_REPACKED_MATRICES), 0);
    ck_assert_int_eq(info(off, DANU_INFO_REPACKED_BYTES), 0);
    ck_assert_int_eq(info(on, DANU_INFO_REPACKED_MATRICES), 2 * 5);   /* wq wo gate up down per layer */
    int64_t want = 0;
    for (int l = 0; l < 2; l++) {
        const dn_layer *L = &on->layers[l];
        ck_assert_int_eq(L->wk.type, DANU_TYPE_Q8_0);
        ck_assert_int_eq(L->wv.type, DANU_TYPE_Q8_0);
        ck_assert_uint_eq(L->wk.row_bytes, off->layers[l].wk.row_bytes);
        const dn_matrix *x[5] = { &L->wq, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
        for (int k = 0; k < 5; k++) {
            ck_assert_int_eq(x[k]->type, DN_TYPE_Q8_0_X16);
            ck_assert_uint_eq(x[k]->row_bytes, dn_type_row_bytes(DN_TYPE_Q8_0_X16, (uint64_t)x[k]->cols));
            want += (int64_t)(x[k]->row_bytes * (uint64_t)x[k]->rows);
        }
    }
    ck_assert_int_eq(info(on, DANU_INFO_REPACKED_BYTES), want);
    ck_assert_int_eq(on->output.type, DANU_TYPE_Q8_0);
    ck_assert_int_eq(on->tok_embd.type, off->tok_embd.type);
    ck_assert_int_eq(info(on, DANU_INFO_WEIGHT_BYTES), info(off, DANU_INFO_WEIGHT_BYTES));
    danu_model_free(on);
    danu_model_free(off);
}
END_TEST

/* Repacked and stored layouts give the same logits (the x16 kernels may sum
 * in another order), and a state saved on one layout loads on the other. */
START_TEST(test_model_repack_same_logits_and_state)
{
    const char *path = odd_rows_path();
    danu_model *off = load_repack(path, DANU_REPACK_OFF, 1), *on = load_repack(path, DANU_REPACK_ON, 1);
    danu_context *c_off, *c_on;
    ck_assert_int_eq(danu_context_create(off, NULL, &c_off), DANU_OK);
    ck_assert_int_eq(danu_context_create(on, NULL, &c_on), DANU_OK);
    danu_token t[6] = { 1, 17, 250, 3, 99, 42 };
    ck_assert_int_eq(danu_context_eval(c_off, t, 6, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_eval(c_on, t, 6, NULL), DANU_OK);
    const double err = tu_max_abs_diff(danu_context_logits(c_on), danu_context_logits(c_off), 300),
                 mag = tu_max_abs(danu_context_logits(c_off), 300);
    ck_assert_msg(err <= 1e-4 * mag, "repacked logits differ by %.3g (max %.3g)", err, mag);
    /* a state saved on one layout loads on the other */
    size_t sz = danu_context_state_size(c_off), wr;
    void *st = malloc(sz);
    ck_assert_int_eq(danu_context_state_save(c_off, st, sz, &wr), DANU_OK);
    ck_assert_int_eq(danu_context_state_load(c_on, st, wr), DANU_OK);
    free(st);
    danu_context_free(c_off);
    danu_context_free(c_on);
    danu_model_free(on);
    danu_model_free(off);
}
END_TEST

/* Auto: the kernels' choice for a mapped file, nothing for a read one; on
 * repacks a read file too. */
START_TEST(test_model_repack_auto)
{
    const char *path = odd_rows_path();
    danu_model *au = load_repack(path, DANU_REPACK_AUTO, 1);
    ck_assert_int_eq(info(au, DANU_INFO_REPACKED_MATRICES), au->kern->repack[DANU_TYPE_Q8_0] ? 10 : 0);
    danu_model_free(au);
    au = load_repack(path, DANU_REPACK_AUTO, 0);
    ck_assert_int_eq(info(au, DANU_INFO_REPACKED_MATRICES), 0);
    danu_model_free(au);
    au = load_repack(path, DANU_REPACK_ON, 0);   /* on: also a file read into memory */
    ck_assert_int_eq(info(au, DANU_INFO_REPACKED_MATRICES), 10);
    danu_model_free(au);
}
END_TEST

/* Cancel from the progress callback during the repack: DANU_ERR_CANCELLED
 * part way; without cancelling, the repack reports its own steps. */
START_TEST(test_model_repack_cancel)
{
    const char *path = odd_rows_path();
    danu_options *o;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_REPACK, DANU_REPACK_ON));
    int cancel = 1;
    danu_options_set_progress(o, progress_cb, &cancel);
    progress_calls = 0;
    danu_model *c = (danu_model *)1;
    ck_assert_int_eq(danu_model_load(path, o, &c), DANU_ERR_CANCELLED);
    ck_assert_ptr_null(c);
    ck_assert(last_fraction > 0.0f && last_fraction < 1.0f);
    danu_options_set_progress(o, progress_cb, NULL);
    ck_assert_int_eq(danu_model_load(path, o, &c), DANU_OK);
    ck_assert(last_fraction == 1.0f && progress_calls >= 2 + 10);
    danu_model_free(c);
    danu_options_free(o);
}
END_TEST

/* DANU_OPT_FAST_BF16: bounds, default, and which types the loader picks:
 * the fast x16 type for repacked bf16 matrices where the table has its gemm
 * (avx512), the exact one elsewhere (scalar: per-block fallback), nothing
 * with repack off. */
static danu_model *load_fast(const char *path, int isa, int repack, int fast)
{
    danu_options *o;
    danu_options_create(NULL, &o);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_ISA, isa), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_REPACK, repack), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_FAST_BF16, fast), DANU_OK);
    danu_model *m = NULL;
    ck_assert_msg(danu_model_load(path, o, &m) == DANU_OK, "%s: %s", path, danu_last_error());
    danu_options_free(o);
    return m;
}

/* DANU_OPT_FAST_BF16: bounds, name, default 0, out-of-range refused, 1 set. */
START_TEST(test_model_fast_bf16_option)
{
    double lo, hi;
    ck_assert_int_eq(danu_param_bounds(DANU_OPT_FAST_BF16, &lo, &hi), DANU_OK);
    ck_assert(lo == 0 && hi == 1);
    ck_assert_int_eq(danu_param_from_name("fast_bf16"), DANU_OPT_FAST_BF16);
    danu_options *o;
    danu_options_create(NULL, &o);
    ck_assert_int_eq(o->fast_bf16, 0);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_FAST_BF16, 2), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_FAST_BF16, -1), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(o->fast_bf16, 0);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_FAST_BF16, 1), DANU_OK);
    ck_assert_int_eq(o->fast_bf16, 1);
    danu_options_free(o);
}
END_TEST

/* Repacked bf16 matrices take the fast x16 type where the table has its
 * gemm, the exact one elsewhere; the same matrices and bytes either way. */
START_TEST(test_model_fast_bf16_types)
{
    const char *path = gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_GGUF, DANU_TYPE_BF16);
    ck_assert_ptr_nonnull(path);
    static const int isas[] = { DANU_ISA_SCALAR, DANU_ISA_AUTO };
    for (int i = 0; i < 2; i++) {
        danu_model *ex = load_fast(path, isas[i], DANU_REPACK_ON, 0), *fa = load_fast(path, isas[i], DANU_REPACK_ON, 1);
        const int has_fast = fa->kern->gemm[DN_TYPE_BF16_X16F] != NULL;
        ck_assert_int_gt(info(fa, DANU_INFO_REPACKED_MATRICES), 0);
        ck_assert_int_eq(info(fa, DANU_INFO_REPACKED_MATRICES), info(ex, DANU_INFO_REPACKED_MATRICES));
        ck_assert_int_eq(info(fa, DANU_INFO_REPACKED_BYTES), info(ex, DANU_INFO_REPACKED_BYTES));
        const int32_t want = has_fast ? DN_TYPE_BF16_X16F : DN_TYPE_BF16_X16;
        for (int l = 0; l < fa->cfg.n_layers; l++) {
            ck_assert_int_eq(ex->layers[l].wq.type, DN_TYPE_BF16_X16);
            ck_assert_int_eq(fa->layers[l].wq.type, want);
            ck_assert_int_eq(fa->layers[l].w_down.type, want);
        }
        danu_model_free(ex);
        danu_model_free(fa);
    }
}
END_TEST

/* With repack off, fast bf16 changes nothing: the stored bf16 matrices. */
START_TEST(test_model_fast_bf16_needs_repack)
{
    const char *path = gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_GGUF, DANU_TYPE_BF16);
    ck_assert_ptr_nonnull(path);
    danu_model *fa = load_fast(path, DANU_ISA_AUTO, DANU_REPACK_OFF, 1);
    ck_assert_int_eq(info(fa, DANU_INFO_REPACKED_MATRICES), 0);
    ck_assert_int_eq(fa->layers[0].wq.type, DANU_TYPE_BF16);
    danu_model_free(fa);
}
END_TEST

START_TEST(test_model_versions_and_errors)
{
    ck_assert_uint_eq(danu_version_number(), DANU_VERSION_NUMBER);
    ck_assert_str_eq(danu_version_string(), DANU_VERSION_STRING);
    ck_assert_str_eq(danu_type_name(DANU_TYPE_Q4_K), "q4_K");
    ck_assert_str_eq(danu_type_name(9), "unknown");
    for (int s = 0; s <= 13; s++) ck_assert(strlen(danu_strerror(s)) > 0);
    ck_assert_str_eq(danu_strerror(999), "unknown status");
}
END_TEST

int main(void)
{
    tmp = tu_tmpdir("model");
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_model_hf_transformers_checkpoint);
    tcase_add_test(tc, test_model_synth_formats);
    tcase_add_test(tc, test_model_llamacpp_files);
    tcase_add_test(tc, test_model_danube_window_detection);
    tcase_add_test(tc, test_model_load_progress_reaches_one);
    tcase_add_test(tc, test_model_load_cancelled_by_progress);
    tcase_add_test(tc, test_model_read_equals_mmap);
    tcase_add_test(tc, test_model_load_bad_paths);
    tcase_add_test(tc, test_model_versions_and_errors);
    tcase_add_test(tc, test_model_repack_option);
    tcase_add_test(tc, test_model_repack_on_layout);
    tcase_add_test(tc, test_model_repack_same_logits_and_state);
    tcase_add_test(tc, test_model_repack_auto);
    tcase_add_test(tc, test_model_repack_cancel);
    tcase_add_test(tc, test_model_fast_bf16_option);
    tcase_add_test(tc, test_model_fast_bf16_types);
    tcase_add_test(tc, test_model_fast_bf16_needs_repack);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
