/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Shared between bpf/redirect.bpf.c (the programs) and sidecar/redirect/bpf.c
 * (the loader): the layout of every map key and value. Only fixed-width
 * types, no implicit padding, so both compilers agree byte for byte.
 *
 * Addresses are always 16 bytes in network byte order; an IPv4 address is
 * stored IPv4-mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2), so one key type
 * and one LPM trie serve both families. Ports are in host byte order.
 */
#ifndef KS_BPF_REDIRECT_H
#define KS_BPF_REDIRECT_H

#include <linux/types.h>

/*
 * Bumped whenever a layout below or the programs' contract changes: install
 * refuses to take an older installation for its own, status flags it.
 * 2: the start-up probe (KS_REDIR_PROBE_*), KS_STAT_PROBE.
 * 3: the IPv6 start-up probe (KS_REDIR_PROBE_IP6_*); connect refused when
 *    the original destination cannot be recorded (KS_STAT_REFUSED_NO_RECORD).
 * 4: sidecar_uid is the host's view of the uid, sidecar_uid_pod the
 *    sidecar's own (user-namespaced pods).
 */
#define KS_REDIR_ABI 4

/*
 * The start-up probe: the sidecar connect()s, as itself, to this address
 * and port, and expects to accept that connection on its own outbound
 * listener with it as the original destination. Redirected for every uid,
 * the sidecar's included (its one exception), and before any exclusion: it
 * proves that redirection is in place. Link-local (RFC 3927: routers do not
 * forward it) and at the end of the range, away from the cloud metadata
 * address, so a missing redirect does not reach a real server.
 * Host byte order; sidecar/redirect/redirect.h has the string form.
 */
#define KS_REDIR_PROBE_IP4  0xa9fefffeU /* 169.254.255.254 */
#define KS_REDIR_PROBE_PORT 15999
/*
 * Its IPv6 counterpart, 100::a9fe:fffe, for a redirect that covers IPv6:
 * in the Discard-Only block 100::/64 (RFC 6666), so a missing redirect
 * sends it nowhere (IPv6 link-local would need a scope id to connect).
 * The first and last 32-bit words, host byte order; the middle ones are 0.
 */
#define KS_REDIR_PROBE_IP6_W0 0x01000000U
#define KS_REDIR_PROBE_IP6_W3 0xa9fefffeU

#define KS_REDIR_MAX_PORTS 16
#define KS_REDIR_MAX_CIDRS 64
/* Connections between the app's connect() and the sidecar's accept()... */
#define KS_REDIR_MAX_PENDING 8192
/* ...and redirected connections open at once (the sidecar's default
 * --max-connections); LRU maps, so a leak can never fill them. */
#define KS_REDIR_MAX_CONNS 16384

/* sockmap slots for the sidecar's inbound listener, one per family. */
#define KS_REDIR_LISTENER_V4 0
#define KS_REDIR_LISTENER_V6 1

/*
 * The one entry of the config array map, written once by the loader.
 * bpf_get_current_uid_gid() gives the uid as the initial user namespace
 * sees it (kernel/bpf/helpers.c: from_kuid(&init_user_ns, ...)), so
 * sidecar_uid is the host's view; in a user-namespaced pod the sidecar's
 * getuid() is another number, kept in sidecar_uid_pod for status.
 */
struct ks_redir_config {
	__u32 abi;	       /* KS_REDIR_ABI */
	__u32 sidecar_uid;     /* the host's view: its connect()s are not redirected */
	__u32 sidecar_uid_pod; /* the same uid, in its own user namespace */
	__u16 outbound_port;   /* transparent outbound listener, on loopback */
	__u16 inbound_port;    /* inbound (mTLS) listener, any address */
	__u16 n_app_ports;     /* entries used in app_ports */
	__u16 n_exclude_ports; /* entries used in exclude_ports */
	__u16 app_ports[KS_REDIR_MAX_PORTS];	 /* steered to inbound_port */
	__u16 exclude_ports[KS_REDIR_MAX_PORTS]; /* never redirected outbound */
};

/* LPM trie key (struct bpf_lpm_trie_key layout: prefixlen first). */
struct ks_redir_cidr_key {
	__u32 prefixlen; /* of the 128-bit address: IPv4 /n is 96 + n */
	__u8 addr[16];
};

/* An original destination, as the app asked for it. */
struct ks_redir_orig {
	__u8 addr[16];
	__u16 port;
	__u16 family; /* AF_INET (addr is IPv4-mapped) or AF_INET6 */
	__u32 pad;
	__u64 cookie; /* the app socket's, so a close deletes only its own entry */
};

/*
 * Where the sidecar's accepted socket finds its original destination: the
 * app socket's local address and port, which the accepted socket sees as
 * its peer. Unique among live redirected connections, because they all
 * share the other half of the 4-tuple (the outbound listener).
 */
struct ks_redir_peer {
	__u8 addr[16];
	__u32 port;
};

/* Counters (array map of __u64); `redirect status` prints them. */
enum ks_redir_stat {
	KS_STAT_REDIRECTED,	   /* connect() rewritten to the outbound listener */
	KS_STAT_EXEMPT_UID,	   /* the sidecar's own connect() */
	KS_STAT_EXEMPT_LOOPBACK,   /* to a loopback address */
	KS_STAT_EXEMPT_PORT,	   /* to an excluded port */
	KS_STAT_EXEMPT_CIDR,	   /* to an excluded CIDR */
	KS_STAT_TIED,		   /* established: keyed by the app's local address */
	KS_STAT_ORIG_ANSWERED,	   /* SO_ORIGINAL_DST answered from the map */
	KS_STAT_LISTENER_ADDED,	   /* inbound listener put in the sockmap */
	KS_STAT_LISTENER_FAILED,   /* ... and failed (last error below) */
	KS_STAT_LISTENER_LAST_ERR, /* -errno of the last failure */
	KS_STAT_STEERED,	   /* inbound connection handed to the listener */
	KS_STAT_STEER_NO_LISTENER, /* ... refused: no listener registered */
	KS_STAT_STEER_FAILED,	   /* ... refused: bpf_sk_assign failed */
	KS_STAT_PROBE,		   /* the start-up probe, redirected */
	KS_STAT_REFUSED_NO_RECORD, /* connect() refused (EPERM): the original
				    * destination could not be recorded */
	KS_STAT_MAX,
};

#endif
