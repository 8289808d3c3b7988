/* golden.c - see golden.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/stat.h>
#include "golden.h"

const char *gd_synth(const char *dir, const char *config, uint64_t seed, int32_t format, int32_t type)
{
    static char paths[8][1024];
    static int slot;
    char *p = paths[slot++ & 7];
    snprintf(p, 1024, "%s/%s-s%llu-%s%s", dir, config, (unsigned long long)seed, danu_type_name(type),
             format == DANU_FORMAT_GGUF ? ".gguf" : "-hf");
    struct stat st;
    if (stat(p, &st) == 0) return p;
    size_t len = 0;
    uint8_t *spm = tu_read(tu_data("llama2-tokenizer/tokenizer.model"), &len);
    if (!spm) return NULL;
    danu_status s = danu_synth_write(config, seed, format, type, spm, len, p, NULL);
    free(spm);
    if (s != DANU_OK) { fprintf(stderr, "synth %s: %s\n", p, danu_last_error()); return NULL; }
    return p;
}

typedef struct top8 { int pos; int32_t id[8]; double logit[8]; } top8;

static int load_tops(const char *name_case, top8 *tops, int cap)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s.txt", name_case);
    FILE *f = fopen(tu_data(rel), "r");
    if (!f) return -1;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        if (strncmp(line, "top ", 4)) continue;
        char *s = line + 4, *end;
        tops[n].pos = (int)strtol(s, &end, 10);
        s = end;
        for (int k = 0; k < 8; k++) {
            tops[n].id[k] = (int32_t)strtol(s, &end, 10);
            s = end + 1; /* ':' */
            tops[n].logit[k] = strtod(s, &end);
            s = end;
        }
        n++;
    }
    fclose(f);
    return n;
}

/* Our top-8 must list the golden ids in the golden order wherever the golden
 * logits of neighbours differ by more than tol (closer ones may swap). */
static int check_top8(const float *row, int vocab, const top8 *t, double tol, char *msg, size_t ml)
{
    for (int k = 0; k < 8; k++) {
        double ours = row[t->id[k]];
        if (fabs(ours - t->logit[k]) > tol) {
            snprintf(msg, ml, "pos %d: logit of id %d is %.6f, golden %.6f", t->pos, t->id[k], ours, t->logit[k]);
            return 1;
        }
    }
    /* order: any id with a larger logit than golden top k must be within tol of it */
    int32_t best[8];
    for (int k = 0; k < 8; k++) {
        int b = -1;
        for (int i = 0; i < vocab; i++) {
            int used = 0;
            for (int j = 0; j < k; j++) used |= best[j] == i;
            if (!used && (b < 0 || row[i] > row[b])) b = i;
        }
        best[k] = b;
        if (b != t->id[k] && fabs(t->logit[k] - row[b]) > tol) {
            snprintf(msg, ml, "pos %d: rank %d is id %d (%.6f), golden id %d (%.6f)", t->pos, k, b, row[b], t->id[k],
                     t->logit[k]);
            return 1;
        }
        if (b != t->id[k]) best[k] = t->id[k] == b ? b : best[k];
    }
    return 0;
}

int gd_check_case(danu_model *m, const char *name_case, const gd_opts *o, double *max_err, char *msg, size_t ml)
{
    tu_golden g;
    char rel[256], txt[256];
    msg[0] = 0;
    *max_err = 0;
    snprintf(txt, sizeof txt, "golden/%s.txt", name_case);
    if (tu_golden_load(name_case, &g)) {
        snprintf(msg, ml, "cannot load golden %s (missing, unreadable or without a prompt line)", tu_data(txt));
        return 1;
    }
    int64_t vocab;
    danu_model_get_int(m, DANU_INFO_VOCAB, &vocab);
    danu_options *opt;
    danu_options_create(NULL, &opt);
    danu_options_set_int(opt, DANU_OPT_N_THREADS, o->threads);
    danu_options_set_int(opt, DANU_OPT_KV_TYPE, o->kv_type);
    danu_options_set_float(opt, DANU_OPT_TEMPERATURE, 0.0);
    danu_options_set_float(opt, DANU_OPT_REPEAT_PENALTY, g.repetition_penalty);
    danu_options_set_int(opt, DANU_OPT_REPEAT_LAST_N, -1);
    danu_options_set_int(opt, DANU_OPT_IGNORE_EOS, 1);
    danu_context *c = NULL;
    danu_status s = danu_context_create(m, opt, &c);
    danu_options_free(opt);
    if (s) { snprintf(msg, ml, "context: %s", danu_last_error()); return 1; }
    int rc = 0;
    float *all = malloc((size_t)g.n_prompt * (size_t)vocab * sizeof(float));
    if (!all) { snprintf(msg, ml, "out of memory"); rc = 1; goto done; }
    s = danu_context_eval(c, g.prompt, (size_t)g.n_prompt, all);
    if (s) { snprintf(msg, ml, "eval: %s", danu_last_error()); rc = 1; goto done; }
    /* full rows where the golden has them */
    size_t n_gold = 0;
    snprintf(rel, sizeof rel, "golden/%s.all.f32", name_case);
    float *gold = tu_read_f32(tu_data(rel), &n_gold);
    int rows_from = 0;
    if (!gold) {
        snprintf(rel, sizeof rel, "golden/%s.last.f32", name_case);
        gold = tu_read_f32(tu_data(rel), &n_gold);
        rows_from = g.n_prompt - 1;
    }
    if (!gold || n_gold == 0 || n_gold % (size_t)vocab) {
        snprintf(msg, ml, "%s: %s", tu_data(rel), gold ? "not whole rows of vocab floats" : "missing or unreadable");
        rc = 1; free(gold); goto done;
    }
    for (size_t r = 0; r < n_gold / (size_t)vocab; r++) {
        const float *gr = gold + r * (size_t)vocab, *ours = all + (rows_from + r) * (size_t)vocab;
        double mx = tu_max_abs(gr, (size_t)vocab), err = tu_max_abs_diff(ours, gr, (size_t)vocab) / mx;
        if (err > *max_err) *max_err = err;
        if (err > o->tol) {
            snprintf(msg, ml, "%s pos %zu: max |logit - golden| / max |golden| = %.3g > %.3g", name_case,
                     rows_from + r, err, o->tol);
            rc = 1;
            break;
        }
    }
    /* top-8 lines at every position */
    top8 tops[1024];
    int nt = rc ? 0 : load_tops(name_case, tops, 1024);
    if (nt < 0) { snprintf(msg, ml, "cannot read the top-8 lines of %s", tu_data(txt)); rc = 1; }
    double gmax = tu_max_abs(gold, n_gold);
    for (int i = 0; i < nt && !rc; i++)
        rc = check_top8(all + (size_t)tops[i].pos * (size_t)vocab, (int)vocab, &tops[i], o->tol * gmax, msg, ml);
    free(gold);
    if (!rc && o->check_greedy) {
        for (int i = 0; i < g.n_greedy; i++) {
            danu_token t;
            char text[256];
            size_t len;
            int32_t why;
            s = danu_context_step(c, &t, text, sizeof text, &len, &why);
            if (s) { snprintf(msg, ml, "step %d: %s", i, danu_last_error()); rc = 1; break; }
            if (t != g.greedy[i]) {
                snprintf(msg, ml, "%s greedy token %d is %d, golden %d", name_case, i, t, g.greedy[i]);
                rc = 1;
                break;
            }
        }
    }
done:
    free(all);
    danu_context_free(c);
    return rc;
}
