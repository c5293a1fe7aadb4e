/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The non-data records a kTLS receive socket hands back
 * (Documentation/networking/tls.rst, "Receiving TLS control messages"):
 * they are the only bytes we read ourselves on the kernel path.
 *
 *   - close_notify becomes a half-close; any other alert ends the
 *     connection (RFC 8446 §6).
 *   - NewSessionTicket is dropped: resumption is off.
 *   - KeyUpdate (RFC 8446 §4.6.3) moves the receive key to the next
 *     generation, and if the peer asks, we send our own and move the
 *     transmit key too ("TLS 1.3 Key Updates" in tls.rst: the kernel pauses
 *     decryption until TLS_RX gets the new key). Kernels before 6.14 cannot
 *     take a new key: there the connection ends cleanly with reason
 *     key_update_unsupported, since the peer's next record would fail to
 *     decrypt.
 *
 * Handshake messages may be split across records (RFC 8446 §5.1), so the
 * message headers are reassembled (c->hs); a KeyUpdate must end its record,
 * as a key change may not fall inside one.
 */
#include "dataplane/pump.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "common/log.h"
#include "dataplane/offload.h"
#include "dataplane/worker.h"
#include "tls/ktls_io.h"

/* Sends a fatal alert (best effort) and ends the connection. */
static enum ks_rec_status fatal(struct ks_conn *c, uint8_t alert, const char *detail)
{
	(void)ks_ktls_send_alert(c->tls_fd, 2, alert);
	ks_pump_close(c, KS_CLOSE_TLS_ERROR, KS_SIDE_PLAIN, "%s", detail);
	return KS_REC_CLOSE;
}

/* The peer's KeyUpdate, complete, with last saying it ends its record. */
static enum ks_rec_status key_update(struct ks_conn *c, uint8_t request, bool last)
{
	int rc;

	/* KeyUpdateRequest: update_not_requested(0), update_requested(1). */
	if (!last)
		return fatal(c, SSL_AD_UNEXPECTED_MESSAGE,
			     "KeyUpdate not at the end of its record");
	if (request > 1)
		return fatal(c, SSL_AD_ILLEGAL_PARAMETER, "malformed KeyUpdate");
	rc = ks_offload_rekey(c, false);
	if (rc < 0) {
		ks_pump_close(
		    c, KS_CLOSE_KEY_UPDATE_UNSUPPORTED, KS_SIDE_PLAIN, "peer sent KeyUpdate; %s",
		    rc == -EOPNOTSUPP ? "this kernel cannot replace the receive key (6.14+ can)"
				      : strerror(-rc));
		return KS_REC_CLOSE;
	}
	c->key_updates++;
	if (request)
		c->ku_reply = KS_KU_REQUESTED;
	ks_info("event=tls_key_update conn=%llu direction=rx update_requested=%u",
		(unsigned long long)c->id, request);
	return KS_REC_PROGRESS;
}

/* One handshake record's bytes, continuing whatever message the last one began. */
static enum ks_rec_status handshake_record(struct ks_conn *c, const uint8_t *b, size_t n)
{
	struct ks_hs_reasm *hs = &c->hs;
	char detail[96];
	size_t off = 0;

	/* RFC 8446 §5.1: zero-length fragments of handshake types MUST NOT be sent. */
	if (n == 0)
		return fatal(c, SSL_AD_UNEXPECTED_MESSAGE, "zero-length handshake record");
	while (off < n) {
		uint32_t len;

		if (hs->skip) {
			size_t take = n - off < hs->skip ? n - off : hs->skip;

			off += take;
			hs->skip -= (uint32_t)take;
			continue;
		}
		while (hs->hdr_len < 4 && off < n)
			hs->hdr[hs->hdr_len++] = b[off++];
		if (hs->hdr_len < 4)
			break; /* the header continues in the next record */
		len = (uint32_t)hs->hdr[1] << 16 | (uint32_t)hs->hdr[2] << 8 | hs->hdr[3];
		if (hs->hdr[0] == KS_TLS_HS_KEY_UPDATE) {
			if (len != 1) /* RFC 8446 §6.2: a length out of range */
				return fatal(c, SSL_AD_DECODE_ERROR, "malformed KeyUpdate");
			if (off == n)
				break; /* its one byte comes in the next record */
			hs->hdr_len = 0;
			off++;
			return key_update(c, b[off - 1], off == n);
		}
		if (hs->hdr[0] != KS_TLS_HS_NEW_SESSION_TICKET) {
			snprintf(detail, sizeof(detail),
				 "unexpected post-handshake message type %u", hs->hdr[0]);
			return fatal(c, SSL_AD_UNEXPECTED_MESSAGE, detail);
		}
		/* Resumption is off: the ticket is dropped, however it is split. */
		hs->hdr_len = 0;
		hs->skip = len;
	}
	return KS_REC_PROGRESS;
}

enum ks_rec_status ks_ctlrec_read(struct ks_conn *c)
{
	uint8_t buf[KS_BUF_SIZE + 256], type;
	char detail[128];
	ssize_t n = ks_ktls_recv_record(c->tls_fd, buf, sizeof(buf), &type);

	if (n == -EAGAIN)
		return KS_REC_NONE;
	if (n == -EBADMSG)
		return fatal(c, SSL_AD_BAD_RECORD_MAC, "record failed to decrypt (EBADMSG)");
	if (n == -EPROTO)
		return fatal(c, SSL_AD_INTERNAL_ERROR,
			     "malformed record type from the kernel (truncated control message)");
	if (n < 0) {
		ks_pump_close(c, KS_CLOSE_PEER_RESET, KS_SIDE_PLAIN, "%s", strerror((int)-n));
		return KS_REC_CLOSE;
	}
	ks_count_ubytes(c, (uint64_t)n);
	switch (type) {
	case KS_TLS_CT_EOF:
		ks_pump_unclean_eof(c);
		return KS_REC_PROGRESS;
	case KS_TLS_CT_ALERT:
		if (n >= 2 && buf[1] == SSL_AD_CLOSE_NOTIFY) {
			c->tls_eof = 1; /* RFC 8446 §6.1 */
			return KS_REC_PROGRESS;
		}
		ks_pump_close(c, KS_CLOSE_PEER_ALERT, KS_SIDE_PLAIN, "peer sent alert: %s",
			      n >= 2 ? SSL_alert_desc_string_long(buf[1]) : "truncated");
		return KS_REC_CLOSE;
	case KS_TLS_CT_HANDSHAKE:
		return handshake_record(c, buf, (size_t)n);
	default:
		snprintf(detail, sizeof(detail), "unexpected record type %u", type);
		ks_pump_close(c, KS_CLOSE_TLS_ERROR, KS_SIDE_PLAIN, "%s", detail);
		return KS_REC_CLOSE;
	}
}

enum ks_rec_status ks_ctlrec_key_update_reply(struct ks_conn *c)
{
	/* Sent under the old key, then TLS_TX moves on: update_not_requested. */
	static const uint8_t ku[5] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 1, 0};
	int rc = ks_ktls_send_record(c->tls_fd, KS_TLS_CT_HANDSHAKE, ku, sizeof(ku));

	if (rc == -EAGAIN)
		return KS_REC_NONE;
	if (rc == 0)
		rc = ks_offload_rekey(c, true);
	if (rc < 0) {
		ks_pump_close(c, KS_CLOSE_TLS_ERROR, KS_SIDE_PLAIN, "cannot send our KeyUpdate");
		return KS_REC_CLOSE;
	}
	ks_info("event=tls_key_update conn=%llu direction=tx update_requested=0 reason=%s "
		"records=%llu",
		(unsigned long long)c->id, c->ku_reply == KS_KU_AEAD_LIMIT ? "aead_limit" : "peer",
		(unsigned long long)c->tx_records);
	c->ku_reply = 0;
	c->tx_records = 0;
	c->key_updates++;
	return KS_REC_PROGRESS;
}
