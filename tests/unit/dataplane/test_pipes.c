/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The splice path's pipe cache (dataplane/pipes.h): an empty pipe comes
 * back for reuse, a pipe that still holds bytes is closed (no byte may reach
 * another connection), the cache and the budget are bounded, and a take that finds no
 * descriptor (a real EMFILE, under a lowered RLIMIT_NOFILE) queues the
 * connection once and counts the failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "dataplane/pipes.h"

static bool is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static void test_reuse_only_empty(void **state)
{
	struct ks_pipe_pool p;
	int a[2], b[2], ra, wa;

	(void)state;
	ks_pipes_init(&p, 1000);
	assert_int_equal(ks_pipe_take(&p, a), 0);
	assert_int_equal(p.held, 1);
	assert_true(fcntl(a[0], F_GETFL) & O_NONBLOCK);
	ra = a[0];
	wa = a[1];
	ks_pipe_give(&p, a);
	assert_int_equal(a[0], -1);
	assert_int_equal(p.ncache, 1);
	assert_int_equal(p.held, 0);
	assert_true(p.returned);
	/* The same empty pipe comes back. */
	assert_int_equal(ks_pipe_take(&p, b), 0);
	assert_int_equal(b[0], ra);
	assert_int_equal(b[1], wa);
	assert_int_equal(p.created, 1);
	/* With a byte left in it, it is closed, not cached. */
	assert_int_equal(write(b[1], "x", 1), 1);
	ks_pipe_give(&p, b);
	assert_int_equal(p.ncache, 0);
	assert_false(is_open(ra));
	assert_false(is_open(wa));
	/* Giving back "no pipe" is a no-op. */
	ks_pipe_give(&p, b);
	assert_int_equal(p.held, 0);
	ks_pipes_fini(&p);
}

static void test_cache_bounded(void **state)
{
	struct ks_pipe_pool p;
	int fds[KS_PIPE_CACHE + 4][2], last;

	(void)state;
	ks_pipes_init(&p, 1000);
	for (int i = 0; i < KS_PIPE_CACHE + 4; i++)
		assert_int_equal(ks_pipe_take(&p, fds[i]), 0);
	last = fds[KS_PIPE_CACHE + 3][0];
	for (int i = 0; i < KS_PIPE_CACHE + 4; i++)
		ks_pipe_give(&p, fds[i]);
	assert_int_equal(p.ncache, KS_PIPE_CACHE);
	assert_false(is_open(last)); /* past the cache: closed */
	ks_pipes_fini(&p);
	assert_int_equal(p.ncache, 0);
}

static void test_budget(void **state)
{
	struct ks_pipe_pool p;
	int a[2], b[2], c[2];

	(void)state;
	ks_pipes_init(&p, 2);
	assert_int_equal(ks_pipe_take(&p, a), 0);
	assert_int_equal(ks_pipe_take(&p, b), 0);
	assert_int_equal(ks_pipe_take(&p, c), -ENOSPC); /* all in use */
	assert_int_equal(p.failed, 1);
	ks_pipe_give(&p, a);
	assert_int_equal(ks_pipe_take(&p, c), 0); /* the cached one */
	assert_int_equal(p.created, 2);
	ks_pipe_give(&p, b);
	ks_pipe_give(&p, c);
	ks_pipes_fini(&p);
}

static void test_emfile_waits(void **state)
{
	struct ks_pipe_pool p;
	struct ks_list link = {0}, other = {0};
	struct rlimit old, low;
	int fds[2], extra[2];
	int rc;

	(void)state;
	ks_log_set_level(KS_LOG_ERROR);
	ks_pipes_init(&p, 1000);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	/* Room for exactly one more pipe: the lowest free descriptor + 2. */
	extra[0] = dup(0);
	assert_true(extra[0] >= 0);
	close(extra[0]);
	low = (struct rlimit){.rlim_cur = (rlim_t)extra[0] + 2, .rlim_max = old.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(ks_pipe_take(&p, fds), 0);
	rc = ks_pipe_take(&p, extra);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(rc, -EMFILE);
	assert_int_equal(p.failed, 1);
	assert_int_equal(p.held, 1);
	ks_pipe_wait(&p, &link, -rc, 1000, 0);
	ks_pipe_wait(&p, &link, -rc, 1001, 0); /* already waiting: not twice */
	ks_pipe_wait(&p, &other, -rc, 1002, 0);
	assert_ptr_equal(p.waiters.next, &link);
	assert_ptr_equal(link.next, &other);
	assert_ptr_equal(other.next, &p.waiters);
	assert_int_equal(p.rl.suppressed, 2); /* one line a second */
	ks_list_del(&link);
	ks_list_del(&other);
	ks_pipe_give(&p, fds);
	ks_pipes_fini(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reuse_only_empty),
	    cmocka_unit_test(test_cache_bounded),
	    cmocka_unit_test(test_budget),
	    cmocka_unit_test(test_emfile_waits),
	};

	return cmocka_run_group_tests_name("pipes", tests, NULL, NULL);
}
