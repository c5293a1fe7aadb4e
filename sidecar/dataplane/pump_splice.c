/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Forwarding on the kernel record layer: socket -> pipe -> socket with
 * splice(2), so application bytes never enter our memory. Readiness comes
 * from the event loop and every splice is nonblocking, so an idle connection
 * holds no thread (io_uring would run a blocking splice in an io-wq worker).
 *
 * A kTLS receive socket stops at the first non-data record: splice fails
 * with EINVAL and the record waits for recvmsg(2) (ctlrec.c). The same pump
 * relays permissive plaintext, where there are no records at all.
 *
 * A direction holds a pipe only while bytes sit in it (pipes.h): taken
 * before a splice into it, given back when the pump stops with it empty.
 */
#include "dataplane/pump.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "dataplane/offload.h"
#include "dataplane/worker.h"
#include "tls/ktls_io.h"

#define KS_SPLICE_BUDGET 16
/* Default pipe capacity: 16 pages. Fill only while there is room. */
#define KS_PIPE_CAP (64 * 1024)

struct splice_pass {
	struct ks_wants want;
	bool progress;
};

/* A pipe for one direction. False: none to be had now; c waits for one
 * (pipes.h) and the side that would fill it is not read meanwhile. */
static bool have_pipe(struct ks_conn *c, int fds[2])
{
	struct ks_worker *wk = c->wk;
	int rc;

	if (fds[0] >= 0)
		return true;
	rc = ks_pipe_take(&wk->pipes, fds);
	if (rc == 0)
		return true;
	ks_pipe_wait(&wk->pipes, &c->pipe_link, -rc, wk->now_ms, wk->idx);
	return false;
}

/* An idle direction gives its pipe back. */
static void drop_empty_pipes(struct ks_conn *c)
{
	if (!c->p2t_plen)
		ks_pipe_give(&c->wk->pipes, c->p2t_pipe);
	if (!c->t2p_plen)
		ks_pipe_give(&c->wk->pipes, c->t2p_pipe);
}

/*
 * AEAD usage limits (RFC 8446 §5.5): AES-GCM keys should encrypt at most
 * 2^24.5 full-size records. The kernel counts records but does not say how
 * many it sent, so we bound them: a splice(2) to a kTLS socket without
 * SPLICE_F_MORE closes its last record at the end of the call
 * (Documentation/networking/tls.rst), so n bytes make at most
 * ceil(n / 2^14) records. Past --tls-key-update-records under one key,
 * our KeyUpdate is owed; it goes out before the next byte.
 */
static void count_records(struct ks_conn *c, size_t n)
{
	uint32_t limit = c->wk->sh->cfg->key_update_records;

	c->tx_records += (n + KS_TLS_MAX_PLAINTEXT - 1) / KS_TLS_MAX_PLAINTEXT;
	if (limit && c->tx_records >= limit && !c->ku_reply && ks_offload_can_rekey(c))
		c->ku_reply = KS_KU_AEAD_LIMIT;
}

/* app -> pipe -> peer (the kernel encrypts), our owed KeyUpdate first, the app's FIN last. */
static enum ks_pump_status app_to_peer(struct ks_conn *c, struct splice_pass *p)
{
	ssize_t n;
	int r;

	if (!c->plain_eof && !c->tls_wr_shut && !c->tls_unclean && c->p2t_plen < KS_PIPE_CAP &&
	    have_pipe(c, c->p2t_pipe)) {
		n = ks_ktls_splice(c->plain_fd, c->p2t_pipe[1], KS_PIPE_CAP - c->p2t_plen);
		if (n > 0) {
			c->p2t_plen += (uint32_t)n;
			p->progress = true;
		} else if (n == 0) {
			c->plain_eof = 1;
			p->progress = true;
		} else if (n == -EAGAIN) {
			/* With bytes in the pipe, EAGAIN may mean "pipe full":
			 * draining it is what unblocks us, not readability. */
			if (c->p2t_plen == 0)
				p->want.plain |= KS_EV_IN;
		} else if (n != -EINTR) {
			return ks_pump_app_failed(c, (int)-n);
		}
	}
	/* our KeyUpdate goes out before any more data (RFC 8446 §4.6.3) */
	if (c->ku_reply && !c->tls_wr_shut && !c->tls_unclean) {
		enum ks_rec_status rs = ks_ctlrec_key_update_reply(c);

		if (rs == KS_REC_CLOSE)
			return KS_PUMP_CLOSE;
		if (rs == KS_REC_NONE)
			p->want.tls |= KS_EV_OUT;
		p->progress |= rs == KS_REC_PROGRESS;
	}
	if (c->p2t_plen && !c->ku_reply) {
		n = ks_ktls_splice(c->p2t_pipe[0], c->tls_fd, c->p2t_plen);
		if (n > 0) {
			c->p2t_plen -= (uint32_t)n;
			ks_count_bytes(c, KS_FLOW_TO_PEER, (uint64_t)n);
			p->progress = true;
			count_records(c, (size_t)n);
		} else if (n == -EAGAIN) {
			p->want.tls |= KS_EV_OUT;
		} else if (n < 0 && n != -EINTR) {
			return ks_pump_close(c, KS_CLOSE_PEER_RESET, KS_SIDE_PLAIN, "%s",
					     strerror((int)-n));
		}
	}
	/* app FIN -> close_notify + FIN (plaintext: FIN only) */
	if (c->plain_eof && !c->p2t_plen && !c->tls_wr_shut && !c->tls_unclean) {
		r = c->rl == KS_RL_PLAINTEXT
			? 0
			: ks_ktls_send_alert(c->tls_fd, 1, SSL_AD_CLOSE_NOTIFY);
		if (r == -EAGAIN) {
			p->want.tls |= KS_EV_OUT;
		} else {
			shutdown(c->tls_fd, SHUT_WR);
			c->tls_wr_shut = 1;
			p->progress = true;
		}
	}
	return KS_PUMP_WAIT;
}

/* A splice out of the TLS socket failed with -err: a control record, or the end. */
static enum ks_pump_status tls_read_failed(struct ks_conn *c, int err, struct splice_pass *p)
{
	enum ks_rec_status rs;

	if (err == EAGAIN) {
		if (c->t2p_plen == 0)
			p->want.tls |= KS_EV_IN;
		return KS_PUMP_WAIT;
	}
	if (err == EINTR)
		return KS_PUMP_WAIT;
	if (err == EINVAL || err == EIO) {
		rs = ks_ctlrec_read(c);
		if (rs == KS_REC_CLOSE)
			return KS_PUMP_CLOSE;
		if (rs == KS_REC_NONE)
			p->want.tls |= KS_EV_IN;
		p->progress |= rs == KS_REC_PROGRESS;
		return KS_PUMP_WAIT;
	}
	if (err == EBADMSG) {
		/* RFC 8446 §5.2: a record that fails to decrypt ends the
		 * connection with a bad_record_mac alert. */
		(void)ks_ktls_send_alert(c->tls_fd, 2, SSL_AD_BAD_RECORD_MAC);
		return ks_pump_close(c, KS_CLOSE_TLS_ERROR, KS_SIDE_PLAIN,
				     "record failed to decrypt (EBADMSG)");
	}
	if (err == EKEYEXPIRED)
		return ks_pump_close(c, KS_CLOSE_TLS_ERROR, KS_SIDE_PLAIN,
				     "receive key expired (KeyUpdate)");
	return ks_pump_close(c, KS_CLOSE_PEER_RESET, KS_SIDE_PLAIN, "%s", strerror(err));
}

/* peer -> pipe (the kernel decrypts) -> app. */
static enum ks_pump_status peer_to_app(struct ks_conn *c, struct splice_pass *p)
{
	ssize_t n;

	if (!c->tls_eof && c->t2p_plen < KS_PIPE_CAP && have_pipe(c, c->t2p_pipe)) {
		n = ks_ktls_splice(c->tls_fd, c->t2p_pipe[1], KS_PIPE_CAP - c->t2p_plen);
		if (n > 0) {
			c->t2p_plen += (uint32_t)n;
			ks_count_bytes(c, KS_FLOW_FROM_PEER, (uint64_t)n);
			p->progress = true;
		} else if (n == 0) {
			if (c->rl == KS_RL_PLAINTEXT)
				c->tls_eof = 1; /* no TLS: a FIN is the end */
			else
				ks_pump_unclean_eof(c); /* FIN without close_notify */
			p->progress = true;
		} else if (tls_read_failed(c, (int)-n, p) == KS_PUMP_CLOSE) {
			return KS_PUMP_CLOSE;
		}
	}
	if (c->t2p_plen) {
		n = ks_ktls_splice(c->t2p_pipe[0], c->plain_fd, c->t2p_plen);
		if (n > 0) {
			c->t2p_plen -= (uint32_t)n;
			p->progress = true;
		} else if (n == -EAGAIN) {
			p->want.plain |= KS_EV_OUT;
		} else if (n < 0 && n != -EINTR) {
			return ks_pump_app_failed(c, (int)-n);
		}
	}
	return KS_PUMP_WAIT;
}

enum ks_pump_status ks_pump_splice(struct ks_conn *c, struct ks_wants *w)
{
	for (int budget = KS_SPLICE_BUDGET;; budget--) {
		struct splice_pass p = {0};
		enum ks_round r;

		/* Until the server's first record is in, OpenSSL receives, one
		 * record and no more; then the caller gives the kernel the
		 * receive side (conn.c), once what it read is delivered. */
		bool heard = c->ticket_wait && (c->tls.tickets || c->tls.seq.rx);

		if (app_to_peer(c, &p) == KS_PUMP_CLOSE)
			return KS_PUMP_CLOSE;
		if (!c->ticket_wait) {
			if (peer_to_app(c, &p) == KS_PUMP_CLOSE)
				return KS_PUMP_CLOSE;
		} else if ((!heard || c->t2p) &&
			   ks_pump_user_rx(c, &p.want, &p.progress) == KS_PUMP_CLOSE) {
			return KS_PUMP_CLOSE;
		}
		if (c->ticket_wait && (c->tls.tickets || c->tls.seq.rx) && !c->t2p) {
			*w = p.want;
			return KS_PUMP_WAIT;
		}
		r = ks_pump_round(c, c->ticket_wait ? !c->t2p : !c->t2p_plen, p.progress, budget);
		if (r == KS_ROUND_CLOSE)
			return KS_PUMP_CLOSE;
		if (r == KS_ROUND_AGAIN)
			continue;
		if (r == KS_ROUND_YIELD) {
			/* Ready sockets wake us at once, after the other
			 * connections; a side that waits for a pipe waits. */
			bool waiting = c->pipe_link.next != NULL;

			p.want.tls |= c->p2t_plen ? KS_EV_OUT : 0;
			p.want.tls |= !c->tls_eof && !waiting ? KS_EV_IN : 0;
			p.want.plain |= c->t2p_plen || c->t2p ? KS_EV_OUT : 0;
			p.want.plain |= !c->plain_eof && !waiting ? KS_EV_IN : 0;
		}
		drop_empty_pipes(c);
		*w = p.want;
		return KS_PUMP_WAIT;
	}
}
