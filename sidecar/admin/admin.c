/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admin listener and its clients (admin.h has the endpoints and the
 * threading). One request per connection: the answer carries
 * "Connection: close", then we half-close and drop what the client still
 * sends until it closes or KS_ADMIN_LINGER_MS pass, because closing a TCP
 * socket with unread input sends a reset that can destroy the answer in
 * flight (RFC 9112 §9.6).
 */
#include "admin/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/http.h"
#include "common/log.h"
#include "common/net.h"
#include "common/ratelimit.h"
#include "dataplane/loop/loop.h"
#include "dataplane/worker.h"
#include "tls/identity.h"

#define KS_ADMIN_LINGER_MS 1000
/* A body we accept (and drop) at most this long: then 413. */
#define KS_ADMIN_MAX_BODY 1024
/* /metrics grows with the workers' count of nothing: this holds it whole. */
#define KS_ADMIN_METRICS_MAX (1u << 20)

struct ks_admin_client {
	struct ks_watch w;
	struct ks_admin *a;
	struct ks_admin_client *prev, *next;
	int fd;
	bool loopback;
	char buf[KS_HTTP_MAX_HEAD + KS_ADMIN_MAX_BODY];
	size_t len;
	char *out;
	size_t out_len, out_off;
	uint64_t deadline_ms; /* the request must arrive and its answer leave by then */
	bool lingering;	      /* answered and half-closed: input is dropped */
};

struct ks_admin {
	struct ks_admin_src src;
	struct ks_addr addr;
	char addr_str[KS_ADDRSTRLEN];
	int lfd;
	struct ks_loop *loop; /* the control thread's, from attach to detach */
	struct ks_watch lw;
	bool attached;
	struct ks_admin_client *clients;
	unsigned nclients;
	uint64_t accept_resume_ms; /* accept(2) out of descriptors: rest until then */
	struct ks_ratelimit refuse_rl;
};

static void client_free(struct ks_admin_client *cl)
{
	struct ks_admin *a = cl->a;

	ks_loop_del(a->loop, &cl->w);
	close(cl->fd);
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		a->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	a->nclients--;
	free(cl->out);
	free(cl);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(a6))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127;
	}
	return false;
}

/* Sets the answer: status line, headers and body (copied). 0 or -ENOMEM. */
static int respond(struct ks_admin_client *cl, int status, const char *ctype, const char *body,
		   size_t blen, bool head_only, const char *extra)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
			 status, ks_http_reason(status), ctype, blen, extra ? extra : "");

	if (n < 0 || (size_t)n >= sizeof(hdr))
		return -ENOMEM;
	if (head_only)
		blen = 0;
	cl->out = malloc((size_t)n + blen);
	if (!cl->out)
		return -ENOMEM;
	memcpy(cl->out, hdr, (size_t)n);
	if (blen)
		memcpy(cl->out + n, body, blen);
	cl->out_len = (size_t)n + blen;
	cl->out_off = 0;
	return 0;
}

static int respond_text(struct ks_admin_client *cl, int status, const char *text, bool head_only)
{
	return respond(cl, status, "text/plain; charset=utf-8", text, strlen(text), head_only,
		       NULL);
}

static int serve_metrics(struct ks_admin_client *cl, bool head_only)
{
	struct ks_sbuf b = {0};
	int rc = -ENOSPC;

	/* Start at 64 KiB, grow if the families ever outgrow it. */
	for (size_t cap = 64 * 1024; cap <= KS_ADMIN_METRICS_MAX && rc == -ENOSPC; cap *= 2) {
		free(b.p);
		b = (struct ks_sbuf){.p = malloc(cap), .cap = cap};
		if (!b.p)
			return -ENOMEM;
		rc = ks_metrics_render(&cl->a->src, &b);
	}
	if (rc == 0)
		rc = respond(cl, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len,
			     head_only, NULL);
	else
		rc = respond_text(cl, 500, "metrics do not fit\n", head_only);
	free(b.p);
	return rc;
}

static int serve_drain(struct ks_admin_client *cl, const char *path)
{
	int rc;

	/* Only the pod's own processes (Linkerd's /shutdown rule): anyone who
	 * can reach the probe port must not be able to stop the sidecar. */
	if (!cl->loopback) {
		ks_warn("event=admin_refused path=%s reason=\"not from a loopback address\"", path);
		return respond_text(cl, 403, "only from a loopback address\n", false);
	}
	rc = cl->a->src.drain ? cl->a->src.drain(cl->a->src.drain_arg) : -ENOSYS;
	ks_info("event=admin_drain path=%s result=%s", path,
		rc < 0 ? "failed" : (rc == 1 ? "already_draining" : "draining"));
	if (rc < 0)
		return respond_text(cl, 500, "cannot start the drain\n", false);
	return respond_text(cl, 202,
			    rc == 1
				? "already draining\n"
				: "draining: the sidecar exits 0 when its connections are done\n",
			    false);
}

/* The answer to a complete request. 0 or -ENOMEM. */
static int route(struct ks_admin_client *cl, const struct ks_http_req *req)
{
	const struct ks_admin_src *src = &cl->a->src;
	bool get = req->method == KS_HTTP_GET || req->method == KS_HTTP_HEAD;
	bool head = req->method == KS_HTTP_HEAD;
	bool drain = strcmp(req->path, "/drain") == 0 || strcmp(req->path, "/quitquitquit") == 0;
	char why[256];
	const char *nr;

	if (drain)
		return req->method == KS_HTTP_POST
			   ? serve_drain(cl, req->path)
			   : respond(cl, 405, "text/plain; charset=utf-8", "use POST\n", 9, head,
				     "Allow: POST\r\n");
	if (strcmp(req->path, "/metrics") != 0 && strcmp(req->path, "/ready") != 0 &&
	    strcmp(req->path, "/live") != 0 && strcmp(req->path, "/") != 0)
		return respond_text(cl, 404,
				    "not found: /metrics /ready /live (GET), /drain /quitquitquit "
				    "(POST)\n",
				    head);
	if (!get)
		return respond(cl, 405, "text/plain; charset=utf-8", "use GET\n", 8, false,
			       "Allow: GET, HEAD\r\n");
	if (strcmp(req->path, "/metrics") == 0)
		return serve_metrics(cl, head);
	if (strcmp(req->path, "/ready") == 0) {
		nr = ks_admin_not_ready(src);
		if (!nr)
			return respond_text(cl, 200, "ready\n", head);
		snprintf(why, sizeof(why), "not ready: %s\n", nr);
		return respond_text(cl, 503, why, head);
	}
	if (strcmp(req->path, "/live") == 0) {
		if (ks_admin_not_live(src, ks_mono_ms(), why, sizeof(why) - 1) == 0)
			return respond_text(cl, 200, "live\n", head);
		strcat(why, "\n");
		return respond_text(cl, 503, why, head);
	}
	return respond_text(cl, 200,
			    "ktls-sidecar admin: GET /metrics /ready /live; POST /drain "
			    "/quitquitquit (loopback only)\n",
			    head);
}

static void client_write(struct ks_admin_client *cl)
{
	int rc = ks_send_pending(cl->fd, cl->out, cl->out_len, &cl->out_off);

	if (rc == -EAGAIN) {
		if (ks_loop_want(cl->a->loop, &cl->w, KS_EV_OUT) < 0)
			client_free(cl);
		return;
	}
	if (rc < 0) {
		client_free(cl);
		return;
	}
	free(cl->out);
	cl->out = NULL;
	shutdown(cl->fd, SHUT_WR);
	cl->lingering = true;
	cl->deadline_ms = ks_mono_ms() + KS_ADMIN_LINGER_MS;
	if (ks_loop_want(cl->a->loop, &cl->w, KS_EV_IN) < 0)
		client_free(cl);
}

/* A refusal that needs no request: the status line, then close. */
static void answer_error(struct ks_admin_client *cl, int status)
{
	char body[64];

	snprintf(body, sizeof(body), "%d %s\n", status, ks_http_reason(status));
	if (respond_text(cl, status, body, false) < 0) {
		client_free(cl);
		return;
	}
	client_write(cl);
}

static void client_read(struct ks_admin_client *cl)
{
	struct ks_http_req req;
	ssize_t n;
	int rc;

	for (;;) {
		if (cl->lingering) {
			char sink[1024];

			n = recv(cl->fd, sink, sizeof(sink), MSG_DONTWAIT);
		} else {
			if (cl->len == sizeof(cl->buf)) {
				answer_error(cl, 431);
				return;
			}
			n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len,
				 MSG_DONTWAIT);
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n <= 0) {
			client_free(cl);
			return;
		}
		if (!cl->lingering)
			cl->len += (size_t)n;
	}
	if (cl->lingering)
		return;
	rc = ks_http_parse(cl->buf, cl->len, KS_ADMIN_MAX_BODY, &req);
	if (rc < 0) {
		answer_error(cl, -rc);
		return;
	}
	if (rc == 0 || cl->len < req.head_len + req.content_length)
		return; /* more to come, within deadline_ms */
	if (route(cl, &req) < 0) {
		client_free(cl);
		return;
	}
	client_write(cl);
}

static void on_client(struct ks_watch *w, uint32_t ev)
{
	struct ks_admin_client *cl = w->owner;

	if (cl->out && (ev & (KS_EV_OUT | KS_EV_ERR | KS_EV_HUP)))
		client_write(cl);
	else if (!cl->out)
		client_read(cl);
}

/* Over KS_ADMIN_MAX_CLIENTS: a fixed 503 into an empty socket buffer, then close. */
static void refuse_busy(struct ks_admin *a, int fd)
{
	static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
				  "Connection: close\r\n\r\n";
	uint64_t suppressed;

	(void)!send(fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
	if (ks_ratelimit_ok(&a->refuse_rl, ks_mono_ms(), 1000, &suppressed))
		ks_warn("event=admin_refused reason=too_many_clients max=%d suppressed=%llu",
			KS_ADMIN_MAX_CLIENTS, (unsigned long long)suppressed);
}

static void on_accept(struct ks_watch *w, uint32_t ev)
{
	struct ks_admin *a = w->owner;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ks_admin_client *cl;
	int fd;

	(void)ev;
	while ((fd = accept4(a->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
	       0) {
		sl = sizeof(ss);
		if (a->nclients >= KS_ADMIN_MAX_CLIENTS) {
			refuse_busy(a, fd);
			continue;
		}
		cl = calloc(1, sizeof(*cl));
		if (!cl || ks_loop_add(a->loop, &cl->w, fd, on_client, cl) < 0 ||
		    ks_loop_want(a->loop, &cl->w, KS_EV_IN) < 0) {
			if (cl && cl->w.slot)
				ks_loop_del(a->loop, &cl->w);
			free(cl);
			close(fd);
			continue;
		}
		cl->a = a;
		cl->fd = fd;
		cl->loopback = is_loopback(&ss);
		cl->deadline_ms = ks_mono_ms() + KS_ADMIN_REQ_MS;
		cl->next = a->clients;
		if (a->clients)
			a->clients->prev = cl;
		a->clients = cl;
		a->nclients++;
	}
	if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
		a->accept_resume_ms = ks_mono_ms() + 250;
		(void)ks_loop_want(a->loop, &a->lw, 0);
	}
}

int ks_admin_open(const char *listen, const struct ks_admin_src *src, struct ks_admin **out,
		  char *err, size_t errlen)
{
	struct ks_admin *a;
	char aerr[256];
	int rc;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->src = *src;
	a->lfd = -1;
	rc = ks_addr_parse(listen, &a->addr, aerr, sizeof(aerr));
	if (rc < 0) {
		snprintf(err, errlen, "--admin: %s", aerr);
		goto fail;
	}
	rc = ks_listen(&a->addr, 64, false);
	if (rc < 0) {
		snprintf(err, errlen, "--admin %s: cannot listen: %s%s", listen, strerror(-rc),
			 rc == -EADDRINUSE ? " (another process holds the port: give --admin "
					     "another address, or none)"
					   : "");
		goto fail;
	}
	a->lfd = rc;
	ks_addr_str((struct sockaddr *)&a->addr.ss, a->addr_str, sizeof(a->addr_str));
	*out = a;
	return 0;
fail:
	ks_admin_close(a);
	return rc;
}

const char *ks_admin_addr(const struct ks_admin *a)
{
	return a->addr_str;
}

void ks_admin_set_workers(struct ks_admin *a, const struct ks_worker *workers, unsigned n)
{
	a->src.workers = workers;
	a->src.nworkers = n;
}

int ks_admin_attach(void *arg, struct ks_loop *loop)
{
	struct ks_admin *a = arg;
	int rc;

	a->loop = loop;
	if ((rc = ks_loop_add(loop, &a->lw, a->lfd, on_accept, a)) < 0)
		return rc;
	a->attached = true;
	return ks_loop_want(loop, &a->lw, KS_EV_IN);
}

int ks_admin_tick(void *arg, uint64_t now)
{
	struct ks_admin *a = arg;
	uint64_t next = now + 1000;

	if (a->accept_resume_ms && now >= a->accept_resume_ms) {
		a->accept_resume_ms = 0;
		(void)ks_loop_want(a->loop, &a->lw, KS_EV_IN);
	}
	/* Slow clients (slowloris) get nothing more than their deadline. */
	for (struct ks_admin_client *cl = a->clients, *nx; cl; cl = nx) {
		nx = cl->next;
		if (now >= cl->deadline_ms)
			client_free(cl);
		else if (cl->deadline_ms < next)
			next = cl->deadline_ms;
	}
	return (int)(next - now);
}

void ks_admin_detach(void *arg, struct ks_loop *loop)
{
	struct ks_admin *a = arg;

	(void)loop;
	while (a->clients)
		client_free(a->clients);
	if (a->attached)
		ks_loop_del(a->loop, &a->lw);
	a->attached = false;
}

void ks_admin_close(struct ks_admin *a)
{
	if (!a)
		return;
	if (a->lfd >= 0)
		close(a->lfd);
	free(a);
}

const char *ks_admin_not_ready(const struct ks_admin_src *src)
{
	struct ks_shared *sh = src->sh;
	struct ks_identity *id;
	const char *why = NULL;

	if (atomic_load_explicit(&sh->drain, memory_order_acquire))
		return "draining";
	if (!atomic_load_explicit(&sh->started, memory_order_acquire))
		return src->redirect_check ? "starting (listeners, workers, redirect check)"
					   : "starting (listeners, workers)";
	if (atomic_load_explicit(&sh->running, memory_order_acquire) < src->nworkers)
		return "a worker has stopped";
	id = ks_identity_slot_get(&sh->ident, NULL);
	if (!id->leaf)
		why = "no identity yet (waiting for the control plane's SetIdentity or the "
		      "Workload API)";
	else if ((int64_t)time(NULL) >= id->not_after_unix)
		why = "the identity's certificate has expired";
	ks_identity_put(id);
	return why;
}

int ks_admin_not_live(const struct ks_admin_src *src, uint64_t now_ms, char *buf, size_t len)
{
	/* Workers leave one by one as a drain ends: a drain is not a hang,
	 * and a liveness failure now would have kubelet restart us mid-drain. */
	if (atomic_load_explicit(&src->sh->drain, memory_order_acquire))
		return 0;
	for (unsigned i = 0; i < src->nworkers; i++) {
		uint64_t hb = ks_stat_get(&src->workers[i].stats.heartbeat_ms);

		if (hb && now_ms > hb && now_ms - hb > src->stall_ms) {
			snprintf(buf, len, "worker %u: its loop has not turned for %llu ms", i,
				 (unsigned long long)(now_ms - hb));
			return -1;
		}
	}
	return 0;
}
