/* gguf_write.c - GGUF v3 writer. Metadata is encoded into a memory buffer
 * as keys are added; tensors are declared up front so the header can carry
 * every offset; then the caller streams each tensor's bytes in order. */
#include <string.h>
#include "format/gguf.h"
#include "common/bytes.h"
#include "common/error.h"
#include "quant/quant.h"

#define NAME_MAX_LEN ((size_t)64 << 10)
#define VALUE_MAX_LEN ((uint64_t)64 << 20)
#define DEFAULT_ALIGNMENT 32

typedef struct w_tensor {
    char *name;
    int32_t type, n_dims;
    int64_t dims[DN_MAX_DIMS];
    uint64_t nbytes, offset;   /* offset relative to the data section */
} w_tensor;

enum { ST_META, ST_DATA, ST_DONE };

struct dn_gguf_writer {
    dn_alloc a;
    uint32_t alignment;
    int state;
    uint8_t *kv;               /* encoded metadata entries */
    size_t kv_len, kv_cap;
    char **keys;
    int64_t n_keys, keys_cap;
    w_tensor *t;
    int64_t n_t, t_cap;
    int64_t next;              /* next tensor whose bytes are expected */
    uint64_t data_size;        /* running end of the data section */
};

danu_status dn_gguf_writer_create(const dn_alloc *a, uint32_t alignment, dn_gguf_writer **out)
{
    if (!a || !out) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL argument");
    *out = NULL;
    if (!alignment) alignment = DEFAULT_ALIGNMENT;
    if (alignment & (alignment - 1))
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: alignment %u is not a power of two", alignment);
    dn_gguf_writer *w = dn_calloc(a, 1, sizeof *w);
    if (!w) return dn_seterr(DANU_ERR_NOMEM, "gguf writer: out of memory");
    w->a = *a;
    w->alignment = alignment;
    *out = w;
    return DANU_OK;
}

void dn_gguf_writer_free(dn_gguf_writer *w)
{
    if (!w) return;
    dn_alloc a = w->a;
    for (int64_t i = 0; i < w->n_keys; i++) dn_free(&a, w->keys[i]);
    for (int64_t i = 0; i < w->n_t; i++) dn_free(&a, w->t[i].name);
    dn_free(&a, w->keys);
    dn_free(&a, w->t);
    dn_free(&a, w->kv);
    dn_free(&a, w);
}

/* Grow an array of elem-sized items so that one more fits. */
static danu_status grow(const dn_alloc *a, void **p, int64_t n, int64_t *cap, size_t elem)
{
    if (n < *cap) return DANU_OK;
    int64_t nc = *cap ? *cap * 2 : 16;
    void *q = dn_realloc(a, *p, (size_t)nc * elem);
    if (!q) return dn_seterr(DANU_ERR_NOMEM, "gguf writer: out of memory");
    *p = q;
    *cap = nc;
    return DANU_OK;
}

static danu_status put(dn_gguf_writer *w, const void *bytes, size_t n)
{
    size_t need;
    if (dn_add_overflow_size(w->kv_len, n, &need))
        return dn_seterr(DANU_ERR_NOMEM, "gguf writer: metadata too large");
    if (need > w->kv_cap) {
        size_t nc = w->kv_cap ? w->kv_cap : 4096;
        while (nc < need) {
            if (dn_mul_overflow_size(nc, 2, &nc)) return dn_seterr(DANU_ERR_NOMEM, "gguf writer: metadata too large");
        }
        uint8_t *q = dn_realloc(&w->a, w->kv, nc);
        if (!q) return dn_seterr(DANU_ERR_NOMEM, "gguf writer: out of memory for %zu bytes of metadata", nc);
        w->kv = q;
        w->kv_cap = nc;
    }
    if (n) memcpy(w->kv + w->kv_len, bytes, n);
    w->kv_len = need;
    return DANU_OK;
}

static danu_status put_u32(dn_gguf_writer *w, uint32_t v) { uint8_t b[4]; dn_wr_u32(b, v); return put(w, b, 4); }
static danu_status put_u64(dn_gguf_writer *w, uint64_t v) { uint8_t b[8]; dn_wr_u64(b, v); return put(w, b, 8); }

static danu_status put_str(dn_gguf_writer *w, const char *s, uint64_t len)
{
    DN_TRY(put_u64(w, len));
    return put(w, s, (size_t)len);
}

/* Check the key, remember it, and encode it with the value type. On a
 * later failure the caller rolls back with undo_key. */
static danu_status begin_key(dn_gguf_writer *w, const char *key, int32_t type)
{
    if (!key) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL key");
    if (w->state != ST_META) return dn_seterr(DANU_ERR_STATE, "gguf writer: key '%s' added after dn_gguf_w_begin", key);
    size_t len = strlen(key);
    if (len > NAME_MAX_LEN) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: key of %zu bytes is too long", len);
    for (int64_t i = 0; i < w->n_keys; i++)
        if (!strcmp(w->keys[i], key)) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: duplicate key '%s'", key);
    DN_TRY(grow(&w->a, (void **)&w->keys, w->n_keys, &w->keys_cap, sizeof *w->keys));
    char *copy = dn_strdup(&w->a, key);
    if (!copy) return dn_seterr(DANU_ERR_NOMEM, "gguf writer: out of memory");
    size_t mark = w->kv_len;
    danu_status st = put_str(w, key, len);
    if (st == DANU_OK) st = put_u32(w, (uint32_t)type);
    if (st != DANU_OK) {
        w->kv_len = mark;
        dn_free(&w->a, copy);
        return st;
    }
    w->keys[w->n_keys++] = copy;
    return DANU_OK;
}

/* Undo the last begin_key after its value failed to encode. */
static danu_status undo_key(dn_gguf_writer *w, size_t mark, danu_status st)
{
    w->kv_len = mark;
    dn_free(&w->a, w->keys[--w->n_keys]);
    return st;
}

static danu_status scalar(dn_gguf_writer *w, const char *key, int32_t type, const uint8_t *bytes, size_t n)
{
    size_t mark = w->kv_len;
    DN_TRY(begin_key(w, key, type));
    danu_status st = put(w, bytes, n);
    return st == DANU_OK ? st : undo_key(w, mark, st);
}

danu_status dn_gguf_w_u32(dn_gguf_writer *w, const char *key, uint32_t v)
{
    if (!w) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL writer");
    uint8_t b[4];
    dn_wr_u32(b, v);
    return scalar(w, key, DN_GGUF_U32, b, 4);
}

danu_status dn_gguf_w_i32(dn_gguf_writer *w, const char *key, int32_t v)
{
    if (!w) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL writer");
    uint8_t b[4];
    dn_wr_u32(b, (uint32_t)v);
    return scalar(w, key, DN_GGUF_I32, b, 4);
}

danu_status dn_gguf_w_u64(dn_gguf_writer *w, const char *key, uint64_t v)
{
    if (!w) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL writer");
    uint8_t b[8];
    dn_wr_u64(b, v);
    return scalar(w, key, DN_GGUF_U64, b, 8);
}

danu_status dn_gguf_w_f32(dn_gguf_writer *w, const char *key, float v)
{
    if (!w) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL writer");
    uint8_t b[4];
    dn_wr_f32(b, v);
    return scalar(w, key, DN_GGUF_F32, b, 4);
}

danu_status dn_gguf_w_bool(dn_gguf_writer *w, const char *key, int v)
{
    if (!w) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL writer");
    uint8_t b = v ? 1 : 0;
    return scalar(w, key, DN_GGUF_BOOL, &b, 1);
}

danu_status dn_gguf_w_scalar(dn_gguf_writer *w, const char *key, int32_t type, int64_t i, double f)
{
    if (!w) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL writer");
    uint8_t b[8];
    const uint64_t u = (uint64_t)i;
    switch (type) {
    case DN_GGUF_U8: case DN_GGUF_I8: b[0] = (uint8_t)u; return scalar(w, key, type, b, 1);
    case DN_GGUF_BOOL: b[0] = i != 0; return scalar(w, key, type, b, 1);
    case DN_GGUF_U16: case DN_GGUF_I16: dn_wr_u16(b, (uint16_t)u); return scalar(w, key, type, b, 2);
    case DN_GGUF_U32: case DN_GGUF_I32: dn_wr_u32(b, (uint32_t)u); return scalar(w, key, type, b, 4);
    case DN_GGUF_U64: case DN_GGUF_I64: dn_wr_u64(b, u); return scalar(w, key, type, b, 8);
    case DN_GGUF_F32: dn_wr_f32(b, (float)f); return scalar(w, key, type, b, 4);
    case DN_GGUF_F64: { uint64_t d; memcpy(&d, &f, 8); dn_wr_u64(b, d); return scalar(w, key, type, b, 8); }
    default:
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: type %d of key '%s' is not a scalar", (int)type,
                         key ? key : "");
    }
}

danu_status dn_gguf_w_str(dn_gguf_writer *w, const char *key, const char *s, size_t len)
{
    if (!w || (!s && len)) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL argument");
    if (len > VALUE_MAX_LEN)
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: string value of key '%s' is too long (%zu bytes)",
                         key ? key : "", len);
    size_t mark = w->kv_len;
    DN_TRY(begin_key(w, key, DN_GGUF_STRING));
    danu_status st = put_str(w, s, len);
    return st == DANU_OK ? st : undo_key(w, mark, st);
}

/* Host-order elements to little-endian. */
static danu_status put_elems(dn_gguf_writer *w, const uint8_t *src, uint32_t sz, uint64_t count)
{
    uint8_t b[8];
    for (uint64_t i = 0; i < count; i++, src += sz) {
        if (sz == 1) b[0] = src[0];
        else if (sz == 2) { uint16_t v; memcpy(&v, src, 2); dn_wr_u16(b, v); }
        else if (sz == 4) { uint32_t v; memcpy(&v, src, 4); dn_wr_u32(b, v); }
        else { uint64_t v; memcpy(&v, src, 8); dn_wr_u64(b, v); }
        DN_TRY(put(w, b, sz));
    }
    return DANU_OK;
}

danu_status dn_gguf_w_arr(dn_gguf_writer *w, const char *key, int32_t elem_type, const void *data, uint64_t count)
{
    if (!w || (!data && count)) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL argument");
    uint32_t sz = dn_gguf_value_size(elem_type);
    if (!sz)
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: key '%s': array element type %d is not numeric",
                         key ? key : "", (int)elem_type);
    uint64_t bytes;
    if (dn_mul_overflow_u64(count, sz, &bytes) || bytes > SIZE_MAX / 2)
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: key '%s': array of %llu elements is too large",
                         key ? key : "", (unsigned long long)count);
    size_t mark = w->kv_len;
    DN_TRY(begin_key(w, key, DN_GGUF_ARRAY));
    danu_status st = put_u32(w, (uint32_t)elem_type);
    if (st == DANU_OK) st = put_u64(w, count);
    if (st == DANU_OK) st = put_elems(w, data, sz, count);
    return st == DANU_OK ? st : undo_key(w, mark, st);
}

danu_status dn_gguf_w_arr_str(dn_gguf_writer *w, const char *key, const char *const *s, const size_t *lens, uint64_t count)
{
    if (!w || ((!s || !lens) && count)) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL argument");
    for (uint64_t i = 0; i < count; i++)
        if ((!s[i] && lens[i]) || lens[i] > VALUE_MAX_LEN)
            return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: key '%s': bad string %llu",
                             key ? key : "", (unsigned long long)i);
    size_t mark = w->kv_len;
    DN_TRY(begin_key(w, key, DN_GGUF_ARRAY));
    danu_status st = put_u32(w, DN_GGUF_STRING);
    if (st == DANU_OK) st = put_u64(w, count);
    for (uint64_t i = 0; i < count && st == DANU_OK; i++) st = put_str(w, s[i], lens[i]);
    return st == DANU_OK ? st : undo_key(w, mark, st);
}

static uint64_t pad_to(uint64_t n, uint32_t al) { return (al - n % al) % al; }

danu_status dn_gguf_w_tensor(dn_gguf_writer *w, const char *name, int32_t type, int32_t n_dims, const int64_t *dims)
{
    if (!w || !name || !dims) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL argument");
    if (w->state != ST_META)
        return dn_seterr(DANU_ERR_STATE, "gguf writer: tensor '%s' declared after dn_gguf_w_begin", name);
    size_t len = strlen(name);
    if (len > NAME_MAX_LEN) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: tensor name of %zu bytes is too long", len);
    if (!dn_type_get(type))
        return dn_seterr(DANU_ERR_UNSUPPORTED, "gguf writer: tensor '%s': unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > DN_MAX_DIMS)
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: tensor '%s': n_dims %d not in 1..%d", name, (int)n_dims, DN_MAX_DIMS);
    uint64_t rows = 1, n_el = 1;
    for (int32_t d = 0; d < n_dims; d++) {
        if (dims[d] < 1 || dn_mul_overflow_u64(n_el, (uint64_t)dims[d], &n_el) || n_el > INT64_MAX)
            return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: tensor '%s': bad dims[%d] = %lld",
                             name, (int)d, (long long)dims[d]);
        if (d < n_dims - 1) rows *= (uint64_t)dims[d];
    }
    uint64_t row = dn_type_row_bytes(type, (uint64_t)dims[n_dims - 1]), nbytes, off, end;
    if (!row || dn_mul_overflow_u64(row, rows, &nbytes))
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: tensor '%s': row of %lld is not a multiple of the %s block",
                         name, (long long)dims[n_dims - 1], dn_type_get(type)->name);
    for (int64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: duplicate tensor '%s'", name);
    if (dn_add_overflow_u64(w->data_size, pad_to(w->data_size, w->alignment), &off) ||
        dn_add_overflow_u64(off, nbytes, &end))
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: tensor '%s': data section too large", name);
    DN_TRY(grow(&w->a, (void **)&w->t, w->n_t, &w->t_cap, sizeof *w->t));
    w_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = dn_strdup(&w->a, name);
    if (!t->name) return dn_seterr(DANU_ERR_NOMEM, "gguf writer: out of memory");
    t->type = type;
    t->n_dims = n_dims;
    memcpy(t->dims, dims, (size_t)n_dims * sizeof *dims);
    t->nbytes = nbytes;
    t->offset = off;
    w->data_size = end;
    w->n_t++;
    return DANU_OK;
}

static danu_status out(FILE *f, const void *p, size_t n, const char *what)
{
    if (n && fwrite(p, 1, n, f) != n)
        return dn_seterr(DANU_ERR_IO, "gguf writer: write of %zu bytes of %s failed", n, what);
    return DANU_OK;
}

static danu_status out_zeros(FILE *f, uint64_t n)
{
    static const uint8_t zeros[64];
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        DN_TRY(out(f, zeros, k, "padding"));
        n -= k;
    }
    return DANU_OK;
}

danu_status dn_gguf_w_begin(dn_gguf_writer *w, FILE *f)
{
    if (!w || !f) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL argument");
    if (w->state != ST_META) return dn_seterr(DANU_ERR_STATE, "gguf writer: dn_gguf_w_begin called twice");
    uint8_t b[24];
    memcpy(b, "GGUF", 4);
    dn_wr_u32(b + 4, 3);
    dn_wr_u64(b + 8, (uint64_t)w->n_t);
    dn_wr_u64(b + 16, (uint64_t)w->n_keys);
    DN_TRY(out(f, b, 24, "header"));
    DN_TRY(out(f, w->kv, w->kv_len, "metadata"));
    uint64_t pos = 24 + (uint64_t)w->kv_len;
    for (int64_t i = 0; i < w->n_t; i++) {
        const w_tensor *t = &w->t[i];
        size_t len = strlen(t->name);
        dn_wr_u64(b, len);
        DN_TRY(out(f, b, 8, "tensor name"));
        DN_TRY(out(f, t->name, len, "tensor name"));
        dn_wr_u32(b, (uint32_t)t->n_dims);
        DN_TRY(out(f, b, 4, "tensor info"));
        for (int32_t d = t->n_dims - 1; d >= 0; d--) {   /* GGUF ne[] runs innermost first */
            dn_wr_u64(b, (uint64_t)t->dims[d]);
            DN_TRY(out(f, b, 8, "tensor info"));
        }
        dn_wr_u32(b, (uint32_t)t->type);
        dn_wr_u64(b + 4, t->offset);
        DN_TRY(out(f, b, 12, "tensor info"));
        pos += 8 + len + 4 + 8 * (uint64_t)t->n_dims + 12;
    }
    DN_TRY(out_zeros(f, pad_to(pos, w->alignment)));
    w->state = ST_DATA;
    w->next = 0;
    return DANU_OK;
}

danu_status dn_gguf_w_data(dn_gguf_writer *w, FILE *f, const void *bytes, uint64_t nbytes)
{
    if (!w || !f || (!bytes && nbytes)) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL argument");
    if (w->state != ST_DATA) return dn_seterr(DANU_ERR_STATE, "gguf writer: tensor data outside begin/end");
    if (w->next >= w->n_t)
        return dn_seterr(DANU_ERR_STATE, "gguf writer: more tensor data than the %lld declared tensors",
                         (long long)w->n_t);
    const w_tensor *t = &w->t[w->next];
    if (nbytes != t->nbytes)
        return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: tensor '%s' (%s) needs %llu bytes, got %llu", t->name,
                         dn_type_get(t->type)->name, (unsigned long long)t->nbytes, (unsigned long long)nbytes);
    if (nbytes > SIZE_MAX) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: tensor '%s' too large", t->name);
    DN_TRY(out(f, bytes, (size_t)nbytes, t->name));
    DN_TRY(out_zeros(f, pad_to(t->offset + nbytes, w->alignment)));
    w->next++;
    return DANU_OK;
}

danu_status dn_gguf_w_end(dn_gguf_writer *w, FILE *f)
{
    if (!w || !f) return dn_seterr(DANU_ERR_INVALID_ARG, "gguf writer: NULL argument");
    if (w->state != ST_DATA) return dn_seterr(DANU_ERR_STATE, "gguf writer: dn_gguf_w_end without dn_gguf_w_begin");
    if (w->next != w->n_t)
        return dn_seterr(DANU_ERR_STATE, "gguf writer: only %lld of %lld tensors written (next: '%s')",
                         (long long)w->next, (long long)w->n_t, w->t[w->next].name);
    if (fflush(f) != 0 || ferror(f)) return dn_seterr(DANU_ERR_IO, "gguf writer: flush failed");
    w->state = ST_DONE;
    return DANU_OK;
}
