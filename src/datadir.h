/* datadir.h: one daemon per data directory (an exclusive flock on DIR/assetd.lock). */
#ifndef ASSETD_DATADIR_H
#define ASSETD_DATADIR_H

#include <stddef.h>

/* Lock DIR (created if missing) for this process's life: the lock's fd, or -1 with ERR naming
 * the pid that holds it ("data directory DIR is in use by pid N") or the failure. */
int datadir_lock(const char *dir, char *err, size_t errlen);

#endif
