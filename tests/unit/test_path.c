/* test_path.c: unit tests for target, directory and .part names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "path.h"

static void test_split_nested(void **state) {
    char dir[64], base[64];
    assert_int_equal(path_split("a/b/c.mp4", dir, sizeof dir, base, sizeof base), 0);
    assert_string_equal(dir, "a/b");
    assert_string_equal(base, "c.mp4");
    assert_int_equal(path_split("/srv/media/x.bin", dir, sizeof dir, base, sizeof base), 0);
    assert_string_equal(dir, "/srv/media");
    assert_string_equal(base, "x.bin");
}

static void test_split_no_dir(void **state) {
    char dir[64], base[64];
    assert_int_equal(path_split("c.mp4", dir, sizeof dir, base, sizeof base), 0);
    assert_string_equal(dir, ".");
    assert_string_equal(base, "c.mp4");
}

static void test_split_root(void **state) {
    char dir[64], base[64];
    assert_int_equal(path_split("/x", dir, sizeof dir, base, sizeof base), 0);
    assert_string_equal(dir, "/");
    assert_string_equal(base, "x");
}

static void test_split_bad_base(void **state) {
    char dir[64], base[64];
    assert_int_equal(path_split("a/b/", dir, sizeof dir, base, sizeof base), -1);
    assert_int_equal(path_split("/", dir, sizeof dir, base, sizeof base), -1);
    assert_int_equal(path_split("", dir, sizeof dir, base, sizeof base), -1);
    assert_int_equal(path_split("a/..", dir, sizeof dir, base, sizeof base), -1);
    assert_int_equal(path_split("..", dir, sizeof dir, base, sizeof base), -1);
    assert_int_equal(path_split("a/.", dir, sizeof dir, base, sizeof base), -1);
    assert_int_equal(path_split(".", dir, sizeof dir, base, sizeof base), -1);
    /* hidden files are fine */
    assert_int_equal(path_split("a/.x", dir, sizeof dir, base, sizeof base), 0);
    assert_string_equal(base, ".x");
}

static void test_split_small_buffers(void **state) {
    char dir[64], base[64];
    /* base "c.mp4" needs 6 bytes */
    assert_int_equal(path_split("a/b/c.mp4", dir, sizeof dir, base, 5), -1);
    assert_int_equal(path_split("a/b/c.mp4", dir, sizeof dir, base, 6), 0);
    assert_string_equal(base, "c.mp4");
    /* dir "a/b" needs 4 bytes */
    assert_int_equal(path_split("a/b/c.mp4", dir, 3, base, sizeof base), -1);
    assert_int_equal(path_split("a/b/c.mp4", dir, 4, base, sizeof base), 0);
    assert_string_equal(dir, "a/b");
    /* "." and "/" need 2 bytes */
    assert_int_equal(path_split("c", dir, 1, base, sizeof base), -1);
    assert_int_equal(path_split("/c", dir, 1, base, sizeof base), -1);
    assert_int_equal(path_split("c", dir, 2, base, sizeof base), 0);
    assert_string_equal(dir, ".");
}

static void test_part_name(void **state) {
    char out[32];
    assert_int_equal(path_part_name("c.mp4", out, sizeof out), 0);
    assert_string_equal(out, ".c.mp4.part");
    /* ".c.mp4.part" is 11 chars: needs 12 bytes */
    assert_int_equal(path_part_name("c.mp4", out, 12), 0);
    assert_string_equal(out, ".c.mp4.part");
    assert_int_equal(path_part_name("c.mp4", out, 11), -1);
    assert_int_equal(path_part_name("c.mp4", out, 0), -1);
}

static void test_is_component(void **state) {
    assert_true(path_is_component("a", 1));
    assert_true(path_is_component(".hidden", 7));
    assert_true(path_is_component("...", 3));
    assert_false(path_is_component("", 0));
    assert_false(path_is_component(".", 1));
    assert_false(path_is_component("..", 2));
    assert_false(path_is_component("/", 1));
    assert_false(path_is_component("a/b", 3));
    assert_false(path_is_component("a\0b", 3));
    /* only LEN bytes are looked at */
    assert_true(path_is_component("ab/", 2));
    assert_true(path_is_component("..x", 3));
}

static void test_is_component_length(void **state) {
    char name[257];
    memset(name, 'n', sizeof name);
    name[256] = '\0';
    assert_true(path_is_component(name, 255));
    assert_false(path_is_component(name, 256));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_nested),
        cmocka_unit_test(test_split_no_dir),
        cmocka_unit_test(test_split_root),
        cmocka_unit_test(test_split_bad_base),
        cmocka_unit_test(test_split_small_buffers),
        cmocka_unit_test(test_part_name),
        cmocka_unit_test(test_is_component),
        cmocka_unit_test(test_is_component_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
