/* test_bytebuf.c: unit tests for the growable buffer: growth, the limit, the NUL. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "bytebuf.h"

static void test_grows_and_stays_terminated(void **state) {
    bytebuf b = {0};
    char chunk[700];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 10; i++) assert_int_equal(bytebuf_append(&b, chunk, sizeof chunk, 1 << 20), 0);
    assert_int_equal(b.len, 7000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.p[b.len], '\0');
    assert_int_equal(strlen(b.p), 7000);
    bytebuf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
}

static void test_limit_refuses_without_appending(void **state) {
    bytebuf b = {0};
    assert_int_equal(bytebuf_append(&b, "abcdef", 6, 8), 0);
    assert_int_equal(bytebuf_append(&b, "ghi", 3, 8), -1);      /* 9 > 8: nothing of it */
    assert_int_equal(b.len, 6);
    assert_string_equal(b.p, "abcdef");
    assert_int_equal(bytebuf_append(&b, "gh", 2, 8), 0);        /* exactly the limit */
    assert_string_equal(b.p, "abcdefgh");
    assert_true(b.cap <= 9);                                    /* never allocated past it */
    assert_int_equal(bytebuf_append(&b, "", 0, 8), 0);
    assert_int_equal(bytebuf_append(&b, "z", (size_t)-1, 8), -1); /* no overflow in the check */
    bytebuf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_and_stays_terminated),
        cmocka_unit_test(test_limit_refuses_without_appending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
