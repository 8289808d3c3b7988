/* golden.h - comparing libdanu's logits and generations with the
 * transformers goldens (tests/data/golden), shared by the golden suites. */
#ifndef DN_GOLDEN_H
#define DN_GOLDEN_H
#include "danu.h"
#include "testutil.h"

/* Synthesize `config` (seed) in `format`/`type` under dir; returns the path
 * (static per call slot) or NULL. Reuses an existing file. */
const char *gd_synth(const char *dir, const char *config, uint64_t seed, int32_t format, int32_t type);

typedef struct gd_opts {
    int isa, threads, kv_type;   /* kv_type: DANU_KV_* */
    double tol;           /* relative to max |golden logit|, e.g. 2e-3 */
    int check_greedy;
} gd_opts;

/* Check one golden case (NAME.CASE) against a loaded model: logits of every
 * position that has a golden (all.f32 rows, else last.f32 plus the top-8
 * lines), top-8 order, and the greedy continuation. Returns 0 when all pass;
 * writes what failed to msg. *max_err receives the worst relative error. */
int gd_check_case(danu_model *m, const char *name_case, const gd_opts *o, double *max_err, char *msg, size_t msg_len);
#endif
