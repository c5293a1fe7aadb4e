/* SPDX-License-Identifier: Apache-2.0 */
#include "dataplane/pool.h"

#include <stdlib.h>

#include "dataplane/worker.h"
#include "tls/identity.h"

/* Free buffers a worker keeps for reuse; beyond this they go back to malloc. */
#define KS_BUF_POOL_MAX 256

struct ks_buf *ks_buf_get(struct ks_worker *wk)
{
	struct ks_buf *b = wk->free_bufs;

	if (b) {
		wk->free_bufs = b->next;
		wk->nfree_bufs--;
	} else {
		b = malloc(sizeof(*b));
		if (!b)
			return NULL;
	}
	b->next = NULL;
	b->off = b->len = 0;
	return b;
}

void ks_buf_put(struct ks_worker *wk, struct ks_buf *b)
{
	if (wk->nfree_bufs >= KS_BUF_POOL_MAX) {
		free(b);
		return;
	}
	b->next = wk->free_bufs;
	wk->free_bufs = b;
	wk->nfree_bufs++;
}

void ks_buf_pool_fini(struct ks_worker *wk)
{
	while (wk->free_bufs) {
		struct ks_buf *b = wk->free_bufs;

		wk->free_bufs = b->next;
		free(b);
	}
	wk->nfree_bufs = 0;
}

struct ks_identity *ks_worker_identity(struct ks_worker *wk)
{
	uint64_t gen = atomic_load_explicit(&wk->sh->ident.gen, memory_order_acquire);

	if (!wk->ident || gen != wk->ident_gen) {
		ks_identity_put(wk->ident);
		wk->ident = ks_identity_slot_get(&wk->sh->ident, &wk->ident_gen);
	}
	return ks_identity_get(wk->ident);
}
