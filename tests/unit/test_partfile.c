/* test_partfile.c: unit tests for the .part file's block pipeline on a real loop and thread
 * pool: the hash of every byte in order, the wait while a block is busy, the tail, a resumed
 * prefix, a restart, O_DIRECT on and off, what a close keeps, and a commit that never
 * replaces a file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "partfile.h"

typedef struct fixture {
    char dir[64], path[128], part[128];
    uv_loop_t loop;
    EVP_MD_CTX *sha;
    int ready_calls;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/test_partfile.XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/v.mp4", f->dir);
    snprintf(f->part, sizeof f->part, "%s/.v.mp4.part", f->dir);
    uv_loop_init(&f->loop);
    f->sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(f->sha, EVP_sha256(), NULL);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    unlink(f->path);
    unlink(f->part);
    rmdir(f->dir);
    uv_loop_close(&f->loop);
    EVP_MD_CTX_free(f->sha);
    free(f);
    return 0;
}

static void on_ready(void *ud) { ((fixture *)ud)->ready_calls++; }

static void open_part(fixture *f, partfile *p, int flags, int64_t *kept) {
    const char *what;
    partfile_init(p);
    p->loop = &f->loop;
    p->sha = f->sha;
    p->ready = on_ready;
    p->ud = f;
    assert_int_equal(partfile_open(p, f->path, flags, kept, &what), 0);
}

/* Deterministic bytes, different at every offset. */
static void pattern(char *buf, size_t len, size_t from) {
    for (size_t i = 0; i < len; i++) buf[i] = (char)((from + i) * 2654435761u >> 13);
}

/* Write LEN pattern bytes in pieces of PIECE, waiting on the loop whenever a block is busy. */
static void feed(fixture *f, partfile *p, size_t from, size_t len, size_t piece) {
    char *buf = malloc(piece);
    for (size_t done = 0; done < len;) {
        size_t n = len - done < piece ? len - done : piece;
        pattern(buf, n, from + done);
        while (partfile_full(p, n)) uv_run(&f->loop, UV_RUN_ONCE);
        assert_int_equal(partfile_write(p, buf, n), 0);
        done += n;
    }
    free(buf);
}

static void expect_digest(fixture *f, size_t len) {
    unsigned char got[32], want[32];
    unsigned n = 0;
    char *all = malloc(len ? len : 1);
    pattern(all, len, 0);
    EVP_DigestFinal_ex(f->sha, got, &n);
    EVP_Digest(all, len, want, NULL, EVP_sha256(), NULL);
    assert_memory_equal(got, want, 32);
    free(all);
}

static void expect_file(const char *path, size_t len) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, (off_t)len);
    if (len == 0) return;
    char *want = malloc(len), *got = malloc(len);
    pattern(want, len, 0);
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, got, len, 0), (ssize_t)len);
    close(fd);
    assert_memory_equal(got, want, len);
    free(want);
    free(got);
}

static void finish_and_commit(fixture *f, partfile *p) {
    while (partfile_busy(p)) uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(partfile_finish(p), 0);
    assert_int_equal(partfile_commit(p), 0);
    partfile_close(p);
}

static void run_whole(void **state, int flags, size_t len, size_t piece) {
    fixture *f = *state;
    partfile p;
    int64_t kept;
    open_part(f, &p, flags, &kept);
    assert_int_equal(kept, 0);
    feed(f, &p, 0, len, piece);
    finish_and_commit(f, &p);
    expect_digest(f, len);
    expect_file(f->path, len);
    assert_int_equal(access(f->part, F_OK), -1);
}

/* Blocks of 256 KiB, pieces of 16 KiB (libcurl's usual) and odd sizes, with a tail. */
static void test_direct_blocks_hash_every_byte_in_order(void **state) {
    run_whole(state, PARTFILE_DIRECT, 5 * PARTFILE_BLOCK + 12345, 16384);
    assert_true(((fixture *)*state)->ready_calls >= 5);
}

static void test_buffered_odd_pieces(void **state) {
    run_whole(state, 0, 3 * PARTFILE_BLOCK + 1, 7919);
}

static void test_whole_block_pieces_and_empty_file(void **state) {
    run_whole(state, PARTFILE_DIRECT, 2 * PARTFILE_BLOCK, PARTFILE_BLOCK);
    fixture *f = *state;
    EVP_DigestInit_ex(f->sha, EVP_sha256(), NULL);
    unlink(f->path);
    run_whole(state, PARTFILE_DIRECT, 0, 16384);
}

/* A file already under the final name is never replaced: the commit fails with EEXIST and
 * keeps the .part. */
static void test_commit_never_replaces(void **state) {
    fixture *f = *state;
    int fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "mine", 4), 4);
    close(fd);
    partfile p;
    int64_t kept;
    open_part(f, &p, 0, &kept);
    feed(f, &p, 0, 1000, 100);
    while (partfile_busy(&p)) uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(partfile_finish(&p), 0);
    assert_int_equal(partfile_commit(&p), EEXIST);
    partfile_close(&p);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_size, 4);
    assert_int_equal(stat(f->part, &st), 0);
    assert_int_equal(st.st_size, 1000);
}

/* While one block is on the thread pool, the next may fill but not overflow. */
static void test_full_while_busy(void **state) {
    fixture *f = *state;
    partfile p;
    int64_t kept;
    open_part(f, &p, PARTFILE_DIRECT, &kept);
    char *buf = malloc(PARTFILE_BLOCK);
    pattern(buf, PARTFILE_BLOCK, 0);
    assert_true(p.direct);                       /* ext4 and tmpfs (Linux 6.6+) take O_DIRECT */
    assert_int_equal(partfile_write(&p, buf, PARTFILE_BLOCK), 0);   /* fills and submits */
    assert_true(partfile_busy(&p));
    assert_false(partfile_full(&p, PARTFILE_BLOCK - 1));
    assert_true(partfile_full(&p, PARTFILE_BLOCK));
    assert_int_equal(partfile_write(&p, buf, PARTFILE_BLOCK), EBUSY);  /* nothing taken */
    assert_int_equal(partfile_write(&p, buf, PARTFILE_BLOCK + 1), E2BIG);
    assert_int_equal(partfile_restart(&p), EBUSY);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->ready_calls, 1);
    assert_false(partfile_busy(&p));
    pattern(buf, PARTFILE_BLOCK, PARTFILE_BLOCK);
    assert_int_equal(partfile_write(&p, buf, PARTFILE_BLOCK), 0);
    finish_and_commit(f, &p);
    expect_digest(f, 2 * PARTFILE_BLOCK);
    expect_file(f->path, 2 * PARTFILE_BLOCK);
    free(buf);
}

/* A .part left by an earlier attempt: LEN pattern bytes. */
static void leave_part(fixture *f, size_t len) {
    char *buf = malloc(len);
    pattern(buf, len, 0);
    int fd = open(f->part, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
    free(buf);
}

/* A resume keeps the prefix and hashes it from the file before the first new block. */
static void test_resume_hashes_the_prefix(void **state) {
    fixture *f = *state;
    size_t prefix = PARTFILE_BLOCK + 777, total = 4 * PARTFILE_BLOCK + 5;
    leave_part(f, prefix);
    partfile p;
    int64_t kept;
    open_part(f, &p, PARTFILE_RESUME | PARTFILE_DIRECT, &kept);
    assert_int_equal(kept, (int64_t)prefix);
    feed(f, &p, prefix, total - prefix, 16384);
    finish_and_commit(f, &p);
    expect_digest(f, total);
    expect_file(f->path, total);
}

/* Every byte already there (HTTP 416 on resume): the whole file is hashed at the end. */
static void test_resume_with_nothing_new(void **state) {
    fixture *f = *state;
    size_t len = 100000;
    leave_part(f, len);
    partfile p;
    int64_t kept;
    open_part(f, &p, PARTFILE_RESUME, &kept);
    finish_and_commit(f, &p);
    expect_digest(f, len);
}

/* The server ignored the range: the prefix and the hash start over. */
static void test_restart_empties_and_rehashes(void **state) {
    fixture *f = *state;
    int fd = open(f->part, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(write(fd, "stale bytes", 11), 11);
    close(fd);
    partfile p;
    int64_t kept;
    open_part(f, &p, PARTFILE_RESUME, &kept);
    assert_int_equal(kept, 11);
    assert_int_equal(partfile_restart(&p), 0);
    feed(f, &p, 0, PARTFILE_BLOCK + 3, 16384);
    finish_and_commit(f, &p);
    expect_digest(f, PARTFILE_BLOCK + 3);
    expect_file(f->path, PARTFILE_BLOCK + 3);
}

/* A close before the end keeps every byte received, block or not, for the next resume. */
static void test_close_keeps_what_was_received(void **state) {
    fixture *f = *state;
    partfile p;
    int64_t kept;
    open_part(f, &p, PARTFILE_DIRECT, &kept);
    feed(f, &p, 0, 2 * PARTFILE_BLOCK + 999, 16384);
    while (partfile_busy(&p)) uv_run(&f->loop, UV_RUN_ONCE);
    partfile_close(&p);
    expect_file(f->part, 2 * PARTFILE_BLOCK + 999);
    assert_int_equal(access(f->path, F_OK), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_direct_blocks_hash_every_byte_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffered_odd_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_never_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whole_block_pieces_and_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_while_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_hashes_the_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_with_nothing_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_empties_and_rehashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_keeps_what_was_received, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
