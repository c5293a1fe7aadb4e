/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's flags and environment, from one table: getopt, the
 * environment, --help and the error messages all read ks_opts. Each entry
 * says where its value goes and how it is read (common/parse.h rules: a
 * malformed or out-of-range value is an error naming the flag, never a
 * silent default).
 */
#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "common/version.h"
#include "tls/resume.h"
#include "tls/spiffe.h"
#include "wapi/wapi.h"

enum ks_opt_kind {
	KIND_DURATION, /* uint32_t ms at off; min: 1 when 0 is refused */
	KIND_UINT,     /* unsigned (32-bit) at off, in [min, max] */
	KIND_SIZE,     /* uint32_t bytes at off, with K/M suffixes, in [min, max] */
	KIND_CHOICE,   /* int at off, one of choices */
	KIND_STRING,   /* char * at off, optional validator */
	KIND_NONE_STR, /* char * at off, or "none" for NULL */
	KIND_CUSTOM,   /* set() does it all */
	KIND_HELP,
	KIND_VERSION,
};

struct ks_choice {
	const char *name;
	int value;
};

struct ks_opt {
	const char *name;
	enum ks_opt_kind kind;
	size_t off;
	unsigned long min, max;
	const struct ks_choice *choices;
	int (*set)(struct ks_config *cfg, const char *v, char *err, size_t errlen);
	bool repeatable;
	const char *metavar;
	const char *expect; /* what a bad value should have been, for the error */
	const char *help;
};

#define OFF(f) offsetof(struct ks_config, f)

static int set_inbound(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int set_outbound(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int set_transparent(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int set_allow(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int set_federated(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int set_dest(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int set_control_uid(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int set_control_socket(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int set_workers(struct ks_config *cfg, const char *v, char *err, size_t errlen);
static int check_spiffe_id(const char *v, char *err, size_t errlen);
static int check_ciphersuites(const char *v, char *err, size_t errlen);

static const struct ks_choice io_choices[] = {{"auto", KS_IO_AUTO},
					      {"uring", KS_IO_URING},
					      {"io_uring", KS_IO_URING},
					      {"epoll", KS_IO_EPOLL},
					      {NULL, 0}};
static const struct ks_choice ktls_choices[] = {
    {"auto", KS_KTLS_AUTO}, {"off", KS_KTLS_OFF}, {"require", KS_KTLS_REQUIRE}, {NULL, 0}};
static const struct ks_choice tls_version_choices[] = {
    {"1.3", TLS1_3_VERSION}, {"1.2", TLS1_2_VERSION}, {NULL, 0}};
static const struct ks_choice log_choices[] = {{"debug", KS_LOG_DEBUG},
					       {"info", KS_LOG_INFO},
					       {"warn", KS_LOG_WARN},
					       {"error", KS_LOG_ERROR},
					       {NULL, 0}};
static const struct ks_choice log_format_choices[] = {
    {"logfmt", KS_LOG_LOGFMT}, {"json", KS_LOG_JSON}, {NULL, 0}};
static const struct ks_choice on_off_choices[] = {{"on", 1}, {"off", 0}, {NULL, 0}};
static const struct ks_choice unknown_dest_choices[] = {
    {"trust-domain", KS_UNKNOWN_DEST_TRUST_DOMAIN}, {"refuse", KS_UNKNOWN_DEST_REFUSE}, {NULL, 0}};
static const struct ks_choice layout_choices[] = {
    {"csi-driver-spiffe", KS_LAYOUT_CSI_DRIVER_SPIFFE},
    {"spiffe-helper", KS_LAYOUT_SPIFFE_HELPER},
    {"files", KS_LAYOUT_FILES},
    {NULL, 0}};

/*
 * The names each layout means. csi-driver-spiffe: its defaults
 * (csi.cert-manager.io/certificate-file, -privatekey-file, -ca-file), which
 * are also a kubernetes.io/tls Secret's keys plus ca.crt. spiffe-helper:
 * the names its README uses for svid_file_name, svid_key_file_name and
 * svid_bundle_file_name.
 */
const struct ks_identity_layout_names ks_identity_layouts[KS_LAYOUT__COUNT] = {
    [KS_LAYOUT_CSI_DRIVER_SPIFFE] = {"csi-driver-spiffe", "tls.crt", "tls.key", "ca.crt"},
    [KS_LAYOUT_SPIFFE_HELPER] = {"spiffe-helper", "svid.pem", "svid_key.pem", "svid_bundle.pem"},
    [KS_LAYOUT_FILES] = {"files", "cert.pem", "key.pem", "ca.pem"},
};

static const struct ks_choice mode_choices[] = {
    {"strict", KS_INBOUND_STRICT}, {"permissive", KS_INBOUND_PERMISSIVE}, {NULL, 0}};

/* The single source for getopt, the environment and --help. */
static const struct ks_opt ks_opts[] = {
    {"inbound", KIND_CUSTOM, 0, 0, 0, NULL, set_inbound, true, "LISTEN=UPSTREAM", NULL,
     "Terminate mTLS on LISTEN and forward plaintext to the local app at UPSTREAM.\n"
     "Port 0 in LISTEN picks a free port (logged in event=listening)."},
    {"outbound", KIND_CUSTOM, 0, 0, 0, NULL, set_outbound, true, "LISTEN=REMOTE[,id=SPIFFE_ID]",
     NULL,
     "Accept plaintext from the local app on LISTEN and originate mTLS to REMOTE.\n"
     "The server must present SPIFFE_ID (a pattern: '*' matches one path segment);\n"
     "without id=, any ID in our own trust domain."},
    {"outbound-transparent", KIND_CUSTOM, 0, 0, 0, NULL, set_transparent, true, "LISTEN", NULL,
     "Like --outbound, but the remote is the connection's original destination\n"
     "(getsockopt SO_ORIGINAL_DST, set by iptables REDIRECT). The server must match\n"
     "the destination's --destination-id, or be in our own trust domain."},
    {"cert", KIND_STRING, OFF(tls.cert), 0, 0, NULL, NULL, false, "FILE", NULL,
     "Our certificate chain (PEM: leaf first, then intermediates). The leaf carries\n"
     "our SPIFFE ID as its only URI SAN. Reloaded on SIGHUP and on change\n"
     "(--identity-watch)."},
    {"key", KIND_STRING, OFF(tls.key), 0, 0, NULL, NULL, false, "FILE", NULL,
     "Private key for --cert (PEM). Reloaded with --cert."},
    {"ca", KIND_STRING, OFF(tls.ca), 0, 0, NULL, NULL, false, "FILE", NULL,
     "The trust bundle (PEM roots) of our own trust domain: a peer whose SPIFFE ID\n"
     "is in our trust domain must chain to one of these. Reloaded with --cert."},
    {"identity-dir", KIND_STRING, OFF(identity_dir), 0, 0, NULL, NULL, false, "DIR", NULL,
     "Read the identity from three files in DIR, named by --identity-layout,\n"
     "instead of --cert/--key/--ca (giving both is an error). For a volume that\n"
     "another component rotates: a Secret, a csi-driver-spiffe CSI volume, the\n"
     "directory spiffe-helper writes to."},
    {"identity-layout", KIND_CHOICE, OFF(identity_layout), 0, 0, layout_choices, NULL, false,
     "csi-driver-spiffe|spiffe-helper|files", "csi-driver-spiffe, spiffe-helper or files",
     "The names of the files in --identity-dir. csi-driver-spiffe: tls.crt,\n"
     "tls.key, ca.crt (also a kubernetes.io/tls Secret with a ca.crt);\n"
     "spiffe-helper: svid.pem, svid_key.pem, svid_bundle.pem; files: cert.pem,\n"
     "key.pem, ca.pem. Default csi-driver-spiffe."},
    {"identity-watch", KIND_CHOICE, OFF(identity_watch), 0, 0, on_off_choices, NULL, false,
     "on|off", "on or off",
     "on: watch the identity files (--cert/--key/--ca, --identity-dir,\n"
     "--federated-ca) with inotify, following a kubelet ..data swap, a rename\n"
     "and a rewrite in place, and reload them as SIGHUP does once they form a\n"
     "complete, consistent set. A set that is half written is retried for up to\n"
     "2s and then logged (event=identity_reload_rejected source=files); the\n"
     "identity in force stays. off: SIGHUP only. Default on."},
    {"federated-ca", KIND_CUSTOM, 0, 0, 0, NULL, set_federated, true, "TRUST_DOMAIN=FILE", NULL,
     "The bundle (PEM roots) of a foreign trust domain (SPIFFE federation): a peer\n"
     "whose ID is in TRUST_DOMAIN must chain to one of these roots, and to no\n"
     "other. Without one, no peer of that trust domain is accepted, whatever\n"
     "--allow says. Reloaded with --cert."},
    {"workload-api", KIND_STRING, OFF(workload_api), 0, 0, NULL, NULL, false, "unix:///PATH|PATH",
     NULL,
     "Take the identity from the SPIFFE Workload API (SPIRE's agent) on this Unix\n"
     "socket: a FetchX509SVID stream, each response's SVID, key, bundle and\n"
     "federated bundles applied together once they validate (a bad one is logged,\n"
     "counted and skipped; the identity in force stays). Reconnects with backoff\n"
     "(0.2s doubling to 5s, jittered). Without it, SPIFFE_ENDPOINT_SOCKET (a\n"
     "unix: URI) is used when no --cert or --identity-dir is given. Not with\n"
     "--cert, --identity-dir or --federated-ca. The first SVID is used, or\n"
     "--spiffe-id's."},
    {"spiffe-id", KIND_STRING, OFF(tls.spiffe_id), 0, 0, NULL, NULL, false, "SPIFFE_ID", NULL,
     "This sidecar's identity. Every certificate we load or are pushed must carry\n"
     "exactly this ID, and CreateCsr asks for it. Default: whatever --cert says."},
    {"allow", KIND_CUSTOM, 0, 0, 0, NULL, set_allow, true, "PATTERN", NULL,
     "SPIFFE ID allowed inbound; '*' matches one path segment, e.g.\n"
     "spiffe://example.org/ns/*/sa/web. Default: any ID in our own trust domain."},
    {"destination-id", KIND_CUSTOM, 0, 0, 0, NULL, set_dest, true, "DEST=PATTERN", NULL,
     "--outbound-transparent: the server ID expected at DEST, an address or CIDR\n"
     "with an optional port (10.0.0.0/8, 10.1.2.3:443, [fd00::/8]:443). The most\n"
     "specific entry wins. Default: any ID in our own trust domain."},
    {"unknown-destination", KIND_CHOICE, OFF(policy.unknown_dest), 0, 0, unknown_dest_choices, NULL,
     false, "trust-domain|refuse", "trust-domain or refuse",
     "--outbound-transparent to a destination no --destination-id names:\n"
     "trust-domain admits any server ID in our own trust domain; refuse refuses\n"
     "the connection before it leaves (reason=no_destination_id). Default\n"
     "trust-domain."},
    {"inbound-mode", KIND_CHOICE, OFF(dp.inbound_mode), 0, 0, mode_choices, NULL, false,
     "strict|permissive", "strict or permissive",
     "strict: an inbound connection that does not start with a TLS handshake is\n"
     "refused (reason=not_tls). permissive: it is passed to the app as plaintext and\n"
     "counted apart (record_layer=plaintext), for clients not yet in the mesh, like\n"
     "Istio's PeerAuthentication PERMISSIVE. Default strict."},
    {"workers", KIND_CUSTOM, 0, 0, 0, NULL, set_workers, false, "N|auto", NULL,
     "Worker threads (1-256), each with its own event loop, sharing one listener\n"
     "per route. auto: the CPUs the process may use, the smaller of its cgroup's\n"
     "CPU quota, rounded up (cpu.max, or cpu.cfs_quota_us on cgroup v1; a\n"
     "parent cgroup's quota counts too) and the CPUs of its affinity mask\n"
     "(taskset, cpuset). event=workers logs the count and where it came from.\n"
     "Default auto."},
    {"first-byte-timeout", KIND_DURATION, OFF(dp.first_byte_timeout_ms), 1, 0, NULL, NULL, false,
     "DURATION", NULL,
     "Inbound: time allowed from accept to the client's first byte. A TLS client\n"
     "sends its ClientHello at once; a connection that says nothing is cut early\n"
     "(reason=handshake_timeout) instead of holding a slot for the whole\n"
     "--handshake-timeout. Capped by --handshake-timeout. Default 3s."},
    {"handshake-timeout", KIND_DURATION, OFF(dp.handshake_timeout_ms), 1, 0, NULL, NULL, false,
     "DURATION", NULL,
     "Time allowed from accept to an authenticated, forwarding connection. Default 10s."},
    {"idle-timeout", KIND_DURATION, OFF(dp.idle_timeout_ms), 0, 0, NULL, NULL, false, "DURATION",
     NULL,
     "Close a connection after this long without traffic in either direction.\n"
     "0 disables. Default 1h."},
    {"drain-timeout", KIND_DURATION, OFF(dp.drain_timeout_ms), 0, 0, NULL, NULL, false, "DURATION",
     NULL,
     "On SIGTERM or a drain request (ktlsctl drain), the most the drain may take,\n"
     "--drain-delay included; what is still open at the end is closed. Keep it\n"
     "below the pod's terminationGracePeriodSeconds (30s by default). 0 stops at\n"
     "once. Default 20s."},
    {"drain-delay", KIND_DURATION, OFF(dp.drain_delay_ms), 0, 0, NULL, NULL, false, "DURATION",
     NULL,
     "How long into a drain the inbound listeners keep accepting, while the pod's\n"
     "removal from Service endpoints reaches every client; then they close.\n"
     "Outbound listeners stay open at least this long, then until no connection\n"
     "has been open for --drain-quiet. Counts inside --drain-timeout and may not\n"
     "exceed it. 0 suits a native sidecar (the kubelet stops it after the app).\n"
     "Default 5s, or --drain-timeout when that is shorter."},
    {"drain-quiet", KIND_DURATION, OFF(dp.drain_quiet_ms), 0, 0, NULL, NULL, false, "DURATION",
     NULL,
     "After --drain-delay, the drain ends once no connection has been open for\n"
     "this long: an app finishing its work opens one after another, and the\n"
     "outbound listeners stay open for it. Default 1s."},
    {"dns-refresh", KIND_DURATION, OFF(dp.dns_refresh_ms), 1, 0, NULL, NULL, false, "DURATION",
     NULL,
     "How long the addresses of a name in an --outbound REMOTE are used before it\n"
     "is looked up again (getaddrinfo: /etc/hosts, DNS). Names are looked up when a\n"
     "connection needs them, never blocking one; a name that does not resolve at\n"
     "start-up is a warning, and connections to it are refused\n"
     "(reason=resolve_failed) until it does. A failed lookup is retried after 5s\n"
     "at most. Default 30s."},
    {"tls-key-update-records", KIND_UINT, OFF(dp.key_update_records), 0, 0xffffffffUL, NULL, NULL,
     false, "N", "0-4294967295",
     "Kernel path on a kernel that rekeys (6.14+): send our KeyUpdate after at most\n"
     "N records under one key, below AES-GCM's usage limit of 2^24.5 records\n"
     "(RFC 8446 section 5.5). 0 never. Default 16777216 (2^24)."},
    {"max-connections", KIND_UINT, OFF(dp.max_connections), 1, 10000000, NULL, NULL, false, "N",
     "1-10000000",
     "Authenticated connections (forwarding) at most; one that authenticates\n"
     "while this many forward is reset (counted, logged at most once a second).\n"
     "Pending ones do not count (see --max-handshakes). Default 16384, lowered\n"
     "to fit RLIMIT_NOFILE (up to 6 descriptors a connection); a value given\n"
     "here that the limit cannot honour is a start-up error."},
    {"max-handshakes", KIND_UINT, OFF(dp.max_handshakes), 1, 10000000, NULL, NULL, false, "N",
     "1-10000000",
     "Connections not yet forwarding (connecting, TLS handshake), per direction:\n"
     "inbound and outbound never share it. When full, the oldest is shed to make\n"
     "room for the newcomer. Default 1024, lowered to fit RLIMIT_NOFILE."},
    {"max-pipes", KIND_UINT, OFF(dp.max_pipes), 2, 10000000, NULL, NULL, false, "N", "2-10000000",
     "Pipes the splice path (kTLS, permissive plaintext) may hold at once, for\n"
     "connections with bytes in flight; an idle connection holds none. When all\n"
     "are in use, a connection waits for one (back-pressure, not an error).\n"
     "Default a quarter of --max-connections (as HAProxy's maxpipes)."},
    {"max-handshakes-per-source", KIND_UINT, OFF(dp.max_handshakes_per_source), 1, 10000000, NULL,
     NULL, false, "N", "1-10000000",
     "Inbound connections not yet forwarding from one source address; more are\n"
     "refused. Generous: an ingress gateway or SNAT puts many clients behind one\n"
     "address. Default 256."},
    {"io", KIND_CHOICE, OFF(dp.io), 0, 0, io_choices, NULL, false, "auto|uring|epoll",
     "auto, uring or epoll",
     "Event loop backend. auto uses io_uring and falls back to epoll when\n"
     "io_uring_setup fails (seccomp, kernel.io_uring_disabled). Default auto."},
    {"ktls", KIND_CHOICE, OFF(dp.ktls), 0, 0, ktls_choices, NULL, false, "auto|off|require",
     "auto, off or require",
     "Kernel TLS record layer after the handshake (TLS 1.3). auto offloads when\n"
     "the kernel can and falls back to userspace TLS per connection, logging why;\n"
     "require refuses connections that cannot be offloaded; off never offloads.\n"
     "Default auto."},
    {"tls-min-version", KIND_CHOICE, OFF(tls.min_version), 0, 0, tls_version_choices, NULL, false,
     "1.2|1.3", "1.2 or 1.3", "Lowest TLS version accepted. Default 1.3."},
    {"tls-ciphersuites", KIND_STRING, OFF(tls.ciphersuites), 0, 0, NULL, NULL, false, "LIST", NULL,
     "TLS 1.3 suites in preference order, ':'-separated, from TLS_AES_128_GCM_SHA256,\n"
     "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256. Default: all three."},
    {"session-resumption", KIND_CHOICE, OFF(session_resumption), 0, 0, on_off_choices, NULL, false,
     "on|off", "on or off",
     "TLS 1.3 session resumption between sidecars (and with any TLS 1.3 peer):\n"
     "stateless tickets as a server, one cache per outbound route and expected\n"
     "server ID as a client, each ticket used once. psk_dhe_ke only (a fresh\n"
     "(EC)DHE share every time), never 0-RTT. A resumed connection is accepted only\n"
     "if the peer would pass a full handshake now: same trust bundle, not revoked\n"
     "by a CRL we hold, allowed by the policy and pins in force, certificates\n"
     "valid; otherwise a full handshake follows. event=conn_open says\n"
     "resumed=yes|no. Ticket keys live in memory only. Default on."},
    {"session-lifetime", KIND_DURATION, OFF(session_lifetime_ms), 1, 0, NULL, NULL, false,
     "DURATION", NULL,
     "Longest a ticket is used (never past the peer certificate's notAfter), from\n"
     "1s to 168h (7 days, RFC 8446 section 4.6.1). Also the rotation period of our ticket\n"
     "keys: a key seals tickets for one period and opens them for one more, then\n"
     "it is wiped. Default 1h."},
    {"log-level", KIND_CHOICE, OFF(log_level), 0, 0, log_choices, NULL, false,
     "debug|info|warn|error", "debug, info, warn or error", "Default info."},
    {"log-format", KIND_CHOICE, OFF(log_format), 0, 0, log_format_choices, NULL, false,
     "logfmt|json", "logfmt or json",
     "logfmt: key=value lines. json: the same fields as one JSON object per line\n"
     "(plain integers are numbers, the rest strings). Both on stderr. Default logfmt."},
    {"access-log", KIND_CHOICE, OFF(access_log), 0, 0, on_off_choices, NULL, false, "on|off",
     "on or off",
     "off: no event=conn_open and no clean event=conn_close (reason=done) lines, the\n"
     "per-connection info lines. Refused handshakes and connections that end in\n"
     "an error are still logged (warnings). Default on."},
    {"control-socket", KIND_CUSTOM, 0, 0, 0, NULL, set_control_socket, false, "PATH|none", NULL,
     "Unix socket of the control API (ktlsctl, the control plane; proto/). Created\n"
     "mode 0600 in a 0700 directory made if missing; a stale socket is replaced,\n"
     "a live one is an error. none disables the API.\n"
     "Default " KS_CONTROL_SOCKET_DEFAULT "."},
    {"control-allow-uid", KIND_CUSTOM, 0, 0, 0, NULL, set_control_uid, true, "UID", NULL,
     "A uid allowed to use the control socket (checked with SO_PEERCRED; others\n"
     "get PERMISSION_DENIED). Default: the sidecar's own uid and root."},
    {"control-max-frame", KIND_SIZE, OFF(control_max_frame), 64, 64u << 20, NULL, NULL, false,
     "SIZE", "64 bytes to 64M",
     "Largest control message accepted (bytes, or with K or M). A larger frame is\n"
     "answered with FRAME_TOO_LARGE and the connection closed. Default 1M."},
    {"control-idle-timeout", KIND_DURATION, OFF(control_idle_ms), 1, 0, NULL, NULL, false,
     "DURATION", NULL,
     "Close a control client that sends and reads nothing for this long (the API\n"
     "has 32 client slots). Default 30s."},
    {"redirect-check", KIND_NONE_STR, OFF(redirect_check), 0, 0, NULL, NULL, false, "MANIFEST|none",
     NULL,
     "Fail closed: at start-up, read the manifest `ktls-redirect install` wrote\n"
     "(e.g. /run/ktls-sidecar/redirect.conf), check this sidecar against it\n"
     "(uid, routes, kernel) and make a real connect through the redirect; if any\n"
     "of it fails, exit 1 saying what is missing instead of starting. Default none."},
    {"admin", KIND_NONE_STR, OFF(admin), 0, 0, NULL, NULL, false, "LISTEN|none", NULL,
     "HTTP admin endpoint: GET /metrics (Prometheus), /ready, /live; POST /drain and\n"
     "/quitquitquit (drain, then exit 0; from a loopback address only, else 403).\n"
     "Served by the control thread, never by a worker. The Helm chart sets\n"
     "0.0.0.0:15020 for the kubelet's probes. A taken port is a start-up error.\n"
     "Default none (two sidecars on one host must not collide)."},
    {"stall-timeout", KIND_DURATION, OFF(stall_timeout_ms), 1, 0, NULL, NULL, false, "DURATION",
     NULL,
     "GET /live answers 503 when a worker's event loop has not turned for this long\n"
     "(an idle loop turns every second). Default 10s."},
    {"help", KIND_HELP, 0, 0, 0, NULL, NULL, false, NULL, NULL, "Print this help and exit."},
    {"version", KIND_VERSION, 0, 0, 0, NULL, NULL, false, NULL, NULL,
     "Print the version and exit."},
};

#define KS_NOPTS (sizeof(ks_opts) / sizeof(ks_opts[0]))

static bool has_arg(const struct ks_opt *o)
{
	return o->kind != KIND_HELP && o->kind != KIND_VERSION;
}

static void env_name(const struct ks_opt *o, char *buf, size_t len)
{
	size_t i, p = (size_t)snprintf(buf, len, "KTLS_SIDECAR_");

	for (i = 0; o->name[i] && p + 1 < len; i++)
		buf[p++] = o->name[i] == '-' ? '_' : (char)toupper((unsigned char)o->name[i]);
	buf[p] = '\0';
}

static void usage_option(FILE *out, const struct ks_opt *o)
{
	char env[64];

	env_name(o, env, sizeof(env));
	fprintf(out, "  --%s%s%s%s\n", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "",
		o->repeatable ? "  (repeatable)" : "");
	if (has_arg(o))
		fprintf(out, "      env %s%s\n", env,
			o->repeatable ? " (whitespace-separated list)" : "");
	for (const char *h = o->help; *h;) {
		const char *nl = strchr(h, '\n');
		int len = nl ? (int)(nl - h) : (int)strlen(h);

		fprintf(out, "      %.*s\n", len, h);
		h += len + (nl ? 1 : 0);
	}
}

void ks_config_usage(FILE *out)
{
	fprintf(out,
		"Usage: ktls-sidecar [OPTIONS]\n"
		"       ktls-sidecar redirect install|remove|status ...  (runs ktls-redirect,\n"
		"       the privileged redirect loader; see ktls-redirect --help)\n"
		"\n"
		"A per-pod mTLS sidecar: terminates (--inbound) and originates (--outbound)\n"
		"TLS 1.3 with SPIFFE identities. At least one route is required. The identity\n"
		"comes from --cert, --key and --ca, or, without them, from the control plane\n"
		"over --control-socket (ktlsctl agent); until it arrives connections are\n"
		"refused.\n"
		"\n"
		"Options (each also read from the environment variable shown):\n");
	for (size_t i = 0; i < KS_NOPTS; i++)
		usage_option(out, &ks_opts[i]);
	fprintf(out,
		"\n"
		"DURATION is a number with a unit: 500ms, 10s, 5m, 1h (no unit = seconds).\n"
		"\n"
		"Signals: SIGHUP reloads --cert/--key/--ca (new handshakes use the new identity;\n"
		"a bad file is rejected and the old identity stays; the files are also watched,\n"
		"see --identity-watch). SIGTERM drains (see --drain-delay); during a drain, from\n"
		"a signal or the control API, a further SIGTERM is logged and changes nothing.\n"
		"SIGINT stops at once. SIGUSR1 logs an event=status line: connections, and bytes\n"
		"per record layer, including the payload bytes that passed through the sidecar's\n"
		"own memory.\n");
}

/* "--name 'value': expected ..." for a value of the wrong form. */
static int bad_value(const struct ks_opt *o, const char *v, const char *expect, char *err,
		     size_t errlen)
{
	snprintf(err, errlen, "--%s '%s': expected %s", o->name, v, expect);
	return -EINVAL;
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

static int apply_choice(struct ks_config *cfg, const struct ks_opt *o, const char *v, char *err,
			size_t errlen)
{
	int *field = (int *)((char *)cfg + o->off); /* every choice field is an enum or int */

	for (const struct ks_choice *c = o->choices; c->name; c++) {
		if (strcasecmp(v, c->name) != 0)
			continue;
		*field = c->value;
		return 0;
	}
	return bad_value(o, v, o->expect, err, errlen);
}

static int apply_number(struct ks_config *cfg, const struct ks_opt *o, const char *v, char *err,
			size_t errlen)
{
	uint32_t *field = (uint32_t *)((char *)cfg + o->off);
	unsigned long n;
	uint64_t sz;
	uint32_t ms;

	switch (o->kind) {
	case KIND_DURATION:
		if (ks_parse_duration_ms(v, &ms) < 0 || ms < o->min)
			return bad_value(o, v,
					 o->min ? "a duration > 0 like 500ms, 10s, 5m"
						: "a duration like 500ms, 10s, 5m",
					 err, errlen);
		*field = ms;
		return 0;
	case KIND_UINT:
		if (ks_parse_uint(v, o->max, &n) < 0 || n < o->min)
			return bad_value(o, v, o->expect, err, errlen);
		*field = (uint32_t)n;
		return 0;
	default: /* KIND_SIZE */
		if (ks_parse_size(v, o->max, &sz) < 0 || sz < o->min)
			return bad_value(o, v, o->expect, err, errlen);
		*field = (uint32_t)sz;
		return 0;
	}
}

/* One value for one option, from the command line or the environment. */
static int apply(struct ks_config *cfg, const struct ks_opt *o, const char *v, char *err,
		 size_t errlen)
{
	char **str = (char **)((char *)cfg + o->off);
	int rc;

	cfg->max_connections_set |= o->kind == KIND_UINT && o->off == OFF(dp.max_connections);
	cfg->max_handshakes_set |= o->kind == KIND_UINT && o->off == OFF(dp.max_handshakes);
	cfg->max_pipes_set |= o->kind == KIND_UINT && o->off == OFF(dp.max_pipes);
	cfg->drain_delay_set |= o->kind == KIND_DURATION && o->off == OFF(dp.drain_delay_ms);
	switch (o->kind) {
	case KIND_DURATION:
	case KIND_UINT:
	case KIND_SIZE:
		return apply_number(cfg, o, v, err, errlen);
	case KIND_CHOICE:
		return apply_choice(cfg, o, v, err, errlen);
	case KIND_NONE_STR:
		if (strcmp(v, "none") == 0) {
			free(*str);
			*str = NULL;
			return 0;
		}
		return set_str(str, v);
	case KIND_STRING:
		if (o->off == OFF(tls.spiffe_id) && (rc = check_spiffe_id(v, err, errlen)) < 0)
			return rc;
		if (o->off == OFF(tls.ciphersuites) &&
		    (rc = check_ciphersuites(v, err, errlen)) < 0)
			return rc;
		return set_str(str, v);
	case KIND_CUSTOM:
		return o->set(cfg, v, err, errlen);
	default:
		snprintf(err, errlen, "internal: --%s takes no value", o->name);
		return -EINVAL;
	}
}

static int check_spiffe_id(const char *v, char *err, size_t errlen)
{
	const char *why;

	if (ks_spiffe_validate(v, &why) == 0)
		return 0;
	snprintf(err, errlen, "--spiffe-id '%s': %s", v, why);
	return -EINVAL;
}

static int check_ciphersuites(const char *v, char *err, size_t errlen)
{
	static const char *const ok[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
					 "TLS_CHACHA20_POLY1305_SHA256"};
	const char *p = v;

	if (!*v) {
		snprintf(err, errlen, "--tls-ciphersuites: empty list");
		return -EINVAL;
	}
	while (*p) {
		size_t n = strcspn(p, ":"), i;

		for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
			if (strlen(ok[i]) == n && strncmp(p, ok[i], n) == 0)
				break;
		if (i == sizeof(ok) / sizeof(ok[0])) {
			snprintf(err, errlen,
				 "--tls-ciphersuites: '%.*s' is not one of TLS_AES_128_GCM_SHA256, "
				 "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256",
				 (int)n, p);
			return -EINVAL;
		}
		p += n + (p[n] == ':');
	}
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
	/* An outbound remote's name is looked up per connection
	 * (dataplane/resolver.h); the local app (inbound) is resolved now. */
	if (rc == 0 && dir == KS_OUTBOUND)
		rc = ks_addr_parse_lazy(eq + 1, &out->target, out->host, sizeof(out->host),
					&out->port, aerr, sizeof(aerr));
	else if (rc == 0)
		rc = ks_addr_parse(eq + 1, &out->target, aerr, sizeof(aerr));
	if (rc < 0) {
		snprintf(err, errlen, "%s", aerr);
		return rc;
	}
	ks_addr_str((struct sockaddr *)&out->listen.ss, out->listen_str, sizeof(out->listen_str));
	if (out->host[0])
		snprintf(out->target_str, sizeof(out->target_str), "%s:%u", out->host, out->port);
	else
		ks_addr_str((struct sockaddr *)&out->target.ss, out->target_str,
			    sizeof(out->target_str));
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

static int add_route(struct ks_config *cfg, struct ks_route *r)
{
	struct ks_route *n = realloc(cfg->dp.routes, (cfg->dp.nroutes + 1) * sizeof(*n));

	if (!n) {
		free(r->expect_id);
		return -ENOMEM;
	}
	cfg->dp.routes = n;
	cfg->dp.routes[cfg->dp.nroutes++] = *r;
	return 0;
}

static int set_route(struct ks_config *cfg, enum ks_dir dir, const char *v, char *err,
		     size_t errlen)
{
	struct ks_route r;
	int rc = ks_parse_route(v, dir, &r, err, errlen);

	return rc < 0 ? rc : add_route(cfg, &r);
}

static int set_inbound(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_route(cfg, KS_INBOUND, v, err, errlen);
}

static int set_outbound(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
	return set_route(cfg, KS_OUTBOUND, v, err, errlen);
}

static int set_transparent(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
	struct ks_route r = {.dir = KS_OUTBOUND, .transparent = true};
	int rc = ks_addr_parse(v, &r.listen, err, errlen);

	if (rc < 0)
		return rc;
	ks_addr_str((struct sockaddr *)&r.listen.ss, r.listen_str, sizeof(r.listen_str));
	snprintf(r.target_str, sizeof(r.target_str), "original-dst");
	return add_route(cfg, &r);
}

static int set_allow(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
	struct ks_policy *pol = &cfg->policy;
	const char *why;
	char **a;

	if (ks_spiffe_pattern_validate(v, &why) < 0) {
		snprintf(err, errlen, "--allow '%s': %s", v, why);
		return -EINVAL;
	}
	a = realloc(pol->allow, (pol->nallow + 1) * sizeof(*a));
	if (!a)
		return -ENOMEM;
	pol->allow = a;
	a[pol->nallow] = strdup(v);
	if (!a[pol->nallow])
		return -ENOMEM;
	pol->nallow++;
	return 0;
}

static int set_federated(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
	const char *eq = strchr(v, '='), *why;
	char td[KS_SPIFFE_TD_MAX + 1], name[KS_SPIFFE_TD_MAX + 16];
	struct ks_fed_file *f;

	if (!eq || !eq[1] || (size_t)(eq - v) >= sizeof(name)) {
		snprintf(err, errlen, "--federated-ca '%s': expected TRUST_DOMAIN=FILE", v);
		return -EINVAL;
	}
	snprintf(name, sizeof(name), "%.*s", (int)(eq - v), v);
	if (ks_spiffe_td_parse(name, td, sizeof(td), &why) < 0) {
		snprintf(err, errlen, "--federated-ca '%s': trust domain: %s", v, why);
		return -EINVAL;
	}
	for (size_t i = 0; i < cfg->tls.nfed; i++)
		if (strcmp(cfg->tls.fed[i].td, td) == 0) {
			snprintf(err, errlen, "--federated-ca: trust domain %s given twice", td);
			return -EINVAL;
		}
	f = realloc(cfg->tls.fed, (cfg->tls.nfed + 1) * sizeof(*f));
	if (!f)
		return -ENOMEM;
	cfg->tls.fed = f;
	f[cfg->tls.nfed].td = strdup(td);
	f[cfg->tls.nfed].path = strdup(eq + 1);
	cfg->tls.nfed++;
	return f[cfg->tls.nfed - 1].td && f[cfg->tls.nfed - 1].path ? 0 : -ENOMEM;
}

static int set_dest(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
	struct ks_policy *pol = &cfg->policy;
	const char *eq = strrchr(v, '='), *why;
	struct ks_dest_policy d = {0}, *n;
	char spec[128];

	if (!eq || eq == v || (size_t)(eq - v) >= sizeof(spec)) {
		snprintf(err, errlen, "--destination-id '%s': expected DEST=PATTERN", v);
		return -EINVAL;
	}
	snprintf(spec, sizeof(spec), "%.*s", (int)(eq - v), v);
	if (ks_dest_parse(spec, &d, &why) < 0) {
		snprintf(err, errlen, "--destination-id '%s': %s", v, why);
		return -EINVAL;
	}
	if (ks_spiffe_pattern_validate(eq + 1, &why) < 0) {
		snprintf(err, errlen, "--destination-id '%s': %s", v, why);
		return -EINVAL;
	}
	n = realloc(pol->dest, (pol->ndest + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	pol->dest = n;
	d.server_id = strdup(eq + 1);
	if (!d.server_id)
		return -ENOMEM;
	n[pol->ndest++] = d;
	return 0;
}

static void free_fed(struct ks_tls_opts *t)
{
	for (size_t i = 0; i < t->nfed; i++) {
		free(t->fed[i].td);
		free(t->fed[i].path);
	}
	free(t->fed);
	t->fed = NULL;
	t->nfed = 0;
}

static int set_control_uid(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
	unsigned long n;
	uid_t *u;

	/* (uid_t)-1 is "no uid" to the kernel: never a caller's. */
	if (ks_parse_uint(v, 0xfffffffeUL, &n) < 0) {
		snprintf(err, errlen, "--control-allow-uid '%s': expected a numeric uid", v);
		return -EINVAL;
	}
	u = realloc(cfg->control_uids, (cfg->ncontrol_uids + 1) * sizeof(*u));
	if (!u)
		return -ENOMEM;
	cfg->control_uids = u;
	u[cfg->ncontrol_uids++] = (uid_t)n;
	return 0;
}

static int set_control_socket(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
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
		    "--control-socket '%s': expected an absolute path under 108 bytes, or none", v);
		return -EINVAL;
	}
	return set_str(&cfg->control_socket, v);
}

/* "auto" (0, the CPUs we may use: daemon/cpus.h, at start-up) or 1-256. */
static int set_workers(struct ks_config *cfg, const char *v, char *err, size_t errlen)
{
	unsigned long n;

	if (strcasecmp(v, "auto") == 0) {
		cfg->dp.workers = 0;
		return 0;
	}
	if (ks_parse_uint(v, 256, &n) < 0 || n < 1) {
		snprintf(err, errlen, "--workers '%s': expected 1-256 or auto", v);
		return -EINVAL;
	}
	cfg->dp.workers = (unsigned)n;
	return 0;
}

/* Drops what an earlier source (the environment) gave a repeatable option. */
static void reset_repeatable(struct ks_config *cfg, const struct ks_opt *o)
{
	size_t i, j;

	if (o->set == set_control_uid) {
		free(cfg->control_uids);
		cfg->control_uids = NULL;
		cfg->ncontrol_uids = 0;
		return;
	}
	if (o->set == set_allow) {
		for (i = 0; i < cfg->policy.nallow; i++)
			free(cfg->policy.allow[i]);
		free(cfg->policy.allow);
		cfg->policy.allow = NULL;
		cfg->policy.nallow = 0;
		return;
	}
	if (o->set == set_dest) {
		for (i = 0; i < cfg->policy.ndest; i++)
			free(cfg->policy.dest[i].server_id);
		free(cfg->policy.dest);
		cfg->policy.dest = NULL;
		cfg->policy.ndest = 0;
		return;
	}
	if (o->set == set_federated) {
		free_fed(&cfg->tls);
		return;
	}
	for (i = 0, j = 0; i < cfg->dp.nroutes; i++) {
		struct ks_route *r = &cfg->dp.routes[i];
		bool match = (o->set == set_inbound && r->dir == KS_INBOUND) ||
			     (o->set == set_outbound && r->dir == KS_OUTBOUND && !r->transparent) ||
			     (o->set == set_transparent && r->transparent);

		if (match)
			free(r->expect_id);
		else
			cfg->dp.routes[j++] = *r;
	}
	cfg->dp.nroutes = j;
}

static const char *env_get(char **envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* A misspelt variable must not be silently ignored. */
static int check_env_names(char **envp, char *err, size_t errlen)
{
	char name[64];

	for (char **e = envp; e && *e; e++) {
		bool known = false;

		if (strncmp(*e, "KTLS_SIDECAR_", 13) != 0)
			continue;
		for (size_t i = 0; i < KS_NOPTS && !known; i++) {
			env_name(&ks_opts[i], name, sizeof(name));
			known = has_arg(&ks_opts[i]) && strncmp(*e, name, strlen(name)) == 0 &&
				(*e)[strlen(name)] == '=';
		}
		if (!known) {
			snprintf(err, errlen, "unknown environment variable %.*s",
				 (int)strcspn(*e, "="), *e);
			return -EINVAL;
		}
	}
	return 0;
}

/* A repeatable option's list from the environment: each word, at least one. */
static int apply_env_list(struct ks_config *cfg, const struct ks_opt *o, const char *v, char *err,
			  size_t errlen)
{
	char *copy, *tok, *save = NULL;
	int rc = 0, n = 0;

	copy = strdup(v);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, " \t\n", &save); tok && rc == 0;
	     tok = strtok_r(NULL, " \t\n", &save), n++)
		rc = apply(cfg, o, tok, err, errlen);
	free(copy);
	/* Set but empty is a mistake (a template that rendered nothing), not
	 * "the default": for --allow that would silently mean the whole trust
	 * domain. Unset the variable to get the default. */
	if (rc == 0 && n == 0) {
		snprintf(err, errlen, "is set but empty (unset it for the default)");
		return -EINVAL;
	}
	return rc;
}

static int apply_env(struct ks_config *cfg, char **envp, char *err, size_t errlen)
{
	char name[64], tmp[512];
	int rc = check_env_names(envp, err, errlen);

	for (size_t i = 0; i < KS_NOPTS && rc == 0; i++) {
		const struct ks_opt *o = &ks_opts[i];
		const char *v;

		if (!has_arg(o))
			continue;
		env_name(o, name, sizeof(name));
		v = env_get(envp, name);
		if (!v)
			continue;
		rc = o->repeatable ? apply_env_list(cfg, o, v, err, errlen)
				   : apply(cfg, o, v, err, errlen);
		if (rc < 0) {
			snprintf(tmp, sizeof(tmp), "%s", err);
			snprintf(err, errlen, "%s: %s", name, tmp);
		}
	}
	return rc;
}

static void defaults(struct ks_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	/* dp.workers 0: auto, resolved at start-up (daemon/cpus.h). */
	cfg->dp.first_byte_timeout_ms = 3000;
	cfg->dp.handshake_timeout_ms = 10000;
	cfg->dp.idle_timeout_ms = 3600000;
	cfg->dp.drain_timeout_ms = 20000;
	cfg->dp.drain_delay_ms = KS_DRAIN_DELAY_DEFAULT_MS;
	cfg->dp.drain_quiet_ms = 1000;
	cfg->dp.dns_refresh_ms = 30000;
	cfg->dp.max_connections = 16384;
	cfg->dp.max_handshakes = 1024;
	cfg->dp.max_handshakes_per_source = 256;
	cfg->dp.key_update_records = 1u << 24;
	cfg->dp.io = KS_IO_AUTO;
	cfg->tls.min_version = TLS1_3_VERSION;
	cfg->log_level = KS_LOG_INFO;
	cfg->log_format = KS_LOG_LOGFMT;
	cfg->access_log = 1;
	cfg->session_resumption = 1;
	cfg->session_lifetime_ms = KS_SESSION_LIFETIME_DEFAULT_S * 1000;
	cfg->control_max_frame = 1u << 20;
	cfg->control_idle_ms = 30000;
	cfg->stall_timeout_ms = 10000;
	cfg->control_socket = strdup(KS_CONTROL_SOCKET_DEFAULT);
	cfg->identity_layout = -1;
	cfg->identity_watch = 1;
}

/* dir/name, owned; 0 or -ENOMEM. */
static int join_path(char **out, const char *dir, const char *name)
{
	size_t n = strlen(dir);

	free(*out);
	if (asprintf(out, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name) < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* --identity-dir and --identity-layout become --cert/--key/--ca. */
static int identity_dir(struct ks_config *cfg, char *err, size_t errlen)
{
	struct ks_tls_opts *t = &cfg->tls;
	const struct ks_identity_layout_names *l;
	int rc;

	if (!cfg->identity_dir) {
		if (cfg->identity_layout >= 0) {
			snprintf(err, errlen, "--identity-layout needs --identity-dir");
			return -EINVAL;
		}
		return 0;
	}
	if (t->cert || t->key || t->ca) {
		snprintf(err, errlen,
			 "--identity-dir and --%s both say where the identity is: give "
			 "--identity-dir (with --identity-layout) or --cert/--key/--ca, not both",
			 t->cert  ? "cert"
			 : t->key ? "key"
				  : "ca");
		return -EINVAL;
	}
	if (!cfg->identity_dir[0]) {
		snprintf(err, errlen, "--identity-dir '': expected a directory");
		return -EINVAL;
	}
	l = &ks_identity_layouts[cfg->identity_layout >= 0 ? cfg->identity_layout
							   : KS_LAYOUT_CSI_DRIVER_SPIFFE];
	if ((rc = join_path(&t->cert, cfg->identity_dir, l->cert)) < 0 ||
	    (rc = join_path(&t->key, cfg->identity_dir, l->key)) < 0 ||
	    (rc = join_path(&t->ca, cfg->identity_dir, l->ca)) < 0)
		return rc;
	return 0;
}

/*
 * --workload-api, or else SPIFFE_ENDPOINT_SOCKET: SPIFFE_Workload_Endpoint.md
 * §4 makes that variable the default address of a workload's client. It
 * is taken only when nothing else says where the identity is, so a pod
 * that has it for its application does not switch a file-configured
 * sidecar over.
 */
static int workload_api(struct ks_config *cfg, char *err, size_t errlen)
{
	const struct ks_tls_opts *t = &cfg->tls;
	char e[400];
	int rc;

	if (!cfg->workload_api)
		return 0;
	if (cfg->workload_api_env && (t->cert || t->nfed)) {
		free(cfg->workload_api);
		cfg->workload_api = NULL;
		cfg->workload_api_env = false;
		return 0;
	}
	if (t->cert || t->nfed) {
		snprintf(err, errlen,
			 "--workload-api and --%s both give the identity: the Workload API "
			 "brings the SVID, its bundle and the federated bundles; give one source",
			 t->cert ? (cfg->identity_dir ? "identity-dir" : "cert") : "federated-ca");
		return -EINVAL;
	}
	rc = ks_wapi_addr_parse(cfg->workload_api, !cfg->workload_api_env, cfg->workload_api_path,
				e, sizeof(e));
	if (rc < 0) {
		snprintf(err, errlen, "%s %s",
			 cfg->workload_api_env ? "SPIFFE_ENDPOINT_SOCKET" : "--workload-api", e);
		return -EINVAL;
	}
	return 0;
}

static int validate(struct ks_config *cfg, char *err, size_t errlen)
{
	const struct ks_tls_opts *t = &cfg->tls;
	int rc;

	if (!cfg->control_socket && !cfg->control_none)
		return -ENOMEM; /* the default's strdup failed */
	if (cfg->dp.nroutes == 0) {
		snprintf(err, errlen,
			 "no route: give at least one --inbound, --outbound or "
			 "--outbound-transparent");
		return -EINVAL;
	}
	if ((rc = identity_dir(cfg, err, errlen)) < 0)
		return rc;
	if ((rc = workload_api(cfg, err, errlen)) < 0)
		return rc;
	/* Without all three, the identity comes from the control plane
	 * (SetIdentity), and until it does every connection is refused. */
	if ((t->cert || t->key || t->ca) && (!t->cert || !t->key || !t->ca)) {
		snprintf(err, errlen, "--cert, --key and --ca go together (missing %s)",
			 !t->cert  ? "--cert"
			 : !t->key ? "--key"
				   : "--ca");
		return -EINVAL;
	}
	if (!t->cert && cfg->control_none && !cfg->workload_api) {
		snprintf(err, errlen,
			 "no identity: give --cert, --key and --ca, --workload-api, or a "
			 "--control-socket for the control plane to push one");
		return -EINVAL;
	}
	for (size_t i = 0; i < cfg->dp.nroutes; i++) {
		const struct ks_route *r = &cfg->dp.routes[i];

		/* Port 0 is "any free port": two of them never collide. */
		for (size_t j = 0; j < i && ks_addr_port(&r->listen); j++) {
			if (ks_addr_equal(&r->listen, &cfg->dp.routes[j].listen)) {
				snprintf(err, errlen, "listen address %s is used by two routes",
					 r->listen_str);
				return -EINVAL;
			}
		}
	}
	/* The delay is the first part of the drain, not an addition to it: a
	 * timeout that ends first would close the inbound listeners at the
	 * deadline and never let an open connection finish. The default delay
	 * shrinks to fit a short timeout; one given is checked. */
	if (!cfg->drain_delay_set && cfg->dp.drain_delay_ms > cfg->dp.drain_timeout_ms)
		cfg->dp.drain_delay_ms = cfg->dp.drain_timeout_ms;
	if (cfg->dp.drain_delay_ms > cfg->dp.drain_timeout_ms) {
		snprintf(err, errlen,
			 "--drain-delay (%u ms) is longer than --drain-timeout (%u ms): the delay "
			 "counts inside the timeout; give a longer --drain-timeout or a shorter "
			 "--drain-delay",
			 cfg->dp.drain_delay_ms, cfg->dp.drain_timeout_ms);
		return -EINVAL;
	}
	if (cfg->session_lifetime_ms < 1000) {
		snprintf(err, errlen, "--session-lifetime %u ms: at least 1s",
			 cfg->session_lifetime_ms);
		return -EINVAL;
	}
	if (cfg->session_lifetime_ms > (uint32_t)KS_SESSION_LIFETIME_MAX_S * 1000) {
		snprintf(err, errlen,
			 "--session-lifetime %u s is longer than 7 days, the most RFC 8446 "
			 "(section 4.6.1) allows a ticket",
			 cfg->session_lifetime_ms / 1000);
		return -EINVAL;
	}
	/* Always: the kTLS hand-off needs the secrets, and so does the
	 * internal_error alert a client gets when the app is down (tls/record.h). */
	cfg->tls.keylog = true;
	cfg->tls.keylog_client = true; /* main.c clears it when the kernel cannot offload */
	return 0;
}

/* The ks_opts entry for a getopt result, or NULL. */
static const struct ks_opt *opt_for(int c)
{
	if (c == 'h')
		c = 0;
	for (size_t i = 0; i < KS_NOPTS; i++)
		if ((c == 0 && ks_opts[i].kind == KIND_HELP) || (int)(1000 + i) == c)
			return &ks_opts[i];
	return NULL;
}

/* Returns 1 after --help or --version, 0 when argv is consumed, or -EINVAL. */
static int apply_argv(struct ks_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	struct option lopts[KS_NOPTS + 1];
	bool seen[KS_NOPTS] = {0};
	int c, rc;

	for (size_t i = 0; i < KS_NOPTS; i++)
		lopts[i] = (struct option){ks_opts[i].name,
					   has_arg(&ks_opts[i]) ? required_argument : no_argument,
					   NULL, (int)(1000 + i)};
	memset(&lopts[KS_NOPTS], 0, sizeof(lopts[0]));
	optind = 0; /* GNU: full re-initialisation, so tests can parse twice */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", lopts, NULL)) != -1) {
		const struct ks_opt *o = opt_for(c);

		if (!o && optopt >= 1000) {
			snprintf(err, errlen, "option '%s' needs an argument", argv[optind - 1]);
			return -EINVAL;
		}
		if (!o) {
			snprintf(err, errlen, "unknown option '%s' (see --help)", argv[optind - 1]);
			return -EINVAL;
		}
		if (o->kind == KIND_HELP) {
			ks_config_usage(stdout);
			return 1;
		}
		if (o->kind == KIND_VERSION) {
			printf("ktls-sidecar %s (%s)\n", ks_version(),
			       OpenSSL_version(OPENSSL_VERSION));
			return 1;
		}
		if (o->repeatable && !seen[o - ks_opts])
			reset_repeatable(cfg, o);
		seen[o - ks_opts] = true;
		rc = apply(cfg, o, optarg, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

int ks_config_parse(struct ks_config *cfg, int argc, char **argv, char **envp, char *err,
		    size_t errlen)
{
	int rc;

	defaults(cfg);
	err[0] = '\0';
	rc = apply_env(cfg, envp, err, errlen);
	if (rc == 0)
		rc = apply_argv(cfg, argc, argv, err, errlen);
	if (rc == 0 && !cfg->workload_api && env_get(envp, "SPIFFE_ENDPOINT_SOCKET")) {
		cfg->workload_api_env = true;
		rc = set_str(&cfg->workload_api, env_get(envp, "SPIFFE_ENDPOINT_SOCKET"));
	}
	if (rc == 0)
		rc = validate(cfg, err, errlen);
	if (rc == 0)
		return 0;
	ks_config_free(cfg);
	if (rc == 1)
		return 1;
	if (!err[0])
		snprintf(err, errlen, "%s", strerror(-rc));
	return -EINVAL;
}

void ks_config_free(struct ks_config *cfg)
{
	for (size_t i = 0; i < cfg->dp.nroutes; i++)
		free(cfg->dp.routes[i].expect_id);
	free(cfg->dp.routes);
	ks_policy_free(&cfg->policy);
	free(cfg->tls.cert);
	free(cfg->tls.key);
	free(cfg->tls.ca);
	free_fed(&cfg->tls);
	free(cfg->tls.spiffe_id);
	free(cfg->tls.ciphersuites);
	free(cfg->identity_dir);
	free(cfg->workload_api);
	free(cfg->redirect_check);
	free(cfg->admin);
	free(cfg->control_socket);
	free(cfg->control_uids);
	memset(cfg, 0, sizeof(*cfg));
}
