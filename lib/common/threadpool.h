/* threadpool.h - the pools that run evaluation's parallel parts: worker
 * threads of libdanu's own, shared by every context of a model (or of
 * several models), or the host application's job system.
 *
 * Work is a number of chunks; fn(arg, chunk, lane) runs each chunk exactly
 * once. Participants (the caller, then whichever workers arrive) take
 * chunks one at a time from a shared counter, so a descheduled thread
 * delays a job by at most the chunk it holds. `lane` (0 = the caller,
 * always < the job's lane count) tells concurrent participants apart for
 * per-thread scratch; which lane runs which chunk varies, so chunks must
 * not depend on it for their results. */
#ifndef DN_THREADPOOL_H
#define DN_THREADPOOL_H
#include "danu.h"
#include "common/alloc.h"

typedef struct danu_pool dn_pool;
typedef void (*dn_chunk_fn)(void *arg, int64_t chunk, int lane);
/* The load-time tools' form: fn(arg, ith, nth) once for each ith < nth. */
typedef void (*dn_task_fn)(void *arg, int ith, int nth);

enum { DN_POOL_MAX_THREADS = 256 };

/* A pool of up to n_threads lanes (the caller + n_threads - 1 workers,
 * started when first needed). */
danu_status dn_pool_create(const dn_alloc *a, int n_threads, dn_pool **out);
/* A pool on the host's parallel-for: up to n_lanes items per call, no thread. */
danu_status dn_pool_create_host(const dn_alloc *a, int n_lanes, danu_parallel_for_fn fn, void *user, dn_pool **out);
dn_pool *dn_pool_ref(dn_pool *p);
/* Drop a reference; the last one joins the workers and frees the pool. */
void dn_pool_free(dn_pool *p);
/* Lanes a job may use (1 for NULL). */
int dn_pool_size(const dn_pool *p);
/* Let an own pool offer up to n lanes (never shrinks; host pools keep theirs). */
void dn_pool_grow(dn_pool *p, int n);
/* Run chunks 0..n_chunks-1 of fn on up to `lanes` lanes and return when all
 * finished. NULL pool, one lane or one chunk: on the calling thread. */
void dn_pool_for(dn_pool *p, int lanes, int64_t n_chunks, dn_chunk_fn fn, void *arg);
/* As dn_pool_for; *waited (may be NULL) gets the ns the caller spent
 * waiting for other participants' chunks after it ran out of chunks to
 * take, *mine (may be NULL) the chunks it ran itself. */
void dn_pool_for_counted(dn_pool *p, int lanes, int64_t n_chunks, dn_chunk_fn fn, void *arg, uint64_t *waited,
                         int64_t *mine);
/* fn(arg, ith, nth) for every ith < nth = dn_pool_size(p). */
void dn_pool_run(dn_pool *p, dn_task_fn fn, void *arg);
/* When helpers do not help (the machine is busy: they rarely get a core,
 * or keep the caller waiting on a chunk they hold while descheduled), the
 * caller's jobs run alone for a while, its workers asleep, then try the
 * helpers again: on a busy machine more threads cost little more than
 * the calling thread alone, plus the probes. */
typedef struct dn_adapt {
    int solo;       /* jobs left to run on the caller alone */
    int strikes;    /* recent jobs the helpers did not help */
    int held;       /* this caller holds the pool (dn_team_hold) */
    int next_solo;  /* the next solo period's length (0: a fresh record, DN_SOLO_FIRST) */
    int calm;       /* jobs the helpers helped since next_solo last shrank */
} dn_adapt;
/* Records one job of a's caller: strike, the helpers did not help. Returns
 * 1 when the caller's next a->solo jobs are to run alone (set here). Zeroed
 * memory is a fresh record. DN_ADAPT_STRIKES more strikes than good jobs
 * start a solo period: DN_SOLO_FIRST jobs the first time (a pass over a
 * short prompt is ~170 jobs), twice the last one each time after, up to
 * DN_SOLO_MAX (a few tokens' worth); every DN_ADAPT_CALM good jobs halve
 * the next one, down to DN_SOLO_MIN. */
enum { DN_ADAPT_STRIKES = 16, DN_SOLO_MIN = 64, DN_SOLO_FIRST = 256, DN_SOLO_MAX = 1024, DN_ADAPT_CALM = 512 };
int dn_adapt_note(dn_adapt *a, int strike);
/* A caller's share of a pool: the lanes its scratch was sized for. NULL
 * or one lane: the calling thread alone. Work too small to gain from
 * threads stays on the caller unless split_small (tests of the split).
 * adapt: NULL, or the caller's own record (one caller at a time). */
typedef struct dn_team { dn_pool *pool; int lanes, split_small; dn_adapt *adapt; } dn_team;
static inline int dn_team_lanes(const dn_team *t) { return t && t->pool ? t->lanes : 1; }
/* Chunks for n units on a team: several per lane, so a late or
 * descheduled thread holds up little of the job. */
static inline int64_t dn_team_chunks(const dn_team *t, int64_t n)
{
    const int64_t c = (int64_t)dn_team_lanes(t) * 8;
    return c < n ? c : n;
}
void dn_team_for(const dn_team *t, int64_t n_chunks, dn_chunk_fn fn, void *arg);
/* dn_pool_hold for a team's burst of jobs; a team running alone does not
 * hold (its workers may sleep). */
void dn_team_hold(const dn_team *t, int on);
/* While some caller holds the pool (a forward pass runs), idle workers
 * poll longer before sleeping: a pass is ~170 jobs per token with short
 * serial gaps, and a futex wake-up costs as much as a small job. Polling
 * yields the core, so a busy machine loses little to it. */
void dn_pool_hold(dn_pool *p, int on);
#endif
