/* matcher.c - where a generation stands in a grammar, and which tokens may
 * come next.
 *
 * The grammar runs as a pushdown automaton over code points. A stack is a
 * chain of nodes (position, parent), hash-consed so equal stacks are one id;
 * node 0 is the empty stack (the text is complete). A state is the sorted
 * set of stacks the text so far can be in, plus the bytes of an unfinished
 * UTF-8 character, interned to an id. Every stack's top is a character
 * class: references are expanded and finished alternatives popped as soon
 * as a stack is made (a reference in tail position pushes no frame, so
 * loops like x* keep constant depth and revisit one state).
 *
 * Transitions (state, byte) -> state are computed on first use and kept in
 * a 256-entry table per state; a token mask is a walk of the token trie
 * (trie.h) along those tables, skipping every subtree whose prefix is
 * refused, and is kept per state too. Inside a JSON string, say, one state
 * loops on itself, so after the first token each mask is a cache hit. The
 * caches are dropped when they outgrow DN_MATCHER_CACHE_BYTES. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "grammar/constraint.h"
#include "grammar/trie.h"
#include "text/tokenizer.h"
#include "common/error.h"
#include "common/utf8.h"

#define DN_MATCHER_CACHE_BYTES ((size_t)64 << 20)
/* Stacks one state may hold: a grammar ambiguous enough to need more is refused. */
#define DN_MATCHER_MAX_STACKS 16384

enum { UNKNOWN = -1, DEAD = -2 };

struct danu_constraint {
    atomic_int refs;
    dn_alloc a;
    dn_grammar *g;
    dn_trie trie;
    int32_t n_vocab, eos;
    uint64_t vocab_hash;
};

typedef struct mstate {
    int32_t off, n;        /* stacks: m->set[off .. off + n), ascending node ids */
    uint32_t partial;      /* unfinished UTF-8 character: bytes in bits 8.., count in bits 0..7 */
    uint32_t hash;
    int32_t base;          /* the state with the same stacks and no partial character */
    int32_t *next;         /* [256] or NULL: UNKNOWN, DEAD or a state id */
    uint32_t *mask;        /* [n_words] or NULL */
} mstate;

struct dn_matcher {
    danu_constraint *c;
    const dn_alloc *a;
    const dn_grammar *g;
    const dn_trie *trie;
    int32_t n_words;
    /* stack nodes */
    int32_t *npos, *npar;
    uint32_t *nvisit;      /* last closure that reached the node */
    int32_t n_nodes, cap_nodes;
    int32_t *nhash;        /* open addressing, -1 empty */
    uint32_t nhash_mask;
    /* states */
    mstate *st;
    int32_t n_st, cap_st;
    int32_t *shash;
    uint32_t shash_mask;
    int32_t *set;
    size_t n_set, cap_set;
    /* closure scratch */
    int32_t *work, *out;
    size_t n_work, n_out, cap_work, cap_out;
    uint32_t visit;
    /* (base state, which of its stacks a character advances) -> state: every
     * character that advances the same stacks leads to the same state, so
     * the closure runs once for all of them (all CJK characters inside a
     * JSON string, say) */
    struct sigent { int32_t base, result; uint64_t sig; } *sig;
    uint32_t sig_mask, n_sig;
    int32_t start, cur;
    size_t cache_bytes, cache_limit;
    uint32_t *scratch_mask;
    danu_status err;       /* a state grew past DN_MATCHER_MAX_STACKS */
};

/* ---- growable arrays ---- */

static int reserve(const dn_alloc *a, void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *np = dn_realloc(a, *p, nc * elem);
    if (!np) return 0;
    *p = np;
    *cap = nc;
    return 1;
}

static uint32_t mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x7feb352dU;
    h ^= h >> 15;
    h *= 0x846ca68bU;
    h ^= h >> 16;
    return h;
}

/* ---- stack nodes ---- */

/* Id tables (nodes, states): open addressing with linear probing, -1 empty.
 * A grown table takes ids 0..n-1 again by their hashes. */
static int table_grow(dn_matcher *m, int32_t **tab, uint32_t *mask, uint32_t first, int32_t n,
                      uint32_t (*hash)(const dn_matcher *, int32_t))
{
    uint32_t size = *mask ? 2 * (*mask + 1) : first;
    int32_t *t = dn_malloc(m->a, size * sizeof *t);
    if (!t) return 0;
    memset(t, 0xff, size * sizeof *t);
    for (int32_t i = 0; i < n; i++) {
        uint32_t h = hash(m, i) & (size - 1);
        while (t[h] >= 0) h = (h + 1) & (size - 1);
        t[h] = i;
    }
    dn_free(m->a, *tab);
    *tab = t;
    *mask = size - 1;
    return 1;
}

static uint32_t node_hash(int32_t pos, int32_t parent) { return mix((uint32_t)pos * 0x9e3779b1U ^ (uint32_t)parent); }
static uint32_t node_hash_of(const dn_matcher *m, int32_t i) { return node_hash(m->npos[i], m->npar[i]); }

static int nhash_grow(dn_matcher *m)
{
    return table_grow(m, &m->nhash, &m->nhash_mask, 1024, m->n_nodes, node_hash_of);
}

/* The node for (pos, parent), made if new; -1 when out of memory. */
static int32_t node(dn_matcher *m, int32_t pos, int32_t parent)
{
    if ((uint32_t)m->n_nodes * 2 >= m->nhash_mask && !nhash_grow(m)) return -1;
    uint32_t h = node_hash(pos, parent) & m->nhash_mask;
    for (int32_t i; (i = m->nhash[h]) >= 0; h = (h + 1) & m->nhash_mask)
        if (m->npos[i] == pos && m->npar[i] == parent) return i;
    if (m->n_nodes == m->cap_nodes) {
        int32_t nc = m->cap_nodes ? 2 * m->cap_nodes : 1024;
        int32_t *p = dn_realloc(m->a, m->npos, (size_t)nc * sizeof *p);
        if (p) m->npos = p;
        int32_t *q = dn_realloc(m->a, m->npar, (size_t)nc * sizeof *q);
        if (q) m->npar = q;
        uint32_t *v = dn_realloc(m->a, m->nvisit, (size_t)nc * sizeof *v);
        if (v) m->nvisit = v;
        if (!p || !q || !v) return -1;
        m->cache_bytes += (size_t)(nc - m->cap_nodes) * 12;
        m->cap_nodes = nc;
    }
    int32_t i = m->n_nodes++;
    m->npos[i] = pos;
    m->npar[i] = parent;
    m->nvisit[i] = 0;
    m->nhash[h] = i;
    return i;
}

/* ---- closure: expand references and pop finished alternatives ---- */

static int push_work(dn_matcher *m, int32_t pos, int32_t parent)
{
    int32_t id = node(m, pos, parent);
    if (id < 0) return 0;
    if (m->nvisit[id] == m->visit) return 1;   /* reached already in this closure */
    m->nvisit[id] = m->visit;
    size_t n = m->n_work;
    if (!reserve(m->a, (void **)&m->work, &m->cap_work, n + 1, sizeof *m->work)) return 0;
    m->work[n] = id;
    m->n_work = n + 1;
    return 1;
}

static int push_out(dn_matcher *m, int32_t id)
{
    if (!reserve(m->a, (void **)&m->out, &m->cap_out, m->n_out + 1, sizeof *m->out)) return 0;
    m->out[m->n_out++] = id;
    return 1;
}

/* Drain the work list into m->out: stacks whose tops are classes, and 0 for
 * the empty stack. Returns 0 when out of memory. */
static int close_work(dn_matcher *m)
{
    const dn_grammar *g = m->g;
    while (m->n_work) {
        int32_t id = m->work[--m->n_work];
        int32_t pos = m->npos[id], parent = m->npar[id];
        dn_gelem e = g->elems[pos];
        if (e.kind == DN_G_CLASS) {
            if (!push_out(m, id)) return 0;
        } else if (e.kind == DN_G_END) {
            if (parent == 0) {
                if (m->nvisit[0] != m->visit) { m->nvisit[0] = m->visit; if (!push_out(m, 0)) return 0; }
            } else if (!push_work(m, m->npos[parent], m->npar[parent])) return 0;
        } else {
            int32_t ret = parent;
            if (g->elems[pos + 1].kind != DN_G_END && (ret = node(m, pos + 1, parent)) < 0) return 0;
            int32_t a0 = g->rule_alt[e.arg], na = g->rule_nalt[e.arg];
            for (int32_t k = 0; k < na; k++)
                if (!push_work(m, g->alts[a0 + k], ret)) return 0;
        }
    }
    return 1;
}

/* ---- states ---- */

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

static uint32_t set_hash(const int32_t *s, int32_t n, uint32_t partial)
{
    uint32_t h = mix(partial ^ 0x51ed27u);
    for (int32_t i = 0; i < n; i++) h = mix(h ^ (uint32_t)s[i]) + 0x9e3779b9u;
    return h;
}

static uint32_t state_hash_of(const dn_matcher *m, int32_t i) { return m->st[i].hash; }

static int shash_grow(dn_matcher *m)
{
    return table_grow(m, &m->shash, &m->shash_mask, 256, m->n_st, state_hash_of);
}

/* The state of stacks s[0..n) (sorted, distinct) and partial; -1 when out of memory. */
/* share >= 0: s is that state's set, and the new state points at it
 * instead of a copy (a partial character's state has its base's stacks). */
static int32_t intern(dn_matcher *m, const int32_t *s, int32_t n, uint32_t partial, int32_t share)
{
    if ((uint32_t)m->n_st * 2 >= m->shash_mask && !shash_grow(m)) return -1;
    uint32_t hv = set_hash(s, n, partial), h = hv & m->shash_mask;
    for (int32_t i; (i = m->shash[h]) >= 0; h = (h + 1) & m->shash_mask) {
        const mstate *x = &m->st[i];
        if (x->hash == hv && x->n == n && x->partial == partial && !memcmp(m->set + x->off, s, (size_t)n * sizeof *s))
            return i;
    }
    size_t cap_st = (size_t)m->cap_st;
    if (!reserve(m->a, (void **)&m->st, &cap_st, (size_t)m->n_st + 1, sizeof *m->st)) return -1;
    m->cap_st = (int32_t)cap_st;
    size_t off = share >= 0 ? (size_t)m->st[share].off : m->n_set;
    if (share < 0) {
    /* s may point into m->set: copy through the grown array */
    int inside = m->set && (uintptr_t)s >= (uintptr_t)m->set && (uintptr_t)s < (uintptr_t)(m->set + m->cap_set);
    size_t from = inside ? (size_t)(s - m->set) : 0;
    if (!reserve(m->a, (void **)&m->set, &m->cap_set, off + (size_t)n, sizeof *m->set)) return -1;
    memmove(m->set + off, inside ? m->set + from : s, (size_t)n * sizeof *s);
    m->n_set += (size_t)n;
    m->cache_bytes += (size_t)n * sizeof *s;
    }
    mstate *x = &m->st[m->n_st];
    x->off = (int32_t)off;
    x->n = n;
    x->partial = partial;
    x->hash = hv;
    x->base = share >= 0 ? m->st[share].base : m->n_st;
    x->next = NULL;
    x->mask = NULL;
    m->shash[h] = m->n_st;
    m->cache_bytes += sizeof *x + 8;
    return m->n_st++;
}

/* m->out as a state: sort, drop repeats, intern. DEAD when empty. */
static int32_t out_state(dn_matcher *m, uint32_t partial)
{
    if (m->n_out == 0) return DEAD;
    if (m->n_out > DN_MATCHER_MAX_STACKS) {
        if (m->err == DANU_OK)
            m->err = dn_seterr(DANU_ERR_UNSUPPORTED, "constraint: the grammar is too ambiguous here (over %d parses "
                               "of the text at once)", DN_MATCHER_MAX_STACKS);
        return -1;
    }
    qsort(m->out, m->n_out, sizeof *m->out, cmp_i32);
    size_t k = 0;
    for (size_t i = 0; i < m->n_out; i++)
        if (k == 0 || m->out[i] != m->out[k - 1]) m->out[k++] = m->out[i];
    return intern(m, m->out, (int32_t)k, partial, -1);
}

/* ---- UTF-8 ---- */

/* The code points a valid UTF-8 prefix p[0..n) can still become. */
static void prefix_range(const uint8_t *p, int n, uint32_t *lo, uint32_t *hi)
{
    int need = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
    uint32_t l = p[0] & (need == 2 ? 0x1fu : need == 3 ? 0x0fu : 0x07u), h = l;
    for (int i = 1; i < need; i++) {
        l = (l << 6) | (i < n ? p[i] & 0x3fu : 0x00u);
        h = (h << 6) | (i < n ? p[i] & 0x3fu : 0x3fu);
    }
    static const uint32_t min_of[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (l < min_of[need]) l = min_of[need];
    if (p[0] == 0xed && h > 0xd7ff) h = 0xd7ff;
    if (h > 0x10ffff) h = 0x10ffff;
    *lo = l;
    *hi = h;
}

static int class_meets(const dn_grammar *g, int32_t k, uint32_t lo, uint32_t hi)
{
    const uint32_t *r = g->ranges + 2 * g->class_off[k];
    int32_t a = 0, b = g->class_n[k];
    while (a < b) {                      /* first range ending at or after lo */
        int32_t mid = (a + b) / 2;
        if (r[2 * mid + 1] < lo) a = mid + 1;
        else b = mid;
    }
    return a < g->class_n[k] && r[2 * a] <= hi;
}

/* ---- (base state, advancing stacks) -> state ---- */

static uint32_t sig_slot(const dn_matcher *m, int32_t base, uint64_t sig)
{
    return mix((uint32_t)base * 0x9e3779b1U ^ mix((uint32_t)sig ^ (uint32_t)(sig >> 32) * 0x85ebca6bU)) & m->sig_mask;
}

static int32_t sig_find(const dn_matcher *m, int32_t base, uint64_t sig)
{
    if (!m->sig) return UNKNOWN;
    for (uint32_t h = sig_slot(m, base, sig);; h = (h + 1) & m->sig_mask) {
        const struct sigent *e = &m->sig[h];
        if (e->base < 0) return UNKNOWN;
        if (e->base == base && e->sig == sig) return e->result;
    }
}

static int sig_put(dn_matcher *m, int32_t base, uint64_t sig, int32_t result)
{
    if (2 * (m->n_sig + 1) > m->sig_mask) {
        uint32_t size = m->sig_mask ? 2 * (m->sig_mask + 1) : 1024;
        struct sigent *t = dn_malloc(m->a, size * sizeof *t), *old = m->sig;
        if (!t) return 0;
        for (uint32_t i = 0; i < size; i++) t[i].base = -1;
        uint32_t old_size = m->sig ? m->sig_mask + 1 : 0;
        m->sig = t;
        m->sig_mask = size - 1;
        m->cache_bytes += (size - old_size) * sizeof *t;
        for (uint32_t i = 0; i < old_size; i++)
            if (old[i].base >= 0) {
                uint32_t h = sig_slot(m, old[i].base, old[i].sig);
                while (t[h].base >= 0) h = (h + 1) & m->sig_mask;
                t[h] = old[i];
            }
        dn_free(m->a, old);
    }
    uint32_t h = sig_slot(m, base, sig);
    while (m->sig[h].base >= 0) h = (h + 1) & m->sig_mask;
    m->sig[h] = (struct sigent){ base, result, sig };
    m->n_sig++;
    return 1;
}

/* ---- transitions ---- */

/* The state after byte b from state s (not cached here); DEAD, or -1 when
 * out of memory or too ambiguous (m->err says which). */
static int32_t compute(dn_matcher *m, int32_t s, uint8_t b)
{
    const dn_grammar *g = m->g;
    mstate x = m->st[s];
    uint8_t buf[4];
    int np = (int)(x.partial & 0xff);
    for (int i = 0; i < np; i++) buf[i] = (uint8_t)(x.partial >> (8 * (i + 1)));
    buf[np] = b;
    int len = dn_utf8_char(buf, (size_t)np + 1);
    if (len < 0) return DEAD;
    if (len == 0) {                      /* still unfinished: can any top take such a character? */
        uint32_t lo, hi;
        prefix_range(buf, np + 1, &lo, &hi);
        for (int32_t i = 0; i < x.n; i++) {
            int32_t id = m->set[x.off + i];
            if (id != 0 && class_meets(g, g->elems[m->npos[id]].arg, lo, hi)) {
                uint32_t part = (uint32_t)(np + 1);
                for (int k = 0; k <= np; k++) part |= (uint32_t)buf[k] << (8 * (k + 1));
                return intern(m, m->set + x.off, x.n, part, x.base);
            }
        }
        return DEAD;
    }
    uint32_t cp = len == 1 ? buf[0] : len == 2 ? (buf[0] & 0x1fu) : len == 3 ? (buf[0] & 0x0fu) : (buf[0] & 0x07u);
    for (int i = 1; i < len; i++) cp = (cp << 6) | (buf[i] & 0x3fu);
    if (++m->visit == 0) {               /* wrapped: forget every mark */
        memset(m->nvisit, 0, (size_t)m->n_nodes * sizeof *m->nvisit);
        m->visit = 1;
    }
    uint64_t sig = 0;   /* which stacks take cp: all the result depends on */
    const int keyed = x.n <= 64;
    for (int32_t i = 0; i < x.n; i++) {
        int32_t id = m->set[x.off + i];
        if (id != 0 && dn_grammar_class_has(g, g->elems[m->npos[id]].arg, cp)) sig |= (uint64_t)1 << (i & 63);
    }
    if (sig == 0) return DEAD;
    if (keyed) {
        int32_t r = sig_find(m, x.base, sig);
        if (r != UNKNOWN) return r;
    }
    m->n_out = 0;
    m->n_work = 0;
    for (int32_t i = 0; i < x.n; i++) {
        int32_t id = m->set[m->st[s].off + i];   /* st may move while nodes are made */
        if (id == 0) continue;
        int32_t pos = m->npos[id];
        int takes = keyed ? (int)((sig >> i) & 1) : dn_grammar_class_has(g, g->elems[pos].arg, cp);
        if (takes && !push_work(m, pos + 1, m->npar[id])) return -1;
        if (!close_work(m)) return -1;
    }
    int32_t r = out_state(m, 0);
    if (r != -1 && keyed && !sig_put(m, x.base, sig, r)) return -1;
    return r;
}

/* A state's transition table: 256 bytes, or for a state inside a UTF-8
 * character only the 64 continuation bytes (index b - 0x80): most states
 * are of that kind (each multi-byte prefix the vocabulary has, at each
 * point a walk passes). */
static inline int next_slot(const mstate *x, uint8_t b) { return x->partial ? (b & 0xc0) == 0x80 ? b - 0x80 : -1 : b; }

static int32_t *next_table(dn_matcher *m, int32_t s)
{
    if (m->st[s].next) return m->st[s].next;
    size_t n = m->st[s].partial ? 64 : 256;
    int32_t *t = dn_malloc(m->a, n * sizeof *t);
    if (!t) return NULL;
    memset(t, 0xff, n * sizeof *t);   /* UNKNOWN */
    m->st[s].next = t;
    m->cache_bytes += n * sizeof *t;
    return t;
}

/* Cached transition; DEAD, a state, or -1 on error. */
static inline int32_t trans(dn_matcher *m, int32_t s, uint8_t b)
{
    int k = next_slot(&m->st[s], b);
    if (k < 0) return DEAD;
    int32_t *t = m->st[s].next;
    if (t && t[k] != UNKNOWN) return t[k];
    if (!t && !(t = next_table(m, s))) return -1;
    int32_t v = compute(m, s, b);
    if (v == -1) return -1;
    m->st[s].next[k] = v;
    return v;
}

/* Feed bytes; DEAD, the state, or -1 on error. */
static int32_t feed(dn_matcher *m, int32_t s, const uint8_t *p, size_t n, int cached)
{
    for (size_t i = 0; i < n && s >= 0; i++) s = cached ? trans(m, s, p[i]) : compute(m, s, p[i]);
    return s;
}

static int is_complete(const dn_matcher *m, int32_t s)
{
    const mstate *x = &m->st[s];
    return x->partial == 0 && x->n > 0 && m->set[x->off] == 0;   /* node 0 sorts first */
}

/* ---- the constraint object ---- */

static uint64_t vocab_hash(const danu_tokenizer *tok)
{
    uint64_t h = 1469598103934665603ull;
    int32_t n = dn_tokenizer_n_vocab(tok);
    for (int32_t id = 0; id < n; id++) {
        size_t l;
        const char *p = dn_tokenizer_piece(tok, id, &l);
        h = (h ^ (uint64_t)dn_tokenizer_type(tok, id)) * 1099511628211ull;
        h = (h ^ l) * 1099511628211ull;
        for (size_t i = 0; i < l; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    }
    return h ^ (uint64_t)n;
}

danu_status dn_constraint_create(const danu_tokenizer *tok, dn_grammar *g, danu_constraint **out)
{
    *out = NULL;
    const dn_alloc *a = dn_tokenizer_alloc(tok);
    danu_constraint *c = dn_calloc(a, 1, sizeof *c);
    if (!c) {
        dn_grammar_free(g);
        return dn_seterr(DANU_ERR_NOMEM, "constraint: out of memory");
    }
    c->a = *a;
    c->g = g;
    atomic_init(&c->refs, 1);
    c->n_vocab = dn_tokenizer_n_vocab(tok);
    c->eos = dn_tokenizer_eos(tok);
    c->vocab_hash = vocab_hash(tok);
    danu_status s = dn_trie_build(&c->a, tok, &c->trie);
    if (s != DANU_OK) {
        dn_constraint_unref(c);
        return s;
    }
    *out = c;
    return DANU_OK;
}

danu_constraint *dn_constraint_ref(danu_constraint *c)
{
    if (c) atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void dn_constraint_unref(danu_constraint *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    dn_alloc a = c->a;
    dn_grammar_free(c->g);
    dn_trie_free(&a, &c->trie);
    dn_free(&a, c);
}

int dn_constraint_fits(const danu_constraint *c, const danu_tokenizer *tok)
{
    return tok && dn_tokenizer_n_vocab(tok) == c->n_vocab && vocab_hash(tok) == c->vocab_hash;
}

int32_t dn_constraint_n_vocab(const danu_constraint *c) { return c->n_vocab; }

/* ---- the matcher ---- */

static void drop_caches(dn_matcher *m)
{
    for (int32_t i = 0; i < m->n_st; i++) {
        dn_free(m->a, m->st[i].next);
        dn_free(m->a, m->st[i].mask);
    }
    m->n_st = 0;
    m->n_set = 0;
    m->n_nodes = 0;
    m->cache_bytes = 0;
    if (m->shash) memset(m->shash, 0xff, (m->shash_mask + 1) * sizeof *m->shash);
    if (m->sig)
        for (uint32_t i = 0; i <= m->sig_mask; i++) m->sig[i].base = -1;
    m->n_sig = 0;
    if (m->sig) m->cache_bytes += (m->sig_mask + 1) * sizeof *m->sig;
    if (m->nhash) memset(m->nhash, 0xff, (m->nhash_mask + 1) * sizeof *m->nhash);
}

/* Node 0 (the empty stack) and the start state: the root rule's alternatives. */
static danu_status make_start(dn_matcher *m)
{
    if (node(m, -1, -1) != 0) return dn_seterr(DANU_ERR_NOMEM, "constraint: out of memory");
    m->visit++;
    m->n_out = m->n_work = 0;
    const dn_grammar *g = m->g;
    int ok = 1;
    for (int32_t k = 0; k < g->rule_nalt[g->root] && ok; k++) ok = push_work(m, g->alts[g->rule_alt[g->root] + k], 0);
    if (ok) ok = close_work(m);
    int32_t s = ok ? out_state(m, 0) : -1;
    if (s < 0) return m->err != DANU_OK ? m->err : dn_seterr(DANU_ERR_NOMEM, "constraint: out of memory");
    m->start = m->cur = s;
    return DANU_OK;
}

danu_status dn_matcher_create(danu_constraint *c, const dn_alloc *a, dn_matcher **out)
{
    *out = NULL;
    dn_matcher *m = dn_calloc(a, 1, sizeof *m);
    DN_CHECK(m, DANU_ERR_NOMEM, "constraint: out of memory");
    m->c = dn_constraint_ref(c);
    m->a = a;
    m->g = c->g;
    m->trie = &c->trie;
    m->n_words = (c->n_vocab + 31) / 32;
    m->cache_limit = DN_MATCHER_CACHE_BYTES;
    m->scratch_mask = dn_malloc(a, (size_t)m->n_words * sizeof *m->scratch_mask);
    danu_status s = m->scratch_mask ? make_start(m) : dn_seterr(DANU_ERR_NOMEM, "constraint: out of memory");
    if (s != DANU_OK) {
        dn_matcher_free(m);
        return s;
    }
    *out = m;
    return DANU_OK;
}

void dn_matcher_free(dn_matcher *m)
{
    if (!m) return;
    const dn_alloc *a = m->a;
    drop_caches(m);
    dn_free(a, m->npos);
    dn_free(a, m->npar);
    dn_free(a, m->nvisit);
    dn_free(a, m->nhash);
    dn_free(a, m->st);
    dn_free(a, m->shash);
    dn_free(a, m->set);
    dn_free(a, m->work);
    dn_free(a, m->out);
    dn_free(a, m->scratch_mask);
    dn_free(a, m->sig);
    dn_constraint_unref(m->c);
    dn_free(a, m);
}

void dn_matcher_reset(dn_matcher *m) { m->cur = m->start; }

void dn_matcher_set_cache_limit(dn_matcher *m, size_t bytes) { m->cache_limit = bytes; }

void dn_matcher_stats(const dn_matcher *m, size_t *bytes, int32_t *states, int32_t *nodes)
{
    *bytes = m->cache_bytes;
    *states = m->n_st;
    *nodes = m->n_nodes;
}

/* Over budget: start the caches again, keeping the current position (its
 * stacks are rebuilt node by node, bottom first). */
static danu_status trim(dn_matcher *m)
{
    if (m->cache_bytes <= m->cache_limit) return DANU_OK;
    const mstate cur = m->st[m->cur];
    size_t total = 0;
    for (int32_t i = 0; i < cur.n; i++)
        for (int32_t id = m->set[cur.off + i]; id != 0; id = m->npar[id]) total++;
    int32_t *pos = dn_malloc(m->a, (total + (size_t)cur.n + 1) * sizeof *pos);
    DN_CHECK(pos, DANU_ERR_NOMEM, "constraint: out of memory");
    size_t w = 0;   /* per stack: its depth, then positions top first */
    for (int32_t i = 0; i < cur.n; i++) {
        size_t at = w++;
        int32_t d = 0;
        for (int32_t id = m->set[cur.off + i]; id != 0; id = m->npar[id]) { pos[w++] = m->npos[id]; d++; }
        pos[at] = d;
    }
    drop_caches(m);
    danu_status s = make_start(m);
    m->n_out = 0;
    for (size_t r = 0; s == DANU_OK && r < w;) {
        int32_t d = pos[r], id = 0;
        for (int32_t k = d; k >= 1 && id >= 0; k--) id = node(m, pos[r + (size_t)k], id);
        r += (size_t)d + 1;
        if (id < 0 || !push_out(m, id)) s = dn_seterr(DANU_ERR_NOMEM, "constraint: out of memory");
    }
    dn_free(m->a, pos);
    int32_t st = s == DANU_OK ? out_state(m, cur.partial) : -1;
    if (st < 0) {
        if (s == DANU_OK) s = dn_seterr(DANU_ERR_NOMEM, "constraint: out of memory");
        m->cur = m->start;
        return s;
    }
    m->cur = st;
    return DANU_OK;
}

static danu_status failed(dn_matcher *m)
{
    return m->err != DANU_OK ? m->err : dn_seterr(DANU_ERR_NOMEM, "constraint: out of memory");
}

static inline void set_bit(uint32_t *mask, int32_t id) { mask[id >> 5] |= 1u << (id & 31); }

/* The trie walk from state s into mask (cleared first). */
/* What the walk keeps per depth: the state there and its transition table
 * (lo: 0x80 for a state inside a UTF-8 character, whose table has the 64
 * continuation bytes only), so a node costs a few loads. */
typedef struct walk_at { int32_t s, *tab; uint32_t lo, n; } walk_at;

static int walk_enter(dn_matcher *m, walk_at *w, int32_t s)
{
    w->s = s;
    w->tab = next_table(m, s);
    w->lo = m->st[s].partial ? 0x80 : 0;
    w->n = m->st[s].partial ? 64 : 256;
    return w->tab != NULL;
}

static danu_status walk(dn_matcher *m, int32_t s, uint32_t *mask)
{
    const dn_trie *t = m->trie;
    memset(mask, 0, (size_t)m->n_words * sizeof *mask);
    walk_at at[DN_TRIE_MAX_DEPTH + 1];
    for (int d = 1; d <= DN_TRIE_MAX_DEPTH; d++) at[d] = (walk_at){ -1, NULL, 0, 0 };
    if (!walk_enter(m, &at[0], s)) return failed(m);
    const uint8_t *byte = t->byte, *depth = t->depth;
    const int32_t *skip = t->skip, *tok_at = t->tok_at, *tok = t->tok;
    for (int32_t i = 0; i < t->n_nodes;) {
        const walk_at *f = &at[depth[i] - 1];
        const uint32_t k = (uint32_t)byte[i] - f->lo;
        int32_t v = k < f->n ? f->tab[k] : DEAD;
        if (v == UNKNOWN && (v = trans(m, f->s, byte[i])) == -1) return failed(m);
        if (v == DEAD) { i = skip[i]; continue; }
        if (at[depth[i]].s != v || !at[depth[i]].tab) {
            if (!walk_enter(m, &at[depth[i]], v)) return failed(m);
        }
        for (int32_t j = tok_at[i]; j < tok_at[i + 1]; j++) set_bit(mask, tok[j]);
        i++;
    }
    for (int32_t k = 0; k < t->n_long; k++) {
        int32_t id = t->long_ids[k];
        int32_t v = feed(m, s, t->text + t->off[id], t->off[id + 1] - t->off[id], 1);
        if (v == -1) return failed(m);
        if (v >= 0) set_bit(mask, id);
    }
    if (is_complete(m, s) && m->c->eos >= 0) set_bit(mask, m->c->eos);
    return DANU_OK;
}

/* A token's text at this point: the decoder drops a leading space at a
 * generation's start. */
static void token_text(const dn_trie *t, int32_t id, int strip, const uint8_t **p, size_t *n)
{
    *p = t->text + t->off[id];
    *n = t->off[id + 1] - t->off[id];
    if (strip && t->lead_ws[id] && *n > 0) { (*p)++; (*n)--; }
}

/* Token by token from state s: cached transitions or not. */
static danu_status each_token(dn_matcher *m, int32_t s, int strip, int cached, uint32_t *mask)
{
    const dn_trie *t = m->trie;
    memset(mask, 0, (size_t)m->n_words * sizeof *mask);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const uint8_t *p;
        size_t n;
        token_text(t, id, strip, &p, &n);
        if (n == 0) continue;
        int32_t v = feed(m, s, p, n, cached);
        if (v == -1) return failed(m);
        if (v >= 0) set_bit(mask, id);
    }
    if (is_complete(m, s) && m->c->eos >= 0) set_bit(mask, m->c->eos);
    return DANU_OK;
}

danu_status dn_matcher_mask(dn_matcher *m, int strip_space, const uint32_t **mask)
{
    DN_TRY(trim(m));
    if (strip_space) {   /* once per generation at most, and only after control tokens alone */
        DN_TRY(each_token(m, m->cur, 1, 1, m->scratch_mask));
        *mask = m->scratch_mask;
        return DANU_OK;
    }
    if (!m->st[m->cur].mask) {
        uint32_t *mk = dn_malloc(m->a, (size_t)m->n_words * sizeof *mk);
        DN_CHECK(mk, DANU_ERR_NOMEM, "constraint: out of memory");
        danu_status s = walk(m, m->cur, mk);
        if (s != DANU_OK) { dn_free(m->a, mk); return s; }
        m->st[m->cur].mask = mk;
        m->cache_bytes += (size_t)m->n_words * sizeof *mk;
    }
    *mask = m->st[m->cur].mask;
    return DANU_OK;
}

danu_status dn_matcher_mask_slow(dn_matcher *m, int strip_space, uint32_t *out)
{
    return each_token(m, m->cur, strip_space, 0, out);
}

danu_status dn_matcher_accept(dn_matcher *m, danu_token id, int strip_space)
{
    DN_CHECK(id >= 0 && id < m->c->n_vocab, DANU_ERR_BAD_TOKEN, "constraint: token %d outside [0, %d)", (int)id,
             (int)m->c->n_vocab);
    if (id == m->c->eos) {
        DN_CHECK(is_complete(m, m->cur), DANU_ERR_STATE, "constraint: end of text before the output is complete");
        return DANU_OK;
    }
    const uint8_t *p;
    size_t n;
    token_text(m->trie, id, strip_space, &p, &n);
    DN_CHECK(n > 0, DANU_ERR_STATE, "constraint: token %d has no text", (int)id);
    int32_t v = feed(m, m->cur, p, n, 1);
    if (v == -1) return failed(m);
    DN_CHECK(v >= 0, DANU_ERR_STATE, "constraint: token %d does not continue the output", (int)id);
    m->cur = v;
    return DANU_OK;
}

int32_t dn_matcher_state(const dn_matcher *m)
{
    const mstate *x = &m->st[m->cur];
    if (!is_complete(m, m->cur)) return DANU_CONSTRAINT_OPEN;
    return x->n == 1 ? DANU_CONSTRAINT_FINISHED : DANU_CONSTRAINT_COMPLETE;
}

danu_status dn_matcher_copy(dn_matcher *dst, const dn_matcher *src)
{
    DN_CHECK(dst->c == src->c, DANU_ERR_INVALID_ARG, "constraint: matchers of different constraints");
    const mstate *x = &src->st[src->cur];
    dst->n_out = 0;
    danu_status s = DANU_OK;
    for (int32_t i = 0; i < x->n && s == DANU_OK; i++) {
        /* rebuild the stack in dst's nodes, bottom first */
        int32_t chain[DN_GRAMMAR_MAX_DEPTH], d = 0, id = src->set[x->off + i];
        for (; id != 0 && d < DN_GRAMMAR_MAX_DEPTH; id = src->npar[id]) chain[d++] = src->npos[id];
        if (id != 0) { s = dn_seterr(DANU_ERR_UNSUPPORTED, "constraint: nesting too deep to copy"); break; }
        int32_t nid = 0;
        while (d > 0 && nid >= 0) nid = node(dst, chain[--d], nid);
        if (nid < 0 || !push_out(dst, nid)) s = dn_seterr(DANU_ERR_NOMEM, "constraint: out of memory");
    }
    int32_t st = s == DANU_OK ? out_state(dst, x->partial) : -1;
    if (s == DANU_OK && st < 0) s = failed(dst);
    if (s == DANU_OK) dst->cur = st;
    return s;
}

/* ---- test and tool helper ---- */

danu_status dn_gbnf_match(const dn_alloc *a, const char *gbnf, size_t glen, const char *text, size_t tlen,
                          int *complete, int *prefix)
{
    *complete = *prefix = 0;
    dn_grammar *g;
    DN_TRY(dn_gbnf_parse(a, gbnf, glen, NULL, &g));
    /* a matcher without a vocabulary: only the automaton is used */
    danu_constraint c;
    memset(&c, 0, sizeof c);
    c.a = *a;
    c.g = g;
    c.eos = -1;
    atomic_init(&c.refs, 2);   /* never freed through the matcher */
    dn_matcher *m;
    danu_status s = dn_matcher_create(&c, a, &m);
    if (s == DANU_OK) {
        int32_t v = feed(m, m->cur, (const uint8_t *)text, tlen, 1);
        if (v == -1) s = failed(m);
        else if (v >= 0) {
            *prefix = 1;
            *complete = is_complete(m, v);
        }
        dn_matcher_free(m);
    }
    dn_grammar_free(g);
    return s;
}
