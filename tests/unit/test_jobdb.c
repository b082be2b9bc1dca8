/* Unit tests for jobdb.c: idempotent creation, the state machine, events, keyset pages,
 * summary counts, recovery, versions, and reopening the same database. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "jobdb.h"

static char dir[64];
static jobdb *db;

static int setup(void **state) {
    char err[256];
    strcpy(dir, "/tmp/assetd-jobdb-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    return jobdb_open(dir, &db, err, sizeof err);
}

static int teardown(void **state) {
    char cmd[128];
    jobdb_close(db);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static int64_t make_job(const char *page, const char *video, const char *batch, enum jobdb_state st,
                        double expires, int *created) {
    jobdb_job in, out;
    memset(&in, 0, sizeof in);
    snprintf(in.page_id, sizeof in.page_id, "%s", page);
    snprintf(in.video_id, sizeof in.video_id, "%s", video);
    snprintf(in.batch_id, sizeof in.batch_id, "%s", batch);
    snprintf(in.provider, sizeof in.provider, "%s", "urls");
    in.state = st;
    in.expires_at = expires;
    assert_int_equal(0, jobdb_create(db, &in, &out, created));
    int64_t id = out.id;
    jobdb_job_clear(&out);
    return id;
}

static void test_create_idempotent(void **state) {
    int created;
    int64_t a = make_job("p1", "v1", "b1", JOB_PENDING, 0, &created);
    assert_true(created);
    int64_t b = make_job("p1", "v1", "b1", JOB_PENDING, 0, &created);
    assert_false(created);
    assert_int_equal(a, b);
    jobdb_job j;
    assert_int_equal(0, jobdb_get_by_page(db, "p1", &j));
    assert_string_equal("v1", j.video_id);
    assert_string_equal("urls", j.provider);        /* as given: the default is Lua's */
    jobdb_job_clear(&j);
    assert_int_equal(JOBDB_ENOTFOUND, jobdb_get_by_page(db, "nope", &j));
}

static int count_events(double t, const char *kind, const char *detail, void *ud) {
    if (strcmp(kind, "state") == 0) ++*(int *)ud;
    return 0;
}

static void test_state_machine(void **state) {
    int created, n = 0;
    int64_t id = make_job("p2", "v2", "b1", JOB_WAITING, 0, &created);
    jobdb_job in, out;
    memset(&in, 0, sizeof in);
    assert_int_equal(JOBDB_EILLEGAL, jobdb_transition(db, id, JOB_COMPLETED, &in, 0, NULL));
    assert_non_null(strstr(jobdb_errmsg(db), "cannot go from waiting to completed"));
    assert_int_equal(0, jobdb_transition(db, id, JOB_PENDING, &in, 0, NULL));
    in.version = 3;
    assert_int_equal(0, jobdb_transition(db, id, JOB_DOWNLOADING, &in, JOBDB_SET_VERSION, NULL));
    in.error = "HTTP 500";
    in.retry_count = 1;
    assert_int_equal(0, jobdb_transition(db, id, JOB_FAILED, &in, JOBDB_SET_ERROR | JOBDB_SET_RETRY, &out));
    assert_int_equal(JOB_FAILED, out.state);
    assert_int_equal(3, out.version);
    assert_int_equal(1, out.retry_count);
    assert_string_equal("HTTP 500", out.error);
    jobdb_job_clear(&out);
    assert_int_equal(0, jobdb_transition(db, id, JOB_PENDING, &in, 0, NULL));   /* manual retry */
    assert_int_equal(0, jobdb_transition(db, id, JOB_EXPIRED, &in, 0, NULL));
    assert_int_equal(JOBDB_EILLEGAL, jobdb_transition(db, id, JOB_PENDING, &in, 0, NULL));
    assert_int_equal(JOBDB_ENOTFOUND, jobdb_transition(db, 999999, JOB_PENDING, &in, 0, NULL));
    assert_int_equal(0, jobdb_events(db, id, count_events, &n));
    assert_int_equal(5, n);
}

static int collect(const jobdb_job *j, void *ud) {
    int64_t *ids = ud;
    ids[++ids[0]] = j->id;
    return 0;
}

static void test_pages_and_summary(void **state) {
    int created;
    double now = clock_now();
    int64_t first = 0;
    for (int i = 0; i < 25; i++) {
        char page[32];
        snprintf(page, sizeof page, "pg%d", i);
        int64_t id = make_job(page, "vid", i % 2 ? "odd" : "even", JOB_PENDING, now + (i < 3 ? 60 : 7200), &created);
        if (i == 0) first = id;
    }
    int64_t ids[64] = {0};
    jobdb_query q = {JOB_PENDING, "odd", first - 1, 5, 0};
    assert_int_equal(0, jobdb_list(db, &q, collect, ids));
    assert_int_equal(5, ids[0]);
    int64_t last = ids[5];
    memset(ids, 0, sizeof ids);
    q.after = last;
    q.limit = 100;
    assert_int_equal(0, jobdb_list(db, &q, collect, ids));
    assert_int_equal(7, ids[0]);                      /* 12 odd in all */
    assert_true(ids[1] > last);
    memset(ids, 0, sizeof ids);                       /* newest first, from the top */
    jobdb_query newest = {JOB_PENDING, "odd", 0, 3, 1};
    assert_int_equal(0, jobdb_list(db, &newest, collect, ids));
    assert_int_equal(3, ids[0]);
    assert_true(ids[1] > ids[2] && ids[2] > ids[3]);
    memset(ids, 0, sizeof ids);
    newest.after = first + 2;
    assert_int_equal(0, jobdb_list(db, &newest, collect, ids));
    assert_int_equal(1, ids[0]);                      /* only first + 1 is odd below first + 2 */
    assert_int_equal(first + 1, ids[1]);
    jobdb_counts c;
    assert_int_equal(0, jobdb_summary(db, now, 600, &c));
    assert_true(c.by_state[JOB_PENDING] >= 25);
    assert_int_equal(3, c.approaching);
}

static void test_recover_and_reopen(void **state) {
    int created;
    int64_t id = make_job("p9", "v9", "b9", JOB_PENDING, 0, &created);
    jobdb_job in;
    memset(&in, 0, sizeof in);
    assert_int_equal(0, jobdb_transition(db, id, JOB_DOWNLOADING, &in, 0, NULL));
    int64_t moved = 0, v = 0;
    assert_int_equal(0, jobdb_claim_version(db, "b9", "v9", 4, &v));
    assert_int_equal(4, v);
    assert_int_equal(0, jobdb_claim_version(db, "b9", "v9", 2, &v));   /* the next, not the floor */
    assert_int_equal(5, v);
    jobdb_close(db);
    char err[256];
    assert_int_equal(0, jobdb_open(dir, &db, err, sizeof err));
    assert_int_equal(0, jobdb_recover(db, &moved));
    assert_int_equal(1, moved);
    jobdb_job j;
    assert_int_equal(0, jobdb_get(db, id, &j));
    assert_int_equal(JOB_PENDING, j.state);
    jobdb_job_clear(&j);
    assert_int_equal(0, jobdb_max_version(db, "b9", "v9", &v));
    assert_int_equal(5, v);
    assert_int_equal(0, jobdb_max_version(db, "b9", "other", &v));
    assert_int_equal(0, v);
}

static void test_open_failure_is_clear(void **state) {
    char err[256];
    jobdb *other;
    assert_int_not_equal(0, jobdb_open("/proc/no-such-dir/x", &other, err, sizeof err));
    assert_non_null(strstr(err, "data directory"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_idempotent),
        cmocka_unit_test(test_state_machine),
        cmocka_unit_test(test_pages_and_summary),
        cmocka_unit_test(test_recover_and_reopen),
        cmocka_unit_test(test_open_failure_is_clear),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
