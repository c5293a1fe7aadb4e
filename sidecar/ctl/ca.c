/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl ca init|export-signer|new-signer|issue|crl: the development CA's
 * commands (ctl/devca.c does the cryptography and the layout). Not for
 * production keys: see devca.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/secret.h"
#include "ctl/client.h"
#include "ctl/devca.h"

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

int ktlsctl_ca_open(const char *dir, struct ks_devca **ca)
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
	printf("dev CA for spiffe://%s in %s (bundle: %s/signer/bundle.pem)\n"
	       "  %s/root/    the root and its key: keep it off clusters\n"
	       "  %s/signer/  what signs; for an agent: ktlsctl ca export-signer %s OUT\n",
	       td, dir, dir, dir, dir, dir);
	return EX_OK;
}

static int ca_export_signer(int argc, char **argv)
{
	const char *dir = NULL, *out = NULL;
	struct ks_devca *ca = NULL;
	bool force = false;
	char err[512];
	int rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0)
			force = true;
		else if (argv[i][0] != '-' && !dir)
			dir = argv[i];
		else if (argv[i][0] != '-' && !out)
			out = argv[i];
		else
			return ktlsctl_usage_error("ca export-signer: unexpected argument '%s'",
						   argv[i]);
	}
	if (!dir || !out)
		return ktlsctl_usage_error("%s", "ca export-signer DIR OUT [--force]");
	if ((rc = ktlsctl_ca_open(dir, &ca)) != EX_OK)
		return rc;
	if (ks_devca_export_signer(ca, out, force, err, sizeof(err)) < 0) {
		ktlsctl_log("ca export-signer: %s", err);
		rc = EX_LOCAL;
		goto cleanup;
	}
	printf("signer set for spiffe://%s in %s: intermediate.pem, intermediate.key, bundle.pem,"
	       " trust_domain (no root key)\n",
	       ks_devca_trust_domain(ca), out);
cleanup:
	ks_devca_close(ca);
	return rc;
}

static int ca_new_signer(int argc, char **argv)
{
	char err[512];

	if (argc != 1 || argv[0][0] == '-')
		return ktlsctl_usage_error("%s", "ca new-signer DIR");
	if (ks_devca_new_signer(argv[0], err, sizeof(err)) < 0) {
		ktlsctl_log("ca new-signer: %s", err);
		return EX_LOCAL;
	}
	printf("new intermediate for %s; the bundle is unchanged. Export the signer again "
	       "(ktlsctl ca export-signer %s OUT --force) and replace the agents' Secret\n",
	       argv[0], argv[0]);
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
			if ((rc = ktlsctl_parse_secs("--ttl", v, &ttl)) != EX_OK)
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
	if ((rc = ktlsctl_ca_open(dir, &ca)) != EX_OK)
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
	ks_wipe_free_str(key); /* devca's PEM is plain malloc */
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
			rc = ktlsctl_parse_secs("--next-update", v, &next);
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
				ks_secret_free(f);
				rc = EX_LOCAL;
				break;
			}
			certs = n;
			len += (size_t)sprintf(certs + len, "%s\n", f);
			ks_secret_free(f);
		}
	}
	if (rc == EX_OK)
		rc = ktlsctl_ca_open(dir, &ca);
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

void ktlsctl_ca_usage(FILE *out)
{
	fputs("  ca init DIR --trust-domain TD [--force]\n"
	      "                          a root and an intermediate (ECDSA P-256): DIR/root/\n"
	      "                          (root.pem, root.key: keep it off clusters) and\n"
	      "                          DIR/signer/ (intermediate.pem, intermediate.key,\n"
	      "                          bundle.pem, trust_domain: what signs)\n"
	      "  ca export-signer DIR OUT [--force]\n"
	      "                          the signer set alone into OUT (new or empty), never\n"
	      "                          the root key: what an agent and its Secret get\n"
	      "  ca new-signer DIR       a new intermediate and key in DIR/signer/, signed with\n"
	      "                          DIR/root/root.key (refused without it); the bundle\n"
	      "                          stays the root, so peers need no new trust\n"
	      "  ca issue --ca DIR SPIFFE_ID [--ttl DUR] [--out PREFIX]\n"
	      "                          PREFIX.crt (leaf + intermediate) and PREFIX.key\n"
	      "  ca crl --ca DIR [--next-update DUR] [--out FILE] [CERT_FILE...]\n"
	      "                          a CRL from the intermediate revoking the first (leaf)\n"
	      "                          certificate of each file; to stdout without --out\n"
	      "  A CA DIR for issue, crl, export-signer and agent is one from ca init, or a\n"
	      "  signer set; a CA from ktlsctl before the root/signer split (all six files in\n"
	      "  DIR) works as before: export-signer makes its signer set.\n",
	      out);
}

int ktlsctl_ca_main(int argc, char **argv)
{
	if (argc < 1)
		return ktlsctl_usage_error(
		    "%s", "ca needs a subcommand: init, export-signer, new-signer, issue, crl");
	if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
		printf("Usage: ktlsctl ca SUBCOMMAND [ARGS]\n\n"
		       "The development CA (not for production keys):\n");
		ktlsctl_ca_usage(stdout);
		return EX_OK;
	}
	if (strcmp(argv[0], "init") == 0)
		return ca_init(argc - 1, argv + 1);
	if (strcmp(argv[0], "export-signer") == 0)
		return ca_export_signer(argc - 1, argv + 1);
	if (strcmp(argv[0], "new-signer") == 0)
		return ca_new_signer(argc - 1, argv + 1);
	if (strcmp(argv[0], "issue") == 0)
		return ca_issue(argc - 1, argv + 1);
	if (strcmp(argv[0], "crl") == 0)
		return ca_crl(argc - 1, argv + 1);
	return ktlsctl_usage_error(
	    "ca: unknown subcommand '%s' (init, export-signer, new-signer, issue, crl)", argv[0]);
}
