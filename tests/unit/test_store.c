/* Unit tests for store.c: ids, batch directories and planted links, version scanning,
 * file signatures. Each test works in its own temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"
#include "store.h"

static char root[64];
static int rootfd = -1;

static int setup(void **state) {
    strcpy(root, "/tmp/assetd-store-XXXXXX");
    if (!mkdtemp(root)) return -1;
    return store_open_root(root, &rootfd);
}

static int teardown(void **state) {
    char cmd[128];
    close(rootfd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd);
}

static void touch(int dirfd, const char *name, const void *data, size_t n) {
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal((ssize_t)n, write(fd, data, n));
    close(fd);
}

static void test_ids(void **state) {
    char long_id[130];
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    assert_true(store_valid_id("batch_01-A"));
    assert_false(store_valid_id(""));
    assert_false(store_valid_id("../x"));
    assert_false(store_valid_id("a/b"));
    assert_false(store_valid_id("a b"));
    assert_false(store_valid_id(long_id));
    long_id[128] = '\0';
    assert_true(store_valid_id(long_id));
}

static void test_batch_dir_and_planted_link(void **state) {
    int fd;
    assert_int_equal(0, store_open_batch(rootfd, "b1", 1, &fd));
    close(fd);
    assert_int_equal(EINVAL, store_open_batch(rootfd, "..", 1, &fd));
    assert_int_equal(0, symlinkat("/tmp", rootfd, "evil"));
    assert_int_equal(ELOOP, store_open_batch(rootfd, "evil", 1, &fd));
    assert_int_equal(ENOENT, store_open_batch(rootfd, "missing", 0, &fd));
}

typedef struct max_of {
    const char *video;
    int64_t max;
    int calls;
} max_of;

static void keep_max(const char *video, size_t len, int64_t n, void *ud) {
    max_of *m = ud;
    m->calls++;
    if (strlen(m->video) == len && memcmp(video, m->video, len) == 0 && n > m->max) m->max = n;
}

static int64_t highest(int fd, const char *video) {
    max_of m = {video, 0, 0};
    assert_int_equal(0, store_scan_versions(fd, keep_max, &m));
    return m.max;
}

static void test_scan_versions(void **state) {
    int fd;
    assert_int_equal(0, store_open_batch(rootfd, "b2", 1, &fd));
    assert_int_equal(0, highest(fd, "vid"));
    touch(fd, "vid_V1.mp4", "x", 1);
    touch(fd, "vid_V3_thumbnail.webp", "x", 1);
    touch(fd, ".vid_V7.mp4.part", "x", 1);      /* a reserved version being written */
    touch(fd, "vid_x_V99.mp4", "x", 1);         /* another video whose id extends ours */
    touch(fd, "vid_V12abc.mp4", "x", 1);        /* not our pattern */
    touch(fd, "xvid_V50.mp4", "x", 1);
    touch(fd, "vid_V2_V40.mp4", "x", 1);        /* version 2 of "vid", or 40 of "vid_V2" */
    touch(fd, "_V60.mp4", "x", 1);              /* no video id */
    touch(fd, "vid_V", "x", 1);
    assert_int_equal(7, highest(fd, "vid"));
    assert_int_equal(99, highest(fd, "vid_x"));
    assert_int_equal(50, highest(fd, "xvid"));
    assert_int_equal(40, highest(fd, "vid_V2"));
    assert_int_equal(0, highest(fd, ""));
    close(fd);
}

/* A signature as formats.lua gives one: up to two head entries, a tail, a structure. */
static formats_sig sig(const char *name, int64_t off1, const char *b1, int64_t off2, const char *b2,
                       const char *tail, formats_structure st) {
    formats_sig s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "%s", name);
    if (b1) { s.head[s.nhead].offset = off1; s.head[s.nhead].len = strlen(b1); memcpy(s.head[s.nhead++].bytes, b1, strlen(b1)); }
    if (b2) { s.head[s.nhead].offset = off2; s.head[s.nhead].len = strlen(b2); memcpy(s.head[s.nhead++].bytes, b2, strlen(b2)); }
    if (tail) { s.tail_len = strlen(tail); memcpy(s.tail, tail, s.tail_len); }
    s.structure = st;
    return s;
}

static formats_sig video(void) { return sig("video", 4, "ftyp", 0, NULL, NULL, FORMATS_ISOBMFF); }
static formats_sig thumb(void) { return sig("thumbnail", 0, "RIFF", 8, "WEBP", NULL, FORMATS_RIFF); }
static formats_sig sprite(void) { return sig("spritesheet", 0, "\xFF\xD8\xFF", 0, NULL, "\xFF\xD9", FORMATS_NONE); }

/* Check N bytes of DATA as a file by S: WANT the answer, and when refused, that the reason
 * holds WHY. */
static void check(formats_sig s, const void *data, size_t n, int64_t expect, int want, const char *why) {
    int fd;
    char got[320];
    assert_int_equal(0, store_open_batch(rootfd, "b3", 1, &fd));
    touch(fd, "f", data, n);
    int ffd = openat(fd, "f", O_RDONLY);
    int err = formats_check_fd(ffd, &s, expect, got, sizeof got);
    if (err != want) print_error("%s: got %d (%s), want %d\n", s.name, err, got, want);
    assert_int_equal(want, err);
    if (want) assert_non_null(strstr(got, why));
    else assert_string_equal("", got);
    close(ffd);
    close(fd);
}

static void test_signatures(void **state) {
    static const unsigned char mp4[16] = {0, 0, 0, 0x10, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm'};
    static const unsigned char webp[16] = {'R', 'I', 'F', 'F', 8, 0, 0, 0, 'W', 'E', 'B', 'P'};
    static const unsigned char riff[16] = {'R', 'I', 'F', 'F', 8, 0, 0, 0, 'W', 'A', 'V', 'E'};
    static const unsigned char jpg[6] = {0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xD9};
    static const unsigned char jpg_cut[6] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00};
    formats_sig any = sig("", 0, NULL, 0, NULL, NULL, FORMATS_NONE);
    check(video(), mp4, sizeof mp4, -1, 0, NULL);
    check(video(), mp4, sizeof mp4, 16, 0, NULL);
    check(video(), mp4, sizeof mp4, 17, EINVAL, "video: the file's size (16 bytes) differs from the expected size (17)");
    check(video(), webp, sizeof webp, -1, EINVAL, "video: bytes at 4 are not \"ftyp\"");
    check(thumb(), webp, sizeof webp, -1, 0, NULL);
    check(thumb(), webp, 15, -1, EINVAL, "RIFF size");                 /* RIFF size says 16 */
    check(thumb(), riff, sizeof riff, -1, EINVAL, "thumbnail: bytes at 8 are not \"WEBP\"");
    check(thumb(), mp4, sizeof mp4, -1, EINVAL, "thumbnail: bytes at 0 are not \"RIFF\"");
    check(thumb(), webp, 6, -1, EINVAL, "bytes at 8 are not \"WEBP\" (the file has only 6 bytes)");
    check(sprite(), jpg, sizeof jpg, -1, 0, NULL);
    check(sprite(), jpg_cut, sizeof jpg_cut, -1, EINVAL, "spritesheet: the file does not end FF D9");
    check(sprite(), jpg, 1, -1, EINVAL, "bytes at 0 are not FF D8 FF");
    check(video(), "", 0, -1, EINVAL, "video: the file is empty");
    check(any, "x", 1, -1, 0, NULL);
    check(any, "", 0, -1, EINVAL, "the file is empty");
    /* a head entry past the start, and one at the very end of the file */
    check(sig("audio", 0, "ID3", 5, "x", NULL, FORMATS_NONE), "ID3\4\1x", 6, -1, 0, NULL);
    check(sig("audio", 0, "ID3", 5, "xy", NULL, FORMATS_NONE), "ID3\4\1x", 6, -1, EINVAL, "only 6 bytes");
    check(sig("audio", 0, NULL, 0, NULL, "ID3\4\1x", FORMATS_NONE), "ID3\4\1x", 6, -1, 0, NULL);
    check(sig("audio", 0, NULL, 0, NULL, "xID3\4\1x", FORMATS_NONE), "ID3\4\1x", 6, -1, EINVAL, "only 6 bytes");
    /* sniffing: the structures announce themselves */
    formats_sig sniff = sig("", 0, NULL, 0, NULL, NULL, FORMATS_SNIFF);
    check(sniff, webp, 15, -1, EINVAL, "RIFF size");
    check(sniff, riff, sizeof riff, -1, 0, NULL);
    check(sniff, jpg_cut, sizeof jpg_cut, -1, 0, NULL);                 /* no structure: bytes only */
}

/* The ISO BMFF walk: top-level boxes must tile the file exactly. */
static int mp4_ok(const unsigned char *p, size_t n) {
    char why[320];
    formats_sig s = sig("", 0, NULL, 0, NULL, NULL, FORMATS_ISOBMFF);
    int err = formats_check_buffer(&s, p, n, why, sizeof why);
    if (err) assert_true(why[0] != '\0');
    return err == 0;
}

static void test_mp4_boxes(void **state) {
    /* ftyp (16) + mdat (24) */
    unsigned char f[40] = {0, 0, 0, 16, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0, 0, 0, 0,
                           0, 0, 0, 24, 'm', 'd', 'a', 't'};
    assert_true(mp4_ok(f, 40));
    assert_false(mp4_ok(f, 39));                 /* truncated: mdat runs past the end */
    assert_false(mp4_ok(f, 20));                 /* a box header cut off */
    f[19] = 20;                                  /* mdat shorter than the file: 4 bytes left over */
    assert_false(mp4_ok(f, 40));
    f[19] = 0;                                   /* size 0: to the end of the file */
    assert_true(mp4_ok(f, 40));
    assert_true(mp4_ok(f, 24));
    f[19] = 4;                                   /* smaller than its header */
    assert_false(mp4_ok(f, 40));
    /* size 1: a 64-bit largesize after the type */
    unsigned char g[48] = {0, 0, 0, 16, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm', 0, 0, 0, 0,
                           0, 0, 0, 1, 'm', 'd', 'a', 't', 0, 0, 0, 0, 0, 0, 0, 32};
    assert_true(mp4_ok(g, 48));
    assert_false(mp4_ok(g, 47));
    g[31] = 15;                                  /* largesize below its 16-byte header */
    assert_false(mp4_ok(g, 48));
    g[31] = 32;
    g[21] = 0x01;                                /* a type that is not printable: spliced bytes */
    assert_false(mp4_ok(g, 48));
    f[4] = 'm';                                  /* no ftyp first: the walk does not ask (a MOV */
    f[19] = 24;                                  /* may open with moov); the signature does */
    assert_true(mp4_ok(f, 40));
    assert_int_equal(FORMATS_ISOBMFF, formats_sniff(g, 12));
    assert_int_equal(FORMATS_NONE, formats_sniff(f, 12));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_batch_dir_and_planted_link),
        cmocka_unit_test(test_scan_versions),
        cmocka_unit_test(test_signatures),
        cmocka_unit_test(test_mp4_boxes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
