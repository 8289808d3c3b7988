/* alloc.c - allocation through the caller's hooks. */
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <stddef.h>
#include "common/alloc.h"
#include "common/error.h"

static void *libc_malloc(void *u, size_t n) { (void)u; return malloc(n); }
static void *libc_realloc(void *u, void *p, size_t n) { (void)u; return realloc(p, n); }
static void libc_free(void *u, void *p) { (void)u; free(p); }
static const dn_alloc libc_alloc = { libc_malloc, libc_realloc, libc_free, NULL };

const dn_alloc *dn_alloc_libc(void) { return &libc_alloc; }

danu_status dn_alloc_from_public(dn_alloc *a, const danu_allocator *pub)
{
    if (!pub) { *a = libc_alloc; return DANU_OK; }
    /* the three hooks and user exist since the first version of the struct;
     * members appended later are read only when struct_size covers them */
    size_t v1 = offsetof(danu_allocator, user) + sizeof(void *);
    if (pub->struct_size < v1)
        return dn_seterr(DANU_ERR_INVALID_ARG, "danu_allocator.struct_size %u is smaller than %zu",
                         (unsigned)pub->struct_size, v1);
    if (!pub->malloc_fn || !pub->realloc_fn || !pub->free_fn)
        return dn_seterr(DANU_ERR_INVALID_ARG, "danu_allocator needs malloc_fn, realloc_fn and free_fn");
    a->malloc_fn = pub->malloc_fn;
    a->realloc_fn = pub->realloc_fn;
    a->free_fn = pub->free_fn;
    a->user = pub->user;
    return DANU_OK;
}

void *dn_malloc(const dn_alloc *a, size_t size) { return a->malloc_fn(a->user, size ? size : 1); }

void *dn_calloc(const dn_alloc *a, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) return NULL;
    void *p = dn_malloc(a, total);
    if (p) memset(p, 0, total ? total : 1);
    return p;
}

void *dn_realloc(const dn_alloc *a, void *p, size_t size) { return a->realloc_fn(a->user, p, size ? size : 1); }

void dn_free(const dn_alloc *a, void *p) { if (p) a->free_fn(a->user, p); }

char *dn_strndup(const dn_alloc *a, const char *s, size_t n)
{
    char *r = dn_malloc(a, n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

char *dn_strdup(const dn_alloc *a, const char *s) { return dn_strndup(a, s, strlen(s)); }

/* Over-allocate and keep the offset to the real block just before the
 * aligned pointer, so any allocator (even without alignment support) works. */
void *dn_malloc_aligned_to(const dn_alloc *a, size_t size, size_t align)
{
    size_t total;
    if (align < DN_ALIGN || (align & (align - 1))) return NULL;
    if (__builtin_add_overflow(size, align + sizeof(void *), &total)) return NULL;
    uint8_t *raw = dn_malloc(a, total);
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    memcpy((void *)(p - sizeof(void *)), &raw, sizeof(void *));
    return (void *)p;
}

void *dn_malloc_aligned(const dn_alloc *a, size_t size) { return dn_malloc_aligned_to(a, size, DN_ALIGN); }

void dn_free_aligned(const dn_alloc *a, void *p)
{
    if (!p) return;
    void *raw;
    memcpy(&raw, (uint8_t *)p - sizeof(void *), sizeof(void *));
    dn_free(a, raw);
}
