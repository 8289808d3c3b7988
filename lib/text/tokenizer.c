/* tokenizer.c - SentencePiece BPE tokenizer with the semantics of
 * SentencePiece 0.1.97 (Llama 2 model): identity normalizer, BPE merges by
 * score with byte fallback, SentencePiece's whole-sequence decode, a
 * streaming decoder that emits only complete UTF-8, and a bounded protobuf
 * reader for tokenizer.model.
 *
 * Encoding is O(n log n): symbols form a doubly linked list over the
 * normalized text and candidate merges sit in a priority queue ordered by
 * (score rank, left position) - best score first, leftmost on ties, exactly
 * SentencePiece's order: a binary heap for short segments, one bucket per
 * rank for long ones (a 1 MB word stays fast). When no mergeable piece
 * contains U+2581 right after another character, no merge can cross the
 * start of a word, so the text is encoded word by word (same result, small
 * heaps that stay in cache) and repeated words come from a per-call cache. */
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <stddef.h>
#include "text/tokenizer.h"
#include "common/alloc.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/utf8.h"

#define WS_SYM "\xe2\x96\x81"   /* U+2581, SentencePiece's escaped space */
#define WS_SYM_LEN 3
#define UNK_SURFACE_DEFAULT " \xe2\x81\x87 "   /* " U+2047 " */

typedef struct slot { uint64_t head; uint32_t lf; int32_t id; } slot;

struct danu_tokenizer {
    dn_alloc a;
    int32_t n;
    char *blob;          /* pieces, each followed by a NUL */
    uint32_t *off;       /* n+1 offsets into blob; piece i is [off[i], off[i+1]-1) */
    float *score;
    uint32_t *rank;      /* mergeable pieces: 0 = highest score; equal scores share a rank */
    uint32_t n_ranks;
    uint8_t *type;
    uint8_t *byteval;    /* value of BYTE pieces */
    int32_t byte_id[256];
    int32_t ascii_id[128];
    slot *tab;           /* open addressing, id -1 = empty */
    uint32_t mask;
    int32_t bos, eos, unk;
    int add_bos, dummy, byte_fallback, rm_ws;
    const char *ws;      /* what a space becomes: U+2581 or " " */
    uint32_t ws_len;
    uint32_t max_merge_len;
    uint32_t max_len;    /* longest piece */
    int split_words, has_unused;
    uint32_t *ud_len;    /* distinct USER_DEFINED lengths, longest first */
    int n_ud_len;
    int32_t *special;    /* CONTROL and UNKNOWN pieces, longest first */
    int n_special;
    uint8_t special_first[256];
    char *unk_surface;
    size_t unk_surface_len;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static inline uint32_t piece_len(const danu_tokenizer *t, int32_t id) { return t->off[id + 1] - t->off[id] - 1; }
static inline const char *piece_ptr(const danu_tokenizer *t, int32_t id) { return t->blob + t->off[id]; }
/* SentencePiece merges only into NORMAL, USER_DEFINED and UNUSED pieces. */
static inline int mergeable(uint8_t type)
{
    return type == DN_TOK_NORMAL || type == DN_TOK_USER_DEFINED || type == DN_TOK_UNUSED;
}

/* First min(n, 8) bytes, zero padded. */
static inline uint64_t head8(const char *s, size_t n)
{
    uint64_t v = 0;
    memcpy(&v, s, n < 8 ? n : 8);
    return v;
}

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_bytes(const char *s, size_t n, uint64_t head)
{
    uint64_t h = head ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull);
    for (size_t k = 8; k < n; k += 8) {
        h = mix64(h);
        h ^= head8(s + k, n - k);
    }
    return mix64(h);
}

/* Slots keep the first 8 bytes and the length: most lookups touch one slot. */
static inline uint32_t len_fp(size_t n, uint64_t h) { return (uint32_t)(n << 16) | (uint32_t)(h >> 48); }

static int32_t find_piece(const danu_tokenizer *t, const char *s, size_t n)
{
    if (n == 0 || n > DN_TOK_MAX_PIECE_BYTES) return -1;
    uint64_t head = head8(s, n), h = hash_bytes(s, n, head);
    uint32_t lf = len_fp(n, h), i = (uint32_t)h & t->mask;
    for (;;) {
        const slot *e = &t->tab[i];
        if (e->id < 0) return -1;
        if (e->lf == lf && e->head == head && (n <= 8 || !memcmp(piece_ptr(t, e->id) + 8, s + 8, n - 8)))
            return e->id;
        i = (i + 1) & t->mask;
    }
}

/* Insert id; returns the id already holding the same bytes, or -1. */
static int32_t insert_piece(danu_tokenizer *t, int32_t id)
{
    const char *s = piece_ptr(t, id);
    size_t n = piece_len(t, id);
    int32_t prev = find_piece(t, s, n);
    if (prev >= 0) return prev;
    uint64_t head = head8(s, n), h = hash_bytes(s, n, head);
    uint32_t i = (uint32_t)h & t->mask;
    while (t->tab[i].id >= 0) i = (i + 1) & t->mask;
    t->tab[i] = (slot){ head, len_fp(n, h), id };
    return -1;
}

/* ------------------------------------------------------------------ */
/* Building                                                            */
/* ------------------------------------------------------------------ */

void dn_tokenizer_free(danu_tokenizer *t)
{
    if (!t) return;
    dn_alloc a = t->a;
    dn_free(&a, t->blob);
    dn_free(&a, t->off);
    dn_free(&a, t->score);
    dn_free(&a, t->rank);
    dn_free(&a, t->type);
    dn_free(&a, t->byteval);
    dn_free(&a, t->tab);
    dn_free(&a, t->ud_len);
    dn_free(&a, t->special);
    dn_free(&a, t->unk_surface);
    dn_free(&a, t);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;   /* SentencePiece writes byte pieces as <0x%02X> */
}

/* Does piece s contain the space symbol right after a different character?
 * If no mergeable piece does, merges never cross a word start. */
static int ws_inside(const char *s, size_t n, const char *ws, size_t wl)
{
    for (size_t k = 1; k + wl <= n; k++) {
        if (memcmp(s + k, ws, wl)) continue;
        if (k < wl || memcmp(s + k - wl, ws, wl)) return 1;
    }
    return 0;
}

typedef struct score_id { float s; int32_t id; } score_id;

/* Highest score first; NaN (corrupt files only) after everything. */
static int cmp_score_desc(const void *x, const void *y)
{
    float a = ((const score_id *)x)->s, b = ((const score_id *)y)->s;
    int an = a != a, bn = b != b;
    if (an || bn) return an - bn;
    return a > b ? -1 : a < b ? 1 : 0;
}

/* Ranks of mergeable pieces, so the merge order is an integer compare. */
static danu_status make_ranks(danu_tokenizer *t, const char *what)
{
    size_t m = 0;
    for (int32_t i = 0; i < t->n; i++) m += mergeable(t->type[i]);
    t->rank = dn_malloc(&t->a, (size_t)t->n * sizeof *t->rank);
    score_id *v = dn_malloc(&t->a, (m ? m : 1) * sizeof *v);
    if (!t->rank || !v) {
        dn_free(&t->a, v);
        return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    }
    m = 0;
    for (int32_t i = 0; i < t->n; i++) {
        t->rank[i] = UINT32_MAX;
        if (mergeable(t->type[i])) v[m++] = (score_id){ t->score[i], i };
    }
    qsort(v, m, sizeof *v, cmp_score_desc);
    uint32_t r = 0;
    for (size_t k = 0; k < m; k++) {
        if (k && cmp_score_desc(&v[k - 1], &v[k]) != 0) r++;
        t->rank[v[k].id] = r;
    }
    t->n_ranks = m ? r + 1 : 0;
    dn_free(&t->a, v);
    return DANU_OK;
}

static int cmp_len_desc_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* Common builder. strict = SentencePiece's own load rules (no duplicate or
 * empty pieces, exactly one UNKNOWN piece). */
static danu_status build(const dn_alloc *a, const dn_vocab_src *src, danu_tokenizer **out)
{
    danu_status st = DANU_OK;
    if (!a || !src || !out) return dn_seterr(DANU_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    const char *what = src->what ? src->what : "vocabulary";
    const char *unk_surface = src->unk_surface;
    size_t unk_surface_len = src->unk_surface_len;
    int strict = src->strict, escape_ws = !src->keep_spaces;
    int32_t n = src->n;
    if (n <= 0 || n > (1 << 28))
        return dn_seterr(DANU_ERR_FORMAT, "%s: vocabulary size %d out of range", what, (int)n);
    if (!src->pieces || !src->lens)
        return dn_seterr(DANU_ERR_INVALID_ARG, "%s: pieces or lengths missing", what);

    danu_tokenizer *t = dn_calloc(a, 1, sizeof *t);
    if (!t) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    t->a = *a;
    t->n = n;

    uint64_t blob = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t l = src->lens[i];
        if (l > DN_TOK_MAX_PIECE_BYTES) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: piece %d is %zu bytes long (limit %u)", what, (int)i, l,
                           DN_TOK_MAX_PIECE_BYTES);
            goto fail;
        }
        if (l && !src->pieces[i]) {
            st = dn_seterr(DANU_ERR_INVALID_ARG, "%s: piece %d is NULL", what, (int)i);
            goto fail;
        }
        blob += l + 1;
    }
    if (blob > UINT32_MAX) {
        st = dn_seterr(DANU_ERR_FORMAT, "%s: pieces total %llu bytes", what, (unsigned long long)blob);
        goto fail;
    }
    uint32_t tab_n = 16;
    while (tab_n < (uint32_t)n * 2u) tab_n <<= 1;
    t->blob = dn_malloc(a, (size_t)blob);
    t->off = dn_malloc(a, ((size_t)n + 1) * sizeof *t->off);
    t->score = dn_malloc(a, (size_t)n * sizeof *t->score);
    t->type = dn_malloc(a, (size_t)n);
    t->byteval = dn_calloc(a, (size_t)n, 1);
    t->tab = dn_malloc(a, (size_t)tab_n * sizeof *t->tab);
    if (!t->blob || !t->off || !t->score || !t->type || !t->byteval || !t->tab) {
        st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory for %d pieces", what, (int)n);
        goto fail;
    }
    t->mask = tab_n - 1;
    for (uint32_t i = 0; i < tab_n; i++) t->tab[i].id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int i = 0; i < 128; i++) t->ascii_id[i] = -1;

    uint32_t pos = 0;
    int n_unknown = 0, first_unknown = -1, n_special = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t l = src->lens[i];
        int32_t ty = src->types ? src->types[i] : DN_TOK_NORMAL;
        if (ty < DN_TOK_NORMAL || ty > DN_TOK_BYTE) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: piece %d has unknown type %d", what, (int)i, (int)ty);
            goto fail;
        }
        if (l == 0 && strict) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: piece %d is empty", what, (int)i);
            goto fail;
        }
        size_t bad = dn_utf8_check((const uint8_t *)src->pieces[i], l);
        if (bad != l) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: piece %d is not valid UTF-8 (byte %zu)", what, (int)i, bad);
            goto fail;
        }
        t->off[i] = pos;
        if (l > t->max_len) t->max_len = (uint32_t)l;
        if (l) memcpy(t->blob + pos, src->pieces[i], l);
        t->blob[pos + l] = 0;
        pos += (uint32_t)l + 1;
        t->type[i] = (uint8_t)ty;
        t->score[i] = src->scores ? src->scores[i] : 0.0f;
        const char *p = src->pieces[i];
        if (ty == DN_TOK_BYTE) {
            int hi = l == 6 ? hexval(p[3]) : -1, lo = l == 6 ? hexval(p[4]) : -1;
            if (l != 6 || memcmp(p, "<0x", 3) || p[5] != '>' || hi < 0 || lo < 0) {
                st = dn_seterr(DANU_ERR_FORMAT, "%s: BYTE piece %d is not of the form <0xXX>", what, (int)i);
                goto fail;
            }
            t->byteval[i] = (uint8_t)(hi * 16 + lo);
            if (t->byte_id[t->byteval[i]] < 0) t->byte_id[t->byteval[i]] = i;
        }
        if (ty == DN_TOK_UNKNOWN) {
            n_unknown++;
            if (first_unknown < 0) first_unknown = i;
        }
        if ((ty == DN_TOK_CONTROL || ty == DN_TOK_UNKNOWN) && l) n_special++;
        if (ty == DN_TOK_UNUSED) t->has_unused = 1;
    }
    t->off[n] = pos;
    for (int32_t i = 0; i < n; i++) {
        if (piece_len(t, i) == 0) continue;
        int32_t prev = insert_piece(t, i);
        if (prev >= 0 && strict) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: piece %d duplicates piece %d", what, (int)i, (int)prev);
            goto fail;
        }
    }
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        t->ascii_id[c] = find_piece(t, &ch, 1);
    }

    if (strict && n_unknown != 1) {
        st = dn_seterr(DANU_ERR_FORMAT, "%s: %d pieces of type UNKNOWN (need exactly 1)", what, n_unknown);
        goto fail;
    }
    t->unk = src->unk >= 0 ? src->unk : first_unknown;
    if (t->unk < 0 || t->unk >= n) {
        st = dn_seterr(DANU_ERR_FORMAT, "%s: no unknown piece (unk id %d, vocabulary %d)", what, (int)src->unk, (int)n);
        goto fail;
    }
    const int32_t ids[3] = { src->bos, src->eos, src->pad };
    for (int k = 0; k < 3; k++) {
        if (ids[k] < -1 || ids[k] >= n) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: special id %d out of range [0, %d)", what, (int)ids[k], (int)n);
            goto fail;
        }
    }
    t->bos = src->bos;
    t->eos = src->eos;
    t->add_bos = src->add_bos && t->bos >= 0;
    t->dummy = src->add_dummy_prefix != 0;
    t->byte_fallback = src->byte_fallback != 0;
    t->rm_ws = src->remove_extra_whitespaces != 0;
    t->ws = escape_ws ? WS_SYM : " ";
    t->ws_len = escape_ws ? WS_SYM_LEN : 1;

    if ((st = make_ranks(t, what))) goto fail;
    /* merge limits, word splitting, user-defined lengths */
    uint32_t n_ud = 0;
    t->split_words = 1;
    for (int32_t i = 0; i < n; i++) {
        if (!mergeable(t->type[i])) continue;
        uint32_t l = piece_len(t, i);
        if (l > t->max_merge_len) t->max_merge_len = l;
        if (t->split_words && ws_inside(piece_ptr(t, i), l, t->ws, t->ws_len)) t->split_words = 0;
        if (t->type[i] == DN_TOK_USER_DEFINED && l) n_ud++;
    }
    /* SentencePiece's rev_merge for UNUSED pieces is shared by the whole
     * input, so those vocabularies are encoded in one piece. */
    if (t->has_unused) t->split_words = 0;
    if (n_ud) {
        t->ud_len = dn_malloc(a, n_ud * sizeof *t->ud_len);
        if (!t->ud_len) { st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what); goto fail; }
        for (int32_t i = 0; i < n; i++) {
            if (t->type[i] != DN_TOK_USER_DEFINED || !piece_len(t, i)) continue;
            uint32_t l = piece_len(t, i);
            int seen = 0;
            for (int k = 0; k < t->n_ud_len; k++) seen |= t->ud_len[k] == l;
            if (!seen) t->ud_len[t->n_ud_len++] = l;
        }
        qsort(t->ud_len, (size_t)t->n_ud_len, sizeof *t->ud_len, cmp_len_desc_u32);
    }
    if (n_special) {
        t->special = dn_malloc(a, (size_t)n_special * sizeof *t->special);
        if (!t->special) { st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what); goto fail; }
        for (int32_t i = 0; i < n; i++) {
            if ((t->type[i] != DN_TOK_CONTROL && t->type[i] != DN_TOK_UNKNOWN) || !piece_len(t, i)) continue;
            /* insertion sort, longest first, so the first match is the longest */
            int k = t->n_special++;
            while (k > 0 && piece_len(t, t->special[k - 1]) < piece_len(t, i)) {
                t->special[k] = t->special[k - 1];
                k--;
            }
            t->special[k] = i;
            t->special_first[(uint8_t)piece_ptr(t, i)[0]] = 1;
        }
    }
    if (!unk_surface) { unk_surface = UNK_SURFACE_DEFAULT; unk_surface_len = sizeof UNK_SURFACE_DEFAULT - 1; }
    if (unk_surface_len > DN_TOK_MAX_PIECE_BYTES ||
        dn_utf8_check((const uint8_t *)unk_surface, unk_surface_len) != unk_surface_len) {
        st = dn_seterr(DANU_ERR_FORMAT, "%s: unk_surface is not valid UTF-8 or too long", what);
        goto fail;
    }
    t->unk_surface = dn_strndup(a, unk_surface, unk_surface_len);
    if (!t->unk_surface) { st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what); goto fail; }
    t->unk_surface_len = unk_surface_len;
    *out = t;
    return DANU_OK;
fail:
    dn_tokenizer_free(t);
    return st;
}

danu_status dn_vocab_arrays_alloc(const dn_alloc *a, size_t n, dn_vocab_arrays *v)
{
    v->pieces = dn_malloc(a, n * sizeof *v->pieces);
    v->lens = dn_malloc(a, n * sizeof *v->lens);
    v->scores = dn_malloc(a, n * sizeof *v->scores);
    v->types = dn_malloc(a, n * sizeof *v->types);
    if (v->pieces && v->lens && v->scores && v->types) return DANU_OK;
    dn_vocab_arrays_free(a, v);
    return DANU_ERR_NOMEM;
}

void dn_vocab_arrays_free(const dn_alloc *a, dn_vocab_arrays *v)
{
    dn_free(a, v->pieces);
    dn_free(a, v->lens);
    dn_free(a, v->scores);
    dn_free(a, v->types);
    *v = (dn_vocab_arrays){ 0 };
}

danu_status dn_tokenizer_from_vocab(const dn_alloc *a, const dn_vocab_src *src, danu_tokenizer **out)
{
    return build(a, src, out);
}

/* ------------------------------------------------------------------ */
/* Accessors                                                           */
/* ------------------------------------------------------------------ */

int32_t dn_tokenizer_n_vocab(const danu_tokenizer *t) { return t ? t->n : 0; }
int32_t dn_tokenizer_bos(const danu_tokenizer *t) { return t->bos; }
int32_t dn_tokenizer_eos(const danu_tokenizer *t) { return t->eos; }
int32_t dn_tokenizer_unk(const danu_tokenizer *t) { return t->unk; }
int dn_tokenizer_add_bos(const danu_tokenizer *t) { return t->add_bos; }
const dn_alloc *dn_tokenizer_alloc(const danu_tokenizer *t) { return &t->a; }
const char *dn_tokenizer_piece(const danu_tokenizer *t, int32_t id, size_t *len)
{
    if (len) *len = piece_len(t, id);
    return piece_ptr(t, id);
}
float dn_tokenizer_score(const danu_tokenizer *t, int32_t id) { return t->score[id]; }
int32_t dn_tokenizer_type(const danu_tokenizer *t, int32_t id) { return t->type[id]; }
int32_t dn_tokenizer_find(const danu_tokenizer *t, const char *piece, size_t len)
{
    return piece ? find_piece(t, piece, len) : -1;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

typedef struct sym {
    uint32_t start, len;     /* bytes of the normalized segment; len 0 = merged away */
    int32_t prev, next;
    int32_t id;              /* piece id, -1 when not in the vocabulary */
    int32_t frozen;          /* USER_DEFINED match: never merged */
    uint32_t prank;          /* rank of the merge with `next`, NO_RANK if none */
    int32_t pid;             /* the piece that merge makes */
} sym;

#define NO_RANK UINT32_MAX
/* Segments with more symbols than this use the bucket queue. */
#ifndef BUCKET_MIN_SYMS
#define BUCKET_MIN_SYMS 2048
#endif

/* Queue key: merge rank (0 = best score) then left symbol, smallest first:
 * SentencePiece's order (higher score, then leftmost). */
static inline uint64_t qkey(uint32_t rank, int32_t left) { return ((uint64_t)rank << 32) | (uint32_t)left; }

/* One rank's entries (left symbol indices): a sorted run that is appended
 * to while lefts arrive in order, plus a min-heap for the rest. */
typedef struct bucket {
    int32_t *run;
    uint32_t head, n, cap;
    int32_t *hp;
    uint32_t hn, hcap;
} bucket;

typedef struct work {
    const danu_tokenizer *t;
    const char *s;           /* the segment being merged */
    sym *sy;
    size_t sy_cap;
    uint64_t *hp;            /* binary min-heap of qkeys (short segments) */
    size_t hp_n, hp_cap;
    bucket *bk;              /* per-rank buckets (long segments) */
    uint64_t *bits, *summary;/* nonempty buckets; nonempty words of bits */
    uint32_t n_bits_words, n_sum_words, lo;
    int use_buckets;
    int32_t *rev;            /* UNUSED piece -> left length of its last recorded merge */
    uint32_t *stack;         /* resegmentation stack: (start, len) pairs */
    danu_token *ids;
    size_t n_ids, cap_ids;
} work;

static danu_status push_id(work *w, danu_token id)
{
    if (w->n_ids == w->cap_ids) {
        size_t cap = w->cap_ids ? w->cap_ids * 2 : 64;
        danu_token *p = dn_realloc(&w->t->a, w->ids, cap * sizeof *p);
        if (!p) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory for %zu ids", cap);
        w->ids = p;
        w->cap_ids = cap;
    }
    w->ids[w->n_ids++] = id;
    return DANU_OK;
}

static void heap_down(uint64_t *h, size_t n, size_t i)
{
    uint64_t c = h[i];
    for (;;) {
        size_t l = 2 * i + 1, best;
        if (l >= n) break;
        best = l + 1 < n && h[l + 1] < h[l] ? l + 1 : l;
        if (h[best] >= c) break;
        h[i] = h[best];
        i = best;
    }
    h[i] = c;
}

static void heap_up(uint64_t *h, size_t i)
{
    uint64_t c = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= c) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static void iheap_down(int32_t *h, uint32_t n, uint32_t i)
{
    int32_t c = h[i];
    for (;;) {
        uint32_t l = 2 * i + 1, best;
        if (l >= n) break;
        best = l + 1 < n && h[l + 1] < h[l] ? l + 1 : l;
        if (h[best] >= c) break;
        h[i] = h[best];
        i = best;
    }
    h[i] = c;
}

static danu_status grow_i32(const dn_alloc *a, int32_t **v, uint32_t *cap)
{
    uint32_t nc = *cap ? *cap * 2 : 8;
    if (nc < *cap) return dn_seterr(DANU_ERR_NOMEM, "encode: merge queue overflow");
    int32_t *p = dn_realloc(a, *v, (size_t)nc * sizeof *p);
    if (!p) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory for the merge queue");
    *v = p;
    *cap = nc;
    return DANU_OK;
}

static danu_status bq_push(work *w, uint32_t r, int32_t left)
{
    bucket *b = &w->bk[r];
    if (b->head == b->n) b->head = b->n = 0;
    if (b->n == 0 || left >= b->run[b->n - 1]) {
        if (b->n == b->cap) DN_TRY(grow_i32(&w->t->a, &b->run, &b->cap));
        b->run[b->n++] = left;
    } else {
        if (b->hn == b->hcap) DN_TRY(grow_i32(&w->t->a, &b->hp, &b->hcap));
        uint32_t i = b->hn++;
        while (i > 0 && b->hp[(i - 1) / 2] > left) {
            b->hp[i] = b->hp[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        b->hp[i] = left;
    }
    w->bits[r >> 6] |= 1ull << (r & 63);
    w->summary[r >> 12] |= 1ull << ((r >> 6) & 63);
    if (r < w->lo) w->lo = r;
    return DANU_OK;
}

/* Pop the smallest (rank, left); 0 when the queue is empty. */
static int bq_pop(work *w, uint32_t *rank, int32_t *left)
{
    uint32_t wi = w->lo >> 6;
    if (wi >= w->n_bits_words) return 0;
    uint64_t m = w->bits[wi] & (~0ull << (w->lo & 63));
    if (!m) {
        uint32_t nw = wi + 1, si = nw >> 6;
        if (si >= w->n_sum_words) return 0;
        uint64_t sm = w->summary[si] & (~0ull << (nw & 63));
        while (!sm) {
            if (++si >= w->n_sum_words) return 0;
            sm = w->summary[si];
        }
        wi = (si << 6) | (uint32_t)__builtin_ctzll(sm);
        m = w->bits[wi];
    }
    uint32_t r = (wi << 6) | (uint32_t)__builtin_ctzll(m);
    w->lo = r;
    bucket *b = &w->bk[r];
    if (b->head < b->n && (b->hn == 0 || b->run[b->head] <= b->hp[0])) {
        *left = b->run[b->head++];
    } else {
        *left = b->hp[0];
        b->hp[0] = b->hp[--b->hn];
        if (b->hn) iheap_down(b->hp, b->hn, 0);
    }
    if (b->head == b->n && b->hn == 0) {
        b->head = b->n = 0;
        w->bits[wi] &= ~(1ull << (r & 63));
        if (!w->bits[wi]) w->summary[wi >> 6] &= ~(1ull << (wi & 63));
    }
    *rank = r;
    return 1;
}

/* Record the merge of symbols left and right if their concatenation is a
 * mergeable piece, and queue it (SentencePiece's MaybeAddNewSymbolPair).
 * A queued entry is live while its left symbol still has that rank. */
static danu_status maybe_add(work *w, int32_t left, int32_t right, int heapify_later)
{
    if (left < 0) return DANU_OK;
    sym *l = &w->sy[left];
    l->prank = NO_RANK;
    if (right < 0) return DANU_OK;
    const sym *r = &w->sy[right];
    if (l->frozen || r->frozen) return DANU_OK;
    uint32_t size = l->len + r->len;
    const danu_tokenizer *t = w->t;
    if (size > t->max_merge_len) return DANU_OK;
    int32_t id = find_piece(t, w->s + l->start, size);
    if (id < 0 || !mergeable(t->type[id])) return DANU_OK;
    l->prank = t->rank[id];
    l->pid = id;
    if (w->rev && t->type[id] == DN_TOK_UNUSED) w->rev[id] = (int32_t)l->len;
    if (w->use_buckets) return bq_push(w, l->prank, left);
    w->hp[w->hp_n] = qkey(l->prank, left);
    if (!heapify_later) heap_up(w->hp, w->hp_n);
    w->hp_n++;   /* capacity is reserved: at most 3 entries per symbol */
    return DANU_OK;
}

static danu_status emit_final(work *w, uint32_t start, uint32_t len, int32_t id)
{
    const danu_tokenizer *t = w->t;
    if (id < 0 || t->type[id] == DN_TOK_UNKNOWN) {
        if (!t->byte_fallback) return push_id(w, t->unk);
        for (uint32_t k = 0; k < len; k++) {
            int32_t b = t->byte_id[(uint8_t)w->s[start + k]];
            DN_TRY(push_id(w, b >= 0 ? b : t->unk));
        }
        return DANU_OK;
    }
    return push_id(w, id);
}

/* Emit one final symbol; UNUSED pieces are split back into the two parts
 * they were last merged from (SentencePiece's resegment). */
static danu_status emit_symbol(work *w, uint32_t start, uint32_t len, int32_t id)
{
    const danu_tokenizer *t = w->t;
    if (!w->rev || id < 0 || t->type[id] != DN_TOK_UNUSED || w->rev[id] <= 0 || (uint32_t)w->rev[id] >= len)
        return emit_final(w, start, len, id);
    size_t sp = 0;
    w->stack[sp++] = start;
    w->stack[sp++] = len;
    while (sp) {
        uint32_t l = w->stack[--sp], s = w->stack[--sp];
        int32_t pid = find_piece(t, w->s + s, l);
        if (pid >= 0 && t->type[pid] == DN_TOK_UNUSED && w->rev[pid] > 0 && (uint32_t)w->rev[pid] < l) {
            uint32_t left = (uint32_t)w->rev[pid];
            w->stack[sp++] = s + left;   /* right part, handled second */
            w->stack[sp++] = l - left;
            w->stack[sp++] = s;
            w->stack[sp++] = left;
            continue;
        }
        DN_TRY(emit_final(w, s, l, pid));
    }
    return DANU_OK;
}

/* Length of the USER_DEFINED piece starting at s (longest), or 0. */
static uint32_t match_user(const danu_tokenizer *t, const char *s, size_t avail, int32_t *id)
{
    for (int k = 0; k < t->n_ud_len; k++) {
        uint32_t l = t->ud_len[k];
        if (l > avail) continue;
        int32_t p = find_piece(t, s, l);
        if (p >= 0 && t->type[p] == DN_TOK_USER_DEFINED) { *id = p; return l; }
    }
    return 0;
}

static inline uint32_t char_len(uint8_t b)
{
    return b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;   /* input is validated UTF-8 */
}

/* Merge symbol left with its next neighbour into piece pid. */
static danu_status merge(work *w, int32_t left)
{
    sym *l = &w->sy[left], *r = &w->sy[l->next];
    l->len += r->len;
    l->id = l->pid;
    l->next = r->next;
    if (r->next >= 0) w->sy[r->next].prev = left;
    r->len = 0;
    DN_TRY(maybe_add(w, l->prev, left, 0));
    return maybe_add(w, left, l->next, 0);
}

static danu_status alloc_buckets(work *w)
{
    const danu_tokenizer *t = w->t;
    if (w->bk) return DANU_OK;
    uint32_t nb = t->n_ranks ? t->n_ranks : 1;
    w->n_bits_words = (nb + 63) / 64;
    w->n_sum_words = (w->n_bits_words + 63) / 64;
    w->bk = dn_calloc(&t->a, nb, sizeof *w->bk);
    w->bits = dn_calloc(&t->a, w->n_bits_words, sizeof *w->bits);
    w->summary = dn_calloc(&t->a, w->n_sum_words, sizeof *w->summary);
    if (!w->bk || !w->bits || !w->summary) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory for the merge queue");
    return DANU_OK;
}

/* BPE over s[0..n) (one word or a whole normalized segment). */
static danu_status bpe(work *w, const char *s, uint32_t n)
{
    const danu_tokenizer *t = w->t;
    w->s = s;
    uint32_t nsym = 0;
    for (uint32_t pos = 0; pos < n;) {
        sym *y = &w->sy[nsym];
        int32_t id = -1;
        uint32_t l = t->n_ud_len ? match_user(t, s + pos, n - pos, &id) : 0;
        y->frozen = l != 0;
        if (!l) {
            uint8_t b = (uint8_t)s[pos];
            l = char_len(b);
            if (l > n - pos) l = n - pos;
            id = b < 0x80 ? t->ascii_id[b] : find_piece(t, s + pos, l);
        }
        y->start = pos;
        y->len = l;
        y->id = id;
        y->prank = NO_RANK;
        y->prev = (int32_t)nsym - 1;
        y->next = (int32_t)nsym + 1;
        nsym++;
        pos += l;
    }
    if (nsym == 0) return DANU_OK;
    w->sy[nsym - 1].next = -1;

    w->use_buckets = nsym > BUCKET_MIN_SYMS;
    if (nsym > 1 && w->use_buckets) {
        DN_TRY(alloc_buckets(w));
        w->lo = 0;
        for (uint32_t i = 1; i < nsym; i++) DN_TRY(maybe_add(w, (int32_t)i - 1, (int32_t)i, 0));
        uint32_t rank;
        int32_t left;
        while (bq_pop(w, &rank, &left)) {
            const sym *l = &w->sy[left];
            if (l->len && l->prank == rank) DN_TRY(merge(w, left));
        }
    } else if (nsym > 1) {
        w->hp_n = 0;
        for (uint32_t i = 1; i < nsym; i++) maybe_add(w, (int32_t)i - 1, (int32_t)i, 1);
        for (size_t i = w->hp_n / 2; i-- > 0;) heap_down(w->hp, w->hp_n, i);
        while (w->hp_n) {
            uint64_t top = w->hp[0];
            w->hp[0] = w->hp[--w->hp_n];
            if (w->hp_n) heap_down(w->hp, w->hp_n, 0);
            int32_t left = (int32_t)(uint32_t)top;
            const sym *l = &w->sy[left];
            if (l->len && l->prank == (uint32_t)(top >> 32)) merge(w, left);   /* cannot fail: no allocation */
        }
    }
    for (int32_t i = 0; i >= 0; i = w->sy[i].next) DN_TRY(emit_symbol(w, w->sy[i].start, w->sy[i].len, w->sy[i].id));
    return DANU_OK;
}

/* Make room for a segment of up to nsym symbols. */
static danu_status reserve(work *w, size_t nsym)
{
    if (nsym <= w->sy_cap) return DANU_OK;
    const dn_alloc *a = &w->t->a;
    if (nsym > INT32_MAX / 4) return dn_seterr(DANU_ERR_INVALID_ARG, "encode: text too long");
    sym *sy = dn_realloc(a, w->sy, nsym * sizeof *sy);
    if (!sy) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory for %zu symbols", nsym);
    w->sy = sy;
    w->sy_cap = nsym;
    /* the heap serves short segments only: at most 3 entries per symbol */
    size_t hp_cap = 3 * (nsym < BUCKET_MIN_SYMS ? nsym : BUCKET_MIN_SYMS) + 3;
    if (hp_cap > w->hp_cap) {
        uint64_t *hp = dn_realloc(a, w->hp, hp_cap * sizeof *hp);
        if (!hp) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory for %zu symbols", nsym);
        w->hp = hp;
        w->hp_cap = hp_cap;
    }
    return DANU_OK;
}

/* SentencePiece's identity normalizer: optional dummy prefix, spaces to the
 * space symbol, and (when remove_extra_whitespaces) no leading, trailing or
 * repeated spaces. Returns the normalized length in w->norm. */
static size_t normalize(const danu_tokenizer *t, const char *text, size_t len, int dummy, char *out)
{
    size_t i = 0, o = 0;
    if (t->rm_ws) while (i < len && text[i] == ' ') i++;
    if (i == len) return 0;
    if (dummy) { memcpy(out, t->ws, t->ws_len); o = t->ws_len; }
    int prev_space = t->rm_ws;
    for (; i < len; i++) {
        char c = text[i];
        if (c != ' ') { out[o++] = c; prev_space = 0; continue; }
        if (t->rm_ws && prev_space) continue;
        memcpy(out + o, t->ws, t->ws_len);
        o += t->ws_len;
        prev_space = 1;
    }
    if (t->rm_ws)
        while (o >= t->ws_len && !memcmp(out + o - t->ws_len, t->ws, t->ws_len)) o -= t->ws_len;
    return o;
}

/* Per-call cache of word -> ids (words are encoded independently when
 * split_words holds, so a word's ids depend on its bytes only). */
#define WCACHE_MAX_WORD 64
typedef struct wc_slot { uint32_t h, off, len, at, n; } wc_slot;   /* len 0 = empty */
typedef struct wcache {
    wc_slot *slot;
    uint32_t mask, used;
    danu_token *ids;
    size_t n_ids, cap_ids;
} wcache;

static danu_status wcache_init(wcache *c, const dn_alloc *a, size_t text_len)
{
    uint32_t n = 256;
    while (n < 65536 && n < text_len / 8) n <<= 1;
    c->slot = dn_calloc(a, n, sizeof *c->slot);
    if (!c->slot) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory for the word cache");
    c->mask = n - 1;
    return DANU_OK;
}

static void wcache_free(wcache *c, const dn_alloc *a)
{
    dn_free(a, c->slot);
    dn_free(a, c->ids);
}

static danu_status encode_word(work *w, wcache *c, const char *s, uint32_t start, uint32_t len)
{
    const danu_tokenizer *t = w->t;
    if (!c->slot || len > WCACHE_MAX_WORD) {
        DN_TRY(reserve(w, len));
        return bpe(w, s + start, len);
    }
    uint32_t h = (uint32_t)hash_bytes(s + start, len, head8(s + start, len)), i = h & c->mask;
    for (;; i = (i + 1) & c->mask) {
        wc_slot *e = &c->slot[i];
        if (!e->len) break;
        if (e->h == h && e->len == len && !memcmp(s + e->off, s + start, len)) {
            for (uint32_t k = 0; k < e->n; k++) DN_TRY(push_id(w, c->ids[e->at + k]));
            return DANU_OK;
        }
    }
    size_t before = w->n_ids;
    DN_TRY(reserve(w, len));
    DN_TRY(bpe(w, s + start, len));
    size_t made = w->n_ids - before;
    if (c->used * 2 >= c->mask || c->n_ids + made > UINT32_MAX) return DANU_OK;   /* full: stop caching */
    if (c->cap_ids - c->n_ids < made) {
        size_t cap = c->cap_ids ? c->cap_ids * 2 : 1024;
        while (cap - c->n_ids < made) cap *= 2;
        danu_token *p = dn_realloc(&t->a, c->ids, cap * sizeof *p);
        if (!p) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory for the word cache");
        c->ids = p;
        c->cap_ids = cap;
    }
    memcpy(c->ids + c->n_ids, w->ids + before, made * sizeof *c->ids);
    c->slot[i] = (wc_slot){ h, start, len, (uint32_t)c->n_ids, (uint32_t)made };
    c->n_ids += made;
    c->used++;
    return DANU_OK;
}

static danu_status encode_segment(work *w, const char *text, size_t len, int dummy)
{
    const danu_tokenizer *t = w->t;
    if (len == 0) return DANU_OK;
    size_t cap;
    if (dn_mul_overflow_size(len, 3, &cap) || dn_add_overflow_size(cap, 4, &cap) || cap > INT32_MAX)
        return dn_seterr(DANU_ERR_INVALID_ARG, "encode: text of %zu bytes is too long", len);
    char *norm = dn_malloc(&t->a, cap);
    if (!norm) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory for %zu bytes", cap);
    size_t n = normalize(t, text, len, dummy, norm);
    danu_status st = DANU_OK;
    if (!t->split_words) {
        st = reserve(w, n);
        if (!st) st = bpe(w, norm, (uint32_t)n);
        dn_free(&t->a, norm);
        return st;
    }
    /* word by word: a word starts at a space symbol that follows another
     * character. Long texts repeat words, so their ids are cached. */
    wcache wc = { 0 };
    if (n >= 256 && (st = wcache_init(&wc, &t->a, n))) {
        dn_free(&t->a, norm);
        return st;
    }
    const char *ws = t->ws;
    uint32_t wl = t->ws_len;
    size_t start = 0;
    while (start < n && !st) {
        size_t end = start + 1, p = start + 1;
        for (;;) {
            const char *q = memchr(norm + p, ws[0], n - p);
            if (!q) { end = n; break; }
            p = (size_t)(q - norm);
            if (n - p >= wl && !memcmp(norm + p, ws, wl) && !(p - start >= wl && !memcmp(norm + p - wl, ws, wl))) {
                end = p;
                break;
            }
            p++;
        }
        st = encode_word(w, &wc, norm, (uint32_t)start, (uint32_t)(end - start));
        start = end;
    }
    wcache_free(&wc, &t->a);
    dn_free(&t->a, norm);
    return st;
}

/* Longest CONTROL/UNKNOWN piece at text[i..len), or -1. */
static int32_t match_special(const danu_tokenizer *t, const char *text, size_t i, size_t len)
{
    if (!t->special_first[(uint8_t)text[i]]) return -1;
    for (int k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        uint32_t l = piece_len(t, id);
        if (l <= len - i && !memcmp(text + i, piece_ptr(t, id), l)) return id;
    }
    return -1;
}

danu_status dn_tokenizer_encode_ex(const danu_tokenizer *t, const char *text, size_t len, uint32_t flags,
                                   int dummy_prefix, danu_token **out, size_t *n)
{
    if (!t || !out || !n || (!text && len)) return dn_seterr(DANU_ERR_INVALID_ARG, "encode: NULL argument");
    *out = NULL;
    *n = 0;
    size_t bad = dn_utf8_check((const uint8_t *)text, len);
    if (bad != len) return dn_seterr(DANU_ERR_BAD_UTF8, "encode: invalid UTF-8 at byte offset %zu", bad);

    work w = { .t = t };
    danu_status st = DANU_OK;
    if (t->has_unused) {
        w.rev = dn_malloc(&t->a, (size_t)t->n * sizeof *w.rev);
        w.stack = dn_malloc(&t->a, ((size_t)t->max_merge_len * 4 + 4) * sizeof *w.stack);
        if (!w.rev || !w.stack) { st = dn_seterr(DANU_ERR_NOMEM, "encode: out of memory"); goto done; }
        for (int32_t i = 0; i < t->n; i++) w.rev[i] = -1;
    }
    st = push_id(&w, 0);      /* the result is always a real allocation */
    if (st) goto done;
    w.n_ids = 0;
    if ((flags & DANU_TOKENIZE_ADD_BOS) && t->bos >= 0 && (st = push_id(&w, t->bos))) goto done;
    int dummy = dummy_prefix && t->dummy;
    if ((flags & DANU_TOKENIZE_PARSE_SPECIAL) && t->n_special) {
        /* Text before the first special piece gets the dummy prefix; text
         * after a special piece gets none (Hugging Face legacy=false). */
        size_t seg = 0;
        for (size_t i = 0; i < len;) {
            int32_t id = match_special(t, text, i, len);
            if (id < 0) { i++; continue; }
            if ((st = encode_segment(&w, text + seg, i - seg, dummy && seg == 0))) goto done;
            if ((st = push_id(&w, id))) goto done;
            i += piece_len(t, id);
            seg = i;
            dummy = 0;
        }
        st = encode_segment(&w, text + seg, len - seg, dummy && seg == 0);
    } else {
        st = encode_segment(&w, text, len, dummy);
    }
    if (st) goto done;
    if ((flags & DANU_TOKENIZE_ADD_EOS) && t->eos >= 0 && (st = push_id(&w, t->eos))) goto done;
    *out = w.ids;
    *n = w.n_ids;
    w.ids = NULL;
done:
    dn_free(&t->a, w.ids);
    dn_free(&t->a, w.sy);
    dn_free(&t->a, w.hp);
    if (w.bk) {
        for (uint32_t r = 0; r < (t->n_ranks ? t->n_ranks : 1); r++) {
            dn_free(&t->a, w.bk[r].run);
            dn_free(&t->a, w.bk[r].hp);
        }
    }
    dn_free(&t->a, w.bk);
    dn_free(&t->a, w.bits);
    dn_free(&t->a, w.summary);
    dn_free(&t->a, w.rev);
    dn_free(&t->a, w.stack);
    return st;
}

danu_status dn_tokenizer_encode(const danu_tokenizer *t, const char *text, size_t len, uint32_t flags,
                                danu_token **out, size_t *n)
{
    return dn_tokenizer_encode_ex(t, text, len, flags, 1, out, n);
}

/* ------------------------------------------------------------------ */
/* Whole-sequence decoding (SentencePiece's Decode)                    */
/* ------------------------------------------------------------------ */

#define REPLACEMENT "\xef\xbf\xbd"

/* Append a non-byte piece's surface. Tracks SentencePiece's "first
 * whitespace" state: is_bos_ws / bos_ws_seen. */
static size_t piece_surface(const danu_tokenizer *t, int32_t id, int *is_bos_ws, int *bos_ws_seen, size_t so_far,
                            char *o)
{
    if (*bos_ws_seen || so_far) *is_bos_ws = 0;
    uint8_t ty = t->type[id];
    if (ty == DN_TOK_CONTROL) { *bos_ws_seen = 0; return 0; }
    if (ty == DN_TOK_UNKNOWN) {
        memcpy(o, t->unk_surface, t->unk_surface_len);
        *bos_ws_seen = 0;
        return t->unk_surface_len;
    }
    const char *p = piece_ptr(t, id);
    size_t l = piece_len(t, id), k = 0, w = 0;
    int has_ws = 0;
    if (*is_bos_ws && (t->dummy || t->rm_ws) && l >= WS_SYM_LEN && !memcmp(p, WS_SYM, WS_SYM_LEN)) {
        k = WS_SYM_LEN;
        has_ws = !t->rm_ws;   /* with remove_extra_whitespaces every leading space goes */
    }
    while (k < l) {
        if (l - k >= WS_SYM_LEN && !memcmp(p + k, WS_SYM, WS_SYM_LEN)) {
            o[w++] = ' ';
            k += WS_SYM_LEN;
        } else {
            o[w++] = p[k++];
        }
    }
    *bos_ws_seen = has_ws;
    return w;
}

static danu_status check_ids(const danu_tokenizer *t, const danu_token *ids, size_t n)
{
    if (!ids && n) return dn_seterr(DANU_ERR_INVALID_ARG, "decode: ids NULL");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n)
            return dn_seterr(DANU_ERR_BAD_TOKEN, "decode: token %d at position %zu outside [0, %d)", (int)ids[i], i,
                             (int)t->n);
    return DANU_OK;
}

danu_status dn_tokenizer_decode(const danu_tokenizer *t, const danu_token *ids, size_t n, char **out, size_t *len)
{
    if (!t || !out || !len) return dn_seterr(DANU_ERR_INVALID_ARG, "decode: NULL argument");
    *out = NULL;
    *len = 0;
    DN_TRY(check_ids(t, ids, n));
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t ty = t->type[ids[i]];
        size_t c = ty == DN_TOK_BYTE ? 3 : ty == DN_TOK_UNKNOWN ? t->unk_surface_len : piece_len(t, ids[i]);
        if (dn_add_overflow_size(cap, c, &cap)) return dn_seterr(DANU_ERR_NOMEM, "decode: output too large");
    }
    char *o = dn_malloc(&t->a, cap);
    if (!o) return dn_seterr(DANU_ERR_NOMEM, "decode: out of memory for %zu bytes", cap);
    size_t w = 0;
    int is_bos_ws = 1, bos_ws_seen = 0;
    uint8_t run[64];
    for (size_t i = 0; i < n;) {
        if (t->type[ids[i]] != DN_TOK_BYTE) {
            w += piece_surface(t, ids[i], &is_bos_ws, &bos_ws_seen, w, o + w);
            i++;
            continue;
        }
        /* a run of byte pieces becomes characters; each invalid byte U+FFFD.
         * Runs are cut in chunks that keep any incomplete tail for the next. */
        size_t j = i, nr = 0;
        while (j < n && t->type[ids[j]] == DN_TOK_BYTE) {
            run[nr++] = t->byteval[ids[j++]];
            int last = j == n || t->type[ids[j]] != DN_TOK_BYTE;
            if (nr < sizeof run && !last) continue;
            size_t k = 0, keep = last ? nr : nr - 3;   /* a char is at most 4 bytes */
            while (k < keep) {
                int mb = dn_utf8_char(run + k, nr - k);   /* SentencePiece's DecodeUTF8 accepts the same */
                if (mb > 0) {
                    memcpy(o + w, run + k, (size_t)mb);
                    w += (size_t)mb;
                    k += (size_t)mb;
                } else {
                    memcpy(o + w, REPLACEMENT, 3);
                    w += 3;
                    k += 1;
                }
            }
            memmove(run, run + k, nr - k);
            nr -= k;
        }
        i = j;
    }
    o[w] = 0;
    *out = o;
    *len = w;
    return DANU_OK;
}

/* ------------------------------------------------------------------ */
/* Streaming decoder                                                   */
/* ------------------------------------------------------------------ */

typedef struct dec_state {
    uint8_t pend[4];
    int npend;
    int is_bos_ws, bos_ws_seen;
    size_t emitted;          /* bytes of text produced since the start */
} dec_state;

struct danu_decoder {
    const danu_tokenizer *t;
    dec_state s;
    char *scratch;           /* one piece's surface */
};

static void dec_reset(dec_state *s)
{
    memset(s, 0, sizeof *s);
    s->is_bos_ws = 1;
}

danu_status dn_decoder_create(const danu_tokenizer *t, danu_decoder **out)
{
    if (!t || !out) return dn_seterr(DANU_ERR_INVALID_ARG, "decoder: NULL argument");
    *out = NULL;
    danu_decoder *d = dn_calloc(&t->a, 1, sizeof *d);
    size_t need = t->max_len > t->unk_surface_len ? t->max_len : t->unk_surface_len;
    char *scratch = dn_malloc(&t->a, need + 1);
    if (!d || !scratch) {
        dn_free(&t->a, d);
        dn_free(&t->a, scratch);
        return dn_seterr(DANU_ERR_NOMEM, "decoder: out of memory");
    }
    d->t = t;
    d->scratch = scratch;
    dec_reset(&d->s);
    *out = d;
    return DANU_OK;
}

void dn_decoder_free(danu_decoder *d)
{
    if (!d) return;
    const dn_alloc *a = &d->t->a;
    dn_free(a, d->scratch);
    dn_free(a, d);
}

void dn_decoder_reset(danu_decoder *d)
{
    if (d) dec_reset(&d->s);
}

typedef struct sink { char *out; size_t cap, n; } sink;

static void put(sink *k, const void *p, size_t n)
{
    if (k->n + n < k->cap) memcpy(k->out + k->n, p, n);   /* keep room for the NUL */
    k->n += n;
}

/* Resolve pending bytes: complete characters go out, bytes that cannot start
 * a valid character become U+FFFD. At the end of a byte run (final) an
 * incomplete tail is invalid too, one U+FFFD per byte as SentencePiece. */
static void drain(dec_state *s, sink *k, int final)
{
    while (s->npend) {
        int c = dn_utf8_char(s->pend, (size_t)s->npend);
        int used;
        if (c > 0) { put(k, s->pend, (size_t)c); used = c; }
        else if (c == 0 && !final) break;
        else { put(k, REPLACEMENT, 3); used = 1; }
        s->emitted += (size_t)used;
        memmove(s->pend, s->pend + used, (size_t)(s->npend - used));
        s->npend -= used;
    }
}

static danu_status finish(danu_decoder *d, const dec_state *s, sink *k, size_t *len)
{
    if (len) *len = k->n;
    if (k->n + 1 > k->cap) {
        if (k->cap) k->out[0] = 0;
        return dn_seterr(DANU_ERR_BUFFER_TOO_SMALL, "decoder: %zu bytes needed, buffer holds %zu", k->n + 1, k->cap);
    }
    k->out[k->n] = 0;
    d->s = *s;   /* commit only when the text fit */
    return DANU_OK;
}

danu_status dn_decoder_push(danu_decoder *d, danu_token id, char *out, size_t cap, size_t *len)
{
    if (len) *len = 0;
    if (!d || (!out && cap)) return dn_seterr(DANU_ERR_INVALID_ARG, "decoder: NULL argument");
    const danu_tokenizer *t = d->t;
    if (id < 0 || id >= t->n)
        return dn_seterr(DANU_ERR_BAD_TOKEN, "decoder: token %d outside [0, %d)", (int)id, (int)t->n);
    dec_state s = d->s;
    sink k = { out, cap, 0 };
    if (t->type[id] == DN_TOK_BYTE) {
        s.pend[s.npend++] = t->byteval[id];
        drain(&s, &k, 0);
    } else {
        drain(&s, &k, 1);
        size_t w = piece_surface(t, id, &s.is_bos_ws, &s.bos_ws_seen, s.emitted, d->scratch);
        put(&k, d->scratch, w);
        s.emitted += w;
    }
    return finish(d, &s, &k, len);
}

danu_status dn_decoder_flush(danu_decoder *d, char *out, size_t cap, size_t *len)
{
    if (len) *len = 0;
    if (!d || (!out && cap)) return dn_seterr(DANU_ERR_INVALID_ARG, "decoder: NULL argument");
    dec_state s = d->s;
    sink k = { out, cap, 0 };
    drain(&s, &k, 1);
    dec_reset(&s);
    return finish(d, &s, &k, len);
}
