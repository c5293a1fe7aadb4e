/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktls-sidecar: process start-up, signals and identity reload.
 *
 * Threading model: the main thread owns configuration and signals and never
 * touches a connection. N worker threads (worker.c) own everything on the
 * data path. The only state they share is struct ks_shared: the immutable
 * config, the identity slot (an atomic hand-off, see identity.h) and
 * atomic counters. The control thread (control.h) serves the control API
 * and reaches the workers only through those same hand-offs; a control Drain
 * is delivered to the main thread as SIGTERM, so every drain is one path.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "config.h"
#include "control.h"
#include "handshake.h"
#include "identity.h"
#include "log.h"
#include "offload.h"
#include "redirect.h"
#include "redirect_check.h"
#include "worker.h"

extern char **environ;

/* --redirect-check: how long the probe may take (TCG VMs are slow). */
#define KS_REDIRECT_CHECK_MS 5000

static void log_identity(const char *event, const struct ks_identity *id)
{
	if (!id->leaf) {
		ks_warn("event=%s identity=none reason=\"waiting for the control plane "
			"(SetIdentity); connections are refused until then\"",
			event);
		return;
	}
	ks_info("event=%s id=%s trust_domain=%s serial=%s not_after=%s", event, id->id,
		id->trust_domain, id->serial, id->not_after);
}

/* SIGHUP: reload the files, keeping the CRLs and policy now in force. */
static void reload_identity(struct ks_shared *sh)
{
	struct ks_identity *id, *cur;
	char err[512], clean[512];
	int rc;

	if (!sh->cfg->cert) {
		ks_warn("event=identity_reload_skipped reason=\"no --cert/--key/--ca: the "
			"identity comes from the control plane\"");
		return;
	}
	pthread_mutex_lock(&sh->ident.update_mu);
	cur = ks_identity_slot_get(&sh->ident, NULL);
	rc = ks_identity_load(sh->cfg, cur, &id, err, sizeof(err));
	if (rc < 0) {
		ks_error("event=identity_reload_rejected cert=%s key=%s ca=%s reason=\"%s\" "
			 "kept_serial=%s",
			 sh->cfg->cert, sh->cfg->key, sh->cfg->ca,
			 ks_log_clean(clean, sizeof(clean), err), cur->leaf ? cur->serial : "none");
	} else {
		ks_identity_slot_publish(&sh->ident, id);
		log_identity("identity_reloaded", id);
	}
	ks_identity_put(cur);
	pthread_mutex_unlock(&sh->ident.update_mu);
}

/*
 * Kubernetes sends SIGTERM and waits terminationGracePeriodSeconds: stop
 * accepting, let open connections finish for --drain-timeout, then go. A
 * second SIGTERM or a SIGINT ends the wait; SIGHUP still reloads meanwhile.
 */
static uint32_t drain_timeout(struct ks_shared *sh)
{
	uint32_t req = atomic_load(&sh->drain_timeout_req_ms);

	return req ? req : sh->cfg->drain_timeout_ms;
}

static void drain(struct ks_shared *sh, struct ks_worker *workers, unsigned n, sigset_t *set)
{
	struct timespec tick = {.tv_sec = 0, .tv_nsec = 100 * 1000000};
	int sig;

	ks_info("event=draining signal=SIGTERM timeout_ms=%u connections=%u", drain_timeout(sh),
		atomic_load(&sh->nconns));
	atomic_store(&sh->drain_deadline_ms, ks_mono_ms() + drain_timeout(sh));
	atomic_store_explicit(&sh->drain, true, memory_order_release);
	for (unsigned i = 0; i < n; i++)
		ks_worker_wake(&workers[i]);
	while (atomic_load_explicit(&sh->running, memory_order_acquire) > 0) {
		sig = sigtimedwait(set, NULL, &tick);
		if (sig == SIGHUP) {
			reload_identity(sh);
		} else if (sig == SIGUSR1) {
			ks_worker_log_status(workers, n, sh);
		} else if (sig == SIGTERM || sig == SIGINT) {
			ks_warn("event=drain_aborted signal=%s connections=%u",
				sig == SIGTERM ? "SIGTERM" : "SIGINT", atomic_load(&sh->nconns));
			return;
		}
	}
	ks_info("event=drained");
}

/* Control API Drain: the same path as SIGTERM (the main thread takes it). */
static int control_drain(struct ks_ctl_env *env, uint32_t timeout_ms)
{
	static atomic_bool requested;

	/* A second request is an answer, not a second SIGTERM (which would
	 * stop at once). */
	if (atomic_exchange(&requested, true))
		return 1;
	ks_info("event=drain_requested source=control timeout_ms=%u", timeout_ms);
	if (timeout_ms)
		atomic_store(&env->sh->drain_timeout_req_ms, timeout_ms);
	return kill(getpid(), SIGTERM) < 0 ? -errno : 0;
}

int main(int argc, char **argv)
{
	static struct ks_config cfg;
	struct ks_shared sh;
	struct ks_worker *workers = NULL;
	struct ks_identity *id = NULL;
	struct ks_control *ctl = NULL;
	char err[512], clean[512];
	unsigned started = 0;
	sigset_t set;
	int rc, sig, status = 1;

	/* The privileged, run-once half (an init container): BPF redirect. */
	if (argc > 1 && strcmp(argv[1], "redirect") == 0)
		return ks_redirect_main(argc - 1, argv + 1);
	rc = ks_config_parse(&cfg, argc, argv, environ, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "ktls-sidecar: %s\n", err);
		return 2;
	}
	ks_log_set_level(cfg.log_level);

	/* SSL_write on a socket BIO uses write(2): a reset peer must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	/* Workers inherit this mask: signals are only taken by sigwait below. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (!OPENSSL_init_ssl(0, NULL) || ks_handshake_global_init() < 0) {
		ks_error("event=start_failed reason=\"OpenSSL initialisation failed\"");
		goto out;
	}
	if (cfg.cert) {
		rc = ks_identity_load(&cfg, NULL, &id, err, sizeof(err));
	} else {
		struct ks_ident_parts none = {.pol = &cfg.policy};
		enum ks_ident_reason reason;

		rc = ks_identity_build(&cfg, &none, &id, &reason, err, sizeof(err));
	}
	if (rc < 0) {
		ks_error("event=start_failed cert=%s key=%s ca=%s reason=\"%s\"", cfg.cert, cfg.key,
			 cfg.ca, ks_log_clean(clean, sizeof(clean), err));
		goto out;
	}
	ks_shared_init(&sh, &cfg);
	ks_identity_slot_init(&sh.ident, id);
	log_identity("identity_loaded", id);
	for (size_t i = 0; i < cfg.nroutes; i++) {
		const struct ks_route *r = &cfg.routes[i];

		ks_info("event=route dir=%s listen=%s target=%s expect_id=%s",
			r->dir == KS_INBOUND ? "inbound" : "outbound", r->listen_str, r->target_str,
			r->expect_id ? r->expect_id
				     : (r->dir == KS_OUTBOUND ? "trust-domain" : "-"));
	}
	ks_offload_probe(cfg.ktls);

	workers = calloc(cfg.workers, sizeof(*workers));
	if (!workers)
		goto stop;
	for (; started < cfg.workers; started++) {
		struct ks_worker *wk = &workers[started];

		rc = ks_worker_start(wk, started, &sh);
		if (rc < 0) {
			ks_error("event=start_failed worker=%u reason=\"%s\"", started,
				 wk->init_err[0] ? wk->init_err : strerror(-rc));
			started++; /* its thread exists and must be joined */
			goto stop;
		}
	}
	if (workers[0].fallback_reason)
		ks_warn("event=io_backend backend=%s reason=\"%s: %s\"",
			ks_loop_backend(&workers[0].loop), workers[0].fallback_reason,
			strerror(workers[0].fallback_err));
	else
		ks_info("event=io_backend backend=%s", ks_loop_backend(&workers[0].loop));
	if (cfg.control_socket) {
		struct ks_ctl_env env = {.sh = &sh,
					 .cfg = &cfg,
					 .ident = &sh.ident,
					 .workers = workers,
					 .nworkers = started,
					 .drain = control_drain};

		struct ks_ctl_limits limits = {.max_frame = cfg.control_max_frame,
					       .idle_ms = cfg.control_idle_ms};

		rc = ks_control_start(cfg.control_socket, cfg.control_uids, cfg.ncontrol_uids,
				      &limits, &env, &ctl, err, sizeof(err));
		if (rc < 0) {
			ks_error("event=start_failed control_socket=%s reason=\"%s\"",
				 cfg.control_socket, ks_log_clean(clean, sizeof(clean), err));
			goto stop;
		}
		ks_info("event=control_api socket=%s max_frame=%u", cfg.control_socket,
			cfg.control_max_frame);
	}
	if (cfg.redirect_check) {
		rc = ks_redirect_check(&sh, &cfg, KS_REDIRECT_CHECK_MS, err, sizeof(err));
		if (rc < 0) {
			ks_error("event=start_failed redirect_check=%s reason=\"%s\"",
				 cfg.redirect_check, ks_log_clean(clean, sizeof(clean), err));
			goto stop;
		}
	}
	ks_info("event=ready pid=%d workers=%u max_connections=%u handshake_timeout_ms=%u "
		"idle_timeout_ms=%u",
		(int)getpid(), cfg.workers, cfg.max_connections, cfg.handshake_timeout_ms,
		cfg.idle_timeout_ms);

	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			reload_identity(&sh);
			continue;
		}
		if (sig == SIGUSR1) {
			ks_worker_log_status(workers, started, &sh);
			continue;
		}
		break;
	}
	status = 0;
	if (sig == SIGTERM && drain_timeout(&sh))
		drain(&sh, workers, started, &set);
	ks_info("event=stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
stop:
	ks_control_stop(ctl);
	atomic_store_explicit(&sh.stop, true, memory_order_release);
	for (unsigned i = 0; i < started; i++)
		ks_worker_wake(&workers[i]);
	for (unsigned i = 0; i < started; i++)
		ks_worker_join(&workers[i]);
	free(workers);
	ks_identity_slot_fini(&sh.ident);
	ks_shared_fini(&sh);
	if (status == 0)
		ks_info("event=stopped");
out:
	ks_config_free(&cfg);
	return status;
}
