/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The event loop contract, run against both backends: readiness delivery,
 * interest changes on an armed watch, no events for a watch removed while its
 * event was already queued, and no spinning on a hung-up socket nobody reads.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/loop/loop.h"

struct rec {
	struct ks_loop *l;
	struct ks_watch *victim; /* deleted by this watch's callback */
	int calls;
	uint32_t last;
};

static void on_event(struct ks_watch *w, uint32_t ev)
{
	struct rec *r = w->owner;

	r->calls++;
	r->last = ev;
	if (r->victim) {
		ks_loop_del(r->l, r->victim);
		/* poison it: a stale dispatch would now crash or count */
		memset(r->victim, 0xa5, sizeof(*r->victim));
		r->victim = NULL;
	}
}

static int make_loop(void **state, enum ks_io_mode mode)
{
	struct ks_loop *l = calloc(1, sizeof(*l));
	const char *why;
	int err;

	if (!l || ks_loop_init(l, mode, &why, &err) < 0) {
		free(l);
		*state = NULL;
		return 0;
	}
	*state = l;
	return 0;
}

static int setup_epoll(void **state)
{
	return make_loop(state, KS_IO_EPOLL);
}

static int setup_uring(void **state)
{
	return make_loop(state, KS_IO_URING);
}

static int teardown(void **state)
{
	struct ks_loop *l = *state;

	if (l) {
		ks_loop_fini(l);
		free(l);
	}
	return 0;
}

static struct ks_loop *get_loop(void **state)
{
	if (!*state)
		skip(); /* io_uring unavailable (seccomp, sysctl): covered by epoll */
	return *state;
}

/* Runs the loop until cond or ~1 s. */
#define RUN_UNTIL(l, cond)                                                                         \
	do {                                                                                       \
		for (int _i = 0; _i < 100 && !(cond); _i++)                                        \
			ks_loop_run_once((l), 10);                                                 \
	} while (0)

static void test_readiness(void **state)
{
	struct ks_loop *l = get_loop(state);
	struct ks_watch w;
	struct rec r = {.l = l};
	int sv[2];
	char c = 'x';

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(ks_loop_add(l, &w, sv[0], on_event, &r), 0);
	assert_int_equal(ks_loop_want(l, &w, KS_EV_IN), 0);
	ks_loop_run_once(l, 20);
	assert_int_equal(r.calls, 0); /* nothing to read yet */
	assert_int_equal(write(sv[1], &c, 1), 1);
	RUN_UNTIL(l, r.calls > 0);
	assert_true(r.calls >= 1);
	assert_true(r.last & KS_EV_IN);

	/* interest change while armed: add OUT, which is ready at once */
	assert_int_equal(read(sv[0], &c, 1), 1);
	r.calls = 0;
	r.last = 0;
	assert_int_equal(ks_loop_want(l, &w, KS_EV_IN | KS_EV_OUT), 0);
	RUN_UNTIL(l, r.last & KS_EV_OUT);
	assert_true(r.last & KS_EV_OUT);

	/* want nothing: no callbacks even though OUT stays ready */
	assert_int_equal(ks_loop_want(l, &w, 0), 0);
	ks_loop_run_once(l, 0); /* may deliver one queued event */
	r.calls = 0;
	for (int i = 0; i < 5; i++)
		ks_loop_run_once(l, 10);
	assert_int_equal(r.calls, 0);

	ks_loop_del(l, &w);
	close(sv[0]);
	close(sv[1]);
}

static void test_stale_event_after_del(void **state)
{
	struct ks_loop *l = get_loop(state);
	struct ks_watch *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	struct rec ra = {.l = l}, rb = {.l = l};
	int s1[2], s2[2];
	char c = 'x';

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s1), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s2), 0);
	assert_int_equal(ks_loop_add(l, a, s1[0], on_event, &ra), 0);
	assert_int_equal(ks_loop_add(l, b, s2[0], on_event, &rb), 0);
	assert_int_equal(ks_loop_want(l, a, KS_EV_IN), 0);
	assert_int_equal(ks_loop_want(l, b, KS_EV_IN), 0);
	/* whichever fires first deletes the other; both are ready in one batch */
	ra.victim = b;
	rb.victim = a;
	assert_int_equal(write(s1[1], &c, 1), 1);
	assert_int_equal(write(s2[1], &c, 1), 1);
	RUN_UNTIL(l, ra.calls + rb.calls > 0);
	for (int i = 0; i < 5; i++)
		ks_loop_run_once(l, 10);
	/* exactly one ran; the other was deleted (and poisoned) before its turn */
	assert_true((ra.calls > 0) != (rb.calls > 0));
	if (ra.calls)
		ks_loop_del(l, a);
	else
		ks_loop_del(l, b);
	free(a);
	free(b);
	close(s1[0]);
	close(s1[1]);
	close(s2[0]);
	close(s2[1]);
}

static void test_no_spin_on_hangup(void **state)
{
	struct ks_loop *l = get_loop(state);
	struct ks_watch w;
	struct rec r = {.l = l};
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(ks_loop_add(l, &w, sv[0], on_event, &r), 0);
	assert_int_equal(ks_loop_want(l, &w, KS_EV_IN), 0);
	close(sv[1]); /* HUP */
	RUN_UNTIL(l, r.calls > 0);
	assert_true(r.calls >= 1);
	assert_int_equal(ks_loop_want(l, &w, 0), 0);
	r.calls = 0;
	for (int i = 0; i < 10; i++)
		ks_loop_run_once(l, 5);
	/* at most one event queued before the change; never a stream of them */
	assert_true(r.calls <= 1);
	ks_loop_del(l, &w);
	close(sv[0]);
}

static void test_many_watches(void **state)
{
	struct ks_loop *l = get_loop(state);
	enum { N = 600 }; /* more than one slot-table growth and one CQE batch */
	struct ks_watch *w = calloc(N, sizeof(*w));
	struct rec *r = calloc(N, sizeof(*r));
	int(*sv)[2] = calloc(N, sizeof(*sv));
	int total = 0;
	char c = 'x';

	for (int i = 0; i < N; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[i]), 0);
		r[i].l = l;
		assert_int_equal(ks_loop_add(l, &w[i], sv[i][0], on_event, &r[i]), 0);
		assert_int_equal(ks_loop_want(l, &w[i], KS_EV_IN), 0);
		assert_int_equal(write(sv[i][1], &c, 1), 1);
	}
	for (int round = 0; round < 100 && total < N; round++) {
		ks_loop_run_once(l, 10);
		total = 0;
		for (int i = 0; i < N; i++)
			total += r[i].calls > 0;
	}
	assert_int_equal(total, N);
	for (int i = 0; i < N; i++) {
		ks_loop_del(l, &w[i]);
		close(sv[i][0]);
		close(sv[i][1]);
	}
	free(w);
	free(r);
	free(sv);
}

int main(void)
{
	const struct CMUnitTest epoll_tests[] = {
	    cmocka_unit_test(test_readiness),
	    cmocka_unit_test(test_stale_event_after_del),
	    cmocka_unit_test(test_no_spin_on_hangup),
	    cmocka_unit_test(test_many_watches),
	};
	const struct CMUnitTest uring_tests[] = {
	    cmocka_unit_test(test_readiness),
	    cmocka_unit_test(test_stale_event_after_del),
	    cmocka_unit_test(test_no_spin_on_hangup),
	    cmocka_unit_test(test_many_watches),
	};
	int rc = 0;

	/* setup per test: each gets a fresh loop */
	for (size_t i = 0; i < 4; i++) {
		((struct CMUnitTest *)epoll_tests)[i].setup_func = setup_epoll;
		((struct CMUnitTest *)epoll_tests)[i].teardown_func = teardown;
		((struct CMUnitTest *)uring_tests)[i].setup_func = setup_uring;
		((struct CMUnitTest *)uring_tests)[i].teardown_func = teardown;
	}
	rc |= cmocka_run_group_tests_name("loop_epoll", epoll_tests, NULL, NULL);
	rc |= cmocka_run_group_tests_name("loop_io_uring", uring_tests, NULL, NULL);
	return rc;
}
