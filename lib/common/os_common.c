/* os_common.c - the portable parts of the os layer, built on os.h's
 * primitives (same on POSIX and Windows). */
#include <string.h>
#include "common/os.h"
#include "common/os_thread.h"
#include "common/error.h"

char *dn_path_join(const dn_alloc *a, const char *dir, const char *name)
{
    size_t ld = strlen(dir), ln = strlen(name);
    char *r = dn_malloc(a, ld + ln + 2);
    if (!r) return NULL;
    memcpy(r, dir, ld);
    size_t k = ld;
    if (k == 0 || !dn_is_sep(r[k - 1])) r[k++] = '/';
    memcpy(r + k, name, ln + 1);
    return r;
}

char *dn_path_parent(const dn_alloc *a, const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && dn_is_sep(path[n - 1])) n--;        /* "dir/" names dir */
    size_t k = n;
    while (k > 0 && !dn_is_sep(path[k - 1])) k--;       /* k: after the last separator */
    if (k == 0) return dn_strdup(a, ".");
    size_t end = k - 1;
    while (end > 0 && dn_is_sep(path[end - 1])) end--;  /* "a//b" */
    if (end == 0) end = 1;                              /* "/" itself */
    if (end == 2 && path[1] == ':' && dn_is_sep('\\')) end = 3;   /* "C:\" */
    return dn_strndup(a, path, end);
}

char *dn_tmp_path(const dn_alloc *a, const char *path)
{
    size_t n = strlen(path);
    char *t = dn_malloc(a, n + 5);
    if (t) { memcpy(t, path, n); memcpy(t + n, ".tmp", 5); }
    return t;
}

danu_status dn_write_file_atomic(const dn_alloc *a, const char *path, const void *data, size_t n)
{
    char *tmp = dn_tmp_path(a, path);
    if (!tmp) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", path);
    danu_status s = DANU_OK;
    FILE *f = dn_fopen(tmp, "wb");
    if (!f) s = dn_seterr(DANU_ERR_IO, "%s: cannot create: %s", tmp, dn_os_error());
    else {
        if (fwrite(data, 1, n, f) != n) s = dn_seterr(DANU_ERR_IO, "%s: write failed: %s", tmp, dn_os_error());
        if (fclose(f) != 0 && s == DANU_OK) s = dn_seterr(DANU_ERR_IO, "%s: write failed: %s", tmp, dn_os_error());
        if (s == DANU_OK) s = dn_publish(tmp, path, 1);
        if (s != DANU_OK) dn_remove(tmp);
    }
    dn_free(a, tmp);
    return s;
}

void dn_barrier_init(dn_barrier *b, unsigned count)
{
    dn_mutex_init(&b->m);
    dn_cond_init(&b->c);
    b->count = count;
    b->waiting = b->round = 0;
}

void dn_barrier_destroy(dn_barrier *b)
{
    dn_cond_destroy(&b->c);
    dn_mutex_destroy(&b->m);
}

/* The round number tells a woken waiter (or a spurious wakeup) whether its
 * own round is over: the last arrival starts the next one. */
void dn_barrier_wait(dn_barrier *b)
{
    dn_mutex_lock(&b->m);
    const unsigned round = b->round;
    if (++b->waiting == b->count) {
        b->waiting = 0;
        b->round++;
        dn_cond_broadcast(&b->c);
    } else {
        while (round == b->round) dn_cond_wait(&b->c, &b->m);
    }
    dn_mutex_unlock(&b->m);
}
