/* SPDX-License-Identifier: Apache-2.0 */
#include "policy.h"

#include "spiffe.h"

bool ks_policy_allows_inbound(const struct ks_policy *pol, const char *peer_id, const char *own_td)
{
	/* Zero trust default: the CA vouches for identity, not authorization,
	 * so without patterns only our own trust domain gets in. */
	if (!pol || pol->nallow == 0)
		return ks_spiffe_in_trust_domain(peer_id, own_td);
	for (size_t i = 0; i < pol->nallow; i++)
		if (ks_spiffe_match(pol->allow[i], peer_id))
			return true;
	return false;
}

bool ks_policy_server_ok(const char *expect, const char *server_id, const char *own_td)
{
	if (!expect)
		return ks_spiffe_in_trust_domain(server_id, own_td);
	return ks_spiffe_match(expect, server_id);
}
