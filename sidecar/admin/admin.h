/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admin endpoint (--admin LISTEN): plain HTTP/1.1 for kubelet probes,
 * Prometheus and a pod's own app.
 *
 *   GET  /metrics        Prometheus text format 0.0.4 (metrics.c)
 *   GET  /ready          200, or 503 with the reason (identity, listeners,
 *                        redirect check, draining)
 *   GET  /live           200, or 503 when a worker's loop has not turned
 *                        for src->stall_ms (--stall-timeout)
 *   POST /drain          drain, then exit 0; loopback peers only (else 403)
 *   POST /quitquitquit   the same (Envoy's and Linkerd's name for it)
 *
 * Threading: the listener and its clients live on the control thread's
 * event loop (control/control.h, struct ks_ctl_service), never on a worker,
 * so a scrape cannot slow forwarding and a stuck worker cannot stop /live
 * from answering. Everything it reads is atomic counters (stats.h), the
 * identity slot, immutable configuration and the ticket ring's counts
 * (under the ring's mutex, held for a copy of two fields). A drain it starts goes through
 * the same entry point as the control API's Drain.
 *
 * Bounds: KS_ADMIN_MAX_CLIENTS at once (more are answered 503 and closed),
 * a request head of KS_HTTP_MAX_HEAD bytes, KS_ADMIN_REQ_MS for a request
 * to arrive and its answer to leave; one request per connection.
 */
#ifndef KS_ADMIN_ADMIN_H
#define KS_ADMIN_ADMIN_H

#include <stdint.h>

#include "common/net.h"
#include "common/sbuf.h"

struct ks_admin;
struct ks_loop;
struct ks_shared;
struct ks_worker;
struct ks_dp_config;
struct ks_ticket_ring;

#define KS_ADMIN_MAX_CLIENTS 16
#define KS_ADMIN_REQ_MS	     5000

/* What the endpoint reads, and the one thing it may do (drain). */
struct ks_admin_src {
	struct ks_shared *sh;
	const struct ks_worker *workers;
	unsigned nworkers;
	const struct ks_dp_config *dp;
	const char *redirect_check;	/* the manifest checked at start-up, or NULL */
	struct ks_ticket_ring *tickets; /* session ticket keys; NULL: resumption is off */
	/* /live: a worker loop that has not turned for this long is stalled
	 * (an idle loop turns every second, worker.c KS_TICK_MS). */
	uint32_t stall_ms;
	/* Starts a drain that ends with exit 0: 0, 1 if one runs, or -errno. */
	int (*drain)(void *arg);
	void *drain_arg;
};

/*
 * Binds listen (main thread, at start-up): a taken port is an error here,
 * with the reason in err. The listener's actual address (port 0 resolved)
 * is in ks_admin_addr(). Returns 0 or -errno.
 */
int ks_admin_open(const char *listen, const struct ks_admin_src *src, struct ks_admin **out,
		  char *err, size_t errlen);
const char *ks_admin_addr(const struct ks_admin *a);
/* The workers, once started (before the control thread starts). */
void ks_admin_set_workers(struct ks_admin *a, const struct ks_worker *workers, unsigned n);

/* The control thread's service hooks (struct ks_ctl_service). */
int ks_admin_attach(void *admin, struct ks_loop *loop);
/* Expires slow clients; returns the ms until it next needs to run. */
int ks_admin_tick(void *admin, uint64_t now_ms);
void ks_admin_detach(void *admin, struct ks_loop *loop);

void ks_admin_close(struct ks_admin *a);

/* The /metrics body (metrics.c). Returns 0, or -ENOSPC when b is too small. */
int ks_metrics_render(const struct ks_admin_src *src, struct ks_sbuf *b);

/* Whether the sidecar is ready; if not, why (static text). */
const char *ks_admin_not_ready(const struct ks_admin_src *src);
/* Whether every worker's loop turned within stall_ms: 0, or -1 with why in buf. */
int ks_admin_not_live(const struct ks_admin_src *src, uint64_t now_ms, char *buf, size_t len);

#endif
