/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl inject: adds the sidecar to Kubernetes workloads offline, as
 * `istioctl kube-inject` and `linkerd inject` do. Reads YAML or JSON (one
 * document or many) from -f FILE or stdin and writes the objects, injected,
 * to stdout in the same format. The transform is sidecar/inject's, the same
 * one the admission webhook and the chart's post-renderer run.
 *
 * The configuration is an InjectorConfig document: --config FILE, or one
 * in the input stream (the chart renders its values as one, and this
 * command consumes it: it is not a Kubernetes object and is not written
 * out), then the flags over it.
 */
#include "ctl/client.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/version.h"
#include "inject/inject.h"
#include "inject/manifest.h"

/* A manifest larger than this is not a manifest (the API server refuses
 * objects over 1.5 MiB in etcd; a stream of many is rarely over a few). */
#define INJECT_MAX_INPUT (64u << 20)

void ktlsctl_inject_usage(FILE *out)
{
	fprintf(out,
		"Usage: ktlsctl inject [-f FILE] [--config FILE] [--trust-domain TD] [--classic]\n"
		"                      [--image REF] [--identity-source SOURCE] [-o yaml|json]\n"
		"\n"
		"Adds the ktls-sidecar to the pods of Kubernetes objects: Pod, Deployment,\n"
		"StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and a List of them. Other\n"
		"objects pass through unchanged. Injecting an injected object changes nothing;\n"
		"a newer ktlsctl updates it in place.\n"
		"\n"
		"  -f, --filename FILE     read FILE ('-': stdin, the default); YAML or JSON,\n"
		"                          one document or many\n"
		"  --config FILE           an InjectorConfig (README, \"Injection\"); without it,\n"
		"                          one in the input is used (and not written out)\n"
		"  --trust-domain TD       the SPIFFE trust domain (InjectorConfig trustDomain)\n"
		"  --classic               sidecars as plain containers with a postStart hook,\n"
		"                          for clusters before Kubernetes 1.29 (mode: classic);\n"
		"                          the default is native sidecars (mode: native)\n"
		"  --native                native sidecars, whatever the InjectorConfig says\n"
		"  --image REF             the sidecar's image, REPOSITORY[:TAG]\n"
		"                          (default ktls-sidecar:%s)\n"
		"  --identity-source SRC   dev | csi-driver-spiffe | spire | files\n"
		"  -o, --output FORMAT     yaml or json (default: the input's)\n"
		"  -h, --help              this text\n"
		"\n"
		"As the admission webhook: ktlsctl inject --serve LISTEN --cert FILE --key FILE\n"
		"[--config FILE] [--admin LISTEN] (inject --serve --help).\n"
		"\n"
		"Per pod, annotations on the pod template: ktls-sidecar.io/inject: \"false\" opts\n"
		"out; ktls-sidecar.io/inbound, outbound, allow, inbound-mode, ktls, log-level,\n"
		"cpu-request, cpu-limit, memory-request, memory-limit (README, \"Injection\").\n"
		"Pods on the host network and pods with another mesh's proxy are skipped, with\n"
		"a line on stderr.\n"
		"\n"
		"Exit status: 0 done; 2 usage error; 5 an input, the configuration or an object\n"
		"could not be read or injected (the message names the object and annotation).\n",
		ks_release());
}

static int local_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int local_error(const char *fmt, ...)
{
	va_list ap;

	fputs("ktlsctl inject: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EX_LOCAL;
}

static int read_all(const char *path, char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 0, n = 0;
	char *buf = NULL;

	if (!f)
		return -errno;
	for (;;) {
		if (n + 65536 + 1 > cap) {
			cap = cap ? cap * 2 : 131072;
			char *p = realloc(buf, cap);
			if (!p) {
				free(buf);
				if (f != stdin)
					fclose(f);
				return -ENOMEM;
			}
			buf = p;
		}
		errno = 0;
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (n > INJECT_MAX_INPUT) {
			free(buf);
			if (f != stdin)
				fclose(f);
			return -EFBIG;
		}
		if (got == 0)
			break;
	}
	/* fread's failure leaves read(2)'s errno: EISDIR says more than EIO. */
	int err = ferror(f) ? -(errno ? errno : EIO) : 0;
	if (f != stdin)
		fclose(f);
	if (err) {
		free(buf);
		return err;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

static int load_file(const char *path, json_t **docs, enum ks_manifest_format *fmt)
{
	char *buf = NULL;
	size_t len = 0;
	struct ks_inject_msg msg = {{0}};
	int rc = read_all(path, &buf, &len);

	if (rc == -EFBIG)
		return local_error("%s: larger than %u MiB", path, INJECT_MAX_INPUT >> 20);
	if (rc)
		return local_error("%s: %s", path, strerror(-rc));
	rc = ks_manifest_parse(buf, len, docs, fmt, &msg);
	free(buf);
	if (rc)
		return local_error("%s: %s", strcmp(path, "-") == 0 ? "stdin" : path, msg.text);
	return EX_OK;
}

static bool is_injector_config(const json_t *doc)
{
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	const char *api = json_string_value(json_object_get(doc, "apiVersion"));
	return kind && api && strcmp(kind, "InjectorConfig") == 0 &&
	       strncmp(api, "ktls-sidecar.io/", 16) == 0;
}

static void note_skip(void *arg, const char *line)
{
	(void)arg;
	fprintf(stderr, "ktlsctl inject: %s\n", line);
}

struct inject_flags {
	const char *file, *config, *td, *mode, *image, *source, *output;
};

static int apply_flags(struct ks_inject_cfg *cfg, const struct inject_flags *fl)
{
	struct ks_inject_msg msg = {{0}};
	int rc = 0;

	if (fl->td)
		rc = rc ?: ks_inject_cfg_set(cfg, "trustDomain", fl->td, &msg);
	if (fl->mode)
		rc = rc ?: ks_inject_cfg_set(cfg, "mode", fl->mode, &msg);
	if (fl->source)
		rc = rc ?: ks_inject_cfg_set(cfg, "identity.source", fl->source, &msg);
	if (fl->image) {
		/* REPOSITORY[:TAG]: a ':' after the last '/' starts the tag
		 * (a registry's host:port has its ':' before a '/'). */
		char repo[512];
		const char *slash = strrchr(fl->image, '/');
		const char *colon = strrchr(slash ? slash : fl->image, ':');
		if (strlen(fl->image) >= sizeof(repo) || strchr(fl->image, '@'))
			return ktlsctl_usage_error("--image '%s': expected REPOSITORY[:TAG]",
						   fl->image);
		snprintf(repo, sizeof(repo), "%.*s",
			 (int)(colon ? (size_t)(colon - fl->image) : strlen(fl->image)), fl->image);
		rc = rc ?: ks_inject_cfg_set(cfg, "image.repository", repo, &msg);
		rc = rc ?: ks_inject_cfg_set(cfg, "image.tag", colon ? colon + 1 : "", &msg);
	}
	if (rc == 0)
		rc = ks_inject_cfg_check(cfg, &msg);
	if (rc)
		return local_error("%s", msg.text);
	return EX_OK;
}

/* The flags that take a value, "--name VALUE" or "--name=VALUE". */
static const struct {
	const char *name;
	size_t off;
} k_valued[] = {
    {"--filename", offsetof(struct inject_flags, file)},
    {"--output", offsetof(struct inject_flags, output)},
    {"--config", offsetof(struct inject_flags, config)},
    {"--trust-domain", offsetof(struct inject_flags, td)},
    {"--image", offsetof(struct inject_flags, image)},
    {"--identity-source", offsetof(struct inject_flags, source)},
};

static int parse_flags(int argc, char **argv, struct inject_flags *fl)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		size_t k;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			ktlsctl_inject_usage(stdout);
			return -1;
		}
		if (strcmp(a, "--classic") == 0 || strcmp(a, "--native") == 0) {
			fl->mode = a + 2;
			continue;
		}
		if (strcmp(a, "-f") == 0 || strcmp(a, "-o") == 0) {
			if (i + 1 >= argc)
				return ktlsctl_usage_error("%s needs a value", a);
			*(a[1] == 'f' ? &fl->file : &fl->output) = argv[++i];
			continue;
		}
		for (k = 0; k < sizeof(k_valued) / sizeof(k_valued[0]); k++) {
			if (strcmp(a, k_valued[k].name) == 0 && i + 1 >= argc)
				return ktlsctl_usage_error("%s needs a value", a);
			if ((v = ktlsctl_opt_value(argc, argv, &i, k_valued[k].name)))
				break;
		}
		if (!v)
			return ktlsctl_usage_error(
			    "inject: unknown argument '%s' (see inject --help)", a);
		*(const char **)((char *)fl + k_valued[k].off) = v;
	}
	if (fl->output && strcmp(fl->output, "yaml") != 0 && strcmp(fl->output, "json") != 0)
		return ktlsctl_usage_error("--output '%s': expected yaml or json", fl->output);
	return 0;
}

int ktlsctl_inject_main(int argc, char **argv)
{
	struct inject_flags fl = {.file = "-"};
	json_t *docs = NULL, *cdocs = NULL, *out = NULL;
	const json_t *cdoc = NULL;
	struct ks_inject_cfg *cfg = NULL;
	struct ks_inject_msg msg = {{0}};
	enum ks_manifest_format fmt = KS_MANIFEST_YAML, cfmt;
	int rc = parse_flags(argc, argv, &fl);

	if (rc)
		return rc < 0 ? EX_OK : rc;
	if ((rc = load_file(fl.file, &docs, &fmt)))
		goto cleanup;
	if (fl.config) {
		if ((rc = load_file(fl.config, &cdocs, &cfmt)))
			goto cleanup;
		if (json_array_size(cdocs) != 1 || !is_injector_config(json_array_get(cdocs, 0))) {
			rc = local_error("%s: expected one InjectorConfig document", fl.config);
			goto cleanup;
		}
		cdoc = json_array_get(cdocs, 0);
	}
	out = json_array();
	if (!out) {
		rc = local_error("out of memory");
		goto cleanup;
	}
	size_t i;
	json_t *doc;
	json_array_foreach(docs, i, doc)
	{
		if (!is_injector_config(doc)) {
			json_array_append(out, doc);
			continue;
		}
		if (cdoc) {
			rc = local_error("%s", fl.config
						   ? "an InjectorConfig in the input, and "
						     "--config: give one"
						   : "two InjectorConfigs in the input: give one");
			goto cleanup;
		}
		cdoc = doc;
	}
	bool any = false;
	json_array_foreach(out, i, doc)
	{
		any |= ks_inject_holds_pod(doc);
	}
	if (!any && !cdoc && !fl.config && !fl.td)
		goto write; /* nothing to inject, and nothing to configure it with */
	if (ks_inject_cfg_load(cdoc, &cfg, &msg)) {
		rc = local_error("%s", msg.text);
		goto cleanup;
	}
	if ((rc = apply_flags(cfg, &fl)))
		goto cleanup;
	json_array_foreach(out, i, doc)
	{
		int r = ks_inject_object(doc, cfg, note_skip, NULL, &msg);
		if (r < 0) {
			rc = local_error("%s", r == -ENOMEM ? "out of memory" : msg.text);
			goto cleanup;
		}
	}
write:
	if (fl.output)
		fmt = strcmp(fl.output, "json") == 0 ? KS_MANIFEST_JSON : KS_MANIFEST_YAML;
	if (ks_manifest_write(stdout, out, fmt)) {
		rc = local_error("writing stdout: %s", strerror(errno));
		goto cleanup;
	}
	rc = EX_OK;
cleanup:
	ks_inject_cfg_free(cfg);
	json_decref(out);
	json_decref(docs);
	json_decref(cdocs);
	return rc;
}
