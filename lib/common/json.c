/* json.c - strict RFC 8259 parser into a dn_json tree. Input is untrusted
 * (config files, safetensors headers): every read is bounds-checked, depth
 * and size are capped, and a failure frees everything built so far. */
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common/json.h"
#include "common/error.h"
#include "common/utf8.h"

#define JSON_MAX_DEPTH 64
#define JSON_MAX_SIZE ((size_t)64 << 20)

typedef struct parser {
    const dn_alloc *a;
    const uint8_t *s;
    size_t len;
    size_t pos;
    const char *what;
} parser;

static danu_status fail_at(const parser *p, size_t at, const char *msg)
{
    return dn_seterr(DANU_ERR_FORMAT, "%s: invalid JSON at byte %zu: %s", p->what, at, msg);
}

static danu_status fail_char(const parser *p, size_t at, const char *expected)
{
    if (at >= p->len) return dn_seterr(DANU_ERR_FORMAT, "%s: invalid JSON at byte %zu: unexpected end of input, expected %s",
                                       p->what, at, expected);
    uint8_t c = p->s[at];
    if (c >= 0x20 && c < 0x7f)
        return dn_seterr(DANU_ERR_FORMAT, "%s: invalid JSON at byte %zu: unexpected '%c', expected %s", p->what, at, c, expected);
    return dn_seterr(DANU_ERR_FORMAT, "%s: invalid JSON at byte %zu: unexpected byte 0x%02x, expected %s", p->what, at, c, expected);
}

static danu_status nomem(const parser *p)
{
    return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory while parsing JSON at byte %zu", p->what, p->pos);
}

static void free_contents(const dn_alloc *a, dn_json *v)
{
    if (v->type == DN_JSON_STRING) dn_free(a, v->str);
    if (v->type == DN_JSON_ARRAY || v->type == DN_JSON_OBJECT) {
        for (size_t i = 0; i < v->n; i++) {
            free_contents(a, &v->items[i]);
            if (v->keys) dn_free(a, v->keys[i]);
        }
        dn_free(a, v->items);
        dn_free(a, v->keys);
    }
    v->str = NULL;
    v->items = NULL;
    v->keys = NULL;
    v->n = 0;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        uint8_t c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hex4(const uint8_t *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        uint8_t c = s[k];
        uint32_t d;
        if (c >= '0' && c <= '9') d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (uint32_t)(c - 'A' + 10);
        else return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xc0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | cp >> 12); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | cp >> 18); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* String at p->pos (the opening quote). Decoded text never exceeds the
 * escaped span, so one allocation of that size suffices. */
static danu_status parse_string(parser *p, char **out, size_t *out_len)
{
    size_t open = p->pos, start = open + 1, end = start;
    while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len) return fail_at(p, open, "unterminated string");
    uint8_t *buf = dn_malloc(p->a, end - start + 1);
    if (!buf) return nomem(p);
    size_t o = 0, i = start;
    danu_status st = DANU_OK;
    while (i < end) {
        uint8_t c = p->s[i];
        if (c < 0x20) { st = fail_at(p, i, "control character in string (must be escaped)"); break; }
        if (c >= 0x80) {
            int k = dn_utf8_char(p->s + i, end - i);
            if (k <= 0) { st = fail_at(p, i, "invalid UTF-8 in string"); break; }
            memcpy(buf + o, p->s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
            continue;
        }
        if (c != '\\') { buf[o++] = c; i++; continue; }
        uint8_t e = p->s[i + 1]; /* in bounds: the scan above kept escapes whole */
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            buf[o++] = (uint8_t)decoded[simple - "\"\\/bfnrt"];
            i += 2;
            continue;
        }
        if (e != 'u') { st = fail_at(p, i, "invalid escape sequence"); break; }
        uint32_t cp, lo;
        if (end - i < 6 || !hex4(p->s + i + 2, &cp)) { st = fail_at(p, i, "\\u needs four hex digits"); break; }
        if (cp >= 0xdc00 && cp <= 0xdfff) { st = fail_at(p, i, "unpaired low surrogate"); break; }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (end - i < 12 || p->s[i + 6] != '\\' || p->s[i + 7] != 'u' || !hex4(p->s + i + 8, &lo) ||
                lo < 0xdc00 || lo > 0xdfff) {
                st = fail_at(p, i, "high surrogate not followed by a low surrogate");
                break;
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
        }
        i += 6;
        o += put_utf8(buf + o, cp);
    }
    if (st != DANU_OK) { dn_free(p->a, buf); return st; }
    buf[o] = 0;
    *out = (char *)buf;
    *out_len = o;
    p->pos = end + 1;
    return DANU_OK;
}

/* Decimal text -> double. Exact fast path when the digits fit in 2^53 and
 * the power of ten is exact (one IEEE operation rounds correctly); strtod
 * otherwise, with the locale's decimal point swapped in. */
static danu_status to_double(parser *p, size_t start, size_t end, double *out)
{
    const uint8_t *s = p->s;
    size_t i = start;
    int neg = 0;
    if (s[i] == '-') { neg = 1; i++; }
    uint64_t m = 0;
    int digits = 0, exact = 1;
    int64_t e10 = 0;
    for (; i < end && s[i] >= '0' && s[i] <= '9'; i++) {
        if (m == 0 && s[i] == '0') continue;
        if (++digits > 19) { exact = 0; continue; }
        m = m * 10 + (uint64_t)(s[i] - '0');
    }
    if (digits > 19) e10 += digits - 19;
    if (i < end && s[i] == '.') {
        for (i++; i < end && s[i] >= '0' && s[i] <= '9'; i++) {
            if (m == 0 && s[i] == '0') { e10--; continue; }
            if (++digits > 19) { exact = 0; continue; }
            m = m * 10 + (uint64_t)(s[i] - '0');
            e10--;
        }
    }
    if (i < end && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0;
        if (s[i] == '+' || s[i] == '-') eneg = s[i++] == '-';
        int64_t x = 0;
        for (; i < end; i++) if (x < 100000) x = x * 10 + (s[i] - '0');
        e10 += eneg ? -x : x;
    }
    static const double pow10[23] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
    if (exact && m <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
        double d = (double)m;
        d = e10 >= 0 ? d * pow10[e10] : d / pow10[-e10];
        *out = neg ? -d : d;
        return DANU_OK;
    }
    if (m == 0 && exact) { *out = neg ? -0.0 : 0.0; return DANU_OK; }
    size_t n = end - start;
    char small[80];
    char *buf = n < sizeof small ? small : dn_malloc(p->a, n + 1);
    if (!buf) return nomem(p);
    memcpy(buf, s + start, n);
    buf[n] = 0;
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && !dp[1]) {
        char *dot = strchr(buf, '.');
        if (dot) *dot = dp[0];
    }
    double d = strtod(buf, NULL);
    if (buf != small) dn_free(p->a, buf);
    if (!isfinite(d)) return fail_at(p, start, "number out of the range of a double");
    *out = d;
    return DANU_OK;
}

static danu_status parse_number(parser *p, dn_json *v)
{
    const uint8_t *s = p->s;
    size_t start = p->pos, i = start;
    int neg = 0, is_int = 1;
    if (i < p->len && s[i] == '-') { neg = 1; i++; }
    if (i >= p->len || s[i] < '0' || s[i] > '9') return fail_char(p, i, "a digit");
    if (s[i] == '0') {
        i++;
        if (i < p->len && s[i] >= '0' && s[i] <= '9') return fail_at(p, start, "leading zero in number");
    } else {
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t int_end = i;
    if (i < p->len && s[i] == '.') {
        is_int = 0;
        i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') return fail_char(p, i, "a digit after '.'");
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        is_int = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || s[i] < '0' || s[i] > '9') return fail_char(p, i, "a digit in the exponent");
        while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
    }
    p->pos = i;
    v->type = DN_JSON_NUMBER;
    if (is_int) {
        /* magnitude up to 2^63 for negatives, 2^63-1 for positives */
        uint64_t mag = 0, limit = neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1;
        int fits = 1;
        for (size_t k = start + (size_t)neg; k < int_end; k++) {
            uint64_t d = (uint64_t)(s[k] - '0');
            if (mag > (limit - d) / 10) { fits = 0; break; }
            mag = mag * 10 + d;
        }
        if (fits) {
            v->is_integer = 1;
            v->integer = neg ? (int64_t)(0 - mag) : (int64_t)mag;
            v->number = (double)v->integer;
            if (neg && mag == 0) v->number = -0.0;
            return DANU_OK;
        }
    }
    return to_double(p, start, i, &v->number);
}

static danu_status parse_value(parser *p, dn_json *v, int depth);

static danu_status parse_array(parser *p, dn_json *v, int depth)
{
    v->type = DN_JSON_ARRAY;
    if (depth > JSON_MAX_DEPTH) return fail_at(p, p->pos, "nesting deeper than 64 levels");
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; return DANU_OK; }
    size_t cap = 0;
    for (;;) {
        if (v->n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            dn_json *items = dn_realloc(p->a, v->items, ncap * sizeof *items);
            if (!items) return nomem(p);
            v->items = items;
            cap = ncap;
        }
        dn_json *c = &v->items[v->n++];
        DN_TRY(parse_value(p, c, depth));
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; return DANU_OK; }
        return fail_char(p, p->pos, "',' or ']'");
    }
}

typedef struct key_ref { const char *key; size_t idx; } key_ref;

static int key_ref_cmp(const void *x, const void *y)
{
    const key_ref *a = x, *b = y;
    int c = strcmp(a->key, b->key);
    if (c) return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Duplicate keys: the last one wins, so earlier ones are dropped here and
 * lookups can stop at the first match. */
static danu_status dedupe_keys(parser *p, dn_json *v)
{
    size_t n = v->n, removed = 0;
    if (n < 2) return DANU_OK;
    if (n <= 16) {
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (v->keys[j] && strcmp(v->keys[i], v->keys[j]) == 0) {
                    free_contents(p->a, &v->items[i]);
                    dn_free(p->a, v->keys[i]);
                    v->keys[i] = NULL;
                    removed++;
                    break;
                }
    } else {
        key_ref *r = dn_malloc(p->a, n * sizeof *r);
        if (!r) return nomem(p);
        for (size_t i = 0; i < n; i++) { r[i].key = v->keys[i]; r[i].idx = i; }
        qsort(r, n, sizeof *r, key_ref_cmp);
        for (size_t i = 0; i + 1 < n; i++)
            if (strcmp(r[i].key, r[i + 1].key) == 0) {
                size_t k = r[i].idx;
                free_contents(p->a, &v->items[k]);
                dn_free(p->a, v->keys[k]);
                v->keys[k] = NULL;
                removed++;
            }
        dn_free(p->a, r);
    }
    if (!removed) return DANU_OK;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (!v->keys[i]) continue;
        v->keys[w] = v->keys[i];
        v->items[w] = v->items[i];
        w++;
    }
    v->n = w;
    return DANU_OK;
}

static danu_status parse_object(parser *p, dn_json *v, int depth)
{
    v->type = DN_JSON_OBJECT;
    if (depth > JSON_MAX_DEPTH) return fail_at(p, p->pos, "nesting deeper than 64 levels");
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; return DANU_OK; }
    size_t cap = 0;
    for (;;) {
        if (v->n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            char **keys = dn_realloc(p->a, v->keys, ncap * sizeof *keys);
            if (!keys) return nomem(p);
            v->keys = keys;
            dn_json *items = dn_realloc(p->a, v->items, ncap * sizeof *items);
            if (!items) return nomem(p);
            v->items = items;
            cap = ncap;
        }
        if (p->pos >= p->len || p->s[p->pos] != '"') return fail_char(p, p->pos, "a string key");
        char *key;
        size_t key_len;
        DN_TRY(parse_string(p, &key, &key_len));
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            dn_free(p->a, key);
            return fail_char(p, p->pos, "':'");
        }
        p->pos++;
        v->keys[v->n] = key;
        dn_json *c = &v->items[v->n++];
        DN_TRY(parse_value(p, c, depth));
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') { p->pos++; skip_ws(p); continue; }
        if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; return dedupe_keys(p, v); }
        return fail_char(p, p->pos, "',' or '}'");
    }
}

static danu_status parse_literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return fail_char(p, p->pos, "a JSON value");
    p->pos += n;
    return DANU_OK;
}

/* Fills *v (zeroed first). On failure *v holds whatever was built, which
 * free_contents releases. */
static danu_status parse_value(parser *p, dn_json *v, int depth)
{
    memset(v, 0, sizeof *v);
    skip_ws(p);
    if (p->pos >= p->len) return fail_char(p, p->pos, "a JSON value");
    uint8_t c = p->s[p->pos];
    switch (c) {
    case '{': return parse_object(p, v, depth + 1);
    case '[': return parse_array(p, v, depth + 1);
    case '"': v->type = DN_JSON_STRING; return parse_string(p, &v->str, &v->str_len);
    case 't': v->type = DN_JSON_BOOL; v->boolean = 1; return parse_literal(p, "true");
    case 'f': v->type = DN_JSON_BOOL; return parse_literal(p, "false");
    case 'n': v->type = DN_JSON_NULL; return parse_literal(p, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
        return fail_char(p, p->pos, "a JSON value");
    }
}

danu_status dn_json_parse(const dn_alloc *a, const char *text, size_t len, const char *what, dn_json **out)
{
    if (!out) return dn_seterr(DANU_ERR_INVALID_ARG, "dn_json_parse: out is NULL");
    *out = NULL;
    if (!what) what = "JSON";
    if (!a || (!text && len)) return dn_seterr(DANU_ERR_INVALID_ARG, "%s: no allocator or text", what);
    if (len > JSON_MAX_SIZE)
        return dn_seterr(DANU_ERR_FORMAT, "%s: JSON document of %zu bytes exceeds the 64 MiB limit", what, len);
    parser p = { a, (const uint8_t *)text, len, 0, what };
    dn_json *root = dn_malloc(a, sizeof *root);
    if (!root) return nomem(&p);
    danu_status st = parse_value(&p, root, 0);
    if (st == DANU_OK) {
        skip_ws(&p);
        if (p.pos != p.len) st = fail_char(&p, p.pos, "end of input after the document");
    }
    if (st != DANU_OK) {
        dn_json_free(a, root);
        return st;
    }
    *out = root;
    return DANU_OK;
}

void dn_json_free(const dn_alloc *a, dn_json *root)
{
    if (!root) return;
    free_contents(a, root);
    dn_free(a, root);
}

const dn_json *dn_json_get(const dn_json *obj, const char *key)
{
    if (!obj || !key || obj->type != DN_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

int dn_json_get_int(const dn_json *obj, const char *key, int64_t *out)
{
    const dn_json *v = dn_json_get(obj, key);
    if (!v || v->type != DN_JSON_NUMBER) return 0;
    if (v->is_integer) { *out = v->integer; return 1; }
    /* 16384.0 is still an integer value; 1e30 or 0.5 are not */
    if (v->number != floor(v->number) || !(v->number >= -9223372036854775808.0 && v->number < 9223372036854775808.0))
        return 0;
    *out = (int64_t)v->number;
    return 1;
}

int dn_json_get_num(const dn_json *obj, const char *key, double *out)
{
    const dn_json *v = dn_json_get(obj, key);
    if (!v || v->type != DN_JSON_NUMBER) return 0;
    *out = v->number;
    return 1;
}

int dn_json_get_bool(const dn_json *obj, const char *key, int *out)
{
    const dn_json *v = dn_json_get(obj, key);
    if (!v || v->type != DN_JSON_BOOL) return 0;
    *out = v->boolean;
    return 1;
}

const char *dn_json_get_str(const dn_json *obj, const char *key)
{
    const dn_json *v = dn_json_get(obj, key);
    return v && v->type == DN_JSON_STRING ? v->str : NULL;
}
