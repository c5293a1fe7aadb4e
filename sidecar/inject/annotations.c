/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-pod configuration: the pod template's ktls-sidecar.io/... annotations
 * (README, "Injection"). Annotations and not labels, because the values
 * hold characters labels cannot (':', '/', ','), as with Istio's
 * sidecar.istio.io/... and Linkerd's config.linkerd.io/....
 */
#include "inject/pod.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"

#define ANN(x) KS_INJECT_ANN_PREFIX x

static const char *const k_known[] = {ANN("inject"),	     ANN("inbound"),
				      ANN("outbound"),	     ANN("allow"),
				      ANN("inbound-mode"),   ANN("ktls"),
				      ANN("log-level"),	     ANN("cpu-request"),
				      ANN("cpu-limit"),	     ANN("memory-request"),
				      ANN("memory-limit"),   KS_INJECT_ANN_VERSION,
				      KS_INJECT_ANN_FSGROUP, NULL};

static bool known(const char *k)
{
	for (const char *const *p = k_known; *p; p++)
		if (strcmp(k, *p) == 0)
			return true;
	return false;
}

static int bad(struct ks_inject_msg *msg, const char *what, const char *ann, const char *value,
	       const char *why)
{
	return ks_inject_fail(msg, "%s: annotation %s: '%.120s' %s", what, ann, value, why);
}

/* Splits a list on commas, spaces, tabs and newlines (a YAML block scalar
 * gives one entry per line). Calls fn for each non-empty entry. */
static int each_entry(const char *value, const char *seps, int (*fn)(void *arg, const char *entry),
		      void *arg)
{
	char *copy = strdup(value);
	if (!copy)
		return -ENOMEM;
	int rc = 0;
	char *save = NULL;
	for (char *e = strtok_r(copy, seps, &save); e && rc == 0; e = strtok_r(NULL, seps, &save))
		rc = fn(arg, e);
	free(copy);
	return rc;
}

struct ctx {
	struct ks_pod_opts *o;
	const char *what, *ann, *value;
	struct ks_inject_msg *msg;
};

static int add_inbound(void *arg, const char *e)
{
	struct ctx *c = arg;
	char l[8], a[8];
	const char *eq = strchr(e, '=');
	uint16_t lp, ap;

	if (!eq || (size_t)(eq - e) >= sizeof(l) || strlen(eq + 1) >= sizeof(a))
		return bad(c->msg, c->what, c->ann, e,
			   "is not LISTEN=APP (the sidecar's mTLS port = the app's port)");
	snprintf(l, sizeof(l), "%.*s", (int)(eq - e), e);
	snprintf(a, sizeof(a), "%s", eq + 1);
	if (ks_parse_port(l, false, &lp) || ks_parse_port(a, false, &ap))
		return bad(c->msg, c->what, c->ann, e, "is not LISTEN=APP with ports 1-65535");
	if (c->o->nin == KS_POD_MAX_INBOUND)
		return bad(c->msg, c->what, c->ann, c->value, "names more than 16 ports");
	for (size_t i = 0; i < c->o->nin; i++)
		if (c->o->in[i].listen == lp)
			return bad(c->msg, c->what, c->ann, e, "repeats a LISTEN port");
	c->o->in[c->o->nin++] = (struct ks_pod_inbound){lp, ap};
	return 0;
}

/* HOST:PORT, HOST a DNS name or an address ([v6] in brackets). */
static bool host_port_ok(const char *hp, size_t n)
{
	char buf[300];
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, hp, n);
	buf[n] = '\0';
	char *colon = strrchr(buf, ':');
	if (!colon || colon == buf)
		return false;
	uint16_t port;
	if (ks_parse_port(colon + 1, false, &port))
		return false;
	*colon = '\0';
	if (buf[0] == '[')
		return colon[-1] == ']' &&
		       strspn(buf + 1, "0123456789abcdefABCDEF:.]") == strlen(buf + 1);
	return strspn(buf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") ==
	       strlen(buf);
}

static int add_outbound(void *arg, const char *e)
{
	struct ctx *c = arg;
	const char *eq = strchr(e, '=');
	char lp[8];
	uint16_t port;

	if (!eq || (size_t)(eq - e) >= sizeof(lp))
		return bad(c->msg, c->what, c->ann, e,
			   "is not LOCALPORT=HOST:PORT[,id=SPIFFE-ID][,pin=SHA256]");
	snprintf(lp, sizeof(lp), "%.*s", (int)(eq - e), e);
	if (ks_parse_port(lp, false, &port))
		return bad(c->msg, c->what, c->ann, e,
			   "has a LOCALPORT that is not a port 1-65535");
	const char *remote = eq + 1;
	size_t rn = strcspn(remote, ",");
	if (!host_port_ok(remote, rn))
		return bad(c->msg, c->what, c->ann, e, "has no HOST:PORT after '='");
	for (const char *opt = remote + rn; *opt == ',';) {
		opt++;
		size_t n = strcspn(opt, ",");
		bool id = strncmp(opt, "id=spiffe://", 12) == 0 && n > 12;
		bool pin = strncmp(opt, "pin=", 4) == 0 && n == 4 + 64 &&
			   strspn(opt + 4, "0123456789abcdefABCDEF") >= 64;
		if (!id && !pin)
			return bad(
			    c->msg, c->what, c->ann, e,
			    "has an option that is neither id=spiffe://... nor pin=<64 hex>");
		opt += n;
	}
	size_t i;
	json_t *v;
	json_array_foreach(c->o->outbound, i, v)
	{
		if (strncmp(json_string_value(v), e, (size_t)(eq - e) + 1) == 0)
			return bad(c->msg, c->what, c->ann, e, "repeats a LOCALPORT");
	}
	return json_array_append_new(c->o->outbound, json_string(e)) ? -ENOMEM : 0;
}

static int add_allow(void *arg, const char *e)
{
	struct ctx *c = arg;
	if (strncmp(e, "spiffe://", 9) != 0 || strlen(e) <= 9)
		return bad(c->msg, c->what, c->ann, e, "is not a SPIFFE ID pattern (spiffe://...)");
	return json_array_append_new(c->o->allow, json_string(e)) ? -ENOMEM : 0;
}

static int choice(const char *what, const char *ann, const char *v, const char *const *ok,
		  const char **out, struct ks_inject_msg *msg)
{
	char all[96] = "";
	for (const char *const *p = ok; *p; p++) {
		if (strcmp(v, *p) == 0) {
			*out = *p;
			return 0;
		}
		snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s", p == ok ? "" : ", ",
			 *p);
	}
	char why[128];
	snprintf(why, sizeof(why), "is not one of %s", all);
	return bad(msg, what, ann, v, why);
}

static int set_resource(struct ks_pod_opts *o, const char *kind, const char *res, const char *value)
{
	json_t *k = json_object_get(o->resources, kind);
	if (!k) {
		k = json_object();
		if (!k || json_object_set_new(o->resources, kind, k))
			return -ENOMEM;
	}
	return json_object_set_new(k, res, json_string(value)) ? -ENOMEM : 0;
}

int ks_pod_opts_parse(const json_t *annotations, const struct ks_inject_cfg *cfg, const char *what,
		      struct ks_pod_opts *o, struct ks_inject_msg *msg)
{
	static const char *const modes[] = {"strict", "permissive", NULL};
	static const char *const ktls[] = {"auto", "off", "require", NULL};
	static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
	static const char *const yesno[] = {"true", "false", NULL};
	int rc = 0;

	memset(o, 0, sizeof(*o));
	o->outbound = json_array();
	o->allow = json_array();
	o->resources = json_deep_copy(ks_cfg_get(cfg, "sidecar.resources"));
	o->inbound_mode = ks_cfg_str(cfg, "sidecar.inboundMode");
	o->ktls = ks_cfg_str(cfg, "sidecar.ktls");
	o->log_level = ks_cfg_str(cfg, "sidecar.logLevel");
	if (!o->outbound || !o->allow || !o->resources)
		return -ENOMEM;
	if (json_is_null(annotations)) /* "annotations:" with nothing: none */
		annotations = NULL;
	if (annotations && !json_is_object(annotations))
		return ks_inject_fail(msg, "%s: metadata.annotations is not a mapping", what);

	const char *k;
	json_t *jv;
	json_object_foreach((json_t *)annotations, k, jv)
	{
		if (strncmp(k, KS_INJECT_ANN_PREFIX, strlen(KS_INJECT_ANN_PREFIX)) != 0)
			continue;
		if (!known(k))
			return ks_inject_fail(
			    msg,
			    "%s: annotation %s is not one of ktls-sidecar's (README, "
			    "\"Injection\", lists them)",
			    what, k);
		const char *v = json_string_value(jv);
		if (!v)
			return ks_inject_fail(msg, "%s: annotation %s must be a string", what, k);
		struct ctx c = {o, what, k, v, msg};
		const char *sel;
		if (strcmp(k, ANN("inject")) == 0) {
			if ((rc = choice(what, k, v, yesno, &sel, msg)))
				return rc;
			o->opt_out = strcmp(sel, "false") == 0;
		} else if (strcmp(k, ANN("inbound")) == 0) {
			rc = each_entry(v, ", \t\n", add_inbound, &c);
		} else if (strcmp(k, ANN("outbound")) == 0) {
			rc = each_entry(v, " \t\n", add_outbound, &c);
		} else if (strcmp(k, ANN("allow")) == 0) {
			rc = each_entry(v, ", \t\n", add_allow, &c);
		} else if (strcmp(k, ANN("inbound-mode")) == 0) {
			rc = choice(what, k, v, modes, &o->inbound_mode, msg);
		} else if (strcmp(k, ANN("ktls")) == 0) {
			rc = choice(what, k, v, ktls, &o->ktls, msg);
		} else if (strcmp(k, ANN("log-level")) == 0) {
			rc = choice(what, k, v, levels, &o->log_level, msg);
		} else if (strcmp(k, KS_INJECT_ANN_VERSION) == 0 ||
			   strcmp(k, KS_INJECT_ANN_FSGROUP) == 0) {
			continue; /* ours: rewritten on every injection */
		} else {
			/* ktls-sidecar.io/{cpu,memory}-{request,limit} */
			const char *res = k + strlen(KS_INJECT_ANN_PREFIX);
			bool cpu = strncmp(res, "cpu-", 4) == 0;
			bool req = strstr(res, "-request") != NULL;
			if (!ks_inject_quantity_ok(v))
				return bad(msg, what, k, v,
					   "is not a Kubernetes quantity (e.g. 100m, 64Mi)");
			rc =
			    set_resource(o, req ? "requests" : "limits", cpu ? "cpu" : "memory", v);
		}
		if (rc)
			return rc;
	}
	return 0;
}

void ks_pod_opts_free(struct ks_pod_opts *o)
{
	json_decref(o->outbound);
	json_decref(o->allow);
	json_decref(o->resources);
	memset(o, 0, sizeof(*o));
}
