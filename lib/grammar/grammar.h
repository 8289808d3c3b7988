/* grammar.h - a GBNF grammar compiled to flat arrays, and its parser.
 *
 * A grammar is rules; a rule is alternatives; an alternative is a sequence
 * of elements ending in END. Elements are character classes (one code point
 * from a set of ranges) or references to rules. Repetitions (? * + {m,n})
 * and groups are rewritten into generated rules when parsing, so the
 * matcher (matcher.c) only ever sees these three element kinds. A position
 * is an index into elems; the element after position p is p + 1. */
#ifndef DN_GRAMMAR_H
#define DN_GRAMMAR_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"
#include "common/alloc.h"

enum { DN_G_END = 0, DN_G_CLASS = 1, DN_G_REF = 2 };

typedef struct dn_gelem {
    int32_t kind;   /* DN_G_* */
    int32_t arg;    /* CLASS: class index; REF: rule index */
} dn_gelem;

typedef struct dn_grammar {
    const dn_alloc *a;
    int32_t n_rules;
    char **names;          /* [n_rules] NUL-terminated; generated rules are "name_N" */
    int32_t *rule_alt;     /* [n_rules] first alternative in alts */
    int32_t *rule_nalt;    /* [n_rules] */
    int32_t n_alts;
    int32_t *alts;         /* [n_alts] position of each alternative's first element */
    int32_t n_elems;
    dn_gelem *elems;
    int32_t n_classes;
    int32_t *class_off;    /* [n_classes] first range of each class */
    int32_t *class_n;      /* [n_classes] ranges in it (sorted, disjoint, merged) */
    uint32_t *class_ascii; /* [n_classes * 4] bitmap of code points 0..127 */
    uint32_t *ranges;      /* pairs lo, hi (inclusive) */
    int32_t root;
} dn_grammar;

/* Grammars larger than this (elements after expanding repetitions) are
 * refused with UNSUPPORTED. */
#define DN_GRAMMAR_MAX_ELEMS (1 << 20)
/* References nested deeper than this without input between them (a long
 * chain of optional items) are refused too: checks and the matcher recurse
 * that deep, on whatever stack the caller's thread has. */
#define DN_GRAMMAR_MAX_DEPTH 2000

/* Parse GBNF text (len bytes, UTF-8) with start rule `root` (NULL: "root").
 * INVALID_ARG with "line L, column C: ..." for syntax errors; undefined
 * rules, left recursion and rules that match nothing are refused too. */
danu_status dn_gbnf_parse(const dn_alloc *a, const char *text, size_t len, const char *root, dn_grammar **out);
void dn_grammar_free(dn_grammar *g);

/* t[0..n) as a quoted literal into out (NULL: only count): GBNF's escapes
 * (json 0) or JSON's (json 1) for quotes, backslashes and control
 * characters, every other byte (UTF-8 included) as is. Returns its length
 * (at most 6 n + 2). */
size_t dn_quote(char *out, const char *t, size_t n, int json);

/* 1 if code point cp is in class k. */
int dn_grammar_class_has(const dn_grammar *g, int32_t k, uint32_t cp);

/* Test and tool helper: parse gbnf and match text (len bytes) from the
 * start: *complete = 1 if text is a whole string of the language, *prefix =
 * 1 if it is a prefix of one (complete implies prefix). Grammar errors are
 * returned as by dn_gbnf_parse. */
danu_status dn_gbnf_match(const dn_alloc *a, const char *gbnf, size_t glen, const char *text, size_t tlen,
                          int *complete, int *prefix);

/* JSON Schema (schema: JSON text, len bytes) to GBNF text with a rule
 * "root"; *out is NUL-terminated, from a (dn_free it). flags: DANU_SCHEMA_*.
 * Errors as danu_constraint_from_json_schema (danu.h). */
danu_status dn_json_schema_to_gbnf(const dn_alloc *a, const char *schema, size_t len, uint32_t flags, char **out,
                                   size_t *out_len);
#endif
