/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktls-sidecar: process start-up, signals and identity reload.
 *
 * Threading model: the main thread owns configuration and signals and never
 * touches a connection. N worker threads (dataplane/worker.c) own everything
 * on the data path. The only state they share is struct ks_shared: the
 * immutable config, the identity slot (an atomic hand-off, tls/identity.h)
 * and atomic counters. The control thread (control/control.h) serves the
 * control API and reaches the workers only through those same hand-offs.
 *
 * Drain model: every drain starts in drain_begin(), on whichever thread
 * asks: the main thread for SIGTERM, the control thread for a control Drain
 * (ks_ctl_env.drain) or the admin endpoint's POST /drain (admin_drain).
 * It sets the drain's times and sh->drain with atomics and wakes the
 * workers through their eventfds; a compare-and-swap of the drain's source
 * lets only the first request start one. No signal is sent: a drain
 * started by the API is not a SIGTERM, so the kubelet's SIGTERM that follows it finds a drain
 * running and changes nothing. The main thread waits for signals with sigtimedwait(2) and a
 * KS_MAIN_TICK_MS tick (wait_turn), and on every turn looks at sh->drain: serving, it then goes on
 * to wait for the workers to leave. A drain requested between two turns is under way at once (the
 * workers act on it); the main thread only notices it up to a tick later.
 *
 * Reload model: SIGHUP (here) and the control API (control/update.c) build
 * a complete new identity off to the side and publish it with one pointer
 * swap; connections keep the identity they started with.
 *
 * File watch (--identity-watch, common/filewatch.h): the main thread owns
 * the inotify descriptor and polls it on every wait_turn, so a change is
 * taken through the very path SIGHUP takes (files_apply), on the same
 * thread: the two never run at once, and neither waits for the other. Not
 * the control thread: it exists only with a control socket or an admin
 * endpoint, and it serves requests that should not wait behind file reads
 * and SSL_CTX builds. The tick (KS_MAIN_TICK_MS) adds at most that much to
 * the settle; rotations come hours apart.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "admin/admin.h"
#include "common/clock.h"
#include "common/filewatch.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "control/control.h"
#include "daemon/config.h"
#include "daemon/cpus.h"
#include "daemon/descriptors.h"
#include "daemon/expiry.h"
#include "daemon/redirect_check.h"
#include "dataplane/offload.h"
#include "dataplane/worker.h"
#include "tls/handshake.h"
#include "tls/identity.h"
#include "tls/resume.h"
#include "wapi/wapi.h"

extern char **environ;

/* --redirect-check: how long the probe may take (TCG VMs are slow). */
#define KS_REDIRECT_CHECK_MS 5000

/* The main thread's wait for a signal, and how late it notices a drain
 * requested by another thread (the drain itself starts at once). */
#define KS_MAIN_TICK_MS 100
/* wait_turn checks expiry every tick, so never later than expiry.h asks. */
_Static_assert(KS_MAIN_TICK_MS <= KS_EXPIRY_POLL_MS, "the tick outwaits expiry checks");

/*
 * The file watch. A change is reported once the files have been quiet for
 * KS_IDWATCH_SETTLE_MS (one writer's files land together, as a ..data swap
 * or within a few milliseconds). A set that does not load then, a key
 * written before its certificate, a PEM cut short, is tried again every
 * KS_IDWATCH_RETRY_MS for KS_IDWATCH_GIVE_UP_MS: a writer that is half way
 * through finishes well within that, and its next write is a change of its
 * own anyway. Only a set still rejected at the end is logged and counted,
 * and a rejection for the same reason as the last is not again until a set
 * has loaded.
 */
#define KS_IDWATCH_SETTLE_MS  200
#define KS_IDWATCH_RETRY_MS   250
#define KS_IDWATCH_GIVE_UP_MS 2000
/* Watch errors (reading the inotify descriptor) log at most this often. A
 * rejected set needs no limit of its own: it logs once per change, and a
 * change takes KS_IDWATCH_GIVE_UP_MS to be given up on. */
#define KS_IDWATCH_LOG_MS 10000

struct ks_idwatch {
	struct ks_filewatch *fw; /* NULL: not watching */
	bool trying;		 /* a change not yet applied or given up on */
	uint64_t since_ms;	 /* when that change was reported */
	uint64_t next_ms;	 /* the next try */
	struct ks_ratelimit error_rl;
	/* Why the last set given up on was rejected, until a set loads: the
	 * same rejection again (the writer's trailing events, such as a swap's
	 * old directory removed a moment later) is not logged twice. */
	char rejected[512];
};

/* Everything main starts, so that one stop path tears it all down. */
struct ks_daemon {
	struct ks_config cfg;
	struct ks_shared sh;
	bool sh_ready;
	struct ks_worker *workers;
	unsigned started;
	struct ks_control *ctl;
	struct ks_wapi *wapi; /* --workload-api: its own thread (wapi/wapi.h) */
	struct ks_admin *admin;
	int *listen_fds; /* one per route, until every worker has its dup(2) */
	size_t nlisten;
	struct ks_expiry expiry;   /* certificate expiry warnings (daemon/expiry.h) */
	struct ks_idwatch idwatch; /* the main thread's */
	/* --session-resumption: ticket keys and client tickets, shared by the
	 * workers (tls/resume.h), alive from before the first identity to
	 * after the last worker. */
	struct ks_resumption res;
	bool res_ready;
	/* Who began the drain ("SIGTERM", "control"; static), set once by the
	 * first drain_begin(): NULL while none has. Later requests are answers. */
	_Atomic(const char *) drain_source;
};

/* The one daemon: the drain callback reaches it from any thread. */
static struct ks_daemon the_daemon;

/*
 * `ktls-sidecar redirect ARGS...` is `ktls-redirect ARGS...`: the privileged
 * loader is a binary of its own (no libbpf in the daemon), found next to
 * this one, or else on PATH.
 */
static int exec_redirect(char **argv)
{
	char self[PATH_MAX], path[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	argv[0] = (char *)"ktls-redirect";
	if (n > 0) {
		char *slash;

		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(path, sizeof(path), "%s/ktls-redirect", self);
			execv(path, argv);
		}
	}
	execvp("ktls-redirect", argv);
	fprintf(stderr,
		"ktls-sidecar: cannot run ktls-redirect (next to this binary or on PATH): %s\n",
		strerror(errno));
	return 1;
}

/* source: what reloaded it (sighup, files), or NULL at start-up. */
static void log_identity(const char *event, const char *source, const struct ks_identity *id)
{
	if (!id->leaf) {
		ks_warn("event=%s identity=none reason=\"waiting for %s; connections are "
			"refused until then\"",
			event,
			the_daemon.cfg.workload_api ? "the Workload API's first SVID"
						    : "the control plane (SetIdentity)");
		return;
	}
	struct ks_log_field f;

	char fed[512] = "";
	size_t off = 0;

	/* The federated trust domains, so a log says who can get in at all. */
	for (size_t i = 0; i < id->nfed && off < sizeof(fed); i++)
		off += (size_t)snprintf(fed + off, sizeof(fed) - off, "%s%s", i ? "," : "",
					id->fed[i].td);
	ks_info("event=%s%s%s id=%s trust_domain=%s federated=%s serial=%s not_after=%s", event,
		source ? " source=" : "", source ? source : "", ks_log_field(&f, id->id),
		id->trust_domain, id->nfed ? fed : "none", id->serial, id->not_after);
}

static bool same_certs(STACK_OF(X509) * a, STACK_OF(X509) * b)
{
	int n = a ? sk_X509_num(a) : 0;

	if (n != (b ? sk_X509_num(b) : 0))
		return false;
	for (int i = 0; i < n; i++)
		if (X509_cmp(sk_X509_value(a, i), sk_X509_value(b, i)) != 0)
			return false;
	return true;
}

/* Whether b was loaded from the same files' content as a. */
static bool same_files(const struct ks_identity *a, const struct ks_identity *b)
{
	if (!a->leaf || !b->leaf || X509_cmp(a->leaf, b->leaf) != 0 ||
	    EVP_PKEY_eq(a->key, b->key) != 1 || !same_certs(a->chain, b->chain) ||
	    !same_certs(a->bundle, b->bundle) || a->nfed != b->nfed)
		return false;
	for (size_t i = 0; i < a->nfed; i++)
		if (strcmp(a->fed[i].td, b->fed[i].td) != 0 ||
		    !same_certs(a->fed[i].certs, b->fed[i].certs))
			return false;
	return true;
}

/*
 * The one validated path for the files, SIGHUP's and the watch's: loads
 * --cert/--key/--ca and the --federated-ca files, keeping the CRLs and
 * policy now in force, and publishes the result. Returns 1 when published
 * (logged), 0 when skip_same and the files hold what is in force already
 * (nothing done: the watch sees the kubelet delete the old directory after
 * a swap it has applied), or -errno with err and kept (the serial that stays).
 */
static int files_apply(struct ks_daemon *d, const char *source, bool skip_same, char *err,
		       size_t errlen, char *kept, size_t keptlen)
{
	const struct ks_tls_opts *t = &d->cfg.tls;
	struct ks_identity *id, *cur;
	int rc;

	pthread_mutex_lock(&d->sh.ident.update_mu);
	cur = ks_identity_slot_get(&d->sh.ident, NULL);
	rc = ks_identity_load(t, &d->cfg.policy, cur, &id, err, errlen);
	snprintf(kept, keptlen, "%s", cur->leaf ? cur->serial : "none");
	if (rc == 0 && skip_same && same_files(cur, id)) {
		ks_identity_put(id);
	} else if (rc == 0) {
		ks_identity_slot_publish(&d->sh.ident, id);
		d->idwatch.rejected[0] = '\0'; /* a new rejection is news again */
		log_identity("identity_reloaded", source, id);
		rc = 1;
	}
	ks_identity_put(cur);
	pthread_mutex_unlock(&d->sh.ident.update_mu);
	return rc;
}

/* SIGHUP: reload the files, keeping the CRLs and policy now in force. */
static void reload_identity(struct ks_daemon *d)
{
	const struct ks_tls_opts *t = &d->cfg.tls;
	char err[512], clean[512], kept[80];
	int rc;

	if (!t->cert && !t->nfed) {
		ks_warn("event=identity_reload_skipped reason=\"no --cert/--key/--ca and no "
			"--federated-ca: the identity comes from %s\"",
			d->cfg.workload_api ? "the Workload API" : "the control plane");
		return;
	}
	rc = files_apply(d, "sighup", false, err, sizeof(err), kept, sizeof(kept));
	ks_identity_slot_count(&d->sh.ident, KS_IDSRC_FILE, rc >= 0);
	if (rc < 0)
		ks_error("event=identity_reload_rejected source=sighup cert=%s key=%s ca=%s "
			 "reason=\"%s\" kept_serial=%s",
			 t->cert, t->key, t->ca, ks_log_clean(clean, sizeof(clean), err), kept);
}

/* --identity-watch: the files of the identity, watched from the main thread. */
static int idwatch_open(struct ks_daemon *d)
{
	const struct ks_tls_opts *t = &d->cfg.tls;
	const char **paths;
	char err[512], clean[512];
	size_t n = 0;
	int rc;

	if (!d->cfg.identity_watch || (!t->cert && !t->nfed))
		return 0;
	paths = calloc(3 + t->nfed, sizeof(*paths));
	if (!paths) {
		ks_error("event=start_failed reason=\"out of memory\"");
		return -ENOMEM;
	}
	if (t->cert) {
		paths[n++] = t->cert;
		paths[n++] = t->key;
		paths[n++] = t->ca;
	}
	for (size_t i = 0; i < t->nfed; i++)
		paths[n++] = t->fed[i].path;
	rc = ks_filewatch_open(paths, n, KS_IDWATCH_SETTLE_MS, &d->idwatch.fw, err, sizeof(err));
	free(paths);
	if (rc < 0) {
		ks_error("event=start_failed identity_watch=on reason=\"%s; --identity-watch off "
			 "reloads on SIGHUP only\"",
			 ks_log_clean(clean, sizeof(clean), err));
		return rc;
	}
	ks_info("event=identity_watch files=%zu settle_ms=%u retry_ms=%u give_up_ms=%u", n,
		KS_IDWATCH_SETTLE_MS, KS_IDWATCH_RETRY_MS, KS_IDWATCH_GIVE_UP_MS);
	return 0;
}

/*
 * Every tick: a settled change starts a round of tries; a try that loads
 * ends it (published, or the same as in force), and so does
 * KS_IDWATCH_GIVE_UP_MS of failures, which is logged and counted once. A
 * half-written set that completes in time is neither.
 */
static void idwatch_tick(struct ks_daemon *d, uint64_t now)
{
	struct ks_idwatch *w = &d->idwatch;
	const struct ks_tls_opts *t = &d->cfg.tls;
	char err[512], clean[512], kept[80];
	uint64_t suppressed;
	int rc;

	if (!w->fw)
		return;
	rc = ks_filewatch_poll(w->fw, now, err, sizeof(err));
	if (rc < 0 && ks_ratelimit_ok(&w->error_rl, now, KS_IDWATCH_LOG_MS, &suppressed))
		ks_warn("event=identity_watch_error reason=\"%s\" suppressed=%llu",
			ks_log_clean(clean, sizeof(clean), err), (unsigned long long)suppressed);
	if (rc == 1) {
		/* A new change restarts the round: its writer may be mid-way. */
		w->trying = true;
		w->since_ms = now;
		w->next_ms = now;
	}
	if (!w->trying || now < w->next_ms)
		return;
	rc = files_apply(d, "files", true, err, sizeof(err), kept, sizeof(kept));
	if (rc >= 0) {
		w->trying = false;
		w->rejected[0] = '\0';
		if (rc == 1)
			ks_identity_slot_count(&d->sh.ident, KS_IDSRC_FILES, true);
		return;
	}
	if (now - w->since_ms < KS_IDWATCH_GIVE_UP_MS) {
		w->next_ms = now + KS_IDWATCH_RETRY_MS;
		return;
	}
	w->trying = false;
	if (strcmp(w->rejected, err) == 0) {
		ks_debug("event=identity_reload_rejected source=files repeated=1 reason=\"%s\"",
			 ks_log_clean(clean, sizeof(clean), err));
		return;
	}
	snprintf(w->rejected, sizeof(w->rejected), "%s", err);
	ks_identity_slot_count(&d->sh.ident, KS_IDSRC_FILES, false);
	ks_error("event=identity_reload_rejected source=files cert=%s key=%s ca=%s reason=\"%s\" "
		 "retried_ms=%llu kept_serial=%s",
		 t->cert ? t->cert : "none", t->key ? t->key : "none", t->ca ? t->ca : "none",
		 ks_log_clean(clean, sizeof(clean), err), (unsigned long long)(now - w->since_ms),
		 kept);
}

/*
 * Starts a drain (README, "Stopping"): sh->drain at once, so readiness
 * fails; inbound listeners close after the drain delay; outbound ones stay
 * until the app is done with them; all ends at the deadline. Any thread;
 * returns 0, or 1 when a drain had begun already (it keeps its times).
 * timeout_ms 0: --drain-timeout. The delay counts inside the timeout, so a
 * shorter timeout asked for here shortens it too.
 */
static int drain_begin(struct ks_daemon *d, const char *source, uint32_t timeout_ms)
{
	struct ks_shared *sh = &d->sh;
	uint32_t timeout = timeout_ms ? timeout_ms : d->cfg.dp.drain_timeout_ms;
	uint32_t delay = d->cfg.dp.drain_delay_ms < timeout ? d->cfg.dp.drain_delay_ms : timeout;
	uint64_t now = ks_mono_ms();
	const char *none = NULL;

	if (!atomic_compare_exchange_strong(&d->drain_source, &none, source))
		return 1;
	atomic_store_explicit(&sh->drain_deadline_ms, now + timeout, memory_order_relaxed);
	atomic_store_explicit(&sh->drain_inbound_close_ms, now + delay, memory_order_relaxed);
	atomic_store_explicit(&sh->drain, true, memory_order_release);
	for (unsigned i = 0; i < d->started; i++)
		ks_worker_wake(&d->workers[i]);
	ks_info("event=draining source=%s timeout_ms=%u delay_ms=%u quiet_ms=%u connections=%u",
		source, timeout, delay, d->cfg.dp.drain_quiet_ms, atomic_load(&sh->nconns));
	return 0;
}

/*
 * One turn of the main thread's wait: a signal, or 0 after KS_MAIN_TICK_MS.
 * Serving and draining both wait here, so work for every tick goes here.
 */
static int wait_turn(struct ks_daemon *d, const sigset_t *set)
{
	struct timespec tick = {.tv_sec = 0, .tv_nsec = KS_MAIN_TICK_MS * 1000000L};
	int sig;

	/*
	 * Certificate expiry (daemon/expiry.h): cheap when nothing is due (an
	 * atomic load and time(2)). What it returns, the wait until the next
	 * check is due, is never shorter than this tick (whole seconds, at most
	 * KS_EXPIRY_POLL_MS), and waiting it out here would notice a reloaded
	 * identity up to a second late instead of a tick.
	 */
	(void)ks_expiry_tick(&d->expiry, &d->sh.ident);
	idwatch_tick(d, ks_mono_ms());
	sig = sigtimedwait(set, NULL, &tick);
	return sig > 0 ? sig : 0;
}

/* SIGHUP and SIGUSR1 mean the same serving or draining; true if sig was one. */
static bool common_signal(struct ks_daemon *d, int sig)
{
	if (sig == SIGHUP)
		reload_identity(d);
	else if (sig == SIGUSR1)
		ks_worker_log_status(d->workers, d->started, &d->sh);
	else
		return false;
	return true;
}

/*
 * A SIGTERM while a drain runs is the kubelet's, after a preStop hook or the
 * app asked for this drain: it is logged and changes nothing.
 */
static void sigterm_ignored(struct ks_daemon *d)
{
	ks_info("event=drain_signal_ignored signal=SIGTERM source=%s connections=%u "
		"reason=\"a drain is running; SIGINT stops at once\"",
		atomic_load(&d->drain_source), atomic_load(&d->sh.nconns));
}

/* Waits until every worker has left (the drain is over: true) or SIGINT (false). */
static bool drain_wait(struct ks_daemon *d, const sigset_t *set)
{
	struct ks_shared *sh = &d->sh;
	int sig;

	while (atomic_load_explicit(&sh->running, memory_order_acquire) > 0) {
		sig = wait_turn(d, set);
		if (!sig || common_signal(d, sig))
			continue;
		if (sig == SIGTERM) {
			sigterm_ignored(d);
			continue;
		}
		ks_warn("event=drain_aborted signal=SIGINT connections=%u",
			atomic_load(&sh->nconns));
		return false;
	}
	ks_info("event=drained");
	return true;
}

/*
 * The control API's Drain, and any other thread's (an admin endpoint): the
 * same drain as SIGTERM's, started here, without a signal.
 */
static int control_drain(struct ks_ctl_env *env, uint32_t timeout_ms)
{
	(void)env;
	ks_info("event=drain_requested source=control timeout_ms=%u", timeout_ms);
	return drain_begin(&the_daemon, "control", timeout_ms);
}

/* POST /drain or /quitquitquit (the admin endpoint, on the control thread). */
static int admin_drain(void *arg)
{
	ks_info("event=drain_requested source=admin");
	return drain_begin(arg, "admin", 0);
}

/*
 * --admin: bound before the workers start, so a taken port fails start-up
 * at once. Served from start_control's thread.
 */
static int open_admin(struct ks_daemon *d)
{
	struct ks_admin_src src = {.sh = &d->sh,
				   .dp = &d->cfg.dp,
				   .redirect_check = d->cfg.redirect_check,
				   .tickets = d->cfg.tls.res ? &d->cfg.tls.res->ring : NULL,
				   .stall_ms = d->cfg.stall_timeout_ms,
				   .drain = admin_drain,
				   .drain_arg = d};
	char err[512], clean[512];
	int rc;

	if (!d->cfg.admin)
		return 0;
	rc = ks_admin_open(d->cfg.admin, &src, &d->admin, err, sizeof(err));
	if (rc < 0)
		ks_error("event=start_failed admin=%s reason=\"%s\"", d->cfg.admin,
			 ks_log_clean(clean, sizeof(clean), err));
	return rc;
}

/* The identity to start with: the files, or none until the control plane pushes one. */
static int first_identity(struct ks_config *cfg, struct ks_identity **id)
{
	struct ks_ident_parts none = {.pol = &cfg->policy};
	enum ks_ident_reason reason;
	char err[512], clean[512];
	int rc;

	if (cfg->tls.cert || cfg->tls.nfed)
		rc = ks_identity_load(&cfg->tls, &cfg->policy, NULL, id, err, sizeof(err));
	else
		rc = ks_identity_build(&cfg->tls, &none, id, &reason, err, sizeof(err));
	if (rc < 0)
		ks_error("event=start_failed cert=%s key=%s ca=%s reason=\"%s\"", cfg->tls.cert,
			 cfg->tls.key, cfg->tls.ca, ks_log_clean(clean, sizeof(clean), err));
	return rc;
}

/*
 * Whether an IPv4 route listens on r's port too. A dual-stack IPv6 socket
 * ([::] without IPV6_V6ONLY, ipv6(7)) holds the IPv4 port as well, so the
 * IPv4 route could not bind it: r must then be IPv6 only. The BPF inbound
 * redirect needs just that, one listener per family on the inbound port
 * (its sockmap has a slot for each).
 */
static bool v4_route_on_port(const struct ks_dp_config *dp, const struct ks_route *r)
{
	uint16_t port = ks_addr_port(&r->listen);

	if (r->listen.ss.ss_family != AF_INET6 || port == 0)
		return false;
	for (size_t i = 0; i < dp->nroutes; i++)
		if (dp->routes[i].listen.ss.ss_family == AF_INET &&
		    ks_addr_port(&dp->routes[i].listen) == port)
			return true;
	return false;
}

/*
 * A port held by a process that has just been killed can stay taken for a
 * moment after wait(2) returns (seen in CI: a restart onto the same port
 * failed once in a few hundred). The likely holder is the dead process's
 * io_uring, whose pending polls keep the listening socket until the ring
 * is torn down asynchronously (io_uring/io_uring.c, io_ring_exit_work).
 * With SO_REUSEPORT the new process bound beside it; now it cannot, and a
 * container restarted in the same pod, whose network namespace outlives
 * it, would fail for nothing. So EADDRINUSE is retried for up to
 * KS_LISTEN_RETRY_MS before it is an error.
 */
#define KS_LISTEN_RETRY_MS 2000

static int listen_retrying(struct ks_route *r, bool v6only)
{
	uint64_t deadline = ks_mono_ms() + KS_LISTEN_RETRY_MS;
	int fd;

	while ((fd = ks_listen(&r->listen, 4096, v6only)) == -EADDRINUSE && ks_mono_ms() < deadline)
		usleep(20000);
	return fd;
}

/*
 * One listener per route, shared by the workers (worker.h, listen_fds). A
 * port 0 becomes the kernel's choice here, before the routes are logged.
 */
static int open_listeners(struct ks_daemon *d)
{
	char err[64];

	d->listen_fds = calloc(d->cfg.dp.nroutes ? d->cfg.dp.nroutes : 1, sizeof(int));
	if (!d->listen_fds)
		return -ENOMEM;
	for (size_t i = 0; i < d->cfg.dp.nroutes; i++) {
		struct ks_route *r = &d->cfg.dp.routes[i];
		int fd = listen_retrying(r, v4_route_on_port(&d->cfg.dp, r));

		if (fd < 0) {
			snprintf(err, sizeof(err), "%s", strerror(-fd));
			ks_error("event=start_failed listen=%s reason=\"cannot listen: %s%s\"",
				 r->listen_str, err,
				 fd == -EADDRINUSE ? " (another process holds the port, or another "
						     "route of ours on an overlapping address)"
						   : "");
			return fd;
		}
		d->listen_fds[d->nlisten++] = fd;
		ks_addr_str((struct sockaddr *)&r->listen.ss, r->listen_str, sizeof(r->listen_str));
	}
	d->sh.listen_fds = d->listen_fds;
	return 0;
}

/* The daemon's copies: the workers hold their own from start-up on. */
static void close_listeners(struct ks_daemon *d)
{
	while (d->nlisten)
		close(d->listen_fds[--d->nlisten]);
	free(d->listen_fds);
	d->listen_fds = NULL;
	d->sh.listen_fds = NULL;
}

static int start_workers(struct ks_daemon *d)
{
	const struct ks_config *cfg = &d->cfg;
	struct ks_worker *w0;

	d->workers = calloc(cfg->dp.workers, sizeof(*d->workers));
	if (!d->workers) {
		ks_error("event=start_failed reason=\"out of memory\"");
		return -ENOMEM;
	}
	for (; d->started < cfg->dp.workers; d->started++) {
		struct ks_worker *wk = &d->workers[d->started];
		int rc = ks_worker_start(wk, d->started, &d->sh);

		if (rc < 0) {
			ks_error("event=start_failed worker=%u reason=\"%s\"", d->started,
				 wk->init_err[0] ? wk->init_err : strerror(-rc));
			d->started++; /* its thread exists and must be joined */
			return rc;
		}
	}
	w0 = &d->workers[0];
	if (w0->fallback_reason)
		ks_warn("event=io_backend backend=%s reason=\"%s: %s\"", w0->backend,
			w0->fallback_reason, strerror(w0->fallback_err));
	else
		ks_info("event=io_backend backend=%s", w0->backend);
	return 0;
}

static int start_control(struct ks_daemon *d)
{
	const struct ks_config *cfg = &d->cfg;
	struct ks_ctl_env env = {.sh = &d->sh,
				 .dp = &cfg->dp,
				 .tls = &cfg->tls,
				 .refuse_unknown_dest =
				     cfg->policy.unknown_dest == KS_UNKNOWN_DEST_REFUSE,
				 .ident = &d->sh.ident,
				 .workers = d->workers,
				 .nworkers = d->started,
				 .drain = control_drain};
	struct ks_ctl_limits limits = {.max_frame = cfg->control_max_frame,
				       .idle_ms = cfg->control_idle_ms};
	struct ks_ctl_service admin = {.attach = ks_admin_attach,
				       .tick = ks_admin_tick,
				       .detach = ks_admin_detach,
				       .arg = d->admin};
	char err[512], clean[512];
	int rc;

	if (!cfg->control_socket && !d->admin)
		return 0;
	if (d->admin)
		ks_admin_set_workers(d->admin, d->workers, d->started);
	rc = ks_control_start(cfg->control_socket, cfg->control_uids, cfg->ncontrol_uids, &limits,
			      &env, d->admin ? &admin : NULL, &d->ctl, err, sizeof(err));
	if (rc < 0) {
		ks_error("event=start_failed control_socket=%s reason=\"%s\"",
			 cfg->control_socket ? cfg->control_socket : "none",
			 ks_log_clean(clean, sizeof(clean), err));
		return rc;
	}
	if (cfg->control_socket)
		ks_info("event=control_api socket=%s max_frame=%u", cfg->control_socket,
			cfg->control_max_frame);
	if (d->admin)
		ks_info("event=admin listen=%s endpoints=\"GET /metrics /ready /live; POST /drain "
			"/quitquitquit (loopback)\"",
			ks_admin_addr(d->admin));
	return 0;
}

/*
 * --workload-api: the client's thread, started once the workers serve, so
 * that the first SVID it applies is taken by the next connection; until
 * then connections are refused and /ready says why.
 */
static int start_wapi(struct ks_daemon *d)
{
	const struct ks_config *cfg = &d->cfg;
	char err[512], clean[512];
	int rc;

	if (!cfg->workload_api)
		return 0;
	rc = ks_wapi_start(cfg->workload_api_path, &cfg->tls, &d->sh.ident, &d->wapi, err,
			   sizeof(err));
	if (rc < 0) {
		ks_error("event=start_failed workload_api=%s reason=\"%s\"", cfg->workload_api_path,
			 ks_log_clean(clean, sizeof(clean), err));
		return rc;
	}
	ks_info("event=workload_api socket=%s from=%s spiffe_id=%s", cfg->workload_api_path,
		cfg->workload_api_env ? "SPIFFE_ENDPOINT_SOCKET" : "--workload-api",
		cfg->tls.spiffe_id ? cfg->tls.spiffe_id : "first");
	return 0;
}

static int check_redirect(struct ks_daemon *d)
{
	char err[512], clean[512];
	int rc;

	if (!d->cfg.redirect_check)
		return 0;
	rc = ks_redirect_check(&d->sh, &d->cfg, KS_REDIRECT_CHECK_MS, err, sizeof(err));
	if (rc < 0)
		ks_error("event=start_failed redirect_check=%s reason=\"%s\"",
			 d->cfg.redirect_check, ks_log_clean(clean, sizeof(clean), err));
	return rc;
}

/* Everything from the first identity to event=ready; 0 or -errno (logged). */
static int start(struct ks_daemon *d)
{
	struct ks_config *cfg = &d->cfg;
	struct ks_identity *id = NULL;
	struct ks_cpus cpus;
	int rc;

	if (!OPENSSL_init_ssl(0, NULL) || ks_handshake_global_init() < 0) {
		ks_error("event=start_failed reason=\"OpenSSL initialisation failed\"");
		return -ENOMEM;
	}
	/* --workers auto (0): the CPUs we may use. Before the descriptor plan,
	 * which counts per worker. */
	ks_cpus_resolve(cfg->dp.workers, &cpus);
	cfg->dp.workers = cpus.count;
	ks_log(cpus.warn ? KS_LOG_WARN : KS_LOG_INFO, "event=workers count=%u %s", cpus.count,
	       cpus.desc);
	if ((rc = ks_descriptors_plan(cfg)) < 0)
		return rc;
	if (cfg->session_resumption) {
		rc = ks_resumption_init(&d->res, cfg->session_lifetime_ms / 1000);
		if (rc < 0) {
			ks_error("event=start_failed reason=\"session resumption: %s\"",
				 strerror(-rc));
			return rc;
		}
		d->res_ready = true;
		cfg->tls.res = &d->res;
	}
	/* Before the first identity: whether the kernel can take the record
	 * layer decides what the outbound side captures (keylog_client). */
	ks_offload_probe(cfg->dp.ktls);
	{
		const char *why;

		cfg->tls.keylog_client = ks_offload_caps(&why) != 0 && cfg->dp.ktls != KS_KTLS_OFF;
	}
	ks_info("event=session_resumption mode=%s lifetime_s=%u",
		cfg->session_resumption ? "on" : "off", cfg->session_lifetime_ms / 1000);
	if ((rc = first_identity(cfg, &id)) < 0)
		return rc;
	if ((rc = ks_shared_init(&d->sh, &cfg->dp)) < 0) {
		ks_error("event=start_failed reason=\"out of memory\"");
		return rc;
	}
	ks_identity_slot_init(&d->sh.ident, id);
	d->sh.accept_hook = cfg->redirect_check ? ks_redirect_probe_take : NULL;
	/* Test seam (worker.c, test_stall): never set in production. */
	d->sh.test_stall_file = getenv("KS_TEST_STALL_FILE");
	if (d->sh.test_stall_file)
		ks_warn("event=test_seam name=KS_TEST_STALL_FILE reason=\"worker 0 stalls while "
			"this file exists: a test build of the environment, not for production\"");
	d->sh_ready = true;
	log_identity("identity_loaded", NULL, id);
	if ((rc = idwatch_open(d)) < 0 || (rc = open_listeners(d)) < 0 || (rc = open_admin(d)) < 0)
		return rc;
	for (size_t i = 0; i < cfg->dp.nroutes; i++) {
		const struct ks_route *r = &cfg->dp.routes[i];
		struct ks_log_field f;

		ks_info("event=route dir=%s listen=%s target=%s expect_id=%s", ks_dir_name(r->dir),
			r->listen_str, r->target_str,
			r->expect_id ? ks_log_field(&f, r->expect_id)
				     : (r->dir == KS_OUTBOUND ? "trust-domain" : "-"));
	}
	rc = start_workers(d);
	/* From here on a drain that closes the workers' copies stops the
	 * kernel from queueing connections nobody will accept. */
	close_listeners(d);
	if (rc == 0)
		rc = start_control(d);
	if (rc == 0)
		rc = start_wapi(d);
	if (rc == 0)
		rc = check_redirect(d);
	if (rc == 0)
		atomic_store_explicit(&d->sh.started, true, memory_order_release);
	if (rc == 0)
		ks_info("event=ready pid=%d workers=%u max_connections=%u handshake_timeout_ms=%u "
			"idle_timeout_ms=%u",
			(int)getpid(), cfg->dp.workers, cfg->dp.max_connections,
			cfg->dp.handshake_timeout_ms, cfg->dp.idle_timeout_ms);
	return rc;
}

static void stop(struct ks_daemon *d)
{
	ks_filewatch_close(d->idwatch.fw);
	d->idwatch.fw = NULL;
	ks_wapi_stop(d->wapi);
	d->wapi = NULL;
	ks_control_stop(d->ctl);
	ks_admin_close(d->admin);
	close_listeners(d);
	if (d->sh_ready) {
		atomic_store_explicit(&d->sh.stop, true, memory_order_release);
		for (unsigned i = 0; i < d->started; i++)
			ks_worker_wake(&d->workers[i]);
		for (unsigned i = 0; i < d->started; i++)
			ks_worker_join(&d->workers[i]);
		ks_identity_slot_fini(&d->sh.ident);
		ks_shared_fini(&d->sh);
	}
	/* After the last identity: every SSL_CTX that pointed at it is gone. */
	if (d->res_ready)
		ks_resumption_fini(&d->res);
	free(d->workers);
}

/*
 * Serves until a drain has begun (SIGTERM here, or a request on another
 * thread): returns true; or until SIGINT: false.
 */
static bool serve(struct ks_daemon *d, const sigset_t *set)
{
	while (!atomic_load_explicit(&d->sh.drain, memory_order_acquire)) {
		int sig = wait_turn(d, set);

		if (!sig || common_signal(d, sig))
			continue;
		if (sig == SIGINT)
			return false;
		/* Another thread may have begun one since this turn began. */
		if (drain_begin(d, "SIGTERM", 0) == 1)
			sigterm_ignored(d);
	}
	return true;
}

int main(int argc, char **argv)
{
	struct ks_daemon *d = &the_daemon;
	char err[512];
	sigset_t set;
	int rc, status = 1;

	/* The privileged, run-once half (an init container): BPF redirect. */
	if (argc > 1 && strcmp(argv[1], "redirect") == 0)
		return exec_redirect(argv + 1);
	rc = ks_config_parse(&d->cfg, argc, argv, environ, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "ktls-sidecar: %s\n", err);
		return 2;
	}
	ks_log_set_level(d->cfg.log_level);
	ks_log_set_format(d->cfg.log_format);
	ks_log_set_access(d->cfg.access_log);
	/* SSL_write on a socket BIO uses write(2): a reset peer must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	/* Workers inherit this mask: signals are only taken by wait_turn. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	/* Exit 0 after a drain however it began (SIGTERM, ktlsctl drain, an
	 * admin endpoint's quit) and after SIGINT: the stop was asked for. */
	if (start(d) == 0) {
		bool drained = serve(d, &set) && drain_wait(d, &set);

		status = 0;
		ks_info("event=stopping reason=%s", drained ? "drained" : "SIGINT");
	}
	stop(d);
	if (status == 0)
		ks_info("event=stopped");
	ks_config_free(&d->cfg);
	return status;
}
