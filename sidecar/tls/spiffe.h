/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md)
 * and the X509-SVID rule that the identity is the certificate's single URI SAN.
 */
#ifndef KS_SPIFFE_H
#define KS_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

/* SPIFFE-ID.md §2.3: implementations must support IDs up to 2048 bytes. */
#define KS_SPIFFE_MAX	 2048
#define KS_SPIFFE_TD_MAX 255

/*
 * Checks that id is a workload SPIFFE ID: lowercase "spiffe://" scheme, a
 * trust domain of [a-z0-9.-_], and a non-empty path of segments of
 * [a-zA-Z0-9.-_] with no empty, "." or ".." segment. Returns 0, or -EINVAL
 * with *why set to a static description.
 */
int ks_spiffe_validate(const char *id, const char **why);

/*
 * A trust domain name as a user writes it ("example.org" or
 * "spiffe://example.org", a trailing '/' allowed) into td (at least
 * KS_SPIFFE_TD_MAX + 1): its bare name. 0, or -EINVAL with *why.
 */
int ks_spiffe_td_parse(const char *in, char *td, size_t tdlen, const char **why);

/* Copies the trust domain of a valid id into td (at least KS_SPIFFE_TD_MAX + 1). */
int ks_spiffe_trust_domain(const char *id, char *td, size_t tdlen);

/*
 * A pattern is a SPIFFE ID in which a path segment may be "*", matching
 * exactly one segment ("spiffe://td/ns/ *" + "/sa/web", without the space).
 */
int ks_spiffe_pattern_validate(const char *pattern, const char **why);
/* An invalid pattern or ID matches nothing. */
bool ks_spiffe_match(const char *pattern, const char *id);

/* True when id (valid) belongs to trust domain td. */
bool ks_spiffe_in_trust_domain(const char *id, const char *td);

/*
 * Extracts the SPIFFE ID of a leaf certificate: exactly one URI SAN, which
 * must be a valid SPIFFE ID (X509-SVID.md §2). Returns 0 or -EINVAL/-ENOENT
 * (no URI SAN at all) with *why set.
 */
int ks_spiffe_from_cert(X509 *leaf, char *out, size_t outlen, const char **why);

#endif
