/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "tls/spiffe.h"

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

void ks_policy_free(struct ks_policy *p)
{
	for (size_t i = 0; i < p->nallow; i++)
		free(p->allow[i]);
	free(p->allow);
	for (size_t i = 0; i < p->nout; i++) {
		free(p->out[i].listen);
		free(p->out[i].server_id);
		free(p->out[i].pins);
	}
	free(p->out);
	for (size_t i = 0; i < p->ndest; i++)
		free(p->dest[i].server_id);
	free(p->dest);
	memset(p, 0, sizeof(*p));
}

int ks_policy_copy(struct ks_policy *dst, const struct ks_policy *src)
{
	memset(dst, 0, sizeof(*dst));
	if (src->nallow) {
		dst->allow = calloc(src->nallow, sizeof(*dst->allow));
		if (!dst->allow)
			goto nomem;
		for (; dst->nallow < src->nallow; dst->nallow++) {
			dst->allow[dst->nallow] = strdup(src->allow[dst->nallow]);
			if (!dst->allow[dst->nallow])
				goto nomem;
		}
	}
	if (src->nout) {
		dst->out = calloc(src->nout, sizeof(*dst->out));
		if (!dst->out)
			goto nomem;
		for (; dst->nout < src->nout; dst->nout++) {
			const struct ks_route_policy *s = &src->out[dst->nout];
			struct ks_route_policy *d = &dst->out[dst->nout];

			d->listen = strdup(s->listen);
			d->server_id = s->server_id ? strdup(s->server_id) : NULL;
			d->pins = s->npins ? malloc(s->npins * sizeof(*s->pins)) : NULL;
			if (!d->listen || (s->server_id && !d->server_id) ||
			    (s->npins && !d->pins)) {
				dst->nout++; /* so ks_policy_free frees d */
				goto nomem;
			}
			if (s->npins)
				memcpy(d->pins, s->pins, s->npins * sizeof(*s->pins));
			d->npins = s->npins;
		}
	}
	if (src->ndest) {
		dst->dest = calloc(src->ndest, sizeof(*dst->dest));
		if (!dst->dest)
			goto nomem;
		for (; dst->ndest < src->ndest; dst->ndest++) {
			dst->dest[dst->ndest] = src->dest[dst->ndest];
			dst->dest[dst->ndest].server_id = strdup(src->dest[dst->ndest].server_id);
			if (!dst->dest[dst->ndest].server_id)
				goto nomem;
		}
	}
	dst->unknown_dest = src->unknown_dest;
	return 0;
nomem:
	ks_policy_free(dst);
	return -ENOMEM;
}

/* Clears the host bits past prefix. */
static void mask(uint8_t *a, size_t len, unsigned prefix)
{
	for (size_t i = 0; i < len; i++) {
		unsigned keep = prefix > 8 * i ? prefix - 8 * (unsigned)i : 0;

		if (keep < 8)
			a[i] &= (uint8_t)(0xff00u >> keep);
	}
}

int ks_dest_parse(const char *s, struct ks_dest_policy *d, const char **why)
{
	char host[INET6_ADDRSTRLEN + 8];
	const char *port = NULL, *end;
	unsigned long bits, pn;
	char *slash, *e;
	size_t hlen;

	memset(d->addr, 0, sizeof(d->addr));
	d->port = 0;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || (end[1] && end[1] != ':')) {
			*why = "expected [IPv6[/BITS]]:PORT";
			return -EINVAL;
		}
		hlen = (size_t)(end - s - 1);
		s++;
		port = end[1] ? end + 2 : NULL;
	} else {
		end = strrchr(s, ':');
		/* Two colons or more: a bare IPv6 address, which has no port. */
		if (end && strchr(s, ':') == end) {
			hlen = (size_t)(end - s);
			port = end + 1;
		} else {
			hlen = strlen(s);
		}
	}
	if (hlen == 0 || hlen >= sizeof(host)) {
		*why = "no address";
		return -EINVAL;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	slash = strchr(host, '/');
	if (slash)
		*slash++ = '\0';
	if (inet_pton(AF_INET, host, d->addr) == 1) {
		d->family = AF_INET;
		d->prefix = 32;
	} else if (inet_pton(AF_INET6, host, d->addr) == 1) {
		d->family = AF_INET6;
		d->prefix = 128;
	} else {
		*why = "not an IPv4 or IPv6 address (names are not resolved here)";
		return -EINVAL;
	}
	if (slash) {
		bits = strtoul(slash, &e, 10);
		if (!*slash || *e || bits > d->prefix) {
			*why = "the prefix length is not a number within the address's bits";
			return -EINVAL;
		}
		d->prefix = (uint8_t)bits;
		mask(d->addr, d->family == AF_INET ? 4 : 16, d->prefix);
	}
	if (port) {
		pn = strtoul(port, &e, 10);
		if (!*port || *e || pn == 0 || pn > 65535) {
			*why = "the port is not a number in 1-65535";
			return -EINVAL;
		}
		d->port = (uint16_t)pn;
	}
	return 0;
}

const struct ks_dest_policy *ks_policy_dest(const struct ks_policy *p, const struct sockaddr *sa)
{
	const struct ks_dest_policy *best = NULL;
	uint8_t addr[16] = {0};
	uint16_t port;
	int family;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		family = AF_INET;
		memcpy(addr, &in->sin_addr, 4);
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		port = ntohs(in6->sin6_port);
		/* A v4-mapped destination is the IPv4 host it maps. */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			family = AF_INET;
			memcpy(addr, in6->sin6_addr.s6_addr + 12, 4);
		} else {
			family = AF_INET6;
			memcpy(addr, &in6->sin6_addr, 16);
		}
	} else {
		return NULL;
	}
	for (size_t i = 0; i < p->ndest; i++) {
		const struct ks_dest_policy *d = &p->dest[i];
		uint8_t m[16];

		if (d->family != family || (d->port && d->port != port))
			continue;
		memcpy(m, addr, sizeof(m));
		mask(m, family == AF_INET ? 4 : 16, d->prefix);
		if (memcmp(m, d->addr, family == AF_INET ? 4 : 16) != 0)
			continue;
		if (!best || d->prefix > best->prefix ||
		    (d->prefix == best->prefix && d->port && !best->port))
			best = d;
	}
	return best;
}

const struct ks_route_policy *ks_policy_route(const struct ks_policy *p, const char *listen)
{
	for (size_t i = 0; i < p->nout; i++)
		if (strcmp(p->out[i].listen, listen) == 0)
			return &p->out[i];
	return NULL;
}

bool ks_policy_pin_ok(const struct ks_route_policy *rp, X509 *leaf)
{
	unsigned char *der = NULL;
	uint8_t md[32];
	unsigned mdlen = 0;
	int len;
	bool ok = false;

	if (!rp || !rp->npins)
		return true;
	len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf), &der);
	if (len <= 0)
		return false;
	if (EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) && mdlen == 32)
		for (size_t i = 0; i < rp->npins && !ok; i++)
			ok = CRYPTO_memcmp(md, rp->pins[i], 32) == 0;
	OPENSSL_free(der);
	return ok;
}
