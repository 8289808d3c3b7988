/* alloc.h - every allocation of the library goes through a dn_alloc, which
 * is a copy of the caller's danu_allocator (or libc). No global allocator. */
#ifndef DN_ALLOC_H
#define DN_ALLOC_H
#include <stddef.h>
#include "danu.h"

typedef struct dn_alloc {
    void *(*malloc_fn)(void *user, size_t size);
    void *(*realloc_fn)(void *user, void *ptr, size_t size);
    void (*free_fn)(void *user, void *ptr);
    void *user;
} dn_alloc;

/* libc-backed allocator (a constant, not mutable state). */
const dn_alloc *dn_alloc_libc(void);
/* Fill *a from a public danu_allocator (NULL = libc). INVALID_ARG if bad. */
danu_status dn_alloc_from_public(dn_alloc *a, const danu_allocator *pub);

void *dn_malloc(const dn_alloc *a, size_t size);           /* NULL on failure, size 0 -> 1 */
void *dn_calloc(const dn_alloc *a, size_t n, size_t size); /* zeroed, overflow-checked */
void *dn_realloc(const dn_alloc *a, void *p, size_t size);
void dn_free(const dn_alloc *a, void *p);                 /* NULL ok */
char *dn_strdup(const dn_alloc *a, const char *s);
char *dn_strndup(const dn_alloc *a, const char *s, size_t n);
/* 64-byte aligned blocks (SIMD, cache lines); free with dn_free_aligned. */
void *dn_malloc_aligned(const dn_alloc *a, size_t size);
/* The same with a larger power-of-two alignment (e.g. 2 MiB for huge
 * pages); also freed with dn_free_aligned. */
void *dn_malloc_aligned_to(const dn_alloc *a, size_t size, size_t align);
void dn_free_aligned(const dn_alloc *a, void *p);
/* Bytes an aligned block of size bytes takes from the allocator (the
 * over-allocation that dn_malloc_aligned makes to align it). */
#define DN_ALIGN 64
static inline size_t dn_aligned_bytes(size_t size) { return size + DN_ALIGN + sizeof(void *); }
#endif
