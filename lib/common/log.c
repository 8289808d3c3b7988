/* log.c - formats a message and hands it to the object's log callback. The
 * only place in lib/ that formats text for output; nothing is printed. */
#include <stdarg.h>
#include <stdio.h>
#include "common/log.h"

void dn_log(const dn_logger *lg, int32_t level, const char *fmt, ...)
{
    if (!lg || !lg->fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lg->fn(lg->user, level, buf);
}
