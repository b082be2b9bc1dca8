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
    (void)state;
    strcpy(root, "/tmp/assetd-store-XXXXXX");
    if (!mkdtemp(root)) return -1;
    return store_open_root(root, &rootfd);
}

static int teardown(void **state) {
    (void)state;
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
    (void)state;
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
    (void)state;
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
    (void)state;
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

static void check(const char *format, const void *data, size_t n, int64_t expect, int want) {
    int fd;
    const char *why = NULL;
    formats_format f;
    assert_int_equal(0, formats_by_name(format, &f));
    assert_int_equal(0, store_open_batch(rootfd, "b3", 1, &fd));
    touch(fd, "f", data, n);
    int ffd = openat(fd, "f", O_RDONLY);
    assert_int_equal(want, formats_check_fd(ffd, f, expect, &why));
    if (want) assert_non_null(why);
    close(ffd);
    close(fd);
}

static void test_signatures(void **state) {
    (void)state;
    static const unsigned char mp4[16] = {0, 0, 0, 0x10, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm'};
    static const unsigned char webp[16] = {'R', 'I', 'F', 'F', 8, 0, 0, 0, 'W', 'E', 'B', 'P'};
    static const unsigned char jpg[6] = {0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xD9};
    static const unsigned char jpg_cut[6] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00};
    check("mp4", mp4, sizeof mp4, -1, 0);
    check("mp4", mp4, sizeof mp4, 16, 0);
    check("mp4", mp4, sizeof mp4, 17, EINVAL);
    check("mp4", webp, sizeof webp, -1, EINVAL);
    check("webp", webp, sizeof webp, -1, 0);
    check("webp", webp, 15, -1, EINVAL);                /* RIFF size says 16 */
    check("webp", mp4, sizeof mp4, -1, EINVAL);
    check("jpeg", jpg, sizeof jpg, -1, 0);
    check("jpeg", jpg_cut, sizeof jpg_cut, -1, EINVAL);
    check("mp4", "", 0, -1, EINVAL);
    check("any", "x", 1, -1, 0);
}

/* The structural MP4 check: top-level boxes must tile the file exactly. */
static int mp4_ok(const unsigned char *p, size_t n) {
    const char *why = NULL;
    int err = formats_check_buffer(FORMATS_MP4, p, n, &why);
    if (err) assert_non_null(why);
    return err == 0;
}

static void test_mp4_boxes(void **state) {
    (void)state;
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
    f[4] = 'm';                                  /* no ftyp first */
    assert_false(mp4_ok(f, 40));
    assert_int_equal(FORMATS_MP4, formats_sniff(g, 12));
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
