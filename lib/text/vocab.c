/* vocab.c - the tables of a tokenizer, built from plain arrays
 * (dn_vocab_src) whatever file they came from: pieces in one blob, a hash
 * table over them, merge ranks, byte pieces, user-defined and special
 * pieces. Every input is checked; SentencePiece's own load rules apply when
 * the source asks for them (strict). */
#include <stdlib.h>
#include <string.h>
#include "text/tokenizer_internal.h"
#include "common/error.h"
#include "common/utf8.h"

#define UNK_SURFACE_DEFAULT " \xe2\x81\x87 "   /* " U+2047 " */

/* Insert id; returns the id already holding the same bytes, or -1. */
static int32_t insert_piece(danu_tokenizer *t, int32_t id)
{
    const char *s = dn_piece_ptr(t, id);
    size_t n = dn_piece_len(t, id);
    int32_t prev = dn_find_piece(t, s, n);
    if (prev >= 0) return prev;
    uint64_t head = dn_head8(s, n), h = dn_hash_bytes(s, n, head);
    uint32_t i = (uint32_t)h & t->mask;
    while (t->tab[i].id >= 0) i = (i + 1) & t->mask;
    t->tab[i] = (dn_slot){ head, dn_len_fp(n, h), id };
    return -1;
}

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
    for (int32_t i = 0; i < t->n; i++) m += dn_mergeable(t->type[i]);
    t->rank = dn_malloc(&t->a, (size_t)t->n * sizeof *t->rank);
    score_id *v = dn_malloc(&t->a, (m ? m : 1) * sizeof *v);
    if (!t->rank || !v) {
        dn_free(&t->a, v);
        return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    }
    m = 0;
    for (int32_t i = 0; i < t->n; i++) {
        t->rank[i] = UINT32_MAX;
        if (dn_mergeable(t->type[i])) v[m++] = (score_id){ t->score[i], i };
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

/* Piece lengths and pointers, and the size of the blob that holds them. */
static danu_status check_lengths(const dn_vocab_src *src, uint32_t *blob_size)
{
    uint64_t blob = 0;
    for (int32_t i = 0; i < src->n; i++) {
        size_t l = src->lens[i];
        if (l > DN_TOK_MAX_PIECE_BYTES)
            return dn_seterr(DANU_ERR_FORMAT, "%s: piece %d is %zu bytes long (limit %u)", src->what, (int)i, l,
                             DN_TOK_MAX_PIECE_BYTES);
        if (l && !src->pieces[i]) return dn_seterr(DANU_ERR_INVALID_ARG, "%s: piece %d is NULL", src->what, (int)i);
        blob += l + 1;
    }
    if (blob > UINT32_MAX)
        return dn_seterr(DANU_ERR_FORMAT, "%s: pieces total %llu bytes", src->what, (unsigned long long)blob);
    *blob_size = (uint32_t)blob;
    return DANU_OK;
}

static danu_status alloc_tables(danu_tokenizer *t, const dn_vocab_src *src, uint32_t blob)
{
    const dn_alloc *a = &t->a;
    uint32_t tab_n = 16;   /* at most half full */
    while (tab_n < (uint32_t)t->n * 2u) tab_n <<= 1;
    t->blob = dn_malloc(a, blob);
    t->off = dn_malloc(a, ((size_t)t->n + 1) * sizeof *t->off);
    t->score = dn_malloc(a, (size_t)t->n * sizeof *t->score);
    t->type = dn_malloc(a, (size_t)t->n);
    t->byteval = dn_calloc(a, (size_t)t->n, 1);
    t->tab = dn_malloc(a, (size_t)tab_n * sizeof *t->tab);
    if (!t->blob || !t->off || !t->score || !t->type || !t->byteval || !t->tab)
        return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory for %d pieces", src->what, (int)t->n);
    t->mask = tab_n - 1;
    for (uint32_t i = 0; i < tab_n; i++) t->tab[i].id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int i = 0; i < 128; i++) t->ascii_id[i] = -1;
    return DANU_OK;
}

/* Byte fallback needs the value of each BYTE piece, written <0xXX>. */
static danu_status set_byte_piece(danu_tokenizer *t, const dn_vocab_src *src, int32_t i)
{
    const char *p = src->pieces[i];
    size_t l = src->lens[i];
    int hi = l == 6 ? hexval(p[3]) : -1, lo = l == 6 ? hexval(p[4]) : -1;
    if (l != 6 || memcmp(p, "<0x", 3) || p[5] != '>' || hi < 0 || lo < 0)
        return dn_seterr(DANU_ERR_FORMAT, "%s: BYTE piece %d is not of the form <0xXX>", src->what, (int)i);
    t->byteval[i] = (uint8_t)(hi * 16 + lo);
    if (t->byte_id[t->byteval[i]] < 0) t->byte_id[t->byteval[i]] = i;
    return DANU_OK;
}

/* Check piece i, append it to the blob at *pos, record its type and score. */
static danu_status copy_piece(danu_tokenizer *t, const dn_vocab_src *src, int32_t i, uint32_t *pos)
{
    size_t l = src->lens[i];
    int32_t ty = src->types ? src->types[i] : DN_TOK_NORMAL;
    if (ty < DN_TOK_NORMAL || ty > DN_TOK_BYTE)
        return dn_seterr(DANU_ERR_FORMAT, "%s: piece %d has unknown type %d", src->what, (int)i, (int)ty);
    if (l == 0 && src->strict) return dn_seterr(DANU_ERR_FORMAT, "%s: piece %d is empty", src->what, (int)i);
    size_t bad = dn_utf8_check((const uint8_t *)src->pieces[i], l);
    if (bad != l)
        return dn_seterr(DANU_ERR_FORMAT, "%s: piece %d is not valid UTF-8 (byte %zu)", src->what, (int)i, bad);
    t->off[i] = *pos;
    if (l > t->max_len) t->max_len = (uint32_t)l;
    if (l) memcpy(t->blob + *pos, src->pieces[i], l);
    t->blob[*pos + l] = 0;
    *pos += (uint32_t)l + 1;
    t->type[i] = (uint8_t)ty;
    t->score[i] = src->scores ? src->scores[i] : 0.0f;
    if (ty == DN_TOK_UNUSED) t->has_unused = 1;
    return ty == DN_TOK_BYTE ? set_byte_piece(t, src, i) : DANU_OK;
}

/* The hash table over the pieces. SentencePiece refuses duplicates; other
 * sources keep the first of them. */
static danu_status index_pieces(danu_tokenizer *t, const dn_vocab_src *src)
{
    for (int32_t i = 0; i < t->n; i++) {
        if (dn_piece_len(t, i) == 0) continue;
        int32_t prev = insert_piece(t, i);
        if (prev >= 0 && src->strict)
            return dn_seterr(DANU_ERR_FORMAT, "%s: piece %d duplicates piece %d", src->what, (int)i, (int)prev);
    }
    for (int c = 0; c < 128; c++) {
        char ch = (char)c;
        t->ascii_id[c] = dn_find_piece(t, &ch, 1);
    }
    return DANU_OK;
}

/* The unknown piece (the first UNKNOWN one unless named) and the special ids. */
static danu_status set_ids(danu_tokenizer *t, const dn_vocab_src *src)
{
    int n_unknown = 0;
    int32_t first_unknown = -1;
    for (int32_t i = 0; i < t->n; i++) {
        if (t->type[i] != DN_TOK_UNKNOWN) continue;
        if (first_unknown < 0) first_unknown = i;
        n_unknown++;
    }
    if (src->strict && n_unknown != 1)
        return dn_seterr(DANU_ERR_FORMAT, "%s: %d pieces of type UNKNOWN (need exactly 1)", src->what, n_unknown);
    t->unk = src->unk >= 0 ? src->unk : first_unknown;
    if (t->unk < 0 || t->unk >= t->n)
        return dn_seterr(DANU_ERR_FORMAT, "%s: no unknown piece (unk id %d, vocabulary %d)", src->what, (int)src->unk,
                         (int)t->n);
    const int32_t ids[3] = { src->bos, src->eos, src->pad };
    for (int k = 0; k < 3; k++)
        if (ids[k] < -1 || ids[k] >= t->n)
            return dn_seterr(DANU_ERR_FORMAT, "%s: special id %d out of range [0, %d)", src->what, (int)ids[k],
                             (int)t->n);
    t->bos = src->bos;
    t->eos = src->eos;
    return DANU_OK;
}

static void set_flags(danu_tokenizer *t, const dn_vocab_src *src)
{
    t->add_bos = src->add_bos && t->bos >= 0;
    t->dummy = src->add_dummy_prefix != 0;
    t->byte_fallback = src->byte_fallback != 0;
    t->rm_ws = src->remove_extra_whitespaces != 0;
    t->ws = src->keep_spaces ? " " : DN_WS_SYM;
    t->ws_len = src->keep_spaces ? 1 : DN_WS_SYM_LEN;
}

/* The longest merge, and whether the encoder may go word by word (bpe.c). */
static void scan_merges(danu_tokenizer *t)
{
    t->split_words = 1;
    for (int32_t i = 0; i < t->n; i++) {
        if (!dn_mergeable(t->type[i])) continue;
        uint32_t l = dn_piece_len(t, i);
        if (l > t->max_merge_len) t->max_merge_len = l;
        if (t->split_words && ws_inside(dn_piece_ptr(t, i), l, t->ws, t->ws_len)) t->split_words = 0;
    }
    /* SentencePiece's rev_merge for UNUSED pieces is shared by the whole
     * input, so those vocabularies are encoded in one piece. */
    if (t->has_unused) t->split_words = 0;
}

/* Distinct lengths of USER_DEFINED pieces, longest first: the encoder
 * tries each at every position. */
static danu_status make_user_lengths(danu_tokenizer *t, const char *what)
{
    uint32_t n_ud = 0;
    for (int32_t i = 0; i < t->n; i++) n_ud += t->type[i] == DN_TOK_USER_DEFINED && dn_piece_len(t, i);
    if (!n_ud) return DANU_OK;
    t->ud_len = dn_malloc(&t->a, n_ud * sizeof *t->ud_len);
    if (!t->ud_len) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    for (int32_t i = 0; i < t->n; i++) {
        if (t->type[i] != DN_TOK_USER_DEFINED || !dn_piece_len(t, i)) continue;
        uint32_t l = dn_piece_len(t, i);
        int seen = 0;
        for (int k = 0; k < t->n_ud_len; k++) seen |= t->ud_len[k] == l;
        if (!seen) t->ud_len[t->n_ud_len++] = l;
    }
    qsort(t->ud_len, (size_t)t->n_ud_len, sizeof *t->ud_len, cmp_len_desc_u32);
    return DANU_OK;
}

static int is_special(const danu_tokenizer *t, int32_t i)
{
    return (t->type[i] == DN_TOK_CONTROL || t->type[i] == DN_TOK_UNKNOWN) && dn_piece_len(t, i);
}

/* CONTROL and UNKNOWN pieces, longest first, for PARSE_SPECIAL. */
static danu_status make_specials(danu_tokenizer *t, const char *what)
{
    int n_special = 0;
    for (int32_t i = 0; i < t->n; i++) n_special += is_special(t, i);
    if (!n_special) return DANU_OK;
    t->special = dn_malloc(&t->a, (size_t)n_special * sizeof *t->special);
    if (!t->special) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    for (int32_t i = 0; i < t->n; i++) {
        if (!is_special(t, i)) continue;
        /* insertion sort, longest first, so the first match is the longest */
        int k = t->n_special++;
        while (k > 0 && dn_piece_len(t, t->special[k - 1]) < dn_piece_len(t, i)) {
            t->special[k] = t->special[k - 1];
            k--;
        }
        t->special[k] = i;
        t->special_first[(uint8_t)dn_piece_ptr(t, i)[0]] = 1;
    }
    return DANU_OK;
}

/* What an UNKNOWN piece decodes to. */
static danu_status set_unk_surface(danu_tokenizer *t, const dn_vocab_src *src)
{
    const char *s = src->unk_surface;
    size_t n = src->unk_surface_len;
    if (!s) {
        s = UNK_SURFACE_DEFAULT;
        n = sizeof UNK_SURFACE_DEFAULT - 1;
    }
    if (n > DN_TOK_MAX_PIECE_BYTES || dn_utf8_check((const uint8_t *)s, n) != n)
        return dn_seterr(DANU_ERR_FORMAT, "%s: unk_surface is not valid UTF-8 or too long", src->what);
    t->unk_surface = dn_strndup(&t->a, s, n);
    if (!t->unk_surface) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", src->what);
    t->unk_surface_len = n;
    return DANU_OK;
}

/* Every table of t, in the order problems are reported. */
static danu_status fill(danu_tokenizer *t, const dn_vocab_src *src)
{
    uint32_t blob = 0, pos = 0;
    DN_TRY(check_lengths(src, &blob));
    DN_TRY(alloc_tables(t, src, blob));
    for (int32_t i = 0; i < t->n; i++) DN_TRY(copy_piece(t, src, i, &pos));
    t->off[t->n] = pos;
    DN_TRY(index_pieces(t, src));
    DN_TRY(set_ids(t, src));
    set_flags(t, src);
    DN_TRY(make_ranks(t, src->what));
    scan_merges(t);
    DN_TRY(make_user_lengths(t, src->what));
    DN_TRY(make_specials(t, src->what));
    return set_unk_surface(t, src);
}

danu_status dn_tokenizer_from_vocab(const dn_alloc *a, const dn_vocab_src *src, danu_tokenizer **out)
{
    if (!a || !src || !out) return dn_seterr(DANU_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    dn_vocab_src s = *src;
    if (!s.what) s.what = "vocabulary";
    if (s.n <= 0 || s.n > (1 << 28))
        return dn_seterr(DANU_ERR_FORMAT, "%s: vocabulary size %d out of range", s.what, (int)s.n);
    if (!s.pieces || !s.lens) return dn_seterr(DANU_ERR_INVALID_ARG, "%s: pieces or lengths missing", s.what);
    danu_tokenizer *t = dn_calloc(a, 1, sizeof *t);
    if (!t) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", s.what);
    t->a = *a;
    t->n = s.n;
    danu_status st = fill(t, &s);
    if (st) {
        dn_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DANU_OK;
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

/* ------------------------------------------------------------------ */
/* Accessors                                                           */
/* ------------------------------------------------------------------ */

int32_t dn_tokenizer_n_vocab(const danu_tokenizer *t) { return t ? t->n : 0; }
int32_t dn_tokenizer_bos(const danu_tokenizer *t) { return t->bos; }
int32_t dn_tokenizer_eos(const danu_tokenizer *t) { return t->eos; }
int32_t dn_tokenizer_unk(const danu_tokenizer *t) { return t->unk; }
int dn_tokenizer_add_bos(const danu_tokenizer *t) { return t->add_bos; }
const dn_alloc *dn_tokenizer_alloc(const danu_tokenizer *t) { return &t->a; }
float dn_tokenizer_score(const danu_tokenizer *t, int32_t id) { return t->score[id]; }
int32_t dn_tokenizer_type(const danu_tokenizer *t, int32_t id) { return t->type[id]; }
int32_t dn_tokenizer_find(const danu_tokenizer *t, const char *piece, size_t len)
{
    return piece ? dn_find_piece(t, piece, len) : -1;
}
