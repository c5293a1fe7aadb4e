/* SPDX-License-Identifier: Apache-2.0 */
/* `ktls-sidecar redirect` option parsing, CIDR keys, the iptables ruleset
 * and the manifest text (no BPF, no iptables needed). */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redirect/redirect.h"
#include "redirect/uidmap.h"

static struct ks_redirect_opts opts;
static char err[256];

/* parse(ARGS..., NULL): the argv main() hands over, argv[0] = "redirect". */
static int parse(const char *first, ...)
{
	char *argv[64];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"redirect";
	va_start(ap, first);
	for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return ks_redirect_parse(argc, argv, &opts, err, sizeof(err));
}

#define INSTALL "install", "--name", "p", "--cgroup", "/cg", "--netns", "/ns"

static void test_cidr_keys(void **state)
{
	struct ks_redir_cidr_key k;
	char buf[64];

	(void)state;
	assert_int_equal(ks_redirect_parse_cidr("10.0.0.0/8", &k, err, sizeof(err)), 0);
	assert_int_equal(k.prefixlen, 96 + 8);
	static const unsigned char v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0};
	assert_memory_equal(k.addr, v4, 16);
	ks_redirect_format_cidr(&k, buf, sizeof(buf));
	assert_string_equal(buf, "10.0.0.0/8");

	assert_int_equal(ks_redirect_parse_cidr("fd00::/8", &k, err, sizeof(err)), 0);
	assert_int_equal(k.prefixlen, 8);
	assert_int_equal(k.addr[0], 0xfd);
	ks_redirect_format_cidr(&k, buf, sizeof(buf));
	assert_string_equal(buf, "fd00::/8");

	assert_int_equal(ks_redirect_parse_cidr("192.168.1.7/32", &k, err, sizeof(err)), 0);
	assert_int_equal(k.prefixlen, 128);
	assert_int_equal(ks_redirect_parse_cidr("0.0.0.0/0", &k, err, sizeof(err)), 0);
	assert_int_equal(k.prefixlen, 96); /* every IPv4 address, no IPv6 one */
	assert_int_equal(ks_redirect_parse_cidr("::/0", &k, err, sizeof(err)), 0);
	assert_int_equal(k.prefixlen, 0);
}

static void test_cidr_errors(void **state)
{
	static const struct {
		const char *in, *why;
	} bad[] = {
	    {"10.0.0.1/8", "host bits"}, {"fd00::1/64", "host bits"},
	    {"10.0.0.0/33", "0-32"},	 {"fd00::/129", "0-128"},
	    {"10.0.0.0/", "0-32"},	 {"10.0.0.0/-1", "0-32"},
	    {"10.0.0.0/8x", "0-32"},	 {"10.0.0.0", "ADDRESS/PREFIX"},
	    {"/8", "ADDRESS/PREFIX"},	 {"example.org/8", "not an IP address"},
	};
	struct ks_redir_cidr_key k;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(ks_redirect_parse_cidr(bad[i].in, &k, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].why))
			fail_msg("'%s': '%s' lacks '%s'", bad[i].in, err, bad[i].why);
	}
}

static void test_defaults_and_install(void **state)
{
	(void)state;
	assert_int_equal(parse(INSTALL, NULL), 0);
	assert_int_equal(opts.cmd, KS_REDIRECT_INSTALL);
	assert_string_equal(opts.name, "p");
	assert_int_equal(opts.cfg.abi, KS_REDIR_ABI);
	assert_int_equal(opts.cfg.outbound_port, 15001);
	assert_int_equal(opts.cfg.inbound_port, 15006);
	assert_int_equal(opts.cfg.sidecar_uid, 1337);
	/* Until install reads the user namespaces, all three views agree. */
	assert_int_equal(opts.cfg.sidecar_uid_pod, 1337);
	assert_int_equal(opts.host_uid, 1337);
	assert_null(opts.userns);
	assert_int_equal(opts.cfg.n_app_ports, 0);

	assert_int_equal(parse(INSTALL, "--outbound-port", "9001", "--inbound-port", "9006",
			       "--app-port", "8080", "--app-port", "8443", "--sidecar-uid", "7",
			       "--app-uid", "1000", "--app-uid", "0", "--exclude-port", "22",
			       "--exclude-cidr", "10.0.0.0/8", "--exclude-cidr", "fd00::/8", NULL),
			 0);
	assert_int_equal(opts.cfg.outbound_port, 9001);
	assert_int_equal(opts.cfg.inbound_port, 9006);
	assert_int_equal(opts.cfg.n_app_ports, 2);
	assert_int_equal(opts.cfg.app_ports[1], 8443);
	assert_int_equal(opts.cfg.sidecar_uid, 7);
	assert_int_equal(opts.cfg.sidecar_uid_pod, 7);
	assert_int_equal(opts.host_uid, 7);
	assert_int_equal(opts.n_app_uids, 2);
	assert_int_equal(opts.cfg.n_exclude_ports, 1);
	assert_int_equal(opts.n_cidrs, 2);

	/* --userns: install only (remove and status read the pins or rules). */
	assert_int_equal(parse(INSTALL, "--userns", "/proc/42/ns/user", NULL), 0);
	assert_string_equal(opts.userns, "/proc/42/ns/user");
	assert_int_equal(parse(INSTALL, "--userns", "/a", "--userns", "/b", NULL), -EINVAL);
	assert_non_null(strstr(err, "--userns given twice"));
	assert_int_equal(parse("status", "--name", "p", "--userns", "/a", NULL), -EINVAL);
	assert_non_null(strstr(err, "takes only --name"));

	/* Parsed twice in one process: getopt state is reset. */
	assert_int_equal(parse("status", "--name", "p", NULL), 0);
	assert_int_equal(opts.cmd, KS_REDIRECT_STATUS);
	assert_int_equal(parse("remove", "--name=p", NULL), 0);
	assert_int_equal(opts.cmd, KS_REDIRECT_REMOVE);
	assert_int_equal(parse("--help", NULL), 0);
	assert_true(opts.help);
	assert_int_equal(parse("install", "--help", NULL), 0);
	assert_true(opts.help);
}

static void test_usage_errors(void **state)
{
	static const char *const many[] = {"1",	 "2",  "3",  "4",  "5",	 "6",  "7",  "8", "9",
					   "10", "11", "12", "13", "14", "15", "16", "17"};
	char *argv[64] = {"redirect", "install", "--name", "p", "--cgroup", "/c", "--netns", "/n"};
	int argc = 8;

	(void)state;
	assert_int_equal(parse(NULL), -EINVAL);
	assert_non_null(strstr(err, "no command"));
	assert_int_equal(parse("frob", NULL), -EINVAL);
	assert_non_null(strstr(err, "unknown command"));
	assert_int_equal(parse("install", "--name", "p", "--netns", "/n", NULL), -EINVAL);
	assert_non_null(strstr(err, "--cgroup PATH is required"));
	assert_int_equal(parse("install", "--name", "p", "--cgroup", "/c", NULL), -EINVAL);
	assert_non_null(strstr(err, "--netns PATH is required"));
	assert_int_equal(parse("status", NULL), -EINVAL);
	assert_non_null(strstr(err, "--name NAME is required"));
	assert_int_equal(parse("remove", "--name", "p", "--app-port", "80", NULL), -EINVAL);
	assert_non_null(strstr(err, "takes only --name"));
	assert_int_equal(parse("status", "--name", "p", "--netns", "/n", NULL), -EINVAL);
	assert_non_null(strstr(err, "takes only --name, --mode, --manifest (the settings are in "
				    "the pins)"));
	assert_int_equal(parse("status", "--name", "p", "extra", NULL), -EINVAL);
	assert_non_null(strstr(err, "unexpected argument 'extra'"));
	assert_int_equal(parse(INSTALL, "--bogus", NULL), -EINVAL);
	assert_non_null(strstr(err, "--bogus"));
	assert_int_equal(parse(INSTALL, "--app-port", NULL), -EINVAL);
	assert_int_equal(parse(INSTALL, "--name", "q", NULL), -EINVAL);
	assert_non_null(strstr(err, "given twice"));

	for (size_t i = 0; i < 6; i++) {
		static const char *const names[] = {"", ".hidden", "a/b", "..", "a b", "x\n"};

		assert_int_equal(parse("status", "--name", names[i], NULL), -EINVAL);
		assert_non_null(strstr(err, "--name"));
	}
	static const char *const ports[] = {"0", "65536", "-1", "+80", "80x", "", "http"};
	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		assert_int_equal(parse(INSTALL, "--app-port", ports[i], NULL), -EINVAL);
		assert_non_null(strstr(err, "1-65535"));
	}
	assert_int_equal(parse(INSTALL, "--sidecar-uid", "4294967295", NULL), -EINVAL);
	/* The exemption is by uid: root's would take every root process. */
	assert_int_equal(parse(INSTALL, "--sidecar-uid", "0", NULL), -EINVAL);
	assert_non_null(strstr(err, "every process running as root in the pod would bypass"));
	assert_int_equal(parse(INSTALL, "--mode", "iptables", "--sidecar-uid", "0", NULL), -EINVAL);
	assert_int_equal(parse(INSTALL, "--app-uid", "1337", NULL), -EINVAL);
	assert_non_null(strstr(err, "--app-uid 1337 is the --sidecar-uid"));
	assert_int_equal(
	    parse(INSTALL, "--sidecar-uid", "5", "--app-uid", "6", "--app-uid", "5", NULL),
	    -EINVAL);
	assert_int_equal(parse(INSTALL, "--app-uid", "x", NULL), -EINVAL);
	assert_int_equal(parse(INSTALL, "--sidecar-uid", "nobody", NULL), -EINVAL);
	assert_int_equal(parse(INSTALL, "--app-port", "80", "--app-port", "80", NULL), -EINVAL);
	assert_non_null(strstr(err, "given twice"));
	assert_int_equal(
	    parse(INSTALL, "--exclude-cidr", "10.0.0.0/8", "--exclude-cidr", "10.0.0.0/8", NULL),
	    -EINVAL);
	assert_non_null(strstr(err, "given twice"));
	/* The sidecar's own ports are never the app's: that would loop. */
	assert_int_equal(parse(INSTALL, "--app-port", "15006", NULL), -EINVAL);
	assert_non_null(strstr(err, "port of the sidecar"));
	assert_int_equal(parse(INSTALL, "--outbound-port", "15006", NULL), -EINVAL);
	assert_non_null(strstr(err, "both 15006"));

	/* At most 16 app ports. */
	for (size_t i = 0; i < 17; i++) {
		argv[argc++] = (char *)"--app-port";
		argv[argc++] = (char *)many[i];
	}
	argv[argc] = NULL;
	assert_int_equal(ks_redirect_parse(argc, argv, &opts, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most 16"));
	argc -= 2;
	argv[argc] = NULL;
	assert_int_equal(ks_redirect_parse(argc, argv, &opts, err, sizeof(err)), 0);
	assert_int_equal(opts.cfg.n_app_ports, 16);
}

static void test_mode_and_manifest(void **state)
{
	(void)state;
	assert_int_equal(parse(INSTALL, NULL), 0);
	assert_int_equal(opts.mode, KS_REDIRECT_BPF);
	assert_string_equal(opts.manifest, KS_REDIR_MANIFEST_DEFAULT);
	assert_int_equal(parse(INSTALL, "--manifest", "none", NULL), 0);
	assert_null(opts.manifest);
	assert_int_equal(parse(INSTALL, "--manifest", "/tmp/x/r.conf", NULL), 0);
	assert_string_equal(opts.manifest, "/tmp/x/r.conf");
	assert_int_equal(parse(INSTALL, "--manifest", "r.conf", NULL), -EINVAL);
	assert_non_null(strstr(err, "absolute"));
	assert_int_equal(parse(INSTALL, "--manifest", "/tmp/", NULL), -EINVAL);

	/* iptables: no cgroup needed (accepted, ignored), the netns is. */
	assert_int_equal(
	    parse("install", "--mode", "iptables", "--name", "p", "--netns", "/n", NULL), 0);
	assert_int_equal(opts.mode, KS_REDIRECT_IPTABLES);
	assert_int_equal(parse(INSTALL, "--mode", "iptables", NULL), 0);
	assert_int_equal(parse("install", "--mode", "iptables", "--name", "p", NULL), -EINVAL);
	assert_non_null(strstr(err, "--netns PATH is required"));
	assert_int_equal(parse(INSTALL, "--mode", "nft", NULL), -EINVAL);
	assert_non_null(strstr(err, "bpf or iptables"));
	/* Chain names: KS_<name>_OUT in 28 characters. */
	assert_int_equal(parse("status", "--mode", "iptables", "--netns", "/n", "--name",
			       "abcdefghijklmnopqrstu", NULL),
			 0);
	assert_int_equal(parse("status", "--mode", "iptables", "--netns", "/n", "--name",
			       "abcdefghijklmnopqrstuv", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "at most 21"));
	/* remove/status in iptables mode: the rules are found by --netns. */
	assert_int_equal(parse("remove", "--mode", "iptables", "--name", "p", NULL), -EINVAL);
	assert_non_null(strstr(err, "--netns PATH is required"));
	assert_int_equal(parse("remove", "--mode", "iptables", "--name", "p", "--netns", "/n",
			       "--manifest", "none", NULL),
			 0);
	assert_int_equal(parse("status", "--mode", "iptables", "--name", "p", "--netns", "/n",
			       "--app-port", "80", NULL),
			 -EINVAL);
	assert_non_null(strstr(err, "and --netns (the settings are in the rules)"));
	/* A newline in a path would forge a manifest line. */
	assert_int_equal(
	    parse("install", "--name", "p", "--cgroup", "/c\nmode=x", "--netns", "/n", NULL),
	    -EINVAL);
	assert_non_null(strstr(err, "newline"));
}

/* The probe's two spellings agree: the sidecar uses the string, BPF the number. */
static void test_probe_constants(void **state)
{
	struct in_addr a;

	(void)state;
	assert_int_equal(inet_pton(AF_INET, KS_REDIR_PROBE_ADDR, &a), 1);
	struct in6_addr a6;
	uint32_t w[4];

	assert_int_equal(ntohl(a.s_addr), KS_REDIR_PROBE_IP4);
	assert_int_equal(KS_REDIR_PROBE_PORT, 15999);
	/* The IPv6 probe: the string the sidecar connects to is the address
	 * the BPF program compares against. */
	assert_int_equal(inet_pton(AF_INET6, KS_REDIR_PROBE_ADDR6, &a6), 1);
	memcpy(w, &a6, sizeof(w));
	assert_int_equal(ntohl(w[0]), KS_REDIR_PROBE_IP6_W0);
	assert_int_equal(w[1], 0);
	assert_int_equal(w[2], 0);
	assert_int_equal(ntohl(w[3]), KS_REDIR_PROBE_IP6_W3);
}

static void test_iptables_rules(void **state)
{
	static const char want4[] =
	    "*nat\n"
	    ":KS_pod-a_OUT - [0:0]\n"
	    ":KS_pod-a_IN - [0:0]\n"
	    "-A KS_pod-a_OUT -d 169.254.255.254/32 -p tcp -m tcp --dport 15999 -j REDIRECT "
	    "--to-ports 15001\n"
	    "-A KS_pod-a_OUT -m owner --uid-owner 1337 -j RETURN\n"
	    "-A KS_pod-a_OUT -d 127.0.0.0/8 -j RETURN\n"
	    "-A KS_pod-a_OUT -p tcp -m tcp --dport 9090 -j RETURN\n"
	    "-A KS_pod-a_OUT -d 10.200.9.0/24 -j RETURN\n"
	    "-A KS_pod-a_OUT -p tcp -j REDIRECT --to-ports 15001\n"
	    "-A KS_pod-a_IN -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 15006\n"
	    "-A KS_pod-a_IN -p tcp -m tcp --dport 8443 -j REDIRECT --to-ports 15006\n";
	static const char want6[] = "-A KS_pod-a_OUT -d 100::a9fe:fffe/128 -p tcp -m tcp --dport "
				    "15999 -j REDIRECT --to-ports 15001\n"
				    "-A KS_pod-a_OUT -m owner --uid-owner 1337 -j RETURN\n"
				    "-A KS_pod-a_OUT -d ::1/128 -j RETURN\n"
				    "-A KS_pod-a_OUT -p tcp -m tcp --dport 9090 -j RETURN\n"
				    "-A KS_pod-a_OUT -d fd00:99::/32 -j RETURN\n"
				    "-A KS_pod-a_OUT -p tcp -j REDIRECT --to-ports 15001\n";
	char buf[4096], buf2[4096], small[64];
	const char *jump;
	char digest[17];
	int n;

	(void)state;
	assert_int_equal(parse("install", "--mode", "iptables", "--name", "pod-a", "--netns", "/n",
			       "--app-port", "8080", "--app-port", "8443", "--exclude-port", "9090",
			       "--exclude-cidr", "10.200.9.0/24", "--exclude-cidr", "fd00:99::/32",
			       NULL),
			 0);
	n = ks_redirect_iptables_rules(&opts, AF_INET, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	if (strncmp(buf, want4, strlen(want4)) != 0)
		fail_msg("IPv4 rules:\n%s", buf);
	/* The jumps come first in their chains and carry the digest. */
	jump = buf + strlen(want4);
	assert_int_equal(sscanf(jump,
				"-I OUTPUT 1 -p tcp -m comment --comment "
				"ks-redirect:pod-a:cfg=%16[0-9a-f]:rules=6+2 -j KS_pod-a_OUT\n",
				digest),
			 1);
	assert_non_null(strstr(jump, "\n-I PREROUTING 1 ! -i lo -p tcp -m comment --comment "
				     "ks-redirect:pod-a:cfg="));
	assert_non_null(strstr(jump, ":rules=6+2 -j KS_pod-a_IN\nCOMMIT\n"));

	/* IPv6: its own probe first, ::1, the IPv6 CIDR only. */
	n = ks_redirect_iptables_rules(&opts, AF_INET6, buf2, sizeof(buf2));
	assert_true(n > 0);
	if (!strstr(buf2, want6))
		fail_msg("IPv6 rules:\n%s", buf2);
	assert_null(strstr(buf2, "169.254"));
	assert_null(strstr(buf2, "10.200"));
	assert_non_null(strstr(buf2, digest));
	assert_non_null(strstr(buf2, ":rules=6+2 -j KS_pod-a_OUT\n"));

	/* The same settings in another order: the same digest. Others: not. */
	assert_int_equal(parse("install", "--mode", "iptables", "--name", "pod-a", "--netns", "/n",
			       "--exclude-cidr", "fd00:99::/32", "--exclude-cidr", "10.200.9.0/24",
			       "--exclude-port", "9090", "--app-port", "8080", "--app-port", "8443",
			       NULL),
			 0);
	assert_true(ks_redirect_iptables_rules(&opts, AF_INET, buf2, sizeof(buf2)) > 0);
	assert_string_equal(buf, buf2);
	assert_int_equal(parse("install", "--mode", "iptables", "--name", "pod-a", "--netns", "/n",
			       "--app-port", "8080", "--app-port", "8443", "--exclude-port", "9090",
			       "--exclude-cidr", "10.200.9.0/24", "--exclude-cidr", "fd00:99::/32",
			       "--sidecar-uid", "1338", NULL),
			 0);
	assert_true(ks_redirect_iptables_rules(&opts, AF_INET, buf2, sizeof(buf2)) > 0);
	assert_null(strstr(buf2, digest));
	/* --ipv4-only is a setting too: installed without it, IPv6 rules exist. */
	assert_int_equal(parse("install", "--mode", "iptables", "--name", "pod-a", "--netns", "/n",
			       "--app-port", "8080", "--app-port", "8443", "--exclude-port", "9090",
			       "--exclude-cidr", "10.200.9.0/24", "--exclude-cidr", "fd00:99::/32",
			       "--ipv4-only", NULL),
			 0);
	assert_true(opts.ipv4_only);
	assert_true(ks_redirect_iptables_rules(&opts, AF_INET, buf2, sizeof(buf2)) > 0);
	assert_null(strstr(buf2, digest));
	/* Only iptables mode installs IPv4 alone; remove and status take no settings. */
	assert_int_equal(
	    parse("install", "--name", "p", "--cgroup", "/c", "--netns", "/n", "--ipv4-only", NULL),
	    -EINVAL);
	assert_non_null(strstr(err, "--ipv4-only is for --mode iptables"));
	assert_int_equal(parse("status", "--mode", "iptables", "--name", "p", "--netns", "/n",
			       "--ipv4-only", NULL),
			 -EINVAL);

	assert_int_equal(ks_redirect_iptables_rules(&opts, AF_INET, small, sizeof(small)), -ENOSPC);
}

static void test_manifest_text(void **state)
{
	char buf[1024];

	(void)state;
	assert_int_equal(parse(INSTALL, "--app-port", "8080", "--app-port", "8443", NULL), 0);
	assert_true(ks_redirect_manifest_text(&opts, true, "6.1.0-28-amd64", 1732700000, buf,
					      sizeof(buf)) > 0);
	assert_string_equal(buf, "mode=bpf\nname=p\ncgroup=/cg\nnetns=/ns\nsidecar_uid=1337\n"
				 "outbound_port=15001\ninbound_port=15006\napp_ports=8080,8443\n"
				 "kernel=6.1.0-28-amd64\ninstalled_unix=1732700000\nipv6=yes\n"
				 "sidecar_host_uid=1337\nsidecar_userns=0\n");
	/* A user-namespaced pod, as install leaves the options: the hooks
	 * compare the host's uid, the sidecar its own. */
	opts.cfg.sidecar_uid = 101337;
	opts.host_uid = 101337;
	opts.userns_ino = 4026532451ULL;
	assert_true(ks_redirect_manifest_text(&opts, true, "6.1.0-28-amd64", 1732700000, buf,
					      sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\nsidecar_uid=1337\n"));
	assert_non_null(strstr(buf, "\nipv6=yes\nsidecar_host_uid=101337\n"
				    "sidecar_userns=4026532451\n"));
	/* iptables: no cgroup; no app ports: an empty value. */
	assert_int_equal(parse(INSTALL, "--mode", "iptables", "--sidecar-uid", "1",
			       "--outbound-port", "9001", NULL),
			 0);
	assert_true(ks_redirect_manifest_text(&opts, false, "6.12.9", 7, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "mode=iptables\nname=p\ncgroup=\nnetns=/ns\nsidecar_uid=1\n"
				 "outbound_port=9001\ninbound_port=15006\napp_ports=\n"
				 "kernel=6.12.9\ninstalled_unix=7\nipv6=no\n"
				 "sidecar_host_uid=1\nsidecar_userns=0\n");
	assert_int_equal(ks_redirect_manifest_text(&opts, false, "6.12.9", 7, buf, 40), -ENOSPC);
}

/* uid_map as the kernel prints it (proc_id_map_show: "%10u %10u %10u\n"). */
static void test_uid_map(void **state)
{
	static struct ks_uid_map m;
	__u32 v = 0;
	char buf[128];

	(void)state;
	assert_int_equal(
	    ks_uid_map_parse("         0     100000      65536\n", &m, err, sizeof(err)), 0);
	assert_int_equal(m.n, 1);
	assert_false(ks_uid_map_is_identity(&m));
	/* The pod's 1337 is the host's 101337, and back. */
	assert_int_equal(ks_uid_map_to_outside(&m, 1337, &v), 0);
	assert_int_equal(v, 101337);
	assert_int_equal(ks_uid_map_to_inside(&m, 101337, &v), 0);
	assert_int_equal(v, 1337);
	/* The edges of the extent. */
	assert_int_equal(ks_uid_map_to_outside(&m, 0, &v), 0);
	assert_int_equal(v, 100000);
	assert_int_equal(ks_uid_map_to_outside(&m, 65535, &v), 0);
	assert_int_equal(v, 165535);
	assert_int_equal(ks_uid_map_to_outside(&m, 65536, &v), -ENOENT);
	assert_int_equal(ks_uid_map_to_inside(&m, 99999, &v), -ENOENT);
	assert_int_equal(ks_uid_map_to_inside(&m, 165536, &v), -ENOENT);
	assert_int_equal(ks_uid_map_to_inside(&m, 1337, &v), -ENOENT);
	ks_uid_map_format(&m, buf, sizeof(buf));
	assert_string_equal(buf, "0 100000 65536");

	/* Several extents, the one-uid kind too; tabs and a last line without \n. */
	assert_int_equal(ks_uid_map_parse("0 200000 1000\n1337\t5000\t1\n\n2000 300000 10", &m, err,
					  sizeof(err)),
			 0);
	assert_int_equal(m.n, 3);
	assert_int_equal(ks_uid_map_to_outside(&m, 1337, &v), 0);
	assert_int_equal(v, 5000);
	assert_int_equal(ks_uid_map_to_outside(&m, 1336, &v), -ENOENT);
	assert_int_equal(ks_uid_map_to_outside(&m, 2009, &v), 0);
	assert_int_equal(v, 300009);
	assert_int_equal(ks_uid_map_to_inside(&m, 5000, &v), 0);
	assert_int_equal(v, 1337);
	ks_uid_map_format(&m, buf, sizeof(buf));
	assert_string_equal(buf, "0 200000 1000, 1337 5000 1, 2000 300000 10");

	/* The initial namespace: everything to itself, the last uid too. */
	assert_int_equal(
	    ks_uid_map_parse("         0          0 4294967295\n", &m, err, sizeof(err)), 0);
	assert_true(ks_uid_map_is_identity(&m));
	assert_int_equal(ks_uid_map_to_outside(&m, 4294967294U, &v), 0);
	assert_int_equal(v, 4294967294U);
	/* A namespace whose map is not written yet maps nothing. */
	assert_int_equal(ks_uid_map_parse("", &m, err, sizeof(err)), 0);
	assert_int_equal(m.n, 0);
	assert_int_equal(ks_uid_map_to_outside(&m, 0, &v), -ENOENT);
	ks_uid_map_format(&m, buf, sizeof(buf));
	assert_string_equal(buf, "(empty)");
	/* Root alone, as unshare --map-root-user writes it. */
	assert_int_equal(ks_uid_map_parse("0 0 1\n", &m, err, sizeof(err)), 0);
	assert_false(ks_uid_map_is_identity(&m));
}

static void test_uid_map_errors(void **state)
{
	static const struct {
		const char *in, *why;
	} bad[] = {
	    {"0 100000\n", "2 numbers"},
	    {"0 100000 65536 7\n", "not three numbers"},
	    {"0 -1 5\n", "not three numbers"},
	    {"0 x 5\n", "not three numbers"},
	    {"0 100000 0\n", "empty or wraps"},
	    {"1 0 4294967295\n", "empty or wraps"},
	    {"0 4294967295 1\n", "empty or wraps"},
	    {"0 4294967296 1\n", "not three numbers"},
	};
	static struct ks_uid_map m;
	char big[KS_UID_MAP_MAX * 16 + 32];
	size_t off = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(ks_uid_map_parse(bad[i].in, &m, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].why))
			fail_msg("'%s': '%s' lacks '%s'", bad[i].in, err, bad[i].why);
	}
	/* The kernel's 340 extents parse; one more does not. */
	for (unsigned int i = 0; i <= KS_UID_MAP_MAX; i++)
		off += (size_t)snprintf(big + off, sizeof(big) - off, "%u %u 1\n", i, 1000 + i);
	assert_int_equal(ks_uid_map_parse(big, &m, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than 340"));
	*strrchr(big, '\n') = '\0';
	*(strrchr(big, '\n') + 1) = '\0';
	assert_int_equal(ks_uid_map_parse(big, &m, err, sizeof(err)), 0);
	assert_int_equal(m.n, KS_UID_MAP_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cidr_keys),
	    cmocka_unit_test(test_cidr_errors),
	    cmocka_unit_test(test_defaults_and_install),
	    cmocka_unit_test(test_usage_errors),
	    cmocka_unit_test(test_mode_and_manifest),
	    cmocka_unit_test(test_probe_constants),
	    cmocka_unit_test(test_iptables_rules),
	    cmocka_unit_test(test_manifest_text),
	    cmocka_unit_test(test_uid_map),
	    cmocka_unit_test(test_uid_map_errors),
	};

	return cmocka_run_group_tests_name("redirect", tests, NULL, NULL);
}
