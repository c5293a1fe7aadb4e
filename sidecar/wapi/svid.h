/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One X509SVIDResponse of the SPIFFE Workload API, applied as a whole: the
 * chosen SVID's certificate chain and key, its trust domain's bundle and
 * the federated bundles become one new identity, through the validation
 * every other source goes through (ks_identity_build: key type and match,
 * exactly one SPIFFE ID, the chain verified against the bundle now), and
 * are published with the slot's one pointer swap. A response that fails
 * anywhere changes nothing.
 */
#ifndef KS_WAPI_SVID_H
#define KS_WAPI_SVID_H

#include <stddef.h>
#include <stdint.h>

#include "tls/identity.h"

struct ks_wapi_applied {
	char id[KS_SPIFFE_MAX + 1];
	char serial[80];
	char not_after[64];
	size_t nsvids;	/* SVIDs in the response */
	size_t nbundle; /* certificates in our trust domain's bundle */
	size_t nfed;	/* federated trust domains */
};

/*
 * Decodes msg (a serialized X509SVIDResponse) and publishes it in slot.
 * The SVID is the first of the response (the standard's default), or the
 * one whose spiffe_id is opts->spiffe_id when that is set. CRLs and the
 * policy in force are kept: the response's crl field is left to the
 * control API (SetCrl). The federated bundles replace the federated set
 * in force: the response is the whole state (SPIFFE Workload API, X.509-SVID
 * profile). Returns 0 with *out filled, or -errno with *reason and err;
 * kept is then the serial that stays in force ("none").
 */
int ks_wapi_apply(const struct ks_tls_opts *opts, struct ks_identity_slot *slot, const uint8_t *msg,
		  size_t len, struct ks_wapi_applied *out, enum ks_ident_reason *reason, char *err,
		  size_t errlen, char *kept, size_t keptlen);

#endif
