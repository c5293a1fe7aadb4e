/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/trust.h"

#include <string.h>

bool ks_trust_root_ok(const char *own_td, STACK_OF(X509) * own, const struct ks_td_bundle *fed,
		      size_t nfed, const char *peer_id, STACK_OF(X509) * chain, const char **why)
{
	char td[KS_SPIFFE_TD_MAX + 1];
	STACK_OF(X509) *roots = NULL;
	X509 *anchor = sk_X509_value(chain, sk_X509_num(chain) - 1);

	if (!anchor || ks_spiffe_trust_domain(peer_id, td, sizeof(td)) < 0) {
		*why = "the peer's chain or ID cannot be read";
		return false;
	}
	if (strcmp(td, own_td) == 0) {
		roots = own;
	} else {
		for (size_t i = 0; i < nfed && !roots; i++)
			if (strcmp(fed[i].td, td) == 0)
				roots = fed[i].certs;
		if (!roots) {
			*why = "we have no bundle for the peer's trust domain (--federated-ca, or "
			       "SetTrustBundle with its trust_domain)";
			return false;
		}
	}
	for (int i = 0; i < sk_X509_num(roots); i++)
		if (X509_cmp(anchor, sk_X509_value(roots, i)) == 0)
			return true;
	*why = "the peer's chain ends at a root that is not in its trust domain's bundle";
	return false;
}
