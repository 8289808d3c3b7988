/* Placeholder until json_schema.c lands. */
#include "grammar/grammar.h"
#include "common/error.h"
danu_status dn_json_schema_to_gbnf(const dn_alloc *a, const char *schema, size_t len, uint32_t flags, char **out,
                                   size_t *out_len)
{
    (void)a; (void)schema; (void)len; (void)flags;
    *out = NULL;
    *out_len = 0;
    return dn_seterr(DANU_ERR_UNSUPPORTED, "json schema: not built yet");
}
