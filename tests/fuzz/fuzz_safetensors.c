/* fuzz_safetensors.c - dn_safetensors_parse on arbitrary bytes, twice into
 * one table (as a sharded checkpoint appends), then every descriptor is
 * checked against the buffer. */
#include "fuzz_common.h"
#include "format/safetensors.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const dn_alloc *a = dn_alloc_libc();
    dn_tensor_desc *t = NULL;
    int64_t n = 0, cap = 0;
    danu_status s = dn_safetensors_parse(a, data, size, "fuzz.safetensors", 0, &t, &n, &cap);
    if (s != DANU_OK) FZ_ASSERT(dn_lasterr()[0]);
    if (s == DANU_OK) {
        int64_t first = n;
        s = dn_safetensors_parse(a, data, size, "fuzz2.safetensors", 1, &t, &n, &cap);
        FZ_ASSERT(s == DANU_OK && n == 2 * first);
    }
    FZ_ASSERT(n <= cap);
    for (int64_t i = 0; i < n; i++) {
        FZ_ASSERT(t[i].name && t[i].n_dims >= 0 && t[i].n_dims <= DN_MAX_DIMS);
        FZ_ASSERT(t[i].data >= data && t[i].nbytes <= size && (size_t)(t[i].data - data) <= size - t[i].nbytes);
        fz_touch(t[i].name, strlen(t[i].name));
        if (t[i].nbytes) { fz_touch(t[i].data, 1); fz_touch(t[i].data + t[i].nbytes - 1, 1); }
    }
    dn_tensor_descs_free(a, t, n);
    return 0;
}
