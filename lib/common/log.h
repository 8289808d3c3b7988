/* log.h - the library's only output channel: a per-object callback. */
#ifndef DN_LOG_H
#define DN_LOG_H
#include "common/attr.h"
#include "danu.h"

typedef struct dn_logger {
    danu_log_fn fn;
    void *user;
} dn_logger;

void dn_log(const dn_logger *lg, int32_t level, const char *fmt, ...)
    DN_PRINTF(3, 4);
#endif
