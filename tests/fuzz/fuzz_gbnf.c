/* fuzz_gbnf.c - the grammar compiler and matcher on arbitrary bytes. The
 * input is GBNF text, optionally followed by a NUL and text to match: the
 * grammar is parsed (errors must carry a message), the text matched from
 * the start, and a constraint over a small vocabulary (the 256 bytes and a
 * few words) is walked for a few tokens, each mask checked against the
 * token-by-token mask. */
#include "fuzz_common.h"
#include "grammar/grammar.h"
#include "grammar/constraint.h"
#include "text/tokenizer.h"
#include "common/alloc.h"
#include "common/error.h"

static danu_tokenizer *vocab(void)
{
    static danu_tokenizer *t;
    if (t) return t;
    static const char *words[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81the", "ab", "\"", "{\"", "\":", "12",
                                   "\xc3\xa9t\xc3\xa9", "\xe2\x96\x81", "true", "}" };
    enum { NW = sizeof words / sizeof *words, N = NW + 256 };
    static char bytes[256][8];
    const char *pieces[N];
    size_t lens[N];
    int32_t types[N];
    for (int i = 0; i < NW; i++) {
        pieces[i] = words[i];
        lens[i] = strlen(words[i]);
        types[i] = i == 0 ? DN_TOK_UNKNOWN : i < 3 ? DN_TOK_CONTROL : DN_TOK_NORMAL;
    }
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        pieces[NW + b] = bytes[b];
        lens[NW + b] = 6;
        types[NW + b] = DN_TOK_BYTE;
    }
    dn_vocab_src src = { .n = N, .pieces = pieces, .lens = lens, .types = types, .bos = 1, .eos = 2, .unk = 0,
                         .pad = -1, .add_bos = 1, .add_dummy_prefix = 1, .byte_fallback = 1 };
    if (dn_tokenizer_from_vocab(dn_alloc_libc(), &src, &t) != DANU_OK) abort();
    return t;
}

static int bit(const uint32_t *m, int32_t id) { return (m[id >> 5] >> (id & 31)) & 1; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    char *g = malloc(glen ? glen : 1);
    memcpy(g, data, glen);
    const char *text = nul ? (const char *)nul + 1 : "";
    size_t tlen = nul ? size - glen - 1 : 0;
    int complete, prefix;
    danu_status s = dn_gbnf_match(dn_alloc_libc(), g, glen, text, tlen, &complete, &prefix);
    if (s != DANU_OK) {
        FZ_ASSERT(dn_lasterr()[0]);
        free(g);
        return 0;
    }
    FZ_ASSERT(!complete || prefix);
    danu_tokenizer *t = vocab();
    danu_constraint *c;
    s = dn_constraint_from_gbnf(t, g, glen, NULL, &c);
    FZ_ASSERT(s == DANU_OK);
    dn_matcher *m;
    if (dn_matcher_create(c, dn_alloc_libc(), &m) == DANU_OK) {
        int32_t n = dn_tokenizer_n_vocab(t);
        uint32_t slow[(13 + 256 + 31) / 32];
        for (int step = 0; step < 8; step++) {
            const uint32_t *mask;
            int strip = step == 0 && tlen % 2;
            if (dn_matcher_mask(m, strip, &mask) != DANU_OK) break;
            if (dn_matcher_mask_slow(m, strip, slow) != DANU_OK) break;
            int32_t pick = -1, k = 0;
            for (int32_t id = 0; id < n; id++) {
                FZ_ASSERT(bit(mask, id) == bit(slow, id));
                /* the choice follows the text's bytes, so the fuzzer steers it */
                if (bit(mask, id) && id != 2 && (pick < 0 || (tlen && k++ == text[step % tlen] % 7))) pick = id;
            }
            if (pick < 0) { FZ_ASSERT(dn_matcher_state(m) != DANU_CONSTRAINT_OPEN); break; }
            FZ_ASSERT(dn_matcher_accept(m, pick, strip) == DANU_OK);
        }
        dn_matcher_free(m);
    }
    danu_constraint_free(c);
    free(g);
    return 0;
}
