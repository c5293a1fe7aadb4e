/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Workload API response into an identity (svid.h). Runs on the Workload
 * API thread (client.c); holds the slot's update_mu from reading the
 * identity in force to publishing the new one, as the control API and the
 * file reload do, so no two sources interleave.
 */
#include "wapi/svid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tls/spiffe.h"
#include "tls/trust.h"
#include "workload.pb-c.h"

/* Concatenated ASN.1 DER certificates (the standard's encoding of chains
 * and bundles) into a new stack; an empty field gives an empty stack. */
static int der_certs(const ProtobufCBinaryData *b, const char *what, STACK_OF(X509) * *out,
		     char *err, size_t errlen)
{
	const unsigned char *p = b->data, *end = p;
	STACK_OF(X509) *sk = sk_X509_new_null();

	if (!sk)
		return -ENOMEM;
	/* protobuf-c leaves an empty bytes field's data NULL: no arithmetic on it. */
	if (b->len)
		end = b->data + b->len;
	while (p < end) {
		const unsigned char *start = p;
		X509 *x = d2i_X509(NULL, &p, end - p);

		if (!x) {
			snprintf(err, errlen, "%s: not DER certificates (at byte %td of %zu)", what,
				 start - b->data, b->len);
			sk_X509_pop_free(sk, X509_free);
			ERR_clear_error();
			return -EINVAL;
		}
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			sk_X509_pop_free(sk, X509_free);
			return -ENOMEM;
		}
	}
	*out = sk;
	return 0;
}

static int by_td(const void *a, const void *b)
{
	return strcmp(((const struct ks_td_bundle *)a)->td, ((const struct ks_td_bundle *)b)->td);
}

static void fed_free(struct ks_td_bundle *fed, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sk_X509_pop_free(fed[i].certs, X509_free);
	free(fed);
}

/* The response's federated_bundles, keyed by trust domain ID. */
static int fed_bundles(const X509SVIDResponse *r, struct ks_td_bundle **out, size_t *nout,
		       enum ks_ident_reason *reason, char *err, size_t errlen)
{
	struct ks_td_bundle *fed;
	size_t n = 0;
	char what[KS_SPIFFE_TD_MAX + 64];
	const char *why;
	int rc;

	*out = NULL;
	*nout = 0;
	if (!r->n_federated_bundles)
		return 0;
	if (!(fed = calloc(r->n_federated_bundles, sizeof(*fed))))
		return -ENOMEM;
	for (size_t i = 0; i < r->n_federated_bundles; i++) {
		const X509SVIDResponse__FederatedBundlesEntry *e = r->federated_bundles[i];

		if (ks_spiffe_td_parse(e->key, fed[n].td, sizeof(fed[n].td), &why) < 0) {
			*reason = KS_IR_BAD_TRUST_DOMAIN;
			snprintf(err, errlen, "federated bundle for '%.*s': %s", 255, e->key, why);
			rc = -EINVAL;
			goto fail;
		}
		snprintf(what, sizeof(what), "federated bundle of %s", fed[n].td);
		if ((rc = der_certs(&e->value, what, &fed[n].certs, err, errlen)) < 0) {
			*reason = KS_IR_BAD_PEM;
			goto fail;
		}
		n++;
	}
	qsort(fed, n, sizeof(*fed), by_td);
	*out = fed;
	*nout = n;
	return 0;
fail:
	fed_free(fed, n);
	return rc;
}

/* The SVID to use: the first, or --spiffe-id's. */
static const X509SVID *choose(const struct ks_tls_opts *opts, const X509SVIDResponse *r,
			      enum ks_ident_reason *reason, char *err, size_t errlen)
{
	if (!r->n_svids) {
		*reason = KS_IR_NO_SPIFFE_ID;
		snprintf(err, errlen, "the response holds no SVID");
		return NULL;
	}
	if (!opts->spiffe_id)
		return r->svids[0];
	for (size_t i = 0; i < r->n_svids; i++)
		if (strcmp(r->svids[i]->spiffe_id, opts->spiffe_id) == 0)
			return r->svids[i];
	*reason = KS_IR_ID_MISMATCH;
	snprintf(err, errlen, "none of the response's %zu SVID(s) is --spiffe-id %s (first: %.*s)",
		 r->n_svids, opts->spiffe_id, 255, r->svids[0]->spiffe_id);
	return NULL;
}

int ks_wapi_apply(const struct ks_tls_opts *opts, struct ks_identity_slot *slot, const uint8_t *msg,
		  size_t len, struct ks_wapi_applied *out, enum ks_ident_reason *reason, char *err,
		  size_t errlen, char *kept, size_t keptlen)
{
	X509SVIDResponse *r = x509_svidresponse__unpack(NULL, len, msg);
	STACK_OF(X509) *chain = NULL, *bundle = NULL;
	struct ks_identity *cur = NULL, *id = NULL;
	struct ks_td_bundle *fed = NULL;
	struct ks_ident_parts p;
	const X509SVID *s;
	EVP_PKEY *key = NULL;
	X509 *leaf = NULL;
	size_t nfed = 0;
	const unsigned char *kp;
	const char *why;
	int rc = -EINVAL;

	*reason = KS_IR_BAD_PEM;
	/* For a rejection's log line; set again under update_mu below. */
	cur = ks_identity_slot_get(slot, NULL);
	snprintf(kept, keptlen, "%s", cur->leaf ? cur->serial : "none");
	ks_identity_put(cur);
	cur = NULL;
	if (!r) {
		snprintf(err, errlen, "not an X509SVIDResponse (%zu bytes)", len);
		return -EINVAL;
	}
	if (!(s = choose(opts, r, reason, err, errlen)))
		goto cleanup;
	if (ks_spiffe_validate(s->spiffe_id, &why) < 0) {
		*reason = KS_IR_NO_SPIFFE_ID;
		snprintf(err, errlen, "spiffe_id '%.*s': %s", 255, s->spiffe_id, why);
		goto cleanup;
	}
	if ((rc = der_certs(&s->x509_svid, "x509_svid", &chain, err, errlen)) < 0)
		goto cleanup;
	if (!(leaf = sk_X509_shift(chain))) {
		snprintf(err, errlen, "x509_svid holds no certificate");
		rc = -EINVAL;
		goto cleanup;
	}
	kp = s->x509_svid_key.data;
	key =
	    s->x509_svid_key.len ? d2i_AutoPrivateKey(NULL, &kp, (long)s->x509_svid_key.len) : NULL;
	if (!key || kp != s->x509_svid_key.data + s->x509_svid_key.len) {
		snprintf(err, errlen, "x509_svid_key: not one PKCS#8 DER private key (%zu bytes)",
			 s->x509_svid_key.len);
		ERR_clear_error();
		rc = -EINVAL;
		goto cleanup;
	}
	if ((rc = der_certs(&s->bundle, "bundle", &bundle, err, errlen)) < 0)
		goto cleanup;
	if (sk_X509_num(bundle) == 0) {
		*reason = KS_IR_NO_BUNDLE;
		snprintf(err, errlen, "the SVID comes with no bundle of its trust domain");
		rc = -EINVAL;
		goto cleanup;
	}
	if ((rc = fed_bundles(r, &fed, &nfed, reason, err, errlen)) < 0)
		goto cleanup;

	pthread_mutex_lock(&slot->update_mu);
	cur = ks_identity_slot_get(slot, NULL);
	snprintf(kept, keptlen, "%s", cur->leaf ? cur->serial : "none");
	ks_identity_parts(cur, &p);
	p.leaf = leaf;
	p.chain = chain;
	p.key = key;
	p.bundle = bundle;
	p.fed = fed;
	p.nfed = nfed;
	rc = ks_identity_build(opts, &p, &id, reason, err, errlen);
	/* X509-SVID §2: the certificate's URI SAN is the SVID's ID; a response
	 * that names another is inconsistent, whatever the certificate says. */
	if (rc == 0 && strcmp(id->id, s->spiffe_id) != 0) {
		*reason = KS_IR_ID_MISMATCH;
		snprintf(err, errlen, "the response says %.*s, its certificate is %s", 255,
			 s->spiffe_id, id->id);
		ks_identity_put(id);
		rc = -EINVAL;
	}
	if (rc == 0) {
		snprintf(out->id, sizeof(out->id), "%s", id->id);
		snprintf(out->serial, sizeof(out->serial), "%s", id->serial);
		snprintf(out->not_after, sizeof(out->not_after), "%s", id->not_after);
		out->nsvids = r->n_svids;
		out->nbundle = id->nbundle;
		out->nfed = id->nfed;
		ks_identity_slot_publish(slot, id);
	}
	pthread_mutex_unlock(&slot->update_mu);
cleanup:
	ks_identity_put(cur);
	fed_free(fed, nfed);
	sk_X509_pop_free(bundle, X509_free);
	EVP_PKEY_free(key);
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	x509_svidresponse__free_unpacked(r, NULL);
	return rc;
}
