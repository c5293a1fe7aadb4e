/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Trust domains bound to their roots. With one flat store, any root we
 * trust vouches for any SPIFFE ID: a root of a federated trust domain could
 * issue IDs in ours. SPIFFE federation keeps a bundle per trust domain
 * (SPIFFE Trust Domain and Bundle, §4-5), and a peer's chain must end at a
 * root of the trust domain in its own ID. OpenSSL still builds and checks
 * the chain against all roots; this binds its anchor afterwards.
 */
#ifndef KS_TLS_TRUST_H
#define KS_TLS_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "tls/spiffe.h"

/*
 * SPIFFE federation (SPIFFE Trust Domain and Bundle, §4-5): the bundle of a
 * trust domain other than our own. A peer whose ID is in td must chain to
 * one of these roots, and to no other.
 */
struct ks_td_bundle {
	char td[KS_SPIFFE_TD_MAX + 1];
	STACK_OF(X509) * certs;
	char (*sha256)[65]; /* fingerprints, in an identity's copy only */
	uint8_t digest[32]; /* of the whole bundle (tls/resume.h), in an identity's copy only */
};

/*
 * Does chain (as verified: leaf first, trust anchor last) end at a root of
 * the bundle of peer_id's trust domain: own (own_td's) for our own trust
 * domain, the federated one of fed for a foreign one? false with *why
 * (static) when not.
 */
bool ks_trust_root_ok(const char *own_td, STACK_OF(X509) * own, const struct ks_td_bundle *fed,
		      size_t nfed, const char *peer_id, STACK_OF(X509) * chain, const char **why);

#endif
