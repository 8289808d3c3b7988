/* test_corrupt.c - corrupt models through danu_model_load: a synthetic
 * GGUF (tiny-q, q4_0) and a synthetic HF directory (tiny-b, bf16, five
 * shards) are truncated, bit-flipped and edited field by field (absurd
 * dimensions, offsets outside the file or misaligned, unknown types,
 * duplicate and missing tensors, shapes that disagree with the config,
 * NaN/Inf in norms and, with DANU_OPT_VALIDATE, in matrices). Every variant
 * must fail with an error status and a message (naming the problem where
 * the case says so), return no model, and leave no allocation behind (a
 * counting allocator is used for every load). The parser suites
 * (test_gguf, test_safetensors) cover the byte-level batteries; this one
 * checks what reaches the user. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"
#include "format/gguf.h"
#include "common/alloc.h"
#include "common/bytes.h"

static char *tmp;
static long n_variants;

/* ------------------------------------------------------------------ */
/* counting allocator: no block may survive a failed load               */
/* ------------------------------------------------------------------ */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long live;
static void *c_malloc(void *u, size_t n) { (void)u; void *p = malloc(n); if (p) { pthread_mutex_lock(&mu); live++; pthread_mutex_unlock(&mu); } return p; }
static void *c_realloc(void *u, void *p, size_t n)
{
    (void)u;
    void *q = realloc(p, n);
    if (q && !p) { pthread_mutex_lock(&mu); live++; pthread_mutex_unlock(&mu); }
    return q;
}
static void c_free(void *u, void *p) { (void)u; if (p) { pthread_mutex_lock(&mu); live--; pthread_mutex_unlock(&mu); free(p); } }

/* Load path with validation on/off and mmap on/off. Returns the status;
 * checks the failure contract (or frees a model that loaded). */
static danu_status load(const char *path, int validate, int use_mmap)
{
    danu_allocator al = { sizeof al, c_malloc, c_realloc, c_free, NULL };
    danu_options *o;
    ck_assert_int_eq(danu_options_create(&al, &o), DANU_OK);
    danu_options_set_int(o, DANU_OPT_VALIDATE, validate);
    danu_options_set_int(o, DANU_OPT_USE_MMAP, use_mmap);
    danu_model *m = (danu_model *)o;
    danu_status s = danu_model_load(path, o, &m);
    n_variants++;
    if (s == DANU_OK) {
        ck_assert_ptr_nonnull(m);
        danu_model_free(m);
    } else {
        ck_assert_msg(m == NULL, "%s: a model came back with status %d", path, s);
        ck_assert_msg(danu_last_error()[0], "%s: status %d without a message", path, s);
        ck_assert_msg(s == DANU_ERR_FORMAT || s == DANU_ERR_UNSUPPORTED || s == DANU_ERR_IO,
                      "%s: status %d (%s)", path, s, danu_last_error());
    }
    danu_options_free(o);
    ck_assert_msg(live == 0, "%s: %ld blocks live after the load (status %d)", path, live, s);
    return s;
}

/* The load must fail; the message must contain `needle` (if any). */
static void expect_fail(const char *path, int validate, const char *needle, const char *label)
{
    danu_status s = load(path, validate, 0);
    ck_assert_msg(s != DANU_OK, "%s: loaded", label);
    if (needle)
        ck_assert_msg(strstr(danu_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", label,
                      danu_last_error(), needle);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* ------------------------------------------------------------------ */
/* GGUF                                                                 */
/* ------------------------------------------------------------------ */

static uint8_t *gbuf;      /* the intact file */
static size_t glen;
static char gpath[4200];   /* where variants are written */

typedef struct tinfo { char name[96]; size_t ndims_off, ne_off, type_off, offset_off; uint64_t data_off, nbytes; int32_t type; } tinfo;

/* Offsets of a tensor's fields in the table (the name is found as u64
 * length + bytes; tensor names are unique strings in the file). */
static tinfo find_tensor(const char *name)
{
    tinfo t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    uint8_t pat[104];
    size_t l = strlen(name);
    dn_wr_u64(pat, l);
    memcpy(pat + 8, name, l);
    uint8_t *p = memmem(gbuf, glen, pat, 8 + l);
    ck_assert_msg(p != NULL, "tensor %s not in the table", name);
    size_t off = (size_t)(p - gbuf) + 8 + l;
    t.ndims_off = off;
    uint32_t nd = dn_rd_u32(gbuf + off);
    t.ne_off = off + 4;
    t.type_off = t.ne_off + 8 * nd;
    t.offset_off = t.type_off + 4;
    t.type = (int32_t)dn_rd_u32(gbuf + t.type_off);
    dn_gguf *g;
    ck_assert_int_eq(dn_gguf_open(dn_alloc_libc(), gbuf, glen, "x", &g), DANU_OK);
    const dn_tensor_desc *d = dn_gguf_find_tensor(g, name);
    t.data_off = d->file_offset;
    t.nbytes = d->nbytes;
    dn_gguf_close(g);
    return t;
}

/* Offset of a key's value type field (the value follows it). */
static size_t find_key(const char *key)
{
    uint8_t pat[104];
    size_t l = strlen(key);
    dn_wr_u64(pat, l);
    memcpy(pat + 8, key, l);
    uint8_t *p = memmem(gbuf, glen, pat, 8 + l);
    ck_assert_msg(p != NULL, "key %s not found", key);
    return (size_t)(p - gbuf) + 8 + l;
}

/* Write gbuf with patches applied, load it, restore gbuf. */
typedef struct patch { size_t off; const void *bytes; size_t n; } patch;
static void gguf_case(const patch *ps, int np, int validate, const char *needle, const char *label)
{
    uint8_t *save[8];
    ck_assert_int_le(np, 8);
    for (int i = 0; i < np; i++) {
        save[i] = malloc(ps[i].n);
        memcpy(save[i], gbuf + ps[i].off, ps[i].n);
        memcpy(gbuf + ps[i].off, ps[i].bytes, ps[i].n);
    }
    write_file(gpath, gbuf, glen);
    for (int i = np - 1; i >= 0; i--) {   /* restored before any check can fail */
        memcpy(gbuf + ps[i].off, save[i], ps[i].n);
        free(save[i]);
    }
    expect_fail(gpath, validate, needle, label);
}
#define P1(off, val) (patch[]){ { (off), &(val), sizeof(val) } }, 1

START_TEST(test_corrupt_gguf_truncated)
{
    long before = n_variants;
    dn_gguf *g;
    ck_assert_int_eq(dn_gguf_open(dn_alloc_libc(), gbuf, glen, "x", &g), DANU_OK);
    size_t data = (size_t)dn_gguf_data_offset(g);
    dn_gguf_close(g);
    /* every byte of the first 512, then a stride through the header, then the data */
    for (size_t cut = 0; cut < glen; cut += cut < 512 ? 1 : cut < data ? 61 : (glen - data) / 97 + 1) {
        write_file(gpath, gbuf, cut);
        expect_fail(gpath, 0, cut < 64 ? NULL : "tiny-q", "truncated");
        if (cut % 7 == 0) {   /* the mapped path too */
            ck_assert_int_ne(load(gpath, 0, 1), DANU_OK);
        }
    }
    write_file(gpath, gbuf, glen - 1);
    expect_fail(gpath, 0, NULL, "last byte cut");
    fprintf(stderr, "gguf truncations: %ld variants\n", n_variants - before);
}
END_TEST

START_TEST(test_corrupt_gguf_flips)
{
    long before = n_variants;
    dn_gguf *g;
    ck_assert_int_eq(dn_gguf_open(dn_alloc_libc(), gbuf, glen, "x", &g), DANU_OK);
    size_t data = (size_t)dn_gguf_data_offset(g);
    dn_gguf_close(g);
    /* the fixed header, then a sample of every metadata/table byte: each flip
     * either still loads (a byte inside a string value) or fails cleanly */
    int loaded = 0, failed = 0;
    for (size_t pos = 0; pos < data; pos += pos < 24 ? 1 : 13) {
        static const uint8_t masks[] = { 0xff, 0x80, 0x01 };
        for (size_t k = 0; k < sizeof masks; k++) {
            gbuf[pos] ^= masks[k];
            write_file(gpath, gbuf, glen);
            danu_status s = load(gpath, 0, pos & 1);
            if (s == DANU_OK) loaded++; else failed++;
            gbuf[pos] ^= masks[k];
        }
    }
    ck_assert_int_gt(failed, 100);
    fprintf(stderr, "gguf byte flips: %ld variants (%d failed, %d still loaded)\n", n_variants - before, failed, loaded);
}
END_TEST

START_TEST(test_corrupt_gguf_fields)
{
    long before = n_variants;
    tinfo q = find_tensor("blk.0.attn_q.weight"), k = find_tensor("blk.0.attn_k.weight");
    tinfo up = find_tensor("blk.1.ffn_up.weight"), gate = find_tensor("blk.0.ffn_gate.weight");
    tinfo on = find_tensor("output_norm.weight"), an = find_tensor("blk.1.attn_norm.weight");
    tinfo emb = find_tensor("token_embd.weight");
    uint32_t u32;
    uint64_t u64;
    /* header */
    { const char bad[4] = "GGUX"; gguf_case((patch[]){ { 0, bad, 4 } }, 1, 0, "magic", "magic"); }
    u32 = 1; gguf_case(P1(4, u32), 0, "version", "version 1");
    u32 = 7; gguf_case(P1(4, u32), 0, "version", "version 7");
    u64 = UINT64_MAX; gguf_case(P1(8, u64), 0, NULL, "n_tensors max");
    u64 = 1ull << 40; gguf_case(P1(16, u64), 0, NULL, "n_kv huge");
    /* absurd dimensions and overflow of n_elements * type size */
    u64 = 1ull << 62; gguf_case(P1(q.ne_off, u64), 0, "blk.0.attn_q.weight", "ne0 2^62");
    { uint64_t ne[2] = { 1ull << 33, 1ull << 33 }; gguf_case((patch[]){ { q.ne_off, ne, 16 } }, 1, 0, "blk.0.attn_q.weight", "ne0*ne1 overflow"); }
    { uint64_t ne[2] = { 1ull << 40, 1ull << 22 }; gguf_case((patch[]){ { q.ne_off, ne, 16 } }, 1, 0, "blk.0.attn_q.weight", "nbytes overflow"); }
    u64 = 0; gguf_case(P1(q.ne_off, u64), 0, "blk.0.attn_q.weight", "ne0 0");
    u64 = 33; gguf_case(P1(q.ne_off, u64), 0, "blk.0.attn_q.weight", "ne0 not a block multiple");
    u32 = 5; gguf_case(P1(q.ndims_off, u32), 0, "blk.0.attn_q.weight", "n_dims 5");
    /* offsets */
    u64 = (uint64_t)glen * 2; gguf_case(P1(q.offset_off, u64), 0, "blk.0.attn_q.weight", "offset past the end");
    u64 = UINT64_MAX - 15; gguf_case(P1(q.offset_off, u64), 0, "blk.0.attn_q.weight", "offset overflow");
    u64 = dn_rd_u64(gbuf + q.offset_off) + 1; gguf_case(P1(q.offset_off, u64), 0, "blk.0.attn_q.weight", "misaligned");
    u64 = dn_rd_u64(gbuf + up.offset_off) + (glen - up.data_off); gguf_case(P1(up.offset_off, u64), 0, "blk.1.ffn_up.weight", "ends past the file");
    /* types */
    u32 = 99; gguf_case(P1(q.type_off, u32), 0, "blk.0.attn_q.weight", "type 99");
    u32 = 4; gguf_case(P1(q.type_off, u32), 0, "blk.0.attn_q.weight", "removed type 4");
    u32 = DANU_TYPE_Q8_0; gguf_case(P1(q.type_off, u32), 0, "overlaps", "type with a larger block: overlap");
    u32 = DANU_TYPE_Q4_0; gguf_case(P1(on.type_off, u32), 0, "output_norm.weight", "quantized norm");
    /* duplicate and missing tensors (same-length renames) */
    { char c = 'q'; gguf_case((patch[]){ { k.ndims_off - 8, &c, 1 } }, 1, 0, "blk.0.attn_q.weight", "duplicate tensor"); }
    { char c = 'X'; gguf_case((patch[]){ { up.ndims_off - 8, &c, 1 } }, 1, 0, "blk.1.ffn_up.weight", "missing tensor"); }
    { char c = 'X'; gguf_case((patch[]){ { an.ndims_off - 8, &c, 1 } }, 1, 0, "blk.1.attn_norm.weight", "missing norm"); }
    { char c = 'X'; gguf_case((patch[]){ { emb.ndims_off - 8, &c, 1 } }, 1, 0, "token_embd.weight", "missing embedding"); }
    /* shapes that disagree with the metadata: the same bytes, dims swapped */
    { uint64_t ne[2] = { dn_rd_u64(gbuf + gate.ne_off + 8), dn_rd_u64(gbuf + gate.ne_off) };
      gguf_case((patch[]){ { gate.ne_off, ne, 16 } }, 1, 0, "blk.0.ffn_gate.weight", "swapped dims"); }
    { uint64_t ne = dn_rd_u64(gbuf + on.ne_off) / 2; gguf_case((patch[]){ { on.ne_off, &ne, 8 } }, 1, 0, "output_norm.weight", "short norm"); }
    /* metadata the shapes depend on */
    size_t v;
    v = find_key("llama.embedding_length");
    u32 = 0; gguf_case(P1(v + 4, u32), 0, "hidden", "embedding_length 0");
    u32 = 512; gguf_case(P1(v + 4, u32), 0, "token_embd.weight", "embedding_length 512");
    u32 = 0x7fffffff; gguf_case(P1(v + 4, u32), 0, NULL, "embedding_length 2^31-1");
    u32 = DN_GGUF_STRING; gguf_case(P1(v, u32), 0, NULL, "embedding_length as string");
    v = find_key("llama.block_count");
    u32 = 3; gguf_case(P1(v + 4, u32), 0, "blk.2.", "block_count 3");
    u32 = 0; gguf_case(P1(v + 4, u32), 0, "layer count", "block_count 0");
    v = find_key("llama.attention.head_count");
    u32 = 3; gguf_case(P1(v + 4, u32), 0, NULL, "head_count 3");
    u32 = 0; gguf_case(P1(v + 4, u32), 0, "head_count", "head_count 0");
    v = find_key("llama.feed_forward_length");
    u32 = 769; gguf_case(P1(v + 4, u32), 0, "ffn_gate", "ffn 769");
    v = find_key("llama.context_length");
    u32 = 0; gguf_case(P1(v + 4, u32), 0, "context length", "context_length 0");
    v = find_key("general.architecture");
    { const char arch[5] = "gpt2x"; gguf_case((patch[]){ { v + 4 + 8, arch, 5 } }, 1, 0, "architecture", "architecture gpt2x"); }
    v = find_key("tokenizer.ggml.model");
    { const char tm[5] = "gpt2x"; gguf_case((patch[]){ { v + 4 + 8, tm, 5 } }, 1, 0, NULL, "tokenizer model gpt2x"); }
    v = find_key("tokenizer.ggml.scores");
    u64 = 1000; gguf_case(P1(v + 8, u64), 0, NULL, "scores count 1000");
    v = find_key("tokenizer.ggml.tokens");
    u32 = DN_GGUF_I32; gguf_case(P1(v + 4, u32), 0, NULL, "tokens not strings");
    fprintf(stderr, "gguf field edits: %ld variants\n", n_variants - before);
}
END_TEST

/* NaN/Inf: norms are always checked; matrices only with VALIDATE. */
START_TEST(test_corrupt_gguf_nonfinite)
{
    long before = n_variants;
    tinfo on = find_tensor("output_norm.weight"), an = find_tensor("blk.0.ffn_norm.weight");
    tinfo q = find_tensor("blk.1.attn_v.weight"), emb = find_tensor("token_embd.weight");
    ck_assert_int_eq(on.type, DANU_TYPE_F32);
    ck_assert_int_eq(q.type, DANU_TYPE_Q4_0);
    float nan = NAN, inf = INFINITY, ninf = -INFINITY;
    gguf_case((patch[]){ { on.data_off + 4 * 17, &nan, 4 } }, 1, 0, "output_norm.weight", "NaN in a norm");
    gguf_case((patch[]){ { an.data_off, &inf, 4 } }, 1, 0, "blk.0.ffn_norm.weight", "Inf in a norm");
    gguf_case((patch[]){ { an.data_off + an.nbytes - 4, &ninf, 4 } }, 1, 0, "blk.0.ffn_norm.weight", "-Inf in a norm");
    /* q4_0 block scale (fp16) NaN / Inf, in the middle of the matrix */
    uint16_t hnan = 0x7e00, hinf = 0x7c00;
    size_t mid = q.data_off + (q.nbytes / 18 / 2) * 18;
    gguf_case((patch[]){ { mid, &hnan, 2 } }, 1, 1, "blk.1.attn_v.weight", "NaN q4_0 scale, validate");
    gguf_case((patch[]){ { emb.data_off + emb.nbytes - 18, &hinf, 2 } }, 1, 1, "token_embd.weight", "Inf scale, validate");
    /* without VALIDATE the matrices are used as they are */
    uint8_t keep[2];
    memcpy(keep, gbuf + mid, 2);
    memcpy(gbuf + mid, &hnan, 2);
    write_file(gpath, gbuf, glen);
    ck_assert_int_eq(load(gpath, 0, 1), DANU_OK);
    memcpy(gbuf + mid, keep, 2);
    fprintf(stderr, "gguf non-finite: %ld variants\n", n_variants - before);
}
END_TEST

/* ------------------------------------------------------------------ */
/* HF directory                                                         */
/* ------------------------------------------------------------------ */

static const char *hf_src;       /* the intact directory being varied */
static const char *hf_sharded;   /* tests/data/tiny-b-hf: transformers' five shards, no tokenizer */
static const char *hf_synth;     /* synthetic tiny-b: one model.safetensors + tokenizer.model */
static char hf_dir[4200];        /* a variant: symlinks + the edited file */
static const char *const hf_files[] = { "config.json", "generation_config.json", "model.safetensors.index.json",
                                        "tokenizer.model", "tokenizer_config.json", "model-00001-of-00005.safetensors",
                                        "model-00002-of-00005.safetensors", "model-00003-of-00005.safetensors",
                                        "model-00004-of-00005.safetensors", "model-00005-of-00005.safetensors",
                                        "model.safetensors" };
#define N_HF (sizeof hf_files / sizeof hf_files[0])

/* Fresh variant dir: every file a symlink to the intact one but `edited`,
 * which gets bytes p[0..n) (NULL p: the file is left out). */
static void hf_variant(const char *edited, const void *p, size_t n)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", hf_dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(mkdir(hf_dir, 0755), 0);
    for (size_t i = 0; i < N_HF; i++) {
        char src[4300], dst[4300];
        snprintf(src, sizeof src, "%s/%s", hf_src, hf_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", hf_dir, hf_files[i]);
        if (access(src, F_OK) != 0) continue;
        if (!strcmp(hf_files[i], edited)) {
            if (p) write_file(dst, p, n);
        } else {
            ck_assert_int_eq(symlink(src, dst), 0);
        }
    }
}

static uint8_t *hf_read(const char *name, size_t *n)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", hf_src, name);
    uint8_t *b = tu_read(p, n);
    ck_assert_msg(b != NULL, "cannot read %s", p);
    return b;
}

/* Text file edit: replace the first `from` with `to`. */
static void hf_text_case(const char *file, const char *from, const char *to, int validate, const char *needle,
                         const char *label)
{
    size_t n;
    char *s = (char *)hf_read(file, &n);
    char *at = strstr(s, from);
    ck_assert_msg(at != NULL, "%s: '%s' not in %s", label, from, file);
    size_t fl = strlen(from), tl = strlen(to);
    char *o = malloc(n - fl + tl + 1);
    memcpy(o, s, (size_t)(at - s));
    memcpy(o + (at - s), to, tl);
    memcpy(o + (at - s) + tl, at + fl, n - (size_t)(at - s) - fl);
    hf_variant(file, o, n - fl + tl);
    expect_fail(hf_dir, validate, needle, label);
    free(o);
    free(s);
}

/* Which shard holds a tensor, from the index. */
static const char *shard_of(const char *tensor)
{
    static char name[256];
    size_t n;
    char *idx = (char *)hf_read("model.safetensors.index.json", &n);
    char key[300];
    snprintf(key, sizeof key, "\"%s\"", tensor);
    char *p = strstr(idx, key);
    ck_assert_ptr_nonnull(p);
    p = strchr(p + strlen(key), '"');
    char *e = strchr(p + 1, '"');
    snprintf(name, sizeof name, "%.*s", (int)(e - p - 1), p + 1);
    free(idx);
    return name;
}

/* Safetensors header edit: replace `from` with `to` in the JSON header of
 * the shard holding `tensor`, fixing the 8-byte length (data untouched). */
static void st_header_case(const char *tensor, const char *from, const char *to, int validate, const char *needle,
                           const char *label)
{
    const char *shard = shard_of(tensor);
    size_t n;
    uint8_t *b = hf_read(shard, &n);
    uint64_t hl = dn_rd_u64(b);
    char *h = malloc(hl + 1);
    memcpy(h, b + 8, hl);
    h[hl] = 0;
    char anchor[300];
    snprintf(anchor, sizeof anchor, "\"%s\"", tensor);
    char *t = strstr(h, anchor);
    ck_assert_msg(t != NULL, "%s: %s not in %s", label, tensor, shard);
    char *at = strstr(t, from);
    ck_assert_msg(at != NULL, "%s: '%s' not after %s", label, from, tensor);
    size_t fl = strlen(from), tl = strlen(to), nhl = hl - fl + tl;
    uint8_t *o = malloc(8 + nhl + (n - 8 - hl));
    dn_wr_u64(o, nhl);
    memcpy(o + 8, h, (size_t)(at - h));
    memcpy(o + 8 + (at - h), to, tl);
    memcpy(o + 8 + (at - h) + tl, at + fl, hl - (size_t)(at - h) - fl);
    memcpy(o + 8 + nhl, b + 8 + hl, n - 8 - hl);
    hf_variant(shard, o, 8 + nhl + (n - 8 - hl));
    expect_fail(hf_dir, validate, needle, label);
    free(o);
    free(h);
    free(b);
}

/* Data edit: write `bytes` at element `elem` (of elem_size) of a tensor. */
static void st_data_case(const char *tensor, size_t at_byte, const void *bytes, size_t len, int validate,
                         const char *needle, const char *label)
{
    const char *shard = shard_of(tensor);
    size_t n;
    uint8_t *b = hf_read(shard, &n);
    uint64_t hl = dn_rd_u64(b);
    char anchor[300];
    snprintf(anchor, sizeof anchor, "\"%s\"", tensor);
    char *h = malloc(hl + 1);
    memcpy(h, b + 8, hl);
    h[hl] = 0;
    char *t = strstr(h, anchor);
    ck_assert_ptr_nonnull(t);
    char *d = strstr(t, "\"data_offsets\"");
    ck_assert_ptr_nonnull(d);
    d = strchr(d, '[');
    unsigned long long begin = strtoull(d + 1, NULL, 10);
    memcpy(b + 8 + hl + begin + at_byte, bytes, len);
    hf_variant(shard, b, n);
    if (needle) expect_fail(hf_dir, validate, needle, label);
    else ck_assert_int_eq(load(hf_dir, validate, 1), DANU_OK);
    free(h);
    free(b);
}

START_TEST(test_corrupt_hf_shards)
{
    long before = n_variants;
    hf_variant("-", NULL, 0);
    ck_assert_int_eq(load(hf_dir, 0, 0), DANU_OK);   /* sanity: the variant machinery loads it intact */
    /* truncation of one shard at many offsets (header region densely) */
    size_t n;
    const char *shard = "model-00003-of-00005.safetensors";
    uint8_t *b = hf_read(shard, &n);
    uint64_t hl = dn_rd_u64(b);
    for (size_t cut = 0; cut < n; cut += cut < 8 + hl ? 23 : (n - 8 - hl) / 29 + 1) {
        hf_variant(shard, b, cut);
        expect_fail(hf_dir, 0, shard, "truncated shard");
    }
    /* flipped bytes in the header length and the JSON */
    for (size_t pos = 0; pos < 8 + hl; pos += pos < 8 ? 1 : 17) {
        b[pos] ^= 0x41;
        hf_variant(shard, b, n);
        (void)load(hf_dir, 0, pos & 1);   /* may load (a digit in an unused key) but never crash or leak */
        b[pos] ^= 0x41;
    }
    free(b);
    const char *q = "model.layers.1.self_attn.q_proj.weight";
    st_header_case(q, "\"data_offsets\":[", "\"data_offsets\":[99999999", 0, q, "offset past the end");
    st_header_case(q, "\"shape\":[", "\"shape\":[1099511627776,1099511627776,", 0, q, "shape overflow");
    st_header_case(q, "\"shape\":[", "\"shape\":[-", 0, NULL, "negative dim");
    st_header_case(q, "\"shape\":[", "\"shape\":[2,", 0, q, "shape vs bytes");
    st_header_case(q, "BF16", "I8", 0, q, "dtype I8");
    st_header_case(q, "BF16", "F64", 0, q, "dtype F64");
    st_header_case(q, "BF16", "XX", 0, q, "dtype unknown");
    st_header_case(q, "BF16", "F32", 0, q, "dtype F32 vs bytes");
    /* same byte count, shape that disagrees with config.json */
    st_header_case("model.layers.0.mlp.up_proj.weight", "\"shape\":[688,256]", "\"shape\":[256,688]", 0,
                   "model.layers.0.mlp.up_proj.weight", "transposed shape");
    st_header_case("model.layers.0.input_layernorm.weight", "\"shape\":[256]", "\"shape\":[16,16]", 0,
                   "model.layers.0.input_layernorm.weight", "norm as a matrix");
    /* duplicate and missing tensors */
    st_header_case("model.layers.1.mlp.down_proj.weight", "\"model.layers.1.mlp.down_proj.weight\"",
                   "\"model.layers.0.mlp.down_proj.weight\"", 0, NULL, "duplicate across shards");
    st_header_case("model.layers.1.mlp.down_proj.weight", "\"model.layers.1.mlp.down_proj.weight\"",
                   "\"model.layers.1.mlp.down_projX.weight\"", 0, "model.layers.1.mlp.down_proj.weight", "renamed");
    hf_text_case("model.safetensors.index.json", "model-00005-of-00005", "model-00009-of-00005", 0, NULL,
                 "index names a missing shard");
    hf_text_case("model.safetensors.index.json", "\"weight_map\"", "\"weight_mop\"", 0, "weight_map", "no weight_map");
    hf_variant("model-00002-of-00005.safetensors", NULL, 0);
    expect_fail(hf_dir, 0, "model-00002-of-00005.safetensors", "shard file missing");
    fprintf(stderr, "hf shard variants: %ld\n", n_variants - before);
}
END_TEST

START_TEST(test_corrupt_hf_config)
{
    long before = n_variants;
    static const struct { const char *from, *to, *needle, *label; } cases[] = {
        { "\"hidden_size\": 256", "\"hidden_size\": 255", NULL, "hidden 255" },
        { "\"hidden_size\": 256", "\"hidden_size\": 512", "model.embed_tokens.weight", "hidden 512" },
        { "\"hidden_size\": 256", "\"hidden_size\": 0", "hidden", "hidden 0" },
        { "\"hidden_size\": 256", "\"hidden_size\": -256", "hidden_size", "hidden negative" },
        { "\"hidden_size\": 256", "\"hidden_size\": 1e300", "hidden_size", "hidden 1e300" },
        { "\"hidden_size\": 256", "\"hidden_size\": \"256\"", "hidden_size", "hidden as string" },
        { "\"hidden_size\": 256", "\"hidden_size\": 4294967552", "hidden_size", "hidden 2^32+256" },
        { "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", "model.layers.2.", "3 layers" },
        { "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 100000", "layer count", "100000 layers" },
        { "\"intermediate_size\": 688", "\"intermediate_size\": 689", "mlp", "ffn 689" },
        { "\"vocab_size\": 1024", "\"vocab_size\": 1000", "model.embed_tokens.weight", "vocab 1000" },
        { "\"vocab_size\": 1024", "\"vocab_size\": 2147483647", NULL, "vocab 2^31-1" },
        { "\"num_attention_heads\": 8", "\"num_attention_heads\": 7", NULL, "7 heads" },
        { "\"num_attention_heads\": 8", "\"num_attention_heads\": 0", "num_attention_heads", "0 heads" },
        { "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "kv heads", "3 kv heads" },
        { "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 0", "num_key_value_heads", "0 kv heads" },
        { "\"head_dim\": 32", "\"head_dim\": 31", "head_dim", "odd head_dim" },
        { "\"head_dim\": 32", "\"head_dim\": 64", "q_proj", "head_dim 64" },
        { "\"max_position_embeddings\": 256", "\"max_position_embeddings\": 0", "max_position_embeddings", "max_pos 0" },
        { "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1", "eps", "negative eps" },
        { "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "gelu", "gelu" },
        { "\"MistralForCausalLM\"", "\"GPT2LMHeadModel\"", "architecture", "architecture" },
        { "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", "lm_head.weight", "untied" },
        { "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1", "tie_word_embeddings", "tied as number" },
        { "\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", "yarn", "yarn" },
        { "\"bos_token_id\": 1", "\"bos_token_id\": 5000", "bos", "bos outside" },
        { "\"sliding_window\": 8", "\"sliding_window\": -8", "sliding_window", "negative window" },
        { "{", "[", "config.json", "array at top" },
        { "\"vocab_size\": 1024\n}", "\"vocab_size\": 1024,\n", "config.json", "truncated json" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        hf_text_case("config.json", cases[i].from, cases[i].to, 0, cases[i].needle, cases[i].label);
    /* config.json missing, empty, binary */
    hf_variant("config.json", NULL, 0);
    expect_fail(hf_dir, 0, "config.json", "no config.json");
    hf_variant("config.json", "", 0);
    expect_fail(hf_dir, 0, "config.json", "empty config.json");
    hf_variant("config.json", "\x00\xff{\"a\":1}", 9);
    expect_fail(hf_dir, 0, "config.json", "binary config.json");
    /* a corrupt tokenizer.model (the synthetic directory has one) */
    hf_src = hf_synth;
    hf_variant("-", NULL, 0);
    ck_assert_int_eq(load(hf_dir, 0, 1), DANU_OK);   /* sanity: the variant machinery loads it intact */
    size_t n;
    uint8_t *tm = hf_read("tokenizer.model", &n);
    hf_variant("tokenizer.model", tm, n / 2);
    expect_fail(hf_dir, 0, "tokenizer.model", "truncated tokenizer.model");
    for (size_t k = 0; k < 16; k++) tm[k * 7] ^= 0xff;
    hf_variant("tokenizer.model", tm, n);
    expect_fail(hf_dir, 0, NULL, "scrambled tokenizer.model");
    free(tm);
    hf_src = hf_sharded;
    fprintf(stderr, "hf config variants: %ld\n", n_variants - before);
}
END_TEST

START_TEST(test_corrupt_hf_nonfinite)
{
    long before = n_variants;
    uint16_t bnan = 0x7fc0, binf = 0x7f80, bninf = 0xff80;
    st_data_case("model.norm.weight", 2 * 100, &bnan, 2, 0, "model.norm.weight", "NaN final norm");
    st_data_case("model.layers.1.post_attention_layernorm.weight", 0, &binf, 2, 0,
                 "model.layers.1.post_attention_layernorm.weight", "Inf norm");
    st_data_case("model.layers.0.input_layernorm.weight", 2 * 255, &bninf, 2, 0,
                 "model.layers.0.input_layernorm.weight", "-Inf norm (last element)");
    const char *w = "model.layers.1.mlp.down_proj.weight";
    st_data_case(w, 2 * 1000, &bnan, 2, 1, w, "NaN matrix, validate");
    st_data_case("model.embed_tokens.weight", 2 * (1024 * 256 - 1), &binf, 2, 1, "model.embed_tokens.weight",
                 "Inf last embedding, validate");
    st_data_case(w, 2 * 1000, &bnan, 2, 0, NULL, "NaN matrix, no validation: loads");
    fprintf(stderr, "hf non-finite variants: %ld\n", n_variants - before);
}
END_TEST

int main(void)
{
    tmp = tu_tmpdir("corrupt");
    const char *g = gd_synth(tmp, "tiny-q", 17, DANU_FORMAT_GGUF, DANU_TYPE_Q4_0);
    hf_synth = gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_HF, DANU_TYPE_BF16);
    hf_src = hf_sharded = strdup(tu_data("tiny-b-hf"));   /* tu_data's buffer is reused */
    if (!g || !hf_synth || !(gbuf = tu_read(g, &glen))) {
        fprintf(stderr, "cannot prepare the models: %s\n", danu_last_error());
        return 1;
    }
    snprintf(gpath, sizeof gpath, "%s/variant-tiny-q.gguf", tmp);
    snprintf(hf_dir, sizeof hf_dir, "%s/variant-tiny-b-hf", tmp);
    Suite *s = suite_create("corrupt");
    TCase *tc = tcase_create("corrupt");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_corrupt_gguf_truncated);
    tcase_add_test(tc, test_corrupt_gguf_flips);
    tcase_add_test(tc, test_corrupt_gguf_fields);
    tcase_add_test(tc, test_corrupt_gguf_nonfinite);
    tcase_add_test(tc, test_corrupt_hf_shards);
    tcase_add_test(tc, test_corrupt_hf_config);
    tcase_add_test(tc, test_corrupt_hf_nonfinite);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);   /* one process: the variant count is summed */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    fprintf(stderr, "corrupt variants in all: %ld\n", n_variants);
    free(gbuf);
    free((char *)hf_sharded);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
