/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Session ticket keys (STEKs) for stateless TLS 1.3 tickets (RFC 8446
 * §4.6.1, RFC 5077 §4 for the key_name / IV / MAC layout OpenSSL uses).
 *
 * A ticket is the session itself, encrypted and authenticated under the
 * ring's current key: whoever holds a key can read every session sealed
 * under it, so keys live only in this process's memory (never on disk, out
 * of core dumps) and are wiped as soon as they retire.
 *
 * Schedule (keys of our own): a key encrypts for one period and is accepted
 * for one more, so a ticket that lives at most one period (--session-lifetime
 * is the period) is never refused for its key alone. Rotation is lazy: the
 * first ticket operation after a period ends makes the new key, and a key
 * more than two periods old is dropped whatever happens.
 *
 * Keys pushed by the control plane (SetTicketKeys) replace ours, so that
 * the replicas of one service can resume each other's tickets: the first
 * pushed key encrypts, all of them decrypt, and the control plane owns the
 * rotation; an empty push goes back to keys of our own.
 *
 * Threads: any worker encrypts and decrypts, the control thread pushes and
 * reads the counts for /metrics; all of it under one mutex held for a copy
 * of at most one key. The counters are atomics, read without it.
 */
#ifndef KS_TLS_TICKETS_H
#define KS_TLS_TICKETS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define KS_TICKET_NAME_LEN   16 /* RFC 5077 §4 key_name */
#define KS_TICKET_SECRET_LEN 32 /* a pushed key's secret: the AES and HMAC keys derive from it */
#define KS_TICKET_KEYS_MAX   4	/* pushed keys at most (one encrypting, three retired) */

struct ks_ticket_key {
	uint8_t name[KS_TICKET_NAME_LEN];
	uint8_t aes[32];  /* AES-256-CBC */
	uint8_t hmac[32]; /* HMAC-SHA256 */
	int64_t born_s;	  /* monotonic seconds; keys of our own only */
};

/* One pushed key, as the control API carries it. */
struct ks_ticket_secret {
	uint8_t name[KS_TICKET_NAME_LEN];
	uint8_t secret[KS_TICKET_SECRET_LEN];
};

struct ks_ticket_ring {
	pthread_mutex_t mu;
	struct ks_ticket_key *keys; /* KS_TICKET_KEYS_MAX, [0] encrypts; a page kept out of dumps */
	size_t nkeys;
	bool pushed; /* the control plane's keys: no rotation of our own */
	uint32_t period_s;
	/* AES-256-CBC, fetched once: an implicit fetch by name on every ticket
	 * costs OpenSSL 3.0 a method store lookup under a lock. */
	EVP_CIPHER *cbc;
	/* For /metrics: keys of our own made by the schedule after the first
	 * one, and the rotations that could not make one (the RNG failed; the
	 * older key kept sealing). A ticket whose key is unknown is counted per
	 * connection instead (resumptions_refused reason=unknown_key). */
	_Atomic uint64_t rotations, rotation_failures;
};

/* -errno. The first key is made at once; period_s >= 1. */
int ks_ticket_ring_init(struct ks_ticket_ring *r, uint32_t period_s);
/* Wipes every key. */
void ks_ticket_ring_fini(struct ks_ticket_ring *r);

/*
 * Replaces the keys with n pushed ones (n = 0: back to keys of our own, a
 * fresh one made now). On a bad set nothing changes: -EINVAL and err; nor
 * when the RNG cannot make that fresh key: -EIO and err.
 */
int ks_ticket_ring_set(struct ks_ticket_ring *r, const struct ks_ticket_secret *keys, size_t n,
		       char *err, size_t errlen);

/*
 * The key to seal a new ticket with (enc) or the one named name (decrypt),
 * copied into *out (the caller wipes it). now_s: monotonic seconds. Returns
 * 0, 1 for a decrypting key that is not the current one (renew the ticket),
 * or -ENOENT (no such key: the ticket is refused and a full handshake
 * follows).
 */
int ks_ticket_ring_key(struct ks_ticket_ring *r, bool enc, const uint8_t *name, int64_t now_s,
		       struct ks_ticket_key *out);

/* Names of the keys in force (for status), current first; returns how many. */
size_t ks_ticket_ring_names(struct ks_ticket_ring *r, uint8_t (*names)[KS_TICKET_NAME_LEN],
			    size_t max, bool *pushed);

/* For /metrics: the keys in force and whose they are, and the counters. */
struct ks_ticket_stats {
	size_t nkeys;
	bool pushed;
	uint64_t rotations, rotation_failures;
};
void ks_ticket_ring_stats(struct ks_ticket_ring *r, struct ks_ticket_stats *out);

/*
 * SSL_CTX_set_tlsext_ticket_key_evp_cb for ring (SSL_CTX ex data, set by
 * ks_ticket_ring_attach).
 */
int ks_ticket_ring_attach(SSL_CTX *ctx, struct ks_ticket_ring *r);

#endif
