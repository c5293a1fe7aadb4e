/* SPDX-License-Identifier: Apache-2.0 */
#include "identity.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "handshake.h"

/* RFC 8446 §9.1 mandates AES-128-GCM; we add the other two AEADs kTLS can offload. */
static const char ks_tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char ks_tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
				       "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
				       "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char ks_groups[] = "X25519:P-256";

static void ssl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[256];

	if (e) {
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(err, errlen, "%s: %s", what, buf);
	} else {
		snprintf(err, errlen, "%s", what);
	}
	ERR_clear_error();
}

static int read_chain(const char *path, X509 **leaf, STACK_OF(X509) * *chain, char *err,
		      size_t errlen)
{
	BIO *bio = NULL;
	X509 *x;
	int rc = -EINVAL;
	unsigned long e;

	*leaf = NULL;
	*chain = NULL;
	bio = BIO_new_file(path, "r");
	if (!bio) {
		snprintf(err, errlen, "cannot open certificate file %s: %s", path, strerror(errno));
		rc = errno ? -errno : -EIO;
		ERR_clear_error();
		goto cleanup;
	}
	*leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!*leaf) {
		ssl_err(err, errlen, "certificate file has no PEM certificate");
		goto cleanup;
	}
	*chain = sk_X509_new_null();
	if (!*chain) {
		rc = -ENOMEM;
		goto cleanup;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(*chain, x)) {
			X509_free(x);
			rc = -ENOMEM;
			goto cleanup;
		}
	}
	/* The loop ends on "no start line" at EOF; anything else is corruption. */
	e = ERR_peek_last_error();
	if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		ssl_err(err, errlen, "certificate file has a corrupt PEM block");
		goto cleanup;
	}
	ERR_clear_error();
	rc = 0;
cleanup:
	BIO_free(bio);
	if (rc < 0) {
		X509_free(*leaf);
		sk_X509_pop_free(*chain, X509_free);
		*leaf = NULL;
		*chain = NULL;
	}
	return rc;
}

static int read_key(const char *path, EVP_PKEY **key, char *err, size_t errlen)
{
	BIO *bio = BIO_new_file(path, "r");

	if (!bio) {
		snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
		ERR_clear_error();
		return errno ? -errno : -EIO;
	}
	*key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!*key) {
		ssl_err(err, errlen, "key file has no usable PEM private key");
		return -EINVAL;
	}
	return 0;
}

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

static int verify_own_chain(X509_STORE *store, X509 *leaf, STACK_OF(X509) * chain, char *err,
			    size_t errlen)
{
	X509_STORE_CTX *vctx = X509_STORE_CTX_new();
	int rc = -EINVAL;

	if (!vctx)
		return -ENOMEM;
	if (!X509_STORE_CTX_init(vctx, store, leaf, chain)) {
		ssl_err(err, errlen, "cannot set up chain verification");
		goto cleanup;
	}
	if (X509_verify_cert(vctx) != 1) {
		int e = X509_STORE_CTX_get_error(vctx);

		snprintf(err, errlen,
			 "certificate does not verify against the trust bundle: %s (depth %d)",
			 X509_verify_cert_error_string(e), X509_STORE_CTX_get_error_depth(vctx));
		ERR_clear_error();
		goto cleanup;
	}
	rc = 0;
cleanup:
	X509_STORE_CTX_free(vctx);
	return rc;
}

static SSL_CTX *make_ctx(const struct ks_config *cfg, bool server, X509 *leaf, EVP_PKEY *key,
			 STACK_OF(X509) * chain, X509_STORE *store, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	static const unsigned char sid_ctx[] = "ktls-sidecar";

	if (!ctx) {
		ssl_err(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	/* Security level 2: RSA >= 2048, ECC >= 224 bits, for us and for peers. */
	SSL_CTX_set_security_level(ctx, 2);
	if (!SSL_CTX_set_min_proto_version(ctx, cfg->tls_min_version) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx,
				      cfg->ciphersuites ? cfg->ciphersuites : ks_tls13_suites) ||
	    !SSL_CTX_set_cipher_list(ctx, ks_tls12_ciphers) ||
	    !SSL_CTX_set1_groups_list(ctx, ks_groups)) {
		ssl_err(err, errlen, "cannot configure TLS parameters");
		goto fail;
	}
	/* No resumption (every connection is authenticated by its certificate),
	 * no renegotiation, no compression (CRIME). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
				     SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (server) {
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	}
	/* RELEASE_BUFFERS: an idle connection holds no 16 KiB record buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_clear_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) != 1) {
		ssl_err(err, errlen, "cannot use certificate and key");
		goto fail;
	}
	if (!SSL_CTX_set1_verify_cert_store(ctx, store)) {
		ssl_err(err, errlen, "cannot set trust bundle");
		goto fail;
	}
	SSL_CTX_set_verify(
	    ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
	    ks_handshake_verify_cb);
	SSL_CTX_set_verify_depth(ctx, 8);
	/* The only way OpenSSL 3.0 hands out the traffic secrets kTLS RX needs,
	 * and the record numbers that go with them. */
	if (cfg->ktls != KS_KTLS_OFF) {
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

/* Fingerprints of the bundle's certificates, for status reports. */
static int bundle_fingerprints(X509_STORE *store, struct ks_identity *id)
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
	int n = sk_X509_OBJECT_num(objs);

	id->bundle_sha256 = calloc(n > 0 ? (size_t)n : 1, sizeof(*id->bundle_sha256));
	if (!id->bundle_sha256)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned mdlen = 0;

		if (!x || !X509_digest(x, EVP_sha256(), md, &mdlen))
			continue;
		for (unsigned j = 0; j < mdlen && j < 32; j++)
			snprintf(&id->bundle_sha256[id->nbundle][2 * j], 3, "%02x", md[j]);
		id->nbundle++;
	}
	return 0;
}

int ks_identity_load(const struct ks_config *cfg, struct ks_identity **out, char *err,
		     size_t errlen)
{
	struct ks_identity *id = NULL;
	X509 *leaf = NULL;
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	X509_STORE *store = NULL;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	const char *why;
	int rc;

	*out = NULL;
	ERR_clear_error();
	rc = read_chain(cfg->cert, &leaf, &chain, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = read_key(cfg->key, &key, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = check_key_type(key, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = -EINVAL;
	if (X509_check_private_key(leaf, key) != 1) {
		ssl_err(err, errlen, "private key does not match the certificate");
		goto cleanup;
	}
	id = calloc(1, sizeof(*id));
	if (!id) {
		rc = -ENOMEM;
		goto cleanup;
	}
	atomic_init(&id->refs, 1);
	if (ks_spiffe_from_cert(leaf, id->id, sizeof(id->id), &why) < 0) {
		snprintf(err, errlen, "certificate is not a SPIFFE X509-SVID: %s", why);
		goto cleanup;
	}
	ks_spiffe_trust_domain(id->id, id->trust_domain, sizeof(id->trust_domain));
	store = X509_STORE_new();
	if (!store) {
		rc = -ENOMEM;
		goto cleanup;
	}
	if (X509_STORE_load_file(store, cfg->ca) != 1) {
		ssl_err(err, errlen, "cannot load trust bundle");
		snprintf(err + strlen(err), errlen - strlen(err), " (%s)", cfg->ca);
		goto cleanup;
	}
	rc = verify_own_chain(store, leaf, chain, err, errlen);
	if (rc < 0)
		goto cleanup;
	rc = -EINVAL;
	id->server_ctx = make_ctx(cfg, true, leaf, key, chain, store, err, errlen);
	if (!id->server_ctx)
		goto cleanup;
	id->client_ctx = make_ctx(cfg, false, leaf, key, chain, store, err, errlen);
	if (!id->client_ctx)
		goto cleanup;
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
	hex = bn ? BN_bn2hex(bn) : NULL;
	snprintf(id->serial, sizeof(id->serial), "%s", hex ? hex : "?");
	time_str(X509_get0_notAfter(leaf), id->not_after, sizeof(id->not_after),
		 &id->not_after_unix);
	rc = bundle_fingerprints(store, id);
	if (rc < 0)
		goto cleanup;
	*out = id;
	id = NULL;
	rc = 0;
cleanup:
	OPENSSL_free(hex);
	BN_free(bn);
	X509_STORE_free(store);
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	if (id) {
		SSL_CTX_free(id->server_ctx);
		SSL_CTX_free(id->client_ctx);
		free(id->bundle_sha256);
		free(id);
	}
	ERR_clear_error();
	return rc;
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
	SSL_CTX_free(id->server_ctx);
	SSL_CTX_free(id->client_ctx);
	free(id->bundle_sha256);
	free(id);
}

void ks_identity_slot_init(struct ks_identity_slot *s, struct ks_identity *first)
{
	pthread_mutex_init(&s->mu, NULL);
	s->cur = first;
	atomic_init(&s->gen, 1);
}

void ks_identity_slot_fini(struct ks_identity_slot *s)
{
	ks_identity_put(s->cur);
	s->cur = NULL;
	pthread_mutex_destroy(&s->mu);
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
