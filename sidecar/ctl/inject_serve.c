/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl inject --serve: the mutating admission webhook (sidecar/injectd),
 * the same transform as the offline `ktlsctl inject` (inject.c) behind
 * HTTPS. main.c sends an `inject` command line that carries --serve here;
 * this file only reads the flags (--help names each) and runs the server.
 */
#include "ctl/client.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "injectd/serve.h"

void ktlsctl_inject_serve_usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: ktlsctl inject --serve LISTEN --cert FILE --key FILE [--config FILE]\n"
	    "                      [--admin LISTEN|none] [--trust-domain TD] [--classic|--native]\n"
	    "                      [--image REF] [--identity-source SOURCE]\n"
	    "                      [--log-level LEVEL] [--log-format logfmt|json]\n"
	    "\n"
	    "The mutating admission webhook: the transform of `ktlsctl inject` behind HTTPS.\n"
	    "POST /inject takes an admission.k8s.io/v1 AdmissionReview of a Pod CREATE and\n"
	    "answers one with a base64 JSONPatch that adds the sidecar (README, \"The\n"
	    "injection webhook\").\n"
	    "\n"
	    "  --serve LISTEN          HTTPS address (default %s): POST /inject, GET /ready;\n"
	    "                          port 0 picks a free port (logged: event=injectd_listen)\n"
	    "  --cert FILE             the server's certificate chain (PEM, leaf first)\n"
	    "  --key FILE              its private key (PEM); both are reloaded when the files\n"
	    "                          change, and a pair that does not load is refused (the\n"
	    "                          old one stays in force, a warning is logged)\n"
	    "  --config FILE           an InjectorConfig (README, \"Injection\"), reloaded when "
	    "it\n"
	    "                          changes like the certificate\n"
	    "  --admin LISTEN|none     plain-HTTP admin address (default %s):\n"
	    "                          GET /ready, /live, /metrics (Prometheus text)\n"
	    "  --trust-domain TD       the SPIFFE trust domain (over the InjectorConfig's)\n"
	    "  --classic               sidecars as plain containers (mode: classic)\n"
	    "  --native                native sidecars (mode: native)\n"
	    "  --image REF             the sidecar's image, REPOSITORY[:TAG]\n"
	    "  --identity-source SRC   dev | csi-driver-spiffe | spire | files\n"
	    "  --log-level LEVEL       debug | info | warn | error (default info)\n"
	    "  --log-format FORMAT     logfmt (default) or json\n"
	    "  -h, --help              this text\n"
	    "\n"
	    "Bounds: a body of 4 MiB (413), JSON nesting of 64 levels and 256 Ki values\n"
	    "(HTTP 400), 10 s for a request from accept to answer, 32 HTTPS and 8 admin\n"
	    "connections at once; one request per connection.\n"
	    "SIGTERM: stop accepting, finish the requests in flight, exit 0.\n"
	    "\n"
	    "Exit status: 0 after SIGTERM; 2 usage error; 5 the certificate, key or\n"
	    "configuration could not be loaded, or a listener could not be opened.\n",
	    KS_INJECTD_LISTEN_DEFAULT, KS_INJECTD_ADMIN_DEFAULT);
}

bool ktlsctl_inject_wants_serve(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], "--serve") == 0 || strncmp(argv[i], "--serve=", 8) == 0)
			return true;
	return false;
}

static int add_set(struct ks_injectd_opts *o, const char *key, const char *value)
{
	if (o->nsets == KS_INJECTD_MAX_SETS)
		return ktlsctl_usage_error("%s", "inject --serve: too many settings");
	o->sets[o->nsets].key = key;
	o->sets[o->nsets].value = value;
	o->nsets++;
	return EX_OK;
}

/* REPOSITORY[:TAG] as inject.c reads it: a ':' after the last '/' starts
 * the tag (a registry's host:port has its ':' before a '/'). */
static int set_image(struct ks_injectd_opts *o, const char *ref, char *repo, size_t repolen)
{
	const char *slash = strrchr(ref, '/');
	const char *colon = strrchr(slash ? slash : ref, ':');
	int rc;

	if (strlen(ref) >= repolen || strchr(ref, '@') || !ref[0])
		return ktlsctl_usage_error("--image '%s': expected REPOSITORY[:TAG]", ref);
	snprintf(repo, repolen, "%.*s", (int)(colon ? (size_t)(colon - ref) : strlen(ref)), ref);
	rc = add_set(o, "image.repository", repo);
	return rc ? rc : add_set(o, "image.tag", colon ? colon + 1 : "");
}

int ktlsctl_inject_serve_main(int argc, char **argv)
{
	static char repo[512];
	struct ks_injectd_opts o = {0};
	const char *v, *mode = NULL, *td = NULL, *source = NULL, *image = NULL;
	int rc = EX_OK;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			ktlsctl_inject_serve_usage(stdout);
			return EX_OK;
		}
	}
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		/* "--serve --cert x": a flag is not a value. */
		if (strncmp(a, "--", 2) == 0 && !strchr(a, '=') && i + 1 < argc &&
		    argv[i + 1][0] == '-' && strcmp(a, "--classic") != 0 &&
		    strcmp(a, "--native") != 0)
			return ktlsctl_usage_error("inject --serve: %s needs a value", a);
		if (strcmp(a, "--classic") == 0) {
			mode = "classic";
		} else if (strcmp(a, "--native") == 0) {
			mode = "native";
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--serve"))) {
			o.listen = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--cert"))) {
			o.cert = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--key"))) {
			o.key = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--config"))) {
			o.config = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--admin"))) {
			o.admin = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--trust-domain"))) {
			td = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--image"))) {
			image = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--identity-source"))) {
			source = v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--log-level"))) {
			enum ks_log_level lvl;
			if (ks_log_parse_level(v, &lvl) < 0)
				return ktlsctl_usage_error(
				    "--log-level '%s': expected debug, info, warn or error", v);
			ks_log_set_level(lvl);
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--log-format"))) {
			if (strcmp(v, "json") != 0 && strcmp(v, "logfmt") != 0)
				return ktlsctl_usage_error(
				    "--log-format '%s': expected logfmt or json", v);
			ks_log_set_format(strcmp(v, "json") == 0 ? KS_LOG_JSON : KS_LOG_LOGFMT);
		} else if (strncmp(a, "--", 2) == 0 && strchr(a, '=') == NULL &&
			   (strcmp(a, "--serve") == 0 || strcmp(a, "--cert") == 0 ||
			    strcmp(a, "--key") == 0 || strcmp(a, "--config") == 0 ||
			    strcmp(a, "--admin") == 0 || strcmp(a, "--trust-domain") == 0 ||
			    strcmp(a, "--image") == 0 || strcmp(a, "--identity-source") == 0 ||
			    strcmp(a, "--log-level") == 0 || strcmp(a, "--log-format") == 0)) {
			return ktlsctl_usage_error("inject --serve: %s needs a value", a);
		} else {
			return ktlsctl_usage_error(
			    "inject --serve: unknown argument '%s' (see inject --serve --help)", a);
		}
	}
	if (!o.listen || !o.listen[0])
		return ktlsctl_usage_error("%s", "inject --serve: --serve needs LISTEN");
	if (!o.cert || !o.key)
		return ktlsctl_usage_error("%s", "inject --serve: --cert FILE and --key FILE are "
						 "required");
	if ((td && (rc = add_set(&o, "trustDomain", td))) ||
	    (mode && (rc = add_set(&o, "mode", mode))) ||
	    (source && (rc = add_set(&o, "identity.source", source))) ||
	    (image && (rc = set_image(&o, image, repo, sizeof(repo)))))
		return rc;
	return ks_injectd_run(&o) == 0 ? EX_OK : EX_LOCAL;
}
