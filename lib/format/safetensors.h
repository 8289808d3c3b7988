/* safetensors.h - safetensors reader (over a byte buffer), and the HF
 * directory loader (config.json + one or many safetensors shards). */
#ifndef DN_SAFETENSORS_H
#define DN_SAFETENSORS_H
#include <stdint.h>
#include <stdio.h>
#include "danu.h"
#include "common/alloc.h"
#include "common/os.h"
#include "common/json.h"
#include "common/log.h"
#include "format/tensor.h"

/* Parse one safetensors file in data[0..size): 8-byte header length, JSON
 * header ({name: {dtype, shape, data_offsets}}, optional __metadata__).
 * dtypes BF16, F16, F32 accepted; others -> UNSUPPORTED naming the tensor.
 * Checks offsets inside the file, end-begin == n_elements*size, overlaps,
 * shape overflow. Appends to *tensors (grown with a), setting file_index. */
danu_status dn_safetensors_parse(const dn_alloc *a, const uint8_t *data, uint64_t size,
                                 const char *what, int32_t file_index,
                                 dn_tensor_desc **tensors, int64_t *n_tensors, int64_t *cap);
void dn_tensor_descs_free(const dn_alloc *a, dn_tensor_desc *t, int64_t n);

/* An opened HF checkpoint directory. */
typedef struct dn_hfdir {
    char *dir;
    dn_json *config;            /* config.json */
    dn_json *tokenizer_config;  /* tokenizer_config.json or NULL */
    dn_json *generation_config; /* generation_config.json or NULL */
    char *tokenizer_model_path; /* dir/tokenizer.model if it exists, else NULL */
    dn_mapping *shards;         /* one mapping per safetensors file */
    char **shard_names;
    int32_t n_shards;
    dn_tensor_desc *tensors;    /* all tensors of all shards */
    int64_t n_tensors;
} dn_hfdir;

/* Open dir: config.json (required), model.safetensors or
 * model.safetensors.index.json (weight_map; every listed tensor must be
 * found in its shard, no duplicates across shards). progress (may be NULL)
 * is called per shard with fraction of bytes mapped; nonzero -> CANCELLED. */
danu_status dn_hfdir_open(const dn_alloc *a, const char *dir, int use_mmap, const dn_logger *lg,
                          danu_progress_fn progress, void *progress_user, dn_hfdir *out);
void dn_hfdir_close(const dn_alloc *a, dn_hfdir *h);
const dn_tensor_desc *dn_hfdir_find(const dn_hfdir *h, const char *name);

/* Writer: one safetensors file from n tensors (name, dtype, dims, bytes). */
typedef struct dn_st_entry {
    const char *name;
    int32_t type;             /* DANU_TYPE_BF16/F16/F32 */
    int32_t n_dims;
    int64_t dims[DN_MAX_DIMS];
} dn_st_entry;
/* Write the header for n entries (data laid out in order, no gaps), then the
 * caller fwrite()s each tensor's bytes in the same order. */
danu_status dn_safetensors_write_header(FILE *f, const dn_st_entry *e, int64_t n);
#endif
