/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Authorization policy: which peer SPIFFE IDs may talk to us (inbound) and
 * which server IDs and keys we accept (outbound). Immutable once built: the
 * command line gives the first one, SetPolicy replaces it, and each version
 * travels inside an identity (identity.h), so a handshake sees one version
 * of identity and policy together.
 */
#ifndef KS_POLICY_H
#define KS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/x509.h>

/* Pushed for one outbound route (SetPolicy). */
struct ks_route_policy {
	char *listen;	     /* the route's LISTEN address, as configured */
	char *server_id;     /* pattern; NULL: the route's own id= */
	uint8_t (*pins)[32]; /* SHA-256 of the server's SubjectPublicKeyInfo */
	size_t npins;
};

/*
 * The server ID expected at a transparent outbound destination: an address
 * or CIDR, and a port (--destination-id, SetPolicy's destinations).
 */
struct ks_dest_policy {
	int family;	  /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* the network, host bits cleared */
	uint8_t prefix;	  /* bits: 32 or 128 for one address */
	uint16_t port;	  /* 0: any port */
	char *server_id;  /* pattern */
};

enum ks_unknown_dest {
	KS_UNKNOWN_DEST_TRUST_DOMAIN = 0, /* any server ID in our own trust domain */
	KS_UNKNOWN_DEST_REFUSE = 1,	  /* refused: reason=no_destination_id */
};

struct ks_policy {
	char **allow; /* --allow patterns; empty means "own trust domain" */
	size_t nallow;
	struct ks_route_policy *out; /* pushed only; the command line has id= per route */
	size_t nout;
	struct ks_dest_policy *dest; /* transparent outbound, by destination */
	size_t ndest;
	int unknown_dest; /* enum ks_unknown_dest: a destination dest does not name */
};

/*
 * Parses a destination: "IPv4[/BITS][:PORT]", "IPv6[/BITS]" or
 * "[IPv6[/BITS]]:PORT" into d (server_id untouched). 0, or -EINVAL with *why.
 */
int ks_dest_parse(const char *s, struct ks_dest_policy *d, const char **why);
/* The destination entry for sa: the longest prefix, a given port before "any". */
const struct ks_dest_policy *ks_policy_dest(const struct ks_policy *p, const struct sockaddr *sa);

/* Deep copy (dst is overwritten). Returns 0 or -ENOMEM, with dst empty. */
int ks_policy_copy(struct ks_policy *dst, const struct ks_policy *src);
void ks_policy_free(struct ks_policy *p);
/* The pushed policy of the outbound route listening on listen, or NULL. */
const struct ks_route_policy *ks_policy_route(const struct ks_policy *p, const char *listen);
/*
 * Pinning: with pins set, the server's key must be one of them, whatever
 * the chain (RFC 7469 §2.4 defines the SPKI digest; we take SHA-256 only).
 */
bool ks_policy_pin_ok(const struct ks_route_policy *rp, X509 *leaf);

/* Inbound: is a client with peer_id allowed? own_td is our trust domain. */
bool ks_policy_allows_inbound(const struct ks_policy *pol, const char *peer_id, const char *own_td);

/*
 * Outbound: does the server's ID satisfy what the route expects? expect may
 * be NULL, which means "any ID in our own trust domain".
 */
bool ks_policy_server_ok(const char *expect, const char *server_id, const char *own_td);

#endif
