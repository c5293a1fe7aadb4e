/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authorization of a verified peer: the SPIFFE policy and pins that apply
 * to one connection now. One place, so that a full handshake (inside
 * certificate verification) and a resumption (on the session's leaf) ask
 * exactly the same question of the same policy.
 */
#ifndef KS_TLS_AUTHZ_H
#define KS_TLS_AUTHZ_H

#include <openssl/x509.h>

#include "tls/handshake.h"

/*
 * Outbound: the server ID pattern this connection expects, the most
 * specific first: the destination's (transparent routes), the route's
 * pushed one, the route's id=. NULL: any ID of our own trust domain.
 */
const char *ks_authz_expect(const struct ks_tls_peer *p);

/*
 * Is the peer with SPIFFE ID id (its leaf: pins) allowed on p's connection
 * under p->ident's policy? KS_REJ_NONE, or the reason and *why (static).
 */
enum ks_reject ks_authz_peer(const struct ks_tls_peer *p, X509 *leaf, const char *id,
			     const char **why);

#endif
