/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Forwarding on the kernel record layer: socket -> pipe -> socket with
 * splice(2), so application bytes never enter our memory. Readiness comes
 * from the event loop and every splice is nonblocking, so an idle connection
 * holds no thread (io_uring would run a blocking splice in an io-wq worker).
 *
 * A kTLS receive socket stops at the first non-data record: splice fails
 * with EINVAL and the record waits for recvmsg(2) with TLS_GET_RECORD_TYPE
 * (Documentation/networking/tls.rst, "Receiving TLS control messages").
 * Those records are the only bytes we read ourselves: close_notify becomes a
 * half-close, other alerts end the connection, session tickets are dropped.
 * A KeyUpdate (RFC 8446 §4.6.3) moves the receive key to the next
 * generation, and if the peer asks, we send our own and move the transmit
 * key too ("TLS 1.3 Key Updates" in tls.rst: the kernel pauses decryption
 * until TLS_RX gets the new key). Kernels before 6.14 cannot take a new key:
 * there the connection ends cleanly with reason key_update_unsupported,
 * since the peer's next record would fail to decrypt.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "conn.h"
#include "log.h"
#include "offload.h"
#include "worker.h"

#define KS_SPLICE_BUDGET 16
/* Default pipe capacity: 16 pages. Fill only while there is room. */
#define KS_PIPE_CAP	(64 * 1024)
#define KS_SPLICE_FLAGS (SPLICE_F_NONBLOCK | SPLICE_F_MOVE)

/*
 * The peer's KeyUpdate, the last message of its record (RFC 8446 §5.1).
 * Returns 1 on progress, -1 when c was freed.
 */
static int key_update(struct ks_conn *c, const uint8_t *msg, uint32_t len, bool last)
{
	char detail[160];
	int rc;

	/* KeyUpdateRequest: update_not_requested(0), update_requested(1).
	 * A key change must end its record (RFC 8446 §5.1). */
	if (!last || len != 1 || msg[0] > 1) {
		(void)ks_ktls_send_alert(
		    c->tls_fd, 2, last ? SSL_AD_ILLEGAL_PARAMETER : SSL_AD_UNEXPECTED_MESSAGE);
		ks_conn_abort(c, c->plain_fd, "tls_error",
			      last ? "malformed KeyUpdate"
				   : "KeyUpdate not at the end of its record");
		return -1;
	}
	rc = ks_offload_rekey(c, false);
	if (rc < 0) {
		snprintf(detail, sizeof(detail), "peer sent KeyUpdate; %s",
			 rc == -EOPNOTSUPP
			     ? "this kernel cannot replace the receive key (6.14+ can)"
			     : strerror(-rc));
		ks_conn_abort(c, c->plain_fd, "key_update_unsupported", detail);
		return -1;
	}
	c->key_updates++;
	c->ku_reply |= msg[0];
	ks_info("event=tls_key_update conn=%llu direction=rx update_requested=%u",
		(unsigned long long)c->id, msg[0]);
	return 1;
}

/*
 * Our KeyUpdate, owed to a peer that asked for it before our next data
 * record: sent under the old key, then TLS_TX moves on. Returns 1 when sent,
 * 0 when the socket is full, -1 when c was freed.
 */
static int key_update_reply(struct ks_conn *c)
{
	static const uint8_t ku[5] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 1, 0}; /* update_not_requested */
	int rc = ks_ktls_send_record(c->tls_fd, KS_TLS_CT_HANDSHAKE, ku, sizeof(ku));

	if (rc == -EAGAIN)
		return 0;
	if (rc == 0)
		rc = ks_offload_rekey(c, true);
	if (rc < 0) {
		ks_conn_abort(c, c->plain_fd, "tls_error", "cannot send our KeyUpdate");
		return -1;
	}
	c->ku_reply = 0;
	c->key_updates++;
	ks_info("event=tls_key_update conn=%llu direction=tx update_requested=0",
		(unsigned long long)c->id);
	return 1;
}

/*
 * Handles the non-data record at the head of the receive queue. Returns 1 on
 * progress, 0 when there is nothing to read yet, -1 when c was freed.
 */
static int control_record(struct ks_conn *c)
{
	uint8_t buf[KS_BUF_SIZE + 256], type;
	char detail[128];
	ssize_t n = ks_ktls_recv_record(c->tls_fd, buf, sizeof(buf), &type);

	if (n == -EAGAIN)
		return 0;
	if (n < 0) {
		if (n == -EBADMSG)
			(void)ks_ktls_send_alert(c->tls_fd, 2, SSL_AD_BAD_RECORD_MAC);
		ks_conn_abort(c, c->plain_fd, n == -EBADMSG ? "tls_error" : "peer_reset",
			      n == -EBADMSG ? "record failed to decrypt (EBADMSG)"
					    : strerror((int)-n));
		return -1;
	}
	c->ubytes += (uint64_t)n;
	if (n == 0) {
		ks_conn_unclean_eof(c);
		return 1;
	}
	switch (type) {
	case KS_TLS_CT_ALERT:
		if (n >= 2 && buf[1] == SSL_AD_CLOSE_NOTIFY) {
			c->tls_eof = 1; /* RFC 8446 §6.1 */
			return 1;
		}
		snprintf(detail, sizeof(detail), "peer sent alert: %s",
			 n >= 2 ? SSL_alert_desc_string_long(buf[1]) : "truncated");
		ks_conn_abort(c, c->plain_fd, "peer_alert", detail);
		return -1;
	case KS_TLS_CT_HANDSHAKE:
		/* One record may hold several messages: type (1) + length (3). */
		for (ssize_t off = 0; off + 4 <= n;) {
			uint32_t len =
			    (uint32_t)buf[off + 1] << 16 | buf[off + 2] << 8 | buf[off + 3];

			if (buf[off] == KS_TLS_HS_KEY_UPDATE)
				return key_update(c, buf + off + 4, len,
						  off + 4 + (ssize_t)len == n);
			if (buf[off] != KS_TLS_HS_NEW_SESSION_TICKET) {
				snprintf(detail, sizeof(detail),
					 "unexpected post-handshake message type %u", buf[off]);
				ks_conn_abort(c, c->plain_fd, "tls_error", detail);
				return -1;
			}
			off += 4 + (ssize_t)len; /* resumption is off: drop the ticket */
		}
		return 1;
	default:
		snprintf(detail, sizeof(detail), "unexpected record type %u", type);
		ks_conn_abort(c, c->plain_fd, "tls_error", detail);
		return -1;
	}
}

/* Error on the app side: reset the peer side so the failure propagates. */
static void plain_failed(struct ks_conn *c, int err)
{
	ks_conn_abort(c, c->tls_fd, err == ECONNRESET || err == EPIPE ? "app_reset" : "app_error",
		      strerror(err));
}

void ks_splice_pump(struct ks_conn *c)
{
	for (int budget = KS_SPLICE_BUDGET;; budget--) {
		uint32_t tls_want = 0, plain_want = 0;
		bool progress = false;
		ssize_t n;
		int r;

		/* app -> pipe */
		if (!c->plain_eof && !c->tls_wr_shut && !c->tls_unclean &&
		    c->p2t_plen < KS_PIPE_CAP) {
			n = splice(c->plain_fd, NULL, c->p2t_pipe[1], NULL,
				   KS_PIPE_CAP - c->p2t_plen, KS_SPLICE_FLAGS);
			if (n > 0) {
				c->p2t_plen += (uint32_t)n;
				progress = true;
			} else if (n == 0) {
				c->plain_eof = 1;
				progress = true;
			} else if (errno == EAGAIN) {
				/* With bytes in the pipe, EAGAIN may mean "pipe full":
				 * draining it is what unblocks us, not readability. */
				if (c->p2t_plen == 0)
					plain_want |= KS_EV_IN;
			} else if (errno != EINTR) {
				plain_failed(c, errno);
				return;
			}
		}
		/* our KeyUpdate goes out before any more data */
		if (c->ku_reply && !c->tls_wr_shut && !c->tls_unclean) {
			r = key_update_reply(c);
			if (r < 0)
				return;
			if (r == 0)
				tls_want |= KS_EV_OUT;
			progress |= r > 0;
		}
		/* pipe -> peer (the kernel encrypts) */
		if (c->p2t_plen && !c->ku_reply) {
			n = splice(c->p2t_pipe[0], NULL, c->tls_fd, NULL, c->p2t_plen,
				   KS_SPLICE_FLAGS);
			if (n > 0) {
				c->p2t_plen -= (uint32_t)n;
				c->bytes_to_peer += (uint64_t)n;
				progress = true;
			} else if (n < 0 && errno == EAGAIN) {
				tls_want |= KS_EV_OUT;
			} else if (n < 0 && errno != EINTR) {
				ks_conn_abort(c, c->plain_fd, "peer_reset", strerror(errno));
				return;
			}
		}
		/* app FIN -> close_notify + FIN (plaintext: FIN only) */
		if (c->plain_eof && !c->p2t_plen && !c->tls_wr_shut && !c->tls_unclean) {
			r = c->rl == KS_RL_PLAINTEXT
				? 0
				: ks_ktls_send_alert(c->tls_fd, 1, SSL_AD_CLOSE_NOTIFY);
			if (r == -EAGAIN) {
				tls_want |= KS_EV_OUT;
			} else {
				shutdown(c->tls_fd, SHUT_WR);
				c->tls_wr_shut = 1;
				progress = true;
			}
		}

		/* peer -> pipe (the kernel decrypts) */
		if (!c->tls_eof && c->t2p_plen < KS_PIPE_CAP) {
			n = splice(c->tls_fd, NULL, c->t2p_pipe[1], NULL, KS_PIPE_CAP - c->t2p_plen,
				   KS_SPLICE_FLAGS);
			if (n > 0) {
				c->t2p_plen += (uint32_t)n;
				c->bytes_from_peer += (uint64_t)n;
				progress = true;
			} else if (n == 0) {
				if (c->rl == KS_RL_PLAINTEXT)
					c->tls_eof = 1; /* no TLS: a FIN is the end */
				else
					ks_conn_unclean_eof(c); /* FIN without close_notify */
				progress = true;
			} else if (errno == EAGAIN) {
				if (c->t2p_plen == 0)
					tls_want |= KS_EV_IN;
			} else if (errno == EINVAL || errno == EIO) {
				r = control_record(c);
				if (r < 0)
					return;
				if (r == 0)
					tls_want |= KS_EV_IN;
				progress |= r > 0;
			} else if (errno == EBADMSG || errno == EKEYEXPIRED) {
				bool bad = errno == EBADMSG;

				/* RFC 8446 §5.2: a record that fails to decrypt ends the
				 * connection with a bad_record_mac alert. */
				if (bad)
					(void)ks_ktls_send_alert(c->tls_fd, 2,
								 SSL_AD_BAD_RECORD_MAC);
				ks_conn_abort(c, c->plain_fd, "tls_error",
					      bad ? "record failed to decrypt (EBADMSG)"
						  : "receive key expired (KeyUpdate)");
				return;
			} else if (errno != EINTR) {
				ks_conn_abort(c, c->plain_fd, "peer_reset", strerror(errno));
				return;
			}
		}
		/* pipe -> app */
		if (c->t2p_plen) {
			n = splice(c->t2p_pipe[0], NULL, c->plain_fd, NULL, c->t2p_plen,
				   KS_SPLICE_FLAGS);
			if (n > 0) {
				c->t2p_plen -= (uint32_t)n;
				progress = true;
			} else if (n < 0 && errno == EAGAIN) {
				plain_want |= KS_EV_OUT;
			} else if (n < 0 && errno != EINTR) {
				plain_failed(c, errno);
				return;
			}
		}
		if (ks_conn_finish_step(c, !c->t2p_plen, &progress))
			return;
		if (progress)
			ks_conn_touch(c);
		if (!progress || budget == 0) {
			if (progress) {
				/* Yield to other connections; ready sockets wake us at once. */
				tls_want |= c->p2t_plen ? KS_EV_OUT : 0;
				tls_want |= !c->tls_eof ? KS_EV_IN : 0;
				plain_want |= c->t2p_plen ? KS_EV_OUT : 0;
				plain_want |= !c->plain_eof ? KS_EV_IN : 0;
			}
			ks_conn_set_wants(c, tls_want, plain_want);
			return;
		}
	}
}
