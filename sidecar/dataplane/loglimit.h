/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-connection warning lines under a flood: a refused handshake, an
 * unclean close, a plaintext client in permissive mode. One line per
 * connection lets anyone who can connect write the sidecar's log (and fill
 * the node's disk); one line for everything lets one noisy client hide
 * another's rejections. So each line is keyed by what it says and who
 * caused it:
 *
 *   - per (line, reason, source address): a burst of KS_LL_SRC_BURST lines,
 *     then one a second. One client's flood runs its own bucket dry, not
 *     another client's.
 *   - per (line, reason): a burst of KS_LL_REASON_BURST, then
 *     KS_LL_REASON_PER_S a second. A flood from many addresses costs a few
 *     lines a second, not one per address.
 *
 * A line held back is counted, never lost without a trace: once a second
 * each (line, reason) that held any back says so,
 *   event=log_suppressed line=handshake_rejected reason=unknown_ca
 *     suppressed=N sources=M worker=W
 * and the refusals themselves are counted by reason in the status counters
 * (ktlsctl status), which is what a test or a dashboard should count.
 *
 * Threading: per worker, touched by that worker only. `line` and `reason`
 * are static strings.
 */
#ifndef KS_DATAPLANE_LOGLIMIT_H
#define KS_DATAPLANE_LOGLIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define KS_LL_SRC_BURST	   5
#define KS_LL_REASON_BURST 50
#define KS_LL_REASON_PER_S 20
#define KS_LL_SOURCES	   1024 /* direct-mapped: a collision only resets a bucket */
#define KS_LL_REASONS	   64	/* (line, reason) pairs one worker can track */

/* Tokens in thousandths, refilled by elapsed time. */
struct ks_ll_bucket {
	uint64_t last_ms;
	uint32_t milli;
};

struct ks_ll_reason {
	const char *line, *reason; /* NULL: free */
	struct ks_ll_bucket b;
	uint64_t suppressed; /* since the last summary */
	uint32_t sources;    /* distinct (by bucket) sources among them, roughly */
};

struct ks_ll_source {
	uint64_t tag; /* hash of (line, reason, source); 0: free */
	struct ks_ll_bucket b;
	bool held; /* held a line back since the last summary */
};

struct ks_loglimit {
	struct ks_ll_reason reasons[KS_LL_REASONS];
	struct ks_ll_source sources[KS_LL_SOURCES];
	uint64_t next_flush_ms;
};

/*
 * One line about to be logged, at now_ms. True: log it. False: it was
 * counted for the next summary.
 */
bool ks_loglimit_ok(struct ks_loglimit *l, uint64_t now_ms, const char *line, const char *reason,
		    const uint8_t src[16]);

/* Logs the summaries that are due (at most once a second); call it often. */
void ks_loglimit_flush(struct ks_loglimit *l, uint64_t now_ms, unsigned worker);

/*
 * Whether connection c's warning line may go out now (its worker's
 * limiter). Keyed by who caused it: the client inbound, the remote
 * outbound. Here rather than in conn.c so that the pumps can use it without
 * depending on the state machine that calls them.
 */
struct ks_conn;
bool ks_loglimit_conn(struct ks_conn *c, const char *line, const char *reason);

/* Lines held back since the last summary, over all reasons (for tests). */
uint64_t ks_loglimit_pending(const struct ks_loglimit *l);

#endif
