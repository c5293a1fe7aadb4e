/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/policy.h"

#include <errno.h>
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
	return 0;
nomem:
	ks_policy_free(dst);
	return -ENOMEM;
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
