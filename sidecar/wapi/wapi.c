/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Workload API client's thread: connect, one FetchX509SVID stream,
 * reconnect with backoff (wapi.h). HTTP/2 is nghttp2's session API with
 * our own I/O: the socket is nonblocking, nghttp2 asks to write through
 * send_cb and is fed what we read with nghttp2_session_mem_recv, and
 * poll(2) waits for the socket or the stop.
 */
#include "wapi/wapi.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "common/log.h"
#include "wapi/grpc.h"
#include "wapi/svid.h"

struct ks_wapi {
	char path[KS_WAPI_PATH_MAX];
	const struct ks_tls_opts *tls;
	struct ks_identity_slot *slot;
	int stop_fd; /* eventfd: written once by ks_wapi_stop */
	pthread_t thread;
	unsigned seed;
};

/* One connection and its one stream. */
struct ks_wapi_conn {
	struct ks_wapi *w;
	int fd;
	nghttp2_session *h2;
	int32_t stream_id;
	bool closed;	 /* the stream has ended */
	uint32_t h2_err; /* its RST_STREAM code, 0 for a clean end */
	struct ks_grpc_dec dec;
	struct ks_grpc_status st;
	unsigned applied, rejected; /* responses on this connection */
	char why[400];		    /* why the connection ended, for the log */
};

int ks_wapi_addr_parse(const char *in, bool bare_ok, char path[KS_WAPI_PATH_MAX], char *err,
		       size_t errlen)
{
	const char *p;

	if (strncmp(in, "unix://", 7) == 0) {
		/* The authority must be empty: unix:///path (RFC 8089-style). */
		p = in + 7;
		if (*p != '/') {
			snprintf(err, errlen,
				 "'%s': a unix: address has no host; write unix:///path/to/socket",
				 in);
			return -EINVAL;
		}
	} else if (strncmp(in, "unix:", 5) == 0) {
		p = in + 5;
	} else if (bare_ok && in[0] == '/') {
		p = in;
	} else if (strncmp(in, "tcp:", 4) == 0) {
		snprintf(err, errlen,
			 "'%s': only a unix: Workload API endpoint is supported (the agent on "
			 "this node)",
			 in);
		return -EINVAL;
	} else {
		snprintf(err, errlen, "'%s': expected unix:///path/to/socket%s", in,
			 bare_ok ? " or an absolute path" : "");
		return -EINVAL;
	}
	/* SPIFFE_Workload_Endpoint.md §4: an absolute path, no query or
	 * fragment. */
	if (p[0] != '/' || strpbrk(p, "?#")) {
		snprintf(err, errlen, "'%s': the socket must be an absolute path, without ? or #",
			 in);
		return -EINVAL;
	}
	if (strlen(p) >= KS_WAPI_PATH_MAX) {
		snprintf(err, errlen, "'%s': a socket path is at most %d bytes", in,
			 KS_WAPI_PATH_MAX - 1);
		return -ENAMETOOLONG;
	}
	snprintf(path, KS_WAPI_PATH_MAX, "%s", p);
	return 0;
}

unsigned ks_wapi_backoff_ms(unsigned n, double r)
{
	unsigned d = KS_WAPI_BACKOFF_MAX_MS;

	if (n < 16 && (KS_WAPI_BACKOFF_MIN_MS << n) < KS_WAPI_BACKOFF_MAX_MS)
		d = KS_WAPI_BACKOFF_MIN_MS << n;
	/* Jitter: agents restart, and every sidecar on the node sees it at
	 * once; spreading the reconnects keeps them from arriving together. */
	return d / 2 + (unsigned)(r * (d - d / 2));
}

/* ---------------------------------------------------------- nghttp2 glue */

static ssize_t send_cb(nghttp2_session *h2, const uint8_t *data, size_t len, int flags, void *arg)
{
	struct ks_wapi_conn *c = arg;
	ssize_t n;

	(void)h2;
	(void)flags;
	n = send(c->fd, data, len, MSG_NOSIGNAL);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return NGHTTP2_ERR_WOULDBLOCK;
	snprintf(c->why, sizeof(c->why), "send: %s", strerror(errno));
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* The request's body: one empty X509SVIDRequest, framed. */
static ssize_t body_cb(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *arg)
{
	(void)h2;
	(void)sid;
	(void)src;
	(void)arg;
	if (len < KS_GRPC_PREFIX)
		return NGHTTP2_ERR_DEFERRED; /* never: frames hold 16 KiB */
	ks_grpc_prefix(buf, 0);
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	return KS_GRPC_PREFIX;
}

static int header_cb(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
		     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
	struct ks_wapi_conn *c = arg;

	(void)h2;
	(void)flags;
	if (frame->hd.stream_id == c->stream_id)
		ks_grpc_status_header(&c->st, (const char *)name, nlen, (const char *)value, vlen);
	return 0;
}

/* One complete X509SVIDResponse. */
static int on_message(void *arg, const uint8_t *msg, size_t len)
{
	struct ks_wapi_conn *c = arg;
	struct ks_wapi *w = c->w;
	struct ks_wapi_applied a = {0};
	enum ks_ident_reason reason = KS_IR_NONE;
	struct ks_log_field f;
	char err[512], clean[512], kept[80];
	int rc;

	rc = ks_wapi_apply(w->tls, w->slot, msg, len, &a, &reason, err, sizeof(err), kept,
			   sizeof(kept));
	ks_identity_slot_count(w->slot, KS_IDSRC_WORKLOAD_API, rc == 0);
	if (rc < 0) {
		c->rejected++;
		ks_error("event=workload_api_rejected reason=\"%s\" reason_code=%d kept_serial=%s",
			 ks_log_clean(clean, sizeof(clean), err), (int)reason, kept);
		return 0; /* the stream goes on: the next response may be good */
	}
	c->applied++;
	ks_info("event=workload_api_update id=%s serial=%s not_after=%s svids=%zu "
		"bundle_certs=%zu federated=%zu",
		ks_log_field(&f, a.id), a.serial, a.not_after, a.nsvids, a.nbundle, a.nfed);
	return 0;
}

static int data_cb(nghttp2_session *h2, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
		   void *arg)
{
	struct ks_wapi_conn *c = arg;
	char err[256];
	int rc;

	(void)h2;
	(void)flags;
	if (sid != c->stream_id)
		return 0;
	/* A response's messages before its headers said 200 and gRPC would be
	 * someone else's protocol. */
	if (c->st.http_status != 200 || !c->st.content_type_ok) {
		snprintf(c->why, sizeof(c->why),
			 "not a gRPC response (:status %d, content-type %s)", c->st.http_status,
			 c->st.content_type_ok ? "ok" : "not application/grpc");
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	rc = ks_grpc_dec_feed(&c->dec, data, len, on_message, c, err, sizeof(err));
	if (rc < 0) {
		snprintf(c->why, sizeof(c->why), "gRPC framing: %s", err);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static int close_cb(nghttp2_session *h2, int32_t sid, uint32_t code, void *arg)
{
	struct ks_wapi_conn *c = arg;

	(void)h2;
	if (sid == c->stream_id) {
		c->closed = true;
		c->h2_err = code;
	}
	return 0;
}

static int session_new(struct ks_wapi_conn *c)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
	int rc;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, data_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, close_cb);
	rc = nghttp2_session_client_new(&c->h2, cbs, c);
	nghttp2_session_callbacks_del(cbs);
	if (rc != 0)
		return -ENOMEM;
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1) != 0)
		return -ENOMEM;
	return 0;
}

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,                      \
		    NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                   \
	}

/* gRPC's request (PROTOCOL-HTTP2.md): POST to /Service/Method. */
static int submit_request(struct ks_wapi_conn *c)
{
	nghttp2_nv nva[] = {
	    NV(":method", "POST"),
	    NV(":scheme", "http"),
	    NV(":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
	    NV(":authority", "localhost"),
	    NV("content-type", "application/grpc"),
	    NV("te", "trailers"),
	    NV("user-agent", "ktls-sidecar"),
	    /* Servers of the SPIFFE Workload API refuse a call without
	     * it (SPIRE's agent: InvalidArgument), so that a request
	     * forged through some proxy on the node cannot reach it. */
	    NV("workload.spiffe.io", "true"),
	};
	nghttp2_data_provider body = {.read_callback = body_cb};
	int32_t sid =
	    nghttp2_submit_request(c->h2, NULL, nva, sizeof(nva) / sizeof(nva[0]), &body, c);

	if (sid < 0)
		return -ENOMEM;
	c->stream_id = sid;
	return 0;
}

/* --------------------------------------------------------- one connection */

static bool stopping(struct ks_wapi *w)
{
	struct pollfd p = {.fd = w->stop_fd, .events = POLLIN};

	return poll(&p, 1, 0) > 0;
}

static int connect_to(struct ks_wapi_conn *c)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", c->w->path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		snprintf(c->why, sizeof(c->why), "socket: %s", strerror(errno));
		return -errno;
	}
	/* A Unix stream connect completes at once or fails (EAGAIN: the
	 * agent's backlog is full, retried like any failure). */
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		snprintf(c->why, sizeof(c->why), "connect: %s", strerror(e));
		return -e;
	}
	return 0;
}

/*
 * Runs one connection until its stream ends, the agent goes away or we
 * stop. Returns with c->why set (empty when stopped).
 */
static void run_conn(struct ks_wapi_conn *c)
{
	struct ks_wapi *w = c->w;
	uint8_t buf[16384];

	if (connect_to(c) < 0)
		return;
	if (session_new(c) < 0 || submit_request(c) < 0) {
		snprintf(c->why, sizeof(c->why), "out of memory");
		return;
	}
	ks_info("event=workload_api_connected socket=%s", w->path);
	for (;;) {
		struct pollfd p[2] = {{.fd = c->fd, .events = 0},
				      {.fd = w->stop_fd, .events = POLLIN}};
		int rc = nghttp2_session_send(c->h2);

		if (rc != 0) {
			if (!c->why[0])
				snprintf(c->why, sizeof(c->why), "HTTP/2: %s",
					 nghttp2_strerror(rc));
			return;
		}
		if (c->closed)
			return;
		if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
			snprintf(c->why, sizeof(c->why), "the agent ended the HTTP/2 connection");
			return;
		}
		if (nghttp2_session_want_read(c->h2))
			p[0].events |= POLLIN;
		if (nghttp2_session_want_write(c->h2))
			p[0].events |= POLLOUT;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(c->why, sizeof(c->why), "poll: %s", strerror(errno));
			return;
		}
		if (p[1].revents) {
			c->why[0] = '\0';
			return;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

			if (n == 0) {
				snprintf(c->why, sizeof(c->why), "the agent closed the connection");
				return;
			}
			if (n < 0 && errno != EAGAIN && errno != EINTR) {
				snprintf(c->why, sizeof(c->why), "recv: %s", strerror(errno));
				return;
			}
			if (n > 0) {
				ssize_t m = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);

				if (m < 0) {
					if (!c->why[0])
						snprintf(c->why, sizeof(c->why), "HTTP/2: %s",
							 nghttp2_strerror((int)m));
					return;
				}
			}
		}
	}
}

/* Why a stream that ended cleanly ended: its status, or a framing fault. */
static void stream_end_reason(struct ks_wapi_conn *c)
{
	char clean[300];

	if (c->why[0])
		return;
	if (c->h2_err)
		snprintf(c->why, sizeof(c->why), "the stream was reset (HTTP/2 error %u: %s)",
			 c->h2_err, nghttp2_http2_strerror(c->h2_err));
	else if (c->st.http_status != 200)
		snprintf(c->why, sizeof(c->why), "HTTP :status %d, not a gRPC server",
			 c->st.http_status);
	else if (c->st.grpc_status < 0)
		snprintf(c->why, sizeof(c->why), "the stream ended without a grpc-status");
	else if (!ks_grpc_dec_idle(&c->dec))
		snprintf(c->why, sizeof(c->why), "the stream ended inside a message");
	else
		snprintf(c->why, sizeof(c->why), "grpc-status %d %s: %s", c->st.grpc_status,
			 ks_grpc_code_name(c->st.grpc_status),
			 c->st.grpc_message[0]
			     ? ks_log_clean(clean, sizeof(clean), c->st.grpc_message)
			     : "(no message)");
}

static void *run(void *arg)
{
	struct ks_wapi *w = arg;
	unsigned attempt = 0;

	while (!stopping(w)) {
		struct ks_wapi_conn c = {.w = w, .fd = -1};
		struct pollfd p = {.fd = w->stop_fd, .events = POLLIN};
		char clean[400];
		unsigned delay;

		ks_grpc_dec_init(&c.dec, KS_GRPC_MAX_MSG);
		ks_grpc_status_init(&c.st);
		run_conn(&c);
		if (c.closed)
			stream_end_reason(&c);
		nghttp2_session_del(c.h2);
		if (c.fd >= 0)
			close(c.fd);
		ks_grpc_dec_fini(&c.dec);
		if (!c.why[0])
			break; /* stopped */
		/* A connection that delivered an identity was a working one:
		 * the next failure starts the backoff again. */
		if (c.applied)
			attempt = 0;
		delay = ks_wapi_backoff_ms(attempt, rand_r(&w->seed) / ((double)RAND_MAX + 1));
		if (attempt < 31)
			attempt++;
		ks_warn("event=workload_api_disconnected socket=%s reason=\"%s\" applied=%u "
			"rejected=%u retry_ms=%u",
			w->path, ks_log_clean(clean, sizeof(clean), c.why), c.applied, c.rejected,
			delay);
		if (poll(&p, 1, (int)delay) > 0)
			break;
	}
	return NULL;
}

int ks_wapi_start(const char *path, const struct ks_tls_opts *tls, struct ks_identity_slot *slot,
		  struct ks_wapi **out, char *err, size_t errlen)
{
	struct ks_wapi *w = calloc(1, sizeof(*w));
	struct timespec ts;
	int rc;

	*out = NULL;
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(w->path, sizeof(w->path), "%s", path);
	w->tls = tls;
	w->slot = slot;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	w->seed = (unsigned)ts.tv_nsec ^ (unsigned)getpid();
	w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->stop_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		free(w);
		return rc;
	}
	rc = -pthread_create(&w->thread, NULL, run, w);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start the Workload API thread: %s", strerror(-rc));
		close(w->stop_fd);
		free(w);
		return rc;
	}
	pthread_setname_np(w->thread, "ks-wapi");
	*out = w;
	return 0;
}

void ks_wapi_stop(struct ks_wapi *w)
{
	uint64_t one = 1;

	if (!w)
		return;
	if (write(w->stop_fd, &one, sizeof(one)) < 0)
		ks_warn("event=workload_api_stop_failed reason=\"%s\"", strerror(errno));
	pthread_join(w->thread, NULL);
	close(w->stop_fd);
	free(w);
}
