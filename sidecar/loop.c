/* SPDX-License-Identifier: Apache-2.0 */
#include "loop.h"

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

static int slot_alloc(struct ks_loop *l, struct ks_watch *w)
{
	uint32_t idx;

	if (l->nfree) {
		idx = l->free_idx[--l->nfree];
	} else {
		if (l->nslots + 1 >= l->cap) {
			uint32_t ncap = l->cap ? l->cap * 2 : 256;
			struct ks_watch **s = realloc(l->slots, ncap * sizeof(*s));
			uint32_t *g, *f;

			if (!s)
				return -ENOMEM;
			l->slots = s;
			g = realloc(l->gens, ncap * sizeof(*g));
			if (!g)
				return -ENOMEM;
			l->gens = g;
			f = realloc(l->free_idx, ncap * sizeof(*f));
			if (!f)
				return -ENOMEM;
			l->free_idx = f;
			memset(&l->gens[l->cap], 0, (ncap - l->cap) * sizeof(*g));
			l->cap = ncap;
			if (l->nslots == 0)
				l->nslots = 1; /* slot 0 means "not registered" */
		}
		idx = l->nslots++;
	}
	l->slots[idx] = w;
	w->slot = idx;
	w->gen = ++l->gens[idx];
	return 0;
}

int ks_loop_add(struct ks_loop *l, struct ks_watch *w, int fd, ks_watch_fn fn, void *owner)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->fn = fn;
	w->owner = owner;
	return slot_alloc(l, w);
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
	l->slots[w->slot] = NULL;
	l->gens[w->slot]++; /* stale events for this slot are now ignored */
	l->free_idx[l->nfree++] = w->slot;
	w->slot = 0;
}

struct ks_watch *ks_loop_lookup(struct ks_loop *l, uint64_t data)
{
	uint32_t idx = (uint32_t)data, gen = (uint32_t)(data >> 32);

	if (idx == 0 || idx >= l->nslots || l->gens[idx] != gen)
		return NULL;
	return l->slots[idx];
}

void ks_loop_dispatch(struct ks_loop *l, uint64_t data, uint32_t revents)
{
	struct ks_watch *w = ks_loop_lookup(l, data);
	uint32_t ev;

	if (!w)
		return;
	/* Errors and hang-ups always matter: the next read/write reports them. */
	ev = revents & (w->want | KS_EV_ERR | KS_EV_HUP);
	if (ev)
		w->fn(w, ev);
}

int ks_loop_run_once(struct ks_loop *l, int timeout_ms)
{
	return l->ops->run_once(l, timeout_ms);
}
