/* spm.h - reader of SentencePiece's tokenizer.model (a ModelProto
 * protobuf): pieces and specs become a dn_vocab_src for lib/text. */
#ifndef DN_SPM_H
#define DN_SPM_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"
#include "common/alloc.h"
#include "text/tokenizer.h"

/* Build a tokenizer from tokenizer.model bytes: pieces (piece, score,
 * type), trainer_spec (model_type must be BPE, unk/bos/eos/pad ids,
 * byte_fallback, unk_surface), normalizer_spec (add_dummy_prefix,
 * remove_extra_whitespaces, escape_whitespaces), with SentencePiece's strict
 * load rules. Bounded and validated; `what` names the file in messages
 * (NULL = "tokenizer.model"). data need not outlive the tokenizer. */
danu_status dn_tokenizer_from_spm(const dn_alloc *a, const uint8_t *data, size_t size,
                                  const char *what, danu_tokenizer **out);

/* Write a tokenizer.model (ModelProto) that keeps only the first n pieces of
 * src_model (same trainer/normalizer specs). Heap result. Used by synth for
 * small-vocabulary models. */
danu_status dn_spm_truncate(const dn_alloc *a, const uint8_t *src, size_t size, int32_t n,
                            uint8_t **out, size_t *out_len);
#endif
