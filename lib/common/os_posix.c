/* os_posix.c - files, mappings, clocks, cores and CPU features on POSIX
 * systems (Linux, Android, macOS and the BSDs). Linux-only calls stay
 * behind __linux__ with POSIX fallbacks. */
#include <sched.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "common/os.h"
#include "common/error.h"
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

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
    const uintptr_t page = dn_page_size();
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
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0 && CPU_COUNT(&set) < n) n = CPU_COUNT(&set);
#endif
    return n < 1 ? 1 : (n > 64 ? 64 : (int)n);
}

danu_status dn_publish(const char *tmp, const char *path, int replace)
{
#if defined(__linux__) && defined(RENAME_NOREPLACE)
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


int dn_path_exists(const char *path) { struct stat st; return lstat(path, &st) == 0; }

int dn_file_size(const char *path, uint64_t *size)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    *size = (uint64_t)st.st_size;
    return 0;
}

FILE *dn_fopen(const char *path, const char *mode) { return fopen(path, mode); }
int dn_remove(const char *path) { return unlink(path); }
int dn_mkdir(const char *path) { return mkdir(path, 0777); }
int dn_rmdir(const char *path) { return rmdir(path); }
const char *dn_os_error(void) { return strerror(errno); }

size_t dn_page_size(void)
{
    const long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

danu_status dn_disk_free(const char *dir, uint64_t *avail)
{
    struct statvfs vfs;
    *avail = 0;
    if (statvfs(dir, &vfs) != 0)
        return dn_seterr(DANU_ERR_IO, "cannot check free space in %s: %s", dir, strerror(errno));
    *avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    return DANU_OK;
}

void dn_arm_probe(dn_arm_features *f)
{
    f->dotprod = f->i8mm = 0;
#if defined(__aarch64__) && defined(__linux__)   /* Linux and Android */
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    f->dotprod = (hw >> 20) & 1;    /* HWCAP_ASIMDDP */
    f->i8mm = (hw2 >> 13) & 1;      /* HWCAP2_I8MM */
#elif defined(__aarch64__) && defined(__APPLE__)
    int v = 0;
    size_t n = sizeof v;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &n, NULL, 0) == 0) f->dotprod = v != 0;
    v = 0; n = sizeof v;
    if (sysctlbyname("hw.optional.arm.FEAT_I8MM", &v, &n, NULL, 0) == 0) f->i8mm = v != 0;
#endif
}

/* ---- the process ---------------------------------------------------- */

void dn_args_utf8(const dn_alloc *a, int *argc, char ***argv) { (void)a; (void)argc; (void)argv; }
void dn_stdio_utf8(void) {}
int dn_isatty(FILE *f) { return isatty(fileno(f)); }

uint64_t dn_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#ifdef __APPLE__
    return (uint64_t)ru.ru_maxrss;          /* bytes there */
#else
    return (uint64_t)ru.ru_maxrss * 1024;   /* KiB */
#endif
}

/* Linux's /proc; 0 where there is none. */
uint64_t dn_current_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (f) { if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0; fclose(f); }
    return (uint64_t)res * (uint64_t)dn_page_size();
}

static void (*volatile interrupt_fn)(void);
static struct sigaction interrupt_old;
static int interrupt_set;

static void on_sigint(int sig)
{
    (void)sig;
    void (*fn)(void) = interrupt_fn;
    if (fn) fn();
}

int dn_on_interrupt(void (*fn)(void))
{
    if (!fn) {
        if (!interrupt_set) return 0;
        interrupt_set = 0;
        int r = sigaction(SIGINT, &interrupt_old, NULL);
        interrupt_fn = NULL;
        return r;
    }
    interrupt_fn = fn;
    if (interrupt_set) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;   /* no SA_RESTART: Ctrl-C ends a blocking read */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &interrupt_old) != 0) return -1;
    interrupt_set = 1;
    return 0;
}

char *dn_cache_dir(const dn_alloc *a)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) return dn_strdup(a, xdg);
    return dn_path_join(a, home ? home : "/tmp", ".cache");
}
