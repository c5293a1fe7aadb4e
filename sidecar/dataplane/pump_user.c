/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Userspace record layer: moves at most one record-sized buffer per direction
 * at a time, so a connection never buffers more than 2 x 16 KiB of its own
 * (plus OpenSSL's record buffers): a slow reader stops us reading from the
 * fast writer, which is TCP backpressure end to end.
 */
#include "dataplane/pump.h"

#include <errno.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "dataplane/pool.h"
#include "dataplane/worker.h"

/* Work one connection may do per wake-up before yielding to the others. */
#define KS_PUMP_BUDGET 64

/* One pass of the pump: what it learned about each socket. */
struct user_pass {
	struct ks_wants want;
	bool progress;
	bool plain_drained; /* the app socket came back empty: do not read it again */
	bool tls_drained;   /* likewise the TLS socket (OpenSSL holds nothing either) */
};

static bool buf_empty(const struct ks_buf *b)
{
	return !b || b->off == b->len;
}

enum tls_outcome { TLS_BLOCKED, TLS_PROGRESS, TLS_CLOSE };

/* A failed SSL_read or SSL_write: wait (want bits set), end of stream, or the end. */
static enum tls_outcome tls_failed(struct ks_conn *c, int ret, struct user_pass *p)
{
	char detail[256];
	int err = SSL_get_error(c->ssl, ret);

	if (err == SSL_ERROR_WANT_READ) {
		p->want.tls |= KS_EV_IN;
		return TLS_BLOCKED;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		p->want.tls |= KS_EV_OUT;
		return TLS_BLOCKED;
	}
	if (err == SSL_ERROR_ZERO_RETURN) {
		c->tls_eof = 1; /* close_notify: RFC 8446 §6.1 */
		return TLS_PROGRESS;
	}
	ks_handshake_classify(c->ssl, &c->tls, err, detail, sizeof(detail));
	if (c->tls.reject == KS_REJ_PEER_CLOSED && !errno) {
		/* FIN without close_notify: deliver what we have, then end. The
		 * SSL object is unusable for writing after this in OpenSSL 3. */
		ks_pump_unclean_eof(c);
		return TLS_PROGRESS;
	}
	ks_pump_close(
	    c, c->tls.reject == KS_REJ_PEER_CLOSED ? KS_CLOSE_PEER_RESET : KS_CLOSE_TLS_ERROR,
	    KS_SIDE_PLAIN, "%s", detail);
	return TLS_CLOSE;
}

/* app -> p2t -> SSL_write, and the app's FIN -> close_notify + FIN. */
static enum ks_pump_status app_to_peer(struct ks_conn *c, struct user_pass *p)
{
	ssize_t n;
	int r;

	if (!c->plain_eof && buf_empty(c->p2t) && !c->tls_wr_shut && !c->tls_unclean) {
		if (!c->p2t && !(c->p2t = ks_buf_get(c->wk)))
			return ks_pump_close(c, KS_CLOSE_INTERNAL_ERROR, KS_SIDE_TLS,
					     "out of memory");
		n = p->plain_drained ? (errno = EAGAIN, -1)
				     : recv(c->plain_fd, c->p2t->data, KS_BUF_SIZE, 0);
		if (n > 0) {
			c->p2t->off = 0;
			c->p2t->len = (uint32_t)n;
			ks_count_ubytes(c, (uint64_t)n);
			p->plain_drained = n < KS_BUF_SIZE;
			p->progress = true;
		} else if (n == 0) {
			c->plain_eof = 1;
			p->progress = true;
		} else if (errno == EAGAIN || errno == EINTR) {
			p->want.plain |= KS_EV_IN;
			p->plain_drained = true;
		} else {
			return ks_pump_app_failed(c, errno);
		}
	}
	/* The error queue is empty here: every failure path clears it
	 * (ks_handshake_classify), so no per-call ERR_clear_error (1.3% of the
	 * userspace path's CPU in a perf profile). */
	if (!buf_empty(c->p2t) && !c->tls_unclean) {
		r = SSL_write(c->ssl, c->p2t->data + c->p2t->off, (int)(c->p2t->len - c->p2t->off));
		if (r > 0) {
			ks_count_bytes(c, KS_FLOW_TO_PEER, (uint64_t)r);
			ks_count_ubytes(c, (uint64_t)r);
			c->p2t->off += (uint32_t)r;
			p->progress = true;
		} else if (tls_failed(c, r, p) == TLS_CLOSE) {
			return KS_PUMP_CLOSE;
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
			p->want.tls |= KS_EV_OUT;
		} else {
			ERR_clear_error();
			shutdown(c->tls_fd, SHUT_WR);
			c->tls_wr_shut = 1;
			p->progress = true;
		}
	}
	return KS_PUMP_WAIT;
}

/* SSL_read -> t2p -> app. */
static enum ks_pump_status peer_to_app(struct ks_conn *c, struct user_pass *p)
{
	ssize_t n;
	int r;

	if (!c->tls_eof && buf_empty(c->t2p) && p->tls_drained) {
		p->want.tls |= KS_EV_IN;
	} else if (!c->tls_eof && buf_empty(c->t2p)) {
		if (!c->t2p && !(c->t2p = ks_buf_get(c->wk)))
			return ks_pump_close(c, KS_CLOSE_INTERNAL_ERROR, KS_SIDE_PLAIN,
					     "out of memory");
		errno = 0;
		r = SSL_read(c->ssl, c->t2p->data, KS_BUF_SIZE);
		if (r > 0) {
			c->t2p->off = 0;
			c->t2p->len = (uint32_t)r;
			ks_count_bytes(c, KS_FLOW_FROM_PEER, (uint64_t)r);
			ks_count_ubytes(c, (uint64_t)r);
			p->progress = true;
		} else {
			enum tls_outcome o = tls_failed(c, r, p);

			if (o == TLS_CLOSE)
				return KS_PUMP_CLOSE;
			p->progress |= o == TLS_PROGRESS;
			p->tls_drained = (p->want.tls & KS_EV_IN) != 0;
		}
	}
	if (!buf_empty(c->t2p)) {
		n = send(c->plain_fd, c->t2p->data + c->t2p->off, c->t2p->len - c->t2p->off,
			 MSG_NOSIGNAL);
		if (n > 0) {
			c->t2p->off += (uint32_t)n;
			ks_count_ubytes(c, (uint64_t)n);
			p->progress = true;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			p->want.plain |= KS_EV_OUT;
		} else {
			return ks_pump_app_failed(c, n < 0 ? errno : EPIPE);
		}
	}
	if (buf_empty(c->t2p) && c->t2p) {
		ks_buf_put(c->wk, c->t2p);
		c->t2p = NULL;
	}
	return KS_PUMP_WAIT;
}

enum ks_pump_status ks_pump_user_rx(struct ks_conn *c, struct ks_wants *want, bool *progress)
{
	struct user_pass p = {0};
	enum ks_pump_status st = peer_to_app(c, &p);

	want->tls |= p.want.tls;
	want->plain |= p.want.plain;
	*progress |= p.progress;
	return st;
}

enum ks_pump_status ks_pump_user(struct ks_conn *c, const struct ks_watch *woke, struct ks_wants *w)
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
	struct user_pass p = {
	    .plain_drained = woke == &c->tls_w && (c->plain_w.want & KS_EV_IN),
	    .tls_drained =
		woke == &c->plain_w && (c->tls_w.want & KS_EV_IN) && !SSL_has_pending(c->ssl),
	};

	for (int budget = KS_PUMP_BUDGET;; budget--) {
		enum ks_round r;

		p.want = (struct ks_wants){0};
		p.progress = false;
		if (app_to_peer(c, &p) == KS_PUMP_CLOSE || peer_to_app(c, &p) == KS_PUMP_CLOSE)
			return KS_PUMP_CLOSE;
		r = ks_pump_round(c, !c->t2p, p.progress, budget);
		if (r == KS_ROUND_CLOSE)
			return KS_PUMP_CLOSE;
		if (r == KS_ROUND_AGAIN)
			continue;
		if (r == KS_ROUND_YIELD) {
			/* Out of budget while still able to move: ask to be woken at
			 * once (the sockets are ready), after the others. */
			p.want.tls |= !buf_empty(c->p2t) ? KS_EV_OUT : 0;
			p.want.tls |= !c->tls_eof ? KS_EV_IN : 0;
			p.want.plain |= !buf_empty(c->t2p) ? KS_EV_OUT : 0;
			p.want.plain |= !c->plain_eof ? KS_EV_IN : 0;
			/* Read-ahead may leave whole records in OpenSSL's buffer,
			 * which no poll reports: a writable app socket wakes us. */
			if (SSL_has_pending(c->ssl))
				p.want.plain |= KS_EV_OUT;
		}
		*w = p.want;
		return KS_PUMP_WAIT;
	}
}
