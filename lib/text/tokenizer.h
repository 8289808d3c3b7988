/* tokenizer.h - SentencePiece BPE (Llama 2 flavour) tokenizer, the streaming
 * decoder, and the Danube chat format. Defines the public opaque types
 * danu_tokenizer and danu_decoder. A tokenizer is built from plain arrays
 * (dn_vocab_src); the readers of tokenizer.model and of a GGUF's
 * tokenizer.ggml.* keys live in lib/format (spm.h, gguf_vocab.h). */
#ifndef DN_TOKENIZER_H
#define DN_TOKENIZER_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"
#include "common/alloc.h"

/* SentencePiece piece types (GGUF tokenizer.ggml.token_type uses the same). */
enum { DN_TOK_NORMAL = 1, DN_TOK_UNKNOWN = 2, DN_TOK_CONTROL = 3, DN_TOK_USER_DEFINED = 4,
       DN_TOK_UNUSED = 5, DN_TOK_BYTE = 6 };
/* Longest piece accepted (lengths fit the 16 bits a hash slot keeps). */
#define DN_TOK_MAX_PIECE_BYTES 65535u

/* Everything a tokenizer is built from, whatever the source. Zero fields
 * give the defaults. */
typedef struct dn_vocab_src {
    int32_t n;                  /* pieces */
    const char *const *pieces;  /* UTF-8, not necessarily NUL-terminated */
    const size_t *lens;
    const float *scores;        /* NULL = all 0 */
    const int32_t *types;       /* DN_TOK_*; NULL = all NORMAL */
    int32_t bos, eos, unk, pad; /* -1 when absent */
    int add_bos;                /* default for the model (1 for Llama 2) */
    int add_dummy_prefix;       /* 1 for Llama 2 */
    int byte_fallback;          /* 1 for Llama 2 */
    int remove_extra_whitespaces; /* 0 for Llama 2 */
    int keep_spaces;            /* 1: spaces stay " " (escape_whitespaces false); 0: U+2581 */
    const char *unk_surface;    /* decoded text of UNKNOWN; NULL = " U+2047 " */
    size_t unk_surface_len;
    int strict;                 /* SentencePiece's load rules: no duplicate or empty
                                 * pieces, exactly one UNKNOWN piece */
    const char *what;           /* names the source in messages; NULL = "vocabulary" */
} dn_vocab_src;

/* The arrays a file reader fills (one entry per piece; pieces point into
 * the file) before pointing a dn_vocab_src at them. */
typedef struct dn_vocab_arrays {
    const char **pieces;
    size_t *lens;
    float *scores;
    int32_t *types;
} dn_vocab_arrays;
/* Allocate n entries of each: DANU_OK, or DANU_ERR_NOMEM with nothing kept
 * and no message recorded (the reader names itself). */
danu_status dn_vocab_arrays_alloc(const dn_alloc *a, size_t n, dn_vocab_arrays *v);
void dn_vocab_arrays_free(const dn_alloc *a, dn_vocab_arrays *v);

/* Build from arrays. Validates ids, piece lengths, UTF-8 of pieces, byte
 * pieces <0xXX>. Copies everything: src need not outlive the tokenizer. */
danu_status dn_tokenizer_from_vocab(const dn_alloc *a, const dn_vocab_src *src, danu_tokenizer **out);
void dn_tokenizer_free(danu_tokenizer *t);

int32_t dn_tokenizer_n_vocab(const danu_tokenizer *t);
int32_t dn_tokenizer_bos(const danu_tokenizer *t);
int32_t dn_tokenizer_eos(const danu_tokenizer *t);
int32_t dn_tokenizer_unk(const danu_tokenizer *t);
int dn_tokenizer_add_bos(const danu_tokenizer *t);
/* The allocator the tokenizer was built with (its results come from it). */
const dn_alloc *dn_tokenizer_alloc(const danu_tokenizer *t);
/* Piece bytes (not NUL-terminated), score and type of an id (id checked by caller). */
const char *dn_tokenizer_piece(const danu_tokenizer *t, int32_t id, size_t *len);
float dn_tokenizer_score(const danu_tokenizer *t, int32_t id);
int32_t dn_tokenizer_type(const danu_tokenizer *t, int32_t id);
/* Look up a piece exactly; -1 if absent. */
int32_t dn_tokenizer_find(const danu_tokenizer *t, const char *piece, size_t len);

/* Encode; *out is allocated with the tokenizer's allocator (dn_free it),
 * *n its length. flags: DANU_TOKENIZE_*. BAD_UTF8 names the byte offset.
 * PARSE_SPECIAL: CONTROL/UNKNOWN pieces ("<s>", "</s>", "<unk>") in the text
 * become their ids; only text before the first of them gets the dummy
 * prefix (Hugging Face legacy=false), so "<s>hi" = [1] + encode("hi" with no
 * dummy prefix). */
danu_status dn_tokenizer_encode(const danu_tokenizer *t, const char *text, size_t len, uint32_t flags,
                                danu_token **out, size_t *n);
/* Same, but text after a special token / at a segment start may suppress the
 * dummy prefix (used by the chat format: HF legacy=false). */
danu_status dn_tokenizer_encode_ex(const danu_tokenizer *t, const char *text, size_t len, uint32_t flags,
                                   int dummy_prefix, danu_token **out, size_t *n);
/* Decode a whole sequence (SentencePiece semantics) into a heap string. */
danu_status dn_tokenizer_decode(const danu_tokenizer *t, const danu_token *ids, size_t n,
                                char **out, size_t *len);

/* Streaming decoder: struct danu_decoder is defined in decode.c. */
danu_status dn_decoder_create(const danu_tokenizer *t, danu_decoder **out);
/* Bytes dn_decoder_create takes from the allocator. */
size_t dn_decoder_bytes(const danu_tokenizer *t);
void dn_decoder_free(danu_decoder *d);
void dn_decoder_reset(danu_decoder *d);
/* Append the complete UTF-8 text finished by `id` to out (cap bytes incl.
 * NUL); BUFFER_TOO_SMALL if cap < 64 and the text does not fit. */
danu_status dn_decoder_push(danu_decoder *d, danu_token id, char *out, size_t cap, size_t *len);
danu_status dn_decoder_flush(danu_decoder *d, char *out, size_t cap, size_t *len);

/* For constraints: the bytes id adds to a generation's text after its
 * start (a BYTE piece's byte, another piece's surface; CONTROL: none) into
 * out (dn_token_text_max bytes); *lead_ws = 1 when that text starts with a
 * space the decoder drops if the piece comes first (see strips_space). */
size_t dn_token_text_max(const danu_tokenizer *t);
size_t dn_token_text(const danu_tokenizer *t, int32_t id, char *out, int *lead_ws);
/* 1 when the decoder will drop the next piece's leading space (nothing but
 * control tokens came before); _after: the same for a decoder reset and
 * primed with `last` (-1: nothing), as a generation starts. */
int dn_decoder_strips_space(const danu_decoder *d);
int dn_decoder_strips_after(const danu_tokenizer *t, int32_t last);

/* Danube chat format (see danu.h danu_chat_encode); heap result. */
danu_status dn_chat_encode(const danu_tokenizer *t, const char *const *roles, const char *const *contents,
                           size_t n, int add_bos, int add_reply_prompt, danu_token **out, size_t *n_out);
/* The same, continuing a conversation whose cache ends with EOS: with
 * first_prefix 0 the first segment gets no dummy-prefix space either, as the
 * whole conversation tokenized at once would have it. */
danu_status dn_chat_encode_ex(const danu_tokenizer *t, const char *const *roles, const char *const *contents,
                              size_t n, int add_bos, int add_reply_prompt, int first_prefix, danu_token **out,
                              size_t *n_out);
/* 1 if a Jinja chat template string is Danube's (<|prompt|>/<|answer|>). */
int dn_chat_template_is_danube(const char *tmpl, size_t len);

#endif
