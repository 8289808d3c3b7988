/* quantize.h - `danu quantize`: an HF checkpoint directory or a GGUF into a
 * GGUF v3 file laid out exactly as llama.cpp's converter
 * (convert_hf_to_gguf.py) followed by its quantizer (llama-quantize)
 * writes it, including llama-quantize's choice of a type per tensor. */
#ifndef DN_QUANTIZE_H
#define DN_QUANTIZE_H
#include <stdint.h>
#include "danu.h"
#include "common/alloc.h"
#include "common/log.h"

typedef struct dn_quantize_request {
    const char *input;          /* HF directory or GGUF file */
    const char *output;         /* new GGUF file; must not exist */
    const char *type;           /* "q4_k_m", ... (dn_quantize_type) */
    int32_t n_threads;          /* 0: online cores */
    int use_mmap;
    danu_progress_fn progress;  /* may be NULL; nonzero cancels */
    void *progress_user;
    dn_logger log;
} dn_quantize_request;

/* The mix named by type (case-insensitive): f16, bf16, q8_0, q4_0, q4_1,
 * q5_0, q5_1, q4_k (= Q4_K_S), q5_k (= Q5_K_S), q6_k, q4_k_m, q5_k_m.
 * Stores the default matrix type and the llama_ftype; 0 if unknown. */
int dn_quantize_type(const char *name, int32_t *type, uint32_t *ftype);

/* Convert. Streams tensor by tensor (memory: one output tensor plus a row
 * per thread), writes OUTPUT.tmp and renames it at the end; on any failure
 * or cancellation nothing is left under either name. Errors: INVALID_ARG
 * (unknown type, output exists), IO, FORMAT, UNSUPPORTED (e.g. a row length
 * no type of the mix fits), NOMEM, CANCELLED. */
danu_status dn_quantize(const dn_alloc *a, const dn_quantize_request *rq);
#endif
