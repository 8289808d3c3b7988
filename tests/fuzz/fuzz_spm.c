/* fuzz_spm.c - dn_tokenizer_from_spm on arbitrary bytes (a SentencePiece
 * ModelProto); a tokenizer that loads must encode and decode text. */
#include "fuzz_common.h"
#include "text/tokenizer.h"
#include "format/spm.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const dn_alloc *a = dn_alloc_libc();
    danu_tokenizer *t = NULL;
    danu_status s = dn_tokenizer_from_spm(a, data, size, "fuzz.model", &t);
    if (s != DANU_OK) {
        FZ_ASSERT(t == NULL && dn_lasterr()[0]);
        return 0;
    }
    int32_t n = dn_tokenizer_n_vocab(t);
    FZ_ASSERT(n > 0);
    static const char text[] = "Hello world! <s> \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 \x01\n  x";
    danu_token *ids = NULL;
    size_t k = 0;
    s = dn_tokenizer_encode(t, text, sizeof text - 1, DANU_TOKENIZE_ADD_BOS | DANU_TOKENIZE_PARSE_SPECIAL, &ids, &k);
    if (s == DANU_OK) {
        for (size_t i = 0; i < k; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < n);
        char *out = NULL;
        size_t len = 0;
        if (dn_tokenizer_decode(t, ids, k, &out, &len) == DANU_OK) { fz_touch(out, len + 1); dn_free(a, out); }
        dn_free(a, ids);
    }
    /* every piece is reachable and decodes alone */
    for (int32_t id = 0; id < n; id += 1 + n / 64) {
        size_t pl;
        const char *p = dn_tokenizer_piece(t, id, &pl);
        fz_touch(p, pl);
        char *out = NULL;
        size_t len = 0;
        if (dn_tokenizer_decode(t, &id, 1, &out, &len) == DANU_OK) dn_free(a, out);
    }
    dn_tokenizer_free(t);
    return 0;
}
