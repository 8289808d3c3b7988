/* spm.c - bounded protobuf reader for SentencePiece's tokenizer.model
 * (ModelProto, SentencePiece 0.1.97): the pieces and the trainer and
 * normalizer specs of a BPE model. Every length is checked against the bytes
 * left, offsets in messages are file offsets, and the vocabulary goes to
 * lib/text as plain arrays. */
#include <string.h>
#include "format/spm.h"
#include "common/bytes.h"
#include "common/error.h"

typedef struct pb_field {
    uint32_t num, wire;
    uint64_t v;              /* varint / fixed value */
    const uint8_t *p;        /* length-delimited payload */
    size_t len;
    size_t start, end;       /* the whole field, offsets within the reader */
} pb_field;

typedef struct pb_reader {
    const uint8_t *p;
    size_t n, i;
    size_t base;             /* offset of p in the file, for messages */
    const char *what;
} pb_reader;

static danu_status pb_varint(pb_reader *r, uint64_t *v)
{
    uint64_t x = 0;
    size_t at = r->i;
    for (int k = 0; k < 10; k++) {
        if (r->i >= r->n)
            return dn_seterr(DANU_ERR_FORMAT, "%s: truncated varint at offset %zu", r->what, r->base + at);
        uint8_t b = r->p[r->i++];
        if (k == 9 && b > 1)
            return dn_seterr(DANU_ERR_FORMAT, "%s: overlong varint at offset %zu", r->what, r->base + at);
        x |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80)) { *v = x; return DANU_OK; }
    }
    return dn_seterr(DANU_ERR_FORMAT, "%s: overlong varint at offset %zu", r->what, r->base + at);
}

/* Read the next field; returns DANU_OK with f filled. Groups and unknown
 * wire types are errors (SentencePiece models never use them). */
static danu_status pb_next(pb_reader *r, pb_field *f)
{
    uint64_t key;
    f->start = r->i;
    DN_TRY(pb_varint(r, &key));
    if (key > UINT32_MAX || (key >> 3) == 0)
        return dn_seterr(DANU_ERR_FORMAT, "%s: bad field key %llu at offset %zu", r->what,
                         (unsigned long long)key, r->base + f->start);
    f->num = (uint32_t)(key >> 3);
    f->wire = (uint32_t)(key & 7);
    f->p = NULL;
    f->len = 0;
    f->v = 0;
    switch (f->wire) {
    case 0:
        DN_TRY(pb_varint(r, &f->v));
        break;
    case 1:
    case 5: {
        size_t w = f->wire == 1 ? 8 : 4;
        if (r->n - r->i < w)
            return dn_seterr(DANU_ERR_FORMAT, "%s: truncated fixed field at offset %zu", r->what, r->base + f->start);
        f->v = w == 8 ? dn_rd_u64(r->p + r->i) : dn_rd_u32(r->p + r->i);
        r->i += w;
        break;
    }
    case 2: {
        uint64_t l;
        DN_TRY(pb_varint(r, &l));
        if (l > r->n - r->i)
            return dn_seterr(DANU_ERR_FORMAT, "%s: field %u at offset %zu: length %llu beyond the end", r->what,
                             f->num, r->base + f->start, (unsigned long long)l);
        f->p = r->p + r->i;
        f->len = (size_t)l;
        r->i += (size_t)l;
        break;
    }
    default:
        return dn_seterr(DANU_ERR_FORMAT, "%s: unsupported wire type %u at offset %zu", r->what, f->wire,
                         r->base + f->start);
    }
    f->end = r->i;
    return DANU_OK;
}

static danu_status pb_want(const pb_reader *r, const pb_field *f, uint32_t wire)
{
    if (f->wire != wire)
        return dn_seterr(DANU_ERR_FORMAT, "%s: field %u at offset %zu has wire type %u, expected %u", r->what,
                         f->num, r->base + f->start, f->wire, wire);
    return DANU_OK;
}

static pb_reader pb_sub(const pb_reader *r, const pb_field *f)
{
    pb_reader s = { f->p, f->len, 0, r->base + (size_t)(f->p - r->p), r->what };
    return s;
}

typedef struct spm_specs {
    int64_t model_type;
    int byte_fallback, treat_ws_suffix;
    int64_t bos, eos, pad;
    const char *unk_surface;
    size_t unk_surface_len;
    int add_dummy_prefix, rm_ws, escape_ws;
    size_t charsmap_len;
} spm_specs;

static danu_status parse_trainer(pb_reader r, spm_specs *s)
{
    pb_field f;
    while (r.i < r.n) {
        DN_TRY(pb_next(&r, &f));
        switch (f.num) {
        case 3: DN_TRY(pb_want(&r, &f, 0)); s->model_type = (int32_t)f.v; break;
        case 24: DN_TRY(pb_want(&r, &f, 0)); s->treat_ws_suffix = f.v != 0; break;
        case 35: DN_TRY(pb_want(&r, &f, 0)); s->byte_fallback = f.v != 0; break;
        case 41: DN_TRY(pb_want(&r, &f, 0)); s->bos = (int32_t)f.v; break;
        case 42: DN_TRY(pb_want(&r, &f, 0)); s->eos = (int32_t)f.v; break;
        case 43: DN_TRY(pb_want(&r, &f, 0)); s->pad = (int32_t)f.v; break;
        case 44:
            DN_TRY(pb_want(&r, &f, 2));
            s->unk_surface = (const char *)f.p;
            s->unk_surface_len = f.len;
            break;
        default: break;
        }
    }
    return DANU_OK;
}

static danu_status parse_normalizer(pb_reader r, spm_specs *s)
{
    pb_field f;
    while (r.i < r.n) {
        DN_TRY(pb_next(&r, &f));
        switch (f.num) {
        case 2: DN_TRY(pb_want(&r, &f, 2)); s->charsmap_len = f.len; break;
        case 3: DN_TRY(pb_want(&r, &f, 0)); s->add_dummy_prefix = f.v != 0; break;
        case 4: DN_TRY(pb_want(&r, &f, 0)); s->rm_ws = f.v != 0; break;
        case 5: DN_TRY(pb_want(&r, &f, 0)); s->escape_ws = f.v != 0; break;
        default: break;
        }
    }
    return DANU_OK;
}

/* Piece k of the vocabulary from one ModelProto.SentencePiece message. */
static danu_status parse_piece(pb_reader r, dn_vocab_arrays *v, size_t k)
{
    pb_field f;
    v->pieces[k] = NULL;
    v->lens[k] = 0;
    v->scores[k] = 0.0f;
    v->types[k] = DN_TOK_NORMAL;
    int have_piece = 0;
    size_t at = r.base;
    while (r.i < r.n) {
        DN_TRY(pb_next(&r, &f));
        switch (f.num) {
        case 1:
            DN_TRY(pb_want(&r, &f, 2));
            v->pieces[k] = (const char *)f.p;
            v->lens[k] = f.len;
            have_piece = 1;
            break;
        case 2: {
            DN_TRY(pb_want(&r, &f, 5));
            uint8_t b[4];
            dn_wr_u32(b, (uint32_t)f.v);
            v->scores[k] = dn_rd_f32(b);
            break;
        }
        case 3:
            DN_TRY(pb_want(&r, &f, 0));
            if (f.v < DN_TOK_NORMAL || f.v > DN_TOK_BYTE)
                return dn_seterr(DANU_ERR_FORMAT, "%s: piece at offset %zu has unknown type %llu", r.what, at,
                                 (unsigned long long)f.v);
            v->types[k] = (int32_t)f.v;
            break;
        default: break;
        }
    }
    if (!have_piece) return dn_seterr(DANU_ERR_FORMAT, "%s: piece at offset %zu has no text", r.what, at);
    return DANU_OK;
}

/* First pass: count the pieces and read the specs; refuse what the encoder
 * does not implement. */
static danu_status read_specs(pb_reader r, spm_specs *s, size_t *n_pieces)
{
    const char *what = r.what;
    pb_field f;
    size_t n = 0;
    int have_trainer = 0;
    while (r.i < r.n) {
        DN_TRY(pb_next(&r, &f));
        if (f.num == 1) {
            DN_TRY(pb_want(&r, &f, 2));
            n++;
        } else if (f.num == 2) {
            DN_TRY(pb_want(&r, &f, 2));
            DN_TRY(parse_trainer(pb_sub(&r, &f), s));
            have_trainer = 1;
        } else if (f.num == 3) {
            DN_TRY(pb_want(&r, &f, 2));
            DN_TRY(parse_normalizer(pb_sub(&r, &f), s));
        }
    }
    if (n == 0 || n > (1u << 28))
        return dn_seterr(DANU_ERR_FORMAT, "%s: %zu pieces", what, n);
    if (!have_trainer || s->model_type != 2)
        return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: model_type %lld is not BPE (2)", what, (long long)s->model_type);
    if (s->treat_ws_suffix)
        return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: treat_whitespace_as_suffix is not supported", what);
    if (s->charsmap_len)
        return dn_seterr(DANU_ERR_UNSUPPORTED, "%s: normalization rules (precompiled_charsmap) are not supported",
                         what);
    *n_pieces = n;
    return DANU_OK;
}

/* Second pass: every piece in file order. */
static danu_status read_pieces(pb_reader r, const spm_specs *s, dn_vocab_arrays *v)
{
    pb_field f;
    size_t k = 0;
    while (r.i < r.n) {
        DN_TRY(pb_next(&r, &f));
        if (f.num != 1) continue;
        DN_TRY(parse_piece(pb_sub(&r, &f), v, k));
        if (v->types[k] == DN_TOK_BYTE && !s->byte_fallback)
            return dn_seterr(DANU_ERR_FORMAT, "%s: BYTE piece %zu but byte_fallback is false", r.what, k);
        k++;
    }
    return DANU_OK;
}

/* A special id of the trainer spec; -1 (absent) when outside the vocabulary. */
static int32_t spec_id(int64_t id, int32_t n) { return id >= 0 && id < n ? (int32_t)id : -1; }

danu_status dn_tokenizer_from_spm(const dn_alloc *a, const uint8_t *data, size_t size, const char *what,
                                  danu_tokenizer **out)
{
    if (!a || !out || (!data && size)) return dn_seterr(DANU_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    if (!what) what = "tokenizer.model";
    spm_specs s = { .model_type = 1, .bos = 1, .eos = 2, .pad = -1, .add_dummy_prefix = 1, .rm_ws = 1,
                    .escape_ws = 1 };
    const pb_reader r = { data, size, 0, 0, what };
    size_t n_pieces = 0;
    DN_TRY(read_specs(r, &s, &n_pieces));
    dn_vocab_arrays v;
    if (dn_vocab_arrays_alloc(a, n_pieces, &v)) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", what);
    danu_status st = read_pieces(r, &s, &v);
    if (!st) {
        int32_t n = (int32_t)n_pieces;
        dn_vocab_src src = {
            .n = n, .pieces = v.pieces, .lens = v.lens, .scores = v.scores, .types = v.types,
            .bos = spec_id(s.bos, n), .eos = spec_id(s.eos, n), .unk = -1, .pad = spec_id(s.pad, n),
            .add_bos = 1, .add_dummy_prefix = s.add_dummy_prefix, .byte_fallback = s.byte_fallback,
            .remove_extra_whitespaces = s.rm_ws, .keep_spaces = !s.escape_ws,
            .unk_surface = s.unk_surface, .unk_surface_len = s.unk_surface_len, .strict = 1, .what = what,
        };
        st = dn_tokenizer_from_vocab(a, &src, out);
    }
    dn_vocab_arrays_free(a, &v);
    return st;
}

danu_status dn_spm_truncate(const dn_alloc *a, const uint8_t *src, size_t size, int32_t n, uint8_t **out,
                            size_t *out_len)
{
    if (!a || !out || !out_len || (!src && size)) return dn_seterr(DANU_ERR_INVALID_ARG, "spm_truncate: NULL argument");
    *out = NULL;
    *out_len = 0;
    pb_reader r = { src, size, 0, 0, "tokenizer.model" };
    pb_field f;
    size_t count = 0;
    while (r.i < r.n) {
        DN_TRY(pb_next(&r, &f));
        if (f.num == 1) count++;
    }
    if (n < 1 || (size_t)n > count)
        return dn_seterr(DANU_ERR_INVALID_ARG, "spm_truncate: %d pieces asked, model has %zu", (int)n, count);
    uint8_t *buf = dn_malloc(a, size);
    if (!buf) return dn_seterr(DANU_ERR_NOMEM, "spm_truncate: out of memory");
    size_t len = 0, seen = 0;
    r.i = 0;
    while (r.i < r.n) {
        danu_status st = pb_next(&r, &f);
        if (st) { dn_free(a, buf); return st; }   /* cannot happen: parsed above */
        if (f.num == 1 && seen++ >= (size_t)n) continue;
        memcpy(buf + len, src + f.start, f.end - f.start);
        len += f.end - f.start;
    }
    *out = buf;
    *out_len = len;
    return DANU_OK;
}
