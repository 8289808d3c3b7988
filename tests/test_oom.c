/* test_oom.c - allocation failure. A fault-injecting danu_allocator fails
 * exactly the k-th allocation; for every k reachable in a whole session
 * (load, tokenize, context, chat, generation, state save/load, decoder),
 * the call that hits it returns DANU_ERR_NOMEM with a message, the objects
 * made before it stay usable (retrying the step without the failure
 * succeeds), and after everything is freed no block is live. Blocks carry a
 * header (magic, size) so frees of foreign pointers and double frees are
 * caught. Also: lib/ never calls libc's allocator directly. */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "danu.h"
#include "testutil.h"
#include "golden.h"

/* ------------------------------------------------------------------ */
/* the allocator                                                        */
/* ------------------------------------------------------------------ */

#define HDR 64                       /* header bytes; a multiple of 16 keeps malloc's alignment */
#define MAGIC 0x0f0a11ed5eedull
#define DEAD 0xdeadbeefdeadull

typedef struct fault {
    pthread_mutex_t mu;
    long calls;          /* malloc + realloc calls so far */
    long fail_at;        /* the call index to fail, -1 none */
    int hit;             /* the failure was injected */
    long live_blocks;
    long long live_bytes, peak_bytes;
    int bad_free;        /* a pointer not from us, or freed twice */
} fault;

typedef struct hdr { uint64_t magic; size_t size; } hdr;

static int should_fail(fault *f)
{
    long k = f->calls++;
    if (k == f->fail_at) { f->hit = 1; return 1; }
    return 0;
}

static void *f_malloc(void *user, size_t n)
{
    fault *f = user;
    pthread_mutex_lock(&f->mu);
    void *r = NULL;
    if (!should_fail(f) && n <= SIZE_MAX - HDR) {
        uint8_t *p = malloc(n + HDR);
        if (p) {
            hdr h = { MAGIC, n };
            memcpy(p, &h, sizeof h);
            f->live_blocks++;
            f->live_bytes += (long long)n;
            if (f->live_bytes > f->peak_bytes) f->peak_bytes = f->live_bytes;
            r = p + HDR;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return r;
}

static int take(fault *f, void *p, hdr *h)
{
    memcpy(h, (uint8_t *)p - HDR, sizeof *h);
    if (h->magic != MAGIC) { f->bad_free = 1; return 0; }
    return 1;
}

static void *f_realloc(void *user, void *p, size_t n)
{
    if (!p) return f_malloc(user, n);
    fault *f = user;
    pthread_mutex_lock(&f->mu);
    void *r = NULL;
    hdr h;
    if (take(f, p, &h) && !should_fail(f) && n <= SIZE_MAX - HDR) {
        uint8_t *q = realloc((uint8_t *)p - HDR, n + HDR);
        if (q) {
            f->live_bytes += (long long)n - (long long)h.size;
            if (f->live_bytes > f->peak_bytes) f->peak_bytes = f->live_bytes;
            h.size = n;
            memcpy(q, &h, sizeof h);
            r = q + HDR;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return r;
}

static void f_free(void *user, void *p)
{
    if (!p) return;
    fault *f = user;
    pthread_mutex_lock(&f->mu);
    hdr h;
    if (take(f, p, &h)) {
        f->live_blocks--;
        f->live_bytes -= (long long)h.size;
        h.magic = DEAD;
        memcpy((uint8_t *)p - HDR, &h, sizeof h);
        free((uint8_t *)p - HDR);
    }
    pthread_mutex_unlock(&f->mu);
}

static void fault_reset(fault *f, long fail_at)
{
    pthread_mutex_lock(&f->mu);
    f->calls = 0;
    f->fail_at = fail_at;
    f->hit = 0;
    pthread_mutex_unlock(&f->mu);
}

static void fault_disarm(fault *f)
{
    pthread_mutex_lock(&f->mu);
    f->fail_at = -1;
    pthread_mutex_unlock(&f->mu);
}

/* ------------------------------------------------------------------ */
/* one session                                                          */
/* ------------------------------------------------------------------ */

static char *tmp;

typedef struct outcome {
    danu_token ids[256];
    size_t n_ids;
    danu_token gen[8];
    int n_gen;
    size_t n_after_chat, n_loaded;
    char text[256];
    char dec[512];
} outcome;

typedef struct session {
    const char *path;
    int use_mmap;
    /* totals over every k */
    long points;         /* k whose failure was injected */
    long nomem;          /* steps that reported NOMEM */
    long absorbed;       /* injected failures a call absorbed (returned OK) */
} session;

static int32_t gen_cb(void *user, danu_token id, const char *text, size_t len)
{
    outcome *o = user;
    if (id >= 0 && o->n_gen < 8) o->gen[o->n_gen++] = id;
    size_t have = strlen(o->text);
    if (have + len < sizeof o->text) { memcpy(o->text + have, text, len); o->text[have + len] = 0; }
    return 0;
}

/* Run a step; on failure it must be NOMEM from the injected failure, then
 * the retry without failure must succeed. Returns the final status. */
#define STEP(call) do {                                                                              \
        danu_status st_ = (call);                                                                    \
        if (st_ != DANU_OK) {                                                                        \
            ck_assert_msg(st_ == DANU_ERR_NOMEM && f->hit, "k=%ld %s: status %d (%s), injected %d", k, \
                          #call, st_, danu_last_error(), f->hit);                                    \
            ck_assert_msg(danu_last_error()[0], "k=%ld %s: NOMEM without a message", k, #call);       \
            s->nomem++;                                                                              \
            failed = 1;                                                                              \
            fault_disarm(f);                                                                         \
            st_ = (call);                                                                            \
            ck_assert_msg(st_ == DANU_OK, "k=%ld %s: retry after NOMEM: %d (%s)", k, #call, st_,      \
                          danu_last_error());                                                        \
        }                                                                                            \
    } while (0)

/* Returns 1 while the k-th allocation was reached. */
static int run_session(session *s, fault *f, long k, outcome *out, const outcome *ref)
{
    int failed = 0;
    fault_reset(f, k);
    danu_allocator al = { sizeof al, f_malloc, f_realloc, f_free, f };
    danu_options *o = NULL;
    STEP(danu_options_create(&al, &o));
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_USE_MMAP, s->use_mmap), DANU_OK);
    /* repacked weights on every machine: the repack's allocations are swept too */
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_REPACK, DANU_REPACK_ON), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_THREADS, 2), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_N_CTX, 64), DANU_OK);
    ck_assert_int_eq(danu_options_set_float(o, DANU_OPT_TEMPERATURE, 0.0), DANU_OK);
    ck_assert_int_eq(danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1), DANU_OK);

    danu_model *m = NULL;
    STEP(danu_model_load(s->path, o, &m));
    const danu_tokenizer *tok = danu_model_tokenizer(m);
    ck_assert_ptr_nonnull(tok);

    static const char text[] = "The capital of France is Paris. \xc3\x89t\xc3\xa9 \xf0\x9f\x98\x80!";
    STEP(danu_tokenizer_encode(tok, text, sizeof text - 1, DANU_TOKENIZE_ADD_BOS, out->ids, 256, &out->n_ids));
    size_t dl;
    STEP(danu_tokenizer_decode(tok, out->ids, out->n_ids, out->dec, sizeof out->dec, &dl));

    danu_decoder *d = NULL;
    STEP(danu_decoder_create(tok, &d));

    danu_context *c = NULL;
    STEP(danu_context_create(m, o, &c));
    STEP(danu_context_add_stop_string(c, "never-appears-here"));
    const char *roles[2] = { "system", "user" }, *msgs[2] = { "Answer briefly.", "Why is the sky blue?" };
    STEP(danu_context_chat_append(c, roles, msgs, 2, 1));
    out->n_after_chat = danu_context_n_tokens(c);
    int32_t why;
    out->n_gen = 0;
    out->text[0] = 0;
    STEP(danu_context_generate(c, 4, gen_cb, out, &why));
    for (int i = 0; i < out->n_gen; i++) {
        char piece[64];
        size_t pl;
        STEP(danu_decoder_push(d, out->gen[i], piece, sizeof piece, &pl));
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/oom-state.bin", tmp);
    STEP(danu_context_state_save_file(c, path));
    danu_context *c2 = NULL;
    STEP(danu_context_create(m, o, &c2));
    STEP(danu_context_state_load_file(c2, path));
    out->n_loaded = danu_context_n_tokens(c2);
    danu_token next;
    STEP(danu_context_sample(c2, &next));
    STEP(danu_context_eval(c2, &next, 1, NULL));

    /* results equal the run without failures, unless a step had to be retried */
    if (ref && !failed) {
        ck_assert_uint_eq(out->n_ids, ref->n_ids);
        ck_assert_mem_eq(out->ids, ref->ids, ref->n_ids * sizeof(danu_token));
        ck_assert_str_eq(out->dec, ref->dec);
        ck_assert_uint_eq(out->n_after_chat, ref->n_after_chat);
        ck_assert_int_eq(out->n_gen, ref->n_gen);
        ck_assert_mem_eq(out->gen, ref->gen, (size_t)ref->n_gen * sizeof(danu_token));
        ck_assert_str_eq(out->text, ref->text);
        ck_assert_uint_eq(out->n_loaded, ref->n_loaded);
    }
    danu_context_free(c2);
    danu_context_free(c);
    danu_decoder_free(d);
    danu_model_free(m);
    danu_options_free(o);
    ck_assert_msg(!f->bad_free, "k=%ld: a pointer was freed that the allocator did not give out", k);
    ck_assert_msg(f->live_blocks == 0 && f->live_bytes == 0, "k=%ld: %ld blocks (%lld bytes) still live", k,
                  f->live_blocks, f->live_bytes);
    if (f->hit) {
        s->points++;
        if (!failed) s->absorbed++;
    }
    return f->hit;
}

static void run_all_k(session *s, const char *label)
{
    fault f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.mu, NULL);
    outcome ref, out;
    memset(&ref, 0, sizeof ref);
    run_session(s, &f, -1, &ref, NULL);
    long total = f.calls;
    ck_assert_int_gt(total, 10);
    ck_assert_int_gt(ref.n_gen, 0);
    long k;
    for (k = 0; k <= total; k++) {
        memset(&out, 0, sizeof out);
        if (!run_session(s, &f, k, &out, &ref)) break;
    }
    ck_assert_int_eq(k, total);   /* every allocation of the session was failed once */
    fprintf(stderr, "oom %s: %ld allocations in a session, %ld failure points, %ld NOMEM, %ld absorbed, peak %lld bytes\n",
            label, total, s->points, s->nomem, s->absorbed, f.peak_bytes);
    pthread_mutex_destroy(&f.mu);
}

START_TEST(test_oom_hf_session)
{
    session s = { gd_synth(tmp, "tiny-b", 11, DANU_FORMAT_HF, DANU_TYPE_BF16), 1, 0, 0, 0 };
    ck_assert_ptr_nonnull(s.path);
    run_all_k(&s, "tiny-b HF (mmap)");
}
END_TEST

START_TEST(test_oom_gguf_session)
{
    /* a real llama.cpp file (tokenizer from GGUF metadata), read into memory */
    session s = { tu_data("gguf-llamacpp/tiny-q-Q4_0.gguf"), 0, 0, 0, 0 };
    run_all_k(&s, "tiny-q Q4_0 GGUF (read)");
}
END_TEST

START_TEST(test_oom_tokenizer_load)
{
    fault f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.mu, NULL);
    danu_allocator al = { sizeof al, f_malloc, f_realloc, f_free, &f };
    long k, nomem = 0;
    for (k = 0;; k++) {
        fault_reset(&f, k);
        danu_options *o = NULL;
        danu_status st = danu_options_create(&al, &o);
        danu_tokenizer *t = NULL;
        if (st == DANU_OK) st = danu_tokenizer_load(tu_data("llama2-tokenizer/tokenizer.model"), o, &t);
        if (st == DANU_OK) {
            danu_token ids[16];
            size_t n;
            st = danu_tokenizer_encode(t, "Hello world", 11, 0, ids, 16, &n);
            if (st == DANU_OK) ck_assert_int_eq(ids[0], 15043);
        }
        if (st != DANU_OK) {
            ck_assert_msg(st == DANU_ERR_NOMEM && f.hit, "k=%ld: %d %s", k, st, danu_last_error());
            nomem++;
        }
        danu_tokenizer_free(t);
        danu_options_free(o);
        ck_assert_int_eq(f.live_blocks, 0);
        ck_assert(!f.bad_free);
        if (!f.hit) break;
    }
    fprintf(stderr, "oom tokenizer.model: %ld failure points, %ld NOMEM\n", k, nomem);
    pthread_mutex_destroy(&f.mu);
}
END_TEST

/* ------------------------------------------------------------------ */
/* no direct libc allocation in lib/                                    */
/* ------------------------------------------------------------------ */

/* Source with comments and string/char literals blanked out. */
static void strip(char *s)
{
    for (char *p = s; *p; p++) {
        if (p[0] == '/' && p[1] == '*') {
            char *e = strstr(p + 2, "*/");
            char *end = e ? e + 2 : p + strlen(p);
            for (; p < end; p++) if (*p != '\n') *p = ' ';
            p--;
        } else if (p[0] == '/' && p[1] == '/') {
            for (; *p && *p != '\n'; p++) *p = ' ';
            if (!*p) break;
        } else if (*p == '"' || *p == '\'') {
            char q = *p;
            for (p++; *p && *p != q; p++) {
                if (*p == '\\' && p[1]) *p++ = ' ';
                if (*p != '\n') *p = ' ';
            }
            if (!*p) break;
        }
    }
}

static int scan_file(const char *path, const char *rel, char *report, size_t cap)
{
    static const char *const fns[] = { "malloc", "calloc", "realloc", "free", "strdup", "strndup", "aligned_alloc",
                                       "posix_memalign", "valloc", "memalign", "reallocarray" };
    size_t n;
    char *src = (char *)tu_read(path, &n);
    ck_assert_ptr_nonnull(src);
    strip(src);
    int hits = 0;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        size_t fl = strlen(fns[i]);
        for (char *p = strstr(src, fns[i]); p; p = strstr(p + 1, fns[i])) {
            char before = p == src ? ' ' : p[-1];
            const char *q = p + fl;
            while (*q == ' ' || *q == '\t') q++;
            int ident = (before >= 'a' && before <= 'z') || (before >= 'A' && before <= 'Z') ||
                        (before >= '0' && before <= '9') || before == '_' || before == '.' || before == '>';
            char after = p[fl];
            int ident_after = (after >= 'a' && after <= 'z') || (after >= 'A' && after <= 'Z') ||
                              (after >= '0' && after <= '9') || after == '_';
            if (ident || ident_after || *q != '(') continue;
            int line = 1;
            for (char *c = src; c < p; c++) line += *c == '\n';
            size_t used = strlen(report);
            snprintf(report + used, cap - used, "%s:%d: %s()\n", rel, line, fns[i]);
            hits++;
        }
    }
    free(src);
    return hits;
}

static int scan_dir(const char *dir, const char *rel, char *report, size_t cap)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    int hits = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096], r[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) { hits += scan_dir(path, r, report, cap); continue; }
        size_t l = strlen(e->d_name);
        if (l < 3 || (strcmp(e->d_name + l - 2, ".c") && strcmp(e->d_name + l - 2, ".h"))) continue;
        if (!strcmp(r, "common/alloc.c")) continue;   /* the libc allocator behind dn_alloc_libc() */
        hits += scan_file(path, r, report, cap);
    }
    closedir(d);
    return hits;
}

START_TEST(test_oom_no_libc_allocation_in_lib)
{
    static char report[16384];
    report[0] = 0;
    char lib[4096];
    snprintf(lib, sizeof lib, "%s/../../lib", DN_TEST_DATA);
    int hits = scan_dir(lib, "", report, sizeof report);
    ck_assert_msg(hits == 0, "lib/ calls libc's allocator directly:\n%s", report);
}
END_TEST

int main(void)
{
    tmp = tu_tmpdir("oom");
    Suite *s = suite_create("oom");
    TCase *tc = tcase_create("oom");
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, test_oom_no_libc_allocation_in_lib);
    tcase_add_test(tc, test_oom_tokenizer_load);
    tcase_add_test(tc, test_oom_hf_session);
    tcase_add_test(tc, test_oom_gguf_session);
    suite_add_tcase(s, tc);
    int failed = tu_run(s);
    tu_rmtree(tmp);
    free(tmp);
    return failed ? 1 : 0;
}
