/* gguf.h - GGUF v2/v3 reader (over a byte buffer) and writer. */
#ifndef DN_GGUF_H
#define DN_GGUF_H
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include "danu.h"
#include "common/alloc.h"
#include "format/tensor.h"

/* GGUF metadata value types (gguf_type). */
enum {
    DN_GGUF_U8 = 0, DN_GGUF_I8 = 1, DN_GGUF_U16 = 2, DN_GGUF_I16 = 3, DN_GGUF_U32 = 4,
    DN_GGUF_I32 = 5, DN_GGUF_F32 = 6, DN_GGUF_BOOL = 7, DN_GGUF_STRING = 8,
    DN_GGUF_ARRAY = 9, DN_GGUF_U64 = 10, DN_GGUF_I64 = 11, DN_GGUF_F64 = 12
};

/* Bytes of one element of a fixed-size value type; 0 for string, array or
 * an unknown type (for the reader and the writer). */
uint32_t dn_gguf_value_size(int32_t type);

typedef struct dn_gguf dn_gguf;

/* Parse header, metadata and tensor table of a GGUF held in data[0..size)
 * (the caller keeps the buffer alive). Validates everything: counts, string
 * lengths, array sizes, types, dims, n_elements * type size overflow, data
 * offsets inside the file and aligned to general.alignment (default 32),
 * duplicate tensor names. `what` names the file in error messages. */
danu_status dn_gguf_open(const dn_alloc *a, const uint8_t *data, uint64_t size,
                         const char *what, dn_gguf **out);
void dn_gguf_close(dn_gguf *g);

uint32_t dn_gguf_version(const dn_gguf *g);
uint32_t dn_gguf_alignment(const dn_gguf *g);
uint64_t dn_gguf_data_offset(const dn_gguf *g);   /* start of the tensor data section */

/* Metadata. Key lookup returns the index or -1. */
int64_t dn_gguf_n_kv(const dn_gguf *g);
int64_t dn_gguf_find(const dn_gguf *g, const char *key);
const char *dn_gguf_key(const dn_gguf *g, int64_t i);
int32_t dn_gguf_kv_type(const dn_gguf *g, int64_t i);
/* Scalar getters convert between integer types when the value fits, and to
 * double from any numeric type; return 1 on success, 0 if absent/wrong type. */
int dn_gguf_get_u64(const dn_gguf *g, const char *key, uint64_t *out);
int dn_gguf_get_i64(const dn_gguf *g, const char *key, int64_t *out);
int dn_gguf_get_f64(const dn_gguf *g, const char *key, double *out);
int dn_gguf_get_bool(const dn_gguf *g, const char *key, int *out);
/* String value: pointer into the buffer (NOT NUL-terminated) and length. */
int dn_gguf_get_str(const dn_gguf *g, const char *key, const char **s, uint64_t *len);
/* Array value: element type and count. */
int dn_gguf_get_arr(const dn_gguf *g, const char *key, int32_t *elem_type, uint64_t *count);
/* Numeric array element i as double/int64 (any numeric element type). */
int dn_gguf_arr_f64(const dn_gguf *g, const char *key, uint64_t i, double *out);
int dn_gguf_arr_i64(const dn_gguf *g, const char *key, uint64_t i, int64_t *out);
/* String array element i: pointer into the buffer and length. */
int dn_gguf_arr_str(const dn_gguf *g, const char *key, uint64_t i, const char **s, uint64_t *len);

/* Tensors, in file order. */
int64_t dn_gguf_n_tensors(const dn_gguf *g);
const dn_tensor_desc *dn_gguf_tensor(const dn_gguf *g, int64_t i);
const dn_tensor_desc *dn_gguf_find_tensor(const dn_gguf *g, const char *name);

/* Type sizes: dn_type_row_bytes / dn_type_block_size in quant/quant.h. */

/* ---- writer: builds a GGUF v3 file; metadata first, then tensors ---- */
typedef struct dn_gguf_writer dn_gguf_writer;

danu_status dn_gguf_writer_create(const dn_alloc *a, uint32_t alignment, dn_gguf_writer **out);
void dn_gguf_writer_free(dn_gguf_writer *w);
danu_status dn_gguf_w_u32(dn_gguf_writer *w, const char *key, uint32_t v);
danu_status dn_gguf_w_i32(dn_gguf_writer *w, const char *key, int32_t v);
danu_status dn_gguf_w_u64(dn_gguf_writer *w, const char *key, uint64_t v);
danu_status dn_gguf_w_f32(dn_gguf_writer *w, const char *key, float v);
danu_status dn_gguf_w_bool(dn_gguf_writer *w, const char *key, int v);
/* Any scalar type (u8, i8, u16, i16, u32, i32, u64, i64, f32, f64, bool)
 * from its value: integers through `i` (unsigned ones as their bits),
 * floats through `f`. INVALID_ARG for a non-scalar type. */
danu_status dn_gguf_w_scalar(dn_gguf_writer *w, const char *key, int32_t type, int64_t i, double f);
danu_status dn_gguf_w_str(dn_gguf_writer *w, const char *key, const char *s, size_t len);
/* Arrays: numeric elements copied from `data` (count elements of elem_type,
 * little-endian host layout); string arrays from pointers + lengths. */
danu_status dn_gguf_w_arr(dn_gguf_writer *w, const char *key, int32_t elem_type, const void *data, uint64_t count);
danu_status dn_gguf_w_arr_str(dn_gguf_writer *w, const char *key, const char *const *s, const size_t *lens, uint64_t count);
/* Declare a tensor (dims outermost first, as in dn_tensor_desc). Offsets are
 * assigned in declaration order, each aligned. */
danu_status dn_gguf_w_tensor(dn_gguf_writer *w, const char *name, int32_t type, int32_t n_dims, const int64_t *dims);
/* Write header + metadata + tensor table + padding to f. Then the caller
 * writes each tensor's bytes in declaration order with dn_gguf_w_data, which
 * pads to alignment between tensors. */
danu_status dn_gguf_w_begin(dn_gguf_writer *w, FILE *f);
danu_status dn_gguf_w_data(dn_gguf_writer *w, FILE *f, const void *bytes, uint64_t nbytes);
danu_status dn_gguf_w_end(dn_gguf_writer *w, FILE *f);   /* checks every tensor was written */
#endif
