/* decode.c - ids back to text: a piece's bytes, SentencePiece's
 * whole-sequence decode (runs of byte pieces become characters, invalid
 * bytes U+FFFD, the dummy-prefix space dropped), and the streaming decoder
 * that emits only complete UTF-8. */
#include <string.h>
#include "text/tokenizer_internal.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/utf8.h"

#define REPLACEMENT "\xef\xbf\xbd"

/* Append a non-byte piece's surface. Tracks SentencePiece's "first
 * whitespace" state: is_bos_ws / bos_ws_seen. */
static size_t piece_surface(const danu_tokenizer *t, int32_t id, int *is_bos_ws, int *bos_ws_seen, size_t so_far,
                            char *o)
{
    if (*bos_ws_seen || so_far) *is_bos_ws = 0;
    uint8_t ty = t->type[id];
    if (ty == DN_TOK_CONTROL) { *bos_ws_seen = 0; return 0; }
    if (ty == DN_TOK_UNKNOWN) {
        memcpy(o, t->unk_surface, t->unk_surface_len);
        *bos_ws_seen = 0;
        return t->unk_surface_len;
    }
    const char *p = dn_piece_ptr(t, id);
    size_t l = dn_piece_len(t, id), k = 0, w = 0;
    int has_ws = 0;
    if (*is_bos_ws && (t->dummy || t->rm_ws) && l >= DN_WS_SYM_LEN && !memcmp(p, DN_WS_SYM, DN_WS_SYM_LEN)) {
        k = DN_WS_SYM_LEN;
        has_ws = !t->rm_ws;   /* with remove_extra_whitespaces every leading space goes */
    }
    while (k < l) {
        if (l - k >= DN_WS_SYM_LEN && !memcmp(p + k, DN_WS_SYM, DN_WS_SYM_LEN)) {
            o[w++] = ' ';
            k += DN_WS_SYM_LEN;
        } else {
            o[w++] = p[k++];
        }
    }
    *bos_ws_seen = has_ws;
    return w;
}

static danu_status check_ids(const danu_tokenizer *t, const danu_token *ids, size_t n)
{
    if (!ids && n) return dn_seterr(DANU_ERR_INVALID_ARG, "decode: ids NULL");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n)
            return dn_seterr(DANU_ERR_BAD_TOKEN, "decode: token %d at position %zu outside [0, %d)", (int)ids[i], i,
                             (int)t->n);
    return DANU_OK;
}

/* Bytes the text can take: 3 per byte piece (one U+FFFD at worst), plus the NUL. */
static danu_status decoded_cap(const danu_tokenizer *t, const danu_token *ids, size_t n, size_t *cap)
{
    *cap = 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t ty = t->type[ids[i]];
        size_t c = ty == DN_TOK_BYTE ? 3 : ty == DN_TOK_UNKNOWN ? t->unk_surface_len : dn_piece_len(t, ids[i]);
        if (dn_add_overflow_size(*cap, c, cap)) return dn_seterr(DANU_ERR_NOMEM, "decode: output too large");
    }
    return DANU_OK;
}

/* A run of n byte pieces becomes characters; each invalid byte U+FFFD.
 * The run is cut in chunks that keep any incomplete tail for the next.
 * Returns the bytes written to o. */
static size_t byte_run(const danu_tokenizer *t, const danu_token *ids, size_t n, char *o)
{
    uint8_t run[64];
    size_t w = 0, nr = 0;
    for (size_t j = 0; j < n;) {
        run[nr++] = t->byteval[ids[j++]];
        int last = j == n;
        if (nr < sizeof run && !last) continue;
        size_t k = 0, keep = last ? nr : nr - 3;   /* a char is at most 4 bytes */
        while (k < keep) {
            int mb = dn_utf8_char(run + k, nr - k);   /* SentencePiece's DecodeUTF8 accepts the same */
            if (mb > 0) {
                memcpy(o + w, run + k, (size_t)mb);
                w += (size_t)mb;
                k += (size_t)mb;
            } else {
                memcpy(o + w, REPLACEMENT, 3);
                w += 3;
                k += 1;
            }
        }
        memmove(run, run + k, nr - k);
        nr -= k;
    }
    return w;
}

danu_status dn_tokenizer_decode(const danu_tokenizer *t, const danu_token *ids, size_t n, char **out, size_t *len)
{
    if (!t || !out || !len) return dn_seterr(DANU_ERR_INVALID_ARG, "decode: NULL argument");
    *out = NULL;
    *len = 0;
    DN_TRY(check_ids(t, ids, n));
    size_t cap;
    DN_TRY(decoded_cap(t, ids, n, &cap));
    char *o = dn_malloc(&t->a, cap);
    if (!o) return dn_seterr(DANU_ERR_NOMEM, "decode: out of memory for %zu bytes", cap);
    size_t w = 0;
    int is_bos_ws = 1, bos_ws_seen = 0;
    for (size_t i = 0; i < n;) {
        if (t->type[ids[i]] != DN_TOK_BYTE) {
            w += piece_surface(t, ids[i], &is_bos_ws, &bos_ws_seen, w, o + w);
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && t->type[ids[j]] == DN_TOK_BYTE) j++;
        w += byte_run(t, ids + i, j - i, o + w);
        i = j;
    }
    o[w] = 0;
    *out = o;
    *len = w;
    return DANU_OK;
}

const char *dn_tokenizer_piece(const danu_tokenizer *t, int32_t id, size_t *len)
{
    if (len) *len = dn_piece_len(t, id);
    return dn_piece_ptr(t, id);
}

/* ------------------------------------------------------------------ */
/* Streaming decoder                                                   */
/* ------------------------------------------------------------------ */

typedef struct dec_state {
    uint8_t pend[4];
    int npend;
    int is_bos_ws, bos_ws_seen;
    size_t emitted;          /* bytes of text produced since the start */
} dec_state;

struct danu_decoder {
    const danu_tokenizer *t;
    dec_state s;
    char *scratch;           /* one piece's surface */
};

static void dec_reset(dec_state *s)
{
    memset(s, 0, sizeof *s);
    s->is_bos_ws = 1;
}

/* The decoder's scratch holds the longest piece or the unknown token's text. */
static size_t decoder_scratch(const danu_tokenizer *t)
{
    return (t->max_len > t->unk_surface_len ? t->max_len : t->unk_surface_len) + 1;
}

size_t dn_decoder_bytes(const danu_tokenizer *t) { return sizeof(danu_decoder) + decoder_scratch(t); }

danu_status dn_decoder_create(const danu_tokenizer *t, danu_decoder **out)
{
    if (!t || !out) return dn_seterr(DANU_ERR_INVALID_ARG, "decoder: NULL argument");
    *out = NULL;
    danu_decoder *d = dn_calloc(&t->a, 1, sizeof *d);
    char *scratch = dn_malloc(&t->a, decoder_scratch(t));
    if (!d || !scratch) {
        dn_free(&t->a, d);
        dn_free(&t->a, scratch);
        return dn_seterr(DANU_ERR_NOMEM, "decoder: out of memory");
    }
    d->t = t;
    d->scratch = scratch;
    dec_reset(&d->s);
    *out = d;
    return DANU_OK;
}

void dn_decoder_free(danu_decoder *d)
{
    if (!d) return;
    const dn_alloc *a = &d->t->a;
    dn_free(a, d->scratch);
    dn_free(a, d);
}

void dn_decoder_reset(danu_decoder *d)
{
    if (d) dec_reset(&d->s);
}

typedef struct sink { char *out; size_t cap, n; } sink;

static void put(sink *k, const void *p, size_t n)
{
    if (k->n + n < k->cap) memcpy(k->out + k->n, p, n);   /* keep room for the NUL */
    k->n += n;
}

/* Resolve pending bytes: complete characters go out, bytes that cannot start
 * a valid character become U+FFFD. At the end of a byte run (final) an
 * incomplete tail is invalid too, one U+FFFD per byte as SentencePiece. */
static void drain(dec_state *s, sink *k, int final)
{
    while (s->npend) {
        int c = dn_utf8_char(s->pend, (size_t)s->npend);
        int used;
        if (c > 0) { put(k, s->pend, (size_t)c); used = c; }
        else if (c == 0 && !final) break;
        else { put(k, REPLACEMENT, 3); used = 1; }
        s->emitted += (size_t)used;
        memmove(s->pend, s->pend + used, (size_t)(s->npend - used));
        s->npend -= used;
    }
}

static danu_status finish(danu_decoder *d, const dec_state *s, sink *k, size_t *len)
{
    if (len) *len = k->n;
    if (k->n + 1 > k->cap) {
        if (k->cap) k->out[0] = 0;
        return dn_seterr(DANU_ERR_BUFFER_TOO_SMALL, "decoder: %zu bytes needed, buffer holds %zu", k->n + 1, k->cap);
    }
    k->out[k->n] = 0;
    d->s = *s;   /* commit only when the text fit */
    return DANU_OK;
}

danu_status dn_decoder_push(danu_decoder *d, danu_token id, char *out, size_t cap, size_t *len)
{
    if (len) *len = 0;
    if (!d || (!out && cap)) return dn_seterr(DANU_ERR_INVALID_ARG, "decoder: NULL argument");
    const danu_tokenizer *t = d->t;
    if (id < 0 || id >= t->n)
        return dn_seterr(DANU_ERR_BAD_TOKEN, "decoder: token %d outside [0, %d)", (int)id, (int)t->n);
    dec_state s = d->s;
    sink k = { out, cap, 0 };
    if (t->type[id] == DN_TOK_BYTE) {
        s.pend[s.npend++] = t->byteval[id];
        drain(&s, &k, 0);
    } else {
        drain(&s, &k, 1);
        size_t w = piece_surface(t, id, &s.is_bos_ws, &s.bos_ws_seen, s.emitted, d->scratch);
        put(&k, d->scratch, w);
        s.emitted += w;
    }
    return finish(d, &s, &k, len);
}

danu_status dn_decoder_flush(danu_decoder *d, char *out, size_t cap, size_t *len)
{
    if (len) *len = 0;
    if (!d || (!out && cap)) return dn_seterr(DANU_ERR_INVALID_ARG, "decoder: NULL argument");
    dec_state s = d->s;
    sink k = { out, cap, 0 };
    drain(&s, &k, 1);
    dec_reset(&s);
    return finish(d, &s, &k, len);
}

/* ------------------------------------------------------------------ */
/* Token texts for constraints (lib/grammar)                           */
/* ------------------------------------------------------------------ */

size_t dn_token_text_max(const danu_tokenizer *t) { return decoder_scratch(t); }

size_t dn_token_text(const danu_tokenizer *t, int32_t id, char *out, int *lead_ws)
{
    *lead_ws = 0;
    uint8_t ty = t->type[id];
    if (ty == DN_TOK_BYTE) { out[0] = (char)t->byteval[id]; return 1; }
    if (ty == DN_TOK_NORMAL || ty == DN_TOK_USER_DEFINED || ty == DN_TOK_UNUSED)
        *lead_ws = (t->dummy || t->rm_ws) && dn_piece_len(t, id) >= DN_WS_SYM_LEN &&
                   !memcmp(dn_piece_ptr(t, id), DN_WS_SYM, DN_WS_SYM_LEN);
    int is_bos_ws = 0, seen = 0;
    return piece_surface(t, id, &is_bos_ws, &seen, 1, out);
}

/* piece_surface drops a leading space when is_bos_ws survives its first line. */
static int strips(const danu_tokenizer *t, const dec_state *s)
{
    return (t->dummy || t->rm_ws) && s->is_bos_ws && !s->bos_ws_seen && s->emitted == 0 && s->npend == 0;
}

int dn_decoder_strips_space(const danu_decoder *d) { return strips(d->t, &d->s); }

int dn_decoder_strips_after(const danu_tokenizer *t, int32_t last)
{
    dec_state s;
    dec_reset(&s);
    if (last >= 0 && last < t->n) {
        uint8_t ty = t->type[last];
        if (ty == DN_TOK_BYTE) return 0;   /* pending or emitted: the next piece is not the first */
        /* the surface's length is all that matters: count it without writing it */
        if (ty == DN_TOK_CONTROL) return strips(t, &s);
        if (ty == DN_TOK_UNKNOWN) return t->unk_surface_len == 0 && strips(t, &s);
        size_t l = dn_piece_len(t, last);
        int lead = l >= DN_WS_SYM_LEN && !memcmp(dn_piece_ptr(t, last), DN_WS_SYM, DN_WS_SYM_LEN) && (t->dummy || t->rm_ws);
        if (!lead || l > DN_WS_SYM_LEN) return 0;
        return t->rm_ws;   /* a lone space piece was dropped; without rm_ws it counts as seen */
    }
    return strips(t, &s);
}
