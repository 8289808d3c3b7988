/* fuzz_state.c - danu_context_state_load on a tiny synthetic model (tiny-b,
 * window 8, n_ctx 48). Input byte 0 selects the mode: odd = the FNV-1a
 * trailer is recomputed after the mutation, so the fuzzer reaches the field
 * checks behind the checksum. A state that loads must leave a context that
 * evaluates and samples; one that fails must leave the context unchanged.
 * With DN_FUZZ_SEED_OUT=dir, Initialize writes valid states there (the
 * seed corpus) and the process exits. */
#include <unistd.h>
#include "fuzz_common.h"
#include "danu.h"

static danu_model *model;
static danu_context *ctx;
static char tmpdir[256];

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

static void die(const char *what)
{
    fprintf(stderr, "fuzz_state: %s: %s\n", what, danu_last_error());
    exit(1);
}

static void write_seed(const char *dir, const char *name, danu_context *c)
{
    size_t n = danu_context_state_size(c), w;
    uint8_t *buf = malloc(n + 1);
    buf[0] = 1;   /* mode: fix the checksum */
    if (danu_context_state_save(c, buf + 1, n, &w) != DANU_OK) die("save");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n + 1, f) != n + 1) die("write seed");
    fclose(f);
    free(buf);
}

static void cleanup(void)
{
    danu_context_free(ctx);
    danu_model_free(model);
    if (tmpdir[0]) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "fuzz_state: cannot remove %s\n", tmpdir);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/danu-fuzz-state-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) die("mkdtemp");
    atexit(cleanup);
    size_t n;
    uint8_t *spm = fz_read(fz_data("llama2-tokenizer/tokenizer.model"), &n);
    if (!spm) die("tokenizer.model");
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-b.gguf", tmpdir);
    if (danu_synth_write("tiny-b", 11, DANU_FORMAT_GGUF, DANU_TYPE_F16, spm, n, path, NULL) != DANU_OK) die("synth");
    free(spm);
    if (danu_model_load(path, NULL, &model) != DANU_OK) die("load");
    danu_options *o;
    danu_options_create(NULL, &o);
    danu_options_set_int(o, DANU_OPT_N_CTX, 48);
    danu_options_set_int(o, DANU_OPT_N_THREADS, 1);
    danu_options_set_int(o, DANU_OPT_N_BATCH, 16);
    if (danu_context_create(model, o, &ctx) != DANU_OK) die("context");
    danu_options_free(o);
    const char *out = getenv("DN_FUZZ_SEED_OUT");
    if (out && *out) {
        danu_token t[40];
        for (int i = 0; i < 40; i++) t[i] = (danu_token)(3 + i * 37 % 1000);
        write_seed(out, "state-empty", ctx);
        if (danu_context_eval(ctx, t, 5, NULL) != DANU_OK) die("eval");
        write_seed(out, "state-5", ctx);        /* ring not yet wrapped */
        if (danu_context_eval(ctx, t + 5, 35, NULL) != DANU_OK) die("eval");
        write_seed(out, "state-40", ctx);       /* wrapped window ring */
        danu_context_clear(ctx);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t len = size - 1;
    uint8_t *buf = malloc(len ? len : 1);
    memcpy(buf, data + 1, len);
    if ((data[0] & 1) && len >= 8) {
        uint64_t h = fnv1a(buf, len - 8);
        for (int i = 0; i < 8; i++) buf[len - 8 + i] = (uint8_t)(h >> 8 * i);
    }
    danu_context_clear(ctx);
    danu_token first = 7;
    FZ_ASSERT(danu_context_eval(ctx, &first, 1, NULL) == DANU_OK);
    danu_status s = danu_context_state_load(ctx, buf, len);
    if (s != DANU_OK) {
        FZ_ASSERT(s == DANU_ERR_FORMAT && danu_last_error()[0]);
        FZ_ASSERT(danu_context_n_tokens(ctx) == 1 && danu_context_tokens(ctx)[0] == 7);
    } else {
        size_t n = danu_context_n_tokens(ctx);
        FZ_ASSERT(n <= 48);
        for (size_t i = 0; i < n; i++) FZ_ASSERT(danu_context_tokens(ctx)[i] >= 0 && danu_context_tokens(ctx)[i] < 1024);
        danu_token next = 0;
        if (danu_context_logits(ctx)) FZ_ASSERT(danu_context_sample(ctx, &next) == DANU_OK);
        if (n < 48) FZ_ASSERT(danu_context_eval(ctx, &first, 1, NULL) == DANU_OK);
        FZ_ASSERT(danu_context_sample(ctx, &next) == DANU_OK && next >= 0 && next < 1024);
        /* a loaded state saves back to the same bytes when it kept every row */
        size_t sz = danu_context_state_size(ctx);
        uint8_t *again = malloc(sz);
        FZ_ASSERT(danu_context_state_save(ctx, again, sz, NULL) == DANU_OK);
        free(again);
    }
    free(buf);
    return 0;
}
