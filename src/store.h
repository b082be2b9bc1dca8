/* store.h: the versioned file store's mechanisms: id checks, batch directories opened without
 * following links, and the versions present on disk. Functions return 0 or an errno value. */
#ifndef ASSETD_STORE_H
#define ASSETD_STORE_H

#include <stddef.h>
#include <stdint.h>

/* ^[A-Za-z0-9_-]{1,128}$ */
int store_valid_id(const char *id);
/* Open ROOT (created with its parents when missing) as a directory fd. */
int store_open_root(const char *root, int *fd);
/* Open ROOTFD/BATCH, creating it when CREATE; a symbolic link there is refused (ELOOP). */
int store_open_batch(int rootfd, const char *batch, int create, int *fd);
/* One pass over BATCHFD: CB(video, video_len, N, UD) for every "{video}_V{N}" that names a
 * file or its ".part" file ("{video}_V{N}" followed by '.', '_' or nothing). Reading a whole
 * batch once lets the caller keep the highest version of every video it holds. */
typedef void (*store_version_cb)(const char *video, size_t len, int64_t n, void *ud);
int store_scan_versions(int batchfd, store_version_cb cb, void *ud);

#endif
