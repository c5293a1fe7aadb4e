/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl wait-ready: polls the sidecar's admin endpoint, GET /ready, until
 * it answers 200. It is the chart's classic-mode postStart hook, the
 * equivalent of Istio's holdApplicationUntilProxyStarts: the kubelet starts
 * the next container of the pod only once a container's postStart hook has
 * returned. An exec hook runs without a shell and the image has none, so
 * this is a plain program.
 *
 * HTTP/1.1 on a socket with deadlines, one request per connection: the
 * admin endpoint answers with Content-Length and "Connection: close"
 * (admin/admin.c), and nothing here needs more of HTTP than the status line
 * and a short body to report (RFC 9112 section 4).
 */
#include "ctl/client.h"

#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/net.h"
#include "common/parse.h"
#include "common/version.h"

#define WR_ADMIN_DEFAULT    "127.0.0.1:15020"
#define WR_TIMEOUT_DEFAULT  "60s"
#define WR_INTERVAL_DEFAULT "500ms"
/* One request may take this long: a sidecar under load answers late, but an
 * admin endpoint that accepted and then says nothing must not use up the
 * whole --timeout in one try. */
#define WR_PROBE_MAX_MS 5000u
/* /ready's answer is a status line, a few headers and a one-line reason. */
#define WR_REPLY_MAX 4096
/* How much of the body a "not ready" message quotes. */
#define WR_REASON_MAX 200

struct wr_opts {
	const char *admin;	     /* as typed, for messages */
	const char *timeout;	     /* as typed, for messages */
	struct ks_addr addr;	     /* an IP literal ... */
	char host[KS_HOST_NAME_MAX]; /* ... or a name, looked up on every try */
	uint16_t port;
	uint32_t timeout_ms;
	uint32_t interval_ms;
};

void ktlsctl_wait_ready_usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: ktlsctl wait-ready [--admin HOST:PORT] [--timeout DURATION]\n"
	    "                          [--interval DURATION]\n"
	    "\n"
	    "Polls the sidecar's admin endpoint, GET http://HOST:PORT/ready, until it\n"
	    "answers 200: the sidecar has an identity that has not expired and is not\n"
	    "draining. Needs no shell: it is the chart's classic-mode postStart hook,\n"
	    "which holds the app until the proxy can carry its traffic.\n"
	    "\n"
	    "  --admin HOST:PORT    the sidecar's --admin address; default " WR_ADMIN_DEFAULT "\n"
	    "                       (a host name is looked up on every try)\n"
	    "  --timeout DURATION   give up after this long; default " WR_TIMEOUT_DEFAULT "\n"
	    "  --interval DURATION  pause between tries; default " WR_INTERVAL_DEFAULT "; one try\n"
	    "                       waits at most 5s for an answer\n"
	    "  --help\n"
	    "\n"
	    "DURATION is like 500ms, 10s, 5m, 1h.\n"
	    "Exit status: 0 ready; 1 not ready within --timeout (stderr says what the\n"
	    "last try got: the status and the sidecar's reason, or the connect error);\n"
	    "2 usage error.\n");
}

/* "ktlsctl: wait-ready: ...", and where to read more; returns EX_USAGE. */
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ktlsctl_log("wait-ready: %s", msg);
	fprintf(stderr, "Try '%s wait-ready --help'.\n", ktlsctl_prog);
	return EX_USAGE;
}

static int parse_opts(struct wr_opts *o, int argc, char **argv)
{
	const char *timeout = WR_TIMEOUT_DEFAULT, *interval = WR_INTERVAL_DEFAULT;
	char err[160];
	int rc;

	o->admin = WR_ADMIN_DEFAULT;
	for (int i = 0; i < argc; i++) {
		const char *v;

		if ((v = ktlsctl_opt_value(argc, argv, &i, "--admin")) != NULL)
			o->admin = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--timeout")) != NULL)
			timeout = v;
		else if ((v = ktlsctl_opt_value(argc, argv, &i, "--interval")) != NULL)
			interval = v;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return -1;
		else if (strcmp(argv[i], "--admin") == 0 || strcmp(argv[i], "--timeout") == 0 ||
			 strcmp(argv[i], "--interval") == 0)
			return usage_error("%s needs a value", argv[i]);
		else
			return usage_error("unknown argument '%s'", argv[i]);
	}
	if (ks_parse_duration_ms(timeout, &o->timeout_ms) < 0 || !o->timeout_ms)
		return usage_error("--timeout '%s': expected a duration "
				   "like 60s (more than 0)",
				   timeout);
	if (ks_parse_duration_ms(interval, &o->interval_ms) < 0 || !o->interval_ms)
		return usage_error("--interval '%s': expected a duration "
				   "like 500ms (more than 0)",
				   interval);
	o->timeout = timeout;
	rc = ks_addr_parse_lazy(o->admin, &o->addr, o->host, sizeof(o->host), &o->port, err,
				sizeof(err));
	if (rc < 0)
		return usage_error("--admin %s", err);
	if (rc == 0)
		o->port = ks_addr_port(&o->addr);
	if (!o->port)
		return usage_error("--admin '%s': expected HOST:PORT with a "
				   "port from 1 to 65535",
				   o->admin);
	return EX_OK;
}

/* Milliseconds left until deadline, 0 once it has passed. */
static int left_ms(uint64_t deadline)
{
	uint64_t now = ks_mono_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

/* Waits for events on fd until deadline: 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n;

	do {
		n = poll(&p, 1, left_ms(deadline));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

/* A connected socket to addr by deadline, or -errno. */
static int connect_by(const struct sockaddr *sa, socklen_t len, uint64_t deadline)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc = 0, err = 0;
	socklen_t elen = sizeof(err);

	if (fd < 0)
		return -errno;
	if (connect(fd, sa, len) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto cleanup;
		}
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc < 0)
			goto cleanup;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			rc = -errno;
		else if (err)
			rc = -err;
	}
cleanup:
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

/* Copies the first line of s into out, printable ASCII only. */
static void quote_line(char *out, size_t outlen, const char *s)
{
	size_t n = 0;

	for (; *s && *s != '\r' && *s != '\n' && n + 1 < outlen; s++)
		out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	out[n] = '\0';
}

/* Three digits, 1xx to 5xx, then the end or a space (RFC 9112 section 4). */
static bool is_status(const char *p)
{
	return p[0] >= '1' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
	       p[2] <= '9' && (p[3] == '\0' || p[3] == ' ' || p[3] == '\r');
}

/*
 * Reads the answer to the request already sent on fd: 1 for a 200, 0 for
 * anything else, with what was got in why.
 */
static int read_answer(int fd, uint64_t deadline, char *why, size_t whylen)
{
	char buf[WR_REPLY_MAX + 1], reason[WR_REASON_MAX + 1];
	const char *body;
	size_t len = 0;
	int status, rc;

	/* Until EOF (the server closes after its answer) or a full buffer. */
	while (len < WR_REPLY_MAX) {
		ssize_t n = recv(fd, buf + len, WR_REPLY_MAX - len, 0);

		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			snprintf(why, whylen, "%s: reading the answer: %s", "GET /ready",
				 strerror(errno));
			return 0;
		}
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc < 0) {
			snprintf(why, whylen, "GET /ready: %s after %zu bytes of answer",
				 rc == -ETIMEDOUT ? "no complete answer" : strerror(-rc), len);
			return 0;
		}
	}
	buf[len] = '\0';
	/* "HTTP/1.x NNN reason" (RFC 9112 section 4). */
	if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' || !is_status(buf + 9)) {
		quote_line(reason, sizeof(reason), buf);
		snprintf(why, whylen, "GET /ready: not an HTTP answer: '%s'", reason);
		return 0;
	}
	body = strstr(buf, "\r\n\r\n");
	if (body && body[4])
		quote_line(reason, sizeof(reason), body + 4);
	else
		quote_line(reason, sizeof(reason),
			   len > 13 ? buf + 13 : ""); /* the reason phrase */
	status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	snprintf(why, whylen, "%d %s", status, reason);
	return status == 200;
}

/* One try: 1 ready, 0 not (why says what happened). */
static int probe(const struct wr_opts *o, uint64_t deadline, char *why, size_t whylen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	const struct sockaddr *sa = (const struct sockaddr *)&o->addr.ss;
	socklen_t salen = o->addr.len;
	char req[512], port[8];
	size_t sent = 0;
	int fd = -1, len, rc = 0;

	if (o->host[0]) {
		snprintf(port, sizeof(port), "%u", o->port);
		rc = getaddrinfo(o->host, port, &hints, &ai);
		if (rc != 0) {
			snprintf(why, whylen, "%s: %s", o->admin,
				 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
			return 0;
		}
		sa = ai->ai_addr;
		salen = ai->ai_addrlen;
	}
	fd = connect_by(sa, salen, deadline);
	if (fd < 0) {
		snprintf(why, whylen, "%s: %s", o->admin,
			 fd == -ETIMEDOUT ? "connect timed out" : strerror(-fd));
		goto cleanup;
	}
	len = snprintf(req, sizeof(req),
		       "GET /ready HTTP/1.1\r\nHost: %s\r\nUser-Agent: ktlsctl/%s\r\n"
		       "Connection: close\r\n\r\n",
		       o->admin, ks_version());
	if (len < 0 || (size_t)len >= sizeof(req)) {
		snprintf(why, whylen, "%s: request too long", o->admin);
		goto cleanup;
	}
	while (sent < (size_t)len) {
		ssize_t n = send(fd, req + sent, (size_t)len - sent, MSG_NOSIGNAL);

		if (n >= 0) {
			sent += (size_t)n;
			continue;
		}
		if (errno == EAGAIN)
			rc = wait_fd(fd, POLLOUT, deadline);
		else if (errno != EINTR)
			rc = -errno;
		if (rc < 0) {
			snprintf(why, whylen, "%s: sending GET /ready: %s", o->admin,
				 strerror(-rc));
			goto cleanup;
		}
	}
	rc = read_answer(fd, deadline, why, whylen);
cleanup:
	if (fd >= 0)
		close(fd);
	if (ai)
		freeaddrinfo(ai);
	return rc == 1;
}

int ktlsctl_wait_ready_main(int argc, char **argv)
{
	struct wr_opts o = {0};
	uint64_t start, deadline, try_by;
	unsigned tries = 0;
	char why[400] = "";
	int rc = parse_opts(&o, argc, argv);

	if (rc < 0) {
		ktlsctl_wait_ready_usage(stdout);
		return EX_OK;
	}
	if (rc != EX_OK)
		return rc;
	start = ks_mono_ms();
	deadline = start + o.timeout_ms;
	for (;;) {
		tries++;
		try_by = ks_mono_ms() + WR_PROBE_MAX_MS;
		if (probe(&o, try_by < deadline ? try_by : deadline, why, sizeof(why))) {
			printf("ready after %.1fs (%u tr%s): %s\n",
			       (double)(ks_mono_ms() - start) / 1000.0, tries,
			       tries == 1 ? "y" : "ies", why);
			return EX_OK;
		}
		if (!left_ms(deadline))
			break;
		int pause = left_ms(deadline);

		if ((uint32_t)pause > o.interval_ms)
			pause = (int)o.interval_ms;
		poll(NULL, 0, pause);
		if (!left_ms(deadline))
			break;
	}
	ktlsctl_log("wait-ready: not ready after %s (%u tr%s): %s", o.timeout, tries,
		    tries == 1 ? "y" : "ies", why);
	return EX_ANSWER;
}
