/* chat.c - the H2O-Danube chat format:
 *   [BOS] <|system|>text</s> <|prompt|>text</s> <|answer|>text</s> ... [<|answer|>]
 * "</s>" is the EOS id, never text. The <|...|> markers are not pieces of
 * the vocabulary: each run of text between EOS ids is encoded as plain text
 * (message content is not scanned for special pieces, so user text cannot
 * inject control ids). Like Hugging Face's LlamaTokenizer with legacy=false,
 * only the first text segment gets the dummy-prefix space. */
#include <string.h>
#include "text/tokenizer.h"
#include "common/alloc.h"
#include "common/bytes.h"
#include "common/error.h"

typedef struct idbuf {
    const dn_alloc *a;
    danu_token *v;
    size_t n, cap;
} idbuf;

static danu_status idbuf_append(idbuf *b, const danu_token *ids, size_t n)
{
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (dn_mul_overflow_size(cap, 2, &cap)) return dn_seterr(DANU_ERR_NOMEM, "chat: too many tokens");
        }
        danu_token *p = dn_realloc(b->a, b->v, cap * sizeof *p);
        if (!p) return dn_seterr(DANU_ERR_NOMEM, "chat: out of memory for %zu tokens", cap);
        b->v = p;
        b->cap = cap;
    }
    if (n) memcpy(b->v + b->n, ids, n * sizeof *ids);
    b->n += n;
    return DANU_OK;
}

static const char *role_marker(const char *role)
{
    if (!strcmp(role, "system")) return "<|system|>";
    if (!strcmp(role, "user")) return "<|prompt|>";
    if (!strcmp(role, "assistant")) return "<|answer|>";
    return NULL;
}

/* Encode marker + content as one text segment and append it. */
static danu_status append_segment(const danu_tokenizer *t, idbuf *b, const char *marker, const char *content,
                                  int dummy)
{
    size_t ml = strlen(marker), cl = content ? strlen(content) : 0, len;
    if (dn_add_overflow_size(ml, cl, &len)) return dn_seterr(DANU_ERR_INVALID_ARG, "chat: message too long");
    char *text = dn_malloc(b->a, len + 1);
    if (!text) return dn_seterr(DANU_ERR_NOMEM, "chat: out of memory for a %zu-byte message", len);
    memcpy(text, marker, ml);
    if (cl) memcpy(text + ml, content, cl);
    danu_token *ids = NULL;
    size_t n = 0;
    danu_status st = dn_tokenizer_encode_ex(t, text, len, 0, dummy, &ids, &n);
    if (!st) st = idbuf_append(b, ids, n);
    dn_free(b->a, ids);
    dn_free(b->a, text);
    return st;
}

danu_status dn_chat_encode(const danu_tokenizer *t, const char *const *roles, const char *const *contents,
                           size_t n, int add_bos, int add_reply_prompt, danu_token **out, size_t *n_out)
{
    return dn_chat_encode_ex(t, roles, contents, n, add_bos, add_reply_prompt, 1, out, n_out);
}

danu_status dn_chat_encode_ex(const danu_tokenizer *t, const char *const *roles, const char *const *contents,
                              size_t n, int add_bos, int add_reply_prompt, int first_prefix, danu_token **out,
                              size_t *n_out)
{
    if (!t || !out || !n_out || (n && (!roles || !contents)))
        return dn_seterr(DANU_ERR_INVALID_ARG, "chat: NULL argument");
    *out = NULL;
    *n_out = 0;
    for (size_t i = 0; i < n; i++) {
        if (!roles[i] || !contents[i]) return dn_seterr(DANU_ERR_INVALID_ARG, "chat: message %zu has a NULL role or content", i);
        if (!role_marker(roles[i]))
            return dn_seterr(DANU_ERR_INVALID_ARG, "chat: message %zu has role '%.32s' (system, user or assistant)", i,
                             roles[i]);
    }
    int32_t eos = dn_tokenizer_eos(t), bos = dn_tokenizer_bos(t);
    if (eos < 0) return dn_seterr(DANU_ERR_UNSUPPORTED, "chat: the tokenizer has no EOS piece");
    idbuf b = { dn_tokenizer_alloc(t), NULL, 0, 0 };
    danu_status st = DANU_OK;
    if (add_bos && bos >= 0 && (st = idbuf_append(&b, &bos, 1))) goto fail;
    for (size_t i = 0; i < n; i++) {
        if ((st = append_segment(t, &b, role_marker(roles[i]), contents[i], i == 0 && first_prefix))) goto fail;
        if ((st = idbuf_append(&b, &eos, 1))) goto fail;
    }
    if (add_reply_prompt && (st = append_segment(t, &b, "<|answer|>", NULL, n == 0 && first_prefix))) goto fail;
    if (!b.v && !(b.v = dn_malloc(b.a, sizeof *b.v)))   /* always hand back a real allocation */
        return dn_seterr(DANU_ERR_NOMEM, "chat: out of memory");
    *out = b.v;
    *n_out = b.n;
    return DANU_OK;
fail:
    dn_free(b.a, b.v);
    return st;
}

int dn_chat_template_is_danube(const char *tmpl, size_t len)
{
    if (!tmpl) return 0;
    static const char *const marks[2] = { "<|prompt|>", "<|answer|>" };
    for (int k = 0; k < 2; k++) {
        size_t ml = strlen(marks[k]);
        int found = 0;
        for (size_t i = 0; !found && i + ml <= len; i++) found = !memcmp(tmpl + i, marks[k], ml);
        if (!found) return 0;
    }
    return 1;
}
