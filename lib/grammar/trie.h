/* trie.h - the vocabulary as a trie of token texts (the bytes the decoder
 * emits for each token), flattened in depth-first order so a walk is one
 * pass over arrays that skips a whole subtree when its prefix is refused. */
#ifndef DN_TRIE_H
#define DN_TRIE_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"
#include "common/alloc.h"

/* Longest token text kept in the trie; longer ones (rare user-defined
 * pieces) are listed apart and checked one by one. */
#define DN_TRIE_MAX_DEPTH 128

typedef struct dn_trie {
    int32_t n_nodes;
    uint8_t *byte;        /* [n_nodes] the byte leading into the node */
    uint8_t *depth;       /* [n_nodes] 1 for the root's children */
    int32_t *skip;        /* [n_nodes] index of the first node after the subtree */
    int32_t *tok_at;      /* [n_nodes + 1] tokens ending at node i: tok[tok_at[i] .. tok_at[i+1]) */
    int32_t *tok;
    int32_t n_long;
    int32_t *long_ids;    /* tokens with texts longer than DN_TRIE_MAX_DEPTH */
    /* every token's text, for the slow paths: text[off[id] .. off[id + 1]) */
    int32_t n_vocab;
    uint32_t *off;
    uint8_t *text;
    uint8_t *lead_ws;     /* [n_vocab] 1: the text starts with a space the decoder drops
                           * from the first piece of a generation (see strip_space) */
} dn_trie;

/* Build from a tokenizer. Tokens with no text (control tokens) are not in
 * the trie and have empty texts. */
danu_status dn_trie_build(const dn_alloc *a, const danu_tokenizer *tok, dn_trie *out);
void dn_trie_free(const dn_alloc *a, dn_trie *t);
#endif
