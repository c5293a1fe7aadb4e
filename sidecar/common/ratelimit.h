/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bounded logging and retrying under pressure. A flood must cost a few log
 * lines a second, not one per event: a line that is suppressed is counted,
 * and the next line that gets out says how many were. Single-threaded: each
 * owner (a worker, the control thread) keeps its own.
 */
#ifndef KS_COMMON_RATELIMIT_H
#define KS_COMMON_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ks_ratelimit {
	uint64_t next_ms;    /* the earliest time the next line may get out */
	uint64_t suppressed; /* events since then that did not */
};

/*
 * One event at now_ms. True when it may be logged (at most one a interval_ms);
 * then *suppressed is how many were not since the last line, and the count
 * restarts. False: the event was counted and must not be logged.
 */
bool ks_ratelimit_ok(struct ks_ratelimit *r, uint64_t now_ms, uint32_t interval_ms,
		     uint64_t *suppressed);

/*
 * A retry delay that doubles from min_ms to max_ms while failures last and
 * starts again from min_ms after a success.
 */
struct ks_backoff {
	uint32_t cur_ms; /* 0: not failing */
};

/* A failure: the delay before the next try. */
uint32_t ks_backoff_fail(struct ks_backoff *b, uint32_t min_ms, uint32_t max_ms);

static inline void ks_backoff_ok(struct ks_backoff *b)
{
	b->cur_ms = 0;
}

#endif
