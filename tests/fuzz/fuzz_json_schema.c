/* fuzz_json_schema.c - dn_json_schema_to_gbnf on arbitrary bytes (copied to
 * an exact-size block so ASan sees any over-read), compact and with
 * DANU_SCHEMA_SPACES. On success the output must be NUL-terminated text of
 * the stated length that the GBNF parser accepts (or refuses as too large);
 * on failure there is no output, a message, and one of the documented
 * statuses. */
#include "fuzz_common.h"
#include "grammar/grammar.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    memcpy(text, data, size);
    for (uint32_t flags = 0; flags <= DANU_SCHEMA_SPACES; flags++) {
        char *out = (char *)1;
        size_t len = 1;
        danu_status s = dn_json_schema_to_gbnf(dn_alloc_libc(), text, size, flags, &out, &len);
        if (s != DANU_OK) {
            FZ_ASSERT(out == NULL && len == 0 && dn_lasterr()[0]);
            FZ_ASSERT(s == DANU_ERR_INVALID_ARG || s == DANU_ERR_UNSUPPORTED || s == DANU_ERR_BAD_UTF8 ||
                      s == DANU_ERR_NOMEM);
            continue;
        }
        FZ_ASSERT(out && strlen(out) == len && strncmp(out, "root ::= ", 9) == 0);
        /* the produced grammar must parse: needs the GBNF parser (lib/grammar/gbnf.c) */
        dn_grammar *g = NULL;
        danu_status gs = dn_gbnf_parse(dn_alloc_libc(), out, len, NULL, &g);
        if (gs != DANU_OK) fprintf(stderr, "grammar refused (%d: %s):\n%s\n", gs, dn_lasterr(), out);
        FZ_ASSERT(gs == DANU_OK || gs == DANU_ERR_UNSUPPORTED);
        dn_grammar_free(g);
        dn_free(dn_alloc_libc(), out);
    }
    free(text);
    return 0;
}
