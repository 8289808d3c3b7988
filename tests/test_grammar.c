/* test_grammar.c - constrained output (danu.h "Constrained output").
 * - acceptance: per GBNF construct, strings that must be whole strings of
 *   the language, prefixes only, or neither (expectations written by hand
 *   from the GBNF documentation);
 * - errors: syntax errors name line and column; undefined rules, left
 *   recursion, rules that never end are refused; nothing loops;
 * - masks: along random walks through real vocabularies (Llama 2's, 32000
 *   tokens), the trie-walk mask equals the token-by-token mask at every
 *   step, also where the decoder drops a leading space;
 * - generation with tiny-a (random weights pick odd tokens): every
 *   constrained output is a whole string of the language, greedy picks the
 *   highest-logit allowed token, the same tokens alone and in a batch;
 * - allocation failures in compile leak nothing and report NOMEM. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"
#include "grammar/grammar.h"
#include "grammar/constraint.h"
#include "gen/context.h"
#include "text/tokenizer.h"
#include "common/alloc.h"
#include "common/error.h"

static char *tmp;
static const char *tiny_a_path;
static danu_tokenizer *llama;

/* ---- acceptance ---------------------------------------------------------- */

enum { NO = 0, PREFIX = 1, WHOLE = 2 };

static int match(const char *g, const char *text, size_t tlen)
{
    int complete, prefix;
    danu_status s = dn_gbnf_match(dn_alloc_libc(), g, strlen(g), text, tlen, &complete, &prefix);
    ck_assert_msg(s == DANU_OK, "grammar failed: %s\n%s", dn_lasterr(), g);
    return complete ? WHOLE : prefix ? PREFIX : NO;
}

typedef struct acase { const char *text; int want; } acase;

static void expect_all(const char *g, const acase *c)
{
    for (; c->text; c++) {
        int got = match(g, c->text, strlen(c->text));
        ck_assert_msg(got == c->want, "grammar %s: \"%s\" gave %d, want %d", g, c->text, got, c->want);
    }
}

START_TEST(accept_literals_and_sequences)
{
    expect_all("root ::= \"abc\"", (acase[]){ { "abc", WHOLE }, { "ab", PREFIX }, { "", PREFIX }, { "abd", NO },
                                             { "abcd", NO }, { NULL, 0 } });
    expect_all("root ::= \"a\" \"b\" c\nc ::= \"c\"", (acase[]){ { "abc", WHOLE }, { "ac", NO }, { NULL, 0 } });
    expect_all("root ::= \"\"", (acase[]){ { "", WHOLE }, { "a", NO }, { NULL, 0 } });
    /* UTF-8 literals: a prefix may stop inside a character */
    expect_all("root ::= \"h\xc3\xa9 \xf0\x9f\x98\x80\"",
               (acase[]){ { "h\xc3\xa9 \xf0\x9f\x98\x80", WHOLE }, { "h\xc3", PREFIX }, { "h\xc3\xa9 \xf0\x9f", PREFIX },
                          { "h\xc3\xa8", NO }, { "h\xc3\xa9 \xf0\x9f\x98\x81", NO }, { NULL, 0 } });
}
END_TEST

START_TEST(accept_alternatives_groups)
{
    const char *g = "root ::= \"cat\" | \"car\" | \"dog\" ( \"s\" | \"gy\" )\n";
    expect_all(g, (acase[]){ { "cat", WHOLE }, { "car", WHOLE }, { "dogs", WHOLE }, { "doggy", WHOLE },
                             { "dog", PREFIX }, { "ca", PREFIX }, { "cats", NO }, { "dogsgy", NO }, { NULL, 0 } });
    /* groups span lines; alternatives continue after | on the next line */
    g = "root ::= (\n  \"a\" |\n  \"b\"\n) \"c\"   # comment\n# another\n";
    expect_all(g, (acase[]){ { "ac", WHOLE }, { "bc", WHOLE }, { "c", NO }, { NULL, 0 } });
    /* an empty alternative */
    expect_all("root ::= \"x\" ( | \"y\" )", (acase[]){ { "x", WHOLE }, { "xy", WHOLE }, { "xyy", NO }, { NULL, 0 } });
}
END_TEST

START_TEST(accept_repetitions)
{
    expect_all("root ::= \"a\"?  \"b\"", (acase[]){ { "b", WHOLE }, { "ab", WHOLE }, { "aab", NO }, { NULL, 0 } });
    expect_all("root ::= \"ab\"*", (acase[]){ { "", WHOLE }, { "ab", WHOLE }, { "abab", WHOLE }, { "aba", PREFIX },
                                             { "abb", NO }, { NULL, 0 } });
    expect_all("root ::= [0-9]+ \".\"", (acase[]){ { "7.", WHOLE }, { "123.", WHOLE }, { ".", NO }, { "12", PREFIX },
                                                    { NULL, 0 } });
    expect_all("root ::= \"x\"{3}", (acase[]){ { "xxx", WHOLE }, { "xx", PREFIX }, { "xxxx", NO }, { NULL, 0 } });
    expect_all("root ::= \"x\"{2,}", (acase[]){ { "x", PREFIX }, { "xx", WHOLE }, { "xxxxxxx", WHOLE }, { NULL, 0 } });
    expect_all("root ::= \"x\"{1,3} \"y\"", (acase[]){ { "y", NO }, { "xy", WHOLE }, { "xxxy", WHOLE }, { "xxxx", NO },
                                                         { NULL, 0 } });
    expect_all("root ::= \"x\"{,2}", (acase[]){ { "", WHOLE }, { "xx", WHOLE }, { "xxx", NO }, { NULL, 0 } });
    expect_all("root ::= (\"a\" \"b\"?){2}", (acase[]){ { "aa", WHOLE }, { "aba", WHOLE }, { "abab", WHOLE },
                                                          { "abb", NO }, { NULL, 0 } });
    /* nested repetitions of a group */
    expect_all("root ::= (\"a\"+ \",\")* \"!\"", (acase[]){ { "!", WHOLE }, { "a,aa,!", WHOLE }, { ",!", NO },
                                                              { NULL, 0 } });
}
END_TEST

START_TEST(accept_classes)
{
    expect_all("root ::= [a-cx]", (acase[]){ { "a", WHOLE }, { "c", WHOLE }, { "x", WHOLE }, { "d", NO }, { NULL, 0 } });
    expect_all("root ::= [^a-c\\n]", (acase[]){ { "d", WHOLE }, { "a", NO }, { "\n", NO }, { "\xc3\xa9", WHOLE },
                                                  { "\xf0\x9f\x98\x80", WHOLE }, { NULL, 0 } });
    expect_all("root ::= .", (acase[]){ { "z", WHOLE }, { "\xe4\xb8\xad", WHOLE }, { "\xe4\xb8", PREFIX },
                                         { "\xff", NO }, { "\xc0\x80", NO }, { "\xed\xa0\x80", NO }, { NULL, 0 } });
    /* a range of multi-byte characters: prefixes only where a character of it can follow */
    expect_all("root ::= [\xce\xb1-\xcf\x89]", (acase[]){ { "\xce\xb1", WHOLE }, { "\xcf\x89", WHOLE }, { "\xce", PREFIX },
                                                          { "\xcf\x8a", NO }, { "\xd0", NO }, { NULL, 0 } });
    /* '-' first or last is literal; ] escaped */
    expect_all("root ::= [-a\\]]+", (acase[]){ { "-", WHOLE }, { "a]-", WHOLE }, { "b", NO }, { NULL, 0 } });
    expect_all("root ::= [a-]", (acase[]){ { "-", WHOLE }, { "a", WHOLE }, { "b", NO }, { NULL, 0 } });
}
END_TEST

START_TEST(accept_escapes)
{
    expect_all("root ::= \"\\x41\\u00e9\\U0001F600\\t\\n\\r\\\\\\\"\\[\\]\"",
               (acase[]){ { "A\xc3\xa9\xf0\x9f\x98\x80\t\n\r\\\"[]", WHOLE }, { "A\xc3\xa9", PREFIX }, { NULL, 0 } });
    expect_all("root ::= [\\x00-\\x1f]", (acase[]){ { "\x01", WHOLE }, { " ", NO }, { NULL, 0 } });
    /* text with a NUL byte: U+0000 is a character like any other */
    ck_assert_int_eq(match("root ::= \"a\\x00b\"", "a\0b", 3), WHOLE);
}
END_TEST

START_TEST(accept_recursion)
{
    /* balanced parentheses: right recursion through a group */
    const char *g = "root ::= item*\nitem ::= \"(\" root \")\"\n";
    expect_all(g, (acase[]){ { "", WHOLE }, { "()", WHOLE }, { "(())()", WHOLE }, { "((", PREFIX }, { "())", NO },
                             { NULL, 0 } });
    /* a rule used before it is defined, nullable rules in sequence */
    g = "root ::= ws \"[\" ws (val (ws \",\" ws val)*)? ws \"]\"\nval ::= [0-9]+\nws ::= [ ]*\n";
    expect_all(g, (acase[]){ { "[]", WHOLE }, { " [ 1 , 22 ]", WHOLE }, { "[1,]", NO }, { "[1 2]", NO }, { NULL, 0 } });
}
END_TEST

/* A generic JSON grammar in the style of llama.cpp's json.gbnf. */
static const char *json_gbnf =
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::=\n"
    "  \"{\" ws (\n"
    "            string \":\" ws value\n"
    "    (\",\" ws string \":\" ws value)*\n"
    "  )? \"}\" ws\n"
    "array  ::=\n"
    "  \"[\" ws (\n"
    "            value\n"
    "    (\",\" ws value)*\n"
    "  )? \"]\" ws\n"
    "string ::=\n"
    "  \"\\\"\" (\n"
    "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
    "    \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n"
    "  )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

START_TEST(accept_json)
{
    expect_all(json_gbnf, (acase[]){ { "{}", WHOLE }, { "{\"a\": [1, 2.5e3, \"x\\n\", true, null, {}]}", WHOLE },
                                     { "{\"a\":", PREFIX }, { "{\"a\" 1}", NO }, { "[1]", NO },
                                     { "{\"\xc3\xa9\\u00e9\": -0.5}", WHOLE }, { "{\"a\":01}", NO }, { NULL, 0 } });
}
END_TEST

/* ---- errors ---------------------------------------------------------------- */

static void expect_error(const char *g, danu_status want, const char *needle)
{
    dn_grammar *out = (dn_grammar *)1;
    danu_status s = dn_gbnf_parse(dn_alloc_libc(), g, strlen(g), NULL, &out);
    ck_assert_msg(s == want, "grammar %s: status %d (%s), want %d", g, s, dn_lasterr(), want);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(dn_lasterr(), needle), "grammar %s: message \"%s\" lacks \"%s\"", g, dn_lasterr(), needle);
}

START_TEST(errors_named)
{
    expect_error("root ::= \"a\"\nx ::= \"b\" [c", DANU_ERR_INVALID_ARG, "line 2, column 11");
    expect_error("root ::= \"abc", DANU_ERR_INVALID_ARG, "line 1, column 10: unterminated string");
    expect_error("root ::= (\"a\"", DANU_ERR_INVALID_ARG, "expected ')'");
    expect_error("root ::= \"a\")", DANU_ERR_INVALID_ARG, "unmatched ')'");
    expect_error("root = \"a\"", DANU_ERR_INVALID_ARG, "expected '::='");
    expect_error("root ::= \"\\q\"", DANU_ERR_INVALID_ARG, "unknown escape");
    expect_error("root ::= \"\\xZ1\"", DANU_ERR_INVALID_ARG, "bad hex escape");
    expect_error("root ::= [z-a]", DANU_ERR_INVALID_ARG, "reversed");
    expect_error("root ::= *", DANU_ERR_INVALID_ARG, "without an item");
    expect_error("root ::= \"a\"{3,2}", DANU_ERR_INVALID_ARG, "maximum below minimum");
    expect_error("root ::= foo\n", DANU_ERR_INVALID_ARG, "line 1, column 10: undefined rule 'foo'");
    expect_error("other ::= \"a\"\n", DANU_ERR_INVALID_ARG, "no rule named 'root'");
    expect_error("root ::= \"a\"\nroot ::= \"b\"\n", DANU_ERR_INVALID_ARG, "defined twice");
    expect_error("root ::= [^\\x00-\\U0010FFFF]", DANU_ERR_INVALID_ARG, "matches nothing");
    expect_error("root ::= <think>", DANU_ERR_INVALID_ARG, "not supported");
    /* left recursion, direct, indirect, and through a nullable prefix */
    expect_error("root ::= root \"a\" | \"b\"", DANU_ERR_INVALID_ARG, "left-recursive");
    expect_error("root ::= a\na ::= b \"x\" | \"y\"\nb ::= root \"z\"", DANU_ERR_INVALID_ARG, "left-recursive");
    expect_error("root ::= n root \"a\" | \"b\"\nn ::= \"\" | \"c\"", DANU_ERR_INVALID_ARG, "left-recursive");
    expect_error("root ::= (\"a\"?)*", DANU_ERR_INVALID_ARG, "left-recursive");
    /* never ends */
    expect_error("root ::= \"a\" root", DANU_ERR_INVALID_ARG, "can never end");
    /* too large */
    expect_error("root ::= \"a\"{600000} \"b\"{600000}", DANU_ERR_UNSUPPORTED, "elements");
    /* bad UTF-8 in the grammar */
    dn_grammar *g;
    ck_assert_int_eq(dn_gbnf_parse(dn_alloc_libc(), "root ::= \"\xff\"", 13, NULL, &g), DANU_ERR_BAD_UTF8);
}
END_TEST

START_TEST(errors_public)
{
    danu_constraint *c = (danu_constraint *)1;
    ck_assert_int_eq(danu_constraint_from_grammar(llama, "root ::= (", 10, NULL, &c), DANU_ERR_INVALID_ARG);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(danu_last_error(), "line 1, column"));
    ck_assert_int_eq(danu_constraint_from_grammar(NULL, "root ::= \"a\"", 12, NULL, &c), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_constraint_from_grammar(llama, "x ::= \"a\"", 9, "x", &c), DANU_OK);
    danu_constraint_free(c);
    ck_assert_int_eq(danu_constraint_from_choices(llama, (const char *[]){ "a", "" }, 2, &c), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_constraint_from_choices(llama, (const char *[]){ "a" }, 0, &c), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_constraint_from_choices(llama, (const char *[]){ "\xc3" }, 1, &c), DANU_ERR_BAD_UTF8);
    danu_constraint_free(NULL);
}
END_TEST

/* ---- masks: trie walk against token by token ------------------------------ */

static int bit(const uint32_t *m, int32_t id) { return (m[id >> 5] >> (id & 31)) & 1; }

/* Walk randomly from the start for up to `steps` tokens, comparing masks at
 * every step; returns the number of steps taken. */
static int walk_compare(danu_constraint *c, uint64_t seed, int steps, int strip_first, size_t cache_limit)
{
    int32_t n = danu_tokenizer_vocab_size(llama);
    size_t words = (size_t)(n + 31) / 32;
    uint32_t *slow = malloc(words * 4);
    int32_t *allowed = malloc((size_t)n * sizeof *allowed);
    dn_matcher *m;
    ck_assert_int_eq(dn_matcher_create(c, dn_alloc_libc(), &m), DANU_OK);
    if (cache_limit) dn_matcher_set_cache_limit(m, cache_limit);
    int k = 0;
    for (; k < steps; k++) {
        int strip = strip_first && k == 0;
        const uint32_t *fast;
        ck_assert_int_eq(dn_matcher_mask(m, strip, &fast), DANU_OK);
        ck_assert_int_eq(dn_matcher_mask_slow(m, strip, slow), DANU_OK);
        int32_t na = 0;
        for (int32_t id = 0; id < n; id++) {
            ck_assert_msg(bit(fast, id) == bit(slow, id), "seed %llu step %d token %d: trie %d, slow %d",
                          (unsigned long long)seed, k, id, bit(fast, id), bit(slow, id));
            if (bit(fast, id) && id != dn_tokenizer_eos(llama)) allowed[na++] = id;
        }
        if (dn_matcher_state(m) == DANU_CONSTRAINT_FINISHED) { ck_assert_int_eq(na, 0); break; }
        ck_assert_msg(na > 0, "seed %llu step %d: no token allowed in an open state", (unsigned long long)seed, k);
        /* prefer byte tokens now and then: they split characters */
        int32_t pick = allowed[tu_rand_u32(&seed) % (uint32_t)na];
        ck_assert_int_eq(dn_matcher_accept(m, pick, strip), DANU_OK);
    }
    dn_matcher_free(m);
    free(slow);
    free(allowed);
    return k;
}

START_TEST(masks_equal_brute_force)
{
    const char *grammars[] = {
        json_gbnf,
        "root ::= \"attack\" | \"defend\" | \"flee\" | \"talk to \" [A-Z] [a-z]+ | \"\xe2\x82\xac\" [0-9]{1,3}\n",
        "root ::= ([\xe4\xb8\x80-\xe9\xbf\xbf] | [\xf0\x9f\x98\x80-\xf0\x9f\x99\x8f] | \" \")+ \"!\"\n",
        "root ::= \"  two spaces\" [^\\n]{0,10} \"\\n\"\n",
    };
    for (size_t i = 0; i < sizeof grammars / sizeof *grammars; i++) {
        danu_constraint *c;
        ck_assert_msg(danu_constraint_from_grammar(llama, grammars[i], strlen(grammars[i]), NULL, &c) == DANU_OK,
                      "%s", danu_last_error());
        for (uint64_t seed = 1; seed <= 3; seed++) walk_compare(c, seed * 7919 + i, 12, seed == 2, 0);
        /* caches dropped before every mask: the position survives them */
        walk_compare(c, 4 * 7919 + i, 12, 0, 1);
        danu_constraint_free(c);
    }
}
END_TEST

/* ---- generation with tiny-a ----------------------------------------------------- */

static danu_model *tiny_model(void)
{
    danu_model *m;
    CHECK_OK(danu_model_load(tiny_a_path, NULL, &m));
    return m;
}

static danu_context *tiny_context(danu_model *m, double temp, int64_t seed)
{
    danu_options *o;
    CHECK_OK(danu_options_create(NULL, &o));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_N_CTX, 256));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_SEED, seed));
    CHECK_OK(danu_options_set_float(o, DANU_OPT_TEMPERATURE, temp));
    CHECK_OK(danu_options_set_int(o, DANU_OPT_TOP_K, 0));
    CHECK_OK(danu_options_set_float(o, DANU_OPT_TOP_P, 1.0));
    CHECK_OK(danu_options_set_float(o, DANU_OPT_MIN_P, 0.0));
    danu_context *c;
    CHECK_OK(danu_context_create(m, o, &c));
    danu_options_free(o);
    return c;
}

static void prompt(danu_context *c, const danu_model *m, const char *text)
{
    danu_token ids[64];
    size_t n;
    CHECK_OK(danu_tokenizer_encode(danu_model_tokenizer(m), text, strlen(text), DANU_TOKENIZE_ADD_BOS, ids, 64, &n));
    CHECK_OK(danu_context_prompt(c, ids, n, NULL));
}

/* Generate with step until the generation ends; the text into out. */
static int32_t gen_text(danu_context *c, int max, char *out, size_t cap, danu_token *ids, int *n_ids)
{
    size_t w = 0;
    int32_t reason = DANU_STOP_LENGTH;
    *n_ids = 0;
    for (int i = 0; i < max; i++) {
        danu_token id;
        char piece[512];
        size_t len;
        int32_t r;
        CHECK_OK(danu_context_step(c, &id, piece, sizeof piece, &len, &r));
        ck_assert(w + len < cap);
        memcpy(out + w, piece, len);
        w += len;
        if (id >= 0 && ids) ids[(*n_ids)++] = id;
        if (r >= 0) { reason = r; break; }
    }
    size_t len;
    CHECK_OK(danu_context_step_finish(c, out + w, cap - w, &len));
    w += len;
    out[w] = 0;
    return reason;
}

START_TEST(generations_are_in_the_language)
{
    danu_model *m = tiny_model();
    const danu_tokenizer *tok = danu_model_tokenizer(m);
    const char *grammars[] = {
        json_gbnf,
        "root ::= (\"go \" (\"north\" | \"south\") | \"say \\\"\" [a-z ]{1,12} \"\\\"\" | \"wait\") \".\"\n",
        "root ::= [\xce\xb1-\xcf\x89]{2,6} \" \" [0-9]{1,3}\n",
    };
    int complete = 0, runs = 0;
    for (size_t gi = 0; gi < sizeof grammars / sizeof *grammars; gi++) {
        danu_constraint *k;
        CHECK_OK(danu_constraint_from_grammar(tok, grammars[gi], strlen(grammars[gi]), NULL, &k));
        for (int seed = 1; seed <= 30; seed++) {
            danu_context *c = tiny_context(m, 1.5, seed);
            CHECK_OK(danu_context_set_constraint(c, k));
            prompt(c, m, seed % 2 ? "The answer:" : "x");
            char text[4096];
            int n_ids;
            int32_t r = gen_text(c, 60, text, sizeof text, NULL, &n_ids);
            int32_t st;
            CHECK_OK(danu_context_constraint_state(c, &st));
            int whole, pre;
            CHECK_OK(dn_gbnf_match(dn_alloc_libc(), grammars[gi], strlen(grammars[gi]), text, strlen(text), &whole, &pre));
            ck_assert_msg(pre, "grammar %zu seed %d: \"%s\" is not a prefix", gi, seed, text);
            if (r == DANU_STOP_GRAMMAR || r == DANU_STOP_EOS) {
                ck_assert_msg(whole, "grammar %zu seed %d: ended (%d) on \"%s\", not complete", gi, seed, r, text);
                complete++;
            } else ck_assert_int_eq(r, DANU_STOP_LENGTH);
            if (r == DANU_STOP_GRAMMAR) ck_assert_int_eq(st, DANU_CONSTRAINT_FINISHED);
            runs++;
            danu_context_free(c);
        }
        danu_constraint_free(k);
    }
    ck_assert_msg(complete >= runs / 3, "only %d of %d generations completed", complete, runs);
    danu_model_free(m);
}
END_TEST

START_TEST(choices_end_the_generation)
{
    danu_model *m = tiny_model();
    const char *acts[] = { "attack the goblin", "open the door", "run", "say hello", "\xc3\xa9" "clair" };
    danu_constraint *k;
    CHECK_OK(danu_constraint_from_choices(danu_model_tokenizer(m), acts, 5, &k));
    for (int seed = 1; seed <= 40; seed++) {
        danu_context *c = tiny_context(m, seed % 4 == 0 ? 0.0 : 2.0, seed);
        CHECK_OK(danu_context_set_constraint(c, k));
        prompt(c, m, "Next:");
        char text[512];
        int n_ids;
        int32_t r = gen_text(c, 40, text, sizeof text, NULL, &n_ids);
        int found = 0;
        for (int i = 0; i < 5; i++) found |= !strcmp(text, acts[i]);
        ck_assert_msg(found, "seed %d: \"%s\" is not a choice", seed, text);
        ck_assert_int_eq(r, DANU_STOP_GRAMMAR);
        danu_context_free(c);
    }
    danu_constraint_free(k);   /* also freed while attached: contexts hold references */
    danu_model_free(m);
}
END_TEST

/* Greedy with a constraint: the allowed token with the highest logit
 * (lowest id on ties), computed here from the logits and the brute-force mask. */
START_TEST(greedy_takes_the_best_allowed)
{
    danu_model *m = tiny_model();
    danu_constraint *k;
    CHECK_OK(danu_constraint_from_grammar(danu_model_tokenizer(m), json_gbnf, strlen(json_gbnf), NULL, &k));
    danu_context *c = tiny_context(m, 0.0, 1);
    CHECK_OK(danu_context_set_constraint(c, k));
    prompt(c, m, "{");
    int32_t n = 32000;
    uint32_t *mask = malloc((size_t)(n + 31) / 32 * 4);
    for (int i = 0; i < 40; i++) {
        const float *l = danu_context_logits(c);
        /* the context's matcher at the point the next step samples from */
        dn_matcher *mt = c->matcher;
        if (i == 0) dn_matcher_reset(mt);
        CHECK_OK(dn_matcher_mask_slow(mt, i == 0 ? dn_decoder_strips_after(c->model->tok, c->tokens[c->n_tokens - 1])
                                              : dn_decoder_strips_space(c->dec), mask));
        int32_t best = -1;
        for (int32_t id = 0; id < n; id++)
            if (bit(mask, id) && (best < 0 || l[id] > l[best])) best = id;
        danu_token id;
        char piece[512];
        size_t len;
        int32_t r;
        CHECK_OK(danu_context_step(c, &id, piece, sizeof piece, &len, &r));
        ck_assert_int_eq(id, best);
        if (r >= 0) break;
    }
    free(mask);
    danu_context_free(c);
    danu_constraint_free(k);
    danu_model_free(m);
}
END_TEST

/* The same tokens whether a context steps alone or in a batch with others. */
START_TEST(batch_equals_alone)
{
    danu_model *m = tiny_model();
    const char *g = "root ::= \"(\" [a-z]{1,8} (\",\" [a-z]{1,8})* \")\"\n";
    danu_constraint *k;
    CHECK_OK(danu_constraint_from_grammar(danu_model_tokenizer(m), g, strlen(g), NULL, &k));
    enum { N = 4, MAX = 30 };
    danu_token alone[N][MAX + 1];
    int n_alone[N];
    for (int i = 0; i < N; i++) {
        danu_context *c = tiny_context(m, 1.2, 100 + i);
        if (i != 3) CHECK_OK(danu_context_set_constraint(c, k));   /* one without a constraint */
        prompt(c, m, "List:");
        char text[2048];
        gen_text(c, MAX, text, sizeof text, alone[i], &n_alone[i]);
        danu_context_free(c);
    }
    danu_batch *b;
    CHECK_OK(danu_batch_create(m, N, NULL, &b));
    danu_context *cs[N];
    for (int i = 0; i < N; i++) {
        cs[i] = tiny_context(m, 1.2, 100 + i);
        if (i != 3) CHECK_OK(danu_context_set_constraint(cs[i], k));
        prompt(cs[i], m, "List:");
    }
    danu_token got[N][MAX + 1];
    int n_got[N] = { 0 }, live[N] = { 1, 1, 1, 1 };
    for (int step = 0; step < MAX; step++) {
        danu_batch_item it[N];
        char text[N][512];
        size_t ni = 0;
        int who[N];
        for (int i = 0; i < N; i++)
            if (live[i]) {
                memset(&it[ni], 0, sizeof it[ni]);
                it[ni].struct_size = sizeof it[ni];
                it[ni].ctx = cs[i];
                it[ni].text = text[i];
                it[ni].cap = sizeof text[i];
                who[ni++] = i;
            }
        if (!ni) break;
        CHECK_OK(danu_batch_step(b, it, ni));
        for (size_t j = 0; j < ni; j++) {
            ck_assert_int_eq(it[j].status, DANU_OK);
            if (it[j].id >= 0) got[who[j]][n_got[who[j]]++] = it[j].id;
            if (it[j].reason >= 0) live[who[j]] = 0;
        }
    }
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(n_got[i], n_alone[i]);
        for (int t = 0; t < n_got[i]; t++) ck_assert_int_eq(got[i][t], alone[i][t]);
        danu_context_free(cs[i]);
    }
    danu_batch_free(b);
    danu_constraint_free(k);
    danu_model_free(m);
}
END_TEST

START_TEST(attach_rules)
{
    danu_model *m = tiny_model();
    danu_context *c = tiny_context(m, 0.0, 1);
    int32_t st = -1;
    CHECK_OK(danu_context_constraint_state(c, &st));
    ck_assert_int_eq(st, DANU_CONSTRAINT_NONE);
    /* a vocabulary of another size is refused; the context keeps what it had */
    danu_options *o;
    CHECK_OK(danu_options_create(NULL, &o));
    const char *tb = gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_GGUF, DANU_TYPE_F32);
    danu_model *mb;
    CHECK_OK(danu_model_load(tb, o, &mb));
    danu_options_free(o);
    danu_constraint *kb, *ka;
    CHECK_OK(danu_constraint_from_choices(danu_model_tokenizer(mb), (const char *[]){ "a" }, 1, &kb));
    CHECK_OK(danu_constraint_from_choices(danu_model_tokenizer(m), (const char *[]){ "yes", "no" }, 2, &ka));
    CHECK_OK(danu_context_set_constraint(c, ka));
    ck_assert_int_eq(danu_context_set_constraint(c, kb), DANU_ERR_INVALID_ARG);
    CHECK_OK(danu_context_constraint_state(c, &st));
    ck_assert_int_eq(st, DANU_CONSTRAINT_OPEN);
    /* pending work refuses a change */
    danu_token ids[4] = { 1, 100, 200, 300 };
    CHECK_OK(danu_context_eval_begin(c, ids, 4));
    ck_assert_int_eq(danu_context_set_constraint(c, NULL), DANU_ERR_STATE);
    danu_status ws;
    while ((ws = danu_context_work(c, 1000)) == DANU_IN_PROGRESS) {}
    CHECK_OK(ws);
    /* a fork carries the constraint */
    danu_context *f;
    CHECK_OK(danu_context_fork(c, &f));
    char text[64];
    int n;
    ck_assert_int_eq(gen_text(f, 10, text, sizeof text, NULL, &n), DANU_STOP_GRAMMAR);
    ck_assert(!strcmp(text, "yes") || !strcmp(text, "no"));
    CHECK_OK(danu_context_set_constraint(c, NULL));
    CHECK_OK(danu_context_constraint_state(c, &st));
    ck_assert_int_eq(st, DANU_CONSTRAINT_NONE);
    danu_context_free(f);
    danu_context_free(c);
    danu_constraint_free(ka);
    danu_constraint_free(kb);
    danu_model_free(mb);
    danu_model_free(m);
}
END_TEST

/* ---- one constraint on many threads --------------------------------------------- */

typedef struct job { danu_model *m; danu_constraint *k; int seed; char text[2048]; } job;

static void *run_job(void *arg)
{
    job *j = arg;
    danu_context *c = tiny_context(j->m, 1.3, j->seed);
    CHECK_OK(danu_context_set_constraint(c, j->k));
    prompt(c, j->m, "Data:");
    int n;
    gen_text(c, 40, j->text, sizeof j->text, NULL, &n);
    danu_context_free(c);
    return NULL;
}

START_TEST(shared_across_threads)
{
    danu_model *m = tiny_model();
    danu_constraint *k;
    CHECK_OK(danu_constraint_from_grammar(danu_model_tokenizer(m), json_gbnf, strlen(json_gbnf), NULL, &k));
    enum { N = 4 };
    job alone[N], together[N];
    for (int i = 0; i < N; i++) {
        alone[i] = (job){ m, k, 40 + i, "" };
        together[i] = alone[i];
        run_job(&alone[i]);
    }
    pthread_t th[N];
    for (int i = 0; i < N; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, run_job, &together[i]), 0);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert_str_eq(together[i].text, alone[i].text);
    }
    danu_constraint_free(k);
    danu_model_free(m);
}
END_TEST

/* ---- allocation failures ---------------------------------------------------- */

START_TEST(compile_nomem)
{
    /* fail the k-th allocation of a compile, for every k until one succeeds;
     * the constraint allocates from its tokenizer's allocator */
    tu_counter ct = { 0, 0, -1 };
    danu_allocator al = { sizeof al, tu_count_malloc, tu_count_realloc, tu_count_free, &ct };
    danu_options *o;
    CHECK_OK(danu_options_create(&al, &o));
    danu_tokenizer *t;
    CHECK_OK(danu_tokenizer_load(tu_data("llama2-tokenizer/tokenizer.model"), o, &t));
    for (int which = 0; which < 2; which++) {
        int done = 0;
        for (long k = 1; !done && k < 100000; k++) {
            long live = ct.live;
            ct.calls = 0;
            ct.fail_at = k;
            danu_constraint *c = NULL;
            danu_status s = which == 0 ? danu_constraint_from_grammar(t, json_gbnf, strlen(json_gbnf), NULL, &c)
                                       : danu_constraint_from_choices(t, (const char *[]){ "ab", "cd" }, 2, &c);
            if (s == DANU_OK) {
                done = 1;
                /* a matcher fails cleanly too, at each of its allocations */
                for (long j = 1;; j++) {
                    ct.calls = 0;
                    ct.fail_at = j;
                    dn_matcher *mt = NULL;
                    const uint32_t *mask;
                    danu_status ms = dn_matcher_create(c, dn_tokenizer_alloc(t), &mt);
                    if (ms == DANU_OK) ms = dn_matcher_mask(mt, 0, &mask);
                    dn_matcher_free(mt);
                    if (ms == DANU_OK) break;
                    ck_assert_int_eq(ms, DANU_ERR_NOMEM);
                }
                ct.fail_at = -1;
                danu_constraint_free(c);
            } else {
                ck_assert_int_eq(s, DANU_ERR_NOMEM);
                ck_assert_ptr_null(c);
            }
            ct.fail_at = -1;
            ck_assert_msg(ct.live == live, "compile %d failing allocation %ld: %ld blocks leaked", which, k,
                          ct.live - live);
        }
        ck_assert(done);
    }
    danu_tokenizer_free(t);
    danu_options_free(o);
    ck_assert_int_eq(ct.live, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("grammar");
    TCase *t = tcase_create("accept");
    tcase_add_test(t, accept_literals_and_sequences);
    tcase_add_test(t, accept_alternatives_groups);
    tcase_add_test(t, accept_repetitions);
    tcase_add_test(t, accept_classes);
    tcase_add_test(t, accept_escapes);
    tcase_add_test(t, accept_recursion);
    tcase_add_test(t, accept_json);
    tcase_add_test(t, errors_named);
    tcase_add_test(t, errors_public);
    suite_add_tcase(s, t);
    t = tcase_create("masks");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, masks_equal_brute_force);
    suite_add_tcase(s, t);
    t = tcase_create("generate");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, generations_are_in_the_language);
    tcase_add_test(t, choices_end_the_generation);
    tcase_add_test(t, greedy_takes_the_best_allowed);
    tcase_add_test(t, batch_equals_alone);
    tcase_add_test(t, attach_rules);
    suite_add_tcase(s, t);
    t = tcase_create("threads");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, shared_across_threads);
    suite_add_tcase(s, t);
    t = tcase_create("nomem");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, compile_nomem);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    tmp = tu_tmpdir("grammar");
    tiny_a_path = gd_synth(tmp, "tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_F32);
    if (!tiny_a_path) {
        fprintf(stderr, "cannot synthesize tiny-a: %s\n", danu_last_error());
        return 1;
    }
    if (danu_tokenizer_load(tu_data("llama2-tokenizer/tokenizer.model"), NULL, &llama) != DANU_OK) {
        fprintf(stderr, "cannot load the Llama 2 tokenizer: %s\n", danu_last_error());
        return 1;
    }
    int failed = tu_run(suite());
    danu_tokenizer_free(llama);
    tu_rmtree(tmp);
    return failed;
}
