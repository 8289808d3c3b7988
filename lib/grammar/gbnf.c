/* gbnf.c - GBNF text to a dn_grammar (grammar.h). Recursive descent over
 * the text; each rule's body is built as elements with END after every
 * alternative. Groups and repetitions become generated rules, so the result
 * has only classes, references and ENDs. After parsing, the grammar is
 * checked: every rule defined, none left-recursive, every rule able to end
 * (so any prefix the matcher accepts can be completed). */
#include <string.h>
#include <stdio.h>
#include "grammar/grammar.h"
#include "common/error.h"
#include "common/utf8.h"

typedef struct rbuf {          /* a rule under construction */
    char *name;
    dn_gelem *e;
    int32_t n, cap;
    int defined;
    size_t ref_at;             /* first reference (for "undefined rule" messages) */
} rbuf;

typedef struct parser {
    const dn_alloc *a;
    const char *s;
    size_t n, pos;
    rbuf *r;
    int32_t n_rules, cap_rules;
    uint32_t *rng;             /* class ranges (pairs) */
    int32_t n_rng, cap_rng;
    int32_t *cls_off, *cls_n;
    int32_t n_cls, cap_cls;
    size_t total;              /* elements so far, against DN_GRAMMAR_MAX_ELEMS */
    int depth;
    danu_status st;
} parser;

/* ---- errors with a position ---- */

static danu_status fail_at(parser *p, size_t at, const char *what)
{
    if (p->st != DANU_OK) return p->st;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < p->n; i++) {
        unsigned char c = (unsigned char)p->s[i];
        if (c == '\n') { line++; col = 1; }
        else if ((c & 0xc0) != 0x80) col++;
    }
    p->st = dn_seterr(DANU_ERR_INVALID_ARG, "grammar: line %zu, column %zu: %s", line, col, what);
    return p->st;
}

static danu_status nomem(parser *p)
{
    if (p->st == DANU_OK) p->st = dn_seterr(DANU_ERR_NOMEM, "grammar: out of memory");
    return p->st;
}

static int grow(parser *p, void **arr, int32_t *cap, int32_t need, size_t elem)
{
    if (need <= *cap) return 1;
    int32_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *na = dn_realloc(p->a, *arr, (size_t)nc * elem);
    if (!na) { nomem(p); return 0; }
    *arr = na;
    *cap = nc;
    return 1;
}

/* ---- rules and classes ---- */

static int32_t rule_new(parser *p, const char *name, size_t len)
{
    if (!grow(p, (void **)&p->r, &p->cap_rules, p->n_rules + 1, sizeof *p->r)) return -1;
    rbuf *r = &p->r[p->n_rules];
    memset(r, 0, sizeof *r);
    r->name = dn_strndup(p->a, name, len);
    if (!r->name) { nomem(p); return -1; }
    return p->n_rules++;
}

static int32_t rule_find(parser *p, const char *name, size_t len)
{
    for (int32_t i = 0; i < p->n_rules; i++)
        if (strlen(p->r[i].name) == len && !memcmp(p->r[i].name, name, len)) return i;
    return -1;
}

/* A generated rule: parent's name, "_", a counter. */
static int32_t rule_gen(parser *p, int32_t parent)
{
    char buf[96];
    int k = snprintf(buf, sizeof buf, "%.80s_%d", p->r[parent].name, (int)p->n_rules);
    int32_t id = rule_new(p, buf, (size_t)k);
    if (id >= 0) p->r[id].defined = 1;
    return id;
}

static int emit(parser *p, int32_t rule, int32_t kind, int32_t arg)
{
    if (p->total >= DN_GRAMMAR_MAX_ELEMS) {
        if (p->st == DANU_OK)
            p->st = dn_seterr(DANU_ERR_UNSUPPORTED, "grammar: more than %d elements after expanding repetitions",
                              DN_GRAMMAR_MAX_ELEMS);
        return 0;
    }
    rbuf *r = &p->r[rule];
    if (!grow(p, (void **)&r->e, &r->cap, r->n + 1, sizeof *r->e)) return 0;
    r->e[r->n].kind = kind;
    r->e[r->n].arg = arg;
    r->n++;
    p->total++;
    return 1;
}

/* Sort and merge ranges rng[from..n_rng) in place; returns the new count. */
static int32_t merge_ranges(uint32_t *r, int32_t n)
{
    for (int32_t i = 1; i < n; i++) {           /* insertion sort: classes are short */
        uint32_t lo = r[2 * i], hi = r[2 * i + 1];
        int32_t j = i;
        while (j > 0 && r[2 * (j - 1)] > lo) { r[2 * j] = r[2 * (j - 1)]; r[2 * j + 1] = r[2 * (j - 1) + 1]; j--; }
        r[2 * j] = lo;
        r[2 * j + 1] = hi;
    }
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (m > 0 && r[2 * i] <= r[2 * (m - 1) + 1] + 1) {
            if (r[2 * i + 1] > r[2 * (m - 1) + 1]) r[2 * (m - 1) + 1] = r[2 * i + 1];
        } else {
            r[2 * m] = r[2 * i];
            r[2 * m + 1] = r[2 * i + 1];
            m++;
        }
    }
    return m;
}

/* Finish the class whose ranges start at `from`: merge, negate, and reuse
 * an identical earlier class. Returns the class index or -1. */
static int32_t class_end(parser *p, int32_t from, int negate)
{
    if (!grow(p, (void **)&p->rng, &p->cap_rng, 2 * (from + 1), sizeof *p->rng)) return -1;   /* "[]" has none yet */
    int32_t n = merge_ranges(p->rng + 2 * from, p->n_rng - from);
    p->n_rng = from + n;
    if (negate) {   /* the complement has at most n + 1 ranges */
        uint32_t *out = dn_malloc(p->a, (size_t)(n + 1) * 2 * sizeof *out);
        if (!out || !grow(p, (void **)&p->rng, &p->cap_rng, 2 * (from + n + 1), sizeof *p->rng)) {
            dn_free(p->a, out);
            nomem(p);
            return -1;
        }
        const uint32_t *src = p->rng + 2 * from;
        uint32_t next = 0;
        int32_t m = 0;
        for (int32_t i = 0; i < n; i++) {
            if (src[2 * i] > next) { out[2 * m] = next; out[2 * m + 1] = src[2 * i] - 1; m++; }
            next = src[2 * i + 1] + 1;
        }
        if (next <= 0x10ffff) { out[2 * m] = next; out[2 * m + 1] = 0x10ffff; m++; }
        memcpy(p->rng + 2 * from, out, (size_t)m * 2 * sizeof *out);
        dn_free(p->a, out);
        n = m;
        p->n_rng = from + n;
    }
    if (n == 0) return -2;
    for (int32_t k = 0; k < p->n_cls; k++)
        if (p->cls_n[k] == n && !memcmp(p->rng + 2 * p->cls_off[k], p->rng + 2 * from, (size_t)n * 2 * sizeof(uint32_t))) {
            p->n_rng = from;
            return k;
        }
    if (!grow(p, (void **)&p->cls_off, &p->cap_cls, p->n_cls + 1, sizeof *p->cls_off)) return -1;
    int32_t cap = p->cap_cls;   /* cls_n grows in step with cls_off */
    int32_t *nn = dn_realloc(p->a, p->cls_n, (size_t)cap * sizeof *nn);
    if (!nn) { nomem(p); return -1; }
    p->cls_n = nn;
    p->cls_off[p->n_cls] = from;
    p->cls_n[p->n_cls] = n;
    return p->n_cls++;
}

static int add_range(parser *p, uint32_t lo, uint32_t hi)
{
    if (!grow(p, (void **)&p->rng, &p->cap_rng, 2 * (p->n_rng + 1), sizeof *p->rng)) return 0;
    p->rng[2 * p->n_rng] = lo;
    p->rng[2 * p->n_rng + 1] = hi;
    p->n_rng++;
    return 1;
}

static int32_t class_of_cp(parser *p, uint32_t cp)
{
    int32_t from = p->n_rng;
    if (!add_range(p, cp, cp)) return -1;
    return class_end(p, from, 0);
}

/* ---- lexing ---- */

static int at(const parser *p, size_t k) { return p->pos + k < p->n ? (unsigned char)p->s[p->pos + k] : -1; }

static int word_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Spaces, tabs and comments; newlines too when nl. */
static void skip_space(parser *p, int nl)
{
    for (;;) {
        int c = at(p, 0);
        if (c == ' ' || c == '\t') p->pos++;
        else if (c == '#') { while (at(p, 0) >= 0 && at(p, 0) != '\n' && at(p, 0) != '\r') p->pos++; }
        else if (nl && (c == '\n' || c == '\r')) p->pos++;
        else return;
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One character of a literal or class (escapes decoded) into *cp. */
static int read_char(parser *p, uint32_t *cp)
{
    size_t start = p->pos;
    int c = at(p, 0);
    if (c < 0) { fail_at(p, start, "unexpected end of grammar"); return 0; }
    if (c == '\\') {
        int e = at(p, 1);
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            for (int i = 0; i < digits; i++) {
                int h = hexval(at(p, 2 + (size_t)i));
                if (h < 0) { fail_at(p, start, "bad hex escape"); return 0; }
                v = v * 16 + (uint32_t)h;
            }
            if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) { fail_at(p, start, "escape is not a Unicode scalar value"); return 0; }
            p->pos += 2 + (size_t)digits;
            *cp = v;
            return 1;
        }
        switch (e) {
        case 'n': *cp = '\n'; break;
        case 'r': *cp = '\r'; break;
        case 't': *cp = '\t'; break;
        case '\\': case '"': case '[': case ']': case '/': case '-': case '^': *cp = (uint32_t)e; break;
        default: fail_at(p, start, "unknown escape"); return 0;
        }
        p->pos += 2;
        return 1;
    }
    int len = dn_utf8_char((const uint8_t *)p->s + p->pos, p->n - p->pos);
    if (len <= 0) { fail_at(p, start, "invalid UTF-8"); return 0; }
    const uint8_t *b = (const uint8_t *)p->s + p->pos;
    uint32_t v = len == 1 ? b[0] : len == 2 ? (b[0] & 0x1fu) : len == 3 ? (b[0] & 0x0fu) : (b[0] & 0x07u);
    for (int i = 1; i < len; i++) v = (v << 6) | (b[i] & 0x3fu);
    p->pos += (size_t)len;
    *cp = v;
    return 1;
}

static int read_uint(parser *p, uint32_t *v)
{
    size_t start = p->pos;
    uint64_t x = 0;
    int any = 0;
    while (at(p, 0) >= '0' && at(p, 0) <= '9') {
        x = x * 10 + (uint64_t)(at(p, 0) - '0');
        if (x > DN_GRAMMAR_MAX_ELEMS) { fail_at(p, start, "repetition count too large"); return 0; }
        p->pos++;
        any = 1;
    }
    if (!any) { fail_at(p, start, "expected a number"); return 0; }
    *v = (uint32_t)x;
    return 1;
}

/* ---- parsing ---- */

static int parse_alternates(parser *p, int32_t rule, int nested);

/* Wrap body[from..) of rule into a new rule; leave one REF in its place. */
static int32_t wrap(parser *p, int32_t rule, int32_t from)
{
    int32_t g = rule_gen(p, rule);
    if (g < 0) return -1;
    rbuf *src = &p->r[rule];
    for (int32_t i = from; i < src->n; i++) {
        dn_gelem e = p->r[rule].e[i];
        if (!emit(p, g, e.kind, e.arg)) return -1;
        src = &p->r[rule];
    }
    if (!emit(p, g, DN_G_END, 0)) return -1;
    p->total -= (size_t)(p->r[rule].n - from);
    p->r[rule].n = from;
    return g;
}

/* Apply {min, max} (max < 0: unbounded) to the item body[from..) of rule. */
static int repeat(parser *p, int32_t rule, int32_t from, uint32_t min, int64_t max)
{
    if (p->r[rule].n - from != 1) {      /* a multi-element item becomes one reference */
        int32_t g = wrap(p, rule, from);
        if (g < 0 || !emit(p, rule, DN_G_REF, g)) return 0;
    }
    dn_gelem item = p->r[rule].e[from];
    p->r[rule].n = from;                  /* re-emitted below */
    p->total--;
    for (uint32_t i = 0; i < min; i++)
        if (!emit(p, rule, item.kind, item.arg)) return 0;
    if (max < 0) {                        /* star ::= item star | "" */
        int32_t s = rule_gen(p, rule);
        if (s < 0) return 0;
        if (!emit(p, s, item.kind, item.arg) || !emit(p, s, DN_G_REF, s) || !emit(p, s, DN_G_END, 0) ||
            !emit(p, s, DN_G_END, 0) || !emit(p, rule, DN_G_REF, s)) return 0;
        return 1;
    }
    /* opt_k ::= item opt_(k-1) | "", opt_1 ::= item | "" */
    int32_t prev = -1;
    for (int64_t k = 1; k <= max - (int64_t)min; k++) {
        int32_t o = rule_gen(p, rule);
        if (o < 0) return 0;
        if (!emit(p, o, item.kind, item.arg)) return 0;
        if (prev >= 0 && !emit(p, o, DN_G_REF, prev)) return 0;
        if (!emit(p, o, DN_G_END, 0) || !emit(p, o, DN_G_END, 0)) return 0;
        prev = o;
    }
    if (prev >= 0 && !emit(p, rule, DN_G_REF, prev)) return 0;
    return 1;
}

static int parse_class(parser *p, int32_t rule)
{
    size_t start = p->pos;
    p->pos++;   /* [ */
    int negate = at(p, 0) == '^';
    if (negate) p->pos++;
    int32_t from = p->n_rng;
    while (at(p, 0) != ']') {
        if (at(p, 0) < 0) return fail_at(p, start, "unterminated character class"), 0;
        uint32_t lo, hi;
        if (!read_char(p, &lo)) return 0;
        hi = lo;
        if (at(p, 0) == '-' && at(p, 1) != ']' && at(p, 1) >= 0) {
            p->pos++;
            if (!read_char(p, &hi)) return 0;
            if (hi < lo) return fail_at(p, start, "character range is reversed"), 0;
        }
        if (!add_range(p, lo, hi)) return 0;
    }
    p->pos++;   /* ] */
    int32_t k = class_end(p, from, negate);
    if (k == -2) return fail_at(p, start, "character class matches nothing"), 0;
    return k >= 0 && emit(p, rule, DN_G_CLASS, k);
}

static int parse_sequence(parser *p, int32_t rule, int nested)
{
    int32_t last = -1;   /* start of the last item, for postfix operators */
    for (;;) {
        skip_space(p, nested);
        int c = at(p, 0);
        size_t start = p->pos;
        if (c < 0 || c == '|' || c == ')' || c == '\n' || c == '\r') return 1;
        if (c == '"') {
            p->pos++;
            last = p->r[rule].n;
            while (at(p, 0) != '"') {
                if (at(p, 0) < 0 || at(p, 0) == '\n') return fail_at(p, start, "unterminated string literal"), 0;
                uint32_t cp;
                if (!read_char(p, &cp)) return 0;
                int32_t k = class_of_cp(p, cp);
                if (k < 0 || !emit(p, rule, DN_G_CLASS, k)) return 0;
            }
            p->pos++;
            if (p->r[rule].n == last) last = -1;   /* "" is no item to repeat */
        } else if (c == '[') {
            last = p->r[rule].n;
            if (!parse_class(p, rule)) return 0;
        } else if (c == '.') {
            p->pos++;
            last = p->r[rule].n;
            int32_t from = p->n_rng;
            if (!add_range(p, 0, 0x10ffff)) return 0;
            int32_t k = class_end(p, from, 0);
            if (k < 0 || !emit(p, rule, DN_G_CLASS, k)) return 0;
        } else if (c == '(') {
            p->pos++;
            if (++p->depth > 200) return fail_at(p, start, "groups nested too deeply"), 0;
            int32_t g = rule_gen(p, rule);
            if (g < 0 || !parse_alternates(p, g, 1)) return 0;
            skip_space(p, 1);
            if (at(p, 0) != ')') return fail_at(p, start, "expected ')'"), 0;
            p->pos++;
            p->depth--;
            last = p->r[rule].n;
            if (!emit(p, rule, DN_G_REF, g)) return 0;
        } else if (word_char(c)) {
            size_t b = p->pos;
            while (word_char(at(p, 0))) p->pos++;
            size_t e = p->pos;
            /* a name followed by ::= starts the next rule: the sequence ended
             * (only reached when a newline was skipped inside a group) */
            size_t save = p->pos;
            skip_space(p, 0);
            if (at(p, 0) == ':' && at(p, 1) == ':' && at(p, 2) == '=')
                return fail_at(p, b, "a new rule starts inside a group (missing ')'?)"), 0;
            p->pos = save;
            int32_t id = rule_find(p, p->s + b, e - b);
            if (id < 0) {
                id = rule_new(p, p->s + b, e - b);
                if (id < 0) return 0;
                p->r[id].ref_at = b;
            }
            last = p->r[rule].n;
            if (!emit(p, rule, DN_G_REF, id)) return 0;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last < 0) return fail_at(p, start, "repetition operator without an item before it"), 0;
            uint32_t min = 0;
            int64_t max = -1;
            p->pos++;
            if (c == '+') min = 1;
            else if (c == '?') max = 1;
            else if (c == '{') {
                skip_space(p, 0);
                if (at(p, 0) == ',') min = 0;
                else if (!read_uint(p, &min)) return 0;
                skip_space(p, 0);
                if (at(p, 0) == ',') {
                    p->pos++;
                    skip_space(p, 0);
                    if (at(p, 0) != '}') {
                        uint32_t mx;
                        if (!read_uint(p, &mx)) return 0;
                        if (mx < min) return fail_at(p, start, "repetition maximum below minimum"), 0;
                        max = mx;
                    }
                } else max = min;
                skip_space(p, 0);
                if (at(p, 0) != '}') return fail_at(p, start, "expected '}'"), 0;
                p->pos++;
            }
            if (!repeat(p, rule, last, min, max)) return 0;
            last = -1;   /* "x*?" is refused: wrap the item in ( ) to repeat a repetition */
        } else if (c == '<') {
            return fail_at(p, start, "token references (<...>) are not supported"), 0;
        } else {
            return fail_at(p, start, "unexpected character"), 0;
        }
        if (p->st != DANU_OK) return 0;
    }
}

static int parse_alternates(parser *p, int32_t rule, int nested)
{
    for (;;) {
        if (!parse_sequence(p, rule, nested) || !emit(p, rule, DN_G_END, 0)) return 0;
        if (at(p, 0) != '|') return 1;
        p->pos++;
        skip_space(p, 1);
    }
}

static int parse_rule(parser *p)
{
    size_t b = p->pos;
    while (word_char(at(p, 0))) p->pos++;
    if (p->pos == b) return fail_at(p, b, "expected a rule name"), 0;
    size_t e = p->pos;
    skip_space(p, 0);
    if (!(at(p, 0) == ':' && at(p, 1) == ':' && at(p, 2) == '=')) return fail_at(p, p->pos, "expected '::='"), 0;
    p->pos += 3;
    skip_space(p, 1);
    int32_t id = rule_find(p, p->s + b, e - b);
    if (id >= 0 && p->r[id].defined) return fail_at(p, b, "rule defined twice"), 0;
    if (id < 0 && (id = rule_new(p, p->s + b, e - b)) < 0) return 0;
    p->r[id].defined = 1;
    if (!parse_alternates(p, id, 0)) return 0;
    int c = at(p, 0);
    if (c == ')') return fail_at(p, p->pos, "unmatched ')'"), 0;
    if (c >= 0 && c != '\n' && c != '\r') return fail_at(p, p->pos, "expected a newline or the end"), 0;
    skip_space(p, 1);
    return 1;
}

/* ---- checks on the whole grammar ---- */

/* Rules that can match the empty string, and rules that can end at all. */
static void fixpoints(const parser *p, uint8_t *nullable, uint8_t *ends)
{
    memset(nullable, 0, (size_t)p->n_rules);
    memset(ends, 0, (size_t)p->n_rules);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t r = 0; r < p->n_rules; r++) {
            const rbuf *b = &p->r[r];
            int alt_null = 1, alt_end = 1;
            for (int32_t i = 0; i < b->n; i++) {
                dn_gelem x = b->e[i];
                if (x.kind == DN_G_END) {
                    if (alt_null && !nullable[r]) nullable[r] = 1, changed = 1;
                    if (alt_end && !ends[r]) ends[r] = 1, changed = 1;
                    alt_null = alt_end = 1;
                } else if (x.kind == DN_G_CLASS) alt_null = 0;
                else { alt_null &= nullable[x.arg]; alt_end &= ends[x.arg]; }
            }
        }
    }
}

/* Depth-first search for a rule reachable from itself through leftmost
 * references (after nullable prefixes). mark: 0 new, 1 on the path, 2 done. */
static int32_t left_cycle(const parser *p, const uint8_t *nullable, uint8_t *mark, int32_t r, int depth)
{
    if (mark[r] == 1) return r;
    if (mark[r] == 2) return -1;
    if (depth > DN_GRAMMAR_MAX_DEPTH) return -2;
    mark[r] = 1;
    const rbuf *b = &p->r[r];
    int lead = 1;   /* still in the alternative's nullable prefix */
    for (int32_t i = 0; i < b->n; i++) {
        dn_gelem x = b->e[i];
        if (x.kind == DN_G_END) { lead = 1; continue; }
        if (!lead) continue;
        if (x.kind == DN_G_CLASS) { lead = 0; continue; }
        int32_t c = left_cycle(p, nullable, mark, x.arg, depth + 1);
        if (c != -1) return c;
        lead = nullable[x.arg];
    }
    mark[r] = 2;
    return -1;
}

/* The user's name for a rule (a generated one names where it came from). */
static const char *user_name(const parser *p, int32_t r) { return p->r[r].name; }

static danu_status check(parser *p)
{
    for (int32_t r = 0; r < p->n_rules; r++)
        if (!p->r[r].defined) {
            char msg[160];
            snprintf(msg, sizeof msg, "undefined rule '%.100s'", p->r[r].name);
            return fail_at(p, p->r[r].ref_at, msg);
        }
    uint8_t *tmp = dn_malloc(p->a, 3 * (size_t)p->n_rules);
    if (!tmp) return nomem(p);
    uint8_t *nullable = tmp, *ends = tmp + p->n_rules, *mark = tmp + 2 * p->n_rules;
    fixpoints(p, nullable, ends);
    danu_status s = DANU_OK;
    for (int32_t r = 0; r < p->n_rules && s == DANU_OK; r++)
        if (!ends[r])
            s = dn_seterr(DANU_ERR_INVALID_ARG, "grammar: rule '%.100s' can never end (every alternative recurses)",
                          user_name(p, r));
    memset(mark, 0, (size_t)p->n_rules);
    for (int32_t r = 0; r < p->n_rules && s == DANU_OK; r++) {
        int32_t c = left_cycle(p, nullable, mark, r, 0);
        if (c == -2)
            s = dn_seterr(DANU_ERR_UNSUPPORTED, "grammar: rules nest more than %d deep without consuming input",
                          DN_GRAMMAR_MAX_DEPTH);
        else if (c >= 0)
            s = dn_seterr(DANU_ERR_INVALID_ARG,
                          "grammar: rule '%.100s' is left-recursive (it can reach itself without consuming input)",
                          user_name(p, c));
    }
    dn_free(p->a, tmp);
    return s;
}

/* ---- the flat result ---- */

static danu_status flatten(parser *p, int32_t root, dn_grammar **out)
{
    dn_grammar *g = dn_calloc(p->a, 1, sizeof *g);
    if (!g) return nomem(p);
    g->a = p->a;
    g->n_rules = p->n_rules;
    g->root = root;
    size_t ne = 0, na = 0;
    for (int32_t r = 0; r < p->n_rules; r++) {
        ne += (size_t)p->r[r].n;
        for (int32_t i = 0; i < p->r[r].n; i++) na += p->r[r].e[i].kind == DN_G_END;
    }
    g->n_elems = (int32_t)ne;
    g->n_alts = (int32_t)na;
    g->n_classes = p->n_cls;
    g->names = dn_calloc(p->a, (size_t)p->n_rules, sizeof *g->names);
    g->rule_alt = dn_malloc(p->a, (size_t)p->n_rules * sizeof *g->rule_alt);
    g->rule_nalt = dn_malloc(p->a, (size_t)p->n_rules * sizeof *g->rule_nalt);
    g->alts = dn_malloc(p->a, na * sizeof *g->alts);
    g->elems = dn_malloc(p->a, ne * sizeof *g->elems);
    g->class_off = dn_malloc(p->a, (size_t)p->n_cls * sizeof *g->class_off);
    g->class_n = dn_malloc(p->a, (size_t)p->n_cls * sizeof *g->class_n);
    g->class_ascii = dn_calloc(p->a, (size_t)p->n_cls * 4, sizeof *g->class_ascii);
    g->ranges = dn_malloc(p->a, (size_t)p->n_rng * 2 * sizeof *g->ranges);
    if (!g->names || !g->rule_alt || !g->rule_nalt || !g->alts || !g->elems || !g->class_off || !g->class_n ||
        !g->class_ascii || !g->ranges) {
        dn_grammar_free(g);
        return nomem(p);
    }
    int32_t e = 0, a = 0;
    for (int32_t r = 0; r < p->n_rules; r++) {
        g->names[r] = p->r[r].name;   /* moved */
        p->r[r].name = NULL;
        g->rule_alt[r] = a;
        int start = 1;
        for (int32_t i = 0; i < p->r[r].n; i++) {
            if (start) g->alts[a++] = e;
            g->elems[e++] = p->r[r].e[i];
            start = p->r[r].e[i].kind == DN_G_END;
        }
        g->rule_nalt[r] = a - g->rule_alt[r];
    }
    if (p->n_cls) {
        memcpy(g->class_off, p->cls_off, (size_t)p->n_cls * sizeof *g->class_off);
        memcpy(g->class_n, p->cls_n, (size_t)p->n_cls * sizeof *g->class_n);
        memcpy(g->ranges, p->rng, (size_t)p->n_rng * 2 * sizeof *g->ranges);
    }
    for (int32_t k = 0; k < p->n_cls; k++)
        for (int32_t i = 0; i < g->class_n[k]; i++) {
            uint32_t lo = g->ranges[2 * (g->class_off[k] + i)], hi = g->ranges[2 * (g->class_off[k] + i) + 1];
            for (uint32_t c = lo; c <= hi && c < 128; c++) g->class_ascii[4 * k + c / 32] |= 1u << (c % 32);
        }
    *out = g;
    return DANU_OK;
}

static void parser_free(parser *p)
{
    for (int32_t r = 0; r < p->n_rules; r++) {
        dn_free(p->a, p->r[r].name);
        dn_free(p->a, p->r[r].e);
    }
    dn_free(p->a, p->r);
    dn_free(p->a, p->rng);
    dn_free(p->a, p->cls_off);
    dn_free(p->a, p->cls_n);
}

danu_status dn_gbnf_parse(const dn_alloc *a, const char *text, size_t len, const char *root, dn_grammar **out)
{
    DN_CHECK(out, DANU_ERR_INVALID_ARG, "grammar: out is NULL");
    *out = NULL;
    DN_CHECK(a && (text || len == 0), DANU_ERR_INVALID_ARG, "grammar: text is NULL");
    size_t bad = dn_utf8_check((const uint8_t *)text, len);
    DN_CHECK(bad == len, DANU_ERR_BAD_UTF8, "grammar: invalid UTF-8 at byte %zu", bad);
    if (!root) root = "root";
    parser p;
    memset(&p, 0, sizeof p);
    p.a = a;
    p.s = text;
    p.n = len;
    p.st = DANU_OK;
    skip_space(&p, 1);
    while (p.pos < p.n && p.st == DANU_OK)
        if (!parse_rule(&p) && p.st == DANU_OK) nomem(&p);
    danu_status s = p.st;
    int32_t r = -1;
    if (s == DANU_OK) {
        r = rule_find(&p, root, strlen(root));
        if (r < 0 || !p.r[r].defined)
            s = dn_seterr(DANU_ERR_INVALID_ARG, "grammar: no rule named '%.100s' (the start rule)", root);
    }
    if (s == DANU_OK) s = check(&p);
    if (s == DANU_OK) s = flatten(&p, r, out);
    parser_free(&p);
    return s;
}

void dn_grammar_free(dn_grammar *g)
{
    if (!g) return;
    const dn_alloc *a = g->a;
    if (g->names)
        for (int32_t r = 0; r < g->n_rules; r++) dn_free(a, g->names[r]);
    dn_free(a, g->names);
    dn_free(a, g->rule_alt);
    dn_free(a, g->rule_nalt);
    dn_free(a, g->alts);
    dn_free(a, g->elems);
    dn_free(a, g->class_off);
    dn_free(a, g->class_n);
    dn_free(a, g->class_ascii);
    dn_free(a, g->ranges);
    dn_free(a, g);
}

int dn_grammar_class_has(const dn_grammar *g, int32_t k, uint32_t cp)
{
    if (cp < 128) return (g->class_ascii[4 * k + cp / 32] >> (cp % 32)) & 1;
    const uint32_t *r = g->ranges + 2 * g->class_off[k];
    int32_t lo = 0, hi = g->class_n[k] - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) / 2;
        if (cp < r[2 * mid]) hi = mid - 1;
        else if (cp > r[2 * mid + 1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

size_t dn_quote(char *out, const char *t, size_t n, int json)
{
    size_t w = 0;
#define PUT(str, len) do { if (out) memcpy(out + w, (str), (len)); w += (len); } while (0)
    PUT("\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)t[i];
        char e[8];
        const char *esc = NULL;
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': if (json) esc = "\\b"; break;
        case '\f': if (json) esc = "\\f"; break;
        default: break;
        }
        if (!esc && (ch < 0x20 || (!json && ch == 0x7f))) {
            snprintf(e, sizeof e, json ? "\\u%04x" : "\\x%02X", ch);
            esc = e;
        }
        if (esc) PUT(esc, strlen(esc));
        else PUT(&t[i], 1);
    }
    PUT("\"", 1);
#undef PUT
    return w;
}
