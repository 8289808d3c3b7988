/* dispatch.c - picks the kernel table once per process: CPU features from
 * cpuid/xgetbv (x86-64, os_cpu.h) or what the system reports (aarch64,
 * dn_arm_probe), capped by DANU_ISA, and on x86 how one token's weights
 * are fetched ahead (DN_FETCH_*: lines on Intel, the page elsewhere;
 * DANU_FETCH=page|lines overrides). Tables are completed from scalar
 * inside a once-init and read-only afterwards. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/kernels_internal.h"
#include "common/os.h"
#include "common/os_cpu.h"
#include "common/os_thread.h"

#if defined(__x86_64__) || defined(_M_X64)
#define DN_X86 1
#elif defined(__aarch64__) || defined(_M_ARM64)
#define DN_ARM64 1
#endif

enum { N_ISA = DN_ISA_NEON_I8MM + 1 };

static dn_once once = DN_ONCE_INIT;
static dn_kernels tables[N_ISA];
static int available[N_ISA];
static int env_cap = INT_MAX;       /* rank (cap_level) from DANU_ISA; 0 = reference */

/* The rank of a level for caps: the DANU_ISA_* values are append-only
 * names, so avx2vnni (5) ranks between avx2 and avx512 here, and neon_dot
 * and neon_i8mm are kinds of neon. x86 and ARM levels never meet on one CPU; neon ranks
 * above the x86 levels as its value did before avx2vnni (an x86 cap on ARM
 * gives scalar, a neon cap on x86 the best x86 level). A table
 * answers to a cap if its rank is at most the cap's rank. */
static int cap_level(int isa)
{
    switch (isa) {
    case DN_ISA_REFERENCE: return 0;
    case DN_ISA_SCALAR: return 1;
    case DN_ISA_AVX2: return 2;
    case DN_ISA_AVX2VNNI: return 3;
    case DN_ISA_AVX512: return 4;
    case DN_ISA_NEON: case DN_ISA_NEON_DOT: case DN_ISA_NEON_I8MM: return 5;   /* above the x86 ones, as their values were */
    default: return INT_MAX;
    }
}

int dn_kernels_public_isa(const dn_kernels *k)
{
    return k->isa == DN_ISA_NEON_DOT || k->isa == DN_ISA_NEON_I8MM ? DN_ISA_NEON : k->isa;
}

/* Copy an ISA table and fill its gaps from scalar. A weight type belongs to
 * the ISA only if it has the vec_dot: then act type and gemm come with it. */
static void complete(dn_kernels *dst, const dn_kernels *src)
{
    const dn_kernels *s = &dn_kernels_scalar_table;
    *dst = *src;
    const dn_kernels *blk = src->isa == DN_ISA_REFERENCE ? src : s;
    for (int t = 0; t < DN_TYPE_COUNT; t++) {
        const int32_t base = dn_x16_base(t);
        if (base >= 0) {
            /* x16 without its own gemm: per-block fallback in matmul.c over
             * plain blocks, so the plain (extras-free) dot of the base type */
            if (!dst->gemm[t] || !dst->gemm_nr) {
                dst->gemm[t] = NULL;
                dst->vec_dot[t] = blk->vec_dot[base];
                dst->act_type[t] = blk->act_type[base];
                if (dst->repack[base] == t) dst->repack[base] = 0;
            }
            continue;
        }
        if (!dst->vec_dot[t]) {
            dst->vec_dot[t] = s->vec_dot[t];
            dst->act_type[t] = s->act_type[t];
            dst->gemm[t] = NULL;
        }
        /* an ISA's own act layout (extras) comes with its own preparer */
        if (!dst->act_prepare[t]) {
            dst->act_prepare[t] = s->act_prepare[t];
            dst->act_extra[t] = 0;
        }
    }
    if (!dst->gemm_nr || !dst->gemm_nt) {
        for (int t = 0; t < DN_TYPE_COUNT; t++) if (dn_x16_base(t) < 0) dst->gemm[t] = NULL;
        dst->gemm_nr = dst->gemm_nt = 1;
    }
#define FILL(f) if (!dst->f) dst->f = s->f
    FILL(rmsnorm); FILL(silu_mul); FILL(add); FILL(softmax); FILL(max); FILL(att_scores); FILL(att_values); FILL(kv_quantize);
    FILL(att_q8_weights); FILL(att_q8_values);
#undef FILL
}

#if DN_X86
static void detect_x86(int *avx2, int *avxvnni, int *avx512)
{
    uint32_t r[4];
    *avx2 = *avxvnni = *avx512 = 0;
    dn_cpuid(1, 0, r);
    const uint32_t c = r[2];
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    const uint64_t xcr0 = dn_xgetbv0();
    const int ymm_os = (xcr0 & 0x6) == 0x6;       /* XMM + YMM state */
    const int zmm_os = (xcr0 & 0xe6) == 0xe6;     /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_os || dn_cpuid_max() < 7) return;
    dn_cpuid(7, 0, r);
    const uint32_t b = r[1], c7 = r[2];
    const int has_avx2 = (b >> 5) & 1;
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    const int vnni = (c7 >> 11) & 1;
    dn_cpuid(7, 1, r);
    const int bf16 = (r[0] >> 5) & 1;
    const int avx_vnni = (r[0] >> 4) & 1;         /* VEX vpdpbusd/vpdpwssd on ymm */
    *avx2 = has_avx2 && fma && f16c;
    *avxvnni = *avx2 && avx_vnni;
    *avx512 = *avx2 && zmm_os && f && dq && bw && vl && vnni && bf16;
}
#endif

#if DN_X86
/* Zen 5 streamed one token's weights fastest with the page fetch, two
 * Intel Xeons with lines ahead (kernels_internal.h, 2026-12-07), tg32
 * Q4_0 page / lines in tokens/s:
 *  - family 6 model 207: 9.1-10.8 / 12.4-13.7 at 1 thread, 17.5-18.8 /
 *    25.0-26.5 at 2;
 *  - model 167, lines into L2: 10.3-10.4 / 13.1-13.5 at 1 thread with
 *    avx512, alike with avx2vnni (10.7-12.2 / 11.8-12.1).
 * Only those three CPUs were measured; other vendors keep the page
 * fetch. The DN_FETCH_LINES tables of avx2 and avx2vnni also hold the
 * prompt tiles measured best on Intel (avx2_internal.h, avx2vnni_x16.c),
 * so DANU_FETCH switches those along with the fetch. */
static int fetch_for_cpu(void)
{
    uint32_t r[4];
    dn_cpuid(0, 0, r);
    const int intel = r[1] == 0x756e6547u && r[3] == 0x49656e69u && r[2] == 0x6c65746eu;   /* "GenuineIntel" */
    const char *v = getenv("DANU_FETCH");
    if (v && !strcmp(v, "page")) return DN_FETCH_PAGE;
    if (v && !strcmp(v, "lines")) return DN_FETCH_LINES;
    return intel ? DN_FETCH_LINES : DN_FETCH_PAGE;
}
#endif

/* The x16 gemms of a level for each fetch: its own table's (the page)
 * and the lines table's; NULL where the level has no variants. */
static const dn_kernels *fetch_table(int isa, int fetch)
{
    switch (isa) {
#if DN_X86
    case DN_ISA_AVX2: return fetch ? &dn_kernels_avx2_lines_table : &dn_kernels_avx2_table;
    case DN_ISA_AVX2VNNI: return fetch ? &dn_kernels_avx2vnni_lines_table : &dn_kernels_avx2vnni_table;
    case DN_ISA_AVX512: return fetch ? &dn_kernels_avx512_lines_table : &dn_kernels_avx512_table;
#endif
    default: (void)fetch; return NULL;
    }
}

int dn_kernels_with_fetch(const dn_kernels *k, int fetch, dn_kernels *out)
{
    *out = *k;
    const dn_kernels *f = fetch_table(k->isa, fetch);
    if (!f) return 0;
    for (int t = 0; t < DN_TYPE_COUNT; t++)
        if (dn_x16_base(t) >= 0 && f->gemm[t] && out->gemm[t]) out->gemm[t] = f->gemm[t];
    out->fetch = fetch;
    return 1;
}

static int parse_env(const char *v)
{
    static const struct { const char *name; int isa; } names[] = {
        { "reference", DN_ISA_REFERENCE }, { "scalar", DN_ISA_SCALAR },
        { "avx2", DN_ISA_AVX2 }, { "avx2vnni", DN_ISA_AVX2VNNI }, { "avx512", DN_ISA_AVX512 },
        { "neon", DN_ISA_NEON },
    };
    if (!v) return INT_MAX;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(v, names[i].name)) return cap_level(names[i].isa);
    return INT_MAX;   /* unknown: no cap */
}

static void init(void)
{
    env_cap = parse_env(getenv("DANU_ISA"));
    complete(&tables[DN_ISA_REFERENCE], &dn_kernels_reference_table);
    complete(&tables[DN_ISA_SCALAR], &dn_kernels_scalar_table);
    available[DN_ISA_REFERENCE] = available[DN_ISA_SCALAR] = 1;
#if DN_X86
    int avx2, avxvnni, avx512;
    detect_x86(&avx2, &avxvnni, &avx512);
    if (avx2) { complete(&tables[DN_ISA_AVX2], &dn_kernels_avx2_table); available[DN_ISA_AVX2] = 1; }
    if (avxvnni) {
        /* the avx2 table with the slots avx2vnni_x16.c fills laid over it */
        const dn_kernels *v = &dn_kernels_avx2vnni_table;
        dn_kernels *t = &tables[DN_ISA_AVX2VNNI];
        *t = tables[DN_ISA_AVX2];
        t->isa = v->isa;
        t->name = v->name;
        for (int i = 0; i < DN_TYPE_COUNT; i++) {
            if (v->gemm[i]) t->gemm[i] = v->gemm[i];
            if (v->vec_dot[i]) t->vec_dot[i] = v->vec_dot[i];
        }
        if (v->att_scores) t->att_scores = v->att_scores;
        if (v->att_q8_weights) t->att_q8_weights = v->att_q8_weights;
        if (v->att_q8_values) t->att_q8_values = v->att_q8_values;
        available[DN_ISA_AVX2VNNI] = 1;
    }
    if (avx512) { complete(&tables[DN_ISA_AVX512], &dn_kernels_avx512_table); available[DN_ISA_AVX512] = 1; }
    const int fetch = fetch_for_cpu();
    for (int i = DN_ISA_AVX2; i < N_ISA; i++)
        if (available[i]) dn_kernels_with_fetch(&tables[i], fetch, &tables[i]);
#elif DN_ARM64
    /* AdvSIMD is architectural on AArch64; dot product is optional */
    complete(&tables[DN_ISA_NEON], &dn_kernels_neon_table);
    available[DN_ISA_NEON] = 1;
    dn_arm_features feat;
    dn_arm_probe(&feat);
    if (feat.dotprod) {
        complete(&tables[DN_ISA_NEON_DOT], &dn_kernels_neon_dot_table);
        available[DN_ISA_NEON_DOT] = 1;
    }
    if (feat.dotprod && feat.i8mm) {
        /* the neon_dot table with the x16 gemms of neon_i8mm.c laid over it
         * (their lone-token path is SDOT) */
        const dn_kernels *v = &dn_kernels_neon_i8mm_table;
        dn_kernels *t = &tables[DN_ISA_NEON_I8MM];
        *t = tables[DN_ISA_NEON_DOT];
        t->isa = v->isa;
        t->name = v->name;
        for (int i = 0; i < DN_TYPE_COUNT; i++) {
            if (!v->gemm[i]) continue;
            t->gemm[i] = v->gemm[i];
            t->act_type[i] = v->act_type[i];
        }
        for (int i = 0; i < DN_TYPE_COUNT; i++) if (v->repack[i]) t->repack[i] = v->repack[i];
        available[DN_ISA_NEON_I8MM] = 1;
    }
#endif
}

const dn_kernels *dn_kernels_get(int max_isa)
{
    static const int order[] = { DN_ISA_AVX512, DN_ISA_AVX2VNNI, DN_ISA_AVX2, DN_ISA_NEON_I8MM, DN_ISA_NEON_DOT,
                                 DN_ISA_NEON };
    dn_once_run(&once, init);
    if (env_cap == 0) return &tables[DN_ISA_REFERENCE];
    int cap = max_isa == DANU_ISA_AUTO ? INT_MAX : cap_level(max_isa);
    if (env_cap < cap) cap = env_cap;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (available[order[i]] && cap_level(order[i]) <= cap) return &tables[order[i]];
    return &tables[DN_ISA_SCALAR];
}

const dn_kernels *dn_kernels_for_isa(int isa)
{
    dn_once_run(&once, init);
    if (isa < 0 || isa >= N_ISA || !available[isa]) return NULL;
    if (isa > DN_ISA_SCALAR && cap_level(isa) > env_cap) return NULL;
    return &tables[isa];
}

int dn_kernels_all(const dn_kernels **out, int with_reference)
{
    static const int levels[] = { DN_ISA_REFERENCE, DN_ISA_SCALAR, DN_ISA_AVX2, DN_ISA_AVX2VNNI, DN_ISA_AVX512,
                                  DN_ISA_NEON, DN_ISA_NEON_DOT, DN_ISA_NEON_I8MM };
    int n = 0;
    for (size_t i = with_reference ? 0 : 1; i < sizeof levels / sizeof levels[0]; i++) {
        const dn_kernels *k = dn_kernels_for_isa(levels[i]);
        if (k) out[n++] = k;
    }
    return n;
}
