/* store.h: the versioned file store's mechanisms: id checks, batch directories opened without
 * following links, the versions present on disk, and the file-signature
 * check a variant must pass before its commit (its structure must prove it whole). Functions return 0 or an errno value. */
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
/* File formats whose structure proves a file whole (see store.c). */
typedef enum store_format {
    STORE_FORMAT_ANY,       /* nothing to check beyond "not empty" */
    STORE_FORMAT_MP4,       /* top-level boxes tile the file exactly, the first is ftyp */
    STORE_FORMAT_WEBP,      /* RIFF....WEBP and the RIFF size + 8 is the file size */
    STORE_FORMAT_JPEG,      /* FF D8 FF ... FF D9 */
    STORE_FORMAT_SNIFF      /* whichever of those the first bytes announce, else ANY */
} store_format;
/* "video"/"mp4", "thumbnail"/"webp", "spritesheet"/"jpeg"; STORE_FORMAT_ANY otherwise. */
store_format store_format_of(const char *variant);
/* The format the first LEN bytes of a file announce, STORE_FORMAT_ANY when none. */
store_format store_format_sniff(const unsigned char *head, size_t len);
/* Read N bytes at OFF into BUF: 0 when all N were read. */
typedef int (*store_read_fn)(void *ud, void *buf, size_t n, int64_t off);
/* Whether SIZE bytes, read through RD, are a whole file of format F. Reads headers only.
 * Returns 0, or EINVAL (EIO when RD fails for a sniff) with *WHY set to the reason. The
 * buffer form is for tests and fuzzing. */
int store_check_format(store_format f, int64_t size, store_read_fn rd, void *ud, const char **why);
int store_check_buffer(store_format f, const void *buf, size_t len, const char **why);
/* The same for the file at FD, which must also have EXPECT bytes when EXPECT >= 0. */
int store_check_fd(int fd, store_format f, int64_t expect, const char **why);
/* store_check_fd with the format of VARIANT (store_format_of). */
int store_check_file(int fd, const char *variant, int64_t expect, const char **why);
#endif
