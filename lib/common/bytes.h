/* bytes.h - little-endian loads/stores through memcpy, and overflow-checked
 * size arithmetic. Everything parsed from a file goes through these. */
#ifndef DN_BYTES_H
#define DN_BYTES_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>

static inline uint16_t dn_rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t dn_rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t dn_rd_u64(const uint8_t *p) {
    return (uint64_t)dn_rd_u32(p) | ((uint64_t)dn_rd_u32(p + 4) << 32);
}
static inline float dn_rd_f32(const uint8_t *p) { uint32_t u = dn_rd_u32(p); float f; memcpy(&f, &u, 4); return f; }
static inline double dn_rd_f64(const uint8_t *p) { uint64_t u = dn_rd_u64(p); double d; memcpy(&d, &u, 8); return d; }
static inline void dn_wr_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void dn_wr_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void dn_wr_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void dn_wr_f32(uint8_t *p, float f) { uint32_t u; memcpy(&u, &f, 4); dn_wr_u32(p, u); }

/* Return 0 and store the result, or 1 on overflow. */
/* FNV-1a, 64-bit: start from DN_FNV1A_INIT and chain calls to hash a
 * sequence of pieces (for hash tables and checksums, not for security). */
#define DN_FNV1A_INIT 1469598103934665603ull
static inline uint64_t dn_fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* ASCII case-insensitive compare of at most n bytes (strncasecmp is POSIX). */
static inline int dn_ascii_ncasecmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x += 32;
        if (y >= 'A' && y <= 'Z') y += 32;
        if (x != y || !x) return x - y;
    }
    return 0;
}

static inline int dn_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline int dn_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int dn_add_overflow_size(size_t a, size_t b, size_t *r) { return __builtin_add_overflow(a, b, r); }
static inline int dn_mul_overflow_size(size_t a, size_t b, size_t *r) { return __builtin_mul_overflow(a, b, r); }

/* fp16 / bf16 <-> f32, exact (round to nearest even on the way down). */
static inline float dn_bf16_to_f32(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static inline uint16_t dn_f32_to_bf16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float dn_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) { man <<= 1; exp--; }
            man &= 0x3ffu; u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f; memcpy(&f, &u, 4); return f;
}
static inline uint16_t dn_f32_to_fp16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);         /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);        /* overflow -> inf */
    if (a < 0x38800000u) {                                          /* subnormal or zero */
        if (a < 0x33000000u) return (uint16_t)sign;
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                                   /* 14..24 */
        uint32_t half = 1u << (shift - 1), rem = m & ((1u << shift) - 1), r = m >> shift;
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);                      /* round to nearest even */
    r -= (127u - 15u) << 23;
    return (uint16_t)(sign | (r >> 13));
}
#endif
