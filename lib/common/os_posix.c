/* os_posix.c - files, mappings, clocks and cores on POSIX systems. */
#include <sched.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "common/os.h"
#include "common/error.h"

danu_status dn_map_file(const char *path, int use_mmap, const dn_alloc *a, dn_mapping *out)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dn_seterr(DANU_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dn_seterr(DANU_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size == 0) { /* nothing to map; parsers report the truncation */
        close(fd);
        static const uint8_t empty[1];
        out->data = empty;
        return DANU_OK;
    }
    if (size > (uint64_t)SIZE_MAX) { close(fd); return dn_seterr(DANU_ERR_IO, "%s: too large", path); }
    if (use_mmap) {
        void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            close(fd);
            out->data = p;
            out->size = size;
            out->is_mmap = 1;
            return DANU_OK;
        }
        /* fall through to reading (e.g. a filesystem without mmap) */
    }
    uint8_t *buf = dn_malloc_aligned(a, (size_t)size);
    if (!buf) { close(fd); return dn_seterr(DANU_ERR_NOMEM, "%s: cannot allocate %llu bytes", path, (unsigned long long)size); }
    uint64_t done = 0;
    while (done < size) {
        ssize_t r = pread(fd, buf + done, (size_t)(size - done > (1u << 30) ? (1u << 30) : size - done), (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            dn_free_aligned(a, buf);
            close(fd);
            return dn_seterr(DANU_ERR_IO, "%s: read failed at offset %llu", path, (unsigned long long)done);
        }
        done += (uint64_t)r;
    }
    close(fd);
    out->data = buf;
    out->size = size;
    out->is_mmap = 0;
    return DANU_OK;
}

void dn_unmap_file(const dn_alloc *a, dn_mapping *m)
{
    if (!m || !m->data) return;
    if (m->size == 0) { /* static empty buffer */ }
    else if (m->is_mmap) munmap((void *)m->data, (size_t)m->size);
    else dn_free_aligned(a, (void *)m->data);
    memset(m, 0, sizeof *m);
}

void dn_mem_hugepages(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), b = ((uintptr_t)p + n) & ~(huge - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p; (void)n;
#endif
}

void dn_mem_release(const void *p, size_t n)
{
    const long ps = sysconf(_SC_PAGESIZE);
    const uintptr_t page = ps > 0 ? (uintptr_t)ps : 4096;
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

danu_status dn_read_file(const char *path, const dn_alloc *a, size_t max_size, char **out, size_t *len)
{
    *out = NULL;
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dn_seterr(DANU_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return dn_seterr(DANU_ERR_IO, "%s: not a regular file", path); }
    if ((uint64_t)st.st_size > max_size) {
        close(fd);
        return dn_seterr(DANU_ERR_FORMAT, "%s: %lld bytes is larger than the limit of %zu", path, (long long)st.st_size, max_size);
    }
    size_t size = (size_t)st.st_size, done = 0;
    char *buf = dn_malloc(a, size + 1);
    if (!buf) { close(fd); return dn_seterr(DANU_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, size + 1); }
    while (done < size) {
        ssize_t r = read(fd, buf + done, size - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { dn_free(a, buf); close(fd); return dn_seterr(DANU_ERR_IO, "%s: read failed", path); }
        done += (size_t)r;
    }
    close(fd);
    buf[size] = 0;
    *out = buf;
    if (len) *len = size;
    return DANU_OK;
}

int dn_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }
int dn_file_exists(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISREG(st.st_mode); }

char *dn_path_join(const dn_alloc *a, const char *dir, const char *name)
{
    size_t ld = strlen(dir), ln = strlen(name);
    char *r = dn_malloc(a, ld + ln + 2);
    if (!r) return NULL;
    memcpy(r, dir, ld);
    size_t k = ld;
    if (k == 0 || r[k - 1] != '/') r[k++] = '/';
    memcpy(r + k, name, ln + 1);
    return r;
}

uint64_t dn_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The cores this process may run on (taskset, cgroup cpusets), not all
 * the machine's: more threads than that only take turns. */
int dn_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0 && CPU_COUNT(&set) < n) n = CPU_COUNT(&set);
#endif
    return n < 1 ? 1 : (n > 64 ? 64 : (int)n);
}

char *dn_tmp_path(const dn_alloc *a, const char *path)
{
    size_t n = strlen(path);
    char *t = dn_malloc(a, n + 5);
    if (t) { memcpy(t, path, n); memcpy(t + n, ".tmp", 5); }
    return t;
}

danu_status dn_publish(const char *tmp, const char *path, int replace)
{
#ifdef RENAME_NOREPLACE
    if (!replace) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) return DANU_OK;
        if (errno == EEXIST) return dn_seterr(DANU_ERR_IO, "%s: created by someone else meanwhile; %s kept", path, tmp);
        if (errno != EINVAL && errno != ENOSYS)
            return dn_seterr(DANU_ERR_IO, "%s: cannot rename %s: %s", path, tmp, strerror(errno));
    }
#endif
    if (!replace && access(path, F_OK) == 0) return dn_seterr(DANU_ERR_IO, "%s: exists; not replacing it", path);
    if (rename(tmp, path) != 0) return dn_seterr(DANU_ERR_IO, "%s: cannot rename %s: %s", path, tmp, strerror(errno));
    return DANU_OK;
}

danu_status dn_write_file_atomic(const dn_alloc *a, const char *path, const void *data, size_t n)
{
    char *tmp = dn_tmp_path(a, path);
    if (!tmp) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", path);
    danu_status s = DANU_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) s = dn_seterr(DANU_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    else {
        if (fwrite(data, 1, n, f) != n) s = dn_seterr(DANU_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        if (fclose(f) != 0 && s == DANU_OK) s = dn_seterr(DANU_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        if (s == DANU_OK) s = dn_publish(tmp, path, 1);
        if (s != DANU_OK) unlink(tmp);
    }
    dn_free(a, tmp);
    return s;
}
