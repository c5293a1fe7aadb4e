/* SPDX-License-Identifier: Apache-2.0 */
/*
 * io_uring backend. Readiness is one-shot IORING_OP_POLL_ADD, re-armed after
 * each completion only while the owner still wants something, so an idle
 * connection costs one armed poll and no io-wq thread. Interest changes on an
 * armed poll use IORING_POLL_UPDATE_EVENTS (5.13) instead of remove + add.
 * Every change is queued in the SQ and sent with the wait, so a loop turn is
 * one io_uring_enter(2) however many sockets it touched.
 *
 * The ring is created by the worker thread that uses it: SINGLE_ISSUER and
 * DEFER_TASKRUN (6.1) tie it to that task, and the flags are dropped one by
 * one on older kernels that reject them with EINVAL.
 */
#include "dataplane/loop/loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#define KS_URING_ENTRIES 1024
#define KS_URING_BATCH	 256
#define KS_UD_IGNORE	 0 /* completions of remove/update requests */

struct ks_uring {
	struct io_uring ring;
};

/* Seam for tests and for callers that want to know why io_uring is unusable. */
static int uring_setup(struct io_uring *ring)
{
	static const unsigned flag_sets[] = {
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	    IORING_SETUP_COOP_TASKRUN,
	    0,
	};
	int rc = -EINVAL;

	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i];
		rc = io_uring_queue_init_params(KS_URING_ENTRIES, ring, &p);
		if (rc != -EINVAL)
			return rc;
	}
	return rc;
}

static int ur_init(struct ks_loop *l)
{
	struct ks_uring *u = calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return -ENOMEM;
	rc = uring_setup(&u->ring);
	if (rc < 0) {
		free(u);
		return rc;
	}
	l->backend = u;
	return 0;
}

static void ur_fini(struct ks_loop *l)
{
	struct ks_uring *u = l->backend;

	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	free(u);
	l->backend = NULL;
}

static struct io_uring_sqe *get_sqe(struct ks_uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (sqe)
		return sqe;
	/* SQ full: flush it and try again; only fails if the ring is broken. */
	io_uring_submit(&u->ring);
	return io_uring_get_sqe(&u->ring);
}

static int ur_arm(struct ks_loop *l, struct ks_watch *w)
{
	struct ks_uring *u = l->backend;
	struct io_uring_sqe *sqe;

	if (w->want == 0)
		return 0; /* an armed poll may fire once more; dispatch filters it */
	if (w->inflight && (w->armed & w->want) == w->want)
		return 0;
	sqe = get_sqe(u);
	if (!sqe)
		return -EBUSY;
	if (!w->inflight) {
		/* EPOLLEXCLUSIVE: io_uring queues the poll as an exclusive
		 * waiter (io_uring/poll.c), so a shared listener wakes one
		 * worker's ring per connection, as with epoll. */
		io_uring_prep_poll_add(sqe, w->fd, w->want | (w->exclusive ? EPOLLEXCLUSIVE : 0));
		io_uring_sqe_set_data64(sqe, ks_watch_data(w));
		w->inflight = 1;
	} else {
		/* If the poll already completed this fails with ENOENT, and the
		 * pending completion re-arms with the new mask. */
		/* new_user_data must be 0 without IORING_POLL_UPDATE_USER_DATA. */
		io_uring_prep_poll_update(sqe, ks_watch_data(w), 0, w->want,
					  IORING_POLL_UPDATE_EVENTS);
		io_uring_sqe_set_data64(sqe, KS_UD_IGNORE);
	}
	w->armed = w->want;
	return 0;
}

static void ur_disarm(struct ks_loop *l, struct ks_watch *w)
{
	struct ks_uring *u = l->backend;
	struct io_uring_sqe *sqe;

	if (!w->inflight)
		return;
	/* The poll holds a file reference: it must go before the socket can. */
	sqe = get_sqe(u);
	if (sqe) {
		io_uring_prep_poll_remove(sqe, ks_watch_data(w));
		io_uring_sqe_set_data64(sqe, KS_UD_IGNORE);
	}
	w->inflight = 0;
	w->armed = 0;
}

static int ur_run_once(struct ks_loop *l, int timeout_ms)
{
	struct ks_uring *u = l->backend;
	struct __kernel_timespec ts = {
	    .tv_sec = timeout_ms / 1000,
	    .tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
	};
	struct io_uring_cqe *cqe;
	struct {
		uint64_t data;
		int32_t res;
	} batch[KS_URING_BATCH];
	unsigned head, n = 0, total = 0;
	int rc;

	rc =
	    io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_ms >= 0 ? &ts : NULL, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
		return rc;
	ks_loop_woke(l);
	do {
		/* Copy first: callbacks queue new SQEs and may submit. */
		n = 0;
		io_uring_for_each_cqe(&u->ring, head, cqe)
		{
			if (n == KS_URING_BATCH)
				break;
			batch[n].data = cqe->user_data;
			batch[n].res = cqe->res;
			n++;
		}
		io_uring_cq_advance(&u->ring, n);
		for (unsigned i = 0; i < n; i++) {
			struct ks_watch *w;
			uint32_t revents;

			if (batch[i].data == KS_UD_IGNORE)
				continue;
			w = ks_loop_lookup(l, batch[i].data);
			if (!w)
				continue; /* removed while its completion was queued */
			w->inflight = 0;
			w->armed = 0;
			revents = batch[i].res < 0 ? KS_EV_ERR : (uint32_t)batch[i].res;
			ks_loop_dispatch(l, batch[i].data, revents);
			w = ks_loop_lookup(l, batch[i].data);
			if (w && w->want && !w->inflight)
				ur_arm(l, w);
		}
		total += n;
	} while (n == KS_URING_BATCH);
	return (int)total;
}

const struct ks_loop_ops ks_loop_uring_ops = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .arm = ur_arm,
    .disarm = ur_disarm,
    .run_once = ur_run_once,
};
