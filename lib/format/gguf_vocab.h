/* gguf_vocab.h - reader of the tokenizer a GGUF carries (tokenizer.ggml.*
 * keys): the vocabulary becomes a dn_vocab_src for lib/text. */
#ifndef DN_GGUF_VOCAB_H
#define DN_GGUF_VOCAB_H
#include "danu.h"
#include "common/alloc.h"
#include "format/gguf.h"
#include "text/tokenizer.h"

/* Build from GGUF metadata: tokenizer.ggml.model must be "llama"; reads
 * tokens, scores, token_type, bos/eos/unknown/padding_token_id,
 * add_bos_token, add_space_prefix (default true), remove_extra_whitespaces
 * (default false). Byte fallback is on when BYTE pieces exist. The GGUF
 * buffer need not outlive the tokenizer. */
danu_status dn_tokenizer_from_gguf(const dn_alloc *a, const dn_gguf *g, danu_tokenizer **out);
#endif
