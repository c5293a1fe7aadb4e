/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The descriptors the data plane can hold at its limits, checked against
 * RLIMIT_NOFILE at start-up instead of discovered by accept(2) at run time.
 *
 * A forwarding connection holds its two sockets. On the splice path (kTLS,
 * permissive plaintext) a connection with bytes in flight also holds a pipe
 * per busy direction, from a budget of --max-pipes for the process
 * (pipes.h): two descriptors each, cache included. A pending inbound
 * connection holds 1 descriptor (the app is connected after
 * authentication), a pending outbound one 2 (the app's socket and the one
 * to the peer). The rest is fixed: listeners, each worker's loop and
 * wake-up, the control API and some slack for OpenSSL and identity reloads.
 */
#ifndef KS_DATAPLANE_CAPACITY_H
#define KS_DATAPLANE_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/settings.h"

struct ks_fd_plan {
	uint64_t nofile;	/* the limit planned against */
	uint64_t fixed;		/* not per connection */
	uint32_t per_conn;	/* a forwarding connection's sockets */
	uint32_t per_handshake; /* one pending connection of each direction that has routes */
	uint64_t pipe_fds;	/* the pipe budget, in descriptors (0: no splice path) */
	uint64_t needed;	/* all of it at the limits */
	bool lowered;		/* a default limit was lowered to fit */
};

/* Which limits the user gave: those are never changed. */
struct ks_fd_given {
	bool max_connections, max_handshakes, max_pipes;
};

/* Descriptors cfg needs at its limits, with control the control API's share. */
void ks_fd_plan(const struct ks_dp_config *cfg, bool control, uint64_t nofile,
		struct ks_fd_plan *plan);

/*
 * Resolves cfg->max_pipes (0: a quarter of --max-connections, as HAProxy's
 * maxpipes; 0 without a splice path) and fits --max-connections,
 * --max-handshakes and --max-pipes into nofile. A limit the user gave is
 * never changed: if the total does not fit it is -ERANGE, with a message
 * in err that says what would. Defaults are lowered to fit
 * (plan->lowered): the pending budget to at most a quarter of what is
 * free, connections and their pipes to the rest. -ERANGE too when not even
 * one connection fits.
 */
int ks_fd_fit(struct ks_dp_config *cfg, bool control, uint64_t nofile,
	      const struct ks_fd_given *given, struct ks_fd_plan *plan, char *err, size_t errlen);

#endif
