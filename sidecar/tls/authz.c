/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/authz.h"

#include "tls/identity.h"
#include "tls/policy.h"

const char *ks_authz_expect(const struct ks_tls_peer *p)
{
	const struct ks_route_policy *rp = ks_policy_route(&p->ident->pol, p->route);
	const struct ks_dest_policy *dp = p->dest ? ks_policy_dest(&p->ident->pol, p->dest) : NULL;

	return dp ? dp->server_id : rp && rp->server_id ? rp->server_id : p->expect_id;
}

enum ks_reject ks_authz_peer(const struct ks_tls_peer *p, X509 *leaf, const char *id,
			     const char **why)
{
	const struct ks_identity *ident = p->ident;
	const struct ks_route_policy *rp;
	const char *expect;

	if (p->server) {
		if (ks_policy_allows_inbound(&ident->pol, id, ident->trust_domain))
			return KS_REJ_NONE;
		*why = ident->pol.nallow ? "peer ID matches no allowed pattern"
					 : "peer ID is outside our trust domain";
		return KS_REJ_IDENTITY_NOT_ALLOWED;
	}
	rp = ks_policy_route(&ident->pol, p->route);
	expect = ks_authz_expect(p);
	if (!ks_policy_server_ok(expect, id, ident->trust_domain)) {
		*why = p->dest && ks_policy_dest(&ident->pol, p->dest)
			   ? "server ID does not match the destination's expected ID"
		       : expect ? "server ID does not match the route's expected ID"
				: "server ID is outside our trust domain";
		return KS_REJ_SERVER_ID_MISMATCH;
	}
	if (!ks_policy_pin_ok(rp, leaf)) {
		*why = "server key matches none of the route's SPKI pins";
		return KS_REJ_PIN_MISMATCH;
	}
	return KS_REJ_NONE;
}
