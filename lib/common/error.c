/* error.c - per-thread detail of the last failure. Thread-local storage is
 * the one piece of mutable state outside handles, and it is per thread. */
#include <stdarg.h>
#include <stdio.h>
#include "common/error.h"
#include "common/os.h"

static DN_THREAD_LOCAL char last_error[1024];

danu_status dn_seterr(danu_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void dn_clearerr(void) { last_error[0] = 0; }
const char *dn_lasterr(void) { return last_error; }
