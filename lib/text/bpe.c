/* bpe.c - the encoder, with the semantics of SentencePiece 0.1.97 (Llama 2
 * model): identity normalizer, BPE merges by score with byte fallback,
 * user-defined pieces, and special pieces in the text on request.
 *
 * Encoding is O(n log n): symbols form a doubly linked list over the
 * normalized text and candidate merges sit in a priority queue ordered by
 * (score rank, left position) - best score first, leftmost on ties, exactly
 * SentencePiece's order: a binary heap for short segments, one bucket per
 * rank for long ones (a 1 MB word stays fast). When no mergeable piece
 * contains U+2581 right after another character, no merge can cross the
 * start of a word, so the text is encoded word by word (same result, small
 * heaps that stay in cache) and repeated words come from a per-call cache. */
#include <string.h>
#include "text/tokenizer_internal.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/utf8.h"

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
    int32_t id = dn_find_piece(t, w->s + l->start, size);
    if (id < 0 || !dn_mergeable(t->type[id])) return DANU_OK;
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
        int32_t pid = dn_find_piece(t, w->s + s, l);
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
        int32_t p = dn_find_piece(t, s, l);
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
            id = b < 0x80 ? t->ascii_id[b] : dn_find_piece(t, s + pos, l);
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
 * repeated spaces. Returns the normalized length. */
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
    uint32_t h = (uint32_t)dn_hash_bytes(s + start, len, dn_head8(s + start, len)), i = h & c->mask;
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
        uint32_t l = dn_piece_len(t, id);
        if (l <= len - i && !memcmp(text + i, dn_piece_ptr(t, id), l)) return id;
    }
    return -1;
}

/* The buffers of one encode call; the result always is a real allocation. */
static danu_status work_init(work *w)
{
    const danu_tokenizer *t = w->t;
    if (t->has_unused) {
        w->rev = dn_malloc(&t->a, (size_t)t->n * sizeof *w->rev);
        w->stack = dn_malloc(&t->a, ((size_t)t->max_merge_len * 4 + 4) * sizeof *w->stack);
        if (!w->rev || !w->stack) return dn_seterr(DANU_ERR_NOMEM, "encode: out of memory");
        for (int32_t i = 0; i < t->n; i++) w->rev[i] = -1;
    }
    DN_TRY(push_id(w, 0));
    w->n_ids = 0;
    return DANU_OK;
}

static void work_free(work *w)
{
    const dn_alloc *a = &w->t->a;
    dn_free(a, w->ids);
    dn_free(a, w->sy);
    dn_free(a, w->hp);
    if (w->bk) {
        for (uint32_t r = 0; r < (w->t->n_ranks ? w->t->n_ranks : 1); r++) {
            dn_free(a, w->bk[r].run);
            dn_free(a, w->bk[r].hp);
        }
    }
    dn_free(a, w->bk);
    dn_free(a, w->bits);
    dn_free(a, w->summary);
    dn_free(a, w->rev);
    dn_free(a, w->stack);
}

/* Special pieces in the text become their ids. Text before the first of
 * them gets the dummy prefix; text after one gets none (Hugging Face
 * legacy=false). */
static danu_status encode_specials(work *w, const char *text, size_t len, int dummy)
{
    const danu_tokenizer *t = w->t;
    size_t seg = 0;
    for (size_t i = 0; i < len;) {
        int32_t id = match_special(t, text, i, len);
        if (id < 0) { i++; continue; }
        DN_TRY(encode_segment(w, text + seg, i - seg, dummy && seg == 0));
        DN_TRY(push_id(w, id));
        i += dn_piece_len(t, id);
        seg = i;
        dummy = 0;
    }
    return encode_segment(w, text + seg, len - seg, dummy && seg == 0);
}

static danu_status encode_text(work *w, const char *text, size_t len, uint32_t flags, int dummy)
{
    const danu_tokenizer *t = w->t;
    if ((flags & DANU_TOKENIZE_ADD_BOS) && t->bos >= 0) DN_TRY(push_id(w, t->bos));
    if ((flags & DANU_TOKENIZE_PARSE_SPECIAL) && t->n_special) DN_TRY(encode_specials(w, text, len, dummy));
    else DN_TRY(encode_segment(w, text, len, dummy));
    if ((flags & DANU_TOKENIZE_ADD_EOS) && t->eos >= 0) DN_TRY(push_id(w, t->eos));
    return DANU_OK;
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
    danu_status st = work_init(&w);
    if (!st) st = encode_text(&w, text, len, flags, dummy_prefix && t->dummy);
    if (!st) {
        *out = w.ids;
        *n = w.n_ids;
        w.ids = NULL;
    }
    work_free(&w);
    return st;
}

danu_status dn_tokenizer_encode(const danu_tokenizer *t, const char *text, size_t len, uint32_t flags,
                                danu_token **out, size_t *n)
{
    return dn_tokenizer_encode_ex(t, text, len, flags, 1, out, n);
}
