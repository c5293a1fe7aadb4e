/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KS_REDIRECT_REDIRECT_H
#define KS_REDIRECT_REDIRECT_H

#include <stdbool.h>
#include <stddef.h>

#include "bpf/redirect.h"
#include "common/sbuf.h"

/*
 * The start-up probe. The sidecar checks that redirection really works by
 * connect()ing, as itself, to KS_REDIR_PROBE_ADDR:KS_REDIR_PROBE_PORT
 * (15999, from bpf/redirect.h): in both modes that one destination is
 * redirected to the outbound listener even from the sidecar's exempt uid,
 * before every exclusion, and getsockopt(SO_ORIGINAL_DST) on the accepted
 * socket returns it. A connect() that fails (ENETUNREACH, a timeout) or is
 * accepted elsewhere means nothing redirects. In iptables mode the address
 * needs a route, as any destination does before nat OUTPUT sees it (a pod
 * has a default route); in BPF mode the rewrite comes before the route.
 */
#define KS_REDIR_PROBE_ADDR "169.254.255.254"
/* Its IPv6 counterpart (bpf/redirect.h), probed when the redirect covers IPv6. */
#define KS_REDIR_PROBE_ADDR6 "100::a9fe:fffe"

/*
 * The manifest: `redirect install` writes it (atomically, mode 0644) for the
 * unprivileged sidecar to read; `remove` deletes it. Default path below;
 * `--manifest PATH` or `--manifest none`. Format, fixed for the sidecar's
 * parser:
 *
 *   - one `key=value` per line, each line ending in '\n'; no spaces around
 *     '=', no quoting, no comments, no empty lines; a value is everything
 *     after the first '=' up to the newline and never holds a newline;
 *   - these keys, in this order, each exactly once:
 *       mode            bpf | iptables
 *       name            the --name (pin directory, or chains KS_<name>_OUT/_IN)
 *       cgroup          the --cgroup path (bpf); empty in iptables mode
 *       netns           the --netns path, as given
 *       sidecar_uid     decimal uid exempt from redirection, as the sidecar
 *                       sees it (getuid() in its user namespace)
 *       outbound_port   decimal, the transparent outbound listener's port
 *       inbound_port    decimal, the inbound (mTLS) listener's port
 *       app_ports       decimal ports, comma-separated, no spaces; may be
 *                       empty (no inbound redirection)
 *       kernel          uname -r of the node at install
 *       installed_unix  decimal seconds since the epoch of the install
 *                       command that wrote the file
 *       ipv6            yes | no: whether the app's IPv6 connections are
 *                       redirected too (no: IPv6 is off in the kernel, or
 *                       iptables mode with --ipv4-only); the sidecar then
 *                       probes IPv6 as well. A manifest without it (older
 *                       versions) reads as no.
 *       sidecar_host_uid  decimal: sidecar_uid as the host sees it (the
 *                       same number unless the pod has a user namespace)
 *       sidecar_userns  decimal: the inode of the user namespace in which
 *                       sidecar_uid was read (nsfs; /proc/PID/ns/user);
 *                       the sidecar checks that it runs in that one. A
 *                       manifest without it (older versions), or 0, is not
 *                       checked.
 *   - a reader must ignore keys it does not know (later versions may add
 *     some, after these).
 *
 * Example:
 *   mode=bpf
 *   name=pod-a
 *   cgroup=/sys/fs/cgroup/kubepods/pod1234
 *   netns=/proc/4242/ns/net
 *   sidecar_uid=1337
 *   outbound_port=15001
 *   inbound_port=15006
 *   app_ports=8080,8443
 *   kernel=6.1.0-28-amd64
 *   installed_unix=1732700000
 *   ipv6=yes
 *   sidecar_host_uid=101337
 *   sidecar_userns=4026532451
 */
#define KS_REDIR_MANIFEST_DEFAULT "/run/ktls-sidecar/redirect.conf"

/* The defaults of `ktls-redirect install`. */
#define KS_REDIR_DEFAULT_OUTBOUND_PORT 15001
#define KS_REDIR_DEFAULT_INBOUND_PORT  15006
/* Istio's proxy uid, which pod security policies often already allow. */
#define KS_REDIR_DEFAULT_SIDECAR_UID 1337

enum ks_redirect_cmd {
	KS_REDIRECT_NONE,
	KS_REDIRECT_INSTALL,
	KS_REDIRECT_REMOVE,
	KS_REDIRECT_STATUS,
};

enum ks_redirect_mode {
	KS_REDIRECT_BPF,
	KS_REDIRECT_IPTABLES,
};

/* iptables chain names are at most 28 characters: KS_<name>_OUT. */
#define KS_REDIR_IPT_NAME_MAX 21

struct ks_redirect_opts {
	enum ks_redirect_cmd cmd;
	enum ks_redirect_mode mode;
	bool help;
	const char *name;		    /* pins under /sys/fs/bpf/<name>, or chains */
	const char *cgroup;		    /* install, bpf: cgroup v2 directory of the pod */
	const char *netns;		    /* install (and iptables remove/status): netns file */
	const char *userns;		    /* install: the sidecar's user namespace file; NULL:
					     * the one that owns --netns */
	const char *manifest;		    /* install/remove: the manifest; NULL: none */
	bool ipv4_only;			    /* install, iptables: no IPv6 rules, knowingly */
	__u32 app_uids[KS_REDIR_MAX_PORTS]; /* install: the app's uids, as declared */
	unsigned int n_app_uids;
	/*
	 * cfg.sidecar_uid_pod is --sidecar-uid, the sidecar's own view; install
	 * sets cfg.sidecar_uid to what the hooks compare (BPF: the host's view;
	 * iptables: the view of the user namespace that owns --netns) and these
	 * two, from the user namespaces (userns.c). Until then all are equal.
	 */
	struct ks_redir_config cfg;
	__u32 host_uid;		       /* --sidecar-uid as the host sees it */
	unsigned long long userns_ino; /* the sidecar's user namespace (nsfs inode); 0: unknown */
	struct ks_redir_cidr_key cidrs[KS_REDIR_MAX_CIDRS];
	unsigned int n_cidrs;
};

/* Pure helpers (options.c, unit-tested). 0, or -EINVAL with the reason in err. */
int ks_redirect_parse(int argc, char **argv, struct ks_redirect_opts *o, char *err, size_t errlen);
int ks_redirect_parse_cidr(const char *s, struct ks_redir_cidr_key *key, char *err, size_t errlen);
/* "10.0.0.0/8" or "fd00::/8"; buf of at least 64 bytes. */
void ks_redirect_format_cidr(const struct ks_redir_cidr_key *key, char *buf, size_t buflen);
/* An IPv4 network, stored IPv4-mapped. */
bool ks_redirect_cidr_is_v4(const struct ks_redir_cidr_key *key);
/* "8080,8443" */
void ks_redirect_sb_ports(struct ks_sbuf *b, const __u16 *ports, __u16 n);
/*
 * A digest of every setting the rules depend on (install's "same settings
 * again?"), and the number of rules in KS_<name>_OUT for one family.
 */
unsigned long long ks_redir_settings_digest(const struct ks_redirect_opts *o);
unsigned int ks_redir_out_rule_count(const struct ks_redirect_opts *o, int family);

/*
 * The iptables-restore input that installs o's rules for one family
 * (AF_INET or AF_INET6), and the manifest text: the length written, or
 * -ENOSPC if buf is too small.
 */
int ks_redirect_iptables_rules(const struct ks_redirect_opts *o, int family, char *buf,
			       size_t buflen);
int ks_redirect_manifest_text(const struct ks_redirect_opts *o, bool ipv6, const char *kernel,
			      long long installed_unix, char *buf, size_t buflen);

#endif
