/* threadpool.c - persistent workers driven by a generation counter.
 *
 * Fast path without locks: the caller publishes a job by bumping
 * `generation`; spinning workers see it, run their slice and count
 * `pending` down while the caller spins on it. The mutex and condition
 * variables are only touched when somebody actually sleeps: a worker that
 * gave up spinning registers in `sleepers` before its last look at the
 * generation, the caller in `caller_sleeping` before its last look at
 * `pending`; both sides use sequentially consistent atomics for the
 * "announce, then re-check" pair, so one of them always sees the other
 * (no lost wake-up), and the wake-up itself happens under the mutex the
 * sleeper holds until pthread_cond_wait releases it.
 *
 * Spinning: while the pool is held (a forward pass), workers wait for the
 * next job without sleeping; otherwise they spin about 20 k iterations and
 * sleep, so an idle library uses no CPU. The spin loops use no PAUSE:
 * under a hypervisor with pause-loop exiting it can deschedule the vCPU. */
#include <pthread.h>
#include <stdatomic.h>
#include "common/threadpool.h"
#include "common/error.h"

struct dn_pool {
    const dn_alloc *a;
    int n;                      /* threads including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    dn_task_fn fn;              /* written before generation is bumped */
    void *arg;
    atomic_uint generation;     /* bumped per job */
    atomic_int pending;         /* workers still running the job */
    atomic_int sleepers;        /* workers in (or entering) cond_wait */
    atomic_int caller_sleeping; /* the caller is in (or entering) cond_wait on done */
    atomic_int hold;            /* workers spin without sleeping */
    atomic_int stop;
};

typedef struct { dn_pool *p; int ith; } worker_arg;

#define SPIN_IDLE 20000         /* iterations before an idle worker sleeps */
#define SPIN_WAIT 200000        /* iterations before the caller sleeps on a slow job */

static inline void spin_relax(void)
{
    __asm__ volatile("" ::: "memory");
}

static void *worker_main(void *v)
{
    dn_pool *p = ((worker_arg *)v)->p;
    const int ith = ((worker_arg *)v)->ith;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int i = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
            if (atomic_load_explicit(&p->hold, memory_order_relaxed)) i = 0;
            else if (++i >= SPIN_IDLE) break;
            spin_relax();
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);   /* announce, then re-check (seq_cst) */
            while (!atomic_load(&p->stop) && (g = atomic_load(&p->generation)) == seen)
                pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = g;
        p->fn(p->arg, ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

size_t dn_pool_bytes(int n_threads)
{
    return sizeof(dn_pool) + (n_threads > 1 ? (size_t)n_threads * (sizeof(pthread_t) + sizeof(worker_arg)) : 0);
}

danu_status dn_pool_create(const dn_alloc *a, int n_threads, dn_pool **out)
{
    *out = NULL;
    if (n_threads < 1 || n_threads > 256) return dn_seterr(DANU_ERR_INVALID_ARG, "thread count %d is outside 1..256", n_threads);
    dn_pool *p = dn_calloc(a, 1, sizeof *p);
    if (!p) return dn_seterr(DANU_ERR_NOMEM, "cannot allocate the thread pool");
    p->a = a;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        /* thread ids and their args in one block: args live as long as the pool */
        p->threads = dn_calloc(a, (size_t)n_threads, sizeof(pthread_t) + sizeof(worker_arg));
        if (!p->threads) { dn_pool_free(p); return dn_seterr(DANU_ERR_NOMEM, "cannot allocate the thread pool"); }
        worker_arg *args = (worker_arg *)(p->threads + n_threads);
        for (int i = 1; i < n_threads; i++) {
            args[i].p = p;
            args[i].ith = i;
            if (pthread_create(&p->threads[i], NULL, worker_main, &args[i]) != 0) {
                p->n = i; /* only threads 1..i-1 exist */
                dn_pool_free(p);
                return dn_seterr(DANU_ERR_NOMEM, "cannot start worker thread %d", i);
            }
        }
    }
    *out = p;
    return DANU_OK;
}

void dn_pool_free(dn_pool *p)
{
    if (!p) return;
    if (p->threads) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->stop, 1);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
        dn_free(p->a, p->threads);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    dn_free(p->a, p);
}

int dn_pool_size(const dn_pool *p) { return p ? p->n : 1; }

void dn_pool_hold(dn_pool *p, int on)
{
    if (p && p->n > 1) atomic_store_explicit(&p->hold, on != 0, memory_order_relaxed);
}

void dn_pool_run(dn_pool *p, dn_task_fn fn, void *arg)
{
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
    /* every worker finished the previous job (pending reached 0), so none reads fn/arg now */
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1);        /* publish (seq_cst), then look for sleepers */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    for (int i = 0; i < SPIN_WAIT && atomic_load_explicit(&p->pending, memory_order_acquire) != 0; i++) spin_relax();
    if (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);   /* announce, then re-check (seq_cst) */
        while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
    }
}
