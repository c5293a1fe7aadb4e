/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admission control at the pod's edge, where anyone in the cluster can
 * connect: connections that have not authenticated yet must not starve
 * those that have, and an inbound flood must not break the app's outbound
 * calls.
 *
 *   - Each direction has its own budget of pending (not yet forwarding)
 *     connections, --max-handshakes. When it is full, the oldest pending
 *     connection of that direction is shed to make room: the newcomer may
 *     be the legitimate client, the oldest is most likely the one stalling.
 *   - An inbound source address may hold at most --max-handshakes-per-source
 *     pending connections; beyond that the new one is refused. Generous by
 *     default: ingress gateways and SNAT put many clients behind one address.
 *   - --max-connections caps the connections that forward; a connection that
 *     authenticates while that many forward is refused then (after its
 *     handshake: the cap is what the app behind us is promised). Pending
 *     connections never count against it, so they cannot keep an
 *     authenticated client out, and an established connection is never shed.
 *   - Every shed and refusal is counted by reason, and logged at most once a
 *     second per reason, with the count.
 *
 * Threading: the budgets are process-wide, in one struct ks_adm_pool that
 * all workers share under its mutex (one lock per accepted connection and
 * one when it stops pending: cheap next to a handshake). They used to be
 * split into per-worker shares, which assumed SO_REUSEPORT's even spread;
 * the workers now share one listener, and one worker may take a whole
 * burst. A worker sheds only its own pending connections, so a direction
 * may exceed --max-handshakes by at most one connection per worker. Each
 * worker keeps its own counters (atomics, read by the status reporters)
 * and log rate limits.
 */
#ifndef KS_DATAPLANE_ADMISSION_H
#define KS_DATAPLANE_ADMISSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/ratelimit.h"
#include "dataplane/settings.h"

enum ks_adm_reason {
	KS_ADM_SHED_HANDSHAKES,	    /* a direction's pending budget was full */
	KS_ADM_REFUSED_CONNECTIONS, /* authenticated, but --max-connections are forwarding */
	KS_ADM_REFUSED_SOURCE,	    /* the source address holds its share of pending ones */
	KS_ADM_ACCEPT_FAILED,	    /* accept(2) failed: EMFILE, ENFILE, ENOBUFS, ENOMEM */
	KS_ADM__COUNT
};

const char *ks_adm_reason_name(enum ks_adm_reason r);

/* A source address's pending connections (open addressing, linear probing). */
struct ks_adm_source {
	uint8_t addr[16]; /* IPv6, or IPv4-mapped */
	uint32_t count;	  /* 0: free */
};

/* What all workers share: the pending counts and the per-source table. */
struct ks_adm_pool {
	pthread_mutex_t mu;
	uint32_t budget;     /* pending connections per direction (--max-handshakes) */
	uint32_t per_source; /* pending inbound connections per source address */
	uint32_t pending[2]; /* by enum ks_dir */
	struct ks_adm_source *src;
	uint32_t src_mask;
};

/* A worker's view: the shared pool, and its own counters and log limits. */
struct ks_admission {
	struct ks_adm_pool *pool;
	_Atomic uint64_t counts[KS_ADM__COUNT];
	struct ks_ratelimit rl[KS_ADM__COUNT]; /* one log line a second per reason */
};

/* The process-wide budgets of cfg. 0 or -ENOMEM. */
int ks_adm_pool_init(struct ks_adm_pool *p, const struct ks_dp_config *cfg);
void ks_adm_pool_fini(struct ks_adm_pool *p);
void ks_adm_init(struct ks_admission *a, struct ks_adm_pool *pool);

/* The 16-byte key of a source address (IPv4 as IPv4-mapped). */
void ks_adm_key(const struct sockaddr *sa, uint8_t key[16]);

/* Pending inbound connections from key. */
uint32_t ks_adm_source_pending(struct ks_admission *a, const uint8_t key[16]);
/* Pending connections of a direction, in all workers. */
uint32_t ks_adm_pending(struct ks_admission *a, enum ks_dir dir);

enum ks_adm_verdict {
	KS_ADM_OK,	    /* pending now, within the budget */
	KS_ADM_OVER_BUDGET, /* pending now; the direction is over: shed one of ours */
	KS_ADM_SOURCE_FULL, /* refused: the source holds --max-handshakes-per-source */
};

/*
 * A new connection from key becomes pending, checked and counted in one
 * step (two workers cannot both take a source's last place). On
 * KS_ADM_SOURCE_FULL nothing was counted.
 */
enum ks_adm_verdict ks_adm_pending_add(struct ks_admission *a, enum ks_dir dir,
				       const uint8_t key[16]);
/* A pending connection authenticated, failed or was shed. */
void ks_adm_pending_del(struct ks_admission *a, enum ks_dir dir, const uint8_t key[16]);

/*
 * Counts one event of reason and logs it, at most once a second per reason
 * (event=conn_shed or conn_refused, with the totals since the last line).
 */
void ks_adm_note(struct ks_admission *a, enum ks_adm_reason r, uint64_t now_ms, unsigned worker,
		 const char *listen, uint32_t limit);

/*
 * Counts one event of reason; true when its line may be logged now (at most
 * once a second per reason), with the running total and the events since
 * the last line, this one included. For callers with their own line.
 */
bool ks_adm_count(struct ks_admission *a, enum ks_adm_reason r, uint64_t now_ms, uint64_t *total,
		  uint64_t *since_last_line);

#endif
