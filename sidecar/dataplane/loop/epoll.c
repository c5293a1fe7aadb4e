/* SPDX-License-Identifier: Apache-2.0 */
/*
 * epoll backend: level-triggered. A watch that wants nothing is removed from
 * the set, because EPOLLHUP/EPOLLERR are reported even for an empty mask and
 * would spin the loop on a half-dead socket we are not reading.
 */
#include "dataplane/loop/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define KS_EPOLL_BATCH 256

struct ks_epoll {
	int epfd;
	struct epoll_event events[KS_EPOLL_BATCH];
};

static int ep_init(struct ks_loop *l)
{
	struct ks_epoll *ep = calloc(1, sizeof(*ep));

	if (!ep)
		return -ENOMEM;
	ep->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ep->epfd < 0) {
		int rc = -errno;

		free(ep);
		return rc;
	}
	l->backend = ep;
	return 0;
}

static void ep_fini(struct ks_loop *l)
{
	struct ks_epoll *ep = l->backend;

	if (!ep)
		return;
	close(ep->epfd);
	free(ep);
	l->backend = NULL;
}

static int ep_arm(struct ks_loop *l, struct ks_watch *w)
{
	struct ks_epoll *ep = l->backend;
	struct epoll_event ev = {.events = w->want, .data.u64 = ks_watch_data(w)};
	int op;

	if (w->want == w->armed)
		return 0;
	if (w->want == 0)
		op = EPOLL_CTL_DEL;
	else
		op = w->armed ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (w->exclusive && op == EPOLL_CTL_MOD) {
		/* epoll_ctl(2): EPOLLEXCLUSIVE is for EPOLL_CTL_ADD only. */
		if (epoll_ctl(ep->epfd, EPOLL_CTL_DEL, w->fd, NULL) < 0)
			return -errno;
		w->armed = 0;
		op = EPOLL_CTL_ADD;
	}
	if (w->exclusive && op == EPOLL_CTL_ADD)
		ev.events |= EPOLLEXCLUSIVE;
	if (epoll_ctl(ep->epfd, op, w->fd, &ev) < 0)
		return -errno;
	w->armed = w->want;
	return 0;
}

static void ep_disarm(struct ks_loop *l, struct ks_watch *w)
{
	struct ks_epoll *ep = l->backend;

	if (w->armed)
		(void)epoll_ctl(ep->epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->armed = 0;
}

static int ep_run_once(struct ks_loop *l, int timeout_ms)
{
	struct ks_epoll *ep = l->backend;
	int n = epoll_wait(ep->epfd, ep->events, KS_EPOLL_BATCH, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	ks_loop_woke(l);
	for (int i = 0; i < n; i++)
		ks_loop_dispatch(l, ep->events[i].data.u64, ep->events[i].events);
	return n;
}

const struct ks_loop_ops ks_loop_epoll_ops = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .arm = ep_arm,
    .disarm = ep_disarm,
    .run_once = ep_run_once,
};
