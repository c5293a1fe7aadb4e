/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Revocation lookups against an identity's CRLs, by issuer key and serial:
 * the sweep of open connections (dataplane/worker.c) and the re-validation
 * of a resumption (tls/resume.c). Apart from identity.c, which builds
 * identities and is itself used by the handshake.
 */
#include <string.h>

#include <openssl/err.h>

#include "tls/identity.h"

bool ks_identity_revoked(const struct ks_identity *id, const uint8_t issuer_key[32],
			 const uint8_t *serial, size_t serial_len)
{
	static const uint8_t unknown[32];
	ASN1_INTEGER *ai;
	bool revoked = false;

	if (!id->crls || !serial_len || memcmp(issuer_key, unknown, sizeof(unknown)) == 0)
		return false;
	ai = ASN1_INTEGER_new();
	if (!ai || !ASN1_STRING_set(ai, serial, (int)serial_len)) {
		ASN1_INTEGER_free(ai);
		return false;
	}
	for (int i = 0; i < sk_X509_CRL_num(id->crls) && !revoked; i++) {
		X509_REVOKED *rev;

		if (memcmp(id->crl_signer[i], issuer_key, 32) != 0)
			continue;
		revoked = X509_CRL_get0_by_serial(sk_X509_CRL_value(id->crls, i), &rev, ai) == 1;
	}
	ASN1_INTEGER_free(ai);
	ERR_clear_error();
	return revoked;
}
