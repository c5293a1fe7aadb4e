/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktls-redirect's options: parsed and checked here, with no system call, so
 * that both modes, the manifest and the unit tests share one reading.
 */
#include "redirect/redirect.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"

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
	OPT_IPV4_ONLY,
	OPT_APP_UID,
	OPT_USERNS,
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
    {"ipv4-only", no_argument, NULL, OPT_IPV4_ONLY},
    {"app-uid", required_argument, NULL, OPT_APP_UID},
    {"userns", required_argument, NULL, OPT_USERNS},
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
	case OPT_USERNS:
		return set_once(&o->userns, "userns", arg, err, errlen);
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
	case OPT_APP_UID:
		if (ks_parse_uint(arg, UINT32_MAX - 1, &uid) < 0) {
			snprintf(err, errlen, "--app-uid '%s': expected a numeric uid", arg);
			return -EINVAL;
		}
		if (o->n_app_uids >= KS_REDIR_MAX_PORTS) {
			snprintf(err, errlen, "--app-uid: at most %d", KS_REDIR_MAX_PORTS);
			return -EINVAL;
		}
		o->app_uids[o->n_app_uids++] = (__u32)uid;
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
	case OPT_IPV4_ONLY:
		o->ipv4_only = true;
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
	/* connect6 redirects IPv6 in the kernel itself: nothing to opt out of. */
	if (o->ipv4_only && o->mode != KS_REDIRECT_IPTABLES) {
		snprintf(err, errlen,
			 "--ipv4-only is for --mode iptables (the BPF redirect covers IPv6 by "
			 "itself)");
		return -EINVAL;
	}
	/* The manifest is line-based: a path with a newline would forge a key. */
	if ((o->cgroup && strchr(o->cgroup, '\n')) || strchr(o->netns, '\n')) {
		snprintf(err, errlen, "install: --cgroup and --netns paths cannot hold a newline");
		return -EINVAL;
	}
	/*
	 * The exemption is by uid alone (-m owner, bpf_get_current_uid_gid):
	 * every process of that uid in the pod bypasses the sidecar, in
	 * plaintext. Root would exempt every root process, the app's too.
	 */
	if (cfg->sidecar_uid == 0) {
		snprintf(
		    err, errlen,
		    "--sidecar-uid 0: the redirect exempts the sidecar's uid, so every process "
		    "running as root in the pod would bypass the sidecar; run the sidecar under "
		    "a uid of its own (default %d)",
		    KS_REDIR_DEFAULT_SIDECAR_UID);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < o->n_app_uids; i++) {
		if (o->app_uids[i] == cfg->sidecar_uid) {
			snprintf(
			    err, errlen,
			    "--app-uid %u is the --sidecar-uid: the app's connections would be "
			    "exempt from the redirect and leave in plaintext; run the sidecar "
			    "and the app under different uids",
			    o->app_uids[i]);
			return -EINVAL;
		}
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
	o->cfg.outbound_port = KS_REDIR_DEFAULT_OUTBOUND_PORT;
	o->cfg.inbound_port = KS_REDIR_DEFAULT_INBOUND_PORT;
	o->cfg.sidecar_uid = KS_REDIR_DEFAULT_SIDECAR_UID;
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
	/* Until install reads the user namespaces, every view is the one given. */
	o->cfg.sidecar_uid_pod = o->cfg.sidecar_uid;
	o->host_uid = o->cfg.sidecar_uid;
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

void ks_redirect_sb_ports(struct ks_sbuf *b, const __u16 *ports, __u16 n)
{
	for (unsigned int i = 0; i < n && i < KS_REDIR_MAX_PORTS; i++)
		ks_sb_printf(b, "%s%u", i ? "," : "", ports[i]);
}

bool ks_redirect_cidr_is_v4(const struct ks_redir_cidr_key *key)
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
	ks_redirect_sb_ports(&b, cfg->app_ports, cfg->n_app_ports);
	ks_sb_printf(&b, " xport=");
	ks_redirect_sb_ports(&b, cfg->exclude_ports, cfg->n_exclude_ports);
	ks_sb_printf(&b, " xcidr=");
	for (unsigned int i = 0; i < o->n_cidrs; i++) {
		ks_redirect_format_cidr(&cidrs[i], c, sizeof(c));
		ks_sb_printf(&b, "%s%s", i ? "," : "", c);
	}
	/* Only when given: installs from before the flag keep their digest. */
	if (o->ipv4_only)
		ks_sb_printf(&b, " ipv4only");
	for (size_t i = 0; i < b.len; i++) {
		h ^= (unsigned char)text[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Rules in KS_<name>_OUT for one family: what status expects to find. */
