/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/tickets.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "common/secret.h"

static int ks_ring_idx = -1;
static pthread_once_t ks_ring_once = PTHREAD_ONCE_INIT;

static void ring_idx_init(void)
{
	ks_ring_idx = SSL_CTX_get_ex_new_index(0, "ks_ticket_ring", NULL, NULL, NULL);
}

static int64_t mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static size_t keys_bytes(void)
{
	return KS_TICKET_KEYS_MAX * sizeof(struct ks_ticket_key);
}

/* Random name and keys: a key of our own. */
static int make_key(struct ks_ticket_key *k, int64_t now_s)
{
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 ||
	    RAND_priv_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_priv_bytes(k->hmac, sizeof(k->hmac)) != 1)
		return -EIO;
	k->born_s = now_s;
	return 0;
}

/* Drops keys[i], wiping it, and closes the gap. */
static void drop_key(struct ks_ticket_ring *r, size_t i)
{
	memmove(&r->keys[i], &r->keys[i + 1], (r->nkeys - i - 1) * sizeof(r->keys[0]));
	r->nkeys--;
	ks_wipe(&r->keys[r->nkeys], sizeof(r->keys[0]));
}

/*
 * Keys of our own: a new current key once a period has passed, the
 * previous one kept for a period more, anything older wiped (a ring left
 * alone for hours must not keep an old key just because nothing rotated it).
 */
static void rotate_if_due(struct ks_ticket_ring *r, int64_t now_s)
{
	struct ks_ticket_key fresh;
	KS_WIPE_AT_EXIT(fresh);

	if (r->pushed)
		return;
	while (r->nkeys > 0 && now_s - r->keys[r->nkeys - 1].born_s >= 2 * (int64_t)r->period_s)
		drop_key(r, r->nkeys - 1);
	if (r->nkeys > 0 && now_s - r->keys[0].born_s < (int64_t)r->period_s)
		return;
	if (make_key(&fresh, now_s) < 0) {
		/* Keep what we have: tickets stay possible, under the older key.
		 * Counted, not logged: this runs on every ticket a worker seals. */
		atomic_fetch_add_explicit(&r->rotation_failures, 1, memory_order_relaxed);
		return;
	}
	if (r->nkeys == 2)
		drop_key(r, 1);
	memmove(&r->keys[1], &r->keys[0], r->nkeys * sizeof(r->keys[0]));
	r->keys[0] = fresh;
	r->nkeys++;
	atomic_fetch_add_explicit(&r->rotations, 1, memory_order_relaxed);
}

int ks_ticket_ring_init(struct ks_ticket_ring *r, uint32_t period_s)
{
	void *p;

	memset(r, 0, sizeof(*r));
	if (period_s < 1)
		return -EINVAL;
	r->period_s = period_s;
	/* A page of its own: out of core dumps, and locked out of swap when
	 * RLIMIT_MEMLOCK allows (not fatal: most pods run without swap). */
	p = mmap(NULL, keys_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	(void)madvise(p, keys_bytes(), MADV_DONTDUMP);
	(void)mlock(p, keys_bytes());
	r->keys = p;
	pthread_mutex_init(&r->mu, NULL);
	r->cbc = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	if (!r->cbc) {
		ks_ticket_ring_fini(r);
		return -ENOENT;
	}
	rotate_if_due(r, mono_s());
	if (r->nkeys == 0) {
		ks_ticket_ring_fini(r);
		return -EIO;
	}
	/* The first key is no rotation. */
	atomic_store_explicit(&r->rotations, 0, memory_order_relaxed);
	return 0;
}

void ks_ticket_ring_fini(struct ks_ticket_ring *r)
{
	if (!r->keys)
		return;
	ks_wipe(r->keys, keys_bytes());
	munlock(r->keys, keys_bytes());
	munmap(r->keys, keys_bytes());
	r->keys = NULL;
	EVP_CIPHER_free(r->cbc);
	r->cbc = NULL;
	r->nkeys = 0;
	pthread_mutex_destroy(&r->mu);
}

/* HKDF-SHA256 (RFC 5869) of a pushed secret: one secret on the wire, two keys. */
static int derive(const uint8_t *secret, const char *info, uint8_t *out, size_t outlen)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[4];
	int rc = -EIO;

	EVP_KDF_free(kdf);
	if (!kctx)
		return -ENOMEM;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret,
						      KS_TICKET_SECRET_LEN);
	params[2] =
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
	params[3] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, outlen, params) == 1)
		rc = 0;
	EVP_KDF_CTX_free(kctx);
	return rc;
}

int ks_ticket_ring_set(struct ks_ticket_ring *r, const struct ks_ticket_secret *keys, size_t n,
		       char *err, size_t errlen)
{
	struct ks_ticket_key next[KS_TICKET_KEYS_MAX];
	KS_WIPE_AT_EXIT(next);
	static const uint8_t zero[KS_TICKET_SECRET_LEN];
	int64_t now = mono_s();
	size_t nkeys = n;

	if (n > KS_TICKET_KEYS_MAX) {
		snprintf(err, errlen, "%zu ticket keys: at most %d (one current, the rest retired)",
			 n, KS_TICKET_KEYS_MAX);
		return -EINVAL;
	}
	memset(next, 0, sizeof(next));
	for (size_t i = 0; i < n; i++) {
		if (memcmp(keys[i].secret, zero, sizeof(zero)) == 0) {
			snprintf(err, errlen, "ticket key %zu: the secret is all zeros", i + 1);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (memcmp(keys[i].name, keys[j].name, KS_TICKET_NAME_LEN) == 0) {
				snprintf(err, errlen, "ticket keys %zu and %zu have the same name",
					 j + 1, i + 1);
				return -EINVAL;
			}
		memcpy(next[i].name, keys[i].name, KS_TICKET_NAME_LEN);
		if (derive(keys[i].secret, "ktls-sidecar ticket aes", next[i].aes, 32) < 0 ||
		    derive(keys[i].secret, "ktls-sidecar ticket hmac", next[i].hmac, 32) < 0) {
			snprintf(err, errlen, "cannot derive the ticket keys");
			return -EIO;
		}
		next[i].born_s = now;
	}
	/* Back to keys of our own: the first one is made before anything is
	 * wiped, so that a failing RNG leaves the pushed keys in force. */
	if (n == 0) {
		if (make_key(&next[0], now) < 0) {
			snprintf(err, errlen,
				 "cannot make a ticket key (RNG): the keys in force stay");
			return -EIO;
		}
		nkeys = 1;
	}
	pthread_mutex_lock(&r->mu);
	ks_wipe(r->keys, keys_bytes());
	r->nkeys = nkeys;
	r->pushed = n > 0;
	memcpy(r->keys, next, nkeys * sizeof(next[0]));
	pthread_mutex_unlock(&r->mu);
	return 0;
}

int ks_ticket_ring_key(struct ks_ticket_ring *r, bool enc, const uint8_t *name, int64_t now_s,
		       struct ks_ticket_key *out)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&r->mu);
	rotate_if_due(r, now_s);
	for (size_t i = 0; i < r->nkeys; i++) {
		if (enc ? i != 0 : memcmp(r->keys[i].name, name, KS_TICKET_NAME_LEN) != 0)
			continue;
		*out = r->keys[i];
		rc = i == 0 ? 0 : 1;
		break;
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

void ks_ticket_ring_stats(struct ks_ticket_ring *r, struct ks_ticket_stats *out)
{
	pthread_mutex_lock(&r->mu);
	out->nkeys = r->nkeys;
	out->pushed = r->pushed;
	pthread_mutex_unlock(&r->mu);
	out->rotations = atomic_load_explicit(&r->rotations, memory_order_relaxed);
	out->rotation_failures = atomic_load_explicit(&r->rotation_failures, memory_order_relaxed);
}

size_t ks_ticket_ring_names(struct ks_ticket_ring *r, uint8_t (*names)[KS_TICKET_NAME_LEN],
			    size_t max, bool *pushed)
{
	size_t n = 0;

	pthread_mutex_lock(&r->mu);
	rotate_if_due(r, mono_s());
	for (; n < r->nkeys && n < max; n++)
		memcpy(names[n], r->keys[n].name, KS_TICKET_NAME_LEN);
	*pushed = r->pushed;
	pthread_mutex_unlock(&r->mu);
	return n;
}

static int set_mac(EVP_MAC_CTX *hctx, const uint8_t *key)
{
	OSSL_PARAM params[3];

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key, 32);
	params[2] = OSSL_PARAM_construct_end();
	return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -EIO;
}

/*
 * OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb(3)):
 * enc fills key_name and iv and sets up the cipher and MAC; decryption
 * finds the key by name. Returns 1 (use), 2 (decrypted with a retired key:
 * renew), 0 (unknown key: full handshake), -1 (error).
 */
static int key_cb(SSL *s, unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *ctx,
		  EVP_MAC_CTX *hctx, int enc)
{
	struct ks_ticket_ring *r = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), ks_ring_idx);
	struct ks_ticket_key k;
	KS_WIPE_AT_EXIT(k);
	int rc;

	if (!r)
		return -1;
	rc = ks_ticket_ring_key(r, enc, key_name, mono_s(), &k);
	if (rc < 0)
		return enc ? -1 : 0;
	if (enc) {
		memcpy(key_name, k.name, KS_TICKET_NAME_LEN);
		if (RAND_bytes(iv, 16) != 1 ||
		    EVP_EncryptInit_ex(ctx, r->cbc, NULL, k.aes, iv) != 1)
			return -1;
	} else if (EVP_DecryptInit_ex(ctx, r->cbc, NULL, k.aes, iv) != 1) {
		return -1;
	}
	if (set_mac(hctx, k.hmac) < 0)
		return -1;
	return rc == 1 ? 2 : 1;
}

int ks_ticket_ring_attach(SSL_CTX *ctx, struct ks_ticket_ring *r)
{
	pthread_once(&ks_ring_once, ring_idx_init);
	if (ks_ring_idx < 0 || !SSL_CTX_set_ex_data(ctx, ks_ring_idx, r) ||
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, key_cb) != 1)
		return -ENOMEM;
	return 0;
}
