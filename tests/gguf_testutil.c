/* gguf_testutil.c - opening GGUF files and comparing their metadata, for the
 * suites that check written files against llama.cpp's (synth, quantize). */
#include <string.h>
#include <check.h>
#include "gguf_testutil.h"
#include "common/error.h"

void gopen(const char *path, gfile *f)
{
    ck_assert_msg(dn_map_file(path, 1, dn_alloc_libc(), &f->map) == DANU_OK, "%s", dn_lasterr());
    ck_assert_msg(dn_gguf_open(dn_alloc_libc(), f->map.data, f->map.size, path, &f->g) == DANU_OK, "%s",
                  dn_lasterr());
}

void gclose(gfile *f)
{
    dn_gguf_close(f->g);
    dn_unmap_file(dn_alloc_libc(), &f->map);
}

/* 1 if key has the same type and value in both files. */
int same_kv(const dn_gguf *a, const dn_gguf *b, const char *key)
{
    int64_t ia = dn_gguf_find(a, key), ib = dn_gguf_find(b, key);
    if (ia < 0 || ib < 0 || dn_gguf_kv_type(a, ia) != dn_gguf_kv_type(b, ib)) return 0;
    int32_t type = dn_gguf_kv_type(a, ia);
    if (type == DN_GGUF_STRING) {
        const char *sa, *sb;
        uint64_t la, lb;
        return dn_gguf_get_str(a, key, &sa, &la) && dn_gguf_get_str(b, key, &sb, &lb) && la == lb && !memcmp(sa, sb, la);
    }
    if (type == DN_GGUF_BOOL) {
        int va, vb;
        return dn_gguf_get_bool(a, key, &va) && dn_gguf_get_bool(b, key, &vb) && va == vb;
    }
    if (type == DN_GGUF_ARRAY) {
        int32_t ea, eb;
        uint64_t na, nb;
        if (!dn_gguf_get_arr(a, key, &ea, &na) || !dn_gguf_get_arr(b, key, &eb, &nb) || ea != eb || na != nb) return 0;
        for (uint64_t i = 0; i < na; i++) {
            if (ea == DN_GGUF_STRING) {
                const char *sa, *sb;
                uint64_t la, lb;
                if (!dn_gguf_arr_str(a, key, i, &sa, &la) || !dn_gguf_arr_str(b, key, i, &sb, &lb) || la != lb ||
                    memcmp(sa, sb, la))
                    return 0;
            } else {
                double va, vb;
                if (!dn_gguf_arr_f64(a, key, i, &va) || !dn_gguf_arr_f64(b, key, i, &vb) || va != vb) return 0;
            }
        }
        return 1;
    }
    double va, vb;
    return dn_gguf_get_f64(a, key, &va) && dn_gguf_get_f64(b, key, &vb) && va == vb;
}
