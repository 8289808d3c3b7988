/* compile.c - the three ways to make a constraint: GBNF text, a JSON
 * Schema (converted to GBNF by json_schema.c), or a list of strings (a
 * one-rule grammar of literal alternatives). */
#include <string.h>
#include "grammar/constraint.h"
#include "text/tokenizer.h"
#include "common/error.h"
#include "common/utf8.h"

danu_status dn_constraint_from_gbnf(const danu_tokenizer *tok, const char *gbnf, size_t len, const char *root,
                                    danu_constraint **out)
{
    dn_grammar *g;
    DN_TRY(dn_gbnf_parse(dn_tokenizer_alloc(tok), gbnf, len, root, &g));
    return dn_constraint_create(tok, g, out);
}

danu_status dn_constraint_from_schema(const danu_tokenizer *tok, const char *schema, size_t len, uint32_t flags,
                                      danu_constraint **out)
{
    const dn_alloc *a = dn_tokenizer_alloc(tok);
    char *gbnf;
    size_t glen;
    DN_TRY(dn_json_schema_to_gbnf(a, schema, len, flags, &gbnf, &glen));
    danu_status s = dn_constraint_from_gbnf(tok, gbnf, glen, "root", out);
    dn_free(a, gbnf);
    return s;
}

/* root ::= "choice 1" | "choice 2" | ... (dn_quote'd) */
danu_status dn_choices_to_gbnf(const dn_alloc *a, const char *const *choices, size_t n, char **out, size_t *out_len)
{
    *out = NULL;
    DN_CHECK(choices && n > 0, DANU_ERR_INVALID_ARG, "choices: none given");
    size_t cap = 16;
    for (size_t i = 0; i < n; i++) {
        DN_CHECK(choices[i] && choices[i][0], DANU_ERR_INVALID_ARG, "choices: choice %zu is %s", i,
                 choices[i] ? "empty" : "NULL");
        size_t l = strlen(choices[i]);
        size_t bad = dn_utf8_check((const uint8_t *)choices[i], l);
        DN_CHECK(bad == l, DANU_ERR_BAD_UTF8, "choices: choice %zu is not UTF-8 (byte %zu)", i, bad);
        DN_CHECK(l < ((size_t)1 << 40), DANU_ERR_INVALID_ARG, "choices: choice %zu too long", i);
        cap += 6 * l + 8;
    }
    char *g = dn_malloc(a, cap), *w = g;
    DN_CHECK(g, DANU_ERR_NOMEM, "choices: out of memory");
    memcpy(w, "root ::= ", 9);
    w += 9;
    for (size_t i = 0; i < n; i++) {
        if (i) { memcpy(w, " | ", 3); w += 3; }
        w += dn_quote(w, choices[i], strlen(choices[i]), 0);
    }
    *w++ = '\n';
    *w = 0;
    *out = g;
    *out_len = (size_t)(w - g);
    return DANU_OK;
}

danu_status dn_constraint_from_choices(const danu_tokenizer *tok, const char *const *choices, size_t n,
                                       danu_constraint **out)
{
    const dn_alloc *a = dn_tokenizer_alloc(tok);
    char *gbnf;
    size_t glen;
    DN_TRY(dn_choices_to_gbnf(a, choices, n, &gbnf, &glen));
    danu_status s = dn_constraint_from_gbnf(tok, gbnf, glen, "root", out);
    dn_free(a, gbnf);
    return s;
}
