/* test_os.c - the os layer's parts for programs (the danu CLI uses them):
 * the barrier, the Ctrl-C hook, memory figures, the cache directory, and
 * argv / stdio / isatty, which are no-ops or plain libc on POSIX. The
 * Windows side runs in tests/win/run.sh (danu.exe under Wine). Also the
 * thread pool's hand-out of chunks (threadpool.c), which sits on them. */
#include <check.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/os.h"
#include "common/os_thread.h"
#include "common/threadpool.h"
#include "testutil.h"

/* ---- the barrier: nobody passes before all arrive, round after round ---- */

enum { B_THREADS = 5, B_ROUNDS = 300 };
static dn_barrier g_bar;
static atomic_int g_arrived, g_bad;

static void *barrier_main(void *arg)
{
    (void)arg;
    for (int r = 0; r < B_ROUNDS; r++) {
        atomic_fetch_add(&g_arrived, 1);
        dn_barrier_wait(&g_bar);
        if (atomic_load(&g_arrived) != (r + 1) * B_THREADS) atomic_store(&g_bad, 1);
        dn_barrier_wait(&g_bar);   /* everyone has checked before the next round adds */
    }
    return NULL;
}

START_TEST(test_barrier_rounds)
{
    dn_barrier_init(&g_bar, B_THREADS);
    atomic_store(&g_arrived, 0);
    atomic_store(&g_bad, 0);
    dn_thread t[B_THREADS];
    for (int i = 0; i < B_THREADS; i++) ck_assert_int_eq(dn_thread_create(&t[i], barrier_main, NULL), 0);
    for (int i = 0; i < B_THREADS; i++) dn_thread_join(&t[i]);
    dn_barrier_destroy(&g_bar);
    ck_assert_int_eq(atomic_load(&g_arrived), B_THREADS * B_ROUNDS);
    ck_assert_int_eq(atomic_load(&g_bad), 0);
}
END_TEST

START_TEST(test_barrier_of_one)
{
    dn_barrier b;
    dn_barrier_init(&b, 1);
    for (int i = 0; i < 3; i++) dn_barrier_wait(&b);   /* never blocks */
    dn_barrier_destroy(&b);
}
END_TEST

/* ---- Ctrl-C: the hook runs instead of the default; NULL puts it back ---- */

static atomic_int g_hits;
static void on_int(void) { atomic_fetch_add(&g_hits, 1); }

START_TEST(test_interrupt_hook)
{
    struct sigaction before, now;
    sigaction(SIGINT, NULL, &before);
    atomic_store(&g_hits, 0);
    ck_assert_int_eq(dn_on_interrupt(on_int), 0);
    ck_assert_int_eq(dn_on_interrupt(on_int), 0);   /* again: no second handler to unwind */
    raise(SIGINT);
    raise(SIGINT);
    ck_assert_int_eq(atomic_load(&g_hits), 2);
    sigaction(SIGINT, NULL, &now);
    ck_assert_int_eq(now.sa_flags & SA_RESTART, 0);   /* a blocking read ends on Ctrl-C */
    ck_assert_int_eq(dn_on_interrupt(NULL), 0);
    sigaction(SIGINT, NULL, &now);
    ck_assert(now.sa_handler == before.sa_handler);
    ck_assert_int_eq(dn_on_interrupt(NULL), 0);   /* nothing set: nothing to do */
}
END_TEST

/* ---- memory, terminal, arguments ---- */

START_TEST(test_rss)
{
    const size_t n = (size_t)64 << 20;
    char *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    volatile char *v = p;   /* stores the compiler keeps: every page resident */
    for (size_t i = 0; i < n; i += 4096) v[i] = 1;
    const uint64_t peak = dn_peak_rss(), cur = dn_current_rss();
    /* the kernel's counters lag a little behind page faults */
    ck_assert_uint_ge(peak, n - n / 8);
#ifdef __linux__
    ck_assert_uint_ge(cur, n - n / 8);
#else
    (void)cur;
#endif
    free(p);
}
END_TEST

START_TEST(test_isatty_and_args)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(dn_isatty(f), 0);
    fclose(f);
    char a0[] = "danu", a1[] = "r\xc3\xbc" "n";
    char *args[] = { a0, a1, NULL }, **argv = args;
    int argc = 2;
    dn_args_utf8(dn_alloc_libc(), &argc, &argv);   /* POSIX: argv is already the bytes given */
    ck_assert_int_eq(argc, 2);
    ck_assert_ptr_eq(argv, args);
    dn_stdio_utf8();
}
END_TEST

/* ---- the cache directory: XDG_CACHE_HOME, HOME/.cache, /tmp/.cache ---- */

static void cache_is(const char *want)
{
    char *d = dn_cache_dir(dn_alloc_libc());
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d, want);
    free(d);
}

START_TEST(test_cache_dir)
{
    char *xdg = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    setenv("HOME", "/h", 1);
    cache_is("/x/cache");
    setenv("XDG_CACHE_HOME", "", 1);   /* empty: as unset */
    cache_is("/h/.cache");
    unsetenv("XDG_CACHE_HOME");
    cache_is("/h/.cache");
    unsetenv("HOME");
    cache_is("/tmp/.cache");
    if (xdg) setenv("XDG_CACHE_HOME", xdg, 1);
    if (home) setenv("HOME", home, 1);
    free(xdg);
    free(home);
}
END_TEST

/* ---- the pool: each chunk of a job runs exactly once, on one of its lanes ---- */

enum { MAX_CHUNKS = 1001 };
typedef struct chunk_log { atomic_int runs[MAX_CHUNKS]; atomic_int bad_lane; int lanes; } chunk_log;

static void log_chunk(void *arg, int64_t c, int lane)
{
    chunk_log *l = arg;
    atomic_fetch_add(&l->runs[c], 1);
    if (lane < 0 || lane >= l->lanes) atomic_store(&l->bad_lane, 1);
}

/* Pools of 2, 3 and 12 threads (12: more lanes than a job has ranges of
 * chunks, so lanes share them), every lane count, chunk counts around the
 * range cuts, each job several times so that helpers join at different
 * moments and take from each other's ranges. */
START_TEST(test_pool_chunks_once)
{
    static const int sizes[] = { 2, 3, 12 };
    static const int64_t ns[] = { 1, 2, 3, 7, 8, 9, 17, 100, MAX_CHUNKS };
    static chunk_log log;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        dn_pool *p = NULL;
        ck_assert_int_eq(dn_pool_create(dn_alloc_libc(), sizes[si], &p), DANU_OK);
        for (int lanes = 1; lanes <= sizes[si]; lanes++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (int rep = 0; rep < 8; rep++) {
                    memset(&log, 0, sizeof log);
                    log.lanes = lanes;
                    dn_pool_for(p, lanes, ns[ni], log_chunk, &log);
                    for (int64_t c = 0; c < ns[ni]; c++)
                        ck_assert_msg(atomic_load(&log.runs[c]) == 1, "pool of %d, %d lanes, %lld chunks: chunk %lld ran %d times",
                                      sizes[si], lanes, (long long)ns[ni], (long long)c, atomic_load(&log.runs[c]));
                    for (int64_t c = ns[ni]; c < MAX_CHUNKS; c++) ck_assert_int_eq(atomic_load(&log.runs[c]), 0);
                    ck_assert_msg(!atomic_load(&log.bad_lane), "pool of %d, %d lanes: a chunk ran on a lane >= %d", sizes[si],
                                  lanes, lanes);
                }
        dn_pool_free(p);
    }
}
END_TEST

/* The solo periods of dn_adapt_note, as threadpool.h states them: a
 * period starts after DN_ADAPT_STRIKES more strikes than good jobs, is
 * DN_SOLO_FIRST jobs the first time, doubles up to DN_SOLO_MAX, and every
 * DN_ADAPT_CALM good jobs halve the next one down to DN_SOLO_MIN. */
static int strikes_until_solo(dn_adapt *a)
{
    for (int i = 1; i <= 10 * DN_ADAPT_STRIKES; i++)
        if (dn_adapt_note(a, 1)) return i;
    return -1;
}

START_TEST(test_adapt_solo_periods)
{
    dn_adapt a;
    memset(&a, 0, sizeof a);
    /* a good job takes one strike back */
    for (int i = 0; i < DN_ADAPT_STRIKES - 1; i++) ck_assert_int_eq(dn_adapt_note(&a, 1), 0);
    ck_assert_int_eq(dn_adapt_note(&a, 0), 0);
    ck_assert_int_eq(dn_adapt_note(&a, 1), 0);
    ck_assert_int_eq(dn_adapt_note(&a, 1), 1);
    ck_assert_int_eq(a.solo, DN_SOLO_FIRST);
    /* failing again: twice as long each time, up to the cap */
    int want = DN_SOLO_FIRST;
    for (int k = 0; k < 6; k++) {
        want = 2 * want < DN_SOLO_MAX ? 2 * want : DN_SOLO_MAX;
        ck_assert_int_eq(strikes_until_solo(&a), DN_ADAPT_STRIKES);
        ck_assert_int_eq(a.solo, want);
    }
    /* calm: each DN_ADAPT_CALM good jobs (counted across strikes; one
     * so far) halve the next period */
    for (int i = 0; i < DN_ADAPT_CALM - 2; i++) ck_assert_int_eq(dn_adapt_note(&a, 0), 0);
    ck_assert_int_eq(strikes_until_solo(&a), DN_ADAPT_STRIKES);
    ck_assert_int_eq(a.solo, DN_SOLO_MAX);
    ck_assert_int_eq(dn_adapt_note(&a, 0), 0);
    ck_assert_int_eq(strikes_until_solo(&a), DN_ADAPT_STRIKES);
    ck_assert_int_eq(a.solo, DN_SOLO_MAX / 2);
    for (int i = 0; i < 2 * DN_ADAPT_CALM; i++) ck_assert_int_eq(dn_adapt_note(&a, 0), 0);
    ck_assert_int_eq(strikes_until_solo(&a), DN_ADAPT_STRIKES);
    ck_assert_int_eq(a.solo, DN_SOLO_MAX / 4);
    /* long calm: down to the floor, and no further */
    for (int i = 0; i < 64 * DN_ADAPT_CALM; i++) ck_assert_int_eq(dn_adapt_note(&a, 0), 0);
    ck_assert_int_eq(strikes_until_solo(&a), DN_ADAPT_STRIKES);
    ck_assert_int_eq(a.solo, DN_SOLO_MIN);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("os");
    TCase *tc = tcase_create("os");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_barrier_rounds);
    tcase_add_test(tc, test_barrier_of_one);
    tcase_add_test(tc, test_interrupt_hook);
    tcase_add_test(tc, test_rss);
    tcase_add_test(tc, test_isatty_and_args);
    tcase_add_test(tc, test_cache_dir);
    tcase_add_test(tc, test_pool_chunks_once);
    tcase_add_test(tc, test_adapt_solo_periods);
    suite_add_tcase(s, tc);
    return tu_run(s) ? 1 : 0;
}
