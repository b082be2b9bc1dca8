/* test_httphdr.c: unit tests for the HTTP header value parsers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "httphdr.h"

/* "Sun, 06 Nov 1994 08:49:37 GMT" as unix seconds. */
#define RFC_DATE "Sun, 06 Nov 1994 08:49:37 GMT"
#define RFC_DATE_TS 784111777.0

static void test_content_range_valid(void **state) {
    int64_t s = -9, e = -9, t = -9;
    assert_int_equal(httphdr_content_range("bytes 0-499/1234", &s, &e, &t), 0);
    assert_int_equal(s, 0);
    assert_int_equal(e, 499);
    assert_int_equal(t, 1234);
    assert_int_equal(httphdr_content_range("  BYTES  10-10/11  ", &s, &e, &t), 0);
    assert_int_equal(s, 10);
    assert_int_equal(e, 10);
    assert_int_equal(t, 11);
    assert_int_equal(httphdr_content_range("bytes 0-9223372036854775806/9223372036854775807",
                                           &s, &e, &t), 0);
    assert_true(e == INT64_MAX - 1);
    assert_true(t == INT64_MAX);
}

static void test_content_range_star_total(void **state) {
    int64_t s, e, t = 0;
    assert_int_equal(httphdr_content_range("bytes 100-199/*", &s, &e, &t), 0);
    assert_int_equal(s, 100);
    assert_int_equal(e, 199);
    assert_int_equal(t, -1);
}

static void test_content_range_end_before_start(void **state) {
    int64_t s, e, t;
    assert_int_equal(httphdr_content_range("bytes 500-499/1000", &s, &e, &t), -1);
    assert_int_equal(httphdr_content_range("bytes 5-4/*", &s, &e, &t), -1);
}

static void test_content_range_end_past_total(void **state) {
    int64_t s, e, t;
    assert_int_equal(httphdr_content_range("bytes 0-1000/1000", &s, &e, &t), -1);
    assert_int_equal(httphdr_content_range("bytes 0-1001/1000", &s, &e, &t), -1);
    assert_int_equal(httphdr_content_range("bytes 0-999/1000", &s, &e, &t), 0);
}

static void test_content_range_garbage(void **state) {
    int64_t s, e, t;
    const char *bad[] = {
        "", "bytes", "bytes ", "items 0-1/2", "bytes -1-2/3", "bytes 0--2/3",
        "bytes a-1/2", "bytes 0-b/2", "bytes 0-1/c", "bytes 0-1", "bytes 0 1/2",
        "bytes 0-1/-2", "bytes */100", "bytes 0-1/+2", "garbage",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(httphdr_content_range(bad[i], &s, &e, &t), -1);
}

static void test_content_range_trailing_junk(void **state) {
    int64_t s, e, t;
    assert_int_equal(httphdr_content_range("bytes 0-1/2x", &s, &e, &t), -1);
    assert_int_equal(httphdr_content_range("bytes 0-1/2 3", &s, &e, &t), -1);
    assert_int_equal(httphdr_content_range("bytes 0-1/*x", &s, &e, &t), -1);
    assert_int_equal(httphdr_content_range("bytes 0-1/2\t ", &s, &e, &t), 0);
}

static void test_content_range_overflow(void **state) {
    int64_t s, e, t;
    assert_int_equal(httphdr_content_range("bytes 0-1/9223372036854775808", &s, &e, &t), -1);
    assert_int_equal(httphdr_content_range("bytes 99999999999999999999-1/*", &s, &e, &t), -1);
    assert_int_equal(httphdr_content_range("bytes 0-99999999999999999999/*", &s, &e, &t), -1);
}

static void test_unsatisfied_range(void **state) {
    int64_t t = 0;
    assert_int_equal(httphdr_unsatisfied_range("bytes */1234", &t), 0);
    assert_int_equal(t, 1234);
    assert_int_equal(httphdr_unsatisfied_range("  Bytes */0 ", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(httphdr_unsatisfied_range("bytes 0-1/2", &t), -1);
    assert_int_equal(httphdr_unsatisfied_range("bytes */", &t), -1);
    assert_int_equal(httphdr_unsatisfied_range("bytes */*", &t), -1);
    assert_int_equal(httphdr_unsatisfied_range("bytes */12x", &t), -1);
    assert_int_equal(httphdr_unsatisfied_range("bytes *12", &t), -1);
    assert_int_equal(httphdr_unsatisfied_range("", &t), -1);
    assert_int_equal(httphdr_unsatisfied_range("bytes */99999999999999999999", &t), -1);
}

static void test_retry_after_delta(void **state) {
    assert_true(httphdr_retry_after("120", 1000.0) == 120.0);
    assert_true(httphdr_retry_after("0", 1000.0) == 0.0);
    assert_true(httphdr_retry_after(" 5 ", 1000.0) == 5.0);
}

static void test_retry_after_future_date(void **state) {
    assert_true(httphdr_retry_after(RFC_DATE, RFC_DATE_TS - 100.0) == 100.0);
    assert_true(httphdr_retry_after(RFC_DATE, RFC_DATE_TS - 0.5) == 0.5);
}

static void test_retry_after_past_date(void **state) {
    assert_true(httphdr_retry_after(RFC_DATE, RFC_DATE_TS + 3600.0) == 0.0);
    assert_true(httphdr_retry_after(RFC_DATE, RFC_DATE_TS) == 0.0);
}

static void test_retry_after_garbage(void **state) {
    assert_true(httphdr_retry_after("", 0.0) == -1.0);
    assert_true(httphdr_retry_after("soon", 0.0) == -1.0);
    assert_true(httphdr_retry_after("12abc", 0.0) == -1.0);
    assert_true(httphdr_retry_after("1e3", 0.0) == -1.0);
    assert_true(httphdr_retry_after("0x10", 0.0) == -1.0);
    assert_true(httphdr_retry_after("1.5", 0.0) == -1.0);
    assert_true(httphdr_retry_after("99999999999999999999", 0.0) == -1.0);
    assert_true(httphdr_retry_after("-5", 0.0) == -1.0);
    assert_true(httphdr_retry_after(RFC_DATE " junk", 0.0) == -1.0);
    assert_true(httphdr_retry_after("Sun, 06 Nov 1994 08:49:37", 0.0) == -1.0);
}

static void test_split_basic(void **state) {
    char name[32], value[64];
    const char *line = "Content-Range:   bytes 0-1/2  \r\n";
    assert_int_equal(httphdr_split(line, strlen(line), name, sizeof name, value, sizeof value),
                     0);
    assert_string_equal(name, "content-range");
    assert_string_equal(value, "bytes 0-1/2");

    line = "X-Empty:\r\n";
    assert_int_equal(httphdr_split(line, strlen(line), name, sizeof name, value, sizeof value),
                     0);
    assert_string_equal(name, "x-empty");
    assert_string_equal(value, "");

    /* len bounds the line: bytes after it are ignored. */
    line = "ETAG: \"abc\"\r\nXXXX";
    assert_int_equal(httphdr_split(line, strlen(line) - 4, name, sizeof name, value,
                                   sizeof value), 0);
    assert_string_equal(name, "etag");
    assert_string_equal(value, "\"abc\"");
}

static void test_split_rejects(void **state) {
    char name[32], value[64];
    const char *l1 = "HTTP/1.1 200 OK\r\n";
    assert_int_equal(httphdr_split(l1, strlen(l1), name, sizeof name, value, sizeof value), -1);
    const char *l2 = "\r\n";
    assert_int_equal(httphdr_split(l2, strlen(l2), name, sizeof name, value, sizeof value), -1);
    const char *l3 = ": value\r\n";
    assert_int_equal(httphdr_split(l3, strlen(l3), name, sizeof name, value, sizeof value), -1);
    const char *l4 = "Bad Name: v\r\n";
    assert_int_equal(httphdr_split(l4, strlen(l4), name, sizeof name, value, sizeof value), -1);
    /* colon beyond len is not seen */
    const char *l5 = "Name: v";
    assert_int_equal(httphdr_split(l5, 4, name, sizeof name, value, sizeof value), -1);
    /* name does not fit */
    const char *l6 = "Very-Long-Header-Name: v";
    assert_int_equal(httphdr_split(l6, strlen(l6), name, 8, value, sizeof value), -1);
}

static void test_split_truncates_value(void **state) {
    char name[16], value[6];
    memset(value, 'Z', sizeof value);
    const char *line = "Location: http://example.com/\r\n";
    assert_int_equal(httphdr_split(line, strlen(line), name, sizeof name, value, sizeof value),
                     0);
    assert_string_equal(name, "location");
    assert_string_equal(value, "http:");
    assert_int_equal(strlen(value), sizeof value - 1);
}

static void test_store_pairs_last_wins_and_cap(void **state) {
    bytebuf b = {0};
    const char *n, *v;
    assert_int_equal(httphdr_add(&b, "etag", "\"a\"", 64), 0);
    assert_int_equal(httphdr_add(&b, "retry-after", "5", 64), 0);
    assert_int_equal(httphdr_add(&b, "etag", "\"b\"", 64), 0);
    assert_string_equal(httphdr_get(&b, "etag"), "\"b\"");
    assert_string_equal(httphdr_get(&b, "retry-after"), "5");
    assert_null(httphdr_get(&b, "location"));
    size_t len = b.len, off = 0;
    int pairs = 0;
    while ((off = httphdr_next(&b, off, &n, &v)) != 0) pairs++;
    assert_int_equal(pairs, 3);
    assert_int_equal(httphdr_add(&b, "x-long", "0123456789", 40), -1);   /* past the cap */
    assert_int_equal(b.len, len);                                       /* nothing of it */
    bytebuf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_range_valid),
        cmocka_unit_test(test_content_range_star_total),
        cmocka_unit_test(test_content_range_end_before_start),
        cmocka_unit_test(test_content_range_end_past_total),
        cmocka_unit_test(test_content_range_garbage),
        cmocka_unit_test(test_content_range_trailing_junk),
        cmocka_unit_test(test_content_range_overflow),
        cmocka_unit_test(test_unsatisfied_range),
        cmocka_unit_test(test_retry_after_delta),
        cmocka_unit_test(test_retry_after_future_date),
        cmocka_unit_test(test_retry_after_past_date),
        cmocka_unit_test(test_retry_after_garbage),
        cmocka_unit_test(test_split_basic),
        cmocka_unit_test(test_split_rejects),
        cmocka_unit_test(test_split_truncates_value),
        cmocka_unit_test(test_store_pairs_last_wins_and_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
