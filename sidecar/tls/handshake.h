/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The userspace TLS handshake, driven without blocking by its owner, and the
 * authorization of the peer's SPIFFE ID inside certificate verification (so
 * a refused peer gets a TLS alert, not a silent close). Every refusal is
 * classified into one reason; the reason names are stable because they
 * become metric labels.
 *
 * The handshake knows nothing of sockets' owners or event loops: what it
 * needs about a connection, and what it learns, is in struct ks_tls_peer,
 * which the data plane embeds in its connection.
 */
#ifndef KS_TLS_HANDSHAKE_H
#define KS_TLS_HANDSHAKE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "tls/ktls.h"

struct ks_identity;
struct ks_resume_facts;

/* Why a connection was refused (the handshake fills the TLS ones). */
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
	KS_REJ_SHED,		 /* admission made room for a newcomer (dataplane/admission.h) */
	KS_REJ_RECORD_OVERFLOW,	 /* a record header with a length over the limit (RFC 8446 §5.1) */
	KS_REJ_HANDSHAKE_CLOSE_NOTIFY, /* the peer sent close_notify before the handshake ended */
	KS_REJ_FOREIGN_ROOT, /* the chain's root is not of the peer's trust domain (federation) */
	KS_REJ_NO_DESTINATION_ID, /* transparent outbound to a destination with no expected ID */
	KS_REJ_RESOLVE_FAILED,	  /* outbound: the route's name did not resolve */
	KS_REJ__COUNT
};

const char *ks_reject_name(enum ks_reject r);

/* One connection's handshake: what it needs, and what it learns. */
struct ks_tls_peer {
	/* Set by the owner before ks_handshake_start, borrowed. */
	bool server;		     /* inbound: we are the TLS server */
	const char *route;	     /* outbound: the route's LISTEN, to find its pushed policy */
	const char *expect_id;	     /* outbound: the route's id= pattern, or NULL */
	const struct sockaddr *dest; /* transparent outbound: the original destination */
	struct ks_identity *ident;   /* the identity the connection started with */

	/* The verified peer; peer_id is malloc'ed. The leaf's issuer (the
	 * SHA-256 of its public key: a name can be shared by two CAs, a key
	 * cannot) and serial (RFC 5280 §4.1.2.2: at most 20 octets) are kept
	 * for CRLs pushed after the handshake. */
	char *peer_id;
	uint8_t issuer_key[32];
	uint8_t serial[20];
	uint8_t serial_len;

	/* Resumption (tls/resume.h): the verified chain's facts, while a
	 * ticket may still need them (malloc'ed; NULL with resumption off);
	 * whether the session was resumed; why a ticket was refused
	 * (enum ks_resume_why, 0: none was); client tickets received. */
	struct ks_resume_facts *facts;
	bool resumed;
	uint8_t resume_why;
	uint8_t tickets;

	/* Why it failed: filled by verification and ks_handshake_classify. */
	enum ks_reject reject;
	const char *reject_why;
	long verify_err;
	int ssl_err;

	/* For the kTLS hand-off (opts.keylog): the traffic secrets, inline so
	 * there is no allocation to fail or to outlive the handshake's heap,
	 * and the records sent and received under them so far. */
	struct ks_ktls_secrets secrets;
	struct ks_ktls_seq seq;
};

/* Frees peer_id and the facts, and wipes the secrets. */
void ks_tls_peer_fini(struct ks_tls_peer *p);

int ks_handshake_global_init(void);

/* Creates the SSL for fd from p->ident, in the role p->server says. NULL on failure. */
SSL *ks_handshake_start(struct ks_tls_peer *p, int fd);

enum ks_hs_status { KS_HS_DONE, KS_HS_WANT_READ, KS_HS_WANT_WRITE, KS_HS_FAILED };

/* Advances the handshake. On KS_HS_FAILED p->ssl_err is set; classify it. */
enum ks_hs_status ks_handshake_step(SSL *ssl, struct ks_tls_peer *p);

/*
 * Classifies a failed SSL call (SSL_get_error code sslerr) into p->reject
 * and writes a detail string. Consumes the thread's OpenSSL error queue.
 */
enum ks_reject ks_handshake_classify(SSL *ssl, struct ks_tls_peer *p, int sslerr, char *detail,
				     size_t len);

int ks_handshake_verify_cb(int ok, X509_STORE_CTX *xs);
/* Keeps the TLS 1.3 application traffic secrets for the kernel hand-off. */
void ks_handshake_keylog_cb(const SSL *ssl, const char *line);
/* Resumption's OpenSSL callbacks (tls/resume.h), for the SSL's ks_tls_peer. */
int ks_handshake_ticket_gen_cb(SSL *ssl, void *arg);
SSL_TICKET_RETURN ks_handshake_ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
					     size_t name_len, SSL_TICKET_STATUS status, void *arg);
int ks_handshake_new_session_cb(SSL *ssl, SSL_SESSION *sess);
/* SSL_CTX_set_msg_callback: counts records for the kTLS hand-off. */
void ks_handshake_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
			 SSL *ssl, void *arg);

#endif
