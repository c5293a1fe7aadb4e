/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loop's front: picks a backend and passes each call to it. The slot
 * table the backends share is slots.c.
 */
#include "dataplane/loop/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ks_loop_init(struct ks_loop *l, enum ks_io_mode mode, const char **fallback_reason,
		 int *fallback_err)
{
	int rc;

	memset(l, 0, sizeof(*l));
	*fallback_reason = NULL;
	*fallback_err = 0;
	if (mode != KS_IO_EPOLL) {
		l->ops = &ks_loop_uring_ops;
		rc = l->ops->init(l);
		if (rc == 0)
			return 0;
		l->ops = NULL; /* a failed loop has no backend to run or tear down */
		if (mode == KS_IO_URING)
			return rc;
		*fallback_reason = "io_uring_setup failed";
		*fallback_err = -rc;
	}
	l->ops = &ks_loop_epoll_ops;
	rc = l->ops->init(l);
	if (rc < 0)
		l->ops = NULL;
	return rc;
}

void ks_loop_fini(struct ks_loop *l)
{
	if (l->ops)
		l->ops->fini(l);
	free(l->slots);
	free(l->gens);
	free(l->free_idx);
	memset(l, 0, sizeof(*l));
}

const char *ks_loop_backend(const struct ks_loop *l)
{
	return l->ops ? l->ops->name : "none";
}

int ks_loop_add(struct ks_loop *l, struct ks_watch *w, int fd, ks_watch_fn fn, void *owner)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->fn = fn;
	w->owner = owner;
	return ks_loop_slot_alloc(l, w);
}

int ks_loop_want(struct ks_loop *l, struct ks_watch *w, uint32_t want)
{
	w->want = want;
	return l->ops->arm(l, w);
}

void ks_loop_del(struct ks_loop *l, struct ks_watch *w)
{
	if (!w->slot)
		return;
	l->ops->disarm(l, w);
	ks_loop_slot_free(l, w);
}

int ks_loop_run_once(struct ks_loop *l, int timeout_ms)
{
	return l->ops->run_once(l, timeout_ms);
}
