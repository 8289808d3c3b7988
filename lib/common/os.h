/* os.h - everything that touches the operating system: files, mappings,
 * paths, disk space, time, cores, CPU features, and for programs the
 * process (arguments, console, memory, Ctrl-C). Threads, locks and atomics
 * are in os_thread.h. POSIX implementation in os_posix.c, Windows in
 * os_win32.c; os_common.c holds the portable parts built on both.
 * Paths are UTF-8 everywhere (converted to UTF-16 on Windows). */
#ifndef DN_OS_H
#define DN_OS_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "danu.h"
#include "common/alloc.h"

/* Thread-local storage class (C11 _Thread_local; MSVC spells it its own way). */
#if defined(_MSC_VER) && !defined(__clang__)
#define DN_THREAD_LOCAL __declspec(thread)
#else
#define DN_THREAD_LOCAL _Thread_local
#endif

/* Directory separators: '/' everywhere, and '\\' too on Windows. */
#ifdef _WIN32
static inline int dn_is_sep(char c) { return c == '/' || c == '\\'; }
#else
static inline int dn_is_sep(char c) { return c == '/'; }
#endif

typedef struct dn_mapping {
    const uint8_t *data; /* read-only bytes of the whole file */
    uint64_t size;
    int is_mmap;         /* 1: unmapped on close; 0: heap copy via alloc */
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
size_t dn_page_size(void);
/* Read a whole (small) file into a NUL-terminated heap buffer. */
danu_status dn_read_file(const char *path, const dn_alloc *a, size_t max_size, char **out, size_t *len);
int dn_is_dir(const char *path);
int dn_file_exists(const char *path);       /* a regular file */
int dn_path_exists(const char *path);       /* anything, even a dangling link */
/* 0 and the size of a regular file; -1 when not one. */
int dn_file_size(const char *path, uint64_t *size);
/* fopen with a UTF-8 path; mode may end in "x" (create, fail if it exists). */
FILE *dn_fopen(const char *path, const char *mode);
int dn_remove(const char *path);            /* a file; 0 ok */
int dn_mkdir(const char *path);             /* 0 ok */
int dn_rmdir(const char *path);             /* an empty directory; 0 ok */
/* Text for the system's last error (errno, or GetLastError on Windows),
 * in a thread-local buffer. */
const char *dn_os_error(void);
/* Bytes free for this user on the filesystem of directory dir. */
danu_status dn_disk_free(const char *dir, uint64_t *avail);
/* Join dir + "/" + name into a new heap string. */
char *dn_path_join(const dn_alloc *a, const char *dir, const char *name);
/* The directory that holds path ("." for a bare name), a new heap string. */
char *dn_path_parent(const dn_alloc *a, const char *path);
/* Files that appear whole or not at all: write to dn_tmp_path(path)
 * (PATH.tmp, a new heap string), then dn_publish() renames it to PATH.
 * replace 0 refuses to replace a PATH that exists (atomically where the
 * system can say so: Linux renameat2, Windows MoveFileExW without
 * MOVEFILE_REPLACE_EXISTING), 1 replaces it atomically. */
char *dn_tmp_path(const dn_alloc *a, const char *path);
danu_status dn_publish(const char *tmp, const char *path, int replace);
/* n bytes to PATH.tmp, then renamed over PATH (the temporary is removed
 * on failure). */
danu_status dn_write_file_atomic(const dn_alloc *a, const char *path, const void *data, size_t n);
uint64_t dn_time_ns(void);   /* monotonic */
int dn_cpu_count(void);      /* cores this process may run on, >= 1 */

/* ---- the process: for programs (the danu CLI); the library uses none ---- */
/* UTF-8 arguments: POSIX keeps argv; Windows splits GetCommandLineW by the
 * C runtime's rules (argv holds the ANSI code page, which loses
 * characters) into strings from a that live as long as the process.
 * Keeps *argc and *argv when that fails or counts differently. */
void dn_args_utf8(const dn_alloc *a, int *argc, char ***argv);
/* stdin and stdout as byte streams (no CR-LF translation) and a console
 * that shows UTF-8 output (Windows); nothing on POSIX. */
void dn_stdio_utf8(void);
int dn_isatty(FILE *f);          /* a terminal (Windows: a console) */
uint64_t dn_peak_rss(void);      /* peak resident memory of this process, bytes; 0 unknown */
uint64_t dn_current_rss(void);   /* resident memory now, bytes; 0 unknown */
/* Call fn on Ctrl-C (SIGINT; Windows: Ctrl-C and Ctrl-Break) instead of
 * ending the process; NULL restores what was there. fn runs in a signal
 * handler (POSIX) or on a thread of its own (Windows): lock-free atomics
 * only. A blocking read that Ctrl-C interrupts fails (is not restarted).
 * 0 ok. */
int dn_on_interrupt(void (*fn)(void));
/* The user's cache directory (XDG_CACHE_HOME, else HOME/.cache, else /tmp/.cache;
 * Windows: LOCALAPPDATA, else TEMP, else "."), a new heap string. */
char *dn_cache_dir(const dn_alloc *a);

/* AArch64 optional features the system reports (Linux and Android
 * AT_HWCAP/AT_HWCAP2, Apple sysctl hw.optional.arm.FEAT_*, Windows
 * IsProcessorFeaturePresent); all 0 elsewhere. */
typedef struct dn_arm_features { int dotprod, i8mm; } dn_arm_features;
void dn_arm_probe(dn_arm_features *f);
#endif
