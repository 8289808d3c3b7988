/* testutil.c - helpers shared by the Check suites. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include "testutil.h"
#include "common/error.h"

const char *tu_last_error(void) { return dn_lasterr(); }

int tu_slow_stage(int argc, char **argv) { return argc > 1 && !strcmp(argv[1], "slow"); }

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

const char *tu_data(const char *rel)
{
    static _Thread_local char buf[4][4096];
    static _Thread_local int slot;
    char *b = buf[slot++ & 3];
    snprintf(b, 4096, "%s/%s", DN_TEST_DATA, rel);
    return b;
}

uint8_t *tu_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[n] = 0; if (len) *len = (size_t)n; }
    return b;
}

char *tu_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/danu-test-%s-XXXXXX", base, tag);
    if (!mkdtemp(p)) { free(p); return NULL; }
    return p;
}

void tu_rmtree(const char *path)
{
    if (!path || strlen(path) < 8 || !strstr(path, "danu-test-")) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) { /* best effort */ }
}

static int parse_ids(const char *s, int32_t *out, int cap)
{
    int n = 0;
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s || n >= cap) break;
        out[n++] = (int32_t)v;
        s = end;
    }
    return n;
}

int tu_golden_load(const char *name_case, tu_golden *g)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s.txt", name_case);
    memset(g, 0, sizeof *g);
    g->repetition_penalty = 1.0;
    FILE *f = fopen(tu_data(rel), "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        if (!strncmp(line, "prompt ", 7)) g->n_prompt = parse_ids(line + 7, g->prompt, 1024);
        else if (!strncmp(line, "greedy ", 7)) g->n_greedy = parse_ids(line + 7, g->greedy, 1024);
        else if (!strncmp(line, "repetition_penalty ", 19)) g->repetition_penalty = atof(line + 19);
        else if (!strncmp(line, "model ", 6)) sscanf(line + 6, "%63s", g->model);
        else if (!strncmp(line, "seed ", 5)) g->seed = strtoull(line + 5, NULL, 10);
    }
    free(line);
    fclose(f);
    return g->n_prompt > 0 ? 0 : -1;
}

void tu_golden_need(const char *name_case, tu_golden *g)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s.txt", name_case);
    CHECK(tu_golden_load(name_case, g) == 0, "cannot load golden %s (missing, unreadable or without a prompt line)",
          tu_data(rel));
}

float *tu_need_f32(const char *path, size_t *n)
{
    float *f = tu_read_f32(path, n);
    CHECK(f && *n > 0, "cannot read %s (missing, unreadable or empty)", path);
    return f;
}

float *tu_read_f32(const char *path, size_t *n)
{
    size_t len = 0;
    uint8_t *b = tu_read(path, &len);
    if (!b) return NULL;
    *n = len / 4;
    float *f = malloc(len ? len : 4);
    memcpy(f, b, len);  /* host is little-endian on every target we test */
    free(b);
    return f;
}

double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) { double d = fabs((double)a[i] - (double)b[i]); if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d; }
    return m;
}

double tu_max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

void *tu_count_malloc(void *user, size_t n)
{
    tu_counter *c = user;
    if (++c->calls == c->fail_at) return NULL;
    void *p = malloc(n);
    if (p) c->live++;
    return p;
}

void *tu_count_realloc(void *user, void *p, size_t n)
{
    tu_counter *c = user;
    if (++c->calls == c->fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) c->live++;
    return q;
}

void tu_count_free(void *user, void *p)
{
    tu_counter *c = user;
    if (p) { c->live--; free(p); }
}

void *tu_bytes_malloc(void *user, size_t n)
{
    tu_bytes *c = user;
    c->calls++;
    unsigned char *p = malloc(n + 16);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    c->live += (long long)n;
    c->blocks++;
    return p + 16;
}

void tu_bytes_free(void *user, void *q)
{
    if (!q) return;
    tu_bytes *c = user;
    unsigned char *p = (unsigned char *)q - 16;
    size_t n;
    memcpy(&n, p, sizeof n);
    c->live -= (long long)n;
    c->blocks--;
    free(p);
}

void *tu_bytes_realloc(void *user, void *q, size_t n)
{
    tu_bytes *c = user;
    if (!q) return tu_bytes_malloc(user, n);
    c->calls++;
    unsigned char *p = (unsigned char *)q - 16;
    size_t old;
    memcpy(&old, p, sizeof old);
    unsigned char *r = realloc(p, n + 16);
    if (!r) return NULL;
    memcpy(r, &n, sizeof n);
    c->live += (long long)n - (long long)old;
    return r + 16;
}

uint32_t tu_rand_u32(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 16);
}

float tu_rand_unit(uint64_t *s) { return (float)((tu_rand_u32(s) & 0xffffff) / 16777216.0 * 2.0 - 1.0); }

float tu_rand_act(uint64_t *s)
{
    float v = (tu_rand_unit(s) + tu_rand_unit(s) + tu_rand_unit(s)) * 0.6f;
    if ((tu_rand_u32(s) & 63) == 0) v *= 8.0f;
    return v;
}
