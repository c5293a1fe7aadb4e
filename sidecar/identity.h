/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The workload identity: our certificate chain, key and trust bundle, built
 * into a server and a client SSL_CTX. An identity is immutable once loaded.
 *
 * Reload model: the main thread loads a new identity (SIGHUP; later the
 * control API), validates it completely, and only then publishes it in the
 * slot. Publishing takes a mutex for the pointer swap and bumps an atomic
 * generation. Workers compare the generation (one relaxed load per accepted
 * connection) and take a reference under the mutex only when it changed.
 * Every connection holds a reference to the identity it started with, so
 * established connections never see a change, and the old identity is freed
 * when its last connection ends.
 */
#ifndef KS_IDENTITY_H
#define KS_IDENTITY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"
#include "spiffe.h"

struct ks_identity {
	atomic_int refs;
	SSL_CTX *server_ctx; /* inbound: requires and verifies a client certificate */
	SSL_CTX *client_ctx; /* outbound: presents our certificate, verifies the server */
	char id[KS_SPIFFE_MAX + 1];
	char trust_domain[KS_SPIFFE_TD_MAX + 1];
	char serial[80];
	char not_after[64];
	int64_t not_after_unix;
	char (*bundle_sha256)[65]; /* SHA-256 (hex) of each certificate in the bundle */
	size_t nbundle;
};

/*
 * Loads and validates cert/key/bundle: the key matches the certificate, the
 * leaf carries exactly one SPIFFE ID, the key is ECDSA P-256 or RSA >= 2048,
 * and the chain verifies against the bundle now. On failure returns -errno
 * and a human-readable reason in err; nothing is published.
 */
int ks_identity_load(const struct ks_config *cfg, struct ks_identity **out, char *err,
		     size_t errlen);
struct ks_identity *ks_identity_get(struct ks_identity *id);
void ks_identity_put(struct ks_identity *id);

struct ks_identity_slot {
	pthread_mutex_t mu;
	struct ks_identity *cur;
	_Atomic uint64_t gen;
};

void ks_identity_slot_init(struct ks_identity_slot *s, struct ks_identity *first);
void ks_identity_slot_fini(struct ks_identity_slot *s);
/* Publishes id (the slot takes over the caller's reference). */
void ks_identity_slot_publish(struct ks_identity_slot *s, struct ks_identity *id);
/* Returns a new reference to the current identity. */
struct ks_identity *ks_identity_slot_get(struct ks_identity_slot *s, uint64_t *gen);

#endif
