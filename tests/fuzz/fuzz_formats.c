/* fuzz_formats: the structural checks that decide whether a downloaded file is whole
 * (formats.c: formats_check_buffer, formats_sniff). The first input byte picks the format
 * (MP4, WebP, JPEG, sniff), the rest is the file. Properties: the check never reads outside
 * the buffer (ASan), answers 0 or EINVAL, with a reason exactly when it refuses; it agrees
 * with an independent reference for each format (MP4: top-level boxes tile the file exactly,
 * ftyp first, printable types, largesize when 1, size 0 to the end; WebP: RIFF size + 8 is the
 * size; JPEG: FF D8 FF ... FF D9); and a sniffed check is the check of the format sniffed. */
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
static int ref_mp4(const uint8_t *p, size_t n) {
    size_t off = 0;
    unsigned boxes = 0;
    if (n == 0) return 0;
    while (off < n) {
        size_t rest = n - off;
        if (rest < 8 || ++boxes > (1u << 20)) return 0;
        if (off == 0 && memcmp(p + 4, "ftyp", 4) != 0) return 0;
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

static int ref_webp(const uint8_t *p, size_t n) {
    if (n < 12 || memcmp(p, "RIFF", 4) || memcmp(p + 8, "WEBP", 4)) return 0;
    uint64_t riff = (uint64_t)p[4] | (uint64_t)p[5] << 8 | (uint64_t)p[6] << 16 | (uint64_t)p[7] << 24;
    return riff + 8 == n;
}

static int ref_jpeg(const uint8_t *p, size_t n) {
    return n >= 5 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF && p[n - 2] == 0xFF && p[n - 1] == 0xD9;
}

static int ref(formats_format f, const uint8_t *p, size_t n) {
    switch (f) {
    case FORMATS_MP4: return ref_mp4(p, n);
    case FORMATS_WEBP: return ref_webp(p, n);
    case FORMATS_JPEG: return ref_jpeg(p, n);
    default: return n > 0;
    }
}

static int check(formats_format f, const uint8_t *p, size_t n) {
    const char *why = "unset";
    int err = formats_check_buffer(f, p, n, &why);
    FUZZ_CHECK(err == 0 || err == EINVAL, "format %d: error %d", (int)f, err);
    FUZZ_CHECK(err ? why != NULL : why == NULL, "format %d: reason \"%s\" with error %d", (int)f,
               why ? why : "(none)", err);
    return err == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    static const formats_format pick[] = {FORMATS_MP4, FORMATS_WEBP, FORMATS_JPEG, FORMATS_SNIFF};
    formats_format f = pick[data[0] % 4];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    int ok = check(f, p, n);
    formats_format eff = f == FORMATS_SNIFF ? formats_sniff(p, n < 12 ? n : 12) : f;
    FUZZ_CHECK(ok == ref(eff, p, n), "format %d (checked as %d) of %zu bytes: check says %d", (int)f,
               (int)eff, n, ok);
    if (f == FORMATS_SNIFF)
        FUZZ_CHECK(ok == check(eff, p, n), "sniffed format %d disagrees with its own check", (int)eff);
    return 0;
}
