/* os_thread.h - threads, mutexes, condition variables, once-init, a yield
 * and a barrier, over pthreads (POSIX: inline wrappers) or Win32 (SRW locks,
 * CONDITION_VARIABLE, InitOnceExecuteOnce, CreateThread: in os_win32.c, so
 * that <windows.h> stays out of the library). Atomics are C11
 * <stdatomic.h> on both. A zero-filled dn_mutex, dn_cond or dn_once is not
 * portable: use dn_mutex_init / dn_cond_init / DN_ONCE_INIT. */
#ifndef DN_OS_THREAD_H
#define DN_OS_THREAD_H

typedef void *(*dn_thread_fn)(void *arg);

#ifdef _WIN32
typedef struct dn_mutex { void *p; } dn_mutex;      /* SRWLOCK */
typedef struct dn_cond { void *p; } dn_cond;        /* CONDITION_VARIABLE */
typedef struct dn_once { void *p; } dn_once;        /* INIT_ONCE */
#define DN_ONCE_INIT { 0 }
/* The thread object must stay in place until joined (it holds fn/arg). */
typedef struct dn_thread { void *handle; dn_thread_fn fn; void *arg; } dn_thread;

void dn_mutex_init(dn_mutex *m);
void dn_mutex_destroy(dn_mutex *m);
void dn_mutex_lock(dn_mutex *m);
void dn_mutex_unlock(dn_mutex *m);
void dn_cond_init(dn_cond *c);
void dn_cond_destroy(dn_cond *c);
void dn_cond_wait(dn_cond *c, dn_mutex *m);
void dn_cond_broadcast(dn_cond *c);
void dn_once_run(dn_once *o, void (*fn)(void));
int dn_thread_create(dn_thread *t, dn_thread_fn fn, void *arg);   /* 0 ok */
void dn_thread_join(dn_thread *t);
void dn_yield(void);
#else
#include <pthread.h>
#include <sched.h>
typedef pthread_mutex_t dn_mutex;
typedef pthread_cond_t dn_cond;
typedef pthread_once_t dn_once;
#define DN_ONCE_INIT PTHREAD_ONCE_INIT
typedef struct dn_thread { pthread_t t; } dn_thread;

static inline void dn_mutex_init(dn_mutex *m) { pthread_mutex_init(m, NULL); }
static inline void dn_mutex_destroy(dn_mutex *m) { pthread_mutex_destroy(m); }
static inline void dn_mutex_lock(dn_mutex *m) { pthread_mutex_lock(m); }
static inline void dn_mutex_unlock(dn_mutex *m) { pthread_mutex_unlock(m); }
static inline void dn_cond_init(dn_cond *c) { pthread_cond_init(c, NULL); }
static inline void dn_cond_destroy(dn_cond *c) { pthread_cond_destroy(c); }
static inline void dn_cond_wait(dn_cond *c, dn_mutex *m) { pthread_cond_wait(c, m); }
static inline void dn_cond_broadcast(dn_cond *c) { pthread_cond_broadcast(c); }
static inline void dn_once_run(dn_once *o, void (*fn)(void)) { pthread_once(o, fn); }
static inline int dn_thread_create(dn_thread *t, dn_thread_fn fn, void *arg)
{
    return pthread_create(&t->t, NULL, fn, arg) == 0 ? 0 : -1;
}
static inline void dn_thread_join(dn_thread *t) { pthread_join(t->t, NULL); }
static inline void dn_yield(void) { sched_yield(); }
#endif

/* A reusable barrier for count threads, from a mutex and a condition
 * variable (os_common.c): pthread barriers are optional in POSIX (macOS
 * has none) and Windows' SYNCHRONIZATION_BARRIER needs Windows 8. */
typedef struct dn_barrier { dn_mutex m; dn_cond c; unsigned count, waiting, round; } dn_barrier;
void dn_barrier_init(dn_barrier *b, unsigned count);
void dn_barrier_destroy(dn_barrier *b);
void dn_barrier_wait(dn_barrier *b);   /* returns once count threads have called it */
#endif
