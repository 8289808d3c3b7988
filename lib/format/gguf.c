/* gguf.c - GGUF v2/v3 reader over a byte buffer. One pass validates the
 * header, metadata and tensor table; afterwards every value is reached in
 * O(1) through an index of offsets into the caller's buffer. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include "common/attr.h"
#include "format/gguf.h"
#include "common/bytes.h"
#include "common/error.h"
#include "quant/quant.h"

#define NAME_MAX_LEN ((uint64_t)64 << 10)    /* keys and tensor names */
#define VALUE_MAX_LEN ((uint64_t)64 << 20)   /* string values */
#define HEADER_BYTES 24                      /* magic, version, n_tensors, n_kv */
#define MIN_KV_BYTES 13                      /* key length + type + 1-byte value */
#define MIN_TENSOR_BYTES 32                  /* name length + n_dims + ne + type + offset */
#define DEFAULT_ALIGNMENT 32

typedef struct kv_entry {
    char *key;            /* NUL-terminated copy (keys never hold NUL bytes) */
    int32_t type;         /* DN_GGUF_* */
    int32_t elem_type;    /* arrays: element type */
    uint64_t count;       /* arrays: number of elements */
    uint64_t val_off;     /* value; for arrays the first element */
    uint64_t *str_off;    /* string arrays: offset of each element's length */
} kv_entry;

/* Open-addressing table of indices (-1 = empty); size is a power of two. */
typedef struct name_index {
    int64_t *slot;
    uint64_t mask;
} name_index;

struct dn_gguf {
    dn_alloc a;
    const uint8_t *data;
    uint64_t size;
    uint32_t version, alignment;
    uint64_t data_offset;
    kv_entry *kv;
    int64_t n_kv;
    dn_tensor_desc *t;
    int64_t n_t;
    name_index kv_idx, t_idx;
};

/* Parsing state: position plus what is being read, for messages. */
typedef struct parser {
    const uint8_t *p;
    uint64_t size, off;
    const char *what;
    const char *kind;     /* "key", "tensor" or NULL (header) */
    const uint8_t *name;
    uint64_t name_len;
} parser;

static danu_status perr(const parser *ps, danu_status st, uint64_t off, const char *fmt, ...)
    DN_PRINTF(4, 5);

static danu_status perr(const parser *ps, danu_status st, uint64_t off, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->kind) {
        int n = ps->name_len > 96 ? 96 : (int)ps->name_len;
        return dn_seterr(st, "%s: %s '%.*s' at offset %llu: %s", ps->what, ps->kind, n,
                         (const char *)ps->name, (unsigned long long)off, msg);
    }
    return dn_seterr(st, "%s: at offset %llu: %s", ps->what, (unsigned long long)off, msg);
}

static uint64_t left(const parser *ps) { return ps->size - ps->off; }

static danu_status need(parser *ps, uint64_t n, const char *field)
{
    if (n > left(ps))
        return perr(ps, DANU_ERR_FORMAT, ps->off, "truncated: %s needs %llu bytes, %llu left",
                    field, (unsigned long long)n, (unsigned long long)left(ps));
    return DANU_OK;
}

static danu_status rd_u32(parser *ps, const char *field, uint32_t *v)
{
    DN_TRY(need(ps, 4, field));
    *v = dn_rd_u32(ps->p + ps->off);
    ps->off += 4;
    return DANU_OK;
}

static danu_status rd_u64(parser *ps, const char *field, uint64_t *v)
{
    DN_TRY(need(ps, 8, field));
    *v = dn_rd_u64(ps->p + ps->off);
    ps->off += 8;
    return DANU_OK;
}

/* A length-prefixed string of at most max bytes; *s points into the buffer. */
static danu_status rd_str(parser *ps, const char *field, uint64_t max, const uint8_t **s, uint64_t *len)
{
    uint64_t at = ps->off, n;
    DN_TRY(rd_u64(ps, field, &n));
    if (n > max)
        return perr(ps, DANU_ERR_FORMAT, at, "%s length %llu exceeds the limit %llu",
                    field, (unsigned long long)n, (unsigned long long)max);
    if (n > left(ps))
        return perr(ps, DANU_ERR_FORMAT, at, "%s length %llu exceeds the %llu bytes left",
                    field, (unsigned long long)n, (unsigned long long)left(ps));
    *s = ps->p + ps->off;
    *len = n;
    ps->off += n;
    return DANU_OK;
}

static uint64_t hash_bytes(const uint8_t *s, uint64_t n) { return dn_fnv1a(DN_FNV1A_INIT, s, (size_t)n); }

static danu_status index_init(const dn_alloc *a, name_index *ix, int64_t n)
{
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap <<= 1;
    ix->slot = dn_malloc(a, (size_t)cap * sizeof *ix->slot);   /* cap <= 4n, n checked by the caller */
    if (!ix->slot) return dn_seterr(DANU_ERR_NOMEM, "gguf: out of memory for a name index of %llu slots",
                                    (unsigned long long)cap);
    for (uint64_t i = 0; i < cap; i++) ix->slot[i] = -1;
    ix->mask = cap - 1;
    return DANU_OK;
}

/* Slot holding `name` or the empty slot where it belongs. names(i) is the
 * NUL-terminated name of entry i. */
static uint64_t index_probe(const name_index *ix, const char *name, size_t len,
                            const char *(*names)(const dn_gguf *, int64_t), const dn_gguf *g)
{
    uint64_t h = hash_bytes((const uint8_t *)name, len) & ix->mask;
    while (ix->slot[h] >= 0) {
        const char *s = names(g, ix->slot[h]);
        if (strlen(s) == len && !memcmp(s, name, len)) break;
        h = (h + 1) & ix->mask;
    }
    return h;
}

uint32_t dn_gguf_value_size(int32_t type)
{
    switch (type) {
    case DN_GGUF_U8: case DN_GGUF_I8: case DN_GGUF_BOOL: return 1;
    case DN_GGUF_U16: case DN_GGUF_I16: return 2;
    case DN_GGUF_U32: case DN_GGUF_I32: case DN_GGUF_F32: return 4;
    case DN_GGUF_U64: case DN_GGUF_I64: case DN_GGUF_F64: return 8;
    default: return 0;
    }
}

static const char *kv_name(const dn_gguf *g, int64_t i) { return g->kv[i].key; }
static const char *t_name(const dn_gguf *g, int64_t i) { return g->t[i].name; }

static danu_status parse_value(dn_gguf *g, parser *ps, kv_entry *e)
{
    uint64_t at = ps->off;
    const uint8_t *s;
    uint64_t len;
    if (e->type == DN_GGUF_STRING) {
        e->val_off = ps->off;
        return rd_str(ps, "string value", VALUE_MAX_LEN, &s, &len);
    }
    if (e->type != DN_GGUF_ARRAY) {
        uint32_t sz = dn_gguf_value_size(e->type);
        if (!sz) return perr(ps, DANU_ERR_FORMAT, at - 4, "unknown value type %d", (int)e->type);
        DN_TRY(need(ps, sz, "scalar value"));
        e->val_off = ps->off;
        ps->off += sz;
        return DANU_OK;
    }
    uint32_t et;
    DN_TRY(rd_u32(ps, "array element type", &et));
    DN_TRY(rd_u64(ps, "array count", &e->count));
    e->elem_type = (int32_t)et;
    e->val_off = ps->off;
    if (et == DN_GGUF_ARRAY)
        return perr(ps, DANU_ERR_UNSUPPORTED, at, "nested arrays are not supported");
    if (et == DN_GGUF_STRING) {
        /* each element needs at least its 8-byte length */
        if (e->count > left(ps) / 8)
            return perr(ps, DANU_ERR_FORMAT, at + 4, "string array count %llu exceeds the %llu bytes left",
                        (unsigned long long)e->count, (unsigned long long)left(ps));
        e->str_off = e->count <= SIZE_MAX / sizeof *e->str_off
                     ? dn_malloc(&g->a, (size_t)e->count * sizeof *e->str_off) : NULL;
        if (!e->str_off)
            return perr(ps, DANU_ERR_NOMEM, at, "out of memory for %llu string offsets",
                        (unsigned long long)e->count);
        for (uint64_t i = 0; i < e->count; i++) {
            e->str_off[i] = ps->off;
            DN_TRY(rd_str(ps, "array string", VALUE_MAX_LEN, &s, &len));
        }
        return DANU_OK;
    }
    uint32_t sz = dn_gguf_value_size((int32_t)et);
    if (!sz || et > INT32_MAX) return perr(ps, DANU_ERR_FORMAT, at, "unknown array element type %u", et);
    uint64_t bytes;
    if (dn_mul_overflow_u64(e->count, sz, &bytes) || bytes > left(ps))
        return perr(ps, DANU_ERR_FORMAT, at + 4, "array of %llu elements of %u bytes exceeds the %llu bytes left",
                    (unsigned long long)e->count, sz, (unsigned long long)left(ps));
    ps->off += bytes;
    return DANU_OK;
}

static danu_status parse_kvs(dn_gguf *g, parser *ps)
{
    for (int64_t i = 0; i < g->n_kv; i++) {
        kv_entry *e = &g->kv[i];
        uint64_t at = ps->off;
        const uint8_t *k;
        uint64_t klen;
        ps->kind = NULL;
        DN_TRY(rd_str(ps, "key", NAME_MAX_LEN, &k, &klen));
        ps->kind = "key";
        ps->name = k;
        ps->name_len = klen;
        if (memchr(k, 0, klen)) return perr(ps, DANU_ERR_FORMAT, at, "key contains a NUL byte");
        e->key = dn_strndup(&g->a, (const char *)k, klen);
        if (!e->key) return perr(ps, DANU_ERR_NOMEM, at, "out of memory");
        uint64_t h = index_probe(&g->kv_idx, e->key, klen, kv_name, g);
        if (g->kv_idx.slot[h] >= 0) return perr(ps, DANU_ERR_FORMAT, at, "duplicate key");
        g->kv_idx.slot[h] = i;
        uint32_t type;
        DN_TRY(rd_u32(ps, "value type", &type));
        if (type > INT32_MAX) return perr(ps, DANU_ERR_FORMAT, ps->off - 4, "unknown value type %u", type);
        e->type = (int32_t)type;
        DN_TRY(parse_value(g, ps, e));
    }
    return DANU_OK;
}

static danu_status read_alignment(dn_gguf *g, parser *ps)
{
    g->alignment = DEFAULT_ALIGNMENT;
    int64_t i = dn_gguf_find(g, "general.alignment");
    if (i < 0) return DANU_OK;
    const kv_entry *e = &g->kv[i];
    ps->kind = "key";
    ps->name = (const uint8_t *)e->key;
    ps->name_len = strlen(e->key);
    if (e->type != DN_GGUF_U32)
        return perr(ps, DANU_ERR_FORMAT, e->val_off, "general.alignment must be u32, not type %d", (int)e->type);
    uint32_t al = dn_rd_u32(g->data + e->val_off);
    if (al == 0 || (al & (al - 1)))
        return perr(ps, DANU_ERR_FORMAT, e->val_off, "alignment %u is not a power of two", al);
    g->alignment = al;
    return DANU_OK;
}

/* Tensor info: name, dims, type; offsets are checked once the data section is known. */
static danu_status parse_tensor_info(dn_gguf *g, parser *ps, dn_tensor_desc *t)
{
    uint64_t at = ps->off, nlen;
    const uint8_t *name;
    ps->kind = NULL;
    DN_TRY(rd_str(ps, "tensor name", NAME_MAX_LEN, &name, &nlen));
    ps->kind = "tensor";
    ps->name = name;
    ps->name_len = nlen;
    if (memchr(name, 0, nlen)) return perr(ps, DANU_ERR_FORMAT, at, "tensor name contains a NUL byte");
    t->name = dn_strndup(&g->a, (const char *)name, nlen);
    if (!t->name) return perr(ps, DANU_ERR_NOMEM, at, "out of memory");
    uint32_t nd;
    uint64_t nd_at = ps->off;
    DN_TRY(rd_u32(ps, "n_dims", &nd));
    if (nd < 1 || nd > DN_MAX_DIMS)
        return perr(ps, DANU_ERR_FORMAT, nd_at, "n_dims %u is not in 1..%d", nd, DN_MAX_DIMS);
    t->n_dims = (int32_t)nd;
    uint64_t ne[DN_MAX_DIMS], n_el = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne_at = ps->off;
        DN_TRY(rd_u64(ps, "ne", &ne[d]));
        if (ne[d] < 1 || ne[d] > INT64_MAX)
            return perr(ps, DANU_ERR_FORMAT, ne_at, "ne[%u] = %llu is out of range", d, (unsigned long long)ne[d]);
        if (dn_mul_overflow_u64(n_el, ne[d], &n_el) || n_el > INT64_MAX)
            return perr(ps, DANU_ERR_FORMAT, ne_at, "element count overflows at ne[%u] = %llu",
                        d, (unsigned long long)ne[d]);
        t->dims[nd - 1 - d] = (int64_t)ne[d];
    }
    t->n_elements = n_el;
    uint32_t type;
    uint64_t type_at = ps->off;
    DN_TRY(rd_u32(ps, "tensor type", &type));
    if (type > INT32_MAX || !dn_type_get((int32_t)type))
        return perr(ps, DANU_ERR_UNSUPPORTED, type_at, "unknown ggml type %u", type);
    t->type = (int32_t)type;
    if (ne[0] % dn_type_block_size(t->type))
        return perr(ps, DANU_ERR_FORMAT, nd_at, "ne[0] = %llu is not a multiple of the %s block size %u",
                    (unsigned long long)ne[0], dn_type_get(t->type)->name, dn_type_block_size(t->type));
    uint64_t row = dn_type_row_bytes(t->type, ne[0]);   /* 0 only on overflow now */
    if (!row || dn_mul_overflow_u64(row, n_el / ne[0], &t->nbytes))
        return perr(ps, DANU_ERR_FORMAT, nd_at, "byte size overflows");
    DN_TRY(rd_u64(ps, "tensor offset", &t->file_offset));   /* relative until placed */
    return DANU_OK;
}

static danu_status place_tensors(dn_gguf *g, parser *ps)
{
    uint64_t prev_end = 0;   /* relative end of the previous tensor's data */
    for (int64_t i = 0; i < g->n_t; i++) {
        dn_tensor_desc *t = &g->t[i];
        uint64_t rel = t->file_offset, abs, end;
        ps->kind = "tensor";
        ps->name = (const uint8_t *)t->name;
        ps->name_len = strlen(t->name);
        if (rel % g->alignment)
            return perr(ps, DANU_ERR_FORMAT, g->data_offset, "data offset %llu is not a multiple of the alignment %u",
                        (unsigned long long)rel, g->alignment);
        if (dn_add_overflow_u64(g->data_offset, rel, &abs) || dn_add_overflow_u64(abs, t->nbytes, &end) ||
            end > g->size)
            return perr(ps, DANU_ERR_FORMAT, g->data_offset,
                        "data [%llu, +%llu) relative to the data section lies beyond the file end %llu",
                        (unsigned long long)rel, (unsigned long long)t->nbytes, (unsigned long long)g->size);
        /* writers (llama.cpp's, ours) lay tensors out in table order; one that
         * starts inside the previous one means a corrupt offset, type or shape */
        if (rel < prev_end)
            return perr(ps, DANU_ERR_FORMAT, g->data_offset,
                        "data offset %llu overlaps the previous tensor's data, which ends at %llu",
                        (unsigned long long)rel, (unsigned long long)prev_end);
        prev_end = rel + t->nbytes;
        t->file_offset = abs;
        t->data = g->data + abs;
        t->file_index = 0;
    }
    return DANU_OK;
}

static danu_status parse(dn_gguf *g, parser *ps)
{
    DN_TRY(need(ps, HEADER_BYTES, "header"));
    if (memcmp(ps->p, "GGUF", 4))
        return perr(ps, DANU_ERR_FORMAT, 0, "bad magic %02x %02x %02x %02x (not a GGUF file)",
                    ps->p[0], ps->p[1], ps->p[2], ps->p[3]);
    g->version = dn_rd_u32(ps->p + 4);
    if (g->version == 0) return perr(ps, DANU_ERR_FORMAT, 4, "version 0");
    if (g->version > 0xffff)
        return perr(ps, DANU_ERR_UNSUPPORTED, 4, "version %u (big-endian GGUF is not supported)", g->version);
    if (g->version < 2 || g->version > 3)
        return perr(ps, DANU_ERR_UNSUPPORTED, 4, "GGUF version %u is not supported (only 2 and 3)", g->version);
    uint64_t n_t = dn_rd_u64(ps->p + 8), n_kv = dn_rd_u64(ps->p + 16), need_min;
    ps->off = HEADER_BYTES;
    /* every entry takes bytes: refuse counts the file cannot hold before allocating */
    if (n_kv > left(ps) / MIN_KV_BYTES || n_t > left(ps) / MIN_TENSOR_BYTES ||
        dn_add_overflow_u64(n_kv * MIN_KV_BYTES, n_t * MIN_TENSOR_BYTES, &need_min) || need_min > left(ps))
        return perr(ps, DANU_ERR_FORMAT, 8, "%llu tensors and %llu keys cannot fit in %llu bytes",
                    (unsigned long long)n_t, (unsigned long long)n_kv, (unsigned long long)ps->size);
    if (n_kv > SIZE_MAX / sizeof *g->kv / 4 || n_t > SIZE_MAX / sizeof *g->t / 4)   /* 32-bit hosts */
        return perr(ps, DANU_ERR_NOMEM, 8, "tables too large for this host");
    g->kv = dn_calloc(&g->a, (size_t)n_kv, sizeof *g->kv);
    g->t = dn_calloc(&g->a, (size_t)n_t, sizeof *g->t);
    if (!g->kv || !g->t) return perr(ps, DANU_ERR_NOMEM, 8, "out of memory for the tables");
    g->n_kv = (int64_t)n_kv;
    g->n_t = (int64_t)n_t;
    DN_TRY(index_init(&g->a, &g->kv_idx, g->n_kv));
    DN_TRY(index_init(&g->a, &g->t_idx, g->n_t));
    DN_TRY(parse_kvs(g, ps));
    DN_TRY(read_alignment(g, ps));
    for (int64_t i = 0; i < g->n_t; i++) {
        uint64_t at = ps->off;
        dn_tensor_desc *t = &g->t[i];
        DN_TRY(parse_tensor_info(g, ps, t));
        size_t len = strlen(t->name);
        uint64_t h = index_probe(&g->t_idx, t->name, len, t_name, g);
        if (g->t_idx.slot[h] >= 0) return perr(ps, DANU_ERR_FORMAT, at, "duplicate tensor name");
        g->t_idx.slot[h] = i;
    }
    uint64_t pad = (g->alignment - ps->off % g->alignment) % g->alignment;
    ps->kind = NULL;
    if (dn_add_overflow_u64(ps->off, pad, &g->data_offset))
        return perr(ps, DANU_ERR_FORMAT, ps->off, "data section offset overflows");
    return place_tensors(g, ps);
}

danu_status dn_gguf_open(const dn_alloc *a, const uint8_t *data, uint64_t size,
                         const char *what, dn_gguf **out)
{
    if (!a || !out || (!data && size)) return dn_seterr(DANU_ERR_INVALID_ARG, "dn_gguf_open: NULL argument");
    *out = NULL;
    if (!what) what = "gguf";
    dn_gguf *g = dn_calloc(a, 1, sizeof *g);
    if (!g) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    g->a = *a;
    g->data = data;
    g->size = size;
    parser ps = { data, size, 0, what, NULL, NULL, 0 };
    danu_status st = parse(g, &ps);
    if (st != DANU_OK) {
        dn_gguf_close(g);
        return st;
    }
    *out = g;
    return DANU_OK;
}

void dn_gguf_close(dn_gguf *g)
{
    if (!g) return;
    dn_alloc a = g->a;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) {
            dn_free(&a, g->kv[i].key);
            dn_free(&a, g->kv[i].str_off);
        }
    if (g->t)
        for (int64_t i = 0; i < g->n_t; i++) dn_free(&a, g->t[i].name);
    dn_free(&a, g->kv);
    dn_free(&a, g->t);
    dn_free(&a, g->kv_idx.slot);
    dn_free(&a, g->t_idx.slot);
    dn_free(&a, g);
}

uint32_t dn_gguf_version(const dn_gguf *g) { return g ? g->version : 0; }
uint32_t dn_gguf_alignment(const dn_gguf *g) { return g ? g->alignment : 0; }
uint64_t dn_gguf_data_offset(const dn_gguf *g) { return g ? g->data_offset : 0; }
int64_t dn_gguf_n_kv(const dn_gguf *g) { return g ? g->n_kv : 0; }
int64_t dn_gguf_n_tensors(const dn_gguf *g) { return g ? g->n_t : 0; }

int64_t dn_gguf_find(const dn_gguf *g, const char *key)
{
    if (!g || !key || !g->kv_idx.slot) return -1;
    return g->kv_idx.slot[index_probe(&g->kv_idx, key, strlen(key), kv_name, g)];
}

const char *dn_gguf_key(const dn_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

int32_t dn_gguf_kv_type(const dn_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->n_kv ? g->kv[i].type : -1;
}

const dn_tensor_desc *dn_gguf_tensor(const dn_gguf *g, int64_t i)
{
    return g && i >= 0 && i < g->n_t ? &g->t[i] : NULL;
}

const dn_tensor_desc *dn_gguf_find_tensor(const dn_gguf *g, const char *name)
{
    if (!g || !name || !g->t_idx.slot) return NULL;
    int64_t i = g->t_idx.slot[index_probe(&g->t_idx, name, strlen(name), t_name, g)];
    return i >= 0 ? &g->t[i] : NULL;
}

/* A numeric value decoded into one of three forms. */
typedef struct num {
    enum { NUM_U, NUM_S, NUM_F } kind;
    uint64_t u;
    int64_t s;
    double f;
} num;

static int load_num(int32_t type, const uint8_t *p, num *n)
{
    switch (type) {
    case DN_GGUF_U8:  n->kind = NUM_U; n->u = p[0]; return 1;
    case DN_GGUF_U16: n->kind = NUM_U; n->u = dn_rd_u16(p); return 1;
    case DN_GGUF_U32: n->kind = NUM_U; n->u = dn_rd_u32(p); return 1;
    case DN_GGUF_U64: n->kind = NUM_U; n->u = dn_rd_u64(p); return 1;
    case DN_GGUF_I8:  n->kind = NUM_S; n->s = (int8_t)p[0]; return 1;
    case DN_GGUF_I16: n->kind = NUM_S; n->s = (int16_t)dn_rd_u16(p); return 1;
    case DN_GGUF_I32: n->kind = NUM_S; n->s = (int32_t)dn_rd_u32(p); return 1;
    case DN_GGUF_I64: n->kind = NUM_S; n->s = (int64_t)dn_rd_u64(p); return 1;
    case DN_GGUF_F32: n->kind = NUM_F; n->f = dn_rd_f32(p); return 1;
    case DN_GGUF_F64: n->kind = NUM_F; n->f = dn_rd_f64(p); return 1;
    default: return 0;
    }
}

/* Floats convert to integers only when they hold an exact integer in range. */
static int num_i64(const num *n, int64_t *out)
{
    switch (n->kind) {
    case NUM_U: if (n->u > INT64_MAX) return 0; *out = (int64_t)n->u; return 1;
    case NUM_S: *out = n->s; return 1;
    default:
        if (!(n->f >= -9223372036854775808.0 && n->f < 9223372036854775808.0) || n->f != floor(n->f)) return 0;
        *out = (int64_t)n->f;
        return 1;
    }
}

static int num_u64(const num *n, uint64_t *out)
{
    switch (n->kind) {
    case NUM_U: *out = n->u; return 1;
    case NUM_S: if (n->s < 0) return 0; *out = (uint64_t)n->s; return 1;
    default:
        if (!(n->f >= 0.0 && n->f < 18446744073709551616.0) || n->f != floor(n->f)) return 0;
        *out = (uint64_t)n->f;
        return 1;
    }
}

static double num_f64(const num *n)
{
    return n->kind == NUM_U ? (double)n->u : n->kind == NUM_S ? (double)n->s : n->f;
}

static const kv_entry *lookup(const dn_gguf *g, const char *key)
{
    int64_t i = dn_gguf_find(g, key);
    return i >= 0 ? &g->kv[i] : NULL;
}

static int scalar_num(const dn_gguf *g, const char *key, num *n)
{
    const kv_entry *e = lookup(g, key);
    return e && load_num(e->type, g->data + e->val_off, n);
}

int dn_gguf_get_u64(const dn_gguf *g, const char *key, uint64_t *out)
{
    num n;
    return out && scalar_num(g, key, &n) && num_u64(&n, out);
}

int dn_gguf_get_i64(const dn_gguf *g, const char *key, int64_t *out)
{
    num n;
    return out && scalar_num(g, key, &n) && num_i64(&n, out);
}

int dn_gguf_get_f64(const dn_gguf *g, const char *key, double *out)
{
    num n;
    if (!out || !scalar_num(g, key, &n)) return 0;
    *out = num_f64(&n);
    return 1;
}

int dn_gguf_get_bool(const dn_gguf *g, const char *key, int *out)
{
    const kv_entry *e = lookup(g, key);
    if (!out || !e || e->type != DN_GGUF_BOOL) return 0;
    *out = g->data[e->val_off] != 0;
    return 1;
}

int dn_gguf_get_str(const dn_gguf *g, const char *key, const char **s, uint64_t *len)
{
    const kv_entry *e = lookup(g, key);
    if (!s || !len || !e || e->type != DN_GGUF_STRING) return 0;
    *len = dn_rd_u64(g->data + e->val_off);
    *s = (const char *)g->data + e->val_off + 8;
    return 1;
}

int dn_gguf_get_arr(const dn_gguf *g, const char *key, int32_t *elem_type, uint64_t *count)
{
    const kv_entry *e = lookup(g, key);
    if (!e || e->type != DN_GGUF_ARRAY) return 0;
    if (elem_type) *elem_type = e->elem_type;
    if (count) *count = e->count;
    return 1;
}

static int arr_num(const dn_gguf *g, const char *key, uint64_t i, num *n)
{
    const kv_entry *e = lookup(g, key);
    if (!e || e->type != DN_GGUF_ARRAY || i >= e->count) return 0;
    uint32_t sz = dn_gguf_value_size(e->elem_type);
    return sz && load_num(e->elem_type, g->data + e->val_off + i * sz, n);
}

int dn_gguf_arr_f64(const dn_gguf *g, const char *key, uint64_t i, double *out)
{
    num n;
    if (!out || !arr_num(g, key, i, &n)) return 0;
    *out = num_f64(&n);
    return 1;
}

int dn_gguf_arr_i64(const dn_gguf *g, const char *key, uint64_t i, int64_t *out)
{
    num n;
    return out && arr_num(g, key, i, &n) && num_i64(&n, out);
}

int dn_gguf_arr_str(const dn_gguf *g, const char *key, uint64_t i, const char **s, uint64_t *len)
{
    const kv_entry *e = lookup(g, key);
    if (!s || !len || !e || e->type != DN_GGUF_ARRAY || e->elem_type != DN_GGUF_STRING || i >= e->count) return 0;
    uint64_t off = e->str_off[i];
    *len = dn_rd_u64(g->data + off);
    *s = (const char *)g->data + off + 8;
    return 1;
}
