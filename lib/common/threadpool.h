/* threadpool.h - persistent pthread workers for one context. Workers sleep
 * on a condition variable between jobs: an idle library uses no CPU. */
#ifndef DN_THREADPOOL_H
#define DN_THREADPOOL_H
#include "danu.h"
#include "common/alloc.h"

typedef struct dn_pool dn_pool;
/* fn(arg, ith, nth) runs once on each of nth threads; the caller is ith 0. */
typedef void (*dn_task_fn)(void *arg, int ith, int nth);

/* Bytes a pool of n_threads takes from the allocator (thread stacks are
 * the system's and not counted). */
size_t dn_pool_bytes(int n_threads);
danu_status dn_pool_create(const dn_alloc *a, int n_threads, dn_pool **out);
void dn_pool_free(dn_pool *p);
int dn_pool_size(const dn_pool *p);
/* Run fn on every thread of the pool and wait for all to finish. */
void dn_pool_run(dn_pool *p, dn_task_fn fn, void *arg);
/* While held (a forward pass is running), idle workers spin for the next
 * job instead of sleeping: a futex wake-up costs tens of microseconds, as
 * much as a whole matrix-vector product. Release it when the burst ends;
 * workers then spin briefly and sleep. Only the pool's caller may call it. */
void dn_pool_hold(dn_pool *p, int on);
#endif
