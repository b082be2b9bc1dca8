/* store.c: the file side of the versioned store. Every name that reaches the disk is checked
 * here or in path.c; directories are walked with openat and O_NOFOLLOW so nothing is written
 * outside the root, whatever links someone plants under it. */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

/* ---- formats: is the file whole? --------------------------------------------------------
 * A body that came without Content-Length (or with a wrong one) is only as good as its own
 * structure says: an MP4's top-level boxes must tile the file exactly, a WebP's RIFF size must
 * cover it, a JPEG must end with its EOI marker. Only headers are read, box to box, so the cost
 * does not grow with the file's size (only with its number of top-level boxes). */

/* A real MP4 has a handful of top-level boxes, a fragmented one two per fragment (7,200 for
 * two hours in 2 s fragments); past this many, 8-byte boxes would make the walk a full read. */
#define MP4_MAX_BOXES (1u << 20)

store_format store_format_of(const char *variant) {
    if (!variant) return STORE_FORMAT_ANY;
    if (!strcmp(variant, "video") || !strcmp(variant, "mp4")) return STORE_FORMAT_MP4;
    if (!strcmp(variant, "thumbnail") || !strcmp(variant, "webp")) return STORE_FORMAT_WEBP;
    if (!strcmp(variant, "spritesheet") || !strcmp(variant, "jpeg")) return STORE_FORMAT_JPEG;
    return STORE_FORMAT_ANY;
}

store_format store_format_sniff(const unsigned char *head, size_t len) {
    if (len >= 8 && !memcmp(head + 4, "ftyp", 4)) return STORE_FORMAT_MP4;
    if (len >= 12 && !memcmp(head, "RIFF", 4) && !memcmp(head + 8, "WEBP", 4)) return STORE_FORMAT_WEBP;
    if (len >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) return STORE_FORMAT_JPEG;
    return STORE_FORMAT_ANY;
}

static uint64_t be32(const unsigned char *p) {
    return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p) { return be32(p) << 32 | be32(p + 4); }

static uint64_t le32(const unsigned char *p) {
    return (uint64_t)p[3] << 24 | (uint64_t)p[2] << 16 | (uint64_t)p[1] << 8 | p[0];
}

/* Top-level box types are four printable ASCII characters; bytes spliced or flipped into a
 * box header rarely are. */
static int box_type_ok(const unsigned char *t) {
    for (int i = 0; i < 4; i++)
        if (t[i] < 0x20 || t[i] > 0x7E) return 0;
    return 1;
}

/* The length of the box at OFF (REST bytes left in the file), or 0 with *WHY set. */
static uint64_t mp4_box(int64_t off, int64_t rest, int first, store_read_fn rd, void *ud,
                        const char **why) {
    unsigned char h[16];
    uint64_t len, hdr = 8;
    *why = "MP4: a box header is cut off (truncated file)";
    if (rest < 8 || rd(ud, h, 8, off)) return 0;
    *why = "not an MP4 file (no ftyp box at offset 4)";
    if (first && memcmp(h + 4, "ftyp", 4)) return 0;
    *why = "MP4: a top-level box type is not four printable characters (corrupt or spliced file)";
    if (!box_type_ok(h + 4)) return 0;
    len = be32(h);
    if (len == 1) {                         /* 64-bit largesize follows the type */
        *why = "MP4: a box header is cut off (truncated file)";
        if (rest < 16 || rd(ud, h + 8, 8, off + 8)) return 0;
        len = be64(h + 8);
        hdr = 16;
    } else if (len == 0) {
        len = (uint64_t)rest;               /* to the end of the file: by definition the last */
    }
    *why = "MP4: a box is smaller than its own header";
    if (len < hdr) return 0;
    *why = "MP4: a top-level box runs past the end of the file (truncated file)";
    if (len > (uint64_t)rest) return 0;
    return len;
}

static int check_mp4(int64_t size, store_read_fn rd, void *ud, const char **why) {
    int64_t off = 0;
    for (unsigned n = 0; off < size; n++) {
        *why = "MP4: more top-level boxes than any real file has";
        if (n == MP4_MAX_BOXES) return EINVAL;
        uint64_t len = mp4_box(off, size - off, n == 0, rd, ud, why);
        if (len == 0) return EINVAL;
        off += (int64_t)len;
    }
    return 0;
}

static int check_webp(int64_t size, store_read_fn rd, void *ud, const char **why) {
    unsigned char h[12];
    *why = "not a WebP file (no RIFF....WEBP header)";
    if (size < 12 || rd(ud, h, 12, 0) || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WEBP", 4)) return EINVAL;
    *why = "WebP: the RIFF size + 8 differs from the file size (truncated or spliced file)";
    if (le32(h + 4) + 8 != (uint64_t)size) return EINVAL;
    return 0;
}

static int check_jpeg(int64_t size, store_read_fn rd, void *ud, const char **why) {
    unsigned char h[3], t[2];
    *why = "not a JPEG file (must start FF D8 FF and end FF D9)";
    if (size < 5 || rd(ud, h, 3, 0) || rd(ud, t, 2, size - 2) || h[0] != 0xFF || h[1] != 0xD8 ||
        h[2] != 0xFF || t[0] != 0xFF || t[1] != 0xD9)
        return EINVAL;
    return 0;
}

int store_check_format(store_format f, int64_t size, store_read_fn rd, void *ud, const char **why) {
    unsigned char head[12];
    *why = "the file is empty";
    if (size <= 0) return EINVAL;
    if (f == STORE_FORMAT_SNIFF) {
        size_t n = size < (int64_t)sizeof head ? (size_t)size : sizeof head;
        *why = "cannot read the file";
        if (rd(ud, head, n, 0)) return EIO;
        f = store_format_sniff(head, n);
    }
    int err = 0;
    switch (f) {
    case STORE_FORMAT_MP4: err = check_mp4(size, rd, ud, why); break;
    case STORE_FORMAT_WEBP: err = check_webp(size, rd, ud, why); break;
    case STORE_FORMAT_JPEG: err = check_jpeg(size, rd, ud, why); break;
    default: break;
    }
    if (!err) *why = NULL;           /* a reason exactly when refused */
    return err;
}

typedef struct { const unsigned char *p; size_t len; } mem_reader;

static int read_mem(void *ud, void *buf, size_t n, int64_t off) {
    const mem_reader *m = ud;
    if (off < 0 || (uint64_t)off > m->len || n > m->len - (size_t)off) return -1;
    memcpy(buf, m->p + off, n);
    return 0;
}

int store_check_buffer(store_format f, const void *buf, size_t len, const char **why) {
    mem_reader m = {buf, len};
    return store_check_format(f, (int64_t)len, read_mem, &m, why);
}

static int read_fd(void *ud, void *buf, size_t n, int64_t off) {
    int fd = *(const int *)ud;
    for (size_t got = 0; got < n;) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

int store_check_fd(int fd, store_format f, int64_t expect, const char **why) {
    struct stat st;
    if (fstat(fd, &st) != 0) { *why = "cannot stat the file"; return errno; }
    *why = "the file is empty";
    if (st.st_size == 0) return EINVAL;
    *why = "the file's size differs from the expected size";
    if (expect >= 0 && st.st_size != expect) return EINVAL;
    return store_check_format(f, st.st_size, read_fd, &fd, why);
}

int store_check_file(int fd, const char *variant, int64_t expect, const char **why) {
    return store_check_fd(fd, store_format_of(variant), expect, why);
}
