/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control API's updates (control_update.c): every way a pushed identity,
 * bundle, CRL or policy can be wrong is refused with its own reason, and a
 * refused update leaves the identity slot exactly as it was (same pointer,
 * same generation). SetTicketKeys: every bad push is refused and leaves the
 * ticket ring's keys as they were, byte for byte; two rings given the same
 * keys seal and open each other's tickets; the log names keys, never a
 * secret. Certificates come from tests/lib/pki.sh (the openssl
 * CLI) and from the dev CA (devca.c) in a temporary directory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "control/update.h"
#include "ctl/devca.h"
#include "dataplane/settings.h"
#include "tests/unit/support.h"
#include "tls/identity.h"
#include "tls/resume.h"

#define CODE(x)	  KTLS__CONTROL__V1__CODE__CODE_##x
#define REASON(x) KTLS__CONTROL__V1__REASON__REASON_##x

static const char own_id[] = "spiffe://example.org/ns/a/sa/web";
static char dir[256];
static struct ks_dp_config dp;
static struct ks_tls_opts tls;
static struct ks_identity_slot slot;
static struct ks_ctl_env env;

/* The contents of DIR/name; the caller frees. */
static char *file(const char *name)
{
	return ks_test_slurp(dir, name);
}

static int setup(void **state)
{
	char err[512];

	(void)state;
	snprintf(dir, sizeof(dir), "%s/ks-ctlupd-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	ks_test_sh("set -e; P=../lib/pki.sh; D=%s; I=%s;"
		   "$P ca $D/ca; $P ca $D/other;"
		   "$P issue $D/ca good $I; $P issue $D/ca good2 $I;"
		   "$P issue $D/ca wrongid spiffe://example.org/ns/a/sa/db;"
		   "$P issue $D/ca weak $I --rsa 1024;"
		   "$P issue $D/ca nouri x --no-uri;"
		   "$P issue $D/ca expired $I --expired;"
		   "$P issue $D/ca future $I --not-yet-valid;"
		   "$P issue $D/other alien $I;"
		   "$P issue $D/ca same4242 $I --serial 4242;"
		   "$P issue $D/other same4242 $I --serial 4242;"
		   "cat $D/ca/bundle.crt $D/other/bundle.crt > $D/both.crt;"
		   "echo 'not PEM at all' > $D/garbage.pem",
		   dir, own_id);
	snprintf(err, sizeof(err), "%s/devca", dir);
	if (ks_devca_init(err, "example.org", false, err, sizeof(err)) < 0)
		fail_msg("devca: %s", err);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ks_test_sh("rm -rf %s", dir);
	return 0;
}

/* Each test starts from the sidecar's state with no identity, as when
 * started without --cert and waiting for the control plane. */
static int fresh(void **state)
{
	struct ks_ident_parts none = {0};
	struct ks_identity *id;
	enum ks_ident_reason reason;
	char err[256];

	(void)state;
	memset(&dp, 0, sizeof(dp));
	memset(&tls, 0, sizeof(tls));
	tls.min_version = TLS1_3_VERSION;
	tls.spiffe_id = (char *)own_id;
	if (ks_identity_build(&tls, &none, &id, &reason, err, sizeof(err)) < 0)
		fail_msg("empty identity: %s", err);
	ks_identity_slot_init(&slot, id);
	memset(&env, 0, sizeof(env));
	env.dp = &dp;
	env.tls = &tls;
	env.ident = &slot;
	return 0;
}

static int done(void **state)
{
	(void)state;
	ks_ctl_env_fini(&env);
	ks_identity_slot_fini(&slot);
	return 0;
}

static void expect(const struct ks_ctl_result *res, int code, int reason, const char *part)
{
	if (res->code != code || res->reason != reason)
		fail_msg("code %d reason %d (%s), want code %d reason %d", res->code, res->reason,
			 res->msg, code, reason);
	if (part && !strstr(res->msg, part))
		fail_msg("message '%s' lacks '%s'", res->msg, part);
}

/* Pushes chain/key/bundle (file names in dir; NULL = empty). */
static struct ks_ctl_result push_identity(const char *chain, const char *key, const char *bundle)
{
	Ktls__Control__V1__SetIdentity m = KTLS__CONTROL__V1__SET_IDENTITY__INIT;
	struct ks_ctl_result res = {0};
	char *c = chain ? file(chain) : strdup(""), *k = key ? file(key) : strdup("");
	char *b = bundle ? file(bundle) : strdup("");

	m.chain_pem = c;
	m.key_pem = k;
	m.bundle_pem = b;
	ks_ctl_set_identity(&env, &m, &res);
	free(c);
	free(k);
	free(b);
	return res;
}

/* A refused update must leave the slot untouched. */
#define UNCHANGED(call, code, reason, part)                                                        \
	do {                                                                                       \
		struct ks_identity *before_ = slot.cur;                                            \
		uint64_t gen_ = slot.gen;                                                          \
		struct ks_ctl_result r_ = (call);                                                  \
		expect(&r_, code, reason, part);                                                   \
		assert_ptr_equal(slot.cur, before_);                                               \
		assert_int_equal(slot.gen, gen_);                                                  \
	} while (0)

static void test_identity_errors(void **state)
{
	(void)state;
	UNCHANGED(push_identity("ca/good.crt", "ca/good.key", NULL), CODE(REJECTED),
		  REASON(NO_BUNDLE), "no trust bundle");
	UNCHANGED(push_identity("garbage.pem", "ca/good.key", "ca/bundle.crt"), CODE(REJECTED),
		  REASON(BAD_PEM), "no PEM certificate");
	UNCHANGED(push_identity("ca/good.crt", "garbage.pem", "ca/bundle.crt"), CODE(REJECTED),
		  REASON(BAD_PEM), "private key");
	UNCHANGED(push_identity("ca/good.crt", "ca/good.key", "garbage.pem"), CODE(REJECTED),
		  REASON(BAD_PEM), "bundle");
	UNCHANGED(push_identity("ca/good.crt", NULL, "ca/bundle.crt"), CODE(REJECTED),
		  REASON(NO_PENDING_KEY), "no CreateCsr");
	UNCHANGED(push_identity("ca/good.crt", "ca/good2.key", "ca/bundle.crt"), CODE(REJECTED),
		  REASON(KEY_MISMATCH), "does not match");
	UNCHANGED(push_identity("ca/expired.crt", "ca/expired.key", "ca/bundle.crt"),
		  CODE(REJECTED), REASON(EXPIRED), "expired");
	UNCHANGED(push_identity("ca/future.crt", "ca/future.key", "ca/bundle.crt"), CODE(REJECTED),
		  REASON(NOT_YET_VALID), "not yet valid");
	UNCHANGED(push_identity("other/alien.crt", "other/alien.key", "ca/bundle.crt"),
		  CODE(REJECTED), REASON(CHAIN_UNVERIFIED), "does not verify");
	UNCHANGED(push_identity("ca/wrongid.crt", "ca/wrongid.key", "ca/bundle.crt"),
		  CODE(REJECTED), REASON(ID_MISMATCH), "--spiffe-id");
	UNCHANGED(push_identity("ca/nouri.crt", "ca/nouri.key", "ca/bundle.crt"), CODE(REJECTED),
		  REASON(NO_SPIFFE_ID), "SPIFFE");
	UNCHANGED(push_identity("ca/weak.crt", "ca/weak.key", "ca/bundle.crt"), CODE(REJECTED),
		  REASON(WEAK_KEY), "2048");

	/* The good one goes in, with its bundle, in one update. */
	struct ks_ctl_result res = push_identity("ca/good.crt", "ca/good.key", "ca/bundle.crt");
	expect(&res, CODE(OK), REASON(NONE), own_id);
	assert_non_null(slot.cur->server_ctx);
	assert_string_equal(slot.cur->id, own_id);

	/* With an identity in force, a bad push still changes nothing. */
	UNCHANGED(push_identity("ca/good2.crt", "ca/good.key", NULL), CODE(REJECTED),
		  REASON(KEY_MISMATCH), NULL);
	/* and a good one without a bundle uses the bundle in force */
	res = push_identity("ca/good2.crt", "ca/good2.key", NULL);
	expect(&res, CODE(OK), REASON(NONE), NULL);
}

/* SetTrustBundle with PEM text, for trust domain td ("" = our own). */
static void set_bundle(struct ks_ctl_env *e, const char *pem, const char *td,
		       struct ks_ctl_result *res)
{
	Ktls__Control__V1__SetTrustBundle m = KTLS__CONTROL__V1__SET_TRUST_BUNDLE__INIT;

	m.bundle_pem = (char *)pem;
	m.trust_domain = (char *)td;
	ks_ctl_set_bundle(e, &m, res);
}

static struct ks_ctl_result push_bundle_td(const char *name, const char *td)
{
	struct ks_ctl_result res = {0};
	char *b = name ? file(name) : strdup("");

	set_bundle(&env, b, td, &res);
	free(b);
	return res;
}

static struct ks_ctl_result push_bundle(const char *name)
{
	return push_bundle_td(name, "");
}

static void test_bundle(void **state)
{
	struct ks_ctl_result res;

	(void)state;
	/* Before any identity: a bundle alone is accepted (the agent may
	 * send it first). */
	res = push_bundle("other/bundle.crt");
	expect(&res, CODE(OK), REASON(NONE), "1 certificate");
	UNCHANGED(push_bundle("garbage.pem"), CODE(REJECTED), REASON(BAD_PEM), NULL);
	res = push_identity("other/alien.crt", "other/alien.key", NULL);
	expect(&res, CODE(OK), REASON(NONE), NULL);
	/* A bundle under which our own chain does not verify is refused. */
	UNCHANGED(push_bundle("ca/bundle.crt"), CODE(REJECTED), REASON(CHAIN_UNVERIFIED),
		  "does not verify");
	/* The overlap step of a CA rotation: both roots. */
	res = push_bundle("both.crt");
	expect(&res, CODE(OK), REASON(NONE), "2 certificate");
	assert_int_equal(slot.cur->nbundle, 2);
	res = push_identity("ca/good.crt", "ca/good.key", NULL);
	expect(&res, CODE(OK), REASON(NONE), NULL);
	res = push_bundle("ca/bundle.crt");
	expect(&res, CODE(OK), REASON(NONE), NULL);
	assert_int_equal(slot.cur->nbundle, 1);
}

/* Federation: bundles per trust domain, each replaced or removed alone. */
static void test_federated_bundle(void **state)
{
	struct ks_ctl_result res;

	(void)state;
	res = push_identity("ca/good.crt", "ca/good.key", "ca/bundle.crt");
	expect(&res, CODE(OK), REASON(NONE), NULL);
	UNCHANGED(push_bundle_td("other/bundle.crt", "Other.org"), CODE(REJECTED),
		  REASON(BAD_TRUST_DOMAIN), "uppercase");
	UNCHANGED(push_bundle_td("other/bundle.crt", "spiffe://other.org/ns/x"), CODE(REJECTED),
		  REASON(BAD_TRUST_DOMAIN), "no path");
	UNCHANGED(push_bundle_td("garbage.pem", "other.org"), CODE(REJECTED), REASON(BAD_PEM),
		  NULL);
	res = push_bundle_td("other/bundle.crt", "spiffe://other.org");
	expect(&res, CODE(OK), REASON(NONE), "federated bundle of other.org");
	assert_int_equal(slot.cur->nfed, 1);
	assert_string_equal(slot.cur->fed[0].td, "other.org");
	assert_int_equal(slot.cur->nbundle, 1); /* our own is untouched */
	res = push_bundle_td("both.crt", "third.example");
	expect(&res, CODE(OK), REASON(NONE), "2 certificate");
	assert_int_equal(slot.cur->nfed, 2);
	/* Our own trust domain named explicitly is our own bundle: one that
	 * drops our root is refused as before. */
	UNCHANGED(push_bundle_td("other/bundle.crt", "example.org"), CODE(REJECTED),
		  REASON(CHAIN_UNVERIFIED), "does not verify");
	/* Our own bundle cannot be emptied; a federation can be ended. */
	UNCHANGED(push_bundle_td(NULL, ""), CODE(REJECTED), REASON(BAD_PEM), NULL);
	res = push_bundle_td(NULL, "other.org");
	expect(&res, CODE(OK), REASON(NONE), "removed");
	assert_int_equal(slot.cur->nfed, 1);
	assert_string_equal(slot.cur->fed[0].td, "third.example");
	/* Updates of other parts keep the federation. */
	res = push_identity("ca/good2.crt", "ca/good2.key", NULL);
	expect(&res, CODE(OK), REASON(NONE), NULL);
	assert_int_equal(slot.cur->nfed, 1);
}

static void test_csr(void **state)
{
	struct ks_ctl_result res = {0};
	Ktls__Control__V1__SetIdentity m = KTLS__CONTROL__V1__SET_IDENTITY__INIT;
	char *pem = NULL, *chain = NULL, *bundle = NULL, cadir[512], err[512];
	struct ks_devca *ca;
	X509_REQ *req;
	BIO *bio;

	(void)state;
	ks_ctl_create_csr(&env, "spiffe://example.org/ns/a/sa/db", &pem, &res);
	expect(&res, CODE(REJECTED), REASON(ID_MISMATCH), "--spiffe-id");
	assert_null(pem);
	ks_ctl_create_csr(&env, "spiffe://Bad/x", &pem, &res);
	expect(&res, CODE(REJECTED), REASON(ID_MISMATCH), NULL);
	tls.spiffe_id = NULL;
	ks_ctl_create_csr(&env, "spiffe://Bad/x", &pem, &res);
	expect(&res, CODE(INVALID_ARGUMENT), REASON(NO_SPIFFE_ID), NULL);
	ks_ctl_create_csr(&env, "", &pem, &res);
	expect(&res, CODE(INVALID_ARGUMENT), REASON(NO_SPIFFE_ID), "--spiffe-id");
	tls.spiffe_id = (char *)own_id;
	assert_null(env.csr_key);

	/* Empty: the configured ID. The CSR is P-256 and names it. */
	ks_ctl_create_csr(&env, "", &pem, &res);
	expect(&res, CODE(OK), REASON(NONE), own_id);
	assert_non_null(pem);
	assert_non_null(env.csr_key);
	bio = BIO_new_mem_buf(pem, -1);
	req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
	BIO_free(bio);
	assert_non_null(req);
	assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
	assert_true(EVP_PKEY_is_a(X509_REQ_get0_pubkey(req), "EC"));
	X509_REQ_free(req);

	/* The dev CA signs it; SetIdentity without a key uses the pending one. */
	snprintf(cadir, sizeof(cadir), "%s/devca", dir);
	if (ks_devca_open(cadir, &ca, err, sizeof(err)) < 0)
		fail_msg("devca: %s", err);
	assert_int_equal(
	    ks_devca_sign_csr(ca, pem, strlen(pem), own_id, 600, &chain, err, sizeof(err)), 0);
	assert_int_equal(ks_devca_bundle_pem(ca, &bundle), 0);
	m.chain_pem = chain;
	m.key_pem = (char *)"";
	m.bundle_pem = bundle;
	ks_ctl_set_identity(&env, &m, &res);
	expect(&res, CODE(OK), REASON(NONE), own_id);
	assert_null(env.csr_key); /* consumed: it now lives in the identity only */
	/* A second push of the same chain has no pending key left. */
	UNCHANGED((ks_ctl_set_identity(&env, &m, &res), res), CODE(REJECTED),
		  REASON(NO_PENDING_KEY), NULL);
	/* A newer CSR replaces the pending key: the older chain no longer fits. */
	free(pem);
	ks_ctl_create_csr(&env, NULL, &pem, &res);
	expect(&res, CODE(OK), REASON(NONE), NULL);
	UNCHANGED((ks_ctl_set_identity(&env, &m, &res), res), CODE(REJECTED), REASON(KEY_MISMATCH),
		  NULL);
	assert_non_null(env.csr_key); /* a refused push keeps it pending */
	free(pem);
	free(chain);
	free(bundle);
	ks_devca_close(ca);
}

/* The n-th certificate of a PEM text (the test fails if there is none). */
static X509 *pem_cert(const char *pem, int n)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = NULL;

	for (int i = 0; i <= n; i++) {
		X509_free(x);
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		assert_non_null(x);
	}
	BIO_free(bio);
	return x;
}

static void key_digest(X509 *x, uint8_t out[32])
{
	unsigned len = 0;

	assert_true(X509_pubkey_digest(x, EVP_sha256(), out, &len));
	assert_int_equal(len, 32);
}

/* A CRL (PEM) from the CA whose certificate and key are the files cert and key, revoking serial. */
static char *make_crl(const char *cert, const char *key, long serial)
{
	char *cpem = file(cert), *kpem = file(key), *out;
	BIO *cb = BIO_new_mem_buf(cpem, -1), *kb = BIO_new_mem_buf(kpem, -1),
	    *ob = BIO_new(BIO_s_mem());
	X509 *ca = PEM_read_bio_X509(cb, NULL, NULL, NULL);
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
	X509_CRL *crl = X509_CRL_new();
	X509_REVOKED *rev = X509_REVOKED_new();
	ASN1_INTEGER *sn = ASN1_INTEGER_new();
	ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL)),
		  *next = ASN1_TIME_set(NULL, time(NULL) + 3600);
	BUF_MEM *mem;

	assert_non_null(ca);
	assert_non_null(pk);
	assert_true(ASN1_INTEGER_set(sn, serial) && X509_REVOKED_set_serialNumber(rev, sn) &&
		    X509_REVOKED_set_revocationDate(rev, now) && X509_CRL_add0_revoked(crl, rev));
	assert_true(X509_CRL_set_version(crl, X509_CRL_VERSION_2) &&
		    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) &&
		    X509_CRL_set1_lastUpdate(crl, now) && X509_CRL_set1_nextUpdate(crl, next) &&
		    X509_CRL_sort(crl) && X509_CRL_sign(crl, pk, EVP_sha256()) &&
		    PEM_write_bio_X509_CRL(ob, crl));
	BIO_get_mem_ptr(ob, &mem);
	out = strndup(mem->data, mem->length);
	ASN1_INTEGER_free(sn);
	ASN1_TIME_free(now);
	ASN1_TIME_free(next);
	X509_CRL_free(crl);
	EVP_PKEY_free(pk);
	X509_free(ca);
	BIO_free(cb);
	BIO_free(kb);
	BIO_free(ob);
	free(cpem);
	free(kpem);
	return out;
}

/*
 * Two CAs with the same subject (pki.sh names every test CA alike): a CRL
 * of one must not revoke the other's certificates that share a serial.
 * The sweep of open connections matched CRLs by the issuer name's hash,
 * so it did.
 */
static void test_crl_same_name(void **state)
{
	struct ks_ctl_result res;
	char *ours = file("ca/bundle.crt"), *theirs = file("other/bundle.crt"),
	     *their_int = file("other/int.crt"), *bundle, *crl;
	char *ca_int = file("ca/int.crt"), *oth_int = their_int;
	X509 *ia = pem_cert(ca_int, 0), *ib = pem_cert(oth_int, 0), *la, *lb;
	char *chain_a = file("ca/same4242.crt"), *chain_b = file("other/same4242.crt");
	uint8_t ka[32], kb[32];

	(void)state;
	la = pem_cert(chain_a, 0);
	lb = pem_cert(chain_b, 0);
	/* the premises: one name, one serial, two keys */
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(ia), X509_get_subject_name(ib)), 0);
	assert_int_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(la), X509_get0_serialNumber(lb)),
			 0);
	key_digest(ia, ka);
	key_digest(ib, kb);
	assert_memory_not_equal(ka, kb, 32);
	res = push_identity("ca/good.crt", "ca/good.key", "ca/bundle.crt");
	expect(&res, CODE(OK), REASON(NONE), NULL);
	/* We trust both roots and hold the other intermediate (a CRL's signer
	 * must be a certificate we know). */
	bundle = malloc(strlen(ours) + strlen(theirs) + strlen(their_int) + 1);
	sprintf(bundle, "%s%s%s", ours, theirs, their_int);
	set_bundle(&env, bundle, "", &res);
	expect(&res, CODE(OK), REASON(NONE), NULL);
	crl = make_crl("other/int.crt", "other/int.key", 4242);
	ks_ctl_set_crl(&env, crl, &res);
	expect(&res, CODE(OK), REASON(NONE), "1 CRL");
	const ASN1_INTEGER *s = X509_get0_serialNumber(la);
	/* The other CA's certificate 4242 is revoked; ours is not. */
	assert_true(ks_identity_revoked(slot.cur, kb, ASN1_STRING_get0_data(s),
					(size_t)ASN1_STRING_length(s)));
	assert_false(ks_identity_revoked(slot.cur, ka, ASN1_STRING_get0_data(s),
					 (size_t)ASN1_STRING_length(s)));
	X509_free(ia);
	X509_free(ib);
	X509_free(la);
	X509_free(lb);
	free(ours);
	free(theirs);
	free(their_int);
	free(ca_int);
	free(bundle);
	free(crl);
	free(chain_a);
	free(chain_b);
}

static void test_crl(void **state)
{
	struct ks_ctl_result res = {0};
	char cadir[512], err[512], *crl = NULL, *other = NULL, *leaf;
	struct ks_devca *ca;

	(void)state;
	res = push_identity("ca/good.crt", "ca/good.key", "ca/bundle.crt");
	expect(&res, CODE(OK), REASON(NONE), NULL);
	snprintf(cadir, sizeof(cadir), "%s/devca", dir);
	if (ks_devca_open(cadir, &ca, err, sizeof(err)) < 0)
		fail_msg("devca: %s", err);
	/* A CRL from a CA we do not trust is refused. */
	assert_int_equal(ks_devca_crl(ca, NULL, 3600, &other, err, sizeof(err)), 0);
	UNCHANGED((ks_ctl_set_crl(&env, other, &res), res), CODE(REJECTED), REASON(CRL_UNVERIFIED),
		  "not signed");
	UNCHANGED(
	    (ks_ctl_set_crl(&env, "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", &res),
	     res),
	    CODE(REJECTED), REASON(BAD_PEM), NULL);
	UNCHANGED((ks_ctl_set_crl(&env, "hello", &res), res), CODE(REJECTED), REASON(BAD_PEM),
		  "no X509 CRL");
	/* Trusting the dev CA too, its CRL goes in and revokes what it lists. */
	char *both = file("ca/bundle.crt"), *devb = NULL, *b2;
	assert_int_equal(ks_devca_bundle_pem(ca, &devb), 0);
	b2 = malloc(strlen(both) + strlen(devb) + 1);
	strcpy(b2, both);
	strcat(b2, devb);
	set_bundle(&env, b2, "", &res);
	expect(&res, CODE(OK), REASON(NONE), NULL);
	char *chain, *key;
	assert_int_equal(ks_devca_issue(ca, "spiffe://example.org/ns/x/sa/peer", 600, &chain, &key,
					err, sizeof(err)),
			 0);
	/* The CRL lists the leaf: the chain's first certificate. */
	leaf = strstr(chain + 1, "-----BEGIN CERTIFICATE-----");
	assert_non_null(leaf);
	char *leaf_only = strndup(chain, (size_t)(leaf - chain));
	assert_int_equal(ks_devca_crl(ca, leaf_only, 3600, &crl, err, sizeof(err)), 0);
	/* The intermediate that signed the CRL is only in the peer's chain,
	 * not in our bundle or chain: refused, it cannot be checked. */
	UNCHANGED((ks_ctl_set_crl(&env, crl, &res), res), CODE(REJECTED), REASON(CRL_UNVERIFIED),
		  NULL);
	free(crl);
	crl = NULL;
	/* Issued by the root itself would be accepted; here: push the
	 * intermediate in the bundle as a known issuer. */
	leaf = strstr(chain + 1, "-----BEGIN CERTIFICATE-----"); /* the intermediate */
	assert_non_null(leaf);
	b2 = realloc(b2, strlen(b2) + strlen(leaf) + 1);
	strcat(b2, leaf);
	set_bundle(&env, b2, "", &res);
	expect(&res, CODE(OK), REASON(NONE), NULL);
	assert_int_equal(ks_devca_crl(ca, leaf_only, 3600, &crl, err, sizeof(err)), 0);
	free(leaf_only);
	uint64_t gen = slot.cur->crl_gen;
	ks_ctl_set_crl(&env, crl, &res);
	expect(&res, CODE(OK), REASON(NONE), "1 CRL");
	assert_int_equal(slot.cur->crl_gen, gen + 1);
	{
		uint8_t k[32], other_k[32];
		X509 *x = pem_cert(chain, 0), *issuer = pem_cert(chain, 1);
		const ASN1_INTEGER *s = X509_get0_serialNumber(x);

		key_digest(issuer, k);
		memcpy(other_k, k, sizeof(k));
		other_k[0] ^= 1;
		assert_true(ks_identity_revoked(slot.cur, k, ASN1_STRING_get0_data(s),
						(size_t)ASN1_STRING_length(s)));
		assert_false(ks_identity_revoked(slot.cur, other_k, ASN1_STRING_get0_data(s),
						 (size_t)ASN1_STRING_length(s)));
		X509_free(x);
		X509_free(issuer);
	}
	/* Empty: no CRLs any more. */
	ks_ctl_set_crl(&env, "", &res);
	expect(&res, CODE(OK), REASON(NONE), "0 CRL");
	assert_null(slot.cur->crls);
	free(both);
	free(devb);
	free(b2);
	free(chain);
	free(key);
	free(crl);
	free(other);
	ks_devca_close(ca);
}

static void test_policy(void **state)
{
	Ktls__Control__V1__SetPolicy m = KTLS__CONTROL__V1__SET_POLICY__INIT;
	Ktls__Control__V1__OutboundPolicy o = KTLS__CONTROL__V1__OUTBOUND_POLICY__INIT, *op = &o;
	struct ks_route route = {.dir = KS_OUTBOUND};
	char *allow[2] = {(char *)"spiffe://example.org/ns/*/sa/web", NULL};
	char *pins[1] = {NULL};
	char aerr[64], pin[65];
	struct ks_ctl_result res = {0};

	(void)state;
	assert_int_equal(ks_addr_parse("127.0.0.1:15001", &route.listen, aerr, sizeof(aerr)), 0);
	snprintf(route.listen_str, sizeof(route.listen_str), "127.0.0.1:15001");
	dp.routes = &route;
	dp.nroutes = 1;
	m.inbound_allow = allow;
	m.n_inbound_allow = 1;
	ks_ctl_set_policy(&env, &m, &res);
	expect(&res, CODE(OK), REASON(NONE), "1 inbound pattern");
	assert_int_equal(slot.cur->pol.nallow, 1);

	allow[1] = (char *)"spiffe://example.org/ns/**";
	m.n_inbound_allow = 2;
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED), REASON(BAD_PATTERN),
		  "inbound_allow");
	m.n_inbound_allow = 0;
	m.outbound = &op;
	m.n_outbound = 1;
	o.destination = (char *)"127.0.0.1:15002";
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED),
		  REASON(UNKNOWN_DESTINATION), "not the LISTEN address");
	o.destination = (char *)"127.0.0.1:15001";
	o.server_id = (char *)"spiffe://EXAMPLE/x";
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED), REASON(BAD_PATTERN),
		  "server_id");
	o.server_id = (char *)"spiffe://example.org/ns/b/sa/server";
	pins[0] = (char *)"abcd";
	o.spki_sha256 = pins;
	o.n_spki_sha256 = 1;
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED), REASON(BAD_PIN),
		  "64 hex");
	memset(pin, 'g', 64);
	pin[64] = '\0';
	pins[0] = pin;
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED), REASON(BAD_PIN), NULL);
	memset(pin, 'a', 64);
	ks_ctl_set_policy(&env, &m, &res);
	expect(&res, CODE(OK), REASON(NONE), "1 outbound route");
	assert_int_equal(slot.cur->pol.nallow, 0);
	assert_int_equal(slot.cur->pol.nout, 1);
	assert_string_equal(slot.cur->pol.out[0].server_id, o.server_id);
	assert_int_equal(slot.cur->pol.out[0].npins, 1);
	assert_int_equal(slot.cur->pol.out[0].pins[0][0], 0xaa);
	/* the same destination twice is an error */
	Ktls__Control__V1__OutboundPolicy *two[2] = {&o, &o};
	m.outbound = two;
	m.n_outbound = 2;
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED),
		  REASON(UNKNOWN_DESTINATION), "twice");
	dp.routes = NULL;
	dp.nroutes = 0;

	/* Transparent destinations: parsed, checked, the switch kept. */
	Ktls__Control__V1__DestinationPolicy d1 = KTLS__CONTROL__V1__DESTINATION_POLICY__INIT,
					     d2 = KTLS__CONTROL__V1__DESTINATION_POLICY__INIT;
	Ktls__Control__V1__DestinationPolicy *ds[2] = {&d1, &d2};
	m.n_outbound = 0;
	m.destinations = ds;
	m.n_destinations = 2;
	d1.destination = (char *)"10.0.0.0/8";
	d1.server_id = (char *)"spiffe://example.org/ns/db/sa/*";
	d2.destination = (char *)"10.1.2.3:5432";
	d2.server_id = (char *)"spiffe://example.org/ns/db/sa/primary";
	m.refuse_unknown_destinations = true;
	ks_ctl_set_policy(&env, &m, &res);
	expect(&res, CODE(OK), REASON(NONE), "2 destination(s), unknown destinations refused");
	assert_int_equal(slot.cur->pol.ndest, 2);
	assert_int_equal(slot.cur->pol.unknown_dest, KS_UNKNOWN_DEST_REFUSE);
	d2.destination = (char *)"10.0.0.0/8";
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED),
		  REASON(UNKNOWN_DESTINATION), "twice");
	d2.destination = (char *)"10.1.2.3/33";
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED),
		  REASON(UNKNOWN_DESTINATION), "prefix");
	d2.destination = (char *)"db.example:5432";
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED),
		  REASON(UNKNOWN_DESTINATION), "not an IPv4 or IPv6");
	d2.destination = (char *)"[fd00::/8]:443";
	d2.server_id = (char *)"spiffe://example.org/ns/db/sa/**";
	UNCHANGED((ks_ctl_set_policy(&env, &m, &res), res), CODE(REJECTED), REASON(BAD_PATTERN),
		  "server_id");
	/* The operator's --unknown-destination refuse outlives a push without it. */
	d2.server_id = (char *)"spiffe://example.org/ns/db/sa/v6";
	m.refuse_unknown_destinations = false;
	env.refuse_unknown_dest = true;
	ks_ctl_set_policy(&env, &m, &res);
	expect(&res, CODE(OK), REASON(NONE), "unknown destinations refused");
	env.refuse_unknown_dest = false;
	ks_ctl_set_policy(&env, &m, &res);
	expect(&res, CODE(OK), REASON(NONE), "unknown destinations in our trust domain");
	assert_int_equal(slot.cur->pol.unknown_dest, KS_UNKNOWN_DEST_TRUST_DOMAIN);
}

static void test_no_state(void **state)
{
	struct ks_ctl_env bare = {0};
	struct ks_ctl_result res = {0};

	(void)state;
	set_bundle(&bare, "x", "", &res);
	expect(&res, CODE(FAILED_PRECONDITION), REASON(NONE), NULL);
	ks_ctl_set_crl(&bare, "", &res);
	expect(&res, CODE(FAILED_PRECONDITION), REASON(NONE), NULL);
}

/* n keys for SetTicketKeys, the i-th named name_fill + i, its secret secret_fill + i. */
struct tk_push {
	Ktls__Control__V1__SetTicketKeys m;
	Ktls__Control__V1__TicketKey k[KS_TICKET_KEYS_MAX + 1], *kp[KS_TICKET_KEYS_MAX + 1];
	uint8_t name[KS_TICKET_KEYS_MAX + 1][KS_TICKET_NAME_LEN + 1];
	uint8_t secret[KS_TICKET_KEYS_MAX + 1][KS_TICKET_SECRET_LEN + 1];
};

static void tk_fill(struct tk_push *p, size_t n, uint8_t name_fill, uint8_t secret_fill)
{
	memset(p, 0, sizeof(*p));
	ktls__control__v1__set_ticket_keys__init(&p->m);
	assert_true(n <= KS_TICKET_KEYS_MAX + 1);
	for (size_t i = 0; i < n; i++) {
		ktls__control__v1__ticket_key__init(&p->k[i]);
		memset(p->name[i], name_fill + (int)i, sizeof(p->name[i]));
		memset(p->secret[i], secret_fill + (int)i, sizeof(p->secret[i]));
		p->k[i].name.data = p->name[i];
		p->k[i].name.len = KS_TICKET_NAME_LEN;
		p->k[i].secret.data = p->secret[i];
		p->k[i].secret.len = KS_TICKET_SECRET_LEN;
		p->kp[i] = &p->k[i];
	}
	p->m.keys = p->kp;
	p->m.n_keys = n;
}

/* A refused SetTicketKeys leaves every byte of the ring as it was. */
#define TK_UNCHANGED(ring, push, part)                                                             \
	do {                                                                                       \
		struct ks_ticket_key before_[KS_TICKET_KEYS_MAX];                                  \
		size_t n_ = (ring)->nkeys;                                                         \
		bool pushed_ = (ring)->pushed;                                                     \
		struct ks_ctl_result r_ = {0};                                                     \
		memcpy(before_, (ring)->keys, sizeof(before_));                                    \
		ks_ctl_set_ticket_keys(&env, &(push)->m, &r_);                                     \
		expect(&r_, CODE(REJECTED), REASON(BAD_TICKET_KEY), part);                         \
		assert_int_equal((ring)->nkeys, n_);                                               \
		assert_int_equal((ring)->pushed, pushed_);                                         \
		assert_memory_equal((ring)->keys, before_, sizeof(before_));                       \
	} while (0)

/* What fd 2 (the log) received while fn ran; the caller frees it. */
static char *stderr_of(void (*fn)(void *), void *arg)
{
	char path[300];
	int fd, saved;
	char *out;

	snprintf(path, sizeof(path), "%s/stderr.log", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	fn(arg);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	close(fd);
	out = file("stderr.log");
	return out;
}

static struct tk_push tk_logged;
static struct ks_ctl_result tk_logged_res;
static void tk_push_logged(void *arg)
{
	(void)arg;
	ks_ctl_set_ticket_keys(&env, &tk_logged.m, &tk_logged_res);
}

static void test_ticket_keys(void **state)
{
	struct ks_resumption a, b;
	struct ks_ticket_key sealed, opened;
	struct ks_ctl_result res = {0};
	struct tk_push p;
	uint8_t names[KS_TICKET_KEYS_MAX][KS_TICKET_NAME_LEN];
	char hex[2 * KS_TICKET_NAME_LEN + 1], *log;
	bool pushed;

	(void)state;
	/* --session-resumption off: FAILED_PRECONDITION, whatever the keys. */
	tk_fill(&p, 1, 0x10, 0x20);
	ks_ctl_set_ticket_keys(&env, &p.m, &res);
	expect(&res, CODE(FAILED_PRECONDITION), REASON(NONE), "session resumption is off");

	/* Replica a: a good push is in force, the first key seals. */
	assert_int_equal(ks_resumption_init(&a, 3600), 0);
	assert_int_equal(ks_resumption_init(&b, 3600), 0);
	tls.res = &a;
	tk_fill(&p, 2, 0x10, 0x20);
	ks_ctl_set_ticket_keys(&env, &p.m, &res);
	expect(&res, CODE(OK), REASON(NONE), "2 pushed ticket key(s) in force");
	assert_int_equal(ks_ticket_ring_names(&a.ring, names, KS_TICKET_KEYS_MAX, &pushed), 2);
	assert_true(pushed);
	assert_memory_equal(names[0], p.name[0], KS_TICKET_NAME_LEN);
	assert_memory_equal(names[1], p.name[1], KS_TICKET_NAME_LEN);
	ks_ctl_ticket_name_hex(p.name[0], hex);
	assert_string_equal(hex, "10101010101010101010101010101010");
	assert_non_null(strstr(res.msg, hex));

	/* Every bad push: refused, the keys in force unchanged to the byte. */
	tk_fill(&p, KS_TICKET_KEYS_MAX + 1, 0x40, 0x50);
	TK_UNCHANGED(&a.ring, &p, "5 ticket keys: at most 4");
	tk_fill(&p, 2, 0x40, 0x50);
	p.k[1].name.len = KS_TICKET_NAME_LEN - 1;
	TK_UNCHANGED(&a.ring, &p, "ticket key 2: name of 15 bytes");
	p.k[1].name.len = KS_TICKET_NAME_LEN + 1;
	TK_UNCHANGED(&a.ring, &p, "ticket key 2: name of 17 bytes");
	p.k[1].name.len = 0;
	TK_UNCHANGED(&a.ring, &p, "ticket key 2: name of 0 bytes");
	p.k[1].name.len = KS_TICKET_NAME_LEN;
	p.k[0].secret.len = KS_TICKET_SECRET_LEN - 1;
	TK_UNCHANGED(&a.ring, &p, "secret of 31 bytes");
	p.k[0].secret.len = KS_TICKET_SECRET_LEN + 1;
	TK_UNCHANGED(&a.ring, &p, "secret of 33 bytes");
	p.k[0].secret.len = KS_TICKET_SECRET_LEN;
	memcpy(p.name[1], p.name[0], KS_TICKET_NAME_LEN);
	TK_UNCHANGED(&a.ring, &p, "same name");
	tk_fill(&p, 2, 0x40, 0x50);
	memset(p.secret[1], 0, KS_TICKET_SECRET_LEN);
	TK_UNCHANGED(&a.ring, &p, "all zeros");

	/* Replica b, given the same keys, opens what a seals: the point. */
	tk_fill(&p, 2, 0x10, 0x20);
	tls.res = &b;
	ks_ctl_set_ticket_keys(&env, &p.m, &res);
	expect(&res, CODE(OK), REASON(NONE), NULL);
	assert_int_equal(ks_ticket_ring_key(&a.ring, true, NULL, 0, &sealed), 0);
	assert_int_equal(ks_ticket_ring_key(&b.ring, false, sealed.name, 0, &opened), 0);
	assert_memory_equal(sealed.aes, opened.aes, sizeof(sealed.aes));
	assert_memory_equal(sealed.hmac, opened.hmac, sizeof(sealed.hmac));
	/* ... and a retired key (the second) still opens, asking for renewal. */
	assert_int_equal(ks_ticket_ring_key(&b.ring, false, p.name[1], 0, &opened), 1);

	/* Back to keys of its own: b no longer opens a's tickets. */
	tk_fill(&p, 0, 0, 0);
	ks_ctl_set_ticket_keys(&env, &p.m, &res);
	expect(&res, CODE(OK), REASON(NONE), "of our own again");
	assert_int_equal(ks_ticket_ring_names(&b.ring, names, KS_TICKET_KEYS_MAX, &pushed), 1);
	assert_false(pushed);
	assert_int_equal(ks_ticket_ring_key(&b.ring, false, sealed.name, 0, &opened), -ENOENT);

	/* The log names the keys (hex) and never carries a secret. */
	tls.res = &a;
	tk_fill(&tk_logged, 1, 0x6b, 0x7c);
	log = stderr_of(tk_push_logged, NULL);
	expect(&tk_logged_res, CODE(OK), REASON(NONE), NULL);
	assert_non_null(strstr(log, "event=control_update op=SetTicketKeys ticket_keys=pushed "
				    "keys=1 names=6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"));
	assert_null(strstr(log, "7c7c7c7c"));
	free(log);
	tk_logged.k[0].secret.len = 5;
	log = stderr_of(tk_push_logged, NULL);
	expect(&tk_logged_res, CODE(REJECTED), REASON(BAD_TICKET_KEY), NULL);
	assert_non_null(strstr(log, "event=control_update_rejected op=SetTicketKeys"));
	assert_null(strstr(log, "7c7c7c7c"));
	assert_null(strstr(res.msg, "7c7c7c7c"));
	free(log);

	tls.res = NULL;
	ks_resumption_fini(&a);
	ks_resumption_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_identity_errors, fresh, done),
	    cmocka_unit_test_setup_teardown(test_bundle, fresh, done),
	    cmocka_unit_test_setup_teardown(test_federated_bundle, fresh, done),
	    cmocka_unit_test_setup_teardown(test_csr, fresh, done),
	    cmocka_unit_test_setup_teardown(test_crl, fresh, done),
	    cmocka_unit_test_setup_teardown(test_crl_same_name, fresh, done),
	    cmocka_unit_test_setup_teardown(test_policy, fresh, done),
	    cmocka_unit_test(test_no_state),
	    cmocka_unit_test_setup_teardown(test_ticket_keys, fresh, done),
	};

	return cmocka_run_group_tests_name("control_update", tests, setup, teardown);
}
