/* os.h - files, mappings, time, cores. POSIX implementation in os_posix.c. */
#ifndef DN_OS_H
#define DN_OS_H
#include <stddef.h>
#include <stdint.h>
#include "danu.h"
#include "common/alloc.h"

typedef struct dn_mapping {
    const uint8_t *data; /* read-only bytes of the whole file */
    uint64_t size;
    int is_mmap;         /* 1: munmap on close; 0: heap copy via alloc */
} dn_mapping;

/* Map (use_mmap) or read a whole file. IO error names the path. */
danu_status dn_map_file(const char *path, int use_mmap, const dn_alloc *a, dn_mapping *out);
void dn_unmap_file(const dn_alloc *a, dn_mapping *m);
/* Best-effort memory hints (no error: a kernel without them just ignores).
 * dn_mem_hugepages: ask for transparent huge pages on the whole 2 MiB
 * units inside [p, p+n). dn_mem_release: drop the pages wholly inside
 * [p, p+n) of a read-only file mapping from this process (they are read
 * back from the file if touched again). */
void dn_mem_hugepages(void *p, size_t n);
void dn_mem_release(const void *p, size_t n);
/* Read a whole (small) file into a NUL-terminated heap buffer. */
danu_status dn_read_file(const char *path, const dn_alloc *a, size_t max_size, char **out, size_t *len);
int dn_is_dir(const char *path);
int dn_file_exists(const char *path);
/* Join dir + "/" + name into a new heap string. */
char *dn_path_join(const dn_alloc *a, const char *dir, const char *name);
/* Files that appear whole or not at all: write to dn_tmp_path(path)
 * (PATH.tmp, a new heap string), then dn_publish() renames it to PATH.
 * replace 0 refuses to replace a PATH that exists (atomically where the
 * system can say so: Linux renameat2), 1 replaces it. */
char *dn_tmp_path(const dn_alloc *a, const char *path);
danu_status dn_publish(const char *tmp, const char *path, int replace);
/* n bytes to PATH.tmp, then renamed over PATH (the temporary is removed
 * on failure). */
danu_status dn_write_file_atomic(const dn_alloc *a, const char *path, const void *data, size_t n);
uint64_t dn_time_ns(void);   /* monotonic */
int dn_cpu_count(void);      /* cores this process may run on, >= 1 */
#endif
