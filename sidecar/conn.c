/* SPDX-License-Identifier: Apache-2.0 */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "identity.h"
#include "log.h"
#include "offload.h"
#include "worker.h"

/* Work one connection may do per wake-up before yielding to the others. */
#define KS_PUMP_BUDGET 64

static const char *const ks_state_names[] = {"sniff",	 "connecting",	"handshake",
					     "upstream", "established", "forwarding"};

const char *ks_rl_name(enum ks_record_layer rl)
{
	static const char *const names[KS_RL__COUNT] = {"userspace", "kernel", "plaintext"};

	return (unsigned)rl < KS_RL__COUNT ? names[rl] : "?";
}

static const char *dir_name(const struct ks_conn *c)
{
	return c->route->dir == KS_INBOUND ? "inbound" : "outbound";
}

static void on_tls(struct ks_watch *w, uint32_t ev);
static void on_plain(struct ks_watch *w, uint32_t ev);
static void pump(struct ks_conn *c, const struct ks_watch *woke);
static void pump_user(struct ks_conn *c, const struct ks_watch *woke);
static void connect_app(struct ks_conn *c);
static void start_handshake(struct ks_conn *c);

static void release_bufs(struct ks_conn *c)
{
	if (c->p2t)
		ks_buf_put(c->wk, c->p2t);
	if (c->t2p)
		ks_buf_put(c->wk, c->t2p);
	c->p2t = c->t2p = NULL;
}

static void conn_free(struct ks_conn *c)
{
	struct ks_worker *wk = c->wk;

	if (c->st == KS_ST_FORWARDING) {
		struct ks_path_stats *ps = &wk->path[c->rl];

		atomic_fetch_add_explicit(&ps->conns, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&ps->bytes, c->bytes_to_peer + c->bytes_from_peer,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&ps->ubytes, c->ubytes, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&wk->rejected, 1, memory_order_relaxed);
	}
	ks_list_del(&c->link);
	ks_loop_del(&wk->loop, &c->tls_w);
	ks_loop_del(&wk->loop, &c->plain_w);
	if (c->tls_fd >= 0)
		close(c->tls_fd);
	if (c->plain_fd >= 0)
		close(c->plain_fd);
	SSL_free(c->ssl);
	for (int i = 0; i < 2; i++) {
		if (c->p2t_pipe[i] >= 0)
			close(c->p2t_pipe[i]);
		if (c->t2p_pipe[i] >= 0)
			close(c->t2p_pipe[i]);
	}
	OPENSSL_cleanse(&c->secrets, sizeof(c->secrets));
	release_bufs(c);
	ks_identity_put(c->ident);
	free(c->peer_id);
	atomic_fetch_sub_explicit(&wk->sh->nconns, 1, memory_order_relaxed);
	free(c);
}

static void log_reject(struct ks_conn *c, const char *detail)
{
	char clean[256];

	ks_warn("event=handshake_rejected conn=%llu dir=%s listen=%s peer=%s peer_id=%s "
		"reason=%s detail=\"%s\"",
		(unsigned long long)c->id, dir_name(c), c->route->listen_str, c->peer_str,
		c->peer_id ? c->peer_id : "-", ks_reject_name(c->reject),
		ks_log_clean(clean, sizeof(clean), detail));
}

/* Refuses a connection that never reached FORWARDING. */
static void reject(struct ks_conn *c, enum ks_reject why, const char *detail)
{
	c->reject = why;
	log_reject(c, detail);
	conn_free(c);
}

static void log_close(struct ks_conn *c, const char *reason, const char *detail)
{
	char clean[256];

	ks_log(strcmp(reason, "done") == 0 ? KS_LOG_INFO : KS_LOG_WARN,
	       "event=conn_close conn=%llu dir=%s peer=%s peer_id=%s reason=%s detail=\"%s\" "
	       "bytes_to_peer=%llu bytes_from_peer=%llu record_layer=%s userspace_bytes=%llu "
	       "key_updates=%u duration_ms=%llu",
	       (unsigned long long)c->id, dir_name(c), c->peer_str, c->peer_id ? c->peer_id : "-",
	       reason, ks_log_clean(clean, sizeof(clean), detail ? detail : ""),
	       (unsigned long long)c->bytes_to_peer, (unsigned long long)c->bytes_from_peer,
	       ks_rl_name(c->rl), (unsigned long long)c->ubytes, c->key_updates,
	       (unsigned long long)(c->wk->now_ms - c->start_ms));
}

void ks_conn_destroy(struct ks_conn *c, const char *reason)
{
	if (c->st == KS_ST_FORWARDING)
		log_close(c, reason, NULL);
	conn_free(c);
}

/*
 * Aborts a forwarding connection. rst_fd (if >= 0) is the side that did not
 * fail: it gets a RST so the failure propagates instead of looking like a
 * clean end of stream.
 */
void ks_conn_abort(struct ks_conn *c, int rst_fd, const char *reason, const char *detail)
{
	if (rst_fd >= 0)
		ks_set_rst_on_close(rst_fd);
	log_close(c, reason, detail);
	conn_free(c);
}

void ks_conn_touch(struct ks_conn *c)
{
	uint32_t idle = c->wk->sh->cfg->idle_timeout_ms;
	uint64_t now = c->wk->now_ms;

	/* Re-queue at most once a second: the LRU order only needs that precision. */
	if (idle == 0 || c->deadline_ms >= now + idle - (idle > 1000 ? 1000 : 0))
		return;
	c->deadline_ms = now + idle;
	ks_list_del(&c->link);
	ks_list_add_tail(&c->wk->idle_list, &c->link);
}

static void established(struct ks_conn *c)
{
	struct ks_worker *wk = c->wk;
	uint32_t idle = wk->sh->cfg->idle_timeout_ms;
	int group;

	char why[256];

	c->st = KS_ST_ESTABLISHED;
	if (c->rl == KS_RL_PLAINTEXT) {
		if (pipe2(c->p2t_pipe, O_NONBLOCK | O_CLOEXEC) < 0 ||
		    pipe2(c->t2p_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
			reject(c, KS_REJ_UPSTREAM_FAILED, strerror(errno));
			return;
		}
		ks_warn("event=conn_open conn=%llu dir=inbound listen=%s peer=%s peer_id=- tls=- "
			"record_layer=plaintext record_layer_reason=\"permissive: the client did "
			"not start with TLS\"",
			(unsigned long long)c->id, c->route->listen_str, c->peer_str);
		goto forward;
	}
	if (ks_offload_handoff(c, why, sizeof(why)) < 0) {
		reject(c, KS_REJ_KTLS_UNAVAILABLE, why);
		return;
	}
	group = SSL_get_negotiated_group(c->ssl);
	ks_info("event=conn_open conn=%llu dir=%s listen=%s peer=%s peer_id=%s tls=%s "
		"cipher=%s group=%s record_layer=%s record_layer_reason=\"%s\" identity_serial=%s",
		(unsigned long long)c->id, dir_name(c), c->route->listen_str, c->peer_str,
		c->peer_id ? c->peer_id : "-", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
		group ? SSL_group_to_name(c->ssl, group) : "-", ks_rl_name(c->rl), why,
		c->ident->serial);
	if (c->rl == KS_RL_KERNEL) {
		/* The kernel owns the record layer: the session is dead weight. */
		SSL_free(c->ssl);
		c->ssl = NULL;
	} else {
		/* Record boundaries no longer matter: read whole socket buffers,
		 * not a header and then a body per record (half the reads). */
		SSL_set_read_ahead(c->ssl, 1);
		/* Counting records was for the hand-off only. */
		SSL_set_msg_callback(c->ssl, NULL);
	}
forward:
	ks_list_del(&c->link);
	c->deadline_ms = idle ? wk->now_ms + idle : UINT64_MAX;
	ks_list_add_tail(&wk->idle_list, &c->link);
	c->st = KS_ST_FORWARDING;
	pump(c, NULL);
}

static void handshake_done(struct ks_conn *c)
{
	if (c->route->dir == KS_OUTBOUND) {
		established(c);
		return;
	}
	/* Inbound: only an authenticated peer makes us connect to the app. */
	connect_app(c);
}

static void drive_handshake(struct ks_conn *c)
{
	char detail[256];
	uint32_t want = 0;
	int rc = ks_handshake_step(c, &want);

	if (rc == 1) {
		handshake_done(c);
		return;
	}
	if (rc == 0) {
		if (ks_loop_want(&c->wk->loop, &c->tls_w, want) < 0)
			reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
		return;
	}
	ks_handshake_classify(c, c->ssl_err, detail, sizeof(detail));
	log_reject(c, detail);
	conn_free(c);
}

/* Inbound: connect to the app (after authentication, or for plaintext). */
static void connect_app(struct ks_conn *c)
{
	int fd = ks_connect_start(&c->target);

	if (fd < 0) {
		reject(c, KS_REJ_UPSTREAM_FAILED, strerror(-fd));
		return;
	}
	c->plain_fd = fd;
	c->st = KS_ST_UPSTREAM;
	if (ks_loop_add(&c->wk->loop, &c->plain_w, fd, on_plain, c) < 0 ||
	    ks_loop_want(&c->wk->loop, &c->plain_w, KS_EV_OUT) < 0 ||
	    ks_loop_want(&c->wk->loop, &c->tls_w, 0) < 0)
		reject(c, KS_REJ_UPSTREAM_FAILED, "event loop registration failed");
}

/*
 * Permissive inbound (like Istio's PeerAuthentication PERMISSIVE): a TLS
 * connection starts with a handshake record, content type 22 (RFC 8446
 * §5.1); anything else is plaintext from a client outside the mesh, passed
 * to the app as is and counted apart. One peeked byte decides.
 */
static void sniff(struct ks_conn *c)
{
	uint8_t b;
	ssize_t n = recv(c->tls_fd, &b, 1, MSG_PEEK);

	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		if (ks_loop_want(&c->wk->loop, &c->tls_w, KS_EV_IN) < 0)
			reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
		return;
	}
	if (n <= 0) {
		reject(c, KS_REJ_PEER_CLOSED,
		       n == 0 ? "closed before sending anything" : strerror(errno));
		return;
	}
	if (b == 22) {
		start_handshake(c);
		return;
	}
	c->rl = KS_RL_PLAINTEXT;
	connect_app(c);
}

static void start_handshake(struct ks_conn *c)
{
	if (ks_handshake_start(c) < 0) {
		reject(c, KS_REJ_PROTOCOL_ERROR, "cannot create TLS session");
		return;
	}
	c->st = KS_ST_HANDSHAKE;
	drive_handshake(c);
}

void ks_conn_accept(struct ks_worker *wk, const struct ks_route *route, int fd,
		    const struct sockaddr *sa)
{
	struct ks_conn *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		ks_error("event=accept_failed listen=%s detail=\"out of memory\"",
			 route->listen_str);
		close(fd);
		atomic_fetch_sub_explicit(&wk->sh->nconns, 1, memory_order_relaxed);
		return;
	}
	c->wk = wk;
	c->route = route;
	c->id = atomic_fetch_add_explicit(&wk->sh->next_conn_id, 1, memory_order_relaxed) + 1;
	c->start_ms = wk->now_ms;
	c->deadline_ms = wk->now_ms + wk->sh->cfg->handshake_timeout_ms;
	c->tls_fd = c->plain_fd = -1;
	c->p2t_pipe[0] = c->p2t_pipe[1] = c->t2p_pipe[0] = c->t2p_pipe[1] = -1;
	c->verify_err = X509_V_OK;
	c->ident = ks_worker_identity(wk);
	ks_list_add_tail(&wk->hs_list, &c->link);
	if (!c->ident->server_ctx) {
		c->tls_fd = fd; /* closed by reject */
		ks_addr_str(sa, c->peer_str, sizeof(c->peer_str));
		reject(c, KS_REJ_NO_IDENTITY,
		       "no identity yet: waiting for the control plane (SetIdentity)");
		return;
	}
	ks_tune_socket(fd);

	if (route->dir == KS_INBOUND) {
		c->tls_fd = fd;
		c->target = route->target;
		ks_addr_str(sa, c->peer_str, sizeof(c->peer_str));
		if (ks_loop_add(&wk->loop, &c->tls_w, fd, on_tls, c) < 0) {
			reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
			return;
		}
		if (wk->sh->cfg->inbound_permissive) {
			c->st = KS_ST_SNIFF;
			sniff(c);
			return;
		}
		start_handshake(c);
		return;
	}

	c->plain_fd = fd;
	if (ks_loop_add(&wk->loop, &c->plain_w, fd, on_plain, c) < 0) {
		reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
		return;
	}
	if (route->transparent) {
		rc = ks_original_dst(fd, &c->target);
		if (rc < 0) {
			snprintf(c->peer_str, sizeof(c->peer_str), "unknown");
			reject(c, KS_REJ_UPSTREAM_FAILED,
			       "no original destination (SO_ORIGINAL_DST): not redirected?");
			return;
		}
		/* A connection addressed to the listener itself would loop forever. */
		if (ks_addr_equal(&c->target, &route->listen)) {
			ks_addr_str((struct sockaddr *)&c->target.ss, c->peer_str,
				    sizeof(c->peer_str));
			reject(c, KS_REJ_UPSTREAM_FAILED,
			       "original destination is this listener (redirect loop)");
			return;
		}
	} else {
		c->target = route->target;
	}
	ks_addr_str((struct sockaddr *)&c->target.ss, c->peer_str, sizeof(c->peer_str));
	rc = ks_connect_start(&c->target);
	if (rc < 0) {
		reject(c, KS_REJ_UPSTREAM_FAILED, strerror(-rc));
		return;
	}
	c->tls_fd = rc;
	c->st = KS_ST_CONNECTING;
	if (ks_loop_add(&wk->loop, &c->tls_w, c->tls_fd, on_tls, c) < 0 ||
	    ks_loop_want(&wk->loop, &c->tls_w, KS_EV_OUT) < 0)
		reject(c, KS_REJ_PROTOCOL_ERROR, "event loop registration failed");
}

void ks_conn_timeout(struct ks_conn *c)
{
	char detail[64];

	if (c->st == KS_ST_FORWARDING) {
		/* Best effort close_notify; the peer may be gone. */
		if (!c->tls_wr_shut && !c->tls_unclean && c->ssl)
			(void)SSL_shutdown(c->ssl);
		else if (!c->tls_wr_shut && c->rl == KS_RL_KERNEL)
			(void)ks_ktls_send_alert(c->tls_fd, 1, 0);
		ERR_clear_error();
		log_close(c, "idle_timeout", NULL);
		conn_free(c);
		return;
	}
	snprintf(detail, sizeof(detail), "no progress in state %s", ks_state_names[c->st]);
	reject(c, KS_REJ_HANDSHAKE_TIMEOUT, detail);
}

static void on_tls(struct ks_watch *w, uint32_t ev)
{
	struct ks_conn *c = w->owner;
	int rc;

	(void)ev;
	switch (c->st) {
	case KS_ST_SNIFF:
		sniff(c);
		return;
	case KS_ST_CONNECTING:
		rc = ks_connect_result(c->tls_fd);
		if (rc < 0) {
			reject(c, KS_REJ_UPSTREAM_FAILED, strerror(-rc));
			return;
		}
		start_handshake(c);
		return;
	case KS_ST_HANDSHAKE:
		drive_handshake(c);
		return;
	case KS_ST_FORWARDING:
		pump(c, w);
		return;
	default:
		return;
	}
}

static void on_plain(struct ks_watch *w, uint32_t ev)
{
	struct ks_conn *c = w->owner;
	int rc;

	(void)ev;
	switch (c->st) {
	case KS_ST_UPSTREAM:
		rc = ks_connect_result(c->plain_fd);
		if (rc < 0) {
			/* Tell the peer politely: the TLS session itself was fine. */
			if (c->ssl)
				(void)SSL_shutdown(c->ssl);
			ERR_clear_error();
			reject(c, KS_REJ_UPSTREAM_FAILED, strerror(-rc));
			return;
		}
		established(c);
		return;
	case KS_ST_FORWARDING:
		pump(c, w);
		return;
	default:
		return;
	}
}

static bool buf_empty(const struct ks_buf *b)
{
	return !b || b->off == b->len;
}

/* Returns 1 on progress, 0 when blocked (want bits set), -1 when c was freed. */
static int tls_failed(struct ks_conn *c, int ret, uint32_t *tls_want)
{
	char detail[256];
	int err = SSL_get_error(c->ssl, ret);

	if (err == SSL_ERROR_WANT_READ) {
		*tls_want |= KS_EV_IN;
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		*tls_want |= KS_EV_OUT;
		return 0;
	}
	if (err == SSL_ERROR_ZERO_RETURN) {
		c->tls_eof = 1; /* close_notify: RFC 8446 §6.1 */
		return 1;
	}
	ks_handshake_classify(c, err, detail, sizeof(detail));
	if (c->reject == KS_REJ_PEER_CLOSED && !errno) {
		/* FIN without close_notify: deliver what we have, then end. The
		 * SSL object is unusable for writing after this in OpenSSL 3. */
		ks_conn_unclean_eof(c);
		return 1;
	}
	ks_conn_abort(c, c->plain_fd, c->reject == KS_REJ_PEER_CLOSED ? "peer_reset" : "tls_error",
		      detail);
	return -1;
}

static void plain_failed(struct ks_conn *c, int err)
{
	ks_conn_abort(c, c->tls_fd, err == ECONNRESET || err == EPIPE ? "app_reset" : "app_error",
		      strerror(err));
}

int ks_conn_set_wants(struct ks_conn *c, uint32_t tls_want, uint32_t plain_want)
{
	if (ks_loop_want(&c->wk->loop, &c->tls_w, tls_want) < 0 ||
	    ks_loop_want(&c->wk->loop, &c->plain_w, plain_want) < 0) {
		ks_conn_abort(c, -1, "internal_error", "event loop registration failed");
		return -1;
	}
	return 0;
}

void ks_conn_unclean_eof(struct ks_conn *c)
{
	c->tls_eof = 1;
	c->tls_unclean = 1;
	ks_warn("event=tls_unclean_eof conn=%llu peer=%s detail=\"peer closed without "
		"close_notify; possible truncation\"",
		(unsigned long long)c->id, c->peer_str);
}

bool ks_conn_finish_step(struct ks_conn *c, bool t2p_flushed, bool *progress)
{
	/* close_notify (or unclean EOF) -> FIN to the app, once flushed */
	if (c->tls_eof && t2p_flushed && !c->plain_wr_shut) {
		shutdown(c->plain_fd, SHUT_WR);
		c->plain_wr_shut = 1;
		*progress = true;
	}
	if (c->plain_wr_shut && (c->tls_wr_shut || c->tls_unclean)) {
		ks_conn_done(c);
		return true;
	}
	return false;
}

void ks_conn_done(struct ks_conn *c)
{
	/* A FIN without close_notify may be a truncation (RFC 8446 §6.1): it
	 * gets its own reason, so it never passes for a clean end. */
	if (c->tls_unclean)
		log_close(c, "unclean_eof", "peer closed without close_notify");
	else
		log_close(c, "done", NULL);
	conn_free(c);
}

/* woke: the watch whose readiness brought us here (NULL: none, try both). */
static void pump(struct ks_conn *c, const struct ks_watch *woke)
{
	if (c->rl != KS_RL_USERSPACE)
		ks_splice_pump(c);
	else
		pump_user(c, woke);
}

/*
 * Userspace record layer: moves at most one record-sized buffer per direction
 * at a time, so a connection never buffers more than 2 x 16 KiB of its own
 * (plus OpenSSL's record buffers): a slow reader stops us reading from the
 * fast writer, which is TCP backpressure end to end.
 */
static void pump_user(struct ks_conn *c, const struct ks_watch *woke)
{
	/*
	 * A read that returns EAGAIN is a wasted syscall: in a one-way bulk
	 * transfer it was one in three (strace -c). So a socket that the loop
	 * is already watching for input is read only once the loop reports it,
	 * and within one wake-up a socket that came back short or empty is not
	 * read again. Both loop backends re-report a socket that stays ready,
	 * so nothing is missed. OpenSSL's own buffer is the exception: records
	 * read ahead into it are invisible to poll, so they always get a read.
	 */
	bool plain_drained = woke == &c->tls_w && (c->plain_w.want & KS_EV_IN);
	bool tls_drained =
	    woke == &c->plain_w && (c->tls_w.want & KS_EV_IN) && !SSL_has_pending(c->ssl);

	for (int budget = KS_PUMP_BUDGET;; budget--) {
		uint32_t tls_want = 0, plain_want = 0;
		bool progress = false;
		ssize_t n;
		int r;

		/* app -> peer */
		if (!c->plain_eof && buf_empty(c->p2t) && !c->tls_wr_shut && !c->tls_unclean) {
			if (!c->p2t && !(c->p2t = ks_buf_get(c->wk))) {
				ks_conn_abort(c, c->tls_fd, "internal_error", "out of memory");
				return;
			}
			n = plain_drained ? (errno = EAGAIN, -1)
					  : recv(c->plain_fd, c->p2t->data, KS_BUF_SIZE, 0);
			if (n > 0) {
				c->p2t->off = 0;
				c->p2t->len = (uint32_t)n;
				c->ubytes += (uint64_t)n;
				plain_drained = n < KS_BUF_SIZE;
				progress = true;
			} else if (n == 0) {
				c->plain_eof = 1;
				progress = true;
			} else if (errno == EAGAIN || errno == EINTR) {
				plain_want |= KS_EV_IN;
				plain_drained = true;
			} else {
				plain_failed(c, errno);
				return;
			}
		}
		/* The error queue is empty here: every failure path below clears it
		 * (ks_handshake_classify), so no per-call ERR_clear_error (1.3% of
		 * the userspace path's CPU in a perf profile). */
		if (!buf_empty(c->p2t) && !c->tls_unclean) {
			r = SSL_write(c->ssl, c->p2t->data + c->p2t->off,
				      (int)(c->p2t->len - c->p2t->off));
			if (r > 0) {
				c->bytes_to_peer += (uint64_t)r;
				c->ubytes += (uint64_t)r;
				c->p2t->off += (uint32_t)r;
				progress = true;
			} else if ((r = tls_failed(c, r, &tls_want)) < 0) {
				return;
			}
		}
		if (buf_empty(c->p2t) && c->p2t) {
			ks_buf_put(c->wk, c->p2t);
			c->p2t = NULL;
		}
		/* app FIN -> close_notify + FIN (RFC 8446 §6.1 allows half-close) */
		if (c->plain_eof && !c->p2t && !c->tls_wr_shut && !c->tls_unclean) {
			ERR_clear_error();
			r = SSL_shutdown(c->ssl);
			if (r < 0 && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_WRITE) {
				tls_want |= KS_EV_OUT;
			} else {
				ERR_clear_error();
				shutdown(c->tls_fd, SHUT_WR);
				c->tls_wr_shut = 1;
				progress = true;
			}
		}

		/* peer -> app */
		if (!c->tls_eof && buf_empty(c->t2p) && tls_drained) {
			tls_want |= KS_EV_IN;
		} else if (!c->tls_eof && buf_empty(c->t2p)) {
			if (!c->t2p && !(c->t2p = ks_buf_get(c->wk))) {
				ks_conn_abort(c, c->plain_fd, "internal_error", "out of memory");
				return;
			}
			errno = 0;
			r = SSL_read(c->ssl, c->t2p->data, KS_BUF_SIZE);
			if (r > 0) {
				c->t2p->off = 0;
				c->t2p->len = (uint32_t)r;
				c->bytes_from_peer += (uint64_t)r;
				c->ubytes += (uint64_t)r;
				progress = true;
			} else {
				r = tls_failed(c, r, &tls_want);
				if (r < 0)
					return;
				progress |= r > 0;
				tls_drained = (tls_want & KS_EV_IN) != 0;
			}
		}
		if (!buf_empty(c->t2p)) {
			n = send(c->plain_fd, c->t2p->data + c->t2p->off, c->t2p->len - c->t2p->off,
				 MSG_NOSIGNAL);
			if (n > 0) {
				c->t2p->off += (uint32_t)n;
				c->ubytes += (uint64_t)n;
				progress = true;
			} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
				plain_want |= KS_EV_OUT;
			} else {
				plain_failed(c, n < 0 ? errno : EPIPE);
				return;
			}
		}
		if (buf_empty(c->t2p) && c->t2p) {
			ks_buf_put(c->wk, c->t2p);
			c->t2p = NULL;
		}
		if (ks_conn_finish_step(c, !c->t2p, &progress))
			return;
		if (progress)
			ks_conn_touch(c);
		if (!progress || budget == 0) {
			if (progress) {
				/* Out of budget while still able to move: ask to be woken
				 * at once (the sockets are ready), after the others. */
				tls_want |= !buf_empty(c->p2t) ? KS_EV_OUT : 0;
				tls_want |= !c->tls_eof ? KS_EV_IN : 0;
				plain_want |= !buf_empty(c->t2p) ? KS_EV_OUT : 0;
				plain_want |= !c->plain_eof ? KS_EV_IN : 0;
				/* Read-ahead may leave whole records in OpenSSL's buffer,
				 * which no poll reports: a writable app socket wakes us. */
				if (SSL_has_pending(c->ssl))
					plain_want |= KS_EV_OUT;
			}
			ks_conn_set_wants(c, tls_want, plain_want);
			return;
		}
	}
}
