/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authorization policy: which peer SPIFFE IDs may talk to us (inbound) and
 * which server IDs we accept (outbound). Immutable once built; a later issue
 * makes it replaceable through the control API with the same atomic swap as
 * the identity.
 */
#ifndef KS_POLICY_H
#define KS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

struct ks_policy {
	char **allow; /* --allow patterns; empty means "own trust domain" */
	size_t nallow;
};

/* Inbound: is a client with peer_id allowed? own_td is our trust domain. */
bool ks_policy_allows_inbound(const struct ks_policy *pol, const char *peer_id, const char *own_td);

/*
 * Outbound: does the server's ID satisfy what the route expects? expect may
 * be NULL, which means "any ID in our own trust domain".
 */
bool ks_policy_server_ok(const char *expect, const char *server_id, const char *own_td);

#endif
