/* test_tokenizer.c - SentencePiece BPE tokenizer (Llama 2), streaming decoder
 * and Danube chat format. References: the SentencePiece 0.1.97 golden TSV
 * files in tests/data/llama2-tokenizer (encode and decode), a llama.cpp
 * written GGUF vocabulary, id lists produced once with SentencePiece (noted
 * where used), and properties checked by code written here (UTF-8 validity,
 * streaming == whole decode, lossless round trips, no leaks on OOM). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "testutil.h"
#include "text/tokenizer.h"
#include "format/gguf.h"
#include "format/gguf_vocab.h"
#include "format/spm.h"
#include "common/error.h"

/* ------------------------------------------------------------------ */
/* Fixtures: the model and the golden cases, loaded once               */
/* ------------------------------------------------------------------ */

typedef struct enc_case { char *text; size_t len; int32_t *ids; size_t n; } enc_case;

static uint8_t *g_model;
static size_t g_model_len;
static danu_tokenizer *g_tok;
static enc_case *g_enc, *g_dec;      /* g_dec: ids -> expected text */
static size_t g_n_enc, g_n_dec;

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static char *unhex(const char *h, size_t n, size_t *len)
{
    char *o = malloc(n / 2 + 1);
    ck_assert_ptr_nonnull(o);
    for (size_t i = 0; i + 1 < n; i += 2) o[i / 2] = (char)(hexval(h[i]) * 16 + hexval(h[i + 1]));
    *len = n / 2;
    o[*len] = 0;
    return o;
}

static int32_t *parse_ids(const char *s, const char *end, size_t *n)
{
    int32_t *v = malloc(sizeof *v * (size_t)(end - s + 1));
    ck_assert_ptr_nonnull(v);
    *n = 0;
    while (s < end) {
        char *e;
        long x = strtol(s, &e, 10);
        if (e == s) break;
        v[(*n)++] = (int32_t)x;
        s = e;
    }
    return v;
}

/* Lines "A<TAB>B"; ids_first says which column holds ids. */
static enc_case *load_tsv(const char *rel, int ids_first, size_t *count)
{
    size_t len;
    char *buf = (char *)tu_read(tu_data(rel), &len);
    ck_assert_msg(buf != NULL, "cannot read %s", rel);
    enc_case *v = calloc(1024, sizeof *v);
    size_t n = 0;
    for (char *line = buf; line < buf + len;) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        if (!nl) nl = buf + len;
        char *tab = memchr(line, '\t', (size_t)(nl - line));
        if (line[0] != '#' && tab) {
            ck_assert(n < 1024);
            char *hex = ids_first ? tab + 1 : line, *hex_end = ids_first ? nl : tab;
            char *ids = ids_first ? line : tab + 1, *ids_end = ids_first ? tab : nl;
            v[n].text = unhex(hex, (size_t)(hex_end - hex), &v[n].len);
            v[n].ids = parse_ids(ids, ids_end, &v[n].n);
            n++;
        }
        line = nl + 1;
    }
    free(buf);
    *count = n;
    return v;
}

static void free_cases(enc_case *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) { free(v[i].text); free(v[i].ids); }
    free(v);
}

static void setup(void)
{
    g_model = tu_read(tu_data("llama2-tokenizer/tokenizer.model"), &g_model_len);
    ck_assert_ptr_nonnull(g_model);
    danu_status st = dn_tokenizer_from_spm(dn_alloc_libc(), g_model, g_model_len, "tokenizer.model", &g_tok);
    ck_assert_msg(st == DANU_OK, "load: %s", dn_lasterr());
    g_enc = load_tsv("llama2-tokenizer/cases.tsv", 0, &g_n_enc);
    g_dec = load_tsv("llama2-tokenizer/cases-decode.tsv", 1, &g_n_dec);
}

static void teardown(void)
{
    dn_tokenizer_free(g_tok);
    free(g_model);
    free_cases(g_enc, g_n_enc);
    free_cases(g_dec, g_n_dec);
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static void assert_ids(const int32_t *got, size_t n_got, const int32_t *want, size_t n_want, const char *what)
{
    int same = n_got == n_want && (n_got == 0 || !memcmp(got, want, n_got * sizeof *got));
    if (!same) {
        char msg[512];
        int o = snprintf(msg, sizeof msg, "%s: got %zu ids [", what, n_got);
        for (size_t i = 0; i < n_got && i < 24 && o < 400; i++) o += snprintf(msg + o, sizeof msg - (size_t)o, " %d", got[i]);
        o += snprintf(msg + o, sizeof msg - (size_t)o, " ] want %zu [", n_want);
        for (size_t i = 0; i < n_want && i < 24 && o < 500; i++) o += snprintf(msg + o, sizeof msg - (size_t)o, " %d", want[i]);
        ck_abort_msg("%s ]", msg);
    }
}

static danu_token *enc(const danu_tokenizer *t, const char *s, size_t len, uint32_t flags, size_t *n)
{
    danu_token *ids = NULL;
    danu_status st = dn_tokenizer_encode(t, s, len, flags, &ids, n);
    ck_assert_msg(st == DANU_OK, "encode: %s", dn_lasterr());
    ck_assert_ptr_nonnull(ids);
    return ids;
}

/* UTF-8 validity, written independently of the library (RFC 3629 table). */
static int valid_utf8(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t k;
        uint8_t lo = 0x80, hi = 0xbf;
        if (b <= 0x7f) { i++; continue; }
        else if (b >= 0xc2 && b <= 0xdf) k = 1;
        else if (b == 0xe0) { k = 2; lo = 0xa0; }
        else if (b == 0xed) { k = 2; hi = 0x9f; }
        else if (b >= 0xe1 && b <= 0xef) k = 2;
        else if (b == 0xf0) { k = 3; lo = 0x90; }
        else if (b == 0xf4) { k = 3; hi = 0x8f; }
        else if (b >= 0xf1 && b <= 0xf3) k = 3;
        else return 0;
        if (n - i < k + 1) return 0;
        if (p[i + 1] < lo || p[i + 1] > hi) return 0;
        for (size_t j = 2; j <= k; j++) if (p[i + j] < 0x80 || p[i + j] > 0xbf) return 0;
        i += k + 1;
    }
    return 1;
}

/* Stream ids through a decoder; returns the concatenated text (malloc). */
static char *stream_decode(const danu_tokenizer *t, const int32_t *ids, size_t n, size_t *len)
{
    danu_decoder *d;
    ck_assert_int_eq(dn_decoder_create(t, &d), DANU_OK);
    size_t cap = 64 * (n + 1) + 1, o = 0;
    char *out = malloc(cap);
    char buf[64];
    size_t l;
    for (size_t i = 0; i < n; i++) {
        danu_status st = dn_decoder_push(d, ids[i], buf, sizeof buf, &l);
        ck_assert_msg(st == DANU_OK, "push %d: %s", ids[i], dn_lasterr());
        ck_assert_uint_eq(buf[l], 0);   /* NUL-terminated (the text itself may hold U+0000) */
        ck_assert_msg(valid_utf8((const uint8_t *)buf, l), "push %zu emitted incomplete UTF-8", i);
        memcpy(out + o, buf, l);
        o += l;
    }
    ck_assert_int_eq(dn_decoder_flush(d, buf, sizeof buf, &l), DANU_OK);
    ck_assert(valid_utf8((const uint8_t *)buf, l));
    memcpy(out + o, buf, l);
    o += l;
    out[o] = 0;
    dn_decoder_free(d);
    *len = o;
    return out;
}

static void assert_streaming_matches(const danu_tokenizer *t, const int32_t *ids, size_t n, const char *what)
{
    char *whole;
    size_t wl, sl;
    ck_assert_msg(dn_tokenizer_decode(t, ids, n, &whole, &wl) == DANU_OK, "%s: %s", what, dn_lasterr());
    char *s = stream_decode(t, ids, n, &sl);
    ck_assert_msg(sl == wl && !memcmp(s, whole, wl), "%s: streaming '%s' != whole '%s'", what, s, whole);
    ck_assert(valid_utf8((const uint8_t *)whole, wl));
    free(s);
    dn_free(dn_alloc_libc(), whole);
}

/* Run every golden case through a tokenizer. */
static void run_golden(const danu_tokenizer *t)
{
    ck_assert_uint_eq(g_n_enc, 400);
    ck_assert_uint_eq(g_n_dec, 100);
    for (size_t i = 0; i < g_n_enc; i++) {
        size_t n;
        danu_token *ids = enc(t, g_enc[i].text, g_enc[i].len, 0, &n);
        char what[64];
        snprintf(what, sizeof what, "encode case %zu", i);
        assert_ids(ids, n, g_enc[i].ids, g_enc[i].n, what);
        dn_free(dn_alloc_libc(), ids);
    }
    for (size_t i = 0; i < g_n_dec; i++) {
        char *text;
        size_t len;
        danu_status st = dn_tokenizer_decode(t, g_dec[i].ids, g_dec[i].n, &text, &len);
        ck_assert_msg(st == DANU_OK, "decode case %zu: %s", i, dn_lasterr());
        ck_assert_msg(len == g_dec[i].len && !memcmp(text, g_dec[i].text, len), "decode case %zu: '%s' != '%s'", i,
                      text, g_dec[i].text);
        ck_assert_uint_eq(text[len], 0);
        dn_free(dn_alloc_libc(), text);
    }
}

/* A GGUF holding tokenizer.ggml.* taken from the SentencePiece model. */
static uint8_t *write_vocab_gguf(const danu_tokenizer *src, int add_space_prefix, int rm_ws, size_t *size)
{
    int32_t n = dn_tokenizer_n_vocab(src);
    const char **pieces = malloc(sizeof *pieces * (size_t)n);
    size_t *lens = malloc(sizeof *lens * (size_t)n);
    float *scores = malloc(sizeof *scores * (size_t)n);
    int32_t *types = malloc(sizeof *types * (size_t)n);
    for (int32_t i = 0; i < n; i++) {
        pieces[i] = dn_tokenizer_piece(src, i, &lens[i]);
        scores[i] = dn_tokenizer_score(src, i);
        types[i] = dn_tokenizer_type(src, i);
    }
    dn_gguf_writer *w;
    ck_assert_int_eq(dn_gguf_writer_create(dn_alloc_libc(), 0, &w), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_str(w, "general.architecture", "llama", 5), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_str(w, "tokenizer.ggml.model", "llama", 5), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_arr_str(w, "tokenizer.ggml.tokens", pieces, lens, (uint64_t)n), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_arr(w, "tokenizer.ggml.scores", DN_GGUF_F32, scores, (uint64_t)n), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_arr(w, "tokenizer.ggml.token_type", DN_GGUF_I32, types, (uint64_t)n), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0), DANU_OK);
    if (add_space_prefix >= 0)
        ck_assert_int_eq(dn_gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", add_space_prefix), DANU_OK);
    if (rm_ws >= 0)
        ck_assert_int_eq(dn_gguf_w_bool(w, "tokenizer.ggml.remove_extra_whitespaces", rm_ws), DANU_OK);
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(dn_gguf_w_begin(w, f), DANU_OK);
    ck_assert_int_eq(dn_gguf_w_end(w, f), DANU_OK);
    long len = ftell(f);
    ck_assert(len > 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)len);
    ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    dn_gguf_writer_free(w);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    *size = (size_t)len;
    return buf;
}

static danu_tokenizer *tok_from_gguf_bytes(const uint8_t *buf, size_t size)
{
    dn_gguf *g;
    danu_status st = dn_gguf_open(dn_alloc_libc(), buf, size, "vocab.gguf", &g);
    ck_assert_msg(st == DANU_OK, "gguf open: %s", dn_lasterr());
    danu_tokenizer *t;
    st = dn_tokenizer_from_gguf(dn_alloc_libc(), g, &t);
    ck_assert_msg(st == DANU_OK, "from_gguf: %s", dn_lasterr());
    dn_gguf_close(g);   /* the tokenizer copies what it needs */
    return t;
}

/* ------------------------------------------------------------------ */
/* Golden cases                                                        */
/* ------------------------------------------------------------------ */

START_TEST(test_tokenizer_spm_golden)
{
    ck_assert_int_eq(dn_tokenizer_n_vocab(g_tok), 32000);
    ck_assert_int_eq(dn_tokenizer_bos(g_tok), 1);
    ck_assert_int_eq(dn_tokenizer_eos(g_tok), 2);
    ck_assert_int_eq(dn_tokenizer_unk(g_tok), 0);
    ck_assert_int_eq(dn_tokenizer_add_bos(g_tok), 1);
    run_golden(g_tok);
}
END_TEST

START_TEST(test_tokenizer_gguf_golden)
{
    size_t size;
    uint8_t *buf = write_vocab_gguf(g_tok, -1, -1, &size);
    danu_tokenizer *t = tok_from_gguf_bytes(buf, size);
    free(buf);   /* must not be needed any more */
    ck_assert_int_eq(dn_tokenizer_n_vocab(t), 32000);
    ck_assert_int_eq(dn_tokenizer_bos(t), 1);
    ck_assert_int_eq(dn_tokenizer_eos(t), 2);
    ck_assert_int_eq(dn_tokenizer_unk(t), 0);
    run_golden(t);
    dn_tokenizer_free(t);
}
END_TEST

/* add_space_prefix=false and remove_extra_whitespaces=true through GGUF.
 * Expected ids/text: SentencePiece 0.1.97 on tokenizer.model with
 * normalizer_spec.add_dummy_prefix=0 (and remove_extra_whitespaces=1). */
START_TEST(test_tokenizer_gguf_normalizer_flags)
{
    static const struct { int rm; const char *text; int32_t ids[8]; size_t n; } ecases[] = {
        { 0, "  Hello   world  ", { 29871, 15043, 259, 3186, 259 }, 5 },
        { 0, " x", { 921 }, 1 },
        { 0, "a  b ", { 29874, 29871, 289, 29871 }, 4 },
        { 1, "  Hello   world  ", { 10994, 3186 }, 2 },
        { 1, " x", { 29916 }, 1 },
        { 1, "a  b ", { 29874, 289 }, 2 },
        { 1, "", { 0 }, 0 },
    };
    static const struct { int rm; int32_t ids[4]; size_t n; const char *text; } dcases[] = {
        { 0, { 29871, 22172 }, 2, "  hello" },
        { 0, { 259, 22172, 29871 }, 3, "   hello " },
        { 0, { 1, 29871, 29871, 29874 }, 4, "  a" },
        { 1, { 29871, 22172 }, 2, "hello" },
        { 1, { 259, 22172, 29871 }, 3, "  hello " },
        { 1, { 1, 29871, 29871, 29874 }, 4, "a" },
    };
    for (int rm = 0; rm < 2; rm++) {
        size_t size;
        uint8_t *buf = write_vocab_gguf(g_tok, 0, rm, &size);
        danu_tokenizer *t = tok_from_gguf_bytes(buf, size);
        free(buf);
        for (size_t i = 0; i < sizeof ecases / sizeof ecases[0]; i++) {
            if (ecases[i].rm != rm) continue;
            size_t n;
            danu_token *ids = enc(t, ecases[i].text, strlen(ecases[i].text), 0, &n);
            assert_ids(ids, n, ecases[i].ids, ecases[i].n, ecases[i].text);
            dn_free(dn_alloc_libc(), ids);
        }
        for (size_t i = 0; i < sizeof dcases / sizeof dcases[0]; i++) {
            if (dcases[i].rm != rm) continue;
            char *text;
            size_t len;
            ck_assert_int_eq(dn_tokenizer_decode(t, dcases[i].ids, dcases[i].n, &text, &len), DANU_OK);
            ck_assert_str_eq(text, dcases[i].text);
            dn_free(dn_alloc_libc(), text);
            assert_streaming_matches(t, dcases[i].ids, dcases[i].n, dcases[i].text);
        }
        dn_tokenizer_free(t);
    }
}
END_TEST

/* llama.cpp wrote tiny-q's vocabulary: the first 1024 Llama 2 pieces. It must
 * equal the SentencePiece model cut to 1024 pieces, piece by piece, and both
 * must encode the golden texts the same way. */
START_TEST(test_tokenizer_llamacpp_gguf_vs_truncated_spm)
{
    size_t fsize;
    uint8_t *file = tu_read(tu_data("gguf-llamacpp/tiny-q-Q4_0.gguf"), &fsize);
    ck_assert_ptr_nonnull(file);
    dn_gguf *g;
    ck_assert_int_eq(dn_gguf_open(dn_alloc_libc(), file, fsize, "tiny-q-Q4_0.gguf", &g), DANU_OK);
    danu_tokenizer *tg;
    CHECK_OK(dn_tokenizer_from_gguf(dn_alloc_libc(), g, &tg));
    dn_gguf_close(g);
    free(file);

    uint8_t *small;
    size_t small_len;
    ck_assert_int_eq(dn_spm_truncate(dn_alloc_libc(), g_model, g_model_len, 1024, &small, &small_len), DANU_OK);
    danu_tokenizer *ts;
    ck_assert_int_eq(dn_tokenizer_from_spm(dn_alloc_libc(), small, small_len, "t1024", &ts), DANU_OK);
    dn_free(dn_alloc_libc(), small);

    ck_assert_int_eq(dn_tokenizer_n_vocab(tg), 1024);
    ck_assert_int_eq(dn_tokenizer_n_vocab(ts), 1024);
    ck_assert_int_eq(dn_tokenizer_bos(tg), 1);
    ck_assert_int_eq(dn_tokenizer_eos(tg), 2);
    ck_assert_int_eq(dn_tokenizer_unk(tg), 0);
    for (int32_t i = 0; i < 1024; i++) {
        size_t la, lb, lc;
        const char *a = dn_tokenizer_piece(tg, i, &la), *b = dn_tokenizer_piece(ts, i, &lb);
        const char *c = dn_tokenizer_piece(g_tok, i, &lc);
        ck_assert_msg(la == lb && lb == lc && !memcmp(a, b, la) && !memcmp(b, c, lb), "piece %d differs", i);
        ck_assert(dn_tokenizer_score(tg, i) == dn_tokenizer_score(g_tok, i));
        ck_assert_int_eq(dn_tokenizer_type(tg, i), dn_tokenizer_type(g_tok, i));
    }
    for (size_t i = 0; i < g_n_enc; i++) {
        size_t na, nb;
        danu_token *a = enc(tg, g_enc[i].text, g_enc[i].len, 0, &na);
        danu_token *b = enc(ts, g_enc[i].text, g_enc[i].len, 0, &nb);
        assert_ids(a, na, b, nb, "gguf vs truncated spm");
        for (size_t k = 0; k < na; k++) ck_assert(a[k] >= 0 && a[k] < 1024);
        /* same pieces, so the same text as the full vocabulary decodes */
        char *text, *full;
        size_t len, flen;
        ck_assert_int_eq(dn_tokenizer_decode(tg, a, na, &text, &len), DANU_OK);
        ck_assert_int_eq(dn_tokenizer_decode(g_tok, a, na, &full, &flen), DANU_OK);
        ck_assert_msg(len == flen && !memcmp(text, full, len), "decode case %zu", i);
        dn_free(dn_alloc_libc(), text);
        dn_free(dn_alloc_libc(), full);
        dn_free(dn_alloc_libc(), a);
        dn_free(dn_alloc_libc(), b);
    }
    dn_tokenizer_free(tg);
    dn_tokenizer_free(ts);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Flags, special pieces, chat                                         */
/* ------------------------------------------------------------------ */

/* SentencePiece 0.1.97, tokenizer.model: "Hello world" -> 15043 3186. */
START_TEST(test_tokenizer_bos_eos_flags)
{
    static const int32_t hw[] = { 15043, 3186 };
    static const int32_t bos_hw[] = { 1, 15043, 3186 };
    static const int32_t hw_eos[] = { 15043, 3186, 2 };
    static const int32_t bos_hw_eos[] = { 1, 15043, 3186, 2 };
    static const int32_t bos_eos[] = { 1, 2 };
    size_t n;
    danu_token *ids;
    ids = enc(g_tok, "Hello world", 11, 0, &n);
    assert_ids(ids, n, hw, 2, "plain");
    dn_free(dn_alloc_libc(), ids);
    ids = enc(g_tok, "Hello world", 11, DANU_TOKENIZE_ADD_BOS, &n);
    assert_ids(ids, n, bos_hw, 3, "bos");
    dn_free(dn_alloc_libc(), ids);
    ids = enc(g_tok, "Hello world", 11, DANU_TOKENIZE_ADD_EOS, &n);
    assert_ids(ids, n, hw_eos, 3, "eos");
    dn_free(dn_alloc_libc(), ids);
    ids = enc(g_tok, "Hello world", 11, DANU_TOKENIZE_ADD_BOS | DANU_TOKENIZE_ADD_EOS, &n);
    assert_ids(ids, n, bos_hw_eos, 4, "bos+eos");
    dn_free(dn_alloc_libc(), ids);
    ids = enc(g_tok, "", 0, 0, &n);
    ck_assert_uint_eq(n, 0);
    dn_free(dn_alloc_libc(), ids);
    ids = enc(g_tok, NULL, 0, DANU_TOKENIZE_ADD_BOS | DANU_TOKENIZE_ADD_EOS, &n);
    assert_ids(ids, n, bos_eos, 2, "empty bos+eos");
    dn_free(dn_alloc_libc(), ids);
}
END_TEST

/* Expected ids: SentencePiece 0.1.97 on tokenizer.model for the plain text
 * parts; parts after a special piece use a copy of the model with
 * add_dummy_prefix=0 (Hugging Face legacy=false). */
START_TEST(test_tokenizer_parse_special)
{
    size_t n;
    danu_token *ids;
    /* "Hi" -> 6324; " there" without dummy prefix -> 727 */
    static const int32_t a_want[] = { 6324, 1, 727, 2 };
    ids = enc(g_tok, "Hi<s> there</s>", 15, DANU_TOKENIZE_PARSE_SPECIAL, &n);
    assert_ids(ids, n, a_want, 4, "Hi<s> there</s>");
    dn_free(dn_alloc_libc(), ids);
    /* without the flag the markers are text: SentencePiece "<s>x</s>" */
    static const int32_t b_want[] = { 529, 29879, 29958, 29916, 829, 29879, 29958 };
    ids = enc(g_tok, "<s>x</s>", 8, 0, &n);
    assert_ids(ids, n, b_want, 7, "<s>x</s> literal");
    dn_free(dn_alloc_libc(), ids);
    /* leading special: no dummy prefix anywhere; "x" alone -> 29916 */
    static const int32_t c_want[] = { 1, 29916, 2 };
    ids = enc(g_tok, "<s>x</s>", 8, DANU_TOKENIZE_PARSE_SPECIAL, &n);
    assert_ids(ids, n, c_want, 3, "<s>x</s> special");
    dn_free(dn_alloc_libc(), ids);
    static const int32_t d_want[] = { 0 };
    ids = enc(g_tok, "<unk>", 5, DANU_TOKENIZE_PARSE_SPECIAL, &n);
    assert_ids(ids, n, d_want, 1, "<unk>");
    dn_free(dn_alloc_libc(), ids);
    /* no special piece present: same as plain ("a<b" -> 263 29966 29890) */
    static const int32_t e_want[] = { 1, 263, 29966, 29890 };
    ids = enc(g_tok, "a<b", 3, DANU_TOKENIZE_PARSE_SPECIAL | DANU_TOKENIZE_ADD_BOS, &n);
    assert_ids(ids, n, e_want, 4, "a<b");
    dn_free(dn_alloc_libc(), ids);
    /* adjacent specials and a truncated marker at the end */
    static const int32_t f_want[] = { 1, 2, 1 };
    ids = enc(g_tok, "<s></s><s>", 10, DANU_TOKENIZE_PARSE_SPECIAL, &n);
    assert_ids(ids, n, f_want, 3, "<s></s><s>");
    dn_free(dn_alloc_libc(), ids);
    size_t n2;
    danu_token *plain = enc(g_tok, "ab</s", 5, 0, &n2);
    ids = enc(g_tok, "ab</s", 5, DANU_TOKENIZE_PARSE_SPECIAL, &n);
    assert_ids(ids, n, plain, n2, "ab</s");
    dn_free(dn_alloc_libc(), ids);
    dn_free(dn_alloc_libc(), plain);
}
END_TEST

/* Chat ids from SentencePiece 0.1.97: the first segment encoded with
 * tokenizer.model, later segments with a copy whose add_dummy_prefix=0:
 *   sp.encode("<|prompt|>Why is the sky blue?")
 *     -> 529 29989 14032 415 29989 29958 11008 338 278 14744 7254 29973
 *   sp_nodummy.encode("<|answer|>") -> 29966 29989 12011 29989 29958
 *   sp.encode("<|system|>You are helpful.")
 *     -> 529 29989 5205 29989 29958 3492 526 8444 29889
 *   sp_nodummy.encode("<|prompt|>Hi") -> 29966 29989 14032 415 29989 29958 18567
 *   sp_nodummy.encode("<|answer|>Hello!") -> 29966 29989 12011 29989 29958 10994 29991 */
START_TEST(test_tokenizer_chat_danube)
{
    const char *roles[] = { "user" };
    const char *contents[] = { "Why is the sky blue?" };
    danu_token *ids;
    size_t n;
    ck_assert_int_eq(dn_chat_encode(g_tok, roles, contents, 1, 1, 1, &ids, &n), DANU_OK);
    static const int32_t want[] = { 1, 529, 29989, 14032, 415, 29989, 29958, 11008, 338, 278, 14744, 7254, 29973, 2,
                                    29966, 29989, 12011, 29989, 29958 };
    assert_ids(ids, n, want, sizeof want / sizeof want[0], "chat");
    /* structure, checked through the tokenizer itself too */
    ck_assert_int_eq(ids[0], 1);
    size_t np;
    danu_token *prompt = enc(g_tok, "<|prompt|>Why is the sky blue?", 30, 0, &np);
    assert_ids(ids + 1, np, prompt, np, "prompt segment");
    ck_assert_int_eq(ids[1 + np], 2);
    danu_token *ans;
    size_t na;
    ck_assert_int_eq(dn_tokenizer_encode_ex(g_tok, "<|answer|>", 10, 0, 0, &ans, &na), DANU_OK);
    assert_ids(ids + 2 + np, n - 2 - np, ans, na, "answer segment");
    size_t pl;
    const char *first = dn_tokenizer_piece(g_tok, ids[2 + np], &pl);
    ck_assert_msg(pl < 3 || memcmp(first, "\xe2\x96\x81", 3), "answer part starts with U+2581");
    dn_free(dn_alloc_libc(), ans);
    dn_free(dn_alloc_libc(), prompt);
    dn_free(dn_alloc_libc(), ids);

    const char *roles3[] = { "system", "user", "assistant" };
    const char *contents3[] = { "You are helpful.", "Hi", "Hello!" };
    ck_assert_int_eq(dn_chat_encode(g_tok, roles3, contents3, 3, 1, 0, &ids, &n), DANU_OK);
    static const int32_t want3[] = { 1, 529, 29989, 5205, 29989, 29958, 3492, 526, 8444, 29889, 2,
                                     29966, 29989, 14032, 415, 29989, 29958, 18567, 2,
                                     29966, 29989, 12011, 29989, 29958, 10994, 29991, 2 };
    assert_ids(ids, n, want3, sizeof want3 / sizeof want3[0], "chat 3 messages");
    dn_free(dn_alloc_libc(), ids);

    /* no BOS requested */
    ck_assert_int_eq(dn_chat_encode(g_tok, roles, contents, 1, 0, 1, &ids, &n), DANU_OK);
    assert_ids(ids, n, want + 1, sizeof want / sizeof want[0] - 1, "chat without bos");
    dn_free(dn_alloc_libc(), ids);

    const char *bad_roles[] = { "user", "tool" };
    const char *bad_contents[] = { "a", "b" };
    ids = (danu_token *)&n;
    ck_assert_int_eq(dn_chat_encode(g_tok, bad_roles, bad_contents, 2, 1, 1, &ids, &n), DANU_ERR_INVALID_ARG);
    ck_assert_ptr_null(ids);
    ck_assert_int_eq(dn_chat_encode(g_tok, NULL, NULL, 1, 1, 1, &ids, &n), DANU_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_tokenizer_chat_template_detect)
{
    size_t len;
    char *cfg = (char *)tu_read(tu_data("danube/tokenizer_config.json"), &len);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_int_eq(dn_chat_template_is_danube(cfg, len), 1);
    free(cfg);
    static const char llama2[] = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}";
    ck_assert_int_eq(dn_chat_template_is_danube(llama2, sizeof llama2 - 1), 0);
    static const char half[] = "{{ '<|prompt|>' + message['content'] }}";
    ck_assert_int_eq(dn_chat_template_is_danube(half, sizeof half - 1), 0);
    static const char both[] = "<|prompt|>x<|answer|>";
    ck_assert_int_eq(dn_chat_template_is_danube(both, sizeof both - 1), 1);
    ck_assert_int_eq(dn_chat_template_is_danube(both, sizeof both - 2), 0);   /* length honoured */
    ck_assert_int_eq(dn_chat_template_is_danube(NULL, 0), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

START_TEST(test_tokenizer_bad_utf8)
{
    static const struct { const char *bytes; size_t len; size_t off; } cases[] = {
        { "ab\x80", 3, 2 },                  /* lone continuation byte */
        { "a\xc0\x80", 3, 1 },               /* overlong 2-byte NUL */
        { "\xc1\xbf", 2, 0 },                /* overlong 2-byte */
        { "xy\xe0\x80\x80", 5, 2 },          /* overlong 3-byte */
        { "\xf0\x80\x80\x80", 4, 0 },        /* overlong 4-byte */
        { "ok \xed\xa0\x80", 6, 3 },         /* UTF-16 surrogate U+D800 */
        { "\xed\xbf\xbf", 3, 0 },            /* surrogate U+DFFF */
        { "\xf4\x90\x80\x80", 4, 0 },        /* U+110000 */
        { "\xf5\x80\x80\x80", 4, 0 },        /* lead byte beyond U+10FFFF */
        { "\xff", 1, 0 },
        { "a\xe4\xb8", 3, 1 },               /* truncated at the end */
        { "\xe4\x41\x42", 3, 0 },            /* truncated, then ASCII */
        { "\xf0\x9f\x98", 3, 0 },            /* 4-byte sequence cut short */
        { "\xe4\xb8\x81\xe4\xb8\xe4\xb8\x81", 8, 3 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* exact-size heap copy: any read past the end shows under valgrind */
        char *p = malloc(cases[i].len);
        memcpy(p, cases[i].bytes, cases[i].len);
        danu_token *ids = (danu_token *)p;
        size_t n = 99;
        danu_status st = dn_tokenizer_encode(g_tok, p, cases[i].len, DANU_TOKENIZE_PARSE_SPECIAL, &ids, &n);
        ck_assert_msg(st == DANU_ERR_BAD_UTF8, "case %zu: status %d", i, st);
        ck_assert_ptr_null(ids);
        ck_assert_uint_eq(n, 0);
        char want[64];
        snprintf(want, sizeof want, "offset %zu", cases[i].off);
        ck_assert_msg(strstr(dn_lasterr(), want) != NULL, "case %zu: '%s' lacks '%s'", i, dn_lasterr(), want);
        free(p);
    }
    /* valid edge code points pass: U+0000, U+007F, U+0080, U+07FF, U+0800,
     * U+D7FF, U+E000, U+FFFD, U+10000, U+10FFFF */
    static const char ok[] = "\x00\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbd"
                             "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
    size_t n;
    danu_token *ids = enc(g_tok, ok, sizeof ok - 1, 0, &n);
    char *text;
    size_t len;
    ck_assert_int_eq(dn_tokenizer_decode(g_tok, ids, n, &text, &len), DANU_OK);
    ck_assert_uint_eq(len, sizeof ok - 1);
    ck_assert(!memcmp(text, ok, len));
    dn_free(dn_alloc_libc(), text);
    dn_free(dn_alloc_libc(), ids);
}
END_TEST

START_TEST(test_tokenizer_bad_tokens)
{
    char *text = (char *)1;
    size_t len = 7;
    const int32_t bad[][2] = { { 5, -1 }, { 32000, 5 }, { INT32_MIN, 1 }, { 1, INT32_MAX } };
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(dn_tokenizer_decode(g_tok, bad[i], 2, &text, &len), DANU_ERR_BAD_TOKEN);
        ck_assert_ptr_null(text);
    }
    danu_decoder *d;
    ck_assert_int_eq(dn_decoder_create(g_tok, &d), DANU_OK);
    char buf[64];
    ck_assert_int_eq(dn_decoder_push(d, 32000, buf, sizeof buf, &len), DANU_ERR_BAD_TOKEN);
    ck_assert_int_eq(dn_decoder_push(d, -5, buf, sizeof buf, &len), DANU_ERR_BAD_TOKEN);
    /* the failed pushes left the decoder usable */
    ck_assert_int_eq(dn_decoder_push(d, 22172, buf, sizeof buf, &len), DANU_OK);
    ck_assert_str_eq(buf, "hello");
    dn_decoder_free(d);
    dn_decoder_free(NULL);
    dn_tokenizer_free(NULL);
}
END_TEST

/* Expected texts: SentencePiece 0.1.97 decode of the same ids. */
START_TEST(test_tokenizer_decode_rules)
{
    static const struct { int32_t ids[6]; size_t n; const char *text; } cases[] = {
        { { 0, 22172 }, 2, " \xe2\x81\x87  hello" },      /* <unk> -> " U+2047 " */
        { { 29871, 29871, 22172 }, 3, "  hello" },           /* only the first space goes */
        { { 1, 22172 }, 2, "hello" },                         /* control pieces are invisible */
        { { 68, 22172 }, 2, "A hello" },                      /* <0x41> is text: no stripping after */
        { { 231, 1, 187, 132 }, 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },   /* <s> cuts the byte run */
        { { 242, 194, 192 }, 3, "\xef\xbf\xbd" },            /* bytes of U+FFFD itself */
        { { 240, 163, 131 }, 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },      /* surrogate bytes */
        { { 2, 29871, 29871 }, 3, " " },
        { { 1 }, 1, "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text;
        size_t len;
        ck_assert_int_eq(dn_tokenizer_decode(g_tok, cases[i].ids, cases[i].n, &text, &len), DANU_OK);
        ck_assert_msg(!strcmp(text, cases[i].text), "case %zu: '%s'", i, text);
        dn_free(dn_alloc_libc(), text);
        assert_streaming_matches(g_tok, cases[i].ids, cases[i].n, "decode rule");
    }
    size_t len;
    const char *p;
    p = dn_tokenizer_piece(g_tok, 13, &len);
    ck_assert_uint_eq(len, 6);
    ck_assert(!memcmp(p, "<0x0A>", 6));
    ck_assert_int_eq(dn_tokenizer_type(g_tok, 13), DN_TOK_BYTE);
    ck_assert_int_eq(dn_tokenizer_find(g_tok, "\xe2\x96\x81hello", 8), 22172);
    ck_assert_int_eq(dn_tokenizer_find(g_tok, "no such piece", 13), -1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Streaming                                                           */
/* ------------------------------------------------------------------ */

START_TEST(test_tokenizer_streaming_golden)
{
    for (size_t i = 0; i < g_n_dec; i++) {
        char what[48];
        snprintf(what, sizeof what, "decode case %zu", i);
        assert_streaming_matches(g_tok, g_dec[i].ids, g_dec[i].n, what);
    }
    for (size_t i = 0; i < g_n_enc; i++) {
        char what[48];
        snprintf(what, sizeof what, "encode case %zu", i);
        assert_streaming_matches(g_tok, g_enc[i].ids, g_enc[i].n, what);
    }
}
END_TEST

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

START_TEST(test_tokenizer_streaming_random)
{
    rng_state = 12345;
    int32_t ids[40];
    for (int it = 0; it < 3000; it++) {
        size_t n = rnd() % 40;
        for (size_t k = 0; k < n; k++) {
            uint32_t r = rnd() % 100;
            if (r < 55) ids[k] = 3 + (int32_t)(rnd() % 256);                 /* byte pieces */
            else if (r < 65) ids[k] = (int32_t)(rnd() % 3);                  /* unk, bos, eos */
            else if (r < 75) ids[k] = 29871 + (int32_t)(rnd() % 2) * (259 - 29871);   /* spaces */
            else ids[k] = (int32_t)(rnd() % 32000);
        }
        assert_streaming_matches(g_tok, ids, n, "random ids");
    }
}
END_TEST

START_TEST(test_tokenizer_streaming_buffers)
{
    danu_decoder *d;
    ck_assert_int_eq(dn_decoder_create(g_tok, &d), DANU_OK);
    char buf[64];
    size_t len;
    /* a leading space piece emits nothing (dummy prefix), the next keeps its space */
    ck_assert_int_eq(dn_decoder_push(d, 29871, buf, sizeof buf, &len), DANU_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(dn_decoder_push(d, 22172, buf, sizeof buf, &len), DANU_OK);
    ck_assert_str_eq(buf, " hello");
    /* too small: reports the size and keeps its state */
    int32_t sixteen = dn_tokenizer_find(g_tok, "\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81"
                                                "\xe2\x96\x81\xe2\x96\x81\xe2\x96\x81", 24);
    ck_assert_int_ge(sixteen, 0);
    ck_assert_int_eq(dn_decoder_push(d, sixteen, buf, 4, &len), DANU_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(len, 8);
    ck_assert_int_eq(dn_decoder_push(d, sixteen, buf, 9, &len), DANU_OK);
    ck_assert_str_eq(buf, "        ");
    /* a 3-byte character split over byte pieces comes out whole */
    ck_assert_int_eq(dn_decoder_push(d, 3 + 0xe4, buf, sizeof buf, &len), DANU_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(dn_decoder_push(d, 3 + 0xb8, buf, sizeof buf, &len), DANU_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(dn_decoder_push(d, 3 + 0x81, buf, sizeof buf, &len), DANU_OK);
    ck_assert_str_eq(buf, "\xe4\xb8\x81");
    /* flush: an incomplete tail becomes U+FFFD per byte, then a fresh start */
    ck_assert_int_eq(dn_decoder_push(d, 3 + 0xe4, buf, sizeof buf, &len), DANU_OK);
    ck_assert_int_eq(dn_decoder_push(d, 3 + 0xb8, buf, sizeof buf, &len), DANU_OK);
    ck_assert_int_eq(dn_decoder_flush(d, buf, 3, &len), DANU_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(len, 6);
    ck_assert_int_eq(dn_decoder_flush(d, buf, sizeof buf, &len), DANU_OK);
    ck_assert_str_eq(buf, "\xef\xbf\xbd\xef\xbf\xbd");
    ck_assert_int_eq(dn_decoder_push(d, 22172, buf, sizeof buf, &len), DANU_OK);
    ck_assert_str_eq(buf, "hello");
    dn_decoder_reset(d);
    ck_assert_int_eq(dn_decoder_push(d, 22172, buf, sizeof buf, &len), DANU_OK);
    ck_assert_str_eq(buf, "hello");
    dn_decoder_free(d);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Size and speed                                                      */
/* ------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A 1 MB line without spaces (one word: the long-segment merge queue) of
 * random letters, malloc'd. */
static char *long_line(size_t len)
{
    char *text = malloc(len);
    ck_assert_ptr_nonnull(text);
    rng_state = 777;
    for (size_t i = 0; i < len; i++) text[i] = (char)('a' + rnd() % 26);
    return text;
}

/* Slow stage (wall clock): the 1 MB line encodes in under 5 s. */
START_TEST(test_tokenizer_long_line_speed)
{
    const size_t len = 1u << 20;
    char *text = long_line(len);
    size_t n;
    double t0 = now_s();
    danu_token *ids = enc(g_tok, text, len, 0, &n);
    double dt = now_s() - t0;
    printf("tokenizer: 1 MB line encoded in %.2f s\n", dt);
    ck_assert_msg(dt < 5.0, "1 MB line took %.2f s", dt);
    dn_free(dn_alloc_libc(), ids);
    free(text);
}
END_TEST

/* The 1 MB line decodes back to the text. */
START_TEST(test_tokenizer_long_line)
{
    const size_t len = 1u << 20;
    char *text = long_line(len);
    size_t n;
    danu_token *ids = enc(g_tok, text, len, 0, &n);
    ck_assert(n > len / 8 && n < len);
    char *back;
    size_t blen;
    ck_assert_int_eq(dn_tokenizer_decode(g_tok, ids, n, &back, &blen), DANU_OK);
    ck_assert_uint_eq(blen, len);
    ck_assert(!memcmp(back, text, len));
    dn_free(dn_alloc_libc(), back);
    dn_free(dn_alloc_libc(), ids);
    /* a run of spaces and a repeated letter: merges of equal rank in a row */
    memset(text, ' ', len / 4);
    memset(text + len / 4, 'a', len / 4);
    ids = enc(g_tok, text, len / 2, 0, &n);
    ck_assert_int_eq(dn_tokenizer_decode(g_tok, ids, n, &back, &blen), DANU_OK);
    ck_assert_uint_eq(blen, len / 2);   /* decode drops exactly the dummy-prefix space */
    ck_assert(!memcmp(back, text, len / 2));
    dn_free(dn_alloc_libc(), back);
    dn_free(dn_alloc_libc(), ids);
    free(text);
}
END_TEST

/* ------------------------------------------------------------------ */
/* tokenizer.model: truncation and corruption                          */
/* ------------------------------------------------------------------ */

START_TEST(test_tokenizer_spm_truncate)
{
    uint8_t *out;
    size_t len;
    ck_assert_int_eq(dn_spm_truncate(dn_alloc_libc(), g_model, g_model_len, 1024, &out, &len), DANU_OK);
    ck_assert(len < g_model_len);
    danu_tokenizer *t;
    ck_assert_int_eq(dn_tokenizer_from_spm(dn_alloc_libc(), out, len, "t1024", &t), DANU_OK);
    ck_assert_int_eq(dn_tokenizer_n_vocab(t), 1024);
    ck_assert_int_eq(dn_tokenizer_bos(t), 1);
    ck_assert_int_eq(dn_tokenizer_eos(t), 2);
    for (int32_t i = 0; i < 1024; i++) {
        size_t la, lb;
        const char *a = dn_tokenizer_piece(t, i, &la), *b = dn_tokenizer_piece(g_tok, i, &lb);
        ck_assert(la == lb && !memcmp(a, b, la));
        ck_assert(dn_tokenizer_score(t, i) == dn_tokenizer_score(g_tok, i));
        ck_assert_int_eq(dn_tokenizer_type(t, i), dn_tokenizer_type(g_tok, i));
    }
    /* the trainer_spec (35 bytes with its key and length) and normalizer_spec
     * (18) that follow the pieces in this file are kept byte for byte */
    ck_assert(!memcmp(out + len - 53, g_model + g_model_len - 53, 53));
    dn_tokenizer_free(t);
    dn_free(dn_alloc_libc(), out);
    out = (uint8_t *)1;
    ck_assert_int_eq(dn_spm_truncate(dn_alloc_libc(), g_model, g_model_len, 0, &out, &len), DANU_ERR_INVALID_ARG);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(dn_spm_truncate(dn_alloc_libc(), g_model, g_model_len, 32001, &out, &len), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_spm_truncate(dn_alloc_libc(), g_model, 100, 10, &out, &len), DANU_ERR_FORMAT);
}
END_TEST

/* Load a (possibly corrupt) model; if it loads, use it a little. */
static void try_model(const uint8_t *p, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);   /* exact size, so over-reads are visible */
    if (len) memcpy(copy, p, len);
    danu_tokenizer *t = (danu_tokenizer *)copy;
    danu_status st = dn_tokenizer_from_spm(dn_alloc_libc(), copy, len, "corrupt", &t);
    if (st == DANU_OK) {
        size_t n;
        danu_token *ids;
        static const char s[] = "Hello <s> w\xc3\xb6rld \xe4\xb8\xad";
        ck_assert_int_eq(dn_tokenizer_encode(t, s, sizeof s - 1, DANU_TOKENIZE_PARSE_SPECIAL, &ids, &n), DANU_OK);
        char *text;
        size_t tl;
        ck_assert_int_eq(dn_tokenizer_decode(t, ids, n, &text, &tl), DANU_OK);
        ck_assert(valid_utf8((const uint8_t *)text, tl));
        dn_free(dn_alloc_libc(), text);
        dn_free(dn_alloc_libc(), ids);
        dn_tokenizer_free(t);
    } else {
        ck_assert_ptr_null(t);
        ck_assert(st == DANU_ERR_FORMAT || st == DANU_ERR_UNSUPPORTED);
        ck_assert(dn_lasterr()[0] != 0);
    }
    free(copy);
}

START_TEST(test_tokenizer_spm_corrupt)
{
    uint8_t *small;
    size_t len;
    ck_assert_int_eq(dn_spm_truncate(dn_alloc_libc(), g_model, g_model_len, 300, &small, &len), DANU_OK);
    /* truncations: every offset near the start, then a stride */
    for (size_t cut = 0; cut < len; cut += cut < 600 ? 1 : 13) try_model(small, cut);
    /* truncated full model near its end (inside the specs) */
    for (size_t k = 1; k < 80; k++) try_model(g_model, g_model_len - k);
    /* flipped bytes */
    rng_state = 99;
    uint8_t *mut = malloc(len);
    for (int it = 0; it < 1500; it++) {
        memcpy(mut, small, len);
        int flips = 1 + (int)(rnd() % 6);
        for (int f = 0; f < flips; f++) {
            size_t at = rnd() % len;
            uint32_t how = rnd() % 4;
            mut[at] = how == 0 ? (uint8_t)(mut[at] ^ (1u << (rnd() % 8))) : how == 1 ? 0xff : how == 2 ? 0x80 : (uint8_t)rnd();
        }
        try_model(mut, len);
    }
    free(mut);
    /* hand-made: overlong varint, group wire type, length past the end */
    static const uint8_t overlong[] = { 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
    static const uint8_t group[] = { 0x0b, 0x0c };
    static const uint8_t past[] = { 0x0a, 0x7f, 0x0a, 0x01 };
    static const uint8_t zero_field[] = { 0x00, 0x01 };
    ck_assert_int_eq(dn_tokenizer_from_spm(dn_alloc_libc(), overlong, sizeof overlong, "x", &(danu_tokenizer *){ 0 }),
                     DANU_ERR_FORMAT);
    try_model(overlong, sizeof overlong);
    try_model(group, sizeof group);
    try_model(past, sizeof past);
    try_model(zero_field, sizeof zero_field);
    try_model(NULL, 0);
    dn_free(dn_alloc_libc(), small);
}
END_TEST

START_TEST(test_tokenizer_vocab_validation)
{
    const char *pieces[4] = { "<unk>", "<s>", "</s>", "<0x4G>" };
    size_t lens[4] = { 5, 3, 4, 6 };
    int32_t types[4] = { DN_TOK_UNKNOWN, DN_TOK_CONTROL, DN_TOK_CONTROL, DN_TOK_BYTE };
    dn_vocab_src src = { .n = 4, .pieces = pieces, .lens = lens, .types = types,
                         .bos = 1, .eos = 2, .unk = -1, .pad = -1, .add_dummy_prefix = 1, .byte_fallback = 1 };
    danu_tokenizer *t;
    ck_assert_int_eq(dn_tokenizer_from_vocab(dn_alloc_libc(), &src, &t), DANU_ERR_FORMAT);   /* bad byte piece */
    pieces[3] = "<0x4F>";
    ck_assert_int_eq(dn_tokenizer_from_vocab(dn_alloc_libc(), &src, &t), DANU_OK);
    /* 'O' is not a piece: byte fallback to <0x4F> = 3 */
    size_t n;
    danu_token *ids = enc(t, "O", 1, 0, &n);
    /* the dummy-prefix U+2581 has no piece and no byte pieces: one unk per byte */
    static const int32_t want[] = { 0, 0, 0, 3 };
    assert_ids(ids, n, want, 4, "tiny vocab");
    dn_free(dn_alloc_libc(), ids);
    dn_tokenizer_free(t);
    pieces[3] = "a\xff";
    lens[3] = 2;
    types[3] = DN_TOK_NORMAL;
    ck_assert_int_eq(dn_tokenizer_from_vocab(dn_alloc_libc(), &src, &t), DANU_ERR_FORMAT);   /* bad UTF-8 */
    pieces[3] = "ab";
    src.bos = 4;
    ck_assert_int_eq(dn_tokenizer_from_vocab(dn_alloc_libc(), &src, &t), DANU_ERR_FORMAT);   /* id out of range */
    src.bos = 1;
    types[3] = 9;
    ck_assert_int_eq(dn_tokenizer_from_vocab(dn_alloc_libc(), &src, &t), DANU_ERR_FORMAT);   /* bad type */
    types[3] = DN_TOK_NORMAL;
    types[0] = DN_TOK_NORMAL;
    ck_assert_int_eq(dn_tokenizer_from_vocab(dn_alloc_libc(), &src, &t), DANU_ERR_FORMAT);   /* no unknown piece */
}
END_TEST

/* ------------------------------------------------------------------ */
/* Out of memory                                                       */
/* ------------------------------------------------------------------ */

typedef struct counting { long live, calls, fail_at; } counting;

static void *c_malloc(void *u, size_t n)
{
    counting *c = u;
    if (c->calls++ == c->fail_at) return NULL;
    size_t *p = malloc(n + 16);
    if (!p) return NULL;
    p[0] = n;
    c->live++;
    return (char *)p + 16;
}

static void *c_realloc(void *u, void *ptr, size_t n)
{
    counting *c = u;
    if (!ptr) return c_malloc(u, n);
    if (c->calls++ == c->fail_at) return NULL;
    size_t *p = realloc((char *)ptr - 16, n + 16);
    if (!p) return NULL;
    p[0] = n;
    return (char *)p + 16;
}

static void c_free(void *u, void *ptr)
{
    counting *c = u;
    if (!ptr) return;
    c->live--;
    free((char *)ptr - 16);
}

/* Everything the tokenizer does, once, with allocator a. */
static danu_status workload(const dn_alloc *a, const uint8_t *model, size_t len)
{
    danu_tokenizer *t = NULL;
    danu_decoder *d = NULL;
    danu_token *ids = NULL;
    char *text = NULL;
    size_t n, tl;
    danu_status st = dn_tokenizer_from_spm(a, model, len, "oom", &t);
    if (st) return st;
    static const char s[] = "Hello <s>world</s> \xe4\xb8\xad\xf0\x9f\x98\x80";
    if ((st = dn_tokenizer_encode(t, s, sizeof s - 1, DANU_TOKENIZE_PARSE_SPECIAL, &ids, &n))) goto out;
    if ((st = dn_tokenizer_decode(t, ids, n, &text, &tl))) goto out;
    if ((st = dn_decoder_create(t, &d))) goto out;
    dn_free(a, ids);
    ids = NULL;
    const char *roles[] = { "system", "user" };
    const char *contents[] = { "Be brief.", "Hi" };
    if ((st = dn_chat_encode(t, roles, contents, 2, 1, 1, &ids, &n))) goto out;
    /* a long segment takes the bucket queue */
    char *big = dn_malloc(a, 5000);
    if (!big) { st = DANU_ERR_NOMEM; goto out; }
    for (int i = 0; i < 5000; i++) big[i] = (char)('a' + i % 7);
    dn_free(a, ids);
    ids = NULL;
    st = dn_tokenizer_encode(t, big, 5000, 0, &ids, &n);
    dn_free(a, big);
out:
    dn_free(a, ids);
    dn_free(a, text);
    dn_decoder_free(d);
    dn_tokenizer_free(t);
    return st;
}

START_TEST(test_tokenizer_oom)
{
    uint8_t *small;
    size_t len;
    ck_assert_int_eq(dn_spm_truncate(dn_alloc_libc(), g_model, g_model_len, 1024, &small, &len), DANU_OK);
    counting c = { 0, 0, -1 };
    dn_alloc a = { c_malloc, c_realloc, c_free, &c };
    ck_assert_int_eq(workload(&a, small, len), DANU_OK);
    ck_assert_int_eq(c.live, 0);
    long total = c.calls;
    ck_assert(total > 10);
    for (long k = 0; k < total; k++) {
        c = (counting){ 0, 0, k };
        danu_status st = workload(&a, small, len);
        ck_assert_msg(st == DANU_ERR_NOMEM, "failing allocation %ld: status %d", k, st);
        ck_assert_msg(c.live == 0, "failing allocation %ld: %ld blocks leaked", k, c.live);
    }
    dn_free(dn_alloc_libc(), small);
}
END_TEST

static Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tg = tcase_create("golden");
    tcase_add_unchecked_fixture(tg, setup, teardown);
    tcase_set_timeout(tg, 300);
    tcase_add_test(tg, test_tokenizer_spm_golden);
    tcase_add_test(tg, test_tokenizer_gguf_golden);
    tcase_add_test(tg, test_tokenizer_gguf_normalizer_flags);
    tcase_add_test(tg, test_tokenizer_llamacpp_gguf_vs_truncated_spm);
    tcase_add_test(tg, test_tokenizer_bos_eos_flags);
    tcase_add_test(tg, test_tokenizer_parse_special);
    tcase_add_test(tg, test_tokenizer_chat_danube);
    tcase_add_test(tg, test_tokenizer_chat_template_detect);
    tcase_add_test(tg, test_tokenizer_decode_rules);
    suite_add_tcase(s, tg);
    TCase *te = tcase_create("errors");
    tcase_add_unchecked_fixture(te, setup, teardown);
    tcase_set_timeout(te, 300);
    tcase_add_test(te, test_tokenizer_bad_utf8);
    tcase_add_test(te, test_tokenizer_bad_tokens);
    tcase_add_test(te, test_tokenizer_vocab_validation);
    tcase_add_test(te, test_tokenizer_spm_truncate);
    tcase_add_test(te, test_tokenizer_spm_corrupt);
    tcase_add_test(te, test_tokenizer_oom);
    suite_add_tcase(s, te);
    TCase *ts = tcase_create("streaming");
    tcase_add_unchecked_fixture(ts, setup, teardown);
    tcase_set_timeout(ts, 300);
    tcase_add_test(ts, test_tokenizer_streaming_golden);
    tcase_add_test(ts, test_tokenizer_streaming_random);
    tcase_add_test(ts, test_tokenizer_streaming_buffers);
    tcase_add_test(ts, test_tokenizer_long_line);
    suite_add_tcase(s, ts);
    return s;
}

static Suite *tokenizer_slow_suite(void)
{
    Suite *s = suite_create("tokenizer_slow");
    TCase *tc = tcase_create("slow");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_tokenizer_long_line_speed);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    int failed = tu_run(tu_slow_stage(argc, argv) ? tokenizer_slow_suite() : tokenizer_suite());
    return failed ? 1 : 0;
}
