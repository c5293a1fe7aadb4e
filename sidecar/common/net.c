/* SPDX-License-Identifier: Apache-2.0 */
#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/parse.h"

/* linux/netfilter_ipv6/ip6_tables.h drags in kernel-only headers. */
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/*
 * Splits "HOST:PORT", "[IPv6]:PORT" or ":PORT" into host (":PORT": 0.0.0.0)
 * and port, checking both. *bracketed: the host was in brackets (an IPv6
 * literal, never a name).
 */
static int split_host_port(const char *s, char host[256], char port[8], bool *bracketed, char *err,
			   size_t errlen)
{
	const char *p, *h;
	size_t hlen;
	uint16_t pn;

	if (!s || !*s) {
		snprintf(err, errlen, "empty address");
		return -EINVAL;
	}
	*bracketed = s[0] == '[';
	if (*bracketed) {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':') {
			snprintf(err, errlen, "'%s': expected [IPv6]:PORT", s);
			return -EINVAL;
		}
		h = s + 1;
		hlen = (size_t)(rb - h);
		p = rb + 2;
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon) {
			snprintf(err, errlen, "'%s': expected HOST:PORT", s);
			return -EINVAL;
		}
		h = s;
		hlen = (size_t)(colon - s);
		p = colon + 1;
	}
	if (ks_parse_port(p, true, &pn) < 0) {
		snprintf(err, errlen, "'%s': port must be 0-65535", s);
		return -EINVAL;
	}
	if (hlen >= 256) {
		snprintf(err, errlen, "'%s': host name too long", s);
		return -EINVAL;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (hlen == 0)
		strcpy(host, "0.0.0.0");
	snprintf(port, 8, "%u", pn);
	return 0;
}

static int resolve_first(const char *s, const char *host, const char *port, int flags,
			 struct ks_addr *out, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | flags;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "'%s': cannot resolve '%s': %s", s, host, gai_strerror(rc));
		return rc == EAI_NONAME ? -ENOENT : -EINVAL;
	}
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int ks_addr_parse(const char *s, struct ks_addr *out, char *err, size_t errlen)
{
	char host[256], port[8];
	bool bracketed;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = split_host_port(s, host, port, &bracketed, err, errlen);
	if (rc < 0)
		return rc;
	rc = resolve_first(s, host, port, bracketed ? AI_NUMERICHOST : 0, out, err, errlen);
	return rc < 0 ? -EINVAL : 0;
}

bool ks_host_name_valid(const char *name)
{
	size_t n = strlen(name);
	const char *last;

	/* RFC 1035 2.3.4: at most 253 characters as text; letters, digits,
	 * '-', '.' (and '_', which service names use in practice). */
	if (n == 0 || n > 253 || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_'))
			return false;
	}
	/* A top-level label is never all digits (RFC 3696 2): "999.1.1.1" is a
	 * mistyped address, not a name to look up. */
	last = strrchr(name, '.');
	last = last && last[1] ? last + 1 : name;
	return strspn(last, "0123456789") != strlen(last);
}

int ks_addr_parse_lazy(const char *s, struct ks_addr *out, char *name, size_t namelen,
		       uint16_t *port, char *err, size_t errlen)
{
	char host[256], p[8];
	bool bracketed;
	int rc;

	memset(out, 0, sizeof(*out));
	name[0] = '\0';
	rc = split_host_port(s, host, p, &bracketed, err, errlen);
	if (rc < 0)
		return rc;
	/* An IP literal: no lookup, now or later (AI_NUMERICHOST never blocks). */
	rc = resolve_first(s, host, p, AI_NUMERICHOST, out, err, errlen);
	if (rc == 0 || bracketed)
		return rc < 0 ? -EINVAL : 0;
	if (!ks_host_name_valid(host) || strlen(host) >= namelen) {
		snprintf(err, errlen, "'%s': '%s' is neither an IP address nor a host name", s,
			 host);
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	snprintf(name, namelen, "%s", host);
	*port = (uint16_t)strtoul(p, NULL, 10);
	return 1;
}

const char *ks_addr_str(const struct sockaddr *sa, char *buf, size_t buflen)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, buflen, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, buflen, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, buflen, "unknown");
	}
	return buf;
}

uint16_t ks_addr_port(const struct ks_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return 0;
}

int ks_addr_equal(const struct ks_addr *a, const struct ks_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

void ks_tune_socket(int fd)
{
	int one = 1;

	/* A proxy must not add Nagle delay on top of the application's. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int ks_listen(struct ks_addr *addr, int backlog, bool v6only)
{
	socklen_t len = addr->len;
	int fd, one = 1, rc;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* SO_REUSEADDR lets a restart bind over its own TIME_WAIT
	 * connections; unlike SO_REUSEPORT it lets no one share the port. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (v6only && addr->ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 ||
	    listen(fd, backlog) < 0 || getsockname(fd, (struct sockaddr *)&addr->ss, &len) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	addr->len = len;
	return fd;
}

int ks_connect_start(const struct ks_addr *addr)
{
	int fd, rc;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ks_tune_socket(fd);
	if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 &&
	    errno != EINPROGRESS) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int ks_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

/*
 * ss's address as 16 bytes (IPv4 as ::ffff:a.b.c.d, RFC 4291 2.5.5.2) and
 * its port: one form for a sockaddr_in and a v4-mapped sockaddr_in6.
 * false for another family.
 */
static bool endpoint_of(const struct sockaddr_storage *ss, uint8_t ip[16], uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &in->sin_addr, 4);
		*port = in->sin_port;
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		memcpy(ip, &in6->sin6_addr, 16);
		*port = in6->sin6_port;
		return true;
	}
	return false;
}

static bool same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	uint8_t ia[16], ib[16];
	uint16_t pa, pb;

	return endpoint_of(a, ia, &pa) && endpoint_of(b, ib, &pb) && pa == pb &&
	       memcmp(ia, ib, 16) == 0;
}

int ks_original_dst(int fd, struct ks_addr *out)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);

	memset(out, 0, sizeof(*out));
	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
		return -errno;
	/* Conntrack writes the address but never the length back
	 * (getorigdst, ipv6_getorigdst): set it to what will be there. */
	out->len = sizeof(struct sockaddr_in6);
	/* A v4-mapped socket may carry the IPv4 conntrack entry instead. */
	if (local.ss_family != AF_INET6 ||
	    getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &out->ss, &out->len) < 0) {
		out->len = sizeof(struct sockaddr_in);
		if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &out->ss, &out->len) < 0)
			return -errno;
	}
	/*
	 * Once anything in the namespace needs conntrack (any nat rule), it
	 * tracks every connection and answers SO_ORIGINAL_DST for all of them:
	 * for one no rule rewrote, the original destination is the socket's own
	 * local address (the tuple was never NATed). That is "not redirected".
	 */
	if (same_endpoint(&out->ss, &local)) {
		memset(out, 0, sizeof(*out));
		return -ENOENT;
	}
	return 0;
}

void ks_set_rst_on_close(int fd)
{
	/* SO_LINGER {1, 0}: close(2) aborts the connection with RST (RFC 793 ABORT). */
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

int ks_send_pending(int fd, const void *buf, size_t len, size_t *off)
{
	while (*off < len) {
		ssize_t n =
		    send(fd, (const char *)buf + *off, len - *off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return -EAGAIN;
		if (n < 0)
			return -errno;
		if (n == 0) /* not for a nonempty send on a stream socket */
			return -EIO;
		*off += (size_t)n;
	}
	return 0;
}
