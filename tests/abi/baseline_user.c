/* baseline_user.c - a program compiled against the BASELINE danu.h
 * (tests/abi/baseline/danu.h, libdanu 0.1.0) and linked to the library being
 * built: old binaries must keep working. It uses the allocator struct (the one
 * visible layout), options, synthesis, load, tokenizer, decoder, greedy
 * generation and the state, and compares the generated ids with the
 * transformers golden of tiny-a.capital.
 *
 * usage: baseline_user TOKENIZER_MODEL TMPDIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "danu.h"

/* tests/data/golden/tiny-a.capital.txt: prompt and the first greedy ids. */
static const danu_token prompt[] = { 1, 450, 7483, 310, 3444, 338 };
static const danu_token golden[] = { 18738, 22114, 31691, 9842, 9756, 14557, 14486, 13739 };
#define N_GOLDEN (sizeof golden / sizeof golden[0])

static size_t live;  /* allocations through the baseline-layout allocator */
static void *my_malloc(void *u, size_t n) { (void)u; live++; return malloc(n); }
static void *my_realloc(void *u, void *p, size_t n) { (void)u; if (!p) live++; return realloc(p, n); }
static void my_free(void *u, void *p) { (void)u; if (p) live--; free(p); }

static int fail(const char *what, danu_status s)
{
    fprintf(stderr, "baseline_user: %s: %s: %s\n", what, danu_strerror(s), danu_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: baseline_user TOKENIZER_MODEL TMPDIR\n"); return 2; }
    printf("header %s (%d), library %s (%u)\n", DANU_VERSION_STRING, DANU_VERSION_NUMBER, danu_version_string(),
           danu_version_number());
    if (danu_version_number() < DANU_VERSION_NUMBER) return fail("library older than the header", DANU_OK);

    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    static unsigned char spm[1 << 20];
    size_t spm_len = fread(spm, 1, sizeof spm, f);
    fclose(f);

    char path[4096];
    snprintf(path, sizeof path, "%s/baseline-user-tiny-a.gguf", argv[2]);
    unlink(path);
    danu_status s = danu_synth_write("tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16, spm, spm_len, path, NULL);
    if (s != DANU_OK) return fail("synth", s);

    danu_allocator a = { sizeof(danu_allocator), my_malloc, my_realloc, my_free, NULL };
    danu_options *o = NULL;
    if ((s = danu_options_create(&a, &o)) != DANU_OK) return fail("options", s);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, 0.0);
    danu_options_set_int(o, DANU_OPT_N_CTX, 64);
    danu_options_set_int(o, DANU_OPT_N_THREADS, 2);
    danu_model *m = NULL;
    danu_context *c = NULL;
    if ((s = danu_model_load(path, o, &m)) != DANU_OK) return fail("load", s);
    if ((s = danu_context_create(m, o, &c)) != DANU_OK) return fail("context", s);
    danu_options_free(o);

    /* the tokenizer round trip of the prompt text */
    const danu_tokenizer *tok = danu_model_tokenizer(m);
    char text[256];
    size_t len = 0, n_ids = 0;
    danu_token ids[16];
    if ((s = danu_tokenizer_decode(tok, prompt + 1, 5, text, sizeof text, &len)) != DANU_OK) return fail("decode", s);
    if ((s = danu_tokenizer_encode(tok, text, len, DANU_TOKENIZE_ADD_BOS, ids, 16, &n_ids)) != DANU_OK)
        return fail("encode", s);
    if (n_ids != 6 || memcmp(ids, prompt, sizeof prompt)) { fprintf(stderr, "encode(\"%s\") differs\n", text); return 1; }

    if ((s = danu_context_eval(c, prompt, 6, NULL)) != DANU_OK) return fail("eval", s);
    size_t state_len = danu_context_state_size(c);
    void *state = malloc(state_len);
    if ((s = danu_context_state_save(c, state, state_len, NULL)) != DANU_OK) return fail("state save", s);
    for (int pass = 0; pass < 2; pass++) {
        printf("%s:", text);
        for (size_t i = 0; i < N_GOLDEN; i++) {
            danu_token t;
            char piece[128];
            size_t pl;
            int32_t why;
            if ((s = danu_context_step(c, &t, piece, sizeof piece, &pl, &why)) != DANU_OK) return fail("step", s);
            if (t != golden[i]) { fprintf(stderr, "\nstep %zu: id %d, golden %d\n", i, t, golden[i]); return 1; }
            printf("%s", piece);
        }
        printf("\n");
        /* the second pass starts from the restored state and must repeat the first */
        if (pass == 0 && (s = danu_context_state_load(c, state, state_len)) != DANU_OK) return fail("state load", s);
    }
    free(state);
    danu_context_free(c);
    danu_model_free(m);
    unlink(path);
    if (live != 0) { fprintf(stderr, "%zu allocations not freed\n", live); return 1; }
    printf("baseline program OK: %zu golden ids twice, allocator balanced\n", N_GOLDEN);
    return 0;
}
