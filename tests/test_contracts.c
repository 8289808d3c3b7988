/* test_contracts.c - promises of danu.h that hold across calls: generation
 * allocates nothing (context shift and stop strings included), the context
 * reports every byte it holds and can predict it, state files are replaced
 * whole, and a state saved by the 0.1 release still loads. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"

static char *tmp;
static const char *tiny_a_path;

static danu_options *counted_options(tu_bytes *bc)
{
    danu_allocator al = { sizeof al, tu_bytes_malloc, tu_bytes_realloc, tu_bytes_free, bc };
    danu_options *o = NULL;
    ck_assert_int_eq(danu_options_create(&al, &o), DANU_OK);
    return o;
}

static danu_model *load_counted(tu_bytes *bc, danu_options **o_out)
{
    danu_options *o = counted_options(bc);
    danu_model *m = NULL;
    CHECK_OK(danu_model_load(tiny_a_path, o, &m));
    *o_out = o;
    return m;
}

static danu_token *prompt_of(danu_model *m, const char *text, size_t *n)
{
    static danu_token ids[256];
    ck_assert_int_eq(danu_tokenizer_encode(danu_model_tokenizer(m), text, strlen(text), DANU_TOKENIZE_ADD_BOS, ids,
                                           256, n), DANU_OK);
    return ids;
}

/* Two greedy contexts of m with options o, each holding the same prompt:
 * one to exercise, one as the uninterrupted reference. */
static void greedy_pair(danu_model *m, danu_options *o, const char *text, danu_context **c, danu_context **ref,
                        size_t *n)
{
    CHECK_OK(danu_options_set_float(o, DANU_OPT_TEMPERATURE, 0.0));
    CHECK_OK(danu_context_create(m, o, c));
    CHECK_OK(danu_context_create(m, o, ref));
    danu_token *ids = prompt_of(m, text, n);
    CHECK_OK(danu_context_eval(*c, ids, *n, NULL));
    CHECK_OK(danu_context_eval(*ref, ids, *n, NULL));
}

/* A whole generation that shifts the context several times and checks stop
 * strings on every token makes no allocation call, through generate() and
 * through steps with step_finish. */
START_TEST(test_generation_allocates_nothing)
{
    tu_bytes bc = { 0, 0, 0 };
    danu_options *o;
    danu_model *m = load_counted(&bc, &o);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_CTX, 48), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_ON_FULL, DANU_FULL_SHIFT), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_KEEP, 4), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_THREADS, 2), DANU_OK);
    danu_context *c = NULL;
    ck_assert_int_eq(danu_context_create(m, o, &c), DANU_OK);
    /* stop strings that can start matching (a space, "e") but never complete */
    ck_assert_int_eq(danu_context_add_stop_string(c, " \x01never"), DANU_OK);
    ck_assert_int_eq(danu_context_add_stop_string(c, "e\x02"), DANU_OK);
    size_t n;
    danu_token *ids = prompt_of(m, "The capital of France is", &n);
    ck_assert_int_eq(danu_context_eval(c, ids, n, NULL), DANU_OK);
    const long long calls = bc.calls;
    int32_t why = -1;
    ck_assert_int_eq(danu_context_generate(c, 120, NULL, NULL, &why), DANU_OK);
    ck_assert_int_eq(why, DANU_STOP_LENGTH);
    ck_assert_uint_le(danu_context_n_tokens(c), 48);   /* it shifted: 120 tokens went through 48 places */
    char text[512];
    size_t len;
    danu_token id;
    for (int i = 0; i < 80; i++) {
        ck_assert_int_eq(danu_context_step(c, &id, text, sizeof text, &len, &why), DANU_OK);
        ck_assert_int_eq(why, -1);
    }
    ck_assert_int_eq(danu_context_step_finish(c, text, sizeof text, &len), DANU_OK);
    ck_assert_int_eq(bc.calls, calls);
    danu_context_free(c);
    danu_model_free(m);
    danu_options_free(o);
    ck_assert_int_eq(bc.live, 0);
}
END_TEST

typedef struct abort_at { danu_context *c; int n, at; danu_token ids[64]; } abort_at;

static int32_t abort_cb(void *user, danu_token id, const char *text, size_t len)
{
    (void)text; (void)len;
    abort_at *a = user;
    if (id >= 0 && a->n < 64) a->ids[a->n++] = id;
    if (a->n == a->at) danu_context_abort(a->c);   /* stops the next step, before it commits */
    return 0;
}

/* An abort leaves the context as it was before the aborted token, logits
 * included: generation goes on as if it had never stopped (greedy). */
START_TEST(test_generation_resumes_after_abort)
{
    danu_model *m = NULL;
    ck_assert_int_eq(danu_model_load(tiny_a_path, NULL, &m), DANU_OK);
    danu_options *o = NULL;
    danu_options_create(NULL, &o);
    danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1);
    danu_context *c = NULL, *ref = NULL;
    size_t n;
    greedy_pair(m, o, "The capital of France is", &c, &ref, &n);
    abort_at whole = { ref, 0, -1, { 0 } }, cut = { c, 0, 3, { 0 } };
    int32_t why;
    ck_assert_int_eq(danu_context_generate(ref, 10, abort_cb, &whole, &why), DANU_OK);
    ck_assert_int_eq(whole.n, 10);
    ck_assert_int_eq(danu_context_generate(c, 10, abort_cb, &cut, &why), DANU_ERR_ABORTED);
    ck_assert_int_eq(why, DANU_STOP_ABORTED);
    ck_assert_int_eq(cut.n, 3);
    ck_assert_uint_eq(danu_context_n_tokens(c), n + 3);
    ck_assert_ptr_nonnull(danu_context_logits(c));
    ck_assert_int_eq(danu_context_generate(c, 7, abort_cb, &cut, &why), DANU_OK);
    ck_assert_int_eq(why, DANU_STOP_LENGTH);
    ck_assert_int_eq(cut.n, 10);
    ck_assert_mem_eq(cut.ids, whole.ids, 10 * sizeof(danu_token));
    danu_context_free(c);
    danu_context_free(ref);
    danu_options_free(o);
    danu_model_free(m);
}
END_TEST

/* A caller whose buffers are too small for the text steps hold back gets
 * BUFFER_TOO_SMALL from step_finish with the length, and the text whole
 * with a larger buffer; steps never grow the hold buffer. */
START_TEST(test_held_text_is_bounded)
{
    tu_bytes bc = { 0, 0, 0 };
    danu_options *o;
    danu_model *m = load_counted(&bc, &o);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1), DANU_OK);
    danu_context *c = NULL, *ref = NULL;
    size_t n;
    greedy_pair(m, o, "Once upon a time", &c, &ref, &n);
    char expect[8192] = "", one[512], tiny[1];
    size_t len, total = 0;
    danu_token id;
    int32_t why;
    const long long calls = bc.calls;
    int steps = 0;
    danu_status st = DANU_OK;
    /* steps with a 1-byte buffer: each still samples and evaluates its
     * token (id set) and keeps the text, until the hold is full and a step
     * refuses to start (id -1) */
    for (;;) {
        st = danu_context_step(c, &id, tiny, sizeof tiny, &len, &why);
        if (id < 0 || steps >= 2000) break;
        ck_assert(st == DANU_OK || st == DANU_ERR_BUFFER_TOO_SMALL);
        steps++;
    }
    ck_assert_int_eq(st, DANU_ERR_BUFFER_TOO_SMALL);
    ck_assert_int_eq(id, -1);
    CHECK(steps > 10, "only %d steps before the hold was full", steps);
    ck_assert_int_eq(bc.calls, calls);
    /* the same number of greedy steps on the reference context, with room */
    for (int i = 0; i < steps; i++) {
        ck_assert_int_eq(danu_context_step(ref, &id, one, sizeof one, &len, &why), DANU_OK);
        ck_assert_uint_lt(total + len, sizeof expect);
        memcpy(expect + total, one, len);
        total += len;
    }
    ck_assert_int_eq(danu_context_step_finish(ref, one, sizeof one, &len), DANU_OK);
    memcpy(expect + total, one, len);
    total += len;
    char *got = malloc(8192);
    ck_assert_int_eq(danu_context_step_finish(c, got, 4, &len), DANU_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(len, total);
    ck_assert_int_eq(danu_context_step_finish(c, got, 8192, &len), DANU_OK);
    ck_assert_uint_eq(len, total);
    ck_assert_mem_eq(got, expect, total);
    free(got);
    danu_context_free(c);
    danu_context_free(ref);
    danu_model_free(m);
    danu_options_free(o);
}
END_TEST

/* The step that ends generation (EOS here) with a buffer too small for the
 * held text reports BUFFER_TOO_SMALL and keeps the text: step_finish hands
 * over all of it. */
START_TEST(test_final_step_keeps_text_that_did_not_fit)
{
    danu_model *m = NULL;
    CHECK_OK(danu_model_load(tiny_a_path, NULL, &m));
    danu_options *o = NULL;
    danu_options_create(NULL, &o);
    danu_context *c = NULL, *ref = NULL;
    size_t n;
    greedy_pair(m, o, "Once upon a time", &c, &ref, &n);
    char expect[4096], got[4096], one[512], tiny[1];
    size_t len, total = 0;
    danu_token id;
    int32_t why;
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(danu_context_step(ref, &id, one, sizeof one, &len, &why), DANU_OK);
        memcpy(expect + total, one, len);
        total += len;
        danu_status st = danu_context_step(c, &id, tiny, sizeof tiny, &len, &why);
        ck_assert(st == DANU_OK || st == DANU_ERR_BUFFER_TOO_SMALL);
        ck_assert_int_eq(why, -1);
    }
    ck_assert_int_eq(danu_context_step_finish(ref, one, sizeof one, &len), DANU_OK);
    memcpy(expect + total, one, len);
    total += len;
    ck_assert_uint_gt(total, 0);
    int64_t eos = -1;
    CHECK_OK(danu_model_get_int(m, DANU_INFO_EOS, &eos));
    CHECK_OK(danu_context_set_logit_bias(c, (danu_token)eos, 1000.0f));
    ck_assert_int_eq(danu_context_step(c, &id, tiny, sizeof tiny, &len, &why), DANU_ERR_BUFFER_TOO_SMALL);
    ck_assert_int_eq(why, DANU_STOP_EOS);
    ck_assert_int_eq(id, (danu_token)eos);
    CHECK_OK(danu_context_step_finish(c, got, sizeof got, &len));
    ck_assert_uint_eq(len, total);
    ck_assert_mem_eq(got, expect, total);
    danu_context_free(c);
    danu_context_free(ref);
    danu_options_free(o);
    danu_model_free(m);
}
END_TEST

/* danu_context_memory_size is every byte the context took from the
 * allocator, and danu_context_memory_estimate predicts it before creation,
 * for several shapes of options; stop strings are counted as they are added. */
START_TEST(test_memory_size_counts_everything)
{
    static const int64_t cases[][4] = {   /* n_ctx, n_batch, threads, kv type */
        { 0, 512, 1, DANU_KV_F16 }, { 64, 16, 2, DANU_KV_F32 }, { 300, 512, 2, DANU_KV_F16 }, { 7, 1, 3, DANU_KV_F16 },
        { 50, 9, 2, DANU_KV_Q8_0 }, { 0, 512, 1, DANU_KV_Q8_0 },
    };
    tu_bytes bc = { 0, 0, 0 };
    danu_options *o;
    danu_model *m = load_counted(&bc, &o);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_CTX, cases[i][0]), DANU_OK);
        ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_BATCH, cases[i][1]), DANU_OK);
        ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_THREADS, cases[i][2]), DANU_OK);
        ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_KV_TYPE, cases[i][3]), DANU_OK);
        size_t est = 0;
        ck_assert_int_eq(danu_context_memory_estimate(m, o, &est), DANU_OK);
        const long long before = bc.live;
        danu_context *c = NULL;
        ck_assert_int_eq(danu_context_create(m, o, &c), DANU_OK);
        const long long held = bc.live - before;
        ck_assert_msg((long long)danu_context_memory_size(c) == held, "case %zu: memory_size %zu, allocator %lld", i,
                      danu_context_memory_size(c), held);
        ck_assert_msg((long long)est == held, "case %zu: estimate %zu, allocator %lld", i, est, held);
        ck_assert_int_eq(danu_context_add_stop_string(c, "a stop string longer than a few bytes"), DANU_OK);
        ck_assert_int_eq((long long)danu_context_memory_size(c), bc.live - before);
        danu_context_free(c);
        ck_assert_int_eq(bc.live, before);
    }
    size_t est;
    ck_assert_int_eq(danu_context_memory_estimate(NULL, o, &est), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(danu_context_memory_estimate(m, o, NULL), DANU_ERR_INVALID_ARG);
    int64_t max_ctx = 0;
    ck_assert_int_eq(danu_model_get_int(m, DANU_INFO_CONTEXT_LENGTH, &max_ctx), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_CTX, max_ctx + 1), DANU_OK);
    ck_assert_int_eq(danu_context_memory_estimate(m, o, &est), DANU_ERR_INVALID_ARG);
    ck_assert_uint_eq(danu_context_memory_size(NULL), 0);
    danu_model_free(m);
    danu_options_free(o);
}
END_TEST

/* A state file saved by libdanu 0.1 (tests/data/state, tiny-b-hf after six
 * tokens) loads, and its logits and cache equal a fresh evaluation's. */
START_TEST(test_state_file_from_0_1_loads)
{
    danu_model *m = NULL;
    CHECK_OK(danu_model_load(tu_data("tiny-b-hf"), NULL, &m));
    danu_options *o = NULL;
    danu_options_create(NULL, &o);
    danu_options_set_int(o, DANU_OPT_N_CTX, 64);
    danu_context *c = NULL, *f = NULL;
    ck_assert_int_eq(danu_context_create(m, o, &c), DANU_OK);
    ck_assert_int_eq(danu_context_create(m, o, &f), DANU_OK);
    CHECK_OK(danu_context_state_load_file(c, tu_data("state/tiny-b.v0.1.state")));
    const danu_token t[6] = { 1, 450, 783, 310, 344, 38 };
    ck_assert_uint_eq(danu_context_n_tokens(c), 6);
    ck_assert_mem_eq(danu_context_tokens(c), t, sizeof t);
    ck_assert_int_eq(danu_context_eval(f, t, 6, NULL), DANU_OK);
    int64_t vocab = 0;
    danu_model_get_int(m, DANU_INFO_VOCAB, &vocab);
    const double err = tu_max_abs_diff(danu_context_logits(c), danu_context_logits(f), (size_t)vocab);
    /* the saved logits are 0.1's avx512 kernels' floats, and the fresh
     * ones (and the fresh cache: layer 1's K/V come from layer 0's
     * attention) are each level's own: 1.0e-5 and 1.3e-5 of the largest
     * logit on avx512 since its f16 scores run in two chains (0.2), 3.1e-5
     * on avx2, avx2vnni and scalar (2026-12-06) */
    ck_assert_msg(err <= 1e-4 * tu_max_abs(danu_context_logits(f), (size_t)vocab), "logits differ by %g (max %g)", err,
                  tu_max_abs(danu_context_logits(f), (size_t)vocab));
    /* the loaded cache continues as the fresh one does */
    const danu_token next = 77;
    ck_assert_int_eq(danu_context_eval(c, &next, 1, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_eval(f, &next, 1, NULL), DANU_OK);
    const double err2 = tu_max_abs_diff(danu_context_logits(c), danu_context_logits(f), (size_t)vocab);
    ck_assert_msg(err2 <= 1e-4 * tu_max_abs(danu_context_logits(f), (size_t)vocab), "next logits differ by %g", err2);
    danu_context_free(c);
    danu_context_free(f);
    danu_options_free(o);
    danu_model_free(m);
}
END_TEST

static size_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (size_t)st.st_size : 0;
}

/* save_file replaces an existing file whole; when the new file cannot be
 * written, the old one is left as it was. */
START_TEST(test_state_file_replaced_whole)
{
    danu_model *m = NULL;
    ck_assert_int_eq(danu_model_load(tu_data("tiny-b-hf"), NULL, &m), DANU_OK);
    danu_context *c = NULL;
    danu_options *o = NULL;
    danu_options_create(NULL, &o);
    danu_options_set_int(o, DANU_OPT_N_CTX, 64);
    ck_assert_int_eq(danu_context_create(m, o, &c), DANU_OK);
    const danu_token t[4] = { 1, 5, 6, 7 };
    ck_assert_int_eq(danu_context_eval(c, t, 2, NULL), DANU_OK);
    char path[4096], tmp_path[4200];
    snprintf(path, sizeof path, "%s/s.state", tmp);
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
    ck_assert_int_eq(danu_context_state_save_file(c, path), DANU_OK);
    const size_t small = file_size(path);
    ck_assert_uint_eq(small, danu_context_state_size(c));
    ck_assert_int_eq(danu_context_eval(c, t + 2, 2, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_state_save_file(c, path), DANU_OK);   /* replaces it */
    ck_assert_uint_eq(file_size(path), danu_context_state_size(c));
    ck_assert_uint_gt(file_size(path), small);
    ck_assert_int_ne(access(tmp_path, F_OK), 0);
    /* the temporary cannot be created: IO, the saved file untouched */
    const size_t big = file_size(path);
    ck_assert_int_eq(mkdir(tmp_path, 0700), 0);
    ck_assert_int_eq(danu_context_eval(c, t, 1, NULL), DANU_OK);
    ck_assert_int_eq(danu_context_state_save_file(c, path), DANU_ERR_IO);
    ck_assert_uint_eq(file_size(path), big);
    rmdir(tmp_path);
    danu_context *d = NULL;
    ck_assert_int_eq(danu_context_create(m, o, &d), DANU_OK);
    ck_assert_int_eq(danu_context_state_load_file(d, path), DANU_OK);
    ck_assert_uint_eq(danu_context_n_tokens(d), 4);
    danu_context_free(c);
    danu_context_free(d);
    danu_options_free(o);
    danu_model_free(m);
}
END_TEST

int main(void)
{
    tmp = tu_tmpdir("contracts");
    tiny_a_path = gd_synth(tmp, "tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16);
    if (!tiny_a_path) {
        fprintf(stderr, "cannot synthesize tiny-a: %s\n", danu_last_error());
        return 1;
    }
    Suite *s = suite_create("contracts");
    TCase *tc = tcase_create("contracts");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_generation_allocates_nothing);
    tcase_add_test(tc, test_held_text_is_bounded);
    tcase_add_test(tc, test_generation_resumes_after_abort);
    tcase_add_test(tc, test_final_step_keeps_text_that_did_not_fit);
    tcase_add_test(tc, test_memory_size_counts_everything);
    tcase_add_test(tc, test_state_file_from_0_1_loads);
    tcase_add_test(tc, test_state_file_replaced_whole);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
