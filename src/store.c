/* store.c: the file side of the versioned store. Every name that reaches the disk is checked
 * here or in path.c; directories are walked with openat and O_NOFOLLOW so nothing is written
 * outside the root, whatever links someone plants under it. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int store_valid_id(const char *id) {
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        if (!ok || n >= 128) return 0;
    }
    return n > 0;
}

static int mkdir_p(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int r = mkdir(path, 0755);
        *p = '/';
        if (r != 0 && errno != EEXIST) return errno;
    }
    return mkdir(path, 0755) != 0 && errno != EEXIST ? errno : 0;
}

int store_open_root(const char *root, int *fd) {
    char *copy = strdup(root);
    if (!copy) return ENOMEM;
    int err = mkdir_p(copy);
    free(copy);
    if (err) return err;
    *fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *fd < 0 ? errno : 0;
}

int store_open_batch(int rootfd, const char *batch, int create, int *fd) {
    if (!store_valid_id(batch)) return EINVAL;
    if (create && mkdirat(rootfd, batch, 0755) != 0 && errno != EEXIST) return errno;
    *fd = openat(rootfd, batch, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*fd >= 0) return 0;
    int err = errno;
    struct stat st;
    /* O_DIRECTORY makes a link fail as ENOTDIR: say what it really is */
    if (err == ENOTDIR && fstatat(rootfd, batch, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        err = ELOOP;
    return err;
}

/* N when P is "V{N}" followed by '.', '_' or nothing; else -1. */
static int64_t version_at(const char *p) {
    if (*p++ != 'V') return -1;
    int64_t n = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 18; p++, digits++) n = n * 10 + (*p - '0');
    if (digits == 0 || (*p != '\0' && *p != '.' && *p != '_')) return -1;
    return n;
}

/* Every way NAME reads as "{video}_V{N}...": a video id may itself contain "_V1", so each
 * '_' that starts a version gives one (prefix, N); the caller keeps the prefixes it knows. */
static void versions_of(const char *name, store_version_cb cb, void *ud) {
    for (const char *u = strchr(name, '_'); u; u = strchr(u + 1, '_')) {
        int64_t n = u > name ? version_at(u + 1) : -1;
        if (n >= 0) cb(name, (size_t)(u - name), n, ud);
    }
}

int store_scan_versions(int batchfd, store_version_cb cb, void *ud) {
    int fd = dup(batchfd);
    if (fd < 0) return errno;
    DIR *d = fdopendir(fd);
    if (!d) { int err = errno; close(fd); return err; }
    rewinddir(d);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL)
        versions_of(ent->d_name[0] == '.' ? ent->d_name + 1 : ent->d_name, cb, ud);
    closedir(d);
    return 0;
}

static int read_at(int fd, void *buf, size_t n, off_t off) {
    ssize_t r = pread(fd, buf, n, off);
    return r == (ssize_t)n ? 0 : -1;
}

int store_check_file(int fd, const char *variant, int64_t expect, const char **why) {
    struct stat st;
    unsigned char head[12], tail[2];
    if (fstat(fd, &st) != 0) { *why = "cannot stat the file"; return errno; }
    *why = "the file is empty";
    if (st.st_size == 0) return EINVAL;
    *why = "the file's size differs from the expected size";
    if (expect >= 0 && st.st_size != expect) return EINVAL;
    if (strcmp(variant, "video") == 0) {
        *why = "not an MP4 file (no ftyp box at offset 4)";
        if (st.st_size < 12 || read_at(fd, head, 8, 0) || memcmp(head + 4, "ftyp", 4)) return EINVAL;
    } else if (strcmp(variant, "thumbnail") == 0) {
        *why = "not a WebP file (no RIFF....WEBP header)";
        if (st.st_size < 12 || read_at(fd, head, 12, 0) || memcmp(head, "RIFF", 4) ||
            memcmp(head + 8, "WEBP", 4))
            return EINVAL;
    } else if (strcmp(variant, "spritesheet") == 0) {
        *why = "not a JPEG file (must start FF D8 FF and end FF D9)";
        if (st.st_size < 5 || read_at(fd, head, 3, 0) || read_at(fd, tail, 2, st.st_size - 2) ||
            head[0] != 0xFF || head[1] != 0xD8 || head[2] != 0xFF || tail[0] != 0xFF || tail[1] != 0xD9)
            return EINVAL;
    }
    *why = NULL;
    return 0;
}

void store_digest_hex(EVP_MD_CTX *sha, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    hex[0] = 0;
    EVP_DigestFinal_ex(sha, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int store_sha256_update(int fd, EVP_MD_CTX *sha, int64_t *from, int64_t end) {
    enum { CHUNK = 256 << 10 };
    char *buf = malloc(CHUNK);
    if (!buf) return ENOMEM;
    int err = 0;
    while (end < 0 || *from < end) {
        size_t want = end < 0 || end - *from > CHUNK ? CHUNK : (size_t)(end - *from);
        ssize_t r = pread(fd, buf, want, *from);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = errno;
        else if (r == 0 && end >= 0) err = EIO;      /* shorter than it should be */
        if (r <= 0) break;
        if (EVP_DigestUpdate(sha, buf, (size_t)r) != 1) { err = EIO; break; }
        *from += r;
    }
    free(buf);
    return err;
}

int store_sha256_fd(int fd, char hex[65]) {
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    int64_t at = 0;
    int err = sha && EVP_DigestInit_ex(sha, EVP_sha256(), NULL) == 1 ? 0 : ENOMEM;
    if (!err) err = store_sha256_update(fd, sha, &at, -1);
    if (!err) store_digest_hex(sha, hex);
    EVP_MD_CTX_free(sha);
    return err;
}
