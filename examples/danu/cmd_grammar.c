/* cmd_grammar.c - constrained output in the danu tool (issue 18): the flags
 * `danu run` and `danu bench` share (--grammar-file, --json-schema,
 * --choice, --choice-file), `danu grammar` (the GBNF a JSON Schema compiles
 * to), and `danu bench --grammar F | --json-schema F | --choice A ...`, the
 * constraint's cost: compile time, the time of each token's mask, and
 * generation speed with and without it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common/os.h"
#include "grammar/constraint.h"   /* the bench replays generations through one dn_matcher */

int cli_cons_flag(int argc, char **argv, int *i, cli_cons *cc)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    const char **slot = NULL;
    if (cli_is_flag(a, NULL, "--grammar-file") || cli_is_flag(a, NULL, "--grammar")) slot = &cc->grammar_file;
    else if (cli_is_flag(a, NULL, "--grammar-root")) slot = &cc->root;
    else if (cli_is_flag(a, NULL, "--json-schema")) slot = &cc->schema_file;
    else if (cli_is_flag(a, NULL, "--choice-file")) slot = &cc->choice_file;
    else if (cli_is_flag(a, NULL, "--schema-spaces")) { cc->spaces = 1; return 1; }
    else if (cli_is_flag(a, NULL, "--choice")) {
        if (!v || !*v) { cli_err("--choice takes a non-empty string"); return -1; }
        if (cc->n_args == sizeof cc->args / sizeof cc->args[0]) {
            cli_err("--choice: at most %zu of them (use --choice-file)", sizeof cc->args / sizeof cc->args[0]);
            return -1;
        }
        cc->args[cc->n_args++] = v;
        ++*i;
        return 1;
    } else
        return 0;
    if (!v) { cli_err("%s takes a %s", a, slot == &cc->root ? "rule name" : "file name"); return -1; }
    if (*slot) { cli_err("%s given twice", a); return -1; }
    *slot = v;
    ++*i;
    return 1;
}

int cli_cons_given(const cli_cons *cc)
{
    return cc->grammar_file || cc->schema_file || cc->choice_file || cc->n_args;
}

int cli_cons_check(const cli_cons *cc)
{
    int kinds = !!cc->grammar_file + !!cc->schema_file + !!(cc->choice_file || cc->n_args);
    if (kinds > 1) {
        cli_err("give one of --grammar-file, --json-schema, --choice/--choice-file, not several");
        return -1;
    }
    if (cc->root && !cc->grammar_file) { cli_err("--grammar-root goes with --grammar-file"); return -1; }
    if (cc->spaces && !cc->schema_file) { cli_err("--schema-spaces goes with --json-schema"); return -1; }
    return 0;
}

/* The lines of a --choice-file: split in place, empty lines skipped. */
static int split_lines(cli_cons *cc)
{
    size_t n = cc->n_args;
    for (char *p = cc->text; *p;) {
        char *end = p + strcspn(p, "\n");
        int last = !*end;
        *end = 0;
        size_t len = strlen(p);
        if (len && p[len - 1] == '\r') p[--len] = 0;
        if (len) n++;
        if (last) break;
        p = end + 1;
    }
    cc->list = malloc((n ? n : 1) * sizeof *cc->list);
    if (!cc->list) return cli_fail("choices", DANU_ERR_NOMEM);
    cc->n_list = 0;
    for (size_t k = 0; k < cc->n_args; k++) cc->list[cc->n_list++] = cc->args[k];
    for (char *p = cc->text, *end = cc->text + cc->len; p < end; p += strlen(p) + 1)
        if (*p) cc->list[cc->n_list++] = p;
    return 0;
}

int cli_cons_load(cli_cons *cc)
{
    const char *path = cc->grammar_file ? cc->grammar_file : cc->schema_file ? cc->schema_file : cc->choice_file;
    if (path) {
        cc->text = cli_read_all(path, &cc->len);
        if (!cc->text) { cli_err("cannot read %s", path); return EXIT_FAIL; }
    }
    if (cc->choice_file || cc->n_args) {
        if (!cc->text) { cc->text = calloc(1, 1); cc->len = 0; }
        if (!cc->text) return cli_fail("choices", DANU_ERR_NOMEM);
        if (split_lines(cc)) return EXIT_FAIL;
        if (!cc->n_list) { cli_err("%s holds no choice (one per line)", cc->choice_file); return EXIT_FAIL; }
    }
    return 0;
}

danu_status cli_cons_compile_quiet(const danu_tokenizer *tok, const cli_cons *cc, danu_constraint **out)
{
    *out = NULL;
    if (cc->grammar_file) return danu_constraint_from_grammar(tok, cc->text, cc->len, cc->root, out);
    if (cc->schema_file)
        return danu_constraint_from_json_schema(tok, cc->text, cc->len, cc->spaces ? DANU_SCHEMA_SPACES : 0, out);
    if (cc->n_list) return danu_constraint_from_choices(tok, cc->list, cc->n_list, out);
    return DANU_OK;
}

int cli_cons_compile(const danu_tokenizer *tok, const cli_cons *cc, danu_constraint **out)
{
    danu_status s = cli_cons_compile_quiet(tok, cc, out);
    if (s == DANU_OK) return 0;
    const char *what = cc->grammar_file ? cc->grammar_file : cc->schema_file ? cc->schema_file : "choices";
    const char *d = danu_last_error();
    if (*d) cli_err("%s: %s", what, d);   /* a syntax error's detail names line and column */
    else cli_err("%s: %s", what, danu_strerror(s));
    return EXIT_FAIL;
}

void cli_cons_free(cli_cons *cc)
{
    free(cc->text);
    free(cc->list);
    cc->text = NULL;
    cc->list = NULL;
    cc->n_list = 0;
}

const char *cli_stop_name(int32_t why)
{
    static const char *names[] = { "length", "eos", "stop", "callback", "aborted", "full", "grammar" };
    return why >= 0 && why <= DANU_STOP_GRAMMAR ? names[why] : "none";
}

/* ---- danu grammar ---- */

int cmd_grammar(int argc, char **argv)
{
    cli_cons cc;
    memset(&cc, 0, sizeof cc);
    const char *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if (cli_is_flag(argv[i], "-h", "--help")) {
            printf("usage: danu grammar --json-schema SCHEMA.json [--schema-spaces] [-o OUT.gbnf]\n"
                   "  Prints the GBNF grammar a JSON Schema compiles to (danu_json_schema_to_grammar): to\n"
                   "  read, edit, and use with danu run --grammar-file. Compact JSON unless --schema-spaces\n"
                   "  (a space or a newline and indentation allowed between JSON tokens).\n"
                   "  Supported keywords: type, properties, required, additionalProperties, enum, const,\n"
                   "  items, minItems, maxItems, minLength, maxLength, minimum, maximum,\n"
                   "  exclusiveMinimum, exclusiveMaximum (integers), $defs/definitions with $ref, anyOf,\n"
                   "  oneOf; annotations (title, description, ...) are ignored, anything else refused.\n");
            return 0;
        } else if (cli_is_flag(argv[i], "-o", "--output") && i + 1 < argc) out_path = argv[++i];
        else if (cli_is_flag(argv[i], "-v", "--verbose")) continue;
        else if ((r = cli_cons_flag(argc, argv, &i, &cc)) != 0) { if (r < 0) return EXIT_USAGE; }
        else { cli_err("unexpected argument %s (see --help)", argv[i]); return EXIT_USAGE; }
    }
    if (!cc.schema_file || cc.grammar_file || cc.choice_file || cc.n_args || cc.root) {
        cli_err("need --json-schema FILE (and nothing else; see --help)");
        return EXIT_USAGE;
    }
    if (cli_cons_load(&cc)) return EXIT_FAIL;
    uint32_t flags = cc.spaces ? DANU_SCHEMA_SPACES : 0;
    size_t len = 0;
    char *g = NULL;
    danu_status s = danu_json_schema_to_grammar(cc.text, cc.len, flags, NULL, 0, &len);
    if (s == DANU_ERR_BUFFER_TOO_SMALL) {
        g = malloc(len + 1);
        s = g ? danu_json_schema_to_grammar(cc.text, cc.len, flags, g, len + 1, &len) : DANU_ERR_NOMEM;
    } else if (s == DANU_OK)
        s = DANU_ERR_INTERNAL;   /* a grammar is never empty */
    int rc = 0;
    if (s != DANU_OK) {
        const char *d = danu_last_error();
        if (*d) cli_err("%s: %s", cc.schema_file, d);
        else cli_err("%s: %s", cc.schema_file, danu_strerror(s));
        rc = EXIT_FAIL;
    } else {
        FILE *f = out_path ? dn_fopen(out_path, "wb") : stdout;
        if (!f || fwrite(g, 1, len, f) != len || (len && g[len - 1] != '\n' && fputc('\n', f) == EOF) ||
            (out_path ? fclose(f) : fflush(f)) != 0) {
            cli_err("cannot write %s", out_path ? out_path : "stdout");
            rc = EXIT_FAIL;
        }
    }
    free(g);
    cli_cons_free(&cc);
    return rc;
}

/* ---- danu bench --grammar F | --json-schema F | --choice A ... ---- */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double nearest_rank(const double *sorted, size_t n, double q)
{
    size_t k = (size_t)ceil(q * (double)n);
    return n ? sorted[k ? k - 1 : 0] : 0;
}

/* One generation's sampled ids (EOS included when it ended there). */
typedef struct gen_ids { danu_token *v; size_t n; } gen_ids;

/* Up to tg tokens through danu_context_step from the prompt (the cache
 * cleared first), seed set: returns the tokens appended and the seconds. */
static danu_status one_generation(danu_context *c, const danu_token *prompt, size_t n_prompt, int64_t seed,
                                  int64_t tg, gen_ids *ids, int64_t *made, double *secs, int32_t *reason)
{
    danu_status s = danu_context_clear(c);
    if (!s) s = danu_context_eval(c, prompt, n_prompt, NULL);
    if (!s) s = danu_context_set_int(c, DANU_OPT_SEED, seed);
    if (s) return s;
    size_t before = danu_context_n_tokens(c);
    int32_t why = -1;
    char text[1024];
    double t0 = cli_now();
    for (int64_t k = 0; k < tg && why < 0 && !s; k++) {
        danu_token t;
        size_t len;
        s = danu_context_step(c, &t, text, sizeof text, &len, &why);
        if (s == DANU_ERR_BUFFER_TOO_SMALL) s = DANU_OK;   /* text only: the bench does not print it */
        if (!s && ids) ids->v[ids->n++] = t;
    }
    *secs = cli_now() - t0;
    *made = (int64_t)(danu_context_n_tokens(c) - before);
    *reason = why < 0 ? DANU_STOP_LENGTH : why;
    if (!s && why < 0) s = danu_context_step_finish(c, text, sizeof text, &(size_t){ 0 });
    if (s == DANU_ERR_BUFFER_TOO_SMALL) s = DANU_OK;
    return s;
}

int cli_bench_grammar(danu_model *m, cli_cons *cc, const int *threads, int nt, int64_t tg, int64_t reps)
{
    enum { COMPILES = 7 };
    static const char prompt_text[] = "Here is the answer:";
    const danu_tokenizer *tok = danu_model_tokenizer(m);
    if (!tok) { cli_err("the model has no tokenizer"); return EXIT_FAIL; }
    if (tg < 1) { cli_err("-n must be at least 1 with a constraint"); return EXIT_USAGE; }
    if (cli_cons_load(cc)) return EXIT_FAIL;
    int rc = 0;
    danu_constraint *k = NULL;
    danu_context *c = NULL;
    dn_matcher *mt = NULL;
    danu_token *prompt = NULL;
    size_t n_prompt = 0;
    gen_ids *gens = calloc((size_t)reps, sizeof *gens);
    double *mask_us = NULL;
    size_t n_mask = 0;
    if (!gens) { rc = cli_fail("bench", DANU_ERR_NOMEM); goto done; }
    for (int64_t r = 0; r < reps; r++)
        if (!(gens[r].v = malloc((size_t)tg * sizeof *gens[r].v))) { rc = cli_fail("bench", DANU_ERR_NOMEM); goto done; }
    danu_status es = cli_encode(tok, prompt_text, strlen(prompt_text), 0, 1, &prompt, &n_prompt);
    if (es) { rc = cli_fail("prompt", es); goto done; }

    /* (a) compile time: the median of several compiles of the text in memory */
    double ct[COMPILES];
    for (int i = 0; i < COMPILES; i++) {
        danu_constraint_free(k);
        double t0 = cli_now();
        danu_status s = cli_cons_compile_quiet(tok, cc, &k);
        ct[i] = (cli_now() - t0) * 1e3;
        if (s) { rc = cli_cons_compile(tok, cc, &k); goto done; }
    }
    qsort(ct, COMPILES, sizeof *ct, cmp_dbl);
    int64_t eos = 2;
    danu_model_get_int(m, DANU_INFO_EOS, &eos);
    if (cc->grammar_file) printf("constraint: GBNF grammar %s (%zu bytes)\n", cc->grammar_file, cc->len);
    else if (cc->schema_file) printf("constraint: JSON Schema %s (%zu bytes%s)\n", cc->schema_file, cc->len,
                                     cc->spaces ? ", spaces" : "");
    else printf("constraint: %zu choices\n", cc->n_list);
    printf("compile: median %.3f ms of %d compiles (min %.3f, max %.3f) for the model's %d-token vocabulary\n",
           ct[COMPILES / 2], COMPILES, ct[0], ct[COMPILES - 1], danu_tokenizer_vocab_size(tok));
    printf("generation: prompt \"%s\", the default sampler, seed 1000+r for repetition r, up to %lld tokens, "
           "%lld repetitions after an untimed warm-up; without the constraint each repetition generates as many "
           "tokens as it did with it (EOS ignored)\n", prompt_text, (long long)tg, (long long)reps);
    printf("| %7s | %6s | %-22s | %18s | %18s | %6s |\n", "threads", "tokens", "stopped by", "t/s constrained",
           "t/s free", "ratio");
    printf("|---------|--------|------------------------|--------------------|--------------------|--------|\n");
    fflush(stdout);

    /* (c) tg with and without the constraint; the first thread count's
     * constrained generations are recorded for (b) */
    for (int ti = 0; ti < nt && !rc; ti++) {
        danu_options *o = cli_options(0);
        danu_status s = o && !cli_apply(o, CLI_KV) ? DANU_OK : DANU_ERR_INVALID_ARG;
        if (!s) s = danu_options_set_int(o, DANU_OPT_N_THREADS, threads[ti]);
        if (!s) s = danu_options_set_int(o, DANU_OPT_N_CTX, (int64_t)n_prompt + tg + 8);
        if (!s) s = danu_context_create(m, o, &c);
        danu_options_free(o);
        if (s) { rc = cli_fail("context", s); break; }
        double rate_k[64], rate_f[64];
        int64_t tokens = 0;
        int stops[8] = { 0 };
        {   /* warm-up, untimed: the weights paged in, the pool's threads awake */
            int64_t made;
            double secs;
            int32_t why;
            s = danu_context_set_constraint(c, k);
            if (!s) s = one_generation(c, prompt, n_prompt, 999, tg < 16 ? tg : 16, NULL, &made, &secs, &why);
            if (s) { rc = cli_fail("warm-up", s); danu_context_free(c); c = NULL; break; }
        }
        for (int64_t r = 0; r < reps && !rc; r++) {
            int64_t made_k = 0, made_f = 0;
            double secs_k = 0, secs_f = 0;
            int32_t why = -1;
            gen_ids *rec = ti == 0 ? &gens[r] : NULL;
            s = danu_context_set_constraint(c, k);
            if (!s) s = danu_context_set_int(c, DANU_OPT_IGNORE_EOS, 0);
            if (!s) s = one_generation(c, prompt, n_prompt, 1000 + r, tg, rec, &made_k, &secs_k, &why);
            if (s) { rc = cli_fail("constrained generation", s); break; }
            stops[why >= 0 && why < 8 ? why : 7]++;
            s = danu_context_set_constraint(c, NULL);
            if (!s) s = danu_context_set_int(c, DANU_OPT_IGNORE_EOS, 1);
            if (!s) s = one_generation(c, prompt, n_prompt, 1000 + r, made_k > 0 ? made_k : 1, NULL, &made_f,
                                       &secs_f, &why);
            if (s) { rc = cli_fail("generation", s); break; }
            rate_k[r] = made_k / (secs_k + 1e-12);
            rate_f[r] = made_f / (secs_f + 1e-12);
            tokens += made_k;
        }
        danu_context_free(c);
        c = NULL;
        if (rc) break;
        double mk = 0, mf = 0;
        for (int64_t r = 0; r < reps; r++) { mk += rate_k[r]; mf += rate_f[r]; }
        mk /= (double)reps;
        mf /= (double)reps;
        char stopped[64] = "";
        for (int w = 0; w < 8; w++)
            if (stops[w]) snprintf(stopped + strlen(stopped), sizeof stopped - strlen(stopped), "%s%s %d",
                                   *stopped ? ", " : "", w < 7 ? cli_stop_name(w) : "other", stops[w]);
        printf("| %7d | %6.1f | %-22s | %18.2f | %18.2f | %6.3f |\n", threads[ti], (double)tokens / (double)reps,
               stopped, mk, mf, mf > 0 ? mk / mf : 0);
        fflush(stdout);
    }
    if (rc) goto done;

    /* (b) the mask of each token: the recorded generations replayed through
     * one matcher (reset between them, its caches kept), as a context does */
    size_t total = 0;
    for (int64_t r = 0; r < reps; r++) total += gens[r].n;
    mask_us = malloc((total ? total : 1) * sizeof *mask_us);
    if (!mask_us) { rc = cli_fail("bench", DANU_ERR_NOMEM); goto done; }
    danu_status s = dn_matcher_create(k, dn_alloc_libc(), &mt);
    if (s) { rc = cli_fail("matcher", s); goto done; }
    for (int64_t r = 0; r < reps && !rc; r++) {
        dn_matcher_reset(mt);
        for (size_t i = 0; i < gens[r].n; i++) {
            const uint32_t *mask;
            danu_token id = gens[r].v[i];
            double t0 = cli_now();
            s = dn_matcher_mask(mt, 0, &mask);   /* 0: the prompt ends in text, no space is stripped */
            double t1 = cli_now();
            mask_us[n_mask++] = (t1 - t0) * 1e6;
            if (s) { rc = cli_fail("mask", s); break; }
            if (!(mask[id >> 5] >> (id & 31) & 1)) {
                cli_err("replay: token %d of generation %lld is not in the mask (the context sampled it)", id,
                        (long long)r);
                rc = EXIT_FAIL;
                break;
            }
            if (id == eos) break;
            if ((s = dn_matcher_accept(mt, id, 0)) != DANU_OK) { rc = cli_fail("accept", s); break; }
        }
    }
    if (!rc) {
        double sum = 0;
        for (size_t i = 0; i < n_mask; i++) sum += mask_us[i];
        qsort(mask_us, n_mask, sizeof *mask_us, cmp_dbl);
        printf("mask: %zu tokens of %lld generations replayed through one matcher (1 thread): mean %.2f us, "
               "p50 %.2f us, p99 %.2f us, max %.2f us\n", n_mask, (long long)reps, n_mask ? sum / (double)n_mask : 0,
               nearest_rank(mask_us, n_mask, 0.5), nearest_rank(mask_us, n_mask, 0.99),
               n_mask ? mask_us[n_mask - 1] : 0.0);
    }

done:
    dn_matcher_free(mt);
    danu_context_free(c);
    danu_constraint_free(k);
    if (gens)
        for (int64_t r = 0; r < reps; r++) free(gens[r].v);
    free(gens);
    free(mask_us);
    free(prompt);
    cli_cons_free(cc);
    return rc;
}
