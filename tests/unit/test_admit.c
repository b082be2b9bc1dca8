/* test_admit.c: unit tests for the start order: deadlines within a lane, the file lane's cap,
 * calls never behind files, a full host skipped without losing its place, however many of
 * its transfers wait, idle hosts forgotten, the drain. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "admit.h"

typedef struct item {
    const char *host;
    int id;
} item;

static const char *host_of(void *p) { return ((item *)p)->host; }

/* Start everything the caps allow; returns how many started, ids in ORDER. */
static int start_all(admit *a, int *order, int *lanes) {
    void *p;
    int lane, n = 0;
    while (admit_next(a, &p, &lane) == 0) {
        admit_started(a, lane, host_of(p));
        lanes[n] = lane;
        order[n++] = ((item *)p)->id;
    }
    return n;
}

static void expect_stats(const admit *a, unsigned want_active, unsigned want_queued) {
    unsigned active, queued;
    admit_stats(a, &active, &queued);
    assert_int_equal(active, want_active);
    assert_int_equal(queued, want_queued);
}

static void test_deadlines_and_file_cap(void **state) {
    admit a;
    admit_init(&a);
    a.lane[ADMIT_FILES].max = 2;
    item it[4] = {{"h", 1}, {"h", 2}, {"h", 3}, {"h", 4}};
    double deadline[4] = {40, 10, 30, 10};
    for (int i = 0; i < 4; i++) assert_int_equal(admit_push(&a, ADMIT_FILES, it[i].host, deadline[i], &it[i]), 0);
    int order[8], lanes[8];
    assert_int_equal(start_all(&a, order, lanes), 2);
    assert_int_equal(order[0], 2);              /* earliest, then the same deadline by arrival */
    assert_int_equal(order[1], 4);
    admit_ended(&a, ADMIT_FILES, "h");
    assert_int_equal(start_all(&a, order, lanes), 1);
    assert_int_equal(order[0], 3);
    expect_stats(&a, 2, 1);
    admit_free(&a);
}

static void test_calls_are_not_held_by_files(void **state) {
    admit a;
    admit_init(&a);
    a.lane[ADMIT_FILES].max = 1;
    item f1 = {"cdn", 1}, f2 = {"cdn", 2}, c1 = {"notion", 3}, c2 = {"api", 4};
    admit_push(&a, ADMIT_FILES, f1.host, 1, &f1);
    admit_push(&a, ADMIT_FILES, f2.host, 2, &f2);
    admit_push(&a, ADMIT_CALLS, c1.host, 1e9, &c1);
    admit_push(&a, ADMIT_CALLS, c2.host, 1e9, &c2);
    int order[8], lanes[8];
    assert_int_equal(start_all(&a, order, lanes), 3);    /* both calls and one file */
    assert_int_equal(order[0], 3);
    assert_int_equal(lanes[0], ADMIT_CALLS);
    assert_int_equal(order[1], 4);
    assert_int_equal(order[2], 1);
    assert_int_equal(lanes[2], ADMIT_FILES);
    admit_free(&a);
}

/* An upload has no deadline and a lane of its own: it never takes a download's slot, and a
 * download queued after it starts first. */
static void test_uploads_never_hold_downloads(void **state) {
    admit a;
    admit_init(&a);
    a.lane[ADMIT_FILES].max = 1;
    a.lane[ADMIT_UPLOADS].max = 1;
    item u1 = {"s3", 1}, u2 = {"s3", 2}, f1 = {"cdn", 3};
    admit_push(&a, ADMIT_UPLOADS, u1.host, INFINITY, &u1);
    admit_push(&a, ADMIT_UPLOADS, u2.host, INFINITY, &u2);
    admit_push(&a, ADMIT_FILES, f1.host, 100, &f1);
    int order[8], lanes[8];
    assert_int_equal(start_all(&a, order, lanes), 2);    /* the download, then one upload */
    assert_int_equal(order[0], 3);
    assert_int_equal(lanes[0], ADMIT_FILES);
    assert_int_equal(order[1], 1);
    assert_int_equal(lanes[1], ADMIT_UPLOADS);
    expect_stats(&a, 2, 1);
    admit_free(&a);
}

static void test_full_host_keeps_its_place(void **state) {
    admit a;
    admit_init(&a);
    a.per_host = 1;
    item x1 = {"x", 1}, x2 = {"x", 2}, y1 = {"y", 3}, x3 = {"x", 4};
    admit_push(&a, ADMIT_FILES, x1.host, 1, &x1);
    admit_push(&a, ADMIT_FILES, x2.host, 2, &x2);
    admit_push(&a, ADMIT_FILES, y1.host, 3, &y1);
    admit_push(&a, ADMIT_FILES, x3.host, 2, &x3);
    int order[8], lanes[8];
    assert_int_equal(start_all(&a, order, lanes), 2);    /* x1, then y1 past the full host x */
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 3);
    admit_ended(&a, ADMIT_FILES, "x");
    assert_int_equal(start_all(&a, order, lanes), 1);
    assert_int_equal(order[0], 2);                       /* x2 before x3: same deadline, earlier */
    assert_int_equal(admit_remove(&a, ADMIT_FILES, "x", &x3), 0);
    assert_int_equal(admit_remove(&a, ADMIT_FILES, "x", &x3), -1);
    void *p;
    assert_int_equal(admit_drain(&a, &p), -1);
    admit_free(&a);
}

static void test_drain_takes_both_lanes(void **state) {
    admit a;
    admit_init(&a);
    a.lane[ADMIT_FILES].max = 1;
    item f = {"h", 1}, c = {"h", 2};
    admit_push(&a, ADMIT_FILES, f.host, 1, &f);
    admit_push(&a, ADMIT_CALLS, c.host, 1, &c);
    admit_started(&a, ADMIT_FILES, "h");                 /* the file lane is full */
    void *p;
    int seen = 0;
    while (admit_drain(&a, &p) == 0) seen += ((item *)p)->id;
    assert_int_equal(seen, 3);
    admit_free(&a);
}

/* However many transfers wait for a full host, one to another host starts at once (the old
 * order looked at the first 64 queued items only). */
static void test_full_host_never_blocks_others(void **state) {
    admit a;
    admit_init(&a);
    a.per_host = 2;
    item busy[500], other = {"other", 1000};
    for (int i = 0; i < 500; i++) {
        busy[i] = (item){"busy", i};
        assert_int_equal(admit_push(&a, ADMIT_CALLS, "busy", i, &busy[i]), 0);
    }
    assert_int_equal(admit_push(&a, ADMIT_CALLS, "other", 1e9, &other), 0);
    int order[8], lanes[8];
    assert_int_equal(start_all(&a, order, lanes), 3);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 1);
    assert_int_equal(order[2], 1000);
    expect_stats(&a, 3, 498);
    admit_free(&a);
}

/* Hosts with nothing running or waiting are forgotten (signed URLs: a host per asset). */
static void test_idle_hosts_are_forgotten(void **state) {
    admit a;
    admit_init(&a);
    char names[100][16];
    item it[100];
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "h%d", i);
        it[i] = (item){names[i], i};
        assert_int_equal(admit_push(&a, ADMIT_FILES, names[i], i, &it[i]), 0);
    }
    int order[100], lanes[100];
    assert_int_equal(start_all(&a, order, lanes), 100);
    assert_int_equal(a.nhosts, 100);
    for (int i = 0; i < 99; i++) admit_ended(&a, ADMIT_FILES, names[i]);
    assert_int_equal(a.nhosts, 1);
    item late = {"h99", 200};
    assert_int_equal(admit_push(&a, ADMIT_CALLS, "h99", 1, &late), 0);
    admit_ended(&a, ADMIT_FILES, "h99");
    assert_int_equal(a.nhosts, 1);                        /* still has a call waiting */
    assert_int_equal(admit_remove(&a, ADMIT_CALLS, "h99", &late), 0);
    assert_int_equal(a.nhosts, 0);
    admit_free(&a);
}

static void sum_ids(void *p, void *ud) { *(int *)ud += ((item *)p)->id; }

/* admit_each sees every waiting item of its lane, on every host, and none of another lane's
 * or of those started. */
static void test_each_sees_one_lane(void **state) {
    admit a;
    admit_init(&a);
    a.lane[ADMIT_FILES].max = 1;
    item f1 = {"a", 1}, f2 = {"b", 2}, f3 = {"a", 4}, call = {"a", 100};
    assert_int_equal(admit_push(&a, ADMIT_FILES, "a", 1, &f1), 0);
    assert_int_equal(admit_push(&a, ADMIT_FILES, "b", 2, &f2), 0);
    assert_int_equal(admit_push(&a, ADMIT_FILES, "a", 3, &f3), 0);
    assert_int_equal(admit_push(&a, ADMIT_CALLS, "a", 0, &call), 0);
    int order[4], lanes[4], sum = 0;
    assert_int_equal(start_all(&a, order, lanes), 2);      /* the call and f1 */
    admit_each(&a, ADMIT_FILES, sum_ids, &sum);
    assert_int_equal(sum, 2 + 4);
    admit_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_sees_one_lane),
        cmocka_unit_test(test_deadlines_and_file_cap),
        cmocka_unit_test(test_calls_are_not_held_by_files),
        cmocka_unit_test(test_uploads_never_hold_downloads),
        cmocka_unit_test(test_full_host_keeps_its_place),
        cmocka_unit_test(test_drain_takes_both_lanes),
        cmocka_unit_test(test_full_host_never_blocks_others),
        cmocka_unit_test(test_idle_hosts_are_forgotten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
