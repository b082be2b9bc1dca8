/* formats.c: is the file whole? A body that came without Content-Length (or with a wrong
 * one) is only as good as its own structure says: an MP4's top-level boxes must tile the file
 * exactly, a WebP's RIFF size must cover it, a JPEG must end with its EOI marker. Only headers
 * are read, box to box, so the cost does not grow with the file's size (only with its number
 * of top-level boxes). */
#include "formats.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A real MP4 has a handful of top-level boxes, a fragmented one two per fragment (7,200 for
 * two hours in 2 s fragments); past this many, 8-byte boxes would make the walk a full read. */
#define MP4_MAX_BOXES (1u << 20)

const char *const formats_names[] = {"any", "mp4", "webp", "jpeg", NULL};

int formats_by_name(const char *name, formats_format *f) {
    for (int i = 0; formats_names[i]; i++)
        if (strcmp(name, formats_names[i]) == 0) { *f = (formats_format)i; return 0; }
    return EINVAL;
}

formats_format formats_sniff(const unsigned char *head, size_t len) {
    if (len >= 8 && !memcmp(head + 4, "ftyp", 4)) return FORMATS_MP4;
    if (len >= 12 && !memcmp(head, "RIFF", 4) && !memcmp(head + 8, "WEBP", 4)) return FORMATS_WEBP;
    if (len >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) return FORMATS_JPEG;
    return FORMATS_ANY;
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
static uint64_t mp4_box(int64_t off, int64_t rest, int first, formats_read_fn rd, void *ud,
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

static int check_mp4(int64_t size, formats_read_fn rd, void *ud, const char **why) {
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

static int check_webp(int64_t size, formats_read_fn rd, void *ud, const char **why) {
    unsigned char h[12];
    *why = "not a WebP file (no RIFF....WEBP header)";
    if (size < 12 || rd(ud, h, 12, 0) || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WEBP", 4)) return EINVAL;
    *why = "WebP: the RIFF size + 8 differs from the file size (truncated or spliced file)";
    if (le32(h + 4) + 8 != (uint64_t)size) return EINVAL;
    return 0;
}

static int check_jpeg(int64_t size, formats_read_fn rd, void *ud, const char **why) {
    unsigned char h[3], t[2];
    *why = "not a JPEG file (must start FF D8 FF and end FF D9)";
    if (size < 5 || rd(ud, h, 3, 0) || rd(ud, t, 2, size - 2) || h[0] != 0xFF || h[1] != 0xD8 ||
        h[2] != 0xFF || t[0] != 0xFF || t[1] != 0xD9)
        return EINVAL;
    return 0;
}

int formats_check(formats_format f, int64_t size, formats_read_fn rd, void *ud, const char **why) {
    unsigned char head[12];
    *why = "the file is empty";
    if (size <= 0) return EINVAL;
    if (f == FORMATS_SNIFF) {
        size_t n = size < (int64_t)sizeof head ? (size_t)size : sizeof head;
        *why = "cannot read the file";
        if (rd(ud, head, n, 0)) return EIO;
        f = formats_sniff(head, n);
    }
    int err = 0;
    switch (f) {
    case FORMATS_MP4: err = check_mp4(size, rd, ud, why); break;
    case FORMATS_WEBP: err = check_webp(size, rd, ud, why); break;
    case FORMATS_JPEG: err = check_jpeg(size, rd, ud, why); break;
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

int formats_check_buffer(formats_format f, const void *buf, size_t len, const char **why) {
    mem_reader m = {buf, len};
    return formats_check(f, (int64_t)len, read_mem, &m, why);
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

int formats_check_fd(int fd, formats_format f, int64_t expect, const char **why) {
    struct stat st;
    if (fstat(fd, &st) != 0) { *why = "cannot stat the file"; return errno; }
    *why = "the file is empty";
    if (st.st_size == 0) return EINVAL;
    *why = "the file's size differs from the expected size";
    if (expect >= 0 && st.st_size != expect) return EINVAL;
    return formats_check(f, st.st_size, read_fd, &fd, why);
}
