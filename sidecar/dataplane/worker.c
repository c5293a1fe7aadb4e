/* SPDX-License-Identifier: Apache-2.0 */
#include "dataplane/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "dataplane/pool.h"

#define KS_ACCEPT_BATCH 64
#define KS_TICK_MS	1000

/*
 * Sheds the oldest connection of dir that is not forwarding yet (the head
 * of its list: the earliest deadline). False when there is none.
 */
static bool shed_oldest(struct ks_worker *wk, enum ks_dir dir)
{
	struct ks_list *l = &wk->lists[ks_wl_handshake(dir)];

	if (ks_list_empty(l))
		return false;
	ks_conn_shed(ks_conn_of(l->next));
	return true;
}

/* Refuses fd with a reset: it never reaches the data plane. */
static void refuse(struct ks_worker *wk, const struct ks_listener *ls, int fd, enum ks_adm_reason r,
		   uint32_t limit)
{
	ks_set_rst_on_close(fd);
	close(fd);
	ks_adm_note(&wk->adm, r, wk->now_ms, wk->idx, ls->route->listen_str, limit);
}

/*
 * Admission (admission.h): the source's place and the direction's pending
 * budget, taken in one step; over the budget, our oldest pending connection
 * of that direction is shed. True when fd may become a connection (it is
 * counted as pending under key); false when it was refused and closed.
 */
static bool admit(struct ks_worker *wk, const struct ks_listener *ls, int fd,
		  const struct sockaddr *sa, uint8_t key[16])
{
	const struct ks_dp_config *cfg = wk->sh->cfg;
	enum ks_dir dir = ls->route->dir;

	ks_adm_key(sa, key);
	switch (ks_adm_pending_add(&wk->adm, dir, key)) {
	case KS_ADM_SOURCE_FULL:
		refuse(wk, ls, fd, KS_ADM_REFUSED_SOURCE, cfg->max_handshakes_per_source);
		return false;
	case KS_ADM_OVER_BUDGET:
		if (shed_oldest(wk, dir))
			ks_adm_note(&wk->adm, KS_ADM_SHED_HANDSHAKES, wk->now_ms, wk->idx,
				    ls->route->listen_str, cfg->max_handshakes);
		return true;
	default:
		return true;
	}
}

/*
 * accept(2) failed with err: EMFILE or ENFILE (out of descriptors), ENOBUFS
 * or ENOMEM. The connection stays in the kernel's backlog, so the listener
 * stays readable and accepting again at once only fails again: the loop
 * would spin, one log line per turn, until something closes. Stop watching
 * this listener for a back-off (5 ms doubling to 100 ms while it lasts; the
 * backlog keeps the clients meanwhile) and log once a second with a count.
 */
static void pause_listener(struct ks_worker *wk, struct ks_listener *ls, int err)
{
	uint32_t ms = ks_backoff_fail(&ls->backoff, 5, 100);
	uint64_t total, since;

	ls->resume_ms = wk->now_ms + ms;
	(void)ks_loop_want(&wk->loop, &ls->w, 0);
	if (ks_adm_count(&wk->adm, KS_ADM_ACCEPT_FAILED, wk->now_ms, &total, &since))
		ks_error("event=accept_failed listen=%s detail=\"%s\" paused_ms=%u "
			 "failed_total=%llu since_last_line=%llu worker=%u",
			 ls->route->listen_str, strerror(err), ms, (unsigned long long)total,
			 (unsigned long long)since, wk->idx);
}

/* Listeners whose back-off is over are watched again; returns the next resume time, or next. */
static uint64_t resume_listeners(struct ks_worker *wk, uint64_t next)
{
	for (size_t i = 0; i < wk->nlisteners; i++) {
		struct ks_listener *ls = &wk->listeners[i];

		if (!ls->resume_ms || ls->fd < 0)
			continue;
		if (ls->resume_ms > wk->now_ms) {
			if (ls->resume_ms < next)
				next = ls->resume_ms;
			continue;
		}
		ls->resume_ms = 0;
		if (ks_loop_want(&wk->loop, &ls->w, KS_EV_IN) < 0)
			pause_listener(wk, ls, ENOMEM); /* try again after the next back-off */
	}
	return next;
}

static void on_accept(struct ks_watch *w, uint32_t ev)
{
	struct ks_listener *ls = w->owner;
	struct ks_worker *wk = ls->wk;

	(void)ev;
	for (int i = 0; i < KS_ACCEPT_BATCH; i++) {
		uint8_t key[16];
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd =
		    accept4(ls->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			pause_listener(wk, ls, errno);
			return;
		}
		ks_backoff_ok(&ls->backoff);
		if (!admit(wk, ls, fd, (struct sockaddr *)&ss, key))
			continue;
		if (wk->sh->accept_hook &&
		    wk->sh->accept_hook(wk->sh, ls->route, fd, (struct sockaddr *)&ss)) {
			ks_adm_pending_del(&wk->adm, ls->route->dir, key);
			continue;
		}
		atomic_fetch_add_explicit(&wk->sh->nconns, 1, memory_order_relaxed);
		wk->handshakes_since_trim++;
		ks_conn_accept(wk, ls->route, fd, (struct sockaddr *)&ss, key);
	}
}

static void on_wake(struct ks_watch *w, uint32_t ev)
{
	struct ks_worker *wk = w->owner;
	uint64_t v;

	(void)ev;
	if (read(wk->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		ks_warn("event=wake_read_failed worker=%u detail=\"%s\"", wk->idx, strerror(errno));
	/* The resolver writes here too when a lookup ends (resolver.h). */
	ks_conn_resolved(wk);
}

/*
 * Connections that found no pipe (pipes.h) try again when one came back, or
 * KS_PIPE_RETRY_MS after they last tried. Each is taken off the list first:
 * one that still finds none puts itself back at the tail. Returns when the
 * next retry is due, or next.
 */
static uint64_t retry_pipe_waiters(struct ks_worker *wk, uint64_t next)
{
	struct ks_pipe_pool *p = &wk->pipes;
	struct ks_list batch;

	if (ks_list_empty(&p->waiters))
		return next;
	if (!p->returned && wk->now_ms < p->retry_ms)
		return p->retry_ms < next ? p->retry_ms : next;
	/* Move the whole list to batch: resumes may re-add to p->waiters. */
	ks_list_init(&batch);
	ks_list_add_after(&p->waiters, &batch);
	ks_list_del(&p->waiters);
	ks_list_init(&p->waiters);
	p->returned = false;
	p->retry_ms = wk->now_ms + KS_PIPE_RETRY_MS;
	while (!ks_list_empty(&batch)) {
		struct ks_list *l = batch.next;

		ks_list_del(l);
		ks_conn_resume(ks_container_of(l, struct ks_conn, pipe_link));
	}
	return ks_list_empty(&p->waiters) || p->retry_ms >= next ? next : p->retry_ms;
}

/* Every list is ordered by deadline, so only their heads need checking. */
static int expire(struct ks_worker *wk)
{
	uint64_t next = wk->now_ms + KS_TICK_MS;

	for (int i = 0; i < KS_WL__COUNT; i++) {
		while (!ks_list_empty(&wk->lists[i])) {
			struct ks_conn *c = ks_conn_of(wk->lists[i].next);

			if (c->deadline_ms > wk->now_ms) {
				if (c->deadline_ms < next)
					next = c->deadline_ms;
				break;
			}
			ks_conn_timeout(c);
		}
	}
	next = resume_listeners(wk, next);
	next = retry_pipe_waiters(wk, next);
	ks_loglimit_flush(&wk->loglimit, wk->now_ms, wk->idx);
	return (int)(next - wk->now_ms);
}

/*
 * Closes this worker's descriptors of the listeners of one direction, or of
 * all (all). The kernel refuses new connections on a port once every
 * worker has closed its descriptor (the daemon closed the original at
 * start). The array keeps its slots: the loop may still hold a removed
 * watch's address until its removal is processed.
 */
static void close_listeners(struct ks_worker *wk, bool all, enum ks_dir dir)
{
	for (size_t i = 0; i < wk->nlisteners; i++) {
		struct ks_listener *ls = &wk->listeners[i];

		if (ls->fd < 0 || (!all && ls->route->dir != dir))
			continue;
		ks_loop_del(&wk->loop, &ls->w);
		close(ls->fd);
		ls->fd = -1;
		ls->resume_ms = 0;
	}
	if (wk->inbound_open && (all || dir == KS_INBOUND)) {
		wk->inbound_open = false;
		/* The last worker to close says so, once, while draining: from
		 * then on a new inbound connection is refused. */
		if (atomic_fetch_sub_explicit(&wk->sh->inbound_listening, 1,
					      memory_order_acq_rel) == 1 &&
		    atomic_load_explicit(&wk->sh->drain, memory_order_acquire))
			ks_info("event=drain_inbound_closed connections=%u",
				atomic_load_explicit(&wk->sh->nconns, memory_order_relaxed));
	}
}

/*
 * Drain (SIGTERM, the control API): the inbound listeners stay open for the
 * drain delay, while the pod's removal from the Service endpoints reaches
 * the clients, then close. The outbound ones stay until this worker has
 * held no connection for the quiet time (--drain-quiet) after the delay:
 * the app may still be finishing requests that need them, one after
 * another (Istio's EXIT_ON_ZERO_ACTIVE_CONNECTIONS). Then the worker
 * leaves, closing them; the last worker to leave closes the port. At the
 * deadline it leaves whatever is open. Returns true when the loop should
 * end.
 */
static bool drain_done(struct ks_worker *wk)
{
	struct ks_shared *sh = wk->sh;
	uint64_t inbound_close;

	if (ks_worker_nconns(wk))
		wk->busy_ms = wk->now_ms;
	if (!atomic_load_explicit(&sh->drain, memory_order_acquire))
		return false;
	wk->draining = true;
	if (wk->now_ms >= atomic_load_explicit(&sh->drain_deadline_ms, memory_order_relaxed))
		return true;
	inbound_close = atomic_load_explicit(&sh->drain_inbound_close_ms, memory_order_relaxed);
	if (wk->now_ms < inbound_close)
		return false;
	if (wk->inbound_open)
		close_listeners(wk, false, KS_INBOUND);
	return !ks_worker_nconns(wk) && wk->now_ms - wk->busy_ms >= sh->cfg->drain_quiet_ms;
}

/*
 * A CRL pushed through the control API also ends the open connections whose
 * peer certificate it revokes (README, "Revocation"). The control thread
 * wakes us after publishing; we check when the CRL generation moves. Only
 * the peer's leaf is checked here (its issuer and serial are all a
 * connection keeps); new handshakes check the whole chain.
 */
static void sweep_revoked(struct ks_worker *wk)
{
	struct ks_identity *id;
	char detail[96];

	if (atomic_load_explicit(&wk->sh->ident.gen, memory_order_acquire) == wk->swept_gen)
		return;
	id = ks_worker_identity(wk);
	wk->swept_gen = wk->ident_gen;
	if (id->crl_gen != wk->crl_gen) {
		wk->crl_gen = id->crl_gen;
		for (int i = 0; i < KS_WL__COUNT && id->crls; i++) {
			struct ks_list *l = wk->lists[i].next, *next;

			for (; l != &wk->lists[i]; l = next) {
				struct ks_conn *c = ks_conn_of(l);

				next = l->next;
				if (!c->tls.serial_len ||
				    !ks_identity_revoked(id, c->tls.issuer_key, c->tls.serial,
							 c->tls.serial_len))
					continue;
				snprintf(detail, sizeof(detail),
					 "peer certificate revoked by a CRL pushed at generation "
					 "%llu",
					 (unsigned long long)id->crl_gen);
				ks_conn_close(c, KS_CLOSE_REVOKED, KS_SIDE_TLS, detail);
			}
		}
	}
	ks_identity_put(id);
}

void ks_conn_info_free(struct ks_conn_info *info, size_t n)
{
	for (size_t i = 0; info && i < n; i++)
		free(info[i].peer_id);
	free(info);
}

/*
 * The resolver, when an outbound route names its remote. Each name is
 * looked up once now, so the first connections need not wait; one that
 * does not resolve is a warning (event=route_unresolved), not an error:
 * connections to it are refused until it does (reason=resolve_failed).
 */
static int start_resolver(struct ks_shared *sh, const struct ks_dp_config *cfg)
{
	const char **names = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*names));
	struct ks_res_answer ans;
	size_t n = 0;
	int rc;

	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->nroutes; i++)
		if (cfg->routes[i].host[0])
			names[n++] = cfg->routes[i].host;
	if (n)
		sh->res = ks_resolver_new(names, n, cfg->dns_refresh_ms, KS_RES_THREADS, &rc);
	free(names);
	if (n && !sh->res)
		return rc;
	for (size_t i = 0; i < cfg->nroutes; i++)
		if (cfg->routes[i].host[0])
			(void)ks_resolver_lookup_now(sh->res, cfg->routes[i].host,
						     cfg->routes[i].port, &ans);
	return 0;
}

int ks_shared_init(struct ks_shared *sh, const struct ks_dp_config *cfg)
{
	int rc;

	memset(sh, 0, sizeof(*sh));
	sh->cfg = cfg;
	rc = ks_adm_pool_init(&sh->adm, cfg);
	if (rc < 0)
		return rc;
	rc = start_resolver(sh, cfg);
	if (rc < 0) {
		ks_adm_pool_fini(&sh->adm);
		return rc;
	}
	pthread_mutex_init(&sh->list_mu, NULL);
	pthread_cond_init(&sh->list_cv, NULL);
	return 0;
}

void ks_shared_fini(struct ks_shared *sh)
{
	ks_resolver_free(sh->res);
	sh->res = NULL;
	ks_adm_pool_fini(&sh->adm);
	pthread_cond_destroy(&sh->list_cv);
	pthread_mutex_destroy(&sh->list_mu);
}

/* Answers a ListConnections request from the control thread, if one is due. */
static void serve_list(struct ks_worker *wk)
{
	uint64_t req = atomic_load_explicit(&wk->list_req, memory_order_acquire);
	struct ks_list *lists = wk->lists;
	struct ks_conn_info *info = NULL;
	size_t n = 0, cap = 0;

	if (req == wk->list_done)
		return; /* list_done is only written by us: no lock to read it */
	cap = ks_worker_nconns(wk);
	if (cap && !(info = calloc(cap, sizeof(*info))))
		cap = 0; /* answer with none rather than leave the caller waiting */
	for (int i = 0; i < KS_WL__COUNT && cap; i++) {
		for (struct ks_list *l = lists[i].next; l != &lists[i]; l = l->next) {
			const struct ks_conn *c = ks_conn_of(l);
			struct ks_conn_info *o = &info[n++];

			o->id = c->id;
			o->age_ms = wk->now_ms - c->start_ms;
			o->bytes_to_peer = c->bytes_to_peer;
			o->bytes_from_peer = c->bytes_from_peer;
			o->dir = c->route->dir;
			o->rl = c->rl;
			o->forwarding = c->st == KS_ST_FORWARDING;
			o->cipher = c->ssl     ? SSL_get_cipher_name(c->ssl)
				    : c->suite ? c->suite->name
					       : "-";
			snprintf(o->peer_addr, sizeof(o->peer_addr), "%s", c->peer_str);
			o->peer_id = c->tls.peer_id ? strdup(c->tls.peer_id) : NULL;
		}
	}
	pthread_mutex_lock(&wk->sh->list_mu);
	ks_conn_info_free(wk->list_out, wk->list_n); /* an answer nobody collected */
	wk->list_out = info;
	wk->list_n = n;
	wk->list_done = req;
	pthread_cond_broadcast(&wk->sh->list_cv);
	pthread_mutex_unlock(&wk->sh->list_mu);
}

int ks_worker_snapshot(struct ks_worker *workers, unsigned n, struct ks_shared *sh,
		       uint32_t timeout_ms, struct ks_conn_info **out, size_t *nout,
		       unsigned *missing)
{
	struct timespec deadline;
	struct ks_conn_info *all = NULL;
	size_t total = 0;
	uint64_t *want = calloc(n ? n : 1, sizeof(*want));
	int rc = 0;

	*out = NULL;
	*nout = 0;
	*missing = 0;
	if (!want)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		want[i] =
		    atomic_fetch_add_explicit(&workers[i].list_req, 1, memory_order_acq_rel) + 1;
		ks_worker_wake(&workers[i]);
	}
	deadline = ks_realtime_after_ms(timeout_ms);
	pthread_mutex_lock(&sh->list_mu);
	for (unsigned i = 0; i < n; i++)
		while (workers[i].list_done < want[i] &&
		       pthread_cond_timedwait(&sh->list_cv, &sh->list_mu, &deadline) == 0)
			;
	for (unsigned i = 0; i < n; i++)
		if (workers[i].list_done >= want[i])
			total += workers[i].list_n;
	if (total && !(all = calloc(total, sizeof(*all))))
		rc = -ENOMEM;
	total = 0;
	for (unsigned i = 0; i < n; i++) {
		struct ks_worker *wk = &workers[i];

		if (wk->list_done < want[i]) {
			(*missing)++;
			continue;
		}
		if (all && wk->list_n)
			memcpy(&all[total], wk->list_out, wk->list_n * sizeof(*all));
		if (all) {
			total += wk->list_n;
			free(wk->list_out); /* the peer_id strings moved to all */
		} else {
			ks_conn_info_free(wk->list_out, wk->list_n);
		}
		wk->list_out = NULL;
		wk->list_n = 0;
	}
	pthread_mutex_unlock(&sh->list_mu);
	free(want);
	*out = all;
	*nout = total;
	return rc;
}

/*
 * A burst of handshakes leaves the heap at its peak (OpenSSL's per-handshake
 * state, freed at the kernel hand-off), and glibc keeps those pages. Once the
 * burst is over, hand them back, at most once a second.
 */
static void maybe_trim(struct ks_worker *wk)
{
	if (!wk->handshakes_since_trim || !ks_list_empty(&wk->lists[KS_WL_HS_IN]) ||
	    !ks_list_empty(&wk->lists[KS_WL_HS_OUT]) || wk->now_ms - wk->last_trim_ms < 1000)
		return;
	malloc_trim(0);
	wk->handshakes_since_trim = 0;
	wk->last_trim_ms = wk->now_ms;
}

static int setup(struct ks_worker *wk)
{
	const struct ks_dp_config *cfg = wk->sh->cfg;
	int rc;

	ks_pipes_init(&wk->pipes, (cfg->max_pipes + cfg->workers - 1) / cfg->workers);
	rc = ks_loop_init(&wk->loop, cfg->io, &wk->fallback_reason, &wk->fallback_err);
	if (rc < 0) {
		snprintf(wk->init_err, sizeof(wk->init_err), "cannot create %s event loop: %s",
			 cfg->io == KS_IO_URING ? "io_uring" : "an", strerror(-rc));
		return rc;
	}
	wk->backend = ks_loop_backend(&wk->loop);
	ks_adm_init(&wk->adm, &wk->sh->adm);
	/* The loop refreshes now_ms after each wait, before callbacks run: a
	 * handshake deadline counted from a clock taken before a wait of up to
	 * a tick could be over on arrival. */
	wk->loop.clock = &wk->now_ms;
	wk->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wk->wake_fd < 0) {
		rc = -errno;
		snprintf(wk->init_err, sizeof(wk->init_err), "eventfd: %s", strerror(errno));
		return rc;
	}
	if ((rc = ks_loop_add(&wk->loop, &wk->wake_w, wk->wake_fd, on_wake, wk)) < 0 ||
	    (rc = ks_loop_want(&wk->loop, &wk->wake_w, KS_EV_IN)) < 0) {
		snprintf(wk->init_err, sizeof(wk->init_err), "event loop: %s", strerror(-rc));
		return rc;
	}
	wk->listeners = calloc(cfg->nroutes, sizeof(*wk->listeners));
	if (!wk->listeners)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		struct ks_listener *ls = &wk->listeners[i];

		ls->wk = wk;
		ls->route = &cfg->routes[i];
		/* Our own descriptor of the shared listener: closing it (a
		 * drain) leaves the other workers' untouched. */
		ls->fd = fcntl(wk->sh->listen_fds[i], F_DUPFD_CLOEXEC, 0);
		if (ls->fd < 0) {
			rc = -errno;
			snprintf(wk->init_err, sizeof(wk->init_err),
				 "cannot share the listener on %s: %s", ls->route->listen_str,
				 strerror(-rc));
			return rc;
		}
		wk->nlisteners++;
		if (ls->route->dir == KS_INBOUND && !wk->inbound_open) {
			wk->inbound_open = true;
			atomic_fetch_add_explicit(&wk->sh->inbound_listening, 1,
						  memory_order_relaxed);
		}
		/* One worker is woken per connection, not all of them
		 * (EPOLLEXCLUSIVE; io_uring's poll honours it too). */
		ls->w.exclusive = 1;
		if ((rc = ks_loop_add(&wk->loop, &ls->w, ls->fd, on_accept, ls)) < 0 ||
		    (rc = ks_loop_want(&wk->loop, &ls->w, KS_EV_IN)) < 0) {
			snprintf(wk->init_err, sizeof(wk->init_err), "event loop: %s",
				 strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void teardown(struct ks_worker *wk)
{
	for (int i = 0; i < KS_WL__COUNT; i++)
		while (wk->lists[i].next && !ks_list_empty(&wk->lists[i]))
			ks_conn_destroy(ks_conn_of(wk->lists[i].next), KS_CLOSE_SHUTDOWN);
	/* wake_fd outlives us (join closes it), but no answer may land in it
	 * once the number can be reused. */
	ks_resolver_forget(wk->sh->res, wk->wake_fd);
	close_listeners(wk, true, KS_INBOUND);
	wk->nlisteners = 0;
	free(wk->listeners);
	wk->listeners = NULL;
	/* wake_fd stays open until join: the main thread may still write to it. */
	ks_loop_del(&wk->loop, &wk->wake_w);
	/* One last turn lets io_uring process the poll removals we queued. */
	if (wk->loop.ops)
		ks_loop_run_once(&wk->loop, 0);
	ks_loop_fini(&wk->loop);
	ks_buf_pool_fini(wk);
	ks_pipes_fini(&wk->pipes);
	ks_identity_put(wk->ident);
	wk->ident = NULL;
	pthread_mutex_lock(&wk->sh->list_mu);
	ks_conn_info_free(wk->list_out, wk->list_n);
	wk->list_out = NULL;
	wk->list_n = 0;
	wk->list_done = UINT64_MAX; /* nobody waits on a worker that has left */
	pthread_cond_broadcast(&wk->sh->list_cv);
	pthread_mutex_unlock(&wk->sh->list_mu);
}

/*
 * Test seam, never set in production (the daemon warns when it is): while
 * the file sh->test_stall_file exists, worker 0's loop does not turn, as a
 * worker stuck in a callback would not. /live must notice (admin/admin.h).
 */
static void test_stall(struct ks_worker *wk)
{
	while (access(wk->sh->test_stall_file, F_OK) == 0 &&
	       !atomic_load_explicit(&wk->sh->stop, memory_order_acquire))
		usleep(50 * 1000);
	wk->now_ms = ks_mono_ms();
}

/* Start-up hand-shake with the main thread: it waits for every worker's setup. */
static pthread_mutex_t ks_start_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ks_start_cv = PTHREAD_COND_INITIALIZER;
static unsigned ks_started;

static void *worker_main(void *arg)
{
	struct ks_worker *wk = arg;
	int rc;

	wk->now_ms = ks_mono_ms();
	rc = setup(wk);
	pthread_mutex_lock(&ks_start_mu);
	wk->init_rc = rc;
	ks_started++;
	pthread_cond_broadcast(&ks_start_cv);
	pthread_mutex_unlock(&ks_start_mu);
	if (rc < 0) {
		teardown(wk);
		atomic_fetch_sub_explicit(&wk->sh->running, 1, memory_order_release);
		return NULL;
	}
	while (!atomic_load_explicit(&wk->sh->stop, memory_order_acquire)) {
		uint32_t held;
		int timeout;

		wk->now_ms = ks_mono_ms();
		if (wk->sh->test_stall_file && wk->idx == 0)
			test_stall(wk);
		atomic_store_explicit(&wk->stats.heartbeat_ms, wk->now_ms, memory_order_relaxed);
		if (drain_done(wk))
			break;
		sweep_revoked(wk);
		serve_list(wk);
		timeout = expire(wk);
		maybe_trim(wk); /* expire() wakes us at least once a second */
		if (wk->draining && timeout > 100)
			timeout = 100; /* notice the drain's times in time */
		held = ks_worker_nconns(wk);
		rc = ks_loop_run_once(&wk->loop, timeout < 0 ? 0 : timeout);
		/* now_ms is the time the wait ended, when the callbacks ran: a
		 * connection that closed in them was held until then. */
		if (held || ks_worker_nconns(wk))
			wk->busy_ms = wk->now_ms;
		if (rc < 0) {
			ks_error("event=loop_failed worker=%u backend=%s detail=\"%s\"", wk->idx,
				 wk->backend, strerror(-rc));
			break;
		}
	}
	teardown(wk);
	atomic_fetch_sub_explicit(&wk->sh->running, 1, memory_order_release);
	return NULL;
}

/*
 * What maybe_trim() gives back must stay given back. With transparent huge
 * pages in "always" mode (the default of Debian's kernels, among others),
 * khugepaged collapses every 2 MiB of a worker's heap that still holds one
 * page in use back into a huge page: max_ptes_none is 511 by default, so one
 * present page of 512 is enough (Documentation/admin-guide/mm/transhuge.rst).
 * After a burst of handshakes the heap is that: a few live objects per page
 * amid freed OpenSSL state. Measured in the VM on 6.12 with 1,000 idle kTLS
 * connections (tests/bench/vm-idle-mem.sh): 1.3 MiB of the heap in use,
 * 8 MiB of AnonHugePages, RSS back up to 9.5 MiB within seconds of each
 * trim. A proxy's small heap gains nothing from huge pages: opt out, for the
 * whole process (prctl(2) PR_SET_THP_DISABLE, Linux 3.15).
 */
static void no_huge_pages(void)
{
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0)
		ks_warn("event=thp_disable_failed detail=\"prctl(PR_SET_THP_DISABLE): %s: freed "
			"heap pages may come back as huge pages\"",
			strerror(errno));
}

int ks_worker_start(struct ks_worker *wk, unsigned idx, struct ks_shared *sh)
{
	static pthread_once_t thp_once = PTHREAD_ONCE_INIT;
	int rc;

	pthread_once(&thp_once, no_huge_pages);

	memset(wk, 0, sizeof(*wk));
	wk->idx = idx;
	wk->sh = sh;
	wk->wake_fd = -1;
	for (int i = 0; i < KS_WL__COUNT; i++)
		ks_list_init(&wk->lists[i]);
	ks_list_init(&wk->resolving);
	atomic_fetch_add_explicit(&sh->running, 1, memory_order_relaxed);
	rc = pthread_create(&wk->thread, NULL, worker_main, wk);
	if (rc != 0) {
		atomic_fetch_sub_explicit(&sh->running, 1, memory_order_relaxed);
		return -rc;
	}
	/* Wait until this worker has set up (or failed to). */
	pthread_mutex_lock(&ks_start_mu);
	while (ks_started < idx + 1)
		pthread_cond_wait(&ks_start_cv, &ks_start_mu);
	pthread_mutex_unlock(&ks_start_mu);
	return wk->init_rc;
}

void ks_worker_wake(struct ks_worker *wk)
{
	uint64_t one = 1;

	if (wk->wake_fd >= 0 && write(wk->wake_fd, &one, sizeof(one)) < 0)
		ks_warn("event=wake_failed worker=%u detail=\"%s\"", wk->idx, strerror(errno));
}

int ks_worker_join(struct ks_worker *wk)
{
	int rc = pthread_join(wk->thread, NULL);

	if (wk->wake_fd >= 0)
		close(wk->wake_fd);
	wk->wake_fd = -1;
	return -rc;
}

void ks_worker_totals(const struct ks_worker *workers, unsigned n, const struct ks_shared *sh,
		      struct ks_totals *t)
{
	memset(t, 0, sizeof(*t));
	for (unsigned i = 0; i < n; i++) {
		for (int p = 0; p < KS_RL__COUNT; p++) {
			t->conns[p] +=
			    atomic_load_explicit(&workers[i].path[p].conns, memory_order_relaxed);
			t->bytes[p] +=
			    atomic_load_explicit(&workers[i].path[p].bytes, memory_order_relaxed);
			t->ubytes[p] +=
			    atomic_load_explicit(&workers[i].path[p].ubytes, memory_order_relaxed);
		}
		t->rejected += atomic_load_explicit(&workers[i].rejected, memory_order_relaxed);
		for (int r = 0; r < KS_REJ__COUNT; r++)
			t->rejected_by[r] +=
			    atomic_load_explicit(&workers[i].rejected_by[r], memory_order_relaxed);
		for (int r = 0; r < KS_ADM__COUNT; r++)
			t->admission[r] +=
			    atomic_load_explicit(&workers[i].adm.counts[r], memory_order_relaxed);
	}
	t->open = atomic_load_explicit(&sh->nconns, memory_order_relaxed);
}

static unsigned long long per_mib(uint64_t part, uint64_t whole)
{
	return whole ? (unsigned long long)(part * 1048576 / whole) : 0;
}

void ks_worker_log_status(const struct ks_worker *workers, unsigned n, const struct ks_shared *sh)
{
	struct ks_totals t;

	ks_worker_totals(workers, n, sh, &t);
	/* Bytes through userspace per MiB forwarded, per record layer: the
	 * zero-copy figure (closed connections only). */
	ks_info("event=status open_connections=%u rejected=%llu "
		"kernel_conns=%llu kernel_bytes=%llu kernel_userspace_bytes=%llu "
		"kernel_userspace_bytes_per_mib=%llu "
		"userspace_conns=%llu userspace_bytes=%llu userspace_userspace_bytes=%llu "
		"userspace_userspace_bytes_per_mib=%llu plaintext_conns=%llu plaintext_bytes=%llu "
		"shed_max_handshakes=%llu refused_max_connections=%llu "
		"refused_max_handshakes_per_source=%llu accept_failed=%llu",
		t.open, (unsigned long long)t.rejected, (unsigned long long)t.conns[KS_RL_KERNEL],
		(unsigned long long)t.bytes[KS_RL_KERNEL],
		(unsigned long long)t.ubytes[KS_RL_KERNEL],
		per_mib(t.ubytes[KS_RL_KERNEL], t.bytes[KS_RL_KERNEL]),
		(unsigned long long)t.conns[KS_RL_USERSPACE],
		(unsigned long long)t.bytes[KS_RL_USERSPACE],
		(unsigned long long)t.ubytes[KS_RL_USERSPACE],
		per_mib(t.ubytes[KS_RL_USERSPACE], t.bytes[KS_RL_USERSPACE]),
		(unsigned long long)t.conns[KS_RL_PLAINTEXT],
		(unsigned long long)t.bytes[KS_RL_PLAINTEXT],
		(unsigned long long)t.admission[KS_ADM_SHED_HANDSHAKES],
		(unsigned long long)t.admission[KS_ADM_REFUSED_CONNECTIONS],
		(unsigned long long)t.admission[KS_ADM_REFUSED_SOURCE],
		(unsigned long long)t.admission[KS_ADM_ACCEPT_FAILED]);
}
