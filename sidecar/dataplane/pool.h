/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What connections draw from their worker: record buffers from a bounded
 * per-worker pool (idle connections hold none), and a reference to the
 * identity in force (refreshed only when the slot's generation moved).
 * Worker-local: no locks.
 */
#ifndef KS_DATAPLANE_POOL_H
#define KS_DATAPLANE_POOL_H

#include "dataplane/conn.h"

struct ks_worker;

struct ks_buf *ks_buf_get(struct ks_worker *wk);
void ks_buf_put(struct ks_worker *wk, struct ks_buf *b);
/* Frees the worker's pooled buffers (teardown). */
void ks_buf_pool_fini(struct ks_worker *wk);

/* Returns the current identity with a new reference for a connection. */
struct ks_identity *ks_worker_identity(struct ks_worker *wk);

#endif
