/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side's session tickets (RFC 8446 §4.6.1), kept per key: an
 * outbound route, the destination of a transparent one, and the server ID
 * it expects. With each ticket goes what resumption must check again
 * before offering it (tls/resume.h, encoded) and when it stops being
 * worth offering.
 *
 * A ticket is taken out to be offered, so it is used once (RFC 8446
 * §C.4: reuse lets a passive observer link connections). Bounded: at most
 * KS_SESS_PER_KEY tickets per key, the oldest going first, and
 * KS_SESS_KEYS keys, the least recently used going first.
 *
 * Shared by every worker, under one mutex held for a list operation, and
 * outside any identity, so an identity rebuild keeps the tickets.
 */
#ifndef KS_TLS_SESSCACHE_H
#define KS_TLS_SESSCACHE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define KS_SESS_PER_KEY 8
#define KS_SESS_KEYS	128
#define KS_SESS_KEY_MAX 600 /* route, destination, expected ID pattern */

struct ks_sess_entry {
	SSL_SESSION *sess;
	uint8_t *facts; /* encoded (tls/resume.h), malloc'ed */
	size_t facts_len;
	int64_t expires; /* wall-clock seconds */
};

struct ks_sess_bucket {
	char key[KS_SESS_KEY_MAX];
	uint64_t used; /* the cache's clock at its last put or take: LRU */
	struct ks_sess_entry e[KS_SESS_PER_KEY]; /* oldest first */
	size_t n;
};

struct ks_sess_cache {
	pthread_mutex_t mu;
	struct ks_sess_bucket *b; /* KS_SESS_KEYS, allocated on first use */
	uint64_t clock;
};

void ks_sess_cache_init(struct ks_sess_cache *c);
void ks_sess_cache_fini(struct ks_sess_cache *c);

/*
 * Keeps sess (takes the caller's reference) with a copy of facts under
 * key. -errno (the reference is then the caller's still).
 */
int ks_sess_cache_put(struct ks_sess_cache *c, const char *key, SSL_SESSION *sess,
		      const uint8_t *facts, size_t facts_len, int64_t expires);

/*
 * Takes the newest ticket of key that has not expired at now (expired ones
 * are dropped on the way). NULL if none; else the caller owns the session
 * reference and *facts (free(3)).
 */
SSL_SESSION *ks_sess_cache_take(struct ks_sess_cache *c, const char *key, int64_t now,
				uint8_t **facts, size_t *facts_len);

/* Tickets held, all keys. */
size_t ks_sess_cache_count(struct ks_sess_cache *c);

#endif
