/* fuzz_common.h - helpers shared by the libFuzzer harnesses: test data
 * paths, a whole-file reader, and a sink that keeps the optimizer from
 * dropping reads the harness makes only to have ASan check them. */
#ifndef DN_FUZZ_COMMON_H
#define DN_FUZZ_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DN_TEST_DATA
#define DN_TEST_DATA "tests/data"
#endif

/* A read of every byte (and a bounds check of the range by ASan). */
static volatile uint8_t fz_sink;
static inline void fz_touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= b[i];
    fz_sink ^= x;
}

/* DN_FUZZ_DATA (environment) or the compiled-in test data dir, + rel. */
static inline const char *fz_data(const char *rel)
{
    static char buf[4096];
    const char *base = getenv("DN_FUZZ_DATA");
    snprintf(buf, sizeof buf, "%s/%s", base && *base ? base : DN_TEST_DATA, rel);
    return buf;
}

static inline uint8_t *fz_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b && len) *len = (size_t)n;
    return b;
}

/* Harness invariant that does not hold: report like a crash. */
#define FZ_ASSERT(cond) do { if (!(cond)) { fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); abort(); } } while (0)
#endif
