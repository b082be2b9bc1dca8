/* test_deadline.c: unit tests for the earliest-deadline-first queue. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "deadline.h"

/* Distinct payload pointers. */
static int tags[16];
#define TAG(i) ((void *)&tags[(i)])

static void pop_expect(deadline_queue *q, double deadline, void *data) {
    deadline_item it;
    assert_int_equal(deadline_queue_pop(q, &it), 0);
    assert_true(it.deadline == deadline || (isinf(deadline) && isinf(it.deadline)));
    assert_ptr_equal(it.data, data);
}

static void test_empty(void **state) {
    deadline_queue q;
    deadline_item it;
    deadline_queue_init(&q);
    assert_int_equal(deadline_queue_len(&q), 0);
    assert_null(deadline_queue_peek(&q));
    assert_int_equal(deadline_queue_pop(&q, &it), -1);
    assert_int_equal(deadline_queue_remove(&q, TAG(0)), -1);
    deadline_queue_free(&q);
}

static void test_edf_order(void **state) {
    deadline_queue q;
    deadline_queue_init(&q);
    assert_int_equal(deadline_queue_push(&q, 30.0, TAG(3)), 0);
    assert_int_equal(deadline_queue_push(&q, 10.0, TAG(1)), 0);
    assert_int_equal(deadline_queue_push(&q, 50.0, TAG(5)), 0);
    assert_int_equal(deadline_queue_push(&q, 20.0, TAG(2)), 0);
    assert_int_equal(deadline_queue_push(&q, 40.0, TAG(4)), 0);
    assert_int_equal(deadline_queue_len(&q), 5);
    assert_ptr_equal(deadline_queue_peek(&q)->data, TAG(1));
    pop_expect(&q, 10.0, TAG(1));
    pop_expect(&q, 20.0, TAG(2));
    pop_expect(&q, 30.0, TAG(3));
    pop_expect(&q, 40.0, TAG(4));
    pop_expect(&q, 50.0, TAG(5));
    assert_int_equal(deadline_queue_len(&q), 0);
    deadline_queue_free(&q);
}

static void test_fifo_equal_deadlines(void **state) {
    deadline_queue q;
    deadline_queue_init(&q);
    for (int i = 0; i < 10; i++) assert_int_equal(deadline_queue_push(&q, 7.0, TAG(i)), 0);
    assert_int_equal(deadline_queue_push(&q, 1.0, TAG(10)), 0);
    pop_expect(&q, 1.0, TAG(10));
    for (int i = 0; i < 10; i++) pop_expect(&q, 7.0, TAG(i));
    deadline_queue_free(&q);
}

static void test_infinity_last(void **state) {
    deadline_queue q;
    deadline_queue_init(&q);
    assert_int_equal(deadline_queue_push(&q, INFINITY, TAG(0)), 0);
    assert_int_equal(deadline_queue_push(&q, 1e300, TAG(1)), 0);
    assert_int_equal(deadline_queue_push(&q, INFINITY, TAG(2)), 0);
    assert_int_equal(deadline_queue_push(&q, 0.0, TAG(3)), 0);
    pop_expect(&q, 0.0, TAG(3));
    pop_expect(&q, 1e300, TAG(1));
    pop_expect(&q, INFINITY, TAG(0));
    pop_expect(&q, INFINITY, TAG(2));
    deadline_queue_free(&q);
}

static void test_remove_middle(void **state) {
    deadline_queue q;
    deadline_queue_init(&q);
    for (int i = 0; i < 12; i++)
        assert_int_equal(deadline_queue_push(&q, (double)((i * 7) % 12), TAG(i)), 0);
    /* deadlines: i -> (7i mod 12); remove the ones with deadline 5 (i=11) and 6 (i=6) */
    assert_int_equal(deadline_queue_remove(&q, TAG(11)), 0);
    assert_int_equal(deadline_queue_remove(&q, TAG(6)), 0);
    assert_int_equal(deadline_queue_remove(&q, TAG(6)), -1);
    assert_int_equal(deadline_queue_len(&q), 10);
    double prev = -1.0;
    deadline_item it;
    size_t n = 0;
    while (deadline_queue_pop(&q, &it) == 0) {
        assert_true(it.deadline > prev);
        assert_ptr_not_equal(it.data, TAG(11));
        assert_ptr_not_equal(it.data, TAG(6));
        assert_ptr_equal(it.data, TAG(((int)it.deadline * 7) % 12));
        prev = it.deadline;
        n++;
    }
    assert_int_equal(n, 10);
    deadline_queue_free(&q);
}

static void test_remove_keeps_fifo(void **state) {
    deadline_queue q;
    deadline_queue_init(&q);
    for (int i = 0; i < 8; i++) assert_int_equal(deadline_queue_push(&q, 3.0, TAG(i)), 0);
    assert_int_equal(deadline_queue_remove(&q, TAG(4)), 0);
    assert_int_equal(deadline_queue_remove(&q, TAG(1)), 0);
    int expect[] = {0, 2, 3, 5, 6, 7};
    for (size_t i = 0; i < 6; i++) pop_expect(&q, 3.0, TAG(expect[i]));
    assert_int_equal(deadline_queue_len(&q), 0);
    deadline_queue_free(&q);
}

static void test_restore_keeps_seq(void **state) {
    deadline_queue q;
    deadline_queue_init(&q);
    for (int i = 0; i < 5; i++) assert_int_equal(deadline_queue_push(&q, 2.0, TAG(i)), 0);
    deadline_item a, b;
    assert_int_equal(deadline_queue_pop(&q, &a), 0);
    assert_int_equal(deadline_queue_pop(&q, &b), 0);
    assert_ptr_equal(a.data, TAG(0));
    assert_ptr_equal(b.data, TAG(1));
    assert_true(a.seq < b.seq);
    /* push a newcomer with the same deadline, then restore in reverse */
    assert_int_equal(deadline_queue_push(&q, 2.0, TAG(9)), 0);
    assert_int_equal(deadline_queue_restore(&q, &b), 0);
    assert_int_equal(deadline_queue_restore(&q, &a), 0);
    int expect[] = {0, 1, 2, 3, 4, 9};
    for (size_t i = 0; i < 6; i++) pop_expect(&q, 2.0, TAG(expect[i]));
    deadline_queue_free(&q);
}

static void test_random_sorted(void **state) {
    enum { N = 10000 };
    deadline_queue q;
    deadline_queue_init(&q);
    srand(12345);
    for (size_t i = 0; i < N; i++) {
        double d = (double)(rand() % 1000); /* many ties */
        assert_int_equal(deadline_queue_push(&q, d, (void *)(uintptr_t)(i + 1)), 0);
    }
    assert_int_equal(deadline_queue_len(&q), N);
    deadline_item prev, it;
    assert_int_equal(deadline_queue_pop(&q, &prev), 0);
    size_t n = 1;
    while (deadline_queue_pop(&q, &it) == 0) {
        assert_true(prev.deadline <= it.deadline);
        if (prev.deadline == it.deadline) {
            assert_true(prev.seq < it.seq);
            assert_true((uintptr_t)prev.data < (uintptr_t)it.data);
        }
        prev = it;
        n++;
    }
    assert_int_equal(n, N);
    assert_int_equal(deadline_queue_len(&q), 0);
    deadline_queue_free(&q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_edf_order),
        cmocka_unit_test(test_fifo_equal_deadlines),
        cmocka_unit_test(test_infinity_last),
        cmocka_unit_test(test_remove_middle),
        cmocka_unit_test(test_remove_keeps_fifo),
        cmocka_unit_test(test_restore_keeps_seq),
        cmocka_unit_test(test_random_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
