/* threadpool.c - worker threads shared by many callers, or the host's
 * parallel-for, behind one dn_pool_for.
 *
 * A job lives in one of the pool's slots while its caller runs it. The
 * slot's `state` word packs OPEN (the job takes helpers), the number of
 * participants that ever joined (their lane numbers) and the number still
 * inside. A caller claims a free slot (closed, nobody inside), fills it,
 * opens it and bumps `generation`; workers that see the bump scan the
 * slots and join open ones with a compare-and-swap, then take chunks
 * until none are left and leave: first from their own lane's range of
 * consecutive chunks, then from the others' (take). The caller takes
 * chunks too (range 0), waits for `done` to reach the count, closes the
 * slot and leaves; the slot is free again once its last participant
 * left, so a worker that lingers (descheduled after its last chunk)
 * never sees the next job's fields change under it. Job fields are read
 * only after a successful join, which orders them after the owner's
 * writes.
 *
 * Waiting backs off: spin (no PAUSE: under a hypervisor with pause-loop
 * exiting it can deschedule the vCPU), then yield (dn_yield: the core goes
 * to whoever else is runnable: a game's threads, or the descheduled peer we
 * wait for), then sleep on a condition variable (os_thread.h). Sleepers announce
 * themselves before their last look (sequentially consistent atomics on
 * both sides), so no wake-up is lost. */
#include <stdatomic.h>
#include <string.h>
#include "common/threadpool.h"
#include "common/error.h"
#include "common/os.h"
#include "common/os_thread.h"

#define ST_OPEN (1ull << 63)
#define ST_JOIN (1ull << 32)          /* one more participant ever joined */
#define ST_INSIDE 0xffffffffull       /* participants inside now */

enum {
    SLOTS = 32,             /* concurrent jobs that get helpers; more run alone */
    SPIN = 2000,            /* polls before yielding */
    YIELD_IDLE = 64,        /* yields before an idle worker sleeps */
    YIELD_HELD = 4096,      /* ... while a forward pass holds the pool */
    YIELD_WAIT = 256,       /* yields before a caller sleeps on a slow chunk */
};

/* A job's chunks are cut into up to RANGES consecutive ranges, one per
 * lane (lanes past RANGES share them): a lane takes its own range's chunks
 * in order, then the other ranges' that are left. Each thread so streams
 * one run of a matrix's rows instead of every lanes-th chunk of it (one
 * shared counter before): decoding at 2 threads 1.01-1.07x faster with no
 * context and 1.05-1.12x after 4096 tokens, and with two spinning threads
 * of the program's own on the 2 cores 0.99-1.04x over 1024 tokens
 * (alternating in one process, 2026-12-06); pp512 the same (254-265
 * against 247-268 tokens/s, builds side by side). A late lane's range is
 * taken by the others chunk by chunk, as before. */
enum { RANGES = 8 };
typedef struct range {
    _Alignas(64) atomic_llong next;   /* next chunk to hand out; >= end: none left */
    int64_t end;
} range;

typedef struct slot {
    range range[RANGES];            /* written while closed, read after a join */
    _Atomic uint64_t state;
    atomic_llong done;
    atomic_int waiting;             /* the owner sleeps on `finished` */
    dn_chunk_fn fn;                 /* written while closed, read after a join */
    void *arg;
    int64_t n;
    int lanes, ranges;
} slot;

/* padded so that busy slots do not share cache lines */
typedef union { slot s; char pad[(sizeof(slot) + 63) / 64 * 64]; } slot_line;

struct danu_pool {
    dn_alloc a;
    atomic_int refs;
    atomic_int size;                /* lanes a job may use */
    danu_parallel_for_fn host_fn;   /* host pools: no threads below */
    void *host_user;
    dn_mutex mu;
    dn_cond wake, finished;
    atomic_int started;             /* workers running (grown under mu) */
    atomic_uint generation;         /* bumped per opened job */
    atomic_int sleepers, holders, stop;
    slot_line *slots;
    dn_thread threads[DN_POOL_MAX_THREADS];
};

static inline void relax(void) { atomic_signal_fence(memory_order_seq_cst); }   /* compiler barrier */

/* One step of a back-off ladder: spin, then yield. Returns 0 once the
 * caller should sleep instead. */
static int back_off(int i, int yields)
{
    if (i < SPIN) { relax(); return 1; }
    if (i < SPIN + yields) { dn_yield(); return 1; }
    return 0;
}

static void chunk_done(dn_pool *p, slot *s)
{
    if (atomic_fetch_add(&s->done, 1) + 1 == s->n && atomic_load(&s->waiting)) {
        dn_mutex_lock(&p->mu);
        dn_cond_broadcast(&p->finished);
        dn_mutex_unlock(&p->mu);
    }
}

/* The next chunk for a lane whose own range is `home`, or -1 when none is left. */
static int64_t take(slot *s, int home)
{
    for (int k = 0; k < s->ranges; k++) {
        range *g = &s->range[(home + k) % s->ranges];
        if (atomic_load_explicit(&g->next, memory_order_relaxed) >= g->end) continue;   /* spent: no bump */
        const int64_t c = atomic_fetch_add(&g->next, 1);
        if (c < g->end) return c;
    }
    return -1;
}

/* Join s if it is open, run chunks, leave. */
static void help(dn_pool *p, slot *s)
{
    uint64_t v = atomic_load(&s->state);
    do {
        if (!(v & ST_OPEN)) return;
    } while (!atomic_compare_exchange_weak(&s->state, &v, v + ST_JOIN + 1));
    const int lane = (int)((v >> 32) & 0x7fffffff);
    if (lane < s->lanes) {
        int64_t c;
        while ((c = take(s, lane % s->ranges)) >= 0) {
            s->fn(s->arg, c, lane);
            chunk_done(p, s);
        }
    }
    atomic_fetch_sub(&s->state, 1);
}

static void *worker_main(void *v)
{
    dn_pool *p = v;
    unsigned seen = 0;
    for (int i = 0;; i++) {
        const unsigned g = atomic_load(&p->generation);
        if (g != seen) {
            seen = g;
            for (int k = 0; k < SLOTS; k++) help(p, &p->slots[k].s);
            i = 0;
            continue;
        }
        if (atomic_load_explicit(&p->stop, memory_order_relaxed)) break;
        if (back_off(i, atomic_load_explicit(&p->holders, memory_order_relaxed) > 0 ? YIELD_HELD : YIELD_IDLE))
            continue;
        dn_mutex_lock(&p->mu);
        atomic_fetch_add(&p->sleepers, 1);   /* announce, then re-check */
        while (!atomic_load(&p->stop) && atomic_load(&p->generation) == seen) dn_cond_wait(&p->wake, &p->mu);
        atomic_fetch_sub(&p->sleepers, 1);
        dn_mutex_unlock(&p->mu);
        i = 0;
    }
    return NULL;
}

static danu_status pool_new(const dn_alloc *a, int n, dn_pool **out)
{
    *out = NULL;
    if (n < 1 || n > DN_POOL_MAX_THREADS)
        return dn_seterr(DANU_ERR_INVALID_ARG, "thread count %d is outside 1..%d", n, DN_POOL_MAX_THREADS);
    dn_pool *p = dn_calloc(a, 1, sizeof *p);
    if (!p) return dn_seterr(DANU_ERR_NOMEM, "cannot allocate the thread pool");
    p->a = *a;
    atomic_init(&p->refs, 1);
    atomic_init(&p->size, n);
    *out = p;
    return DANU_OK;
}

danu_status dn_pool_create(const dn_alloc *a, int n_threads, dn_pool **out)
{
    dn_pool *p;
    DN_TRY(pool_new(a, n_threads, &p));
    p->slots = dn_malloc_aligned(a, SLOTS * sizeof *p->slots);
    if (!p->slots) { dn_free(a, p); return dn_seterr(DANU_ERR_NOMEM, "cannot allocate the thread pool"); }
    memset(p->slots, 0, SLOTS * sizeof *p->slots);
    dn_mutex_init(&p->mu);
    dn_cond_init(&p->wake);
    dn_cond_init(&p->finished);
    *out = p;
    return DANU_OK;
}

danu_status dn_pool_create_host(const dn_alloc *a, int n_lanes, danu_parallel_for_fn fn, void *user, dn_pool **out)
{
    if (!fn) { *out = NULL; return dn_seterr(DANU_ERR_INVALID_ARG, "the host parallel-for is NULL"); }
    dn_pool *p;
    DN_TRY(pool_new(a, n_lanes, &p));
    p->host_fn = fn;
    p->host_user = user;
    *out = p;
    return DANU_OK;
}

dn_pool *dn_pool_ref(dn_pool *p)
{
    if (p) atomic_fetch_add(&p->refs, 1);
    return p;
}

void dn_pool_free(dn_pool *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    dn_alloc a = p->a;
    if (!p->host_fn) {
        dn_mutex_lock(&p->mu);
        atomic_store(&p->stop, 1);
        dn_cond_broadcast(&p->wake);
        dn_mutex_unlock(&p->mu);
        for (int i = 0; i < atomic_load(&p->started); i++) dn_thread_join(&p->threads[i]);
        dn_mutex_destroy(&p->mu);
        dn_cond_destroy(&p->wake);
        dn_cond_destroy(&p->finished);
        dn_free_aligned(&a, p->slots);
    }
    dn_free(&a, p);
}

int dn_pool_size(const dn_pool *p) { return p ? atomic_load(&((dn_pool *)p)->size) : 1; }

void dn_pool_grow(dn_pool *p, int n)
{
    if (!p || p->host_fn) return;
    if (n > DN_POOL_MAX_THREADS) n = DN_POOL_MAX_THREADS;
    int cur = atomic_load(&p->size);
    while (cur < n && !atomic_compare_exchange_weak(&p->size, &cur, n)) {}
}

void dn_pool_hold(dn_pool *p, int on)
{
    if (p && !p->host_fn) atomic_fetch_add_explicit(&p->holders, on ? 1 : -1, memory_order_relaxed);
}

/* Workers start on first need; one that cannot start only means fewer helpers. */
static void start_workers(dn_pool *p, int want)
{
    if (atomic_load(&p->started) >= want) return;
    dn_mutex_lock(&p->mu);
    int n = atomic_load(&p->started);
    while (n < want && dn_thread_create(&p->threads[n], worker_main, p) == 0) n++;
    atomic_store(&p->started, n);
    dn_mutex_unlock(&p->mu);
}

static slot *claim(dn_pool *p)
{
    for (int k = 0; k < SLOTS; k++) {
        slot *s = &p->slots[k].s;
        uint64_t v = atomic_load(&s->state);
        if (!(v & ST_OPEN) && !(v & ST_INSIDE) && atomic_compare_exchange_strong(&s->state, &v, ST_JOIN + 1))
            return s;
    }
    return NULL;
}

typedef struct host_job {
    dn_chunk_fn fn;
    void *arg;
    int64_t n;
    atomic_llong next;
} host_job;

/* One host item is one lane: it takes chunks until none are left, so items
 * run one after another (or twice) still cover every chunk once. */
static void host_item(void *data, int32_t item)
{
    host_job *j = data;
    int64_t c;
    while ((c = atomic_fetch_add(&j->next, 1)) < j->n) j->fn(j->arg, c, item);
}

void dn_pool_for(dn_pool *p, int lanes, int64_t n, dn_chunk_fn fn, void *arg)
{
    dn_pool_for_counted(p, lanes, n, fn, arg, NULL, NULL);
}

void dn_pool_for_counted(dn_pool *p, int lanes, int64_t n, dn_chunk_fn fn, void *arg, uint64_t *waited, int64_t *mine)
{
    int64_t own = 0;
    if (mine) *mine = n;
    if (waited) *waited = 0;
    if (n <= 0) return;
    const int size = dn_pool_size(p);
    if (lanes > size) lanes = size;
    if (lanes > n) lanes = (int)n;
    int64_t c;
    if (lanes <= 1) {
        for (c = 0; c < n; c++) fn(arg, c, 0);
        return;
    }
    if (p->host_fn) {
        host_job j = { fn, arg, n, 0 };
        p->host_fn(p->host_user, host_item, &j, lanes);
        host_item(&j, 0);   /* a host that skipped items: the rest runs here */
        return;
    }
    start_workers(p, lanes - 1);
    slot *s = claim(p);
    if (!s) {   /* every slot busy: this job runs alone */
        for (c = 0; c < n; c++) fn(arg, c, 0);
        return;
    }
    s->fn = fn;
    s->arg = arg;
    s->n = n;
    s->lanes = lanes;
    s->ranges = lanes < RANGES ? lanes : RANGES;
    for (int r = 0; r < s->ranges; r++) {
        s->range[r].end = n * (r + 1) / s->ranges;
        atomic_store(&s->range[r].next, n * r / s->ranges);
    }
    atomic_store(&s->done, 0);
    atomic_store(&s->waiting, 0);
    atomic_fetch_or(&s->state, ST_OPEN);
    atomic_fetch_add(&p->generation, 1);   /* publish, then look for sleepers */
    if (atomic_load(&p->sleepers) > 0) {
        dn_mutex_lock(&p->mu);
        dn_cond_broadcast(&p->wake);
        dn_mutex_unlock(&p->mu);
    }
    while ((c = take(s, 0)) >= 0) {
        fn(arg, c, 0);
        atomic_fetch_add(&s->done, 1);
        own++;
    }
    if (mine) *mine = own;
    const uint64_t w0 = waited && atomic_load(&s->done) != n ? dn_time_ns() : 0;
    for (int i = 0; atomic_load(&s->done) != n; i++) {
        if (back_off(i, YIELD_WAIT)) continue;
        dn_mutex_lock(&p->mu);
        atomic_store(&s->waiting, 1);   /* announce, then re-check */
        while (atomic_load(&s->done) != n) dn_cond_wait(&p->finished, &p->mu);
        atomic_store(&s->waiting, 0);
        dn_mutex_unlock(&p->mu);
        break;
    }
    if (w0) *waited = dn_time_ns() - w0;
    /* close and leave; the last participant out frees the slot */
    uint64_t v = atomic_load(&s->state);
    while (!atomic_compare_exchange_weak(&s->state, &v, (v & ~ST_OPEN) - 1)) {}
}

/* A job is a strike when the helpers took under an eighth of its chunks
 * (on an idle machine they take about their share: (lanes-1)/lanes), or
 * when the caller waited for them longer than it worked and more than
 * STALL_NS; the solo periods strikes lead to are in threadpool.h. A
 * machine that stays busy so probes its helpers only every DN_SOLO_MAX
 * jobs, while a stall of a few ms on an idle one (a vCPU the hypervisor
 * paused: strikes in a row with the caller waiting 1-8 ms on one chunk,
 * seen on a 2-core VM) no longer costs DN_SOLO_MAX jobs alone each time
 * (it did: 0-3 times per 128 tokens there). */
enum { STALL_NS = 100000 };

int dn_adapt_note(dn_adapt *a, int strike)
{
    if (!strike) {
        if (a->strikes > 0) a->strikes--;
        if (++a->calm >= DN_ADAPT_CALM) {
            a->calm = 0;
            if (a->next_solo > DN_SOLO_MIN) a->next_solo /= 2;
        }
        return 0;
    }
    if (++a->strikes < DN_ADAPT_STRIKES) return 0;
    const int len = a->next_solo ? a->next_solo : DN_SOLO_FIRST;
    a->strikes = 0;
    a->solo = len;
    a->next_solo = len < DN_SOLO_MAX ? 2 * len : DN_SOLO_MAX;
    return 1;
}

void dn_team_for(const dn_team *t, int64_t n, dn_chunk_fn fn, void *arg)
{
    dn_adapt *a = t ? t->adapt : NULL;
    const int lanes = dn_team_lanes(t);
    if (a && a->solo > 0) {
        a->solo--;
        dn_pool_for(NULL, 1, n, fn, arg);
        return;
    }
    const uint64_t t0 = a ? dn_time_ns() : 0;
    uint64_t waited = 0;
    int64_t mine = n;
    dn_pool_for_counted(t ? t->pool : NULL, lanes, n, fn, arg, a ? &waited : NULL, &mine);
    if (!a || lanes < 2 || n < 4 || t->pool->host_fn) return;
    const uint64_t ran = dn_time_ns() - t0 - waited;
    const int strike = 8 * (n - mine) < n || (waited > STALL_NS && waited > ran);
    if (dn_adapt_note(a, strike) && a->held) {   /* let the workers sleep */
        dn_pool_hold(t->pool, 0);
        a->held = 0;
    }
}

void dn_team_hold(const dn_team *t, int on)
{
    if (!t || !t->pool) return;
    dn_adapt *a = t->adapt;
    if (!a) { dn_pool_hold(t->pool, on); return; }
    if (on && !a->held && a->solo == 0) { dn_pool_hold(t->pool, 1); a->held = 1; }
    if (!on && a->held) { dn_pool_hold(t->pool, 0); a->held = 0; }
}

typedef struct run_job { dn_task_fn fn; void *arg; int nth; } run_job;

static void run_chunk(void *a, int64_t c, int lane)
{
    (void)lane;
    const run_job *r = a;
    r->fn(r->arg, (int)c, r->nth);
}

void dn_pool_run(dn_pool *p, dn_task_fn fn, void *arg)
{
    run_job r = { fn, arg, dn_pool_size(p) };
    dn_pool_for(p, r.nth, r.nth, run_chunk, &r);
}
