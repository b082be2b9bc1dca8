/* filehash.h: the digests an object store wants of a file before it is sent (the SHA-256 and
 * MD5 of each part of PART_SIZE bytes, and the MD5 of the whole), in one read of the file.
 * Blocking: run on the thread pool. */
#ifndef ASSETD_FILEHASH_H
#define ASSETD_FILEHASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct filehash_part {
    int64_t offset, length;
    char sha256[65], md5[33];
} filehash_part;

typedef struct filehash {
    int64_t size, part_size;
    char md5[33];               /* of the whole file */
    filehash_part *parts;       /* ceil(size / part_size), at least 1 */
    size_t nparts;
} filehash;

/* Hash PATH in parts of PART_SIZE (> 0): 0, or an errno value. Free with filehash_free. */
int filehash_file(const char *path, int64_t part_size, filehash *out);
void filehash_free(filehash *h);

#endif
