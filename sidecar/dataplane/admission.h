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
 * Threading: per worker, touched by that worker only (the budgets are the
 * worker's share of the process-wide ones; the shared listener wakes one
 * worker per connection, in turn). The counters are atomics, read by the status reporters.
 */
#ifndef KS_DATAPLANE_ADMISSION_H
#define KS_DATAPLANE_ADMISSION_H

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

struct ks_admission {
	uint32_t budget;     /* pending connections per direction, this worker's share */
	uint32_t per_source; /* pending inbound connections per source address */
	uint32_t pending[2]; /* by enum ks_dir */
	struct ks_adm_source *src;
	uint32_t src_mask;
	_Atomic uint64_t counts[KS_ADM__COUNT];
	struct ks_ratelimit rl[KS_ADM__COUNT]; /* one log line a second per reason */
};

/* The budgets are the process-wide ones, split over nworkers (rounded up). 0 or -ENOMEM. */
int ks_adm_init(struct ks_admission *a, const struct ks_dp_config *cfg, unsigned nworkers);
void ks_adm_fini(struct ks_admission *a);

/* The 16-byte key of a source address (IPv4 as IPv4-mapped). */
void ks_adm_key(const struct sockaddr *sa, uint8_t key[16]);

/* Pending inbound connections from key. */
uint32_t ks_adm_source_pending(const struct ks_admission *a, const uint8_t key[16]);

/* A connection enters (or leaves) the pending state. */
void ks_adm_pending_add(struct ks_admission *a, enum ks_dir dir, const uint8_t key[16]);
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
