/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The userspace TLS handshake, driven without blocking by the event loop,
 * and the authorization of the peer's SPIFFE ID inside certificate
 * verification (so a refused peer gets a TLS alert, not a silent close).
 * Every refusal is classified into one reason; the reason names are stable
 * because they become metric labels.
 */
#ifndef KS_HANDSHAKE_H
#define KS_HANDSHAKE_H

#include <stdint.h>

#include <openssl/ssl.h>

struct ks_conn;

enum ks_reject {
	KS_REJ_NONE,
	KS_REJ_NO_CLIENT_CERT,
	KS_REJ_UNKNOWN_CA,
	KS_REJ_EXPIRED,
	KS_REJ_NOT_YET_VALID,
	KS_REJ_BAD_CERTIFICATE, /* other chain or certificate errors */
	KS_REJ_NO_SPIFFE_ID,	/* no or malformed URI SAN */
	KS_REJ_IDENTITY_NOT_ALLOWED,
	KS_REJ_SERVER_ID_MISMATCH,
	KS_REJ_HANDSHAKE_TIMEOUT,
	KS_REJ_PEER_REJECTED, /* the peer sent us a fatal alert */
	KS_REJ_PEER_CLOSED,   /* EOF or reset mid-handshake */
	KS_REJ_PROTOCOL_ERROR,
	KS_REJ_UPSTREAM_FAILED,	 /* connect to the app or remote failed */
	KS_REJ_KTLS_UNAVAILABLE, /* --ktls=require and this connection cannot be offloaded */
	KS_REJ_REVOKED,		 /* in a pushed CRL: at handshake, or when the CRL arrived */
	KS_REJ_PIN_MISMATCH,	 /* outbound: the server's key is not one of the route's pins */
	KS_REJ_NO_IDENTITY,	 /* no certificate yet (waiting for the control plane) */
	KS_REJ_NOT_TLS,		 /* inbound, strict: the client did not speak TLS at all */
	KS_REJ__COUNT
};

const char *ks_reject_name(enum ks_reject r);

int ks_handshake_global_init(void);

/* Creates c->ssl for c->tls_fd from c->ident, in the role c's direction needs. */
int ks_handshake_start(struct ks_conn *c);

/*
 * Advances the handshake. Returns 1 when done, 0 when it must wait (*want
 * says for what on c->tls_fd), or -1 when it failed (c->reject is set and
 * ks_handshake_describe explains).
 */
int ks_handshake_step(struct ks_conn *c, uint32_t *want);

/*
 * Classifies a failed SSL call (ret, SSL_get_error code) into c->reject and
 * writes a detail string. Consumes the thread's OpenSSL error queue.
 */
enum ks_reject ks_handshake_classify(struct ks_conn *c, int sslerr, char *detail, size_t len);

int ks_handshake_verify_cb(int ok, X509_STORE_CTX *xs);
/* Keeps the TLS 1.3 application traffic secrets for the kernel hand-off. */
void ks_handshake_keylog_cb(const SSL *ssl, const char *line);
/* SSL_CTX_set_msg_callback: counts records for the kTLS hand-off. */
void ks_handshake_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
			 SSL *ssl, void *arg);

#endif
