/* os_cpu.h - x86-64 cpuid and xgetbv for GCC, Clang and MSVC alike. */
#ifndef DN_OS_CPU_H
#define DN_OS_CPU_H
#include <stdint.h>

#if defined(__x86_64__) || defined(_M_X64)
#define DN_HAVE_CPUID 1
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#include <immintrin.h>
/* r = eax, ebx, ecx, edx of leaf/subleaf */
static inline void dn_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    int v[4];
    __cpuidex(v, (int)leaf, (int)sub);
    for (int i = 0; i < 4; i++) r[i] = (uint32_t)v[i];
}
static inline uint64_t dn_xgetbv0(void) { return (uint64_t)_xgetbv(0); }
#else
#include <cpuid.h>
static inline void dn_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    unsigned a, b, c, d;
    __cpuid_count(leaf, sub, a, b, c, d);
    r[0] = a; r[1] = b; r[2] = c; r[3] = d;
}
/* only after cpuid(1) reported OSXSAVE */
static inline uint64_t dn_xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif
/* highest basic leaf */
static inline uint32_t dn_cpuid_max(void) { uint32_t r[4]; dn_cpuid(0, 0, r); return r[0]; }
#endif
#endif
