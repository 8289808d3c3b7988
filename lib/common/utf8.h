/* utf8.h - the one strict UTF-8 decoder of the library (JSON strings,
 * tokenizer input, pieces and decoded bytes): no overlong forms, no
 * surrogates, nothing above U+10FFFF. Static inline: it sits in hot loops. */
#ifndef DN_UTF8_H
#define DN_UTF8_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Length of the character at p[0..n), n >= 1: 1 to 4 when complete, 0 when
 * the bytes are a valid but incomplete prefix, -1 when no continuation can
 * make them valid. */
static inline int dn_utf8_char(const uint8_t *p, size_t n)
{
    uint8_t b = p[0], lo = 0x80, hi = 0xbf;   /* allowed range of the second byte */
    int need;
    if (b < 0x80) return 1;
    if (b >= 0xc2 && b <= 0xdf) need = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        need = 3;
        if (b == 0xe0) lo = 0xa0;
        else if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        need = 4;
        if (b == 0xf0) lo = 0x90;
        else if (b == 0xf4) hi = 0x8f;
    } else return -1;
    for (int k = 1; k < need; k++) {
        if ((size_t)k >= n) return 0;
        uint8_t c = p[k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) return -1;
    }
    return need;
}

/* Offset of the first byte that does not start a complete character, or n
 * when all of p[0..n) is UTF-8. ASCII is skipped 8 bytes at a time. */
static inline size_t dn_utf8_check(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, p + i, 8);
            if (!(v & 0x8080808080808080ull)) { i += 8; continue; }
        }
        if (p[i] < 0x80) { i++; continue; }
        int k = dn_utf8_char(p + i, n - i);
        if (k <= 0) return i;
        i += (size_t)k;
    }
    return n;
}
#endif
