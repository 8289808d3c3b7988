/* test_synth.c - synthetic-weight generator: the spec's checksums, HF output
 * against the checkpoint transformers wrote, GGUF output against the files
 * llama.cpp's converter and quantizer wrote, and the writer's failure modes. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"
#include "gguf_testutil.h"
#include "model/synth.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/json.h"
#include "common/os.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "format/spm.h"
#include "quant/quant.h"
#include "text/tokenizer.h"

/* ---- helpers ---- */

static uint8_t *spm_bytes(size_t *len)
{
    uint8_t *b = tu_read(tu_data("llama2-tokenizer/tokenizer.model"), len);
    ck_assert_msg(b != NULL, "cannot read the Llama 2 tokenizer.model");
    return b;
}

/* Write cfg/seed/format/type to dir/name; returns the status, *path the
 * malloc'd output path. */
static danu_status synth_to(const char *dir, const char *name, const dn_synth_config *cfg, uint64_t seed,
                            int format, int32_t type, danu_progress_fn progress, void *user, char **path)
{
    size_t spm_len = 0;
    uint8_t *spm = spm_bytes(&spm_len);
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    dn_synth_request rq = { cfg, seed, format, type, p, spm, spm_len, progress, user, { NULL, NULL } };
    danu_status s = dn_synth_write(dn_alloc_libc(), &rq);
    free(spm);
    *path = p;
    return s;
}

static int path_exists(const char *p) { struct stat st; return lstat(p, &st) == 0; }

/* Sum in double of the bf16 values of elements [0, n) of a tensor. */
static void synth_sums(uint64_t seed, uint64_t t, int kind, int64_t fan_in, uint64_t n, double *first1000, double *all)
{
    double s = 0;
    *first1000 = NAN;
    for (uint64_t i = 0; i < n; i++) {
        s += dn_bf16_to_f32(dn_synth_value_bf16(seed, t, i, kind, fan_in));
        if (i == 999) *first1000 = s;
    }
    *all = s;
}

/* The spec lists sums with 16-17 significant digits. */
#define ck_sum(got, want) ck_assert_msg(fabs((got) - (want)) <= 1e-12 * fmax(1.0, fabs(want)), \
                                        "sum %.17g, spec %.17g", (got), (want))

/* ---- value function and configurations ---- */

START_TEST(test_synth_checksums_tiny_b)
{
    const dn_synth_config *c = dn_synth_config_find("tiny-b");
    ck_assert_ptr_nonnull(c);
    double f, a;
    synth_sums(11, 0, DN_SYNTH_EMBED, 0, (uint64_t)c->vocab * c->hidden, &f, &a);
    ck_sum(f, -12.88318920135498);
    ck_sum(a, -120.12346565723419);
    synth_sums(11, 2, DN_SYNTH_LINEAR, c->hidden, (uint64_t)c->heads * c->head_dim * c->hidden, &f, &a);
    ck_sum(f, 3.538412094116211);
    ck_sum(a, 24.920381411910057);
}
END_TEST

START_TEST(test_synth_checksums_danube)
{
    const dn_synth_config *c = dn_synth_config_find("danube-1.8b");
    ck_assert_ptr_nonnull(c);
    uint64_t big = (uint64_t)c->vocab * c->hidden, lm = 1 + 9 * (uint64_t)c->layers + 1;
    ck_assert_uint_eq(lm, 218);
    double f, a;
    /* embed and lm_head in full take about a second together */
    synth_sums(1, 0, DN_SYNTH_EMBED, 0, big, &f, &a);
    ck_sum(f, -7.4097900390625);
    ck_sum(a, 4474.307971596718);
    synth_sums(1, 2, DN_SYNTH_LINEAR, c->hidden, (uint64_t)c->heads * c->head_dim * c->hidden, &f, &a);
    ck_sum(f, -0.9213166236877441);
    ck_sum(a, -55.93031412526034);
    synth_sums(1, lm, DN_SYNTH_LINEAR, c->hidden, big, &f, &a);
    ck_sum(f, -0.08076822757720947);
    ck_sum(a, -283.549780153553);
}
END_TEST

/* Norm values against a double-precision rendering of the spec: r*2^-4 + 1
 * is exact in double, so one cast to float is the spec's single rounding. */
START_TEST(test_synth_norm_values)
{
    int bad = 0;   /* counted: a ck_assert per element is slow in Check */
    for (uint64_t i = 0; i < 5000; i++) {
        uint64_t z = ((5ull << 48) | (3ull << 32) | i) + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        double r = (double)(z >> 40) / 16777216.0 * 2.0 - 1.0;
        float w = (float)(r / 16.0 + 1.0);
        uint32_t bits;
        memcpy(&bits, &w, 4);
        uint16_t want = (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
        bad += dn_synth_value_bf16(5, 3, i, DN_SYNTH_NORM, 0) != want;
        /* embedding values are r itself, exactly representable in float */
        float e = (float)r;
        memcpy(&bits, &e, 4);
        want = (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
        bad += dn_synth_value_bf16(5, 3, i, DN_SYNTH_EMBED, 0) != want;
    }
    ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(test_synth_configs)
{
    static const struct { const char *name; int32_t v[10]; int tied; } want[] = {
        /* vocab hidden heads kv hd ffn layers window max_ctx */
        { "danube-1.8b", { 32000, 2560, 32, 8, 80, 6912, 24, 4096, 16384 }, 0 },
        { "tiny-a", { 32000, 160, 2, 1, 80, 432, 2, 32, 512 }, 0 },
        { "tiny-b", { 1024, 256, 8, 2, 32, 688, 2, 8, 256 }, 1 },
        { "tiny-q", { 1024, 256, 4, 2, 64, 768, 2, 16, 256 }, 0 },
    };
    for (size_t i = 0; i < 4; i++) {
        const dn_synth_config *c = dn_synth_config_find(want[i].name);
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(c->name, want[i].name);
        int32_t got[9] = { c->vocab, c->hidden, c->heads, c->kv_heads, c->head_dim, c->ffn, c->layers,
                           c->window, c->max_ctx };
        for (int k = 0; k < 9; k++) ck_assert_int_eq(got[k], want[i].v[k]);
        ck_assert_int_eq(c->tied, want[i].tied);
        ck_assert(c->rope_theta == 10000.0f && c->rms_eps == 1e-5f);
    }
    ck_assert_ptr_null(dn_synth_config_find("danube-3"));
    ck_assert_ptr_null(dn_synth_config_find(NULL));
}
END_TEST

START_TEST(test_synth_safetensors_header)
{
    dn_st_entry e[3] = {
        { "a\"quoted\\name", DANU_TYPE_F32, 2, { 3, 5 } },
        { "scalar", DANU_TYPE_BF16, 0, { 0 } },
        { "v", DANU_TYPE_F16, 1, { 7 } },
    };
    FILE *f = tmpfile();
    ck_assert_int_eq(dn_safetensors_write_header(f, e, 3), DANU_OK);
    long hdr = ftell(f);
    ck_assert_int_eq(hdr % 8, 0);
    uint8_t data[60 + 2 + 14];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)i;
    ck_assert_uint_eq(fwrite(data, 1, sizeof data, f), sizeof data);
    size_t len = (size_t)ftell(f);
    uint8_t *buf = malloc(len);
    rewind(f);
    ck_assert_uint_eq(fread(buf, 1, len, f), len);
    fclose(f);
    ck_assert_uint_eq(dn_rd_u64(buf), (uint64_t)hdr - 8);
    ck_assert(!memcmp(buf + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31));
    dn_tensor_desc *t = NULL;
    int64_t n = 0, cap = 0;
    CHECK_OK(dn_safetensors_parse(dn_alloc_libc(), buf, len, "hdr", 0, &t, &n, &cap));
    ck_assert_int_eq(n, 3);
    const dn_tensor_desc *q = NULL, *v = NULL;
    for (int64_t i = 0; i < n; i++) {
        if (!strcmp(t[i].name, "a\"quoted\\name")) q = &t[i];
        if (!strcmp(t[i].name, "v")) v = &t[i];
    }
    ck_assert(q && q->type == DANU_TYPE_F32 && q->n_dims == 2 && q->dims[0] == 3 && q->dims[1] == 5);
    ck_assert(q->data == buf + hdr && q->nbytes == 60);
    ck_assert(v && v->type == DANU_TYPE_F16 && v->data == buf + hdr + 62 && v->nbytes == 14);
    dn_tensor_descs_free(dn_alloc_libc(), t, n);
    free(buf);
    /* only float types; nothing is written on a bad entry */
    dn_st_entry bad = { "q", DANU_TYPE_Q8_0, 1, { 32 } };
    f = tmpfile();
    ck_assert_int_eq(dn_safetensors_write_header(f, &bad, 1), DANU_ERR_UNSUPPORTED);
    ck_assert_int_eq(ftell(f), 0);
    fclose(f);
}
END_TEST

/* ---- HF output ---- */

static void open_hf(const char *dir, dn_hfdir *h)
{
    danu_status s = dn_hfdir_open(dn_alloc_libc(), dir, 1, NULL, NULL, NULL, h);
    ck_assert_msg(s == DANU_OK, "dn_hfdir_open(%s): %s", dir, dn_lasterr());
}

START_TEST(test_synth_hf_tiny_b_matches_transformers)
{
    char *dir = tu_tmpdir("synth"), *out;
    danu_status s = synth_to(dir, "tiny-b", dn_synth_config_find("tiny-b"), 11, DN_SYNTH_HF, DANU_TYPE_BF16,
                             NULL, NULL, &out);
    CHECK_OK(s);
    dn_hfdir mine, ref;
    open_hf(out, &mine);
    open_hf(tu_data("tiny-b-hf"), &ref);
    ck_assert_int_eq(mine.n_tensors, ref.n_tensors);   /* tied: no lm_head in either */
    ck_assert_int_eq(mine.n_tensors, 20);
    for (int64_t i = 0; i < ref.n_tensors; i++) {
        const dn_tensor_desc *r = &ref.tensors[i], *m = dn_hfdir_find(&mine, r->name);
        ck_assert_msg(m != NULL, "missing %s", r->name);
        ck_assert_int_eq(m->type, DANU_TYPE_BF16);
        ck_assert_int_eq(m->n_dims, r->n_dims);
        for (int d = 0; d < r->n_dims; d++) ck_assert_int_eq(m->dims[d], r->dims[d]);
        ck_assert_uint_eq(m->nbytes, r->nbytes);
        ck_assert_msg(memcmp(m->data, r->data, r->nbytes) == 0, "%s differs from transformers' bytes", r->name);
    }
    /* spec order inside the one file */
    ck_assert_str_eq(mine.tensors[0].name, "model.embed_tokens.weight");
    ck_assert_str_eq(mine.tensors[1].name, "model.layers.0.input_layernorm.weight");
    ck_assert_str_eq(mine.tensors[19].name, "model.norm.weight");
    for (int64_t i = 1; i < mine.n_tensors; i++) ck_assert(mine.tensors[i].data > mine.tensors[i - 1].data);

    /* config.json against transformers' */
    const char *ikeys[] = { "hidden_size", "intermediate_size", "max_position_embeddings", "num_attention_heads",
                            "num_hidden_layers", "num_key_value_heads", "head_dim", "vocab_size", "sliding_window",
                            "bos_token_id", "eos_token_id" };
    for (size_t k = 0; k < sizeof ikeys / sizeof ikeys[0]; k++) {
        int64_t a = -1, b = -2;
        ck_assert_msg(dn_json_get_int(mine.config, ikeys[k], &a) && dn_json_get_int(ref.config, ikeys[k], &b),
                      "config key %s", ikeys[k]);
        ck_assert_int_eq(a, b);
    }
    int tie = 0;
    double eps = 0, theta = 0;
    ck_assert(dn_json_get_bool(mine.config, "tie_word_embeddings", &tie) && tie == 1);
    ck_assert(dn_json_get_num(mine.config, "rms_norm_eps", &eps) && eps == 1e-5);
    ck_assert(dn_json_get_num(mine.config, "rope_theta", &theta) && theta == 10000.0);
    ck_assert_str_eq(dn_json_get_str(mine.config, "model_type"), "mistral");
    ck_assert_str_eq(dn_json_get_str(mine.config, "torch_dtype"), "bfloat16");
    const dn_json *arch = dn_json_get(mine.config, "architectures");
    ck_assert(arch && arch->type == DN_JSON_ARRAY && arch->n == 1);
    ck_assert_str_eq(arch->items[0].str, "MistralForCausalLM");
    ck_assert_ptr_nonnull(mine.generation_config);
    ck_assert_ptr_nonnull(mine.tokenizer_config);

    /* tokenizer.model: the first 1024 pieces of Llama 2's */
    ck_assert_ptr_nonnull(mine.tokenizer_model_path);
    size_t small_len = 0, big_len = 0;
    uint8_t *small = tu_read(mine.tokenizer_model_path, &small_len), *big = spm_bytes(&big_len);
    danu_tokenizer *ts = NULL, *tb = NULL;
    ck_assert_int_eq(dn_tokenizer_from_spm(dn_alloc_libc(), small, small_len, "small", &ts), DANU_OK);
    ck_assert_int_eq(dn_tokenizer_from_spm(dn_alloc_libc(), big, big_len, "big", &tb), DANU_OK);
    ck_assert_int_eq(dn_tokenizer_n_vocab(ts), 1024);
    int bad = 0;
    for (int32_t i = 0; i < 1024; i++) {
        size_t la, lb;
        const char *pa = dn_tokenizer_piece(ts, i, &la), *pb = dn_tokenizer_piece(tb, i, &lb);
        bad += la != lb || memcmp(pa, pb, la) != 0 || dn_tokenizer_score(ts, i) != dn_tokenizer_score(tb, i) ||
               dn_tokenizer_type(ts, i) != dn_tokenizer_type(tb, i);
    }
    ck_assert_int_eq(bad, 0);
    dn_tokenizer_free(ts);
    dn_tokenizer_free(tb);
    free(small);
    free(big);
    dn_hfdir_close(dn_alloc_libc(), &mine);
    dn_hfdir_close(dn_alloc_libc(), &ref);
    tu_rmtree(dir);
    free(out);
    free(dir);
}
END_TEST

/* F32 and F16 checkpoints hold the same bf16 values, converted exactly. */
START_TEST(test_synth_hf_f32_f16)
{
    char *dir = tu_tmpdir("synth"), *o32, *o16;
    const dn_synth_config *c = dn_synth_config_find("tiny-b");
    ck_assert_int_eq(synth_to(dir, "f32", c, 11, DN_SYNTH_HF, DANU_TYPE_F32, NULL, NULL, &o32), DANU_OK);
    ck_assert_int_eq(synth_to(dir, "f16", c, 11, DN_SYNTH_HF, DANU_TYPE_F16, NULL, NULL, &o16), DANU_OK);
    dn_hfdir m32, m16, ref;
    open_hf(o32, &m32);
    open_hf(o16, &m16);
    open_hf(tu_data("tiny-b-hf"), &ref);
    ck_assert_str_eq(dn_json_get_str(m32.config, "torch_dtype"), "float32");
    ck_assert_str_eq(dn_json_get_str(m16.config, "torch_dtype"), "float16");
    for (int64_t i = 0; i < ref.n_tensors; i++) {
        const dn_tensor_desc *r = &ref.tensors[i], *a = dn_hfdir_find(&m32, r->name), *b = dn_hfdir_find(&m16, r->name);
        ck_assert(a && b && a->type == DANU_TYPE_F32 && b->type == DANU_TYPE_F16);
        ck_assert(a->n_elements == r->n_elements && b->n_elements == r->n_elements);
        uint64_t bad = 0;
        for (uint64_t k = 0; k < r->n_elements; k++) {
            float v = dn_bf16_to_f32(dn_rd_u16(r->data + 2 * k));
            bad += dn_rd_f32(a->data + 4 * k) != v || dn_rd_u16(b->data + 2 * k) != dn_f32_to_fp16(v);
        }
        ck_assert_msg(bad == 0, "%s: %llu values differ", r->name, (unsigned long long)bad);
    }
    dn_hfdir_close(dn_alloc_libc(), &m32);
    dn_hfdir_close(dn_alloc_libc(), &m16);
    dn_hfdir_close(dn_alloc_libc(), &ref);
    tu_rmtree(dir);
    free(o32);
    free(o16);
    free(dir);
}
END_TEST

/* A small model named danube-1.8b gets Danube's metadata. */
START_TEST(test_synth_hf_danube_metadata)
{
    dn_synth_config c = *dn_synth_config_find("danube-1.8b");
    c.vocab = 512;
    c.hidden = 64;
    c.heads = 4;
    c.kv_heads = 1;
    c.head_dim = 16;
    c.ffn = 96;
    c.layers = 1;
    char *dir = tu_tmpdir("synth"), *out;
    ck_assert_int_eq(synth_to(dir, "d", &c, 1, DN_SYNTH_HF, DANU_TYPE_BF16, NULL, NULL, &out), DANU_OK);
    dn_hfdir h;
    open_hf(out, &h);
    ck_assert_int_eq(h.n_tensors, 1 + 9 + 2);
    ck_assert_str_eq(h.tensors[h.n_tensors - 1].name, "lm_head.weight");
    /* every key of the real chat config.json is there with its value, apart
     * from the shapes (changed above) and the _name_or_path */
    char *txt;
    size_t len;
    dn_json *real;
    ck_assert_int_eq(dn_read_file(tu_data("danube/chat-config.json"), dn_alloc_libc(), 1 << 20, &txt, &len), DANU_OK);
    ck_assert_int_eq(dn_json_parse(dn_alloc_libc(), txt, len, "chat-config", &real), DANU_OK);
    dn_free(dn_alloc_libc(), txt);
    /* numbers that do not depend on the shape */
    const char *same[] = { "bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings", "sliding_window",
                           "rms_norm_eps", "rope_theta", "attention_dropout", "initializer_range" };
    for (size_t k = 0; k < real->n; k++) {
        const char *key = real->keys[k];
        const dn_json *a = &real->items[k], *b = dn_json_get(h.config, key);
        if (!strcmp(key, "_name_or_path")) continue;
        ck_assert_msg(b != NULL, "config.json lacks %s", key);
        ck_assert_int_eq(a->type, b->type);
        int check = a->type != DN_JSON_NUMBER;
        for (size_t m = 0; m < sizeof same / sizeof same[0]; m++) check |= !strcmp(key, same[m]);
        if (!check) continue;
        if (a->type == DN_JSON_NUMBER) ck_assert_msg(a->number == b->number, "%s", key);
        if (a->type == DN_JSON_STRING) ck_assert_str_eq(a->str, b->str);
        if (a->type == DN_JSON_BOOL) ck_assert_int_eq(a->boolean, b->boolean);
        if (a->type == DN_JSON_ARRAY) ck_assert(a->n == 1 && b->n == 1 && !strcmp(a->items[0].str, b->items[0].str));
    }
    int64_t hd = 0;
    ck_assert(dn_json_get_int(h.config, "head_dim", &hd) && hd == 16);
    dn_json_free(dn_alloc_libc(), real);
    /* tokenizer_config.json: the same chat template and flags as Danube's */
    ck_assert_int_eq(dn_read_file(tu_data("danube/tokenizer_config.json"), dn_alloc_libc(), 1 << 20, &txt, &len), DANU_OK);
    ck_assert_int_eq(dn_json_parse(dn_alloc_libc(), txt, len, "tokenizer_config", &real), DANU_OK);
    dn_free(dn_alloc_libc(), txt);
    ck_assert_ptr_nonnull(h.tokenizer_config);
    ck_assert_str_eq(dn_json_get_str(h.tokenizer_config, "chat_template"), dn_json_get_str(real, "chat_template"));
    int v = 0;
    ck_assert(dn_json_get_bool(h.tokenizer_config, "add_bos_token", &v) && v == 1);
    ck_assert(dn_json_get_bool(h.tokenizer_config, "legacy", &v) && v == 0);
    dn_json_free(dn_alloc_libc(), real);
    int64_t pad = -1;
    ck_assert(dn_json_get_int(h.generation_config, "pad_token_id", &pad) && pad == 0);
    dn_hfdir_close(dn_alloc_libc(), &h);
    tu_rmtree(dir);
    free(out);
    free(dir);
}
END_TEST

/* ---- GGUF output ---- */


/* Tensor bytes of mine vs ref by name: 1 if the same type and shape; counts
 * differing blocks (type block size) into *diff_blocks. */
static int compare_tensor(const dn_tensor_desc *m, const dn_tensor_desc *r, uint64_t *diff_blocks, uint64_t *blocks)
{
    if (m->type != r->type || m->n_dims != r->n_dims || m->nbytes != r->nbytes) return 0;
    for (int d = 0; d < m->n_dims; d++) if (m->dims[d] != r->dims[d]) return 0;
    const dn_type_info *ti = dn_type_get(m->type);
    for (uint64_t o = 0; o < m->nbytes; o += ti->type_size) {
        (*blocks)++;
        if (memcmp(m->data + o, r->data + o, ti->type_size)) (*diff_blocks)++;
    }
    return 1;
}

START_TEST(test_synth_gguf_bf16_matches_llamacpp)
{
    char *dir = tu_tmpdir("synth"), *out;
    danu_status s = synth_to(dir, "tiny-q.gguf", dn_synth_config_find("tiny-q"), 17, DN_SYNTH_GGUF, DANU_TYPE_BF16,
                             NULL, NULL, &out);
    CHECK_OK(s);
    gfile m, r;
    gopen(out, &m);
    gopen(tu_data("gguf-llamacpp/tiny-q-bf16.gguf"), &r);
    ck_assert_uint_eq(dn_gguf_version(m.g), 3);
    /* tensors: same order, names, types, shapes, offsets and bytes */
    ck_assert_int_eq(dn_gguf_n_tensors(m.g), dn_gguf_n_tensors(r.g));
    for (int64_t i = 0; i < dn_gguf_n_tensors(r.g); i++) {
        const dn_tensor_desc *a = dn_gguf_tensor(m.g, i), *b = dn_gguf_tensor(r.g, i);
        ck_assert_str_eq(a->name, b->name);
        ck_assert_uint_eq(a->file_offset - dn_gguf_data_offset(m.g), b->file_offset - dn_gguf_data_offset(r.g));
        uint64_t diff = 0, blocks = 0;
        ck_assert_msg(compare_tensor(a, b, &diff, &blocks), "%s: type or shape differs", a->name);
        ck_assert_msg(diff == 0, "%s: %llu of %llu values differ", a->name, (unsigned long long)diff,
                      (unsigned long long)blocks);
    }
    /* metadata: every key of llama.cpp's file is there with the same value
     * except general.name; ours adds alignment and the sliding window */
    for (int64_t i = 0; i < dn_gguf_n_kv(r.g); i++) {
        const char *key = dn_gguf_key(r.g, i);
        if (!strcmp(key, "general.name")) continue;
        ck_assert_msg(same_kv(m.g, r.g, key), "metadata %s differs from llama.cpp's", key);
    }
    const char *name;
    uint64_t len, v = 0;
    ck_assert(dn_gguf_get_str(m.g, "general.name", &name, &len) && len == 6 && !memcmp(name, "tiny-q", 6));
    ck_assert(dn_gguf_get_u64(m.g, "general.alignment", &v) && v == 32);
    ck_assert(dn_gguf_get_u64(m.g, "llama.attention.sliding_window", &v) && v == 16);
    ck_assert_int_eq(dn_gguf_n_kv(m.g), dn_gguf_n_kv(r.g) + 2);
    ck_assert_int_lt(dn_gguf_find(m.g, "tokenizer.chat_template"), 0);
    gclose(&m);
    gclose(&r);
    tu_rmtree(dir);
    free(out);
    free(dir);
}
END_TEST

/* 1 if dn_quantize_row quantizes a row of this type. */
static int have_quantizer(int32_t type)
{
    float x[256] = { 0.5f };
    uint8_t buf[512];
    return dn_quantize_row(type, x, buf, 256) == 0;
}

/* Our GGUF of type `type` vs llama-quantize's file, tensor by tensor. A
 * tensor llama-quantize stored in another type (output.weight is Q6_K in its
 * Q4_0 file) is compared against our bf16 values quantized to that type. */
static void compare_quantized(int32_t type, const char *ref_name, uint32_t ftype)
{
    CHECK(have_quantizer(type), "dn_quantize_row(%s) fails on a plain row", dn_type_get(type)->name);
    char *dir = tu_tmpdir("synth"), *out;
    const dn_synth_config *c = dn_synth_config_find("tiny-q");
    danu_status s = synth_to(dir, "q.gguf", c, 17, DN_SYNTH_GGUF, type, NULL, NULL, &out);
    CHECK_OK(s);
    gfile m, r;
    gopen(out, &m);
    gopen(tu_data(ref_name), &r);
    uint64_t ft = 0;
    ck_assert(dn_gguf_get_u64(m.g, "general.file_type", &ft) && ft == ftype);
    ck_assert(same_kv(m.g, r.g, "general.file_type"));
    ck_assert_int_eq(dn_gguf_n_tensors(m.g), dn_gguf_n_tensors(r.g));
    uint64_t diff = 0, blocks = 0, other = 0;
    for (int64_t i = 0; i < dn_gguf_n_tensors(r.g); i++) {
        const dn_tensor_desc *b = dn_gguf_tensor(r.g, i), *a = dn_gguf_find_tensor(m.g, b->name);
        ck_assert_msg(a != NULL, "missing %s", b->name);
        if (b->type != a->type) {
            /* llama-quantize's own choice for this tensor: regenerate it */
            ck_assert_str_eq(b->name, "output.weight");
            ck_assert_int_eq(a->type, type);
            int64_t rows = b->dims[0], cols = b->dims[1];
            uint64_t rb = dn_type_row_bytes(b->type, (uint64_t)cols);
            float *row = malloc((size_t)cols * sizeof *row);
            uint8_t *q = malloc(rb);
            uint64_t t = 1 + 9 * (uint64_t)c->layers + 1;
            for (int64_t y = 0; y < rows; y++) {
                for (int64_t x = 0; x < cols; x++)
                    row[x] = dn_bf16_to_f32(dn_synth_value_bf16(17, t, (uint64_t)(y * cols + x), DN_SYNTH_LINEAR, cols));
                if (dn_quantize_row(b->type, row, q, cols) != 0) ck_abort_msg("cannot quantize to type %d", b->type);
                for (uint64_t o = 0; o < rb; o += dn_type_get(b->type)->type_size) {
                    blocks++;
                    if (memcmp(q + o, b->data + (uint64_t)y * rb + o, dn_type_get(b->type)->type_size)) diff++;
                }
            }
            free(row);
            free(q);
            other++;
            continue;
        }
        ck_assert_msg(compare_tensor(a, b, &diff, &blocks), "%s: shape differs", b->name);
    }
    printf("synth %s vs %s: %llu of %llu blocks differ (rounding ties), %llu tensor(s) of another type\n",
           dn_type_get(type)->name, ref_name, (unsigned long long)diff, (unsigned long long)blocks,
           (unsigned long long)other);
    /* ties are rare: a handful of blocks at most */
    ck_assert_msg(diff * 1000 <= blocks, "%llu of %llu blocks differ", (unsigned long long)diff,
                  (unsigned long long)blocks);
    gclose(&m);
    gclose(&r);
    tu_rmtree(dir);
    free(out);
    free(dir);
}

START_TEST(test_synth_gguf_f16_matches_llamacpp) { compare_quantized(DANU_TYPE_F16, "gguf-llamacpp/tiny-q-F16.gguf", 1); }
END_TEST
START_TEST(test_synth_gguf_q8_0_matches_llamacpp) { compare_quantized(DANU_TYPE_Q8_0, "gguf-llamacpp/tiny-q-Q8_0.gguf", 7); }
END_TEST
START_TEST(test_synth_gguf_q4_0_matches_llamacpp) { compare_quantized(DANU_TYPE_Q4_0, "gguf-llamacpp/tiny-q-Q4_0.gguf", 2); }
END_TEST

/* Rows that do not fit the block size fall back as llama.cpp's quantizer
 * does (q4_K -> q5_0), then to f16; norms
 * are F32; the tied model has no output.weight; danube metadata. */
START_TEST(test_synth_gguf_fallback_types)
{
    CHECK(have_quantizer(DANU_TYPE_Q4_K) && have_quantizer(DANU_TYPE_Q8_0), "dn_quantize_row(q4_K or q8_0) fails");
    dn_synth_config c = *dn_synth_config_find("danube-1.8b");
    c.vocab = 600;
    c.hidden = 256;    /* multiple of 256: q4_K */
    c.heads = 3;
    c.kv_heads = 1;
    c.head_dim = 32;   /* o_proj rows of 96: q5_0 */
    c.ffn = 200;       /* down_proj rows of 200: f16 */
    c.layers = 1;
    c.tied = 1;
    char *dir = tu_tmpdir("synth"), *out;
    danu_status s = synth_to(dir, "f.gguf", &c, 3, DN_SYNTH_GGUF, DANU_TYPE_Q4_K, NULL, NULL, &out);
    CHECK_OK(s);
    gfile m;
    gopen(out, &m);
    const struct { const char *name; int32_t type; } want[] = {
        { "token_embd.weight", DANU_TYPE_Q4_K }, { "blk.0.attn_norm.weight", DANU_TYPE_F32 },
        { "blk.0.attn_q.weight", DANU_TYPE_Q4_K }, { "blk.0.attn_output.weight", DANU_TYPE_Q5_0 },
        { "blk.0.ffn_down.weight", DANU_TYPE_F16 }, { "blk.0.ffn_up.weight", DANU_TYPE_Q4_K },
        { "output_norm.weight", DANU_TYPE_F32 },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const dn_tensor_desc *t = dn_gguf_find_tensor(m.g, want[i].name);
        ck_assert_msg(t && t->type == want[i].type, "%s", want[i].name);
    }
    ck_assert_ptr_null(dn_gguf_find_tensor(m.g, "output.weight"));
    ck_assert_int_eq(dn_gguf_n_tensors(m.g), 11);
    /* ffn_down in f16 holds the bf16 values exactly */
    const dn_tensor_desc *d = dn_gguf_find_tensor(m.g, "blk.0.ffn_down.weight");
    uint64_t bad = 0;
    for (uint64_t i = 0; i < d->n_elements; i++)
        bad += dn_rd_u16(d->data + 2 * i) !=
               dn_f32_to_fp16(dn_bf16_to_f32(dn_synth_value_bf16(3, 9, i, DN_SYNTH_LINEAR, 200)));
    ck_assert_uint_eq(bad, 0);
    /* q rows permuted per head (head_dim 32): GGUF row h*32+2j+s = HF row h*32+16s+j */
    const dn_tensor_desc *q = dn_gguf_find_tensor(m.g, "blk.0.attn_q.weight");
    for (int64_t g = 0; g < 96; g++) {
        int64_t h = g / 32, w = g % 32, src = h * 32 + (w % 2) * 16 + w / 2;
        float want_row[256];
        uint8_t qb[144];
        for (int x = 0; x < 256; x++)
            want_row[x] = dn_bf16_to_f32(dn_synth_value_bf16(3, 2, (uint64_t)(src * 256 + x), DN_SYNTH_LINEAR, 256));
        bad += dn_quantize_row(DANU_TYPE_Q4_K, want_row, qb, 256) != 0 || memcmp(qb, q->data + g * 144, 144) != 0;
    }
    ck_assert_uint_eq(bad, 0);
    const char *str;
    uint64_t len, v;
    ck_assert(dn_gguf_get_str(m.g, "general.name", &str, &len) && len == 15 && !memcmp(str, "H2O Danube 1.8B", 15));
    ck_assert(dn_gguf_get_str(m.g, "tokenizer.chat_template", &str, &len) && len > 100);
    ck_assert(dn_gguf_get_u64(m.g, "general.file_type", &v) && v == 14);
    ck_assert(dn_gguf_get_u64(m.g, "tokenizer.ggml.padding_token_id", &v) && v == 0);
    ck_assert(dn_gguf_get_u64(m.g, "llama.attention.sliding_window", &v) && v == 4096);
    ck_assert(dn_gguf_get_u64(m.g, "llama.context_length", &v) && v == 16384);
    int32_t et;
    ck_assert(dn_gguf_get_arr(m.g, "tokenizer.ggml.tokens", &et, &v) && v == 600);
    gclose(&m);
    tu_rmtree(dir);
    free(out);
    free(dir);
}
END_TEST

/* ---- failure modes ---- */

START_TEST(test_synth_existing_output_is_error)
{
    char *dir = tu_tmpdir("synth"), *out;
    const dn_synth_config *c = dn_synth_config_find("tiny-b");
    char path[4200];
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    FILE *f = fopen(path, "wb");
    fputs("keep", f);
    fclose(f);
    danu_status s = synth_to(dir, "x.gguf", c, 11, DN_SYNTH_GGUF, DANU_TYPE_BF16, NULL, NULL, &out);
    ck_assert_int_eq(s, DANU_ERR_IO);
    ck_assert_ptr_nonnull(strstr(dn_lasterr(), "exists"));
    size_t len;
    uint8_t *b = tu_read(path, &len);
    ck_assert(b && len == 4 && !memcmp(b, "keep", 4));
    free(b);
    free(out);
    snprintf(path, sizeof path, "%s/d", dir);
    ck_assert_int_eq(mkdir(path, 0777), 0);
    ck_assert_int_eq(synth_to(dir, "d", c, 11, DN_SYNTH_HF, DANU_TYPE_BF16, NULL, NULL, &out), DANU_ERR_IO);
    free(out);
    /* bad requests */
    ck_assert_int_eq(synth_to(dir, "q", c, 11, DN_SYNTH_HF, DANU_TYPE_Q4_0, NULL, NULL, &out), DANU_ERR_UNSUPPORTED);
    ck_assert(!path_exists(out));
    free(out);
    ck_assert_int_eq(synth_to(dir, "q", c, 11, 7, DANU_TYPE_BF16, NULL, NULL, &out), DANU_ERR_INVALID_ARG);
    free(out);
    dn_synth_config big = *c;
    big.vocab = 40000;   /* more than the tokenizer's 32000 pieces */
    ck_assert_int_eq(synth_to(dir, "q", &big, 11, DN_SYNTH_GGUF, DANU_TYPE_BF16, NULL, NULL, &out), DANU_ERR_INVALID_ARG);
    ck_assert(!path_exists(out));
    free(out);
    /* petabytes: refused before anything is written */
    dn_synth_config huge = { "huge", 32000, 65536, 512, 512, 128, 65536, 100, 0, 4096, 10000.0f, 1e-5f, 0 };
    ck_assert_int_eq(synth_to(dir, "huge", &huge, 1, DN_SYNTH_HF, DANU_TYPE_BF16, NULL, NULL, &out), DANU_ERR_IO);
    ck_assert_msg(strstr(dn_lasterr(), "not enough disk space") != NULL, "%s", dn_lasterr());
    ck_assert(!path_exists(out));
    free(out);
    /* a trailing slash names the directory itself */
    ck_assert_int_eq(synth_to(dir, "slash/", c, 11, DN_SYNTH_HF, DANU_TYPE_BF16, NULL, NULL, &out), DANU_OK);
    snprintf(path, sizeof path, "%s/slash/model.safetensors", dir);
    ck_assert(path_exists(path));
    free(out);
    dn_synth_request rq = { c, 1, DN_SYNTH_HF, DANU_TYPE_BF16, "/nonexistent/x", NULL, 0, NULL, NULL, { NULL, NULL } };
    ck_assert_int_eq(dn_synth_write(dn_alloc_libc(), &rq), DANU_ERR_INVALID_ARG);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

typedef struct prog {
    int calls, cancel_at;
    float last;
    int monotonic;
} prog;

static int32_t on_progress(void *user, float frac)
{
    prog *p = user;
    if (frac < p->last || frac > 1.0f) p->monotonic = 0;
    p->last = frac;
    return ++p->calls == p->cancel_at;
}

START_TEST(test_synth_progress_and_cancel)
{
    char *dir = tu_tmpdir("synth"), *out;
    const dn_synth_config *c = dn_synth_config_find("tiny-q");
    for (int format = DN_SYNTH_HF; format <= DN_SYNTH_GGUF; format++) {
        prog p = { 0, 0, 0.0f, 1 };
        ck_assert_int_eq(synth_to(dir, "full", c, 17, format, DANU_TYPE_BF16, on_progress, &p, &out), DANU_OK);
        ck_assert_int_eq(p.calls, 21);   /* one per tensor */
        ck_assert(p.monotonic && p.last == 1.0f);
        tu_rmtree(dir);   /* tu_rmtree removes the whole dir: make it again */
        free(dir);
        free(out);
        dir = tu_tmpdir("synth");
        prog q = { 0, 5, 0.0f, 1 };
        ck_assert_int_eq(synth_to(dir, "cut", c, 17, format, DANU_TYPE_BF16, on_progress, &q, &out), DANU_ERR_CANCELLED);
        ck_assert_int_eq(q.calls, 5);
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        ck_assert(!path_exists(out) && !path_exists(tmp));
        ck_assert_int_eq(rmdir(dir), 0);   /* nothing left inside */
        ck_assert_int_eq(mkdir(dir, 0700), 0);
        free(out);
    }
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* Fault injection: the k-th allocation fails, for every k, on both paths.
 * Every failure is NOMEM with nothing live and no output left behind. */
typedef struct fail_alloc {
    long n, fail_at;
    long live;
} fail_alloc;

static void *fa_malloc(void *u, size_t n)
{
    fail_alloc *f = u;
    if (++f->n == f->fail_at) return NULL;
    size_t *p = malloc(n + 16);
    if (!p) return NULL;
    p[0] = n;
    f->live++;
    return (uint8_t *)p + 16;
}

static void fa_free(void *u, void *p)
{
    fail_alloc *f = u;
    if (!p) return;
    f->live--;
    free((uint8_t *)p - 16);
}

static void *fa_realloc(void *u, void *p, size_t n)
{
    fail_alloc *f = u;
    if (!p) return fa_malloc(u, n);
    if (++f->n == f->fail_at) return NULL;
    uint8_t *q = realloc((uint8_t *)p - 16, n + 16);
    if (!q) return NULL;
    ((size_t *)q)[0] = n;
    return q + 16;
}

START_TEST(test_synth_nomem_every_allocation)
{
    char *dir = tu_tmpdir("synth");
    size_t spm_len;
    uint8_t *spm = spm_bytes(&spm_len);
    char out[4200], tmp[4300];
    snprintf(out, sizeof out, "%s/m", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    const struct { const char *cfg; int format; int32_t type; } runs[] = {
        { "tiny-b", DN_SYNTH_HF, DANU_TYPE_BF16 }, { "tiny-q", DN_SYNTH_GGUF, DANU_TYPE_Q8_0 },
    };
    for (size_t r = 0; r < 2; r++) {
        long k = 1;
        for (;; k++) {
            fail_alloc f = { 0, k, 0 };
            dn_alloc a = { fa_malloc, fa_realloc, fa_free, &f };
            dn_synth_request rq = { dn_synth_config_find(runs[r].cfg), 5, runs[r].format, runs[r].type, out, spm,
                                    spm_len, NULL, NULL, { NULL, NULL } };
            danu_status s = dn_synth_write(&a, &rq);
            ck_assert_msg(f.live == 0, "%s: %ld blocks live after failing allocation %ld", runs[r].cfg, f.live, k);
            if (s == DANU_OK) break;
            ck_assert_msg(s == DANU_ERR_NOMEM, "%s: allocation %ld failed: status %d (%s)", runs[r].cfg, k, (int)s,
                          dn_lasterr());
            ck_assert_msg(!path_exists(out) && !path_exists(tmp), "%s: output left after failure %ld", runs[r].cfg, k);
        }
        ck_assert_int_gt(k, 5);
        printf("synth nomem: %s needs %ld allocations\n", runs[r].cfg, k - 1);
        tu_rmtree(dir);
        ck_assert_int_eq(mkdir(dir, 0700), 0);
    }
    free(spm);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("synth");
    TCase *tc = tcase_create("synth");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_synth_checksums_tiny_b);
    tcase_add_test(tc, test_synth_checksums_danube);
    tcase_add_test(tc, test_synth_norm_values);
    tcase_add_test(tc, test_synth_configs);
    tcase_add_test(tc, test_synth_safetensors_header);
    tcase_add_test(tc, test_synth_hf_tiny_b_matches_transformers);
    tcase_add_test(tc, test_synth_hf_f32_f16);
    tcase_add_test(tc, test_synth_hf_danube_metadata);
    tcase_add_test(tc, test_synth_gguf_bf16_matches_llamacpp);
    tcase_add_test(tc, test_synth_gguf_f16_matches_llamacpp);
    tcase_add_test(tc, test_synth_gguf_q8_0_matches_llamacpp);
    tcase_add_test(tc, test_synth_gguf_q4_0_matches_llamacpp);
    tcase_add_test(tc, test_synth_gguf_fallback_types);
    tcase_add_test(tc, test_synth_existing_output_is_error);
    tcase_add_test(tc, test_synth_progress_and_cancel);
    tcase_add_test(tc, test_synth_nomem_every_allocation);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    return failed ? 1 : 0;
}
