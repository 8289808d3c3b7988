/* args.c - what every command parses the same way: numbers read strictly
 * and checked against the library's bounds before anything loads, the flag
 * of every load, context and sampling option, and the sampling defaults an
 * HF directory's generation_config.json gives. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "common/os.h"   /* dn_fopen: UTF-8 paths on Windows too */

const char *cli_cmd;

void cli_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, cli_cmd ? "danu %s: " : "danu: ", cli_cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void range_text(char *buf, size_t cap, double min, double max, int is_float)
{
    if (is_float) snprintf(buf, cap, "%g..%g", min, max);
    else snprintf(buf, cap, "%.0f..%.0f", min, max);
}

int cli_parse_int(const char *flag, const char *v, double min, double max, int64_t *out)
{
    char *end = NULL, range[64];
    errno = 0;
    long long x = v && *v && *v != ' ' && *v != '\t' ? strtoll(v, &end, 10) : 0;
    if (end && !*end && !errno && (double)x >= min && (double)x <= max) {
        *out = x;
        return 0;
    }
    range_text(range, sizeof range, min, max, 0);
    cli_err("%s takes an integer in %s, not \"%s\"", flag, range, v ? v : "");
    return -1;
}

int cli_parse_int_list(const char *flag, const char *v, double min, double max, int64_t *out, int cap)
{
    int n = 0;
    for (const char *s = v ? v : "";;) {
        size_t len = strcspn(s, ",");
        char one[32];
        snprintf(one, sizeof one, "%.*s", (int)(len < 31 ? len : 31), s);
        if (n == cap) {
            cli_err("%s takes at most %d comma-separated values", flag, cap);
            return -1;
        }
        if (len > 30) {
            cli_err("%s takes integers in %.0f..%.0f, not \"%.30s...\"", flag, min, max, s);
            return -1;
        }
        if (cli_parse_int(flag, one, min, max, &out[n])) return -1;
        n++;
        if (!s[len]) return n;
        s += len + 1;
    }
}

int cli_parse_float(const char *flag, const char *v, double min, double max, double *out)
{
    char *end = NULL, range[64];
    double x = v && *v && *v != ' ' && *v != '\t' ? strtod(v, &end) : 0;
    if (end && !*end && isfinite(x) && x >= min && x <= max) {
        *out = x;
        return 0;
    }
    range_text(range, sizeof range, min, max, 1);
    cli_err("%s takes a number in %s, not \"%s\"", flag, range, v ? v : "");
    return -1;
}

static int is_float_key(danu_param k)
{
    return k == DANU_OPT_TEMPERATURE || k == DANU_OPT_TOP_P || k == DANU_OPT_MIN_P || k == DANU_OPT_REPEAT_PENALTY ||
           k == DANU_OPT_FREQUENCY_PENALTY || k == DANU_OPT_PRESENCE_PENALTY;
}

int cli_parse_opt(const char *flag, const char *v, danu_param key, double *out)
{
    double min = 0, max = 0;
    if (danu_param_bounds(key, &min, &max) != DANU_OK) { cli_fail(flag, DANU_ERR_UNSUPPORTED); return -1; }
    if (is_float_key(key)) return cli_parse_float(flag, v, min, max, out);
    int64_t i;
    if (cli_parse_int(flag, v, min, max, &i)) return -1;
    *out = (double)i;
    return 0;
}

/* One row per flag. words: the values a word flag takes (value = base + the
 * word's index); SWITCH: no argument, the value is base. */
#define SWITCH ""
static const struct flag_def {
    const char *s, *l, *alias;
    danu_param key;
    int groups;
    const char *words;
    int base;
} flags[] = {
    { NULL, "--repack", NULL, DANU_OPT_REPACK, CLI_LOAD, "auto off on", -1 },
    { NULL, "--fast-bf16", NULL, DANU_OPT_FAST_BF16, CLI_LOAD, SWITCH, 1 },
    { NULL, "--sliding-window", NULL, DANU_OPT_SLIDING_WINDOW, CLI_LOAD, NULL, 0 },
    { NULL, "--validate", NULL, DANU_OPT_VALIDATE, CLI_LOAD, SWITCH, 1 },
    { NULL, "--no-mmap", NULL, DANU_OPT_USE_MMAP, CLI_LOAD, SWITCH, 0 },
    { NULL, "--isa", NULL, DANU_OPT_ISA, CLI_LOAD, "auto scalar avx2 avx512 neon avx2vnni", 0 },
    { "-t", "--threads", NULL, DANU_OPT_N_THREADS, CLI_LOAD | CLI_CTX, NULL, 0 },
    { "-c", "--ctx-size", NULL, DANU_OPT_N_CTX, CLI_CTX, NULL, 0 },
    { "-b", "--batch", "--batch-size", DANU_OPT_N_BATCH, CLI_CTX, NULL, 0 },
    { NULL, "--kv-type", NULL, DANU_OPT_KV_TYPE, CLI_CTX | CLI_KV, "f16 f32 q8_0", 0 },
    { NULL, "--kv-f32", NULL, DANU_OPT_KV_TYPE, CLI_CTX | CLI_KV, SWITCH, 1 },
    { NULL, "--kv-huge-pages", NULL, DANU_OPT_KV_HUGE_PAGES, CLI_CTX | CLI_KV, "off on", 0 },
    { NULL, "--on-full", NULL, DANU_OPT_ON_FULL, CLI_CTX, "error shift", 0 },
    { NULL, "--n-keep", "--keep", DANU_OPT_N_KEEP, CLI_CTX, NULL, 0 },
    { NULL, "--seed", NULL, DANU_OPT_SEED, CLI_SAMPLE, NULL, 0 },
    { NULL, "--temp", "--temperature", DANU_OPT_TEMPERATURE, CLI_SAMPLE, NULL, 0 },
    { NULL, "--greedy", NULL, DANU_OPT_TEMPERATURE, CLI_SAMPLE, SWITCH, 0 },
    { NULL, "--top-k", NULL, DANU_OPT_TOP_K, CLI_SAMPLE, NULL, 0 },
    { NULL, "--top-p", NULL, DANU_OPT_TOP_P, CLI_SAMPLE, NULL, 0 },
    { NULL, "--min-p", NULL, DANU_OPT_MIN_P, CLI_SAMPLE, NULL, 0 },
    { NULL, "--repeat-penalty", NULL, DANU_OPT_REPEAT_PENALTY, CLI_SAMPLE, NULL, 0 },
    { NULL, "--repeat-last-n", NULL, DANU_OPT_REPEAT_LAST_N, CLI_SAMPLE, NULL, 0 },
    { NULL, "--frequency-penalty", NULL, DANU_OPT_FREQUENCY_PENALTY, CLI_SAMPLE, NULL, 0 },
    { NULL, "--presence-penalty", NULL, DANU_OPT_PRESENCE_PENALTY, CLI_SAMPLE, NULL, 0 },
    { NULL, "--ignore-eos", NULL, DANU_OPT_IGNORE_EOS, CLI_SAMPLE, SWITCH, 1 },
};

/* The options given, last one per key wins; src says where it came from. */
static struct given { danu_param key; int groups; double v; const char *src; } given[32];
static int n_given;

void cli_set_opt(danu_param key, int groups, double v, const char *src)
{
    int i = 0;
    while (i < n_given && given[i].key != key) i++;
    if (i == n_given) {
        if (n_given == (int)(sizeof given / sizeof given[0])) return;
        n_given++;
    }
    given[i] = (struct given){ key, groups, v, src };
}

int cli_opt_given(danu_param key, double *v)
{
    for (int i = 0; i < n_given; i++)
        if (given[i].key == key) { if (v) *v = given[i].v; return 1; }
    return 0;
}

int cli_flag(int argc, char **argv, int *i, int groups)
{
    const char *a = argv[*i];
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        const struct flag_def *d = &flags[f];
        if (!(d->groups & groups) || !(cli_is_flag(a, d->s, d->l) || cli_is_flag(a, NULL, d->alias))) continue;
        if (d->words && !*d->words) {   /* a switch */
            cli_set_opt(d->key, d->groups, d->base, "flag");
            return 1;
        }
        const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
        double x;
        if (d->words) {
            size_t vl = v ? strlen(v) : 0;
            int k = 0, found = -1;
            for (const char *w = d->words; *w; k++) {
                size_t wl = strcspn(w, " ");
                if (v && wl == vl && !strncmp(w, v, wl)) found = k;
                w += wl + (w[wl] == ' ');
            }
            if (found < 0) {
                cli_err("%s takes one of: %s, not \"%s\"", a, d->words, v ? v : "");
                return -1;
            }
            x = d->base + found;
        } else if (cli_parse_opt(a, v, d->key, &x)) return -1;
        ++*i;
        cli_set_opt(d->key, d->groups, x, "flag");
        return 1;
    }
    return 0;
}

const char *cli_flag_word(const char *flag, int value)
{
    static char word[32];
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        const struct flag_def *d = &flags[f];
        if (!d->words || !*d->words || !cli_is_flag(flag, d->s, d->l)) continue;
        int k = 0;
        for (const char *w = d->words; *w; k++) {
            const size_t wl = strcspn(w, " ");
            if (d->base + k == value && wl < sizeof word) {
                memcpy(word, w, wl);
                word[wl] = '\0';
                return word;
            }
            w += wl + (w[wl] == ' ');
        }
    }
    return NULL;
}

int cli_apply(danu_options *o, int groups)
{
    for (int i = 0; i < n_given; i++) {
        if (!(given[i].groups & groups)) continue;
        danu_status s = is_float_key(given[i].key) ? danu_options_set_float(o, given[i].key, given[i].v)
                                                   : danu_options_set_int(o, given[i].key, (int64_t)given[i].v);
        if (s != DANU_OK) return cli_fail("options", s);
    }
    return 0;
}

/* ---- generation_config.json: the top-level numbers, strictly ---- */

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* p at '"': returns the byte after the closing quote, the raw text in key */
static const char *json_string(const char *p, char *key, size_t cap)
{
    size_t n = 0;
    for (p++; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20) return NULL;   /* also the end of the text */
        if (*p == '\\' && !*++p) return NULL;
        if (n + 1 < cap) key[n++] = *p;
    }
    if (cap) key[n] = 0;
    return p + 1;
}

static const char *json_value(const char *p, int depth, double *num)
{
    char tmp[1];
    p = ws(p);
    if (*p == '"') return json_string(p, tmp, 0);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        if (depth > 32) return NULL;
        p = ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                if (*p != '"' || !(p = json_string(p, tmp, 0))) return NULL;
                p = ws(p);
                if (*p++ != ':') return NULL;
            }
            if (!(p = json_value(p, depth + 1, NULL))) return NULL;
            p = ws(p);
            if (*p == ',') { p = ws(p + 1); continue; }
            return *p == close ? p + 1 : NULL;
        }
    }
    static const char *const words[] = { "true", "false", "null" };
    for (int w = 0; w < 3; w++)
        if (!strncmp(p, words[w], strlen(words[w]))) return p + strlen(words[w]);
    if (*p != '-' && (*p < '0' || *p > '9')) return NULL;
    char *end;
    double x = strtod(p, &end);
    if (!isfinite(x)) return NULL;
    if (num) *num = x;
    return end;
}

static const struct { const char *name; danu_param key; } gen_keys[] = {
    { "temperature", DANU_OPT_TEMPERATURE }, { "top_k", DANU_OPT_TOP_K }, { "top_p", DANU_OPT_TOP_P },
    { "min_p", DANU_OPT_MIN_P }, { "repetition_penalty", DANU_OPT_REPEAT_PENALTY },
};
#define N_GEN_KEYS (sizeof gen_keys / sizeof gen_keys[0])

int cli_generation_config(const char *model)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/generation_config.json", model);
    FILE *f = dn_fopen(path, "rb");
    if (!f) {
        if (cli_verbose) cli_err("%s has no generation_config.json (GGUF files have none): the library's sampling "
                                 "defaults apply", model);
        return 0;
    }
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int big = !feof(f);
    fclose(f);
    buf[n] = 0;
    double val[N_GEN_KEYS];
    int have[N_GEN_KEYS] = { 0 };
    const char *p = ws(buf);
    int ok = !big && strlen(buf) == n && *p == '{';
    if (ok) p = ws(p + 1);
    while (ok && *p != '}') {
        char key[64];
        double x = NAN;
        ok = *p == '"' && (p = json_string(p, key, sizeof key)) && *(p = ws(p)) == ':' &&
             (p = json_value(p + 1, 1, &x)) != NULL;
        for (size_t k = 0; ok && k < N_GEN_KEYS; k++)
            if (!strcmp(key, gen_keys[k].name) && !isnan(x)) { val[k] = x; have[k] = 1; }
        if (ok) p = ws(p);
        if (ok && *p == ',') { p = ws(p + 1); ok = *p == '"'; }
        else ok = ok && *p == '}';
    }
    if (!ok || *ws(p + 1)) {
        cli_err("warning: %s is not a JSON object I can read; the library's sampling defaults apply", path);
        return 0;
    }
    int used = 0, found = 0;
    for (size_t k = 0; k < N_GEN_KEYS; k++) {
        double min, max, cur;
        if (!have[k]) continue;
        found++;
        if (cli_opt_given(gen_keys[k].key, &cur)) {
            if (cli_verbose) cli_err("%s %g in %s: the flag's %g applies", gen_keys[k].name, val[k], path, cur);
            continue;
        }
        if (danu_param_bounds(gen_keys[k].key, &min, &max) != DANU_OK || val[k] < min || val[k] > max ||
            (!is_float_key(gen_keys[k].key) && val[k] != floor(val[k]))) {
            cli_err("warning: %s: %s %g is outside %g..%g; ignored", path, gen_keys[k].name, val[k], min, max);
            continue;
        }
        cli_set_opt(gen_keys[k].key, CLI_SAMPLE, val[k], "generation_config.json");
        if (cli_verbose) cli_err("%s %g from %s (a flag overrides it)", gen_keys[k].name, val[k], path);
        used++;
    }
    if (!found && cli_verbose) cli_err("%s sets no sampling value: the library's defaults apply", path);
    return used;
}

/* ---- text ---- */

char *cli_read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? dn_fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *b = malloc(cap + 1);
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) { cap *= 2; char *t = realloc(b, cap + 1); if (!t) { free(b); b = NULL; break; } b = t; }
    }
    if (f != stdin) fclose(f);
    if (b) { b[n] = 0; *len = n; }
    return b;
}

danu_status cli_encode(const danu_tokenizer *tok, const char *text, size_t len, uint32_t flags, int add_bos,
                       danu_token **out, size_t *n_out)
{
    size_t n = 0, nb = 0;
    *out = NULL;
    danu_status s = danu_tokenizer_encode(tok, text, len, flags & ~(uint32_t)DANU_TOKENIZE_ADD_BOS, NULL, 0, &n);
    if (s != DANU_OK && s != DANU_ERR_BUFFER_TOO_SMALL) return s;
    danu_token *ids = malloc((n + 1) * sizeof *ids), bos = -1;
    if (!ids) return DANU_ERR_NOMEM;
    s = danu_tokenizer_encode(tok, text, len, flags & ~(uint32_t)DANU_TOKENIZE_ADD_BOS, ids + 1, n, &n);
    /* BOS is the one id of the empty text encoded with ADD_BOS */
    if (s == DANU_OK && add_bos) s = danu_tokenizer_encode(tok, "", 0, DANU_TOKENIZE_ADD_BOS, &bos, 1, &nb);
    if (s != DANU_OK) { free(ids); return s; }
    if (add_bos && nb == 1 && (n == 0 || ids[1] != bos)) ids[0] = bos, n++;   /* once: --special may have put <s> */
    else memmove(ids, ids + 1, n * sizeof *ids);
    *out = ids;
    *n_out = n;
    return DANU_OK;
}
