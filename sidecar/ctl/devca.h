/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A development CA for ktlsctl ("ca init", "ca issue") and the built-in
 * control-plane agent: a root and one intermediate that issue SPIFFE
 * X509-SVIDs (https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md).
 *
 * NOT FOR PRODUCTION: the CA keys sit unencrypted on disk, there is no audit
 * log, no HSM, and anything that can read the signer's key can mint
 * identities for the whole trust domain until the intermediate expires.
 */
#ifndef KS_DEVCA_H
#define KS_DEVCA_H

#include <stdbool.h>
#include <stddef.h>

/* Opaque: the intermediate's certificate and key, the trust bundle, the trust domain. */
struct ks_devca;

/*
 * A CA directory has two halves, so that the root's key never has to travel
 * with the key that signs day to day:
 *
 *   DIR/root/    root.pem, root.key (0600), trust_domain: the offline half.
 *                Only ks_devca_new_signer reads root.key.
 *   DIR/signer/  intermediate.pem, intermediate.key (0600), bundle.pem (the
 *                root certificate), trust_domain: all that signing leaves and
 *                CRLs needs, and all the agent gets.
 *
 * A "signer set" is the signer/ files alone in a directory of their own
 * (ks_devca_export_signer). ktlsctl before the split wrote all six files
 * flat into DIR; every function here still reads that layout.
 */

/*
 * Creates dir (mode 0700; only the last component is created) with root/
 * and signer/ (0700 each) as above. All keys are ECDSA P-256. Refuses with
 * -EEXIST if dir already holds a CA (either layout) or a signer set, unless
 * force, which replaces it (and removes a flat layout's files).
 * trust_domain must be lowercase [a-z0-9.-_] as in a SPIFFE ID.
 */
int ks_devca_init(const char *dir, const char *trust_domain, bool force, char *err, size_t errlen);

/*
 * Loads the signer from dir: a CA made by ks_devca_init (its signer/), a
 * signer set, or the flat layout. Checks that the intermediate key matches,
 * that the intermediate verifies under bundle.pem, and that its key is not
 * the key of a certificate in the bundle (a "signer" that is the root).
 * Never reads a root private key.
 */
int ks_devca_open(const char *dir, struct ks_devca **out, char *err, size_t errlen);
void ks_devca_close(struct ks_devca *ca);
const char *ks_devca_trust_domain(const struct ks_devca *ca);
/* The path of a root private key that sits where ca was opened from (DIR/root/root.key,
 * or root.key in a flat layout), or NULL: the agent warns when it has one it does not need. */
const char *ks_devca_root_key(const struct ks_devca *ca);

/*
 * Writes ca's signer set into out: intermediate.pem, intermediate.key
 * (0600), bundle.pem and trust_domain, from what ks_devca_open checked, so
 * never a root key. out is created (0700) if missing; an existing out must
 * hold nothing but an earlier signer set (all of it goes into a Kubernetes
 * Secret), and that only with force; else -EEXIST or -ENOTEMPTY.
 */
int ks_devca_export_signer(const struct ks_devca *ca, const char *out, bool force, char *err,
			   size_t errlen);

/*
 * A new intermediate (new P-256 key) signed by the root of the CA in dir,
 * replacing the signer's files (DIR/signer/, or the flat layout's). The
 * bundle stays the root, so no peer needs new trust, and leaves of the old
 * intermediate stay valid until they expire. Needs the root key: -ENOKEY
 * with a message saying so when dir has none (a signer set, or a CA whose
 * root/ was moved offline).
 */
int ks_devca_new_signer(const char *dir, char *err, size_t errlen);

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

/* The trust bundle (bundle.pem's certificates) as PEM, malloc'ed. Returns 0 or -ENOMEM. */
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
