/* fuzz_gguf.c - dn_gguf_open on arbitrary bytes; on success walk every key
 * with every getter (array elements at both ends and one past the end) and
 * every tensor (bytes touched, so ASan checks the bounds the parser promised). */
#include <string.h>
#include "fuzz_common.h"
#include "format/gguf.h"
#include "common/alloc.h"
#include "common/error.h"

static void walk_kv(const dn_gguf *g, int64_t i)
{
    const char *key = dn_gguf_key(g, i);
    FZ_ASSERT(key && dn_gguf_find(g, key) == i);
    uint64_t u; int64_t s; double d; int b; const char *str; uint64_t len;
    (void)dn_gguf_get_u64(g, key, &u);
    (void)dn_gguf_get_i64(g, key, &s);
    (void)dn_gguf_get_f64(g, key, &d);
    (void)dn_gguf_get_bool(g, key, &b);
    if (dn_gguf_get_str(g, key, &str, &len)) fz_touch(str, (size_t)len);
    int32_t et;
    uint64_t count;
    if (!dn_gguf_get_arr(g, key, &et, &count)) return;
    for (uint64_t k = 0; k <= count && k < 64; k++) {
        (void)dn_gguf_arr_f64(g, key, k, &d);
        (void)dn_gguf_arr_i64(g, key, k, &s);
        if (dn_gguf_arr_str(g, key, k, &str, &len)) fz_touch(str, (size_t)len);
    }
    for (uint64_t k = count > 64 ? count - 64 : 64; k <= count; k++) {
        (void)dn_gguf_arr_f64(g, key, k, &d);
        if (dn_gguf_arr_str(g, key, k, &str, &len)) fz_touch(str, (size_t)len);
    }
    FZ_ASSERT(!dn_gguf_arr_str(g, key, count, &str, &len) && !dn_gguf_arr_f64(g, key, count, &d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dn_gguf *g = NULL;
    danu_status s = dn_gguf_open(dn_alloc_libc(), data, size, "fuzz.gguf", &g);
    if (s != DANU_OK) {
        FZ_ASSERT(g == NULL && dn_lasterr()[0]);
        return 0;
    }
    (void)dn_gguf_version(g);
    FZ_ASSERT(dn_gguf_data_offset(g) <= size || dn_gguf_n_tensors(g) == 0);
    for (int64_t i = 0; i < dn_gguf_n_kv(g); i++) walk_kv(g, i);
    for (int64_t i = 0; i < dn_gguf_n_tensors(g); i++) {
        const dn_tensor_desc *t = dn_gguf_tensor(g, i);
        FZ_ASSERT(t && dn_gguf_find_tensor(g, t->name) == t);
        FZ_ASSERT(t->data >= data && t->nbytes <= size && (size_t)(t->data - data) <= size - t->nbytes);
        if (t->nbytes) { fz_touch(t->data, 1); fz_touch(t->data + t->nbytes - 1, 1); }
    }
    FZ_ASSERT(dn_gguf_key(g, -1) == NULL && dn_gguf_tensor(g, dn_gguf_n_tensors(g)) == NULL);
    /* A lookup of a key agrees with a linear scan (the fuzzer does learn
     * this string from the comparison and writes it into files). */
    const char *probe = "no.such.key.anywhere";
    int64_t f = dn_gguf_find(g, probe);
    for (int64_t i = 0; i < dn_gguf_n_kv(g); i++)   /* keys are unique (parser rejects duplicates) */
        FZ_ASSERT((strcmp(dn_gguf_key(g, i), probe) == 0) == (i == f));
    dn_gguf_close(g);
    return 0;
}
