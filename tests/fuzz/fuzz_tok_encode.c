/* fuzz_tok_encode.c - the real Llama 2 tokenizer encodes any bytes: first
 * byte = flags, the rest = text. Valid UTF-8 must round-trip through
 * decode (flags 0, no U+2581 which decodes to a space), and the streaming
 * decoder must produce the same text as the whole-sequence decode. */
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
        fprintf(stderr, "fuzz_tok_encode: cannot load %s\n", fz_data("llama2-tokenizer/tokenizer.model"));
        exit(1);
    }
    free(b);
    return 0;
}

static int valid_utf8(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return 0;
        uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1f : k == 3 ? c & 0x0f : c & 0x07;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const dn_alloc *a = dn_tokenizer_alloc(tok);
    uint32_t flags = data[0] & 7;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    danu_token *ids = NULL;
    size_t n = 0;
    danu_status s = dn_tokenizer_encode(tok, text, len, flags, &ids, &n);
    int utf8 = valid_utf8(data + 1, len);
    if (s != DANU_OK) {
        FZ_ASSERT(s == DANU_ERR_BAD_UTF8 && !utf8 && dn_lasterr()[0]);
        return 0;
    }
    FZ_ASSERT(utf8);
    for (size_t i = 0; i < n; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < dn_tokenizer_n_vocab(tok));
    char *dec = NULL;
    size_t dl = 0;
    FZ_ASSERT(dn_tokenizer_decode(tok, ids, n, &dec, &dl) == DANU_OK);
    if (flags == 0 && !memmem(text, len, "\xe2\x96\x81", 3))
        FZ_ASSERT(dl == len && !memcmp(dec, text, len));
    /* streaming: pushes + flush == the whole decode */
    danu_decoder *d = NULL;
    FZ_ASSERT(dn_decoder_create(tok, &d) == DANU_OK);
    char *acc = malloc(dl + 64 * (n + 1) + 1);
    size_t al = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl = 0;
        FZ_ASSERT(dn_decoder_push(d, ids[i], acc + al, 64, &pl) == DANU_OK);
        al += pl;
    }
    size_t pl = 0;
    FZ_ASSERT(dn_decoder_flush(d, acc + al, 64, &pl) == DANU_OK);
    al += pl;
    FZ_ASSERT(al == dl && !memcmp(acc, dec, dl));
    free(acc);
    dn_decoder_free(d);
    dn_free(a, dec);
    dn_free(a, ids);
    return 0;
}
