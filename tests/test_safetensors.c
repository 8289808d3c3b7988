/* test_safetensors.c - the safetensors reader and the HF directory loader.
 * The tiny-b-hf checkpoint (written by transformers) is checked element by
 * element against the synthetic-model formula of spec/synthetic-model.md,
 * implemented here independently; then a battery of corrupted files and
 * directories must each fail cleanly (status, message, nothing leaked). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "format/safetensors.h"
#include "common/error.h"
#include "testutil.h"

/* the counting allocator of testutil: leaks and failure injection */
static tu_counter g_cnt;
static dn_alloc g_alloc = { tu_count_malloc, tu_count_realloc, tu_count_free, &g_cnt };
static const dn_alloc *A(void) { memset(&g_cnt, 0, sizeof g_cnt); return &g_alloc; }

/* ---- the synthetic model (spec/synthetic-model.md), tiny-b ---- */
enum { EMB, NORM, LIN };
static uint16_t synth_bf16(uint64_t seed, uint64_t t, uint64_t i, int kind, int fan_in)
{
    uint64_t z = ((seed << 48) | (t << 32) | i) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    float u = (float)(z >> 40) * 0x1p-24f;
    float r = u * 2.0f - 1.0f;
    volatile float w; /* volatile: one rounding per step, never a fused multiply-add */
    if (kind == EMB) w = r;
    else if (kind == NORM) { w = r * 0.0625f; w = w + 1.0f; }
    else { float s = (float)sqrt(3.0 / fan_in); w = r * s; }
    float wf = w;
    uint32_t bits;
    memcpy(&bits, &wf, 4);
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}
static double bf16_val(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }

#define SEED 11
#define VOCAB 1024
#define HID 256
#define QDIM 256 /* 8 heads x 32 */
#define KVDIM 64 /* 2 kv heads x 32 */
#define FFN 688

typedef struct spec_tensor { const char *name; int t, kind, rows, cols, fan_in, shard; } spec_tensor;
/* t from the spec's tensor order; shard (1-based) from model.safetensors.index.json */
static const spec_tensor tiny_b[20] = {
    { "model.embed_tokens.weight", 0, EMB, VOCAB, HID, 0, 1 },
    { "model.layers.0.input_layernorm.weight", 1, NORM, HID, 0, 0, 3 },
    { "model.layers.0.self_attn.q_proj.weight", 2, LIN, QDIM, HID, HID, 1 },
    { "model.layers.0.self_attn.k_proj.weight", 3, LIN, KVDIM, HID, HID, 1 },
    { "model.layers.0.self_attn.v_proj.weight", 4, LIN, KVDIM, HID, HID, 1 },
    { "model.layers.0.self_attn.o_proj.weight", 5, LIN, HID, QDIM, QDIM, 1 },
    { "model.layers.0.post_attention_layernorm.weight", 6, NORM, HID, 0, 0, 3 },
    { "model.layers.0.mlp.gate_proj.weight", 7, LIN, FFN, HID, HID, 2 },
    { "model.layers.0.mlp.up_proj.weight", 8, LIN, FFN, HID, HID, 2 },
    { "model.layers.0.mlp.down_proj.weight", 9, LIN, HID, FFN, FFN, 3 },
    { "model.layers.1.input_layernorm.weight", 10, NORM, HID, 0, 0, 5 },
    { "model.layers.1.self_attn.q_proj.weight", 11, LIN, QDIM, HID, HID, 3 },
    { "model.layers.1.self_attn.k_proj.weight", 12, LIN, KVDIM, HID, HID, 3 },
    { "model.layers.1.self_attn.v_proj.weight", 13, LIN, KVDIM, HID, HID, 3 },
    { "model.layers.1.self_attn.o_proj.weight", 14, LIN, HID, QDIM, QDIM, 3 },
    { "model.layers.1.post_attention_layernorm.weight", 15, NORM, HID, 0, 0, 5 },
    { "model.layers.1.mlp.gate_proj.weight", 16, LIN, FFN, HID, HID, 4 },
    { "model.layers.1.mlp.up_proj.weight", 17, LIN, FFN, HID, HID, 4 },
    { "model.layers.1.mlp.down_proj.weight", 18, LIN, HID, FFN, FFN, 5 },
    { "model.norm.weight", 19, NORM, HID, 0, 0, 5 },
};

static const char *shard_file(int k)
{
    static char buf[6][64];
    snprintf(buf[k], sizeof buf[k], "model-%05d-of-00005.safetensors", k);
    return buf[k];
}

/* ---- file helpers ---- */
static void write_file(const char *dir, const char *name, const void *bytes, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert(n == 0 || fwrite(bytes, 1, n, f) == n);
    ck_assert(fclose(f) == 0);
}
static void write_str(const char *dir, const char *name, const char *s) { write_file(dir, name, s, strlen(s)); }
static void remove_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}
static void copy_data(const char *rel, const char *dir, const char *name)
{
    size_t n;
    uint8_t *b = tu_read(tu_data(rel), &n);
    ck_assert_msg(b != NULL, "cannot read %s", rel);
    write_file(dir, name, b, n);
    free(b);
}
/* New malloc'd copy of s with the first `from` replaced by `to`. */
static char *repl(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    ck_assert_msg(p != NULL, "'%s' not in '%s'", from, s);
    size_t a = (size_t)(p - s), lf = strlen(from), lt = strlen(to), ls = strlen(s);
    char *r = malloc(ls - lf + lt + 1);
    memcpy(r, s, a);
    memcpy(r + a, to, lt);
    memcpy(r + a + lt, p + lf, ls - a - lf + 1);
    return r;
}

static int n_variants; /* corrupt inputs tried in this test (printed) */

/* dn_hfdir_open must fail with `want`, a message, a zeroed result, no leak. */
static void expect_dir_fails(const char *dir, danu_status want, const char *label)
{
    dn_hfdir h;
    memset(&h, 0x5a, sizeof h);
    dn_clearerr();
    danu_status st = dn_hfdir_open(A(), dir, 1, NULL, NULL, NULL, &h);
    ck_assert_msg(st == want, "%s: status %d, want %d (%s)", label, st, want, dn_lasterr());
    ck_assert_msg(dn_lasterr()[0] != 0, "%s: empty message", label);
    ck_assert(h.tensors == NULL && h.n_tensors == 0 && h.config == NULL && h.shards == NULL && h.dir == NULL);
    ck_assert_msg(g_cnt.live == 0, "%s: %ld allocations leaked", label, g_cnt.live);
    n_variants++;
}

/* ---- opening the real checkpoint ---- */
typedef struct cb_state { float fractions[16]; int n_progress, cancel_at; int n_info; char info[1024]; } cb_state;
static int32_t on_progress(void *user, float f)
{
    cb_state *s = user;
    if (s->n_progress < 16) s->fractions[s->n_progress] = f;
    s->n_progress++;
    return s->cancel_at && s->n_progress == s->cancel_at;
}
static void on_log(void *user, int32_t level, const char *msg)
{
    cb_state *s = user;
    if (level == DANU_LOG_INFO) { s->n_info++; snprintf(s->info, sizeof s->info, "%s", msg); }
}

static void check_tensor_values(const dn_tensor_desc *t, const spec_tensor *sp, double *sum1000, double *sum_all)
{
    double s1 = 0, s = 0;
    for (uint64_t i = 0; i < t->n_elements; i++) {
        uint16_t got;
        memcpy(&got, t->data + 2 * i, 2); /* little-endian host assumed by the project */
        uint16_t want = synth_bf16(SEED, (uint64_t)sp->t, i, sp->kind, sp->fan_in);
        if (got != want) ck_abort_msg("%s[%llu] = 0x%04x, formula gives 0x%04x", sp->name, (unsigned long long)i, got, want);
        s += bf16_val(got);
        if (i < 1000) s1 += bf16_val(got);
    }
    if (sum1000) *sum1000 = s1;
    if (sum_all) *sum_all = s;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    ck_assert(stat(path, &sb) == 0);
    return (uint64_t)sb.st_size;
}

START_TEST(test_safetensors_tiny_b_sharded)
{
    cb_state cb;
    memset(&cb, 0, sizeof cb);
    dn_logger lg = { on_log, &cb };
    dn_hfdir h;
    danu_status st = dn_hfdir_open(A(), tu_data("tiny-b-hf"), 1, &lg, on_progress, &cb, &h);
    CHECK_OK(st);
    ck_assert_int_eq(h.n_shards, 5);
    ck_assert_int_eq(h.n_tensors, 20);
    for (int k = 0; k < 5; k++) {
        ck_assert_str_eq(h.shard_names[k], shard_file(k + 1));
        ck_assert_int_eq(h.shards[k].is_mmap, 1);
    }
    int64_t v;
    ck_assert(dn_json_get_int(h.config, "hidden_size", &v) && v == HID);
    ck_assert(dn_json_get_int(h.config, "vocab_size", &v) && v == VOCAB);
    ck_assert_ptr_nonnull(h.generation_config);
    ck_assert(dn_json_get_int(h.generation_config, "eos_token_id", &v) && v == 2);
    ck_assert_ptr_null(h.tokenizer_config);
    ck_assert_ptr_null(h.tokenizer_model_path);
    ck_assert_ptr_null(dn_hfdir_find(&h, "lm_head.weight")); /* tied */
    ck_assert_ptr_null(dn_hfdir_find(&h, "model.embed_tokens"));

    for (int k = 0; k < 20; k++) {
        const spec_tensor *sp = &tiny_b[k];
        const dn_tensor_desc *t = dn_hfdir_find(&h, sp->name);
        ck_assert_msg(t != NULL, "%s missing", sp->name);
        ck_assert_str_eq(t->name, sp->name);
        ck_assert_int_eq(t->type, DANU_TYPE_BF16);
        ck_assert_int_eq(t->n_dims, sp->cols ? 2 : 1);
        ck_assert_int_eq(t->dims[0], sp->rows);
        if (sp->cols) ck_assert_int_eq(t->dims[1], sp->cols);
        uint64_t n = (uint64_t)sp->rows * (uint64_t)(sp->cols ? sp->cols : 1);
        ck_assert_uint_eq(t->n_elements, n);
        ck_assert_uint_eq(t->nbytes, 2 * n);
        ck_assert_int_eq(t->file_index, sp->shard - 1);
        const dn_mapping *m = &h.shards[t->file_index];
        ck_assert(t->data == m->data + t->file_offset);
        ck_assert(t->file_offset + t->nbytes <= m->size);
        double s1, s;
        check_tensor_values(t, sp, &s1, &s);
        if (k == 0) { /* checksum table of the spec */
            ck_assert_msg(fabs(s1 - -12.88318920135498) < 1e-9 && fabs(s - -120.12346565723419) < 1e-9, "%.17g %.17g", s1, s);
        } else if (k == 2) {
            ck_assert_msg(fabs(s1 - 3.538412094116211) < 1e-9 && fabs(s - 24.920381411910057) < 1e-9, "%.17g %.17g", s1, s);
        }
    }

    /* progress: one call per shard, cumulative fraction of shard bytes */
    ck_assert_int_eq(cb.n_progress, 5);
    uint64_t total = 0, sizes[5], cum = 0;
    for (int k = 0; k < 5; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tiny-b-hf/%s", shard_file(k + 1));
        sizes[k] = file_size(tu_data(rel));
        total += sizes[k];
    }
    for (int k = 0; k < 5; k++) {
        cum += sizes[k];
        ck_assert_msg(fabs(cb.fractions[k] - (double)cum / (double)total) < 1e-6, "progress %d: %g", k, cb.fractions[k]);
    }
    ck_assert(cb.fractions[4] == 1.0f);
    ck_assert_int_eq(cb.n_info, 1);
    ck_assert_msg(strstr(cb.info, "5 safetensors shards") != NULL, "%s", cb.info);

    dn_hfdir_close(&g_alloc, &h);
    ck_assert_int_eq(g_cnt.live, 0);
    ck_assert_ptr_null(h.tensors);
    dn_hfdir_close(&g_alloc, &h); /* closing twice is harmless */
}
END_TEST

START_TEST(test_safetensors_read_path_identical)
{
    dn_hfdir hm, hr;
    const dn_alloc *a = A();
    ck_assert_int_eq(dn_hfdir_open(a, tu_data("tiny-b-hf"), 1, NULL, NULL, NULL, &hm), DANU_OK);
    ck_assert_int_eq(dn_hfdir_open(a, tu_data("tiny-b-hf"), 0, NULL, NULL, NULL, &hr), DANU_OK);
    ck_assert_int_eq(hm.n_tensors, hr.n_tensors);
    for (int k = 0; k < 5; k++) ck_assert_int_eq(hr.shards[k].is_mmap, 0);
    for (int64_t i = 0; i < hm.n_tensors; i++) {
        const dn_tensor_desc *a1 = &hm.tensors[i], *b1 = &hr.tensors[i];
        ck_assert_str_eq(a1->name, b1->name);
        ck_assert_uint_eq(a1->nbytes, b1->nbytes);
        ck_assert_uint_eq(a1->file_offset, b1->file_offset);
        ck_assert(a1->data != b1->data);
        ck_assert(memcmp(a1->data, b1->data, a1->nbytes) == 0);
    }
    /* and the read path's bytes are the formula's too */
    const dn_tensor_desc *q = dn_hfdir_find(&hr, tiny_b[2].name);
    check_tensor_values(q, &tiny_b[2], NULL, NULL);
    dn_hfdir_close(&g_alloc, &hm);
    dn_hfdir_close(&g_alloc, &hr);
    ck_assert_int_eq(g_cnt.live, 0);
}
END_TEST

START_TEST(test_safetensors_cancel)
{
    for (int at = 1; at <= 5; at++) {
        cb_state cb;
        memset(&cb, 0, sizeof cb);
        cb.cancel_at = at;
        dn_hfdir h;
        dn_clearerr();
        danu_status st = dn_hfdir_open(A(), tu_data("tiny-b-hf"), at & 1, NULL, on_progress, &cb, &h);
        ck_assert_int_eq(st, DANU_ERR_CANCELLED);
        ck_assert_int_eq(cb.n_progress, at);
        ck_assert(dn_lasterr()[0] != 0);
        ck_assert_int_eq(g_cnt.live, 0);
        ck_assert_ptr_null(h.tensors);
    }
}
END_TEST

START_TEST(test_safetensors_nomem)
{
    for (int use_mmap = 0; use_mmap <= 1; use_mmap++) {
        long k;
        for (k = 1; k < 100000; k++) {
            memset(&g_cnt, 0, sizeof g_cnt);
            g_cnt.fail_at = k;
            dn_hfdir h;
            danu_status st = dn_hfdir_open(&g_alloc, tu_data("tiny-b-hf"), use_mmap, NULL, NULL, NULL, &h);
            if (st == DANU_OK) {
                ck_assert_int_eq(h.n_tensors, 20);
                dn_hfdir_close(&g_alloc, &h);
                ck_assert_int_eq(g_cnt.live, 0);
                break;
            }
            ck_assert_msg(st == DANU_ERR_NOMEM, "fail at %ld: status %d %s", k, st, dn_lasterr());
            ck_assert_msg(g_cnt.live == 0, "fail at %ld: %ld leaked", k, g_cnt.live);
        }
        ck_assert_msg(k > 50 && k < 100000, "allocations: %ld", k);
        printf("hfdir_open(use_mmap=%d) survives allocation failure at each of %ld points\n", use_mmap, k - 1);
    }
}
END_TEST

/* ---- a small single-file safetensors built here ---- */
static const char base_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a.norm\":{\"dtype\":\"BF16\",\"shape\":[256],\"data_offsets\":[0,512]},"
    "\"b.scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[512,516]},"
    "\"c.f16\":{\"dtype\":\"F16\",\"shape\":[2,3,1,2],\"data_offsets\":[516,540]},"
    "\"d.k\":{\"dtype\":\"BF16\",\"shape\":[64,4],\"data_offsets\":[540,1052]}}";
#define DATA_LEN 1052
static uint8_t base_data[DATA_LEN];

static void fill_base_data(void)
{
    for (int i = 0; i < 256; i++) {
        uint16_t v = synth_bf16(SEED, 10, (uint64_t)i, NORM, 0);
        memcpy(base_data + 2 * i, &v, 2);
    }
    float half = 1.5f;
    memcpy(base_data + 512, &half, 4);
    for (int i = 0; i < 12; i++) {
        uint16_t v = (uint16_t)(0x3c00 + 0x111 * i); /* arbitrary fp16 bit patterns */
        memcpy(base_data + 516 + 2 * i, &v, 2);
    }
    for (int i = 0; i < 256; i++) {
        uint16_t v = synth_bf16(SEED, 3, (uint64_t)i, LIN, HID);
        memcpy(base_data + 540 + 2 * i, &v, 2);
    }
}

/* 8-byte length + header + data, malloc'd. */
static uint8_t *build_st(const char *header, const uint8_t *data, size_t dlen, size_t *out_len)
{
    size_t hl = strlen(header);
    uint8_t *b = malloc(8 + hl + dlen);
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)((uint64_t)hl >> (8 * k));
    memcpy(b + 8, header, hl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    *out_len = 8 + hl + dlen;
    return b;
}

/* One corrupt file through both entry points: dn_safetensors_parse on an
 * exact-size heap copy (so valgrind sees any overread), appending after an
 * existing entry that must survive; and dn_hfdir_open of a directory. */
static void expect_st_fails(const char *dir, const uint8_t *bytes, size_t len, danu_status want, const char *label)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, bytes, len);
    const dn_alloc *a = A();
    dn_tensor_desc *t = NULL;
    int64_t n = 0, cap = 0;
    size_t gl;
    uint8_t *good = build_st(base_header, base_data, DATA_LEN, &gl);
    ck_assert_int_eq(dn_safetensors_parse(a, good, gl, "good", 0, &t, &n, &cap), DANU_OK);
    ck_assert_int_eq(n, 4);
    dn_clearerr();
    danu_status st = dn_safetensors_parse(a, copy, len, "bad.safetensors", 1, &t, &n, &cap);
    ck_assert_msg(st == want, "%s: status %d, want %d (%s)", label, st, want, dn_lasterr());
    ck_assert_msg(strstr(dn_lasterr(), "bad.safetensors") != NULL, "%s: message '%s'", label, dn_lasterr());
    ck_assert_int_eq(n, 4);
    ck_assert_str_eq(t[3].name, "d.k");
    dn_tensor_descs_free(a, t, n);
    ck_assert_msg(g_cnt.live == 0, "%s: leak", label);
    free(copy);
    free(good);

    write_file(dir, "model.safetensors", bytes, len);
    expect_dir_fails(dir, want, label);
}

static void expect_header_fails(const char *dir, const char *header, danu_status want, const char *label)
{
    size_t len;
    uint8_t *b = build_st(header, base_data, DATA_LEN, &len);
    expect_st_fails(dir, b, len, want, label);
    free(b);
}

static void expect_repl_fails(const char *dir, const char *from, const char *to, danu_status want)
{
    char *h = repl(base_header, from, to);
    char label[256];
    snprintf(label, sizeof label, "%s -> %s", from, to);
    expect_header_fails(dir, h, want, label);
    free(h);
}

/* A mutation that keeps the file valid: d.k gets the new type and shape. */
static void expect_repl_ok(const char *from, const char *to, int32_t type, int32_t n_dims, int64_t dim0)
{
    char *hdr = repl(base_header, from, to);
    size_t len;
    uint8_t *b = build_st(hdr, base_data, DATA_LEN, &len);
    dn_tensor_desc *t = NULL;
    int64_t n = 0, cap = 0;
    CHECK_OK(dn_safetensors_parse(A(), b, len, "ok", 0, &t, &n, &cap));
    ck_assert_int_eq(n, 4);
    ck_assert_str_eq(t[3].name, "d.k");
    ck_assert_int_eq(t[3].type, type);
    ck_assert_int_eq(t[3].n_dims, n_dims);
    ck_assert_int_eq(t[3].dims[0], dim0);
    ck_assert_uint_eq(t[3].nbytes, 512);
    ck_assert(t[3].data == b + 8 + strlen(hdr) + 540);
    dn_tensor_descs_free(&g_alloc, t, n);
    ck_assert_int_eq(g_cnt.live, 0);
    free(b);
    free(hdr);
}

START_TEST(test_safetensors_single_file_and_corrupt)
{
    fill_base_data();
    char *dir = tu_tmpdir("st1");
    ck_assert_ptr_nonnull(dir);
    copy_data("tiny-b-hf/config.json", dir, "config.json");
    n_variants = 0;

    /* the valid file, with extras: tokenizer.model and tokenizer_config.json */
    size_t len;
    uint8_t *file = build_st(base_header, base_data, DATA_LEN, &len);
    write_file(dir, "model.safetensors", file, len);
    write_str(dir, "tokenizer.model", "x");
    copy_data("danube/tokenizer_config.json", dir, "tokenizer_config.json");
    dn_hfdir h;
    CHECK_OK(dn_hfdir_open(A(), dir, 1, NULL, NULL, NULL, &h));
    ck_assert_int_eq(h.n_shards, 1);
    ck_assert_str_eq(h.shard_names[0], "model.safetensors");
    ck_assert_int_eq(h.n_tensors, 4);
    ck_assert_ptr_nonnull(h.tokenizer_model_path);
    ck_assert(strstr(h.tokenizer_model_path, "tokenizer.model") != NULL);
    ck_assert_str_eq(dn_json_get_str(h.tokenizer_config, "eos_token"), "</s>");
    ck_assert_ptr_null(h.generation_config);
    uint64_t hl = strlen(base_header);
    const dn_tensor_desc *t = dn_hfdir_find(&h, "a.norm");
    ck_assert(t && t->type == DANU_TYPE_BF16 && t->n_dims == 1 && t->dims[0] == 256 && t->nbytes == 512);
    ck_assert_uint_eq(t->file_offset, 8 + hl);
    ck_assert(memcmp(t->data, base_data, 512) == 0);
    t = dn_hfdir_find(&h, "b.scalar");
    ck_assert(t && t->type == DANU_TYPE_F32 && t->n_dims == 0 && t->n_elements == 1 && t->nbytes == 4);
    float f;
    memcpy(&f, t->data, 4);
    ck_assert(f == 1.5f);
    t = dn_hfdir_find(&h, "c.f16");
    ck_assert(t && t->type == DANU_TYPE_F16 && t->n_dims == 4 && t->n_elements == 12);
    ck_assert(t->dims[0] == 2 && t->dims[1] == 3 && t->dims[2] == 1 && t->dims[3] == 2);
    ck_assert_uint_eq(t->file_offset, 8 + hl + 516);
    t = dn_hfdir_find(&h, "d.k");
    ck_assert(t && t->dims[0] == 64 && t->dims[1] == 4 && memcmp(t->data, base_data + 540, 512) == 0);
    dn_hfdir_close(&g_alloc, &h);
    ck_assert_int_eq(g_cnt.live, 0);
    remove_file(dir, "tokenizer.model");
    remove_file(dir, "tokenizer_config.json");

    /* valid variants: trailing-space padding, empty tensor, no metadata */
    static const char *const ok_headers[] = {
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}      ",
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[8,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
        "{}",
    };
    for (size_t k = 0; k < 3; k++) {
        size_t blen;
        uint8_t *b = build_st(ok_headers[k], base_data, k == 2 ? 0 : 8, &blen);
        dn_tensor_desc *tt = NULL;
        int64_t n = 0, cap = 0;
        CHECK_OK(dn_safetensors_parse(A(), b, blen, "ok", 7, &tt, &n, &cap));
        ck_assert_int_eq(n, k == 2 ? 0 : (int64_t)k + 1);
        if (n) ck_assert_int_eq(tt[0].file_index, 7);
        dn_tensor_descs_free(&g_alloc, tt, n);
        ck_assert_int_eq(g_cnt.live, 0);
        free(b);
    }

    /* truncated at every byte of the header and at many points in the data */
    for (size_t n = 0; n < len; n++) {
        if (n > 8 + hl + 8 && n % 37 != 0 && n != len - 1) continue;
        char label[64];
        snprintf(label, sizeof label, "truncated to %zu of %zu", n, len);
        expect_st_fails(dir, file, n, DANU_ERR_FORMAT, label);
    }

    /* header length field: every single-bit flip, +-1, 0, everything */
    for (int bit = 0; bit < 64; bit++) {
        uint8_t *b = malloc(len);
        memcpy(b, file, len);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        char label[64];
        snprintf(label, sizeof label, "header length bit %d flipped", bit);
        expect_st_fails(dir, b, len, DANU_ERR_FORMAT, label);
        free(b);
    }
    static const int64_t deltas[] = { 1, -1 };
    for (int k = 0; k < 2; k++) {
        uint8_t *b = malloc(len);
        memcpy(b, file, len);
        uint64_t v = hl + (uint64_t)deltas[k];
        for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
        expect_st_fails(dir, b, len, DANU_ERR_FORMAT, "header length off by one");
        free(b);
    }
    static const uint64_t lens[] = { 0, 1, ~0ull, 1ull << 63 };
    for (int k = 0; k < 4; k++) {
        uint8_t *b = malloc(len);
        memcpy(b, file, len);
        for (int i = 0; i < 8; i++) b[i] = (uint8_t)(lens[k] >> (8 * i));
        expect_st_fails(dir, b, len, DANU_ERR_FORMAT, "absurd header length");
        free(b);
    }
    {   /* whole rest of the file as header */
        uint8_t *b = malloc(len);
        memcpy(b, file, len);
        for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)(len - 8) >> (8 * i));
        expect_st_fails(dir, b, len, DANU_ERR_FORMAT, "header length = file size - 8");
        free(b);
    }

    /* dtypes */
    static const char *const unsupported[] = { "F64", "I64", "U8", "BOOL", "I32", "F8_E4M3", "I8", "U16" };
    for (size_t k = 0; k < sizeof unsupported / sizeof unsupported[0]; k++) {
        char to[64];
        snprintf(to, sizeof to, "\"dtype\":\"%s\",\"shape\":[],", unsupported[k]);
        expect_repl_fails(dir, "\"dtype\":\"F32\",\"shape\":[],", to, DANU_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(dn_lasterr(), "b.scalar") != NULL, "message does not name the tensor: %s", dn_lasterr());
    }
    expect_repl_fails(dir, "\"dtype\":\"F32\"", "\"dtype\":\"XX\"", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "\"dtype\":\"F32\"", "\"dtype\":\"f32\"", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "\"dtype\":\"F32\"", "\"dtype\":32", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "\"dtype\":\"F32\",", "", DANU_ERR_FORMAT);
    expect_repl_ok("\"dtype\":\"BF16\",\"shape\":[64,4]", "\"dtype\":\"F16\",\"shape\":[64,4]", DANU_TYPE_F16, 2, 64);

    /* shapes */
    expect_repl_fails(dir, "[64,4]", "[4611686018427387904,4]", DANU_ERR_FORMAT);     /* n_elements overflows */
    expect_repl_fails(dir, "[64,4]", "[4611686018427387904,2]", DANU_ERR_FORMAT);     /* *2 bytes overflows */
    expect_repl_fails(dir, "[64,4]", "[9223372036854775807,9223372036854775807]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[64,4]", "[18446744073709551616,1]", DANU_ERR_FORMAT);    /* beyond int64 */
    expect_repl_fails(dir, "[64,4]", "[2147483648,2147483648,2147483648,2]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[64,4]", "[-64,-4]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[64,4]", "[64.0,4]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[64,4]", "[63,4]", DANU_ERR_FORMAT);                      /* byte count mismatch */
    expect_repl_fails(dir, "[64,4]", "[65,4]", DANU_ERR_FORMAT);
    expect_repl_ok("[64,4]", "[256]", DANU_TYPE_BF16, 1, 256);                        /* same size: valid */
    expect_repl_ok("[64,4]", "[4,1,16,4]", DANU_TYPE_BF16, 4, 4);
    expect_repl_fails(dir, "[64,4]", "[64,4,1,1,1]", DANU_ERR_UNSUPPORTED);
    expect_repl_fails(dir, "[64,4]", "\"64x4\"", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[64,4]", "[\"64\",4]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "\"shape\":[64,4],", "", DANU_ERR_FORMAT);

    /* offsets */
    expect_repl_fails(dir, "[540,1052]", "[540,1053]", DANU_ERR_FORMAT);             /* past the end */
    expect_repl_fails(dir, "[540,1052]", "[541,1053]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[0,99999999999]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[1052,540]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[540]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[540,1052,1052]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[-1,511]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[18446744073709551615,511]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[\"540\",1052]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[540.0,1052]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "\"data_offsets\":[540,1052]", "\"offsets\":[540,1052]", DANU_ERR_FORMAT);
    /* overlaps */
    expect_repl_fails(dir, "[516,540]", "[500,524]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[516,540]", "[0,24]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[512,516]", "[538,542]", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "[540,1052]", "[0,512]", DANU_ERR_FORMAT);                 /* same range twice */
    ck_assert_msg(strstr(dn_lasterr(), "overlap") != NULL, "%s", dn_lasterr());

    /* header structure */
    expect_repl_fails(dir, "{\"format\":\"pt\"}", "\"pt\"", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "{\"format\":\"pt\"}", "{\"format\":1}", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "{\"format\":\"pt\"}", "{\"a\":{}}", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[512,516]}", "5", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[512,516]}", "null", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "{\"__metadata__\"", "[{\"__metadata__\"", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "{\"__metadata__\"", " {\"__metadata__\"", DANU_ERR_FORMAT); /* must start with '{' */
    expect_repl_fails(dir, "]}}", "]},}", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "\"d.k\"", "\"d.\\ud800\"", DANU_ERR_FORMAT);
    expect_repl_fails(dir, "{\"dtype\":\"F32\"", "{\"dtype\":\"F32\"\x01", DANU_ERR_FORMAT);

    /* past the 100 MB header limit: a sparse file big enough to hold it */
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        uint8_t head[9];
        uint64_t big = 100000001ull;
        for (int i = 0; i < 8; i++) head[i] = (uint8_t)(big >> (8 * i));
        head[8] = '{';
        write_file(dir, "model.safetensors", head, 9);
        ck_assert(truncate(path, (off_t)(big + 100)) == 0);
        expect_dir_fails(dir, DANU_ERR_FORMAT, "header of 100000001 bytes");
        ck_assert_msg(strstr(dn_lasterr(), "100 MB") != NULL, "%s", dn_lasterr());
    }

    /* directory-level failures */
    remove_file(dir, "model.safetensors");
    expect_dir_fails(dir, DANU_ERR_FORMAT, "no weights");
    ck_assert(strstr(dn_lasterr(), "model.safetensors") && strstr(dn_lasterr(), "model.safetensors.index.json"));
    write_file(dir, "model.safetensors", file, len);
    remove_file(dir, "config.json");
    expect_dir_fails(dir, DANU_ERR_FORMAT, "config.json missing");
    ck_assert(strstr(dn_lasterr(), "config.json") != NULL);
    write_str(dir, "config.json", "{\"hidden_size\": 256,");
    expect_dir_fails(dir, DANU_ERR_FORMAT, "config.json truncated");
    write_str(dir, "config.json", "[1]");
    expect_dir_fails(dir, DANU_ERR_FORMAT, "config.json not an object");
    copy_data("tiny-b-hf/config.json", dir, "config.json");
    write_str(dir, "tokenizer_config.json", "{\"chat_template\": \"x}");
    expect_dir_fails(dir, DANU_ERR_FORMAT, "tokenizer_config.json bad");
    ck_assert(strstr(dn_lasterr(), "tokenizer_config.json") != NULL);
    remove_file(dir, "tokenizer_config.json");
    write_str(dir, "generation_config.json", "{\"bos_token_id\": 01}");
    expect_dir_fails(dir, DANU_ERR_FORMAT, "generation_config.json bad");
    remove_file(dir, "generation_config.json");
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    expect_dir_fails(missing, DANU_ERR_IO, "no such directory");
    snprintf(missing, sizeof missing, "%s/config.json", dir);
    expect_dir_fails(missing, DANU_ERR_IO, "a file, not a directory");

    /* and the directory is fine again */
    CHECK_OK(dn_hfdir_open(A(), dir, 0, NULL, NULL, NULL, &h));
    ck_assert_int_eq(h.n_tensors, 4);
    dn_hfdir_close(&g_alloc, &h);
    ck_assert_int_eq(g_cnt.live, 0);

    printf("single-file corrupt variants: %d\n", n_variants);
    free(file);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- sharded directory with a rewritten index ---- */
static char *make_index(void)
{
    char *s = malloc(4096);
    size_t n = (size_t)snprintf(s, 4096, "{\"metadata\":{\"total_size\":3295744},\"weight_map\":{");
    for (int k = 0; k < 20; k++)
        n += (size_t)snprintf(s + n, 4096 - n, "%s\"%s\":\"%s\"", k ? "," : "", tiny_b[k].name, shard_file(tiny_b[k].shard));
    snprintf(s + n, 4096 - n, "}}");
    return s;
}

static void expect_index_fails(const char *dir, const char *index, danu_status want, const char *label)
{
    write_str(dir, "model.safetensors.index.json", index);
    expect_dir_fails(dir, want, label);
}

static void expect_index_repl_fails(const char *dir, const char *base, const char *from, const char *to, danu_status want)
{
    char *s = repl(base, from, to);
    char label[512];
    snprintf(label, sizeof label, "index: %s -> %s", from, to);
    expect_index_fails(dir, s, want, label);
    free(s);
}

START_TEST(test_safetensors_sharded_corrupt)
{
    char *dir = tu_tmpdir("st5");
    ck_assert_ptr_nonnull(dir);
    n_variants = 0;
    copy_data("tiny-b-hf/config.json", dir, "config.json");
    for (int k = 1; k <= 5; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tiny-b-hf/%s", shard_file(k));
        copy_data(rel, dir, shard_file(k));
    }
    char *index = make_index();
    write_str(dir, "model.safetensors.index.json", index);
    dn_hfdir h;
    CHECK_OK(dn_hfdir_open(A(), dir, 1, NULL, NULL, NULL, &h));
    ck_assert_int_eq(h.n_tensors, 20);
    dn_hfdir_close(&g_alloc, &h);

    const char *norm5 = "\"model.norm.weight\":\"model-00005-of-00005.safetensors\"";
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"model-00006-of-00005.safetensors\"", DANU_ERR_FORMAT);
    ck_assert(strstr(dn_lasterr(), "model-00006-of-00005.safetensors") != NULL);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"model-00001-of-00005.safetensors\"", DANU_ERR_FORMAT);
    ck_assert(strstr(dn_lasterr(), "model.norm.weight") != NULL);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"../x\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"../tiny-b-hf/model-00005-of-00005.safetensors\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"/etc/passwd\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"..\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\".\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"sub\\\\x\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":\"model-00005-of-00005.safetensors\\u0000x\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":5", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"model.norm.weight\":null", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, norm5, "\"lm_head.weight\":\"model-00005-of-00005.safetensors\"", DANU_ERR_FORMAT);
    ck_assert(strstr(dn_lasterr(), "lm_head.weight") != NULL);
    expect_index_repl_fails(dir, index, "\"weight_map\"", "\"weights\"", DANU_ERR_FORMAT);
    expect_index_repl_fails(dir, index, "{\"model.embed", "[{\"model.embed", DANU_ERR_FORMAT);
    expect_index_fails(dir, "{\"weight_map\":{}}", DANU_ERR_FORMAT, "empty weight_map");
    expect_index_fails(dir, "{\"weight_map\":[]}", DANU_ERR_FORMAT, "weight_map array");
    expect_index_fails(dir, "[]", DANU_ERR_FORMAT, "index is an array");
    size_t il = strlen(index);
    for (size_t cut = 0; cut + 1 < il; cut += 97) {
        char *s = strndup(index, cut);
        expect_index_fails(dir, s, DANU_ERR_FORMAT, "index truncated");
        free(s);
    }
    /* a tensor in two shards */
    copy_data("tiny-b-hf/model-00001-of-00005.safetensors", dir, "extra.safetensors");
    expect_index_repl_fails(dir, index, "\"model.embed_tokens.weight\":\"model-00001-of-00005.safetensors\"",
                            "\"model.embed_tokens.weight\":\"extra.safetensors\"", DANU_ERR_FORMAT);
    ck_assert_msg(strstr(dn_lasterr(), "twice") != NULL, "%s", dn_lasterr());
    remove_file(dir, "extra.safetensors");

    /* a listed shard file missing, corrupt or with an unsupported dtype */
    write_str(dir, "model.safetensors.index.json", index);
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s/%s", dir, shard_file(3));
    snprintf(to, sizeof to, "%s/moved", dir);
    ck_assert(rename(from, to) == 0);
    expect_dir_fails(dir, DANU_ERR_FORMAT, "shard 3 missing");
    ck_assert(rename(to, from) == 0);
    size_t sl;
    uint8_t *shard = tu_read(from, &sl);
    ck_assert_ptr_nonnull(shard);
    write_file(dir, shard_file(3), shard, sl - 1);
    expect_dir_fails(dir, DANU_ERR_FORMAT, "shard 3 truncated");
    ck_assert(strstr(dn_lasterr(), shard_file(3)) != NULL);
    char *p = memmem(shard, sl, "\"BF16\"", 6);
    ck_assert_ptr_nonnull(p);
    memcpy(p, "\"I16\" ", 6);
    write_file(dir, shard_file(3), shard, sl);
    expect_dir_fails(dir, DANU_ERR_UNSUPPORTED, "shard 3 I16");
    write_file(dir, shard_file(3), shard, 0);
    expect_dir_fails(dir, DANU_ERR_FORMAT, "shard 3 empty");
    free(shard);
    copy_data("tiny-b-hf/model-00003-of-00005.safetensors", dir, shard_file(3));

    /* model.safetensors wins over the index when both exist */
    copy_data("tiny-b-hf/model-00002-of-00005.safetensors", dir, "model.safetensors");
    ck_assert_int_eq(dn_hfdir_open(A(), dir, 1, NULL, NULL, NULL, &h), DANU_OK);
    ck_assert_int_eq(h.n_shards, 1);
    ck_assert_int_eq(h.n_tensors, 2);
    ck_assert_ptr_nonnull(dn_hfdir_find(&h, "model.layers.0.mlp.up_proj.weight"));
    check_tensor_values(dn_hfdir_find(&h, "model.layers.0.mlp.up_proj.weight"), &tiny_b[8], NULL, NULL);
    dn_hfdir_close(&g_alloc, &h);
    ck_assert_int_eq(g_cnt.live, 0);

    printf("sharded-directory corrupt variants: %d\n", n_variants);
    free(index);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_safetensors_tiny_b_sharded);
    tcase_add_test(tc, test_safetensors_read_path_identical);
    tcase_add_test(tc, test_safetensors_cancel);
    tcase_add_test(tc, test_safetensors_nomem);
    tcase_add_test(tc, test_safetensors_single_file_and_corrupt);
    tcase_add_test(tc, test_safetensors_sharded_corrupt);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    return failed ? 1 : 0;
}
