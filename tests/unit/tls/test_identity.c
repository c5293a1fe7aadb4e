/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Identity loading: every way a certificate, key or bundle can be wrong must
 * be refused with a reason that names the problem. Certificates come from
 * tests/lib/pki.sh (the openssl CLI) in a temporary directory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/support.h"
#include "tls/identity.h"

static char dir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s/ks-identity-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	ks_test_sh(
	    "set -e; P=../lib/pki.sh; D=%s;"
	    "$P ca $D/ca; $P ca $D/foreign;"
	    "$P issue $D/ca good spiffe://example.org/ns/a/sa/web;"
	    "$P issue $D/ca rsa spiffe://example.org/ns/a/sa/rsa --rsa 2048;"
	    "$P issue $D/ca weak spiffe://example.org/ns/a/sa/weak --rsa 1024;"
	    "$P issue $D/ca nouri x --no-uri;"
	    "$P issue $D/ca twouri spiffe://example.org/a --uri spiffe://example.org/b;"
	    "$P issue $D/ca expired spiffe://example.org/a --expired;"
	    "$P issue $D/ca future spiffe://example.org/a --not-yet-valid;"
	    "$P issue $D/foreign alien spiffe://example.org/a;"
	    "$P issue $D/foreign fedpeer spiffe://other.org/ns/x/sa/y;"
	    "cat $D/ca/bundle.crt $D/foreign/bundle.crt > $D/both.crt;"
	    "echo 'not a certificate' > $D/garbage.pem;"
	    "head -c 300 $D/ca/int.crt | cat $D/ca/good.crt - | head -n 14 > $D/truncated.pem;"
	    "openssl x509 -in $D/ca/good.crt > $D/leafonly.pem;"
	    "sed -n '1,/END CERTIFICATE/p' $D/ca/good.crt > $D/leaf1.pem;"
	    "(cat $D/leaf1.pem; echo '-----BEGIN CERTIFICATE-----'; echo 'AAAA'; "
	    " echo '-----END CERTIFICATE-----') > $D/corrupt_chain.pem;"
	    "openssl ecparam -name secp384r1 -genkey -noout -out $D/p384.key 2>/dev/null",
	    dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ks_test_sh("rm -rf %s", dir);
	return 0;
}

/* Loads cert/key/ca (relative to dir) and returns the rc; err gets the reason. */
static int load(const char *cert, const char *key, const char *ca, char *err, size_t errlen,
		struct ks_identity **out)
{
	char c[512], k[512], a[512];
	struct ks_tls_opts opts = {.cert = c, .key = k, .ca = a, .min_version = TLS1_3_VERSION};
	static const struct ks_policy none;

	snprintf(c, sizeof(c), "%s/%s", dir, cert);
	snprintf(k, sizeof(k), "%s/%s", dir, key);
	snprintf(a, sizeof(a), "%s/%s", dir, ca);
	return ks_identity_load(&opts, &none, NULL, out, err, errlen);
}

static void expect_ok(const char *cert, const char *key, const char *id)
{
	struct ks_identity *ident = NULL;
	char err[512] = "";

	if (load(cert, key, "ca/bundle.crt", err, sizeof(err), &ident) != 0)
		fail_msg("%s refused: %s", cert, err);
	assert_string_equal(ident->id, id);
	assert_string_equal(ident->trust_domain, "example.org");
	assert_non_null(ident->server_ctx);
	assert_non_null(ident->client_ctx);
	ks_identity_put(ident);
}

static void expect_refused(const char *cert, const char *key, const char *ca, const char *needle)
{
	struct ks_identity *ident = (struct ks_identity *)0x1;
	char err[512] = "";

	if (load(cert, key, ca, err, sizeof(err), &ident) >= 0)
		fail_msg("%s/%s/%s accepted, expected '%s'", cert, key, ca, needle);
	assert_null(ident);
	if (!strstr(err, needle))
		fail_msg("%s: error '%s' does not mention '%s'", cert, err, needle);
}

static void test_valid(void **state)
{
	(void)state;
	expect_ok("ca/good.crt", "ca/good.key", "spiffe://example.org/ns/a/sa/web");
	expect_ok("ca/rsa.crt", "ca/rsa.key", "spiffe://example.org/ns/a/sa/rsa");
}

static void test_file_errors(void **state)
{
	(void)state;
	expect_refused("missing.crt", "ca/good.key", "ca/bundle.crt",
		       "cannot open certificate file");
	expect_refused("garbage.pem", "ca/good.key", "ca/bundle.crt", "no PEM certificate");
	expect_refused("ca/good.crt", "missing.key", "ca/bundle.crt", "cannot open key file");
	expect_refused("ca/good.crt", "garbage.pem", "ca/bundle.crt", "no usable PEM private key");
	expect_refused("ca/good.crt", "ca/good.key", "missing.crt", "cannot open trust bundle");
	expect_refused("ca/good.crt", "ca/good.key", "garbage.pem", "trust bundle");
	expect_refused("corrupt_chain.pem", "ca/good.key", "ca/bundle.crt", "corrupt PEM");
}

static void test_key_errors(void **state)
{
	(void)state;
	expect_refused("ca/good.crt", "ca/rsa.key", "ca/bundle.crt", "does not match");
	expect_refused("ca/weak.crt", "ca/weak.key", "ca/bundle.crt", "at least 2048");
	expect_refused("ca/good.crt", "p384.key", "ca/bundle.crt", "only P-256");
}

static void test_identity_errors(void **state)
{
	(void)state;
	expect_refused("ca/nouri.crt", "ca/nouri.key", "ca/bundle.crt", "no URI SAN");
	expect_refused("ca/twouri.crt", "ca/twouri.key", "ca/bundle.crt", "more than one URI");
}

static void test_chain_errors(void **state)
{
	(void)state;
	expect_refused("ca/expired.crt", "ca/expired.key", "ca/bundle.crt", "expired");
	expect_refused("ca/future.crt", "ca/future.key", "ca/bundle.crt", "not yet valid");
	expect_refused("foreign/alien.crt", "foreign/alien.key", "ca/bundle.crt",
		       "does not verify against the trust bundle");
	/* the intermediate is required in the chain file */
	expect_refused("leafonly.pem", "ca/good.key", "ca/bundle.crt", "local issuer");
}

/* The verified chain a peer would give: its file (leaf, intermediate) and a root. */
static STACK_OF(X509) * chain_of(const char *leaf, const char *root)
{
	STACK_OF(X509) *c = NULL, *r = NULL;
	char path[512], err[256];

	snprintf(path, sizeof(path), "%s/%s", dir, leaf);
	assert_int_equal(ks_pem_file_certs(path, &c, "chain", err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, root);
	assert_int_equal(ks_pem_file_certs(path, &r, "root", err, sizeof(err)), 0);
	while (sk_X509_num(r))
		assert_true(sk_X509_push(c, sk_X509_shift(r)) > 0);
	sk_X509_free(r);
	return c;
}

static bool root_ok(const struct ks_identity *id, const char *peer_id, const char *leaf,
		    const char *root, const char *why_part)
{
	STACK_OF(X509) *c = chain_of(leaf, root);
	const char *why = NULL;
	bool ok =
	    ks_trust_root_ok(id->trust_domain, id->bundle, id->fed, id->nfed, peer_id, c, &why);

	sk_X509_pop_free(c, X509_free);
	if (!ok && why_part && !strstr(why, why_part))
		fail_msg("'%s' does not mention '%s'", why, why_part);
	return ok;
}

/*
 * Trust domains bound to their roots: with a flat bundle of two roots, a
 * leaf of the second root claiming our trust domain passed verification.
 */
static void test_trust_domains(void **state)
{
	char c[512], k[512], a[512], f[512];
	struct ks_fed_file fed = {.td = (char *)"other.org", .path = f};
	struct ks_tls_opts opts = {.cert = c, .key = k, .ca = a, .min_version = TLS1_3_VERSION};
	static const struct ks_policy none;
	struct ks_identity *id = NULL;
	char err[512];

	(void)state;
	snprintf(c, sizeof(c), "%s/ca/good.crt", dir);
	snprintf(k, sizeof(k), "%s/ca/good.key", dir);
	snprintf(a, sizeof(a), "%s/both.crt", dir);
	snprintf(f, sizeof(f), "%s/foreign/bundle.crt", dir);
	/* The flat bundle of old: both roots as our own. */
	assert_int_equal(ks_identity_load(&opts, &none, NULL, &id, err, sizeof(err)), 0);
	assert_true(
	    root_ok(id, "spiffe://example.org/ns/a/sa/web", "ca/good.crt", "ca/root.crt", NULL));
	/* Every root in --ca is ours: a foreign root's leaf in our trust
	 * domain passes, but not in another trust domain without its bundle. */
	assert_true(
	    root_ok(id, "spiffe://example.org/a", "foreign/alien.crt", "foreign/root.crt", NULL));
	assert_false(root_ok(id, "spiffe://other.org/ns/x/sa/y", "foreign/fedpeer.crt",
			     "foreign/root.crt", "no bundle for the peer's trust domain"));
	ks_identity_put(id);

	/* Federation: our bundle is ours alone, other.org has its own. */
	snprintf(a, sizeof(a), "%s/ca/bundle.crt", dir);
	opts.fed = &fed;
	opts.nfed = 1;
	assert_int_equal(ks_identity_load(&opts, &none, NULL, &id, err, sizeof(err)), 0);
	assert_int_equal(id->nfed, 1);
	assert_true(root_ok(id, "spiffe://other.org/ns/x/sa/y", "foreign/fedpeer.crt",
			    "foreign/root.crt", NULL));
	/* The two-root case: other.org's root issuing an ID in ours. */
	assert_false(root_ok(id, "spiffe://example.org/a", "foreign/alien.crt", "foreign/root.crt",
			     "not in its trust domain's bundle"));
	/* and ours issuing one in other.org's */
	assert_false(root_ok(id, "spiffe://other.org/ns/x/sa/y", "ca/good.crt", "ca/root.crt",
			     "not in its trust domain's bundle"));
	ks_identity_put(id);

	/* Refused: our own trust domain as federated, a missing file, a bad name. */
	fed.td = (char *)"example.org";
	assert_true(ks_identity_load(&opts, &none, NULL, &id, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "our own trust domain"));
	fed.td = (char *)"other.org";
	snprintf(f, sizeof(f), "%s/missing.crt", dir);
	assert_true(ks_identity_load(&opts, &none, NULL, &id, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "federated bundle of other.org"));
	snprintf(f, sizeof(f), "%s/foreign/bundle.crt", dir);
	fed.td = (char *)"Other.org";
	assert_true(ks_identity_load(&opts, &none, NULL, &id, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "uppercase"));
}

static void test_slot(void **state)
{
	struct ks_identity_slot slot;
	struct ks_identity *a = NULL, *b = NULL, *got;
	char err[512];
	uint64_t g1, g2;

	(void)state;
	assert_int_equal(load("ca/good.crt", "ca/good.key", "ca/bundle.crt", err, sizeof(err), &a),
			 0);
	assert_int_equal(load("ca/rsa.crt", "ca/rsa.key", "ca/bundle.crt", err, sizeof(err), &b),
			 0);
	ks_identity_slot_init(&slot, a);
	got = ks_identity_slot_get(&slot, &g1);
	assert_ptr_equal(got, a);
	ks_identity_slot_publish(&slot, b);
	/* the old identity lives on while a connection holds it */
	assert_string_equal(got->id, "spiffe://example.org/ns/a/sa/web");
	ks_identity_put(got);
	got = ks_identity_slot_get(&slot, &g2);
	assert_ptr_equal(got, b);
	assert_true(g2 > g1);
	ks_identity_put(got);
	ks_identity_slot_fini(&slot);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),	  cmocka_unit_test(test_file_errors),
	    cmocka_unit_test(test_key_errors),	  cmocka_unit_test(test_identity_errors),
	    cmocka_unit_test(test_chain_errors),  cmocka_unit_test(test_slot),
	    cmocka_unit_test(test_trust_domains),
	};

	return cmocka_run_group_tests_name("identity", tests, setup, teardown);
}
