/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS 1.3 session resumption that is as safe as a full handshake.
 *
 * - psk_dhe_ke only (RFC 8446 §4.2.9): OpenSSL offers and accepts psk_ke
 *   only with SSL_OP_ALLOW_NO_DHE_KEX, which we never set, and a resumed
 *   connection without an (EC)DHE group is refused anyway. No 0-RTT: early
 *   data stays at 0 on both sides (RFC 8446 §8: replayable).
 * - Server: stateless tickets (tls/tickets.h). Client: one ticket used
 *   once, from a cache per route and expected server ID (tls/sesscache.h).
 * - Re-validation on every resumption, with no signature work. OpenSSL
 *   keeps the peer's leaf in a session, not its chain, so what a check needs
 *   travels with the session ("facts": the server puts them in the ticket's
 *   app data, sealed with the session; the client keeps them beside its
 *   ticket): the digest of the peer trust domain's bundle at verification,
 *   the validity window of the whole chain, and each certificate's issuer key
 *   and serial. A resumption is accepted only if a full handshake would
 *   pass now: the same bundle, no certificate of the chain in a CRL we hold
 *   (nor a CRL of its issuer past nextUpdate), the SPIFFE policy and pins
 *   of now (tls/authz.h), the chain within its validity, and the ticket
 *   within its lifetime (--session-lifetime, and never past the peer's
 *   notAfter). A refusal is not an error: a full handshake follows, which
 *   decides on its own.
 */
#ifndef KS_TLS_RESUME_H
#define KS_TLS_RESUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "tls/handshake.h"
#include "tls/sesscache.h"
#include "tls/tickets.h"

/* --session-lifetime bounds: RFC 8446 §4.6.1 allows tickets 7 days at most. */
#define KS_SESSION_LIFETIME_DEFAULT_S 3600
#define KS_SESSION_LIFETIME_MAX_S     (7 * 86400)

/* The process's resumption state: made by the daemon, outlives every identity. */
struct ks_resumption {
	uint32_t lifetime_s;
	struct ks_ticket_ring ring; /* server: ticket keys */
	struct ks_sess_cache cache; /* client: tickets */
};

int ks_resumption_init(struct ks_resumption *r, uint32_t lifetime_s);
void ks_resumption_fini(struct ks_resumption *r);

/* Why a ticket was not used (resume_refused reason=, the metric's label). */
enum ks_resume_why {
	KS_RES_OK,
	KS_RES_UNKNOWN_KEY,    /* server: its key is gone (rotated out, another replica's) */
	KS_RES_LIFETIME,       /* past --session-lifetime (or the ticket's own) */
	KS_RES_BUNDLE_CHANGED, /* the peer trust domain's bundle is not the one that verified it */
	KS_RES_REVOKED,
	KS_RES_CRL_EXPIRED, /* a CRL of the chain's issuers is past nextUpdate */
	KS_RES_EXPIRED,
	KS_RES_NOT_YET_VALID,
	KS_RES_IDENTITY_NOT_ALLOWED,
	KS_RES_SERVER_ID_MISMATCH,
	KS_RES_PIN_MISMATCH,
	KS_RES_NO_SPIFFE_ID,
	KS_RES_MALFORMED, /* no or unreadable facts */
	KS_RES__COUNT
};

const char *ks_resume_why_name(enum ks_resume_why w);

/* The facts of one verified chain (decoded form). */
#define KS_RESUME_CHAIN_MAX 10 /* SSL_CTX_set_verify_depth(8): leaf + 8 + anchor */
struct ks_resume_cert {
	uint8_t issuer_key[32]; /* SHA-256 of the issuer's public key (as the CRL sweep) */
	uint8_t serial[20];	/* RFC 5280 §4.1.2.2: 20 octets at most */
	uint8_t serial_len;
};
struct ks_resume_facts {
	int64_t not_before, not_after; /* the chain's latest notBefore, earliest notAfter */
	uint8_t bundle[32];	       /* digest of the peer trust domain's bundle */
	uint8_t n;		       /* certificates below the anchor, leaf first */
	struct ks_resume_cert certs[KS_RESUME_CHAIN_MAX];
};

#define KS_RESUME_FACTS_MAX (1 + 1 + 8 + 8 + 32 + KS_RESUME_CHAIN_MAX * (32 + 1 + 20))

/* Encoded form (ticket app data, the client cache); returns its length. */
size_t ks_resume_facts_encode(const struct ks_resume_facts *f, uint8_t out[KS_RESUME_FACTS_MAX]);
/* -EINVAL for anything but an exact, well-formed encoding. */
int ks_resume_facts_decode(const uint8_t *in, size_t len, struct ks_resume_facts *f);

/*
 * The digest of the bundle that anchors IDs of trust domain td for ident
 * (our own, or a federated one). -ENOENT when ident has none for td.
 */
int ks_resume_bundle_digest(const struct ks_identity *ident, const char *td, uint8_t out[32]);

/*
 * Verification, at the leaf (chain as verified, anchor last): the facts a
 * later resumption needs, into p->facts (allocated). -errno when they
 * cannot be kept (the connection then gets no ticket).
 */
int ks_resume_capture(struct ks_tls_peer *p, STACK_OF(X509) * chain, const char *peer_id);

/*
 * Would the peer whose leaf and facts these are pass a full handshake on
 * p's connection now (wall-clock seconds), its ticket issued at issued
 * and good for lifetime_s? KS_RES_OK, with its ID in id; else why not.
 */
enum ks_resume_why ks_resume_check(const struct ks_tls_peer *p, X509 *leaf,
				   const struct ks_resume_facts *f, int64_t now, char *id,
				   size_t idlen);

/* Server, OpenSSL's ticket callbacks (SSL_CTX_set_session_ticket_cb), for p's connection. */
int ks_resume_seal(struct ks_tls_peer *p, SSL_SESSION *sess);
SSL_TICKET_RETURN ks_resume_open(struct ks_tls_peer *p, SSL_SESSION *sess,
				 SSL_TICKET_STATUS status);

/* Client: offers a cached ticket that passes the check, if any (before the handshake). */
void ks_resume_offer(struct ks_tls_peer *p, SSL *ssl);
/* Client: a NewSessionTicket arrived (SSL_CTX_sess_set_new_cb): a copy is kept; returns 0. */
int ks_resume_store(struct ks_tls_peer *p, SSL_SESSION *sess);

/*
 * The handshake is over: p->resumed, and for a resumed session the peer's
 * ID, issuer and serial from its leaf and facts (what verification fills in
 * a full handshake). -EPROTO when a resumed session lacks what we require
 * (an (EC)DHE share, facts): the connection must be refused.
 */
int ks_resume_done(struct ks_tls_peer *p, SSL *ssl, const char **why);

#endif
