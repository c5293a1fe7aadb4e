/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktls-sidecar redirect install|remove|status: the privileged, run-once half
 * of the eBPF transparent redirect (bpf/redirect.bpf.c), meant for an init
 * container with CAP_BPF and CAP_NET_ADMIN. It attaches every program with a
 * bpf_link and pins the links and maps under /sys/fs/bpf/<name>: a pinned
 * link keeps its program attached after the loader exits, so the sidecar
 * itself needs no capability and never calls bpf() (which Debian forbids
 * to unprivileged users: kernel.unprivileged_bpf_disabled=2).
 *
 * Exit codes: 0 done; 1 failed (the message says what is missing); 2 usage.
 */
#include "redirect_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>
#include <linux/nsfs.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "config.h"
#include "redirect.skel.h"

#define BPFFS "/sys/fs/bpf"

#define DEFAULT_OUTBOUND_PORT 15001
#define DEFAULT_INBOUND_PORT  15006
/* Istio's proxy uid, which pod security policies often already allow. */
#define DEFAULT_SIDECAR_UID 1337

/*
 * The pins, in the order remove detaches them: the connect() rewrite goes
 * first, so no connection is redirected once nothing can answer
 * SO_ORIGINAL_DST for it any more. install attaches in the reverse order.
 */
enum { L_CONNECT4, L_CONNECT6, L_SK_LOOKUP, L_SOCKOPS, L_GETSOCKOPT, L_MAX };
static const char *const link_pins[L_MAX] = {
    "link_connect4", "link_connect6", "link_sk_lookup", "link_sockops", "link_getsockopt",
};
static const char *const link_hooks[L_MAX] = {
    "cgroup/connect4", "cgroup/connect6", "sk_lookup", "sockops", "cgroup/getsockopt",
};

enum { M_CONFIG, M_CIDRS, M_BY_COOKIE, M_BY_PEER, M_LISTENERS, M_STATS, M_MAX };
static const char *const map_pins[M_MAX] = {
    "map_config",	"map_exclude_cidrs", "map_orig_by_cookie",
    "map_orig_by_peer", "map_listeners",     "map_stats",
};

static const char *const stat_names[KS_STAT_MAX] = {
    [KS_STAT_REDIRECTED] = "redirected",
    [KS_STAT_EXEMPT_UID] = "exempt_uid",
    [KS_STAT_EXEMPT_LOOPBACK] = "exempt_loopback",
    [KS_STAT_EXEMPT_PORT] = "exempt_port",
    [KS_STAT_EXEMPT_CIDR] = "exempt_cidr",
    [KS_STAT_TIED] = "tied",
    [KS_STAT_ORIG_ANSWERED] = "original_dst_answered",
    [KS_STAT_LISTENER_ADDED] = "listener_added",
    [KS_STAT_LISTENER_FAILED] = "listener_failed",
    [KS_STAT_LISTENER_LAST_ERR] = "listener_last_errno",
    [KS_STAT_STEERED] = "steered",
    [KS_STAT_STEER_NO_LISTENER] = "steer_refused_no_listener",
    [KS_STAT_STEER_FAILED] = "steer_refused_assign_failed",
    [KS_STAT_PROBE] = "probe_redirected",
};

__attribute__((format(printf, 1, 2))) void ks_redir_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", PROG);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: ktls-sidecar redirect install --name NAME --cgroup PATH --netns PATH "
		"[OPTIONS]\n"
		"       ktls-sidecar redirect install --mode iptables --name NAME --netns PATH "
		"[OPTIONS]\n"
		"       ktls-sidecar redirect remove --name NAME [--manifest PATH]\n"
		"       ktls-sidecar redirect status --name NAME\n"
		"       (remove and status in iptables mode: add --mode iptables --netns PATH)\n"
		"\n"
		"Transparent redirect for one pod. Run once, as root or with the capabilities\n"
		"below (an init container); the sidecar itself needs no capability.\n"
		"\n"
		"--mode bpf (default): eBPF programs, no iptables, no NAT. Needs CAP_BPF and\n"
		"CAP_NET_ADMIN. Links and maps are pinned under " BPFFS "/NAME and stay\n"
		"attached after this command exits, until `remove`.\n"
		"Outbound: a TCP connect() by a process in the cgroup goes to the sidecar's\n"
		"transparent outbound listener on loopback (127.0.0.1:PORT; an IPv4-mapped\n"
		"IPv6 destination to ::ffff:127.0.0.1:PORT; a native IPv6 one to [::1]:PORT,\n"
		"so give the sidecar `--outbound-transparent [::1]:PORT` for IPv6). The\n"
		"sidecar finds the original destination with getsockopt(SO_ORIGINAL_DST),\n"
		"as under iptables REDIRECT. Not redirected: the sidecar's uid, loopback\n"
		"destinations, excluded ports and CIDRs, anything but TCP.\n"
		"Inbound: in the network namespace, a TCP connection to one of the app's ports\n"
		"on an address other than loopback is handed to the sidecar's inbound\n"
		"listener (the one on the inbound port) without NAT: the accepted socket's\n"
		"local address is the original destination. The listener registers itself\n"
		"when it calls listen(). While none is registered, such connections are\n"
		"refused, never passed to the app in plaintext.\n"
		"\n"
		"--mode iptables: for kernels or policies without those BPF hooks. nat table\n"
		"rules in the pod's network namespace, chains KS_NAME_OUT (from OUTPUT) and\n"
		"KS_NAME_IN (from PREROUTING), written in one iptables-restore (and\n"
		"ip6tables-restore, when installed) transaction. Needs iptables, the kernel's\n"
		"nat table, and CAP_NET_ADMIN (plus CAP_SYS_ADMIN to enter a --netns other\n"
		"than its own; NET_RAW for iptables-legacy). Outbound: the same exemptions by\n"
		"the sidecar's uid (-m owner), so --cgroup is not needed (accepted, ignored);\n"
		"REDIRECT to the outbound port on loopback. Inbound: the app's ports, not from\n"
		"lo, are REDIRECTed to the inbound port. This is NAT: the sidecar's accepted\n"
		"socket has the inbound port as its local port, not the app's; and while the\n"
		"sidecar is down such connections are refused (nothing listens there).\n"
		"\n"
		"Both modes: the start-up probe, a TCP connect() to " KS_REDIR_PROBE_ADDR ":%d,\n"
		"is redirected to the outbound listener from every uid, the sidecar's too, and\n"
		"whatever is excluded, so the sidecar can check that redirection works. (In\n"
		"iptables mode the address needs a route, as every destination does before\n"
		"nat OUTPUT sees it: a pod's default route.)\n"
		"\n"
		"Commands:\n"
		"  install    install; if NAME is already installed with the same settings,\n"
		"             do nothing; with other settings, refuse. Writes the manifest.\n"
		"  remove     detach and unpin everything under " BPFFS "/NAME, or delete the\n"
		"             jumps and chains (nothing to do if not installed); delete the\n"
		"             manifest if it is NAME's\n"
		"  status     what is attached (bpf: hooks, settings, listener, counters;\n"
		"             iptables: the chains and rules found); exit 1 unless all is there\n"
		"\n"
		"Options:\n"
		"  --mode bpf|iptables    how to redirect (default bpf)\n"
		"  --name NAME            pin directory " BPFFS "/NAME, or chains KS_NAME_OUT\n"
		"                         and KS_NAME_IN ([A-Za-z0-9._-], not starting with\n"
		"                         '.'; at most 64 characters, 21 in iptables mode)\n"
		"  --cgroup PATH          install, bpf: the pod's cgroup v2 directory (connect4,\n"
		"                         connect6, getsockopt and sockops attach to it and\n"
		"                         cover every process below it)\n"
		"  --netns PATH           the pod's network namespace (/proc/PID/ns/net or\n"
		"                         /run/netns/NAME): sk_lookup, or the rules\n"
		"  --outbound-port PORT   the sidecar's transparent outbound listener (default\n"
		"                         %d)\n"
		"  --inbound-port PORT    the sidecar's inbound (mTLS) listener (default %d)\n"
		"  --app-port PORT        a port the app serves on: steered to the inbound\n"
		"                         listener (repeatable, at most %d; none: no steering)\n"
		"  --sidecar-uid UID      the sidecar's uid: its own connections are never\n"
		"                         redirected (default %d)\n"
		"  --exclude-port PORT    outbound destination port never redirected\n"
		"                         (repeatable, at most %d)\n"
		"  --exclude-cidr CIDR    outbound destination network never redirected, e.g.\n"
		"                         10.0.0.0/8 or fd00::/8 (repeatable, at most %d)\n"
		"  --manifest PATH|none   install writes, remove deletes, the settings for the\n"
		"                         sidecar: key=value lines, mode 0644 (default\n"
		"                         " KS_REDIR_MANIFEST_DEFAULT "; its directory is\n"
		"                         created 0755 if missing)\n"
		"  --help                 this text\n"
		"\n"
		"bpf mode needs Linux 5.9 or later: sk_lookup and netns links (5.9), listening\n"
		"sockets in a sockmap and cgroup bpf_links (5.7), cgroup/getsockopt (5.3),\n"
		"cgroup v2, and a BPF file system on " BPFFS ".\n"
		"Exit status: 0 done, 1 failed (the message says what is missing), 2 usage.\n",
		KS_REDIR_PROBE_PORT, DEFAULT_OUTBOUND_PORT, DEFAULT_INBOUND_PORT,
		KS_REDIR_MAX_PORTS, DEFAULT_SIDECAR_UID, KS_REDIR_MAX_PORTS, KS_REDIR_MAX_CIDRS);
}

/* ------------------------------------------------------------------ parsing */

static int parse_port(const char *opt, const char *s, __u16 *port, char *err, size_t errlen)
{
	unsigned long v;

	if (ks_parse_uint(s, 65535, &v) < 0 || v == 0) {
		snprintf(err, errlen, "--%s '%s': expected a port, 1-65535", opt, s);
		return -EINVAL;
	}
	*port = (__u16)v;
	return 0;
}

static int add_port(const char *opt, const char *s, __u16 *ports, __u16 *n, char *err,
		    size_t errlen)
{
	__u16 port;
	int rc = parse_port(opt, s, &port, err, errlen);

	if (rc < 0)
		return rc;
	for (unsigned int i = 0; i < *n; i++) {
		if (ports[i] == port) {
			snprintf(err, errlen, "--%s %u: given twice", opt, port);
			return -EINVAL;
		}
	}
	if (*n >= KS_REDIR_MAX_PORTS) {
		snprintf(err, errlen, "--%s: at most %d", opt, KS_REDIR_MAX_PORTS);
		return -EINVAL;
	}
	ports[(*n)++] = port;
	return 0;
}

int ks_redirect_parse_cidr(const char *s, struct ks_redir_cidr_key *key, char *err, size_t errlen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(s, '/');
	unsigned long bits, max;
	struct in6_addr a6;
	struct in_addr a4;
	size_t alen;
	int v4;

	memset(key, 0, sizeof(*key));
	alen = slash ? (size_t)(slash - s) : 0;
	if (!slash || alen == 0 || alen >= INET6_ADDRSTRLEN) {
		snprintf(err, errlen, "--exclude-cidr '%s': expected ADDRESS/PREFIX", s);
		return -EINVAL;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		v4 = 1;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, &a6) == 1) {
		v4 = 0;
		max = 128;
	} else {
		snprintf(err, errlen, "--exclude-cidr '%s': '%s' is not an IP address", s, buf);
		return -EINVAL;
	}
	if (ks_parse_uint(slash + 1, max, &bits) < 0) {
		snprintf(err, errlen, "--exclude-cidr '%s': prefix length must be 0-%lu", s, max);
		return -EINVAL;
	}
	/* One trie for both families: IPv4 as ::ffff:a.b.c.d, prefix + 96. */
	if (v4) {
		key->addr[10] = 0xff;
		key->addr[11] = 0xff;
		memcpy(&key->addr[12], &a4, 4);
		key->prefixlen = 96 + (__u32)bits;
	} else {
		memcpy(key->addr, &a6, 16);
		key->prefixlen = (__u32)bits;
	}
	/* Host bits set is almost always a typo for another network. */
	for (unsigned int i = key->prefixlen; i < 128; i++) {
		if (key->addr[i / 8] & (0x80 >> (i % 8))) {
			snprintf(err, errlen, "--exclude-cidr '%s': host bits set after /%lu", s,
				 bits);
			return -EINVAL;
		}
	}
	return 0;
}

void ks_redirect_format_cidr(const struct ks_redir_cidr_key *key, char *buf, size_t buflen)
{
	static const __u8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	char ip[INET6_ADDRSTRLEN];

	if (key->prefixlen >= 96 && memcmp(key->addr, mapped, 12) == 0) {
		inet_ntop(AF_INET, &key->addr[12], ip, sizeof(ip));
		snprintf(buf, buflen, "%s/%u", ip, key->prefixlen - 96);
	} else {
		inet_ntop(AF_INET6, key->addr, ip, sizeof(ip));
		snprintf(buf, buflen, "%s/%u", ip, key->prefixlen);
	}
}

static int valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64 || s[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

enum {
	OPT_NAME = 256,
	OPT_CGROUP,
	OPT_NETNS,
	OPT_OUTBOUND_PORT,
	OPT_INBOUND_PORT,
	OPT_APP_PORT,
	OPT_SIDECAR_UID,
	OPT_EXCLUDE_PORT,
	OPT_EXCLUDE_CIDR,
	OPT_MODE,
	OPT_MANIFEST,
	OPT_HELP,
};
#define OPT_BIT(c) (1u << ((c)-OPT_NAME))

static const struct option long_opts[] = {
    {"name", required_argument, NULL, OPT_NAME},
    {"cgroup", required_argument, NULL, OPT_CGROUP},
    {"netns", required_argument, NULL, OPT_NETNS},
    {"outbound-port", required_argument, NULL, OPT_OUTBOUND_PORT},
    {"inbound-port", required_argument, NULL, OPT_INBOUND_PORT},
    {"app-port", required_argument, NULL, OPT_APP_PORT},
    {"sidecar-uid", required_argument, NULL, OPT_SIDECAR_UID},
    {"exclude-port", required_argument, NULL, OPT_EXCLUDE_PORT},
    {"exclude-cidr", required_argument, NULL, OPT_EXCLUDE_CIDR},
    {"mode", required_argument, NULL, OPT_MODE},
    {"manifest", required_argument, NULL, OPT_MANIFEST},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int set_once(const char **slot, const char *opt, const char *v, char *err, size_t errlen)
{
	if (*slot) {
		snprintf(err, errlen, "--%s given twice", opt);
		return -EINVAL;
	}
	*slot = v;
	return 0;
}

static int parse_option(struct ks_redirect_opts *o, int c, const char *arg, char *err,
			size_t errlen)
{
	struct ks_redir_config *cfg = &o->cfg;
	unsigned long uid;

	switch (c) {
	case OPT_NAME:
		if (!valid_name(arg)) {
			snprintf(err, errlen,
				 "--name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.'",
				 arg);
			return -EINVAL;
		}
		return set_once(&o->name, "name", arg, err, errlen);
	case OPT_CGROUP:
		return set_once(&o->cgroup, "cgroup", arg, err, errlen);
	case OPT_NETNS:
		return set_once(&o->netns, "netns", arg, err, errlen);
	case OPT_OUTBOUND_PORT:
		return parse_port("outbound-port", arg, &cfg->outbound_port, err, errlen);
	case OPT_INBOUND_PORT:
		return parse_port("inbound-port", arg, &cfg->inbound_port, err, errlen);
	case OPT_APP_PORT:
		return add_port("app-port", arg, cfg->app_ports, &cfg->n_app_ports, err, errlen);
	case OPT_EXCLUDE_PORT:
		return add_port("exclude-port", arg, cfg->exclude_ports, &cfg->n_exclude_ports, err,
				errlen);
	case OPT_SIDECAR_UID:
		/* (uid_t)-1 is "no uid" to the kernel: never a process's uid. */
		if (ks_parse_uint(arg, UINT32_MAX - 1, &uid) < 0) {
			snprintf(err, errlen, "--sidecar-uid '%s': expected a numeric uid", arg);
			return -EINVAL;
		}
		cfg->sidecar_uid = (__u32)uid;
		return 0;
	case OPT_EXCLUDE_CIDR:
		if (o->n_cidrs >= KS_REDIR_MAX_CIDRS) {
			snprintf(err, errlen, "--exclude-cidr: at most %d", KS_REDIR_MAX_CIDRS);
			return -EINVAL;
		}
		if (ks_redirect_parse_cidr(arg, &o->cidrs[o->n_cidrs], err, errlen) < 0)
			return -EINVAL;
		for (unsigned int i = 0; i < o->n_cidrs; i++) {
			if (memcmp(&o->cidrs[i], &o->cidrs[o->n_cidrs], sizeof(o->cidrs[i])) == 0) {
				snprintf(err, errlen, "--exclude-cidr %s: given twice", arg);
				return -EINVAL;
			}
		}
		o->n_cidrs++;
		return 0;
	case OPT_MODE:
		if (strcmp(arg, "bpf") == 0) {
			o->mode = KS_REDIRECT_BPF;
		} else if (strcmp(arg, "iptables") == 0) {
			o->mode = KS_REDIRECT_IPTABLES;
		} else {
			snprintf(err, errlen, "--mode '%s': bpf or iptables", arg);
			return -EINVAL;
		}
		return 0;
	case OPT_MANIFEST:
		if (strcmp(arg, "none") == 0) {
			o->manifest = NULL;
			return 0;
		}
		/* The sidecar reads it from a fixed place: relative makes no sense. */
		if (arg[0] != '/' || arg[strlen(arg) - 1] == '/') {
			snprintf(err, errlen, "--manifest '%s': an absolute file path, or none",
				 arg);
			return -EINVAL;
		}
		o->manifest = arg;
		return 0;
	case OPT_HELP:
		o->help = true;
		return 0;
	}
	snprintf(err, errlen, "unknown option");
	return -EINVAL;
}

/* The settings that make no sense together; install only. */
static int check_install_opts(const struct ks_redirect_opts *o, char *err, size_t errlen)
{
	const struct ks_redir_config *cfg = &o->cfg;

	/* iptables mode matches the sidecar by uid: no cgroup to attach to. */
	if ((o->mode == KS_REDIRECT_BPF && !o->cgroup) || !o->netns) {
		snprintf(err, errlen, "install: --%s PATH is required",
			 o->mode == KS_REDIRECT_BPF && !o->cgroup ? "cgroup" : "netns");
		return -EINVAL;
	}
	/* The manifest is line-based: a path with a newline would forge a key. */
	if ((o->cgroup && strchr(o->cgroup, '\n')) || strchr(o->netns, '\n')) {
		snprintf(err, errlen, "install: --cgroup and --netns paths cannot hold a newline");
		return -EINVAL;
	}
	if (cfg->outbound_port == cfg->inbound_port) {
		snprintf(err, errlen, "--outbound-port and --inbound-port are both %u",
			 cfg->outbound_port);
		return -EINVAL;
	}
	/* The sidecar's listeners are not the app: steering them would loop. */
	for (unsigned int i = 0; i < cfg->n_app_ports; i++) {
		if (cfg->app_ports[i] == cfg->inbound_port ||
		    cfg->app_ports[i] == cfg->outbound_port) {
			snprintf(err, errlen, "--app-port %u is a port of the sidecar itself",
				 cfg->app_ports[i]);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * remove and status find the settings in the pins or the rules; they take
 * only what says where those are (and the manifest: remove deletes it,
 * status shows whether it is there). --netns is that in iptables mode (rules
 * live in a netns, found by nothing else), and the pins say it in bpf mode.
 */
static int check_other_opts(const struct ks_redirect_opts *o, const char *cmd, unsigned int seen,
			    char *err, size_t errlen)
{
	unsigned int allowed =
	    OPT_BIT(OPT_NAME) | OPT_BIT(OPT_MODE) | OPT_BIT(OPT_MANIFEST) | OPT_BIT(OPT_HELP);

	if (o->mode == KS_REDIRECT_IPTABLES)
		allowed |= OPT_BIT(OPT_NETNS);
	if (seen & ~allowed) {
		snprintf(err, errlen,
			 "%s takes only --name, --mode, --manifest%s (the settings are "
			 "in the %s)",
			 cmd, o->mode == KS_REDIRECT_IPTABLES ? " and --netns" : "",
			 o->mode == KS_REDIRECT_IPTABLES ? "rules" : "pins");
		return -EINVAL;
	}
	if (o->mode == KS_REDIRECT_IPTABLES && !o->netns) {
		snprintf(err, errlen,
			 "%s --mode iptables: --netns PATH is required (the rules "
			 "are in the pod's network namespace)",
			 cmd);
		return -EINVAL;
	}
	return 0;
}

int ks_redirect_parse(int argc, char **argv, struct ks_redirect_opts *o, char *err, size_t errlen)
{
	const char *cmd;
	unsigned int seen = 0;
	int c, rc;

	memset(o, 0, sizeof(*o));
	o->manifest = KS_REDIR_MANIFEST_DEFAULT;
	o->cfg.abi = KS_REDIR_ABI;
	o->cfg.outbound_port = DEFAULT_OUTBOUND_PORT;
	o->cfg.inbound_port = DEFAULT_INBOUND_PORT;
	o->cfg.sidecar_uid = DEFAULT_SIDECAR_UID;
	if (argc < 2) {
		snprintf(err, errlen, "no command: install, remove or status");
		return -EINVAL;
	}
	cmd = argv[1];
	if (strcmp(cmd, "install") == 0) {
		o->cmd = KS_REDIRECT_INSTALL;
	} else if (strcmp(cmd, "remove") == 0) {
		o->cmd = KS_REDIRECT_REMOVE;
	} else if (strcmp(cmd, "status") == 0) {
		o->cmd = KS_REDIRECT_STATUS;
	} else if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		o->help = true;
		return 0;
	} else {
		snprintf(err, errlen, "unknown command '%s': install, remove or status", cmd);
		return -EINVAL;
	}

	/* argv + 1: getopt sees the command as its program name. optind 0
	 * makes glibc reinitialize, so the parser can run more than once. */
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, "h", long_opts, NULL)) != -1) {
		if (c == '?' || c == ':') {
			snprintf(err, errlen, "%s: unknown option or missing value: '%s'", cmd,
				 argv[optind < argc ? optind : argc - 1]);
			return -EINVAL;
		}
		if (c == 'h')
			c = OPT_HELP;
		rc = parse_option(o, c, optarg, err, errlen);
		if (rc < 0)
			return rc;
		seen |= OPT_BIT(c);
	}
	if (o->help)
		return 0;
	if (optind < argc - 1) {
		snprintf(err, errlen, "%s: unexpected argument '%s'", cmd, argv[optind + 1]);
		return -EINVAL;
	}
	if (!o->name) {
		snprintf(err, errlen, "%s: --name NAME is required", cmd);
		return -EINVAL;
	}
	if (o->mode == KS_REDIRECT_IPTABLES && strlen(o->name) > KS_REDIR_IPT_NAME_MAX) {
		snprintf(err, errlen,
			 "--name '%s': at most %d characters in iptables mode (chain KS_NAME_OUT "
			 "has at most 28)",
			 o->name, KS_REDIR_IPT_NAME_MAX);
		return -EINVAL;
	}
	if (o->cmd != KS_REDIRECT_INSTALL)
		return check_other_opts(o, cmd, seen, err, errlen);
	return check_install_opts(o, err, errlen);
}

/* ------------------------------------------------- manifest, iptables text */

/* Appends to a fixed buffer; remembers an overflow instead of failing each call. */

void ks_sb_printf(struct ks_sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->overflow = true;
		return;
	}
	b->len += (size_t)n;
}

static void sb_ports(struct ks_sbuf *b, const __u16 *ports, __u16 n)
{
	for (unsigned int i = 0; i < n && i < KS_REDIR_MAX_PORTS; i++)
		ks_sb_printf(b, "%s%u", i ? "," : "", ports[i]);
}

static int sb_result(const struct ks_sbuf *b)
{
	return b->overflow ? -ENOSPC : (int)b->len;
}

int ks_redirect_manifest_text(const struct ks_redirect_opts *o, const char *kernel,
			      long long installed_unix, char *buf, size_t buflen)
{
	const struct ks_redir_config *cfg = &o->cfg;
	struct ks_sbuf b = {.p = buf, .cap = buflen};
	bool ipt = o->mode == KS_REDIRECT_IPTABLES;

	if (buflen == 0)
		return -ENOSPC;
	buf[0] = '\0';
	/* The key order is part of the format (sidecar/redirect.h). */
	ks_sb_printf(&b, "mode=%s\nname=%s\ncgroup=%s\nnetns=%s\n", ipt ? "iptables" : "bpf",
		     o->name, ipt || !o->cgroup ? "" : o->cgroup, o->netns ? o->netns : "");
	ks_sb_printf(&b, "sidecar_uid=%u\noutbound_port=%u\ninbound_port=%u\napp_ports=",
		     cfg->sidecar_uid, cfg->outbound_port, cfg->inbound_port);
	sb_ports(&b, cfg->app_ports, cfg->n_app_ports);
	ks_sb_printf(&b, "\nkernel=%s\ninstalled_unix=%lld\n", kernel, installed_unix);
	return sb_result(&b);
}

static int cidr_is_v4(const struct ks_redir_cidr_key *key)
{
	static const __u8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return key->prefixlen >= 96 && memcmp(key->addr, mapped, 12) == 0;
}

static int cidr_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct ks_redir_cidr_key));
}

/*
 * A digest of every setting the rules depend on, recorded in the jumps'
 * comment: install compares it to tell "the same installation again" from
 * "another one", with no state outside the netns (--manifest may be none).
 * FNV-1a over a canonical text; CIDRs sorted, as their order does not
 * matter. Not a security boundary: only root can write these rules.
 */
unsigned long long ks_redir_settings_digest(const struct ks_redirect_opts *o)
{
	struct ks_redir_cidr_key cidrs[KS_REDIR_MAX_CIDRS];
	const struct ks_redir_config *cfg = &o->cfg;
	char text[4096], c[64];
	struct ks_sbuf b = {.p = text, .cap = sizeof(text)};
	unsigned long long h = 0xcbf29ce484222325ULL;

	memcpy(cidrs, o->cidrs, o->n_cidrs * sizeof(cidrs[0]));
	qsort(cidrs, o->n_cidrs, sizeof(cidrs[0]), cidr_cmp);
	ks_sb_printf(&b, "abi=%u uid=%u out=%u in=%u app=", cfg->abi, cfg->sidecar_uid,
		     cfg->outbound_port, cfg->inbound_port);
	sb_ports(&b, cfg->app_ports, cfg->n_app_ports);
	ks_sb_printf(&b, " xport=");
	sb_ports(&b, cfg->exclude_ports, cfg->n_exclude_ports);
	ks_sb_printf(&b, " xcidr=");
	for (unsigned int i = 0; i < o->n_cidrs; i++) {
		ks_redirect_format_cidr(&cidrs[i], c, sizeof(c));
		ks_sb_printf(&b, "%s%s", i ? "," : "", c);
	}
	for (size_t i = 0; i < b.len; i++) {
		h ^= (unsigned char)text[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Rules in KS_<name>_OUT for one family: what status expects to find. */
unsigned int ks_redir_out_rule_count(const struct ks_redirect_opts *o, int family)
{
	unsigned int n = 3 + o->cfg.n_exclude_ports; /* uid, loopback, REDIRECT */

	if (family == AF_INET)
		n++; /* the probe */
	for (unsigned int i = 0; i < o->n_cidrs; i++)
		if (cidr_is_v4(&o->cidrs[i]) == (family == AF_INET))
			n++;
	return n;
}

/*
 * One family's rules, for `iptables-restore --noflush` (one transaction:
 * all of it or nothing). Each rule in our chains reads as iptables-save
 * prints it, so the two can be compared by eye. The order in KS_<name>_OUT
 * is the BPF program's: the probe before anything, then the exemptions,
 * then the REDIRECT. The jumps are inserted first in OUTPUT and PREROUTING:
 * an earlier ACCEPT in the nat table would otherwise skip them, and
 * skipping a REDIRECT means plaintext around the sidecar.
 */
int ks_redirect_iptables_rules(const struct ks_redirect_opts *o, int family, char *buf,
			       size_t buflen)
{
	const struct ks_redir_config *cfg = &o->cfg;
	struct ks_sbuf b = {.p = buf, .cap = buflen};
	bool v4 = family == AF_INET;
	char c[64];

	if (buflen == 0)
		return -ENOSPC;
	buf[0] = '\0';
	ks_sb_printf(&b, "*nat\n:KS_%s_OUT - [0:0]\n:KS_%s_IN - [0:0]\n", o->name, o->name);
	if (v4)
		ks_sb_printf(&b,
			     "-A KS_%s_OUT -d " KS_REDIR_PROBE_ADDR
			     "/32 -p tcp -m tcp --dport %u -j "
			     "REDIRECT --to-ports %u\n",
			     o->name, KS_REDIR_PROBE_PORT, cfg->outbound_port);
	ks_sb_printf(&b, "-A KS_%s_OUT -m owner --uid-owner %u -j RETURN\n", o->name,
		     cfg->sidecar_uid);
	ks_sb_printf(&b, "-A KS_%s_OUT -d %s -j RETURN\n", o->name, v4 ? "127.0.0.0/8" : "::1/128");
	for (unsigned int i = 0; i < cfg->n_exclude_ports && i < KS_REDIR_MAX_PORTS; i++)
		ks_sb_printf(&b, "-A KS_%s_OUT -p tcp -m tcp --dport %u -j RETURN\n", o->name,
			     cfg->exclude_ports[i]);
	for (unsigned int i = 0; i < o->n_cidrs; i++) {
		/* IPv4-mapped destinations leave as IPv4: the IPv4 rules see them. */
		if (cidr_is_v4(&o->cidrs[i]) != v4)
			continue;
		ks_redirect_format_cidr(&o->cidrs[i], c, sizeof(c));
		ks_sb_printf(&b, "-A KS_%s_OUT -d %s -j RETURN\n", o->name, c);
	}
	ks_sb_printf(&b, "-A KS_%s_OUT -p tcp -j REDIRECT --to-ports %u\n", o->name,
		     cfg->outbound_port);
	for (unsigned int i = 0; i < cfg->n_app_ports && i < KS_REDIR_MAX_PORTS; i++)
		ks_sb_printf(&b, "-A KS_%s_IN -p tcp -m tcp --dport %u -j REDIRECT --to-ports %u\n",
			     o->name, cfg->app_ports[i], cfg->inbound_port);
	/* The comment carries the settings' digest and the rule counts, for
	 * install (same settings?) and status (every rule there?). */
	snprintf(c, sizeof(c), "cfg=%016llx:rules=%u+%u", ks_redir_settings_digest(o),
		 ks_redir_out_rule_count(o, family), (unsigned int)cfg->n_app_ports);
	ks_sb_printf(&b, "-I OUTPUT 1 -p tcp -m comment --comment ks-redirect:%s:%s -j KS_%s_OUT\n",
		     o->name, c, o->name);
	ks_sb_printf(&b,
		     "-I PREROUTING 1 ! -i lo -p tcp -m comment --comment ks-redirect:%s:%s -j "
		     "KS_%s_IN\nCOMMIT\n",
		     o->name, c, o->name);
	return sb_result(&b);
}

/* ------------------------------------------------------------ environment */

int ks_redir_caps(unsigned long long *caps)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "re");
	int rc = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "CapEff: %llx", caps) == 1) {
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

/*
 * Loading these program types needs CAP_BPF (or, before 5.8, CAP_SYS_ADMIN)
 * plus CAP_NET_ADMIN (kernel/bpf/syscall.c, is_net_admin_prog_type);
 * attaching to a cgroup or a netns needs CAP_NET_ADMIN too. Saying so here
 * beats the bare EPERM the first bpf() call would give.
 */
static int check_privileges(void)
{
	unsigned long long caps;
	int have_bpf, have_net;

	if (ks_redir_caps(&caps) < 0) {
		ks_redir_fail("cannot read the capabilities from /proc/self/status");
		return -EPERM;
	}
	have_bpf = (caps >> CAP_BPF & 1) || (caps >> CAP_SYS_ADMIN & 1);
	have_net = caps >> CAP_NET_ADMIN & 1;
	if (have_bpf && have_net)
		return 0;
	ks_redir_fail(
	    "permission: needs CAP_BPF and CAP_NET_ADMIN (missing:%s%s; uid %u); run as root "
	    "or in a privileged init container with those capabilities",
	    have_bpf ? "" : " CAP_BPF", have_net ? "" : " CAP_NET_ADMIN", (unsigned)geteuid());
	return -EPERM;
}

static int check_bpffs(void)
{
	struct statfs st;

	if (statfs(BPFFS, &st) < 0) {
		ks_redir_fail(
		    "%s: %s (a BPF file system must be mounted there: mount -t bpf bpf %s)", BPFFS,
		    strerror(errno), BPFFS);
		return -ENOENT;
	}
	if (st.f_type != BPF_FS_MAGIC) {
		ks_redir_fail(
		    "%s is not a BPF file system, so nothing can be pinned there (mount -t bpf "
		    "bpf %s; in Kubernetes, mount the node's %s into the init container)",
		    BPFFS, BPFFS, BPFFS);
		return -ENOENT;
	}
	return 0;
}

/* Where cgroup v2 is mounted, for the error message; "" if nowhere. */
static void cgroup2_mount(char *buf, size_t buflen)
{
	char line[1024], path[512], type[64];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	snprintf(buf, buflen, "nowhere");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE SOURCE OPTIONS */
		if (!sep || sscanf(line, "%*s %*s %*s %*s %511s", path) != 1 ||
		    sscanf(sep + 3, "%63s", type) != 1)
			continue;
		if (strcmp(type, "cgroup2") == 0) {
			snprintf(buf, buflen, "%s", path);
			break;
		}
	}
	fclose(f);
}

/* The id bpf_link_info reports for a cgroup (kernfs node id). */
static int cgroup_id(const char *path, __u64 *id)
{
	union {
		struct file_handle fh;
		char buf[sizeof(struct file_handle) + sizeof(__u64)];
	} h;
	int mount_id;

	memset(&h, 0, sizeof(h));
	h.fh.handle_bytes = sizeof(__u64);
	if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0)
		return -errno;
	memcpy(id, h.fh.f_handle, sizeof(*id));
	return 0;
}

static int open_cgroup(const char *path)
{
	char mnt[512];
	struct statfs st;
	__u64 id = 0;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	memset(&st, 0, sizeof(st));
	if (fd < 0) {
		ks_redir_fail("--cgroup %s: %s", path, strerror(errno));
		return -ENOENT;
	}
	if (fstatfs(fd, &st) < 0 || st.f_type != CGROUP2_SUPER_MAGIC) {
		cgroup2_mount(mnt, sizeof(mnt));
		ks_redir_fail(
		    "--cgroup %s: not a cgroup v2 directory (%s); BPF cgroup hooks need cgroup "
		    "v2, which is mounted at %s",
		    path, st.f_type == CGROUP_SUPER_MAGIC ? "a cgroup v1 hierarchy" : "not cgroup",
		    mnt);
		close(fd);
		return -EINVAL;
	}
	/* The root cgroup (id 1) holds every process of the node, not a pod. */
	if (cgroup_id(path, &id) == 0 && id == 1) {
		ks_redir_fail(
		    "--cgroup %s is the root of the cgroup v2 hierarchy: that would redirect "
		    "every process on the node; give the pod's own cgroup",
		    path);
		close(fd);
		return -EINVAL;
	}
	return fd;
}

int ks_redir_open_netns(const char *path)
{
	struct statfs st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		ks_redir_fail("--netns %s: %s", path, strerror(errno));
		return -ENOENT;
	}
	/* NS_GET_NSTYPE (4.11): a namespace file, and of the network kind. */
	if (fstatfs(fd, &st) < 0 || st.f_type != NSFS_MAGIC ||
	    ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
		ks_redir_fail("--netns %s: not a network namespace (use /proc/PID/ns/net or "
			      "/run/netns/NAME)",
			      path);
		close(fd);
		return -EINVAL;
	}
	return fd;
}

void ks_redir_kernel_release(char *buf, size_t buflen)
{
	struct utsname u;

	snprintf(buf, buflen, "%s", uname(&u) == 0 ? u.release : "unknown");
}

/*
 * Each hook the programs need, probed by loading a trivial program: a
 * kernel without one gets its name and first version in the message, not a
 * verifier log.
 */
static int check_hooks(void)
{
	static const struct {
		enum bpf_prog_type type;
		const char *name;
		const char *since;
	} types[] = {
	    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup/connect4 and connect6", "4.17"},
	    {BPF_PROG_TYPE_SOCK_OPS, "sockops", "4.13"},
	    {BPF_PROG_TYPE_CGROUP_SOCKOPT, "cgroup/getsockopt", "5.3"},
	    {BPF_PROG_TYPE_SK_LOOKUP, "sk_lookup", "5.9"},
	};
	char rel[128];

	ks_redir_kernel_release(rel, sizeof(rel));
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		int rc = libbpf_probe_bpf_prog_type(types[i].type, NULL);

		if (rc == 1)
			continue;
		ks_redir_fail(
		    "kernel %s: the %s hook is missing (BPF program type %d, Linux %s+)%s%s", rel,
		    types[i].name, types[i].type, types[i].since, rc < 0 ? ": " : "",
		    rc < 0 ? strerror(-rc) : "");
		return -EOPNOTSUPP;
	}
	return 0;
}

/*
 * After a failed load only (the probes cost a program load each): which
 * helper the kernel lacks for which hook, rather than a verifier log alone.
 */
static void explain_load_failure(int rc)
{
	static const struct {
		enum bpf_prog_type type;
		enum bpf_func_id id;
		const char *name;
	} helpers[] = {
	    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_current_uid_gid,
	     "bpf_get_current_uid_gid in cgroup/connect"},
	    {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_socket_cookie,
	     "bpf_get_socket_cookie in cgroup/connect"},
	    {BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_get_socket_cookie,
	     "bpf_get_socket_cookie in sockops"},
	    {BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sock_map_update, "bpf_sock_map_update in sockops"},
	    {BPF_PROG_TYPE_SK_LOOKUP, BPF_FUNC_sk_assign, "bpf_sk_assign in sk_lookup"},
	};
	char rel[128];

	ks_redir_kernel_release(rel, sizeof(rel));
	for (size_t i = 0; i < sizeof(helpers) / sizeof(helpers[0]); i++) {
		if (libbpf_probe_bpf_helper(helpers[i].type, helpers[i].id, NULL) == 0) {
			ks_redir_fail("kernel %s: %s is missing", rel, helpers[i].name);
			return;
		}
	}
	ks_redir_fail(
	    "loading the BPF programs on kernel %s: %s (libbpf's messages above say which; "
	    "Linux 5.9+ is needed)",
	    rel, strerror(-rc));
}

__attribute__((format(printf, 2, 0))) static int libbpf_log(enum libbpf_print_level level,
							    const char *fmt, va_list ap)
{
	/* Warnings carry the verifier log of a program that failed to load. */
	if (level == LIBBPF_DEBUG)
		return 0;
	fprintf(stderr, "libbpf: ");
	return vfprintf(stderr, fmt, ap);
}

/* ------------------------------------------------------------------- pins */

static void pin_path(char *buf, size_t buflen, const char *name, const char *pin)
{
	snprintf(buf, buflen, "%s/%s/%s", BPFFS, name, pin);
}

static int path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Unlinks every pin this loader makes; unknown files are left in place. */
static void unpin_all(const char *name)
{
	char path[PATH_MAX];

	for (int i = 0; i < L_MAX; i++) {
		pin_path(path, sizeof(path), name, link_pins[i]);
		(void)unlink(path);
	}
	for (int i = 0; i < M_MAX; i++) {
		pin_path(path, sizeof(path), name, map_pins[i]);
		(void)unlink(path);
	}
	snprintf(path, sizeof(path), "%s/%s", BPFFS, name);
	(void)rmdir(path);
}

static struct bpf_map *skel_map(struct ks_redirect_bpf *skel, int i)
{
	struct bpf_map *maps[M_MAX] = {
	    [M_CONFIG] = skel->maps.ks_config,
	    [M_CIDRS] = skel->maps.ks_exclude_cidrs,
	    [M_BY_COOKIE] = skel->maps.ks_orig_by_cookie,
	    [M_BY_PEER] = skel->maps.ks_orig_by_peer,
	    [M_LISTENERS] = skel->maps.ks_listeners,
	    [M_STATS] = skel->maps.ks_stats,
	};

	return maps[i];
}

static int configure(struct ks_redirect_bpf *skel, const struct ks_redirect_opts *o)
{
	__u32 zero = 0;
	__u8 one = 1;

	if (bpf_map__update_elem(skel->maps.ks_config, &zero, sizeof(zero), &o->cfg, sizeof(o->cfg),
				 BPF_ANY) < 0) {
		ks_redir_fail("writing the config map: %s", strerror(errno));
		return -errno;
	}
	for (unsigned int i = 0; i < o->n_cidrs; i++) {
		if (bpf_map__update_elem(skel->maps.ks_exclude_cidrs, &o->cidrs[i],
					 sizeof(o->cidrs[i]), &one, sizeof(one), BPF_ANY) < 0) {
			ks_redir_fail("writing the excluded CIDRs: %s", strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static int attach_one(struct ks_redirect_bpf *skel, const struct ks_redirect_opts *o, int which,
		      int cgfd, int nsfd)
{
	struct bpf_program *progs[L_MAX] = {
	    [L_CONNECT4] = skel->progs.ks_connect4,	[L_CONNECT6] = skel->progs.ks_connect6,
	    [L_SK_LOOKUP] = skel->progs.ks_sk_lookup,	[L_SOCKOPS] = skel->progs.ks_sockops,
	    [L_GETSOCKOPT] = skel->progs.ks_getsockopt,
	};
	struct bpf_link **slots[L_MAX] = {
	    [L_CONNECT4] = &skel->links.ks_connect4,	 [L_CONNECT6] = &skel->links.ks_connect6,
	    [L_SK_LOOKUP] = &skel->links.ks_sk_lookup,	 [L_SOCKOPS] = &skel->links.ks_sockops,
	    [L_GETSOCKOPT] = &skel->links.ks_getsockopt,
	};
	const char *target = which == L_SK_LOOKUP ? o->netns : o->cgroup;
	char path[PATH_MAX], rel[128];
	struct bpf_link *link;
	int rc;

	if (which == L_SK_LOOKUP)
		link = bpf_program__attach_netns(progs[which], nsfd);
	else
		link = bpf_program__attach_cgroup(progs[which], cgfd);
	if (!link) {
		rc = -errno;
		ks_redir_kernel_release(rel, sizeof(rel));
		/* EINVAL from BPF_LINK_CREATE: no bpf_link for this hook here. */
		ks_redir_fail(
		    "attaching %s to %s: %s (kernel %s; bpf_link attachment needs Linux %s+)",
		    link_hooks[which], target, strerror(-rc), rel,
		    which == L_SK_LOOKUP ? "5.9" : "5.7");
		return rc;
	}
	*slots[which] = link; /* the skeleton closes it; the pin keeps it */
	pin_path(path, sizeof(path), o->name, link_pins[which]);
	rc = bpf_link__pin(link, path);
	if (rc < 0) {
		ks_redir_fail("pinning the %s link at %s: %s", link_hooks[which], path,
			      strerror(-rc));
		return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ inspection */

struct ks_installed {
	int link_fd[L_MAX];
	int map_fd[M_MAX];
	struct bpf_link_info info[L_MAX];
	int missing; /* pins absent */
};

static void installed_close(struct ks_installed *in)
{
	for (int i = 0; i < L_MAX; i++)
		if (in->link_fd[i] >= 0)
			close(in->link_fd[i]);
	for (int i = 0; i < M_MAX; i++)
		if (in->map_fd[i] >= 0)
			close(in->map_fd[i]);
}

/* Opens every pin that exists; 0, or -errno if one exists but cannot be read. */
static int installed_open(const char *name, struct ks_installed *in)
{
	char path[PATH_MAX];

	memset(in, 0, sizeof(*in));
	for (int i = 0; i < L_MAX; i++)
		in->link_fd[i] = -1;
	for (int i = 0; i < M_MAX; i++)
		in->map_fd[i] = -1;
	for (int i = 0; i < L_MAX; i++) {
		__u32 len = sizeof(in->info[i]);

		pin_path(path, sizeof(path), name, link_pins[i]);
		if (!path_exists(path)) {
			in->missing++;
			continue;
		}
		in->link_fd[i] = bpf_obj_get(path);
		if (in->link_fd[i] < 0 ||
		    bpf_obj_get_info_by_fd(in->link_fd[i], &in->info[i], &len) < 0) {
			ks_redir_fail("reading %s: %s", path, strerror(errno));
			return -errno;
		}
	}
	for (int i = 0; i < M_MAX; i++) {
		pin_path(path, sizeof(path), name, map_pins[i]);
		if (!path_exists(path)) {
			in->missing++;
			continue;
		}
		in->map_fd[i] = bpf_obj_get(path);
		if (in->map_fd[i] < 0) {
			ks_redir_fail("reading %s: %s", path, strerror(errno));
			return -errno;
		}
	}
	return 0;
}

/* A link whose cgroup or netns is gone reports id 0: attached to nothing. */
static int link_attached(const struct bpf_link_info *info)
{
	if (info->type == BPF_LINK_TYPE_CGROUP)
		return info->cgroup.cgroup_id != 0;
	if (info->type == BPF_LINK_TYPE_NETNS)
		return info->netns.netns_ino != 0;
	return 0;
}

/*
 * BPF_MAP_GET_NEXT_KEY with the whole bpf_attr zeroed (libbpf clears only
 * the fields it sets, which memcheck reports as uninitialised).
 */
static int map_next_key(int fd, const void *key, void *next)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = (__u32)fd;
	attr.key = (__u64)(uintptr_t)key;
	attr.next_key = (__u64)(uintptr_t)next;
	return syscall(__NR_bpf, BPF_MAP_GET_NEXT_KEY, &attr, sizeof(attr)) < 0 ? -errno : 0;
}

/* The excluded CIDRs in the pinned trie, in any order. */
static int read_cidrs(int fd, struct ks_redir_cidr_key *keys, unsigned int *n)
{
	/* A prefix longer than 128 is no key: the trie starts from its
	 * leftmost node (kernel/bpf/lpm_trie.c, trie_get_next_key). */
	struct ks_redir_cidr_key key = {.prefixlen = 255}, next;
	int rc;

	*n = 0;
	while ((rc = map_next_key(fd, &key, &next)) == 0) {
		if (*n >= KS_REDIR_MAX_CIDRS)
			return -E2BIG;
		keys[(*n)++] = next;
		key = next;
	}
	return rc == -ENOENT ? 0 : rc;
}

/*
 * install over an existing pin directory: the same pod and settings is a
 * success (an init container runs again after a pod restart); anything else
 * is refused, since the other installation may be serving traffic.
 */
static int check_existing(const struct ks_redirect_opts *o, const char *dir)
{
	struct ks_redir_cidr_key cidrs[KS_REDIR_MAX_CIDRS];
	struct ks_redir_config cfg;
	struct ks_installed in;
	const char *what = NULL;
	struct stat ns;
	unsigned int n;
	__u64 cg_id = 0;
	__u32 zero = 0;
	int rc;

	rc = installed_open(o->name, &in);
	if (rc < 0)
		goto cleanup;
	if (in.missing) {
		ks_redir_fail(
		    "%s holds an incomplete installation (%d pins missing): run `ktls-sidecar "
		    "redirect remove --name %s` first",
		    dir, in.missing, o->name);
		rc = -EEXIST;
		goto cleanup;
	}
	if (cgroup_id(o->cgroup, &cg_id) < 0 || stat(o->netns, &ns) < 0) {
		ks_redir_fail("cannot identify --cgroup %s or --netns %s: %s", o->cgroup, o->netns,
			      strerror(errno));
		rc = -errno;
		goto cleanup;
	}
	for (int i = 0; i < L_MAX && !what; i++) {
		if (!link_attached(&in.info[i]))
			what = "a hook is detached: its cgroup or netns is gone";
		else if (i == L_SK_LOOKUP && in.info[i].netns.netns_ino != ns.st_ino)
			what = "the network namespace";
		else if (i != L_SK_LOOKUP && in.info[i].cgroup.cgroup_id != cg_id)
			what = "the cgroup";
	}
	if (!what && bpf_map_lookup_elem(in.map_fd[M_CONFIG], &zero, &cfg) < 0)
		what = "the config map is unreadable";
	if (!what && memcmp(&cfg, &o->cfg, sizeof(cfg)) != 0)
		what = cfg.abi != KS_REDIR_ABI ? "the version" : "a port or uid setting";
	if (!what && (read_cidrs(in.map_fd[M_CIDRS], cidrs, &n) < 0 || n != o->n_cidrs))
		what = "the excluded CIDRs";
	for (unsigned int i = 0; !what && i < o->n_cidrs; i++) {
		unsigned int j;

		for (j = 0; j < n && memcmp(&cidrs[j], &o->cidrs[i], sizeof(cidrs[j])); j++)
			;
		if (j == n)
			what = "the excluded CIDRs";
	}
	if (what) {
		ks_redir_fail(
		    "%s is already installed under %s, and differs (%s): run `ktls-sidecar "
		    "redirect remove --name %s` first",
		    o->name, dir, what, o->name);
		rc = -EEXIST;
		goto cleanup;
	}
	printf("%s: already installed under %s with the same settings; nothing to do\n", o->name,
	       dir);
	rc = 0;
cleanup:
	installed_close(&in);
	return rc;
}

/* ---------------------------------------------------------------- manifest */

/*
 * The manifest is written next to its final name first and renamed into
 * place only once the install succeeded: the sidecar never reads half a
 * file, nor one describing an install that failed, and a directory we
 * cannot write fails the install before anything is attached.
 */

int ks_redir_manifest_prepare(const struct ks_redirect_opts *o, struct ks_redir_manifest_file *m)
{
	char dir[PATH_MAX], text[2048], rel[128];
	char *slash;
	size_t off = 0;
	int fd = -1, len, rc;

	memset(m, 0, sizeof(*m));
	m->name = o->name;
	m->path = o->manifest;
	if (!m->path)
		return 0;
	snprintf(dir, sizeof(dir), "%s", m->path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	if (mkdir(dir, 0755) == 0) {
		/* The unprivileged sidecar must get in, whatever our umask. */
		(void)chmod(dir, 0755);
	} else if (errno != EEXIST) {
		rc = -errno;
		ks_redir_fail("--manifest %s: cannot create %s: %s", m->path, dir, strerror(-rc));
		return rc;
	}
	ks_redir_kernel_release(rel, sizeof(rel));
	len = ks_redirect_manifest_text(o, rel, (long long)time(NULL), text, sizeof(text));
	if (len < 0) {
		ks_redir_fail("--manifest %s: the text does not fit in %zu bytes", m->path,
			      sizeof(text));
		return len;
	}
	snprintf(m->tmp, sizeof(m->tmp), "%s.tmp.%ld", m->path, (long)getpid());
	fd = open(m->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		rc = -errno;
		ks_redir_fail("--manifest %s: cannot write %s: %s", m->path, m->tmp, strerror(-rc));
		return rc;
	}
	m->pending = true;
	rc = fchmod(fd, 0644) < 0 ? -errno : 0;
	while (rc == 0 && off < (size_t)len) {
		ssize_t w = write(fd, text + off, (size_t)len - off);

		if (w < 0 && errno != EINTR)
			rc = -errno;
		else if (w > 0)
			off += (size_t)w;
	}
	/* Renamed over the old file only once the data is on disk. */
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0) {
		ks_redir_fail("--manifest %s: writing %s: %s", m->path, m->tmp, strerror(-rc));
		(void)unlink(m->tmp);
		m->pending = false;
	}
	return rc;
}

/* rc of the install so far in, rc out: renames the manifest into place on
 * success, throws it away on failure. */
int ks_redir_manifest_finish(struct ks_redir_manifest_file *m, int rc)
{
	if (!m->pending)
		return rc;
	m->pending = false;
	if (rc < 0) {
		(void)unlink(m->tmp);
		return rc;
	}
	if (rename(m->tmp, m->path) < 0) {
		rc = -errno;
		ks_redir_fail("--manifest %s: rename from %s: %s", m->path, m->tmp, strerror(-rc));
		(void)unlink(m->tmp);
		return rc;
	}
	printf("%s: manifest written to %s\n", m->name, m->path);
	return 0;
}

/* The value of KEY in a manifest's text, copied to val; 0 or -ENOENT. */
static int manifest_value(const char *text, const char *key, char *val, size_t vallen)
{
	size_t klen = strlen(key);

	for (const char *line = text; line && *line; line = strchr(line, '\n'), line += !!line) {
		const char *end = strchrnul(line, '\n');

		if ((size_t)(end - line) > klen && strncmp(line, key, klen) == 0 &&
		    line[klen] == '=') {
			snprintf(val, vallen, "%.*s", (int)(end - line - (ptrdiff_t)klen - 1),
				 line + klen + 1);
			return 0;
		}
	}
	return -ENOENT;
}

/*
 * Whether the manifest describes this installation (same name and mode):
 * at a shared default path it may be another pod's, or the other mode's.
 * 1 yes, 0 no (who it is for in name/mode), -ENOENT absent, or -errno.
 */
static int manifest_ours(const struct ks_redirect_opts *o, char *name, size_t namelen, char *mode,
			 size_t modelen)
{
	char text[4096];
	ssize_t n;
	int fd;

	snprintf(name, namelen, "?");
	snprintf(mode, modelen, "?");
	fd = open(o->manifest, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	text[n] = '\0';
	(void)manifest_value(text, "name", name, namelen);
	(void)manifest_value(text, "mode", mode, modelen);
	return strcmp(name, o->name) == 0 &&
	       strcmp(mode, o->mode == KS_REDIRECT_IPTABLES ? "iptables" : "bpf") == 0;
}

/* remove: the manifest goes only if it is this installation's. */
int ks_redir_manifest_remove(const struct ks_redirect_opts *o)
{
	char name[128], mode[32];
	int rc;

	if (!o->manifest)
		return 0;
	rc = manifest_ours(o, name, sizeof(name), mode, sizeof(mode));
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		ks_redir_fail("--manifest %s: %s", o->manifest, strerror(-rc));
		return rc;
	}
	if (rc == 0) {
		printf("%s: the manifest %s is another installation's (%s, mode %s): left in "
		       "place\n",
		       o->name, o->manifest, name, mode);
		return 0;
	}
	if (unlink(o->manifest) < 0) {
		ks_redir_fail("--manifest %s: %s", o->manifest, strerror(errno));
		return -errno;
	}
	printf("%s: manifest %s deleted\n", o->name, o->manifest);
	return 0;
}

/* status: one line on the manifest; it does not change the exit status. */
void ks_redir_manifest_status(const struct ks_redirect_opts *o)
{
	char name[128], mode[32];
	int rc;

	if (!o->manifest) {
		printf("  manifest         none\n");
		return;
	}
	rc = manifest_ours(o, name, sizeof(name), mode, sizeof(mode));
	if (rc == 1)
		printf("  manifest         %s\n", o->manifest);
	else if (rc == 0)
		printf("  manifest         %s is another installation's (%s, mode %s)\n",
		       o->manifest, name, mode);
	else
		printf("  manifest         %s: %s\n", o->manifest, strerror(-rc));
}

/* ------------------------------------------------------------- commands */

static int do_install(const struct ks_redirect_opts *o)
{
	struct ks_redirect_bpf *skel = NULL;
	struct ks_redir_manifest_file mf = {0};
	char dir[PATH_MAX];
	int cgfd = -1, nsfd = -1, made_dir = 0, rc;
	__u64 cg_id = 0;

	rc = check_privileges();
	if (rc < 0)
		return rc;
	rc = check_bpffs();
	if (rc < 0)
		return rc;
	cgfd = open_cgroup(o->cgroup);
	if (cgfd < 0)
		return cgfd;
	nsfd = ks_redir_open_netns(o->netns);
	if (nsfd < 0) {
		rc = nsfd;
		goto cleanup;
	}
	rc = ks_redir_manifest_prepare(o, &mf);
	if (rc < 0)
		goto cleanup;
	snprintf(dir, sizeof(dir), "%s/%s", BPFFS, o->name);
	if (path_exists(dir)) {
		rc = check_existing(o, dir);
		goto cleanup;
	}
	rc = check_hooks();
	if (rc < 0)
		goto cleanup;

	skel = ks_redirect_bpf__open();
	if (!skel) {
		rc = -errno;
		ks_redir_fail("opening the embedded BPF object: %s", strerror(-rc));
		goto cleanup;
	}
	rc = ks_redirect_bpf__load(skel);
	if (rc < 0) {
		explain_load_failure(rc);
		goto cleanup;
	}
	rc = configure(skel, o);
	if (rc < 0)
		goto cleanup;
	if (mkdir(dir, 0700) < 0) {
		rc = -errno;
		ks_redir_fail("mkdir %s: %s", dir, strerror(-rc));
		goto cleanup;
	}
	made_dir = 1;
	for (int i = 0; i < M_MAX; i++) {
		char path[PATH_MAX];

		pin_path(path, sizeof(path), o->name, map_pins[i]);
		rc = bpf_map__pin(skel_map(skel, i), path);
		if (rc < 0) {
			ks_redir_fail("pinning %s: %s", path, strerror(-rc));
			goto cleanup;
		}
	}
	/* Reverse removal order: connect() is rewritten only once the
	 * getsockopt and sockops halves are in place to answer for it. */
	for (int i = L_MAX - 1; i >= 0; i--) {
		rc = attach_one(skel, o, i, cgfd, nsfd);
		if (rc < 0)
			goto cleanup;
	}
	(void)cgroup_id(o->cgroup, &cg_id);
	printf("%s: installed under %s: connect4, connect6, getsockopt, sockops on cgroup %s "
	       "(id %llu); sk_lookup on netns %s\n",
	       o->name, dir, o->cgroup, (unsigned long long)cg_id, o->netns);
	rc = 0;
cleanup:
	rc = ks_redir_manifest_finish(&mf, rc);
	/* On failure nothing stays: unpinned links detach when the skeleton
	 * closes them. */
	if (rc < 0 && made_dir)
		unpin_all(o->name);
	ks_redirect_bpf__destroy(skel);
	if (nsfd >= 0)
		close(nsfd);
	close(cgfd);
	return rc;
}

static int do_remove(const struct ks_redirect_opts *o)
{
	char dir[PATH_MAX], path[PATH_MAX];
	int rc = 0;

	if (check_privileges() < 0 || check_bpffs() < 0)
		return -EPERM;
	snprintf(dir, sizeof(dir), "%s/%s", BPFFS, o->name);
	if (!path_exists(dir)) {
		printf("%s: not installed (no %s); nothing to do\n", o->name, dir);
		return ks_redir_manifest_remove(o);
	}
	for (int i = 0; i < L_MAX; i++) {
		int fd;

		pin_path(path, sizeof(path), o->name, link_pins[i]);
		if (!path_exists(path))
			continue;
		/*
		 * Detach explicitly (BPF_LINK_DETACH, 5.9) rather than only
		 * unpin: anyone holding an fd to the link (bpftool, a crashed
		 * loader's child) would otherwise keep the hook attached.
		 */
		fd = bpf_obj_get(path);
		if (fd < 0 || bpf_link_detach(fd) < 0) {
			ks_redir_fail("detaching %s (%s): %s", link_hooks[i], path,
				      strerror(errno));
			rc = -errno;
		}
		if (fd >= 0)
			close(fd);
		if (unlink(path) < 0) {
			ks_redir_fail("unpinning %s: %s", path, strerror(errno));
			rc = -errno;
		}
	}
	for (int i = 0; i < M_MAX; i++) {
		pin_path(path, sizeof(path), o->name, map_pins[i]);
		if (unlink(path) < 0 && errno != ENOENT) {
			ks_redir_fail("unpinning %s: %s", path, strerror(errno));
			rc = -errno;
		}
	}
	if (rmdir(dir) < 0) {
		ks_redir_fail(
		    "rmdir %s: %s%s", dir, strerror(errno),
		    errno == ENOTEMPTY ? " (files this loader did not pin are left in place)" : "");
		rc = -errno;
	}
	if (rc == 0)
		printf("%s: removed (hooks detached, %s gone)\n", o->name, dir);
	/* The manifest goes only once nothing is left: while pins remain,
	 * it still describes them. */
	return rc < 0 ? rc : ks_redir_manifest_remove(o);
}

static void print_ports(const char *label, const __u16 *ports, __u16 n)
{
	printf("  %-16s", label);
	if (n == 0)
		printf(" none");
	for (unsigned int i = 0; i < n && i < KS_REDIR_MAX_PORTS; i++)
		printf(" %u", ports[i]);
	printf("\n");
}

static int do_status(const struct ks_redirect_opts *o)
{
	struct ks_redir_cidr_key cidrs[KS_REDIR_MAX_CIDRS];
	struct ks_redir_config cfg;
	struct ks_installed in;
	char dir[PATH_MAX], rel[128], buf[64];
	unsigned int n;
	int rc, attached = 0;
	__u32 zero = 0;

	if (check_privileges() < 0 || check_bpffs() < 0)
		return -EPERM;
	snprintf(dir, sizeof(dir), "%s/%s", BPFFS, o->name);
	if (!path_exists(dir)) {
		ks_redir_fail("%s: not installed (no %s)", o->name, dir);
		return -ENOENT;
	}
	rc = installed_open(o->name, &in);
	if (rc < 0)
		goto cleanup;
	ks_redir_kernel_release(rel, sizeof(rel));
	printf("%s: pins under %s (kernel %s)\n", o->name, dir, rel);
	for (int i = 0; i < L_MAX; i++) {
		const struct bpf_link_info *info = &in.info[i];

		printf("  %-18s", link_hooks[i]);
		if (in.link_fd[i] < 0) {
			printf(" MISSING (no %s)\n", link_pins[i]);
			continue;
		}
		if (!link_attached(info)) {
			printf(" DETACHED (link %u: its %s is gone)\n", info->id,
			       info->type == BPF_LINK_TYPE_NETNS ? "netns" : "cgroup");
			continue;
		}
		attached++;
		if (info->type == BPF_LINK_TYPE_NETNS)
			printf(" attached  link %u prog %u netns inode %u\n", info->id,
			       info->prog_id, info->netns.netns_ino);
		else
			printf(" attached  link %u prog %u cgroup id %llu\n", info->id,
			       info->prog_id, (unsigned long long)info->cgroup.cgroup_id);
	}
	if (in.map_fd[M_CONFIG] >= 0 &&
	    bpf_map_lookup_elem(in.map_fd[M_CONFIG], &zero, &cfg) == 0) {
		if (cfg.abi != KS_REDIR_ABI)
			printf("  config           from another version (abi %u, this is %u)\n",
			       cfg.abi, KS_REDIR_ABI);
		printf("  outbound         127.0.0.1:%u, [::1]:%u\n", cfg.outbound_port,
		       cfg.outbound_port);
		printf("  inbound port     %u\n", cfg.inbound_port);
		printf("  sidecar uid      %u\n", cfg.sidecar_uid);
		print_ports("app ports", cfg.app_ports, cfg.n_app_ports);
		print_ports("excluded ports", cfg.exclude_ports, cfg.n_exclude_ports);
	}
	if (in.map_fd[M_CIDRS] >= 0 && read_cidrs(in.map_fd[M_CIDRS], cidrs, &n) == 0) {
		printf("  excluded CIDRs  ");
		if (n == 0)
			printf(" none");
		for (unsigned int i = 0; i < n; i++) {
			ks_redirect_format_cidr(&cidrs[i], buf, sizeof(buf));
			printf(" %s", buf);
		}
		printf("\n");
	}
	if (in.map_fd[M_LISTENERS] >= 0) {
		/* A sockmap lookup from userspace yields the socket cookie. */
		for (__u32 k = KS_REDIR_LISTENER_V4; k <= KS_REDIR_LISTENER_V6; k++) {
			__u64 cookie;

			printf("  listener %-7s", k == KS_REDIR_LISTENER_V4 ? "ipv4" : "ipv6");
			if (bpf_map_lookup_elem(in.map_fd[M_LISTENERS], &k, &cookie) == 0)
				printf(" registered (socket cookie %llu)\n",
				       (unsigned long long)cookie);
			else
				printf(" none\n");
		}
	}
	if (in.map_fd[M_STATS] >= 0) {
		printf("  counters        ");
		for (__u32 k = 0; k < KS_STAT_MAX; k++) {
			__u64 v = 0;

			(void)bpf_map_lookup_elem(in.map_fd[M_STATS], &k, &v);
			printf(" %s=%llu", stat_names[k], (unsigned long long)v);
		}
		printf("\n");
	}
	ks_redir_manifest_status(o);
	if (attached == L_MAX && in.missing == 0) {
		rc = 0;
	} else {
		ks_redir_fail(
		    "%s: %d of %d hooks attached, %d pins missing: run remove, then install",
		    o->name, attached, L_MAX, in.missing);
		rc = -ENOENT;
	}
cleanup:
	installed_close(&in);
	return rc;
}

int ks_redirect_main(int argc, char **argv)
{
	struct ks_redirect_opts *o;
	char err[256];
	int rc;

	/* The CIDR table makes the options ~1.4 KiB: not for the stack. */
	o = calloc(1, sizeof(*o));
	if (!o) {
		ks_redir_fail("out of memory");
		return 1;
	}
	if (ks_redirect_parse(argc, argv, o, err, sizeof(err)) < 0) {
		ks_redir_fail("%s\nTry 'ktls-sidecar redirect --help'.", err);
		free(o);
		return 2;
	}
	if (o->help) {
		usage(stdout);
		free(o);
		return 0;
	}
	libbpf_set_print(libbpf_log);
	if (o->mode == KS_REDIRECT_IPTABLES) {
		switch (o->cmd) {
		case KS_REDIRECT_INSTALL:
			rc = ks_redir_ipt_install(o);
			break;
		case KS_REDIRECT_REMOVE:
			rc = ks_redir_ipt_remove(o);
			break;
		default:
			rc = ks_redir_ipt_status(o);
			break;
		}
	} else {
		switch (o->cmd) {
		case KS_REDIRECT_INSTALL:
			rc = do_install(o);
			break;
		case KS_REDIRECT_REMOVE:
			rc = do_remove(o);
			break;
		default:
			rc = do_status(o);
			break;
		}
	}
	free(o);
	return rc < 0 ? 1 : 0;
}
