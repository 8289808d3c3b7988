/* fuzz_gguf_tokenizer.c - GGUF tokenizer metadata: dn_gguf_open on the
 * bytes, then dn_tokenizer_from_gguf; a tokenizer that builds must encode
 * and decode, and must not depend on the GGUF buffer afterwards (the
 * buffer is freed before use). */
#include "fuzz_common.h"
#include "format/gguf.h"
#include "format/gguf_vocab.h"
#include "text/tokenizer.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const dn_alloc *a = dn_alloc_libc();
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    dn_gguf *g = NULL;
    if (dn_gguf_open(a, copy, size, "fuzz.gguf", &g) != DANU_OK) { free(copy); return 0; }
    danu_tokenizer *t = NULL;
    danu_status s = dn_tokenizer_from_gguf(a, g, &t);
    dn_gguf_close(g);
    free(copy);
    if (s != DANU_OK) {
        FZ_ASSERT(t == NULL && dn_lasterr()[0]);
        return 0;
    }
    int32_t n = dn_tokenizer_n_vocab(t);
    static const char text[] = "<s>The quick brown fox \xe2\x80\x94 caf\xc3\xa9 </s>\n\n  42";
    danu_token *ids = NULL;
    size_t k = 0;
    if (dn_tokenizer_encode(t, text, sizeof text - 1, DANU_TOKENIZE_ADD_BOS | DANU_TOKENIZE_ADD_EOS | DANU_TOKENIZE_PARSE_SPECIAL,
                            &ids, &k) == DANU_OK) {
        for (size_t i = 0; i < k; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < n);
        char *out = NULL;
        size_t len;
        if (dn_tokenizer_decode(t, ids, k, &out, &len) == DANU_OK) dn_free(a, out);
        dn_free(a, ids);
    }
    for (int32_t id = 0; id < n; id += 1 + n / 32) {
        size_t pl;
        fz_touch(dn_tokenizer_piece(t, id, &pl), pl);
    }
    dn_tokenizer_free(t);
    return 0;
}
