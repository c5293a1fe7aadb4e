/* SPDX-License-Identifier: Apache-2.0 */
#include "handshake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "conn.h"
#include "identity.h"
#include "ktls.h"
#include "loop.h"
#include "policy.h"
#include "spiffe.h"
#include "worker.h"

static int ks_conn_idx = -1;

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
};

const char *ks_reject_name(enum ks_reject r)
{
	return (unsigned)r < KS_REJ__COUNT ? ks_reject_names[r] : "unknown";
}

int ks_handshake_global_init(void)
{
	ks_conn_idx = SSL_get_ex_new_index(0, "ks_conn", NULL, NULL, NULL);
	return ks_conn_idx < 0 ? -ENOMEM : 0;
}

int ks_handshake_start(struct ks_conn *c)
{
	bool server = c->route->dir == KS_INBOUND;

	c->ssl = SSL_new(server ? c->ident->server_ctx : c->ident->client_ctx);
	if (!c->ssl)
		return -ENOMEM;
	/* A plain socket BIO without read-ahead reads exactly one record at a
	 * time, so OpenSSL never consumes bytes past the end of the handshake:
	 * those belong to the record layer that comes next (kTLS, ktls-facts.md). */
	SSL_set_read_ahead(c->ssl, 0);
	if (!SSL_set_fd(c->ssl, c->tls_fd) || !SSL_set_ex_data(c->ssl, ks_conn_idx, c)) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		return -ENOMEM;
	}
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	return 0;
}

int ks_handshake_step(struct ks_conn *c, uint32_t *want)
{
	int ret, err;

	ERR_clear_error();
	ret = SSL_do_handshake(c->ssl);
	if (ret == 1)
		return 1;
	err = SSL_get_error(c->ssl, ret);
	if (err == SSL_ERROR_WANT_READ) {
		*want = KS_EV_IN;
		return 0;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		*want = KS_EV_OUT;
		return 0;
	}
	c->ssl_err = err;
	return -1;
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

enum ks_reject ks_handshake_classify(struct ks_conn *c, int sslerr, char *detail, size_t len)
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
	} else if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING ||
		   (sslerr == SSL_ERROR_SYSCALL && !e)) {
		c->reject = KS_REJ_PEER_CLOSED;
		snprintf(detail, len, "%s",
			 errno && sslerr == SSL_ERROR_SYSCALL ? strerror(errno)
							      : "connection closed by peer");
	} else if (c->route->dir == KS_INBOUND && c->ssl &&
		   SSL_get_state(c->ssl) == TLS_ST_BEFORE && e && ERR_GET_LIB(e) == ERR_LIB_SSL) {
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
	struct ks_conn *c = ssl ? SSL_get_ex_data(ssl, ks_conn_idx) : NULL;
	char id[KS_SPIFFE_MAX + 1];
	const struct ks_route_policy *rp;
	const ASN1_INTEGER *serial;
	const char *why, *expect;
	X509 *leaf;
	bool allowed;

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
	/* Kept so a CRL pushed later can close this connection (worker.c). */
	serial = X509_get0_serialNumber(leaf);
	c->peer_issuer_hash = X509_NAME_hash_ex(X509_get_issuer_name(leaf), NULL, NULL, NULL);
	c->peer_serial_len = 0;
	if (ASN1_STRING_length(serial) > 0 &&
	    (size_t)ASN1_STRING_length(serial) <= sizeof(c->peer_serial)) {
		c->peer_serial_len = (uint8_t)ASN1_STRING_length(serial);
		memcpy(c->peer_serial, ASN1_STRING_get0_data(serial), c->peer_serial_len);
	}
	if (c->route->dir == KS_INBOUND) {
		allowed = ks_policy_allows_inbound(&c->ident->pol, id, c->ident->trust_domain);
		if (!allowed) {
			c->reject = KS_REJ_IDENTITY_NOT_ALLOWED;
			c->reject_why = c->ident->pol.nallow
					    ? "peer ID matches no allowed pattern"
					    : "peer ID is outside our trust domain";
			goto refuse;
		}
		return 1;
	}
	rp = ks_policy_route(&c->ident->pol, c->route->listen_str);
	expect = rp && rp->server_id ? rp->server_id : c->route->expect_id;
	if (!ks_policy_server_ok(expect, id, c->ident->trust_domain)) {
		c->reject = KS_REJ_SERVER_ID_MISMATCH;
		c->reject_why = expect ? "server ID does not match the route's expected ID"
				       : "server ID is outside our trust domain";
		goto refuse;
	}
	if (!ks_policy_pin_ok(rp, leaf)) {
		c->reject = KS_REJ_PIN_MISMATCH;
		c->reject_why = "server key matches none of the route's SPKI pins";
		goto refuse;
	}
	return 1;
refuse:
	X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

void ks_handshake_keylog_cb(const SSL *ssl, const char *line)
{
	struct ks_conn *c = SSL_get_ex_data(ssl, ks_conn_idx);

	if (!c)
		return;
	(void)ks_ktls_keylog_line(&c->secrets, line);
}

void ks_handshake_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
			 SSL *ssl, void *arg)
{
	struct ks_conn *c = SSL_get_ex_data(ssl, ks_conn_idx);

	(void)version;
	(void)arg;
	if (c)
		ks_ktls_seq_msg(&c->seq, write_p, content_type, buf, len);
}
