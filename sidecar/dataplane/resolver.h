/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Names in outbound routes (--outbound LISTEN=NAME:PORT). A name is looked
 * up when a connection needs it, not once at start-up, and its answer is
 * kept for a bounded time: --dns-refresh for addresses, at most
 * KS_RES_NEGATIVE_MS for a failure. A route whose name does not resolve yet
 * starts working once it does, with no restart.
 *
 * How: getaddrinfo(3) on a few resolver threads of our own, fed by a queue.
 * Workers never block on it: a worker asks the cache (ks_resolver_get);
 * without a fresh answer it gets KS_RES_WAIT, the name is queued (once,
 * however many connections wait) and the worker's eventfd is written when
 * the answer is in; the waiting connections then ask again. getaddrinfo
 * rather than c-ares: it is what the rest of the system resolves with
 * (nsswitch.conf, /etc/hosts, resolv.conf search and ndots as Kubernetes
 * writes them), needs no new library, and the lookups are few: one per
 * route name per --dns-refresh, never one per connection. Its one cost, a
 * thread held for a slow lookup, is why there are KS_RES_THREADS.
 *
 * Bounds: the names are those of the routes, fixed at creation, and each
 * has at most one lookup queued or running, so lookups outstanding never
 * exceed the names; the cache never grows. Connections that wait are
 * pending ones, bounded by --max-handshakes and by --handshake-timeout.
 *
 * Thread safety: one mutex for the cache and the queue, held only to copy
 * an answer or note a waiter, never across a lookup.
 */
#ifndef KS_DATAPLANE_RESOLVER_H
#define KS_DATAPLANE_RESOLVER_H

#include <netdb.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net.h"

/* Addresses kept per name: a connection tries them in getaddrinfo's order
 * (RFC 6724), the next one when a connect fails. */
#define KS_RES_ADDRS 8
/* How long a failed lookup is remembered (or --dns-refresh, if shorter):
 * long enough that a flood of connections to a missing name is refused from
 * the cache, short enough that a name that appears is used soon. */
#define KS_RES_NEGATIVE_MS 5000
/* Lookups that may run at once (on different names). */
#define KS_RES_THREADS 2

enum ks_res_status {
	KS_RES_FOUND,  /* out->addrs[0..n) */
	KS_RES_FAILED, /* out->why says why */
	KS_RES_WAIT,   /* a lookup is under way: notify_fd is written when it ends */
};

struct ks_res_answer {
	unsigned n;
	struct ks_addr addrs[KS_RES_ADDRS]; /* with the caller's port */
	char why[192];
};

struct ks_resolver;

/*
 * A resolver for names[0..n) (duplicates are fine), answers kept ttl_ms,
 * with nthreads lookup threads (0: none, lookups are answered only by
 * ks_resolver_record; for tests). NULL with *err set (-errno).
 */
struct ks_resolver *ks_resolver_new(const char *const *names, size_t n, uint32_t ttl_ms,
				    unsigned nthreads, int *err);
/*
 * Stops the threads and frees r. A thread still inside getaddrinfo after a
 * short wait is left to finish on its own (r then stays allocated: it is
 * the end of the process); it notifies no one.
 */
void ks_resolver_free(struct ks_resolver *r);

/*
 * The answer for name with port, from the cache, at now_ms (CLOCK_MONOTONIC,
 * ks_mono_ms). Without a fresh one: KS_RES_WAIT, and a lookup is queued
 * unless one is already; notify_fd (an eventfd) is written once it ends.
 * Never blocks beyond the mutex.
 */
enum ks_res_status ks_resolver_get(struct ks_resolver *r, const char *name, uint16_t port,
				   uint64_t now_ms, int notify_fd, struct ks_res_answer *out);
/* Looks name up now, on the caller's thread, and caches the answer
 * (start-up only: it may block). Logs a failure as event=route_unresolved. */
enum ks_res_status ks_resolver_lookup_now(struct ks_resolver *r, const char *name, uint16_t port,
					  struct ks_res_answer *out);
/* notify_fd is about to close: no answer is written to it any more. */
void ks_resolver_forget(struct ks_resolver *r, int notify_fd);

/*
 * Records a lookup's outcome for name (getaddrinfo's rc and list) at now_ms
 * and notifies the waiters: what a resolver thread does after each lookup.
 * Logs when a name starts or stops resolving.
 */
void ks_resolver_record(struct ks_resolver *r, const char *name, int gai_rc,
			const struct addrinfo *ai, uint64_t now_ms);
/* Names with a lookup queued or running. */
unsigned ks_resolver_inflight(struct ks_resolver *r);

#endif
