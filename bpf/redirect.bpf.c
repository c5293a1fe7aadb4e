// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Transparent redirect for one pod (issue 6), loaded and attached by
 * `ktls-redirect install` (sidecar/redirect/bpf.c):
 *
 *   cgroup/connect4, connect6  the app's TCP connect() goes to the sidecar's
 *                              transparent outbound listener; the original
 *                              destination is kept by socket cookie. So does
 *                              the start-up probe, whoever makes it.
 *   sockops                    once the app's connection is established, that
 *                              entry is re-keyed by the app's local address
 *                              (what the sidecar's accepted socket sees as its
 *                              peer) and deleted when the app's socket closes.
 *                              Also puts the sidecar's inbound listener into
 *                              the sockmap when it calls listen().
 *   cgroup/getsockopt          answers SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST
 *                              on the accepted socket from that entry: the
 *                              sidecar's iptables code path, unchanged.
 *   sk_lookup (pod netns)      TCP for the app's ports on a non-loopback
 *                              address goes to the inbound listener; no NAT.
 *
 * Only uapi headers, no vmlinux.h: the object does not depend on the build
 * machine's kernel. Everything here uses stable uapi context fields.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "redirect.h"

/* Kernel-internal or libc values that the uapi headers do not export. */
#define AF_INET		     2
#define AF_INET6	     10
#define SOCK_STREAM	     1
#define SOL_IP		     0
#define SOL_IPV6	     41
#define SO_ORIGINAL_DST	     80 /* linux/netfilter_ipv4.h */
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#define PAGE_SIZE	     4096

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ks_redir_config);
} ks_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, KS_REDIR_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct ks_redir_cidr_key);
	__type(value, __u8);
} ks_exclude_cidrs SEC(".maps");

/* connect() -> established: keyed by the app socket's cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KS_REDIR_MAX_PENDING);
	__type(key, __u64);
	__type(value, struct ks_redir_orig);
} ks_orig_by_cookie SEC(".maps");

/* established -> the app socket's close: keyed by its local address. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KS_REDIR_MAX_CONNS);
	__type(key, struct ks_redir_peer);
	__type(value, struct ks_redir_orig);
} ks_orig_by_peer SEC(".maps");

/*
 * The sidecar's inbound listener, one slot per family. key_size/value_size
 * rather than __type: sockmaps take no BTF (map_check_no_btf), and a 64-bit
 * value makes a lookup from userspace return the socket cookie (status).
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
} ks_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KS_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ks_stats SEC(".maps");

static __always_inline const struct ks_redir_config *config(void)
{
	__u32 zero = 0;
	const struct ks_redir_config *cfg = bpf_map_lookup_elem(&ks_config, &zero);

	/* An unconfigured map (abi 0) redirects nothing. */
	if (!cfg || cfg->abi != KS_REDIR_ABI)
		return 0;
	return cfg;
}

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&ks_stats, &stat);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void set_stat(__u32 stat, __u64 value)
{
	__u64 *v = bpf_map_lookup_elem(&ks_stats, &stat);

	if (v)
		*v = value;
}

static __always_inline int port_in(const __u16 *ports, __u16 n, __u16 port)
{
	for (int i = 0; i < KS_REDIR_MAX_PORTS; i++) {
		if (i >= n)
			break;
		if (ports[i] == port)
			return 1;
	}
	return 0;
}

/* addr is 4 words in network byte order. */
static __always_inline int is_v4mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

static __always_inline int is_loopback4(__u32 ip4)
{
	/* 127.0.0.0/8, and 0.0.0.0, which connect() treats as this host. */
	return (bpf_ntohl(ip4) >> 24) == 127 || ip4 == 0;
}

static __always_inline int is_loopback6(const __u32 *a)
{
	if (is_v4mapped(a))
		return is_loopback4(a[3]);
	/* ::1, and :: (this host, as 0.0.0.0 for IPv4). */
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && (a[3] == bpf_htonl(1) || a[3] == 0);
}

static __always_inline void set_mapped4(__u8 *dst, __u32 ip4)
{
	__u32 *w = (__u32 *)dst;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0xffff);
	w[3] = ip4;
}

static __always_inline int cidr_excluded(const __u8 *addr)
{
	struct ks_redir_cidr_key key = {.prefixlen = 128};

	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&ks_exclude_cidrs, &key) != 0;
}

/*
 * The checks common to both families, on the destination as the app gave
 * it (addr 16 bytes, IPv4-mapped for IPv4). 1: leave the connect() alone.
 */
static __always_inline int exempt(const struct ks_redir_config *cfg, const __u8 *addr, __u16 port,
				  int loopback)
{
	/* The sidecar's own upstream connections: redirecting them would loop. */
	if ((__u32)bpf_get_current_uid_gid() == cfg->sidecar_uid) {
		count(KS_STAT_EXEMPT_UID);
		return 1;
	}
	if (loopback) {
		count(KS_STAT_EXEMPT_LOOPBACK);
		return 1;
	}
	if (port_in(cfg->exclude_ports, cfg->n_exclude_ports, port)) {
		count(KS_STAT_EXEMPT_PORT);
		return 1;
	}
	if (cidr_excluded(addr)) {
		count(KS_STAT_EXEMPT_CIDR);
		return 1;
	}
	return 0;
}

static __always_inline int is_tcp(const struct bpf_sock_addr *ctx)
{
	return ctx->type == SOCK_STREAM && ctx->protocol == IPPROTO_TCP;
}

/*
 * The sidecar's start-up probe (KS_REDIR_PROBE_*): redirected before
 * exempt() runs, so from the sidecar's own uid too, and whatever is
 * excluded. It changes nothing else for that uid: only this one address
 * and port, link-local (RFC 3927: routers do not forward it).
 */
static __always_inline int is_probe(__u32 ip4, __u16 port)
{
	return ip4 == bpf_htonl(KS_REDIR_PROBE_IP4) && port == KS_REDIR_PROBE_PORT;
}

/* The IPv6 probe, 100::a9fe:fffe (addr: 4 words in network byte order). */
static __always_inline int is_probe6(const __u32 *a, __u16 port)
{
	return a[0] == bpf_htonl(KS_REDIR_PROBE_IP6_W0) && a[1] == 0 && a[2] == 0 &&
	       a[3] == bpf_htonl(KS_REDIR_PROBE_IP6_W3) && port == KS_REDIR_PROBE_PORT;
}

/*
 * The original destination could not be recorded (the map update failed:
 * ENOMEM, or E2BIG in a full map). Without it the sidecar cannot tell where
 * the connection was going, and letting it through unredirected would send
 * it around the sidecar in plaintext: refuse it. Returning 0 from a
 * cgroup/connect hook fails the app's connect() with EPERM
 * (Documentation/bpf/prog_cgroup_sock_addr.rst, __cgroup_bpf_run_filter_sock_addr).
 */
static __always_inline int refuse_unrecorded(void)
{
	count(KS_STAT_REFUSED_NO_RECORD);
	return 0;
}

/*
 * Runs in connect() before the route lookup (tcp_v4_pre_connect); the
 * rewritten address is what the socket connects to. Returns 1 (allow) for
 * everything it leaves alone or redirects; 0 (EPERM) only when it should
 * redirect and cannot (fail closed). Documentation/bpf/prog_cgroup_sock_addr.
 */
SEC("cgroup/connect4")
int ks_connect4(struct bpf_sock_addr *ctx)
{
	const struct ks_redir_config *cfg = config();
	struct ks_redir_orig orig = {};
	__u64 cookie;
	__u32 ip4;
	__u16 port;
	int probe;

	if (!cfg || !is_tcp(ctx))
		return 1;
	ip4 = ctx->user_ip4;
	port = bpf_ntohs((__u16)ctx->user_port);
	set_mapped4(orig.addr, ip4);
	probe = is_probe(ip4, port);
	if (!probe && exempt(cfg, orig.addr, port, is_loopback4(ip4)))
		return 1;

	orig.port = port;
	orig.family = AF_INET;
	cookie = bpf_get_socket_cookie(ctx);
	orig.cookie = cookie;
	/* No record, no redirect, and no plaintext around the sidecar either. */
	if (bpf_map_update_elem(&ks_orig_by_cookie, &cookie, &orig, BPF_ANY))
		return refuse_unrecorded();
	ctx->user_ip4 = bpf_htonl(0x7f000001);
	ctx->user_port = bpf_htons(cfg->outbound_port);
	count(probe ? KS_STAT_PROBE : KS_STAT_REDIRECTED);
	return 1;
}

/*
 * An IPv4-mapped destination connects over IPv4 (tcp_v6_connect hands it to
 * tcp_v4_connect), so it goes to ::ffff:127.0.0.1 and reaches the same
 * IPv4 listener. A native IPv6 destination goes to [::1]: the sidecar needs
 * `--outbound-transparent [::1]:PORT` for it; without one the connect() is
 * refused (fail closed), never sent around the sidecar in plaintext.
 */
SEC("cgroup/connect6")
int ks_connect6(struct bpf_sock_addr *ctx)
{
	const struct ks_redir_config *cfg = config();
	struct ks_redir_orig orig = {};
	__u32 ip6[4];
	__u64 cookie;
	__u16 port;
	int mapped, probe;

	if (!cfg || !is_tcp(ctx))
		return 1;
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	port = bpf_ntohs((__u16)ctx->user_port);
	__builtin_memcpy(orig.addr, ip6, 16);
	mapped = is_v4mapped(ip6);
	/* ::ffff:169.254.255.254 is the same destination, over IPv4. */
	probe = mapped ? is_probe(ip6[3], port) : is_probe6(ip6, port);
	if (!probe && exempt(cfg, orig.addr, port, is_loopback6(ip6)))
		return 1;

	orig.port = port;
	orig.family = mapped ? AF_INET : AF_INET6;
	cookie = bpf_get_socket_cookie(ctx);
	orig.cookie = cookie;
	if (bpf_map_update_elem(&ks_orig_by_cookie, &cookie, &orig, BPF_ANY))
		return refuse_unrecorded();
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	if (mapped) {
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
	} else {
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(cfg->outbound_port);
	count(probe ? KS_STAT_PROBE : KS_STAT_REDIRECTED);
	return 1;
}

static __always_inline void local_key(const struct bpf_sock_ops *skops, struct ks_redir_peer *key)
{
	__u32 *w = (__u32 *)key->addr;

	/* An IPv4-mapped AF_INET6 socket keeps ::ffff:a.b.c.d in local_ip6. */
	if (skops->family == AF_INET) {
		set_mapped4(key->addr, skops->local_ip4);
	} else {
		w[0] = skops->local_ip6[0];
		w[1] = skops->local_ip6[1];
		w[2] = skops->local_ip6[2];
		w[3] = skops->local_ip6[3];
	}
	key->port = skops->local_port; /* host byte order in bpf_sock_ops */
}

/*
 * The app's redirected connect() completed (SYN-ACK received): it happens
 * before the app's final ACK, so before the sidecar can accept() the other
 * end and ask for SO_ORIGINAL_DST.
 */
static __always_inline void tie(struct bpf_sock_ops *skops)
{
	const struct ks_redir_config *cfg = config();
	struct ks_redir_peer key = {};
	struct ks_redir_orig *orig;
	__u64 cookie;

	if (!cfg)
		return;
	cookie = bpf_get_socket_cookie(skops);
	orig = bpf_map_lookup_elem(&ks_orig_by_cookie, &cookie);
	if (!orig)
		return;
	local_key(skops, &key);
	if (bpf_map_update_elem(&ks_orig_by_peer, &key, orig, BPF_ANY) == 0)
		count(KS_STAT_TIED);
	bpf_map_delete_elem(&ks_orig_by_cookie, &cookie);
	/* Ask for BPF_SOCK_OPS_STATE_CB on this socket, to delete at close. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline void untie(struct bpf_sock_ops *skops)
{
	struct ks_redir_peer key = {};
	struct ks_redir_orig *orig;

	local_key(skops, &key);
	orig = bpf_map_lookup_elem(&ks_orig_by_peer, &key);
	/* Only our own entry: the cookie tells two sockets of one port apart. */
	if (orig && orig->cookie == bpf_get_socket_cookie(skops))
		bpf_map_delete_elem(&ks_orig_by_peer, &key);
}

/*
 * listen() by a socket of this cgroup: the inbound listener goes into the
 * sockmap, so the unprivileged sidecar needs no bpf() call of its own.
 * bpf_sock_map_update is allowed here (net/core/sock_map.c,
 * sock_map_op_okay: PASSIVE/ACTIVE_ESTABLISHED_CB and TCP_LISTEN_CB), and a
 * listening TCP socket may be in a sockmap since Linux 5.7. The sidecar
 * has one listening socket per route, shared by its workers.
 */
static __always_inline void register_listener(struct bpf_sock_ops *skops)
{
	const struct ks_redir_config *cfg = config();
	__u32 key;
	long err;

	if (!cfg || skops->local_port != cfg->inbound_port)
		return;
	key = skops->family == AF_INET6 ? KS_REDIR_LISTENER_V6 : KS_REDIR_LISTENER_V4;
	err = bpf_sock_map_update(skops, &ks_listeners, &key, BPF_ANY);
	if (err) {
		count(KS_STAT_LISTENER_FAILED);
		set_stat(KS_STAT_LISTENER_LAST_ERR, (__u64)-err);
		return;
	}
	count(KS_STAT_LISTENER_ADDED);
}

SEC("sockops")
int ks_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		tie(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[1] is the new state (include/uapi/linux/bpf.h). */
		if (skops->args[1] == BPF_TCP_CLOSE)
			untie(skops);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		register_listener(skops);
		break;
	}
	return 1;
}

/*
 * getsockopt() runs in the kernel first, then here with its result in
 * ctx->retval (ENOENT/ENOPROTOOPT: no conntrack entry). Only the sidecar's
 * accepted sockets on the outbound listener are answered; everything else
 * passes through untouched (Documentation/bpf/prog_cgroup_sockopt.rst: a
 * program that does not handle an option above PAGE_SIZE sets optlen 0).
 */
SEC("cgroup/getsockopt")
int ks_getsockopt(struct bpf_sockopt *ctx)
{
	const struct ks_redir_config *cfg;
	struct ks_redir_peer key = {};
	struct ks_redir_orig *orig;
	struct bpf_sock *sk = ctx->sk;
	void *optval = ctx->optval;
	void *optval_end = ctx->optval_end;
	__u32 *w = (__u32 *)key.addr;
	int v4;

	if (ctx->level == SOL_IP && ctx->optname == SO_ORIGINAL_DST)
		v4 = 1;
	else if (ctx->level == SOL_IPV6 && ctx->optname == IP6T_SO_ORIGINAL_DST)
		v4 = 0;
	else
		goto pass;
	cfg = config();
	if (!cfg || !sk || sk->protocol != IPPROTO_TCP || sk->src_port != cfg->outbound_port)
		goto pass;

	if (sk->family == AF_INET) {
		set_mapped4(key.addr, sk->dst_ip4);
	} else {
		w[0] = sk->dst_ip6[0];
		w[1] = sk->dst_ip6[1];
		w[2] = sk->dst_ip6[2];
		w[3] = sk->dst_ip6[3];
	}
	key.port = bpf_ntohs(sk->dst_port);
	orig = bpf_map_lookup_elem(&ks_orig_by_peer, &key);
	if (!orig)
		goto pass;

	/*
	 * As conntrack answers: an IPv4 destination on SOL_IP, an IPv6 one on
	 * SOL_IPV6. The other level keeps the kernel's error, and the
	 * sidecar (ks_original_dst) falls back from IPv6 to IPv4 by itself.
	 */
	if (v4 && orig->family == AF_INET) {
		struct sockaddr_in *sin = optval;

		if ((void *)(sin + 1) > optval_end)
			goto pass;
		sin->sin_family = AF_INET;
		sin->sin_port = bpf_htons(orig->port);
		__builtin_memcpy(&sin->sin_addr, &orig->addr[12], 4);
		__builtin_memset(sin->__pad, 0, sizeof(sin->__pad));
		ctx->optlen = sizeof(*sin);
	} else if (!v4 && orig->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = optval;

		if ((void *)(sin6 + 1) > optval_end)
			goto pass;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = bpf_htons(orig->port);
		sin6->sin6_flowinfo = 0;
		__builtin_memcpy(&sin6->sin6_addr, orig->addr, 16);
		sin6->sin6_scope_id = 0;
		ctx->optlen = sizeof(*sin6);
	} else {
		goto pass;
	}
	ctx->retval = 0;
	count(KS_STAT_ORIG_ANSWERED);
	return 1;
pass:
	if (ctx->optlen > PAGE_SIZE)
		ctx->optlen = 0;
	return 1;
}

/*
 * A TCP SYN for one of the app's ports, to an address other than loopback,
 * goes to the sidecar's inbound listener (Documentation/bpf/prog_sk_lookup.rst).
 * The connection keeps its destination address and port: the accepted
 * socket's local address is the original destination, with no NAT. Loopback
 * stays with the app, which is how the sidecar itself reaches it.
 *
 * Fail closed: with no listener registered (sidecar not up), the SYN is
 * refused rather than delivered to the app in plaintext.
 */
SEC("sk_lookup")
int ks_sk_lookup(struct bpf_sk_lookup *ctx)
{
	const struct ks_redir_config *cfg = config();
	struct bpf_sock *sk;
	__u32 key;
	long err;

	if (!cfg || ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	if (!port_in(cfg->app_ports, cfg->n_app_ports, (__u16)ctx->local_port))
		return SK_PASS;
	if (ctx->family == AF_INET) {
		if (is_loopback4(ctx->local_ip4))
			return SK_PASS;
		key = KS_REDIR_LISTENER_V4;
	} else {
		__u32 ip6[4] = {ctx->local_ip6[0], ctx->local_ip6[1], ctx->local_ip6[2],
				ctx->local_ip6[3]};

		if (is_loopback6(ip6))
			return SK_PASS;
		key = KS_REDIR_LISTENER_V6;
	}

	sk = bpf_map_lookup_elem(&ks_listeners, &key);
	/* A dual-stack IPv6 listener takes IPv4 too. */
	if (!sk && key == KS_REDIR_LISTENER_V4) {
		key = KS_REDIR_LISTENER_V6;
		sk = bpf_map_lookup_elem(&ks_listeners, &key);
	}
	if (!sk) {
		count(KS_STAT_STEER_NO_LISTENER);
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(KS_STAT_STEER_FAILED);
		return SK_DROP;
	}
	count(KS_STAT_STEERED);
	return SK_PASS;
}
