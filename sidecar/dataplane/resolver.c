/* SPDX-License-Identifier: Apache-2.0 */
/* Names in outbound routes: a cache fed by resolver threads (resolver.h). */
#include "dataplane/resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

/* How long ks_resolver_free waits for a thread inside getaddrinfo. */
#define KS_RES_JOIN_MS 500

struct ks_res_entry {
	char name[KS_HOST_NAME_MAX];
	bool answered;	      /* a lookup has ended at least once */
	bool ok;	      /* the last one found addresses */
	bool inflight;	      /* queued or running */
	uint64_t fresh_until; /* CLOCK_MONOTONIC ms */
	unsigned n;
	struct ks_addr addrs[KS_RES_ADDRS]; /* port 0 */
	char why[160];
	int *notify; /* eventfds to write when the lookup ends */
	size_t nnotify, cap;
	struct ks_res_entry *qnext; /* on the queue */
};

struct ks_resolver {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* the queue has work, or stop */
	struct ks_res_entry *entries;
	size_t nentries;
	struct ks_res_entry *qhead, *qtail;
	unsigned inflight;
	uint32_t ttl_ms, neg_ms;
	bool stop;
	pthread_t threads[KS_RES_THREADS];
	unsigned nthreads;
};

static struct ks_res_entry *find(struct ks_resolver *r, const char *name)
{
	for (size_t i = 0; i < r->nentries; i++)
		if (strcmp(r->entries[i].name, name) == 0)
			return &r->entries[i];
	return NULL;
}

static void copy_answer(const struct ks_res_entry *e, uint16_t port, struct ks_res_answer *out)
{
	out->n = e->n;
	snprintf(out->why, sizeof(out->why), "%s", e->why);
	for (unsigned i = 0; i < e->n; i++) {
		out->addrs[i] = e->addrs[i];
		if (out->addrs[i].ss.ss_family == AF_INET)
			((struct sockaddr_in *)&out->addrs[i].ss)->sin_port = htons(port);
		else
			((struct sockaddr_in6 *)&out->addrs[i].ss)->sin6_port = htons(port);
	}
}

/* Adds fd to e's waiters once. False when out of memory. */
static bool add_waiter(struct ks_res_entry *e, int fd)
{
	int *n;

	for (size_t i = 0; i < e->nnotify; i++)
		if (e->notify[i] == fd)
			return true;
	if (e->nnotify == e->cap) {
		n = realloc(e->notify, (e->cap ? e->cap * 2 : 4) * sizeof(*n));
		if (!n)
			return false;
		e->notify = n;
		e->cap = e->cap ? e->cap * 2 : 4;
	}
	e->notify[e->nnotify++] = fd;
	return true;
}

enum ks_res_status ks_resolver_get(struct ks_resolver *r, const char *name, uint16_t port,
				   uint64_t now_ms, int notify_fd, struct ks_res_answer *out)
{
	struct ks_res_entry *e;
	enum ks_res_status st = KS_RES_WAIT;

	out->n = 0;
	out->why[0] = '\0';
	pthread_mutex_lock(&r->mu);
	e = find(r, name);
	if (!e) {
		snprintf(out->why, sizeof(out->why), "'%s' is not a route's name", name);
		st = KS_RES_FAILED;
	} else if (e->answered && now_ms < e->fresh_until) {
		copy_answer(e, port, out);
		st = e->ok ? KS_RES_FOUND : KS_RES_FAILED;
	} else if (!add_waiter(e, notify_fd)) {
		snprintf(out->why, sizeof(out->why), "out of memory");
		st = KS_RES_FAILED;
	} else if (!e->inflight) {
		e->inflight = true;
		r->inflight++;
		e->qnext = NULL;
		if (r->qtail)
			r->qtail->qnext = e;
		else
			r->qhead = e;
		r->qtail = e;
		pthread_cond_signal(&r->cv);
	}
	pthread_mutex_unlock(&r->mu);
	return st;
}

void ks_resolver_forget(struct ks_resolver *r, int notify_fd)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->nentries; i++) {
		struct ks_res_entry *e = &r->entries[i];

		for (size_t j = 0; j < e->nnotify;)
			if (e->notify[j] == notify_fd)
				e->notify[j] = e->notify[--e->nnotify];
			else
				j++;
	}
	pthread_mutex_unlock(&r->mu);
}

/* "127.0.0.1,::1" for the log (the port is each route's), cut to fit. */
static void addrs_str(const struct ks_res_entry *e, char *buf, size_t len)
{
	char one[INET6_ADDRSTRLEN];
	size_t at = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < e->n && at + 1 < len; i++) {
		const struct sockaddr_storage *ss = &e->addrs[i].ss;
		const void *ip = ss->ss_family == AF_INET
				     ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
				     : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (!inet_ntop(ss->ss_family, ip, one, sizeof(one)))
			snprintf(one, sizeof(one), "?");
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "," : "", one);
	}
}

void ks_resolver_record(struct ks_resolver *r, const char *name, int gai_rc,
			const struct addrinfo *ai, uint64_t now_ms)
{
	int sys_err = errno; /* EAI_SYSTEM's reason, from the lookup just made */
	struct ks_res_entry *e;
	char addrs[256];
	bool was_ok;
	unsigned n = 0;

	pthread_mutex_lock(&r->mu);
	e = find(r, name);
	if (!e) {
		pthread_mutex_unlock(&r->mu);
		return;
	}
	for (; gai_rc == 0 && ai && n < KS_RES_ADDRS; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(e->addrs[n].ss))
			continue;
		memset(&e->addrs[n], 0, sizeof(e->addrs[n]));
		memcpy(&e->addrs[n].ss, ai->ai_addr, ai->ai_addrlen);
		e->addrs[n].len = ai->ai_addrlen;
		n++;
	}
	was_ok = !e->answered || e->ok;
	e->n = n;
	e->ok = n > 0;
	if (gai_rc == EAI_SYSTEM)
		snprintf(e->why, sizeof(e->why), "cannot resolve %s: %s", name, strerror(sys_err));
	else if (gai_rc)
		snprintf(e->why, sizeof(e->why), "cannot resolve %s: %s", name,
			 gai_strerror(gai_rc));
	else if (!n)
		snprintf(e->why, sizeof(e->why), "cannot resolve %s: no IPv4 or IPv6 address",
			 name);
	else
		e->why[0] = '\0';
	e->fresh_until = now_ms + (e->ok ? r->ttl_ms : r->neg_ms);
	/* A start-up lookup (not queued) leaves the count alone. */
	if (e->inflight) {
		e->inflight = false;
		r->inflight--;
	}
	/* Each lookup's own line would be one per --dns-refresh per name;
	 * what an operator needs is when a name starts or stops resolving. */
	if (e->ok && (!e->answered || !was_ok)) {
		addrs_str(e, addrs, sizeof(addrs));
		ks_info("event=route_resolved name=%s addrs=%s", name, addrs);
	} else if (!e->ok && was_ok) {
		ks_warn("event=route_unresolved name=%s reason=\"%s\"", name, e->why);
	}
	e->answered = true;
	/* After a stop the workers are gone, and their eventfds with them. */
	for (size_t i = 0; i < e->nnotify && !r->stop; i++) {
		uint64_t one = 1;

		/* An eventfd's counter only fails to take 1 at 2^64-2: the
		 * worker is then woken anyway. */
		(void)!write(e->notify[i], &one, sizeof(one));
	}
	e->nnotify = 0;
	pthread_mutex_unlock(&r->mu);
}

static int lookup(const char *name, struct addrinfo **res)
{
	struct addrinfo hints;

	/* Both families, in the order RFC 6724 ranks them; no AI_ADDRCONFIG,
	 * as at start-up (it hides ::1 and 127.0.0.1 from a loopback-only
	 * namespace). */
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	*res = NULL;
	return getaddrinfo(name, NULL, &hints, res);
}

enum ks_res_status ks_resolver_lookup_now(struct ks_resolver *r, const char *name, uint16_t port,
					  struct ks_res_answer *out)
{
	struct addrinfo *res;
	int rc = lookup(name, &res);

	ks_resolver_record(r, name, rc, res, ks_mono_ms());
	if (res)
		freeaddrinfo(res);
	/* Fresh now, for at least the negative lifetime: the cache answers. */
	return ks_resolver_get(r, name, port, 0, -1, out);
}

static void *resolver_main(void *arg)
{
	struct ks_resolver *r = arg;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		struct ks_res_entry *e;
		struct addrinfo *res;
		int rc;

		while (!r->stop && !r->qhead)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stop)
			break;
		e = r->qhead;
		r->qhead = e->qnext;
		if (!r->qhead)
			r->qtail = NULL;
		pthread_mutex_unlock(&r->mu);
		/* e->name never changes: read without the lock. */
		rc = lookup(e->name, &res);
		ks_resolver_record(r, e->name, rc, res, ks_mono_ms());
		if (res)
			freeaddrinfo(res);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

struct ks_resolver *ks_resolver_new(const char *const *names, size_t n, uint32_t ttl_ms,
				    unsigned nthreads, int *err)
{
	struct ks_resolver *r = calloc(1, sizeof(*r));
	int rc;

	*err = 0;
	if (!r || !(r->entries = calloc(n ? n : 1, sizeof(*r->entries)))) {
		free(r);
		*err = -ENOMEM;
		return NULL;
	}
	r->ttl_ms = ttl_ms;
	r->neg_ms = ttl_ms < KS_RES_NEGATIVE_MS ? ttl_ms : KS_RES_NEGATIVE_MS;
	for (size_t i = 0; i < n; i++) {
		if (find(r, names[i]))
			continue;
		snprintf(r->entries[r->nentries++].name, sizeof(r->entries[0].name), "%s",
			 names[i]);
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (nthreads > KS_RES_THREADS)
		nthreads = KS_RES_THREADS;
	for (; r->nthreads < nthreads; r->nthreads++) {
		rc = pthread_create(&r->threads[r->nthreads], NULL, resolver_main, r);
		if (rc != 0) {
			*err = -rc;
			ks_resolver_free(r);
			return NULL;
		}
	}
	return r;
}

void ks_resolver_free(struct ks_resolver *r)
{
	struct timespec deadline = ks_realtime_after_ms(KS_RES_JOIN_MS);
	bool stuck = false;

	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	/* getaddrinfo cannot be interrupted, and a DNS server that does not
	 * answer holds it for resolv.conf's timeout times its attempts:
	 * shutdown does not wait for that. */
	for (unsigned i = 0; i < r->nthreads; i++) {
		if (pthread_timedjoin_np(r->threads[i], NULL, &deadline) != 0) {
			pthread_detach(r->threads[i]);
			stuck = true;
		}
	}
	if (stuck)
		return;
	for (size_t i = 0; i < r->nentries; i++)
		free(r->entries[i].notify);
	free(r->entries);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

unsigned ks_resolver_inflight(struct ks_resolver *r)
{
	unsigned n;

	pthread_mutex_lock(&r->mu);
	n = r->inflight;
	pthread_mutex_unlock(&r->mu);
	return n;
}
