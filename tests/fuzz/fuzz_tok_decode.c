/* fuzz_tok_decode.c - the real Llama 2 tokenizer decodes any ids: the
 * input is read as little-endian int32s folded around the vocabulary (so
 * in-range ids dominate but negatives and >= vocab appear), decoded whole
 * and streamed through a decoder with small and exact buffers. */
#include "fuzz_common.h"
#include "text/tokenizer.h"
#include "format/spm.h"
#include "common/error.h"

static danu_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    size_t n;
    uint8_t *b = fz_read(fz_data("llama2-tokenizer/tokenizer.model"), &n);
    if (!b || dn_tokenizer_from_spm(dn_alloc_libc(), b, n, "tokenizer.model", &tok) != DANU_OK) {
        fprintf(stderr, "fuzz_tok_decode: cannot load the tokenizer\n");
        exit(1);
    }
    free(b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const dn_alloc *a = dn_tokenizer_alloc(tok);
    int32_t vocab = dn_tokenizer_n_vocab(tok);
    size_t n = size / 4;
    danu_token *ids = malloc((n ? n : 1) * sizeof *ids);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, data + 4 * i, 4);
        /* top bit set: raw value (any int32); else folded into -2..vocab+1 */
        ids[i] = (v & 0x80000000u) && (v & 1) ? (int32_t)v : (int32_t)(v % (uint32_t)(vocab + 4)) - 2;
        bad |= ids[i] < 0 || ids[i] >= vocab;
    }
    char *out = NULL;
    size_t len = 0;
    danu_status s = dn_tokenizer_decode(tok, ids, n, &out, &len);
    FZ_ASSERT(bad ? s == DANU_ERR_BAD_TOKEN : s == DANU_OK);
    if (s == DANU_OK) { FZ_ASSERT(strlen(out) <= len); fz_touch(out, len + 1); dn_free(a, out); }
    danu_decoder *d = NULL;
    FZ_ASSERT(dn_decoder_create(tok, &d) == DANU_OK);
    char buf[64];
    for (size_t i = 0; i < n; i++) {
        size_t pl = 0;
        s = dn_decoder_push(d, ids[i], buf, (i & 3) == 3 ? 8 : sizeof buf, &pl);
        FZ_ASSERT(s == DANU_OK || s == DANU_ERR_BAD_TOKEN || s == DANU_ERR_BUFFER_TOO_SMALL);
        if (s == DANU_OK) FZ_ASSERT(pl < sizeof buf && buf[pl] == 0);
        if ((i & 15) == 15) dn_decoder_reset(d);
    }
    size_t pl = 0;
    s = dn_decoder_flush(d, buf, sizeof buf, &pl);
    FZ_ASSERT(s == DANU_OK);
    dn_decoder_free(d);
    free(ids);
    return 0;
}
