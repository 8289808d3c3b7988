/* tokenizer_internal.h - the tables of a danu_tokenizer, shared by the
 * files of lib/text that build them (vocab.c), encode with them (bpe.c) and
 * decode with them (decode.c). The piece lookup is static inline: the BPE
 * merge loop calls it for every candidate pair. */
#ifndef DN_TOKENIZER_INTERNAL_H
#define DN_TOKENIZER_INTERNAL_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "text/tokenizer.h"
#include "common/alloc.h"

#define DN_WS_SYM "\xe2\x96\x81"   /* U+2581, SentencePiece's escaped space */
#define DN_WS_SYM_LEN 3

/* A hash slot keeps the first 8 bytes and the length: most lookups touch one slot. */
typedef struct dn_slot { uint64_t head; uint32_t lf; int32_t id; } dn_slot;

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
    dn_slot *tab;        /* open addressing, id -1 = empty */
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

static inline uint32_t dn_piece_len(const danu_tokenizer *t, int32_t id) { return t->off[id + 1] - t->off[id] - 1; }
static inline const char *dn_piece_ptr(const danu_tokenizer *t, int32_t id) { return t->blob + t->off[id]; }
/* SentencePiece merges only into NORMAL, USER_DEFINED and UNUSED pieces. */
static inline int dn_mergeable(uint8_t type)
{
    return type == DN_TOK_NORMAL || type == DN_TOK_USER_DEFINED || type == DN_TOK_UNUSED;
}

/* First min(n, 8) bytes, zero padded. */
static inline uint64_t dn_head8(const char *s, size_t n)
{
    uint64_t v = 0;
    memcpy(&v, s, n < 8 ? n : 8);
    return v;
}

static inline uint64_t dn_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t dn_hash_bytes(const char *s, size_t n, uint64_t head)
{
    uint64_t h = head ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull);
    for (size_t k = 8; k < n; k += 8) {
        h = dn_mix64(h);
        h ^= dn_head8(s + k, n - k);
    }
    return dn_mix64(h);
}

/* Length and 16 hash bits in one compare. */
static inline uint32_t dn_len_fp(size_t n, uint64_t h) { return (uint32_t)(n << 16) | (uint32_t)(h >> 48); }

/* Id of the piece with bytes s[0..n), or -1. */
static inline int32_t dn_find_piece(const danu_tokenizer *t, const char *s, size_t n)
{
    if (n == 0 || n > DN_TOK_MAX_PIECE_BYTES) return -1;
    uint64_t head = dn_head8(s, n), h = dn_hash_bytes(s, n, head);
    uint32_t lf = dn_len_fp(n, h), i = (uint32_t)h & t->mask;
    for (;;) {
        const dn_slot *e = &t->tab[i];
        if (e->id < 0) return -1;
        if (e->lf == lf && e->head == head && (n <= 8 || !memcmp(dn_piece_ptr(t, e->id) + 8, s + 8, n - 8)))
            return e->id;
        i = (i + 1) & t->mask;
    }
}
#endif
