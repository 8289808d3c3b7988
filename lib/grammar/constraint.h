/* constraint.h - struct danu_constraint (a grammar compiled for one
 * vocabulary: the grammar and the vocabulary's token trie, immutable and
 * shared) and dn_matcher (one generation's position in it, with caches of
 * states, transitions and token masks; one per context). */
#ifndef DN_CONSTRAINT_H
#define DN_CONSTRAINT_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"
#include "common/alloc.h"
#include "grammar/grammar.h"

/* Compile for tok's vocabulary. The grammar is adopted (freed with the
 * constraint, also on error). */
danu_status dn_constraint_create(const danu_tokenizer *tok, dn_grammar *g, danu_constraint **out);
/* The three sources (compile.c). */
danu_status dn_constraint_from_gbnf(const danu_tokenizer *tok, const char *gbnf, size_t len, const char *root,
                                    danu_constraint **out);
danu_status dn_constraint_from_schema(const danu_tokenizer *tok, const char *schema, size_t len, uint32_t flags,
                                      danu_constraint **out);
danu_status dn_constraint_from_choices(const danu_tokenizer *tok, const char *const *choices, size_t n,
                                       danu_constraint **out);
danu_status dn_choices_to_gbnf(const dn_alloc *a, const char *const *choices, size_t n, char **out, size_t *out_len);
danu_constraint *dn_constraint_ref(danu_constraint *c);
void dn_constraint_unref(danu_constraint *c);
/* 1 if c was compiled for a vocabulary equal to tok's (same pieces and types). */
int dn_constraint_fits(const danu_constraint *c, const danu_tokenizer *tok);
int32_t dn_constraint_n_vocab(const danu_constraint *c);

typedef struct dn_matcher dn_matcher;
danu_status dn_matcher_create(danu_constraint *c, const dn_alloc *a, dn_matcher **out);
void dn_matcher_free(dn_matcher *m);
/* Back to the language's start (caches are kept). */
void dn_matcher_reset(dn_matcher *m);
/* Caches past this many bytes are dropped before the next mask (default
 * 64 MiB; tests set it tiny to drop them at every step). */
void dn_matcher_set_cache_limit(dn_matcher *m, size_t bytes);
/* The allowed tokens at the current point: a bitset of n_vocab bits (bit id
 * of word id / 32), EOS set when the text is complete. strip_space: the
 * decoder drops the next token's leading space (only control tokens came
 * before). The pointer stays valid until the next call on m. */
danu_status dn_matcher_mask(dn_matcher *m, int strip_space, const uint32_t **mask);
/* Advance by one token (its text as the decoder gives it, see strip_space).
 * STATE if the token is not allowed; m is unchanged then. EOS: no change. */
danu_status dn_matcher_accept(dn_matcher *m, danu_token id, int strip_space);
/* DANU_CONSTRAINT_OPEN, _COMPLETE or _FINISHED. */
int32_t dn_matcher_state(const dn_matcher *m);
/* Copy src's position into dst (same constraint). */
danu_status dn_matcher_copy(dn_matcher *dst, const dn_matcher *src);
/* Reference for tests: the mask computed token by token without the trie
 * or the caches (n_vocab bits into out). */
danu_status dn_matcher_mask_slow(dn_matcher *m, int strip_space, uint32_t *out);
#endif
