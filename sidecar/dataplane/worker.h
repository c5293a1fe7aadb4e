/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Workers: one thread per core, each with its own event loop, its own
 * descriptor of the route's one listener (struct ks_shared, listen_fds), its own
 * connections, timers and buffer pool. Workers share only struct ks_shared:
 * the immutable config, the identity slot (tls/identity.h) and atomic
 * counters. Nothing a worker does blocks: sockets are nonblocking and the
 * handshake is driven by readiness.
 */
#ifndef KS_DATAPLANE_WORKER_H
#define KS_DATAPLANE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/list.h"
#include "common/ratelimit.h"
#include "dataplane/admission.h"
#include "dataplane/conn.h"
#include "dataplane/loglimit.h"
#include "dataplane/loop/loop.h"
#include "dataplane/pipes.h"
#include "dataplane/resolver.h"
#include "dataplane/settings.h"
#include "dataplane/stats.h"
#include "tls/identity.h"

struct ks_shared;

/* A worker's connection lists (struct ks_worker.lists). */
enum ks_wlist {
	KS_WL_HS_IN,  /* inbound, before forwarding: KS_WL_HS_IN + KS_INBOUND */
	KS_WL_HS_OUT, /* outbound, before forwarding */
	KS_WL_IDLE,   /* forwarding */
	KS_WL__COUNT,
};

/* The pre-forwarding list of a direction. */
static inline enum ks_wlist ks_wl_handshake(enum ks_dir dir)
{
	return dir == KS_INBOUND ? KS_WL_HS_IN : KS_WL_HS_OUT;
}

/*
 * Sees every accepted connection before the data plane does: true when it
 * took fd (and closed it). The daemon's start-up redirect check uses it to
 * recognise its probe (daemon/redirect_check.h). Set before the workers
 * start; called on worker threads.
 */
typedef bool (*ks_accept_hook)(struct ks_shared *sh, const struct ks_route *route, int fd,
			       const struct sockaddr *peer);

struct ks_shared {
	const struct ks_dp_config *cfg;
	struct ks_identity_slot ident;
	atomic_uint nconns;	 /* every connection, pending or not */
	atomic_uint nforwarding; /* authenticated ones, capped by --max-connections */
	atomic_uint_fast64_t next_conn_id;
	atomic_bool stop; /* leave now, closing what is open */
	/*
	 * Draining, from its first moment on (readiness reads it). The drain's
	 * times are stored before it (release), read after it (acquire):
	 * inbound listeners close at drain_inbound_close_ms (the drain delay);
	 * a worker leaves, closing its outbound listeners, once that time has
	 * passed and it has held no connection for cfg->drain_quiet_ms, or at
	 * drain_deadline_ms with whatever is still open.
	 */
	atomic_bool drain;
	_Atomic uint64_t drain_deadline_ms;
	_Atomic uint64_t drain_inbound_close_ms;
	atomic_uint inbound_listening; /* workers still holding inbound listeners */
	atomic_uint running;	       /* workers whose loop has not ended yet */

	/* One listening socket per route (cfg->routes order), made by the
	 * daemon before the workers start: each worker watches its own dup(2)
	 * of it, and the daemon closes the originals once every worker has its
	 * copy. No SO_REUSEPORT: no other process, even of our uid, can join
	 * our ports and take a share of their connections. */
	const int *listen_fds;

	struct ks_adm_pool adm; /* admission budgets, process-wide (admission.h) */
	/* Outbound routes' names (resolver.h); NULL when every route is an IP
	 * literal. Answers reach a worker through its wake_fd. */
	struct ks_resolver *res;

	ks_accept_hook accept_hook; /* NULL: none */
	/* A test seam (KS_TEST_STALL_FILE): worker 0 stalls while it exists. */
	const char *test_stall_file;
	/* Start-up is complete: listeners, workers, control, redirect check (/ready). */
	atomic_bool started;
	/* --redirect-check: the start-up probe's source port, and what arrived
	 * (daemon/redirect_check.h). */
	_Atomic uint16_t probe_port;
	atomic_int probe_result;

	/* ListConnections: the control thread asks each worker for a snapshot
	 * of its own connections and waits on list_cv (ks_worker_snapshot). */
	pthread_mutex_t list_mu;
	pthread_cond_t list_cv;
};

/* One connection, as ListConnections reports it. */
struct ks_conn_info {
	uint64_t id;
	uint64_t age_ms;
	uint64_t bytes_to_peer, bytes_from_peer;
	enum ks_dir dir;
	enum ks_record_layer rl;
	bool forwarding;    /* false: still connecting or in the handshake */
	const char *cipher; /* static (OpenSSL's table, or ours) */
	char peer_addr[KS_ADDRSTRLEN];
	char *peer_id; /* malloc'ed, NULL before verification */
};

/*
 * Per-record-layer totals over closed connections. One writer (the owning
 * worker), read by the main thread for the status line: relaxed atomics.
 */
struct ks_path_stats {
	_Atomic uint64_t conns;
	_Atomic uint64_t bytes;	 /* application bytes, both directions */
	_Atomic uint64_t ubytes; /* of which passed through our own memory */
};

struct ks_listener {
	struct ks_watch w;
	int fd;
	const struct ks_route *route;
	struct ks_worker *wk;
	/* accept(2) out of descriptors or memory: not watched until resume_ms
	 * (0: accepting), a back-off that grows while the failures last. */
	uint64_t resume_ms;
	struct ks_backoff backoff;
};

struct ks_worker {
	unsigned idx;
	pthread_t thread;
	struct ks_shared *sh;
	struct ks_loop loop;
	struct ks_listener *listeners;
	size_t nlisteners;
	int wake_fd; /* eventfd: the main thread asks us to drain or stop */
	struct ks_watch wake_w;

	struct ks_identity *ident; /* cached reference, refreshed on generation change */
	uint64_t ident_gen;
	uint64_t swept_gen; /* identity generation last checked for new CRLs */
	uint64_t crl_gen;   /* CRL generation our open connections were checked against */

	/* Every connection is on one list: not yet authenticated (one list
	 * per direction, ordered by deadline), or forwarding (least recently
	 * active first). Expiry looks at the heads only. */
	struct ks_list lists[KS_WL__COUNT];
	/* Outbound connections waiting for a name's lookup (resolver.h), also
	 * on KS_WL_HS_OUT for their deadline; asked again on each wake. */
	struct ks_list resolving;
	uint32_t nconn;		 /* on the lists */
	struct ks_admission adm; /* who gets a slot (admission.h) */
	uint64_t now_ms;	 /* CLOCK_MONOTONIC, refreshed once per loop turn */

	struct ks_buf *free_bufs;
	unsigned nfree_bufs;
	struct ks_pipe_pool pipes; /* the splice path's pipes, while bytes are in flight */
	bool draining;
	bool inbound_open; /* holds inbound listeners (counted in sh->inbound_listening) */
	uint64_t busy_ms;  /* when this worker last held a connection (0: never) */
	uint32_t handshakes_since_trim;
	uint64_t last_trim_ms;
	struct ks_path_stats path[KS_RL__COUNT]; /* indexed by enum ks_record_layer */
	_Atomic uint64_t rejected;
	_Atomic uint64_t rejected_by[KS_REJ__COUNT]; /* by enum ks_reject */
	struct ks_loglimit loglimit;		     /* per-connection warning lines (loglimit.h) */
	struct ks_wstats stats;			     /* /metrics and /live (stats.h) */

	/* ListConnections: list_req is written by the control thread; the
	 * answer (list_out, list_n, list_done) is guarded by sh->list_mu. */
	_Atomic uint64_t list_req;
	uint64_t list_done;
	struct ks_conn_info *list_out;
	size_t list_n;

	/* start-up result, read by the main thread; backend stays valid (and
	 * unchanged) after the worker has left, for status readers */
	const char *backend;
	int init_rc;
	char init_err[256];
	const char *fallback_reason;
	int fallback_err;
};

int ks_worker_start(struct ks_worker *wk, unsigned idx, struct ks_shared *sh);
/* Wakes the worker so it sees sh->drain or sh->stop. */
void ks_worker_wake(struct ks_worker *wk);
int ks_worker_join(struct ks_worker *wk);

/* Application bytes of c moving one way, counted as they move (/metrics). */
static inline void ks_count_bytes(struct ks_conn *c, enum ks_flow flow, uint64_t n)
{
	if (flow == KS_FLOW_TO_PEER)
		c->bytes_to_peer += n;
	else
		c->bytes_from_peer += n;
	ks_stat_add(&c->wk->stats.bytes[c->route->dir][flow], n);
}

/* Payload bytes of c that passed through our own memory. */
static inline void ks_count_ubytes(struct ks_conn *c, uint64_t n)
{
	c->ubytes += n;
	ks_stat_add(&c->wk->stats.ubytes[c->rl], n);
}

/* Connections this worker holds (any state). */
static inline uint32_t ks_worker_nconns(const struct ks_worker *wk)
{
	return wk->nconn;
}

/* Totals over all workers; closed connections per record layer. */
struct ks_totals {
	uint64_t conns[KS_RL__COUNT], bytes[KS_RL__COUNT], ubytes[KS_RL__COUNT];
	uint64_t rejected;
	uint64_t rejected_by[KS_REJ__COUNT]; /* by enum ks_reject */
	uint64_t admission[KS_ADM__COUNT];   /* by enum ks_adm_reason */
	unsigned open;
};
void ks_worker_totals(const struct ks_worker *workers, unsigned n, const struct ks_shared *sh,
		      struct ks_totals *t);

/* Logs one event=status line with totals over all workers (SIGUSR1). */
void ks_worker_log_status(const struct ks_worker *workers, unsigned n, const struct ks_shared *sh);

/*
 * Collects every worker's connections (control thread). Waits at most
 * timeout_ms for the workers; *missing counts those that did not answer.
 * Returns 0 or -ENOMEM; free the result with ks_conn_info_free.
 */
int ks_worker_snapshot(struct ks_worker *workers, unsigned n, struct ks_shared *sh,
		       uint32_t timeout_ms, struct ks_conn_info **out, size_t *nout,
		       unsigned *missing);
void ks_conn_info_free(struct ks_conn_info *info, size_t n);
int ks_shared_init(struct ks_shared *sh, const struct ks_dp_config *cfg);
void ks_shared_fini(struct ks_shared *sh);

#endif
