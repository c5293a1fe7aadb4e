/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authorization policy: which peer SPIFFE IDs may talk to us (inbound) and
 * which server IDs and keys we accept (outbound). Immutable once built: the
 * command line gives the first one, SetPolicy replaces it, and each version
 * travels inside an identity (identity.h), so a handshake sees one version
 * of identity and policy together.
 */
#ifndef KS_POLICY_H
#define KS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

/* Pushed for one outbound route (SetPolicy). */
struct ks_route_policy {
	char *listen;	     /* the route's LISTEN address, as configured */
	char *server_id;     /* pattern; NULL: the route's own id= */
	uint8_t (*pins)[32]; /* SHA-256 of the server's SubjectPublicKeyInfo */
	size_t npins;
};

struct ks_policy {
	char **allow; /* --allow patterns; empty means "own trust domain" */
	size_t nallow;
	struct ks_route_policy *out; /* pushed only; the command line has id= per route */
	size_t nout;
};

/* Deep copy (dst is overwritten). Returns 0 or -ENOMEM, with dst empty. */
int ks_policy_copy(struct ks_policy *dst, const struct ks_policy *src);
void ks_policy_free(struct ks_policy *p);
/* The pushed policy of the outbound route listening on listen, or NULL. */
const struct ks_route_policy *ks_policy_route(const struct ks_policy *p, const char *listen);
/*
 * Pinning: with pins set, the server's key must be one of them, whatever
 * the chain (RFC 7469 §2.4 defines the SPKI digest; we take SHA-256 only).
 */
bool ks_policy_pin_ok(const struct ks_route_policy *rp, X509 *leaf);

/* Inbound: is a client with peer_id allowed? own_td is our trust domain. */
bool ks_policy_allows_inbound(const struct ks_policy *pol, const char *peer_id, const char *own_td);

/*
 * Outbound: does the server's ID satisfy what the route expects? expect may
 * be NULL, which means "any ID in our own trust domain".
 */
bool ks_policy_server_ok(const char *expect, const char *server_id, const char *own_td);

#endif
