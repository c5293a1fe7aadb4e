/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The injection transform (sidecar/inject): the InjectorConfig's checks
 * (unknown keys, types, enums, durations, the files source's Secret, the
 * identity flags extraArgs may not carry, the trust domain), and
 * ks_inject_pod: where the sidecar goes in native and classic mode and in
 * what order, each identity source's args and volumes, the drain delay per
 * mode and owner, the fsGroup, every annotation's bad values (each message
 * names the object and the annotation), the pods it skips, port clashes,
 * the redirect's refusals, a refused pod left as it was to the byte,
 * idempotency, and a re-injection under another configuration giving
 * exactly a fresh one.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inject/inject.h"
#include "inject/manifest.h"

#define WHAT "Deployment shop/web"

/* ------------------------------------------------------------ helpers */

static json_t *yaml1(const char *text)
{
	struct ks_inject_msg msg = {{0}};
	json_t *docs = NULL;
	if (ks_manifest_parse(text, strlen(text), &docs, NULL, &msg))
		fail_msg("fixture does not parse: %s\n%s", msg.text, text);
	assert_int_equal(json_array_size(docs), 1);
	json_t *d = json_incref(json_array_get(docs, 0));
	json_decref(docs);
	return d;
}

/* Loads and checks an InjectorConfig: the header, then body. rc and msg
 * are the first failure's. */
static int cfg_try(const char *body, struct ks_inject_cfg **out, struct ks_inject_msg *msg)
{
	char text[4096];
	snprintf(text, sizeof(text),
		 "apiVersion: ktls-sidecar.io/v1alpha1\nkind: InjectorConfig\n%s\n", body);
	json_t *doc = yaml1(text);
	struct ks_inject_cfg *cfg = NULL;
	int rc = ks_inject_cfg_load(doc, &cfg, msg);
	json_decref(doc);
	if (rc == 0)
		rc = ks_inject_cfg_check(cfg, msg);
	if (rc == 0 && out)
		*out = cfg;
	else
		ks_inject_cfg_free(cfg);
	return rc;
}

static struct ks_inject_cfg *cfg_ok(const char *body)
{
	struct ks_inject_cfg *cfg = NULL;
	struct ks_inject_msg msg = {{0}};
	char full[4096];
	snprintf(full, sizeof(full), "trustDomain: example.org\n%s", body);
	if (cfg_try(full, &cfg, &msg))
		fail_msg("config refused: %s\n%s", msg.text, full);
	return cfg;
}

static void cfg_bad(const char *body, const char *want)
{
	struct ks_inject_msg msg = {{0}};
	int rc = cfg_try(body, NULL, &msg);
	if (rc != -EINVAL)
		fail_msg("config accepted (rc %d), want '%s':\n%s", rc, want, body);
	if (!strstr(msg.text, want))
		fail_msg("message '%s' lacks '%s'", msg.text, want);
}

/* A pod: metadata and spec from YAML (a document {metadata: ..., spec: ...}). */
struct pod {
	json_t *doc, *meta, *spec;
};

static struct pod pod_new(const char *text)
{
	struct pod p;
	p.doc = yaml1(text);
	p.meta = json_object_get(p.doc, "metadata");
	p.spec = json_object_get(p.doc, "spec");
	assert_non_null(p.meta);
	assert_non_null(p.spec);
	return p;
}

static void pod_free(struct pod *p)
{
	json_decref(p->doc);
}

static char *dump(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(s);
	return s;
}

/* The app: an init container, a container on 8080 with a probe on 9090, a
 * volume, the pod's uid 1000, one inbound port. %s: more annotations. */
static const char k_app_fmt[] = "metadata:\n"
				"  annotations:\n"
				"    team: shop\n"
				"    ktls-sidecar.io/inbound: \"8443=8080\"\n"
				"%s"
				"spec:\n"
				"  securityContext:\n"
				"    runAsUser: 1000\n"
				"  initContainers:\n"
				"  - name: setup\n"
				"    image: busybox:1\n"
				"  containers:\n"
				"  - name: app\n"
				"    image: app:1\n"
				"    ports:\n"
				"    - {name: http, containerPort: 8080}\n"
				"    - {name: metrics, containerPort: 9090}\n"
				"    readinessProbe:\n"
				"      httpGet: {path: /ready, port: metrics}\n"
				"  volumes:\n"
				"  - name: data\n"
				"    emptyDir: {}\n";

static struct pod app(const char *more_annotations)
{
	char text[4096];
	snprintf(text, sizeof(text), k_app_fmt, more_annotations ? more_annotations : "");
	return pod_new(text);
}

/* Injects; wants want (a ks_inject_result); returns the message. */
static void inject_want(struct pod *p, const char *owner, const struct ks_inject_cfg *cfg, int want,
			struct ks_inject_msg *msg)
{
	memset(msg, 0, sizeof(*msg));
	int rc = ks_inject_pod(p->meta, p->spec, owner, WHAT, cfg, msg);
	if (rc != want)
		fail_msg("ks_inject_pod: %d (%s), want %d", rc, msg->text, want);
}

static void inject_ok(struct pod *p, const char *owner, const struct ks_inject_cfg *cfg)
{
	struct ks_inject_msg msg;
	inject_want(p, owner, cfg, KS_INJECT_DONE, &msg);
}

/* Injection refused with a message holding each of the wants, and the pod
 * unchanged to the byte (key order included). */
static void inject_refused(struct pod *p, const char *owner, const struct ks_inject_cfg *cfg,
			   const char *want1, const char *want2)
{
	char *before = dump(p->doc);
	struct ks_inject_msg msg;
	inject_want(p, owner, cfg, -EINVAL, &msg);
	if (!strstr(msg.text, want1) || (want2 && !strstr(msg.text, want2)))
		fail_msg("message '%s' lacks '%s' or '%s'", msg.text, want1, want2 ? want2 : "");
	char *after = dump(p->doc);
	if (strcmp(before, after) != 0)
		fail_msg("a refused pod was changed:\n%s\n%s", before, after);
	free(before);
	free(after);
}

/* "a,b,c": the names in spec.<key>. */
static const char *names(const json_t *spec, const char *key)
{
	static char buf[512];
	size_t i;
	json_t *c;
	buf[0] = '\0';
	json_array_foreach(json_object_get(spec, key), i, c)
	{
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? "," : "",
			 json_string_value(json_object_get(c, "name")));
	}
	return buf;
}

static json_t *named(const json_t *spec, const char *key, const char *name)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(spec, key), i, c)
	{
		if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
			return c;
	}
	return NULL;
}

/* The sidecar's args joined by spaces, wherever the sidecar is. */
static const char *sidecar_args(const json_t *spec)
{
	static char buf[4096];
	json_t *c = named(spec, "initContainers", "ktls-sidecar");
	if (!c)
		c = named(spec, "containers", "ktls-sidecar");
	assert_non_null(c);
	size_t i;
	json_t *a;
	buf[0] = '\0';
	json_array_foreach(json_object_get(c, "args"), i, a)
	{
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " %s", json_string_value(a));
	}
	strcat(buf, " ");
	return buf;
}

static void has_arg(const json_t *spec, const char *arg)
{
	char want[512];
	snprintf(want, sizeof(want), " %s ", arg);
	if (!strstr(sidecar_args(spec), want))
		fail_msg("the sidecar's args lack %s:%s", arg, sidecar_args(spec));
}

static void lacks_arg(const json_t *spec, const char *prefix)
{
	char want[512];
	snprintf(want, sizeof(want), " %s", prefix);
	if (strstr(sidecar_args(spec), want))
		fail_msg("the sidecar's args have %s:%s", prefix, sidecar_args(spec));
}

/* ------------------------------------------------------------ config */

static void test_cfg_defaults(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = NULL;
	struct ks_inject_msg msg = {{0}};
	/* No document: the defaults, which need a trust domain. */
	assert_int_equal(ks_inject_cfg_load(NULL, &cfg, &msg), 0);
	assert_int_equal(ks_inject_cfg_check(cfg, &msg), -EINVAL);
	assert_non_null(strstr(msg.text, "no trust domain"));
	assert_non_null(strstr(msg.text, "--trust-domain"));
	assert_int_equal(ks_inject_cfg_set(cfg, "trustDomain", "example.org", &msg), 0);
	assert_int_equal(ks_inject_cfg_check(cfg, &msg), 0);
	/* The command line's setter: types and keys checked. */
	assert_int_equal(ks_inject_cfg_set(cfg, "sidecar.uid", "many", &msg), -EINVAL);
	assert_non_null(strstr(msg.text, "sidecar.uid 'many': expected a number"));
	assert_int_equal(ks_inject_cfg_set(cfg, "redirect.enabled", "yes", &msg), -EINVAL);
	assert_non_null(strstr(msg.text, "expected true or false"));
	assert_int_equal(ks_inject_cfg_set(cfg, "sidecar.nope", "1", &msg), -EINVAL);
	assert_non_null(strstr(msg.text, "'sidecar.nope' cannot be set"));
	assert_int_equal(ks_inject_cfg_set(cfg, "sidecar", "1", &msg), -EINVAL);
	assert_int_equal(ks_inject_cfg_set(cfg, "mode", "sideways", &msg), 0);
	assert_int_equal(ks_inject_cfg_check(cfg, &msg), -EINVAL);
	assert_non_null(strstr(msg.text, "mode 'sideways'"));
	ks_inject_cfg_free(cfg);
	/* A document that is not a mapping. */
	json_t *arr = json_array();
	assert_int_equal(ks_inject_cfg_load(arr, &cfg, &msg), -EINVAL);
	assert_non_null(strstr(msg.text, "expected a mapping"));
	json_decref(arr);
	/* A full, valid document. */
	ks_inject_cfg_free(
	    cfg_ok("mode: classic\n"
		   "image: {repository: reg.example:5000/ktls, tag: \"1.2\"}\n"
		   "identity: {source: files, files: {secretName: web-tls, layout: "
		   "spiffe-helper}}\n"
		   "sidecar: {drainTimeout: 25s, drainDelay: 3s, extraArgs: "
		   "[--log-format=json], resources: {limits: {cpu: 1, memory: 1Gi}}}\n"
		   "redirect: {excludePorts: [22], excludeCidrs: [10.0.0.0/8]}\n"));
}

static void test_cfg_unknown_and_types(void **state)
{
	(void)state;
	cfg_bad("trustDomain: example.org\nidentity: {sourc: dev}\n",
		"unknown key 'identity.sourc'");
	cfg_bad("trustDomain: example.org\nsidecars: {}\n", "unknown key 'sidecars'");
	cfg_bad("trustDomain: example.org\nsidecar: {uid: \"1337\"}\n",
		"sidecar.uid must be an integer, not a string");
	cfg_bad("trustDomain: example.org\nredirect: {enabled: \"true\"}\n",
		"redirect.enabled must be true or false, not a string");
	cfg_bad("trustDomain: example.org\nsidecar: {extraArgs: --x}\n",
		"sidecar.extraArgs must be a list, not a string");
	cfg_bad("trustDomain: example.org\nimage: ktls:1\n",
		"image must be a mapping, not a string");
	cfg_bad("trustDomain: example.org\nsidecar: {extraArgs: [1]}\n",
		"sidecar.extraArgs[0] must be a string");
	cfg_bad("trustDomain: example.org\nsidecar: {resources: {requests: {cpu: lots}}}\n",
		"sidecar.resources.requests.cpu is not a Kubernetes quantity");
	cfg_bad("trustDomain: example.org\nagent: {resources: {limit: {cpu: 1}}}\n",
		"agent.resources.limit: only requests and limits");
	cfg_bad("trustDomain: example.org\nsidecar: {uid: 0}\n", "sidecar.uid 0: expected");
	cfg_bad("trustDomain: example.org\nsidecar: {adminPort: 70000}\n", "sidecar.adminPort");
	cfg_bad("trustDomain: example.org\nredirect: {excludePorts: [0]}\n",
		"redirect.excludePorts[0]");
	cfg_bad("trustDomain: example.org\nredirect: {excludeCidrs: [10.0.0.0]}\n",
		"redirect.excludeCidrs[0]");
	cfg_bad("trustDomain: example.org\nredirect: {inboundPort: 15020}\n", "must differ");
	cfg_bad("trustDomain: example.org\nimage: {tag: \"1.0@sha256\"}\n", "is not a tag");
	cfg_bad("trustDomain: example.org\nimage: {repository: \"\"}\n", "is not an image name");
	cfg_bad("trustDomain: example.org\nagent: {caSecret: Not_A_Name}\n",
		"agent.caSecret 'Not_A_Name' is not a Secret name");
	cfg_bad("trustDomain: example.org\nidentity: {source: spire, spire: {mountPath: "
		"/run/ktls-sidecar/x}}\n",
		"overlaps the control socket");
	cfg_bad("trustDomain: example.org\nidentity: {source: spire, spire: {socketName: "
		"a/b}}\n",
		"identity.spire.socketName 'a/b'");
}

static void test_cfg_apiversion(void **state)
{
	(void)state;
	struct ks_inject_msg msg = {{0}};
	struct ks_inject_cfg *cfg = NULL;
	json_t *doc = yaml1("apiVersion: ktls-sidecar.io/v2\nkind: InjectorConfig\n"
			    "trustDomain: example.org\n");
	assert_int_equal(ks_inject_cfg_load(doc, &cfg, &msg), 0);
	assert_int_equal(ks_inject_cfg_check(cfg, &msg), -EINVAL);
	assert_non_null(strstr(msg.text, "expected apiVersion ktls-sidecar.io/v1alpha1"));
	ks_inject_cfg_free(cfg);
	json_decref(doc);
}

static void test_cfg_enums(void **state)
{
	(void)state;
	static const struct {
		const char *body, *want;
	} cases[] = {
	    {"mode: sidecar", "mode 'sidecar': expected one of native, classic"},
	    {"image: {pullPolicy: Sometimes}", "image.pullPolicy 'Sometimes'"},
	    {"identity: {source: vault}", "identity.source 'vault': expected one of dev, "
					  "csi-driver-spiffe, spire, files"},
	    {"identity: {files: {layout: pem}}", "identity.files.layout 'pem'"},
	    {"sidecar: {logLevel: trace}", "sidecar.logLevel 'trace'"},
	    {"sidecar: {io: poll}", "sidecar.io 'poll'"},
	    {"sidecar: {ktls: \"on\"}", "sidecar.ktls 'on'"},
	    {"sidecar: {inboundMode: lenient}", "sidecar.inboundMode 'lenient'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[256];
		snprintf(body, sizeof(body), "trustDomain: example.org\n%s\n", cases[i].body);
		cfg_bad(body, cases[i].want);
	}
	/* And the good values of each pass. */
	ks_inject_cfg_free(
	    cfg_ok("mode: native\nimage: {pullPolicy: Always}\n"
		   "identity: {source: csi-driver-spiffe, files: {layout: files}}\n"
		   "sidecar: {logLevel: debug, io: epoll, ktls: require, inboundMode: "
		   "permissive}\n"));
}

static void test_cfg_durations(void **state)
{
	(void)state;
	cfg_bad("trustDomain: example.org\nsidecar: {drainTimeout: 10s, drainDelay: 15s}\n",
		"sidecar.drainDelay 15s is longer than sidecar.drainTimeout 10s");
	cfg_bad("trustDomain: example.org\nsidecar: {drainTimeout: soon}\n",
		"sidecar.drainTimeout 'soon'");
	cfg_bad("trustDomain: example.org\nsidecar: {drainTimeout: \"\"}\n",
		"sidecar.drainTimeout ''");
	cfg_bad("trustDomain: example.org\nagent: {ttl: 1d}\n", "agent.ttl '1d'");
	/* Equal is fine; an empty delay is "by mode and kind". */
	ks_inject_cfg_free(cfg_ok("sidecar: {drainTimeout: 10s, drainDelay: 10s}\n"));
	ks_inject_cfg_free(cfg_ok("sidecar: {drainDelay: \"\"}\n"));
}

static void test_cfg_identity(void **state)
{
	(void)state;
	cfg_bad("trustDomain: example.org\nidentity: {source: files}\n",
		"identity.source=files needs identity.files.secretName");
	cfg_bad("trustDomain: example.org\nidentity: {source: files, files: {secretName: "
		"UPPER}}\n",
		"identity.files.secretName 'UPPER' is not a Secret name");
	static const char *const flags[] = {"--cert=/x",
					    "--key=/x",
					    "--ca=/x",
					    "-cert",
					    "--identity-dir=/x",
					    "--identity-layout=files",
					    "--workload-api=unix:///x",
					    "--spiffe-id=spiffe://a/b",
					    "--spiffe-id",
					    NULL};
	for (const char *const *f = flags; *f; f++) {
		char body[256], want[128];
		snprintf(body, sizeof(body),
			 "trustDomain: example.org\nsidecar: {extraArgs: [--log-format=json, "
			 "\"%s\"]}\n",
			 *f);
		snprintf(want, sizeof(want), "sidecar.extraArgs '%s': identity.source=dev", *f);
		cfg_bad(body, want);
	}
	/* A flag that merely starts like one is not one. */
	ks_inject_cfg_free(cfg_ok("sidecar: {extraArgs: [--certainly=1, --cafile-note]}\n"));
}

static void test_cfg_trust_domain(void **state)
{
	(void)state;
	cfg_bad("mode: native\n", "no trust domain");
	cfg_bad("trustDomain: \"\"\n", "no trust domain");
	cfg_bad("trustDomain: Example.org\n", "trustDomain 'Example.org': only lowercase");
	cfg_bad("trustDomain: example.org/x\n", "trustDomain 'example.org/x'");
}

/* ------------------------------------------------------------ placement */

static void test_native(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("");
	struct pod p = app(NULL);
	inject_ok(&p, "Deployment", cfg);
	/* Agent, then sidecar, lead the init containers; the app's follow. */
	assert_string_equal(names(p.spec, "initContainers"), "ktls-agent,ktls-sidecar,setup");
	assert_string_equal(names(p.spec, "containers"), "app");
	assert_string_equal(names(p.spec, "volumes"), "data,ktls-run,ktls-ca");
	json_t *sc = named(p.spec, "initContainers", "ktls-sidecar");
	json_t *ag = named(p.spec, "initContainers", "ktls-agent");
	assert_string_equal(json_string_value(json_object_get(sc, "restartPolicy")), "Always");
	assert_string_equal(json_string_value(json_object_get(ag, "restartPolicy")), "Always");
	assert_non_null(json_object_get(sc, "startupProbe"));
	assert_null(json_object_get(sc, "lifecycle"));
	has_arg(p.spec, "--inbound=0.0.0.0:8443=127.0.0.1:8080");
	has_arg(p.spec, "--spiffe-id=spiffe://example.org/ns/$(KTLS_POD_NAMESPACE)/sa/"
			"$(KTLS_POD_SERVICE_ACCOUNT)");
	has_arg(p.spec, "--drain-delay=0s");
	has_arg(p.spec, "--inbound-mode=strict");
	/* The version annotation, next to the pod's own. */
	json_t *ann = json_object_get(p.meta, "annotations");
	assert_non_null(json_object_get(ann, KS_INJECT_ANN_VERSION));
	assert_string_equal(json_string_value(json_object_get(ann, "team")), "shop");
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

static void test_classic(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("mode: classic\n");
	struct pod p = app(NULL);
	inject_ok(&p, "Deployment", cfg);
	assert_string_equal(names(p.spec, "initContainers"), "setup");
	assert_string_equal(names(p.spec, "containers"), "ktls-agent,ktls-sidecar,app");
	json_t *sc = named(p.spec, "containers", "ktls-sidecar");
	assert_null(json_object_get(sc, "restartPolicy"));
	assert_null(json_object_get(sc, "startupProbe"));
	/* The postStart hook that holds the app back until /ready. */
	json_t *cmd = json_object_get(
	    json_object_get(json_object_get(json_object_get(sc, "lifecycle"), "postStart"), "exec"),
	    "command");
	assert_string_equal(json_string_value(json_array_get(cmd, 1)), "wait-ready");
	/* A Deployment's pod in classic mode waits 5s for its endpoints to go. */
	has_arg(p.spec, "--drain-delay=5s");
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

static void test_redirect_placement(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("redirect: {enabled: true}\n");
	struct pod p = app(NULL);
	inject_ok(&p, "Deployment", cfg);
	assert_string_equal(names(p.spec, "initContainers"),
			    "ktls-redirect,ktls-agent,ktls-sidecar,setup");
	assert_string_equal(names(p.spec, "volumes"), "data,ktls-run,ktls-xtables,ktls-ca");
	has_arg(p.spec, "--inbound=0.0.0.0:15006=127.0.0.1:8080");
	has_arg(p.spec, "--outbound-transparent=127.0.0.1:15001");
	json_t *r = named(p.spec, "initContainers", "ktls-redirect");
	char *args = dump(json_object_get(r, "args"));
	assert_non_null(strstr(args, "\"--app-port=8080\""));
	assert_non_null(strstr(args, "\"--app-uid=1000\""));
	assert_non_null(strstr(args, "\"--sidecar-uid=1337\""));
	free(args);
	pod_free(&p);
	ks_inject_cfg_free(cfg);

	cfg = cfg_ok("mode: classic\nredirect: {enabled: true}\n");
	p = app(NULL);
	inject_ok(&p, "Deployment", cfg);
	assert_string_equal(names(p.spec, "initContainers"), "ktls-redirect,setup");
	assert_string_equal(names(p.spec, "containers"), "ktls-agent,ktls-sidecar,app");
	pod_free(&p);
	ks_inject_cfg_free(cfg);

	/* With the redirect, a pod without annotations has something to
	 * carry (its outbound traffic). */
	cfg = cfg_ok("redirect: {enabled: true}\n");
	p = pod_new("metadata: {name: x}\nspec: {containers: [{name: a, image: a}]}\n");
	inject_ok(&p, "Pod", cfg);
	assert_string_equal(names(p.spec, "initContainers"),
			    "ktls-redirect,ktls-agent,ktls-sidecar");
	lacks_arg(p.spec, "--inbound=");
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

/* ------------------------------------------------------------ identity */

static void test_identity_sources(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg;
	struct pod p;
	json_t *v;

	/* dev: the agent, the dev CA's signer set by name, never root.key. */
	cfg = cfg_ok("agent: {caSecret: shop-ca, ttl: 30m}\n");
	p = app(NULL);
	inject_ok(&p, "Deployment", cfg);
	json_t *ag = named(p.spec, "initContainers", "ktls-agent");
	assert_non_null(ag);
	char *a = dump(json_object_get(ag, "args"));
	assert_non_null(strstr(a, "\"--ttl=30m\""));
	assert_non_null(strstr(a, "\"--id=spiffe://example.org/ns/$(KTLS_POD_NAMESPACE)/sa/"
				  "$(KTLS_POD_SERVICE_ACCOUNT)\""));
	free(a);
	v = named(p.spec, "volumes", "ktls-ca");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(v, "secret"), "secretName")),
	    "shop-ca");
	char *vs = dump(v);
	assert_null(strstr(vs, "root.key"));
	free(vs);
	lacks_arg(p.spec, "--identity-dir");
	lacks_arg(p.spec, "--workload-api");
	pod_free(&p);
	ks_inject_cfg_free(cfg);

	/* csi-driver-spiffe: a CSI volume, the directory and its layout. */
	cfg = cfg_ok("identity: {source: csi-driver-spiffe}\n");
	p = app(NULL);
	inject_ok(&p, "Deployment", cfg);
	assert_string_equal(names(p.spec, "initContainers"), "ktls-sidecar,setup");
	v = named(p.spec, "volumes", "ktls-identity");
	assert_string_equal(json_string_value(json_object_get(json_object_get(v, "csi"), "driver")),
			    "spiffe.csi.cert-manager.io");
	has_arg(p.spec, "--identity-dir=/var/run/secrets/spiffe.io");
	has_arg(p.spec, "--identity-layout=csi-driver-spiffe");
	assert_null(named(p.spec, "volumes", "ktls-ca"));
	pod_free(&p);
	ks_inject_cfg_free(cfg);

	/* spire: the SPIFFE CSI driver's socket directory, the Workload API. */
	cfg = cfg_ok("identity: {source: spire, spire: {socketName: agent.sock}}\n");
	p = app(NULL);
	inject_ok(&p, "Deployment", cfg);
	v = named(p.spec, "volumes", "ktls-identity");
	assert_string_equal(json_string_value(json_object_get(json_object_get(v, "csi"), "driver")),
			    "csi.spiffe.io");
	has_arg(p.spec, "--workload-api=unix:///spiffe-workload-api/agent.sock");
	lacks_arg(p.spec, "--identity-dir");
	assert_null(named(p.spec, "initContainers", "ktls-agent"));
	pod_free(&p);
	ks_inject_cfg_free(cfg);

	/* files: the Secret's three keys of the layout, 0440. */
	cfg = cfg_ok("identity: {source: files, files: {secretName: web-svid, layout: "
		     "spiffe-helper, mountPath: /etc/svid}}\n");
	p = app(NULL);
	inject_ok(&p, "Deployment", cfg);
	v = json_object_get(named(p.spec, "volumes", "ktls-identity"), "secret");
	assert_string_equal(json_string_value(json_object_get(v, "secretName")), "web-svid");
	assert_int_equal(json_integer_value(json_object_get(v, "defaultMode")), 0440);
	vs = dump(json_object_get(v, "items"));
	assert_non_null(strstr(vs, "svid_key.pem"));
	free(vs);
	has_arg(p.spec, "--identity-dir=/etc/svid");
	has_arg(p.spec, "--identity-layout=spiffe-helper");
	json_t *sc = named(p.spec, "initContainers", "ktls-sidecar");
	vs = dump(json_object_get(sc, "volumeMounts"));
	assert_non_null(strstr(vs, "\"mountPath\":\"/etc/svid\""));
	free(vs);
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

/* ------------------------------------------------------------ drain, fsGroup */

static void test_drain_delay(void **state)
{
	(void)state;
	static const struct {
		const char *mode, *owner, *want;
	} cases[] = {
	    {"native", "Deployment", "--drain-delay=0s"},
	    {"native", "Job", "--drain-delay=0s"},
	    {"classic", "Deployment", "--drain-delay=5s"},
	    {"classic", "StatefulSet", "--drain-delay=5s"},
	    {"classic", "Job", "--drain-delay=0s"},
	    {"classic", "CronJob", "--drain-delay=0s"},
	    {"classic", "", "--drain-delay=5s"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char body[64];
		snprintf(body, sizeof(body), "mode: %s\n", cases[i].mode);
		struct ks_inject_cfg *cfg = cfg_ok(body);
		struct pod p = app(NULL);
		inject_ok(&p, cases[i].owner, cfg);
		has_arg(p.spec, cases[i].want);
		pod_free(&p);
		ks_inject_cfg_free(cfg);
	}
	/* A configured delay wins everywhere. */
	struct ks_inject_cfg *cfg = cfg_ok("mode: classic\nsidecar: {drainDelay: 2s}\n");
	struct pod p = app(NULL);
	inject_ok(&p, "Job", cfg);
	has_arg(p.spec, "--drain-delay=2s");
	pod_free(&p);
	ks_inject_cfg_free(cfg);
	/* A bare Pod owned by a Job (as the webhook sees it): no delay. */
	cfg = cfg_ok("mode: classic\n");
	json_t *pod = yaml1("apiVersion: v1\nkind: Pod\nmetadata:\n  name: j-1\n"
			    "  annotations: {ktls-sidecar.io/outbound: \"9000=db:5432\"}\n"
			    "  ownerReferences:\n  - {apiVersion: batch/v1, kind: Job, name: j, "
			    "uid: u, controller: true}\n"
			    "spec: {containers: [{name: a, image: a}]}\n");
	struct ks_inject_msg msg = {{0}};
	assert_int_equal(ks_inject_object(pod, cfg, NULL, NULL, &msg), KS_INJECT_DONE);
	has_arg(json_object_get(pod, "spec"), "--drain-delay=0s");
	json_decref(pod);
	ks_inject_cfg_free(cfg);
	/* The drain must fit in the grace period. */
	cfg = cfg_ok("sidecar: {drainTimeout: 40s}\n");
	p = app(NULL);
	inject_refused(&p, "Deployment", cfg, WHAT ": sidecar.drainTimeout 40s is longer",
		       "terminationGracePeriodSeconds (30s)");
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

static void test_fs_group(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		long long want; /* -1: none */
	} cases[] = {
	    {"", 1337},
	    {"identity: {source: files, files: {secretName: s}}\n", 1337},
	    {"identity: {source: csi-driver-spiffe}\n", -1},
	    {"identity: {source: spire}\n", -1},
	    {"sidecar: {uid: 2001}\n", 2001},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ks_inject_cfg *cfg = cfg_ok(cases[i].body);
		struct pod p = app(NULL);
		inject_ok(&p, "Deployment", cfg);
		json_t *fg = json_object_get(json_object_get(p.spec, "securityContext"), "fsGroup");
		if (cases[i].want < 0)
			assert_null(fg);
		else
			assert_int_equal(json_integer_value(fg), cases[i].want);
		/* The pod's own settings stay. */
		assert_int_equal(json_integer_value(json_object_get(
				     json_object_get(p.spec, "securityContext"), "runAsUser")),
				 1000);
		pod_free(&p);
		/* The pod's own fsGroup is never replaced. */
		p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
			    "spec:\n  securityContext: {fsGroup: 4000}\n"
			    "  containers: [{name: a, image: a}]\n");
		inject_ok(&p, "Deployment", cfg);
		assert_int_equal(json_integer_value(json_object_get(
				     json_object_get(p.spec, "securityContext"), "fsGroup")),
				 4000);
		assert_null(
		    json_object_get(json_object_get(p.meta, "annotations"), KS_INJECT_ANN_FSGROUP));
		pod_free(&p);
		ks_inject_cfg_free(cfg);
	}
	/* An fsGroup the injector set goes again when a re-injection needs
	 * none: dev, then spire, gives spire's fresh pod (no securityContext). */
	static const char bare[] =
	    "metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
	    "spec:\n  containers: [{name: a, image: a}]\n";
	struct ks_inject_cfg *dev = cfg_ok(""), *spire = cfg_ok("identity: {source: spire}\n");
	struct pod p = pod_new(bare), fresh = pod_new(bare);
	inject_ok(&p, "Deployment", dev);
	assert_string_equal(json_string_value(json_object_get(
				json_object_get(p.meta, "annotations"), KS_INJECT_ANN_FSGROUP)),
			    "1337");
	inject_ok(&p, "Deployment", spire);
	inject_ok(&fresh, "Deployment", spire);
	char *a = dump(p.doc), *b = dump(fresh.doc);
	assert_string_equal(a, b);
	assert_null(json_object_get(p.spec, "securityContext"));
	free(a);
	free(b);
	pod_free(&p);
	pod_free(&fresh);
	ks_inject_cfg_free(dev);
	ks_inject_cfg_free(spire);
}

/* ------------------------------------------------------------ annotations */

static void test_bad_annotations(void **state)
{
	(void)state;
	static const struct {
		const char *ann, *value, *want;
	} cases[] = {
	    {"inbound", "80x", "'80x' is not LISTEN=APP"},
	    {"inbound", "8443", "'8443' is not LISTEN=APP"},
	    {"inbound", "8443=0", "ports 1-65535"},
	    {"inbound", "70000=8080", "ports 1-65535"},
	    {"inbound", "8443=8080,8443=9090", "repeats a LISTEN port"},
	    {"inbound", "=8080", "ports 1-65535"},
	    {"outbound", "9000", "is not LOCALPORT=HOST:PORT"},
	    {"outbound", "x=db:5432", "LOCALPORT that is not a port"},
	    {"outbound", "9000=db", "no HOST:PORT"},
	    {"outbound", "9000=db:http", "no HOST:PORT"},
	    {"outbound", "9000=db:5432,foo=bar", "neither id=spiffe://"},
	    {"outbound", "9000=db:5432,pin=abc", "neither id=spiffe://"},
	    {"outbound", "9000=db:5432 9000=cache:6379", "repeats a LOCALPORT"},
	    {"outbound", "9000=db_1:5432", "no HOST:PORT"},
	    {"allow", "http://example.org/x", "is not a SPIFFE ID pattern"},
	    {"allow", "spiffe://", "is not a SPIFFE ID pattern"},
	    {"inbound-mode", "lenient", "'lenient' is not one of strict, permissive"},
	    {"ktls", "on", "'on' is not one of auto, off, require"},
	    {"log-level", "trace", "'trace' is not one of debug, info, warn, error"},
	    {"cpu-request", "lots", "is not a Kubernetes quantity"},
	    {"cpu-limit", "1.5 cores", "is not a Kubernetes quantity"},
	    {"memory-request", "64MB", "is not a Kubernetes quantity"},
	    {"memory-limit", "", "is not a Kubernetes quantity"},
	    {"inject", "maybe", "'maybe' is not one of true, false"},
	    {"inject", "yes", "'yes' is not one of true, false"},
	};
	struct ks_inject_cfg *cfg = cfg_ok("");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char more[256], ann[64];
		snprintf(ann, sizeof(ann), "ktls-sidecar.io/%s", cases[i].ann);
		snprintf(more, sizeof(more), "    %s: \"%s\"\n", ann, cases[i].value);
		/* inbound is in the fixture already: a second key would be a
		 * duplicate, so that one replaces it. */
		struct pod p;
		if (strcmp(cases[i].ann, "inbound") == 0) {
			char text[4096], *at;
			snprintf(text, sizeof(text), k_app_fmt, "");
			at = strstr(text, "\"8443=8080\"");
			char fixed[4096];
			snprintf(fixed, sizeof(fixed), "%.*s\"%s\"%s", (int)(at - text), text,
				 cases[i].value, at + strlen("\"8443=8080\""));
			p = pod_new(fixed);
		} else {
			p = app(more);
		}
		char want[128];
		snprintf(want, sizeof(want), WHAT ": annotation %s: ", ann);
		inject_refused(&p, "Deployment", cfg, want, cases[i].want);
		pod_free(&p);
	}
	/* An unknown ktls-sidecar.io/ key: a typo is not a silent default. */
	struct pod p = app("    ktls-sidecar.io/outbund: \"9000=db:5432\"\n");
	inject_refused(&p, "Deployment", cfg,
		       WHAT ": annotation ktls-sidecar.io/outbund is not one of ktls-sidecar's",
		       NULL);
	pod_free(&p);
	/* A value that is not a string (a YAML number). */
	p = app("    ktls-sidecar.io/log-level: 3\n");
	inject_refused(&p, "Deployment", cfg,
		       WHAT ": annotation ktls-sidecar.io/log-level must be a string", NULL);
	pod_free(&p);
	/* Other prefixes are not ours: left alone. */
	p = app("    sidecar.ktls-sidecar.io/x: y\n    example.com/ktls-sidecar.io: z\n");
	inject_ok(&p, "Deployment", cfg);
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

static void test_good_annotations(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("");
	struct pod p = app("    ktls-sidecar.io/outbound: |\n"
			   "      9001=cart.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/cart\n"
			   "      9002=[fd00::1]:8443\n"
			   "    ktls-sidecar.io/allow: \"spiffe://example.org/ns/a/sa/*, "
			   "spiffe://example.org/ns/b/sa/c\"\n"
			   "    ktls-sidecar.io/inbound-mode: permissive\n"
			   "    ktls-sidecar.io/ktls: \"off\"\n"
			   "    ktls-sidecar.io/log-level: debug\n"
			   "    ktls-sidecar.io/cpu-limit: 500m\n"
			   "    ktls-sidecar.io/memory-request: 1.5Gi\n"
			   "    ktls-sidecar.io/inject: \"true\"\n");
	inject_ok(&p, "Deployment", cfg);
	has_arg(p.spec, "--outbound=127.0.0.1:9001=cart.shop.svc:8443,id=spiffe://example.org/ns/"
			"shop/sa/cart");
	has_arg(p.spec, "--outbound=127.0.0.1:9002=[fd00::1]:8443");
	has_arg(p.spec, "--allow=spiffe://example.org/ns/a/sa/*");
	has_arg(p.spec, "--allow=spiffe://example.org/ns/b/sa/c");
	has_arg(p.spec, "--inbound-mode=permissive");
	has_arg(p.spec, "--ktls=off");
	has_arg(p.spec, "--log-level=debug");
	json_t *res = json_object_get(named(p.spec, "initContainers", "ktls-sidecar"), "resources");
	char *r = dump(res);
	/* The annotations override per key; the defaults' other keys stay. */
	assert_string_equal(r, "{\"requests\":{\"cpu\":\"50m\",\"memory\":\"1.5Gi\"},"
			       "\"limits\":{\"memory\":\"256Mi\",\"cpu\":\"500m\"}}");
	free(r);
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

/* ------------------------------------------------------------ skips */

static void test_skips(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("");
	static const struct {
		const char *text, *want;
	} cases[] = {
	    {"metadata: {annotations: {ktls-sidecar.io/inject: \"false\", "
	     "ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
	     "spec: {containers: [{name: a, image: a}]}\n",
	     WHAT ": skipped: annotation ktls-sidecar.io/inject is \"false\""},
	    {"metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
	     "spec: {hostNetwork: true, containers: [{name: a, image: a}]}\n",
	     WHAT ": skipped: a hostNetwork pod"},
	    {"metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
	     "spec: {containers: [{name: a, image: a}, {name: istio-proxy, image: i}]}\n",
	     WHAT ": skipped: the pod already has another mesh's proxy (istio-proxy)"},
	    {"metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\", "
	     "sidecar.istio.io/status: \"{}\"}}\n"
	     "spec: {containers: [{name: a, image: a}]}\n",
	     "(istio-proxy)"},
	    {"metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\", "
	     "linkerd.io/proxy-version: stable-2.14.10}}\n"
	     "spec: {containers: [{name: a, image: a}]}\n",
	     WHAT ": skipped: the pod already has another mesh's proxy (linkerd-proxy)"},
	    {"metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
	     "spec: {initContainers: [{name: linkerd-proxy, image: l}], containers: [{name: a, "
	     "image: a}]}\n",
	     "(linkerd-proxy)"},
	    {"metadata: {labels: {a: b}}\nspec: {containers: [{name: a, image: a}]}\n",
	     WHAT ": skipped: nothing for a sidecar to carry"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pod p = pod_new(cases[i].text);
		char *before = dump(p.doc);
		struct ks_inject_msg msg;
		inject_want(&p, "Deployment", cfg, KS_INJECT_SKIPPED, &msg);
		if (!strstr(msg.text, cases[i].want))
			fail_msg("case %zu: '%s' lacks '%s'", i, msg.text, cases[i].want);
		char *after = dump(p.doc);
		assert_string_equal(before, after);
		free(before);
		free(after);
		pod_free(&p);
	}
	/* An opt-out with a bad other annotation is still an error: the
	 * typo would bite the day it opts back in. */
	struct pod p = app("    ktls-sidecar.io/inject: \"false\"\n    ktls-sidecar.io/ktls: on\n");
	inject_refused(&p, "Deployment", cfg, "ktls-sidecar.io/ktls", NULL);
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

/* ------------------------------------------------------------ refusals */

static void test_port_clashes(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("");
	struct pod p;

	/* inbound on the admin port */
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"15020=8080\"}}\n"
		    "spec: {containers: [{name: a, image: a}]}\n");
	inject_refused(&p, "Deployment", cfg,
		       WHAT ": sidecar.adminPort and ktls-sidecar.io/inbound's 15020",
		       "each needs its own");
	pod_free(&p);
	/* an app container declares the sidecar's listen port */
	p = pod_new(
	    "metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
	    "spec: {containers: [{name: web, image: a, ports: [{containerPort: 8443}]}]}\n");
	inject_refused(&p, "Deployment", cfg, WHAT ": container web declares port 8443",
		       "ktls-sidecar.io/inbound's 8443");
	pod_free(&p);
	/* an app init container declares the admin port */
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
		    "spec: {initContainers: [{name: i, image: a, ports: [{containerPort: 15020}]}],"
		    " containers: [{name: web, image: a}]}\n");
	inject_refused(&p, "Deployment", cfg, "container i declares port 15020",
		       "sidecar.adminPort");
	pod_free(&p);
	/* an outbound local port on an inbound listen port */
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\", "
		    "ktls-sidecar.io/outbound: \"8443=db:5432\"}}\n"
		    "spec: {containers: [{name: a, image: a}]}\n");
	inject_refused(&p, "Deployment", cfg, "ktls-sidecar.io/outbound's LOCALPORT", "8443");
	pod_free(&p);
	/* the app's own port that inbound forwards to is fine */
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
		    "spec: {containers: [{name: a, image: a, ports: [{containerPort: 8080}]}]}\n");
	inject_ok(&p, "Deployment", cfg);
	pod_free(&p);
	ks_inject_cfg_free(cfg);

	/* with the redirect: its ports too */
	cfg = cfg_ok("redirect: {enabled: true}\n");
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"15006=8080\"}}\n"
		    "spec: {containers: [{name: a, image: a}]}\n");
	inject_refused(&p, "Deployment", cfg,
		       "redirect.inboundPort and ktls-sidecar.io/inbound's 15006", NULL);
	pod_free(&p);
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/outbound: \"15001=db:5432\"}}\n"
		    "spec: {containers: [{name: a, image: a}]}\n");
	inject_refused(&p, "Deployment", cfg, "redirect.outboundPort", "15001");
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

static void test_redirect_refusals(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("redirect: {enabled: true}\n");
	struct pod p;

	/* The app runs as the sidecar's uid (the pod's, or its own). */
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
		    "spec: {securityContext: {runAsUser: 1337}, containers: [{name: web, image: "
		    "a}]}\n");
	inject_refused(&p, "Deployment", cfg,
		       WHAT ": container web runs as uid 1337, the sidecar's", NULL);
	pod_free(&p);
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
		    "spec: {securityContext: {runAsUser: 1000}, containers: [{name: web, image: a,"
		    " securityContext: {runAsUser: 1337}}]}\n");
	inject_refused(&p, "Deployment", cfg, "container web runs as uid 1337", NULL);
	pod_free(&p);
	/* A probe on the steered port: by number and by name, each kind. */
	static const char *const probes[] = {
	    "readinessProbe: {httpGet: {path: /, port: 8080}}",
	    "livenessProbe: {tcpSocket: {port: http}}",
	    "startupProbe: {grpc: {port: 8080}}",
	};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		char text[1024];
		snprintf(text, sizeof(text),
			 "metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
			 "spec: {containers: [{name: web, image: a, ports: [{name: http, "
			 "containerPort: 8080}], %s}]}\n",
			 probes[i]);
		p = pod_new(text);
		inject_refused(&p, "Deployment", cfg, WHAT ": container web's ",
			       "uses port 8080, which the redirect steers");
		pod_free(&p);
	}
	/* A probe on another port, or an exec probe, is fine. */
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
		    "spec: {containers: [{name: web, image: a, readinessProbe: {httpGet: {port: "
		    "8081}}, livenessProbe: {exec: {command: [true]}}}]}\n");
	inject_ok(&p, "Deployment", cfg);
	pod_free(&p);
	/* Two inbound ports: the redirect steers one. */
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080,9443=9090\"}}\n"
		    "spec: {containers: [{name: web, image: a}]}\n");
	inject_refused(&p, "Deployment", cfg,
		       WHAT ": annotation ktls-sidecar.io/inbound names 2 ports", "name one");
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

static void test_malformed_pods(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("");
	struct pod p;
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
		    "spec: {containers: []}\n");
	inject_refused(&p, "Deployment", cfg, WHAT ": the pod has no containers", NULL);
	pod_free(&p);
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
		    "spec: {containers: [{name: a, image: a}], volumes: {a: 1}}\n");
	inject_refused(&p, "Deployment", cfg, WHAT ": spec.volumes is not a list", NULL);
	pod_free(&p);
	p = pod_new("metadata: {annotations: [a]}\nspec: {containers: [{name: a, image: a}]}\n");
	inject_refused(&p, "Deployment", cfg, WHAT ": metadata.annotations is not a mapping", NULL);
	pod_free(&p);
	/* Only our own containers (an earlier injection, the app removed). */
	p = pod_new("metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
		    "spec: {containers: [{name: ktls-sidecar, image: a}]}\n");
	inject_refused(&p, "Deployment", cfg, WHAT ": the pod has no containers of its own", NULL);
	pod_free(&p);
	/* Null lists and annotations ("volumes:" with nothing) are absent. */
	p = pod_new("metadata:\n  annotations:\n    ktls-sidecar.io/inbound: \"8443=8080\"\n"
		    "spec:\n  volumes:\n  initContainers:\n  securityContext:\n"
		    "  containers: [{name: a, image: a}]\n");
	inject_ok(&p, "Deployment", cfg);
	assert_string_equal(names(p.spec, "volumes"), "ktls-run,ktls-ca");
	pod_free(&p);
	p = pod_new("metadata:\n  annotations:\nspec:\n  containers: [{name: a, image: a}]\n");
	struct ks_inject_msg msg;
	inject_want(&p, "Deployment", cfg, KS_INJECT_SKIPPED, &msg);
	pod_free(&p);
	ks_inject_cfg_free(cfg);
}

/* ------------------------------------------------------------ re-injection */

static void test_idempotent(void **state)
{
	(void)state;
	static const char *const cfgs[] = {
	    "",
	    "mode: classic\n",
	    "redirect: {enabled: true}\n",
	    "mode: classic\nredirect: {enabled: true}\n",
	    "identity: {source: spire}\n",
	    "identity: {source: files, files: {secretName: s}}\n",
	};
	for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		struct ks_inject_cfg *cfg = cfg_ok(cfgs[i]);
		struct pod p = app("    ktls-sidecar.io/outbound: \"9000=db:5432\"\n");
		inject_ok(&p, "Deployment", cfg);
		char *once = dump(p.doc);
		inject_ok(&p, "Deployment", cfg);
		char *twice = dump(p.doc);
		if (strcmp(once, twice) != 0)
			fail_msg("config %zu: a second injection changed the pod:\n%s\n%s", i, once,
				 twice);
		free(once);
		free(twice);
		pod_free(&p);
		ks_inject_cfg_free(cfg);
	}
}

/* An object injected under one configuration, re-injected under another,
 * is exactly the object injected fresh under the second: nothing of the
 * first remains, and the keys are in the same order. */
static void test_reinject(void **state)
{
	(void)state;
	static const struct {
		const char *from, *to;
	} cases[] = {
	    {"image: {tag: \"0.0.1\"}\n", ""},
	    {"image: {tag: \"0.0.1\", repository: old/ktls}\nsidecar: {adminPort: 15021}\n", ""},
	    {"", "mode: classic\n"},
	    {"mode: classic\n", ""},
	    {"redirect: {enabled: true}\n", ""},
	    {"", "redirect: {enabled: true}\nmode: classic\n"},
	    {"identity: {source: spire}\n", "identity: {source: csi-driver-spiffe}\n"},
	    {"sidecar: {extraArgs: [--log-format=json]}\n", ""},
	};
	/* Pods with and without the lists the shape adds to. */
	static const char *const pods[] = {
	    NULL, /* app() */
	    "metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
	    "spec: {containers: [{name: a, image: a}]}\n",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t j = 0; j < sizeof(pods) / sizeof(pods[0]); j++) {
			struct ks_inject_cfg *from = cfg_ok(cases[i].from);
			struct ks_inject_cfg *to = cfg_ok(cases[i].to);
			struct pod p = pods[j] ? pod_new(pods[j]) : app(NULL);
			struct pod q = pods[j] ? pod_new(pods[j]) : app(NULL);
			inject_ok(&p, "Deployment", from);
			inject_ok(&p, "Deployment", to);
			inject_ok(&q, "Deployment", to);
			char *re = dump(p.doc), *fresh = dump(q.doc);
			if (strcmp(re, fresh) != 0)
				fail_msg("case %zu/%zu: re-injected:\n%s\nfresh:\n%s", i, j, re,
					 fresh);
			free(re);
			free(fresh);
			pod_free(&p);
			pod_free(&q);
			ks_inject_cfg_free(from);
			ks_inject_cfg_free(to);
		}
	}
}

/* ------------------------------------------------------------ objects */

static void test_objects(void **state)
{
	(void)state;
	struct ks_inject_cfg *cfg = cfg_ok("");
	struct ks_inject_msg msg = {{0}};
	static const char *const kinds[] = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
					    "Job"};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		char text[1024];
		snprintf(text, sizeof(text),
			 "kind: %s\nmetadata: {name: w, namespace: ns}\nspec:\n  template:\n"
			 "    metadata: {annotations: {ktls-sidecar.io/inbound: \"8443=8080\"}}\n"
			 "    spec: {containers: [{name: a, image: a}]}\n",
			 kinds[i]);
		json_t *o = yaml1(text);
		assert_int_equal(ks_inject_object(o, cfg, NULL, NULL, &msg), KS_INJECT_DONE);
		json_t *spec = json_object_get(
		    json_object_get(json_object_get(o, "spec"), "template"), "spec");
		assert_string_equal(names(spec, "initContainers"), "ktls-agent,ktls-sidecar");
		json_decref(o);
	}
	/* CronJob: two levels down. */
	json_t *o = yaml1("kind: CronJob\nmetadata: {name: c}\nspec:\n  jobTemplate:\n    spec:\n"
			  "      template:\n        metadata: {annotations: "
			  "{ktls-sidecar.io/outbound: \"9000=db:1\"}}\n"
			  "        spec: {containers: [{name: a, image: a}]}\n");
	assert_int_equal(ks_inject_object(o, cfg, NULL, NULL, &msg), KS_INJECT_DONE);
	char *s = dump(o);
	assert_non_null(strstr(s, "ktls-sidecar"));
	free(s);
	json_decref(o);
	/* Anything else passes, untouched. */
	o = yaml1("kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n");
	char *before = dump(o);
	assert_int_equal(ks_inject_object(o, cfg, NULL, NULL, &msg), KS_INJECT_PASSED);
	char *after = dump(o);
	assert_string_equal(before, after);
	free(before);
	free(after);
	json_decref(o);
	/* A template without metadata gets one only when injected. */
	o = yaml1("kind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n"
		  "    spec: {containers: [{name: a, image: a}]}\n");
	before = dump(o);
	assert_int_equal(ks_inject_object(o, cfg, NULL, NULL, &msg), KS_INJECT_SKIPPED);
	after = dump(o);
	assert_string_equal(before, after);
	assert_non_null(strstr(msg.text, "Deployment d: skipped"));
	free(before);
	free(after);
	json_decref(o);
	/* A workload without its template. */
	o = yaml1("kind: Deployment\nmetadata: {name: d, namespace: shop}\nspec: {replicas: 1}\n");
	assert_int_equal(ks_inject_object(o, cfg, NULL, NULL, &msg), -EINVAL);
	assert_non_null(strstr(msg.text, "Deployment shop/d: no spec.template to inject"));
	json_decref(o);
	ks_inject_cfg_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cfg_defaults),     cmocka_unit_test(test_cfg_unknown_and_types),
	    cmocka_unit_test(test_cfg_apiversion),   cmocka_unit_test(test_cfg_enums),
	    cmocka_unit_test(test_cfg_durations),    cmocka_unit_test(test_cfg_identity),
	    cmocka_unit_test(test_cfg_trust_domain), cmocka_unit_test(test_native),
	    cmocka_unit_test(test_classic),	     cmocka_unit_test(test_redirect_placement),
	    cmocka_unit_test(test_identity_sources), cmocka_unit_test(test_drain_delay),
	    cmocka_unit_test(test_fs_group),	     cmocka_unit_test(test_bad_annotations),
	    cmocka_unit_test(test_good_annotations), cmocka_unit_test(test_skips),
	    cmocka_unit_test(test_port_clashes),     cmocka_unit_test(test_redirect_refusals),
	    cmocka_unit_test(test_malformed_pods),   cmocka_unit_test(test_idempotent),
	    cmocka_unit_test(test_reinject),	     cmocka_unit_test(test_objects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
