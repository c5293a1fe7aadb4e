/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shape of an injected pod: the containers, init containers and
 * volumes that ktls-sidecar adds. This file is the one source of truth for
 * it: the CLI, the webhook and the chart (through its post-renderer) all
 * come here.
 *
 *  - native mode (Kubernetes >= 1.29, KEP-753): the redirect's installer,
 *    the agent and the sidecar lead spec.initContainers, the last two with
 *    restartPolicy: Always. The kubelet starts what follows a native
 *    sidecar only once its startupProbe passes (GET /ready), so the app's
 *    own init containers and the app start with the proxy ready, and the
 *    kubelet stops native sidecars after the app, so a Job completes.
 *  - classic mode: the installer leads initContainers; the agent and the
 *    sidecar lead spec.containers. The kubelet starts containers in order
 *    and waits for each postStart hook: `ktlsctl wait-ready` holds the app
 *    back until /ready.
 *
 * The agent comes first in both: the sidecar is not ready until the agent
 * has delivered its identity, and the agent waits for the sidecar's
 * socket with backoff.
 *
 * The pod's SPIFFE ID is spiffe://<td>/ns/<namespace>/sa/<service account>,
 * resolved by the kubelet, not here: the Downward API puts the namespace and
 * the service account in KTLS_POD_NAMESPACE and KTLS_POD_SERVICE_ACCOUNT,
 * and the kubelet expands $(VAR) references in args (Kubernetes' "Define
 * dependent environment variables"). An offline injection cannot know the
 * namespace a manifest will be applied in.
 */
#include "inject/pod.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"

#define SOCK_DIR      "/run/ktls-sidecar"
#define CONTROL_SOCK  SOCK_DIR "/api/control.sock"
#define REDIRECT_MANI SOCK_DIR "/redirect.conf"
#define ENV_NS	      "KTLS_POD_NAMESPACE"
#define ENV_SA	      "KTLS_POD_SERVICE_ACCOUNT"

static int push(json_t *arr, json_t *v)
{
	return !v || json_array_append_new(arr, v) ? -ENOMEM : 0;
}

static int argf(json_t *args, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int argf(json_t *args, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -E2BIG;
	return push(args, json_string(buf));
}

static json_t *image(const struct ks_inject_cfg *cfg, const char *override)
{
	if (override && *override)
		return json_string(override);
	return json_sprintf("%s:%s", ks_cfg_str(cfg, "image.repository"),
			    ks_cfg_str(cfg, "image.tag"));
}

/* Pod Security "restricted" for our own containers, whatever the pod's. */
static json_t *restricted(long long uid)
{
	return json_pack("{s:I, s:I, s:b, s:b, s:b, s:{s:[s]}, s:{s:s}}", "runAsUser",
			 (json_int_t)uid, "runAsGroup", (json_int_t)uid, "runAsNonRoot", 1,
			 "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 1, "capabilities",
			 "drop", "ALL", "seccompProfile", "type", "RuntimeDefault");
}

static json_t *pod_env(void)
{
	return json_pack("[{s:s, s:{s:{s:s}}}, {s:s, s:{s:{s:s}}}]", "name", ENV_NS, "valueFrom",
			 "fieldRef", "fieldPath", "metadata.namespace", "name", ENV_SA, "valueFrom",
			 "fieldRef", "fieldPath", "spec.serviceAccountName");
}

static json_t *spiffe_id(const struct ks_inject_cfg *cfg)
{
	return json_sprintf("spiffe://%s/ns/$(" ENV_NS ")/sa/$(" ENV_SA ")",
			    ks_cfg_str(cfg, "trustDomain"));
}

static const char *identity_mount(const struct ks_inject_cfg *cfg)
{
	const char *src = ks_cfg_str(cfg, "identity.source");
	if (strcmp(src, "csi-driver-spiffe") == 0)
		return ks_cfg_str(cfg, "identity.csiDriverSpiffe.mountPath");
	if (strcmp(src, "spire") == 0)
		return ks_cfg_str(cfg, "identity.spire.mountPath");
	if (strcmp(src, "files") == 0)
		return ks_cfg_str(cfg, "identity.files.mountPath");
	return NULL;
}

/* The agent runs with identity.source=dev alone; agent.enabled=false there
 * means the identity is pushed by something of the user's. */
static bool agent_enabled(const struct ks_inject_cfg *cfg)
{
	return strcmp(ks_cfg_str(cfg, "identity.source"), "dev") == 0 &&
	       ks_cfg_bool(cfg, "agent.enabled");
}

/* The three file names of an --identity-layout (README: Identity files
 * that rotate). */
static void layout_files(const char *layout, const char *out[3])
{
	static const char *const csi[] = {"tls.crt", "tls.key", "ca.crt"};
	static const char *const helper[] = {"svid.pem", "svid_key.pem", "svid_bundle.pem"};
	static const char *const files[] = {"cert.pem", "key.pem", "ca.pem"};
	const char *const *f = strcmp(layout, "spiffe-helper") == 0 ? helper
			       : strcmp(layout, "files") == 0	    ? files
								    : csi;
	memcpy(out, f, 3 * sizeof(*out));
}

static json_t *ready_exec(void)
{
	return json_pack("[s, s, s, s, s, s]", "/usr/bin/ktlsctl", "--socket", CONTROL_SOCK,
			 "--timeout", "3s", "ready");
}

/*
 * The agent (identity.source=dev): `ktlsctl agent` asks the sidecar for a
 * CSR (the key never leaves the sidecar), signs it with the dev CA's
 * signer from the pod namespace's Secret, pushes chain and bundle, renews
 * at half the TTL. It has no HTTP endpoint; its probes ask the sidecar
 * over the control socket, as the agent's uid: `ktlsctl ready` exits 0
 * while the sidecar holds an identity that has not expired. Liveness has
 * ten minutes of slack: an identity missing that long means the agent is
 * stuck, and a restart is the remedy.
 */
static json_t *agent(const struct ks_inject_cfg *cfg, bool native)
{
	json_t *c = json_pack("{s:s, s:o, s:s}", "name", "ktls-agent", "image", image(cfg, NULL),
			      "imagePullPolicy", ks_cfg_str(cfg, "image.pullPolicy"));
	if (!c)
		return NULL;
	if (native)
		json_object_set_new(c, "restartPolicy", json_string("Always"));
	json_t *args =
	    json_pack("[s, s, s]", "agent", "--sidecar=" CONTROL_SOCK, "--ca=/etc/ktls-ca");
	json_t *id = spiffe_id(cfg);
	if (args && id) {
		argf(args, "--id=%s", json_string_value(id));
		argf(args, "--ttl=%s", ks_cfg_str(cfg, "agent.ttl"));
	}
	json_decref(id);
	json_object_set_new(c, "command", json_pack("[s]", "/usr/bin/ktlsctl"));
	json_object_set_new(c, "args", args);
	json_object_set_new(c, "env", pod_env());
	json_object_set_new(c, "readinessProbe",
			    json_pack("{s:{s:o}, s:i, s:i}", "exec", "command", ready_exec(),
				      "periodSeconds", 10, "timeoutSeconds", 5));
	json_object_set_new(c, "livenessProbe",
			    json_pack("{s:{s:o}, s:i, s:i, s:i}", "exec", "command", ready_exec(),
				      "periodSeconds", 60, "timeoutSeconds", 5, "failureThreshold",
				      10));
	json_object_set_new(c, "securityContext", restricted(ks_cfg_int(cfg, "sidecar.uid")));
	json_object_set_new(c, "resources", json_deep_copy(ks_cfg_get(cfg, "agent.resources")));
	json_object_set_new(c, "volumeMounts",
			    json_pack("[{s:s, s:s}, {s:s, s:s, s:b}]", "name", "ktls-run",
				      "mountPath", SOCK_DIR, "name", "ktls-ca", "mountPath",
				      "/etc/ktls-ca", "readOnly", 1));
	return c;
}

/* The drain delay: the configured one, or 0s where no endpoint has to learn
 * that the pod is going (the kubelet stops a native sidecar after the app;
 * a Job's pod has no Service), 5s (the binary's default) otherwise. */
static const char *drain_delay(const struct ks_inject_cfg *cfg, bool native, const char *owner)
{
	const char *d = ks_cfg_str(cfg, "sidecar.drainDelay");
	if (*d)
		return d;
	if (native || strcmp(owner, "Job") == 0 || strcmp(owner, "CronJob") == 0)
		return "0s";
	return "5s";
}

struct build {
	const struct ks_inject_cfg *cfg;
	const struct ks_pod_opts *o;
	bool native, redirect;
	int app_port; /* the one the redirect steers, or 0 */
	const char *owner;
};

static int sidecar_args(const struct build *b, json_t *args)
{
	const struct ks_inject_cfg *cfg = b->cfg;
	int rc = 0;
	size_t i;
	json_t *v;

	for (i = 0; i < b->o->nin && rc == 0; i++)
		rc = argf(args, "--inbound=0.0.0.0:%u=127.0.0.1:%u", b->o->in[i].listen,
			  b->o->in[i].app);
	if (b->redirect && rc == 0) {
		long long rin = ks_cfg_int(cfg, "redirect.inboundPort");
		long long rout = ks_cfg_int(cfg, "redirect.outboundPort");
		bool v6 = !ks_cfg_bool(cfg, "redirect.ipv4Only");
		if (b->app_port) {
			rc = rc
				 ?: argf(args, "--inbound=0.0.0.0:%lld=127.0.0.1:%d", rin,
					 b->app_port);
			if (v6)
				rc = rc
					 ?: argf(args, "--inbound=[::]:%lld=127.0.0.1:%d", rin,
						 b->app_port);
		}
		rc = rc ?: argf(args, "--outbound-transparent=127.0.0.1:%lld", rout);
		if (v6)
			rc = rc ?: argf(args, "--outbound-transparent=[::1]:%lld", rout);
		rc = rc ?: argf(args, "--redirect-check=%s", REDIRECT_MANI);
	}
	json_array_foreach(b->o->outbound, i, v)
	{
		rc = rc ?: argf(args, "--outbound=127.0.0.1:%s", json_string_value(v));
	}
	json_array_foreach(b->o->allow, i, v)
	{
		rc = rc ?: argf(args, "--allow=%s", json_string_value(v));
	}
	json_t *id = spiffe_id(cfg);
	rc = rc ?: argf(args, "--inbound-mode=%s", b->o->inbound_mode);
	rc = rc ?: id ? argf(args, "--spiffe-id=%s", json_string_value(id)) : -ENOMEM;
	json_decref(id);
	const char *src = ks_cfg_str(cfg, "identity.source");
	if (strcmp(src, "csi-driver-spiffe") == 0) {
		rc = rc
			 ?: argf(args, "--identity-dir=%s",
				 ks_cfg_str(cfg, "identity.csiDriverSpiffe.mountPath"));
		rc = rc ?: argf(args, "--identity-layout=csi-driver-spiffe");
	} else if (strcmp(src, "files") == 0) {
		rc = rc
			 ?: argf(args, "--identity-dir=%s",
				 ks_cfg_str(cfg, "identity.files.mountPath"));
		rc = rc
			 ?: argf(args, "--identity-layout=%s",
				 ks_cfg_str(cfg, "identity.files.layout"));
	} else if (strcmp(src, "spire") == 0) {
		rc = rc
			 ?: argf(args, "--workload-api=unix://%s/%s",
				 ks_cfg_str(cfg, "identity.spire.mountPath"),
				 ks_cfg_str(cfg, "identity.spire.socketName"));
	}
	rc = rc ?: argf(args, "--control-socket=%s", CONTROL_SOCK);
	rc = rc ?: argf(args, "--ktls=%s", b->o->ktls);
	rc = rc ?: argf(args, "--io=%s", ks_cfg_str(cfg, "sidecar.io"));
	if (ks_cfg_int(cfg, "sidecar.workers"))
		rc = rc ?: argf(args, "--workers=%lld", ks_cfg_int(cfg, "sidecar.workers"));
	rc = rc ?: argf(args, "--drain-timeout=%s", ks_cfg_str(cfg, "sidecar.drainTimeout"));
	rc = rc ?: argf(args, "--drain-delay=%s", drain_delay(cfg, b->native, b->owner));
	rc = rc ?: argf(args, "--admin=0.0.0.0:%lld", ks_cfg_int(cfg, "sidecar.adminPort"));
	rc = rc ?: argf(args, "--log-level=%s", b->o->log_level);
	json_array_foreach(ks_cfg_get(cfg, "sidecar.extraArgs"), i, v)
	{
		rc = rc ?: push(args, json_copy(v));
	}
	return rc;
}

/*
 * The sidecar. Its admin endpoint (--admin) serves the kubelet's probes:
 * /ready is 503 until the identity arrives, and at once when a drain
 * starts; /live is 503 when a worker's loop stalls. The kubelet probes from
 * the node, so it listens on 0.0.0.0; /drain and /quitquitquit answer
 * loopback peers only. The redirect never steers the admin port.
 */
static json_t *sidecar(const struct build *b)
{
	const struct ks_inject_cfg *cfg = b->cfg;
	long long admin = ks_cfg_int(cfg, "sidecar.adminPort");
	json_t *c = json_pack("{s:s, s:o, s:s}", "name", "ktls-sidecar", "image", image(cfg, NULL),
			      "imagePullPolicy", ks_cfg_str(cfg, "image.pullPolicy"));
	json_t *args = json_array();

	if (!c || !args || sidecar_args(b, args)) {
		json_decref(c);
		json_decref(args);
		return NULL;
	}
	if (b->native)
		json_object_set_new(c, "restartPolicy", json_string("Always"));
	json_object_set_new(c, "command", json_pack("[s]", "/usr/bin/ktls-sidecar"));
	json_object_set_new(c, "args", args);
	json_object_set_new(c, "env", pod_env());
	json_t *ports = json_array();
	for (size_t i = 0; i < b->o->nin; i++) {
		/* A port name is at most 15 characters (IANA_SVC_NAME): "mtls",
		 * then "mtls-2" .. "mtls-16" (KS_POD_MAX_INBOUND). */
		char name[16];
		unsigned n = (unsigned)(i + 1) % 100;
		if (i == 0)
			snprintf(name, sizeof(name), "mtls");
		else
			snprintf(name, sizeof(name), "mtls-%u", n);
		push(ports, json_pack("{s:s, s:i, s:s}", "name", name, "containerPort",
				      (int)b->o->in[i].listen, "protocol", "TCP"));
	}
	push(ports, json_pack("{s:s, s:I, s:s}", "name", "ktls-admin", "containerPort",
			      (json_int_t)admin, "protocol", "TCP"));
	json_object_set_new(c, "ports", ports);
	long long startup = ks_cfg_int(cfg, "sidecar.startupTimeoutSeconds");
	if (b->native) {
		json_object_set_new(c, "startupProbe",
				    json_pack("{s:{s:s, s:s}, s:i, s:I}", "httpGet", "path",
					      "/ready", "port", "ktls-admin", "periodSeconds", 1,
					      "failureThreshold", (json_int_t)startup));
	} else {
		json_t *cmd = json_pack("[s, s, s]", "/usr/bin/ktlsctl", "wait-ready", "--admin");
		argf(cmd, "127.0.0.1:%lld", admin);
		push(cmd, json_string("--timeout"));
		argf(cmd, "%llds", startup);
		json_object_set_new(
		    c, "lifecycle",
		    json_pack("{s:{s:{s:o}}}", "postStart", "exec", "command", cmd));
	}
	json_object_set_new(c, "readinessProbe",
			    json_pack("{s:{s:s, s:s}, s:i, s:i}", "httpGet", "path", "/ready",
				      "port", "ktls-admin", "periodSeconds", 5, "failureThreshold",
				      2));
	json_object_set_new(c, "livenessProbe",
			    json_pack("{s:{s:s, s:s}, s:i, s:i, s:i}", "httpGet", "path", "/live",
				      "port", "ktls-admin", "periodSeconds", 10, "timeoutSeconds",
				      3, "failureThreshold", 3));
	json_object_set_new(c, "securityContext", restricted(ks_cfg_int(cfg, "sidecar.uid")));
	json_object_set_new(c, "resources", json_deep_copy(b->o->resources));
	json_t *mounts = json_pack("[{s:s, s:s}]", "name", "ktls-run", "mountPath", SOCK_DIR);
	const char *mnt = identity_mount(cfg);
	if (mnt)
		push(mounts, json_pack("{s:s, s:s, s:b}", "name", "ktls-identity", "mountPath", mnt,
				       "readOnly", 1));
	json_object_set_new(c, "volumeMounts", mounts);
	return c;
}

/*
 * The redirect's installer: `ktls-redirect install --mode iptables` in the
 * pod's own network namespace, run to completion before the sidecar starts.
 * Root with NET_ADMIN (nat rules) and NET_RAW (iptables-legacy), nothing
 * else, and a read-only root: /run is an emptyDir for iptables' lock file.
 * Such a pod does not pass Pod Security "restricted" (README, "Injection").
 */
static json_t *redirect(const struct build *b, const json_t *app_uids)
{
	const struct ks_inject_cfg *cfg = b->cfg;
	json_t *c = json_pack("{s:s, s:o, s:s}", "name", "ktls-redirect", "image",
			      image(cfg, ks_cfg_str(cfg, "redirect.image")), "imagePullPolicy",
			      ks_cfg_str(cfg, "image.pullPolicy"));
	json_t *args = json_pack("[s, s, s, s]", "install", "--mode=iptables", "--name=ktls",
				 "--netns=/proc/self/ns/net");
	size_t i;
	json_t *v;
	int rc = 0;

	if (!c || !args) {
		json_decref(c);
		json_decref(args);
		return NULL;
	}
	rc = rc ?: argf(args, "--inbound-port=%lld", ks_cfg_int(cfg, "redirect.inboundPort"));
	rc = rc ?: argf(args, "--outbound-port=%lld", ks_cfg_int(cfg, "redirect.outboundPort"));
	if (b->app_port)
		rc = rc ?: argf(args, "--app-port=%d", b->app_port);
	rc = rc ?: argf(args, "--sidecar-uid=%lld", ks_cfg_int(cfg, "sidecar.uid"));
	json_array_foreach(app_uids, i, v)
	{
		rc = rc ?: argf(args, "--app-uid=%" JSON_INTEGER_FORMAT, json_integer_value(v));
	}
	json_array_foreach(ks_cfg_get(cfg, "redirect.excludePorts"), i, v)
	{
		rc =
		    rc ?: argf(args, "--exclude-port=%" JSON_INTEGER_FORMAT, json_integer_value(v));
	}
	json_array_foreach(ks_cfg_get(cfg, "redirect.excludeCidrs"), i, v)
	{
		rc = rc ?: argf(args, "--exclude-cidr=%s", json_string_value(v));
	}
	if (ks_cfg_bool(cfg, "redirect.ipv4Only"))
		rc = rc ?: push(args, json_string("--ipv4-only"));
	rc = rc ?: argf(args, "--manifest=%s", REDIRECT_MANI);
	json_object_set_new(c, "command", json_pack("[s]", "/usr/bin/ktls-redirect"));
	json_object_set_new(c, "args", args);
	json_object_set_new(c, "securityContext",
			    json_pack("{s:i, s:i, s:b, s:b, s:b, s:{s:[s], s:[s, s]}, s:{s:s}}",
				      "runAsUser", 0, "runAsGroup", 0, "runAsNonRoot", 0,
				      "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 1,
				      "capabilities", "drop", "ALL", "add", "NET_ADMIN", "NET_RAW",
				      "seccompProfile", "type", "RuntimeDefault"));
	json_object_set_new(c, "resources",
			    json_pack("{s:{s:s, s:s}, s:{s:s}}", "requests", "cpu", "10m", "memory",
				      "16Mi", "limits", "memory", "64Mi"));
	json_object_set_new(c, "volumeMounts",
			    json_pack("[{s:s, s:s}, {s:s, s:s}]", "name", "ktls-xtables",
				      "mountPath", "/run", "name", "ktls-run", "mountPath",
				      SOCK_DIR));
	if (rc) {
		json_decref(c);
		return NULL;
	}
	return c;
}

static json_t *volumes(const struct ks_inject_cfg *cfg, bool redirect_on)
{
	json_t *vols = json_pack("[{s:s, s:{s:s, s:s}}]", "name", "ktls-run", "emptyDir", "medium",
				 "Memory", "sizeLimit", "1Mi");
	const char *src = ks_cfg_str(cfg, "identity.source");
	char group[24];

	if (!vols)
		return NULL;
	snprintf(group, sizeof(group), "%lld", ks_cfg_int(cfg, "sidecar.uid"));
	if (redirect_on)
		push(vols, json_pack("{s:s, s:{s:s, s:s}}", "name", "ktls-xtables", "emptyDir",
				     "medium", "Memory", "sizeLimit", "1Mi"));
	if (strcmp(src, "csi-driver-spiffe") == 0) {
		/* cert-manager's csi-driver-spiffe writes tls.crt, tls.key (and
		 * ca.crt) into a tmpfs on the node and renews them; its fs-group
		 * attribute lets the sidecar's group read them. */
		push(vols, json_pack("{s:s, s:{s:s, s:b, s:{s:s}}}", "name", "ktls-identity", "csi",
				     "driver", ks_cfg_str(cfg, "identity.csiDriverSpiffe.driver"),
				     "readOnly", 1, "volumeAttributes",
				     "spiffe.csi.cert-manager.io/fs-group", group));
	} else if (strcmp(src, "spire") == 0) {
		/* The SPIFFE CSI driver mounts the directory of the SPIRE agent's
		 * Workload API socket: no hostPath in the pod. */
		push(vols,
		     json_pack("{s:s, s:{s:s, s:b}}", "name", "ktls-identity", "csi", "driver",
			       ks_cfg_str(cfg, "identity.spire.driver"), "readOnly", 1));
	} else if (strcmp(src, "files") == 0) {
		/* The layout's three keys alone, 0440 with the pod's fsGroup,
		 * mounted whole (no subPath) so that the kubelet's updates
		 * arrive and the sidecar's watch takes them. */
		const char *f[3];
		layout_files(ks_cfg_str(cfg, "identity.files.layout"), f);
		push(vols, json_pack("{s:s, s:{s:s, s:i, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]}}",
				     "name", "ktls-identity", "secret", "secretName",
				     ks_cfg_str(cfg, "identity.files.secretName"), "defaultMode",
				     0440, "items", "key", f[0], "path", f[0], "key", f[1], "path",
				     f[1], "key", f[2], "path", f[2]));
	} else if (agent_enabled(cfg)) {
		/* The dev CA's signer set alone, by name: root.key stays out of
		 * the pod even when the Secret was made from a whole CA
		 * directory. */
		push(vols,
		     json_pack(
			 "{s:s, s:{s:s, s:i, s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s}]}}",
			 "name", "ktls-ca", "secret", "secretName",
			 ks_cfg_str(cfg, "agent.caSecret"), "defaultMode", 0440, "items", "key",
			 "intermediate.pem", "path", "intermediate.pem", "key", "intermediate.key",
			 "path", "intermediate.key", "key", "bundle.pem", "path", "bundle.pem",
			 "key", "trust_domain", "path", "trust_domain"));
	}
	return vols;
}

/* ------------------------------------------------------------ checks */

static long long effective_uid(const json_t *pod_sc, const json_t *c)
{
	json_t *u = json_object_get(json_object_get(c, "securityContext"), "runAsUser");
	if (!json_is_integer(u))
		u = json_object_get(pod_sc, "runAsUser");
	return json_is_integer(u) ? json_integer_value(u) : -1;
}

static bool is_ours(const json_t *c)
{
	const char *n = json_string_value(json_object_get(c, "name"));
	return n && strncmp(n, "ktls-", 5) == 0;
}

/* A probe's port as a number: a number, or the name of one of the
 * container's ports. -1 when it has none. */
static long long probe_port(const json_t *c, const json_t *probe)
{
	static const char *const kinds[] = {"httpGet", "tcpSocket", "grpc", NULL};
	for (const char *const *k = kinds; *k; k++) {
		json_t *p = json_object_get(json_object_get(probe, *k), "port");
		if (json_is_integer(p))
			return json_integer_value(p);
		if (json_is_string(p)) {
			size_t i;
			json_t *cp;
			json_array_foreach(json_object_get(c, "ports"), i, cp)
			{
				if (json_equal(json_object_get(cp, "name"), p))
					return json_integer_value(
					    json_object_get(cp, "containerPort"));
			}
		}
	}
	return -1;
}

struct port_use {
	long long port;
	const char *who;
	bool app; /* the app's own port (the app declaring it is right) */
};

static int claim(struct port_use *used, size_t *n, size_t max, long long port, const char *who,
		 const char *what, struct ks_inject_msg *msg)
{
	for (size_t i = 0; i < *n; i++)
		if (used[i].port == port)
			return ks_inject_fail(
			    msg, "%s: %s and %s are both port %lld: each needs its own", what,
			    used[i].who, who, port);
	if (*n < max)
		used[(*n)++] = (struct port_use){port, who, strncmp(who, "the app's", 9) == 0};
	return 0;
}

/* The sidecar's own listeners against each other and against the ports the
 * pod's containers declare: a second bind would fail at run time, in a
 * crash loop, where here it is one clear line. */
static int check_ports(const struct build *b, const json_t *spec, const char *what,
		       struct ks_inject_msg *msg)
{
	struct port_use used[96];
	size_t n = 0;
	int rc = 0;
	char who[KS_POD_MAX_INBOUND][48];

	rc = claim(used, &n, 96, ks_cfg_int(b->cfg, "sidecar.adminPort"), "sidecar.adminPort", what,
		   msg);
	if (b->redirect) {
		rc = rc
			 ?: claim(used, &n, 96, ks_cfg_int(b->cfg, "redirect.inboundPort"),
				  "redirect.inboundPort", what, msg);
		rc = rc
			 ?: claim(used, &n, 96, ks_cfg_int(b->cfg, "redirect.outboundPort"),
				  "redirect.outboundPort", what, msg);
	}
	for (size_t i = 0; i < b->o->nin && rc == 0; i++) {
		snprintf(who[i], sizeof(who[i]), "ktls-sidecar.io/inbound's %u",
			 b->o->in[i].listen);
		rc = claim(used, &n, 96, b->o->in[i].listen, who[i], what, msg);
	}
	/* The app's ports that inbound forwards to: the app binds them, so no
	 * listener of the sidecar's may be one (the same app port behind two
	 * listeners is fine). */
	for (size_t i = 0; i < b->o->nin && rc == 0; i++) {
		bool seen = false;
		for (size_t j = 0; j < i; j++)
			seen |= b->o->in[j].app == b->o->in[i].app;
		if (!seen)
			rc = claim(used, &n, 96, b->o->in[i].app,
				   "the app's port (ktls-sidecar.io/inbound)", what, msg);
	}
	size_t i;
	json_t *v;
	json_array_foreach(b->o->outbound, i, v)
	{
		unsigned long lp = strtoul(json_string_value(v), NULL, 10);
		rc = rc
			 ?: claim(used, &n, 96, (long long)lp,
				  "ktls-sidecar.io/outbound's LOCALPORT", what, msg);
	}
	/* The app's declared ports: the sidecar must not take one. */
	static const char *const lists[] = {"initContainers", "containers", NULL};
	for (const char *const *l = lists; *l && rc == 0; l++) {
		json_t *c;
		json_array_foreach(json_object_get(spec, *l), i, c)
		{
			if (is_ours(c))
				continue;
			size_t j;
			json_t *p;
			json_array_foreach(json_object_get(c, "ports"), j, p)
			{
				long long port =
				    json_integer_value(json_object_get(p, "containerPort"));
				for (size_t k = 0; k < n && rc == 0; k++)
					if (used[k].port == port && !used[k].app)
						rc = ks_inject_fail(
						    msg,
						    "%s: container %s declares port %lld, which is "
						    "%s too",
						    what,
						    json_string_value(json_object_get(c, "name")),
						    port, used[k].who);
			}
		}
	}
	return rc;
}

/* With the redirect on: the app's uids are exempt from nothing, so none
 * may be the sidecar's, and a probe on the steered port would reach the
 * sidecar, which refuses the kubelet's plaintext. */
static int check_redirect(const struct build *b, const json_t *spec, json_t *app_uids,
			  const char *what, struct ks_inject_msg *msg)
{
	const json_t *pod_sc = json_object_get(spec, "securityContext");
	long long sidecar_uid = ks_cfg_int(b->cfg, "sidecar.uid");
	static const char *const probes[] = {"readinessProbe", "livenessProbe", "startupProbe",
					     NULL};
	size_t i;
	json_t *c;

	json_array_foreach(json_object_get(spec, "containers"), i, c)
	{
		if (is_ours(c))
			continue;
		const char *name = json_string_value(json_object_get(c, "name"));
		long long uid = effective_uid(pod_sc, c);
		if (uid == sidecar_uid)
			return ks_inject_fail(
			    msg,
			    "%s: container %s runs as uid %lld, the sidecar's: with "
			    "the redirect its connections would be exempt and leave "
			    "in plaintext; run it under another uid",
			    what, name ? name : "?", uid);
		if (uid >= 0) {
			bool seen = false;
			size_t j;
			json_t *u;
			json_array_foreach(app_uids, j, u)
			{
				seen |= json_integer_value(u) == uid;
			}
			if (!seen && json_array_append_new(app_uids, json_integer(uid)))
				return -ENOMEM;
		}
		for (const char *const *p = probes; *p && b->app_port; p++) {
			long long port = probe_port(c, json_object_get(c, *p));
			if (port == b->app_port)
				return ks_inject_fail(
				    msg,
				    "%s: container %s's %s uses port %d, which the "
				    "redirect steers to the sidecar (it refuses the "
				    "kubelet's plaintext): give the probe a port of "
				    "its own, or an exec probe",
				    what, name ? name : "?", *p, b->app_port);
		}
	}
	return 0;
}

int ks_pod_shape_build(const struct ks_inject_cfg *cfg, const struct ks_pod_opts *o,
		       const json_t *spec, const char *owner_kind, const char *what,
		       struct ks_pod_shape *shape, struct ks_inject_msg *msg)
{
	struct build b = {
	    .cfg = cfg,
	    .o = o,
	    .native = strcmp(ks_cfg_str(cfg, "mode"), "native") == 0,
	    .redirect = ks_cfg_bool(cfg, "redirect.enabled"),
	    .owner = owner_kind ? owner_kind : "",
	};
	json_t *app_uids = json_array();
	int rc = 0;

	memset(shape, 0, sizeof(*shape));
	shape->fs_group = -1;
	if (!app_uids)
		return -ENOMEM;
	if (b.redirect && o->nin > 1) {
		rc = ks_inject_fail(
		    msg,
		    "%s: annotation ktls-sidecar.io/inbound names %zu ports, but the "
		    "redirect steers one app port to the sidecar: name one",
		    what, o->nin);
		goto out;
	}
	if (b.redirect && o->nin == 1)
		b.app_port = o->in[0].app;
	if ((rc = check_ports(&b, spec, what, msg)))
		goto out;
	if (b.redirect && (rc = check_redirect(&b, spec, app_uids, what, msg)))
		goto out;

	/* The drain must end before the kubelet's SIGKILL. */
	json_t *grace = json_object_get(spec, "terminationGracePeriodSeconds");
	long long grace_s = json_is_integer(grace) ? json_integer_value(grace) : 30;
	uint32_t drain_ms = 0;
	ks_parse_duration_ms(ks_cfg_str(cfg, "sidecar.drainTimeout"), &drain_ms);
	if ((long long)drain_ms > grace_s * 1000) {
		rc = ks_inject_fail(
		    msg,
		    "%s: sidecar.drainTimeout %s is longer than the pod's "
		    "terminationGracePeriodSeconds (%llds): the kubelet would kill the "
		    "sidecar in the middle of its drain",
		    what, ks_cfg_str(cfg, "sidecar.drainTimeout"), grace_s);
		goto out;
	}

	shape->init = json_array();
	shape->containers = json_array();
	shape->volumes = volumes(cfg, b.redirect);
	if (!shape->init || !shape->containers || !shape->volumes) {
		rc = -ENOMEM;
		goto out;
	}
	json_t *proxies = b.native ? shape->init : shape->containers;
	if (b.redirect && (rc = push(shape->init, redirect(&b, app_uids))))
		goto out;
	if (agent_enabled(cfg) && (rc = push(proxies, agent(cfg, b.native))))
		goto out;
	if ((rc = push(proxies, sidecar(&b))))
		goto out;
	/* The agent reads the CA Secret, and the sidecar a files Secret, as
	 * the group the kubelet gives those volumes: the pod's fsGroup. */
	const char *src = ks_cfg_str(cfg, "identity.source");
	if (agent_enabled(cfg) || strcmp(src, "files") == 0)
		shape->fs_group = ks_cfg_int(cfg, "sidecar.uid");
out:
	json_decref(app_uids);
	if (rc)
		ks_pod_shape_free(shape);
	return rc;
}

void ks_pod_shape_free(struct ks_pod_shape *shape)
{
	json_decref(shape->init);
	json_decref(shape->containers);
	json_decref(shape->volumes);
	memset(shape, 0, sizeof(*shape));
	shape->fs_group = -1;
}
