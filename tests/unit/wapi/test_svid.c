/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Workload API response applied to the identity slot (wapi/svid.c): a
 * good one is published whole (SVID, key, bundle, federated bundles); each
 * way a response can be wrong is refused with its reason, and a refused
 * response leaves the slot exactly as it was (same pointer, same
 * generation). Certificates come from tests/lib/pki.sh in a temporary
 * directory; responses are packed with the same protobuf-c code the
 * sidecar decodes with.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tests/unit/support.h"
#include "tls/identity.h"
#include "tls/pem.h"
#include "wapi/svid.h"
#include "workload.pb-c.h"

static const char own_id[] = "spiffe://example.org/ns/a/sa/web";
static char dir[256];
static struct ks_tls_opts tls;
static struct ks_identity_slot slot;

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s/ks-wapisvid-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	ks_test_sh("set -e; P=../lib/pki.sh; D=%s; I=%s;"
		   "$P ca $D/ca; $P ca $D/other;"
		   "$P issue $D/ca good $I --serial 4242; $P issue $D/ca good2 $I --serial 4343;"
		   "$P issue $D/ca db spiffe://example.org/ns/a/sa/db --serial 4444;"
		   "$P issue $D/ca expired $I --expired;"
		   "$P issue $D/other alien $I",
		   dir, own_id);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ks_test_sh("rm -rf %s", dir);
	return 0;
}

static int fresh(void **state)
{
	struct ks_ident_parts none = {0};
	struct ks_identity *id;
	enum ks_ident_reason reason;
	char err[256];

	(void)state;
	memset(&tls, 0, sizeof(tls));
	tls.min_version = TLS1_3_VERSION;
	if (ks_identity_build(&tls, &none, &id, &reason, err, sizeof(err)) < 0)
		fail_msg("empty identity: %s", err);
	ks_identity_slot_init(&slot, id);
	return 0;
}

static int done(void **state)
{
	(void)state;
	ks_identity_slot_fini(&slot);
	return 0;
}

/* The certificates of DIR/name, DER-concatenated as the standard sends them. */
static ProtobufCBinaryData der_certs(const char *name)
{
	char *pem = ks_test_slurp(dir, name), err[256];
	STACK_OF(X509) *sk = NULL;
	ProtobufCBinaryData b = {0};

	if (ks_pem_certs(pem, strlen(pem), &sk, err, sizeof(err)) < 0)
		fail_msg("%s: %s", name, err);
	for (int i = 0; i < sk_X509_num(sk); i++) {
		unsigned char *p = NULL;
		int n = i2d_X509(sk_X509_value(sk, i), &p);

		assert_true(n > 0);
		b.data = realloc(b.data, b.len + (size_t)n);
		memcpy(b.data + b.len, p, (size_t)n);
		b.len += (size_t)n;
		OPENSSL_free(p);
	}
	sk_X509_pop_free(sk, X509_free);
	free(pem);
	return b;
}

/* DIR/name's key as PKCS#8 DER. */
static ProtobufCBinaryData der_key(const char *name)
{
	char *pem = ks_test_slurp(dir, name), err[256];
	EVP_PKEY *key = NULL;
	PKCS8_PRIV_KEY_INFO *p8;
	ProtobufCBinaryData b = {0};
	unsigned char *p = NULL;
	int n;

	if (ks_pem_key(pem, strlen(pem), &key, err, sizeof(err)) < 0)
		fail_msg("%s: %s", name, err);
	p8 = EVP_PKEY2PKCS8(key);
	assert_non_null(p8);
	n = i2d_PKCS8_PRIV_KEY_INFO(p8, &p);
	assert_true(n > 0);
	b.data = malloc((size_t)n);
	memcpy(b.data, p, (size_t)n);
	b.len = (size_t)n;
	OPENSSL_free(p);
	PKCS8_PRIV_KEY_INFO_free(p8);
	EVP_PKEY_free(key);
	free(pem);
	return b;
}

static ProtobufCBinaryData bytes(const char *s)
{
	ProtobufCBinaryData b = {.len = strlen(s), .data = (uint8_t *)strdup(s)};

	return b;
}

/* Replaces a field's bytes with s. */
static void set(ProtobufCBinaryData *b, const char *s)
{
	free(b->data);
	*b = bytes(s);
}

/* A response under construction: up to 3 SVIDs and 2 federated bundles. */
struct resp {
	X509SVIDResponse r;
	X509SVID s[3], *sp[3];
	X509SVIDResponse__FederatedBundlesEntry f[2], *fp[2];
};

static void resp_init(struct resp *x)
{
	x->r = (X509SVIDResponse)X509_SVIDRESPONSE__INIT;
	x->r.svids = x->sp;
	x->r.federated_bundles = x->fp;
}

/* Adds an SVID: id, chain and key files in DIR, bundle file. */
static void add_svid(struct resp *x, const char *id, const char *crt, const char *key,
		     const char *bundle)
{
	X509SVID *s = &x->s[x->r.n_svids];

	*s = (X509SVID)X509_SVID__INIT;
	s->spiffe_id = (char *)id;
	s->x509_svid = crt ? der_certs(crt) : bytes("");
	s->x509_svid_key = key ? der_key(key) : bytes("");
	s->bundle = bundle ? der_certs(bundle) : bytes("");
	x->sp[x->r.n_svids++] = s;
}

static void add_fed(struct resp *x, const char *td, const char *bundle)
{
	X509SVIDResponse__FederatedBundlesEntry *e = &x->f[x->r.n_federated_bundles];

	*e = (X509SVIDResponse__FederatedBundlesEntry)
	    X509_SVIDRESPONSE__FEDERATED_BUNDLES_ENTRY__INIT;
	e->key = (char *)td;
	e->value = der_certs(bundle);
	x->fp[x->r.n_federated_bundles++] = e;
}

static void resp_free(struct resp *x)
{
	for (size_t i = 0; i < x->r.n_svids; i++) {
		free(x->s[i].x509_svid.data);
		free(x->s[i].x509_svid_key.data);
		free(x->s[i].bundle.data);
	}
	for (size_t i = 0; i < x->r.n_federated_bundles; i++)
		free(x->f[i].value.data);
}

/* Packs and applies x; returns the result, reason and message. */
static int apply(struct resp *x, struct ks_wapi_applied *a, enum ks_ident_reason *reason, char *err,
		 size_t errlen, char *kept)
{
	size_t n = x509_svidresponse__get_packed_size(&x->r);
	uint8_t *buf = malloc(n + 1);
	int rc;

	x509_svidresponse__pack(&x->r, buf);
	rc = ks_wapi_apply(&tls, &slot, buf, n, a, reason, err, errlen, kept, 80);
	free(buf);
	resp_free(x);
	return rc;
}

/* A refusal: the slot is untouched, and the reason and message are as expected. */
static void refused(struct resp *x, enum ks_ident_reason want, const char *msg)
{
	struct ks_identity *before = slot.cur;
	uint64_t gen = slot.gen;
	struct ks_wapi_applied a;
	enum ks_ident_reason reason;
	char err[512], kept[80];

	assert_true(apply(x, &a, &reason, err, sizeof(err), kept) < 0);
	if (!strstr(err, msg))
		fail_msg("refused with '%s', want '%s'", err, msg);
	assert_int_equal(reason, want);
	assert_ptr_equal(slot.cur, before);
	assert_int_equal(slot.gen, gen);
	assert_string_equal(kept, before->leaf ? before->serial : "none");
}

static void test_first_svid(void **state)
{
	struct resp x;
	struct ks_wapi_applied a;
	enum ks_ident_reason reason;
	char err[512], kept[80];

	(void)state;
	resp_init(&x);
	add_svid(&x, own_id, "ca/good.crt", "ca/good.key", "ca/bundle.crt");
	add_svid(&x, "spiffe://example.org/ns/a/sa/db", "ca/db.crt", "ca/db.key", "ca/bundle.crt");
	add_fed(&x, "spiffe://other.org", "other/bundle.crt");
	if (apply(&x, &a, &reason, err, sizeof(err), kept) < 0)
		fail_msg("refused: %s", err);
	assert_string_equal(kept, "none");
	assert_string_equal(a.id, own_id);
	assert_string_equal(a.serial, "1092"); /* 4242 */
	assert_int_equal(a.nsvids, 2);
	assert_int_equal(a.nfed, 1);
	assert_non_null(slot.cur->leaf);
	assert_string_equal(slot.cur->fed[0].td, "other.org");

	/* The next response replaces the federated set: none now. */
	resp_init(&x);
	add_svid(&x, own_id, "ca/good2.crt", "ca/good2.key", "ca/bundle.crt");
	if (apply(&x, &a, &reason, err, sizeof(err), kept) < 0)
		fail_msg("refused: %s", err);
	assert_string_equal(kept, "1092");
	assert_string_equal(a.serial, "10F7"); /* 4343 */
	assert_int_equal(slot.cur->nfed, 0);
}

/* --spiffe-id chooses among several; none matching is a refusal. */
static void test_choose(void **state)
{
	struct resp x;
	struct ks_wapi_applied a;
	enum ks_ident_reason reason;
	char err[512], kept[80];

	(void)state;
	tls.spiffe_id = (char *)"spiffe://example.org/ns/a/sa/db";
	resp_init(&x);
	add_svid(&x, own_id, "ca/good.crt", "ca/good.key", "ca/bundle.crt");
	add_svid(&x, tls.spiffe_id, "ca/db.crt", "ca/db.key", "ca/bundle.crt");
	if (apply(&x, &a, &reason, err, sizeof(err), kept) < 0)
		fail_msg("refused: %s", err);
	assert_string_equal(a.id, tls.spiffe_id);
	assert_string_equal(a.serial, "115C"); /* 4444 */

	resp_init(&x);
	add_svid(&x, own_id, "ca/good.crt", "ca/good.key", "ca/bundle.crt");
	refused(&x, KS_IR_ID_MISMATCH, "none of the response's 1 SVID(s) is --spiffe-id");
	tls.spiffe_id = NULL;
}

static void test_refusals(void **state)
{
	struct resp x;
	struct ks_wapi_applied a;
	enum ks_ident_reason reason;
	char err[512], kept[80];
	uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};

	(void)state;
	/* A good one first: every refusal below must keep it. */
	resp_init(&x);
	add_svid(&x, own_id, "ca/good.crt", "ca/good.key", "ca/bundle.crt");
	assert_int_equal(apply(&x, &a, &reason, err, sizeof(err), kept), 0);

	/* Not protobuf at all. */
	assert_true(ks_wapi_apply(&tls, &slot, junk, sizeof(junk), &a, &reason, err, sizeof(err),
				  kept, sizeof(kept)) < 0);
	assert_non_null(strstr(err, "not an X509SVIDResponse"));

	resp_init(&x);
	refused(&x, KS_IR_NO_SPIFFE_ID, "no SVID");

	resp_init(&x);
	add_svid(&x, own_id, NULL, "ca/good2.key", "ca/bundle.crt");
	set(&x.s[0].x509_svid, "\x30\x82garbage");
	refused(&x, KS_IR_BAD_PEM, "x509_svid: not DER certificates");

	resp_init(&x);
	add_svid(&x, own_id, NULL, "ca/good2.key", "ca/bundle.crt");
	refused(&x, KS_IR_BAD_PEM, "x509_svid holds no certificate");

	resp_init(&x);
	add_svid(&x, own_id, "ca/good2.crt", NULL, "ca/bundle.crt");
	set(&x.s[0].x509_svid_key, "not a key");
	refused(&x, KS_IR_BAD_PEM, "x509_svid_key: not one PKCS#8 DER private key");

	/* A key followed by trailing bytes is not one key. */
	resp_init(&x);
	add_svid(&x, own_id, "ca/good2.crt", "ca/good2.key", "ca/bundle.crt");
	x.s[0].x509_svid_key.data =
	    realloc(x.s[0].x509_svid_key.data, x.s[0].x509_svid_key.len + 1);
	x.s[0].x509_svid_key.data[x.s[0].x509_svid_key.len++] = 0;
	refused(&x, KS_IR_BAD_PEM, "not one PKCS#8");

	resp_init(&x);
	add_svid(&x, own_id, "ca/good2.crt", "ca/good.key", "ca/bundle.crt");
	refused(&x, KS_IR_KEY_MISMATCH, "does not match");

	resp_init(&x);
	add_svid(&x, own_id, "ca/good2.crt", "ca/good2.key", NULL);
	refused(&x, KS_IR_NO_BUNDLE, "no bundle");

	resp_init(&x);
	add_svid(&x, own_id, "ca/good2.crt", "ca/good2.key", "other/bundle.crt");
	refused(&x, KS_IR_CHAIN_UNVERIFIED, "");

	resp_init(&x);
	add_svid(&x, own_id, "ca/expired.crt", "ca/expired.key", "ca/bundle.crt");
	refused(&x, KS_IR_EXPIRED, "");

	/* The response names one ID, the certificate carries another. */
	resp_init(&x);
	add_svid(&x, "spiffe://example.org/ns/a/sa/db", "ca/good2.crt", "ca/good2.key",
		 "ca/bundle.crt");
	refused(&x, KS_IR_ID_MISMATCH, "the response says spiffe://example.org/ns/a/sa/db");

	resp_init(&x);
	add_svid(&x, "not-a-spiffe-id", "ca/good2.crt", "ca/good2.key", "ca/bundle.crt");
	refused(&x, KS_IR_NO_SPIFFE_ID, "spiffe_id 'not-a-spiffe-id'");

	resp_init(&x);
	add_svid(&x, own_id, "ca/good2.crt", "ca/good2.key", "ca/bundle.crt");
	add_fed(&x, "https://other.org", "other/bundle.crt");
	refused(&x, KS_IR_BAD_TRUST_DOMAIN, "federated bundle for 'https://other.org'");

	/* Our own trust domain as a federated one. */
	resp_init(&x);
	add_svid(&x, own_id, "ca/good2.crt", "ca/good2.key", "ca/bundle.crt");
	add_fed(&x, "spiffe://example.org", "other/bundle.crt");
	refused(&x, KS_IR_BAD_TRUST_DOMAIN, "our own trust domain");

	/* Still the first one, served. */
	assert_string_equal(slot.cur->serial, "1092");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_first_svid, fresh, done),
	    cmocka_unit_test_setup_teardown(test_choose, fresh, done),
	    cmocka_unit_test_setup_teardown(test_refusals, fresh, done),
	};

	return cmocka_run_group_tests_name("wapi_svid", tests, setup, teardown);
}
