/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/resume.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "common/net.h"
#include "tls/authz.h"
#include "tls/identity.h"
#include "tls/spiffe.h"

#define FACTS_VERSION 1

int ks_resumption_init(struct ks_resumption *r, uint32_t lifetime_s)
{
	int rc;

	memset(r, 0, sizeof(*r));
	if (lifetime_s < 1 || lifetime_s > KS_SESSION_LIFETIME_MAX_S)
		return -EINVAL;
	r->lifetime_s = lifetime_s;
	/* A key encrypts for one lifetime and decrypts for one more: a ticket
	 * is never refused for its key while it is within its lifetime. */
	rc = ks_ticket_ring_init(&r->ring, lifetime_s);
	if (rc < 0)
		return rc;
	ks_sess_cache_init(&r->cache);
	return 0;
}

void ks_resumption_fini(struct ks_resumption *r)
{
	ks_ticket_ring_fini(&r->ring);
	ks_sess_cache_fini(&r->cache);
}

const char *ks_resume_why_name(enum ks_resume_why w)
{
	static const char *const names[KS_RES__COUNT] = {
	    [KS_RES_OK] = "none",
	    [KS_RES_UNKNOWN_KEY] = "unknown_key",
	    [KS_RES_LIFETIME] = "lifetime",
	    [KS_RES_BUNDLE_CHANGED] = "bundle_changed",
	    [KS_RES_REVOKED] = "revoked",
	    [KS_RES_CRL_EXPIRED] = "crl_expired",
	    [KS_RES_EXPIRED] = "expired",
	    [KS_RES_NOT_YET_VALID] = "not_yet_valid",
	    [KS_RES_IDENTITY_NOT_ALLOWED] = "identity_not_allowed",
	    [KS_RES_SERVER_ID_MISMATCH] = "server_id_mismatch",
	    [KS_RES_PIN_MISMATCH] = "pin_mismatch",
	    [KS_RES_NO_SPIFFE_ID] = "no_spiffe_id",
	    [KS_RES_MALFORMED] = "malformed",
	};

	return (unsigned)w < KS_RES__COUNT ? names[w] : "unknown";
}

/* ---------------------------------------------------------------- facts */

static void put64(uint8_t *p, int64_t v)
{
	for (int i = 7; i >= 0; i--, v = (int64_t)((uint64_t)v >> 8))
		p[i] = (uint8_t)v;
}

static int64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return (int64_t)v;
}

size_t ks_resume_facts_encode(const struct ks_resume_facts *f, uint8_t out[KS_RESUME_FACTS_MAX])
{
	size_t o = 0;

	out[o++] = FACTS_VERSION;
	out[o++] = f->n;
	put64(out + o, f->not_before);
	o += 8;
	put64(out + o, f->not_after);
	o += 8;
	memcpy(out + o, f->bundle, 32);
	o += 32;
	for (size_t i = 0; i < f->n && i < KS_RESUME_CHAIN_MAX; i++) {
		memcpy(out + o, f->certs[i].issuer_key, 32);
		o += 32;
		out[o++] = f->certs[i].serial_len;
		memcpy(out + o, f->certs[i].serial, f->certs[i].serial_len);
		o += f->certs[i].serial_len;
	}
	return o;
}

int ks_resume_facts_decode(const uint8_t *in, size_t len, struct ks_resume_facts *f)
{
	size_t o = 0;

	memset(f, 0, sizeof(*f));
	if (!in || len < 50 || in[0] != FACTS_VERSION || in[1] > KS_RESUME_CHAIN_MAX)
		return -EINVAL;
	f->n = in[1];
	f->not_before = get64(in + 2);
	f->not_after = get64(in + 10);
	memcpy(f->bundle, in + 18, 32);
	o = 50;
	for (size_t i = 0; i < f->n; i++) {
		if (len - o < 33)
			return -EINVAL;
		memcpy(f->certs[i].issuer_key, in + o, 32);
		o += 32;
		f->certs[i].serial_len = in[o++];
		if (f->certs[i].serial_len == 0 || f->certs[i].serial_len > 20 ||
		    len - o < f->certs[i].serial_len)
			return -EINVAL;
		memcpy(f->certs[i].serial, in + o, f->certs[i].serial_len);
		o += f->certs[i].serial_len;
	}
	return o == len && f->not_before <= f->not_after ? 0 : -EINVAL;
}

int ks_resume_bundle_digest(const struct ks_identity *ident, const char *td, uint8_t out[32])
{
	const uint8_t *digest = NULL;
	unsigned len = 0;
	uint8_t buf[KS_SPIFFE_TD_MAX + 1 + 32];
	size_t tdlen = strlen(td);

	/* Precomputed per bundle when the identity was built (identity.c);
	 * the trust domain goes in too, so no two trust domains' bundles
	 * ever compare equal. */
	if (strcmp(td, ident->trust_domain) == 0 && sk_X509_num(ident->bundle) > 0)
		digest = ident->bundle_digest;
	for (size_t i = 0; !digest && i < ident->nfed; i++)
		if (strcmp(ident->fed[i].td, td) == 0)
			digest = ident->fed[i].digest;
	if (!digest || tdlen > KS_SPIFFE_TD_MAX)
		return -ENOENT;
	memcpy(buf, td, tdlen + 1);
	memcpy(buf + tdlen + 1, digest, 32);
	if (!EVP_Digest(buf, tdlen + 1 + 32, out, &len, EVP_sha256(), NULL) || len != 32)
		return -EIO;
	return 0;
}

static int asn1_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return -EINVAL;
	*out = (int64_t)timegm(&tm);
	return 0;
}

int ks_resume_capture(struct ks_tls_peer *p, STACK_OF(X509) * chain, const char *peer_id)
{
	struct ks_resume_facts *f;
	char td[KS_SPIFFE_TD_MAX + 1];
	int n = sk_X509_num(chain);
	int rc = -EINVAL;

	free(p->facts);
	p->facts = NULL;
	if (n < 1 || n - 1 > KS_RESUME_CHAIN_MAX)
		return -E2BIG;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->not_before = INT64_MIN;
	f->not_after = INT64_MAX;
	for (int i = 0; i < n; i++) {
		X509 *x = sk_X509_value(chain, i);
		int64_t nb, na;

		if (asn1_unix(X509_get0_notBefore(x), &nb) < 0 ||
		    asn1_unix(X509_get0_notAfter(x), &na) < 0)
			goto cleanup;
		if (nb > f->not_before)
			f->not_before = nb;
		if (na < f->not_after)
			f->not_after = na;
	}
	for (int i = 0; i + 1 < n; i++) {
		const ASN1_INTEGER *serial = X509_get0_serialNumber(sk_X509_value(chain, i));
		struct ks_resume_cert *c = &f->certs[i];
		unsigned len = 0;
		int slen = ASN1_STRING_length(serial);

		if (slen < 1 || slen > (int)sizeof(c->serial) ||
		    !X509_pubkey_digest(sk_X509_value(chain, i + 1), EVP_sha256(), c->issuer_key,
					&len) ||
		    len != sizeof(c->issuer_key))
			goto cleanup;
		c->serial_len = (uint8_t)slen;
		memcpy(c->serial, ASN1_STRING_get0_data(serial), (size_t)slen);
		f->n++;
	}
	if (ks_spiffe_trust_domain(peer_id, td, sizeof(td)) < 0 ||
	    ks_resume_bundle_digest(p->ident, td, f->bundle) < 0)
		goto cleanup;
	p->facts = f;
	f = NULL;
	rc = 0;
cleanup:
	free(f);
	ERR_clear_error();
	return rc;
}

/* ---------------------------------------------------------------- the check */

/* Any CRL we hold from the issuer (by key) of one of the chain's certificates, past nextUpdate? */
static bool crl_stale(const struct ks_identity *ident, const struct ks_resume_facts *f, time_t now)
{
	for (int i = 0; ident->crls && i < sk_X509_CRL_num(ident->crls); i++) {
		const ASN1_TIME *next = X509_CRL_get0_nextUpdate(sk_X509_CRL_value(ident->crls, i));

		if (!next || X509_cmp_time(next, &now) > 0)
			continue;
		for (size_t j = 0; j < f->n; j++)
			if (memcmp(ident->crl_signer[i], f->certs[j].issuer_key, 32) == 0)
				return true;
	}
	return false;
}

static enum ks_resume_why why_of(enum ks_reject r)
{
	switch (r) {
	case KS_REJ_IDENTITY_NOT_ALLOWED:
		return KS_RES_IDENTITY_NOT_ALLOWED;
	case KS_REJ_SERVER_ID_MISMATCH:
		return KS_RES_SERVER_ID_MISMATCH;
	case KS_REJ_PIN_MISMATCH:
		return KS_RES_PIN_MISMATCH;
	default:
		return KS_RES_MALFORMED;
	}
}

enum ks_resume_why ks_resume_check(const struct ks_tls_peer *p, X509 *leaf,
				   const struct ks_resume_facts *f, int64_t now, char *id,
				   size_t idlen)
{
	char td[KS_SPIFFE_TD_MAX + 1];
	const ASN1_INTEGER *serial;
	uint8_t bundle[32];
	const char *why;
	enum ks_reject rej;

	if (!leaf || !p->ident)
		return KS_RES_MALFORMED;
	if (ks_spiffe_from_cert(leaf, id, idlen, &why) < 0)
		return KS_RES_NO_SPIFFE_ID;
	/* The facts must be this leaf's: its serial heads the chain. */
	serial = X509_get0_serialNumber(leaf);
	if (f->n == 0 || ASN1_STRING_length(serial) != f->certs[0].serial_len ||
	    memcmp(ASN1_STRING_get0_data(serial), f->certs[0].serial, f->certs[0].serial_len) != 0)
		return KS_RES_MALFORMED;
	if (now < f->not_before)
		return KS_RES_NOT_YET_VALID;
	if (now >= f->not_after)
		return KS_RES_EXPIRED;
	if (ks_spiffe_trust_domain(id, td, sizeof(td)) < 0)
		return KS_RES_NO_SPIFFE_ID;
	if (ks_resume_bundle_digest(p->ident, td, bundle) < 0 ||
	    memcmp(bundle, f->bundle, sizeof(bundle)) != 0)
		return KS_RES_BUNDLE_CHANGED;
	for (size_t i = 0; i < f->n; i++)
		if (ks_identity_revoked(p->ident, f->certs[i].issuer_key, f->certs[i].serial,
					f->certs[i].serial_len))
			return KS_RES_REVOKED;
	if (crl_stale(p->ident, f, (time_t)now))
		return KS_RES_CRL_EXPIRED;
	rej = ks_authz_peer(p, leaf, id, &why);
	return rej == KS_REJ_NONE ? KS_RES_OK : why_of(rej);
}

/* ---------------------------------------------------------------- server */

int ks_resume_seal(struct ks_tls_peer *p, SSL_SESSION *sess)
{
	const struct ks_resumption *res = p->ident ? p->ident->res : NULL;
	uint8_t buf[KS_RESUME_FACTS_MAX];
	int64_t now = (int64_t)time(NULL), life;
	size_t len;

	/* Without facts the ticket carries none and is refused when it comes
	 * back (malformed): we cannot withdraw a ticket from here. */
	if (!p->facts || !res)
		return SSL_SESSION_set1_ticket_appdata(sess, NULL, 0);
	len = ks_resume_facts_encode(p->facts, buf);
	if (!SSL_SESSION_set1_ticket_appdata(sess, buf, len))
		return 0;
	/* RFC 8446 §4.6.1: the lifetime we announce bounds the client's use. */
	life = res->lifetime_s;
	if (p->facts->not_after - now < life)
		life = p->facts->not_after - now;
	SSL_SESSION_set_timeout(sess, life > 0 ? (long)life : 1);
	return 1;
}

SSL_TICKET_RETURN ks_resume_open(struct ks_tls_peer *p, SSL_SESSION *sess, SSL_TICKET_STATUS status)
{
	const struct ks_resumption *res = p->ident ? p->ident->res : NULL;
	struct ks_resume_facts f;
	char id[KS_SPIFFE_MAX + 1];
	int64_t now = (int64_t)time(NULL), age, limit;
	void *data = NULL;
	size_t len = 0;
	enum ks_resume_why why;

	if (status == SSL_TICKET_NO_DECRYPT) {
		p->resume_why = KS_RES_UNKNOWN_KEY;
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	}
	if ((status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW) || !res || !sess)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	/* TLS 1.3 only: a TLS 1.2 resumption reuses the master secret, with no
	 * fresh (EC)DHE, and is never what psk_dhe_ke promises. */
	if (SSL_SESSION_get_protocol_version(sess) != TLS1_3_VERSION)
		return SSL_TICKET_RETURN_IGNORE;
	age = now - (int64_t)SSL_SESSION_get_time(sess);
	limit = SSL_SESSION_get_timeout(sess);
	if (limit > (int64_t)res->lifetime_s)
		limit = res->lifetime_s;
	if (age < 0 || age > limit) {
		p->resume_why = KS_RES_LIFETIME;
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	}
	if (!SSL_SESSION_get0_ticket_appdata(sess, &data, &len) ||
	    ks_resume_facts_decode(data, len, &f) < 0) {
		p->resume_why = KS_RES_MALFORMED;
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	}
	why = ks_resume_check(p, SSL_SESSION_get0_peer(sess), &f, now, id, sizeof(id));
	if (why != KS_RES_OK) {
		p->resume_why = (uint8_t)why;
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	}
	free(p->facts);
	p->facts = malloc(sizeof(f));
	if (!p->facts)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	*p->facts = f;
	/* RENEW: OpenSSL sends no new ticket on a resumption otherwise, and
	 * the client spent the one it used (each is used once). */
	return SSL_TICKET_RETURN_USE_RENEW;
}

/* ---------------------------------------------------------------- client */

/* The cache key: the route, a transparent route's destination, the expected ID. */
static int cache_key(const struct ks_tls_peer *p, char *key, size_t len)
{
	char dest[KS_ADDRSTRLEN] = "";
	const char *expect = ks_authz_expect(p);
	int n;

	if (p->dest)
		ks_addr_str(p->dest, dest, sizeof(dest));
	n = snprintf(key, len, "%s|%s|%s", p->route ? p->route : "", dest, expect ? expect : "");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

void ks_resume_offer(struct ks_tls_peer *p, SSL *ssl)
{
	struct ks_resumption *res = p->ident ? p->ident->res : NULL;
	char key[KS_SESS_KEY_MAX], id[KS_SPIFFE_MAX + 1];
	int64_t now = (int64_t)time(NULL);
	SSL_SESSION *sess;
	struct ks_resume_facts f;
	uint8_t *enc;
	size_t len;

	if (!res || p->server || cache_key(p, key, sizeof(key)) < 0)
		return;
	while ((sess = ks_sess_cache_take(&res->cache, key, now, &enc, &len))) {
		enum ks_resume_why why = KS_RES_MALFORMED;

		if (!SSL_SESSION_is_resumable(sess))
			why = KS_RES_MALFORMED;
		else if (ks_resume_facts_decode(enc, len, &f) == 0)
			why = ks_resume_check(p, SSL_SESSION_get0_peer(sess), &f, now, id,
					      sizeof(id));
		free(enc);
		if (why == KS_RES_OK && (p->facts = malloc(sizeof(f)))) {
			*p->facts = f;
			if (SSL_set_session(ssl, sess) != 1) {
				free(p->facts);
				p->facts = NULL;
			}
			SSL_SESSION_free(sess);
			return;
		}
		/* Its siblings are for the same server, most likely refused
		 * for the same reason: each is checked, none is offered unchecked. */
		p->resume_why = (uint8_t)why;
		SSL_SESSION_free(sess);
	}
	ERR_clear_error();
}

int ks_resume_store(struct ks_tls_peer *p, SSL_SESSION *sess)
{
	struct ks_resumption *res = p->ident ? p->ident->res : NULL;
	uint8_t buf[KS_RESUME_FACTS_MAX];
	char key[KS_SESS_KEY_MAX];
	SSL_SESSION *copy;
	int64_t expires, life;
	size_t len;

	if (!res || !p->facts || SSL_SESSION_get_protocol_version(sess) != TLS1_3_VERSION ||
	    !SSL_SESSION_is_resumable(sess) || cache_key(p, key, sizeof(key)) < 0)
		return 0;
	life = (int64_t)SSL_SESSION_get_ticket_lifetime_hint(sess);
	if (life > (int64_t)res->lifetime_s)
		life = res->lifetime_s;
	expires = (int64_t)SSL_SESSION_get_time(sess) + life;
	if (expires > p->facts->not_after)
		expires = p->facts->not_after;
	/* A copy: OpenSSL marks the connection's own session not resumable
	 * when the SSL is freed without a close_notify (ssl_clear_bad_session),
	 * as on the kernel path, where OpenSSL never sees the end. The ticket
	 * is good whatever becomes of this SSL. */
	copy = SSL_SESSION_dup(sess);
	if (!copy)
		return 0;
	len = ks_resume_facts_encode(p->facts, buf);
	if (ks_sess_cache_put(&res->cache, key, copy, buf, len, expires) < 0)
		SSL_SESSION_free(copy);
	return 0; /* OpenSSL keeps its own reference */
}

int ks_resume_done(struct ks_tls_peer *p, SSL *ssl, const char **why)
{
	X509 *leaf;
	char id[KS_SPIFFE_MAX + 1];
	const char *w;

	p->resumed = SSL_session_reused(ssl) == 1;
	if (!p->resumed) {
		if (p->server) { /* its tickets are out: the facts did their job */
			free(p->facts);
			p->facts = NULL;
		}
		return 0;
	}
	/* psk_dhe_ke: a resumption must still agree on a fresh (EC)DHE key
	 * (RFC 8446 §4.2.9); OpenSSL reports no group for psk_ke. */
	if (SSL_get_negotiated_group(ssl) == 0) {
		*why = "resumed without an (EC)DHE key exchange (psk_ke)";
		return -EPROTO;
	}
	leaf = SSL_get0_peer_certificate(ssl);
	if (!p->facts || p->facts->n == 0 || !leaf ||
	    ks_spiffe_from_cert(leaf, id, sizeof(id), &w) < 0) {
		*why = "resumed session without its verified peer";
		return -EPROTO;
	}
	free(p->peer_id);
	p->peer_id = strdup(id);
	memcpy(p->issuer_key, p->facts->certs[0].issuer_key, sizeof(p->issuer_key));
	memcpy(p->serial, p->facts->certs[0].serial, p->facts->certs[0].serial_len);
	p->serial_len = p->facts->certs[0].serial_len;
	if (p->server) {
		free(p->facts);
		p->facts = NULL;
	}
	return 0;
}
