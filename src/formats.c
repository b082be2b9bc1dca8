/* formats.c: is the file whole, by the signature its caller gives? A body that came without
 * Content-Length (or with a wrong one) is only as good as what its bytes say: the head bytes
 * at their offsets, the tail at the end, and for a container whose headers state its length,
 * that length (ISO BMFF: the top-level boxes tile the file exactly; RIFF: the RIFF size covers
 * it). Only headers are read, box to box, so the cost does not grow with the file's size. */
#include "formats.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A real MP4 has a handful of top-level boxes, a fragmented one two per fragment (7,200 for
 * two hours in 2 s fragments); past this many, 8-byte boxes would make the walk a full read. */
#define MP4_MAX_BOXES (1u << 20)

const char *const formats_structures[] = {"none", "isobmff", "riff", NULL};

int formats_structure_by_name(const char *name, formats_structure *s) {
    for (int i = 1; formats_structures[i]; i++)
        if (strcmp(name, formats_structures[i]) == 0) { *s = (formats_structure)i; return 0; }
    return EINVAL;
}

int formats_sig_empty(const formats_sig *sig) {
    return sig->nhead == 0 && sig->tail_len == 0 && sig->structure == FORMATS_NONE;
}

/* The containers announce themselves: a box type "ftyp" at 4, a "RIFF" tag at 0. */
formats_structure formats_sniff(const unsigned char *head, size_t len) {
    if (len >= 8 && !memcmp(head + 4, "ftyp", 4)) return FORMATS_ISOBMFF;
    if (len >= 12 && !memcmp(head, "RIFF", 4)) return FORMATS_RIFF;
    return FORMATS_NONE;
}

/* Put the reason, led by SIG's name, into WHY: returns ERR. */
static int refuse(int err, const formats_sig *sig, char *why, size_t whylen, const char *fmt, ...) {
    int n = sig->name[0] ? snprintf(why, whylen, "%s: ", sig->name) : 0;
    if (n < 0 || (size_t)n >= whylen) return err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why + n, whylen - (size_t)n, fmt, ap);
    va_end(ap);
    return err;
}

/* BYTES as a message shows them: "WEBP" when printable, else hex (FF D9). OUT holds 3 per byte. */
static const char *show(const unsigned char *b, size_t len, char out[3 * FORMATS_BYTES_MAX + 3]) {
    size_t i = 0, o = 0;
    while (i < len && b[i] >= 0x20 && b[i] <= 0x7E && b[i] != '"' && b[i] != '\\') i++;
    if (i == len) {
        out[o++] = '"';
        memcpy(out + o, b, len);
        o += len;
        out[o++] = '"';
    } else {
        for (i = 0; i < len; i++) o += (size_t)sprintf(out + o, i ? " %02X" : "%02X", b[i]);
    }
    out[o] = '\0';
    return out;
}

static uint64_t be32(const unsigned char *p) {
    return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p) { return be32(p) << 32 | be32(p + 4); }

static uint64_t le32(const unsigned char *p) {
    return (uint64_t)p[3] << 24 | (uint64_t)p[2] << 16 | (uint64_t)p[1] << 8 | p[0];
}

/* ---- the byte signature ------------------------------------------------------------------ */

static int check_head(const formats_sig *sig, int64_t size, formats_read_fn rd, void *ud, char *why,
                      size_t whylen) {
    unsigned char got[FORMATS_BYTES_MAX];
    char want[3 * FORMATS_BYTES_MAX + 3];
    for (size_t i = 0; i < sig->nhead; i++) {
        const formats_bytes *h = &sig->head[i];
        if (size < (int64_t)h->len || h->offset > size - (int64_t)h->len)
            return refuse(EINVAL, sig, why, whylen, "bytes at %lld are not %s (the file has only %lld bytes)",
                          (long long)h->offset, show(h->bytes, h->len, want), (long long)size);
        if (rd(ud, got, h->len, h->offset)) return refuse(EIO, sig, why, whylen, "cannot read the file");
        if (memcmp(got, h->bytes, h->len))
            return refuse(EINVAL, sig, why, whylen, "bytes at %lld are not %s", (long long)h->offset,
                          show(h->bytes, h->len, want));
    }
    return 0;
}

static int check_tail(const formats_sig *sig, int64_t size, formats_read_fn rd, void *ud, char *why,
                      size_t whylen) {
    unsigned char got[FORMATS_BYTES_MAX];
    char want[3 * FORMATS_BYTES_MAX + 3];
    size_t n = sig->tail_len;
    if (n == 0) return 0;
    if (size < (int64_t)n)
        return refuse(EINVAL, sig, why, whylen, "the file does not end %s (it has only %lld bytes)",
                      show(sig->tail, n, want), (long long)size);
    if (rd(ud, got, n, size - (int64_t)n)) return refuse(EIO, sig, why, whylen, "cannot read the file");
    if (memcmp(got, sig->tail, n))
        return refuse(EINVAL, sig, why, whylen, "the file does not end %s (cut short?)", show(sig->tail, n, want));
    return 0;
}

/* ---- the structures ---------------------------------------------------------------------- */

/* Top-level box types are four printable ASCII characters; bytes spliced or flipped into a
 * box header rarely are. */
static int box_type_ok(const unsigned char *t) {
    for (int i = 0; i < 4; i++)
        if (t[i] < 0x20 || t[i] > 0x7E) return 0;
    return 1;
}

/* The length of the box at OFF (REST bytes left in the file), or 0 with *WHY set. */
static uint64_t box_len(int64_t off, int64_t rest, formats_read_fn rd, void *ud, const char **why) {
    unsigned char h[16];
    uint64_t len, hdr = 8;
    *why = "ISO BMFF: a box header is cut off (truncated file)";
    if (rest < 8 || rd(ud, h, 8, off)) return 0;
    *why = "ISO BMFF: a top-level box type is not four printable characters (corrupt or spliced file)";
    if (!box_type_ok(h + 4)) return 0;
    len = be32(h);
    if (len == 1) {                         /* 64-bit largesize follows the type */
        *why = "ISO BMFF: a box header is cut off (truncated file)";
        if (rest < 16 || rd(ud, h + 8, 8, off + 8)) return 0;
        len = be64(h + 8);
        hdr = 16;
    } else if (len == 0) {
        len = (uint64_t)rest;               /* to the end of the file: by definition the last */
    }
    *why = "ISO BMFF: a box is smaller than its own header";
    if (len < hdr) return 0;
    *why = "ISO BMFF: a top-level box runs past the end of the file (truncated file)";
    if (len > (uint64_t)rest) return 0;
    return len;
}

static const char *walk_isobmff(int64_t size, formats_read_fn rd, void *ud) {
    const char *why = NULL;
    int64_t off = 0;
    for (unsigned n = 0; off < size; n++) {
        if (n == MP4_MAX_BOXES) return "ISO BMFF: more top-level boxes than any real file has";
        uint64_t len = box_len(off, size - off, rd, ud, &why);
        if (len == 0) return why;
        off += (int64_t)len;
    }
    return NULL;
}

static const char *walk_riff(int64_t size, formats_read_fn rd, void *ud) {
    unsigned char h[8];
    if (size < 12 || rd(ud, h, 8, 0) || memcmp(h, "RIFF", 4)) return "RIFF: no RIFF header";
    if (le32(h + 4) + 8 != (uint64_t)size)
        return "RIFF: the RIFF size + 8 differs from the file size (truncated or spliced file)";
    return NULL;
}

static int check_structure(const formats_sig *sig, int64_t size, formats_read_fn rd, void *ud, char *why,
                           size_t whylen) {
    formats_structure s = sig->structure;
    if (s == FORMATS_SNIFF) {
        unsigned char head[12];
        size_t n = size < (int64_t)sizeof head ? (size_t)size : sizeof head;
        if (rd(ud, head, n, 0)) return refuse(EIO, sig, why, whylen, "cannot read the file");
        s = formats_sniff(head, n);
    }
    const char *bad = s == FORMATS_ISOBMFF ? walk_isobmff(size, rd, ud)
                    : s == FORMATS_RIFF ? walk_riff(size, rd, ud) : NULL;
    return bad ? refuse(EINVAL, sig, why, whylen, "%s", bad) : 0;
}

/* ---- the check --------------------------------------------------------------------------- */

int formats_check(const formats_sig *sig, int64_t size, formats_read_fn rd, void *ud, char *why,
                  size_t whylen) {
    int err;
    if (whylen) why[0] = '\0';
    if (size <= 0) return refuse(EINVAL, sig, why, whylen, "the file is empty");
    if ((err = check_head(sig, size, rd, ud, why, whylen)) != 0) return err;
    if ((err = check_tail(sig, size, rd, ud, why, whylen)) != 0) return err;
    return check_structure(sig, size, rd, ud, why, whylen);
}

typedef struct { const unsigned char *p; size_t len; } mem_reader;

static int read_mem(void *ud, void *buf, size_t n, int64_t off) {
    const mem_reader *m = ud;
    if (off < 0 || (uint64_t)off > m->len || n > m->len - (size_t)off) return -1;
    memcpy(buf, m->p + off, n);
    return 0;
}

int formats_check_buffer(const formats_sig *sig, const void *buf, size_t len, char *why, size_t whylen) {
    mem_reader m = {buf, len};
    return formats_check(sig, (int64_t)len, read_mem, &m, why, whylen);
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

int formats_check_fd(int fd, const formats_sig *sig, int64_t expect, char *why, size_t whylen) {
    struct stat st;
    if (whylen) why[0] = '\0';
    if (fstat(fd, &st) != 0) {
        int err = errno;
        return refuse(err, sig, why, whylen, "cannot stat the file");
    }
    if (st.st_size == 0) return refuse(EINVAL, sig, why, whylen, "the file is empty");
    if (expect >= 0 && st.st_size != expect)
        return refuse(EINVAL, sig, why, whylen, "the file's size (%lld bytes) differs from the expected size (%lld)",
                      (long long)st.st_size, (long long)expect);
    return formats_check(sig, st.st_size, read_fd, &fd, why, whylen);
}
