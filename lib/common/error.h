/* error.h - status codes plus a per-thread detail message. */
#ifndef DN_ERROR_H
#define DN_ERROR_H
#include "common/attr.h"
#include "danu.h"

/* Record a formatted detail for this thread and return status. */
danu_status dn_seterr(danu_status status, const char *fmt, ...)
    DN_PRINTF(2, 3);
void dn_clearerr(void);
const char *dn_lasterr(void);

/* Propagate a failing status. */
#define DN_TRY(expr) do { danu_status dn_try_s_ = (expr); if (dn_try_s_ != DANU_OK) return dn_try_s_; } while (0)
/* Check a condition; on failure record the message and return the status. */
#define DN_CHECK(cond, status, ...) do { if (!(cond)) return dn_seterr((status), __VA_ARGS__); } while (0)
#endif
