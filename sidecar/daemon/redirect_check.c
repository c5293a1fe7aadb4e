/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/redirect_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/net.h"
#include "daemon/config.h"
#include "dataplane/worker.h"
#include "redirect/redirect.h"

/* The route listening on 127.0.0.1:port (or [::]/0.0.0.0:port), if any. */
static const struct ks_route *route_on(const struct ks_dp_config *cfg, bool transparent,
				       uint16_t port)
{
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct ks_route *r = &cfg->routes[i];

		if (r->transparent == transparent && (transparent || r->dir == KS_INBOUND) &&
		    ks_addr_port(&r->listen) == port)
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
	if (!route_on(&cfg->dp, true, m->outbound_port)) {
		snprintf(err, errlen,
			 "the redirect sends the app's connections to port %u, but this sidecar "
			 "has no --outbound-transparent route on it (e.g. "
			 "--outbound-transparent 127.0.0.1:%u)",
			 m->outbound_port, m->outbound_port);
		return -EINVAL;
	}
	if (m->napp_ports && !route_on(&cfg->dp, false, m->inbound_port)) {
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

/* What to look at when the probe was not redirected. */
static void hint(const struct ks_redirect_manifest *m, char *buf, size_t len)
{
	char cg[512];

	own_cgroup(cg, sizeof(cg));
	if (strcmp(m->mode, "bpf") == 0)
		snprintf(buf, len,
			 "the cgroup/connect4 hook does not cover this process: it is in cgroup "
			 "%.200s, the redirect '%.80s' was installed for %.200s (check "
			 "`ktls-redirect status --name %.80s`)",
			 cg, m->name, m->cgroup, m->name);
	else
		snprintf(
		    buf, len,
		    "no nat OUTPUT REDIRECT rule applies in this network namespace (the redirect "
		    "'%.80s' was installed for %.200s)",
		    m->name, m->netns);
}

static int probe(struct ks_shared *sh, const struct ks_redirect_manifest *m, uint32_t timeout_ms,
		 char *err, size_t errlen)
{
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(KS_REDIR_PROBE_PORT)};
	struct sockaddr_in src = {.sin_family = AF_INET};
	socklen_t slen = sizeof(src);
	uint64_t deadline = ks_mono_ms() + timeout_ms;
	char why[1024];
	int fd, rc = -EHOSTUNREACH, soerr = 0;
	socklen_t elen = sizeof(soerr);

	inet_pton(AF_INET, KS_REDIR_PROBE_ADDR, &dst.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&src, &slen) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot set up the redirect probe: %s", strerror(errno));
		goto cleanup;
	}
	/* The worker knows the probe by this source port. */
	atomic_store(&sh->probe_result, KS_PROBE_NONE);
	atomic_store(&sh->probe_port, ntohs(src.sin_port));
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
		soerr = errno;
	} else {
		struct pollfd p = {.fd = fd, .events = POLLOUT};

		if (poll(&p, 1, (int)timeout_ms) <= 0)
			soerr = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0)
			soerr = errno;
	}
	if (soerr) {
		hint(m, why, sizeof(why));
		snprintf(err, errlen,
			 "redirect check failed: a connect() to the probe %s:%u was not redirected "
			 "to this sidecar (%s): %s",
			 KS_REDIR_PROBE_ADDR, KS_REDIR_PROBE_PORT,
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
			 "redirect check failed: the probe reached this sidecar, but "
			 "getsockopt(SO_ORIGINAL_DST) did not give its destination back: %s",
			 strcmp(m->mode, "bpf") == 0
			     ? "the cgroup/getsockopt hook is missing from this process's cgroup"
			     : "conntrack did not record the REDIRECT (nf_conntrack)");
		break;
	default:
		snprintf(err, errlen,
			 "redirect check failed: the probe connected, but not to this sidecar's "
			 "outbound listener (port %u) within %u ms",
			 m->outbound_port, timeout_ms);
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
	rc = probe(sh, &m, timeout_ms, err, errlen);
	if (rc < 0)
		return rc;
	ks_info("event=redirect_check result=ok mode=%s name=%s outbound_port=%u inbound_port=%u "
		"app_ports=%zu",
		m.mode, m.name, m.outbound_port, m.inbound_port, m.napp_ports);
	return 0;
}

bool ks_redirect_probe_take(struct ks_shared *sh, const struct ks_route *route, int fd,
			    const struct sockaddr *peer)
{
	uint16_t port = atomic_load_explicit(&sh->probe_port, memory_order_relaxed);
	const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
	struct ks_addr orig, want = {.len = sizeof(struct sockaddr_in)};
	struct sockaddr_in *w = (struct sockaddr_in *)&want.ss;
	enum ks_probe_result r;

	/* The source port says "probe"; the source address may not be
	 * loopback (iptables REDIRECT keeps the route's source address). */
	if (!port || !route->transparent || peer->sa_family != AF_INET ||
	    ntohs(in->sin_port) != port)
		return false;
	w->sin_family = AF_INET;
	w->sin_port = htons(KS_REDIR_PROBE_PORT);
	inet_pton(AF_INET, KS_REDIR_PROBE_ADDR, &w->sin_addr);
	if (ks_original_dst(fd, &orig) < 0) {
		/* Only our own loopback probe can be told apart without it. */
		if (ntohl(in->sin_addr.s_addr) >> 24 != 127)
			return false;
		r = KS_PROBE_NO_ORIG;
	} else if (ks_addr_equal(&orig, &want)) {
		r = KS_PROBE_OK;
	} else {
		return false; /* someone else's connection that shares the port number */
	}
	atomic_store(&sh->probe_result, r);
	close(fd);
	return true;
}
