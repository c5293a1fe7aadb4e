/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl: talks to a ktls-sidecar over its control socket
 * (proto/ktls/control/v1/control.proto).
 *
 * Exit codes: 0 done; 1 the sidecar answered with an error; 2 usage;
 * 3 the sidecar could not be reached or answered garbage (or its socket is
 * unsafe); 4 the sidecar refused this uid.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "ktls/control/v1/control.pb-c.h"

#ifndef KS_VERSION
#define KS_VERSION "0.1.0-dev"
#endif

enum { EX_OK = 0, EX_ANSWER = 1, EX_USAGE = 2, EX_UNREACHABLE = 3, EX_DENIED = 4 };

/* Replies are small; anything bigger is not a sidecar talking. */
#define KTLSCTL_MAX_REPLY (16u << 20)

static const char *prog = "ktlsctl";

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: ktlsctl [--socket PATH] [--timeout DURATION] COMMAND [ARGS]\n"
		"\n"
		"Talks to a ktls-sidecar over its control socket.\n"
		"\n"
		"Commands:\n"
		"  status                  identity and its expiry, trust bundle fingerprints,\n"
		"                          kTLS capability, I/O backend, counters\n"
		"  drain [--timeout DUR]   stop accepting new connections; open ones get DUR\n"
		"                          (default: the sidecar's --drain-timeout), then the\n"
		"                          sidecar exits, as on SIGTERM\n"
		"\n"
		"Options:\n"
		"  --socket PATH      control socket (env KTLSCTL_SOCKET);\n"
		"                     default " KS_CONTROL_SOCKET_DEFAULT "\n"
		"  --timeout DURATION how long to wait for the sidecar; default 5s\n"
		"  --help, --version\n"
		"\n"
		"The socket must be mode 0600 (ktlsctl refuses to use one that group or\n"
		"others can reach). DURATION is like 500ms, 10s, 5m.\n"
		"\n"
		"Exit status: 0 done; 1 the sidecar answered with an error; 2 usage error;\n"
		"3 the sidecar could not be reached, answered garbage, or its socket is\n"
		"unsafe; 4 the sidecar does not allow this uid (--control-allow-uid).\n");
}

__attribute__((format(printf, 1, 2))) static int die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", prog);
	return EX_USAGE;
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

/* One request, one response. Returns an exit code; *resp is set on EX_OK. */
static int call(const char *path, uint32_t timeout_ms, Ktls__Control__V1__Request *req,
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
		fprintf(stderr, "%s: %s\n", prog, err);
		return EX_UNREACHABLE;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "%s: cannot connect to %s: %s\n", prog, path, strerror(errno));
		goto out;
	}
	buf = malloc(KS_CTL_HDR + n);
	if (!buf)
		goto out;
	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
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

/* Prints an error answer; returns the exit code for it. */
static int answer_error(const Ktls__Control__V1__Response *r)
{
	fprintf(stderr, "%s: sidecar answered %s: %s\n", prog, code_name(r->code), r->message);
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
		printf("expires         %s (%s%lldh%02lldm)\n", s->identity->not_after,
		       left < 0 ? "expired " : "in ", (left < 0 ? -left : left) / 3600,
		       ((left < 0 ? -left : left) % 3600) / 60);
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
	}
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
	Ktls__Control__V1__Drain dr = KTLS__CONTROL__V1__DRAIN__INIT;
	Ktls__Control__V1__Response *resp = NULL;
	const char *path = getenv("KTLSCTL_SOCKET");
	uint32_t timeout_ms = 5000;
	const char *cmd;
	int c, rc;

	if (!path || !*path)
		path = KS_CONTROL_SOCKET_DEFAULT;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 't':
			if (ks_parse_duration_ms(optarg, &timeout_ms) < 0 || !timeout_ms)
				return die_usage("--timeout '%s': expected a duration like 5s",
						 optarg);
			break;
		case 'h':
			usage(stdout);
			return EX_OK;
		case 'V':
			printf("ktlsctl %s\n", KS_VERSION);
			return EX_OK;
		default:
			return die_usage("%s", "unknown option");
		}
	}
	if (optind >= argc)
		return die_usage("%s", "no command (status, drain)");
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return die_usage("--socket '%s': path too long", path);
	cmd = argv[optind++];
	req.id = (uint64_t)getpid();
	if (strcmp(cmd, "status") == 0) {
		if (optind < argc)
			return die_usage("status takes no arguments (got '%s')", argv[optind]);
		req.op_case = KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS;
		req.get_status = &gs;
	} else if (strcmp(cmd, "drain") == 0) {
		for (; optind < argc; optind++) {
			const char *a = argv[optind], *v = NULL;

			if (strcmp(a, "--timeout") == 0 && optind + 1 < argc)
				v = argv[++optind];
			else if (strncmp(a, "--timeout=", 10) == 0)
				v = a + 10;
			if (!v || ks_parse_duration_ms(v, &dr.timeout_ms) < 0)
				return die_usage(
				    "drain: bad argument '%s' (drain [--timeout DURATION])", a);
		}
		req.op_case = KTLS__CONTROL__V1__REQUEST__OP_DRAIN;
		req.drain = &dr;
	} else {
		return die_usage("unknown command '%s' (status, drain)", cmd);
	}
	rc = call(path, timeout_ms, &req, &resp);
	if (rc != EX_OK)
		return rc;
	if (resp->code != KTLS__CONTROL__V1__CODE__CODE_OK) {
		rc = answer_error(resp);
	} else if (req.op_case == KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS) {
		if (resp->result_case != KTLS__CONTROL__V1__RESPONSE__RESULT_STATUS) {
			fprintf(stderr, "%s: answer carries no status\n", prog);
			rc = EX_UNREACHABLE;
		} else {
			print_status(resp->status);
		}
	} else {
		printf("%s\n", resp->message);
	}
	ktls__control__v1__response__free_unpacked(resp, NULL);
	return rc;
}
