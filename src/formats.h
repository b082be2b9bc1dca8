/* formats.h: whether a file's own structure proves it whole (MP4 box tiling, WebP RIFF size,
 * JPEG FF D8 ... FF D9), by format name: which variant is which format is the caller's
 * (lua/assetd/formats.lua). Reads headers only. Functions return 0 or an errno value. */
#ifndef ASSETD_FORMATS_H
#define ASSETD_FORMATS_H

#include <stddef.h>
#include <stdint.h>

typedef enum formats_format {
    FORMATS_ANY,        /* nothing to check beyond "not empty" */
    FORMATS_MP4,        /* top-level boxes tile the file exactly, the first is ftyp */
    FORMATS_WEBP,       /* RIFF....WEBP and the RIFF size + 8 is the file size */
    FORMATS_JPEG,       /* FF D8 FF ... FF D9 */
    FORMATS_SNIFF       /* whichever of those the first bytes announce, else ANY */
} formats_format;

/* The names formats_by_name takes, indexed by format ("any", "mp4", "webp", "jpeg"), NULL
 * after the last: for messages that list them. SNIFF has none: it is the engine's own rule. */
extern const char *const formats_names[];
/* NAME's format into *F: 0, or EINVAL for a name not in formats_names. */
int formats_by_name(const char *name, formats_format *f);
/* The format the first LEN bytes of a file announce, FORMATS_ANY when none. */
formats_format formats_sniff(const unsigned char *head, size_t len);
/* Read N bytes at OFF into BUF: 0 when all N were read. */
typedef int (*formats_read_fn)(void *ud, void *buf, size_t n, int64_t off);
/* Whether SIZE bytes, read through RD, are a whole file of format F. Reads headers only.
 * Returns 0, or EINVAL (EIO when RD fails for a sniff) with *WHY set to the reason. The
 * buffer form is for tests and fuzzing. */
int formats_check(formats_format f, int64_t size, formats_read_fn rd, void *ud, const char **why);
int formats_check_buffer(formats_format f, const void *buf, size_t len, const char **why);
/* The same for the file at FD, which must also have EXPECT bytes when EXPECT >= 0. */
int formats_check_fd(int fd, formats_format f, int64_t expect, const char **why);

#endif
