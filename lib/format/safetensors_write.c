/* safetensors_write.c - the header of a safetensors file: 8-byte length,
 * then JSON ({"__metadata__":{"format":"pt"}, name: {dtype, shape,
 * data_offsets}}) padded with spaces to a multiple of 8 as the Python
 * writer does. No allocation: a first pass counts the bytes, a second
 * writes them. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "format/safetensors.h"
#include "common/bytes.h"
#include "common/error.h"
#include "quant/quant.h"

/* Counts bytes when f is NULL, writes them otherwise. */
typedef struct sink {
    FILE *f;
    uint64_t n;
    int failed;
} sink;

static void put(sink *s, const char *p, size_t len)
{
    s->n += len;
    if (s->f && !s->failed && len && fwrite(p, 1, len, s->f) != len) s->failed = 1;
}

static void puts_(sink *s, const char *p) { put(s, p, strlen(p)); }

static void put_u64(sink *s, uint64_t v)
{
    char b[24];
    int k = snprintf(b, sizeof b, "%" PRIu64, v);
    put(s, b, (size_t)k);
}

static void put_json_string(sink *s, const char *str)
{
    put(s, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; put(s, esc, 2); }
        else if (*p < 0x20) { int k = snprintf(esc, sizeof esc, "\\u%04x", *p); put(s, esc, (size_t)k); }
        else put(s, (const char *)p, 1);
    }
    put(s, "\"", 1);
}

static const char *dtype_name(int32_t type)
{
    switch (type) {
    case DANU_TYPE_BF16: return "BF16";
    case DANU_TYPE_F16: return "F16";
    case DANU_TYPE_F32: return "F32";
    default: return NULL;
    }
}

/* Bytes of one entry; shapes are validated before this is called. */
static uint64_t entry_bytes(const dn_st_entry *e)
{
    uint64_t ne = 1;
    for (int32_t d = 0; d < e->n_dims; d++) ne *= (uint64_t)e->dims[d];
    return ne * dn_type_get(e->type)->type_size;
}

static void emit(sink *s, const dn_st_entry *e, int64_t n)
{
    uint64_t off = 0;
    puts_(s, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int64_t i = 0; i < n; i++) {
        puts_(s, ",");
        put_json_string(s, e[i].name);
        puts_(s, ":{\"dtype\":\"");
        puts_(s, dtype_name(e[i].type));
        puts_(s, "\",\"shape\":[");
        for (int32_t d = 0; d < e[i].n_dims; d++) {
            if (d) puts_(s, ",");
            put_u64(s, (uint64_t)e[i].dims[d]);
        }
        puts_(s, "],\"data_offsets\":[");
        put_u64(s, off);
        puts_(s, ",");
        off += entry_bytes(&e[i]);
        put_u64(s, off);
        puts_(s, "]}");
    }
    puts_(s, "}");
}

danu_status dn_safetensors_write_header(FILE *f, const dn_st_entry *e, int64_t n)
{
    if (!f || n < 0 || (n > 0 && !e))
        return dn_seterr(DANU_ERR_INVALID_ARG, "safetensors header: bad arguments");
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!e[i].name || !e[i].name[0])
            return dn_seterr(DANU_ERR_INVALID_ARG, "safetensors header: tensor %" PRId64 " has no name", i);
        if (!dtype_name(e[i].type))
            return dn_seterr(DANU_ERR_UNSUPPORTED, "safetensors header: tensor %s: type %d is not BF16, F16 or F32",
                             e[i].name, (int)e[i].type);
        if (e[i].n_dims < 0 || e[i].n_dims > DN_MAX_DIMS)
            return dn_seterr(DANU_ERR_INVALID_ARG, "safetensors header: tensor %s: %d dims", e[i].name, (int)e[i].n_dims);
        uint64_t ne = 1, bytes;
        for (int32_t d = 0; d < e[i].n_dims; d++) {
            if (e[i].dims[d] < 0 || dn_mul_overflow_u64(ne, (uint64_t)e[i].dims[d], &ne))
                return dn_seterr(DANU_ERR_INVALID_ARG, "safetensors header: tensor %s: bad shape", e[i].name);
        }
        if (dn_mul_overflow_u64(ne, dn_type_get(e[i].type)->type_size, &bytes) ||
            dn_add_overflow_u64(total, bytes, &total))
            return dn_seterr(DANU_ERR_INVALID_ARG, "safetensors header: tensor %s: size overflows", e[i].name);
    }
    sink count = { NULL, 0, 0 };
    emit(&count, e, n);
    uint64_t padded = (count.n + 7) & ~(uint64_t)7;
    uint8_t len8[8];
    dn_wr_u64(len8, padded);
    sink out = { f, 0, 0 };
    put(&out, (const char *)len8, 8);
    emit(&out, e, n);
    static const char spaces[] = "        ";
    put(&out, spaces, (size_t)(padded - count.n));
    if (out.failed) return dn_seterr(DANU_ERR_IO, "safetensors header: write failed");
    return DANU_OK;
}
