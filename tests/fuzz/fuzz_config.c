/* fuzz_config.c - an HF config.json interpreted: dn_json_parse then
 * dn_config_from_hf. Accepted configs must pass dn_config_check (the
 * context and forward pass size their buffers from these numbers). */
#include "fuzz_common.h"
#include "model/model.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dn_json *root = NULL;
    if (dn_json_parse(dn_alloc_libc(), (const char *)data, size, "config.json", &root) != DANU_OK) return 0;
    dn_config c;
    danu_status s = dn_config_from_hf(root, "fuzz", &c);
    if (s == DANU_OK) {
        FZ_ASSERT(dn_config_check(&c, "fuzz") == DANU_OK);
        FZ_ASSERT(c.head_dim > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0);
    } else {
        FZ_ASSERT(dn_lasterr()[0]);
    }
    dn_json_free(dn_alloc_libc(), root);
    return 0;
}
