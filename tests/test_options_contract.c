/* test_options_contract.c - danu.h: "Each key has one type (int or float)";
 * the setter of the other type returns DANU_ERR_UNSUPPORTED with a message
 * naming the key, and never converts. Checked for every key on an options
 * bag (danu_options_set_int/_float) and for every key a live context takes
 * (danu_context_set_int/_float); the right type is accepted. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"

static char *tmp;
static danu_model *model;   /* tiny-b synthetic (max_ctx 256), for the live-context half */

typedef struct key_def {
    danu_param key;
    const char *name;
    int is_float;
    int live;       /* settable on a live context */
} key_def;

/* Every DANU_OPT_* of danu.h with its documented type. */
static const key_def keys[] = {
    { DANU_OPT_USE_MMAP, "use_mmap", 0, 0 },
    { DANU_OPT_SLIDING_WINDOW, "sliding_window", 0, 0 },
    { DANU_OPT_VALIDATE, "validate", 0, 0 },
    { DANU_OPT_REPACK, "repack", 0, 0 },
    { DANU_OPT_N_CTX, "n_ctx", 0, 0 },
    { DANU_OPT_KV_TYPE, "kv_type", 0, 0 },
    { DANU_OPT_SEED, "seed", 0, 1 },
    { DANU_OPT_N_BATCH, "n_batch", 0, 0 },
    { DANU_OPT_ON_FULL, "on_full", 0, 1 },
    { DANU_OPT_N_KEEP, "n_keep", 0, 1 },
    { DANU_OPT_KV_HUGE_PAGES, "kv_huge_pages", 0, 0 },
    { DANU_OPT_TEMPERATURE, "temperature", 1, 1 },
    { DANU_OPT_TOP_K, "top_k", 0, 1 },
    { DANU_OPT_TOP_P, "top_p", 1, 1 },
    { DANU_OPT_MIN_P, "min_p", 1, 1 },
    { DANU_OPT_REPEAT_PENALTY, "repeat_penalty", 1, 1 },
    { DANU_OPT_REPEAT_LAST_N, "repeat_last_n", 0, 1 },
    { DANU_OPT_FREQUENCY_PENALTY, "frequency_penalty", 1, 1 },
    { DANU_OPT_PRESENCE_PENALTY, "presence_penalty", 1, 1 },
    { DANU_OPT_IGNORE_EOS, "ignore_eos", 0, 1 },
    { DANU_OPT_N_THREADS, "n_threads", 0, 0 },
    { DANU_OPT_ISA, "isa", 0, 0 },
    { DANU_OPT_FAST_BF16, "fast_bf16", 0, 0 },
};
#define N_KEYS (sizeof keys / sizeof keys[0])

/* A value inside the key's bounds (the lower bound, integral for int keys). */
static double valid_value(const key_def *k)
{
    double lo = 0, hi = 0;
    ck_assert_int_eq(danu_param_bounds(k->key, &lo, &hi), DANU_OK);
    return lo;
}

#define EXPECT_NAMED(call, want, k) do {                                                             \
        danu_status st_ = (call);                                                                    \
        ck_assert_msg(st_ == (want), "%s on %s: status %d (%s), want %d", #call, (k)->name, st_,       \
                      danu_last_error(), (int)(want));                                               \
        ck_assert_msg(strstr(danu_last_error(), (k)->name) != NULL, "%s: message does not name %s: '%s'", \
                      #call, (k)->name, danu_last_error());                                          \
    } while (0)
#define OK(call, k) do {                                                                              \
        danu_status st_ = (call);                                                                    \
        ck_assert_msg(st_ == DANU_OK, "%s on %s: %d %s", #call, (k)->name, st_, danu_last_error());     \
    } while (0)

START_TEST(test_options_contract_table_matches_library)
{
    /* the table above lists every key the library knows, under its name */
    for (size_t i = 0; i < N_KEYS; i++) ck_assert_int_eq(danu_param_from_name(keys[i].name), keys[i].key);
}
END_TEST

START_TEST(test_options_contract_options_wrong_type)
{
    danu_options *o;
    ck_assert_int_eq(danu_options_create(NULL, &o), DANU_OK);
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        double v = valid_value(k);
        if (k->is_float) {
            EXPECT_NAMED(danu_options_set_int(o, k->key, (int64_t)v), DANU_ERR_UNSUPPORTED, k);
            EXPECT_NAMED(danu_options_set_int(o, k->key, 1), DANU_ERR_UNSUPPORTED, k);
            OK(danu_options_set_float(o, k->key, v), k);
        } else {
            EXPECT_NAMED(danu_options_set_float(o, k->key, v), DANU_ERR_UNSUPPORTED, k);   /* even integral */
            EXPECT_NAMED(danu_options_set_float(o, k->key, v + 0.5), DANU_ERR_UNSUPPORTED, k);
            OK(danu_options_set_int(o, k->key, (int64_t)v), k);
        }
    }
    danu_options_free(o);
}
END_TEST

START_TEST(test_options_contract_context_wrong_type)
{
    danu_options *o;
    ck_assert_int_eq(danu_options_create(NULL, &o), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_CTX, 64), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_THREADS, 1), DANU_OK);
    danu_context *c;
    ck_assert_int_eq(danu_context_create(model, o, &c), DANU_OK);
    danu_options_free(o);
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        double v = valid_value(k);
        if (!k->live) {
            /* fixed once the context exists: refused through either setter */
            ck_assert_int_eq(danu_context_set_int(c, k->key, (int64_t)v), DANU_ERR_UNSUPPORTED);
            ck_assert_int_eq(danu_context_set_float(c, k->key, v), DANU_ERR_UNSUPPORTED);
        } else if (k->is_float) {
            EXPECT_NAMED(danu_context_set_int(c, k->key, (int64_t)v), DANU_ERR_UNSUPPORTED, k);
            OK(danu_context_set_float(c, k->key, v), k);
        } else {
            EXPECT_NAMED(danu_context_set_float(c, k->key, v), DANU_ERR_UNSUPPORTED, k);
            OK(danu_context_set_int(c, k->key, (int64_t)v), k);
        }
    }
    danu_context_free(c);
}
END_TEST

int main(void)
{
    tmp = tu_tmpdir("options_contract");
    const char *path = gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_HF, DANU_TYPE_BF16);
    if (!path || danu_model_load(path, NULL, &model) != DANU_OK) {
        fprintf(stderr, "cannot prepare tiny-b: %s\n", danu_last_error());
        return 1;
    }
    Suite *s = suite_create("options_contract");
    TCase *tc = tcase_create("options_contract");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_options_contract_table_matches_library);
    tcase_add_test(tc, test_options_contract_options_wrong_type);
    tcase_add_test(tc, test_options_contract_context_wrong_type);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    danu_model_free(model);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
