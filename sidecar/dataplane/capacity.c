/* SPDX-License-Identifier: Apache-2.0 */
#include "dataplane/capacity.h"

#include <errno.h>
#include <stdio.h>

/* stdio, the log, OpenSSL's files (the DRBG; a reloaded certificate, key
 * and CRLs, one at a time): an idle sidecar holds 3 of these. Running out
 * here fails a reload (the old identity stays), not the data plane. */
#define KS_FD_SLACK 16
/* The control API: its listener and directory, loop and wake-up, and 8
 * callers at once.
 * It allows 32, but local callers are few; past the limit its accept(2)
 * rests and retries (control/server.c) instead of refusing the start. */
#define KS_FD_CONTROL (4 + 8)

static unsigned nworkers(const struct ks_dp_config *cfg)
{
	return cfg->workers ? cfg->workers : 1;
}

/* What the workers can hold of a process-wide budget: each its share, rounded up. */
static uint64_t shares(const struct ks_dp_config *cfg, uint32_t budget)
{
	unsigned w = nworkers(cfg);

	return (uint64_t)((budget + w - 1) / w) * w;
}

static bool splices(const struct ks_dp_config *cfg)
{
	return cfg->ktls != KS_KTLS_OFF || cfg->inbound_mode == KS_INBOUND_PERMISSIVE;
}

/* The default pipe budget for max_conn connections. */
static uint32_t default_pipes(const struct ks_dp_config *cfg, uint32_t max_conn)
{
	uint32_t p = max_conn / 4, min = 2 * nworkers(cfg);

	return p < min ? min : p;
}

void ks_fd_plan(const struct ks_dp_config *cfg, bool control, uint64_t nofile,
		struct ks_fd_plan *plan)
{
	bool in = false, out = false;

	for (size_t i = 0; i < cfg->nroutes; i++) {
		in |= cfg->routes[i].dir == KS_INBOUND;
		out |= cfg->routes[i].dir == KS_OUTBOUND;
	}
	plan->nofile = nofile;
	/* A worker: one listener per route, its loop (epoll or io_uring) and
	 * its eventfd. Start-up also holds a placeholder per port-0 route. */
	plan->fixed = KS_FD_SLACK + (control ? KS_FD_CONTROL : 0) + cfg->nroutes +
		      (uint64_t)nworkers(cfg) * (cfg->nroutes + 2);
	plan->per_conn = 2;
	plan->per_handshake = (in ? 1 : 0) + (out ? 2 : 0);
	plan->pipe_fds = splices(cfg) ? 2 * shares(cfg, cfg->max_pipes) : 0;
	plan->needed = plan->fixed + 2ull * cfg->max_connections +
		       (uint64_t)plan->per_handshake * shares(cfg, cfg->max_handshakes) +
		       plan->pipe_fds;
	plan->lowered = false;
}

/* Lowers the defaults among the three limits until they fit, if they can. */
static void lower_defaults(struct ks_dp_config *cfg, uint64_t avail,
			   const struct ks_fd_given *given, const struct ks_fd_plan *p)
{
	uint64_t hs_fds, rest, conns;
	unsigned w = nworkers(cfg);

	if (!given->max_handshakes && p->per_handshake) {
		uint64_t hs = avail / 4 / p->per_handshake / w * w;

		if (hs < cfg->max_handshakes)
			cfg->max_handshakes = hs ? (uint32_t)hs : 1;
	}
	hs_fds = (uint64_t)p->per_handshake * shares(cfg, cfg->max_handshakes);
	rest = avail > hs_fds ? avail - hs_fds : 0;
	if (!given->max_connections) {
		uint64_t pipe_fds = 0;

		if (splices(cfg)) {
			/* 2 per connection and 2 per pipe, a pipe per 4
			 * connections, but never fewer than default_pipes. */
			uint32_t pipes = given->max_pipes
					     ? cfg->max_pipes
					     : default_pipes(cfg, (uint32_t)(rest * 2 / 5));

			pipe_fds = 2 * shares(cfg, pipes);
		}
		conns = rest > pipe_fds ? (rest - pipe_fds) / 2 : 0;
		/* The pipe budget follows conns, rounded up per worker: step
		 * down the few connections that rounding took. */
		while (!given->max_pipes && splices(cfg) && conns > 1 &&
		       2 * conns + 2 * shares(cfg, default_pipes(cfg, (uint32_t)conns)) > rest)
			conns--;
		if (conns && conns < cfg->max_connections)
			cfg->max_connections = (uint32_t)conns;
	}
	if (!given->max_pipes && splices(cfg))
		cfg->max_pipes = default_pipes(cfg, cfg->max_connections);
}

int ks_fd_fit(struct ks_dp_config *cfg, bool control, uint64_t nofile,
	      const struct ks_fd_given *given, struct ks_fd_plan *plan, char *err, size_t errlen)
{
	struct ks_dp_config want = *cfg;
	uint64_t avail, others;

	if (!given->max_pipes)
		cfg->max_pipes = splices(cfg) ? default_pipes(cfg, cfg->max_connections) : 0;
	ks_fd_plan(cfg, control, nofile, plan);
	if (plan->needed <= nofile)
		return 0;
	avail = nofile > plan->fixed ? nofile - plan->fixed : 0;
	lower_defaults(cfg, avail, given, plan);
	ks_fd_plan(cfg, control, nofile, plan);
	plan->lowered = cfg->max_connections != want.max_connections ||
			cfg->max_handshakes != want.max_handshakes;
	if (plan->needed <= nofile)
		return 0;
	/* What a --max-connections alone could be, the others as they are. */
	others = plan->fixed + (uint64_t)plan->per_handshake * shares(cfg, cfg->max_handshakes) +
		 plan->pipe_fds;
	if (others + plan->per_conn > nofile)
		snprintf(
		    err, errlen,
		    "the descriptor limit (RLIMIT_NOFILE %llu) leaves no room for a connection: "
		    "%llu are fixed, %llu for --max-handshakes %u and %llu for --max-pipes %u; "
		    "raise the limit (ulimit -n, LimitNOFILE=, the container runtime's nofile) "
		    "or lower those",
		    (unsigned long long)nofile, (unsigned long long)plan->fixed,
		    (unsigned long long)(others - plan->fixed - plan->pipe_fds),
		    cfg->max_handshakes, (unsigned long long)plan->pipe_fds, cfg->max_pipes);
	else
		snprintf(
		    err, errlen,
		    "--max-connections %u needs up to %llu descriptors (%u per connection, %llu "
		    "for --max-pipes %u, %llu for --max-handshakes %u, %llu fixed) but "
		    "RLIMIT_NOFILE is %llu: lower --max-connections to %llu or raise the limit "
		    "(ulimit -n, LimitNOFILE=, the container runtime's nofile)",
		    cfg->max_connections, (unsigned long long)plan->needed, plan->per_conn,
		    (unsigned long long)plan->pipe_fds, cfg->max_pipes,
		    (unsigned long long)(others - plan->fixed - plan->pipe_fds),
		    cfg->max_handshakes, (unsigned long long)plan->fixed,
		    (unsigned long long)nofile,
		    (unsigned long long)((nofile - others) / plan->per_conn));
	return -ERANGE;
}
