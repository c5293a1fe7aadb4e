/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the front (loop.c) and both backends share: the slot table (what a
 * completion's user data, generation and index, resolves to, so a stale
 * event for a freed watch is dropped), and the owner's clock.
 */
#include "dataplane/loop/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

int ks_loop_slot_alloc(struct ks_loop *l, struct ks_watch *w)
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

void ks_loop_slot_free(struct ks_loop *l, struct ks_watch *w)
{
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

void ks_loop_woke(struct ks_loop *l)
{
	if (l->clock)
		*l->clock = ks_mono_ms();
}
