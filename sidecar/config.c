/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "spiffe.h"

#ifndef KS_VERSION
#define KS_VERSION "0.1.0-dev"
#endif

enum ks_opt_id {
	OPT_INBOUND = 1000,
	OPT_OUTBOUND,
	OPT_OUTBOUND_TRANSPARENT,
	OPT_CERT,
	OPT_KEY,
	OPT_CA,
	OPT_SPIFFE_ID,
	OPT_ALLOW,
	OPT_INBOUND_MODE,
	OPT_WORKERS,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_IDLE_TIMEOUT,
	OPT_DRAIN_TIMEOUT,
	OPT_MAX_CONNECTIONS,
	OPT_IO,
	OPT_KTLS,
	OPT_TLS_MIN_VERSION,
	OPT_TLS_CIPHERSUITES,
	OPT_LOG_LEVEL,
	OPT_CONTROL_SOCKET,
	OPT_CONTROL_ALLOW_UID,
	OPT_CONTROL_MAX_FRAME,
	OPT_CONTROL_IDLE_TIMEOUT,
	OPT_REDIRECT_CHECK,
	OPT_HELP,
	OPT_VERSION,
};

struct ks_opt {
	const char *name;
	int id;
	bool has_arg;
	bool repeatable;
	const char *metavar;
	const char *help;
};

/* The single source for getopt, the environment and --help. */
static const struct ks_opt ks_opts[] = {
    {"inbound", OPT_INBOUND, true, true, "LISTEN=UPSTREAM",
     "Terminate mTLS on LISTEN and forward plaintext to the local app at UPSTREAM."},
    {"outbound", OPT_OUTBOUND, true, true, "LISTEN=REMOTE[,id=SPIFFE_ID]",
     "Accept plaintext from the local app on LISTEN and originate mTLS to REMOTE.\n"
     "The server must present SPIFFE_ID (a pattern: '*' matches one path segment);\n"
     "without id=, any ID in our own trust domain."},
    {"outbound-transparent", OPT_OUTBOUND_TRANSPARENT, true, true, "LISTEN",
     "Like --outbound, but the remote is the connection's original destination\n"
     "(getsockopt SO_ORIGINAL_DST, set by iptables REDIRECT). The server must be\n"
     "in our own trust domain."},
    {"cert", OPT_CERT, true, false, "FILE",
     "Our certificate chain (PEM: leaf first, then intermediates). The leaf carries\n"
     "our SPIFFE ID as its only URI SAN. Reloaded on SIGHUP."},
    {"key", OPT_KEY, true, false, "FILE", "Private key for --cert (PEM). Reloaded on SIGHUP."},
    {"ca", OPT_CA, true, false, "FILE",
     "Trust bundle (PEM roots) for verifying peers. Reloaded on SIGHUP."},
    {"spiffe-id", OPT_SPIFFE_ID, true, false, "SPIFFE_ID",
     "This sidecar's identity. Every certificate we load or are pushed must carry\n"
     "exactly this ID, and CreateCsr asks for it. Default: whatever --cert says."},
    {"allow", OPT_ALLOW, true, true, "PATTERN",
     "SPIFFE ID allowed inbound; '*' matches one path segment, e.g.\n"
     "spiffe://example.org/ns/*/sa/web. Default: any ID in our own trust domain."},
    {"inbound-mode", OPT_INBOUND_MODE, true, false, "strict|permissive",
     "strict: an inbound connection that does not start with a TLS handshake is\n"
     "refused (reason=not_tls). permissive: it is passed to the app as plaintext and\n"
     "counted apart (record_layer=plaintext), for clients not yet in the mesh, like\n"
     "Istio's PeerAuthentication PERMISSIVE. Default strict."},
    {"workers", OPT_WORKERS, true, false, "N",
     "Worker threads, each with its own event loop and SO_REUSEPORT listeners.\n"
     "Default: the number of online CPUs."},
    {"handshake-timeout", OPT_HANDSHAKE_TIMEOUT, true, false, "DURATION",
     "Time allowed from accept to an authenticated, forwarding connection. Default 10s."},
    {"idle-timeout", OPT_IDLE_TIMEOUT, true, false, "DURATION",
     "Close a connection after this long without traffic in either direction.\n"
     "0 disables. Default 1h."},
    {"drain-timeout", OPT_DRAIN_TIMEOUT, true, false, "DURATION",
     "On SIGTERM, stop accepting and give open connections this long to finish;\n"
     "a second SIGTERM or SIGINT stops at once. 0 stops at once. Default 5s."},
    {"max-connections", OPT_MAX_CONNECTIONS, true, false, "N",
     "Connections over this many are accepted and closed at once, with a log line.\n"
     "Default 16384."},
    {"io", OPT_IO, true, false, "auto|uring|epoll",
     "Event loop backend. auto uses io_uring and falls back to epoll when\n"
     "io_uring_setup fails (seccomp, kernel.io_uring_disabled). Default auto."},
    {"ktls", OPT_KTLS, true, false, "auto|off|require",
     "Kernel TLS record layer after the handshake (TLS 1.3). auto offloads when\n"
     "the kernel can and falls back to userspace TLS per connection, logging why;\n"
     "require refuses connections that cannot be offloaded; off never offloads.\n"
     "Default auto."},
    {"tls-min-version", OPT_TLS_MIN_VERSION, true, false, "1.2|1.3",
     "Lowest TLS version accepted. Default 1.3."},
    {"tls-ciphersuites", OPT_TLS_CIPHERSUITES, true, false, "LIST",
     "TLS 1.3 suites in preference order, ':'-separated, from TLS_AES_128_GCM_SHA256,\n"
     "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256. Default: all three."},
    {"log-level", OPT_LOG_LEVEL, true, false, "debug|info|warn|error", "Default info."},
    {"control-socket", OPT_CONTROL_SOCKET, true, false, "PATH|none",
     "Unix socket of the control API (ktlsctl, the control plane; proto/). Created\n"
     "mode 0600 in a 0700 directory made if missing; a stale socket is replaced,\n"
     "a live one is an error. none disables the API.\n"
     "Default " KS_CONTROL_SOCKET_DEFAULT "."},
    {"control-allow-uid", OPT_CONTROL_ALLOW_UID, true, true, "UID",
     "A uid allowed to use the control socket (checked with SO_PEERCRED; others\n"
     "get PERMISSION_DENIED). Default: the sidecar's own uid and root."},
    {"control-max-frame", OPT_CONTROL_MAX_FRAME, true, false, "SIZE",
     "Largest control message accepted (bytes, or with K or M). A larger frame is\n"
     "answered with FRAME_TOO_LARGE and the connection closed. Default 1M."},
    {"control-idle-timeout", OPT_CONTROL_IDLE_TIMEOUT, true, false, "DURATION",
     "Close a control client that sends and reads nothing for this long (the API\n"
     "has 32 client slots). Default 30s."},
    {"redirect-check", OPT_REDIRECT_CHECK, true, false, "MANIFEST|none",
     "Fail closed: at start-up, read the manifest `ktls-sidecar redirect install`\n"
     "wrote (e.g. /run/ktls-sidecar/redirect.conf), check this sidecar against it\n"
     "(uid, routes, kernel) and make a real connect through the redirect; if any\n"
     "of it fails, exit 1 saying what is missing instead of starting. Default none."},
    {"help", OPT_HELP, false, false, NULL, "Print this help and exit."},
    {"version", OPT_VERSION, false, false, NULL, "Print the version and exit."},
};

#define KS_NOPTS (sizeof(ks_opts) / sizeof(ks_opts[0]))

void ks_config_usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: ktls-sidecar [OPTIONS]\n"
	    "       ktls-sidecar redirect install|remove|status ...  (eBPF redirect for a pod;\n"
	    "       see ktls-sidecar redirect --help)\n"
	    "\n"
	    "A per-pod mTLS sidecar: terminates (--inbound) and originates (--outbound)\n"
	    "TLS 1.3 with SPIFFE identities. At least one route is required. The identity\n"
	    "comes from --cert, --key and --ca, or, without them, from the control plane\n"
	    "over --control-socket (ktlsctl agent); until it arrives connections are\n"
	    "refused.\n"
	    "\n"
	    "Options (each also read from the environment variable shown):\n");
	for (size_t i = 0; i < KS_NOPTS; i++) {
		const struct ks_opt *o = &ks_opts[i];
		char env[64];
		const char *h;
		size_t j;

		snprintf(env, sizeof(env), "KTLS_SIDECAR_");
		for (j = 0; o->name[j] && 13 + j < sizeof(env) - 1; j++)
			env[13 + j] =
			    o->name[j] == '-' ? '_' : (char)toupper((unsigned char)o->name[j]);
		env[13 + j] = '\0';
		fprintf(out, "  --%s%s%s%s\n", o->name, o->metavar ? " " : "",
			o->metavar ? o->metavar : "", o->repeatable ? "  (repeatable)" : "");
		if (o->id != OPT_HELP && o->id != OPT_VERSION)
			fprintf(out, "      env %s%s\n", env,
				o->repeatable ? " (whitespace-separated list)" : "");
		for (h = o->help; *h;) {
			const char *nl = strchr(h, '\n');
			int len = nl ? (int)(nl - h) : (int)strlen(h);

			fprintf(out, "      %.*s\n", len, h);
			h += len + (nl ? 1 : 0);
		}
	}
	fprintf(out,
		"\n"
		"DURATION is a number with a unit: 500ms, 10s, 5m, 1h (no unit = seconds).\n"
		"\n"
		"Signals: SIGHUP reloads --cert/--key/--ca (new handshakes use the new identity;\n"
		"a bad file is rejected and the old identity stays). SIGTERM drains (see\n"
		"--drain-timeout); SIGINT, or a second signal, stops at once. SIGUSR1 logs an\n"
		"event=status line: connections, and bytes per record layer, including the\n"
		"payload bytes that passed through the sidecar's own memory.\n");
}

int ks_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

int ks_parse_duration_ms(const char *s, uint32_t *out)
{
	char *end;
	double v, mult;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno || v < 0)
		return -EINVAL;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else
		return -EINVAL;
	v *= mult;
	if (v > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

const char *ks_ktls_mode_name(enum ks_ktls_mode mode)
{
	return mode == KS_KTLS_OFF ? "off" : mode == KS_KTLS_REQUIRE ? "require" : "auto";
}

int ks_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	v = strtoul(s, &end, 10);
	if (*end || errno || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int ks_parse_route(const char *s, enum ks_dir dir, struct ks_route *out, char *err, size_t errlen)
{
	char buf[1024], *eq, *opts = NULL, *tok, *save = NULL;
	const char *why;
	char aerr[256];
	int rc;

	memset(out, 0, sizeof(*out));
	out->dir = dir;
	if (strlen(s) >= sizeof(buf)) {
		snprintf(err, errlen, "route too long");
		return -EINVAL;
	}
	strcpy(buf, s);
	eq = strchr(buf, '=');
	if (!eq) {
		snprintf(err, errlen, "'%s': expected LISTEN=%s", s,
			 dir == KS_INBOUND ? "UPSTREAM" : "REMOTE[,id=SPIFFE_ID]");
		return -EINVAL;
	}
	*eq = '\0';
	opts = strchr(eq + 1, ',');
	if (opts)
		*opts++ = '\0';
	rc = ks_addr_parse(buf, &out->listen, aerr, sizeof(aerr));
	if (rc == 0)
		rc = ks_addr_parse(eq + 1, &out->target, aerr, sizeof(aerr));
	if (rc < 0) {
		snprintf(err, errlen, "%s", aerr);
		return rc;
	}
	ks_addr_str((struct sockaddr *)&out->listen.ss, out->listen_str, sizeof(out->listen_str));
	ks_addr_str((struct sockaddr *)&out->target.ss, out->target_str, sizeof(out->target_str));
	for (tok = opts ? strtok_r(opts, ",", &save) : NULL; tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (dir == KS_OUTBOUND && strncmp(tok, "id=", 3) == 0 && !out->expect_id) {
			if (ks_spiffe_pattern_validate(tok + 3, &why) < 0) {
				snprintf(err, errlen, "'%s': bad id '%s': %s", s, tok + 3, why);
				return -EINVAL;
			}
			out->expect_id = strdup(tok + 3);
			if (!out->expect_id)
				return -ENOMEM;
			continue;
		}
		snprintf(err, errlen, "'%s': unknown or repeated option '%s'", s, tok);
		free(out->expect_id);
		out->expect_id = NULL;
		return -EINVAL;
	}
	return 0;
}

static int add_route(struct ks_config *cfg, const struct ks_route *r)
{
	struct ks_route *n = realloc(cfg->routes, (cfg->nroutes + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	cfg->routes = n;
	cfg->routes[cfg->nroutes++] = *r;
	return 0;
}

static int set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* Drops what an earlier source (the environment) gave a repeatable option. */
static void reset_repeatable(struct ks_config *cfg, int id)
{
	size_t i, j;

	if (id == OPT_CONTROL_ALLOW_UID) {
		free(cfg->control_uids);
		cfg->control_uids = NULL;
		cfg->ncontrol_uids = 0;
		return;
	}
	if (id == OPT_ALLOW) {
		for (i = 0; i < cfg->policy.nallow; i++)
			free(cfg->policy.allow[i]);
		free(cfg->policy.allow);
		cfg->policy.allow = NULL;
		cfg->policy.nallow = 0;
		return;
	}
	for (i = 0, j = 0; i < cfg->nroutes; i++) {
		struct ks_route *r = &cfg->routes[i];
		bool match = (id == OPT_INBOUND && r->dir == KS_INBOUND) ||
			     (id == OPT_OUTBOUND && r->dir == KS_OUTBOUND && !r->transparent) ||
			     (id == OPT_OUTBOUND_TRANSPARENT && r->transparent);

		if (match)
			free(r->expect_id);
		else
			cfg->routes[j++] = *r;
	}
	cfg->nroutes = j;
}

static int apply(struct ks_config *cfg, const struct ks_opt *o, const char *v, char *err,
		 size_t errlen)
{
	struct ks_route r;
	unsigned long n;
	const char *why;
	char aerr[256];
	int rc = 0;

	switch (o->id) {
	case OPT_INBOUND:
	case OPT_OUTBOUND:
		rc = ks_parse_route(v, o->id == OPT_INBOUND ? KS_INBOUND : KS_OUTBOUND, &r, err,
				    errlen);
		if (rc == 0 && (rc = add_route(cfg, &r)) < 0)
			free(r.expect_id);
		return rc;
	case OPT_OUTBOUND_TRANSPARENT:
		memset(&r, 0, sizeof(r));
		r.dir = KS_OUTBOUND;
		r.transparent = true;
		rc = ks_addr_parse(v, &r.listen, aerr, sizeof(aerr));
		if (rc < 0) {
			snprintf(err, errlen, "%s", aerr);
			return rc;
		}
		ks_addr_str((struct sockaddr *)&r.listen.ss, r.listen_str, sizeof(r.listen_str));
		snprintf(r.target_str, sizeof(r.target_str), "original-dst");
		return add_route(cfg, &r);
	case OPT_CERT:
		return set_str(&cfg->cert, v);
	case OPT_KEY:
		return set_str(&cfg->key, v);
	case OPT_CA:
		return set_str(&cfg->ca, v);
	case OPT_SPIFFE_ID:
		if (ks_spiffe_validate(v, &why) < 0) {
			snprintf(err, errlen, "--spiffe-id '%s': %s", v, why);
			return -EINVAL;
		}
		return set_str(&cfg->spiffe_id, v);
	case OPT_INBOUND_MODE:
		if (strcmp(v, "strict") == 0 || strcmp(v, "permissive") == 0) {
			cfg->inbound_permissive = v[0] == 'p';
			return 0;
		}
		snprintf(err, errlen, "--inbound-mode '%s': expected strict or permissive", v);
		return -EINVAL;
	case OPT_ALLOW: {
		char **a;

		if (ks_spiffe_pattern_validate(v, &why) < 0) {
			snprintf(err, errlen, "--allow '%s': %s", v, why);
			return -EINVAL;
		}
		a = realloc(cfg->policy.allow, (cfg->policy.nallow + 1) * sizeof(*a));
		if (!a)
			return -ENOMEM;
		cfg->policy.allow = a;
		a[cfg->policy.nallow] = strdup(v);
		if (!a[cfg->policy.nallow])
			return -ENOMEM;
		cfg->policy.nallow++;
		return 0;
	}
	case OPT_CONTROL_SOCKET:
		if (strcmp(v, "none") == 0) {
			free(cfg->control_socket);
			cfg->control_socket = NULL;
			cfg->control_none = true;
			return 0;
		}
		cfg->control_none = false;
		if (v[0] != '/' || strlen(v) >= 108) {
			snprintf(
			    err, errlen,
			    "--control-socket '%s': expected an absolute path under 108 bytes, "
			    "or none",
			    v);
			return -EINVAL;
		}
		return set_str(&cfg->control_socket, v);
	case OPT_CONTROL_ALLOW_UID: {
		uid_t *u;

		if (ks_parse_uint(v, 0xfffffffeUL, &n) < 0) {
			snprintf(err, errlen, "--control-allow-uid '%s': expected a numeric uid",
				 v);
			return -EINVAL;
		}
		u = realloc(cfg->control_uids, (cfg->ncontrol_uids + 1) * sizeof(*u));
		if (!u)
			return -ENOMEM;
		cfg->control_uids = u;
		u[cfg->ncontrol_uids++] = (uid_t)n;
		return 0;
	}
	case OPT_CONTROL_MAX_FRAME: {
		uint64_t sz;

		if (ks_parse_size(v, &sz) < 0 || sz < 64 || sz > (64u << 20)) {
			snprintf(err, errlen, "--control-max-frame '%s': expected 64 bytes to 64M",
				 v);
			return -EINVAL;
		}
		cfg->control_max_frame = (uint32_t)sz;
		return 0;
	}
	case OPT_REDIRECT_CHECK:
		if (strcmp(v, "none") == 0) {
			free(cfg->redirect_check);
			cfg->redirect_check = NULL;
			return 0;
		}
		return set_str(&cfg->redirect_check, v);
	case OPT_CONTROL_IDLE_TIMEOUT:
		if (ks_parse_duration_ms(v, &cfg->control_idle_ms) < 0 || !cfg->control_idle_ms) {
			snprintf(err, errlen,
				 "--control-idle-timeout '%s': expected a duration > 0", v);
			return -EINVAL;
		}
		return 0;
	case OPT_WORKERS:
		if (ks_parse_uint(v, 256, &n) < 0 || n == 0) {
			snprintf(err, errlen, "--workers '%s': expected 1-256", v);
			return -EINVAL;
		}
		cfg->workers = (unsigned)n;
		return 0;
	case OPT_HANDSHAKE_TIMEOUT:
	case OPT_IDLE_TIMEOUT:
	case OPT_DRAIN_TIMEOUT: {
		uint32_t ms;

		if (ks_parse_duration_ms(v, &ms) < 0 || (o->id == OPT_HANDSHAKE_TIMEOUT && !ms)) {
			snprintf(err, errlen, "--%s '%s': expected a duration like 500ms, 10s, 5m",
				 o->name, v);
			return -EINVAL;
		}
		if (o->id == OPT_HANDSHAKE_TIMEOUT)
			cfg->handshake_timeout_ms = ms;
		else if (o->id == OPT_IDLE_TIMEOUT)
			cfg->idle_timeout_ms = ms;
		else
			cfg->drain_timeout_ms = ms;
		return 0;
	}
	case OPT_MAX_CONNECTIONS:
		if (ks_parse_uint(v, 10000000, &n) < 0 || n == 0) {
			snprintf(err, errlen, "--max-connections '%s': expected 1-10000000", v);
			return -EINVAL;
		}
		cfg->max_connections = (uint32_t)n;
		return 0;
	case OPT_IO:
		if (strcmp(v, "auto") == 0)
			cfg->io = KS_IO_AUTO;
		else if (strcmp(v, "uring") == 0 || strcmp(v, "io_uring") == 0)
			cfg->io = KS_IO_URING;
		else if (strcmp(v, "epoll") == 0)
			cfg->io = KS_IO_EPOLL;
		else {
			snprintf(err, errlen, "--io '%s': expected auto, uring or epoll", v);
			return -EINVAL;
		}
		return 0;
	case OPT_KTLS:
		if (strcmp(v, "auto") == 0)
			cfg->ktls = KS_KTLS_AUTO;
		else if (strcmp(v, "off") == 0)
			cfg->ktls = KS_KTLS_OFF;
		else if (strcmp(v, "require") == 0)
			cfg->ktls = KS_KTLS_REQUIRE;
		else {
			snprintf(err, errlen, "--ktls '%s': expected auto, off or require", v);
			return -EINVAL;
		}
		return 0;
	case OPT_TLS_MIN_VERSION:
		if (strcmp(v, "1.3") == 0)
			cfg->tls_min_version = TLS1_3_VERSION;
		else if (strcmp(v, "1.2") == 0)
			cfg->tls_min_version = TLS1_2_VERSION;
		else {
			snprintf(err, errlen, "--tls-min-version '%s': expected 1.2 or 1.3", v);
			return -EINVAL;
		}
		return 0;
	case OPT_TLS_CIPHERSUITES: {
		static const char *const ok[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
						 "TLS_CHACHA20_POLY1305_SHA256"};
		char *copy = strdup(v), *tok, *save = NULL;

		if (!copy)
			return -ENOMEM;
		for (tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
			bool known = false;

			for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
				known |= strcmp(tok, ok[i]) == 0;
			if (!known) {
				snprintf(err, errlen,
					 "--tls-ciphersuites: '%s' is not one of "
					 "TLS_AES_128_GCM_SHA256, "
					 "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256",
					 tok);
				free(copy);
				return -EINVAL;
			}
		}
		free(copy);
		if (!*v) {
			snprintf(err, errlen, "--tls-ciphersuites: empty list");
			return -EINVAL;
		}
		return set_str(&cfg->ciphersuites, v);
	}
	case OPT_LOG_LEVEL:
		if (ks_log_parse_level(v, &cfg->log_level) < 0) {
			snprintf(err, errlen,
				 "--log-level '%s': expected debug, info, warn or error", v);
			return -EINVAL;
		}
		return 0;
	}
	snprintf(err, errlen, "internal: unhandled option %s", o->name);
	return -EINVAL;
}

static void env_name(const struct ks_opt *o, char *buf, size_t len)
{
	size_t i, p = (size_t)snprintf(buf, len, "KTLS_SIDECAR_");

	for (i = 0; o->name[i] && p + 1 < len; i++)
		buf[p++] = o->name[i] == '-' ? '_' : (char)toupper((unsigned char)o->name[i]);
	buf[p] = '\0';
}

static const char *env_get(char **envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static int apply_env(struct ks_config *cfg, char **envp, char *err, size_t errlen)
{
	char name[64], *copy, *tok, *save;
	const char *v;
	int rc;

	/* A misspelt variable must not be silently ignored. */
	for (char **e = envp; e && *e; e++) {
		bool known = false;

		if (strncmp(*e, "KTLS_SIDECAR_", 13) != 0)
			continue;
		for (size_t i = 0; i < KS_NOPTS && !known; i++) {
			env_name(&ks_opts[i], name, sizeof(name));
			known = ks_opts[i].has_arg && strncmp(*e, name, strlen(name)) == 0 &&
				(*e)[strlen(name)] == '=';
		}
		if (!known) {
			snprintf(err, errlen, "unknown environment variable %.*s",
				 (int)strcspn(*e, "="), *e);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < KS_NOPTS; i++) {
		const struct ks_opt *o = &ks_opts[i];

		if (!o->has_arg)
			continue;
		env_name(o, name, sizeof(name));
		v = env_get(envp, name);
		if (!v)
			continue;
		if (!o->repeatable) {
			rc = apply(cfg, o, v, err, errlen);
			if (rc < 0)
				goto env_err;
			continue;
		}
		copy = strdup(v);
		if (!copy)
			return -ENOMEM;
		rc = 0;
		for (tok = strtok_r(copy, " \t\n", &save); tok && rc == 0;
		     tok = strtok_r(NULL, " \t\n", &save))
			rc = apply(cfg, o, tok, err, errlen);
		free(copy);
		if (rc < 0)
			goto env_err;
	}
	return 0;
env_err : {
	char tmp[512];

	snprintf(tmp, sizeof(tmp), "%s", err);
	snprintf(err, errlen, "%s: %s", name, tmp);
	return rc;
}
}

static void defaults(struct ks_config *cfg)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	memset(cfg, 0, sizeof(*cfg));
	cfg->workers = n > 0 ? (unsigned)(n > 256 ? 256 : n) : 1;
	cfg->handshake_timeout_ms = 10000;
	cfg->idle_timeout_ms = 3600000;
	cfg->drain_timeout_ms = 5000;
	cfg->max_connections = 16384;
	cfg->io = KS_IO_AUTO;
	cfg->tls_min_version = TLS1_3_VERSION;
	cfg->log_level = KS_LOG_INFO;
	cfg->control_max_frame = 1u << 20;
	cfg->control_idle_ms = 30000;
	cfg->control_socket = strdup(KS_CONTROL_SOCKET_DEFAULT);
}

static int validate(struct ks_config *cfg, char *err, size_t errlen)
{
	if (!cfg->control_socket && !cfg->control_none)
		return -ENOMEM; /* the default's strdup failed */
	if (cfg->nroutes == 0) {
		snprintf(err, errlen,
			 "no route: give at least one --inbound, --outbound or "
			 "--outbound-transparent");
		return -EINVAL;
	}
	/* Without all three, the identity comes from the control plane
	 * (SetIdentity), and until it does every connection is refused. */
	if ((cfg->cert || cfg->key || cfg->ca) && (!cfg->cert || !cfg->key || !cfg->ca)) {
		snprintf(err, errlen, "--cert, --key and --ca go together (missing %s)",
			 !cfg->cert  ? "--cert"
			 : !cfg->key ? "--key"
				     : "--ca");
		return -EINVAL;
	}
	if (!cfg->cert && cfg->control_none) {
		snprintf(err, errlen,
			 "no identity: give --cert, --key and --ca, or a --control-socket for the "
			 "control plane to push one");
		return -EINVAL;
	}
	for (size_t i = 0; i < cfg->nroutes; i++) {
		for (size_t j = 0; j < i; j++) {
			if (ks_addr_equal(&cfg->routes[i].listen, &cfg->routes[j].listen)) {
				snprintf(err, errlen, "listen address %s is used by two routes",
					 cfg->routes[i].listen_str);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int ks_config_parse(struct ks_config *cfg, int argc, char **argv, char **envp, char *err,
		    size_t errlen)
{
	struct option lopts[KS_NOPTS + 1];
	bool seen[KS_NOPTS] = {0};
	int c, rc;

	defaults(cfg);
	err[0] = '\0';
	for (size_t i = 0; i < KS_NOPTS; i++) {
		lopts[i].name = ks_opts[i].name;
		lopts[i].has_arg = ks_opts[i].has_arg ? required_argument : no_argument;
		lopts[i].flag = NULL;
		lopts[i].val = ks_opts[i].id;
	}
	memset(&lopts[KS_NOPTS], 0, sizeof(lopts[0]));

	rc = apply_env(cfg, envp, err, errlen);
	if (rc < 0)
		goto fail;

	optind = 0; /* GNU: full re-initialisation, so tests can parse twice */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", lopts, NULL)) != -1) {
		const struct ks_opt *o = NULL;
		size_t idx = 0;

		if (c == 'h')
			c = OPT_HELP;
		for (idx = 0; idx < KS_NOPTS; idx++) {
			if (ks_opts[idx].id == c) {
				o = &ks_opts[idx];
				break;
			}
		}
		if (!o) {
			if (optopt >= OPT_INBOUND)
				snprintf(err, errlen, "option '%s' needs an argument",
					 argv[optind - 1]);
			else
				snprintf(err, errlen, "unknown option '%s' (see --help)",
					 argv[optind - 1]);
			rc = -EINVAL;
			goto fail;
		}
		if (o->id == OPT_HELP) {
			ks_config_usage(stdout);
			ks_config_free(cfg);
			return 1;
		}
		if (o->id == OPT_VERSION) {
			printf("ktls-sidecar %s (%s)\n", KS_VERSION,
			       OpenSSL_version(OPENSSL_VERSION));
			ks_config_free(cfg);
			return 1;
		}
		if (o->repeatable && !seen[idx])
			reset_repeatable(cfg, o->id);
		seen[idx] = true;
		rc = apply(cfg, o, optarg, err, errlen);
		if (rc < 0)
			goto fail;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		rc = -EINVAL;
		goto fail;
	}
	rc = validate(cfg, err, errlen);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	if (!err[0])
		snprintf(err, errlen, "%s", strerror(-rc));
	ks_config_free(cfg);
	return rc < 0 ? rc : -EINVAL;
}

void ks_config_free(struct ks_config *cfg)
{
	for (size_t i = 0; i < cfg->nroutes; i++)
		free(cfg->routes[i].expect_id);
	free(cfg->routes);
	for (size_t i = 0; i < cfg->policy.nallow; i++)
		free(cfg->policy.allow[i]);
	free(cfg->policy.allow);
	free(cfg->cert);
	free(cfg->spiffe_id);
	free(cfg->redirect_check);
	free(cfg->key);
	free(cfg->ca);
	free(cfg->ciphersuites);
	free(cfg->control_socket);
	free(cfg->control_uids);
	memset(cfg, 0, sizeof(*cfg));
}
