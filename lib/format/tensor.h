/* tensor.h - a tensor as a file format describes it: name, type, shape and
 * where its bytes are. Both readers (GGUF, safetensors) produce these. */
#ifndef DN_TENSOR_H
#define DN_TENSOR_H
#include <stdint.h>
#include "danu.h"

#define DN_MAX_DIMS 4

typedef struct dn_tensor_desc {
    char *name;                 /* NUL-terminated, owned by the reader      */
    int32_t type;               /* DANU_TYPE_* (GGUF ggml_type numbering)   */
    int32_t n_dims;
    int64_t dims[DN_MAX_DIMS];  /* outermost first: [rows, cols] for a matrix
                                   (GGUF ne[] is reversed into this order)  */
    uint64_t n_elements;
    const uint8_t *data;        /* inside the mapping, validated in bounds  */
    uint64_t nbytes;
    uint64_t file_offset;       /* absolute offset in its file (messages)   */
    int32_t file_index;         /* shard number (0 for single files)        */
} dn_tensor_desc;
#endif
