/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl agent, the built-in control plane: CreateCsr, sign with the dev
 * CA's signer (ca.c, devca.c), SetIdentity with the chain and bundle, then
 * again at half the TTL. The private key is made by the sidecar and never
 * leaves it; the agent only sees the CSR. It needs the signer set alone
 * (ca export-signer), never the root's key.
 *
 * Between renewals it asks the sidecar's status every AGENT_POLL_MS, and
 * exits 0 once the sidecar is draining or has exited (its socket removed),
 * so that a pod whose sidecar stops also sees its agent stop: a Job's pod
 * completes when every container has.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/secret.h"
#include "ctl/client.h"
#include "ctl/devca.h"

static volatile sig_atomic_t agent_stop;

/* How often the agent looks at the sidecar between renewals. */
#define AGENT_POLL_MS 1000
/* A missing socket is looked at again after this long before it means the end. */
#define AGENT_RECHECK_MS 250

/* What a look at the sidecar found (watch). */
enum agent_seen {
	SEEN_SERVING,	  /* with an identity: renew when due */
	SEEN_NO_IDENTITY, /* restarted, or its identity was lost: renew now */
	SEEN_UNREACHABLE, /* renew now, which retries with backoff */
	SEEN_DONE,	  /* draining, or exited: the agent's work is over */
};

static void on_signal(int sig)
{
	(void)sig;
	agent_stop = 1;
}

/* One renewal: CreateCsr, sign, SetIdentity with the bundle. Returns an exit code. */
static int renew(const struct ktlsctl_target *to, struct ks_devca *ca, const char *id,
		 const char *bundle, long ttl)
{
	Ktls__Control__V1__Request req = KTLS__CONTROL__V1__REQUEST__INIT;
	Ktls__Control__V1__CreateCsr cc = KTLS__CONTROL__V1__CREATE_CSR__INIT;
	Ktls__Control__V1__SetIdentity si = KTLS__CONTROL__V1__SET_IDENTITY__INIT;
	Ktls__Control__V1__Response *resp = NULL;
	char *chain = NULL, err[512];
	int rc;

	req.id = (uint64_t)time(NULL);
	cc.spiffe_id = (char *)id;
	req.op_case = KTLS__CONTROL__V1__REQUEST__OP_CREATE_CSR;
	req.create_csr = &cc;
	rc = ktlsctl_call(to, &req, &resp);
	if (rc != EX_OK)
		return rc;
	if (resp->code != KTLS__CONTROL__V1__CODE__CODE_OK ||
	    resp->result_case != KTLS__CONTROL__V1__RESPONSE__RESULT_CSR) {
		rc = ktlsctl_answer_error(resp);
		goto cleanup;
	}
	if (ks_devca_sign_csr(ca, resp->csr->csr_pem, strlen(resp->csr->csr_pem), id, ttl, &chain,
			      err, sizeof(err)) < 0) {
		ktlsctl_log("agent: cannot sign the sidecar's CSR: %s", err);
		rc = EX_LOCAL;
		goto cleanup;
	}
	ktls__control__v1__response__free_unpacked(resp, NULL);
	resp = NULL;
	si.chain_pem = chain;
	si.key_pem = (char *)"";
	si.bundle_pem = (char *)bundle;
	req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_IDENTITY;
	req.set_identity = &si;
	rc = ktlsctl_call(to, &req, &resp);
	if (rc != EX_OK)
		goto cleanup;
	if (resp->code != KTLS__CONTROL__V1__CODE__CODE_OK)
		rc = ktlsctl_answer_error(resp);
	else
		ktlsctl_log("agent: event=renewed %s", resp->message);
cleanup:
	if (resp)
		ktls__control__v1__response__free_unpacked(resp, NULL);
	free(chain);
	return rc;
}

/* Sleeps ms, or less when SIGTERM/SIGINT arrives. */
static void nap(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (!agent_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * A sidecar removes its control socket when it exits, drained or stopped
 * (ks_control_stop); one that crashed leaves it behind, and its restart
 * takes it over. So a missing socket, once the sidecar has been up, means
 * it has exited, where a refused connection may be a restart to wait for.
 */
static bool sidecar_gone(const char *path)
{
	struct stat st;

	/* Twice, a moment apart: a restarting sidecar removes the stale socket
	 * just before it binds its own (control/server.c, clear_stale). */
	for (int i = 0; i < 2; i++) {
		if (i)
			nap(AGENT_RECHECK_MS);
		if (lstat(path, &st) == 0 || errno != ENOENT)
			return false;
	}
	ktlsctl_log("agent: event=sidecar_exited socket=%s (removed: the sidecar has exited, "
		    "nothing left to renew)",
		    path);
	return true;
}

/* One GetStatus. */
static enum agent_seen look(const struct ktlsctl_target *to)
{
	Ktls__Control__V1__Request req = KTLS__CONTROL__V1__REQUEST__INIT;
	Ktls__Control__V1__GetStatus gs = KTLS__CONTROL__V1__GET_STATUS__INIT;
	Ktls__Control__V1__Response *resp = NULL;
	enum agent_seen seen = SEEN_SERVING;

	req.id = (uint64_t)time(NULL);
	req.op_case = KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS;
	req.get_status = &gs;
	if (ktlsctl_call(to, &req, &resp) != EX_OK)
		return sidecar_gone(to->path) ? SEEN_DONE : SEEN_UNREACHABLE;
	if (resp->code != KTLS__CONTROL__V1__CODE__CODE_OK ||
	    resp->result_case != KTLS__CONTROL__V1__RESPONSE__RESULT_STATUS) {
		(void)ktlsctl_answer_error(resp);
		seen = SEEN_UNREACHABLE;
	} else if (resp->status->draining) {
		ktlsctl_log("agent: event=sidecar_draining socket=%s (the sidecar is stopping, "
			    "nothing left to renew)",
			    to->path);
		seen = SEEN_DONE;
	} else if (!resp->status->identity || !resp->status->identity->serial ||
		   !resp->status->identity->serial[0]) {
		seen = SEEN_NO_IDENTITY;
	}
	ktls__control__v1__response__free_unpacked(resp, NULL);
	return seen;
}

/* Until the next renewal (ms from now), looking at the sidecar every AGENT_POLL_MS. */
static enum agent_seen watch(const struct ktlsctl_target *to, long ms)
{
	while (!agent_stop && ms > 0) {
		long step = ms < AGENT_POLL_MS ? ms : AGENT_POLL_MS;
		enum agent_seen seen;

		nap(step);
		ms -= step;
		if (agent_stop)
			break;
		seen = look(to);
		if (seen != SEEN_SERVING)
			return seen;
	}
	return SEEN_SERVING;
}

/* The dev CA's bundle, in the same (secret) memory as a bundle read from a file. */
static int devca_bundle(struct ks_devca *ca, char **out)
{
	char *pem = NULL;

	if (ks_devca_bundle_pem(ca, &pem) < 0)
		return EX_LOCAL;
	*out = ks_secret_strdup(pem);
	free(pem);
	return *out ? EX_OK : EX_LOCAL;
}

int ktlsctl_agent_main(const struct ktlsctl_target *def, int argc, char **argv)
{
	struct ktlsctl_target to = *def;
	const char *id = NULL, *dir = NULL, *bundle_file = NULL;
	struct sigaction sa = {.sa_handler = on_signal};
	struct ks_devca *ca = NULL;
	char *bundle = NULL;
	long ttl = 3600, backoff_ms = 1000, max_backoff_ms;
	bool once = false, was_up = false;
	int rc;

	for (int i = 0; i < argc; i++) {
		const char *v;

		if ((v = ktlsctl_opt_value(argc, argv, &i, "--sidecar")) != NULL)
			to.path = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--id")) != NULL)
			id = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--ca")) != NULL)
			dir = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--bundle")) != NULL)
			bundle_file = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--ttl")) != NULL) {
			if ((rc = ktlsctl_parse_secs("--ttl", v, &ttl)) != EX_OK)
				return rc;
		} else if (strcmp(argv[i], "--once") == 0)
			once = true;
		else
			return ktlsctl_usage_error("agent: unexpected argument '%s'", argv[i]);
	}
	if (!id)
		return ktlsctl_usage_error(
		    "%s", "agent --ca DIR --id SPIFFE_ID [--sidecar SOCKET] [--ttl DUR] [--once]");
	if (ttl < 2)
		return ktlsctl_usage_error("%s", "agent: --ttl must be at least 2s");
	if ((rc = ktlsctl_ca_open(dir, &ca)) != EX_OK)
		return rc;
	/* Not refused: an agent mounted from a Secret made the old way must keep
	 * its pod's identity fresh through an upgrade. But say it on every start. */
	if (ks_devca_root_key(ca))
		ktlsctl_log("agent: event=root_key_present path=%s (the agent never uses the "
			    "root key, and whoever can read it can mint a new intermediate: give "
			    "the agent only a signer set, from ktlsctl ca export-signer, and keep "
			    "the root off this machine)",
			    ks_devca_root_key(ca));
	if (bundle_file)
		rc = ktlsctl_read_file(bundle_file, &bundle) < 0 ? EX_LOCAL : EX_OK;
	else
		rc = devca_bundle(ca, &bundle);
	if (rc != EX_OK)
		goto out;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* Retry well inside the certificate's lifetime, never slower than 30 s. */
	max_backoff_ms = ttl * 1000 / 8;
	if (max_backoff_ms > 30000)
		max_backoff_ms = 30000;
	if (max_backoff_ms < 250)
		max_backoff_ms = 250;
	ktlsctl_log("agent: event=start id=%s sidecar=%s ttl_s=%ld renew_every_s=%ld", id, to.path,
		    ttl, ttl / 2);
	while (!agent_stop) {
		enum agent_seen seen;

		rc = renew(&to, ca, id, bundle, ttl);
		if (once)
			break;
		if (rc == EX_OK) {
			was_up = true;
			backoff_ms = 1000 < max_backoff_ms ? 1000 : max_backoff_ms;
			seen = watch(&to, ttl * 1000 / 2);
			if (seen == SEEN_DONE)
				break;
			continue;
		}
		/* Not up yet, at the start, is a wait; gone after it was up is the end. */
		if (was_up && sidecar_gone(to.path)) {
			rc = EX_OK;
			break;
		}
		ktlsctl_log("agent: event=renew_failed exit=%d retry_in_ms=%ld", rc, backoff_ms);
		nap(backoff_ms);
		backoff_ms = backoff_ms * 2 > max_backoff_ms ? max_backoff_ms : backoff_ms * 2;
	}
	if (agent_stop)
		ktlsctl_log("agent: event=stop");
	if (!once)
		rc = EX_OK; /* a signal, or the sidecar drained or exited */
out:
	ks_secret_free(bundle);
	ks_devca_close(ca);
	return rc;
}
