/* gguf_testutil.h - see gguf_testutil.c. */
#ifndef DN_GGUF_TESTUTIL_H
#define DN_GGUF_TESTUTIL_H
#include "common/os.h"
#include "format/gguf.h"

typedef struct gfile { dn_mapping map; dn_gguf *g; } gfile;
/* Map and parse a GGUF; a Check assertion fails on error. */
void gopen(const char *path, gfile *f);
void gclose(gfile *f);
/* 1 if key has the same type and value in both files. */
int same_kv(const dn_gguf *a, const dn_gguf *b, const char *key);
#endif
