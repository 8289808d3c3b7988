/* test_json.c - the strict JSON parser: valid documents, the real Danube and
 * tiny-b configs, a battery of invalid inputs, truncation, allocation
 * failure. References are the RFC 8259 grammar, Unicode tables and strtod. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/json.h"
#include "common/error.h"
#include "testutil.h"

/* the counting allocator of testutil: leaks and failure injection */
static tu_counter g_cnt;
static dn_alloc g_alloc = { tu_count_malloc, tu_count_realloc, tu_count_free, &g_cnt };
static const dn_alloc *A(void) { memset(&g_cnt, 0, sizeof g_cnt); return &g_alloc; }

static dn_json *parse_ok(const char *s)
{
    dn_json *j = NULL;
    dn_clearerr();
    danu_status st = dn_json_parse(A(), s, strlen(s), "test", &j);
    ck_assert_msg(st == DANU_OK, "'%s' failed: %s", s, dn_lasterr());
    ck_assert_ptr_nonnull(j);
    return j;
}

static void done(dn_json *j)
{
    dn_json_free(&g_alloc, j);
    ck_assert_int_eq(g_cnt.live, 0);
}

/* Must fail with FORMAT, a message, no tree, no leak. */
static void parse_bad_n(const char *s, size_t n)
{
    dn_json *j = (dn_json *)1;
    dn_clearerr();
    danu_status st = dn_json_parse(A(), s, n, "bad.json", &j);
    ck_assert_msg(st == DANU_ERR_FORMAT, "accepted invalid JSON '%.*s' (status %d)", (int)n, s, st);
    ck_assert_ptr_null(j);
    ck_assert_msg(strstr(dn_lasterr(), "bad.json") != NULL, "message lacks the name: %s", dn_lasterr());
    ck_assert_int_eq(g_cnt.live, 0);
}
static void parse_bad(const char *s) { parse_bad_n(s, strlen(s)); }

START_TEST(test_json_literals_and_structure)
{
    dn_json *j = parse_ok(" { \"a\" : [ true , false , null , \"x\" , [ ] , { } ] , \"b\":{\"c\":\"d\"}}\r\n\t");
    ck_assert_int_eq(j->type, DN_JSON_OBJECT);
    ck_assert_uint_eq(j->n, 2);
    ck_assert_str_eq(j->keys[0], "a");
    ck_assert_str_eq(j->keys[1], "b");
    const dn_json *a = dn_json_get(j, "a");
    ck_assert_int_eq(a->type, DN_JSON_ARRAY);
    ck_assert_uint_eq(a->n, 6);
    ck_assert_int_eq(a->items[0].type, DN_JSON_BOOL);
    ck_assert_int_eq(a->items[0].boolean, 1);
    ck_assert_int_eq(a->items[1].type, DN_JSON_BOOL);
    ck_assert_int_eq(a->items[1].boolean, 0);
    ck_assert_int_eq(a->items[2].type, DN_JSON_NULL);
    ck_assert_int_eq(a->items[3].type, DN_JSON_STRING);
    ck_assert_str_eq(a->items[3].str, "x");
    ck_assert_int_eq(a->items[4].type, DN_JSON_ARRAY);
    ck_assert_uint_eq(a->items[4].n, 0);
    ck_assert_int_eq(a->items[5].type, DN_JSON_OBJECT);
    ck_assert_uint_eq(a->items[5].n, 0);
    ck_assert_str_eq(dn_json_get_str(dn_json_get(j, "b"), "c"), "d");
    ck_assert_ptr_null(dn_json_get(j, "zz"));
    ck_assert_ptr_null(dn_json_get(a, "a")); /* not an object */
    int b;
    ck_assert(!dn_json_get_bool(j, "a", &b));
    done(j);

    /* scalars at the top level */
    j = parse_ok("\"top\"");
    ck_assert_int_eq(j->type, DN_JSON_STRING);
    ck_assert_str_eq(j->str, "top");
    done(j);
    j = parse_ok("null");
    ck_assert_int_eq(j->type, DN_JSON_NULL);
    done(j);
    j = parse_ok(" 7 ");
    ck_assert_int_eq(j->type, DN_JSON_NUMBER);
    ck_assert_int_eq(j->integer, 7);
    done(j);
}
END_TEST

START_TEST(test_json_numbers)
{
    static const struct { const char *text; int is_int; int64_t i; } ints[] = {
        { "0", 1, 0 }, { "-0", 1, 0 }, { "123", 1, 123 }, { "-45", 1, -45 },
        { "9223372036854775807", 1, INT64_MAX }, { "-9223372036854775808", 1, INT64_MIN },
        { "9223372036854775808", 0, 0 }, { "-9223372036854775809", 0, 0 },
        { "1000000000000000019884624838656", 0, 0 }, { "1.0", 0, 0 }, { "1e2", 0, 0 },
    };
    char buf[128];
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        snprintf(buf, sizeof buf, "{\"v\":%s}", ints[k].text);
        dn_json *j = parse_ok(buf);
        const dn_json *v = dn_json_get(j, "v");
        ck_assert_int_eq(v->type, DN_JSON_NUMBER);
        ck_assert_msg(v->is_integer == ints[k].is_int, "%s is_integer %d", ints[k].text, v->is_integer);
        if (ints[k].is_int) ck_assert_msg(v->integer == ints[k].i, "%s -> %lld", ints[k].text, (long long)v->integer);
        ck_assert_msg(v->number == strtod(ints[k].text, NULL), "%s -> %.17g", ints[k].text, v->number);
        done(j);
    }
    /* doubles: must equal the correctly rounded strtod value bit for bit */
    static const char *const dbl[] = {
        "1e-05", "1e-5", "0.02", "10000.0", "2.5E+3", "-0.0", "3.141592653589793",
        "0.1", "-1.5e-300", "4.9e-324", "1.7976931348623157e308", "123456789012345678901234567890.5",
        "0.000000000000000000000000000001", "9007199254740993", "9007199254740993.0", "1e22", "1e23",
        "12345678901234567890e-10", "0e5", "0.0000", "5e-1", "100000000000000000000000e-30",
    };
    for (size_t k = 0; k < sizeof dbl / sizeof dbl[0]; k++) {
        dn_json *j = parse_ok(dbl[k]);
        double want = strtod(dbl[k], NULL);
        ck_assert_int_eq(j->type, DN_JSON_NUMBER);
        ck_assert_msg(memcmp(&j->number, &want, sizeof want) == 0, "%s -> %.17g, want %.17g", dbl[k], j->number, want);
        done(j);
    }
    /* getters: get_num takes any number, get_int only integral values */
    dn_json *j = parse_ok("{\"i\":16384,\"f\":16384.0,\"h\":0.5,\"big\":1e30,\"s\":\"3\",\"t\":true}");
    int64_t i;
    double d;
    int b;
    ck_assert(dn_json_get_int(j, "i", &i) && i == 16384);
    ck_assert(dn_json_get_int(j, "f", &i) && i == 16384);
    ck_assert(!dn_json_get_int(j, "h", &i));
    ck_assert(!dn_json_get_int(j, "big", &i));
    ck_assert(!dn_json_get_int(j, "s", &i));
    ck_assert(dn_json_get_num(j, "h", &d) && d == 0.5);
    ck_assert(dn_json_get_num(j, "i", &d) && d == 16384.0);
    ck_assert(!dn_json_get_num(j, "s", &d));
    ck_assert(dn_json_get_bool(j, "t", &b) && b == 1);
    ck_assert_str_eq(dn_json_get_str(j, "s"), "3");
    ck_assert_ptr_null(dn_json_get_str(j, "i"));
    done(j);
}
END_TEST

START_TEST(test_json_strings)
{
    /* escapes; expected bytes from the RFC 8259 escape table and UTF-8 */
    dn_json *j = parse_ok("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u0041\\u00e9\\u20AC\\ud83d\\ude00\\uDBFF\\uDFFF\\u0000z\"");
    static const char want[] = "q\" b\\ s/ \b\f\n\r\t A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\0z";
    ck_assert_uint_eq(j->str_len, sizeof want - 1);
    ck_assert(memcmp(j->str, want, sizeof want) == 0); /* includes the terminating NUL */
    done(j);
    /* raw UTF-8 passes through: 2, 3, 4-byte forms, edges of the tables */
    static const char raw[] = "\"\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf \x7f\"";
    j = parse_ok(raw);
    ck_assert_uint_eq(j->str_len, sizeof raw - 3);
    ck_assert(memcmp(j->str, raw + 1, sizeof raw - 3) == 0);
    done(j);
    /* empty string and empty key */
    j = parse_ok("{\"\":\"\"}");
    ck_assert_str_eq(j->keys[0], "");
    ck_assert_uint_eq(j->items[0].str_len, 0);
    done(j);
    /* escaped key is decoded */
    j = parse_ok("{\"a\\u0062c\":1}");
    ck_assert(dn_json_get(j, "abc") != NULL);
    done(j);
}
END_TEST

START_TEST(test_json_nesting_and_duplicates)
{
    char buf[200];
    for (int depth = 63; depth <= 66; depth++) {
        for (int k = 0; k < depth; k++) { buf[k] = '['; buf[2 * depth - 1 - k] = ']'; }
        dn_json *j = NULL;
        danu_status st = dn_json_parse(A(), buf, (size_t)(2 * depth), "deep", &j);
        if (depth <= 64) {
            ck_assert_msg(st == DANU_OK, "depth %d: %s", depth, dn_lasterr());
            const dn_json *v = j;
            int d = 1;
            while (v->n) { v = &v->items[0]; d++; }
            ck_assert_int_eq(d, depth);
            done(j);
        } else {
            ck_assert_int_eq(st, DANU_ERR_FORMAT);
            ck_assert_ptr_null(j);
            ck_assert_int_eq(g_cnt.live, 0);
        }
    }
    /* objects nest too: 65 levels of {"a": ...} fail */
    char obj[65 * 6 + 70];
    size_t n = 0;
    for (int k = 0; k < 65; k++) { memcpy(obj + n, "{\"a\":", 5); n += 5; }
    obj[n++] = '1';
    for (int k = 0; k < 65; k++) obj[n++] = '}';
    parse_bad_n(obj, n);
    dn_json *j64 = NULL; /* drop the outermost level: 64 is fine */
    ck_assert_int_eq(dn_json_parse(A(), obj + 5, n - 6, "ok", &j64), DANU_OK);
    ck_assert_int_eq(dn_json_get(dn_json_get(j64, "a"), "a")->type, DN_JSON_OBJECT);
    done(j64);

    /* duplicate keys: last wins, in small and in large objects */
    dn_json *j = parse_ok("{\"a\":1,\"b\":[1,2],\"a\":{\"x\":\"y\"},\"c\":3,\"b\":\"last\"}");
    ck_assert_uint_eq(j->n, 3);
    ck_assert_int_eq(dn_json_get(j, "a")->type, DN_JSON_OBJECT);
    ck_assert_str_eq(dn_json_get_str(j, "b"), "last");
    done(j);
    char big[4096];
    n = (size_t)snprintf(big, sizeof big, "{");
    for (int k = 0; k < 40; k++) n += (size_t)snprintf(big + n, sizeof big - n, "\"k%d\":%d,", k % 25, k);
    big[n - 1] = '}';
    big[n] = 0;
    j = parse_ok(big);
    ck_assert_uint_eq(j->n, 25);
    for (int k = 0; k < 25; k++) {
        char key[8];
        int64_t v;
        snprintf(key, sizeof key, "k%d", k);
        ck_assert(dn_json_get_int(j, key, &v));
        ck_assert_int_eq(v, k < 15 ? k + 25 : k); /* 0..14 were written twice */
    }
    done(j);
}
END_TEST

static dn_json *parse_file(const char *rel, char **text_out, size_t *len_out)
{
    size_t len;
    char *text = (char *)tu_read(tu_data(rel), &len);
    ck_assert_msg(text != NULL, "cannot read %s", rel);
    dn_json *j = NULL;
    danu_status st = dn_json_parse(A(), text, len, rel, &j);
    ck_assert_msg(st == DANU_OK, "%s: %s", rel, dn_lasterr());
    if (text_out) { *text_out = text; *len_out = len; } else free(text);
    return j;
}

START_TEST(test_json_real_configs)
{
    int64_t i;
    double d;
    int b;
    dn_json *j = parse_file("danube/base-config.json", NULL, NULL);
    ck_assert(dn_json_get_int(j, "hidden_size", &i) && i == 2560);
    ck_assert(dn_json_get_int(j, "intermediate_size", &i) && i == 6912);
    ck_assert(dn_json_get_int(j, "num_hidden_layers", &i) && i == 24);
    ck_assert(dn_json_get_int(j, "num_key_value_heads", &i) && i == 8);
    ck_assert(dn_json_get_int(j, "sliding_window", &i) && i == 4096);
    ck_assert(dn_json_get_num(j, "rms_norm_eps", &d) && d == 1e-5);
    ck_assert(dn_json_get_bool(j, "tie_word_embeddings", &b) && b == 0);
    ck_assert_int_eq(dn_json_get(j, "rope_scaling")->type, DN_JSON_NULL);
    ck_assert_str_eq(dn_json_get_str(j, "_name_or_path"), "h2oai/h2o-danube-1.8b-base");
    const dn_json *arch = dn_json_get(j, "architectures");
    ck_assert(arch && arch->type == DN_JSON_ARRAY && arch->n == 1);
    ck_assert_str_eq(arch->items[0].str, "MistralForCausalLM");
    done(j);

    j = parse_file("danube/chat-config.json", NULL, NULL);
    ck_assert(dn_json_get_num(j, "rope_theta", &d) && d == 10000.0);
    ck_assert(dn_json_get_int(j, "pad_token_id", &i) && i == 0);
    ck_assert(dn_json_get_int(j, "vocab_size", &i) && i == 32000);
    done(j);

    j = parse_file("danube/generation_config.json", NULL, NULL);
    ck_assert(dn_json_get_num(j, "repetition_penalty", &d) && d == 1.1);
    ck_assert(dn_json_get_bool(j, "_from_model_config", &b) && b == 1);
    done(j);

    j = parse_file("danube/tokenizer_config.json", NULL, NULL);
    const char *tmpl = dn_json_get_str(j, "chat_template");
    ck_assert_ptr_nonnull(tmpl);
    ck_assert(strncmp(tmpl, "{% for message", 14) == 0);
    ck_assert(strstr(tmpl, "'<|answer|>'  + message['content']") != NULL);
    const dn_json *mml = dn_json_get(j, "model_max_length");
    ck_assert_int_eq(mml->type, DN_JSON_NUMBER);
    ck_assert_int_eq(mml->is_integer, 0);
    ck_assert(mml->number == 1e30); /* the double nearest 1000000000000000019884624838656 */
    ck_assert(!dn_json_get_int(j, "model_max_length", &i));
    ck_assert_int_eq(dn_json_get(j, "sp_model_kwargs")->type, DN_JSON_OBJECT);
    ck_assert_str_eq(dn_json_get_str(j, "bos_token"), "<s>");
    done(j);

    j = parse_file("tiny-b-hf/config.json", NULL, NULL);
    ck_assert(dn_json_get_int(j, "hidden_size", &i) && i == 256);
    ck_assert(dn_json_get_int(j, "head_dim", &i) && i == 32);
    ck_assert(dn_json_get_int(j, "sliding_window", &i) && i == 8);
    ck_assert(dn_json_get_bool(j, "tie_word_embeddings", &b) && b == 1);
    ck_assert(dn_json_get_num(dn_json_get(j, "rope_parameters"), "rope_theta", &d) && d == 10000.0);
    ck_assert_str_eq(dn_json_get_str(dn_json_get(j, "rope_parameters"), "rope_type"), "default");
    ck_assert_int_eq(dn_json_get(j, "pad_token_id")->type, DN_JSON_NULL);
    done(j);
}
END_TEST

START_TEST(test_json_invalid_battery)
{
    static const char *const bad[] = {
        "", " ", "{", "}", "[", "]", "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{,}", "{\"a\"}", "{\"a\":}",
        "{\"a\" 1}", "{a:1}", "{'a':1}", "{\"a\":1 \"b\":2}", "[1]]", "{}{}", "1 2", "[1] x", "nul", "nulll",
        "True", "NaN", "Infinity", "-Infinity", "+1", "01", "-01", "00", "1.", ".5", "1.e5", "1e", "1e+", "-",
        "0x10", "1e400", "-1e400", "\"abc", "\"\\\"", "\"\\x41\"", "\"\\a\"", "\"\\'\"", "\"\\u12\"",
        "\"\\u12G4\"", "\"\\U0041\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800\\ud800\"",
        "\"\\ud800x\"", "\"\\udfff\\ud800\"", "\"a\tb\"", "\"a\nb\"", "\"\x01\"", "\"\x1f\"",
        "\"\x80\"", "\"\xc0\xaf\"", "\"\xc1\xbf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
        "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\"\xc3\"", "\"\xe2\x82\"", "\"\xf0\x9f\x98\"", "\"\xc3(\"",
        "\xef\xbb\xbf{}", "[\x0c]", "[\v1]", "\xe9", "[\"a\",]", "[1,,2]", "{\"a\"::1}",
        "tru", "fals", "[true false]", "/* c */ {}", "{} // c",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) parse_bad(bad[k]);
    parse_bad_n("{\"a\":1}\0", 8);   /* NUL after the document */
    parse_bad_n("\"a\0b\"", 5);      /* raw NUL inside a string */
    parse_bad_n("[1,\0]", 5);

    /* the message names the byte offset of the error */
    dn_json *j;
    ck_assert_int_eq(dn_json_parse(A(), "{\"a\":1,}", 8, "cfg.json", &j), DANU_ERR_FORMAT);
    ck_assert_msg(strstr(dn_lasterr(), "cfg.json") && strstr(dn_lasterr(), "byte 7"), "%s", dn_lasterr());
    ck_assert_int_eq(dn_json_parse(A(), "[\"ok\", \"\\q\"]", 12, "x", &j), DANU_ERR_FORMAT);
    ck_assert_msg(strstr(dn_lasterr(), "byte 8"), "%s", dn_lasterr());
    ck_assert_int_eq(dn_json_parse(A(), "[1, 2, 03]", 10, "x", &j), DANU_ERR_FORMAT);
    ck_assert_msg(strstr(dn_lasterr(), "byte 7"), "%s", dn_lasterr());
    ck_assert_int_eq(g_cnt.live, 0);

    /* arguments */
    ck_assert_int_eq(dn_json_parse(A(), NULL, 3, "x", &j), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(dn_json_parse(A(), "{}", 2, "x", NULL), DANU_ERR_INVALID_ARG);
}
END_TEST

/* Every proper prefix of a real config up to its closing brace is invalid;
 * and a 0x01 byte (never valid JSON, inside or outside strings) anywhere
 * must be rejected. */
START_TEST(test_json_truncate_and_poison_real_files)
{
    static const char *const files[] = {
        "danube/base-config.json", "danube/chat-config.json", "danube/generation_config.json",
        "danube/tokenizer_config.json", "tiny-b-hf/config.json", "tiny-b-hf/model.safetensors.index.json",
    };
    long cases = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len;
        char *text = (char *)tu_read(tu_data(files[f]), &len);
        ck_assert_ptr_nonnull(text);
        size_t last = len;
        while (last > 0 && text[last - 1] != '}') last--;
        ck_assert(last > 0);
        for (size_t n = 0; n < len; n++) {
            char *copy = malloc(n ? n : 1); /* exact size: valgrind sees any read past the end */
            memcpy(copy, text, n);
            dn_json *j = NULL;
            danu_status st = dn_json_parse(A(), copy, n, files[f], &j);
            if (n < last) {
                ck_assert_msg(st == DANU_ERR_FORMAT, "%s truncated to %zu accepted", files[f], n);
                ck_assert(dn_lasterr()[0] != 0);
            } else {
                ck_assert_int_eq(st, DANU_OK);
                dn_json_free(&g_alloc, j);
            }
            ck_assert_int_eq(g_cnt.live, 0);
            free(copy);
            cases++;
        }
        for (size_t p = 0; p < len; p++) {
            char saved = text[p];
            text[p] = 1;
            parse_bad_n(text, len);
            text[p] = saved;
            cases++;
        }
        free(text);
    }
    ck_assert(cases > 5000);
}
END_TEST

/* Fail the k-th allocation for every k: NOMEM, nothing leaked, until the
 * parse needs fewer allocations than k and succeeds. */
START_TEST(test_json_nomem)
{
    size_t len;
    char *text = (char *)tu_read(tu_data("danube/tokenizer_config.json"), &len);
    ck_assert_ptr_nonnull(text);
    /* append a large object so the sorted duplicate check allocates too */
    char doc[8192];
    int n = snprintf(doc, sizeof doc, "[%.*s,{", (int)len, text);
    for (int k = 0; k < 30; k++) n += snprintf(doc + n, sizeof doc - (size_t)n, "\"k%d\":[%d,\"\\u00e9\"],", k % 20, k);
    doc[n - 1] = '}';
    doc[n++] = ']';
    free(text);
    long k;
    for (k = 1; k < 100000; k++) {
        memset(&g_cnt, 0, sizeof g_cnt);
        g_cnt.fail_at = k;
        dn_json *j = NULL;
        danu_status st = dn_json_parse(&g_alloc, doc, (size_t)n, "nomem", &j);
        if (st == DANU_OK) {
            ck_assert_int_eq(dn_json_get(&j->items[1], "k3")->items[0].integer, 23);
            dn_json_free(&g_alloc, j);
            ck_assert_int_eq(g_cnt.live, 0);
            break;
        }
        ck_assert_int_eq(st, DANU_ERR_NOMEM);
        ck_assert_ptr_null(j);
        ck_assert_int_eq(g_cnt.live, 0);
    }
    ck_assert_msg(k > 50 && k < 100000, "allocations: %ld", k);
}
END_TEST

START_TEST(test_json_size_limit)
{
    size_t lim = (size_t)64 << 20;
    char *buf = malloc(lim + 1);
    ck_assert_ptr_nonnull(buf);
    memset(buf, ' ', lim + 1);
    buf[0] = '0';
    dn_json *j = NULL;
    ck_assert_int_eq(dn_json_parse(A(), buf, lim, "limit", &j), DANU_OK); /* exactly 64 MiB */
    ck_assert_int_eq(j->integer, 0);
    done(j);
    j = NULL;
    ck_assert_int_eq(dn_json_parse(A(), buf, lim + 1, "limit", &j), DANU_ERR_FORMAT);
    ck_assert_ptr_null(j);
    ck_assert(strstr(dn_lasterr(), "limit") != NULL);
    ck_assert_int_eq(g_cnt.live, 0);
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("json");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_json_literals_and_structure);
    tcase_add_test(tc, test_json_numbers);
    tcase_add_test(tc, test_json_strings);
    tcase_add_test(tc, test_json_nesting_and_duplicates);
    tcase_add_test(tc, test_json_real_configs);
    tcase_add_test(tc, test_json_invalid_battery);
    tcase_add_test(tc, test_json_truncate_and_poison_real_files);
    tcase_add_test(tc, test_json_nomem);
    tcase_add_test(tc, test_json_size_limit);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    return failed ? 1 : 0;
}
