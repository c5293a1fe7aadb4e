/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authorization policy: transparent destinations are parsed strictly, and
 * the most specific entry for a destination wins (the longest prefix, then
 * a given port over "any port").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/policy.h"

static void test_dest_parse(void **state)
{
	struct ks_dest_policy d;
	const char *why;

	(void)state;
	assert_int_equal(ks_dest_parse("10.1.2.3", &d, &why), 0);
	assert_int_equal(d.family, AF_INET);
	assert_int_equal(d.prefix, 32);
	assert_int_equal(d.port, 0);
	assert_int_equal(ks_dest_parse("10.1.2.3/8:443", &d, &why), 0);
	assert_int_equal(d.prefix, 8);
	assert_int_equal(d.port, 443);
	/* host bits are cleared: the entry names a network */
	assert_int_equal(d.addr[0], 10);
	assert_int_equal(d.addr[1], 0);
	assert_int_equal(ks_dest_parse("fd00::1", &d, &why), 0);
	assert_int_equal(d.family, AF_INET6);
	assert_int_equal(d.prefix, 128);
	assert_int_equal(ks_dest_parse("[fd00::/12]:8443", &d, &why), 0);
	assert_int_equal(d.prefix, 12);
	assert_int_equal(d.port, 8443);
	assert_int_equal(d.addr[1], 0);

	static const char *const bad[] = {"",	       "10.1.2.3:0",	 "10.1.2.3:65536",
					  "10.1.2.3:", "10.1.2.3/33",	 "10.1.2.3/",
					  "[fd00::1",  "[fd00::1]443",	 "fd00::/129",
					  "db.local",  "10.1.2.3/8x:80", "[10.1.2.3]:x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (ks_dest_parse(bad[i], &d, &why) != -EINVAL || !why)
			fail_msg("'%s' accepted", bad[i]);
	}
}

static struct sockaddr_storage sa(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
	}
	return ss;
}

static const char *match(const struct ks_policy *p, const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = sa(ip, port);
	const struct ks_dest_policy *d = ks_policy_dest(p, (struct sockaddr *)&ss);

	return d ? d->server_id : "none";
}

static void test_dest_match(void **state)
{
	static const struct {
		const char *spec, *id;
	} entries[] = {
	    {"10.0.0.0/8", "net"}, {"10.1.0.0/16:443", "net16-443"},
	    {"10.1.2.3", "host"},  {"10.1.2.3:5432", "host-5432"},
	    {"fd00::/8", "v6net"},
	};
	struct ks_dest_policy d[5];
	struct ks_policy p = {.dest = d, .ndest = 5};
	const char *why;

	(void)state;
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(ks_dest_parse(entries[i].spec, &d[i], &why), 0);
		d[i].server_id = (char *)entries[i].id;
	}
	assert_string_equal(match(&p, "10.9.9.9", 80), "net");
	assert_string_equal(match(&p, "10.1.9.9", 80), "net");
	assert_string_equal(match(&p, "10.1.9.9", 443), "net16-443");
	assert_string_equal(match(&p, "10.1.2.3", 443), "host");
	assert_string_equal(match(&p, "10.1.2.3", 5432), "host-5432");
	assert_string_equal(match(&p, "11.1.2.3", 5432), "none");
	assert_string_equal(match(&p, "fd12::1", 1), "v6net");
	assert_string_equal(match(&p, "fe80::1", 1), "none");
	/* an app on a dual-stack socket: the v4-mapped address is the IPv4 host */
	assert_string_equal(match(&p, "::ffff:10.1.2.3", 5432), "host-5432");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dest_parse),
	    cmocka_unit_test(test_dest_match),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
