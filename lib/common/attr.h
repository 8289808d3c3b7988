/* attr.h - compiler attributes that other compilers lack. */
#ifndef DN_ATTR_H
#define DN_ATTR_H
/* printf-style format checking; MinGW's printf is checked as gnu_printf
 * (the library is built with __USE_MINGW_ANSI_STDIO=1: C99 formats). */
#if defined(__MINGW32__) && !defined(__clang__)
#define DN_PRINTF(f, a) __attribute__((format(gnu_printf, f, a)))
#elif defined(__GNUC__)
#define DN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DN_PRINTF(f, a)
#endif
#endif
