/* test_win.c - libdanu on Windows, through danu.dll's public API only: run
 * under Wine by tests/win/run.sh (or natively on Windows). No Check: plain
 * checks that print and count, ending with "N passed, M failed".
 *
 *   test_win.exe DATA_DIR TMP_DIR [models]
 *
 * "models" runs only the model and golden checks (run.sh repeats them with
 * DANU_ISA=avx2 so that both x86 kernel sets are checked on Windows).
 * DATA_DIR is tests/data; TMP_DIR a fresh directory the test fills. */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "danu.h"

static int n_pass, n_fail;
static const char *data_dir, *tmp_dir;

#define CHECK(cond, ...) do {                                                   \
        if (cond) n_pass++;                                                     \
        else {                                                                  \
            n_fail++;                                                           \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                         \
            printf(__VA_ARGS__);                                                \
            printf(" [last error: %s]\n", danu_last_error());                   \
            fflush(stdout);                                                     \
        }                                                                       \
    } while (0)
#define CHECK_OK(call) do { danu_status st_ = (call); CHECK(st_ == DANU_OK, "%s: status %d", #call, (int)st_); } while (0)

static void section(const char *name)
{
    static ULONGLONG t0;
    if (!t0) t0 = GetTickCount64();
    printf("--- %s (at %.1f s)\n", name, (double)(GetTickCount64() - t0) / 1e3);
}

static char *path2(const char *dir, const char *name)
{
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) *len = (size_t)n;
    return b;
}

static int write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* ---- goldens ---------------------------------------------------------- */

typedef struct golden {
    danu_token prompt[256]; int n_prompt;
    danu_token greedy[256]; int n_greedy;
    double rep;
} golden;

static int read_ids(const char *s, danu_token *out, int cap)
{
    int n = 0;
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s || n >= cap) break;
        out[n++] = (danu_token)v;
        s = end;
    }
    return n;
}

static int golden_load(const char *name_case, golden *g)
{
    char rel[256], line[8192];
    snprintf(rel, sizeof rel, "golden/%s.txt", name_case);
    FILE *f = fopen(path2(data_dir, rel), "r");
    if (!f) return -1;
    memset(g, 0, sizeof *g);
    g->rep = 1.0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "prompt ", 7)) g->n_prompt = read_ids(line + 7, g->prompt, 256);
        else if (!strncmp(line, "greedy ", 7)) g->n_greedy = read_ids(line + 7, g->greedy, 256);
        else if (!strncmp(line, "repetition_penalty ", 19)) g->rep = atof(line + 19);
    }
    fclose(f);
    return g->n_prompt > 0 && g->n_greedy > 0 ? 0 : -1;
}

static danu_context *ctx_new(danu_model *m, int threads, int n_ctx)
{
    danu_options *o = NULL;
    danu_context *c = NULL;
    if (danu_options_create(NULL, &o) != DANU_OK) return NULL;
    danu_options_set_int(o, DANU_OPT_N_THREADS, threads);
    danu_options_set_float(o, DANU_OPT_TEMPERATURE, 0.0);
    danu_options_set_int(o, DANU_OPT_IGNORE_EOS, 1);
    if (n_ctx) danu_options_set_int(o, DANU_OPT_N_CTX, n_ctx);
    danu_status s = danu_context_create(m, o, &c);
    danu_options_free(o);
    return s == DANU_OK ? c : NULL;
}

typedef struct collect { danu_token ids[4096]; int n; } collect;

static int32_t collect_cb(void *user, danu_token id, const char *text, size_t len)
{
    (void)text; (void)len;
    collect *c = user;
    if (id >= 0 && c->n < 4096) c->ids[c->n++] = id;
    return 0;
}

/* greedy generation of a golden case equals its ids */
static void check_golden(danu_model *m, const char *name_case, int threads)
{
    golden g;
    CHECK(golden_load(name_case, &g) == 0, "golden %s readable", name_case);
    if (g.n_prompt == 0) return;
    danu_context *c = ctx_new(m, threads, 0);
    CHECK(c != NULL, "%s: context", name_case);
    if (!c) return;
    danu_context_set_float(c, DANU_OPT_REPEAT_PENALTY, g.rep);
    danu_context_set_int(c, DANU_OPT_REPEAT_LAST_N, -1);
    CHECK_OK(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL));
    collect *col = calloc(1, sizeof *col);
    int32_t why = -1;
    CHECK_OK(danu_context_generate(c, g.n_greedy, collect_cb, col, &why));
    CHECK(why == DANU_STOP_LENGTH, "%s: stop %d", name_case, (int)why);
    int same = col->n == g.n_greedy;
    for (int k = 0; same && k < g.n_greedy; k++) same = col->ids[k] == g.greedy[k];
    CHECK(same, "%s (%d threads): greedy tokens equal the golden (%d of %d generated)", name_case, threads, col->n,
          g.n_greedy);
    free(col);
    danu_context_free(c);
}

static const char *synth(const char *config, uint64_t seed, int32_t format, const char *name)
{
    const char *out = path2(tmp_dir, name);
    size_t len = 0;
    unsigned char *spm = read_all(path2(data_dir, "llama2-tokenizer/tokenizer.model"), &len);
    CHECK(spm != NULL, "tokenizer.model readable");
    if (!spm) return NULL;
    danu_status s = danu_synth_write(config, seed, format, DANU_TYPE_BF16, spm, len, out, NULL);
    free(spm);
    CHECK(s == DANU_OK, "synth %s: %d", out, (int)s);
    return s == DANU_OK ? out : NULL;
}

static danu_model *load(const char *path, int use_mmap)
{
    danu_options *o = NULL;
    danu_model *m = NULL;
    if (danu_options_create(NULL, &o) != DANU_OK) return NULL;
    danu_options_set_int(o, DANU_OPT_USE_MMAP, use_mmap);
    danu_status s = danu_model_load(path, o, &m);
    danu_options_free(o);
    return s == DANU_OK ? m : NULL;
}

/* ---- tests ------------------------------------------------------------ */

static danu_model *tiny_a;
static char tiny_a_path[1024];

static void test_models(void)
{
    section("models: GGUF and HF, goldens");
    const char *pa = synth("tiny-a", 7, DANU_FORMAT_GGUF, "tiny-a.gguf");
    if (pa) snprintf(tiny_a_path, sizeof tiny_a_path, "%s", pa);
    const char *pb = synth("tiny-b", 11, DANU_FORMAT_HF, "tiny-b-hf");
    /* synth never replaces: the same path again is refused */
    size_t len = 0;
    unsigned char *spm = read_all(path2(data_dir, "llama2-tokenizer/tokenizer.model"), &len);
    if (spm && pa) {
        CHECK(danu_synth_write("tiny-a", 7, DANU_FORMAT_GGUF, DANU_TYPE_BF16, spm, len, pa, NULL) == DANU_ERR_IO,
              "synth over an existing file fails with IO");
    }
    free(spm);
    for (int mm = 0; mm < 2; mm++) {
        danu_model *m = pa ? load(pa, mm) : NULL;
        CHECK(m != NULL, "load GGUF tiny-a (mmap %d)", mm);
        if (m) {
            check_golden(m, "tiny-a.capital", 1);
            if (mm) {
                int64_t isa = -1;
                CHECK_OK(danu_model_get_int(m, DANU_INFO_ISA, &isa));
                const char *want = getenv("DN_WIN_EXPECT_ISA");   /* run.sh: what this CPU should get */
                printf("  kernels: ISA %d (scalar 1, avx2 2, avx512 3)\n", (int)isa);
                if (want) CHECK(isa == atoi(want), "runtime dispatch picked ISA %d, expected %s", (int)isa, want);
                check_golden(m, "tiny-a.capital-rep", 2);
                tiny_a = m;
            }
            else danu_model_free(m);
        }
    }
    danu_model *b = pb ? load(pb, 1) : NULL;
    CHECK(b != NULL, "load synthesized HF tiny-b");
    if (b) { check_golden(b, "tiny-b.single", 2); danu_model_free(b); }
    /* the committed sharded HF directory, with backslashes in its path */
    char win_path[1024];
    snprintf(win_path, sizeof win_path, "%s", path2(data_dir, "tiny-b-hf"));
    for (char *q = win_path; *q; q++) if (*q == '/') *q = '\\';
    b = load(win_path, 1);
    CHECK(b != NULL, "load tests\\data\\tiny-b-hf (5 shards, backslashes)");
    if (b) { check_golden(b, "tiny-b.single", 1); danu_model_free(b); }
}

/* quantize: a new file made exclusively, pages of the mapped source
 * released as it goes, published without replacing; output exists = refused */
static void test_quantize(void)
{
    section("quantize to q8_0 (mapped input, exclusive create, no-replace publish)");
    if (!tiny_a_path[0]) return;
    const char *out = path2(tmp_dir, "tiny-a-q8_0 \xc3\xbc.gguf");
    CHECK_OK(danu_quantize(tiny_a_path, out, "q8_0", NULL));
    CHECK(danu_quantize(tiny_a_path, out, "q8_0", NULL) == DANU_ERR_INVALID_ARG, "quantize over an existing file is refused");
    danu_model *m = load(out, 1);
    CHECK(m != NULL, "the q8_0 model loads");
    if (m) {
        danu_context *c = ctx_new(m, 2, 128);
        golden g;
        if (c && golden_load("tiny-a.capital", &g) == 0) {
            collect *col = calloc(1, sizeof *col);
            int32_t why;
            CHECK_OK(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL));
            CHECK_OK(danu_context_generate(c, 4, collect_cb, col, &why));
            CHECK(col->n == 4, "q8_0 generates");
            free(col);
        }
        danu_context_free(c);
        danu_model_free(m);
    }
}

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void test_tokenizer(void)
{
    section("tokenizer: llama2-tokenizer/cases.tsv");
    danu_tokenizer *t = NULL;
    CHECK_OK(danu_tokenizer_load(path2(data_dir, "llama2-tokenizer/tokenizer.model"), NULL, &t));
    if (!t) return;
    FILE *f = fopen(path2(data_dir, "llama2-tokenizer/cases.tsv"), "r");
    CHECK(f != NULL, "cases.tsv readable");
    if (!f) { danu_tokenizer_free(t); return; }
    static char line[1 << 16], text[1 << 15];
    static danu_token want[8192], got[8192];
    int cases = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        size_t tl = 0;
        for (char *h = line; h + 1 < tab; h += 2) text[tl++] = (char)(hexval(h[0]) << 4 | hexval(h[1]));
        int nw = read_ids(tab + 1, want, 8192);
        size_t n = 0;
        danu_status s = danu_tokenizer_encode(t, text, tl, 0, got, 8192, &n);
        int same = s == DANU_OK && n == (size_t)nw;
        for (int k = 0; same && k < nw; k++) same = got[k] == want[k];
        if (!same && bad++ < 5) printf("  case %d differs (status %d, %zu ids, want %d)\n", cases, (int)s, n, nw);
        cases++;
    }
    fclose(f);
    CHECK(cases > 100 && bad == 0, "%d tokenizer cases, %d differ", cases, bad);
    printf("  %d tokenizer cases\n", cases);
    danu_tokenizer_free(t);
}

/* Streaming: the callback sees the first token, signals the aborting
 * thread and waits until it has called danu_context_abort. */
typedef struct abort_job {
    danu_context *ctx;
    HANDLE first, aborted;
    int tokens;
} abort_job;

static DWORD WINAPI abort_main(LPVOID v)
{
    abort_job *j = v;
    WaitForSingleObject(j->first, INFINITE);
    danu_context_abort(j->ctx);
    SetEvent(j->aborted);
    return 0;
}

static int32_t abort_cb(void *user, danu_token id, const char *text, size_t len)
{
    (void)id; (void)text; (void)len;
    abort_job *j = user;
    if (++j->tokens == 3) {
        SetEvent(j->first);
        WaitForSingleObject(j->aborted, INFINITE);
    }
    return 0;
}

static void test_abort(void)
{
    section("streaming generation, aborted from a second thread");
    if (!tiny_a) return;
    golden g;
    if (golden_load("tiny-a.capital", &g) != 0) return;
    abort_job j = { ctx_new(tiny_a, 2, 512), CreateEventW(NULL, TRUE, FALSE, NULL), CreateEventW(NULL, TRUE, FALSE, NULL), 0 };
    CHECK(j.ctx != NULL, "context");
    if (!j.ctx) return;
    CHECK_OK(danu_context_eval(j.ctx, g.prompt, (size_t)g.n_prompt, NULL));
    HANDLE th = CreateThread(NULL, 0, abort_main, &j, 0, NULL);
    int32_t why = -1;
    danu_status s = danu_context_generate(j.ctx, 400, abort_cb, &j, &why);
    WaitForSingleObject(th, INFINITE);
    CloseHandle(th);
    CHECK(s == DANU_ERR_ABORTED && why == DANU_STOP_ABORTED, "aborted: status %d, reason %d", (int)s, (int)why);
    CHECK(j.tokens >= 3 && j.tokens < 400, "stopped early: %d tokens streamed", j.tokens);
    /* greedy goes on where it stopped: the tokens of an uninterrupted run */
    collect *col = calloc(1, sizeof *col);
    CHECK_OK(danu_context_generate(j.ctx, 2, collect_cb, col, &why));
    CHECK(col->n == 2 && j.tokens + 1 < g.n_greedy && col->ids[0] == g.greedy[j.tokens] && col->ids[1] == g.greedy[j.tokens + 1],
          "generation continues after the abort with the golden's tokens");
    free(col);
    danu_context_free(j.ctx);
    CloseHandle(j.first);
    CloseHandle(j.aborted);
}

/* a constraint: the text is one of the choices and a JSON Schema's output
 * parses as an object with the required member (checked by hand here) */
typedef struct text_buf { char s[4096]; size_t n; } text_buf;

static int32_t text_cb(void *user, danu_token id, const char *text, size_t len)
{
    (void)id;
    text_buf *b = user;
    if (b->n + len < sizeof b->s) { memcpy(b->s + b->n, text, len); b->n += len; b->s[b->n] = 0; }
    return 0;
}

static void test_constraint(void)
{
    section("constraints: choices and a JSON Schema");
    if (!tiny_a) return;
    const char *acts[] = { "attack", "defend", "\xc3\xa9vite" };
    danu_constraint *k = NULL;
    CHECK_OK(danu_constraint_from_choices(danu_model_tokenizer(tiny_a), acts, 3, &k));
    static const char schema[] = "{\"type\":\"object\",\"properties\":{\"hp\":{\"type\":\"integer\","
                                 "\"minimum\":0,\"maximum\":99}},\"required\":[\"hp\"]}";
    danu_constraint *js = NULL;
    CHECK_OK(danu_constraint_from_json_schema(danu_model_tokenizer(tiny_a), schema, sizeof schema - 1, 0, &js));
    danu_token bos = 1;
    for (int i = 0; i < 2 && k && js; i++) {
        danu_context *c = ctx_new(tiny_a, 2, 128);
        CHECK(c != NULL, "context");
        if (!c) break;
        danu_context_set_int(c, DANU_OPT_IGNORE_EOS, 0);
        CHECK_OK(danu_context_set_constraint(c, i ? js : k));
        CHECK_OK(danu_context_eval(c, &bos, 1, NULL));
        text_buf b = { "", 0 };
        int32_t why = -1;
        CHECK_OK(danu_context_generate(c, 60, text_cb, &b, &why));
        if (i == 0)
            CHECK(why == DANU_STOP_GRAMMAR && (!strcmp(b.s, acts[0]) || !strcmp(b.s, acts[1]) || !strcmp(b.s, acts[2])),
                  "choices: \"%s\" (reason %d)", b.s, (int)why);
        else {
            int hp = -1;
            char tail = 0;
            CHECK(why == DANU_STOP_GRAMMAR && sscanf(b.s, "{\"hp\":%d%c", &hp, &tail) == 2 && tail == '}' && hp >= 0 &&
                  hp <= 99, "schema: \"%s\" (reason %d)", b.s, (int)why);
        }
        danu_context_free(c);
    }
    danu_constraint_free(k);
    danu_constraint_free(js);
}

static void test_state_file(void)
{
    section("state save/load, non-ASCII path");
    if (!tiny_a) return;
    golden g;
    if (golden_load("tiny-a.capital", &g) != 0) return;
    const char *path = path2(tmp_dir, "\xc3\xa9tats-\xc3\xa9.bin");   /* "états-é.bin" in UTF-8 */
    danu_context *a = ctx_new(tiny_a, 2, 256), *b = ctx_new(tiny_a, 1, 256);
    CHECK(a && b, "contexts");
    if (!a || !b) { danu_context_free(a); danu_context_free(b); return; }
    CHECK_OK(danu_context_eval(a, g.prompt, (size_t)g.n_prompt, NULL));
    CHECK_OK(danu_context_state_save_file(a, path));
    CHECK_OK(danu_context_state_save_file(a, path));   /* replaces it atomically */
    /* the file exists under its real (UTF-16) name, not a mangled one */
    wchar_t wpath[1024];
    CHECK(MultiByteToWideChar(CP_UTF8, 0, path, -1, wpath, 1024) > 0, "path to UTF-16");
    CHECK(GetFileAttributesW(wpath) != INVALID_FILE_ATTRIBUTES, "state file exists under its Unicode name");
    char tmp_name[1100];
    snprintf(tmp_name, sizeof tmp_name, "%s.tmp", path);
    MultiByteToWideChar(CP_UTF8, 0, tmp_name, -1, wpath, 1024);
    CHECK(GetFileAttributesW(wpath) == INVALID_FILE_ATTRIBUTES, "no temporary file left");
    CHECK_OK(danu_context_state_load_file(b, path));
    collect *ca = calloc(1, sizeof *ca), *cb = calloc(1, sizeof *cb);
    int32_t why;
    CHECK_OK(danu_context_generate(a, 8, collect_cb, ca, &why));
    CHECK_OK(danu_context_generate(b, 8, collect_cb, cb, &why));
    CHECK(ca->n == 8 && cb->n == 8 && !memcmp(ca->ids, cb->ids, sizeof(danu_token) * 8) &&
          !memcmp(ca->ids, g.greedy, sizeof(danu_token) * 8), "restored context generates the same tokens");
    CHECK(danu_context_state_load_file(b, path2(tmp_dir, "\xc3\xa9-missing.bin")) != DANU_OK, "a missing file fails");
    free(ca);
    free(cb);
    danu_context_free(a);
    danu_context_free(b);
}

/* a small GGUF written by llama.cpp (1.2 MB: the battery rewrites it often) */
static const char *small_gguf(void) { return path2(data_dir, "gguf-llamacpp/tiny-q-Q4_0.gguf"); }

static void test_corrupt(void)
{
    section("corrupt GGUF battery");
    size_t len = 0;
    unsigned char *buf = read_all(small_gguf(), &len);
    CHECK(buf != NULL, "tiny-q-Q4_0.gguf readable");
    if (!buf) return;
    const char *bad = path2(tmp_dir, "corrupt.gguf");
    int variants = 0, truncated_ok = 0, flipped_failed = 0, flipped_loaded = 0;
    /* truncations: every byte of the first 256, then strides to the end */
    for (size_t cut = 0; cut < len; cut += cut < 256 ? 1 : len / 61 + 1) {
        write_all(bad, buf, cut);
        danu_model *m = load(bad, (int)(cut & 1));
        if (m) { truncated_ok++; danu_model_free(m); }
        variants++;
    }
    write_all(bad, buf, len - 1);
    danu_model *m = load(bad, 1);
    if (m) { truncated_ok++; danu_model_free(m); }
    write_all(bad, buf, len);
    m = load(bad, 1);
    CHECK(m != NULL, "the uncorrupted file loads");
    danu_model_free(m);
    CHECK(truncated_ok == 0, "every truncation fails (%d loaded)", truncated_ok);
    /* flips in the header and metadata: fail cleanly or still load */
    for (size_t pos = 0; pos < 4096 && pos < len; pos += pos < 32 ? 1 : 17) {
        static const unsigned char masks[] = { 0xff, 0x80, 0x01 };
        for (size_t k = 0; k < sizeof masks; k++) {
            buf[pos] ^= masks[k];
            write_all(bad, buf, len);
            buf[pos] ^= masks[k];
            m = load(bad, (int)(pos & 1));
            if (m) { flipped_loaded++; danu_model_free(m); } else flipped_failed++;
            variants++;
        }
    }
    CHECK(flipped_failed > 100, "byte flips fail cleanly (%d failed, %d still loaded)", flipped_failed, flipped_loaded);
    printf("  %d corrupt variants, no crash\n", variants);
    free(buf);
}

/* An allocator that fails its k-th call and counts what is still out. */
typedef struct fault { long calls, fail_at, live; } fault;

static void *f_malloc(void *u, size_t n)
{
    fault *f = u;
    if (++f->calls == f->fail_at) return NULL;
    void *p = malloc(n ? n : 1);
    if (p) f->live++;
    return p;
}

static void *f_realloc(void *u, void *p, size_t n)
{
    fault *f = u;
    if (++f->calls == f->fail_at) return NULL;
    void *q = realloc(p, n ? n : 1);
    if (q && !p) f->live++;
    return q;
}

static void f_free(void *u, void *p)
{
    fault *f = u;
    if (p) { f->live--; free(p); }
}

static danu_status load_with(fault *f, danu_model **m)
{
    danu_allocator al = { sizeof al, f_malloc, f_realloc, f_free, f };
    danu_options *o = NULL;
    *m = NULL;
    danu_status s = danu_options_create(&al, &o);
    if (s != DANU_OK) return s;
    danu_options_set_int(o, DANU_OPT_USE_MMAP, 0);
    s = danu_model_load(small_gguf(), o, m);
    danu_options_free(o);
    return s;
}

static void test_alloc_failures(void)
{
    section("allocation failure injection on model load");
    fault f = { 0, -1, 0 };
    danu_model *m;
    CHECK_OK(load_with(&f, &m));
    danu_model_free(m);
    const long total = f.calls;
    CHECK(total > 2 && f.live == 0, "a clean load: %ld allocations, %ld left", total, f.live);
    int nomem = 0, other = 0, loaded = 0, leaks = 0, tried = 0;
    const long step = total > 400 ? total / 400 + 1 : 1;
    for (long k = 1; k <= total; k += (k < 64 ? 1 : step)) {
        fault g = { 0, k, 0 };
        danu_status s = load_with(&g, &m);
        if (s == DANU_OK) { loaded++; danu_model_free(m); }
        else if (s == DANU_ERR_NOMEM) nomem++;
        else other++;
        if (g.live != 0) leaks++;
        tried++;
    }
    CHECK(nomem > 0 && loaded == 0 && other == 0, "each failed allocation gives NOMEM (%d tries: %d NOMEM, %d other, %d loaded)",
          tried, nomem, other, loaded);
    CHECK(leaks == 0, "nothing leaks after a failed load (%d leaked)", leaks);
}

static uint64_t process_cpu_100ns(void)
{
    FILETIME c, e, k, u;
    if (!GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u)) return 0;
    return ((uint64_t)k.dwHighDateTime << 32 | k.dwLowDateTime) + ((uint64_t)u.dwHighDateTime << 32 | u.dwLowDateTime);
}

static void test_pool_idle(void)
{
    section("thread pool goes idle");
    if (!tiny_a) return;
    golden g;
    if (golden_load("tiny-a.capital", &g) != 0) return;
    danu_context *c = ctx_new(tiny_a, 2, 256);
    CHECK(c != NULL, "context");
    if (!c) return;
    collect *col = calloc(1, sizeof *col);
    int32_t why;
    CHECK_OK(danu_context_eval(c, g.prompt, (size_t)g.n_prompt, NULL));
    CHECK_OK(danu_context_generate(c, 16, collect_cb, col, &why));
    free(col);
    /* the measure works: 200 ms of spinning shows */
    uint64_t t0 = process_cpu_100ns();
    const ULONGLONG w0 = GetTickCount64();
    volatile unsigned spin = 0;
    while (GetTickCount64() - w0 < 200) spin++;
    const uint64_t busy = process_cpu_100ns() - t0;
    CHECK(busy >= 400000, "GetProcessTimes sees 200 ms of spinning (%.1f ms)", (double)busy / 1e4);
    Sleep(300);   /* workers spin, yield, then sleep */
    t0 = process_cpu_100ns();
    Sleep(1000);
    const uint64_t used = process_cpu_100ns() - t0;
    printf("  CPU over 1 s idle: %.1f ms\n", (double)used / 1e4);
    CHECK(used < 1000000, "idle workers use under 100 ms of CPU in a second (%.1f ms)", (double)used / 1e4);
    danu_context_free(c);
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: test_win DATA_DIR TMP_DIR [models]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    data_dir = argv[1];
    tmp_dir = argv[2];
    printf("libdanu %s on Windows\n", danu_version_string());
    CHECK(danu_version_number() == DANU_VERSION_NUMBER, "header and DLL versions agree");
    test_models();
    if (argc > 3 && !strcmp(argv[3], "models")) {   /* e.g. DANU_ISA=avx2: the goldens with other kernels */
        danu_model_free(tiny_a);
        printf("%d passed, %d failed\n", n_pass, n_fail);
        return n_fail ? 1 : 0;
    }
    test_quantize();
    test_tokenizer();
    test_abort();
    test_constraint();
    test_state_file();
    test_corrupt();
    test_alloc_failures();
    test_pool_idle();
    danu_model_free(tiny_a);
    section("end");
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
