/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl: talks to a ktls-sidecar over its control socket
 * (proto/ktls/control/v1/control.proto), and runs a development CA and the
 * built-in control plane (ktlsctl_agent.c).
 *
 * Exit codes: 0 done; 1 the sidecar answered with an error; 2 usage;
 * 3 the sidecar could not be reached or answered garbage (or its socket is
 * unsafe); 4 the sidecar refused this uid; 5 a local file or the CA failed.
 */
#include "ktlsctl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "control.h"

#ifndef KS_VERSION
#define KS_VERSION "0.1.0-dev"
#endif

/* Replies are small; anything bigger is not a sidecar talking. */
#define KTLSCTL_MAX_REPLY (16u << 20)

const char *ktlsctl_prog = "ktlsctl";
#define prog ktlsctl_prog

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: ktlsctl [--socket PATH] [--timeout DURATION] COMMAND [ARGS]\n"
	    "\n"
	    "Talks to a ktls-sidecar over its control socket; runs a development CA and\n"
	    "the built-in control plane.\n"
	    "\n"
	    "Commands for a sidecar (--socket):\n"
	    "  status                  identity and its expiry, trust bundle fingerprints,\n"
	    "                          kTLS capability, I/O backend, counters\n"
	    "  ready                   exit 0 when the sidecar serves: it has an identity that\n"
	    "                          has not expired and is not draining; else exit 1 and\n"
	    "                          say why (a Kubernetes readiness probe)\n"
	    "  connections             open connections: peer ID, direction, cipher,\n"
	    "                          record layer, bytes, age\n"
	    "  push-identity --cert FILE [--key FILE] [--bundle FILE]\n"
	    "                          a chain (leaf first); without --key, the key of the\n"
	    "                          sidecar's pending CSR; --bundle replaces the trust\n"
	    "                          bundle in the same update\n"
	    "  push-bundle FILE        the trust bundle (PEM roots)\n"
	    "  push-crl FILE|--none    the complete set of CRLs in force (PEM); open\n"
	    "                          connections they revoke are closed\n"
	    "  set-policy [--allow PATTERN]... [--outbound LISTEN[,id=PATTERN][,pin=HEX]...]...\n"
	    "                          replaces the pushed policy: inbound SPIFFE ID patterns\n"
	    "                          (none: own trust domain), and per outbound route the\n"
	    "                          server ID and SHA-256 SPKI pins\n"
	    "  drain [--timeout DUR]   stop accepting new connections; open ones get DUR\n"
	    "                          (default: the sidecar's --drain-timeout), then the\n"
	    "                          sidecar exits, as on SIGTERM\n"
	    "\n"
	    "Development CA and control plane (not for production keys):\n"
	    "  ca init DIR --trust-domain TD [--force]\n"
	    "                          a root and an intermediate (ECDSA P-256) in DIR\n"
	    "  ca issue --ca DIR SPIFFE_ID [--ttl DUR] [--out PREFIX]\n"
	    "                          PREFIX.crt (leaf + intermediate) and PREFIX.key\n"
	    "  ca crl --ca DIR [--next-update DUR] [--out FILE] [CERT_FILE...]\n"
	    "                          a CRL from the intermediate revoking the first (leaf)\n"
	    "                          certificate of each file; to stdout without --out\n"
	    "  agent --ca DIR --id SPIFFE_ID [--sidecar SOCKET] [--ttl DUR] [--once]\n"
	    "                          the built-in control plane: asks the sidecar for a CSR,\n"
	    "                          signs it, pushes chain and bundle; renews at half the\n"
	    "                          TTL (default 1h); retries with backoff while the\n"
	    "                          sidecar is unreachable\n"
	    "\n"
	    "Options:\n"
	    "  --socket PATH      control socket (env KTLSCTL_SOCKET);\n"
	    "                     default " KS_CONTROL_SOCKET_DEFAULT "\n"
	    "  --timeout DURATION how long to wait for the sidecar; default 5s\n"
	    "  --help, --version\n"
	    "\n"
	    "The socket must be mode 0600 (ktlsctl refuses to use one that group or\n"
	    "others can reach). DURATION is like 500ms, 10s, 5m, 1h.\n"
	    "\n"
	    "Exit status: 0 done; 1 the sidecar answered with an error (the update was\n"
	    "rejected and nothing changed); 2 usage error; 3 the sidecar could not be\n"
	    "reached, answered garbage, or its socket is unsafe; 4 the sidecar does not\n"
	    "allow this uid (--control-allow-uid); 5 a local file or the CA failed.\n");
}

int ktlsctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", prog);
	return EX_USAGE;
}

void ktlsctl_log(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int ktlsctl_read_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = 0;

	*out = NULL;
	if (!f) {
		ktlsctl_log("cannot read %s: %s", path, strerror(errno));
		return -errno;
	}
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			char *nb;

			cap = cap ? cap * 2 : 8192;
			if (cap > KTLSCTL_MAX_REPLY || !(nb = realloc(buf, cap + 1))) {
				ktlsctl_log("%s: too large", path);
				rc = -EFBIG;
				break;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				ktlsctl_log("cannot read %s: %s", path, strerror(errno));
				rc = -EIO;
			}
			break;
		}
	}
	fclose(f);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

static const char *code_name(int code)
{
	const ProtobufCEnumValue *v =
	    protobuf_c_enum_descriptor_get_value(&ktls__control__v1__code__descriptor, code);

	return v ? v->name : "CODE_UNKNOWN";
}

static bool read_full(int fd, uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = read(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static bool write_full(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

int ktlsctl_call(const char *path, uint32_t timeout_ms, Ktls__Control__V1__Request *req,
		 Ktls__Control__V1__Response **resp)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	size_t n = protobuf_c_message_get_packed_size(&req->base);
	uint8_t hdr[KS_CTL_HDR], *buf = NULL;
	char err[256];
	uint32_t len;
	int fd = -1, rc = EX_UNREACHABLE;

	*resp = NULL;
	if (ks_control_check_socket(path, err, sizeof(err)) < 0) {
		ktlsctl_log("%s", err);
		return EX_UNREACHABLE;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ktlsctl_log("cannot connect to %s: %s", path, strerror(errno));
		goto out;
	}
	buf = malloc(KS_CTL_HDR + n);
	if (!buf)
		goto out;
	ks_ctl_frame_put(buf, (uint32_t)n);
	protobuf_c_message_pack(&req->base, buf + KS_CTL_HDR);
	/* A refusing sidecar answers and closes before reading: a failed write
	 * is not the end, the answer may be waiting. */
	(void)write_full(fd, buf, KS_CTL_HDR + n);
	free(buf);
	buf = NULL;
	if (!read_full(fd, hdr, sizeof(hdr))) {
		fprintf(stderr, "%s: no answer from %s: %s\n", prog, path,
			errno == EAGAIN ? "timed out"
			: errno		? strerror(errno)
					: "connection closed");
		goto out;
	}
	len = ks_ctl_frame_len(hdr);
	if (len > KTLSCTL_MAX_REPLY || !(buf = malloc(len ? len : 1)) || !read_full(fd, buf, len)) {
		fprintf(stderr, "%s: bad answer from %s (frame of %u bytes)\n", prog, path, len);
		goto out;
	}
	*resp = ktls__control__v1__response__unpack(NULL, len, buf);
	if (!*resp) {
		fprintf(stderr, "%s: answer from %s is not a ktls.control.v1.Response\n", prog,
			path);
		goto out;
	}
	rc = EX_OK;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

int ktlsctl_answer_error(const Ktls__Control__V1__Response *r)
{
	const ProtobufCEnumValue *why =
	    r->reason ? protobuf_c_enum_descriptor_get_value(&ktls__control__v1__reason__descriptor,
							     r->reason)
		      : NULL;

	fprintf(stderr, "%s: sidecar answered %s%s%s%s: %s\n", prog, code_name(r->code),
		why ? " (" : "", why ? why->name : "", why ? ")" : "", r->message);
	return r->code == KTLS__CONTROL__V1__CODE__CODE_PERMISSION_DENIED ? EX_DENIED : EX_ANSWER;
}

static void print_status(const Ktls__Control__V1__Status *s)
{
	const Ktls__Control__V1__Counters *c = s->counters;
	const Ktls__Control__V1__KtlsCapability *k = s->ktls;

	printf("sidecar         ktls-sidecar %s\n", s->version);
	if (s->identity) {
		long long left = (long long)s->identity->not_after_unix - (long long)time(NULL);

		printf("identity        %s\n", s->identity->spiffe_id);
		printf("serial          %s\n", s->identity->serial);
		long long a = left < 0 ? -left : left;

		if (a >= 3600)
			printf("expires         %s (%s%lldh%02lldm)\n", s->identity->not_after,
			       left < 0 ? "expired " : "in ", a / 3600, (a % 3600) / 60);
		else
			printf("expires         %s (%s%lldm%02llds)\n", s->identity->not_after,
			       left < 0 ? "expired " : "in ", a / 60, a % 60);
	} else {
		printf("identity        none\n");
	}
	printf("trust bundle    %zu certificate%s\n", s->n_bundle_sha256,
	       s->n_bundle_sha256 == 1 ? "" : "s");
	for (size_t i = 0; i < s->n_bundle_sha256; i++)
		printf("                sha256 %s\n", s->bundle_sha256[i]);
	if (k)
		printf("kTLS            mode %s; aes128gcm %s, aes256gcm %s, chacha20poly1305 %s, "
		       "rekey %s (%s)\n",
		       k->mode, k->aes128gcm ? "yes" : "no", k->aes256gcm ? "yes" : "no",
		       k->chacha20poly1305 ? "yes" : "no", k->rekey ? "yes" : "no", k->detail);
	printf("event loop      %s, %u worker%s\n", s->io_backend, s->workers,
	       s->workers == 1 ? "" : "s");
	printf("state           %s\n", s->draining ? "draining" : "serving");
	if (c) {
		printf("connections     %llu open, %llu refused at handshake\n",
		       (unsigned long long)c->connections_open,
		       (unsigned long long)c->handshakes_rejected);
		printf("kernel path     %llu closed, %llu bytes, %llu through userspace\n",
		       (unsigned long long)c->kernel_connections,
		       (unsigned long long)c->kernel_bytes,
		       (unsigned long long)c->kernel_userspace_bytes);
		printf("userspace path  %llu closed, %llu bytes, %llu through userspace\n",
		       (unsigned long long)c->userspace_connections,
		       (unsigned long long)c->userspace_bytes,
		       (unsigned long long)c->userspace_userspace_bytes);
		if (c->plaintext_connections)
			printf("plaintext       %llu closed, %llu bytes (permissive inbound, no "
			       "TLS)\n",
			       (unsigned long long)c->plaintext_connections,
			       (unsigned long long)c->plaintext_bytes);
	}
}

static void print_connections(const Ktls__Control__V1__ConnectionList *l)
{
	printf("%-8s %-8s %-10s %-22s %-24s %12s %12s %9s  %s\n", "ID", "DIR", "LAYER", "PEER",
	       "CIPHER", "TO_PEER", "FROM_PEER", "AGE_S", "PEER_ID");
	for (size_t i = 0; i < l->n_connections; i++) {
		const Ktls__Control__V1__Connection *c = l->connections[i];

		printf("%-8llu %-8s %-10s %-22s %-24s %12llu %12llu %9.1f  %s\n",
		       (unsigned long long)c->id, c->direction, c->record_layer, c->peer_addr,
		       c->cipher, (unsigned long long)c->bytes_to_peer,
		       (unsigned long long)c->bytes_from_peer, (double)c->age_ms / 1000.0,
		       c->peer_id[0] ? c->peer_id : "-");
	}
}

/* ktlsctl ready: the readiness probe's verdict. */
static int ready(const Ktls__Control__V1__Status *s)
{
	if (!s->identity) {
		printf("not ready: no identity yet (waiting for the control plane)\n");
		return EX_ANSWER;
	}
	if (s->identity->not_after_unix <= (int64_t)time(NULL)) {
		printf("not ready: identity %s expired at %s\n", s->identity->spiffe_id,
		       s->identity->not_after);
		return EX_ANSWER;
	}
	if (s->draining) {
		printf("not ready: draining\n");
		return EX_ANSWER;
	}
	printf("ready: %s until %s\n", s->identity->spiffe_id, s->identity->not_after);
	return EX_OK;
}

/* "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past it. */
const char *ktlsctl_opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, n) != 0)
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

/* Frees what the set-policy parser allocated. */
struct policy_args {
	Ktls__Control__V1__SetPolicy sp;
	Ktls__Control__V1__OutboundPolicy *out;
	Ktls__Control__V1__OutboundPolicy **outp;
	char **strs;
	size_t nstrs;
};

static char *keep(struct policy_args *pa, char *s)
{
	char **n = realloc(pa->strs, (pa->nstrs + 1) * sizeof(*n));

	if (!n || !s) {
		free(s);
		return NULL;
	}
	pa->strs = n;
	pa->strs[pa->nstrs++] = s;
	return s;
}

static void policy_args_free(struct policy_args *pa)
{
	for (size_t i = 0; i < pa->sp.n_outbound; i++)
		free(pa->out[i].spki_sha256);
	for (size_t i = 0; i < pa->nstrs; i++)
		free(pa->strs[i]);
	free(pa->strs);
	free(pa->out);
	free(pa->outp);
	free(pa->sp.inbound_allow);
}

/* LISTEN[,id=PATTERN][,pin=HEX]... */
static int parse_outbound(struct policy_args *pa, const char *arg)
{
	Ktls__Control__V1__OutboundPolicy *o;
	char *copy = keep(pa, strdup(arg)), *save = NULL, *tok;
	size_t n = pa->sp.n_outbound;

	if (!copy)
		return -ENOMEM;
	o = realloc(pa->out, (n + 1) * sizeof(*o));
	if (!o)
		return -ENOMEM;
	pa->out = o;
	o = &pa->out[n];
	ktls__control__v1__outbound_policy__init(o);
	pa->sp.n_outbound++;
	o->destination = strtok_r(copy, ",", &save);
	if (!o->destination)
		return -EINVAL;
	while ((tok = strtok_r(NULL, ",", &save)) != NULL) {
		if (strncmp(tok, "id=", 3) == 0) {
			o->server_id = tok + 3;
		} else if (strncmp(tok, "pin=", 4) == 0) {
			char **p = realloc(o->spki_sha256, (o->n_spki_sha256 + 1) * sizeof(*p));

			if (!p)
				return -ENOMEM;
			o->spki_sha256 = p;
			p[o->n_spki_sha256++] = tok + 4;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

static int parse_set_policy(struct policy_args *pa, int argc, char **argv, int i)
{
	ktls__control__v1__set_policy__init(&pa->sp);
	for (; i < argc; i++) {
		const char *v;

		if ((v = ktlsctl_opt_value(argc, argv, &i, "--allow")) != NULL) {
			char **a = realloc(pa->sp.inbound_allow,
					   (pa->sp.n_inbound_allow + 1) * sizeof(*a));

			if (!a)
				return EX_LOCAL;
			pa->sp.inbound_allow = a;
			a[pa->sp.n_inbound_allow++] = (char *)v;
		} else if ((v = ktlsctl_opt_value(argc, argv, &i, "--outbound")) != NULL) {
			int rc = parse_outbound(pa, v);

			if (rc == -EINVAL)
				return ktlsctl_usage_error("set-policy: --outbound '%s': expected "
							   "LISTEN[,id=PATTERN][,pin=HEX]...",
							   v);
			if (rc < 0)
				return EX_LOCAL;
		} else {
			return ktlsctl_usage_error("set-policy: unknown argument '%s'", argv[i]);
		}
	}
	if (pa->sp.n_outbound) {
		pa->outp = calloc(pa->sp.n_outbound, sizeof(*pa->outp));
		if (!pa->outp)
			return EX_LOCAL;
		for (size_t k = 0; k < pa->sp.n_outbound; k++)
			pa->outp[k] = &pa->out[k];
	}
	pa->sp.outbound = pa->outp;
	return EX_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	Ktls__Control__V1__Request req = KTLS__CONTROL__V1__REQUEST__INIT;
	Ktls__Control__V1__GetStatus gs = KTLS__CONTROL__V1__GET_STATUS__INIT;
	Ktls__Control__V1__ListConnections lc = KTLS__CONTROL__V1__LIST_CONNECTIONS__INIT;
	Ktls__Control__V1__Drain dr = KTLS__CONTROL__V1__DRAIN__INIT;
	Ktls__Control__V1__SetIdentity si = KTLS__CONTROL__V1__SET_IDENTITY__INIT;
	Ktls__Control__V1__SetTrustBundle sb = KTLS__CONTROL__V1__SET_TRUST_BUNDLE__INIT;
	Ktls__Control__V1__SetCrl sc = KTLS__CONTROL__V1__SET_CRL__INIT;
	Ktls__Control__V1__Response *resp = NULL;
	struct policy_args pa = {0};
	char *files[3] = {NULL, NULL, NULL};
	const char *path = getenv("KTLSCTL_SOCKET");
	uint32_t timeout_ms = 5000;
	const char *cmd;
	int c, rc = EX_OK;

	if (!path || !*path)
		path = KS_CONTROL_SOCKET_DEFAULT;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 't':
			if (ks_parse_duration_ms(optarg, &timeout_ms) < 0 || !timeout_ms)
				return ktlsctl_usage_error(
				    "--timeout '%s': expected a duration like 5s", optarg);
			break;
		case 'h':
			usage(stdout);
			return EX_OK;
		case 'V':
			printf("ktlsctl %s\n", KS_VERSION);
			return EX_OK;
		default:
			return ktlsctl_usage_error("%s", "unknown option");
		}
	}
	if (optind >= argc)
		return ktlsctl_usage_error("%s", "no command (see --help)");
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return ktlsctl_usage_error("--socket '%s': path too long", path);
	cmd = argv[optind++];
	if (strcmp(cmd, "ca") == 0)
		return ktlsctl_ca_main(argc - optind, argv + optind);
	if (strcmp(cmd, "agent") == 0)
		return ktlsctl_agent_main(path, timeout_ms, argc - optind, argv + optind);
	req.id = (uint64_t)getpid();
	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "connections") == 0 ||
	    strcmp(cmd, "ready") == 0) {
		if (optind < argc)
			return ktlsctl_usage_error("%s takes no arguments (got '%s')", cmd,
						   argv[optind]);
		if (cmd[0] != 'c') {
			req.op_case = KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS;
			req.get_status = &gs;
		} else {
			req.op_case = KTLS__CONTROL__V1__REQUEST__OP_LIST_CONNECTIONS;
			req.list_connections = &lc;
		}
	} else if (strcmp(cmd, "drain") == 0) {
		for (; optind < argc; optind++) {
			const char *v = ktlsctl_opt_value(argc, argv, &optind, "--timeout");

			if (!v || ks_parse_duration_ms(v, &dr.timeout_ms) < 0)
				return ktlsctl_usage_error(
				    "drain: bad argument '%s' (drain [--timeout DURATION])",
				    argv[optind]);
		}
		req.op_case = KTLS__CONTROL__V1__REQUEST__OP_DRAIN;
		req.drain = &dr;
	} else if (strcmp(cmd, "push-identity") == 0) {
		const char *names[3] = {"--cert", "--key", "--bundle"};

		for (; optind < argc; optind++) {
			int k;
			const char *v = NULL;

			for (k = 0; k < 3 && !v; k++)
				v = ktlsctl_opt_value(argc, argv, &optind, names[k]);
			if (!v) {
				rc = ktlsctl_usage_error("push-identity: unknown argument '%s'",
							 argv[optind]);
				goto out;
			}
			free(files[k - 1]);
			if (ktlsctl_read_file(v, &files[k - 1]) < 0) {
				rc = EX_LOCAL;
				goto out;
			}
		}
		if (!files[0]) {
			rc = ktlsctl_usage_error("%s", "push-identity: --cert FILE is required");
			goto out;
		}
		si.chain_pem = files[0];
		si.key_pem = files[1] ? files[1] : (char *)"";
		si.bundle_pem = files[2] ? files[2] : (char *)"";
		req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_IDENTITY;
		req.set_identity = &si;
	} else if (strcmp(cmd, "push-bundle") == 0 || strcmp(cmd, "push-crl") == 0) {
		bool crl = strcmp(cmd, "push-crl") == 0;

		if (optind + 1 != argc)
			return ktlsctl_usage_error("%s takes one argument: %s", cmd,
						   crl ? "FILE or --none" : "FILE");
		if (crl && strcmp(argv[optind], "--none") == 0)
			files[0] = strdup("");
		else if (ktlsctl_read_file(argv[optind], &files[0]) < 0)
			return EX_LOCAL;
		if (!files[0])
			return EX_LOCAL;
		if (crl) {
			sc.crl_pem = files[0];
			req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_CRL;
			req.set_crl = &sc;
		} else {
			sb.bundle_pem = files[0];
			req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_TRUST_BUNDLE;
			req.set_trust_bundle = &sb;
		}
	} else if (strcmp(cmd, "set-policy") == 0) {
		rc = parse_set_policy(&pa, argc, argv, optind);
		if (rc != EX_OK)
			goto out;
		req.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_POLICY;
		req.set_policy = &pa.sp;
	} else {
		return ktlsctl_usage_error("unknown command '%s' (see --help)", cmd);
	}
	rc = ktlsctl_call(path, timeout_ms, &req, &resp);
	if (rc != EX_OK)
		goto out;
	if (resp->code != KTLS__CONTROL__V1__CODE__CODE_OK) {
		rc = ktlsctl_answer_error(resp);
	} else if (req.op_case == KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS) {
		if (resp->result_case != KTLS__CONTROL__V1__RESPONSE__RESULT_STATUS) {
			ktlsctl_log("answer carries no status");
			rc = EX_UNREACHABLE;
		} else if (cmd[0] == 'r') {
			rc = ready(resp->status);
		} else {
			print_status(resp->status);
		}
	} else if (req.op_case == KTLS__CONTROL__V1__REQUEST__OP_LIST_CONNECTIONS) {
		if (resp->result_case != KTLS__CONTROL__V1__RESPONSE__RESULT_CONNECTIONS) {
			ktlsctl_log("answer carries no connection list");
			rc = EX_UNREACHABLE;
		} else {
			print_connections(resp->connections);
		}
	} else {
		printf("%s\n", resp->message);
	}
out:
	if (resp)
		ktls__control__v1__response__free_unpacked(resp, NULL);
	for (int k = 0; k < 3; k++)
		free(files[k]);
	policy_args_free(&pa);
	return rc;
}
