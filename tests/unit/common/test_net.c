/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ks_original_dst (common/net.h) against real conntrack, in network
 * namespaces of the test's own (tests/unit/netns.h): without conntrack
 * there is no original destination; with a nat rule in the namespace
 * conntrack tracks every TCP connection and answers SO_ORIGINAL_DST for
 * all of them, giving an unredirected connection's own local address,
 * which must still read as "not redirected" (IPv4, IPv4-mapped IPv6,
 * IPv6), while a REDIRECTed one gives the address the client asked for.
 * Also ks_addr_parse_lazy, and ks_send_pending on a socketpair.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "../netns.h"
#include "common/net.h"

#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/* A listener on ip (v4 or v6 text), port 0; its port in *port. */
static int listener(int family, const char *ip, uint16_t *port)
{
	struct ks_addr a;
	char err[128], s[80];
	int fd;

	snprintf(s, sizeof(s), family == AF_INET6 ? "[%s]:0" : "%s:0", ip);
	assert_int_equal(ks_addr_parse(s, &a, err, sizeof(err)), 0);
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (family == AF_INET6) {
		int zero = 0; /* dual-stack: IPv4 clients arrive IPv4-mapped */

		assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)), 0);
	}
	assert_int_equal(bind(fd, (struct sockaddr *)&a.ss, a.len), 0);
	assert_int_equal(listen(fd, 4), 0);
	a.len = sizeof(a.ss);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a.ss, &a.len), 0);
	*port = ks_addr_port(&a);
	return fd;
}

/* Connects to ip:port and accepts on l: the accepted socket (the client in *client). */
static int pair_via(int l, const char *ip, uint16_t port, int *client)
{
	struct ks_addr a;
	char err[128], s[80];
	int fd;

	snprintf(s, sizeof(s), strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
	assert_int_equal(ks_addr_parse(s, &a, err, sizeof(err)), 0);
	*client = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*client >= 0);
	assert_int_equal(connect(*client, (struct sockaddr *)&a.ss, a.len), 0);
	fd = accept(l, NULL, NULL);
	assert_true(fd >= 0);
	return fd;
}

/* What conntrack itself says (the precondition): 0, or -errno. */
static int raw_original_dst(int fd, int level)
{
	struct sockaddr_storage ss;
	socklen_t len = level == SOL_IP ? sizeof(struct sockaddr_in) : sizeof(ss);

	return getsockopt(fd, level, level == SOL_IP ? SO_ORIGINAL_DST : IP6T_SO_ORIGINAL_DST, &ss,
			  &len) < 0
		   ? -errno
		   : 0;
}

static void enter_netns(void)
{
	char why[256];

	if (!ks_test_fresh_netns(why, sizeof(why)))
		KS_TEST_SKIP(why);
}

static void test_no_conntrack(void **state)
{
	struct ks_addr orig;
	uint16_t port;
	int l, c, s;

	(void)state;
	enter_netns();
	l = listener(AF_INET, "127.0.0.1", &port);
	s = pair_via(l, "127.0.0.1", port, &c);
	/* Nothing asked for conntrack in this namespace: it tracks nothing. */
	assert_true(raw_original_dst(s, SOL_IP) < 0);
	assert_true(ks_original_dst(s, &orig) < 0);
	close(s);
	close(c);
	close(l);
}

static void test_nat_ipv4(void **state)
{
	struct ks_addr orig;
	char why[256], buf[KS_ADDRSTRLEN];
	uint16_t p4, p6;
	int l4, l6, c, s;

	(void)state;
	enter_netns();
	l4 = listener(AF_INET, "127.0.0.1", &p4);
	l6 = listener(AF_INET6, "::", &p6);
	/* Ports 9 and 7 go to the listeners; any nat rule turns conntrack on. */
	if (!ks_test_xtables(why, sizeof(why), "iptables",
			     "-t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 9 -j REDIRECT "
			     "--to-ports %u",
			     p4))
		KS_TEST_SKIP(why);
	ks_test_xtables(why, sizeof(why), "iptables",
			"-t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 7 -j REDIRECT --to-ports %u",
			p6);

	/* Not redirected: conntrack answers with the socket's own address. */
	s = pair_via(l4, "127.0.0.1", p4, &c);
	assert_int_equal(raw_original_dst(s, SOL_IP), 0);
	assert_int_equal(ks_original_dst(s, &orig), -ENOENT);
	close(s);
	close(c);
	/* The same through an IPv4-mapped socket, where conntrack's answer is
	 * a sockaddr_in and getsockname's a sockaddr_in6. */
	s = pair_via(l6, "127.0.0.1", p6, &c);
	assert_int_equal(raw_original_dst(s, SOL_IP), 0);
	assert_int_equal(ks_original_dst(s, &orig), -ENOENT);
	close(s);
	close(c);

	/* Redirected: the destination the client asked for. */
	s = pair_via(l4, "127.0.0.1", 9, &c);
	assert_int_equal(ks_original_dst(s, &orig), 0);
	assert_string_equal(ks_addr_str((struct sockaddr *)&orig.ss, buf, sizeof(buf)),
			    "127.0.0.1:9");
	close(s);
	close(c);
	s = pair_via(l6, "127.0.0.1", 7, &c);
	assert_int_equal(ks_original_dst(s, &orig), 0);
	assert_string_equal(ks_addr_str((struct sockaddr *)&orig.ss, buf, sizeof(buf)),
			    "127.0.0.1:7");
	close(s);
	close(c);
	close(l4);
	close(l6);
}

static void test_nat_ipv6(void **state)
{
	struct ks_addr orig;
	char why[256], buf[KS_ADDRSTRLEN];
	uint16_t port;
	int l, c, s, probe;

	(void)state;
	enter_netns();
	probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0)
		KS_TEST_SKIP("no IPv6 in this kernel");
	close(probe);
	l = listener(AF_INET6, "::1", &port);
	if (!ks_test_xtables(why, sizeof(why), "ip6tables",
			     "-t nat -A OUTPUT -p tcp -d ::1 --dport 9 -j REDIRECT --to-ports %u",
			     port))
		KS_TEST_SKIP(why);

	s = pair_via(l, "::1", port, &c);
	assert_int_equal(raw_original_dst(s, SOL_IPV6), 0);
	assert_int_equal(ks_original_dst(s, &orig), -ENOENT);
	close(s);
	close(c);
	s = pair_via(l, "::1", 9, &c);
	assert_int_equal(ks_original_dst(s, &orig), 0);
	/* Conntrack does not write the length back: it must still be right. */
	assert_int_equal(orig.len, sizeof(struct sockaddr_in6));
	assert_string_equal(ks_addr_str((struct sockaddr *)&orig.ss, buf, sizeof(buf)), "[::1]:9");
	close(s);
	close(c);
	close(l);
}

/*
 * ks_addr_parse_lazy: an IP literal is parsed at once, exactly as
 * ks_addr_parse does; a name is kept for a lookup later and never looked up
 * here; what is neither is refused.
 */
static void test_parse_lazy(void **state)
{
	struct ks_addr a;
	char name[KS_HOST_NAME_MAX], err[256], buf[KS_ADDRSTRLEN], long_name[300];
	uint16_t port = 0;

	(void)state;
	assert_int_equal(
	    ks_addr_parse_lazy("10.1.2.3:443", &a, name, sizeof(name), &port, err, sizeof(err)), 0);
	assert_string_equal(ks_addr_str((struct sockaddr *)&a.ss, buf, sizeof(buf)),
			    "10.1.2.3:443");
	assert_string_equal(name, "");
	assert_int_equal(
	    ks_addr_parse_lazy("[fd00::1]:8443", &a, name, sizeof(name), &port, err, sizeof(err)),
	    0);
	assert_string_equal(ks_addr_str((struct sockaddr *)&a.ss, buf, sizeof(buf)),
			    "[fd00::1]:8443");
	/* A name that resolves nowhere is still accepted: it may later. */
	assert_int_equal(ks_addr_parse_lazy("web.ns.svc.cluster.local:8443", &a, name, sizeof(name),
					    &port, err, sizeof(err)),
			 1);
	assert_string_equal(name, "web.ns.svc.cluster.local");
	assert_int_equal(port, 8443);
	assert_int_equal(a.ss.ss_family, 0);
	assert_int_equal(ks_addr_parse_lazy("ks-nowhere.invalid:1", &a, name, sizeof(name), &port,
					    err, sizeof(err)),
			 1);
	/* Neither an address nor a name. */
	assert_int_equal(
	    ks_addr_parse_lazy("999.1.2.3:80", &a, name, sizeof(name), &port, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "neither an IP address nor a host name"));
	assert_int_equal(
	    ks_addr_parse_lazy("bad name:80", &a, name, sizeof(name), &port, err, sizeof(err)),
	    -EINVAL);
	assert_int_equal(
	    ks_addr_parse_lazy("[not-v6]:80", &a, name, sizeof(name), &port, err, sizeof(err)),
	    -EINVAL);
	assert_int_equal(
	    ks_addr_parse_lazy("web:99999", &a, name, sizeof(name), &port, err, sizeof(err)),
	    -EINVAL);
	memset(long_name, 'a', 254);
	snprintf(long_name + 254, sizeof(long_name) - 254, ":80");
	assert_int_equal(
	    ks_addr_parse_lazy(long_name, &a, name, sizeof(name), &port, err, sizeof(err)),
	    -EINVAL);
}

/*
 * ks_send_pending on a real socketpair: a small buffer goes out whole; one
 * larger than the socket buffer stops at -EAGAIN with *off at what went out,
 * and resumes from there once the peer reads; a closed peer is -EPIPE (and
 * no SIGPIPE, which would end this program).
 */
static void test_send_pending(void **state)
{
	static char big[1 << 20], got[1 << 20];
	const char small[] = "hello";
	char rbuf[sizeof(small)];
	size_t off = 0, prev, total = 0;
	int sv[2], sndbuf = 4096;
	ssize_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(ks_send_pending(sv[0], small, sizeof(small), &off), 0);
	assert_int_equal(off, sizeof(small));
	assert_int_equal(recv(sv[1], rbuf, sizeof(rbuf), 0), (ssize_t)sizeof(small));
	assert_memory_equal(rbuf, small, sizeof(small));
	/* Nothing left to send is done at once. */
	assert_int_equal(ks_send_pending(sv[0], small, sizeof(small), &off), 0);

	/* 1 MiB does not fit a 4 KiB send buffer. */
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + 3);
	off = 0;
	assert_int_equal(ks_send_pending(sv[0], big, sizeof(big), &off), -EAGAIN);
	assert_true(off > 0 && off < sizeof(big));
	while (off < sizeof(big)) {
		prev = off;
		while ((n = recv(sv[1], got + total, sizeof(got) - total, MSG_DONTWAIT)) > 0)
			total += (size_t)n;
		assert_int_equal(total, prev); /* what *off says went out, arrived */
		(void)ks_send_pending(sv[0], big, sizeof(big), &off);
		assert_true(off > prev); /* resumed where it stopped */
	}
	while (total < sizeof(got) && (n = recv(sv[1], got + total, sizeof(got) - total, 0)) > 0)
		total += (size_t)n;
	assert_int_equal(total, sizeof(big));
	assert_memory_equal(got, big, sizeof(big));

	close(sv[1]);
	off = 0;
	assert_int_equal(ks_send_pending(sv[0], small, sizeof(small), &off), -EPIPE);
	assert_int_equal(off, 0);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_lazy),	 cmocka_unit_test(test_send_pending),
	    cmocka_unit_test(test_no_conntrack), cmocka_unit_test(test_nat_ipv4),
	    cmocka_unit_test(test_nat_ipv6),
	};

	return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
