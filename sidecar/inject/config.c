/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The InjectorConfig document: the injector's settings, with the same
 * names and defaults as the sidecar chart's values (helm/ktls-sidecar),
 * because the chart hands its values to the injector in this form (the
 * README's "Injection" has the schema).
 */
#include "inject/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"
#include "common/version.h"

#define KS_CFG_API  "ktls-sidecar.io/v1alpha1"
#define KS_CFG_KIND "InjectorConfig"

/* The defaults, which are also the schema: every key a document may set,
 * with the JSON type it must have. Keep in step with the sidecar chart's
 * values.yaml (t_inject_chart compares the two renders). */
static const char k_defaults[] =
    "{\"apiVersion\": \"" KS_CFG_API "\", \"kind\": \"" KS_CFG_KIND "\","
    " \"metadata\": {}, \"trustDomain\": \"\", \"mode\": \"native\","
    " \"image\": {\"repository\": \"ktls-sidecar\", \"tag\": \"\", \"pullPolicy\": "
    "\"IfNotPresent\"},"
    " \"identity\": {\"source\": \"dev\","
    "   \"csiDriverSpiffe\": {\"driver\": \"spiffe.csi.cert-manager.io\","
    "                         \"mountPath\": \"/var/run/secrets/spiffe.io\"},"
    "   \"spire\": {\"driver\": \"csi.spiffe.io\", \"mountPath\": \"/spiffe-workload-api\","
    "               \"socketName\": \"spire-agent.sock\"},"
    "   \"files\": {\"secretName\": \"\", \"layout\": \"csi-driver-spiffe\","
    "               \"mountPath\": \"/etc/ktls-identity\"}},"
    " \"agent\": {\"enabled\": true, \"caSecret\": \"ktls-dev-ca\", \"ttl\": \"1h\","
    "   \"resources\": {\"requests\": {\"cpu\": \"5m\", \"memory\": \"8Mi\"},"
    "                   \"limits\": {\"memory\": \"64Mi\"}}},"
    " \"sidecar\": {\"uid\": 1337, \"adminPort\": 15020, \"startupTimeoutSeconds\": 120,"
    "   \"drainTimeout\": \"20s\", \"drainDelay\": \"\", \"logLevel\": \"info\", \"io\": \"auto\","
    "   \"workers\": 0, \"ktls\": \"auto\", \"inboundMode\": \"strict\","
    "   \"resources\": {\"requests\": {\"cpu\": \"50m\", \"memory\": \"32Mi\"},"
    "                   \"limits\": {\"memory\": \"256Mi\"}},"
    "   \"extraArgs\": []},"
    " \"redirect\": {\"enabled\": false, \"image\": \"\", \"inboundPort\": 15006,"
    "   \"outboundPort\": 15001, \"excludePorts\": [], \"excludeCidrs\": [], \"ipv4Only\": false}}";

/* Objects whose keys are the user's (a container's resources), replaced
 * whole rather than merged against the defaults' keys. metadata is there
 * for a name and for the annotations tools add (Helm 4 marks every
 * document it hands a post-renderer with postrenderer.helm.sh/...); the
 * injector reads nothing in it. */
static const char *const k_open[] = {"metadata", "agent.resources", "sidecar.resources", NULL};

/* ------------------------------------------------------------ access */

static json_t *lookup(json_t *tree, const char *path)
{
	char key[64];
	json_t *v = tree;

	while (v && *path) {
		size_t n = strcspn(path, ".");
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		v = json_object_get(v, key);
		path += n + (path[n] == '.');
	}
	return v;
}

const json_t *ks_cfg_get(const struct ks_inject_cfg *cfg, const char *path)
{
	return lookup(cfg->tree, path);
}

const char *ks_cfg_str(const struct ks_inject_cfg *cfg, const char *path)
{
	const char *s = json_string_value(lookup(cfg->tree, path));
	return s ? s : "";
}

long long ks_cfg_int(const struct ks_inject_cfg *cfg, const char *path)
{
	return json_integer_value(lookup(cfg->tree, path));
}

bool ks_cfg_bool(const struct ks_inject_cfg *cfg, const char *path)
{
	return json_is_true(lookup(cfg->tree, path));
}

/* ------------------------------------------------------------ merge */

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "a mapping";
	case JSON_ARRAY:
		return "a list";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "true or false";
	default:
		return "null";
	}
}

static int merge(json_t *into, const json_t *from, const char *path, struct ks_inject_msg *msg)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)from, k, v)
	{
		char sub[128];
		snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
		json_t *def = json_object_get(into, k);
		if (!def)
			return ks_inject_fail(msg, "InjectorConfig: unknown key '%s'", sub);
		if (json_is_null(v))
			continue; /* YAML's "key:" with nothing: keep the default */
		bool same = json_typeof(def) == json_typeof(v) ||
			    (json_is_boolean(def) && json_is_boolean(v));
		if (!same)
			return ks_inject_fail(msg, "InjectorConfig: %s must be %s, not %s", sub,
					      type_name(def), type_name(v));
		if (json_is_object(def) && !ks_inject_in_list(sub, k_open)) {
			int rc = merge(def, v, sub, msg);
			if (rc)
				return rc;
			continue;
		}
		if (json_object_set(into, k, v))
			return -ENOMEM;
	}
	return 0;
}

/* ------------------------------------------------------------ checks */

static bool dns_label(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return false;
	for (; *s; s++)
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '-'))
			return false;
	return true;
}

/* A DNS-1123 subdomain: a Secret's or a CSI driver's name. */
static bool dns_subdomain(const char *s)
{
	char buf[254];
	if (strlen(s) == 0 || strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	for (char *save = NULL, *p = strtok_r(buf, ".", &save); p; p = strtok_r(NULL, ".", &save))
		if (!dns_label(p, 63))
			return false;
	return s[strlen(s) - 1] != '.' && s[0] != '.' && !strstr(s, "..");
}

bool ks_inject_quantity_ok(const char *s)
{
	/* resource.Quantity: [+-]? digits [. digits] then a suffix (Ki Mi Gi Ti
	 * Pi Ei, n u m k M G T P E) or an exponent (e3, E-2). */
	static const char *const suffix[] = {"",  "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u",
					     "m", "k",	"M",  "G",  "T",  "P",	"E",  NULL};
	const char *p = s;
	if (*p == '+' || *p == '-')
		p++;
	size_t ip = strspn(p, "0123456789");
	p += ip;
	size_t fp = 0;
	if (*p == '.') {
		p++;
		fp = strspn(p, "0123456789");
		p += fp;
	}
	if (ip + fp == 0)
		return false;
	if ((*p == 'e' || *p == 'E') && p[1]) {
		const char *e = p + 1;
		if (*e == '+' || *e == '-')
			e++;
		if (*e && strspn(e, "0123456789") == strlen(e))
			return true;
	}
	return ks_inject_in_list(p, suffix);
}

static int check_resources(const json_t *res, const char *path, struct ks_inject_msg *msg)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)res, k, v)
	{
		if (strcmp(k, "requests") != 0 && strcmp(k, "limits") != 0)
			return ks_inject_fail(
			    msg, "InjectorConfig: %s.%s: only requests and limits", path, k);
		if (!json_is_object(v))
			return ks_inject_fail(msg, "InjectorConfig: %s.%s must be a mapping", path,
					      k);
		const char *r;
		json_t *q;
		json_object_foreach(v, r, q)
		{
			const char *qs = json_string_value(q);
			char num[32];
			if (json_is_integer(q)) {
				snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
					 json_integer_value(q));
				qs = num;
			}
			if (!qs || !ks_inject_quantity_ok(qs))
				return ks_inject_fail(
				    msg,
				    "InjectorConfig: %s.%s.%s is not a Kubernetes "
				    "quantity (e.g. 50m, 64Mi)",
				    path, k, r);
		}
	}
	return 0;
}

struct choice {
	const char *path;
	const char *const *values;
};

static const char *const k_modes[] = {"native", "classic", NULL};
static const char *const k_pull[] = {"Always", "IfNotPresent", "Never", NULL};
static const char *const k_sources[] = {"dev", "csi-driver-spiffe", "spire", "files", NULL};
static const char *const k_layouts[] = {"csi-driver-spiffe", "spiffe-helper", "files", NULL};
static const char *const k_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const k_io[] = {"auto", "uring", "epoll", NULL};
static const char *const k_ktls[] = {"auto", "off", "require", NULL};
static const char *const k_inmode[] = {"strict", "permissive", NULL};

static const struct choice k_choices[] = {
    {"mode", k_modes},
    {"image.pullPolicy", k_pull},
    {"identity.source", k_sources},
    {"identity.files.layout", k_layouts},
    {"sidecar.logLevel", k_levels},
    {"sidecar.io", k_io},
    {"sidecar.ktls", k_ktls},
    {"sidecar.inboundMode", k_inmode},
};

static int check_choice(const struct ks_inject_cfg *cfg, const struct choice *c,
			struct ks_inject_msg *msg)
{
	const char *v = ks_cfg_str(cfg, c->path);
	if (ks_inject_in_list(v, c->values))
		return 0;
	char all[128] = "";
	for (const char *const *p = c->values; *p; p++)
		snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s",
			 p == c->values ? "" : ", ", *p);
	return ks_inject_fail(msg, "InjectorConfig: %s '%s': expected one of %s", c->path, v, all);
}

static int check_range(const struct ks_inject_cfg *cfg, const char *path, long long lo,
		       long long hi, struct ks_inject_msg *msg)
{
	long long v = ks_cfg_int(cfg, path);
	if (v < lo || v > hi)
		return ks_inject_fail(msg, "InjectorConfig: %s %lld: expected %lld-%lld", path, v,
				      lo, hi);
	return 0;
}

static int check_duration(const struct ks_inject_cfg *cfg, const char *path, bool empty_ok,
			  uint32_t *ms, struct ks_inject_msg *msg)
{
	const char *v = ks_cfg_str(cfg, path);
	*ms = 0;
	if (empty_ok && !*v)
		return 0;
	if (ks_parse_duration_ms(v, ms))
		return ks_inject_fail(msg,
				      "InjectorConfig: %s '%s': expected digits and ms, s, m or h "
				      "(e.g. 20s)",
				      path, v);
	return 0;
}

static int check_path(const struct ks_inject_cfg *cfg, const char *path, struct ks_inject_msg *msg)
{
	const char *v = ks_cfg_str(cfg, path);
	if (v[0] != '/' || strstr(v, "..") || strpbrk(v, " \t\n:"))
		return ks_inject_fail(msg, "InjectorConfig: %s '%s': expected an absolute path",
				      path, v);
	/* The control socket's emptyDir is /run/ktls-sidecar: a volume at, under
	 * or above it would hide one behind the other. */
	static const char run[] = "/run/ktls-sidecar";
	size_t n = strlen(v);
	bool under = strncmp(v, run, sizeof(run) - 1) == 0 &&
		     (v[sizeof(run) - 1] == '\0' || v[sizeof(run) - 1] == '/');
	bool above =
	    n < sizeof(run) - 1 && strncmp(run, v, n) == 0 && (v[n - 1] == '/' || run[n] == '/');
	if (under || above)
		return ks_inject_fail(msg,
				      "InjectorConfig: %s '%s' overlaps the control socket's "
				      "/run/ktls-sidecar: choose another",
				      path, v);
	return 0;
}

/* SPIFFE-ID.md 2.1: lowercase letters, digits, '.', '-' and '_'. */
static bool trust_domain_ok(const char *td)
{
	if (!*td || strlen(td) > 255)
		return false;
	for (; *td; td++)
		if (!(islower((unsigned char)*td) || isdigit((unsigned char)*td) || *td == '.' ||
		      *td == '-' || *td == '_'))
			return false;
	return true;
}

static bool identity_flag(const char *arg)
{
	static const char *const flags[] = {
	    "cert",	    "key",	 "ca", "identity-dir", "identity-layout",
	    "workload-api", "spiffe-id", NULL};
	const char *p = arg;
	if (*p != '-')
		return false;
	p += p[1] == '-' ? 2 : 1;
	size_t n = strcspn(p, "=");
	for (const char *const *f = flags; *f; f++)
		if (strlen(*f) == n && strncmp(p, *f, n) == 0)
			return true;
	return false;
}

int ks_inject_cfg_check(const struct ks_inject_cfg *cfg, struct ks_inject_msg *msg)
{
	int rc;
	uint32_t drain, delay, ttl;

	if (strcmp(ks_cfg_str(cfg, "apiVersion"), KS_CFG_API) != 0 ||
	    strcmp(ks_cfg_str(cfg, "kind"), KS_CFG_KIND) != 0)
		return ks_inject_fail(msg, "InjectorConfig: expected apiVersion %s, kind %s",
				      KS_CFG_API, KS_CFG_KIND);
	const char *td = ks_cfg_str(cfg, "trustDomain");
	if (!*td)
		return ks_inject_fail(msg,
				      "no trust domain: set trustDomain in the InjectorConfig, "
				      "or --trust-domain");
	if (!trust_domain_ok(td))
		return ks_inject_fail(msg,
				      "trustDomain '%s': only lowercase letters, digits, '.', '-' "
				      "and '_' (SPIFFE-ID.md 2.1)",
				      td);
	for (size_t i = 0; i < sizeof(k_choices) / sizeof(k_choices[0]); i++)
		if ((rc = check_choice(cfg, &k_choices[i], msg)))
			return rc;
	if ((rc = check_range(cfg, "sidecar.uid", 1, INT32_MAX, msg)) ||
	    (rc = check_range(cfg, "sidecar.adminPort", 1, 65535, msg)) ||
	    (rc = check_range(cfg, "sidecar.startupTimeoutSeconds", 1, 3600, msg)) ||
	    (rc = check_range(cfg, "sidecar.workers", 0, 1024, msg)) ||
	    (rc = check_range(cfg, "redirect.inboundPort", 1, 65535, msg)) ||
	    (rc = check_range(cfg, "redirect.outboundPort", 1, 65535, msg)))
		return rc;
	if ((rc = check_duration(cfg, "sidecar.drainTimeout", false, &drain, msg)) ||
	    (rc = check_duration(cfg, "sidecar.drainDelay", true, &delay, msg)) ||
	    (rc = check_duration(cfg, "agent.ttl", false, &ttl, msg)))
		return rc;
	if (delay > drain)
		return ks_inject_fail(
		    msg,
		    "InjectorConfig: sidecar.drainDelay %s is longer than "
		    "sidecar.drainTimeout %s: the delay counts inside the timeout",
		    ks_cfg_str(cfg, "sidecar.drainDelay"), ks_cfg_str(cfg, "sidecar.drainTimeout"));
	if ((rc =
		 check_resources(ks_cfg_get(cfg, "sidecar.resources"), "sidecar.resources", msg)) ||
	    (rc = check_resources(ks_cfg_get(cfg, "agent.resources"), "agent.resources", msg)))
		return rc;
	if (!*ks_cfg_str(cfg, "image.repository") ||
	    strpbrk(ks_cfg_str(cfg, "image.repository"), " \t\n@"))
		return ks_inject_fail(msg,
				      "InjectorConfig: image.repository '%s' is not an image "
				      "name",
				      ks_cfg_str(cfg, "image.repository"));
	const char *tag = ks_cfg_str(cfg, "image.tag");
	if (strpbrk(tag, " \t\n:/@"))
		return ks_inject_fail(msg, "InjectorConfig: image.tag '%s' is not a tag", tag);

	const char *src = ks_cfg_str(cfg, "identity.source");
	if (strcmp(src, "dev") == 0 && !dns_subdomain(ks_cfg_str(cfg, "agent.caSecret")))
		return ks_inject_fail(msg,
				      "InjectorConfig: agent.caSecret '%s' is not a Secret name",
				      ks_cfg_str(cfg, "agent.caSecret"));
	if (strcmp(src, "files") == 0) {
		const char *sec = ks_cfg_str(cfg, "identity.files.secretName");
		const char *lay = ks_cfg_str(cfg, "identity.files.layout");
		if (!*sec)
			return ks_inject_fail(
			    msg,
			    "identity.source=files needs identity.files.secretName: the Secret "
			    "holding %s (its keys for identity.files.layout=%s)",
			    strcmp(lay, "spiffe-helper") == 0
				? "svid.pem, svid_key.pem, svid_bundle.pem"
			    : strcmp(lay, "files") == 0 ? "cert.pem, key.pem, ca.pem"
							: "tls.crt, tls.key, ca.crt",
			    lay);
		if (!dns_subdomain(sec))
			return ks_inject_fail(
			    msg,
			    "InjectorConfig: identity.files.secretName '%s' is not "
			    "a Secret name",
			    sec);
	}
	if (strcmp(src, "csi-driver-spiffe") == 0 &&
	    ((rc = check_path(cfg, "identity.csiDriverSpiffe.mountPath", msg)) ||
	     !dns_subdomain(ks_cfg_str(cfg, "identity.csiDriverSpiffe.driver"))))
		return rc ? rc
			  : ks_inject_fail(msg,
					   "InjectorConfig: identity.csiDriverSpiffe.driver is "
					   "not a CSI driver name");
	if (strcmp(src, "spire") == 0) {
		const char *sock = ks_cfg_str(cfg, "identity.spire.socketName");
		if ((rc = check_path(cfg, "identity.spire.mountPath", msg)))
			return rc;
		if (!dns_subdomain(ks_cfg_str(cfg, "identity.spire.driver")))
			return ks_inject_fail(msg, "InjectorConfig: identity.spire.driver is not a "
						   "CSI driver name");
		if (!*sock || strchr(sock, '/') || strcmp(sock, "..") == 0)
			return ks_inject_fail(msg,
					      "InjectorConfig: identity.spire.socketName '%s': a "
					      "file name in identity.spire.mountPath",
					      sock);
	}
	if (strcmp(src, "files") == 0 && (rc = check_path(cfg, "identity.files.mountPath", msg)))
		return rc;

	size_t i;
	json_t *v;
	json_array_foreach(ks_cfg_get(cfg, "sidecar.extraArgs"), i, v)
	{
		if (!json_is_string(v))
			return ks_inject_fail(msg,
					      "InjectorConfig: sidecar.extraArgs[%zu] must be a "
					      "string",
					      i);
		/* The sidecar takes its identity from one place: the source. */
		if (identity_flag(json_string_value(v)))
			return ks_inject_fail(msg,
					      "InjectorConfig: sidecar.extraArgs '%s': "
					      "identity.source=%s already says where the identity "
					      "comes from; set identity.* instead",
					      json_string_value(v), src);
	}
	json_array_foreach(ks_cfg_get(cfg, "redirect.excludePorts"), i, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 65535)
			return ks_inject_fail(
			    msg,
			    "InjectorConfig: redirect.excludePorts[%zu]: expected "
			    "a port, 1-65535",
			    i);
	}
	json_array_foreach(ks_cfg_get(cfg, "redirect.excludeCidrs"), i, v)
	{
		const char *c = json_string_value(v);
		if (!c || !strchr(c, '/') || strpbrk(c, " \t\n,"))
			return ks_inject_fail(
			    msg,
			    "InjectorConfig: redirect.excludeCidrs[%zu]: expected "
			    "ADDRESS/PREFIX",
			    i);
	}
	if (ks_cfg_int(cfg, "redirect.inboundPort") == ks_cfg_int(cfg, "redirect.outboundPort") ||
	    ks_cfg_int(cfg, "redirect.inboundPort") == ks_cfg_int(cfg, "sidecar.adminPort") ||
	    ks_cfg_int(cfg, "redirect.outboundPort") == ks_cfg_int(cfg, "sidecar.adminPort"))
		return ks_inject_fail(msg,
				      "InjectorConfig: redirect.inboundPort, "
				      "redirect.outboundPort and sidecar.adminPort must differ");
	return 0;
}

/* ------------------------------------------------------------ load */

int ks_inject_cfg_load(const json_t *doc, struct ks_inject_cfg **out, struct ks_inject_msg *msg)
{
	json_error_t jerr;
	struct ks_inject_cfg *cfg = calloc(1, sizeof(*cfg));
	int rc;

	if (!cfg)
		return -ENOMEM;
	cfg->tree = json_loads(k_defaults, 0, &jerr);
	if (!cfg->tree) {
		free(cfg);
		return -ENOMEM;
	}
	/* The image defaults to the one this injector was built with. */
	json_object_set_new(json_object_get(cfg->tree, "image"), "tag", json_string(ks_release()));
	if (doc) {
		if (!json_is_object(doc)) {
			rc = ks_inject_fail(msg, "InjectorConfig: expected a mapping");
			goto fail;
		}
		if ((rc = merge(cfg->tree, doc, "", msg)))
			goto fail;
		/* An empty tag is "the default", as in the chart. */
		if (!*ks_cfg_str(cfg, "image.tag"))
			json_object_set_new(json_object_get(cfg->tree, "image"), "tag",
					    json_string(ks_release()));
	}
	*out = cfg;
	return 0;
fail:
	ks_inject_cfg_free(cfg);
	return rc;
}

void ks_inject_cfg_free(struct ks_inject_cfg *cfg)
{
	if (!cfg)
		return;
	json_decref(cfg->tree);
	free(cfg);
}

int ks_inject_cfg_set(struct ks_inject_cfg *cfg, const char *key, const char *value,
		      struct ks_inject_msg *msg)
{
	json_t *def = lookup(cfg->tree, key);
	if (!def || json_is_object(def) || json_is_array(def))
		return ks_inject_fail(
		    msg, "InjectorConfig: '%s' cannot be set from the command line", key);
	json_t *v;
	if (json_is_string(def)) {
		v = json_string(value);
	} else if (json_is_integer(def)) {
		unsigned long n;
		if (ks_parse_uint(value, INT32_MAX, &n))
			return ks_inject_fail(msg, "%s '%s': expected a number", key, value);
		v = json_integer((json_int_t)n);
	} else {
		if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
			return ks_inject_fail(msg, "%s '%s': expected true or false", key, value);
		v = json_boolean(strcmp(value, "true") == 0);
	}
	if (!v)
		return ks_inject_fail(msg, "%s: not valid UTF-8", key);
	const char *dot = strrchr(key, '.');
	char parent[64] = "";
	if (dot) {
		snprintf(parent, sizeof(parent), "%.*s", (int)(dot - key), key);
	}
	json_t *obj = dot ? lookup(cfg->tree, parent) : cfg->tree;
	return json_object_set_new(obj, dot ? dot + 1 : key, v) ? -ENOMEM : 0;
}
