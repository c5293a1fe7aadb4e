/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktls-redirect install|remove|status: the privileged, run-once half of the
 * transparent redirect (bpf/redirect.bpf.c, or iptables), meant for an init
 * container with CAP_BPF and CAP_NET_ADMIN. It attaches every program with a
 * bpf_link and pins the links and maps under /sys/fs/bpf/<name>: a pinned
 * link keeps its program attached after the loader exits, so the sidecar
 * itself needs no capability and never calls bpf() (which Debian forbids
 * to unprivileged users: kernel.unprivileged_bpf_disabled=2).
 *
 * A binary of its own, so that the unprivileged daemon carries no libbpf;
 * `ktls-redirect ...` execs it.
 *
 * Exit codes: 0 done; 1 failed (the message says what is missing); 2 usage.
 */
#include "redirect/redirect_int.h"

#include <stdio.h>
#include <stdlib.h>

#define BPFFS "/sys/fs/bpf"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: ktls-redirect install --name NAME --cgroup PATH --netns PATH "
		"[OPTIONS]\n"
		"       ktls-redirect install --mode iptables --name NAME --netns PATH "
		"[OPTIONS]\n"
		"       ktls-redirect remove --name NAME [--manifest PATH]\n"
		"       ktls-redirect status --name NAME\n"
		"       (remove and status in iptables mode: add --mode iptables --netns PATH)\n"
		"       `ktls-redirect ARGS...` runs ktls-redirect ARGS... (the same program)\n"
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
		"KS_NAME_IN (from PREROUTING), written in one iptables-restore and one\n"
		"ip6tables-restore transaction. Needs iptables (ip6tables too where the kernel\n"
		"has IPv6, unless --ipv4-only), the kernel's nat table, and CAP_NET_ADMIN\n"
		"(plus CAP_SYS_ADMIN to enter a --netns other\n"
		"than its own; NET_RAW for iptables-legacy). Outbound: the same exemptions by\n"
		"the sidecar's uid (-m owner), so --cgroup is not needed (accepted, ignored);\n"
		"REDIRECT to the outbound port on loopback. Inbound: the app's ports, not from\n"
		"lo, are REDIRECTed to the inbound port. This is NAT: the sidecar's accepted\n"
		"socket has the inbound port as its local port, not the app's; and while the\n"
		"sidecar is down such connections are refused (nothing listens there).\n"
		"\n"
		"User-namespaced pods (Kubernetes hostUsers: false): --sidecar-uid is the pod's\n"
		"view, translated through the pod's uid_map; status shows both. The BPF install\n"
		"needs CAP_BPF and CAP_NET_ADMIN over the host's user namespace, which no\n"
		"capability inside a user namespace gives: run it with host privileges.\n"
		"\n"
		"Both modes: the start-up probe, a TCP connect() to " KS_REDIR_PROBE_ADDR ":%d\n"
		"(and [" KS_REDIR_PROBE_ADDR6 "] on the same port where IPv6 is redirected),\n"
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
		"  --sidecar-uid UID      the sidecar's uid, as it runs inside the pod: its own\n"
		"                         connections are never redirected (default %d).\n"
		"                         Every process of that uid is exempt, so it must be\n"
		"                         the sidecar's alone: 0 (root) is refused. In a\n"
		"                         user-namespaced pod it is read in the pod's user\n"
		"                         namespace: BPF gets the host's uid, iptables rules\n"
		"                         are written inside the namespace owning --netns\n"
		"  --userns PATH          install: the sidecar's user namespace\n"
		"                         (/proc/PID/ns/user of a process of the pod); default:\n"
		"                         the one that owns --netns (a Kubernetes pod's)\n"
		"  --app-uid UID          a uid the app runs as (repeatable, optional): the\n"
		"                         install is refused if it is the --sidecar-uid\n"
		"  --exclude-port PORT    outbound destination port never redirected\n"
		"                         (repeatable, at most %d)\n"
		"  --exclude-cidr CIDR    outbound destination network never redirected, e.g.\n"
		"                         10.0.0.0/8 or fd00::/8 (repeatable, at most %d)\n"
		"  --manifest PATH|none   install writes, remove deletes, the settings for the\n"
		"                         sidecar: key=value lines, mode 0644 (default\n"
		"                         " KS_REDIR_MANIFEST_DEFAULT "; its directory is\n"
		"                         created 0755 if missing)\n"
		"  --ipv4-only            install, iptables: IPv4 rules only, knowingly: the\n"
		"                         app's IPv6 connections are NOT redirected (the\n"
		"                         manifest says ipv6=no). Without it, an install on\n"
		"                         a kernel with IPv6 and no ip6tables-restore fails\n"
		"  --help                 this text\n"
		"\n"
		"bpf mode needs Linux 5.9 or later: sk_lookup and netns links (5.9), listening\n"
		"sockets in a sockmap and cgroup bpf_links (5.7), cgroup/getsockopt (5.3),\n"
		"cgroup v2, and a BPF file system on " BPFFS ".\n"
		"Exit status: 0 done, 1 failed (the message says what is missing), 2 usage.\n",
		KS_REDIR_PROBE_PORT, KS_REDIR_DEFAULT_OUTBOUND_PORT, KS_REDIR_DEFAULT_INBOUND_PORT,
		KS_REDIR_MAX_PORTS, KS_REDIR_DEFAULT_SIDECAR_UID, KS_REDIR_MAX_PORTS,
		KS_REDIR_MAX_CIDRS);
}

/* The mode's three commands. */
struct ks_redir_mode_ops {
	int (*install)(struct ks_redirect_opts *o); /* fills in the uids (userns.c) */
	int (*remove)(const struct ks_redirect_opts *o);
	int (*status)(const struct ks_redirect_opts *o);
};

static const struct ks_redir_mode_ops mode_ops[] = {
    [KS_REDIRECT_BPF] = {ks_redir_bpf_install, ks_redir_bpf_remove, ks_redir_bpf_status},
    [KS_REDIRECT_IPTABLES] = {ks_redir_ipt_install, ks_redir_ipt_remove, ks_redir_ipt_status},
};

int main(int argc, char **argv)
{
	const struct ks_redir_mode_ops *ops;
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
		ks_redir_fail("%s\nTry '" PROG " --help'.", err);
		free(o);
		return 2;
	}
	if (o->help) {
		usage(stdout);
		free(o);
		return 0;
	}
	ops = &mode_ops[o->mode];
	rc = o->cmd == KS_REDIRECT_INSTALL  ? ops->install(o)
	     : o->cmd == KS_REDIRECT_REMOVE ? ops->remove(o)
					    : ops->status(o);
	free(o);
	return rc < 0 ? 1 : 0;
}
