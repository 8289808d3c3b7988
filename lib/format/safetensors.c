/* safetensors.c - reader for one safetensors file held in memory: an 8-byte
 * little-endian header length, a JSON header, then the tensor bytes. Every
 * number in the header is checked against the file before it is used. */
#include <stdlib.h>
#include <string.h>
#include "format/safetensors.h"
#include "common/bytes.h"
#include "common/error.h"

#define ST_MAX_HEADER 100000000ull /* the reference implementation's cap */

typedef struct st_dtype { const char *name; int32_t type; uint32_t size; } st_dtype;

static const st_dtype supported[] = {
    { "BF16", DANU_TYPE_BF16, 2 },
    { "F16", DANU_TYPE_F16, 2 },
    { "F32", DANU_TYPE_F32, 4 },
};

/* Valid safetensors dtypes that libdanu does not compute with. */
static const char *const unsupported[] = {
    "F64", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL",
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

typedef struct range { uint64_t begin, end; int64_t idx; } range;

static int range_cmp(const void *x, const void *y)
{
    const range *a = x, *b = y;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    return a->end < b->end ? -1 : a->end > b->end;
}

static danu_status check_metadata(const dn_json *m, const char *what)
{
    if (m->type != DN_JSON_OBJECT)
        return dn_seterr(DANU_ERR_FORMAT, "%s: __metadata__ is not an object", what);
    for (size_t i = 0; i < m->n; i++)
        if (m->items[i].type != DN_JSON_STRING)
            return dn_seterr(DANU_ERR_FORMAT, "%s: __metadata__ value \"%s\" is not a string", what, m->keys[i]);
    return DANU_OK;
}

static int json_u64(const dn_json *v, uint64_t *out)
{
    if (v->type != DN_JSON_NUMBER || !v->is_integer || v->integer < 0) return 0;
    *out = (uint64_t)v->integer;
    return 1;
}

/* Fill one descriptor (name left NULL) from a header entry. */
static danu_status parse_entry(const char *name, const dn_json *v, const char *what, uint64_t data_start,
                               uint64_t data_size, const uint8_t *data, dn_tensor_desc *t)
{
    if (v->type != DN_JSON_OBJECT)
        return dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", what, name);
    const char *dtype = dn_json_get_str(v, "dtype");
    if (!dtype) return dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s': missing string \"dtype\"", what, name);
    const st_dtype *dt = NULL;
    for (size_t k = 0; k < sizeof supported / sizeof supported[0]; k++)
        if (strcmp(dtype, supported[k].name) == 0) dt = &supported[k];
    if (!dt) {
        for (size_t k = 0; k < sizeof unsupported / sizeof unsupported[0]; k++)
            if (strcmp(dtype, unsupported[k]) == 0)
                return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (BF16, F16, F32 are)",
                                 what, name, dtype);
        return dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%.32s\"", what, name, dtype);
    }

    const dn_json *shape = dn_json_get(v, "shape");
    if (!shape || shape->type != DN_JSON_ARRAY)
        return dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s': missing array \"shape\"", what, name);
    if (shape->n > DN_MAX_DIMS)
        return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d supported)", what, name,
                         shape->n, DN_MAX_DIMS);
    uint64_t n_el = 1;
    memset(t, 0, sizeof *t);
    for (size_t d = 0; d < shape->n; d++) {
        uint64_t dim;
        if (!json_u64(&shape->items[d], &dim))
            return dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", what, name, d);
        if (dn_mul_overflow_u64(n_el, dim, &n_el))
            return dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s': element count of the shape overflows", what, name);
        t->dims[d] = (int64_t)dim;
    }
    uint64_t nbytes;
    if (dn_mul_overflow_u64(n_el, dt->size, &nbytes))
        return dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s': byte size of the shape overflows", what, name);

    const dn_json *offs = dn_json_get(v, "data_offsets");
    uint64_t begin, end;
    if (!offs || offs->type != DN_JSON_ARRAY || offs->n != 2 || !json_u64(&offs->items[0], &begin) ||
        !json_u64(&offs->items[1], &end))
        return dn_seterr(DANU_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be two non-negative integers",
                         what, name);
    if (begin > end || end > data_size)
        return dn_seterr(DANU_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu data bytes that start at file offset %llu",
                         what, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_size, (unsigned long long)data_start);
    if (end - begin != nbytes)
        return dn_seterr(DANU_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s shape needs %llu (file offset %llu)",
                         what, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)(end - begin), dt->name, (unsigned long long)nbytes,
                         (unsigned long long)(data_start + begin));
    t->type = dt->type;
    t->n_dims = (int32_t)shape->n;
    t->n_elements = n_el;
    t->data = data + data_start + begin;
    t->nbytes = nbytes;
    t->file_offset = data_start + begin;
    return DANU_OK;
}

/* Tensors [first, n) of *t: no two non-empty byte ranges may share a byte. */
static danu_status check_overlaps(const dn_alloc *a, const dn_tensor_desc *t, int64_t first, int64_t n,
                                  const char *what)
{
    if (n - first < 2) return DANU_OK;
    range *r = dn_malloc(a, (size_t)(n - first) * sizeof *r);
    if (!r) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory checking tensor ranges", what);
    size_t m = 0;
    for (int64_t i = first; i < n; i++) {
        if (!t[i].nbytes) continue;
        r[m].begin = t[i].file_offset;
        r[m].end = t[i].file_offset + t[i].nbytes;
        r[m].idx = i;
        m++;
    }
    if (m > 1) qsort(r, m, sizeof *r, range_cmp);
    danu_status st = DANU_OK;
    for (size_t i = 1; i < m; i++)
        if (r[i].begin < r[i - 1].end) {
            st = dn_seterr(DANU_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap at file offset %llu", what,
                           t[r[i - 1].idx].name, t[r[i].idx].name, (unsigned long long)r[i].begin);
            break;
        }
    dn_free(a, r);
    return st;
}

danu_status dn_safetensors_parse(const dn_alloc *a, const uint8_t *data, uint64_t size,
                                 const char *what, int32_t file_index,
                                 dn_tensor_desc **tensors, int64_t *n_tensors, int64_t *cap)
{
    if (!what) what = "safetensors";
    if (!a || (!data && size) || !tensors || !n_tensors || !cap)
        return dn_seterr(DANU_ERR_INVALID_ARG, "%s: dn_safetensors_parse: NULL argument", what);
    if (size < 8)
        return dn_seterr(DANU_ERR_FORMAT, "%s: %llu bytes, too short for the 8-byte header length", what,
                         (unsigned long long)size);
    uint64_t hlen = dn_rd_u64(data);
    if (hlen > size - 8)
        return dn_seterr(DANU_ERR_FORMAT, "%s: header length %llu (offset 0) runs past the end of the %llu-byte file",
                         what, (unsigned long long)hlen, (unsigned long long)size);
    if (hlen > ST_MAX_HEADER)
        return dn_seterr(DANU_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit", what,
                         (unsigned long long)hlen);
    if (hlen < 2 || data[8] != '{')
        return dn_seterr(DANU_ERR_FORMAT, "%s: header at offset 8 does not start with '{'", what);

    /* JSON errors count bytes from the start of the header, so say where it is */
    static const char suffix[] = " header (JSON starts at file offset 8)";
    char hwhat[512];
    size_t wl = strlen(what);
    if (wl > sizeof hwhat - sizeof suffix) wl = sizeof hwhat - sizeof suffix;
    memcpy(hwhat, what, wl);
    memcpy(hwhat + wl, suffix, sizeof suffix);
    dn_json *root;
    DN_TRY(dn_json_parse(a, (const char *)data + 8, (size_t)hlen, hwhat, &root));

    uint64_t data_start = 8 + hlen, data_size = size - data_start;
    int64_t first = *n_tensors;
    danu_status st = DANU_OK;
    for (size_t i = 0; i < root->n && st == DANU_OK; i++) {
        const char *name = root->keys[i];
        const dn_json *v = &root->items[i];
        if (strcmp(name, "__metadata__") == 0) { st = check_metadata(v, what); continue; }
        dn_tensor_desc t;
        st = parse_entry(name, v, what, data_start, data_size, data, &t);
        if (st != DANU_OK) break;
        if (*n_tensors == *cap) {
            int64_t ncap = *cap ? *cap * 2 : 16;
            dn_tensor_desc *grown = dn_realloc(a, *tensors, (size_t)ncap * sizeof *grown);
            if (!grown) { st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory for the tensor table", what); break; }
            *tensors = grown;
            *cap = ncap;
        }
        t.name = dn_strdup(a, name);
        if (!t.name) { st = dn_seterr(DANU_ERR_NOMEM, "%s: out of memory for tensor names", what); break; }
        t.file_index = file_index;
        (*tensors)[(*n_tensors)++] = t;
    }
    if (st == DANU_OK) st = check_overlaps(a, *tensors, first, *n_tensors, what);
    dn_json_free(a, root);
    if (st != DANU_OK) {
        for (int64_t i = first; i < *n_tensors; i++) dn_free(a, (*tensors)[i].name);
        *n_tensors = first;
    }
    return st;
}

void dn_tensor_descs_free(const dn_alloc *a, dn_tensor_desc *t, int64_t n)
{
    if (!t) return;
    for (int64_t i = 0; i < n; i++) dn_free(a, t[i].name);
    dn_free(a, t);
}
