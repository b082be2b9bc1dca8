/* fetch_result.c: how a transfer's failure is written into its result, once (the first
 * failure is the cause), with secrets redacted and the text cut between UTF-8 characters. */
#include "fetch_internal.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fetch_fail(fetch_xfer *x, const char *category, const char *fmt, ...) {
    if (x->res.category) return;           /* the first failure is the cause */
    char *raw = NULL, *red = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&raw, fmt, ap);
    va_end(ap);
    /* upstream bodies may quote a key, and URLs may carry user:password: redacted whole, then
     * cut between characters (a cut first could leave half a key that no longer matches) */
    if (n >= 0) red = log_redact(raw);
    log_utf8_copy(x->res.message, sizeof x->res.message, red ? red : "out of memory describing a failure");
    free(raw);
    free(red);
    x->res.category = category;
}

void fetch_fail_errno(fetch_xfer *x, const char *what, int err) {
    const char *name = strerrorname_np(err);
    fetch_fail(x, "disk", "%s %s: %s (%s)", what, x->req.path ? x->req.path : "", strerror(err),
               name ? name : "?");
}
