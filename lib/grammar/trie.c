/* trie.c - build the flat token trie (trie.h). Token ids are grouped by
 * their next byte level by level (a counting sort for big groups, insertion
 * sort for small ones), which emits the nodes directly in depth-first
 * order: no pointer trie, no comparison sort of whole strings. */
#include <string.h>
#include "grammar/trie.h"
#include "text/tokenizer.h"
#include "common/error.h"

typedef struct builder {
    dn_trie *t;
    int32_t cap_nodes;
    int32_t n_tok;
    int32_t *tmp;          /* scratch for the counting sort */
    const dn_alloc *a;
} builder;

static inline uint32_t tlen(const dn_trie *t, int32_t id) { return t->off[id + 1] - t->off[id]; }
static inline uint8_t tbyte(const dn_trie *t, int32_t id, uint32_t d) { return t->text[t->off[id] + d]; }

static int node_new(builder *b, uint8_t byte, uint32_t depth)
{
    dn_trie *t = b->t;
    if (t->n_nodes == b->cap_nodes) {
        int32_t nc = b->cap_nodes ? 2 * b->cap_nodes : 2 * t->n_vocab + 64;
        uint8_t *nb = dn_realloc(b->a, t->byte, (size_t)nc);
        if (nb) t->byte = nb;
        uint8_t *nd = dn_realloc(b->a, t->depth, (size_t)nc);
        if (nd) t->depth = nd;
        int32_t *ns = dn_realloc(b->a, t->skip, (size_t)nc * sizeof *ns);
        if (ns) t->skip = ns;
        int32_t *na = dn_realloc(b->a, t->tok_at, (size_t)(nc + 1) * sizeof *na);
        if (na) t->tok_at = na;
        if (!nb || !nd || !ns || !na) return -1;
        b->cap_nodes = nc;
    }
    int32_t i = t->n_nodes++;
    t->byte[i] = byte;
    t->depth[i] = (uint8_t)depth;
    t->tok_at[i] = b->n_tok;
    return i;
}

/* ids[0..n) share their first d bytes and are longer than d: order them by
 * byte d and emit one child node per distinct byte, recursing below it. */
static int build(builder *b, int32_t *ids, int32_t n, uint32_t d)
{
    dn_trie *t = b->t;
    if (n > 48) {
        int32_t count[257] = { 0 };
        for (int32_t i = 0; i < n; i++) count[tbyte(t, ids[i], d) + 1]++;
        for (int k = 0; k < 256; k++) count[k + 1] += count[k];
        for (int32_t i = 0; i < n; i++) b->tmp[count[tbyte(t, ids[i], d)]++] = ids[i];
        memcpy(ids, b->tmp, (size_t)n * sizeof *ids);
    } else {
        for (int32_t i = 1; i < n; i++) {
            int32_t x = ids[i];
            uint8_t v = tbyte(t, x, d);
            int32_t j = i;
            while (j > 0 && tbyte(t, ids[j - 1], d) > v) { ids[j] = ids[j - 1]; j--; }
            ids[j] = x;
        }
    }
    for (int32_t i = 0; i < n;) {
        uint8_t v = tbyte(t, ids[i], d);
        int32_t j = i;
        while (j < n && tbyte(t, ids[j], d) == v) j++;
        int32_t node = node_new(b, v, d + 1);
        if (node < 0) return 0;
        /* tokens ending here first (moved to the front of the group), then the longer ones */
        int32_t k = i;
        for (int32_t m = i; m < j; m++)
            if (tlen(t, ids[m]) == d + 1) { int32_t x = ids[m]; ids[m] = ids[k]; ids[k] = x; k++; }
        for (int32_t m = i; m < k; m++) t->tok[b->n_tok++] = ids[m];
        if (k < j && !build(b, ids + k, j - k, d + 1)) return 0;
        t->skip[node] = t->n_nodes;
        i = j;
    }
    return 1;
}

danu_status dn_trie_build(const dn_alloc *a, const danu_tokenizer *tok, dn_trie *t)
{
    memset(t, 0, sizeof *t);
    int32_t n = dn_tokenizer_n_vocab(tok);
    size_t max = dn_token_text_max(tok);
    t->n_vocab = n;
    t->off = dn_malloc(a, ((size_t)n + 1) * sizeof *t->off);
    t->lead_ws = dn_calloc(a, (size_t)n, 1);
    t->tok = dn_malloc(a, (size_t)n * sizeof *t->tok);
    int32_t *ids = dn_malloc(a, (size_t)n * sizeof *ids);
    int32_t *tmp = dn_malloc(a, (size_t)n * sizeof *tmp);
    char *one = dn_malloc(a, max);
    size_t cap = (size_t)n * 8 + max, used = 0;
    t->text = dn_malloc(a, cap);
    builder b = { t, 0, 0, tmp, a };
    danu_status s = DANU_OK;
    if (!t->off || !t->lead_ws || !t->tok || !ids || !tmp || !one || !t->text) s = DANU_ERR_NOMEM;
    int32_t m = 0;
    for (int32_t id = 0; id < n && s == DANU_OK; id++) {
        int lead = 0;
        size_t l = dn_tokenizer_type(tok, id) == DN_TOK_CONTROL ? 0 : dn_token_text(tok, id, one, &lead);
        if (used + l > cap) {
            size_t nc = 2 * cap + l;
            uint8_t *nt = dn_realloc(a, t->text, nc);
            if (!nt) { s = DANU_ERR_NOMEM; break; }
            t->text = nt;
            cap = nc;
        }
        t->off[id] = (uint32_t)used;
        memcpy(t->text + used, one, l);
        used += l;
        t->lead_ws[id] = (uint8_t)lead;
        if (l > DN_TRIE_MAX_DEPTH) t->n_long++;
        else if (l > 0) ids[m++] = id;
    }
    if (s == DANU_OK) t->off[n] = (uint32_t)used;
    if (s == DANU_OK && t->n_long) {
        t->long_ids = dn_malloc(a, (size_t)t->n_long * sizeof *t->long_ids);
        if (!t->long_ids) s = DANU_ERR_NOMEM;
        else
            for (int32_t id = 0, k = 0; id < n; id++)
                if (tlen(t, id) > DN_TRIE_MAX_DEPTH) t->long_ids[k++] = id;
    }
    /* a vocabulary's trie has about two nodes per token: one allocation, not a doubling series */
    if (s == DANU_OK && m > 0 && node_new(&b, 0, 1) >= 0) t->n_nodes = 0;
    if (s == DANU_OK && m > 0 && !build(&b, ids, m, 0)) s = DANU_ERR_NOMEM;
    if (s == DANU_OK && !t->tok_at && !(t->tok_at = dn_calloc(a, 1, sizeof *t->tok_at))) s = DANU_ERR_NOMEM;
    if (s == DANU_OK) t->tok_at[t->n_nodes] = b.n_tok;
    dn_free(a, ids);
    dn_free(a, tmp);
    dn_free(a, one);
    if (s != DANU_OK) {
        dn_trie_free(a, t);
        return dn_seterr(s, "constraint: out of memory building the token trie");
    }
    return DANU_OK;
}

void dn_trie_free(const dn_alloc *a, dn_trie *t)
{
    dn_free(a, t->byte);
    dn_free(a, t->depth);
    dn_free(a, t->skip);
    dn_free(a, t->tok_at);
    dn_free(a, t->tok);
    dn_free(a, t->long_ids);
    dn_free(a, t->off);
    dn_free(a, t->text);
    dn_free(a, t->lead_ws);
    memset(t, 0, sizeof *t);
}
