/* fuzz_formats: the checks that decide whether a downloaded file is whole (formats.c:
 * formats_check_buffer, formats_sniff), with the signatures lua/assetd/formats.lua gives. The
 * first input byte picks the signature (MP4: "ftyp" at 4 + isobmff, WebP: RIFF/WEBP + riff,
 * JPEG: FF D8 FF ... FF D9, sniff), the rest is the file. Properties: the check never reads
 * outside the buffer (ASan), answers 0 or EINVAL, with a reason exactly when it refuses; it
 * agrees with an independent reference for each (ISO BMFF: top-level boxes tile the file
 * exactly, printable types, largesize when 1, size 0 to the end; RIFF: RIFF size + 8 is the
 * size); and a sniffed check is the check of the structure sniffed. */
#include "harness.h"
#include "formats.h"

#include <errno.h>
#include <string.h>

static uint64_t rbe(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* The tiling rule read straight from ISO/IEC 14496-12 4.2, box by box. */
static int ref_isobmff(const uint8_t *p, size_t n) {
    size_t off = 0;
    unsigned boxes = 0;
    if (n == 0) return 0;
    while (off < n) {
        size_t rest = n - off;
        if (rest < 8 || ++boxes > (1u << 20)) return 0;
        for (int i = 4; i < 8; i++)
            if (p[off + i] < 0x20 || p[off + i] > 0x7E) return 0;
        uint64_t size = rbe(p + off, 4), hdr = 8;
        if (size == 1) {
            if (rest < 16) return 0;
            size = rbe(p + off + 8, 8);
            hdr = 16;
        } else if (size == 0) {
            size = rest;
        }
        if (size < hdr || size > rest) return 0;
        off += (size_t)size;
    }
    return 1;
}

static int ref_riff(const uint8_t *p, size_t n) {
    if (n < 12 || memcmp(p, "RIFF", 4)) return 0;
    uint64_t riff = (uint64_t)p[4] | (uint64_t)p[5] << 8 | (uint64_t)p[6] << 16 | (uint64_t)p[7] << 24;
    return riff + 8 == n;
}

static int ref_mp4(const uint8_t *p, size_t n) { return n >= 8 && !memcmp(p + 4, "ftyp", 4) && ref_isobmff(p, n); }
static int ref_webp(const uint8_t *p, size_t n) { return n >= 12 && !memcmp(p + 8, "WEBP", 4) && ref_riff(p, n); }

static int ref_jpeg(const uint8_t *p, size_t n) {
    return n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF && p[n - 2] == 0xFF && p[n - 1] == 0xD9;
}

enum { MP4, WEBP, JPEG, SNIFF };

static int ref(int pick, const uint8_t *p, size_t n) {
    switch (pick) {
    case MP4: return ref_mp4(p, n);
    case WEBP: return ref_webp(p, n);
    case JPEG: return ref_jpeg(p, n);
    default:
        switch (formats_sniff(p, n < 12 ? n : 12)) {
        case FORMATS_ISOBMFF: return ref_isobmff(p, n);
        case FORMATS_RIFF: return ref_riff(p, n);
        default: return n > 0;
        }
    }
}

static void head(formats_sig *s, int64_t off, const char *b, size_t len) {
    s->head[s->nhead].offset = off;
    s->head[s->nhead].len = len;
    memcpy(s->head[s->nhead++].bytes, b, len);
}

/* The signature formats.lua gives for PICK. */
static formats_sig sig_of(int pick) {
    formats_sig s;
    memset(&s, 0, sizeof s);
    switch (pick) {
    case MP4: head(&s, 4, "ftyp", 4); s.structure = FORMATS_ISOBMFF; break;
    case WEBP: head(&s, 0, "RIFF", 4); head(&s, 8, "WEBP", 4); s.structure = FORMATS_RIFF; break;
    case JPEG: head(&s, 0, "\xFF\xD8\xFF", 3); memcpy(s.tail, "\xFF\xD9", 2); s.tail_len = 2; break;
    default: s.structure = FORMATS_SNIFF;
    }
    return s;
}

static int check(const formats_sig *s, const uint8_t *p, size_t n) {
    char why[320] = "unset";
    int err = formats_check_buffer(s, p, n, why, sizeof why);
    FUZZ_CHECK(err == 0 || err == EINVAL, "structure %d: error %d", (int)s->structure, err);
    FUZZ_CHECK(err ? why[0] != '\0' : why[0] == '\0', "structure %d: reason \"%s\" with error %d",
               (int)s->structure, why, err);
    return err == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int pick = data[0] % 4;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    formats_sig s = sig_of(pick);
    int ok = check(&s, p, n);
    FUZZ_CHECK(ok == ref(pick, p, n), "signature %d of %zu bytes: check says %d", pick, n, ok);
    if (pick == SNIFF) {
        s.structure = formats_sniff(p, n < 12 ? n : 12);
        FUZZ_CHECK(ok == check(&s, p, n), "sniffed structure %d disagrees with its own check", (int)s.structure);
    }
    return 0;
}
