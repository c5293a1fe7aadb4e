/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/redirect_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"
#include "daemon/config.h"
#include "dataplane/worker.h"
#include "redirect/redirect.h"

/*
 * The route listening on port, if any; family AF_INET6 asks for an IPv6
 * listener ([::1] or [::]), where the redirect sends native IPv6 (0: any).
 */
static const struct ks_route *route_on(const struct ks_dp_config *cfg, bool transparent,
				       uint16_t port, int family)
{
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct ks_route *r = &cfg->routes[i];

		if (r->transparent == transparent && (transparent || r->dir == KS_INBOUND) &&
		    ks_addr_port(&r->listen) == port &&
		    (!family || r->listen.ss.ss_family == family))
			return r;
	}
	return NULL;
}

/* This process's cgroup v2 path ("0::/path" in /proc/self/cgroup). */
static void own_cgroup(char *buf, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[1024];

	snprintf(buf, len, "?");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "0::", 3) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(buf, len, "%.*s", (int)(len - 1), line + 3);
			break;
		}
	fclose(f);
}

/* Static checks: what can be told without touching the network. */
static int check_config(const struct ks_config *cfg, const struct ks_redirect_manifest *m,
			char *err, size_t errlen)
{
	struct utsname u;
	unsigned maj = 0, min = 0;

	if (getuid() != m->sidecar_uid) {
		snprintf(err, errlen,
			 "this sidecar runs as uid %u, but the redirect (%s) exempts uid %u: its "
			 "own connections would be redirected back to itself; run it as uid %u or "
			 "install with --sidecar-uid %u",
			 (unsigned)getuid(), m->mode, (unsigned)m->sidecar_uid,
			 (unsigned)m->sidecar_uid, (unsigned)getuid());
		return -EINVAL;
	}
	/*
	 * The loader read sidecar_uid in one user namespace and told the hooks
	 * what it is there (BPF: on the host). A sidecar in another one has the
	 * same getuid() and another uid to the hooks: its own connections would
	 * be redirected back to itself, and the probe cannot tell (it is
	 * redirected for every uid).
	 */
	if (m->sidecar_userns) {
		struct stat st;

		if (stat("/proc/self/ns/user", &st) < 0) {
			snprintf(
			    err, errlen,
			    "cannot tell this sidecar's user namespace (/proc/self/ns/user: %s), "
			    "which the redirect (%s) exempts uid %u of",
			    strerror(errno), m->mode, (unsigned)m->sidecar_uid);
			return -EINVAL;
		}
		if ((unsigned long long)st.st_ino != m->sidecar_userns) {
			snprintf(
			    err, errlen,
			    "this sidecar runs in user namespace %llu, but the redirect (%s) "
			    "exempts uid %u of user namespace %llu (%u on the host): its own "
			    "connections would be redirected back to itself; install with "
			    "--userns /proc/PID/ns/user of a process of this pod",
			    (unsigned long long)st.st_ino, m->mode, (unsigned)m->sidecar_uid,
			    m->sidecar_userns,
			    (unsigned)(m->host_uid_known ? m->sidecar_host_uid : m->sidecar_uid));
			return -EINVAL;
		}
	}
	/* An older loader, or a hand-written manifest: every root process would
	 * bypass the sidecar (the exemption is by uid alone). */
	if (m->sidecar_uid == 0) {
		snprintf(err, errlen,
			 "the redirect (%s) exempts uid 0: every process running as root in the "
			 "pod bypasses this sidecar in plaintext; reinstall with --sidecar-uid of "
			 "the sidecar's own and run it as that uid",
			 m->mode);
		return -EINVAL;
	}
	if (!route_on(&cfg->dp, true, m->outbound_port, 0)) {
		snprintf(err, errlen,
			 "the redirect sends the app's connections to port %u, but this sidecar "
			 "has no --outbound-transparent route on it (e.g. "
			 "--outbound-transparent 127.0.0.1:%u)",
			 m->outbound_port, m->outbound_port);
		return -EINVAL;
	}
	/* Native IPv6 goes to [::1]: an IPv4 listener never sees it. */
	if (m->ipv6 && !route_on(&cfg->dp, true, m->outbound_port, AF_INET6)) {
		snprintf(
		    err, errlen,
		    "the redirect (%s) covers IPv6 and sends the app's IPv6 connections to "
		    "[::1]:%u, but this sidecar has no IPv6 --outbound-transparent route there "
		    "(add --outbound-transparent [::1]:%u)",
		    m->mode, m->outbound_port, m->outbound_port);
		return -EINVAL;
	}
	if (m->napp_ports && !route_on(&cfg->dp, false, m->inbound_port, 0)) {
		snprintf(err, errlen,
			 "the redirect steers the app's inbound ports to port %u, but this sidecar "
			 "has no --inbound route listening on it",
			 m->inbound_port);
		return -EINVAL;
	}
	/* sk_lookup and netns links: 5.9 (the loader checks the hooks too). */
	if (strcmp(m->mode, "bpf") == 0 && uname(&u) == 0 &&
	    sscanf(u.release, "%u.%u", &maj, &min) == 2 && (maj < 5 || (maj == 5 && min < 9))) {
		snprintf(err, errlen,
			 "kernel %s is older than 5.9, the oldest the BPF redirect supports; use "
			 "`ktls-redirect install --mode iptables`",
			 u.release);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* What to look at when the probe (of family) was not redirected. */
static void hint(const struct ks_redirect_manifest *m, int family, char *buf, size_t len)
{
	char cg[512];

	own_cgroup(cg, sizeof(cg));
	if (strcmp(m->mode, "bpf") == 0)
		snprintf(buf, len,
			 "the cgroup/connect%c hook does not cover this process: it is in cgroup "
			 "%.200s, the redirect '%.80s' was installed for %.200s (check "
			 "`ktls-redirect status --name %.80s`)",
			 family == AF_INET6 ? '6' : '4', cg, m->name, m->cgroup, m->name);
	else
		snprintf(buf, len,
			 "no %s nat OUTPUT REDIRECT rule applies in this network namespace (the "
			 "redirect '%.80s' was installed for %.200s%s)",
			 family == AF_INET6 ? "ip6tables" : "iptables", m->name, m->netns,
			 family == AF_INET6 ? ", and its manifest says IPv6 is redirected; an "
					      "IPv6 default route is needed too"
					    : "");
}

/* The probe's destination for family, and its text. */
static void probe_dst(int family, struct ks_addr *dst, char *text, size_t len)
{
	memset(dst, 0, sizeof(*dst));
	if (family == AF_INET6) {
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&dst->ss;

		d->sin6_family = AF_INET6;
		d->sin6_port = htons(KS_REDIR_PROBE_PORT);
		inet_pton(AF_INET6, KS_REDIR_PROBE_ADDR6, &d->sin6_addr);
		dst->len = sizeof(*d);
	} else {
		struct sockaddr_in *d = (struct sockaddr_in *)&dst->ss;

		d->sin_family = AF_INET;
		d->sin_port = htons(KS_REDIR_PROBE_PORT);
		inet_pton(AF_INET, KS_REDIR_PROBE_ADDR, &d->sin_addr);
		dst->len = sizeof(*d);
	}
	ks_addr_str((struct sockaddr *)&dst->ss, text, len);
}

/*
 * One probe: a connect() from this process to the probe address of family
 * (AF_INET or AF_INET6), which must arrive at our own transparent listener
 * with the probe address as its original destination.
 */
static int probe(struct ks_shared *sh, const struct ks_redirect_manifest *m, int family,
		 uint32_t timeout_ms, char *err, size_t errlen)
{
	struct ks_addr dst, src = {.len = sizeof(src.ss)};
	uint64_t deadline = ks_mono_ms() + timeout_ms;
	char why[1024], text[KS_ADDRSTRLEN];
	const char *fam = family == AF_INET6 ? "IPv6 " : "";
	int fd, rc = -EHOSTUNREACH, soerr = 0;
	socklen_t elen = sizeof(soerr);

	probe_dst(family, &dst, text, sizeof(text));
	src.ss.ss_family = (sa_family_t)family;
	src.len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&src.ss, src.len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&src.ss, &src.len) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot set up the %sredirect probe: %s", fam,
			 strerror(errno));
		goto cleanup;
	}
	/* The worker knows the probe by this source port. */
	atomic_store(&sh->probe_result, KS_PROBE_NONE);
	atomic_store(&sh->probe_port, ks_addr_port(&src));
	if (connect(fd, (struct sockaddr *)&dst.ss, dst.len) < 0 && errno != EINPROGRESS) {
		soerr = errno;
	} else {
		struct pollfd p = {.fd = fd, .events = POLLOUT};

		if (poll(&p, 1, (int)timeout_ms) <= 0)
			soerr = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0)
			soerr = errno;
	}
	if (soerr) {
		hint(m, family, why, sizeof(why));
		snprintf(err, errlen,
			 "redirect check failed: a connect() to the %sprobe %s was not redirected "
			 "to this sidecar (%s): %s",
			 fam, text,
			 soerr == ECONNREFUSED ? "refused: nothing listens where it was sent"
					       : strerror(soerr),
			 why);
		goto cleanup;
	}
	while (atomic_load(&sh->probe_result) == KS_PROBE_NONE && ks_mono_ms() < deadline)
		usleep(10000);
	switch (atomic_load(&sh->probe_result)) {
	case KS_PROBE_OK:
		rc = 0;
		break;
	case KS_PROBE_NO_ORIG:
		snprintf(err, errlen,
			 "redirect check failed: the %sprobe reached this sidecar, but "
			 "getsockopt(SO_ORIGINAL_DST) did not give its destination back: %s",
			 fam,
			 strcmp(m->mode, "bpf") == 0
			     ? "the cgroup/getsockopt hook is missing from this process's cgroup"
			     : "conntrack did not record the REDIRECT (nf_conntrack)");
		break;
	default:
		snprintf(err, errlen,
			 "redirect check failed: the %sprobe connected, but not to this sidecar's "
			 "outbound listener (port %u) within %u ms",
			 fam, m->outbound_port, timeout_ms);
		break;
	}
cleanup:
	atomic_store(&sh->probe_port, 0);
	if (fd >= 0)
		close(fd);
	return rc;
}

int ks_redirect_check(struct ks_shared *sh, const struct ks_config *cfg, uint32_t timeout_ms,
		      char *err, size_t errlen)
{
	struct ks_redirect_manifest m;
	int rc = ks_redirect_manifest_read(cfg->redirect_check, &m, err, errlen);

	if (rc < 0)
		return rc;
	rc = check_config(cfg, &m, err, errlen);
	if (rc < 0)
		return rc;
	rc = probe(sh, &m, AF_INET, timeout_ms, err, errlen);
	/* Where IPv6 is redirected, a hole there is plaintext around us too. */
	if (rc == 0 && m.ipv6)
		rc = probe(sh, &m, AF_INET6, timeout_ms, err, errlen);
	if (rc < 0)
		return rc;
	ks_info("event=redirect_check result=ok mode=%s name=%s outbound_port=%u inbound_port=%u "
		"app_ports=%zu ipv6=%s uid=%u host_uid=%u",
		m.mode, m.name, m.outbound_port, m.inbound_port, m.napp_ports,
		m.ipv6 ? "yes" : "no", (unsigned)m.sidecar_uid,
		(unsigned)(m.host_uid_known ? m.sidecar_host_uid : m.sidecar_uid));
	return 0;
}

/* Whether sa is a loopback address: 127/8, ::1, or ::ffff:127.x.y.z. */
static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24 == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

bool ks_redirect_probe_take(struct ks_shared *sh, const struct ks_route *route, int fd,
			    const struct sockaddr *peer)
{
	uint16_t port = atomic_load_explicit(&sh->probe_port, memory_order_relaxed);
	struct ks_addr orig, want4, want6;
	char text[KS_ADDRSTRLEN];
	enum ks_probe_result r;
	uint16_t peer_port;

	if (peer->sa_family == AF_INET)
		peer_port = ntohs(((const struct sockaddr_in *)peer)->sin_port);
	else if (peer->sa_family == AF_INET6)
		peer_port = ntohs(((const struct sockaddr_in6 *)peer)->sin6_port);
	else
		return false;
	/* The source port says "probe"; the source address may not be
	 * loopback (iptables REDIRECT keeps the route's source address). */
	if (!port || !route->transparent || peer_port != port)
		return false;
	probe_dst(AF_INET, &want4, text, sizeof(text));
	probe_dst(AF_INET6, &want6, text, sizeof(text));
	if (ks_original_dst(fd, &orig) < 0) {
		/* Only our own loopback probe can be told apart without it. */
		if (!is_loopback(peer))
			return false;
		r = KS_PROBE_NO_ORIG;
	} else if (ks_addr_equal(&orig, &want4) || ks_addr_equal(&orig, &want6)) {
		r = KS_PROBE_OK;
	} else {
		return false; /* someone else's connection that shares the port number */
	}
	atomic_store(&sh->probe_result, r);
	close(fd);
	return true;
}
