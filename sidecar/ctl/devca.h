/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A development CA for ktlsctl ("ca init", "ca issue") and the built-in
 * control-plane agent: a root and one intermediate that issue SPIFFE
 * X509-SVIDs (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md).
 *
 * NOT FOR PRODUCTION: the CA keys sit unencrypted on disk, there is no audit
 * log, no HSM, and anything that can read the directory can mint identities
 * for the whole trust domain.
 */
#ifndef KS_DEVCA_H
#define KS_DEVCA_H

#include <stdbool.h>
#include <stddef.h>

/* Opaque: the intermediate's certificate and key, the root certificate, the trust domain. */
struct ks_devca;

/*
 * Creates dir (mode 0700; only the last component is created) holding
 * root.pem, root.key (0600), intermediate.pem, intermediate.key (0600),
 * bundle.pem (the root only) and trust_domain (the td and a newline). All keys
 * are ECDSA P-256. Refuses with -EEXIST if dir already holds root.pem, unless
 * force. trust_domain must be lowercase [a-z0-9.-_] as in a SPIFFE ID.
 */
int ks_devca_init(const char *dir, const char *trust_domain, bool force, char *err, size_t errlen);

/*
 * Loads a CA made by ks_devca_init; checks that the intermediate key matches
 * and that the intermediate verifies under the root.
 */
int ks_devca_open(const char *dir, struct ks_devca **out, char *err, size_t errlen);
void ks_devca_close(struct ks_devca *ca);
const char *ks_devca_trust_domain(const struct ks_devca *ca);

/*
 * Signs a PEM PKCS#10 CSR for spiffe_id (in the CA's trust domain). The CSR
 * contributes only its public key (P-256 or RSA >= 2048), after its
 * self-signature verifies; a URI SAN in it must equal spiffe_id. The leaf is
 * valid from now - 30 s to now + ttl_secs (>= 1), clamped to the
 * intermediate's notAfter. *chain_pem (malloc'ed) = leaf PEM + intermediate PEM.
 */
int ks_devca_sign_csr(struct ks_devca *ca, const char *csr_pem, size_t csr_len,
		      const char *spiffe_id, long ttl_secs, char **chain_pem, char *err,
		      size_t errlen);

/* Generates a P-256 key and issues a leaf as above; *key_pem is PKCS#8 PEM (malloc'ed). */
int ks_devca_issue(struct ks_devca *ca, const char *spiffe_id, long ttl_secs, char **chain_pem,
		   char **key_pem, char *err, size_t errlen);

/* The root certificate PEM (the trust bundle), malloc'ed. Returns 0 or -ENOMEM. */
int ks_devca_bundle_pem(const struct ks_devca *ca, char **pem);

/*
 * A CRL signed by the intermediate revoking every certificate in certs_pem
 * (concatenated PEM; each must have been issued by this intermediate, else
 * -EINVAL). NULL or "" gives a valid empty CRL. nextUpdate is now +
 * next_update_secs (>= 1); the CRL number is the unix time. *crl_pem malloc'ed.
 */
int ks_devca_crl(struct ks_devca *ca, const char *certs_pem, long next_update_secs, char **crl_pem,
		 char *err, size_t errlen);

#endif
