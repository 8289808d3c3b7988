/* test_sampler.c - the sampler against references written here: argmax,
 * transformers' repetition penalty, llama.cpp frequency/presence penalties,
 * softmax probabilities (statistically), truncation supports, and an
 * independent splitmix64 + xoshiro256** for exact draws. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "testutil.h"
#include "gen/sampler.h"
#include "common/alloc.h"

/* ---- helpers ---- */

static uint64_t lcg_state = 12345;
static double lcg_unit(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg_state >> 11) * 0x1.0p-53;
}
static void random_logits(float *l, int n, float scale)
{
    for (int i = 0; i < n; i++) l[i] = (float)((lcg_unit() * 2.0 - 1.0) * scale);
}

static int ref_argmax(const float *l, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

static void init_sampler(dn_sampler *s, int n_vocab, uint64_t seed)
{
    ck_assert_int_eq(dn_sampler_init(s, dn_alloc_libc(), n_vocab, seed), DANU_OK);
    /* tests opt into each stage explicitly */
    s->params.temperature = 1.0f;
    s->params.top_k = 0;
    s->params.top_p = 1.0f;
    s->params.min_p = 0.0f;
    s->params.repeat_penalty = 1.0f;
    s->params.repeat_last_n = 64;
    s->params.frequency_penalty = 0.0f;
    s->params.presence_penalty = 0.0f;
}

/* transformers RepetitionPenaltyLogitsProcessor over the window, then
 * llama.cpp/OpenAI frequency and presence penalties, then bias. Written as a
 * direct per-id scan of the window, independent of the sampler's counting. */
static void ref_penalties(float *l, int n, const int32_t *hist, int nh, int last_n,
                          float rep, float freq, float pres, const float *bias)
{
    int start = last_n < 0 ? 0 : (nh > last_n ? nh - last_n : 0);
    for (int id = 0; id < n; id++) {
        int count = 0;
        for (int j = start; j < nh; j++) if (hist[j] == id) count++;
        if (count > 0) {
            float x = l[id];
            x = x < 0 ? x * rep : x / rep;       /* torch.where(score < 0, score * p, score / p) */
            x -= (float)count * freq + pres;
            l[id] = x;
        }
        if (bias) l[id] += bias[id];
    }
}

/* Draw counts over `draws` samples. One assert at the end: Check records
 * every passing assert, which is slow inside hot loops. */
static void histogram(dn_sampler *s, const float *l, long *cnt, int n, int draws)
{
    memset(cnt, 0, sizeof(long) * (size_t)n);
    int bad = 0;
    for (int d = 0; d < draws; d++) {
        danu_token t = dn_sampler_sample(s, l, NULL, NULL, 0);
        if (t < 0 || t >= n) bad++;
        else cnt[t]++;
    }
    ck_assert_int_eq(bad, 0);
}

/* ---- tests ---- */

START_TEST(test_sampler_params_default)
{
    dn_sampler_params p;
    dn_sampler_params_default(&p);
    ck_assert_float_eq(p.temperature, 0.8f);
    ck_assert_int_eq(p.top_k, 40);
    ck_assert_float_eq(p.top_p, 0.95f);
    ck_assert_float_eq(p.min_p, 0.05f);
    ck_assert_float_eq(p.repeat_penalty, 1.0f);
    ck_assert_int_eq(p.repeat_last_n, 64);
    ck_assert_float_eq(p.frequency_penalty, 0.0f);
    ck_assert_float_eq(p.presence_penalty, 0.0f);
}
END_TEST

/* A new sampler starts from the default parameters. */
START_TEST(test_sampler_init_takes_defaults)
{
    dn_sampler_params p;
    dn_sampler_params_default(&p);
    dn_sampler s;
    ck_assert_int_eq(dn_sampler_init(&s, dn_alloc_libc(), 10, 1), DANU_OK);
    ck_assert_mem_eq(&s.params, &p, sizeof p);
    dn_sampler_free(&s);
}
END_TEST

/* A freed sampler is zeroed, so freeing it again is a no-op; NULL too. */
START_TEST(test_sampler_free_twice_and_null)
{
    dn_sampler s;
    ck_assert_int_eq(dn_sampler_init(&s, dn_alloc_libc(), 10, 1), DANU_OK);
    dn_sampler_free(&s);
    const dn_sampler zero = { 0 };
    ck_assert_mem_eq(&s, &zero, sizeof s);
    dn_sampler_free(&s);
    dn_sampler_free(NULL);
}
END_TEST

START_TEST(test_sampler_init_rejects_zero_vocab)
{
    dn_sampler s;
    ck_assert_int_eq(dn_sampler_init(&s, dn_alloc_libc(), 0, 1), DANU_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_sampler_greedy_argmax)
{
    enum { N = 1000 };
    static float l[N], copy[N];
    dn_sampler s;
    init_sampler(&s, N, 7);
    s.params.temperature = 0.0f;
    for (int trial = 0; trial < 50; trial++) {
        random_logits(l, N, 10.0f);
        memcpy(copy, l, sizeof l);
        ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), ref_argmax(l, N));
        ck_assert(memcmp(copy, l, sizeof l) == 0);  /* caller's logits untouched */
    }
    dn_sampler_free(&s);
}
END_TEST

/* Greedy ties go to the lowest id, at temperature 0 and below. */
START_TEST(test_sampler_greedy_ties_lowest_id)
{
    enum { N = 1000 };
    static float l[N];
    dn_sampler s;
    init_sampler(&s, N, 7);
    l[700] = 3.0f; l[300] = 3.0f; l[900] = 3.0f;
    const float temps[] = { 0.0f, -1.0f };   /* a negative temperature is greedy too */
    for (int t = 0; t < 2; t++) {
        s.params.temperature = temps[t];
        ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), 300);
    }
    dn_sampler_free(&s);
}
END_TEST

/* All -inf or all NaN gives id 0; one finite logit among NaN, or a +inf
 * one, is always chosen (greedy and top-k sampling alike). */
START_TEST(test_sampler_nonfinite_logits)
{
    enum { N = 64 };
    float l[N];
    dn_sampler s;
    init_sampler(&s, N, 3);
    for (int t = 0; t < 2; t++) {
        s.params.temperature = t ? 1.0f : 0.0f;
        s.params.top_k = t ? 5 : 0;
        /* all -inf: id 0, deterministically */
        for (int i = 0; i < N; i++) l[i] = -INFINITY;
        for (int k = 0; k < 10; k++) ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), 0);
        /* all NaN: treated as -inf */
        for (int i = 0; i < N; i++) l[i] = NAN;
        for (int k = 0; k < 10; k++) ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), 0);
        /* NaN everywhere but one finite logit: that one always */
        l[41] = -5.0f;
        for (int k = 0; k < 50; k++) ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), 41);
        /* a +inf logit wins outright */
        random_logits(l, N, 3.0f);
        l[9] = NAN;
        l[17] = INFINITY;
        for (int k = 0; k < 50; k++) ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), 17);
    }
    dn_sampler_free(&s);
}
END_TEST

/* Sampling with some NaN logits never returns a NaN slot. */
START_TEST(test_sampler_nan_never_sampled)
{
    enum { N = 64 };
    float l[N];
    dn_sampler s;
    init_sampler(&s, N, 3);
    s.params.temperature = 1.0f;
    s.params.top_k = 0;
    for (int i = 0; i < N; i++) l[i] = (i % 3 == 0) ? NAN : 0.0f;
    long cnt[N];
    histogram(&s, l, cnt, N, 2000);
    for (int i = 0; i < N; i += 3) ck_assert_int_eq(cnt[i], 0);
    dn_sampler_free(&s);
}
END_TEST

START_TEST(test_sampler_repetition_penalty)
{
    enum { N = 12 };
    /* positive, negative, zero logits; repeated ids; out-of-range ids */
    const float base[N] = { 2.0f, -1.5f, 0.0f, 3.0f, -0.25f, 1.2f, 0.7f, -4.0f, 5.0f, 0.1f, -2.0f, 2.9f };
    const int32_t hist[] = { 1, 3, 3, 3, 99, 4, -7, 1, 8, 8, 2, 10 };
    const int nh = (int)(sizeof hist / sizeof hist[0]);
    const float pens[] = { 1.3f, 0.8f, 2.0f };
    dn_sampler s;
    init_sampler(&s, N, 1);
    s.params.repeat_last_n = -1;
    for (int k = 0; k < 3; k++) {
        float got[N], want[N];
        memcpy(got, base, sizeof got);
        memcpy(want, base, sizeof want);
        s.params.repeat_penalty = pens[k];
        dn_sampler_apply_penalties(&s, got, hist, (size_t)nh);
        ref_penalties(want, N, hist, nh, -1, pens[k], 0, 0, NULL);
        for (int i = 0; i < N; i++) ck_assert_float_eq_tol(got[i], want[i], 1e-6f);
        /* spot values by hand: applied once per distinct id, not per occurrence */
        ck_assert_float_eq_tol(got[3], 3.0f / pens[k], 1e-6f);
        ck_assert_float_eq_tol(got[1], -1.5f * pens[k], 1e-6f);
        ck_assert_float_eq(got[0], 2.0f);  /* not in history */
        ck_assert_float_eq(got[2], 0.0f);
        /* greedy after penalties == argmax of the reference */
        s.params.temperature = 0.0f;
        ck_assert_int_eq(dn_sampler_sample(&s, base, NULL, hist, (size_t)nh), ref_argmax(want, N));
    }
    dn_sampler_free(&s);
}
END_TEST

/* Penalties leave the counts scratch clean: a call without history after
 * one with history changes nothing. */
START_TEST(test_sampler_penalties_leave_no_counts)
{
    enum { N = 12 };
    const float base[N] = { 2.0f, -1.5f, 0.0f, 3.0f, -0.25f, 1.2f, 0.7f, -4.0f, 5.0f, 0.1f, -2.0f, 2.9f };
    const int32_t hist[] = { 1, 3, 3, 3, 99, 4, -7, 1, 8, 8, 2, 10 };
    dn_sampler s;
    init_sampler(&s, N, 1);
    s.params.repeat_last_n = -1;
    s.params.repeat_penalty = 1.3f;
    float got[N];
    memcpy(got, base, sizeof got);
    dn_sampler_apply_penalties(&s, got, hist, sizeof hist / sizeof hist[0]);
    ck_assert(memcmp(got, base, sizeof got) != 0);   /* the first call did penalise */
    memcpy(got, base, sizeof got);
    dn_sampler_apply_penalties(&s, got, NULL, 0);
    ck_assert(memcmp(got, base, sizeof got) == 0);
    for (int i = 0; i < N; i++) ck_assert_int_eq(s.counts[i], 0);
    dn_sampler_free(&s);
}
END_TEST

START_TEST(test_sampler_window)
{
    enum { N = 10 };
    const float base[N] = { 1, 2, 3, 4, 5, -1, -2, -3, -4, -5 };
    const int32_t hist[] = { 0, 5, 0, 1, 6, 2, 2, 9 };
    const int nh = 8;
    const int windows[] = { -1, 0, 1, 3, 5, 8, 100 };
    dn_sampler s;
    init_sampler(&s, N, 1);
    s.params.repeat_penalty = 1.5f;
    s.params.frequency_penalty = 0.25f;
    s.params.presence_penalty = 0.5f;
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        float got[N], want[N];
        memcpy(got, base, sizeof got);
        memcpy(want, base, sizeof want);
        s.params.repeat_last_n = windows[w];
        dn_sampler_apply_penalties(&s, got, hist, (size_t)nh);
        ref_penalties(want, N, hist, nh, windows[w], 1.5f, 0.25f, 0.5f, NULL);
        for (int i = 0; i < N; i++) ck_assert_float_eq_tol(got[i], want[i], 1e-6f);
    }
    /* window 3 = ids {2, 2, 9}: 0, 1, 5, 6 untouched */
    float got[N];
    memcpy(got, base, sizeof got);
    s.params.repeat_last_n = 3;
    dn_sampler_apply_penalties(&s, got, hist, (size_t)nh);
    ck_assert_float_eq(got[0], 1.0f);
    ck_assert_float_eq(got[1], 2.0f);
    ck_assert_float_eq(got[5], -1.0f);
    ck_assert_float_eq_tol(got[2], 3.0f / 1.5f - 2 * 0.25f - 0.5f, 1e-6f);
    ck_assert_float_eq_tol(got[9], -5.0f * 1.5f - 0.25f - 0.5f, 1e-6f);
    /* window 0 = none */
    memcpy(got, base, sizeof got);
    s.params.repeat_last_n = 0;
    dn_sampler_apply_penalties(&s, got, hist, (size_t)nh);
    ck_assert(memcmp(got, base, sizeof got) == 0);
    dn_sampler_free(&s);
}
END_TEST

START_TEST(test_sampler_frequency_presence)
{
    enum { N = 8 };
    const float base[N] = { 0.5f, 1.0f, -1.0f, 2.0f, 0.0f, 3.0f, -0.5f, 1.5f };
    const int32_t hist[] = { 3, 3, 3, 1, 2, 2, 7, 3, 40000, -1 };
    const int nh = 10;
    const float fp[][2] = { { 0.5f, 0 }, { 0, 0.75f }, { 0.3f, 1.1f }, { -0.2f, -0.4f } };
    dn_sampler s;
    init_sampler(&s, N, 1);
    s.params.repeat_last_n = -1;
    for (int k = 0; k < 4; k++) {
        float got[N], want[N];
        memcpy(got, base, sizeof got);
        memcpy(want, base, sizeof want);
        s.params.frequency_penalty = fp[k][0];
        s.params.presence_penalty = fp[k][1];
        dn_sampler_apply_penalties(&s, got, hist, (size_t)nh);
        ref_penalties(want, N, hist, nh, -1, 1.0f, fp[k][0], fp[k][1], NULL);
        for (int i = 0; i < N; i++) ck_assert_float_eq_tol(got[i], want[i], 1e-6f);
        /* id 3 occurs 4 times */
        ck_assert_float_eq_tol(got[3], 2.0f - 4 * fp[k][0] - fp[k][1], 1e-6f);
    }
    /* repetition first, then frequency/presence */
    float got[N];
    memcpy(got, base, sizeof got);
    s.params.repeat_penalty = 2.0f;
    s.params.frequency_penalty = 0.1f;
    s.params.presence_penalty = 0.2f;
    dn_sampler_apply_penalties(&s, got, hist, (size_t)nh);
    ck_assert_float_eq_tol(got[3], 2.0f / 2.0f - 0.4f - 0.2f, 1e-6f);
    ck_assert_float_eq_tol(got[2], -1.0f * 2.0f - 0.2f - 0.2f, 1e-6f);
    dn_sampler_free(&s);
}
END_TEST

START_TEST(test_sampler_bias_rejects_bad_args)
{
    enum { N = 50 };
    dn_sampler s;
    init_sampler(&s, N, 11);
    ck_assert_int_eq(dn_sampler_set_bias(&s, -1, 1.0f), DANU_ERR_BAD_TOKEN);
    ck_assert_int_eq(dn_sampler_set_bias(&s, N, 1.0f), DANU_ERR_BAD_TOKEN);
    ck_assert_int_eq(dn_sampler_set_bias(&s, 0, NAN), DANU_ERR_INVALID_ARG);
    ck_assert_int_eq(s.has_bias, 0);
    dn_sampler_free(&s);
}
END_TEST

/* A huge bias forces its token, sampled or greedy; clearing it restores
 * the argmax. */
START_TEST(test_sampler_bias_forces_token)
{
    enum { N = 50 };
    float l[N];
    long cnt[N];
    dn_sampler s;
    init_sampler(&s, N, 11);
    random_logits(l, N, 2.0f);
    int top = ref_argmax(l, N);
    int forced = (top + 7) % N;
    ck_assert_int_eq(dn_sampler_set_bias(&s, forced, 1000.0f), DANU_OK);
    histogram(&s, l, cnt, N, 2000);
    ck_assert_int_eq(cnt[forced], 2000);
    s.params.temperature = 0.0f;
    ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), forced);
    dn_sampler_clear_bias(&s);
    ck_assert_int_eq(s.has_bias, 0);
    ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), top);
    dn_sampler_free(&s);
}
END_TEST

/* A -1e30 bias bans its token: greedy moves to the runner-up, sampling
 * never picks it; setting the bias back to 0 removes it. */
START_TEST(test_sampler_bias_ban)
{
    enum { N = 50 };
    float l[N];
    long cnt[N];
    dn_sampler s;
    init_sampler(&s, N, 11);
    random_logits(l, N, 2.0f);
    int top = ref_argmax(l, N);
    s.params.temperature = 0.0f;
    ck_assert_int_eq(dn_sampler_set_bias(&s, top, -1e30f), DANU_OK);
    float want[N];
    memcpy(want, l, sizeof want);
    want[top] = -INFINITY;
    ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), ref_argmax(want, N));
    s.params.temperature = 1.0f;
    for (int i = 0; i < N; i++) l[i] = 0.0f;  /* flat: the ban is the only reason to miss */
    histogram(&s, l, cnt, N, 20000);
    ck_assert_int_eq(cnt[top], 0);
    for (int i = 0; i < N; i++) if (i != top) ck_assert_int_gt(cnt[i], 0);
    /* setting 0 removes the bias again */
    ck_assert_int_eq(dn_sampler_set_bias(&s, top, 0.0f), DANU_OK);
    ck_assert_int_eq(s.has_bias, 0);
    dn_sampler_free(&s);
}
END_TEST

/* Bias is added after the penalties (the reference adds it last). */
START_TEST(test_sampler_bias_after_penalties)
{
    enum { N = 50 };
    dn_sampler s;
    init_sampler(&s, N, 11);
    const int32_t hist[] = { 2, 2, 5 };
    float got[N], ref[N];
    random_logits(got, N, 2.0f);
    memcpy(ref, got, sizeof ref);
    float bias[N] = { 0 };
    bias[2] = 0.75f; bias[9] = -1.25f;
    ck_assert_int_eq(dn_sampler_set_bias(&s, 2, 0.75f), DANU_OK);
    ck_assert_int_eq(dn_sampler_set_bias(&s, 9, -1.25f), DANU_OK);
    s.params.repeat_penalty = 1.3f;
    s.params.frequency_penalty = 0.1f;
    dn_sampler_apply_penalties(&s, got, hist, 3);
    ref_penalties(ref, N, hist, 3, 64, 1.3f, 0.1f, 0.0f, bias);
    for (int i = 0; i < N; i++) ck_assert_float_eq_tol(got[i], ref[i], 1e-6f);
    dn_sampler_free(&s);
}
END_TEST

START_TEST(test_sampler_top_k1_is_greedy)
{
    enum { N = 3000 };
    static float l[N];
    dn_sampler s;
    init_sampler(&s, N, 5);
    s.params.top_k = 1;
    s.params.temperature = 1.5f;
    s.params.top_p = 0.9f;
    s.params.min_p = 0.05f;
    for (int trial = 0; trial < 100; trial++) {
        random_logits(l, N, 5.0f);
        if (trial % 4 == 0) {  /* ties at the top: lowest id */
            int a = (int)(lcg_unit() * N), b = (int)(lcg_unit() * N);
            l[a] = l[b] = 6.0f;
        }
        if (trial % 5 == 0)  /* coarse logits: many ties everywhere */
            for (int i = 0; i < N; i++) l[i] = floorf(l[i]);
        ck_assert_int_eq(dn_sampler_sample(&s, l, NULL, NULL, 0), ref_argmax(l, N));
    }
    dn_sampler_free(&s);
}
END_TEST

/* 200k draws at temperature 1 (and 0.7) match softmax within 4 sigma per bin. */
START_TEST(test_sampler_distribution)
{
    enum { N = 5, DRAWS = 200000 };
    const float l[N] = { 1.0f, -0.5f, 0.3f, 2.0f, -2.0f };
    const float temps[] = { 1.0f, 0.7f };
    long cnt[N];
    dn_sampler s;
    init_sampler(&s, N, 2024);
    for (int t = 0; t < 2; t++) {
        s.params.temperature = temps[t];
        histogram(&s, l, cnt, N, DRAWS);
        double z = 0, pr[N];
        for (int i = 0; i < N; i++) z += exp((double)l[i] / temps[t]);
        for (int i = 0; i < N; i++) {
            pr[i] = exp((double)l[i] / temps[t]) / z;
            double mean = DRAWS * pr[i], sd = sqrt(DRAWS * pr[i] * (1 - pr[i]));
            ck_assert_msg(fabs((double)cnt[i] - mean) <= 4 * sd,
                          "T=%g token %d: %ld draws, expected %.1f +- %.1f", temps[t], i, cnt[i], mean, sd);
        }
    }
    dn_sampler_free(&s);
}
END_TEST

/* probabilities assigned to shuffled ids so order by id says nothing */
static void crafted(float *l, const double *prob, const int *ids, int n)
{
    for (int i = 0; i < n; i++) l[ids[i]] = (float)log(prob[i]);
}

START_TEST(test_sampler_truncation_support)
{
    enum { N = 8, DRAWS = 40000 };
    const double prob[N] = { 0.30, 0.20, 0.15, 0.12, 0.10, 0.07, 0.04, 0.02 };
    const int ids[N] = { 5, 2, 7, 0, 3, 6, 1, 4 };  /* ids[rank] */
    float l[N];
    long cnt[N];
    crafted(l, prob, ids, N);
    dn_sampler s;
    init_sampler(&s, N, 99);

    struct { int k; float p, minp; int keep; } cases[] = {
        { 0, 1.0f, 0.0f, 8 },   /* nothing */
        { 3, 1.0f, 0.0f, 3 },   /* top-k */
        { 0, 0.60f, 0.0f, 3 },  /* .30 .50 .65: the third reaches .60 */
        { 0, 0.80f, 0.0f, 5 },  /* .77 < .80 <= .87 */
        { 0, 0.25f, 0.0f, 1 },  /* first alone already covers it */
        { 0, 0.0f, 0.0f, 1 },   /* top_p 0 still keeps one */
        { 0, 1.0f, 0.30f, 5 },  /* min .09: drops .07 .04 .02 */
        { 0, 1.0f, 0.45f, 3 },  /* min .135: keeps .15, drops .12 */
        { 0, 1.0f, 0.10f, 7 },  /* min .03: drops .02 */
        { 6, 0.9f, 0.0f, 5 },   /* within top 6 (mass .94): .30/.94.. cum .82 < .9 <= .926 */
        { 0, 0.90f, 0.25f, 5 }, /* top-p keeps 6 (.94), min .075 drops .07 */
        { 4, 1.0f, 0.45f, 3 },  /* top 4, then min .135 drops .12 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        s.params.top_k = cases[c].k;
        s.params.top_p = cases[c].p;
        s.params.min_p = cases[c].minp;
        histogram(&s, l, cnt, N, DRAWS);
        for (int r = 0; r < N; r++) {
            if (r < cases[c].keep)
                ck_assert_msg(cnt[ids[r]] > 0, "case %zu: rank %d never drawn", c, r);
            else
                ck_assert_msg(cnt[ids[r]] == 0, "case %zu: rank %d drawn %ld times", c, r, cnt[ids[r]]);
        }
    }
    dn_sampler_free(&s);
}
END_TEST

/* The kept set is renormalised: top-k 2 of .30/.20 draws .6/.4. */
START_TEST(test_sampler_truncation_renormalises)
{
    enum { N = 8 };
    const double prob[N] = { 0.30, 0.20, 0.15, 0.12, 0.10, 0.07, 0.04, 0.02 };
    const int ids[N] = { 5, 2, 7, 0, 3, 6, 1, 4 };  /* ids[rank] */
    float l[N];
    long cnt[N];
    crafted(l, prob, ids, N);
    dn_sampler s;
    init_sampler(&s, N, 99);
    s.params.top_k = 2; s.params.top_p = 1.0f; s.params.min_p = 0.0f;
    histogram(&s, l, cnt, N, 100000);
    double sd = sqrt(100000 * 0.6 * 0.4);
    ck_assert_msg(fabs((double)cnt[ids[0]] - 60000) <= 4 * sd, "rank 0: %ld draws of 100000, want 60000", cnt[ids[0]]);
    ck_assert_msg(fabs((double)cnt[ids[1]] - 40000) <= 4 * sd, "rank 1: %ld draws of 100000, want 40000", cnt[ids[1]]);
    dn_sampler_free(&s);
}
END_TEST

START_TEST(test_sampler_top_k_ties_large)
{
    /* 5000 tokens, many equal logits: top-k keeps the k highest, lowest ids on
     * ties. K covers the heap path (small) and quickselect (large). */
    enum { N = 5000 };
    const int ks[] = { 37, 600 };
    static float l[N];
    static long cnt[N];
    for (int i = 0; i < N; i++) l[i] = (float)((i * 7919) % 13);  /* 0..12, ~385 each */
    dn_sampler s;
    init_sampler(&s, N, 4);
    s.params.temperature = 100.0f;  /* nearly flat among the kept */
    for (int c = 0; c < 2; c++) {
        int K = ks[c];
        s.params.top_k = K;
        histogram(&s, l, cnt, N, 20 * K);
        /* reference: stable order by (logit desc, id asc), first K */
        int kept = 0;
        for (int v = 12; v >= 0 && kept < K; v--)
            for (int i = 0; i < N && kept < K; i++)
                if (l[i] == (float)v) { ck_assert_msg(cnt[i] > 0, "id %d missing", i); cnt[i] = 0; kept++; }
        for (int i = 0; i < N; i++) ck_assert_msg(cnt[i] == 0, "K %d: id %d outside top-k", K, i);
    }
    dn_sampler_free(&s);
}
END_TEST

/* Top-k on sorted and reverse-sorted inputs (worst cases for naive
 * selection) draws only from the k highest. */
START_TEST(test_sampler_top_k_sorted_inputs)
{
    enum { N = 5000 };
    const int ks[] = { 37, 600 };
    static float l[N];
    dn_sampler s;
    init_sampler(&s, N, 4);
    s.params.temperature = 100.0f;
    for (int dir = 0; dir < 2; dir++) {
        for (int i = 0; i < N; i++) l[i] = dir ? (float)i : (float)-i;
        for (int c = 0; c < 2; c++) {
            s.params.top_k = ks[c];
            for (int d = 0; d < 200; d++) {
                int t = dn_sampler_sample(&s, l, NULL, NULL, 0);
                ck_assert_msg(dir ? t >= N - ks[c] : t < ks[c], "%s input, k %d: drew id %d",
                              dir ? "ascending" : "descending", ks[c], t);
            }
        }
    }
    dn_sampler_free(&s);
}
END_TEST

/* top-p without top-k over a large vocabulary against a sorted reference */
START_TEST(test_sampler_top_p_large)
{
    enum { N = 2000 };
    static float l[N];
    static long cnt[N];
    static int order[N];
    static double pr[N];
    dn_sampler s;
    init_sampler(&s, N, 8);
    const float tps[] = { 0.5f, 0.9f };
    for (int c = 0; c < 2; c++) {
        /* a steep head: the kept set is a few dozen tokens */
        for (int i = 0; i < N; i++) l[i] = (float)(-0.15 * ((i * 1237) % N));
        s.params.top_p = tps[c];
        double z = 0;
        for (int i = 0; i < N; i++) { pr[i] = exp((double)l[i]); z += pr[i]; order[i] = i; }
        /* reference: insertion sort by probability desc */
        for (int i = 1; i < N; i++) {
            int t = order[i], j = i;
            while (j > 0 && pr[order[j - 1]] < pr[t]) { order[j] = order[j - 1]; j--; }
            order[j] = t;
        }
        int keep = 0;
        double cum = 0;
        while (keep < N && cum < tps[c] * z) cum += pr[order[keep++]];
        ck_assert_int_lt(keep, 60);
        /* keep the boundary clear of rounding */
        ck_assert(cum - pr[order[keep - 1]] < tps[c] * z * (1 - 1e-4));
        ck_assert(cum > tps[c] * z * (1 + 1e-4));
        histogram(&s, l, cnt, N, 10000);
        for (int r = 0; r < N; r++) {
            if (r < keep && pr[order[r]] / cum > 3e-3)  /* >= 30 expected draws */
                ck_assert_msg(cnt[order[r]] > 0, "top-p %g: rank %d never drawn", tps[c], r);
            if (r >= keep)
                ck_assert_msg(cnt[order[r]] == 0, "top-p %g: rank %d drawn", tps[c], r);
        }
    }
    dn_sampler_free(&s);
}
END_TEST

/* independent splitmix64 -> xoshiro256** */
static uint64_t ref_sm(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t ref_xoshiro(uint64_t *s)
{
    uint64_t r = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
    s[3] = ref_rotl(s[3], 45);
    return r;
}

/* A seed gives exactly the splitmix64 -> xoshiro256** stream. */
START_TEST(test_sampler_seed_reference_stream)
{
    /* splitmix64 known answer (seed 0) checks the reference itself */
    uint64_t x = 0;
    ck_assert_uint_eq(ref_sm(&x), 0xe220a8397b1dcdafULL);

    /* flat logits over 2^15 tokens: the draw is exactly the top 15 bits of
     * each xoshiro256** output, so the token stream is fixed on every platform */
    enum { N = 32768 };
    static float l[N];
    for (int i = 0; i < N; i++) l[i] = 0.25f;
    const uint64_t seeds[] = { 0, 1, 42, 0xdeadbeefcafef00dULL };
    dn_sampler s;
    init_sampler(&s, N, 0);
    for (size_t k = 0; k < 4; k++) {
        uint64_t st[4], sx = seeds[k];
        for (int i = 0; i < 4; i++) st[i] = ref_sm(&sx);
        dn_sampler_seed(&s, seeds[k]);
        int mismatch = -1;
        for (int d = 0; d < 200 && mismatch < 0; d++)
            if (dn_sampler_sample(&s, l, NULL, NULL, 0) != (int)(ref_xoshiro(st) >> 49)) mismatch = d;
        ck_assert_msg(mismatch < 0, "seed %zu: draw %d differs from the reference stream", k, mismatch);
    }
    dn_sampler_free(&s);
}
END_TEST

/* Same seed + same calls = same tokens (full pipeline); another seed differs. */
START_TEST(test_sampler_same_seed_same_tokens)
{
    enum { M = 2000, T = 300 };
    static float lm[M];
    random_logits(lm, M, 3.0f);
    dn_sampler s;
    danu_token a[T], b[T], c[T];
    int32_t hist[T];
    const uint64_t sd[3] = { 77, 77, 78 };
    danu_token *out[3] = { a, b, c };
    for (int r = 0; r < 3; r++) {
        init_sampler(&s, M, sd[r]);
        s.params.top_k = 50; s.params.top_p = 0.9f; s.params.min_p = 0.02f;
        s.params.repeat_penalty = 1.1f; s.params.temperature = 0.9f;
        for (int d = 0; d < T; d++) {
            out[r][d] = dn_sampler_sample(&s, lm, NULL, hist, (size_t)d);
            hist[d] = out[r][d];
        }
        dn_sampler_free(&s);
    }
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
}
END_TEST

/* Reseeding restarts the stream. */
START_TEST(test_sampler_reseed_restarts)
{
    enum { M = 2000 };
    static float lm[M];
    random_logits(lm, M, 3.0f);
    dn_sampler s;
    init_sampler(&s, M, 5);
    danu_token first[20];
    for (int d = 0; d < 20; d++) first[d] = dn_sampler_sample(&s, lm, NULL, NULL, 0);
    dn_sampler_seed(&s, 5);
    for (int d = 0; d < 20; d++) ck_assert_int_eq(dn_sampler_sample(&s, lm, NULL, NULL, 0), first[d]);
    dn_sampler_free(&s);
}
END_TEST

/* counting allocator */
typedef struct { long calls; long live; } counter;
static void *c_malloc(void *u, size_t n) { counter *c = u; c->calls++; c->live++; return malloc(n); }
static void *c_realloc(void *u, void *p, size_t n) { counter *c = u; c->calls++; if (!p) c->live++; return realloc(p, n); }
static void c_free(void *u, void *p) { counter *c = u; if (p) c->live--; free(p); }

START_TEST(test_sampler_no_alloc_per_call)
{
    counter c = { 0, 0 };
    dn_alloc a = { c_malloc, c_realloc, c_free, &c };
    enum { N = 4000 };
    static float l[N];
    random_logits(l, N, 4.0f);
    dn_sampler s;
    ck_assert_int_eq(dn_sampler_init(&s, &a, N, 1), DANU_OK);
    dn_sampler_set_bias(&s, 3, 2.0f);
    long calls = c.calls;
    ck_assert_int_gt(calls, 0);
    int32_t hist[256];
    for (int i = 0; i < 256; i++) hist[i] = (i * 37) % N;
    for (int d = 0; d < 500; d++) {
        s.params.temperature = (d % 5 == 0) ? 0.0f : 0.8f;
        s.params.top_k = (d % 3) * 20;
        s.params.top_p = (d % 2) ? 0.9f : 1.0f;
        s.params.min_p = (d % 4) ? 0.05f : 0.0f;
        s.params.repeat_penalty = 1.2f;
        s.params.repeat_last_n = (d % 7) - 1;
        s.params.frequency_penalty = 0.1f;
        dn_sampler_sample(&s, l, NULL, hist, 256);
    }
    ck_assert_int_eq(c.calls, calls);
    dn_sampler_free(&s);
    ck_assert_int_eq(c.live, 0);
}
END_TEST

/* fail the k-th allocation */
static int fail_at, fail_seen;
static long fail_live;
static void *f_malloc(void *u, size_t n) { (void)u; if (fail_seen++ == fail_at) return NULL; fail_live++; return malloc(n); }
static void *f_realloc(void *u, void *p, size_t n) { (void)u; if (fail_seen++ == fail_at) return NULL; if (!p) fail_live++; return realloc(p, n); }
static void f_free(void *u, void *p) { (void)u; if (p) fail_live--; free(p); }

START_TEST(test_sampler_oom)
{
    dn_alloc a = { f_malloc, f_realloc, f_free, NULL };
    for (fail_at = 0; fail_at < 8; fail_at++) {
        fail_seen = 0; fail_live = 0;
        dn_sampler s;
        danu_status st = dn_sampler_init(&s, &a, 1000, 1);
        if (st == DANU_OK) { ck_assert_int_ge(fail_at, 4); dn_sampler_free(&s); }
        else ck_assert_int_eq(st, DANU_ERR_NOMEM);
        ck_assert_int_eq(fail_live, 0);
    }
}
END_TEST

/* Slow stage (wall clock): a sample from a 32000 vocabulary stays under
 * 2 ms with top-k 40 and under 20 ms with every id sorted (top-k off). */
START_TEST(test_sampler_speed)
{
    enum { N = 32000, REPS = 2000 };
    static float l[N];
    random_logits(l, N, 8.0f);
    dn_sampler s;
    dn_sampler_init(&s, dn_alloc_libc(), N, 9);  /* defaults: T 0.8, k 40, p .95, min-p .05 */
    s.params.repeat_penalty = 1.1f;
    int32_t hist[64];
    for (int i = 0; i < 64; i++) hist[i] = (i * 997) % N;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int32_t bad = -1;   /* a sampled id outside the vocabulary, if any */
    for (int r = 0; r < REPS; r++) {
        const int32_t id = dn_sampler_sample(&s, l, NULL, hist, 64);
        if (id < 0 || id >= N) bad = id;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / REPS;
    printf("sampler: 32000 vocab, top_k 40: %.1f us/sample\n", us);
    ck_assert_msg(bad == -1, "sampled id %d outside [0, %d)", bad, N);
    ck_assert_msg(us < 2000.0, "%.1f us per sample", us);
    /* top-k off with top-p sorts everything: still bounded */
    s.params.top_k = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < 200; r++) {
        const int32_t id = dn_sampler_sample(&s, l, NULL, hist, 64);
        if (id < 0 || id >= N) bad = id;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / 200;
    printf("sampler: 32000 vocab, top_k off, top_p .95: %.1f us/sample\n", us);
    ck_assert_msg(us < 20000.0, "%.1f us per sample", us);
    ck_assert_msg(bad == -1, "sampled id %d outside [0, %d)", bad, N);
    dn_sampler_free(&s);
}
END_TEST

static Suite *sampler_suite(void)
{
    Suite *su = suite_create("sampler");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sampler_params_default);
    tcase_add_test(tc, test_sampler_init_takes_defaults);
    tcase_add_test(tc, test_sampler_free_twice_and_null);
    tcase_add_test(tc, test_sampler_init_rejects_zero_vocab);
    tcase_add_test(tc, test_sampler_greedy_argmax);
    tcase_add_test(tc, test_sampler_greedy_ties_lowest_id);
    tcase_add_test(tc, test_sampler_nonfinite_logits);
    tcase_add_test(tc, test_sampler_nan_never_sampled);
    tcase_add_test(tc, test_sampler_repetition_penalty);
    tcase_add_test(tc, test_sampler_penalties_leave_no_counts);
    tcase_add_test(tc, test_sampler_window);
    tcase_add_test(tc, test_sampler_frequency_presence);
    tcase_add_test(tc, test_sampler_bias_rejects_bad_args);
    tcase_add_test(tc, test_sampler_bias_forces_token);
    tcase_add_test(tc, test_sampler_bias_ban);
    tcase_add_test(tc, test_sampler_bias_after_penalties);
    tcase_add_test(tc, test_sampler_top_k1_is_greedy);
    tcase_add_test(tc, test_sampler_distribution);
    tcase_add_test(tc, test_sampler_truncation_support);
    tcase_add_test(tc, test_sampler_truncation_renormalises);
    tcase_add_test(tc, test_sampler_top_k_ties_large);
    tcase_add_test(tc, test_sampler_top_k_sorted_inputs);
    tcase_add_test(tc, test_sampler_top_p_large);
    tcase_add_test(tc, test_sampler_seed_reference_stream);
    tcase_add_test(tc, test_sampler_same_seed_same_tokens);
    tcase_add_test(tc, test_sampler_reseed_restarts);
    tcase_add_test(tc, test_sampler_no_alloc_per_call);
    tcase_add_test(tc, test_sampler_oom);
    suite_add_tcase(su, tc);
    return su;
}

static Suite *sampler_slow_suite(void)
{
    Suite *su = suite_create("sampler_slow");
    TCase *tc = tcase_create("slow");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sampler_speed);
    suite_add_tcase(su, tc);
    return su;
}

int main(int argc, char **argv)
{
    int failed = tu_run(tu_slow_stage(argc, argv) ? sampler_slow_suite() : sampler_suite());
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
