/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sidecar's side of the redirect check: the manifest parser refuses
 * every malformed file by name, and the worker recognizes the start-up
 * probe only by its source port on a transparent route, answering with
 * what getsockopt(SO_ORIGINAL_DST) gave, with and without conntrack. (The
 * live probe against real BPF and iptables redirects is
 * tests/integration/daemon/t_redirect_check.sh.)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../netns.h"
#include "daemon/config.h"
#include "daemon/redirect_check.h"
#include "dataplane/worker.h"

static char path[64];

static int setup(void **state)
{
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "/tmp/ks-rchk-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static int parse(const char *text, struct ks_redirect_manifest *m, char *err, size_t errlen)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return ks_redirect_manifest_read(path, m, err, errlen);
}

static void test_manifest(void **state)
{
	struct ks_redirect_manifest m;
	char err[512];

	(void)state;
	assert_int_equal(
	    parse("mode=bpf\nname=pod-a\ncgroup=/sys/fs/cgroup/x\nnetns=/run/netns/a\n"
		  "sidecar_uid=1337\noutbound_port=15001\ninbound_port=15006\n"
		  "app_ports=8080,9090\nkernel=6.1.0\ninstalled_unix=1\nipv6=yes\nfuture_key=1\n",
		  &m, err, sizeof(err)),
	    0);
	assert_string_equal(m.mode, "bpf");
	assert_string_equal(m.name, "pod-a");
	assert_int_equal(m.sidecar_uid, 1337);
	assert_int_equal(m.outbound_port, 15001);
	assert_int_equal(m.inbound_port, 15006);
	assert_int_equal(m.napp_ports, 2);
	assert_true(m.ipv6);
	/* Before the user namespace keys: nothing to check against. */
	assert_false(m.host_uid_known);
	assert_int_equal(m.sidecar_userns, 0);
	assert_int_equal(parse("mode=iptables\nsidecar_uid=0\noutbound_port=1\ninbound_port=2\n"
			       "app_ports=\n",
			       &m, err, sizeof(err)),
			 0);
	assert_int_equal(m.napp_ports, 0);
	assert_false(m.ipv6); /* a manifest from before the key: IPv4 only */
	/* A user-namespaced pod: the sidecar's uid, the host's, the namespace. */
	assert_int_equal(parse("mode=bpf\nsidecar_uid=1337\noutbound_port=1\ninbound_port=2\n"
			       "ipv6=yes\nsidecar_host_uid=101337\nsidecar_userns=4026532451\n",
			       &m, err, sizeof(err)),
			 0);
	assert_int_equal(m.sidecar_uid, 1337);
	assert_true(m.host_uid_known);
	assert_int_equal(m.sidecar_host_uid, 101337);
	assert_int_equal(m.sidecar_userns, 4026532451ULL);
	/* Unreadable: unknown, never a wrong number to compare with. */
	assert_int_equal(parse("mode=bpf\nsidecar_uid=1337\noutbound_port=1\ninbound_port=2\n"
			       "sidecar_host_uid=-1\nsidecar_userns=0x10\n",
			       &m, err, sizeof(err)),
			 0);
	assert_false(m.host_uid_known);
	assert_int_equal(m.sidecar_userns, 0);
	assert_int_equal(parse("mode=iptables\nsidecar_uid=0\noutbound_port=1\ninbound_port=2\n"
			       "ipv6=no\n",
			       &m, err, sizeof(err)),
			 0);
	assert_false(m.ipv6);

	assert_int_equal(parse("mode=nft\nsidecar_uid=0\noutbound_port=1\ninbound_port=2\n", &m,
			       err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "neither bpf nor iptables"));
	assert_int_equal(parse("mode=bpf\noutbound_port=1\ninbound_port=2\n", &m, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "lacks a valid sidecar_uid"));
	assert_int_equal(parse("mode=bpf\nsidecar_uid=1x\noutbound_port=1\ninbound_port=2\n", &m,
			       err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "lacks a valid sidecar_uid"));
	assert_int_equal(parse("mode=bpf\nsidecar_uid=0\noutbound_port=70000\ninbound_port=2\n", &m,
			       err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "lacks a valid outbound_port"));
	assert_int_equal(parse("mode=bpf\nsidecar_uid=0\noutbound_port=1\n", &m, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "lacks a valid inbound_port"));
	assert_int_equal(parse("", &m, err, sizeof(err)), -EINVAL);
	assert_int_equal(
	    ks_redirect_manifest_read("/nonexistent/redirect.conf", &m, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "did not run"));
}

/* A socket pair over loopback: the accepted end stands in for a worker's. */
static void tcp_pair(int *client, int *server, uint16_t *client_port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*client = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(*client, (struct sockaddr *)&a, sizeof(a)), 0);
	*server = accept(l, NULL, NULL);
	assert_true(*server >= 0);
	close(l);
	len = sizeof(a);
	assert_int_equal(getsockname(*client, (struct sockaddr *)&a, &len), 0);
	*client_port = ntohs(a.sin_port);
}

/*
 * In a network namespace of its own (tests/unit/netns.h), so the host's
 * netfilter state does not decide the result: without conntrack, and with
 * a nat rule (for another port), which makes conntrack answer
 * SO_ORIGINAL_DST for every connection with its own destination.
 */
static void probe_take(bool nat)
{
	static struct ks_shared sh;
	struct ks_route transparent = {.dir = KS_OUTBOUND, .transparent = true};
	struct ks_route plain = {.dir = KS_OUTBOUND};
	struct sockaddr_in peer = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in orig;
	socklen_t olen = sizeof(orig);
	char why[256];
	int c, s, rc;
	uint16_t port;

	if (!ks_test_fresh_netns(why, sizeof(why)))
		KS_TEST_SKIP(why);
	if (nat && !ks_test_xtables(why, sizeof(why), "iptables",
				    "-t nat -A OUTPUT -p tcp --dport 9 -j REDIRECT --to-ports 10"))
		KS_TEST_SKIP(why);
	memset(&sh, 0, sizeof(sh));
	tcp_pair(&c, &s, &port);
	/* The precondition: conntrack answers exactly when a nat rule is there. */
	rc = getsockopt(s, SOL_IP, SO_ORIGINAL_DST, &orig, &olen);
	assert_int_equal(rc, nat ? 0 : -1);
	peer.sin_port = htons(port);
	/* No probe under way: an ordinary connection. */
	assert_false(ks_redirect_probe_take(&sh, &transparent, s, (struct sockaddr *)&peer));
	atomic_store(&sh.probe_port, (uint16_t)(port + 1));
	assert_false(ks_redirect_probe_take(&sh, &transparent, s, (struct sockaddr *)&peer));
	atomic_store(&sh.probe_port, port);
	assert_false(ks_redirect_probe_take(&sh, &plain, s, (struct sockaddr *)&peer));
	/* The probe, on a transparent route, without a redirect behind it:
	 * no original destination, and the socket is closed. */
	assert_true(ks_redirect_probe_take(&sh, &transparent, s, (struct sockaddr *)&peer));
	assert_int_equal(atomic_load(&sh.probe_result), KS_PROBE_NO_ORIG);
	assert_int_equal(fcntl(s, F_GETFD), -1);
	close(c);
}

static void test_probe_take(void **state)
{
	(void)state;
	probe_take(false);
}

static void test_probe_take_conntrack(void **state)
{
	(void)state;
	probe_take(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manifest),
	    cmocka_unit_test(test_probe_take),
	    cmocka_unit_test(test_probe_take_conntrack),
	};

	return cmocka_run_group_tests_name("redirect_check", tests, setup, teardown);
}
