/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every ktlsctl command shares: talking to a sidecar (one request, one
 * response, over the control socket), messages and exit codes, arguments,
 * and files. The commands (main.c), the dev CA (ca.c) and the agent
 * (agent.c) build on it; it builds on nothing of theirs.
 */
#include "ctl/client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/parse.h"
#include "common/secret.h"
#include "control/frame.h"

/* Replies are small; anything bigger is not a sidecar talking. */
#define KTLSCTL_MAX_REPLY (16u << 20)
/* Files we read (PEM): far below this. */
#define KTLSCTL_MAX_FILE (16u << 20)

const char *ktlsctl_prog = "ktlsctl";
#define prog ktlsctl_prog

int ktlsctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ks_cli_vmsg(prog, fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try '%s --help'.\n", prog);
	return EX_USAGE;
}

void ktlsctl_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ks_cli_vmsg(prog, fmt, ap);
	va_end(ap);
}

int ktlsctl_read_file(const char *path, char **out)
{
	/* read(2), not stdio: a key must not linger in a FILE's buffer. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	ssize_t n;
	int rc = 0;

	*out = NULL;
	if (fd < 0) {
		rc = -errno;
		ktlsctl_log("cannot read %s: %s", path, strerror(-rc));
		return rc;
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			if (cap > KTLSCTL_MAX_FILE || !(nb = ks_secret_realloc(buf, cap + 1))) {
				ktlsctl_log("%s: too large", path);
				rc = -EFBIG;
				break;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			ktlsctl_log("cannot read %s: %s", path, strerror(-rc));
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (rc < 0) {
		ks_secret_free(buf);
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

/* All of len bytes read (or, with out, sent), across short transfers and EINTR. */
static bool xfer_full(int fd, uint8_t *in, const uint8_t *out, size_t len)
{
	while (len) {
		ssize_t n = out ? send(fd, out, len, MSG_NOSIGNAL) : read(fd, in, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		if (out)
			out += n;
		else
			in += n;
		len -= (size_t)n;
	}
	return true;
}

/* EX_OK when the server end of fd runs as the sidecar's uid or root. */
static int check_server(const struct ktlsctl_target *to, int fd)
{
	uid_t want = to->sidecar_uid_set ? to->sidecar_uid : geteuid();
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		ktlsctl_log("cannot tell who serves %s (SO_PEERCRED): %s", to->path,
			    strerror(errno));
		return EX_UNREACHABLE;
	}
	if (cred.uid == want || cred.uid == 0)
		return EX_OK;
	ktlsctl_log("%s is served by uid %u (pid %d), not by the sidecar's uid %u or root: "
		    "nothing was sent (if uid %u is the sidecar's, say so with --sidecar-uid %u)",
		    to->path, (unsigned)cred.uid, (int)cred.pid, (unsigned)want, (unsigned)cred.uid,
		    (unsigned)cred.uid);
	return EX_DENIED;
}

int ktlsctl_call(const struct ktlsctl_target *to, Ktls__Control__V1__Request *req,
		 Ktls__Control__V1__Response **resp)
{
	const char *path = to->path;
	uint32_t timeout_ms = to->timeout_ms;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	uint8_t hdr[KS_CTL_HDR], *buf = NULL, *req_buf = NULL;
	size_t req_len = 0;
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
	rc = check_server(to, fd);
	if (rc != EX_OK)
		goto out;
	rc = EX_UNREACHABLE;
	/* The request may carry a private key: packed into wiped memory. */
	if (ks_ctl_frame_pack(&req->base, true, &req_buf, &req_len) < 0)
		goto out;
	/* A refusing sidecar answers and closes before reading: a failed write
	 * is not the end, the answer may be waiting. */
	(void)xfer_full(fd, NULL, req_buf, req_len);
	ks_secret_free(req_buf);
	req_buf = NULL;
	if (!xfer_full(fd, hdr, NULL, sizeof(hdr))) {
		fprintf(stderr, "%s: no answer from %s: %s\n", prog, path,
			errno == EAGAIN ? "timed out"
			: errno		? strerror(errno)
					: "connection closed");
		goto out;
	}
	len = ks_ctl_frame_len(hdr);
	if (len > KTLSCTL_MAX_REPLY || !(buf = malloc(len ? len : 1)) ||
	    !xfer_full(fd, buf, NULL, len)) {
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
	ks_secret_free(req_buf);
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

int ktlsctl_parse_secs(const char *what, const char *v, long *out)
{
	uint32_t ms;

	if (ks_parse_duration_ms(v, &ms) < 0 || ms < 1000)
		return ktlsctl_usage_error("%s '%s': expected a duration of at least 1s", what, v);
	*out = (long)(ms / 1000);
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
