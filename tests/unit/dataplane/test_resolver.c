/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The outbound routes' name cache (dataplane/resolver.h): one lookup per
 * name however many ask, the asker's eventfd written once it ends, answers
 * kept --dns-refresh and failures at most KS_RES_NEGATIVE_MS, then looked
 * up again; a forgotten eventfd is never written. Then the same through the
 * real resolver threads and getaddrinfo.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "dataplane/resolver.h"

/* What the eventfd holds (0: not written), emptied. */
static uint64_t drained(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return 0;
	return v;
}

/* getaddrinfo's own list for literals: a real answer, without a lookup. */
static struct addrinfo *literal(const char *ip)
{
	struct addrinfo hints, *res = NULL;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	assert_int_equal(getaddrinfo(ip, NULL, &hints, &res), 0);
	return res;
}

static void test_cache(void **state)
{
	const char *names[] = {"web.test", "db.test", "web.test"};
	struct ks_res_answer ans;
	struct ks_resolver *r;
	struct addrinfo *v4 = literal("10.0.0.7"), *v6 = literal("fd00::7");
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int efd2 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int rc;
	char buf[KS_ADDRSTRLEN];

	(void)state;
	assert_true(efd >= 0 && efd2 >= 0);
	v4->ai_next = v6; /* two addresses, in this order */
	r = ks_resolver_new(names, 3, 30000, 0, &rc);
	assert_non_null(r);

	/* Nothing cached: wait; one lookup however many ask. */
	assert_int_equal(ks_resolver_get(r, "web.test", 443, 100, efd, &ans), KS_RES_WAIT);
	assert_int_equal(ks_resolver_get(r, "web.test", 443, 101, efd, &ans), KS_RES_WAIT);
	assert_int_equal(ks_resolver_get(r, "web.test", 80, 102, efd2, &ans), KS_RES_WAIT);
	assert_int_equal(ks_resolver_inflight(r), 1);
	assert_int_equal(drained(efd), 0);
	/* A name no route has is refused, not looked up. */
	assert_int_equal(ks_resolver_get(r, "other.test", 443, 100, efd, &ans), KS_RES_FAILED);
	assert_non_null(strstr(ans.why, "not a route's name"));
	assert_int_equal(ks_resolver_inflight(r), 1);

	/* The answer: each waiting eventfd written once. */
	ks_resolver_record(r, "web.test", 0, v4, 200);
	assert_int_equal(ks_resolver_inflight(r), 0);
	assert_int_equal(drained(efd), 1);
	assert_int_equal(drained(efd2), 1);
	assert_int_equal(ks_resolver_get(r, "web.test", 443, 300, efd, &ans), KS_RES_FOUND);
	assert_int_equal(ans.n, 2);
	assert_string_equal(ks_addr_str((struct sockaddr *)&ans.addrs[0].ss, buf, sizeof(buf)),
			    "10.0.0.7:443");
	assert_string_equal(ks_addr_str((struct sockaddr *)&ans.addrs[1].ss, buf, sizeof(buf)),
			    "[fd00::7]:443");
	/* Another route, same name, another port. */
	assert_int_equal(ks_resolver_get(r, "web.test", 80, 300, efd, &ans), KS_RES_FOUND);
	assert_string_equal(ks_addr_str((struct sockaddr *)&ans.addrs[0].ss, buf, sizeof(buf)),
			    "10.0.0.7:80");
	assert_int_equal(drained(efd), 0); /* an answer from the cache writes nothing */

	/* Fresh until 200 + 30000; then looked up again. */
	assert_int_equal(ks_resolver_get(r, "web.test", 443, 30199, efd, &ans), KS_RES_FOUND);
	assert_int_equal(ks_resolver_get(r, "web.test", 443, 30200, efd, &ans), KS_RES_WAIT);
	assert_int_equal(ks_resolver_inflight(r), 1);

	/* It fails: the waiter is told, and the failure is kept 5 s, not 30. */
	ks_resolver_record(r, "web.test", EAI_NONAME, NULL, 40000);
	assert_int_equal(drained(efd), 1);
	assert_int_equal(ks_resolver_get(r, "web.test", 443, 44999, efd, &ans), KS_RES_FAILED);
	assert_int_equal(ans.n, 0);
	assert_non_null(strstr(ans.why, "cannot resolve web.test: "));
	assert_int_equal(ks_resolver_inflight(r), 0);
	assert_int_equal(ks_resolver_get(r, "web.test", 443, 45000, efd, &ans), KS_RES_WAIT);

	/* An eventfd forgotten (its worker left) is never written again. */
	assert_int_equal(ks_resolver_get(r, "db.test", 5432, 45000, efd2, &ans), KS_RES_WAIT);
	ks_resolver_forget(r, efd2);
	ks_resolver_forget(r, efd);
	ks_resolver_record(r, "db.test", 0, v6, 45001);
	ks_resolver_record(r, "web.test", 0, v6, 45001);
	assert_int_equal(drained(efd2), 0);
	assert_int_equal(drained(efd), 0);
	assert_int_equal(ks_resolver_get(r, "db.test", 5432, 45002, efd2, &ans), KS_RES_FOUND);
	assert_int_equal(ans.n, 1);
	assert_int_equal(ans.addrs[0].ss.ss_family, AF_INET6);

	/* An answer with no address at all is a failure, not an empty success. */
	assert_int_equal(ks_resolver_get(r, "db.test", 5432, 100000, efd, &ans), KS_RES_WAIT);
	ks_resolver_record(r, "db.test", 0, NULL, 100000);
	assert_int_equal(ks_resolver_get(r, "db.test", 5432, 100001, efd, &ans), KS_RES_FAILED);
	assert_non_null(strstr(ans.why, "no IPv4 or IPv6 address"));

	ks_resolver_free(r);
	v4->ai_next = NULL;
	freeaddrinfo(v4);
	freeaddrinfo(v6);
	close(efd);
	close(efd2);
}

/* A --dns-refresh under 5 s also bounds how long a failure is kept. */
static void test_short_refresh(void **state)
{
	const char *names[] = {"a.test"};
	struct ks_res_answer ans;
	struct ks_resolver *r;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), rc;

	(void)state;
	r = ks_resolver_new(names, 1, 1000, 0, &rc);
	assert_non_null(r);
	assert_int_equal(ks_resolver_get(r, "a.test", 1, 0, efd, &ans), KS_RES_WAIT);
	ks_resolver_record(r, "a.test", EAI_AGAIN, NULL, 10);
	assert_int_equal(ks_resolver_get(r, "a.test", 1, 1009, efd, &ans), KS_RES_FAILED);
	assert_int_equal(ks_resolver_get(r, "a.test", 1, 1010, efd, &ans), KS_RES_WAIT);
	ks_resolver_free(r);
	close(efd);
}

/* The real thing: resolver threads, getaddrinfo, the eventfd as a worker polls it. */
static void test_threads(void **state)
{
	/* Literals need no files and no network, and take getaddrinfo's
	 * whole path all the same. */
	const char *names[] = {"127.0.0.1", "::1"};
	struct ks_res_answer ans;
	struct ks_resolver *r;
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), rc;
	struct pollfd p = {.fd = efd, .events = POLLIN};
	char buf[KS_ADDRSTRLEN];

	(void)state;
	r = ks_resolver_new(names, 2, 30000, KS_RES_THREADS, &rc);
	assert_non_null(r);
	assert_int_equal(ks_resolver_get(r, "127.0.0.1", 8443, ks_mono_ms(), efd, &ans),
			 KS_RES_WAIT);
	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_int_equal(drained(efd), 1);
	assert_int_equal(ks_resolver_get(r, "127.0.0.1", 8443, ks_mono_ms(), efd, &ans),
			 KS_RES_FOUND);
	assert_string_equal(ks_addr_str((struct sockaddr *)&ans.addrs[0].ss, buf, sizeof(buf)),
			    "127.0.0.1:8443");
	/* At start-up: on the caller's thread, cached for the workers. */
	assert_int_equal(ks_resolver_lookup_now(r, "::1", 9, &ans), KS_RES_FOUND);
	assert_string_equal(ks_addr_str((struct sockaddr *)&ans.addrs[0].ss, buf, sizeof(buf)),
			    "[::1]:9");
	assert_int_equal(ks_resolver_get(r, "::1", 9, ks_mono_ms(), efd, &ans), KS_RES_FOUND);
	assert_int_equal(ks_resolver_inflight(r), 0);
	ks_resolver_free(r);
	close(efd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cache),
	    cmocka_unit_test(test_short_refresh),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests_name("resolver", tests, NULL, NULL);
}
