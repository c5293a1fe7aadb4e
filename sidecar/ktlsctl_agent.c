/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl's development CA ("ca init|issue|crl") and the built-in control
 * plane ("agent"): CreateCsr, sign with the dev CA, SetIdentity with the
 * chain and bundle, then again at half the TTL. The private key is made by
 * the sidecar and never leaves it; the agent only sees the CSR.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "devca.h"
#include "ktlsctl.h"

static volatile sig_atomic_t agent_stop;

static void on_signal(int sig)
{
	(void)sig;
	agent_stop = 1;
}

static int parse_secs(const char *what, const char *v, long *out)
{
	uint32_t ms;

	if (ks_parse_duration_ms(v, &ms) < 0 || ms < 1000)
		return ktlsctl_usage_error("%s '%s': expected a duration of at least 1s", what, v);
	*out = (long)(ms / 1000);
	return EX_OK;
}

static int write_file(const char *path, const char *data, mode_t mode)
{
	FILE *f;
	int fd;

	(void)unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		ktlsctl_log("cannot write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return EX_LOCAL;
	}
	if (fputs(data, f) == EOF || fclose(f) != 0) {
		ktlsctl_log("cannot write %s: %s", path, strerror(errno));
		return EX_LOCAL;
	}
	return EX_OK;
}

static int ca_open(const char *dir, struct ks_devca **ca)
{
	char err[512];

	if (!dir)
		return ktlsctl_usage_error("%s", "--ca DIR is required");
	if (ks_devca_open(dir, ca, err, sizeof(err)) < 0) {
		ktlsctl_log("CA %s: %s", dir, err);
		return EX_LOCAL;
	}
	return EX_OK;
}

static int ca_init(int argc, char **argv)
{
	const char *dir = NULL, *td = NULL;
	bool force = false;
	char err[512];

	for (int i = 0; i < argc; i++) {
		const char *v;

		if ((v = ktlsctl_opt_value(argc, argv, &i, "--trust-domain")) != NULL)
			td = v;
		else if (strcmp(argv[i], "--force") == 0)
			force = true;
		else if (argv[i][0] != '-' && !dir)
			dir = argv[i];
		else
			return ktlsctl_usage_error("ca init: unexpected argument '%s'", argv[i]);
	}
	if (!dir || !td)
		return ktlsctl_usage_error("%s", "ca init DIR --trust-domain TD [--force]");
	if (ks_devca_init(dir, td, force, err, sizeof(err)) < 0) {
		ktlsctl_log("ca init: %s", err);
		return EX_LOCAL;
	}
	printf("dev CA for spiffe://%s in %s (bundle: %s/bundle.pem)\n", td, dir, dir);
	return EX_OK;
}

static int ca_issue(int argc, char **argv)
{
	const char *dir = NULL, *id = NULL, *out = NULL;
	char *chain = NULL, *key = NULL, path[4096], err[512];
	struct ks_devca *ca = NULL;
	long ttl = 24 * 3600;
	int rc;

	for (int i = 0; i < argc; i++) {
		const char *v;

		if ((v = ktlsctl_opt_value(argc, argv, &i, "--ca")) != NULL)
			dir = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--out")) != NULL)
			out = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--ttl")) != NULL) {
			if ((rc = parse_secs("--ttl", v, &ttl)) != EX_OK)
				return rc;
		} else if (argv[i][0] != '-' && !id)
			id = argv[i];
		else
			return ktlsctl_usage_error("ca issue: unexpected argument '%s'", argv[i]);
	}
	if (!id)
		return ktlsctl_usage_error(
		    "%s", "ca issue --ca DIR SPIFFE_ID [--ttl DUR] [--out PREFIX]");
	if (!out) {
		out = strrchr(id, '/');
		out = out ? out + 1 : id;
	}
	if ((rc = ca_open(dir, &ca)) != EX_OK)
		return rc;
	if (ks_devca_issue(ca, id, ttl, &chain, &key, err, sizeof(err)) < 0) {
		ktlsctl_log("ca issue: %s", err);
		rc = EX_LOCAL;
		goto cleanup;
	}
	snprintf(path, sizeof(path), "%s.key", out);
	if ((rc = write_file(path, key, 0600)) != EX_OK)
		goto cleanup;
	snprintf(path, sizeof(path), "%s.crt", out);
	if ((rc = write_file(path, chain, 0644)) != EX_OK)
		goto cleanup;
	printf("issued %s for %lds: %s.crt, %s.key\n", id, ttl, out, out);
cleanup:
	free(chain);
	if (key)
		memset(key, 0, strlen(key));
	free(key);
	ks_devca_close(ca);
	return rc;
}

static int ca_crl(int argc, char **argv)
{
	const char *dir = NULL, *out = NULL;
	char *certs = NULL, *crl = NULL, err[512];
	size_t len = 0;
	struct ks_devca *ca = NULL;
	long next = 24 * 3600;
	int rc = EX_OK;

	for (int i = 0; i < argc && rc == EX_OK; i++) {
		const char *v;
		char *f, *n;

		if ((v = ktlsctl_opt_value(argc, argv, &i, "--ca")) != NULL) {
			dir = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--out")) != NULL) {
			out = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--next-update")) != NULL) {
			rc = parse_secs("--next-update", v, &next);
		} else if (argv[i][0] == '-') {
			rc = ktlsctl_usage_error("ca crl: unknown option '%s'", argv[i]);
		} else if (ktlsctl_read_file(argv[i], &f) < 0) {
			rc = EX_LOCAL;
		} else {
			/* A chain file (as ca issue writes): the leaf is what
			 * gets revoked, not the intermediate after it. */
			char *second = strstr(f + 1, "-----BEGIN CERTIFICATE-----");

			if (second)
				*second = '\0';
			n = realloc(certs, len + strlen(f) + 2);
			if (!n) {
				free(f);
				rc = EX_LOCAL;
				break;
			}
			certs = n;
			len += (size_t)sprintf(certs + len, "%s\n", f);
			free(f);
		}
	}
	if (rc == EX_OK)
		rc = ca_open(dir, &ca);
	if (rc == EX_OK && ks_devca_crl(ca, certs, next, &crl, err, sizeof(err)) < 0) {
		ktlsctl_log("ca crl: %s", err);
		rc = EX_LOCAL;
	}
	if (rc == EX_OK) {
		if (out)
			rc = write_file(out, crl, 0644);
		else
			fputs(crl, stdout);
	}
	free(certs);
	free(crl);
	ks_devca_close(ca);
	return rc;
}

int ktlsctl_ca_main(int argc, char **argv)
{
	if (argc < 1)
		return ktlsctl_usage_error("%s", "ca needs a subcommand: init, issue, crl");
	if (strcmp(argv[0], "init") == 0)
		return ca_init(argc - 1, argv + 1);
	if (strcmp(argv[0], "issue") == 0)
		return ca_issue(argc - 1, argv + 1);
	if (strcmp(argv[0], "crl") == 0)
		return ca_crl(argc - 1, argv + 1);
	return ktlsctl_usage_error("ca: unknown subcommand '%s' (init, issue, crl)", argv[0]);
}

/* One renewal: CreateCsr, sign, SetIdentity with the bundle. Returns an exit code. */
static int renew(const char *sock, uint32_t timeout_ms, struct ks_devca *ca, const char *id,
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
	rc = ktlsctl_call(sock, timeout_ms, &req, &resp);
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
	rc = ktlsctl_call(sock, timeout_ms, &req, &resp);
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

int ktlsctl_agent_main(const char *default_socket, uint32_t timeout_ms, int argc, char **argv)
{
	const char *sock = default_socket, *id = NULL, *dir = NULL, *bundle_file = NULL;
	struct sigaction sa = {.sa_handler = on_signal};
	struct ks_devca *ca = NULL;
	char *bundle = NULL;
	long ttl = 3600, backoff_ms = 1000, max_backoff_ms;
	bool once = false;
	int rc;

	for (int i = 0; i < argc; i++) {
		const char *v;

		if ((v = ktlsctl_opt_value(argc, argv, &i, "--sidecar")) != NULL)
			sock = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--id")) != NULL)
			id = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--ca")) != NULL)
			dir = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--bundle")) != NULL)
			bundle_file = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--ttl")) != NULL) {
			if ((rc = parse_secs("--ttl", v, &ttl)) != EX_OK)
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
	if ((rc = ca_open(dir, &ca)) != EX_OK)
		return rc;
	rc = bundle_file ? (ktlsctl_read_file(bundle_file, &bundle) < 0 ? EX_LOCAL : EX_OK)
			 : (ks_devca_bundle_pem(ca, &bundle) < 0 ? EX_LOCAL : EX_OK);
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
	ktlsctl_log("agent: event=start id=%s sidecar=%s ttl_s=%ld renew_every_s=%ld", id, sock,
		    ttl, ttl / 2);
	while (!agent_stop) {
		rc = renew(sock, timeout_ms, ca, id, bundle, ttl);
		if (once)
			break;
		if (rc == EX_OK) {
			backoff_ms = 1000 < max_backoff_ms ? 1000 : max_backoff_ms;
			nap(ttl * 1000 / 2);
			continue;
		}
		ktlsctl_log("agent: event=renew_failed exit=%d retry_in_ms=%ld", rc, backoff_ms);
		nap(backoff_ms);
		backoff_ms = backoff_ms * 2 > max_backoff_ms ? max_backoff_ms : backoff_ms * 2;
	}
	if (agent_stop) {
		ktlsctl_log("agent: event=stop");
		rc = EX_OK;
	}
out:
	free(bundle);
	ks_devca_close(ca);
	return rc;
}
