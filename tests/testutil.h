/* testutil.h - helpers shared by the Check suites. */
#ifndef DN_TESTUTIL_H
#define DN_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>
#include <check.h>

#ifndef DN_TEST_DATA
#define DN_TEST_DATA "tests/data"
#endif

/* CHECK(cond, fmt, ...): unless cond, fail the running test with the
 * printf-style message (formatted only on failure, so cheap in loops).
 * CHECK_OK(call): the call returns DANU_OK (0); else fail with the call's
 * text, its status and the library's last error message. */
#define CHECK(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)
#define CHECK_OK(call) do { const int st_ = (int)(call);                                              \
        CHECK(st_ == 0, "%s: status %d: %s", #call, st_, tu_last_error()); } while (0)
/* The library's message for the last failure on this thread (dn_lasterr). */
const char *tu_last_error(void);

/* The slow stage: tests bounded by wall-clock time or checking behaviour
 * over a time window live in a suite binary's "slow" TCase, run only when
 * the binary gets the argument "slow" (meson test NAME_slow, suite 'slow',
 * which the default `meson test` leaves out; tests/run-all.sh runs it as its
 * own stage). 1 when argv asks for it, else 0 (the unit tests). */
int tu_slow_stage(int argc, char **argv);

/* Run a suite with Check's defaults; the number of failed tests. */
int tu_run(Suite *s);

/* DN_TEST_DATA "/" rel, in a static buffer per call slot (4 rotating). */
const char *tu_data(const char *rel);
/* Read a whole file (malloc'd, NUL-appended); NULL on failure. */
uint8_t *tu_read(const char *path, size_t *len);
/* A fresh empty directory under $TMPDIR (or /tmp), malloc'd path. */
char *tu_tmpdir(const char *tag);
/* rm -rf of a directory made by tu_tmpdir. */
void tu_rmtree(const char *path);

/* Golden case file NAME.CASE.txt: prompt ids, greedy ids, repetition penalty. */
typedef struct tu_golden {
    int32_t prompt[1024]; int n_prompt;
    int32_t greedy[1024]; int n_greedy;
    double repetition_penalty;      /* 1.0 when absent */
    char model[64];
    uint64_t seed;
} tu_golden;
int tu_golden_load(const char *name_case, tu_golden *g);   /* 0 ok */
/* tu_golden_load, or fail the running test naming the file. */
void tu_golden_need(const char *name_case, tu_golden *g);
/* Float32 LE file into malloc'd array; *n elements. */
float *tu_read_f32(const char *path, size_t *n);
/* tu_read_f32 of a non-empty file, or fail the running test naming it. */
float *tu_need_f32(const char *path, size_t *n);
/* max |a-b| and max |b| over n */
double tu_max_abs_diff(const float *a, const float *b, size_t n);
double tu_max_abs(const float *a, size_t n);

/* xorshift random numbers on a caller's state (tests stay reproducible):
 * 32 bits, uniform in [-1, 1), and activation-like values (roughly normal
 * with an outlier x8 one time in 64). */
uint32_t tu_rand_u32(uint64_t *state);
float tu_rand_unit(uint64_t *state);
float tu_rand_act(uint64_t *state);

/* Counting allocator for leak and allocation-failure tests: pass a
 * tu_counter as the user pointer of an allocator made of these three;
 * fail_at = k makes the k-th allocation call (malloc or realloc) fail. */
typedef struct tu_counter { long live, calls, fail_at; } tu_counter;
void *tu_count_malloc(void *user, size_t n);
void *tu_count_realloc(void *user, void *p, size_t n);
void tu_count_free(void *user, void *p);
/* Allocator that knows the bytes it has handed out (live), its calls and
 * the blocks still out: pass a tu_bytes as the user pointer of an
 * allocator made of these three (a 16-byte header keeps each block's size
 * and malloc's alignment). */
typedef struct tu_bytes { long long live, calls, blocks; } tu_bytes;
void *tu_bytes_malloc(void *user, size_t n);
void *tu_bytes_realloc(void *user, void *p, size_t n);
void tu_bytes_free(void *user, void *p);
#endif
