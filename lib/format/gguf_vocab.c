/* gguf_vocab.c - the tokenizer of a GGUF (llama.cpp's "llama" tokenizer is
 * SentencePiece BPE): tokenizer.ggml.tokens / scores / token_type arrays,
 * the special ids and flags, checked and handed to lib/text as arrays. */
#include <string.h>
#include "format/gguf_vocab.h"
#include "common/error.h"

#define K_TOKENS "tokenizer.ggml.tokens"
#define K_SCORES "tokenizer.ggml.scores"
#define K_TYPES "tokenizer.ggml.token_type"

/* Which arrays the file has and their common length. */
typedef struct vocab_shape { size_t n; int have_scores, have_types; } vocab_shape;

/* The model must be "llama", tokens a string array; scores and types,
 * when present, numeric arrays of the same length. */
static danu_status read_shape(const dn_gguf *g, vocab_shape *sh)
{
    const char *model;
    uint64_t mlen;
    if (!dn_gguf_get_str(g, "tokenizer.ggml.model", &model, &mlen))
        return dn_seterr(DANU_ERR_FORMAT, "gguf: tokenizer.ggml.model missing");
    if (mlen != 5 || memcmp(model, "llama", 5))
        return dn_seterr(DANU_ERR_UNSUPPORTED, "gguf: tokenizer.ggml.model '%.*s' is not 'llama'",
                         (int)(mlen > 64 ? 64 : mlen), model);
    int32_t et;
    uint64_t count, c2;
    if (!dn_gguf_get_arr(g, K_TOKENS, &et, &count) || et != DN_GGUF_STRING)
        return dn_seterr(DANU_ERR_FORMAT, "gguf: tokenizer.ggml.tokens missing or not a string array");
    if (count == 0 || count > (1u << 28))
        return dn_seterr(DANU_ERR_FORMAT, "gguf: tokenizer.ggml.tokens has %llu entries", (unsigned long long)count);
    sh->have_scores = dn_gguf_get_arr(g, K_SCORES, &et, &c2);
    if (sh->have_scores && (c2 != count || et == DN_GGUF_STRING || et == DN_GGUF_ARRAY))
        return dn_seterr(DANU_ERR_FORMAT, "gguf: tokenizer.ggml.scores has %llu entries for %llu tokens",
                         (unsigned long long)c2, (unsigned long long)count);
    sh->have_types = dn_gguf_get_arr(g, K_TYPES, &et, &c2);
    if (sh->have_types && (c2 != count || et == DN_GGUF_STRING || et == DN_GGUF_ARRAY))
        return dn_seterr(DANU_ERR_FORMAT, "gguf: tokenizer.ggml.token_type has %llu entries for %llu tokens",
                         (unsigned long long)c2, (unsigned long long)count);
    sh->n = (size_t)count;
    return DANU_OK;
}

/* Piece, score and type of every entry; *byte_fallback when BYTE pieces exist. */
static danu_status read_entries(const dn_gguf *g, const vocab_shape *sh, dn_vocab_arrays *v, int *byte_fallback)
{
    for (size_t i = 0; i < sh->n; i++) {
        uint64_t l;
        double sc = 0.0;
        int64_t ty = DN_TOK_NORMAL;
        if (!dn_gguf_arr_str(g, K_TOKENS, i, &v->pieces[i], &l) ||
            (sh->have_scores && !dn_gguf_arr_f64(g, K_SCORES, i, &sc)) ||
            (sh->have_types && !dn_gguf_arr_i64(g, K_TYPES, i, &ty)))
            return dn_seterr(DANU_ERR_FORMAT, "gguf: tokenizer entry %zu unreadable", i);
        if (ty < DN_TOK_NORMAL || ty > DN_TOK_BYTE)
            return dn_seterr(DANU_ERR_FORMAT, "gguf: tokenizer.ggml.token_type[%zu] = %lld", i, (long long)ty);
        /* a length the builder refuses, without truncating a 64-bit one */
        v->lens[i] = (size_t)(l > DN_TOK_MAX_PIECE_BYTES ? (uint64_t)DN_TOK_MAX_PIECE_BYTES + 1 : l);
        v->scores[i] = (float)sc;
        v->types[i] = (int32_t)ty;
        *byte_fallback |= ty == DN_TOK_BYTE;
    }
    return DANU_OK;
}

/* bos, eos, unknown and padding ids: -1 when absent, an error when outside. */
static danu_status read_ids(const dn_gguf *g, size_t n, int64_t ids[4])
{
    static const char *const keys[4] = { "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                         "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id" };
    for (int k = 0; k < 4; k++) {
        ids[k] = -1;
        if (dn_gguf_get_i64(g, keys[k], &ids[k]) && (ids[k] < 0 || ids[k] >= (int64_t)n))
            return dn_seterr(DANU_ERR_FORMAT, "gguf: %s = %lld outside the vocabulary of %zu", keys[k],
                             (long long)ids[k], n);
    }
    return DANU_OK;
}

danu_status dn_tokenizer_from_gguf(const dn_alloc *a, const dn_gguf *g, danu_tokenizer **out)
{
    if (!a || !g || !out) return dn_seterr(DANU_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    vocab_shape sh = { 0 };
    DN_TRY(read_shape(g, &sh));
    dn_vocab_arrays v;
    if (dn_vocab_arrays_alloc(a, sh.n, &v)) return dn_seterr(DANU_ERR_NOMEM, "gguf: out of memory for the vocabulary");
    int byte_fallback = 0;
    int64_t ids[4];
    danu_status st = read_entries(g, &sh, &v, &byte_fallback);
    if (!st) st = read_ids(g, sh.n, ids);
    if (!st) {
        int add_bos = 1, add_space = 1, rm_ws = 0;   /* llama.cpp's defaults */
        dn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
        dn_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &add_space);
        dn_gguf_get_bool(g, "tokenizer.ggml.remove_extra_whitespaces", &rm_ws);
        dn_vocab_src src = {
            .n = (int32_t)sh.n, .pieces = v.pieces, .lens = v.lens, .scores = sh.have_scores ? v.scores : NULL,
            .types = sh.have_types ? v.types : NULL,
            .bos = (int32_t)ids[0], .eos = (int32_t)ids[1], .unk = (int32_t)ids[2], .pad = (int32_t)ids[3],
            .add_bos = add_bos, .add_dummy_prefix = add_space, .byte_fallback = byte_fallback,
            .remove_extra_whitespaces = rm_ws, .what = "gguf tokenizer",
        };
        st = dn_tokenizer_from_vocab(a, &src, out);
    }
    dn_vocab_arrays_free(a, &v);
    return st;
}
