/* tokenize_bench.c - driver for bench/tokenizer_speed.sh.
 *   tokenize_bench gen OUT BYTES SEED    write reproducible English-like text
 *   tokenize_bench run MODEL TEXT IDS    encode TEXT (one call, whole file) a few
 *                                        times, print the best MB/s, write the
 *                                        ids (space separated) to IDS; then the
 *                                        same text line by line */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "text/tokenizer.h"
#include "format/spm.h"
#include "common/error.h"

static const char *const words[] = {
    "the", "of", "and", "to", "in", "a", "is", "was", "that", "for", "on", "as", "with", "by", "he", "at",
    "from", "his", "it", "an", "were", "are", "which", "this", "be", "or", "has", "had", "first", "one",
    "their", "its", "new", "after", "but", "who", "not", "they", "have", "her", "she", "two", "been",
    "other", "when", "there", "all", "during", "into", "school", "time", "may", "years", "more", "most",
    "only", "over", "city", "some", "world", "would", "where", "later", "up", "such", "used", "many",
    "can", "state", "about", "national", "out", "known", "university", "united", "then", "made",
    "government", "between", "century", "language", "mountain", "river", "because", "through", "people",
    "important", "different", "following", "development", "particularly", "information", "community",
    "tokenizer", "computation", "network", "history", "children", "question", "understand", "probably",
};

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static int gen(const char *path, size_t bytes, uint64_t seed)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
    size_t n = 0, nw = sizeof words / sizeof words[0];
    int cap = 1, in_sentence = 0;
    const char *sep = "";
    while (n < bytes) {
        char w[64];
        snprintf(w, sizeof w, "%s", words[rnd() % nw]);
        if (cap) w[0] = (char)(w[0] - 'a' + 'A');
        n += (size_t)fprintf(f, "%s%s", sep, w);
        in_sentence++;
        uint32_t r = rnd() % 100;
        if (in_sentence > 4 && r < 8) {           /* end the sentence; sometimes the paragraph */
            n += (size_t)fprintf(f, ".");
            in_sentence = 0;
            cap = 1;
            sep = rnd() % 6 == 0 ? "\n" : " ";
        } else {
            if (r < 14) n += (size_t)fprintf(f, ",");
            cap = 0;
            sep = " ";
        }
    }
    fclose(f);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) *len = (size_t)n;
    return b;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "gen")) return gen(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    if (argc != 5 || strcmp(argv[1], "run")) {
        fprintf(stderr, "usage: %s gen OUT BYTES SEED | run MODEL TEXT IDS\n", argv[0]);
        return 2;
    }
    size_t mlen, tlen;
    char *model = slurp(argv[2], &mlen), *text = slurp(argv[3], &tlen);
    if (!model || !text) { fprintf(stderr, "cannot read inputs\n"); return 1; }
    danu_tokenizer *t;
    if (dn_tokenizer_from_spm(dn_alloc_libc(), (const uint8_t *)model, mlen, argv[2], &t)) {
        fprintf(stderr, "load: %s\n", dn_lasterr());
        return 1;
    }
    double best = 1e30;
    danu_token *ids = NULL;
    size_t n = 0;
    for (int rep = 0; rep < 5; rep++) {
        free(ids);
        double t0 = now();
        if (dn_tokenizer_encode(t, text, tlen, 0, &ids, &n)) { fprintf(stderr, "encode: %s\n", dn_lasterr()); return 1; }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("libdanu: %zu bytes -> %zu ids, best of 5: %.4f s, %.2f MB/s\n", tlen, n, best, tlen / best / 1e6);
    /* the same text as separate lines, one encode call per line */
    double best_lines = 1e30;
    size_t n_lines_ids = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        n_lines_ids = 0;
        for (size_t i = 0; i < tlen;) {
            const char *nl = memchr(text + i, '\n', tlen - i);
            size_t end = nl ? (size_t)(nl - text) : tlen;
            danu_token *lids;
            size_t ln;
            if (dn_tokenizer_encode(t, text + i, end - i, 0, &lids, &ln)) { fprintf(stderr, "encode: %s\n", dn_lasterr()); return 1; }
            n_lines_ids += ln;
            free(lids);
            i = end + 1;
        }
        double dt = now() - t0;
        if (dt < best_lines) best_lines = dt;
    }
    printf("libdanu per line: %zu ids, best of 5: %.4f s, %.2f MB/s\n", n_lines_ids, best_lines, tlen / best_lines / 1e6);
    FILE *f = fopen(argv[4], "w");
    for (size_t i = 0; f && i < n; i++) fprintf(f, "%s%d", i ? " " : "", ids[i]);
    if (f) fclose(f);
    free(ids);
    dn_tokenizer_free(t);
    free(model);
    free(text);
    return 0;
}
