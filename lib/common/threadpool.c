/* threadpool.c - a generation counter under one mutex wakes the workers;
 * each runs its slice and the last to finish signals the caller. Workers
 * spin briefly after a job (the next matmul usually follows within
 * microseconds during a forward pass), then sleep. */
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
    dn_task_fn fn;
    void *arg;
    atomic_uint generation;     /* bumped per job */
    atomic_int pending;         /* workers still running the job */
    int stop;
};

typedef struct { dn_pool *p; int ith; } worker_arg;

static void *worker_main(void *v)
{
    dn_pool *p = ((worker_arg *)v)->p;
    int ith = ((worker_arg *)v)->ith;
    unsigned seen = 0;
    for (;;) {
        /* short spin: catches back-to-back jobs without a futex round trip (no PAUSE:
         * under a hypervisor with pause-loop exiting it can deschedule the vCPU) */
        for (int i = 0; i < 20000 && atomic_load_explicit(&p->generation, memory_order_acquire) == seen; i++) {
#if defined(__x86_64__) || defined(__i386__)
            __asm__ volatile("" ::: "memory");
#endif
        }
        pthread_mutex_lock(&p->mu);
        while (!p->stop && atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) { pthread_mutex_unlock(&p->mu); break; }
        seen = atomic_load(&p->generation);
        dn_task_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
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
        p->stop = 1;
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

void dn_pool_run(dn_pool *p, dn_task_fn fn, void *arg)
{
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    /* wait for the workers: spin a little, then sleep */
    for (int i = 0; i < 200000 && atomic_load_explicit(&p->pending, memory_order_acquire) != 0; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __asm__ volatile("" ::: "memory");
#endif
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
