/* formats.h: whether a file is whole by a signature its caller gives as data (bytes at
 * offsets from the start, bytes at the end, and optionally a named structural mechanism for a
 * container whose headers state its length): which variant has which signature is the
 * caller's (lua/assetd/formats.lua). Reads headers only. Functions return 0 or an errno value. */
#ifndef ASSETD_FORMATS_H
#define ASSETD_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#define FORMATS_HEAD_MAX 8      /* head entries in one signature */
#define FORMATS_BYTES_MAX 64    /* bytes in one head entry or in the tail */
#define FORMATS_NAME_MAX 64     /* the name messages give, NUL included */

/* The structural mechanisms, for what a byte signature cannot see: a body cut short whose
 * own headers declare more bytes than arrived. */
typedef enum formats_structure {
    FORMATS_NONE,               /* the bytes only */
    FORMATS_ISOBMFF,            /* ISO BMFF (MP4, MOV, 3GP, HEIF): top-level boxes tile the file */
    FORMATS_RIFF,               /* RIFF (WebP, WAV, AVI): the RIFF size + 8 is the file size */
    FORMATS_SNIFF               /* whichever of those the first bytes announce, else NONE */
} formats_structure;

/* The names formats_structure_by_name takes, indexed by structure ("isobmff", "riff" from
 * 1), NULL after the last: for messages that list them. SNIFF has none: it is the engine's
 * own rule for a body that came without a length. */
extern const char *const formats_structures[];

typedef struct formats_bytes {
    int64_t offset;
    size_t len;                 /* 1 .. FORMATS_BYTES_MAX */
    unsigned char bytes[FORMATS_BYTES_MAX];
} formats_bytes;

/* What a file must be: every head entry at its offset, the tail at the end, the structure
 * holding. An all-zero signature asks only that the file is not empty. */
typedef struct formats_sig {
    char name[FORMATS_NAME_MAX];        /* what messages call it (a variant); "" for none */
    formats_bytes head[FORMATS_HEAD_MAX];
    size_t nhead;
    unsigned char tail[FORMATS_BYTES_MAX];
    size_t tail_len;                    /* 0: no tail */
    formats_structure structure;
} formats_sig;

/* NAME's structure into *S: 0, or EINVAL for a name not in formats_structures. */
int formats_structure_by_name(const char *name, formats_structure *s);
/* Whether SIG asks anything beyond "not empty". */
int formats_sig_empty(const formats_sig *sig);
/* The structure the first LEN bytes of a file announce, FORMATS_NONE when none. */
formats_structure formats_sniff(const unsigned char *head, size_t len);
/* Read N bytes at OFF into BUF: 0 when all N were read. */
typedef int (*formats_read_fn)(void *ud, void *buf, size_t n, int64_t off);
/* Whether SIZE bytes, read through RD, are a whole file by SIG. Reads headers only. Returns
 * 0, or EINVAL (EIO when RD fails) with the reason, led by SIG's name, in WHY (WHYLEN bytes,
 * "" when accepted). The buffer form is for tests and fuzzing. */
int formats_check(const formats_sig *sig, int64_t size, formats_read_fn rd, void *ud, char *why,
                  size_t whylen);
int formats_check_buffer(const formats_sig *sig, const void *buf, size_t len, char *why, size_t whylen);
/* The same for the file at FD, which must also have EXPECT bytes when EXPECT >= 0. */
int formats_check_fd(int fd, const formats_sig *sig, int64_t expect, char *why, size_t whylen);

#endif
