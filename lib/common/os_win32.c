/* os_win32.c - the os layer on Windows: UTF-8 paths as UTF-16 (…W calls),
 * file mappings, atomic replace with MoveFileExW, Win32 threads with SRW
 * locks and condition variables (no winpthreads), QueryPerformanceCounter;
 * for programs, UTF-8 arguments from the UTF-16 command line, console
 * control handlers and process memory counters (kernel32 only). */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
/* GetProcessMemoryInfo as kernel32's K32GetProcessMemoryInfo (Windows 7
 * and later): no psapi.dll import */
#undef PSAPI_VERSION
#define PSAPI_VERSION 2
#include <windows.h>
#include <psapi.h>
#include <direct.h>
#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "common/os.h"
#include "common/os_thread.h"
#include "common/error.h"

/* ---- paths and errors ---------------------------------------------- */

/* Paths as UTF-16 in a caller's buffer (no allocation: the library
 * allocates only through its dn_alloc). 4096 units cover long paths too. */
enum { WPATH_MAX = 4096 };
typedef struct wpath { wchar_t w[WPATH_MAX]; } wpath;

/* UTF-8 to UTF-16; NULL (errno set) on invalid UTF-8 or a path too long. */
static const wchar_t *widen(const char *s, wpath *out)
{
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, out->w, WPATH_MAX) <= 0) {
        errno = GetLastError() == ERROR_INSUFFICIENT_BUFFER ? ENAMETOOLONG : EINVAL;
        return NULL;
    }
    return out->w;
}

static DN_THREAD_LOCAL char os_err[256];

/* Text of a Win32 error code (thread-local buffer). */
static const char *win_error(DWORD e)
{
    char msg[200];
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, e,
                             MAKELANGID(LANG_ENGLISH, SUBLANG_DEFAULT), msg, sizeof msg, NULL);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == '.')) msg[--n] = 0;
    if (n == 0) snprintf(os_err, sizeof os_err, "Windows error %lu", (unsigned long)e);
    else snprintf(os_err, sizeof os_err, "%s (Windows error %lu)", msg, (unsigned long)e);
    return os_err;
}

const char *dn_os_error(void)
{
    snprintf(os_err, sizeof os_err, "%s", strerror(errno));
    return os_err;
}

static HANDLE open_read(const char *path, DWORD *err)
{
    wpath wp;
    const wchar_t *w = widen(path, &wp);
    if (!w) { *err = errno == ENAMETOOLONG ? ERROR_FILENAME_EXCED_RANGE : ERROR_NO_UNICODE_TRANSLATION; return INVALID_HANDLE_VALUE; }
    HANDLE h = CreateFileW(w, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    *err = h == INVALID_HANDLE_VALUE ? GetLastError() : 0;
    return h;
}

/* 0 and the size of an open regular file (not a directory, pipe, device) */
static int handle_size(HANDLE h, uint64_t *size)
{
    LARGE_INTEGER li;
    if (GetFileType(h) != FILE_TYPE_DISK || !GetFileSizeEx(h, &li)) return -1;
    BY_HANDLE_FILE_INFORMATION info;
    if (GetFileInformationByHandle(h, &info) && (info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) return -1;
    *size = (uint64_t)li.QuadPart;
    return 0;
}

/* Read size bytes from the start of h. */
static int read_all(HANDLE h, uint8_t *buf, uint64_t size)
{
    uint64_t done = 0;
    while (done < size) {
        DWORD want = size - done > (1u << 30) ? (1u << 30) : (DWORD)(size - done), got = 0;
        OVERLAPPED ov;
        memset(&ov, 0, sizeof ov);
        ov.Offset = (DWORD)done;
        ov.OffsetHigh = (DWORD)(done >> 32);
        if (!ReadFile(h, buf + done, want, &got, &ov) || got == 0) return -1;
        done += got;
    }
    return 0;
}

/* ---- files and mappings -------------------------------------------- */

danu_status dn_map_file(const char *path, int use_mmap, const dn_alloc *a, dn_mapping *out)
{
    memset(out, 0, sizeof *out);
    DWORD err;
    HANDLE h = open_read(path, &err);
    if (h == INVALID_HANDLE_VALUE) return dn_seterr(DANU_ERR_IO, "%s: cannot open: %s", path, win_error(err));
    uint64_t size;
    if (handle_size(h, &size) != 0) {
        CloseHandle(h);
        return dn_seterr(DANU_ERR_IO, "%s: not a regular file", path);
    }
    if (size == 0) { /* nothing to map; parsers report the truncation */
        CloseHandle(h);
        static const uint8_t empty[1];
        out->data = empty;
        return DANU_OK;
    }
    if (size > (uint64_t)SIZE_MAX) { CloseHandle(h); return dn_seterr(DANU_ERR_IO, "%s: too large", path); }
    if (use_mmap) {
        HANDLE fm = CreateFileMappingW(h, NULL, PAGE_READONLY, 0, 0, NULL);
        if (fm) {
            void *p = MapViewOfFile(fm, FILE_MAP_READ, 0, 0, 0);
            CloseHandle(fm);   /* the view keeps the mapping alive */
            if (p) {
                CloseHandle(h);
                out->data = p;
                out->size = size;
                out->is_mmap = 1;
                return DANU_OK;
            }
        }
        /* fall through to reading */
    }
    uint8_t *buf = dn_malloc_aligned(a, (size_t)size);
    if (!buf) { CloseHandle(h); return dn_seterr(DANU_ERR_NOMEM, "%s: cannot allocate %llu bytes", path, (unsigned long long)size); }
    if (read_all(h, buf, size) != 0) {
        dn_free_aligned(a, buf);
        CloseHandle(h);
        return dn_seterr(DANU_ERR_IO, "%s: read failed: %s", path, win_error(GetLastError()));
    }
    CloseHandle(h);
    out->data = buf;
    out->size = size;
    out->is_mmap = 0;
    return DANU_OK;
}

void dn_unmap_file(const dn_alloc *a, dn_mapping *m)
{
    if (!m || !m->data) return;
    if (m->size == 0) { /* static empty buffer */ }
    else if (m->is_mmap) UnmapViewOfFile(m->data);
    else dn_free_aligned(a, (void *)m->data);
    memset(m, 0, sizeof *m);
}

/* Large pages need a privilege and locked memory: not for mappings. */
void dn_mem_hugepages(void *p, size_t n) { (void)p; (void)n; }

/* VirtualUnlock on pages that are not locked takes them out of the
 * working set (they stay in the standby list and come back from the file
 * if touched); it then reports ERROR_NOT_LOCKED, which is expected. */
void dn_mem_release(const void *p, size_t n)
{
    const uintptr_t page = dn_page_size();
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a) (void)VirtualUnlock((void *)a, b - a);
}

size_t dn_page_size(void)
{
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwPageSize ? si.dwPageSize : 4096;
}

danu_status dn_read_file(const char *path, const dn_alloc *a, size_t max_size, char **out, size_t *len)
{
    *out = NULL;
    if (len) *len = 0;
    DWORD err;
    HANDLE h = open_read(path, &err);
    if (h == INVALID_HANDLE_VALUE) return dn_seterr(DANU_ERR_IO, "%s: cannot open: %s", path, win_error(err));
    uint64_t size64;
    if (handle_size(h, &size64) != 0) { CloseHandle(h); return dn_seterr(DANU_ERR_IO, "%s: not a regular file", path); }
    if (size64 > max_size) {
        CloseHandle(h);
        return dn_seterr(DANU_ERR_FORMAT, "%s: %llu bytes is larger than the limit of %zu", path,
                         (unsigned long long)size64, max_size);
    }
    size_t size = (size_t)size64;
    char *buf = dn_malloc(a, size + 1);
    if (!buf) { CloseHandle(h); return dn_seterr(DANU_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, size + 1); }
    if (read_all(h, (uint8_t *)buf, size) != 0) { dn_free(a, buf); CloseHandle(h); return dn_seterr(DANU_ERR_IO, "%s: read failed", path); }
    CloseHandle(h);
    buf[size] = 0;
    *out = buf;
    if (len) *len = size;
    return DANU_OK;
}

static DWORD attributes(const char *path)
{
    wpath wp;
    const wchar_t *w = widen(path, &wp);
    return w ? GetFileAttributesW(w) : INVALID_FILE_ATTRIBUTES;
}

int dn_is_dir(const char *path)
{
    DWORD at = attributes(path);
    return at != INVALID_FILE_ATTRIBUTES && (at & FILE_ATTRIBUTE_DIRECTORY);
}

int dn_file_exists(const char *path)
{
    DWORD at = attributes(path);
    return at != INVALID_FILE_ATTRIBUTES && !(at & (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_DEVICE));
}

int dn_path_exists(const char *path) { return attributes(path) != INVALID_FILE_ATTRIBUTES; }

int dn_file_size(const char *path, uint64_t *size)
{
    DWORD err;
    HANDLE h = open_read(path, &err);
    if (h == INVALID_HANDLE_VALUE) return -1;
    int r = handle_size(h, size);
    CloseHandle(h);
    return r;
}

/* "x" (exclusive create) is done with CREATE_NEW-like _wopen flags, since
 * not every C runtime's fopen knows it. Files are always binary. */
FILE *dn_fopen(const char *path, const char *mode)
{
    wpath wp;
    const wchar_t *w = widen(path, &wp);
    if (!w) return NULL;
    FILE *f = NULL;
    if (strchr(mode, 'x')) {
        int flags = _O_CREAT | _O_EXCL | _O_BINARY | (strchr(mode, '+') ? _O_RDWR : _O_WRONLY);
        int fd = _wopen(w, flags, _S_IREAD | _S_IWRITE);
        if (fd >= 0) {
            f = _wfdopen(fd, strchr(mode, '+') ? L"w+b" : L"wb");
            if (!f) _close(fd);
        }
    } else {
        wchar_t wm[8];
        size_t k = 0;
        for (const char *m = mode; *m && k < 6; m++) wm[k++] = (wchar_t)(unsigned char)*m;
        if (!strchr(mode, 'b') && !strchr(mode, 't')) wm[k++] = L'b';
        wm[k] = 0;
        f = _wfopen(w, wm);
    }
    return f;
}

int dn_remove(const char *path)
{
    wpath wp;
    const wchar_t *w = widen(path, &wp);
    return w ? _wremove(w) : -1;
}

int dn_mkdir(const char *path)
{
    wpath wp;
    const wchar_t *w = widen(path, &wp);
    return w ? _wmkdir(w) : -1;
}

int dn_rmdir(const char *path)
{
    wpath wp;
    const wchar_t *w = widen(path, &wp);
    return w ? _wrmdir(w) : -1;
}

danu_status dn_disk_free(const char *dir, uint64_t *avail)
{
    *avail = 0;
    wpath wp;
    const wchar_t *w = widen(dir, &wp);
    if (!w) return dn_seterr(DANU_ERR_IO, "cannot check free space in %s: %s", dir, dn_os_error());
    ULARGE_INTEGER user_free;
    BOOL ok = GetDiskFreeSpaceExW(w, &user_free, NULL, NULL);
    DWORD e = GetLastError();
    if (!ok) return dn_seterr(DANU_ERR_IO, "cannot check free space in %s: %s", dir, win_error(e));
    *avail = (uint64_t)user_free.QuadPart;
    return DANU_OK;
}

danu_status dn_publish(const char *tmp, const char *path, int replace)
{
    wpath bt, bp;
    const wchar_t *wt = widen(tmp, &bt), *wp = wt ? widen(path, &bp) : NULL;
    if (!wt || !wp) return dn_seterr(DANU_ERR_IO, "%s: %s", path, dn_os_error());
    /* without MOVEFILE_REPLACE_EXISTING the move fails when PATH exists */
    BOOL ok = MoveFileExW(wt, wp, (replace ? MOVEFILE_REPLACE_EXISTING : 0) | MOVEFILE_WRITE_THROUGH);
    DWORD e = ok ? 0 : GetLastError();
    if (ok) return DANU_OK;
    if (!replace && (e == ERROR_ALREADY_EXISTS || e == ERROR_FILE_EXISTS))
        return dn_seterr(DANU_ERR_IO, "%s: exists; not replacing it", path);
    return dn_seterr(DANU_ERR_IO, "%s: cannot rename %s: %s", path, tmp, win_error(e));
}

/* ---- time, cores, CPU features ------------------------------------- */

uint64_t dn_time_ns(void)
{
    static atomic_ullong freq;   /* fixed at boot; racing first callers store the same value */
    uint64_t f = atomic_load_explicit(&freq, memory_order_relaxed);
    if (!f) {
        LARGE_INTEGER q;
        QueryPerformanceFrequency(&q);
        f = (uint64_t)q.QuadPart;
        atomic_store_explicit(&freq, f, memory_order_relaxed);
    }
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    const uint64_t t = (uint64_t)now.QuadPart;
    return t / f * 1000000000ull + t % f * 1000000000ull / f;
}

/* The processors of this process's affinity mask (one processor group). */
int dn_cpu_count(void)
{
    DWORD_PTR proc = 0, sys = 0;
    int n = 0;
    if (GetProcessAffinityMask(GetCurrentProcess(), &proc, &sys))
        for (; proc; proc &= proc - 1) n++;
    if (n < 1) {
        SYSTEM_INFO si;
        GetSystemInfo(&si);
        n = (int)si.dwNumberOfProcessors;
    }
    return n < 1 ? 1 : (n > 64 ? 64 : n);
}

void dn_arm_probe(dn_arm_features *f)
{
    f->dotprod = f->i8mm = 0;
#if defined(_M_ARM64) || defined(__aarch64__)
#ifdef PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE
    f->dotprod = IsProcessorFeaturePresent(PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE) != 0;
#endif
#ifdef PF_ARM_V82_I8MM_INSTRUCTIONS_AVAILABLE   /* newer SDKs only */
    f->i8mm = IsProcessorFeaturePresent(PF_ARM_V82_I8MM_INSTRUCTIONS_AVAILABLE) != 0;
#endif
#endif
}

/* ---- the process ---------------------------------------------------- */

/* UTF-16 (len units, or -1: NUL-terminated) as a new UTF-8 heap string. */
static char *narrow(const dn_alloc *a, const wchar_t *w, int len)
{
    int n = len == 0 ? 0 : WideCharToMultiByte(CP_UTF8, 0, w, len, NULL, 0, NULL, NULL);
    if (n < 0 || (len != 0 && n == 0)) return NULL;
    char *s = dn_malloc(a, (size_t)n + 1);
    if (!s) return NULL;
    if (n > 0 && WideCharToMultiByte(CP_UTF8, 0, w, len, s, n, NULL, NULL) != n) { dn_free(a, s); return NULL; }
    s[len < 0 && n > 0 ? n - 1 : n] = 0;
    return s;
}

static int is_blank(wchar_t c) { return c == L' ' || c == L'\t'; }

/* One argument of the command line at p into out (len units); returns
 * where the next starts. The program name ends at a blank outside quotes
 * and has no escapes; the others follow the C runtime: 2n backslashes and
 * a quote give n backslashes and toggle quoting, 2n+1 give n and a literal
 * quote, "" inside quotes a literal quote (and quoting ends). */
static const wchar_t *next_arg(const wchar_t *p, int first, wchar_t *out, int *len)
{
    int n = 0, quoted = 0;
    while (*p && (quoted || !is_blank(*p))) {
        if (first) {
            if (*p == L'"') quoted = !quoted;
            else out[n++] = *p;
            p++;
        } else if (*p == L'\\') {
            int bs = 0;
            while (*p == L'\\') { bs++; p++; }
            for (int i = 0; i < (*p == L'"' ? bs / 2 : bs); i++) out[n++] = L'\\';
            if (*p == L'"' && (bs & 1)) { out[n++] = L'"'; p++; }
        } else if (*p == L'"') {
            if (quoted && p[1] == L'"') { out[n++] = L'"'; p++; quoted = 0; }
            else quoted = !quoted;
            p++;
        } else {
            out[n++] = *p++;
        }
    }
    *len = n;
    return p;
}

void dn_args_utf8(const dn_alloc *a, int *argc, char ***argv)
{
    const wchar_t *p = GetCommandLineW();
    const size_t n = p ? wcslen(p) : 0;
    wchar_t *buf = n ? dn_malloc(a, (n + 1) * sizeof *buf) : NULL;
    char **out = buf ? dn_calloc(a, n / 2 + 2, sizeof *out) : NULL;   /* an argument and a blank each */
    int k = 0, ok = out != NULL;
    while (ok && (k == 0 || *p)) {
        int len;
        p = next_arg(p, k == 0, buf, &len);
        ok = (out[k++] = narrow(a, buf, len)) != NULL;
        while (is_blank(*p)) p++;
    }
    if (ok && k == *argc) *argv = out;   /* counted as the runtime did: trust the split */
    else if (out) {
        for (int i = 0; i < k; i++) dn_free(a, out[i]);
        dn_free(a, out);
    }
    dn_free(a, buf);
}

static UINT console_cp;

static void console_cp_restore(void) { SetConsoleOutputCP(console_cp); }

void dn_stdio_utf8(void)
{
    _setmode(_fileno(stdin), _O_BINARY);
    _setmode(_fileno(stdout), _O_BINARY);
    const UINT cp = GetConsoleOutputCP();   /* 0 without a console */
    if (cp && cp != CP_UTF8 && SetConsoleOutputCP(CP_UTF8)) {
        console_cp = cp;
        atexit(console_cp_restore);   /* the console outlives this program */
    }
}

/* GetConsoleMode succeeds on console handles only (_isatty is also true
 * for the NUL device). */
int dn_isatty(FILE *f)
{
    const intptr_t h = _get_osfhandle(_fileno(f));
    DWORD mode;
    return h != -1 && GetConsoleMode((HANDLE)h, &mode) != 0;
}

static int memory_counters(PROCESS_MEMORY_COUNTERS *pmc)
{
    memset(pmc, 0, sizeof *pmc);
    pmc->cb = sizeof *pmc;
    return GetProcessMemoryInfo(GetCurrentProcess(), pmc, sizeof *pmc) ? 0 : -1;
}

uint64_t dn_peak_rss(void)
{
    PROCESS_MEMORY_COUNTERS pmc;
    return memory_counters(&pmc) == 0 ? (uint64_t)pmc.PeakWorkingSetSize : 0;
}

uint64_t dn_current_rss(void)
{
    PROCESS_MEMORY_COUNTERS pmc;
    return memory_counters(&pmc) == 0 ? (uint64_t)pmc.WorkingSetSize : 0;
}

static void (*volatile interrupt_fn)(void);
static int interrupt_set;

/* Runs on a thread the system starts; TRUE: handled, the process goes on. */
static BOOL WINAPI on_ctrl(DWORD type)
{
    void (*fn)(void) = interrupt_fn;
    if ((type != CTRL_C_EVENT && type != CTRL_BREAK_EVENT) || !fn) return FALSE;
    fn();
    return TRUE;
}

int dn_on_interrupt(void (*fn)(void))
{
    interrupt_fn = fn;
    if (!fn == !interrupt_set) return 0;
    if (!SetConsoleCtrlHandler(on_ctrl, fn != NULL)) return -1;
    interrupt_set = fn != NULL;
    return 0;
}

char *dn_cache_dir(const dn_alloc *a)
{
    const wchar_t *w = _wgetenv(L"LOCALAPPDATA");
    if (!w || !*w) w = _wgetenv(L"TEMP");
    return w && *w ? narrow(a, w, -1) : dn_strdup(a, ".");
}

/* ---- threads ------------------------------------------------------- */

void dn_mutex_init(dn_mutex *m) { InitializeSRWLock((PSRWLOCK)&m->p); }
void dn_mutex_destroy(dn_mutex *m) { (void)m; }
void dn_mutex_lock(dn_mutex *m) { AcquireSRWLockExclusive((PSRWLOCK)&m->p); }
void dn_mutex_unlock(dn_mutex *m) { ReleaseSRWLockExclusive((PSRWLOCK)&m->p); }
void dn_cond_init(dn_cond *c) { InitializeConditionVariable((PCONDITION_VARIABLE)&c->p); }
void dn_cond_destroy(dn_cond *c) { (void)c; }
void dn_cond_wait(dn_cond *c, dn_mutex *m) { SleepConditionVariableSRW((PCONDITION_VARIABLE)&c->p, (PSRWLOCK)&m->p, INFINITE, 0); }
void dn_cond_broadcast(dn_cond *c) { WakeAllConditionVariable((PCONDITION_VARIABLE)&c->p); }

static BOOL CALLBACK once_tramp(PINIT_ONCE o, PVOID param, PVOID *ctx)
{
    (void)o; (void)ctx;
    void (**fn)(void) = param;
    (*fn)();
    return TRUE;
}

void dn_once_run(dn_once *o, void (*fn)(void))
{
    InitOnceExecuteOnce((PINIT_ONCE)&o->p, once_tramp, (PVOID)&fn, NULL);
}

static DWORD WINAPI thread_tramp(LPVOID v)
{
    dn_thread *t = v;
    t->fn(t->arg);
    return 0;
}

int dn_thread_create(dn_thread *t, dn_thread_fn fn, void *arg)
{
    t->fn = fn;
    t->arg = arg;
    t->handle = CreateThread(NULL, 0, thread_tramp, t, 0, NULL);
    return t->handle ? 0 : -1;
}

void dn_thread_join(dn_thread *t)
{
    WaitForSingleObject(t->handle, INFINITE);
    CloseHandle(t->handle);
    t->handle = NULL;
}

void dn_yield(void) { SwitchToThread(); }

/* These Win32 objects are one pointer each, as the os_thread.h types assume. */
_Static_assert(sizeof(SRWLOCK) == sizeof(void *), "SRWLOCK size");
_Static_assert(sizeof(CONDITION_VARIABLE) == sizeof(void *), "CONDITION_VARIABLE size");
_Static_assert(sizeof(INIT_ONCE) == sizeof(void *), "INIT_ONCE size");
