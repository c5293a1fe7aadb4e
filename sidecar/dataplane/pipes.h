/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pipes for the splice path, only while bytes are in flight. A pipe costs
 * two descriptors and, at creation, 16 pages of the owner's
 * fs.pipe-user-pages-soft budget (64 MiB per uid per node by default; past
 * it new pipes shrink to 2 pages: pipe(7)). A connection takes a pipe from
 * its worker when a splice has data to move and gives it back when the pipe
 * is empty again, so an idle kTLS connection holds its two sockets and no
 * pipe. Worker-local: no locks.
 *
 * A worker may have max pipes at once (its share of --max-pipes, the cache
 * included), so the descriptor plan (capacity.h) holds. When no pipe can
 * be had (all in use; or EMFILE, ENFILE, or EPERM past
 * fs.pipe-user-pages-hard), the connection waits on the worker's list and
 * stops reading the side that needed it: back-pressure, never an error. The
 * worker retries the waiters when a pipe comes back, or after a short delay.
 */
#ifndef KS_DATAPLANE_PIPES_H
#define KS_DATAPLANE_PIPES_H

#include <stdbool.h>
#include <stdint.h>

#include "common/list.h"
#include "common/ratelimit.h"

/* Empty pipes a worker keeps for the next taker; more are closed. */
#define KS_PIPE_CACHE 16
/* How soon a connection that found no pipe tries again, at the latest. */
#define KS_PIPE_RETRY_MS 20

struct ks_pipe_pool {
	uint32_t max; /* pipes held and cached, at most */
	int cache[KS_PIPE_CACHE][2];
	unsigned ncache;
	uint64_t held;	  /* pipes connections hold now */
	uint64_t created; /* pipe2() calls that succeeded, ever */
	uint64_t failed;  /* takes that found no pipe, ever */
	struct ks_list waiters;
	bool returned;	   /* a pipe came back since the waiters last tried */
	uint64_t retry_ms; /* the waiters try again by then */
	struct ks_ratelimit rl;
};

void ks_pipes_init(struct ks_pipe_pool *p, uint32_t max);
/* Closes the cache; the waiters list must be empty. */
void ks_pipes_fini(struct ks_pipe_pool *p);

/* An empty pipe into fds (read end, write end): 0, -ENOSPC when max are
 * out, or -errno from pipe2(2). */
int ks_pipe_take(struct ks_pipe_pool *p, int fds[2]);

/*
 * Gives fds back (and sets them to -1). Cached only if the kernel says it
 * is empty (FIONREAD): a pipe that still holds bytes, of a connection that
 * ended mid-stream, is closed, so no byte can reach another connection.
 */
void ks_pipe_give(struct ks_pipe_pool *p, int fds[2]);

/*
 * A take failed with err at now_ms: link waits on the waiters list (if not
 * already) and the failure is counted, logged at most once a second.
 */
void ks_pipe_wait(struct ks_pipe_pool *p, struct ks_list *link, int err, uint64_t now_ms,
		  unsigned worker);

#endif
