/* json.h - strict, bounded JSON parser into a read-only tree (RFC 8259). */
#ifndef DN_JSON_H
#define DN_JSON_H
#include <stddef.h>
#include <stdint.h>
#include "danu.h"
#include "common/alloc.h"

typedef enum { DN_JSON_NULL, DN_JSON_BOOL, DN_JSON_NUMBER, DN_JSON_STRING, DN_JSON_ARRAY, DN_JSON_OBJECT } dn_json_type;

typedef struct dn_json dn_json;
struct dn_json {
    dn_json_type type;
    int boolean;
    double number;
    int is_integer;       /* number had no fraction/exponent and fits int64 */
    int64_t integer;
    char *str;            /* STRING: decoded UTF-8, NUL-terminated */
    size_t str_len;
    char **keys;          /* OBJECT: keys (decoded, NUL-terminated) */
    dn_json *items;       /* ARRAY/OBJECT: children, n of them */
    size_t n;
};

/* Parse len bytes. Limits: depth 64, document 64 MiB. FORMAT error names the
 * byte offset and `what` (file name). Duplicate keys: the last one wins. */
danu_status dn_json_parse(const dn_alloc *a, const char *text, size_t len, const char *what, dn_json **out);
void dn_json_free(const dn_alloc *a, dn_json *root);

const dn_json *dn_json_get(const dn_json *obj, const char *key);   /* NULL if absent / not object */
/* Typed getters: return 1 and store when present with the right type. */
int dn_json_get_int(const dn_json *obj, const char *key, int64_t *out);
int dn_json_get_num(const dn_json *obj, const char *key, double *out);
int dn_json_get_bool(const dn_json *obj, const char *key, int *out);
const char *dn_json_get_str(const dn_json *obj, const char *key);  /* NULL if absent/not string */
#endif
