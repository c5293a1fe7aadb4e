/* SPDX-License-Identifier: Apache-2.0 */
/* Socket helpers. All return 0 (or an fd) on success and -errno on failure. */
#ifndef KS_COMMON_NET_H
#define KS_COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ks_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Longest "[v6]:port" string plus NUL. */
#define KS_ADDRSTRLEN 64

/*
 * Parses "IP:PORT", "[IPv6]:PORT", ":PORT" (all IPv4 interfaces) or
 * "HOST:PORT" (resolved once, now: start-up only, it may block). On error
 * writes a reason into err.
 */
int ks_addr_parse(const char *s, struct ks_addr *out, char *err, size_t errlen);
/*
 * The same forms, but a HOST that is not an IP literal is not looked up:
 * it is checked (ks_host_name_valid), copied into name (namelen: at least
 * KS_HOST_NAME_MAX) and its port into *port, and 1 is returned, for a lookup
 * later, off the caller's thread (dataplane/resolver.h). 0: out holds the
 * literal address; -EINVAL with a reason in err.
 */
int ks_addr_parse_lazy(const char *s, struct ks_addr *out, char *name, size_t namelen,
		       uint16_t *port, char *err, size_t errlen);
/* A DNS name as text, 1-253 characters (RFC 1035 2.3.4) plus NUL. */
#define KS_HOST_NAME_MAX 254
bool ks_host_name_valid(const char *name);
const char *ks_addr_str(const struct sockaddr *sa, char *buf, size_t buflen);
int ks_addr_equal(const struct ks_addr *a, const struct ks_addr *b);
/* The port, in host order (0 for an unknown family). */
uint16_t ks_addr_port(const struct ks_addr *a);

/*
 * A nonblocking listener on addr, without SO_REUSEPORT: no other socket can
 * bind the port while it is open. For port 0 the kernel's choice is written
 * back into addr. An IPv6 listener is dual-stack unless v6only (then an
 * IPv4 listener may have the same port). Returns the socket or -errno.
 */
int ks_listen(struct ks_addr *addr, int backlog, bool v6only);
/* Starts a nonblocking connect; completion is signalled by writability. */
int ks_connect_start(const struct ks_addr *addr);
/* The outcome of a connect started by ks_connect_start (SO_ERROR). */
int ks_connect_result(int fd);
void ks_tune_socket(int fd);
/*
 * Destination of a connection redirected by iptables REDIRECT (or eBPF).
 * -ENOENT (or the getsockopt's -errno) when it was not redirected, also
 * where conntrack tracks it anyway and gives its own local address back.
 */
int ks_original_dst(int fd, struct ks_addr *out);
/* Make the next close(2) send RST instead of FIN, to propagate a reset. */
void ks_set_rst_on_close(int fd);
/*
 * Sends buf[*off, len) on a stream socket without blocking (MSG_DONTWAIT,
 * MSG_NOSIGNAL: a closed peer is -EPIPE, not SIGPIPE), advancing *off by
 * what went out. 0: all of it is sent; -EAGAIN: the socket is full (EINTR
 * counts as full too), wait for writability and call again; else -errno.
 */
int ks_send_pending(int fd, const void *buf, size_t len, size_t *off);

#endif
