/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/identity.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls/handshake.h"
#include "tls/pem.h"
#include "tls/resume.h"

/* RFC 8446 §9.1 mandates AES-128-GCM; we add the other two AEADs kTLS can offload. */
static const char ks_tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char ks_tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
				       "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
				       "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char ks_groups[] = "X25519:P-256";

static int check_key_type(EVP_PKEY *key, char *err, size_t errlen)
{
	char group[64];
	size_t glen = 0;

	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_group_name(key, group, sizeof(group), &glen) ||
		    strcmp(group, "prime256v1") != 0) {
			snprintf(err, errlen, "ECDSA key on curve %s: only P-256 is supported",
				 glen ? group : "?");
			return -EINVAL;
		}
		return 0;
	case EVP_PKEY_RSA:
		if (EVP_PKEY_get_bits(key) < 2048) {
			snprintf(err, errlen, "RSA key has %d bits: at least 2048 are required",
				 EVP_PKEY_get_bits(key));
			return -EINVAL;
		}
		return 0;
	default:
		snprintf(err, errlen, "unsupported key type %s: use ECDSA P-256 or RSA >= 2048",
			 OBJ_nid2sn(EVP_PKEY_get_base_id(key)));
		return -EINVAL;
	}
}

static int verify_own_chain(X509_STORE *store, X509 *leaf, STACK_OF(X509) * chain,
			    enum ks_ident_reason *reason, char *err, size_t errlen)
{
	X509_STORE_CTX *vctx = X509_STORE_CTX_new();
	int rc = -EINVAL;

	if (!vctx)
		return -ENOMEM;
	*reason = KS_IR_CHAIN_UNVERIFIED;
	if (!X509_STORE_CTX_init(vctx, store, leaf, chain)) {
		ks_ssl_err(err, errlen, "cannot set up chain verification");
		goto cleanup;
	}
	if (X509_verify_cert(vctx) != 1) {
		int e = X509_STORE_CTX_get_error(vctx);

		if (e == X509_V_ERR_CERT_HAS_EXPIRED)
			*reason = KS_IR_EXPIRED;
		else if (e == X509_V_ERR_CERT_NOT_YET_VALID)
			*reason = KS_IR_NOT_YET_VALID;
		snprintf(err, errlen,
			 "certificate does not verify against the trust bundle: %s (depth %d)",
			 X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(vctx));
		ERR_clear_error();
		goto cleanup;
	}
	*reason = KS_IR_NONE;
	rc = 0;
cleanup:
	X509_STORE_CTX_free(vctx);
	return rc;
}

/*
 * Session resumption (tls/resume.h). Stateless tickets: without
 * SSL_OP_NO_TICKET, OpenSSL's TLS 1.3 server seals the session into the
 * ticket (with our keys) and keeps no cache. One ticket per connection, full
 * or resumed: a client uses each once, so one in replaces the one used.
 * Never psk_ke (SSL_OP_ALLOW_NO_DHE_KEX stays clear), never 0-RTT.
 */
static int setup_resumption(SSL_CTX *ctx, bool server, struct ks_resumption *res)
{
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET | SSL_OP_ALLOW_NO_DHE_KEX);
	if (!SSL_CTX_set_max_early_data(ctx, 0) || !SSL_CTX_set_recv_max_early_data(ctx, 0))
		return -EINVAL;
	if (!server) {
		/* The session arrives with the NewSessionTicket; we keep it
		 * (tls/sesscache.h), OpenSSL's own client cache does not. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
							SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, ks_handshake_new_session_cb);
		return 0;
	}
	if (!SSL_CTX_set_num_tickets(ctx, 1))
		return -EINVAL;
	SSL_CTX_set_timeout(ctx, (long)res->lifetime_s);
	if (ks_ticket_ring_attach(ctx, &res->ring) < 0 ||
	    !SSL_CTX_set_session_ticket_cb(ctx, ks_handshake_ticket_gen_cb,
					   ks_handshake_ticket_dec_cb, NULL))
		return -EINVAL;
	return 0;
}

static SSL_CTX *make_ctx(const struct ks_tls_opts *opts, bool server, X509 *leaf, EVP_PKEY *key,
			 STACK_OF(X509) * chain, X509_STORE *store, unsigned long crl_flags,
			 char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	static const unsigned char sid_ctx[] = "ktls-sidecar";

	if (!ctx) {
		ks_ssl_err(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	/* Security level 2: RSA >= 2048, ECC >= 224 bits, for us and for peers. */
	SSL_CTX_set_security_level(ctx, 2);
	if (!SSL_CTX_set_min_proto_version(ctx, opts->min_version) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx,
				      opts->ciphersuites ? opts->ciphersuites : ks_tls13_suites) ||
	    !SSL_CTX_set_cipher_list(ctx, ks_tls12_ciphers) ||
	    !SSL_CTX_set1_groups_list(ctx, ks_groups)) {
		ks_ssl_err(err, errlen, "cannot configure TLS parameters");
		goto fail;
	}
	/* No renegotiation, no compression (CRIME). Resumption only as
	 * tls/resume.h has it, and without it no tickets at all. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
				     SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (server) {
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	}
	if (opts->res && setup_resumption(ctx, server, opts->res) < 0) {
		ks_ssl_err(err, errlen, "cannot set up session resumption");
		goto fail;
	}
	/* RELEASE_BUFFERS: an idle connection holds no 16 KiB record buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_clear_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) != 1) {
		ks_ssl_err(err, errlen, "cannot use certificate and key");
		goto fail;
	}
	if (!SSL_CTX_set1_verify_cert_store(ctx, store)) {
		ks_ssl_err(err, errlen, "cannot set trust bundle");
		goto fail;
	}
	/* With CRLs pushed, check every certificate of the peer's chain whose
	 * issuer published one (ks_handshake_verify_cb forgives the issuers
	 * that did not: RFC 5280 leaves the revocation source to the relying
	 * party, and we only have what the control plane gave us). */
	if (crl_flags)
		X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), crl_flags);
	SSL_CTX_set_verify(
	    ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
	    ks_handshake_verify_cb);
	SSL_CTX_set_verify_depth(ctx, 8);
	/* The only way OpenSSL 3.0 hands out the traffic secrets kTLS RX needs,
	 * and the record numbers that go with them. */
	if (opts->keylog && (server || opts->keylog_client)) {
		SSL_CTX_set_keylog_callback(ctx, ks_handshake_keylog_cb);
		SSL_CTX_set_msg_callback(ctx, ks_handshake_msg_cb);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static void time_str(const ASN1_TIME *t, char *buf, size_t len, int64_t *unix_time)
{
	struct tm tm;

	*unix_time = 0;
	if (ASN1_TIME_to_tm(t, &tm)) {
		snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		*unix_time = (int64_t)timegm(&tm);
	} else {
		snprintf(buf, len, "?");
	}
}

/* Fingerprints of a bundle's certificates, for status reports. */
static int fingerprints(STACK_OF(X509) * bundle, char (**out)[65], size_t *nout)
{
	int n = sk_X509_num(bundle);

	*nout = 0;
	*out = calloc(n > 0 ? (size_t)n : 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned mdlen = 0;

		if (!X509_digest(sk_X509_value(bundle, i), EVP_sha256(), md, &mdlen))
			continue;
		for (unsigned j = 0; j < mdlen && j < 32; j++)
			snprintf(&(*out)[*nout][2 * j], 3, "%02x", md[j]);
		(*nout)++;
	}
	return 0;
}

/*
 * One digest of a bundle: SHA-256 over its certificates' fingerprints in
 * order. Resumption compares it with the one a session was verified under
 * (tls/resume.h): any change to the set (or its order) is a change.
 */
static int bundle_digest(STACK_OF(X509) * certs, uint8_t out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc = -ENOMEM;

	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto cleanup;
	for (int i = 0; i < sk_X509_num(certs); i++) {
		unsigned char fp[EVP_MAX_MD_SIZE];
		unsigned fplen = 0;

		if (!X509_digest(sk_X509_value(certs, i), EVP_sha256(), fp, &fplen) ||
		    EVP_DigestUpdate(md, fp, fplen) != 1)
			goto cleanup;
	}
	if (EVP_DigestFinal_ex(md, out, NULL) == 1)
		rc = 0;
cleanup:
	EVP_MD_CTX_free(md);
	return rc;
}

static void identity_free(struct ks_identity *id)
{
	SSL_CTX_free(id->server_ctx);
	SSL_CTX_free(id->client_ctx);
	X509_free(id->leaf);
	sk_X509_pop_free(id->chain, X509_free);
	EVP_PKEY_free(id->key);
	sk_X509_pop_free(id->bundle, X509_free);
	for (size_t i = 0; i < id->nfed; i++) {
		sk_X509_pop_free(id->fed[i].certs, X509_free);
		free(id->fed[i].sha256);
	}
	free(id->fed);
	sk_X509_CRL_pop_free(id->crls, X509_CRL_free);
	free(id->crl_signer);
	ks_policy_free(&id->pol);
	free(id->bundle_sha256);
	free(id);
}

static STACK_OF(X509_CRL) * crls_up_ref(STACK_OF(X509_CRL) * in)
{
	STACK_OF(X509_CRL) *out = sk_X509_CRL_new_null();

	if (!out)
		return NULL;
	for (int i = 0; i < sk_X509_CRL_num(in); i++) {
		X509_CRL *crl = sk_X509_CRL_value(in, i);

		if (!X509_CRL_up_ref(crl))
			goto fail;
		if (!sk_X509_CRL_push(out, crl)) {
			X509_CRL_free(crl);
			goto fail;
		}
	}
	return out;
fail:
	sk_X509_CRL_pop_free(out, X509_CRL_free);
	return NULL;
}

static int store_add(X509_STORE *store, STACK_OF(X509) * certs)
{
	for (int i = 0; i < sk_X509_num(certs); i++)
		if (!X509_STORE_add_cert(store, sk_X509_value(certs, i)))
			return -ENOMEM;
	return 0;
}

/*
 * The identity's copies of p's federated bundles, checked: each names a
 * valid trust domain once and has at least one root.
 */
static int take_fed(const struct ks_ident_parts *p, struct ks_identity *id,
		    enum ks_ident_reason *reason, char *err, size_t errlen)
{
	const char *why;
	char td[KS_SPIFFE_TD_MAX + 1];

	if (!p->nfed)
		return 0;
	id->fed = calloc(p->nfed, sizeof(*id->fed));
	if (!id->fed)
		return -ENOMEM;
	for (size_t i = 0; i < p->nfed; i++) {
		struct ks_td_bundle *f = &id->fed[id->nfed];

		if (ks_spiffe_td_parse(p->fed[i].td, td, sizeof(td), &why) < 0 ||
		    strcmp(td, p->fed[i].td) != 0) {
			*reason = KS_IR_BAD_TRUST_DOMAIN;
			snprintf(err, errlen, "federated trust domain '%.*s': %s", 255,
				 p->fed[i].td, why ? why : "not in its bare form");
			return -EINVAL;
		}
		for (size_t j = 0; j < id->nfed; j++)
			if (strcmp(id->fed[j].td, td) == 0) {
				*reason = KS_IR_BAD_TRUST_DOMAIN;
				snprintf(err, errlen, "trust domain %s has two federated bundles",
					 td);
				return -EINVAL;
			}
		if (sk_X509_num(p->fed[i].certs) == 0) {
			*reason = KS_IR_NO_BUNDLE;
			snprintf(err, errlen, "the federated bundle of %s has no certificate", td);
			return -EINVAL;
		}
		memcpy(f->td, td, sizeof(td));
		f->certs = X509_chain_up_ref(p->fed[i].certs);
		if (!f->certs)
			return -ENOMEM;
		id->nfed++;
		if (fingerprints(f->certs, &f->sha256, &(size_t){0}) < 0 ||
		    bundle_digest(f->certs, f->digest) < 0)
			return -ENOMEM;
	}
	return 0;
}

/*
 * The trust stores: all for handshakes (our bundle and the federated ones:
 * OpenSSL builds the chain, ks_identity_root_ok then binds its root to the
 * peer's trust domain), own for our own chain (ours alone). NULL without a
 * bundle. Also the identity's copies of bundle and CRLs.
 */
static int take_bundle(const struct ks_ident_parts *p, struct ks_identity *id, X509_STORE **all,
		       X509_STORE **own)
{
	*all = *own = NULL;
	if (p->bundle) {
		id->bundle = X509_chain_up_ref(p->bundle);
		*all = X509_STORE_new();
		*own = X509_STORE_new();
		if (!id->bundle || !*all || !*own)
			return -ENOMEM;
		if (store_add(*all, p->bundle) < 0 || store_add(*own, p->bundle) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < id->nfed; i++)
			if (store_add(*all, id->fed[i].certs) < 0)
				return -ENOMEM;
		if (fingerprints(p->bundle, &id->bundle_sha256, &id->nbundle) < 0 ||
		    bundle_digest(p->bundle, id->bundle_digest) < 0)
			return -ENOMEM;
	}
	if (p->crls && sk_X509_CRL_num(p->crls)) {
		id->crls = crls_up_ref(p->crls);
		if (!id->crls)
			return -ENOMEM;
	}
	return 0;
}

/*
 * The checks on our own leaf, key and chain, each with its reason: the key
 * is one we accept and matches, the leaf is an X509-SVID of the configured
 * ID, and the chain verifies against the bundle now.
 */
static int check_leaf(const struct ks_tls_opts *opts, const struct ks_ident_parts *p,
		      X509_STORE *store, struct ks_identity *id, enum ks_ident_reason *reason,
		      char *err, size_t errlen)
{
	const char *why;

	if (!p->key) {
		*reason = KS_IR_NO_PENDING_KEY;
		snprintf(err, errlen, "certificate without a private key");
		return -EINVAL;
	}
	if (!store || sk_X509_num(p->bundle) == 0) {
		*reason = KS_IR_NO_BUNDLE;
		snprintf(err, errlen, "no trust bundle: push one first, or with the identity");
		return -EINVAL;
	}
	if (check_key_type(p->key, err, errlen) < 0) {
		*reason = KS_IR_WEAK_KEY;
		return -EINVAL;
	}
	if (X509_check_private_key(p->leaf, p->key) != 1) {
		*reason = KS_IR_KEY_MISMATCH;
		ks_ssl_err(err, errlen, "private key does not match the certificate");
		return -EINVAL;
	}
	if (ks_spiffe_from_cert(p->leaf, id->id, sizeof(id->id), &why) < 0) {
		*reason = KS_IR_NO_SPIFFE_ID;
		snprintf(err, errlen, "certificate is not a SPIFFE X509-SVID: %s", why);
		return -EINVAL;
	}
	if (opts->spiffe_id && strcmp(opts->spiffe_id, id->id) != 0) {
		*reason = KS_IR_ID_MISMATCH;
		snprintf(err, errlen, "certificate is for %s, but this sidecar is --spiffe-id %s",
			 id->id, opts->spiffe_id);
		return -EINVAL;
	}
	ks_spiffe_trust_domain(id->id, id->trust_domain, sizeof(id->trust_domain));
	for (size_t i = 0; i < id->nfed; i++)
		if (strcmp(id->fed[i].td, id->trust_domain) == 0) {
			*reason = KS_IR_BAD_TRUST_DOMAIN;
			snprintf(
			    err, errlen,
			    "a federated bundle is for %s, our own trust domain: give our own "
			    "roots as the trust bundle (--ca, or SetTrustBundle without a trust "
			    "domain)",
			    id->trust_domain);
			return -EINVAL;
		}
	return verify_own_chain(store, p->leaf, p->chain, reason, err, errlen);
}

/* Both SSL_CTXs, with the CRLs (after our own chain is checked: a CRL that
 * names us is the control plane's business, not a reason to stop). */
static int make_ctxs(const struct ks_tls_opts *opts, const struct ks_ident_parts *p,
		     X509_STORE *store, struct ks_identity *id, char *err, size_t errlen)
{
	unsigned long crl_flags = 0;

	for (int i = 0; id->crls && i < sk_X509_CRL_num(id->crls); i++) {
		if (!X509_STORE_add_crl(store, sk_X509_CRL_value(id->crls, i))) {
			ks_ssl_err(err, errlen, "cannot add a CRL to the trust store");
			return -EINVAL;
		}
		crl_flags = X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
	}
	id->server_ctx =
	    make_ctx(opts, true, p->leaf, p->key, p->chain, store, crl_flags, err, errlen);
	if (!id->server_ctx)
		return -EINVAL;
	id->client_ctx =
	    make_ctx(opts, false, p->leaf, p->key, p->chain, store, crl_flags, err, errlen);
	return id->client_ctx ? 0 : -EINVAL;
}

/* The identity's own references to leaf, key and chain, and what status shows of them. */
static int take_leaf(const struct ks_ident_parts *p, struct ks_identity *id)
{
	BIGNUM *bn;
	char *hex;

	if (!X509_up_ref(p->leaf))
		return -ENOMEM;
	id->leaf = p->leaf;
	if (!EVP_PKEY_up_ref(p->key))
		return -ENOMEM;
	id->key = p->key;
	if (p->chain && !(id->chain = X509_chain_up_ref(p->chain)))
		return -ENOMEM;
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(p->leaf), NULL);
	hex = bn ? BN_bn2hex(bn) : NULL;
	snprintf(id->serial, sizeof(id->serial), "%s", hex ? hex : "?");
	OPENSSL_free(hex);
	BN_free(bn);
	time_str(X509_get0_notAfter(p->leaf), id->not_after, sizeof(id->not_after),
		 &id->not_after_unix);
	return 0;
}

/* The certificate in certs that signed crl (its name and its key), or NULL. */
static X509 *crl_signer_in(X509_CRL *crl, STACK_OF(X509) * certs)
{
	for (int j = 0; j < sk_X509_num(certs); j++) {
		X509 *x = sk_X509_value(certs, j);

		if (X509_NAME_cmp(X509_get_subject_name(x), X509_CRL_get_issuer(crl)) == 0 &&
		    X509_CRL_verify(crl, X509_get0_pubkey(x)) == 1)
			return x;
	}
	return NULL;
}

/*
 * Which key signed each CRL, for the sweep of open connections
 * (ks_identity_revoked): found once here, among the certificates we know,
 * so the sweep compares digests instead of verifying signatures.
 */
static int crl_signers(const struct ks_ident_parts *p, struct ks_identity *id)
{
	int n = sk_X509_CRL_num(id->crls); /* -1 without CRLs */

	if (n <= 0)
		return 0;
	id->crl_signer = calloc((size_t)n, sizeof(*id->crl_signer));
	if (!id->crl_signer)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		X509_CRL *crl = sk_X509_CRL_value(id->crls, i);
		X509 *x = crl_signer_in(crl, p->bundle);
		unsigned len = 0;

		if (!x)
			x = crl_signer_in(crl, p->chain);
		for (size_t f = 0; !x && f < p->nfed; f++)
			x = crl_signer_in(crl, p->fed[f].certs);
		if (x && !X509_pubkey_digest(x, EVP_sha256(), id->crl_signer[i], &len))
			memset(id->crl_signer[i], 0, sizeof(id->crl_signer[i]));
	}
	ERR_clear_error();
	return 0;
}

int ks_identity_build(const struct ks_tls_opts *opts, const struct ks_ident_parts *p,
		      struct ks_identity **out, enum ks_ident_reason *reason, char *err,
		      size_t errlen)
{
	static const struct ks_policy no_policy;
	struct ks_identity *id = NULL;
	X509_STORE *store = NULL, *own = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	*reason = KS_IR_NONE;
	err[0] = '\0';
	ERR_clear_error();
	id = calloc(1, sizeof(*id));
	if (!id)
		goto cleanup;
	atomic_init(&id->refs, 1);
	id->res = opts->res;
	if (ks_policy_copy(&id->pol, p->pol ? p->pol : &no_policy) < 0)
		goto cleanup;
	id->crl_gen = p->crl_gen;
	rc = take_fed(p, id, reason, err, errlen);
	if (rc == 0)
		rc = take_bundle(p, id, &store, &own);
	if (rc == 0)
		rc = crl_signers(p, id);
	/* Without a leaf: waiting for the control plane, nothing to present yet. */
	if (rc == 0 && p->leaf)
		rc = check_leaf(opts, p, own, id, reason, err, errlen);
	if (rc == 0 && p->leaf)
		rc = make_ctxs(opts, p, store, id, err, errlen);
	if (rc == 0 && p->leaf)
		rc = take_leaf(p, id);
	if (rc == 0) {
		*out = id;
		id = NULL;
	}
cleanup:
	if (rc == -ENOMEM && !err[0])
		snprintf(err, errlen, "out of memory");
	X509_STORE_free(store);
	X509_STORE_free(own);
	if (id)
		identity_free(id);
	ERR_clear_error();
	return rc;
}

void ks_identity_parts(const struct ks_identity *id, struct ks_ident_parts *p)
{
	memset(p, 0, sizeof(*p));
	if (!id)
		return;
	p->leaf = id->leaf;
	p->chain = id->chain;
	p->key = id->key;
	p->bundle = id->bundle;
	p->fed = id->fed;
	p->nfed = id->nfed;
	p->crls = id->crls;
	p->pol = &id->pol;
	p->crl_gen = id->crl_gen;
}

static int td_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ks_td_bundle *)a)->td, ((const struct ks_td_bundle *)b)->td);
}

int ks_identity_fed_with(const struct ks_ident_parts *p, const char *td, STACK_OF(X509) * certs,
			 struct ks_td_bundle **out, size_t *nout, char *err, size_t errlen)
{
	struct ks_td_bundle *f;
	const char *why;
	size_t n = 0;

	*out = NULL;
	*nout = 0;
	f = calloc(p->nfed + 1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	if (ks_spiffe_td_parse(td, f[p->nfed].td, sizeof(f[p->nfed].td), &why) < 0) {
		snprintf(err, errlen, "trust domain '%.*s': %s", 255, td, why);
		free(f);
		return -EINVAL;
	}
	for (size_t i = 0; i < p->nfed; i++)
		if (strcmp(p->fed[i].td, f[p->nfed].td) != 0) {
			f[n] = p->fed[i];
			f[n++].sha256 = NULL;
		}
	if (certs && sk_X509_num(certs)) {
		memmove(f[n].td, f[p->nfed].td, sizeof(f[n].td));
		f[n].certs = certs;
		f[n++].sha256 = NULL;
	}
	qsort(f, n, sizeof(*f), td_cmp);
	*out = f;
	*nout = n;
	return 0;
}

/* opts' --federated-ca files, each replacing that trust domain's bundle in p. */
static int load_fed(const struct ks_tls_opts *opts, struct ks_ident_parts *p,
		    struct ks_td_bundle **fed, STACK_OF(X509) * **certs, char *err, size_t errlen)
{
	struct ks_td_bundle *next;
	size_t n;
	int rc;

	*certs = opts->nfed ? calloc(opts->nfed, sizeof(**certs)) : NULL;
	if (opts->nfed && !*certs)
		return -ENOMEM;
	for (size_t i = 0; i < opts->nfed; i++) {
		char what[320];

		snprintf(what, sizeof(what), "federated bundle of %.255s", opts->fed[i].td);
		rc = ks_pem_file_certs(opts->fed[i].path, &(*certs)[i], what, err, errlen);
		if (rc < 0)
			return rc;
		rc = ks_identity_fed_with(p, opts->fed[i].td, (*certs)[i], &next, &n, err, errlen);
		if (rc < 0)
			return rc;
		free(*fed);
		*fed = next;
		p->fed = next;
		p->nfed = n;
	}
	return 0;
}

int ks_identity_load(const struct ks_tls_opts *opts, const struct ks_policy *pol,
		     const struct ks_identity *cur, struct ks_identity **out, char *err,
		     size_t errlen)
{
	STACK_OF(X509) *certs = NULL, *bundle = NULL, **fed_certs = NULL;
	struct ks_td_bundle *fed = NULL;
	EVP_PKEY *key = NULL;
	struct ks_ident_parts p;
	enum ks_ident_reason reason;
	X509 *leaf;
	int rc;

	*out = NULL;
	ERR_clear_error();
	/* Without --cert the control plane pushes the identity: only the
	 * federated bundles come from files. */
	if (opts->cert) {
		rc = ks_pem_file_certs(opts->cert, &certs, "certificate file", err, errlen);
		if (rc < 0)
			goto cleanup;
		rc = ks_pem_file_key(opts->key, &key, err, errlen);
		if (rc < 0)
			goto cleanup;
		rc = ks_pem_file_certs(opts->ca, &bundle, "trust bundle", err, errlen);
		if (rc < 0)
			goto cleanup;
	}
	ks_identity_parts(cur, &p);
	if (!cur)
		p.pol = pol;
	/* SIGHUP: the files' trust domains are re-read, pushed ones kept. */
	rc = load_fed(opts, &p, &fed, &fed_certs, err, errlen);
	if (rc < 0)
		goto cleanup;
	leaf = opts->cert ? sk_X509_shift(certs) : NULL; /* the rest is the chain */
	if (opts->cert) {
		p.leaf = leaf;
		p.chain = certs;
		p.key = key;
		p.bundle = bundle;
	}
	rc = ks_identity_build(opts, &p, out, &reason, err, errlen);
	X509_free(leaf);
cleanup:
	for (size_t i = 0; fed_certs && i < opts->nfed; i++)
		sk_X509_pop_free(fed_certs[i], X509_free);
	free(fed_certs);
	free(fed);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(bundle, X509_free);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}

int ks_identity_check_crls(STACK_OF(X509_CRL) * crls, STACK_OF(X509) * bundle,
			   STACK_OF(X509) * chain, enum ks_ident_reason *reason, char *err,
			   size_t errlen)
{
	STACK_OF(X509) * known[2] = {bundle, chain};

	for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
		X509_CRL *crl = sk_X509_CRL_value(crls, i);
		const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
		char name[256];
		bool signed_ok = false;

		X509_NAME_oneline(X509_CRL_get_issuer(crl), name, sizeof(name));
		for (int k = 0; k < 2 && !signed_ok; k++)
			for (int j = 0; j < sk_X509_num(known[k]) && !signed_ok; j++) {
				X509 *x = sk_X509_value(known[k], j);

				signed_ok = X509_NAME_cmp(X509_get_subject_name(x),
							  X509_CRL_get_issuer(crl)) == 0 &&
					    X509_CRL_verify(crl, X509_get0_pubkey(x)) == 1;
			}
		ERR_clear_error();
		if (!signed_ok) {
			*reason = KS_IR_CRL_UNVERIFIED;
			snprintf(err, errlen,
				 "CRL %d (issuer %s) is not signed by a certificate in the trust "
				 "bundle or our chain",
				 i + 1, name);
			return -EINVAL;
		}
		/* RFC 5280 §5.1.2.5: past nextUpdate the CRL is stale. */
		if (next && X509_cmp_current_time(next) < 0) {
			*reason = KS_IR_EXPIRED;
			snprintf(err, errlen, "CRL %d (issuer %s) is past its nextUpdate", i + 1,
				 name);
			return -EINVAL;
		}
	}
	return 0;
}

struct ks_identity *ks_identity_get(struct ks_identity *id)
{
	atomic_fetch_add_explicit(&id->refs, 1, memory_order_relaxed);
	return id;
}

void ks_identity_put(struct ks_identity *id)
{
	if (!id || atomic_fetch_sub_explicit(&id->refs, 1, memory_order_acq_rel) != 1)
		return;
	identity_free(id);
}

const char *ks_ident_source_name(enum ks_ident_source src)
{
	static const char *const names[KS_IDSRC__COUNT] = {
	    [KS_IDSRC_FILE] = "file",
	    [KS_IDSRC_FILES] = "files",
	    [KS_IDSRC_SET_IDENTITY] = "set_identity",
	    [KS_IDSRC_SET_TRUST_BUNDLE] = "set_trust_bundle",
	    [KS_IDSRC_SET_CRL] = "set_crl",
	    [KS_IDSRC_SET_POLICY] = "set_policy",
	    [KS_IDSRC_WORKLOAD_API] = "workload_api",
	    [KS_IDSRC_SET_TICKET_KEYS] = "set_ticket_keys",
	};

	return (unsigned)src < KS_IDSRC__COUNT ? names[src] : "unknown";
}

void ks_identity_slot_init(struct ks_identity_slot *s, struct ks_identity *first)
{
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->update_mu, NULL);
	s->cur = first;
	atomic_init(&s->gen, 1);
	for (size_t i = 0; i < KS_IDSRC__COUNT; i++) {
		atomic_init(&s->updates[i][0], 0);
		atomic_init(&s->updates[i][1], 0);
	}
}

void ks_identity_slot_fini(struct ks_identity_slot *s)
{
	ks_identity_put(s->cur);
	s->cur = NULL;
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->update_mu);
}

void ks_identity_slot_publish(struct ks_identity_slot *s, struct ks_identity *id)
{
	struct ks_identity *old;

	pthread_mutex_lock(&s->mu);
	old = s->cur;
	s->cur = id;
	atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
	pthread_mutex_unlock(&s->mu);
	ks_identity_put(old);
}

struct ks_identity *ks_identity_slot_get(struct ks_identity_slot *s, uint64_t *gen)
{
	struct ks_identity *id;

	pthread_mutex_lock(&s->mu);
	id = ks_identity_get(s->cur);
	if (gen)
		*gen = atomic_load_explicit(&s->gen, memory_order_relaxed);
	pthread_mutex_unlock(&s->mu);
	return id;
}
