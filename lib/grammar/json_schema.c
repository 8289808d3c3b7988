/* json_schema.c - JSON Schema to GBNF (danu_constraint_from_json_schema).
 *
 * The schema is parsed with the strict JSON parser (which keeps object keys
 * in document order, so properties come out in the schema's order) and
 * walked once. Every schema node becomes a GBNF expression; rules are made
 * only where an expression would otherwise be copied (an object member, an
 * array item, a map entry) and for $ref targets, so the text stays linear in
 * the schema's size. Shared rules (value, string, number, ...) are written
 * once, at the end, when something used them.
 *
 * $ref targets are local JSON pointers ("#", "#/$defs/NAME", any "#/..."):
 * each target gets one rule, generated after the root from a queue, so a
 * recursive schema is a recursive grammar. A reference reached before any
 * character is consumed is recorded as a head edge; a cycle of head edges
 * would be left recursion and is refused.
 *
 * Whitespace: compact by default (no whitespace anywhere). With
 * DANU_SCHEMA_SPACES, `ws ::= (" " | "\n" [ \t]{0,32})?` may stand between
 * any two JSON tokens: one space, or a newline and up to 32 spaces or tabs
 * of indentation. Bounded, so a model cannot spin on whitespace.
 *
 * Integers with bounds are exact: the range is split into its negative
 * part, zero and positive part, the positive ranges by digit count, and
 * each digit count into the classic prefix / digit-class decomposition (no
 * leading zeros, no "-0"). The integer universe is 16 digits either way
 * (|x| <= 10^16 - 1), as for the unbounded integer rule.
 *
 * Narrower than JSON Schema on purpose (every output stays valid): members
 * come in the schema's order and, next to properties, no others; without
 * "type" the type is the one the keywords constrain (properties: object,
 * ...); enum/const values are their compact serialization.
 * {"type":"object"} with neither properties nor additionalProperties is any
 * object. The one place it is wider: oneOf is generated as anyOf, so an
 * output may match more than one of the schemas. */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "grammar/grammar.h"
#include "common/json.h"
#include "common/error.h"
#include "common/attr.h"
#include "common/utf8.h"

#define INT_LIMIT 9999999999999999LL   /* 10^16 - 1: 16 digits */
#define COUNT_LIMIT 65535              /* minLength, maxLength, minItems, maxItems */
#define HINT_MAX 40                    /* characters of a rule name taken from a key */

/* Type bits. */
enum { T_NULL = 1, T_BOOL = 2, T_OBJ = 4, T_ARR = 8, T_STR = 16, T_NUM = 32, T_INT = 64, T_ALL = 127 };

/* Shared rules, emitted when used. */
enum {
    N_VALUE = 1, N_OBJECT = 2, N_MEMBER = 4, N_ARRAY = 8, N_STRING = 16, N_CHAR = 32, N_NUMBER = 64,
    N_INTEGER = 128, N_BOOLEAN = 256, N_NULL = 512, N_WS = 1024
};

static const struct { unsigned bit; const char *name; } shared_names[] = {
    { N_VALUE, "value" }, { N_OBJECT, "object" }, { N_MEMBER, "member" }, { N_ARRAY, "array" },
    { N_STRING, "string" }, { N_CHAR, "char" }, { N_NUMBER, "number" }, { N_INTEGER, "integer" },
    { N_BOOLEAN, "boolean" }, { N_NULL, "null" }, { N_WS, "ws" },
};

/* Keyword kinds. */
enum {
    K_ANNOT = 1 << 0, K_DEFS = 1 << 1, K_TYPE = 1 << 2, K_OBJ = 1 << 3, K_ARR = 1 << 4, K_STR = 1 << 5,
    K_NUM = 1 << 6, K_ENUM = 1 << 7, K_CONST = 1 << 8, K_REF = 1 << 9, K_ANYOF = 1 << 10, K_ONEOF = 1 << 11,
    K_ALLOF = 1 << 12
};

static const struct { const char *name; unsigned kind; } keywords[] = {
    { "title", K_ANNOT }, { "description", K_ANNOT }, { "$schema", K_ANNOT }, { "$id", K_ANNOT },
    { "default", K_ANNOT }, { "examples", K_ANNOT }, { "$comment", K_ANNOT }, { "readOnly", K_ANNOT },
    { "writeOnly", K_ANNOT }, { "deprecated", K_ANNOT },
    { "$defs", K_DEFS }, { "definitions", K_DEFS },
    { "type", K_TYPE },
    { "properties", K_OBJ }, { "required", K_OBJ }, { "additionalProperties", K_OBJ },
    { "items", K_ARR }, { "minItems", K_ARR }, { "maxItems", K_ARR },
    { "minLength", K_STR }, { "maxLength", K_STR },
    { "minimum", K_NUM }, { "maximum", K_NUM }, { "exclusiveMinimum", K_NUM }, { "exclusiveMaximum", K_NUM },
    { "enum", K_ENUM }, { "const", K_CONST }, { "$ref", K_REF },
    { "anyOf", K_ANYOF }, { "oneOf", K_ONEOF }, { "allOf", K_ALLOF },
};

static unsigned keyword_kind(const char *k)
{
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strcmp(keywords[i].name, k) == 0) return keywords[i].kind;
    return 0;
}

typedef struct sb { char *p; size_t n, cap; } sb;

typedef struct rule { char *name; sb body; } rule;
typedef struct target { const dn_json *node; int32_t rule; char *ptr; } target;
typedef struct edge { int32_t from, to; } edge;

typedef struct ctx {
    const dn_alloc *a;
    const dn_json *root;
    int spaces;
    unsigned need;
    rule *rules;
    size_t n_rules, cap_rules;
    target *targets;
    size_t n_targets, cap_targets;
    edge *edges;
    size_t n_edges, cap_edges;
    int32_t *htab;          /* rule names: see name_taken */
    size_t hcap;
    int32_t cur;            /* rule whose body is being generated (head edges start there) */
    char path[512];         /* JSON pointer of the node being generated, for messages */
    size_t plen;
} ctx;

/* ---- errors ---- */

static danu_status nomem(void) { return dn_seterr(DANU_ERR_NOMEM, "json schema: out of memory"); }

static const char *where(const ctx *c) { return c->plen ? c->path : "the root"; }

static danu_status bad(const ctx *c, const char *what)
{
    return dn_seterr(DANU_ERR_INVALID_ARG, "json schema: %s at %s", what, where(c));
}

static danu_status bad_kw(const ctx *c, const char *kw, const char *what)
{
    return dn_seterr(DANU_ERR_INVALID_ARG, "json schema: keyword \"%s\" at %s: %s", kw, where(c), what);
}

static danu_status unsupported(const ctx *c, const char *kw, const char *why)
{
    if (why)
        return dn_seterr(DANU_ERR_UNSUPPORTED, "json schema: keyword \"%s\" at %s is not supported (%s)", kw,
                         where(c), why);
    return dn_seterr(DANU_ERR_UNSUPPORTED, "json schema: keyword \"%s\" at %s is not supported", kw, where(c));
}

/* ---- the path: JSON pointer segments appended and cut back ---- */

static void path_push(ctx *c, const char *seg)
{
    size_t cap = sizeof c->path;
    if (c->plen + 4 >= cap) return;
    c->path[c->plen++] = '/';
    for (const char *s = seg; *s; s++) {
        const char *rep = *s == '~' ? "~0" : *s == '/' ? "~1" : NULL;
        size_t k = rep ? 2 : 1;
        if (c->plen + k + 4 >= cap) { memcpy(c->path + c->plen, "...", 3); c->plen += 3; break; }
        if (rep) memcpy(c->path + c->plen, rep, 2);
        else c->path[c->plen] = *s;
        c->plen += k;
    }
    c->path[c->plen] = 0;
}

static void path_push_idx(ctx *c, size_t i)
{
    char b[24];
    snprintf(b, sizeof b, "%zu", i);
    path_push(c, b);
}

static void path_cut(ctx *c, size_t len)
{
    c->plen = len;
    c->path[len] = 0;
}

/* ---- string builder ---- */

static danu_status sb_putn(const ctx *c, sb *s, const char *t, size_t n)
{
    if (s->cap - s->n <= n) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap - s->n <= n) {
            if (cap > ((size_t)1 << 40)) return nomem();
            cap *= 2;
        }
        char *p = dn_realloc(c->a, s->p, cap);
        if (!p) return nomem();
        s->p = p;
        s->cap = cap;
    }
    if (n) memcpy(s->p + s->n, t, n);
    s->n += n;
    s->p[s->n] = 0;
    return DANU_OK;
}

static danu_status sb_puts(const ctx *c, sb *s, const char *t) { return sb_putn(c, s, t, strlen(t)); }

static danu_status sb_printf(const ctx *c, sb *s, const char *fmt, ...) DN_PRINTF(3, 4);
static danu_status sb_printf(const ctx *c, sb *s, const char *fmt, ...)
{
    char b[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof b) return dn_seterr(DANU_ERR_INTERNAL, "json schema: formatting overflow");
    return sb_putn(c, s, b, (size_t)n);
}

static void sb_free(const ctx *c, sb *s)
{
    dn_free(c->a, s->p);
    s->p = NULL;
    s->n = s->cap = 0;
}

/* " ws" with DANU_SCHEMA_SPACES, else nothing: between two JSON tokens. */
static danu_status put_ws(ctx *c, sb *s)
{
    if (!c->spaces) return DANU_OK;
    c->need |= N_WS;
    return sb_puts(c, s, " ws");
}

/* t[0..n) quoted (dn_quote: GBNF's escapes, or JSON's), appended to s. */
static danu_status put_quoted(const ctx *c, sb *s, const char *t, size_t n, int json)
{
    char small[256];
    size_t len = dn_quote(NULL, t, n, json);
    char *q = len <= sizeof small ? small : dn_malloc(c->a, len);
    if (!q) return dn_seterr(DANU_ERR_NOMEM, "json schema: out of memory");
    dn_quote(q, t, n, json);
    danu_status st = sb_putn(c, s, q, len);
    if (q != small) dn_free(c->a, q);
    return st;
}

/* A GBNF literal of n bytes. */
static danu_status put_lit(const ctx *c, sb *s, const char *t, size_t n) { return put_quoted(c, s, t, n, 0); }

/* ---- JSON serialization (enum and const values, property keys) ---- */

static danu_status ser_string(const ctx *c, sb *s, const char *t, size_t n) { return put_quoted(c, s, t, n, 1); }

/* The shortest %g text that reads back as d, with '.' whatever the locale. */
static danu_status ser_double(const ctx *c, sb *s, double d)
{
    char b[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, d);
        if (strtod(b, NULL) == d) break;
    }
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && !dp[1]) {
        char *p = strchr(b, dp[0]);
        if (p) *p = '.';
    }
    return sb_puts(c, s, b);
}

static danu_status ser_json(const ctx *c, sb *s, const dn_json *v)
{
    switch (v->type) {
    case DN_JSON_NULL: return sb_puts(c, s, "null");
    case DN_JSON_BOOL: return sb_puts(c, s, v->boolean ? "true" : "false");
    case DN_JSON_NUMBER:
        if (v->is_integer) return sb_printf(c, s, "%lld", (long long)v->integer);
        return ser_double(c, s, v->number);
    case DN_JSON_STRING: return ser_string(c, s, v->str, v->str_len);
    case DN_JSON_ARRAY:
        DN_TRY(sb_puts(c, s, "["));
        for (size_t i = 0; i < v->n; i++) {
            if (i) DN_TRY(sb_puts(c, s, ","));
            DN_TRY(ser_json(c, s, &v->items[i]));
        }
        return sb_puts(c, s, "]");
    case DN_JSON_OBJECT:
        DN_TRY(sb_puts(c, s, "{"));
        for (size_t i = 0; i < v->n; i++) {
            if (i) DN_TRY(sb_puts(c, s, ","));
            DN_TRY(ser_string(c, s, v->keys[i], strlen(v->keys[i])));
            DN_TRY(sb_puts(c, s, ":"));
            DN_TRY(ser_json(c, s, &v->items[i]));
        }
        return sb_puts(c, s, "}");
    }
    return dn_seterr(DANU_ERR_INTERNAL, "json schema: unknown JSON type");
}

/* A JSON value as one GBNF literal (its compact serialization). */
static danu_status put_json_lit(const ctx *c, sb *s, const dn_json *v)
{
    sb t = { 0 };
    danu_status st = ser_json(c, &t, v);
    if (st == DANU_OK) st = put_lit(c, s, t.p, t.n);
    sb_free(c, &t);
    return st;
}

/* ---- rules ---- */

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Rule names are kept in an open-addressing table (rule index + 1, 0 for
 * free), so naming stays linear in the number of rules. */
static int name_taken(const ctx *c, const char *name)
{
    for (size_t i = 0; i < sizeof shared_names / sizeof shared_names[0]; i++)
        if (strcmp(shared_names[i].name, name) == 0) return 1;
    if (!c->hcap) return 0;
    for (size_t h = name_hash(name) & (c->hcap - 1);; h = (h + 1) & (c->hcap - 1)) {
        int32_t r = c->htab[h];
        if (!r) return 0;
        if (strcmp(c->rules[r - 1].name, name) == 0) return 1;
    }
}

static void name_insert(ctx *c, int32_t rule)
{
    size_t h = name_hash(c->rules[rule].name) & (c->hcap - 1);
    while (c->htab[h]) h = (h + 1) & (c->hcap - 1);
    c->htab[h] = rule + 1;
}

/* A new rule with an empty body, named after hint (+ suffix): characters
 * outside [a-zA-Z0-9] become '-', and "-2", "-3", "-4" or else "-K" (K
 * from the rule count, so the search stays short) make it unique. */
static danu_status new_rule(ctx *c, const char *hint, const char *suffix, int32_t *idx)
{
    char base[HINT_MAX + 24], name[HINT_MAX + 48];
    size_t n = 0;
    for (const char *h = hint; *h && n < HINT_MAX; h++) {
        char ch = *h;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (ok) base[n++] = ch;
        else if (n && base[n - 1] != '-') base[n++] = '-';
    }
    while (n && base[n - 1] == '-') n--;
    if (!n) base[n++] = 'r';
    base[n] = 0;
    snprintf(base + n, sizeof base - n, "%s", suffix ? suffix : "");
    snprintf(name, sizeof name, "%s", base);
    for (size_t k = 2; name_taken(c, name); k = k < 4 ? k + 1 : k < c->n_rules ? c->n_rules + 1 : k + 1)
        snprintf(name, sizeof name, "%s-%zu", base, k);
    if (c->n_rules == c->cap_rules) {
        size_t cap = c->cap_rules ? c->cap_rules * 2 : 16;
        rule *r = dn_realloc(c->a, c->rules, cap * sizeof *r);
        if (!r) return nomem();
        c->rules = r;
        c->cap_rules = cap;
    }
    if ((c->n_rules + 1) * 2 > c->hcap) {
        size_t cap = c->hcap ? c->hcap * 2 : 64;
        int32_t *t = dn_calloc(c->a, cap, sizeof *t);
        if (!t) return nomem();
        dn_free(c->a, c->htab);
        c->htab = t;
        c->hcap = cap;
        for (size_t i = 0; i < c->n_rules; i++) name_insert(c, (int32_t)i);
    }
    char *nm = dn_strdup(c->a, name);
    if (!nm) return nomem();
    rule *r = &c->rules[c->n_rules];
    r->name = nm;
    memset(&r->body, 0, sizeof r->body);
    *idx = (int32_t)c->n_rules++;
    name_insert(c, *idx);
    return DANU_OK;
}

static int is_ident(const sb *e)
{
    if (!e->n) return 0;
    for (size_t i = 0; i < e->n; i++) {
        char ch = e->p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return 0;
    }
    return 1;
}

/* Append a name for expression e to out: e itself when it is a rule name,
 * else a new rule with body e (e is taken over either way). */
static danu_status put_as_rule(ctx *c, sb *out, const char *hint, const char *suffix, sb *e)
{
    danu_status st;
    if (is_ident(e)) {
        st = sb_putn(c, out, e->p, e->n);
        sb_free(c, e);
        return st;
    }
    int32_t r;
    st = new_rule(c, hint, suffix, &r);
    if (st != DANU_OK) { sb_free(c, e); return st; }
    c->rules[r].body = *e;
    memset(e, 0, sizeof *e);
    return sb_puts(c, out, c->rules[r].name);
}

/* ---- $ref ---- */

static danu_status add_edge(ctx *c, int32_t from, int32_t to)
{
    if (c->n_edges == c->cap_edges) {
        size_t cap = c->cap_edges ? c->cap_edges * 2 : 8;
        edge *e = dn_realloc(c->a, c->edges, cap * sizeof *e);
        if (!e) return nomem();
        c->edges = e;
        c->cap_edges = cap;
    }
    c->edges[c->n_edges].from = from;
    c->edges[c->n_edges].to = to;
    c->n_edges++;
    return DANU_OK;
}

/* Resolve a local reference to its node: "#" or a JSON pointer "#/a/b"
 * (~0 and ~1 decoded; array members by index). tok: scratch of strlen(ref)
 * + 1 bytes; on return it holds the last token (the rule name hint). */
static danu_status resolve(ctx *c, const char *ref, char *tok, const dn_json **out)
{
    const dn_json *n = c->root;
    const char *p = ref + 1;
    tok[0] = 0;
    if (*p && *p != '/')
        return dn_seterr(DANU_ERR_UNSUPPORTED,
                         "json schema: keyword \"$ref\" at %s is not supported for \"%s\" (only JSON pointers \"#/...\")",
                         where(c), ref);
    while (*p == '/') {
        p++;
        size_t k = 0;
        while (*p && *p != '/') {
            if (*p == '~') {
                if (p[1] != '0' && p[1] != '1')
                    return dn_seterr(DANU_ERR_INVALID_ARG, "json schema: $ref \"%s\" at %s: bad escape in JSON pointer",
                                     ref, where(c));
                tok[k++] = p[1] == '0' ? '~' : '/';
                p += 2;
            } else {
                tok[k++] = *p++;
            }
        }
        tok[k] = 0;
        const dn_json *next = NULL;
        if (n->type == DN_JSON_OBJECT) {
            next = dn_json_get(n, tok);
        } else if (n->type == DN_JSON_ARRAY && k && k < 10 && (tok[0] != '0' || k == 1)) {
            size_t idx = 0, j;
            for (j = 0; j < k && tok[j] >= '0' && tok[j] <= '9'; j++) idx = idx * 10 + (size_t)(tok[j] - '0');
            if (j == k && idx < n->n) next = &n->items[idx];
        }
        if (!next)
            return dn_seterr(DANU_ERR_INVALID_ARG, "json schema: $ref \"%s\" at %s: no such definition", ref, where(c));
        n = next;
    }
    *out = n;
    return DANU_OK;
}

/* The rule of a $ref's target, made (and queued for generation) on first use. */
static danu_status ref_rule(ctx *c, const dn_json *refv, int32_t *rule_out)
{
    if (refv->type != DN_JSON_STRING) return bad_kw(c, "$ref", "must be a string");
    const char *ref = refv->str;
    if (strlen(ref) != refv->str_len) return bad_kw(c, "$ref", "contains a NUL character");
    if (ref[0] != '#')
        return dn_seterr(DANU_ERR_UNSUPPORTED,
                         "json schema: keyword \"$ref\" at %s is not supported for \"%s\" (only local references \"#...\")",
                         where(c), ref);
    char *tok = dn_malloc(c->a, refv->str_len + 1);
    if (!tok) return nomem();
    const dn_json *node = NULL;
    danu_status st = resolve(c, ref, tok, &node);
    if (st != DANU_OK) { dn_free(c->a, tok); return st; }
    if (node == c->root) { dn_free(c->a, tok); *rule_out = 0; return DANU_OK; }
    for (size_t i = 0; i < c->n_targets; i++)
        if (c->targets[i].node == node) { dn_free(c->a, tok); *rule_out = c->targets[i].rule; return DANU_OK; }
    if (c->n_targets == c->cap_targets) {
        size_t cap = c->cap_targets ? c->cap_targets * 2 : 8;
        target *t = dn_realloc(c->a, c->targets, cap * sizeof *t);
        if (!t) { dn_free(c->a, tok); return nomem(); }
        c->targets = t;
        c->cap_targets = cap;
    }
    char *ptr = dn_strdup(c->a, ref + 1);
    if (!ptr) { dn_free(c->a, tok); return nomem(); }
    int32_t r;
    st = new_rule(c, tok, NULL, &r);
    dn_free(c->a, tok);
    if (st != DANU_OK) { dn_free(c->a, ptr); return st; }
    c->targets[c->n_targets].node = node;
    c->targets[c->n_targets].rule = r;
    c->targets[c->n_targets].ptr = ptr;
    c->n_targets++;
    *rule_out = r;
    return DANU_OK;
}

/* ---- counts and bounds ---- */

/* A count keyword (minLength, ...): absent leaves *v; else a non-negative
 * integer up to COUNT_LIMIT. */
static danu_status get_count(const ctx *c, const dn_json *s, const char *kw, int64_t *v)
{
    const dn_json *j = dn_json_get(s, kw);
    if (!j) return DANU_OK;
    int64_t x;
    if (!dn_json_get_int(s, kw, &x) || x < 0) return bad_kw(c, kw, "must be a non-negative integer");
    if (x > COUNT_LIMIT) return unsupported(c, kw, "values above 65535");
    *v = x;
    return DANU_OK;
}

/* A bound as an integer: dir > 0 rounds up (a lower bound), dir < 0 down;
 * excl moves it one further inward. Values far outside the integer
 * universe are returned as +-(INT_LIMIT + 1) (the caller clamps or
 * refuses). */
static int64_t int_bound(const dn_json *v, int dir, int excl)
{
    const int64_t far = INT_LIMIT + 1;
    int64_t r;
    if (v->is_integer) {
        r = v->integer;
        if (r > far) r = far;
        if (r < -far) r = -far;
    } else {
        double d = v->number;
        if (d >= (double)far) return far;
        if (d <= -(double)far) return -far;
        double rd = dir > 0 ? ceil(d) : floor(d);
        r = (int64_t)rd;
        if (excl && rd != d) excl = 0;   /* rounding inward already excluded the bound */
    }
    if (excl) r += dir;
    return r;
}

static danu_status num_keyword(const ctx *c, const dn_json *s, const char *kw, const dn_json **out)
{
    const dn_json *v = dn_json_get(s, kw);
    *out = v;
    if (v && v->type != DN_JSON_NUMBER) return bad_kw(c, kw, "must be a number");
    return DANU_OK;
}

/* ---- integer ranges ---- */

static int all_digit(const char *s, size_t n, char d)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != d) return 0;
    return 1;
}

/* "[0-9]" k times, with a leading space; nothing for k = 0. */
static danu_status put_digits(const ctx *c, sb *s, size_t k)
{
    if (k == 0) return DANU_OK;
    if (k == 1) return sb_puts(c, s, " [0-9]");
    return sb_printf(c, s, " [0-9]{%zu}", k);
}

/* One alternative: the literal prefix, then a digit in [lo, hi], then k any
 * digits. */
static danu_status put_alt(const ctx *c, sb *s, int *n_alts, const char *prefix, size_t plen, char lo, char hi,
                           size_t k)
{
    if ((*n_alts)++) DN_TRY(sb_puts(c, s, " | "));
    char p[24];
    memcpy(p, prefix, plen);
    if (lo == hi) p[plen++] = lo;
    if (plen) {
        DN_TRY(sb_putn(c, s, "\"", 1));
        DN_TRY(sb_putn(c, s, p, plen));
        DN_TRY(sb_putn(c, s, "\"", 1));
    }
    if (lo != hi) DN_TRY(sb_printf(c, s, "%s[%c-%c]", plen ? " " : "", lo, hi));
    return put_digits(c, s, k);
}

/* Alternatives for the digit strings from x to y (both n digits, x <= y),
 * each after the literal prefix. */
static danu_status same_len(const ctx *c, sb *s, int *n_alts, char *prefix, size_t plen, const char *x,
                            const char *y, size_t n)
{
    while (n && x[0] == y[0]) {
        prefix[plen++] = x[0];
        x++, y++, n--;
    }
    if (n == 0) {
        if ((*n_alts)++) DN_TRY(sb_puts(c, s, " | "));
        DN_TRY(sb_putn(c, s, "\"", 1));
        DN_TRY(sb_putn(c, s, prefix, plen));
        return sb_putn(c, s, "\"", 1);
    }
    char nines[20], zeros[20];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    int low_full = all_digit(x + 1, n - 1, '0'), high_full = all_digit(y + 1, n - 1, '9');
    char mid_lo = x[0], mid_hi = y[0];
    if (!low_full) {
        prefix[plen] = x[0];
        DN_TRY(same_len(c, s, n_alts, prefix, plen + 1, x + 1, nines, n - 1));
        mid_lo++;
    }
    if (!high_full) mid_hi--;
    if (mid_lo <= mid_hi) DN_TRY(put_alt(c, s, n_alts, prefix, plen, mid_lo, mid_hi, n - 1));
    if (!high_full) {
        prefix[plen] = y[0];
        DN_TRY(same_len(c, s, n_alts, prefix, plen + 1, zeros, y + 1, n - 1));
    }
    return DANU_OK;
}

static int n_digits(int64_t v)
{
    int d = 1;
    while (v >= 10) { v /= 10; d++; }
    return d;
}

/* Alternatives for the integers a..b, 1 <= a <= b <= INT_LIMIT. */
static danu_status pos_range(const ctx *c, sb *s, int *n_alts, int64_t a, int64_t b)
{
    int da = n_digits(a), db = n_digits(b);
    int full_from = 0;   /* first digit count of a run of whole digit counts, 0: none */
    int64_t p10 = 1;
    for (int d = 1; d < da; d++) p10 *= 10;
    for (int d = da; d <= db; d++, p10 *= 10) {
        int64_t lo = a > p10 ? a : p10, top = p10 * 10 - 1, hi = b < top ? b : top;
        int full = lo == p10 && hi == top;
        if (full) {
            if (!full_from) full_from = d;
            if (d < db) continue;
        }
        if (full_from) {
            int last = full ? d : d - 1;
            if ((*n_alts)++) DN_TRY(sb_puts(c, s, " | "));
            DN_TRY(sb_puts(c, s, "[1-9]"));
            if (last == full_from) DN_TRY(put_digits(c, s, (size_t)last - 1));
            else if (full_from == 1 && last == 2) DN_TRY(sb_puts(c, s, " [0-9]?"));
            else DN_TRY(sb_printf(c, s, " [0-9]{%d,%d}", full_from - 1, last - 1));
            full_from = 0;
        }
        if (!full) {
            char x[24], y[24], prefix[24];
            snprintf(x, sizeof x, "%lld", (long long)lo);
            snprintf(y, sizeof y, "%lld", (long long)hi);
            DN_TRY(same_len(c, s, n_alts, prefix, 0, x, y, (size_t)d));
        }
    }
    return DANU_OK;
}

/* The integers lo..hi (within +-INT_LIMIT) as one GBNF unit. */
static danu_status int_range(const ctx *c, sb *s, int64_t lo, int64_t hi)
{
    sb t = { 0 };
    int n = 0;
    danu_status st = DANU_OK;
    if (lo <= -1) {
        sb neg = { 0 };
        int nn = 0;
        st = pos_range(c, &neg, &nn, hi < -1 ? -hi : 1, -lo);
        if (st == DANU_OK) st = sb_puts(c, &t, nn > 1 ? "\"-\" (" : "\"-\" ");
        if (st == DANU_OK) st = sb_putn(c, &t, neg.p, neg.n);
        if (st == DANU_OK && nn > 1) st = sb_puts(c, &t, ")");
        sb_free(c, &neg);
        n++;
    }
    if (st == DANU_OK && lo <= 0 && hi >= 0) {
        st = sb_puts(c, &t, n++ ? " | \"0\"" : "\"0\"");
    }
    if (st == DANU_OK && hi >= 1) st = pos_range(c, &t, &n, lo > 1 ? lo : 1, hi);
    if (st == DANU_OK) st = sb_puts(c, s, n > 1 ? "(" : "");
    if (st == DANU_OK) st = sb_putn(c, s, t.p, t.n);
    if (st == DANU_OK && n > 1) st = sb_puts(c, s, ")");
    sb_free(c, &t);
    return st;
}

/* ---- the schema walk ---- */

static danu_status gen(ctx *c, const dn_json *s, int consumed, const char *hint, sb *out);

static danu_status parse_type(const ctx *c, const dn_json *t, unsigned *types)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        { "null", T_NULL }, { "boolean", T_BOOL }, { "object", T_OBJ }, { "array", T_ARR },
        { "string", T_STR }, { "number", T_NUM }, { "integer", T_INT },
    };
    size_t n = t->type == DN_JSON_ARRAY ? t->n : 1;
    if (t->type != DN_JSON_ARRAY && t->type != DN_JSON_STRING)
        return bad_kw(c, "type", "must be a type name or a list of them");
    if (n == 0) return bad_kw(c, "type", "an empty list: nothing can match");
    *types = 0;
    for (size_t i = 0; i < n; i++) {
        const dn_json *e = t->type == DN_JSON_ARRAY ? &t->items[i] : t;
        if (e->type != DN_JSON_STRING) return bad_kw(c, "type", "must be a type name or a list of them");
        size_t k;
        for (k = 0; k < sizeof names / sizeof names[0]; k++)
            if (strcmp(names[k].name, e->str) == 0) break;
        if (k == sizeof names / sizeof names[0]) return bad_kw(c, "type", "unknown type name");
        *types |= names[k].bit;
    }
    return DANU_OK;
}

static int has_type(const dn_json *v, unsigned types)
{
    switch (v->type) {
    case DN_JSON_NULL: return (types & T_NULL) != 0;
    case DN_JSON_BOOL: return (types & T_BOOL) != 0;
    case DN_JSON_OBJECT: return (types & T_OBJ) != 0;
    case DN_JSON_ARRAY: return (types & T_ARR) != 0;
    case DN_JSON_STRING: return (types & T_STR) != 0;
    case DN_JSON_NUMBER:
        if (types & T_NUM) return 1;
        return (types & T_INT) && (v->is_integer || (isfinite(v->number) && v->number == floor(v->number)));
    }
    return 0;
}

/* enum or const: the values of the allowed types, as literals. */
static danu_status gen_enum(ctx *c, const dn_json *s, unsigned types, sb *out)
{
    const dn_json *e = dn_json_get(s, "enum");
    const dn_json *k = dn_json_get(s, "const");
    const char *kw = e ? "enum" : "const";
    const dn_json *vals = e ? e->items : k;
    size_t n = e ? e->n : 1;
    if (e && e->type != DN_JSON_ARRAY) return bad_kw(c, "enum", "must be an array");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += (size_t)has_type(&vals[i], types);
    if (m == 0) return bad_kw(c, kw, "no value of the allowed types: nothing can match");
    if (m > 1) DN_TRY(sb_puts(c, out, "("));
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (!has_type(&vals[i], types)) continue;
        if (j++) DN_TRY(sb_puts(c, out, " | "));
        DN_TRY(put_json_lit(c, out, &vals[i]));
    }
    if (m > 1) DN_TRY(sb_puts(c, out, ")"));
    return DANU_OK;
}

static danu_status gen_string(ctx *c, const dn_json *s, sb *out)
{
    int64_t lo = 0, hi = -1;
    DN_TRY(get_count(c, s, "minLength", &lo));
    DN_TRY(get_count(c, s, "maxLength", &hi));
    if (hi >= 0 && lo > hi) return bad(c, "minLength above maxLength (nothing can match)");
    if (lo == 0 && hi < 0) {
        c->need |= N_STRING;
        return sb_puts(c, out, "string");
    }
    if (hi == 0) return sb_puts(c, out, "\"\\\"\\\"\"");
    c->need |= N_CHAR;
    DN_TRY(sb_puts(c, out, "\"\\\"\" char"));
    if (hi < 0) DN_TRY(lo == 1 ? sb_puts(c, out, "+") : sb_printf(c, out, "{%lld,}", (long long)lo));
    else if (lo == hi) DN_TRY(lo == 1 ? DANU_OK : sb_printf(c, out, "{%lld}", (long long)lo));
    else if (lo == 0 && hi == 1) DN_TRY(sb_puts(c, out, "?"));
    else DN_TRY(sb_printf(c, out, "{%lld,%lld}", (long long)lo, (long long)hi));
    return sb_puts(c, out, " \"\\\"\"");
}

static danu_status gen_integer(ctx *c, const dn_json *s, sb *out)
{
    const dn_json *mn, *mx, *xmn, *xmx;
    DN_TRY(num_keyword(c, s, "minimum", &mn));
    DN_TRY(num_keyword(c, s, "maximum", &mx));
    xmn = dn_json_get(s, "exclusiveMinimum");
    xmx = dn_json_get(s, "exclusiveMaximum");
    /* draft 4: exclusiveMinimum/Maximum are booleans that modify minimum/maximum */
    int bmin = 0, bmax = 0;
    if (xmn && xmn->type == DN_JSON_BOOL) { bmin = xmn->boolean; xmn = NULL; }
    else DN_TRY(num_keyword(c, s, "exclusiveMinimum", &xmn));
    if (xmx && xmx->type == DN_JSON_BOOL) { bmax = xmx->boolean; xmx = NULL; }
    else DN_TRY(num_keyword(c, s, "exclusiveMaximum", &xmx));
    if (!mn && !mx && !xmn && !xmx) {
        c->need |= N_INTEGER;
        return sb_puts(c, out, "integer");
    }
    const int64_t far = INT_LIMIT + 1;
    int64_t lo = -far, hi = far;
    if (mn) { int64_t v = int_bound(mn, 1, bmin); if (v > lo) lo = v; }
    if (xmn) { int64_t v = int_bound(xmn, 1, 1); if (v > lo) lo = v; }
    if (mx) { int64_t v = int_bound(mx, -1, bmax); if (v < hi) hi = v; }
    if (xmx) { int64_t v = int_bound(xmx, -1, 1); if (v < hi) hi = v; }
    if (lo > hi) return bad(c, "minimum above maximum (no integer can match)");
    if (lo > INT_LIMIT || hi < -INT_LIMIT)
        return unsupported(c, lo > INT_LIMIT ? (mn ? "minimum" : "exclusiveMinimum") : (mx ? "maximum" : "exclusiveMaximum"),
                           "integers are limited to 16 digits");
    if (lo < -INT_LIMIT) lo = -INT_LIMIT;
    if (hi > INT_LIMIT) hi = INT_LIMIT;
    return int_range(c, out, lo, hi);
}

static danu_status gen_array(ctx *c, const dn_json *s, const char *hint, sb *out)
{
    int64_t lo = 0, hi = -1;
    DN_TRY(get_count(c, s, "minItems", &lo));
    DN_TRY(get_count(c, s, "maxItems", &hi));
    if (hi >= 0 && lo > hi) return bad(c, "minItems above maxItems (nothing can match)");
    const dn_json *items = dn_json_get(s, "items");
    if (items && items->type == DN_JSON_ARRAY) return unsupported(c, "items", "the array (tuple) form");
    if (items && items->type == DN_JSON_BOOL && !items->boolean) {
        /* no item can match: only the empty array */
        if (lo > 0) return bad_kw(c, "items", "false with minItems above 0 (nothing can match)");
        hi = 0;
    }
    DN_TRY(sb_puts(c, out, "\"[\""));
    DN_TRY(put_ws(c, out));
    if (hi == 0) return sb_puts(c, out, " \"]\"");
    sb item = { 0 };
    danu_status st;
    if (items) {
        size_t pl = c->plen;
        path_push(c, "items");
        char h[HINT_MAX + 8];
        snprintf(h, sizeof h, "%.*s-item", HINT_MAX, hint);
        sb e = { 0 };
        st = gen(c, items, 1, h, &e);
        path_cut(c, pl);
        if (st == DANU_OK) st = put_as_rule(c, &item, h, NULL, &e);
        else sb_free(c, &e);
    } else {
        c->need |= N_VALUE;
        st = sb_puts(c, &item, "value");
    }
    /* lo = 0: "[" ( I ( "," I ){0,hi-1} )? "]"; else "[" I ( "," I ){lo-1,hi-1} "]" */
    if (st == DANU_OK) st = sb_puts(c, out, lo == 0 ? " ( " : " ");
    if (st == DANU_OK) st = sb_putn(c, out, item.p, item.n);
    int64_t rlo = lo ? lo - 1 : 0, rhi = hi < 0 ? -1 : hi - 1;
    if (st == DANU_OK && rhi != 0) {
        st = sb_puts(c, out, " (");
        if (st == DANU_OK) st = put_ws(c, out);
        if (st == DANU_OK) st = sb_puts(c, out, " \",\"");
        if (st == DANU_OK) st = put_ws(c, out);
        if (st == DANU_OK) st = sb_puts(c, out, " ");
        if (st == DANU_OK) st = sb_putn(c, out, item.p, item.n);
        if (st == DANU_OK) st = sb_puts(c, out, " )");
        if (st != DANU_OK) {
        } else if (rhi < 0) {
            st = rlo == 0 ? sb_puts(c, out, "*") : rlo == 1 ? sb_puts(c, out, "+") : sb_printf(c, out, "{%lld,}", (long long)rlo);
        } else if (rlo == rhi) {
            st = rlo == 1 ? DANU_OK : sb_printf(c, out, "{%lld}", (long long)rlo);
        } else if (rlo == 0 && rhi == 1) {
            st = sb_puts(c, out, "?");
        } else {
            st = sb_printf(c, out, "{%lld,%lld}", (long long)rlo, (long long)rhi);
        }
    }
    if (st == DANU_OK) st = put_ws(c, out);
    if (st == DANU_OK && lo == 0) st = sb_puts(c, out, " )?");
    if (st == DANU_OK) st = sb_puts(c, out, " \"]\"");
    sb_free(c, &item);
    return st;
}

/* A map: "{" ( K ( "," K )* )? "}" with K = string ":" V. */
static danu_status gen_map(ctx *c, const dn_json *vs, const char *hint, sb *out)
{
    sb e = { 0 }, kv = { 0 };
    danu_status st;
    size_t pl = c->plen;
    path_push(c, "additionalProperties");
    char h[HINT_MAX + 8];
    snprintf(h, sizeof h, "%.*s-value", HINT_MAX, hint);
    st = gen(c, vs, 1, h, &e);
    path_cut(c, pl);
    c->need |= N_STRING;
    if (st == DANU_OK) st = sb_puts(c, &kv, "string");
    if (st == DANU_OK) st = put_ws(c, &kv);
    if (st == DANU_OK) st = sb_puts(c, &kv, " \":\"");
    if (st == DANU_OK) st = put_ws(c, &kv);
    if (st == DANU_OK) st = sb_puts(c, &kv, " ");
    if (st == DANU_OK) st = sb_putn(c, &kv, e.p, e.n);
    if (st == DANU_OK) st = put_ws(c, &kv);
    sb_free(c, &e);
    sb name = { 0 };
    if (st == DANU_OK) st = put_as_rule(c, &name, hint, "-kv", &kv);
    else sb_free(c, &kv);
    if (st == DANU_OK) st = sb_puts(c, out, "\"{\"");
    if (st == DANU_OK) st = put_ws(c, out);
    if (st == DANU_OK) st = sb_printf(c, out, " ( %s ( \",\"", name.p);
    if (st == DANU_OK) st = put_ws(c, out);
    if (st == DANU_OK) st = sb_printf(c, out, " %s )* )? \"}\"", name.p);
    sb_free(c, &name);
    return st;
}

/* An object with properties p_0..p_{m-1} (in schema order), required or
 * optional. Member rules M_i = key ":" V_i. Without optional members the
 * object is one sequence. Otherwise, with tail(j) = A_j when a required
 * member remains from j on, A_j? when not, nothing for j = m:
 *   A_i (the members from i on, nonempty, each after a comma):
 *       required: "," M_i tail(i+1)
 *       optional: "," M_i tail(i+1) | A_{i+1}     (i = m-1: "," M_i)
 *   B_i (the same without the first comma, where nothing came before):
 *       required: M_i tail(i+1)
 *       optional: M_i tail(i+1) | B_{i+1}         (i = m-1: M_i)
 *   object: "{" B_0 "}", or "{" B_0? "}" when nothing is required.
 * 3m rules at most: every combination, commas always right. */
static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

typedef struct member { const char *key; int req, req_from; int32_t m, a, b; } member;

static danu_status put_tail(ctx *c, sb *s, const member *mm, size_t m, size_t j)
{
    if (j == m) return DANU_OK;
    return sb_printf(c, s, " %s%s", c->rules[mm[j].a].name, mm[j].req_from ? "" : "?");
}

static danu_status gen_object(ctx *c, const dn_json *s, const char *hint, sb *out)
{
    const dn_json *props = dn_json_get(s, "properties");
    const dn_json *req = dn_json_get(s, "required");
    const dn_json *addl = dn_json_get(s, "additionalProperties");
    if (props && props->type != DN_JSON_OBJECT) return bad_kw(c, "properties", "must be an object");
    if (req && req->type != DN_JSON_ARRAY) return bad_kw(c, "required", "must be an array of strings");
    if (addl && addl->type != DN_JSON_BOOL && addl->type != DN_JSON_OBJECT)
        return bad_kw(c, "additionalProperties", "must be a boolean or a schema");
    size_t n = props ? props->n : 0, nrq = req ? req->n : 0;
    for (size_t i = 0; i < nrq; i++)
        if (req->items[i].type != DN_JSON_STRING) return bad_kw(c, "required", "must be an array of strings");
    /* required names and property keys sorted, to look them up */
    const char **rq = NULL, **pk = NULL;
    if (nrq) {
        rq = dn_malloc(c->a, nrq * sizeof *rq);
        pk = dn_malloc(c->a, (n ? n : 1) * sizeof *pk);
        if (!rq || !pk) {
            dn_free(c->a, rq);
            dn_free(c->a, pk);
            return nomem();
        }
        for (size_t i = 0; i < nrq; i++) rq[i] = req->items[i].str;
        for (size_t i = 0; i < n; i++) pk[i] = props->keys[i];
        qsort(rq, nrq, sizeof *rq, cmp_str);
        qsort(pk, n, sizeof *pk, cmp_str);
        for (size_t i = 0; i < nrq; i++) {
            if (n && bsearch(&req->items[i].str, pk, n, sizeof *pk, cmp_str)) continue;
            size_t pl = c->plen;
            path_push(c, "required");
            path_push_idx(c, i);
            danu_status st = dn_seterr(DANU_ERR_INVALID_ARG,
                                       "json schema: required property \"%s\" at %s is not in properties",
                                       req->items[i].str, where(c));
            path_cut(c, pl);
            dn_free(c->a, rq);
            dn_free(c->a, pk);
            return st;
        }
        dn_free(c->a, pk);
    }
    int addl_open = addl && !(addl->type == DN_JSON_BOOL && !addl->boolean);
    if (n == 0) {   /* (required is empty: checked above) */
        if (addl_open && addl->type == DN_JSON_OBJECT) return gen_map(c, addl, hint, out);
        if (addl_open || (!addl && !props)) {
            c->need |= N_OBJECT;
            return sb_puts(c, out, "object");
        }
        DN_TRY(sb_puts(c, out, "\"{\""));
        DN_TRY(put_ws(c, out));
        return sb_puts(c, out, " \"}\"");
    }
    member *mm = addl_open ? NULL : dn_calloc(c->a, n, sizeof *mm);
    if (!mm) {
        dn_free(c->a, rq);
        if (addl_open) return unsupported(c, "additionalProperties", "only false together with properties");
        return nomem();
    }
    size_t m = 0;
    int all_req = 1;
    for (size_t i = 0; i < n; i++) {
        const char *key = props->keys[i];
        const dn_json *ps = &props->items[i];
        int r = rq && bsearch(&key, rq, nrq, sizeof *rq, cmp_str) != NULL;
        if (ps->type == DN_JSON_BOOL && !ps->boolean && !r) continue;   /* may not appear: leave it out */
        mm[m].key = key;
        mm[m].req = r;
        mm[m].m = (int32_t)i;   /* the property's index until the member rule is made */
        all_req &= r;
        m++;
    }
    dn_free(c->a, rq);
    danu_status st = DANU_OK;
    sb inl = { 0 };   /* all required (or none left): the members in one sequence */
    size_t pl = c->plen;
    path_push(c, "properties");
    size_t pl2 = c->plen;
    for (size_t i = 0; i < m && st == DANU_OK; i++) {
        const char *key = mm[i].key;
        const dn_json *ps = &props->items[mm[i].m];
        /* M = key ":" V */
        sb e = { 0 }, mem = { 0 };
        path_push(c, key);
        st = ser_string(c, &e, key, strlen(key));
        if (st == DANU_OK) st = put_lit(c, &mem, e.p, e.n);
        if (st == DANU_OK) st = put_ws(c, &mem);
        if (st == DANU_OK) st = sb_puts(c, &mem, " \":\"");
        if (st == DANU_OK) st = put_ws(c, &mem);
        if (st == DANU_OK) st = sb_puts(c, &mem, " ");
        e.n = 0;
        if (st == DANU_OK) st = gen(c, ps, 1, key, &e);
        if (st == DANU_OK) st = sb_putn(c, &mem, e.p, e.n);
        if (st == DANU_OK) st = put_ws(c, &mem);
        path_cut(c, pl2);
        sb_free(c, &e);
        if (st == DANU_OK && all_req) {
            if (i) st = sb_puts(c, &inl, " \",\"");
            if (st == DANU_OK && i) st = put_ws(c, &inl);
            if (st == DANU_OK) st = sb_puts(c, &inl, " ");
            if (st == DANU_OK) st = sb_putn(c, &inl, mem.p, mem.n);
        } else if (st == DANU_OK) {
            int32_t ri;
            st = new_rule(c, key, NULL, &ri);
            if (st == DANU_OK) {
                c->rules[ri].body = mem;
                memset(&mem, 0, sizeof mem);
                mm[i].m = ri;
            }
        }
        sb_free(c, &mem);
    }
    path_cut(c, pl);
    if (st == DANU_OK && all_req) {
        st = sb_puts(c, out, "\"{\"");
        if (st == DANU_OK) st = put_ws(c, out);
        if (st == DANU_OK) st = sb_putn(c, out, inl.p, inl.n);
        if (st == DANU_OK) st = sb_puts(c, out, " \"}\"");
    }
    if (st != DANU_OK || all_req) {
        sb_free(c, &inl);
        dn_free(c->a, mm);
        return st;
    }
    for (size_t i = m; i-- > 0;) mm[i].req_from = mm[i].req || (i + 1 < m && mm[i + 1].req_from);
    /* names: A_i for i >= 1, B_i where reachable */
    for (size_t i = 1; i < m && st == DANU_OK; i++) st = new_rule(c, mm[i].key, "-rest", &mm[i].a);
    for (size_t i = 0; i < m && st == DANU_OK; i++) {
        mm[i].b = -1;
        if (i == 0 || (mm[i - 1].b >= 0 && !mm[i - 1].req)) st = new_rule(c, mm[i].key, "-first", &mm[i].b);
    }
    for (size_t i = 0; i < m && st == DANU_OK; i++) {
        const char *mname = c->rules[mm[i].m].name;
        if (i >= 1) {
            sb *a = &c->rules[mm[i].a].body;
            st = sb_puts(c, a, "\",\"");
            if (st == DANU_OK) st = put_ws(c, a);
            if (st == DANU_OK) st = sb_printf(c, a, " %s", mname);
            if (st == DANU_OK) st = put_tail(c, a, mm, m, i + 1);
            if (st == DANU_OK && !mm[i].req && i + 1 < m) st = sb_printf(c, a, " | %s", c->rules[mm[i + 1].a].name);
        }
        if (st == DANU_OK && mm[i].b >= 0) {
            sb *b = &c->rules[mm[i].b].body;
            st = sb_puts(c, b, mname);
            if (st == DANU_OK) st = put_tail(c, b, mm, m, i + 1);
            if (st == DANU_OK && !mm[i].req && i + 1 < m) st = sb_printf(c, b, " | %s", c->rules[mm[i + 1].b].name);
        }
    }
    if (st == DANU_OK) st = sb_puts(c, out, "\"{\"");
    if (st == DANU_OK) st = put_ws(c, out);
    if (st == DANU_OK) st = sb_printf(c, out, " %s%s \"}\"", c->rules[mm[0].b].name, mm[0].req_from ? "" : "?");
    dn_free(c->a, mm);
    return st;
}

/* The first keyword of s whose kind is in mask (for messages). */
static const char *first_kw(const dn_json *s, unsigned mask)
{
    for (size_t i = 0; i < s->n; i++)
        if (keyword_kind(s->keys[i]) & mask) return s->keys[i];
    return "?";
}

static danu_status gen_combinator(ctx *c, const dn_json *s, unsigned kind, int consumed, const char *hint, sb *out)
{
    const char *kw = kind == K_ANYOF ? "anyOf" : kind == K_ONEOF ? "oneOf" : "allOf";
    const dn_json *l = dn_json_get(s, kw);
    if (l->type != DN_JSON_ARRAY || l->n == 0) return bad_kw(c, kw, "must be a non-empty array of schemas");
    if (kind == K_ALLOF && l->n > 1) return unsupported(c, kw, "with more than one schema");
    size_t pl = c->plen;
    path_push(c, kw);
    size_t pl2 = c->plen;
    danu_status st = l->n > 1 ? sb_puts(c, out, "(") : DANU_OK;
    /* oneOf is generated as anyOf: the output matches at least one */
    for (size_t i = 0; i < l->n && st == DANU_OK; i++) {
        if (i) st = sb_puts(c, out, " | ");
        path_push_idx(c, i);
        if (st == DANU_OK) st = gen(c, &l->items[i], consumed, hint, out);
        path_cut(c, pl2);
    }
    if (st == DANU_OK && l->n > 1) st = sb_puts(c, out, ")");
    path_cut(c, pl);
    return st;
}

static danu_status gen(ctx *c, const dn_json *s, int consumed, const char *hint, sb *out)
{
    if (s->type == DN_JSON_BOOL) {
        if (!s->boolean) return bad(c, "schema false (nothing can match)");
        c->need |= N_VALUE;
        return sb_puts(c, out, "value");
    }
    if (s->type != DN_JSON_OBJECT) return bad(c, "a schema must be an object or a boolean");
    unsigned kinds = 0;
    for (size_t i = 0; i < s->n; i++) {
        unsigned k = keyword_kind(s->keys[i]);
        if (!k) {
            if (strlen(s->keys[i]) > 64)
                return dn_seterr(DANU_ERR_UNSUPPORTED, "json schema: keyword \"%.64s...\" at %s is not supported",
                                 s->keys[i], where(c));
            return unsupported(c, s->keys[i], NULL);
        }
        kinds |= k;
    }
    unsigned active = kinds & ~(unsigned)(K_ANNOT | K_DEFS);
    unsigned comb = active & (K_REF | K_ANYOF | K_ONEOF | K_ALLOF);
    if (comb) {
        unsigned one = comb & (0u - comb);
        if (active != one) {
            const char *a = first_kw(s, one), *b = first_kw(s, active & ~one);
            return dn_seterr(DANU_ERR_UNSUPPORTED, "json schema: keyword \"%s\" next to \"%s\" at %s is not supported", b,
                             a, where(c));
        }
        if (one != K_REF) return gen_combinator(c, s, one, consumed, hint, out);
        int32_t r = 0;
        DN_TRY(ref_rule(c, dn_json_get(s, "$ref"), &r));
        if (!consumed) DN_TRY(add_edge(c, c->cur, r));
        return sb_puts(c, out, c->rules[r].name);
    }
    unsigned types = T_ALL;
    const dn_json *t = dn_json_get(s, "type");
    if (t) DN_TRY(parse_type(c, t, &types));
    if (active & (K_ENUM | K_CONST)) {
        unsigned other = active & ~(unsigned)(K_ENUM | K_CONST | K_TYPE);
        if ((active & K_ENUM) && (active & K_CONST)) other |= K_CONST;
        if (other) {
            const char *a = first_kw(s, active & (K_ENUM | K_CONST)), *b = first_kw(s, other);
            if (other == K_CONST) a = "enum", b = "const";
            return dn_seterr(DANU_ERR_UNSUPPORTED, "json schema: keyword \"%s\" next to \"%s\" at %s is not supported", b,
                             a, where(c));
        }
        return gen_enum(c, s, types, out);
    }
    if (!t) {
        /* no type: the types the keywords constrain, any value when none */
        types = 0;
        if (active & K_OBJ) types |= T_OBJ;
        if (active & K_ARR) types |= T_ARR;
        if (active & K_STR) types |= T_STR;
        if (active & K_NUM) types |= T_NUM;
        if (!types) {
            c->need |= N_VALUE;
            return sb_puts(c, out, "value");
        }
    }
    if ((types & T_NUM) && (active & K_NUM))
        return unsupported(c, first_kw(s, K_NUM), "bounds only for type integer");
    if (types & T_NUM) types &= ~(unsigned)T_INT;   /* number includes the integers */
    int n = 0;
    for (unsigned b = types; b; b &= b - 1) n++;
    if (n > 1) DN_TRY(sb_puts(c, out, "("));
    static const unsigned order[] = { T_OBJ, T_ARR, T_STR, T_INT, T_NUM, T_BOOL, T_NULL };
    int k = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (!(types & order[i])) continue;
        if (k++) DN_TRY(sb_puts(c, out, " | "));
        switch (order[i]) {
        case T_OBJ: DN_TRY(gen_object(c, s, hint, out)); break;
        case T_ARR: DN_TRY(gen_array(c, s, hint, out)); break;
        case T_STR: DN_TRY(gen_string(c, s, out)); break;
        case T_INT: DN_TRY(gen_integer(c, s, out)); break;
        case T_NUM: c->need |= N_NUMBER; DN_TRY(sb_puts(c, out, "number")); break;
        case T_BOOL: c->need |= N_BOOLEAN; DN_TRY(sb_puts(c, out, "boolean")); break;
        default: c->need |= N_NULL; DN_TRY(sb_puts(c, out, "null")); break;
        }
    }
    if (n > 1) DN_TRY(sb_puts(c, out, ")"));
    (void)consumed;
    return DANU_OK;
}

/* Left recursion: a cycle among the head edges (references reached before
 * any character). Kahn's algorithm over the rules, edges grouped by their
 * source. */
static danu_status check_cycles(ctx *c)
{
    if (!c->n_edges) return DANU_OK;
    size_t n = c->n_rules, ne = c->n_edges;
    int32_t *indeg = dn_calloc(c->a, n, sizeof *indeg);
    int32_t *stack = dn_malloc(c->a, n * sizeof *stack);
    size_t *off = dn_calloc(c->a, n + 1, sizeof *off);
    int32_t *to = dn_malloc(c->a, ne * sizeof *to);
    danu_status st = DANU_OK;
    if (!indeg || !stack || !off || !to) { st = nomem(); goto out; }
    for (size_t e = 0; e < ne; e++) {
        indeg[c->edges[e].to]++;
        off[c->edges[e].from + 1]++;
    }
    for (size_t i = 0; i < n; i++) off[i + 1] += off[i];
    for (size_t e = 0; e < ne; e++) to[off[c->edges[e].from]++] = c->edges[e].to;
    for (size_t i = n; i > 0; i--) off[i] = off[i - 1];   /* back to the starts */
    off[0] = 0;
    size_t top = 0, seen = 0;
    for (size_t i = 0; i < n; i++) if (!indeg[i]) stack[top++] = (int32_t)i;
    while (top) {
        int32_t r = stack[--top];
        seen++;
        for (size_t e = off[r]; e < off[r + 1]; e++)
            if (--indeg[to[e]] == 0) stack[top++] = to[e];
    }
    if (seen < n) {
        size_t i = 0;
        while (!indeg[i]) i++;
        st = dn_seterr(DANU_ERR_INVALID_ARG,
                       "json schema: $ref cycle through rule \"%s\" that consumes no input (left recursion)",
                       c->rules[i].name);
    }
out:
    dn_free(c->a, indeg);
    dn_free(c->a, stack);
    dn_free(c->a, off);
    dn_free(c->a, to);
    return st;
}

static const char *shared_body(unsigned bit, int spaces)
{
    switch (bit) {
    case N_VALUE: return "object | array | string | number | boolean | null";
    case N_OBJECT: return spaces ? "\"{\" ws ( member ( ws \",\" ws member )* ws )? \"}\""
                                 : "\"{\" ( member ( \",\" member )* )? \"}\"";
    case N_MEMBER: return spaces ? "string ws \":\" ws value" : "string \":\" value";
    case N_ARRAY: return spaces ? "\"[\" ws ( value ( ws \",\" ws value )* ws )? \"]\""
                                : "\"[\" ( value ( \",\" value )* )? \"]\"";
    case N_STRING: return "\"\\\"\" char* \"\\\"\"";
    /* one character: \u escapes are one code point each (a surrogate pair
     * together, a lone surrogate never), so lengths count code points */
    case N_CHAR: return "[^\"\\\\\\x00-\\x1F\\x7F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | "
                        "[dD] [0-7] [0-9a-fA-F]{2} | [dD] [89abAB] [0-9a-fA-F]{2} \"\\\\u\" [dD] [c-fC-F] [0-9a-fA-F]{2} ) )";
    /* exponents of two digits: every value stays a finite double */
    case N_NUMBER: return "\"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?";
    case N_INTEGER: return "\"0\" | \"-\"? [1-9] [0-9]{0,15}";
    case N_BOOLEAN: return "\"true\" | \"false\"";
    case N_NULL: return "\"null\"";
    default: return "( \" \" | \"\\n\" [ \\t]{0,32} )?";
    }
}

static void ctx_free(ctx *c)
{
    for (size_t i = 0; i < c->n_rules; i++) {
        dn_free(c->a, c->rules[i].name);
        sb_free(c, &c->rules[i].body);
    }
    for (size_t i = 0; i < c->n_targets; i++) dn_free(c->a, c->targets[i].ptr);
    dn_free(c->a, c->rules);
    dn_free(c->a, c->targets);
    dn_free(c->a, c->edges);
    dn_free(c->a, c->htab);
}

static danu_status convert(ctx *c, char **out, size_t *out_len)
{
    int32_t root;
    DN_TRY(new_rule(c, "root", NULL, &root));
    c->cur = root;
    sb body = { 0 };
    danu_status st = gen(c, c->root, 0, "root", &body);
    if (st != DANU_OK) { sb_free(c, &body); return st; }
    c->rules[root].body = body;
    for (size_t i = 0; i < c->n_targets; i++) {
        const char *ptr = c->targets[i].ptr;
        size_t n = strlen(ptr);
        if (n >= sizeof c->path) n = sizeof c->path - 1;
        memcpy(c->path, ptr, n);
        c->path[n] = 0;
        c->plen = n;
        c->cur = c->targets[i].rule;
        sb b = { 0 };
        st = gen(c, c->targets[i].node, 0, c->rules[c->cur].name, &b);
        if (st != DANU_OK) { sb_free(c, &b); return st; }
        c->rules[c->cur].body = b;
    }
    DN_TRY(check_cycles(c));
    /* closure of the shared rules */
    if (c->need & N_VALUE) c->need |= N_OBJECT | N_ARRAY | N_STRING | N_NUMBER | N_BOOLEAN | N_NULL;
    if (c->need & N_OBJECT) c->need |= N_MEMBER | N_STRING | N_VALUE;
    if (c->need & N_MEMBER) c->need |= N_STRING | N_VALUE | N_ARRAY | N_NUMBER | N_BOOLEAN | N_NULL;
    if (c->need & N_STRING) c->need |= N_CHAR;
    if (c->spaces && (c->need & (N_OBJECT | N_ARRAY))) c->need |= N_WS;
    sb t = { 0 };
    for (size_t i = 0; i < c->n_rules && st == DANU_OK; i++) {
        st = sb_printf(c, &t, "%s ::= ", c->rules[i].name);
        if (st == DANU_OK) st = sb_putn(c, &t, c->rules[i].body.p, c->rules[i].body.n);
        if (st == DANU_OK) st = sb_puts(c, &t, "\n");
    }
    for (size_t i = 0; i < sizeof shared_names / sizeof shared_names[0] && st == DANU_OK; i++) {
        if (!(c->need & shared_names[i].bit)) continue;
        st = sb_printf(c, &t, "%s ::= ", shared_names[i].name);
        if (st == DANU_OK) st = sb_puts(c, &t, shared_body(shared_names[i].bit, c->spaces));
        if (st == DANU_OK) st = sb_puts(c, &t, "\n");
    }
    if (st != DANU_OK) { sb_free(c, &t); return st; }
    *out = t.p;
    *out_len = t.n;
    return DANU_OK;
}

danu_status dn_json_schema_to_gbnf(const dn_alloc *a, const char *schema, size_t len, uint32_t flags, char **out,
                                   size_t *out_len)
{
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    DN_CHECK(a && (schema || !len) && out && out_len, DANU_ERR_INVALID_ARG, "json schema: NULL argument");
    DN_CHECK(!(flags & ~(uint32_t)DANU_SCHEMA_SPACES), DANU_ERR_INVALID_ARG, "json schema: unknown flag bits 0x%x",
             (unsigned)(flags & ~(uint32_t)DANU_SCHEMA_SPACES));
    size_t bad_at = dn_utf8_check((const uint8_t *)schema, len);
    DN_CHECK(bad_at == len, DANU_ERR_BAD_UTF8, "json schema: invalid UTF-8 at byte %zu", bad_at);
    dn_json *root = NULL;
    danu_status st = dn_json_parse(a, schema, len, "json schema", &root);
    if (st == DANU_ERR_FORMAT) return DANU_ERR_INVALID_ARG;   /* the parser's message stands */
    if (st != DANU_OK) return st;
    ctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    c.root = root;
    c.spaces = (flags & DANU_SCHEMA_SPACES) != 0;
    st = convert(&c, out, out_len);
    ctx_free(&c);
    dn_json_free(a, root);
    return st;
}
