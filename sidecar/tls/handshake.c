/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/handshake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/secret.h"
#include "tls/authz.h"
#include "tls/identity.h"
#include "tls/ktls.h"
#include "tls/policy.h"
#include "tls/resume.h"
#include "tls/spiffe.h"
#include "tls/trust.h"

static int ks_peer_idx = -1;

static const char *const ks_reject_names[KS_REJ__COUNT] = {
    [KS_REJ_NONE] = "none",
    [KS_REJ_NO_CLIENT_CERT] = "no_client_cert",
    [KS_REJ_UNKNOWN_CA] = "unknown_ca",
    [KS_REJ_EXPIRED] = "expired",
    [KS_REJ_NOT_YET_VALID] = "not_yet_valid",
    [KS_REJ_BAD_CERTIFICATE] = "bad_certificate",
    [KS_REJ_NO_SPIFFE_ID] = "no_spiffe_id",
    [KS_REJ_IDENTITY_NOT_ALLOWED] = "identity_not_allowed",
    [KS_REJ_SERVER_ID_MISMATCH] = "server_id_mismatch",
    [KS_REJ_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [KS_REJ_PEER_REJECTED] = "peer_rejected",
    [KS_REJ_PEER_CLOSED] = "peer_closed",
    [KS_REJ_PROTOCOL_ERROR] = "protocol_error",
    [KS_REJ_UPSTREAM_FAILED] = "upstream_connect_failed",
    [KS_REJ_KTLS_UNAVAILABLE] = "ktls_unavailable",
    [KS_REJ_REVOKED] = "revoked",
    [KS_REJ_PIN_MISMATCH] = "pin_mismatch",
    [KS_REJ_NO_IDENTITY] = "no_identity",
    [KS_REJ_NOT_TLS] = "not_tls",
    [KS_REJ_SHED] = "shed",
    [KS_REJ_RECORD_OVERFLOW] = "record_overflow",
    [KS_REJ_HANDSHAKE_CLOSE_NOTIFY] = "handshake_close_notify",
    [KS_REJ_FOREIGN_ROOT] = "foreign_root",
    [KS_REJ_NO_DESTINATION_ID] = "no_destination_id",
    [KS_REJ_RESOLVE_FAILED] = "resolve_failed",
};

const char *ks_reject_name(enum ks_reject r)
{
	return (unsigned)r < KS_REJ__COUNT ? ks_reject_names[r] : "unknown";
}

int ks_handshake_global_init(void)
{
	ks_peer_idx = SSL_get_ex_new_index(0, "ks_tls_peer", NULL, NULL, NULL);
	return ks_peer_idx < 0 ? -ENOMEM : 0;
}

void ks_tls_peer_fini(struct ks_tls_peer *p)
{
	free(p->peer_id);
	p->peer_id = NULL;
	free(p->facts);
	p->facts = NULL;
	ks_wipe(&p->secrets, sizeof(p->secrets)); /* also zeroes the lengths */
}

SSL *ks_handshake_start(struct ks_tls_peer *p, int fd)
{
	SSL *ssl = SSL_new(p->server ? p->ident->server_ctx : p->ident->client_ctx);

	if (!ssl)
		return NULL;
	/* A plain socket BIO without read-ahead reads exactly one record at a
	 * time, so OpenSSL never consumes bytes past the end of the handshake:
	 * those belong to the record layer that comes next (kTLS, ktls-facts.md). */
	SSL_set_read_ahead(ssl, 0);
	if (!SSL_set_fd(ssl, fd) || !SSL_set_ex_data(ssl, ks_peer_idx, p)) {
		SSL_free(ssl);
		return NULL;
	}
	if (p->server) {
		SSL_set_accept_state(ssl);
	} else {
		SSL_set_connect_state(ssl);
		ks_resume_offer(p, ssl);
	}
	return ssl;
}

enum ks_hs_status ks_handshake_step(SSL *ssl, struct ks_tls_peer *p)
{
	int ret, err;

	ERR_clear_error();
	ret = SSL_do_handshake(ssl);
	if (ret == 1) {
		const char *why = NULL;

		if (ks_resume_done(p, ssl, &why) == 0)
			return KS_HS_DONE;
		p->reject = KS_REJ_PROTOCOL_ERROR;
		p->reject_why = why;
		p->ssl_err = SSL_ERROR_SSL;
		return KS_HS_FAILED;
	}
	err = SSL_get_error(ssl, ret);
	if (err == SSL_ERROR_WANT_READ)
		return KS_HS_WANT_READ;
	if (err == SSL_ERROR_WANT_WRITE)
		return KS_HS_WANT_WRITE;
	p->ssl_err = err;
	return KS_HS_FAILED;
}

static enum ks_reject map_verify_error(long v)
{
	switch (v) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return KS_REJ_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return KS_REJ_NOT_YET_VALID;
	case X509_V_ERR_CERT_REVOKED:
		return KS_REJ_REVOKED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
		return KS_REJ_UNKNOWN_CA;
	default:
		return KS_REJ_BAD_CERTIFICATE;
	}
}

enum ks_reject ks_handshake_classify(SSL *ssl, struct ks_tls_peer *c, int sslerr, char *detail,
				     size_t len)
{
	unsigned long e = ERR_peek_error();
	int reason = e ? ERR_GET_REASON(e) : 0;

	detail[0] = '\0';
	if (c->reject != KS_REJ_NONE) {
		/* Our own identity check failed inside verification. */
		snprintf(detail, len, "%s", c->reject_why ? c->reject_why : "");
	} else if (c->verify_err != X509_V_OK) {
		c->reject = map_verify_error(c->verify_err);
		snprintf(detail, len, "%s", X509_verify_cert_error_string(c->verify_err));
	} else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		c->reject = KS_REJ_NO_CLIENT_CERT;
		snprintf(detail, len, "peer sent no certificate");
	} else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET &&
		   reason < SSL_AD_REASON_OFFSET + 256) {
		/* OpenSSL encodes a received alert as SSL_AD_REASON_OFFSET + code. */
		c->reject = KS_REJ_PEER_REJECTED;
		snprintf(detail, len, "peer sent alert: %s",
			 SSL_alert_desc_string_long(reason - SSL_AD_REASON_OFFSET));
	} else if (sslerr == SSL_ERROR_ZERO_RETURN) {
		/* A close_notify alert (RFC 8446 §6.1): the peer ended the
		 * connection on purpose, which is neither an EOF nor garbage. */
		c->reject = KS_REJ_HANDSHAKE_CLOSE_NOTIFY;
		snprintf(detail, len, "the peer sent close_notify before the handshake finished");
	} else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
		   (reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
		    reason == SSL_R_ENCRYPTED_LENGTH_TOO_LONG ||
		    reason == SSL_R_DATA_LENGTH_TOO_LONG)) {
		/* A TLS record header whose length is over 2^14 (+256 for
		 * ciphertext): RFC 8446 §5.1-5.2 call this record_overflow. It
		 * is TLS framing, so it is not "not TLS", whatever the state. */
		c->reject = KS_REJ_RECORD_OVERFLOW;
		snprintf(detail, len, "a TLS record header announced a length over the limit (%s)",
			 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "?");
	} else if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING ||
		   (sslerr == SSL_ERROR_SYSCALL && !e)) {
		c->reject = KS_REJ_PEER_CLOSED;
		snprintf(detail, len, "%s",
			 errno && sslerr == SSL_ERROR_SYSCALL ? strerror(errno)
							      : "connection closed by peer");
	} else if (c->server && ssl && SSL_get_state(ssl) == TLS_ST_BEFORE && e &&
		   ERR_GET_LIB(e) == ERR_LIB_SSL) {
		/* Not one ClientHello was read: the client does not speak TLS
		 * (plaintext HTTP, say). Strict mode refuses it by name. */
		c->reject = KS_REJ_NOT_TLS;
		snprintf(detail, len, "the client did not start with a TLS handshake (%s)",
			 ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "?");
	} else {
		char buf[256];

		c->reject = KS_REJ_PROTOCOL_ERROR;
		if (e)
			ERR_error_string_n(e, buf, sizeof(buf));
		else
			snprintf(buf, sizeof(buf), "SSL error %d", sslerr);
		snprintf(detail, len, "%s", buf);
	}
	ERR_clear_error();
	return c->reject;
}

int ks_handshake_verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct ks_tls_peer *c = ssl ? SSL_get_ex_data(ssl, ks_peer_idx) : NULL;
	char id[KS_SPIFFE_MAX + 1];
	const ASN1_INTEGER *serial;
	enum ks_reject rej;
	const char *why;
	X509 *leaf, *issuer;
	unsigned mdlen = 0;

	if (!c)
		return ok;
	if (!ok) {
		/* With CRLs pushed, OpenSSL wants one from every issuer; one that
		 * published none has revoked nothing we know of. */
		if (X509_STORE_CTX_get_error(xs) == X509_V_ERR_UNABLE_TO_GET_CRL)
			return 1;
		if (c->verify_err == X509_V_OK)
			c->verify_err = X509_STORE_CTX_get_error(xs);
		return 0;
	}
	if (X509_STORE_CTX_get_error_depth(xs) != 0)
		return 1;
	leaf = X509_STORE_CTX_get_current_cert(xs);
	/* X509-SVID.md §4.1: a leaf SVID must not be a CA. */
	if (X509_check_ca(leaf) != 0) {
		c->reject = KS_REJ_BAD_CERTIFICATE;
		c->reject_why = "peer leaf certificate is a CA certificate";
		goto refuse;
	}
	if (ks_spiffe_from_cert(leaf, id, sizeof(id), &why) < 0) {
		c->reject = KS_REJ_NO_SPIFFE_ID;
		c->reject_why = why;
		goto refuse;
	}
	free(c->peer_id);
	c->peer_id = strdup(id);
	/* Authentication before authorization: a root vouches only for its
	 * own trust domain (SPIFFE federation), however many roots we hold. */
	if (!ks_trust_root_ok(c->ident->trust_domain, c->ident->bundle, c->ident->fed,
			      c->ident->nfed, id, X509_STORE_CTX_get0_chain(xs), &why)) {
		c->reject = KS_REJ_FOREIGN_ROOT;
		c->reject_why = why;
		goto refuse;
	}
	/* Kept so a CRL pushed later can close this connection (the data plane). */
	serial = X509_get0_serialNumber(leaf);
	issuer = sk_X509_value(X509_STORE_CTX_get0_chain(xs), 1);
	c->serial_len = 0;
	if (issuer && X509_pubkey_digest(issuer, EVP_sha256(), c->issuer_key, &mdlen) &&
	    mdlen == sizeof(c->issuer_key) && ASN1_STRING_length(serial) > 0 &&
	    (size_t)ASN1_STRING_length(serial) <= sizeof(c->serial)) {
		c->serial_len = (uint8_t)ASN1_STRING_length(serial);
		memcpy(c->serial, ASN1_STRING_get0_data(serial), c->serial_len);
	}
	rej = ks_authz_peer(c, leaf, id, &why);
	if (rej != KS_REJ_NONE) {
		c->reject = rej;
		c->reject_why = why;
		goto refuse;
	}
	/* Authorized: what a later resumption must check again. Without it,
	 * this connection gets no ticket (none that could be re-validated). */
	if (c->ident->res && ks_resume_capture(c, X509_STORE_CTX_get0_chain(xs), id) < 0)
		SSL_set_num_tickets(ssl, 0);
	return 1;
refuse:
	X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

void ks_handshake_keylog_cb(const SSL *ssl, const char *line)
{
	struct ks_tls_peer *c = SSL_get_ex_data(ssl, ks_peer_idx);

	if (!c)
		return;
	(void)ks_ktls_keylog_line(&c->secrets, line);
}

int ks_handshake_ticket_gen_cb(SSL *ssl, void *arg)
{
	struct ks_tls_peer *c = SSL_get_ex_data(ssl, ks_peer_idx);

	(void)arg;
	return c ? ks_resume_seal(c, SSL_get_session(ssl)) : 1;
}

SSL_TICKET_RETURN ks_handshake_ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
					     size_t name_len, SSL_TICKET_STATUS status, void *arg)
{
	struct ks_tls_peer *c = SSL_get_ex_data(ssl, ks_peer_idx);

	(void)name;
	(void)name_len;
	(void)arg;
	return c ? ks_resume_open(c, sess, status) : SSL_TICKET_RETURN_IGNORE_RENEW;
}

int ks_handshake_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct ks_tls_peer *c = SSL_get_ex_data(ssl, ks_peer_idx);

	if (!c)
		return 0;
	if (c->tickets < UINT8_MAX)
		c->tickets++;
	return ks_resume_store(c, sess);
}

void ks_handshake_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
			 SSL *ssl, void *arg)
{
	struct ks_tls_peer *c = SSL_get_ex_data(ssl, ks_peer_idx);

	(void)version;
	(void)arg;
	if (c)
		ks_ktls_seq_msg(&c->seq, write_p, content_type, buf, len);
}
