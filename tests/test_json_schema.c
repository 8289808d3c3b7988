/* test_json_schema.c - JSON Schema to GBNF (dn_json_schema_to_gbnf). Each
 * supported construct: instances that must be accepted and ones that must
 * be rejected, matched against the produced grammar with dn_gbnf_match.
 * Integer ranges are checked exhaustively over windows around their bounds
 * and at far samples. Errors: every refused keyword (UNSUPPORTED, the
 * message names it and its path), invalid schemas, allocation failures at
 * every allocation (NOMEM, nothing leaked). End to end: generations of a
 * random-weight model under a schema, checked against the schema by hand
 * (parsed with the JSON parser, each constraint tested directly). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "danu.h"
#include "grammar/grammar.h"
#include "common/json.h"
#include "common/error.h"
#include "testutil.h"
#include "golden.h"

static tu_counter g_cnt;
static dn_alloc g_alloc = { tu_count_malloc, tu_count_realloc, tu_count_free, &g_cnt };
static const dn_alloc *A(void) { memset(&g_cnt, 0, sizeof g_cnt); return &g_alloc; }

/* The grammar of a schema (must convert); checks the rule names. */
static char *to_gbnf(const char *schema, uint32_t flags, size_t *len)
{
    char *g = NULL;
    size_t n = 0;
    dn_clearerr();
    danu_status st = dn_json_schema_to_gbnf(A(), schema, strlen(schema), flags, &g, &n);
    CHECK(st == DANU_OK, "schema %s: status %d: %s", schema, st, tu_last_error());
    CHECK(g && strlen(g) == n, "schema %s: bad output length", schema);
    CHECK(strncmp(g, "root ::= ", 9) == 0, "schema %s: root is not the first rule:\n%s", schema, g);
    /* every line: NAME ::= ..., NAME in [a-zA-Z0-9-] */
    for (const char *l = g; *l; l = strchr(l, '\n') + 1) {
        const char *e = strstr(l, " ::= ");
        CHECK(e && e > l && e < strchr(l, '\n'), "schema %s: bad rule line in\n%s", schema, g);
        for (const char *p = l; p < e; p++)
            CHECK((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-',
                  "schema %s: bad rule name in\n%s", schema, g);
    }
    if (len) *len = n;
    return g;
}

static void done(char *g)
{
    dn_free(&g_alloc, g);
    CHECK(g_cnt.live == 0, "leaked %ld blocks", g_cnt.live);
}

static int accepts(const char *g, size_t glen, const char *text, size_t tlen)
{
    int complete = -1, prefix = -1;
    danu_status st = dn_gbnf_match(dn_alloc_libc(), g, glen, text, tlen, &complete, &prefix);
    CHECK(st == DANU_OK, "grammar does not parse (%d: %s):\n%s", st, tu_last_error(), g);
    CHECK(complete == 0 || complete == 1, "complete is %d", complete);
    CHECK(!complete || prefix, "complete but not a prefix");
    return complete;
}

/* good and bad: NULL-terminated lists of instances. */
static void check_schema_f(const char *schema, uint32_t flags, const char *const *good, const char *const *bad)
{
    size_t n;
    char *g = to_gbnf(schema, flags, &n);
    for (size_t i = 0; good && good[i]; i++)
        CHECK(accepts(g, n, good[i], strlen(good[i])), "schema %s rejects valid %s; grammar:\n%s", schema, good[i], g);
    for (size_t i = 0; bad && bad[i]; i++)
        CHECK(!accepts(g, n, bad[i], strlen(bad[i])), "schema %s accepts invalid %s; grammar:\n%s", schema, bad[i], g);
    done(g);
}
#define L(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define check_schema(schema, good, bad) check_schema_f(schema, 0, good, bad)

/* ---- integers ---- */

#define NO_BOUND (-(1LL << 62))

static void check_int_value(const char *g, size_t n, long long lo, long long hi, long long v, const char *schema)
{
    char t[32];
    snprintf(t, sizeof t, "%lld", v);
    int want = (lo == NO_BOUND || v >= lo) && (hi == NO_BOUND || v <= hi) && v <= 9999999999999999LL &&
               v >= -9999999999999999LL;
    CHECK(accepts(g, n, t, strlen(t)) == want, "schema %s: %s should be %s; grammar:\n%s", schema, t,
          want ? "accepted" : "rejected", g);
}

static void check_int_range(long long lo, long long hi)
{
    char schema[160];
    int k = snprintf(schema, sizeof schema, "{\"type\":\"integer\"");
    if (lo != NO_BOUND) k += snprintf(schema + k, sizeof schema - (size_t)k, ",\"minimum\":%lld", lo);
    if (hi != NO_BOUND) k += snprintf(schema + k, sizeof schema - (size_t)k, ",\"maximum\":%lld", hi);
    snprintf(schema + k, sizeof schema - (size_t)k, "}");
    size_t n;
    char *g = to_gbnf(schema, 0, &n);
    for (long long v = -1100; v <= 1100; v++) check_int_value(g, n, lo, hi, v, schema);
    for (int side = 0; side < 2; side++) {
        long long b = side ? hi : lo;
        if (b == NO_BOUND) continue;
        for (long long v = b - 150; v <= b + 150; v++) check_int_value(g, n, lo, hi, v, schema);
    }
    long long p = 1;
    for (int d = 0; d <= 17; d++, p *= 10) {
        const long long far[] = { p, p - 1, p + 1, -p, 1 - p, -p - 1, 5 * p, -7 * p, 3 * p + 7 };
        for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) check_int_value(g, n, lo, hi, far[i], schema);
    }
    const char *never[] = { "-0", "00", "01", "-01", "007", "+1", "1.0", "1e2", "-", "", " 1", "0x1", "--1" };
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        CHECK(!accepts(g, n, never[i], strlen(never[i])), "schema %s accepts '%s'; grammar:\n%s", schema, never[i], g);
    done(g);
}

START_TEST(test_integer_ranges)
{
    const long long r[][2] = {
        { -123, 4567 }, { 7, 7 }, { 0, 9 }, { 10, 99 }, { -5, -1 }, { 95, NO_BOUND }, { NO_BOUND, -12 },
        { 0, 0 }, { -1, 0 }, { -1000, 1000 }, { 1, 1000000000000000LL }, { -1000000000000000LL, 3 },
        { NO_BOUND, 0 }, { 0, NO_BOUND }, { NO_BOUND, 12345 }, { -98765, NO_BOUND }, { 19, 2001 },
        { 100, 199 }, { 99, 100 }, { -999, -100 }, { -1, -1 }, { 1, 9 }, { 10, 10 }, { 1099, 1101 },
        { -10, 10 }, { 555, 555 }, { 1000, 9999 }, { 123456, 123999 },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) check_int_range(r[i][0], r[i][1]);
}
END_TEST

START_TEST(test_integer_bounds_forms)
{
    check_schema("{\"type\":\"integer\"}", L("0", "-1", "42", "9999999999999999", "-9999999999999999"),
                 L("-0", "01", "1.5", "10000000000000000", "\"1\"", "1e3"));
    /* exclusive bounds, non-integral bounds rounded inward, draft-4 booleans */
    check_schema("{\"type\":\"integer\",\"exclusiveMinimum\":2.5,\"exclusiveMaximum\":6}", L("3", "4", "5"),
                 L("2", "6", "-3"));
    check_schema("{\"type\":\"integer\",\"exclusiveMinimum\":-3,\"maximum\":-0.5}", L("-2", "-1"),
                 L("-3", "0", "-0"));
    check_schema("{\"type\":\"integer\",\"minimum\":2,\"exclusiveMinimum\":true,\"maximum\":5.5}", L("3", "5"),
                 L("2", "6"));
    check_schema("{\"type\":\"integer\",\"minimum\":1.5,\"maximum\":3,\"exclusiveMaximum\":true}", L("2"),
                 L("1", "3"));
    check_schema("{\"type\":\"integer\",\"minimum\":0,\"exclusiveMinimum\":3}", L("4", "40"), L("3", "0"));
    check_schema("{\"type\":\"integer\",\"maximum\":1e300}", L("0", "-5", "9999999999999999"), L("1e300"));
    check_schema("{\"type\":\"integer\",\"minimum\":-1e300,\"maximum\":2}", L("2", "-9999999999999999"), L("3"));
    check_schema("{\"minimum\":1,\"type\":[\"integer\",\"string\"]}", L("1", "\"x\""), L("0"));
}
END_TEST

/* ---- objects ---- */

START_TEST(test_object_optional_combinations)
{
    /* 4 properties; every required set; every present subset in order,
     * reversed order, stray commas, with and without spaces */
    const char *p[4] = { "a", "bb", "c", "d" };
    for (int rm = 0; rm < 16; rm++) {
        char schema[512], req[64] = "";
        int k = 0;
        for (int i = 0; i < 4; i++)
            if (rm >> i & 1) k += snprintf(req + k, sizeof req - (size_t)k, "%s\"%s\"", k ? "," : "", p[i]);
        snprintf(schema, sizeof schema,
                 "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"bb\":{\"type\":\"string\"},"
                 "\"c\":{\"type\":\"boolean\"},\"d\":{\"type\":\"null\"}},\"required\":[%s]}", req);
        for (int spaces = 0; spaces < 2; spaces++) {
            size_t n;
            char *g = to_gbnf(schema, spaces ? DANU_SCHEMA_SPACES : 0, &n);
            static const char *val[4] = { "1", "\"x\"", "true", "null" };
            for (int sub = 0; sub < 16; sub++) {
                char fwd[256], rev[256], trail[260], lead[260];
                int f = 0, r = 0, cnt = 0;
                const char *sep = spaces ? ", " : ",", *colon = spaces ? ": " : ":";
                for (int i = 0; i < 4; i++)
                    if (sub >> i & 1)
                        f += snprintf(fwd + f, sizeof fwd - (size_t)f, "%s\"%s\"%s%s", cnt++ ? sep : "{", p[i], colon,
                                      val[i]);
                if (!cnt) f += snprintf(fwd + f, sizeof fwd - (size_t)f, "{");
                snprintf(fwd + f, sizeof fwd - (size_t)f, "}");
                cnt = 0;
                for (int i = 3; i >= 0; i--)
                    if (sub >> i & 1)
                        r += snprintf(rev + r, sizeof rev - (size_t)r, "%s\"%s\"%s%s", cnt++ ? sep : "{", p[i], colon,
                                      val[i]);
                if (!cnt) r += snprintf(rev + r, sizeof rev - (size_t)r, "{");
                snprintf(rev + r, sizeof rev - (size_t)r, "}");
                snprintf(trail, sizeof trail, "%.*s,}", (int)strlen(fwd) - 1, fwd);
                snprintf(lead, sizeof lead, "{,%s", fwd + 1);
                int want = (sub & rm) == rm;
                CHECK(accepts(g, n, fwd, strlen(fwd)) == want, "%s: %s should be %s\n%s", schema, fwd,
                      want ? "accepted" : "rejected", g);
                if (__builtin_popcount((unsigned)sub) >= 2)
                    CHECK(!accepts(g, n, rev, strlen(rev)), "%s: accepts reordered %s", schema, rev);
                CHECK(!accepts(g, n, trail, strlen(trail)), "%s: accepts %s", schema, trail);
                CHECK(!accepts(g, n, lead, strlen(lead)), "%s: accepts %s", schema, lead);
            }
            /* no other members, no duplicates */
            CHECK(!accepts(g, n, "{\"e\":1}", 7), "%s: accepts another member", schema);
            const char *dup = "{\"a\":1,\"a\":1,\"bb\":\"\",\"c\":true,\"d\":null}";
            CHECK(!accepts(g, n, dup, strlen(dup)), "%s: accepts a duplicate", schema);
            done(g);
        }
    }
}
END_TEST

START_TEST(test_object_forms)
{
    /* schema order, not alphabetical */
    check_schema("{\"type\":\"object\",\"properties\":{\"zeta\":{\"type\":\"integer\"},\"alpha\":{\"type\":\"integer\"}},"
                 "\"required\":[\"zeta\",\"alpha\"]}",
                 L("{\"zeta\":1,\"alpha\":2}"), L("{\"alpha\":2,\"zeta\":1}", "{\"zeta\":1}", "{}"));
    /* type inferred from properties; additionalProperties false */
    check_schema("{\"properties\":{\"a\":{\"const\":1}},\"additionalProperties\":false}", L("{}", "{\"a\":1}"),
                 L("{\"a\":2}", "{\"b\":1}", "null", "[]"));
    /* a map */
    check_schema("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}",
                 L("{}", "{\"a\":1}", "{\"a\":1,\"b\":-2}", "{\"\":0}"), L("{\"a\":\"x\"}", "{\"a\":1,}", "{a:1}"));
    /* any object */
    check_schema("{\"type\":\"object\"}", L("{}", "{\"a\":[1,{\"b\":null}]}"), L("[]", "{\"a\"}"));
    check_schema("{\"type\":\"object\",\"additionalProperties\":true}", L("{}", "{\"x\":\"y\"}"), L("1"));
    /* only {} */
    check_schema("{\"type\":\"object\",\"additionalProperties\":false}", L("{}"), L("{\"a\":1}"));
    check_schema("{\"type\":\"object\",\"properties\":{}}", L("{}"), L("{\"a\":1}"));
    /* a property whose schema is false must be absent */
    check_schema("{\"properties\":{\"a\":false,\"b\":{\"type\":\"null\"}}}", L("{}", "{\"b\":null}"),
                 L("{\"a\":1}", "{\"a\":null,\"b\":null}"));
    /* keys needing escapes */
    check_schema("{\"type\":\"object\",\"properties\":{\"we\\\"ird\\\\key\\n\":{\"type\":\"null\"},"
                 "\"caf\xc3\xa9 \\u00e9\":{\"type\":\"null\"}},\"required\":[\"we\\\"ird\\\\key\\n\"]}",
                 L("{\"we\\\"ird\\\\key\\n\":null}", "{\"we\\\"ird\\\\key\\n\":null,\"caf\xc3\xa9 \xc3\xa9\":null}"),
                 L("{}", "{\"weird\":null}"));
    /* nested objects, required and optional */
    check_schema("{\"type\":\"object\",\"properties\":{\"p\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":"
                 "\"integer\"},\"y\":{\"type\":\"integer\"}},\"required\":[\"y\"]},\"q\":{\"type\":\"boolean\"}},"
                 "\"required\":[\"p\"]}",
                 L("{\"p\":{\"y\":1}}", "{\"p\":{\"x\":0,\"y\":1},\"q\":false}"),
                 L("{\"p\":{\"x\":0}}", "{\"q\":true}", "{\"p\":{}}"));
}
END_TEST

/* ---- strings ---- */

START_TEST(test_strings)
{
    check_schema("{\"type\":\"string\"}", L("\"\"", "\"a b\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u00E9\\uabcd\"",
                                             "\"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\""),
                 L("\"", "\"\\x\"", "\"\\u12\"", "\"a\nb\"", "\"\x01\"", "'a'", "a"));
    /* lengths in characters: an escape is one, a multi-byte character is one */
    check_schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
                 L("\"ab\"", "\"abc\"", "\"a\\\"c\"", "\"\\u00e9x\"", "\"\xc3\xa9\xc3\xbc\"",
                   "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"", "\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"", "\"\\n\\t\\\\\""),
                 L("\"a\"", "\"abcd\"", "\"\"", "\"\\\"\"", "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9ex\"",
                   "\"\\u00e9\\u00e9\\u00e9\\u00e9\"", "\"\xf0\x9f\x98\x80\""));
    /* \u escapes: one code point each, a surrogate pair one, a lone surrogate never */
    check_schema("{\"type\":\"string\",\"maxLength\":1}",
                 L("\"\\ud83d\\ude00\"", "\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\"", "\"\\ud7ff\"", "\"\\ue000\"",
                   "\"\\uFFFF\""),
                 L("\"\\ud83d\\ude00x\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\udbff\\ud800\"", "\"\\ud800\\u0041\""));
    check_schema("{\"type\":\"string\",\"minLength\":2}", L("\"\\ud83d\\ude00\\u00e9\""),
                 L("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\""));
    check_schema("{\"type\":\"string\"}", L("\"\\ud83d\\ude00\""), L("\"\\udfff\"", "\"\\ud83d\""));
    check_schema("{\"type\":\"string\",\"maxLength\":0}", L("\"\""), L("\"a\"", "\"\\n\""));
    check_schema("{\"type\":\"string\",\"minLength\":1}", L("\"a\"", "\"\\n\"", "\"\xc3\xa9\""), L("\"\""));
    check_schema("{\"type\":\"string\",\"maxLength\":1}", L("\"\"", "\"a\"", "\"\\u0041\""), L("\"ab\""));
    check_schema("{\"type\":\"string\",\"minLength\":3,\"maxLength\":3}", L("\"abc\"", "\"\\\\\\\\\\\\\""),
                 L("\"ab\"", "\"abcd\""));
    check_schema("{\"minLength\":2}", L("\"ab\"", "\"abc\""), L("\"a\"", "12"));   /* type inferred */
}
END_TEST

/* ---- arrays ---- */

START_TEST(test_arrays)
{
    check_schema("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":4}",
                 L("[1,2]", "[1,2,3]", "[1,2,3,4]"), L("[]", "[1]", "[1,2,3,4,5]", "[1,,2]", "[1,2,]", "[1,\"a\"]"));
    check_schema("{\"type\":\"array\",\"maxItems\":0}", L("[]"), L("[1]", "[[]]"));
    check_schema("{\"type\":\"array\",\"maxItems\":1}", L("[]", "[1]", "[{\"a\":[]}]"), L("[1,2]"));
    check_schema("{\"type\":\"array\",\"minItems\":1}", L("[1]", "[1,\"x\",null,true,{},[]]"), L("[]"));
    check_schema("{\"type\":\"array\",\"minItems\":3,\"maxItems\":3,\"items\":{\"type\":\"null\"}}",
                 L("[null,null,null]"), L("[null,null]", "[null,null,null,null]"));
    check_schema("{\"type\":\"array\",\"minItems\":1,\"maxItems\":1,\"items\":{\"type\":\"null\"}}", L("[null]"),
                 L("[]", "[null,null]"));
    check_schema("{\"type\":\"array\",\"minItems\":2,\"items\":{\"type\":\"boolean\"}}",
                 L("[true,false]", "[true,true,true,true,true]"), L("[true]", "[]"));
    check_schema("{\"type\":\"array\"}", L("[]", "[1,[2,{}],\"x\"]"), L("[", "[1,]", "{}"));
    check_schema("{\"items\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":1}}}",
                 L("[]", "[[]]", "[[\"a\",\"\"],[\"b\"]]"), L("[[\"ab\"]]", "[\"a\"]"));
}
END_TEST

/* ---- enum, const, types, anyOf ---- */

START_TEST(test_enum_const_types)
{
    check_schema("{\"enum\":[\"a\\\"b\",\"\\n\\\\\",\"\\u0001\",\"\xc3\xa9\",1.5,null,{\"x\":[1,true]},-3,1e300,0.1,"
                 "false]}",
                 L("\"a\\\"b\"", "\"\\n\\\\\"", "\"\\u0001\"", "\"\xc3\xa9\"", "1.5", "null", "{\"x\":[1,true]}",
                   "-3", "1e+300", "0.1", "false"),
                 L("\"a\"", "\"ab\"", "1", "true", "\"\\u00e9\"", "{}"));
    check_schema("{\"type\":\"string\",\"enum\":[\"x\",1,\"y\"]}", L("\"x\"", "\"y\""), L("1"));
    check_schema("{\"type\":\"integer\",\"enum\":[1,2.5,3.0,\"4\"]}", L("1", "3"), L("2.5", "\"4\""));
    check_schema("{\"const\":\"hi\"}", L("\"hi\""), L("\"h\"", "\"hi \""));
    check_schema("{\"const\":{\"a\":[null]}}", L("{\"a\":[null]}"), L("{}"));
    check_schema("{\"type\":[\"integer\",\"null\"]}", L("1", "null", "-7"), L("1.5", "\"x\"", "true"));
    check_schema("{\"type\":\"number\"}", L("1", "-0.5", "1e5", "1.25E-3", "0", "-0", "12.0e+10", "9.5e99", "-1E-99"),
                 L("01", "1.", ".5", "+1", "1e", "--1", "NaN", "1e400", "1e100"));
    check_schema("{\"type\":[\"number\",\"integer\"]}", L("1", "1.5"), L("x"));
    check_schema("{\"type\":\"boolean\"}", L("true", "false"), L("1", "null", "True"));
    check_schema("{\"type\":\"null\"}", L("null"), L("0", "\"null\""));
    check_schema("{}", L("1", "{\"a\":[1,\"x\",null,true,1.5e3]}", "\"s\"", "[]", "null"), L("", "{", "nul"));
    check_schema("true", L("1", "[{}]"), L("x"));
    check_schema("{\"title\":\"t\",\"description\":\"d\",\"$schema\":\"x\",\"$id\":\"y\",\"default\":1,"
                 "\"examples\":[1],\"$comment\":\"c\",\"readOnly\":true,\"writeOnly\":false,\"deprecated\":false,"
                 "\"type\":\"boolean\"}",
                 L("true"), L("1"));
    check_schema("{\"anyOf\":[{\"type\":\"integer\",\"minimum\":0,\"maximum\":5},{\"type\":\"string\",\"maxLength\":1},"
                 "{\"type\":\"boolean\"}]}",
                 L("0", "5", "\"a\"", "\"\"", "true"), L("6", "-1", "\"ab\"", "null"));
    check_schema("{\"oneOf\":[{\"type\":\"null\"},{\"const\":7}]}", L("null", "7"), L("8"));
    check_schema("{\"allOf\":[{\"type\":\"boolean\"}]}", L("true"), L("1"));
}
END_TEST

/* ---- $defs and $ref ---- */

START_TEST(test_refs)
{
    const char *tree = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                       "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
                       "\"$ref\":\"#/$defs/node\"}";
    check_schema(tree, L("{\"v\":1}", "{\"v\":1,\"kids\":[]}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"v\":3}]},{\"v\":4}]}"),
                 L("{\"kids\":[]}", "{\"v\":1,\"kids\":[{}]}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"w\":3}]}]}"));
    /* nested definitions referring to each other, definitions and ~ escapes */
    check_schema("{\"definitions\":{\"a~b/c\":{\"type\":\"boolean\"},\"pair\":{\"type\":\"array\",\"items\":"
                 "{\"$ref\":\"#/definitions/a~0b~1c\"},\"minItems\":2,\"maxItems\":2}},\"type\":\"object\","
                 "\"properties\":{\"x\":{\"$ref\":\"#/definitions/pair\"},\"y\":{\"$ref\":\"#/definitions/a~0b~1c\"}},"
                 "\"required\":[\"x\"]}",
                 L("{\"x\":[true,false]}", "{\"x\":[true,true],\"y\":false}"), L("{\"x\":[true]}", "{\"y\":true}"));
    /* root recursion: a linked list */
    check_schema("{\"type\":\"object\",\"properties\":{\"next\":{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}},"
                 "\"required\":[\"next\"]}",
                 L("{\"next\":null}", "{\"next\":{\"next\":{\"next\":null}}}"), L("{}", "{\"next\":{}}"));
    /* a definition named like a shared rule, refs through anyOf */
    check_schema("{\"$defs\":{\"value\":{\"type\":\"string\"},\"string\":{\"anyOf\":[{\"$ref\":\"#/$defs/value\"},"
                 "{\"type\":\"null\"}]}},\"$ref\":\"#/$defs/string\"}",
                 L("\"x\"", "null"), L("1"));
    /* mutual recursion through arrays */
    check_schema("{\"$defs\":{\"a\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/b\"}},\"b\":{\"anyOf\":["
                 "{\"$ref\":\"#/$defs/a\"},{\"type\":\"integer\",\"minimum\":0,\"maximum\":1}]}},\"$ref\":\"#/$defs/a\"}",
                 L("[]", "[0,[1,[]],[[0]]]"), L("[2]", "0"));
}
END_TEST

/* ---- whitespace ---- */

START_TEST(test_spaces)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"array\","
                    "\"items\":{\"type\":\"string\"}},\"c\":{}},\"required\":[\"a\",\"b\"]}";
    check_schema_f(s, DANU_SCHEMA_SPACES,
                   L("{\"a\":1,\"b\":[]}", "{ \"a\" : 1 ,\n  \"b\": [ \"x\" ,\n\t\"y\" ] }",
                     "{\n  \"a\": 1,\n  \"b\": [\n    \"x\"\n  ],\n  \"c\": {\n    \"d\": [ 1, 2 ]\n  }\n}"),
                   L("{  \"a\":1,\"b\":[]}", "{\"a\":1,\"b\":[] }\n", " {\"a\":1,\"b\":[]}",
                     "{\"a\":1,\n                                   \"b\":[]}"));
    check_schema_f(s, 0, L("{\"a\":1,\"b\":[\"x\"]}"), L("{ \"a\":1,\"b\":[]}", "{\"a\":1,\"b\":[\"x\", \"y\"]}"));
    check_schema_f("{}", DANU_SCHEMA_SPACES, L("{ \"x\" : [ 1 , { } ] }", "[\n]"), L("[  ]"));
    check_schema_f("{\"type\":\"array\",\"maxItems\":0}", DANU_SCHEMA_SPACES, L("[]", "[ ]"), L("[  ]"));
}
END_TEST

/* ---- errors ---- */

static void check_error(const char *schema, uint32_t flags, danu_status want, const char *needle)
{
    char *g = (char *)1;
    size_t n = 7;
    dn_clearerr();
    danu_status st = dn_json_schema_to_gbnf(A(), schema, strlen(schema), flags, &g, &n);
    CHECK(st == want, "schema %s: status %d, want %d (%s)", schema, st, want, tu_last_error());
    CHECK(g == NULL && n == 0, "schema %s: output set on error", schema);
    CHECK(g_cnt.live == 0, "schema %s: leaked %ld blocks", schema, g_cnt.live);
    if (needle)
        CHECK(strstr(tu_last_error(), needle) != NULL, "schema %s: message '%s' lacks '%s'", schema, tu_last_error(),
              needle);
}

START_TEST(test_unsupported)
{
    const char *kw[] = { "pattern", "format", "prefixItems", "uniqueItems", "contains", "not", "if", "then", "else",
                         "patternProperties", "propertyNames", "minProperties", "maxProperties", "dependentRequired",
                         "multipleOf", "$anchor", "$dynamicRef", "unevaluatedProperties", "x-custom", "nullable" };
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++) {
        char s[256], needle[160];
        snprintf(s, sizeof s, "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"%s\":1}}}", kw[i]);
        snprintf(needle, sizeof needle, "keyword \"%s\" at /properties/name is not supported", kw[i]);
        check_error(s, 0, DANU_ERR_UNSUPPORTED, needle);
    }
    check_error("{\"type\":\"number\",\"minimum\":1}", 0, DANU_ERR_UNSUPPORTED, "\"minimum\"");
    check_error("{\"type\":\"number\",\"exclusiveMaximum\":1}", 0, DANU_ERR_UNSUPPORTED, "\"exclusiveMaximum\"");
    check_error("{\"maximum\":1}", 0, DANU_ERR_UNSUPPORTED, "\"maximum\"");
    check_error("{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":true}", 0,
                DANU_ERR_UNSUPPORTED, "\"additionalProperties\"");
    check_error("{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":{}}", 0,
                DANU_ERR_UNSUPPORTED, "\"additionalProperties\"");
    check_error("{\"allOf\":[{},{}]}", 0, DANU_ERR_UNSUPPORTED, "\"allOf\"");
    check_error("{\"items\":[{}]}", 0, DANU_ERR_UNSUPPORTED, "\"items\"");
    check_error("{\"$ref\":\"http://example.com/s.json\"}", 0, DANU_ERR_UNSUPPORTED, "\"$ref\"");
    check_error("{\"$ref\":\"other.json#/a\"}", 0, DANU_ERR_UNSUPPORTED, "\"$ref\"");
    check_error("{\"$ref\":\"#anchor\"}", 0, DANU_ERR_UNSUPPORTED, "\"$ref\"");
    check_error("{\"$ref\":\"#\",\"type\":\"object\"}", 0, DANU_ERR_UNSUPPORTED, "\"type\"");
    check_error("{\"anyOf\":[{}],\"minLength\":1}", 0, DANU_ERR_UNSUPPORTED, "\"minLength\"");
    check_error("{\"enum\":[\"a\"],\"maxLength\":1}", 0, DANU_ERR_UNSUPPORTED, "\"maxLength\"");
    check_error("{\"enum\":[\"a\"],\"const\":\"a\"}", 0, DANU_ERR_UNSUPPORTED, "\"const\"");
    check_error("{\"type\":\"integer\",\"minimum\":1e17}", 0, DANU_ERR_UNSUPPORTED, "\"minimum\"");
    check_error("{\"type\":\"integer\",\"maximum\":-1e17}", 0, DANU_ERR_UNSUPPORTED, "\"maximum\"");
    check_error("{\"type\":\"string\",\"maxLength\":1000000}", 0, DANU_ERR_UNSUPPORTED, "\"maxLength\"");
    /* the path goes through items, anyOf, $defs */
    check_error("{\"items\":{\"anyOf\":[{},{\"pattern\":\"x\"}]}}", 0, DANU_ERR_UNSUPPORTED, "at /items/anyOf/1 ");
    check_error("{\"$defs\":{\"a/b\":{\"format\":\"x\"}},\"$ref\":\"#/$defs/a~1b\"}", 0, DANU_ERR_UNSUPPORTED,
                "at /$defs/a~1b ");
}
END_TEST

START_TEST(test_invalid)
{
    check_error("{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", 0, DANU_ERR_INVALID_ARG, "\"b\"");
    check_error("{\"required\":[\"b\"]}", 0, DANU_ERR_INVALID_ARG, "\"b\"");
    check_error("{\"$ref\":\"#/$defs/missing\"}", 0, DANU_ERR_INVALID_ARG, "missing");
    check_error("{\"$defs\":{},\"$ref\":\"#/definitions/x\"}", 0, DANU_ERR_INVALID_ARG, "no such definition");
    check_error("{\"$ref\":\"#/$defs/a~2\"}", 0, DANU_ERR_INVALID_ARG, NULL);
    check_error("{\"$ref\":1}", 0, DANU_ERR_INVALID_ARG, "$ref");
    check_error("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", 0, DANU_ERR_INVALID_ARG,
                "left recursion");
    check_error("{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}", 0, DANU_ERR_INVALID_ARG, "left recursion");
    check_error("{\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/b\"}]},\"b\":{\"$ref\":\"#/$defs/a\"}},"
                "\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/a\"}}", 0, DANU_ERR_INVALID_ARG, "left recursion");
    check_error("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", 0, DANU_ERR_INVALID_ARG, "minimum");
    check_error("{\"type\":\"integer\",\"minimum\":4.2,\"maximum\":4.8}", 0, DANU_ERR_INVALID_ARG, "minimum");
    check_error("{\"type\":\"integer\",\"exclusiveMinimum\":4,\"exclusiveMaximum\":5}", 0, DANU_ERR_INVALID_ARG, NULL);
    check_error("{\"type\":\"integer\",\"minimum\":\"1\"}", 0, DANU_ERR_INVALID_ARG, "minimum");
    check_error("{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}", 0, DANU_ERR_INVALID_ARG, "minLength");
    check_error("{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", 0, DANU_ERR_INVALID_ARG, "minItems");
    check_error("{\"minLength\":-1}", 0, DANU_ERR_INVALID_ARG, "minLength");
    check_error("{\"maxItems\":1.5}", 0, DANU_ERR_INVALID_ARG, "maxItems");
    check_error("false", 0, DANU_ERR_INVALID_ARG, "false");
    check_error("{\"properties\":{\"a\":false},\"required\":[\"a\"]}", 0, DANU_ERR_INVALID_ARG, "/properties/a");
    check_error("{\"items\":false,\"minItems\":1}", 0, DANU_ERR_INVALID_ARG, "items");
    check_error("1", 0, DANU_ERR_INVALID_ARG, "object or a boolean");
    check_error("{\"properties\":{\"a\":[]}}", 0, DANU_ERR_INVALID_ARG, "/properties/a");
    check_error("{\"type\":\"strin\"}", 0, DANU_ERR_INVALID_ARG, "type");
    check_error("{\"type\":[]}", 0, DANU_ERR_INVALID_ARG, "type");
    check_error("{\"type\":7}", 0, DANU_ERR_INVALID_ARG, "type");
    check_error("{\"properties\":[]}", 0, DANU_ERR_INVALID_ARG, "properties");
    check_error("{\"required\":\"a\"}", 0, DANU_ERR_INVALID_ARG, "required");
    check_error("{\"additionalProperties\":1}", 0, DANU_ERR_INVALID_ARG, "additionalProperties");
    check_error("{\"enum\":[]}", 0, DANU_ERR_INVALID_ARG, "enum");
    check_error("{\"enum\":1}", 0, DANU_ERR_INVALID_ARG, "enum");
    check_error("{\"type\":\"string\",\"enum\":[1,null]}", 0, DANU_ERR_INVALID_ARG, "enum");
    check_error("{\"anyOf\":[]}", 0, DANU_ERR_INVALID_ARG, "anyOf");
    /* not JSON */
    check_error("", 0, DANU_ERR_INVALID_ARG, "json schema");
    check_error("{\"type\":", 0, DANU_ERR_INVALID_ARG, "json schema");
    check_error("{'type':'string'}", 0, DANU_ERR_INVALID_ARG, "json schema");
    check_error("{} {}", 0, DANU_ERR_INVALID_ARG, "json schema");
    check_error("{\"a\":\"\xff\"}", 0, DANU_ERR_BAD_UTF8, "UTF-8");
    /* flags and arguments */
    check_error("{}", 2, DANU_ERR_INVALID_ARG, "flag");
    check_error("{}", 0x80000000u, DANU_ERR_INVALID_ARG, "flag");
    char *g = (char *)1;
    size_t n = 1;
    ck_assert_int_eq(dn_json_schema_to_gbnf(NULL, "{}", 2, 0, &g, &n), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_json_schema_to_gbnf(A(), NULL, 2, 0, &g, &n), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_json_schema_to_gbnf(A(), "{}", 2, 0, NULL, &n), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_json_schema_to_gbnf(A(), "{}", 2, 0, &g, NULL), DANU_ERR_INVALID_ARG);
    /* deeper than the JSON parser allows */
    char deep[1024];
    size_t k = 0;
    for (int i = 0; i < 70; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"items\":");
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{}");
    for (int i = 0; i < 70; i++) deep[k++] = '}';
    deep[k] = 0;
    check_error(deep, 0, DANU_ERR_INVALID_ARG, "64");
}
END_TEST

/* Not NUL-terminated input: len is honoured. */
START_TEST(test_length_honoured)
{
    const char *s = "{\"type\":\"null\"}garbage";
    char *g = NULL;
    size_t n = 0;
    ck_assert_int_eq(dn_json_schema_to_gbnf(A(), s, 15, 0, &g, &n), DANU_OK);
    ck_assert(accepts(g, n, "null", 4));
    done(g);
}
END_TEST

/* ---- end to end ---- */

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

/* The generated text is valid under the schema of test_generate, checked
 * without the grammar. */
static void check_instance(const char *text, const char *what)
{
    dn_json *j = NULL;
    danu_status st = dn_json_parse(dn_alloc_libc(), text, strlen(text), "generated", &j);
    CHECK(st == DANU_OK, "%s: not JSON: %s (%s)", what, text, tu_last_error());
    CHECK(j->type == DN_JSON_OBJECT, "%s: not an object: %s", what, text);
    static const char *order[] = { "id", "tag", "flags", "name" };
    size_t at = 0;
    for (size_t i = 0; i < j->n; i++) {
        while (at < 4 && strcmp(order[at], j->keys[i]) != 0) at++;
        CHECK(at < 4, "%s: member \"%s\" unknown or out of order: %s", what, j->keys[i], text);
        at++;
    }
    const dn_json *id = dn_json_get(j, "id"), *tag = dn_json_get(j, "tag"), *flags = dn_json_get(j, "flags"),
                  *name = dn_json_get(j, "name");
    CHECK(id && id->type == DN_JSON_NUMBER && id->is_integer && id->integer >= -20 && id->integer <= 150,
          "%s: bad id: %s", what, text);
    CHECK(name && name->type == DN_JSON_STRING && utf8_chars(name->str, name->str_len) >= 1 &&
          utf8_chars(name->str, name->str_len) <= 5, "%s: bad name: %s", what, text);
    CHECK(!tag || tag->type == DN_JSON_NULL || (tag->type == DN_JSON_STRING && (!strcmp(tag->str, "a\"") || !strcmp(tag->str, "b"))),
          "%s: bad tag: %s", what, text);
    if (flags) {
        CHECK(flags->type == DN_JSON_ARRAY && flags->n <= 3, "%s: bad flags: %s", what, text);
        for (size_t i = 0; i < flags->n; i++) CHECK(flags->items[i].type == DN_JSON_BOOL, "%s: bad flag: %s", what, text);
    }
    dn_json_free(dn_alloc_libc(), j);
}

START_TEST(test_generate)
{
    char *dir = tu_tmpdir("json_schema");
    const char *path = gd_synth(dir, "tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_F32);
    CHECK(path != NULL, "cannot synthesize tiny-a: %s", danu_last_error());
    danu_model *m;
    CHECK_OK(danu_model_load(path, NULL, &m));
    const danu_tokenizer *tok = danu_model_tokenizer(m);
    const char *schema =
        "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":-20,\"maximum\":150},"
        "\"tag\":{\"enum\":[\"a\\\"\",\"b\",null]},\"flags\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},"
        "\"maxItems\":3},\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":5}},\"required\":[\"id\",\"name\"]}";
    /* the public conversion equals the internal one; a short buffer is refused */
    size_t glen;
    char small[8];
    ck_assert_int_eq(danu_json_schema_to_grammar(schema, strlen(schema), 0, small, sizeof small, &glen),
                     DANU_ERR_BUFFER_TOO_SMALL);
    char *g = malloc(glen + 1);
    CHECK_OK(danu_json_schema_to_grammar(schema, strlen(schema), 0, g, glen + 1, &glen));
    ck_assert_uint_eq(strlen(g), glen);
    char *mine = to_gbnf(schema, 0, NULL);
    ck_assert_str_eq(g, mine);
    done(mine);
    danu_constraint *bad = (danu_constraint *)1;
    ck_assert_int_eq(danu_constraint_from_json_schema(tok, "{\"pattern\":\"x\"}", 15, 0, &bad), DANU_ERR_UNSUPPORTED);
    ck_assert_ptr_null(bad);
    ck_assert(strstr(danu_last_error(), "pattern") != NULL);

    int runs = 0, complete = 0;
    for (uint32_t flags = 0; flags <= DANU_SCHEMA_SPACES; flags++) {
        danu_constraint *k;
        CHECK_OK(danu_constraint_from_json_schema(tok, schema, strlen(schema), flags, &k));
        size_t fl;
        char *fg = to_gbnf(schema, flags, &fl);
        for (int seed = 1; seed <= 16; seed++) {
            danu_options *o;
            CHECK_OK(danu_options_create(NULL, &o));
            CHECK_OK(danu_options_set_int(o, DANU_OPT_N_CTX, 512));
            CHECK_OK(danu_options_set_int(o, DANU_OPT_SEED, seed));
            CHECK_OK(danu_options_set_float(o, DANU_OPT_TEMPERATURE, seed % 4 ? 1.5 : 0.0));
            CHECK_OK(danu_options_set_int(o, DANU_OPT_TOP_K, 0));
            CHECK_OK(danu_options_set_float(o, DANU_OPT_TOP_P, 1.0));
            CHECK_OK(danu_options_set_float(o, DANU_OPT_MIN_P, 0.0));
            danu_context *c;
            CHECK_OK(danu_context_create(m, o, &c));
            danu_options_free(o);
            CHECK_OK(danu_context_set_constraint(c, k));
            danu_token ids[16];
            size_t n;
            CHECK_OK(danu_tokenizer_encode(tok, "JSON:", 5, DANU_TOKENIZE_ADD_BOS, ids, 16, &n));
            CHECK_OK(danu_context_prompt(c, ids, n, NULL));
            char text[8192];
            size_t w = 0;
            int32_t reason = DANU_STOP_LENGTH;
            for (int i = 0; i < 400; i++) {
                danu_token id;
                char piece[512];
                size_t len;
                int32_t r;
                CHECK_OK(danu_context_step(c, &id, piece, sizeof piece, &len, &r));
                ck_assert(w + len < sizeof text);
                memcpy(text + w, piece, len);
                w += len;
                if (r >= 0) { reason = r; break; }
            }
            size_t len;
            CHECK_OK(danu_context_step_finish(c, text + w, sizeof text - w, &len));
            w += len;
            text[w] = 0;
            char what[64];
            snprintf(what, sizeof what, "flags %u seed %d", flags, seed);
            int whole, pre;
            CHECK_OK(dn_gbnf_match(dn_alloc_libc(), fg, fl, text, w, &whole, &pre));
            CHECK(pre, "%s: \"%s\" is not a prefix of the language", what, text);
            if (reason == DANU_STOP_GRAMMAR || reason == DANU_STOP_EOS) {
                CHECK(whole, "%s: ended (%d) on \"%s\", not complete", what, reason, text);
                check_instance(text, what);
                complete++;
            } else {
                CHECK(reason == DANU_STOP_LENGTH, "%s: stop reason %d", what, reason);
            }
            runs++;
            danu_context_free(c);
        }
        done(fg);
        danu_constraint_free(k);
    }
    fprintf(stderr, "json_schema generate: %d of %d generations complete and valid\n", complete, runs);
    CHECK(complete >= runs / 2, "only %d of %d generations completed", complete, runs);
    free(g);
    danu_model_free(m);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- allocation failure ---- */

START_TEST(test_nomem)
{
    const char *schemas[] = {
        "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\",\"minimum\":-123,"
        "\"maximum\":4567},\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8},\"tags\":{\"type\":\"array\","
        "\"items\":{\"enum\":[\"a\\\"\",1.5,null,{\"k\":[true]}]},\"maxItems\":3},\"kids\":{\"type\":\"array\","
        "\"items\":{\"$ref\":\"#/$defs/node\"}},\"m\":{\"additionalProperties\":{\"type\":\"number\"}},"
        "\"any\":{}},\"required\":[\"v\",\"kids\"]}},\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}",
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"boolean\"}}}",
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"pattern\":\"x\"}}}",
        "{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}",
    };
    const danu_status final[] = { DANU_OK, DANU_OK, DANU_ERR_UNSUPPORTED, DANU_ERR_INVALID_ARG };
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        for (uint32_t flags = 0; flags < 2; flags++) {
            long k;
            char *ref = NULL;
            size_t ref_n = 0;
            ck_assert_int_eq(dn_json_schema_to_gbnf(dn_alloc_libc(), schemas[i], strlen(schemas[i]), flags, &ref, &ref_n),
                             final[i]);
            for (k = 1; k < 100000; k++) {
                memset(&g_cnt, 0, sizeof g_cnt);
                g_cnt.fail_at = k;
                char *g = (char *)1;
                size_t n = 1;
                danu_status st = dn_json_schema_to_gbnf(&g_alloc, schemas[i], strlen(schemas[i]), flags, &g, &n);
                if (g_cnt.calls < k) {   /* no failure was injected: the run is complete */
                    ck_assert_int_eq(st, final[i]);
                    if (st == DANU_OK) {
                        CHECK(n == ref_n && memcmp(g, ref, n) == 0, "output differs");
                        dn_free(&g_alloc, g);
                    }
                    CHECK(g_cnt.live == 0, "schema %zu: leaked %ld blocks", i, g_cnt.live);
                    break;
                }
                CHECK(st == DANU_ERR_NOMEM, "schema %zu, allocation %ld failed: status %d (%s)", i, k, st,
                      tu_last_error());
                CHECK(g == NULL && n == 0, "output set on NOMEM");
                CHECK(g_cnt.live == 0, "schema %zu, allocation %ld failed: leaked %ld blocks", i, k, g_cnt.live);
            }
            CHECK(k > 3 && k < 100000, "schema %zu: %ld allocations", i, k);
            dn_free(dn_alloc_libc(), ref);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json_schema");
    TCase *tc = tcase_create("json_schema");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_integer_ranges);
    tcase_add_test(tc, test_integer_bounds_forms);
    tcase_add_test(tc, test_object_optional_combinations);
    tcase_add_test(tc, test_object_forms);
    tcase_add_test(tc, test_strings);
    tcase_add_test(tc, test_arrays);
    tcase_add_test(tc, test_enum_const_types);
    tcase_add_test(tc, test_refs);
    tcase_add_test(tc, test_spaces);
    tcase_add_test(tc, test_unsupported);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_length_honoured);
    tcase_add_test(tc, test_nomem);
    suite_add_tcase(s, tc);
    tc = tcase_create("generate");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_generate);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    return failed ? 1 : 0;
}
