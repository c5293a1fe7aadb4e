/* SPDX-License-Identifier: Apache-2.0 */
/* SPIFFE ID validation, pattern matching and extraction from certificates. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509v3.h>

#include "tls/policy.h"
#include "tls/spiffe.h"

static void test_valid_ids(void **state)
{
	static const char *const ok[] = {
	    "spiffe://example.org/ns/default/sa/web",
	    "spiffe://example.org/a",
	    "spiffe://my-domain_1.example.org/A.b-c_D/0",
	    "spiffe://td/..a/a..",
	};
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		why = "unset";
		assert_int_equal(ks_spiffe_validate(ok[i], &why), 0);
		assert_null(why);
	}
}

static void test_malformed_ids(void **state)
{
	static const char *const bad[] = {
	    "",
	    "spiffe://",
	    "spiffe://example.org",	   /* trust domain only */
	    "spiffe://example.org/",	   /* trailing slash */
	    "spiffe://example.org/a/",	   /* trailing slash */
	    "spiffe://example.org//a",	   /* empty segment */
	    "spiffe://example.org/./a",	   /* dot segment */
	    "spiffe://example.org/a/..",   /* dot-dot segment */
	    "SPIFFE://example.org/a",	   /* scheme case */
	    "spiffe://Example.org/a",	   /* uppercase trust domain */
	    "spiffe://example.org:443/a",  /* port */
	    "spiffe://user@example.org/a", /* userinfo */
	    "spiffe://example.org/a?x=1",  /* query */
	    "spiffe://example.org/a#f",	   /* fragment */
	    "spiffe://example.org/a%20b",  /* percent-encoding */
	    "spiffe://example.org/a b",
	    "https://example.org/a",
	    "spiffe:/example.org/a",
	    "spiffe://example.org/*", /* wildcard only in patterns */
	};
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (ks_spiffe_validate(bad[i], &why) != -EINVAL)
			fail_msg("accepted malformed ID '%s'", bad[i]);
		assert_non_null(why);
	}
	assert_int_equal(ks_spiffe_validate(NULL, &why), -EINVAL);
}

static void test_length_limits(void **state)
{
	char id[KS_SPIFFE_MAX + 64], td[300];
	const char *why;

	(void)state;
	strcpy(id, "spiffe://t/");
	memset(id + 11, 'a', KS_SPIFFE_MAX - 11);
	id[KS_SPIFFE_MAX] = '\0';
	assert_int_equal(ks_spiffe_validate(id, &why), 0);
	strcat(id, "a");
	assert_int_equal(ks_spiffe_validate(id, &why), -EINVAL);

	memset(td, 'd', 256);
	td[256] = '\0';
	snprintf(id, sizeof(id), "spiffe://%s/a", td);
	assert_int_equal(ks_spiffe_validate(id, &why), -EINVAL);
	td[255] = '\0';
	snprintf(id, sizeof(id), "spiffe://%s/a", td);
	assert_int_equal(ks_spiffe_validate(id, &why), 0);
}

static void test_trust_domain(void **state)
{
	char td[KS_SPIFFE_TD_MAX + 1];

	(void)state;
	assert_int_equal(ks_spiffe_trust_domain("spiffe://example.org/ns/a", td, sizeof(td)), 0);
	assert_string_equal(td, "example.org");
	assert_int_equal(ks_spiffe_trust_domain("spiffe://example.org", td, sizeof(td)), -EINVAL);
	assert_true(ks_spiffe_in_trust_domain("spiffe://example.org/a", "example.org"));
	assert_false(ks_spiffe_in_trust_domain("spiffe://example.org.evil/a", "example.org"));
	assert_false(ks_spiffe_in_trust_domain("spiffe://example.or/a", "example.org"));
	assert_false(ks_spiffe_in_trust_domain("spiffe://evil.com/example.org/a", "example.org"));
}

/* Trust domain names as operators write them (--federated-ca, SetTrustBundle). */
static void test_td_parse(void **state)
{
	char td[KS_SPIFFE_TD_MAX + 1];
	const char *why;

	(void)state;
	assert_int_equal(ks_spiffe_td_parse("other.org", td, sizeof(td), &why), 0);
	assert_string_equal(td, "other.org");
	assert_int_equal(ks_spiffe_td_parse("spiffe://other.org", td, sizeof(td), &why), 0);
	assert_string_equal(td, "other.org");
	assert_int_equal(ks_spiffe_td_parse("spiffe://other.org/", td, sizeof(td), &why), 0);
	assert_string_equal(td, "other.org");
	assert_int_equal(ks_spiffe_td_parse("", td, sizeof(td), &why), -EINVAL);
	assert_int_equal(ks_spiffe_td_parse("spiffe://", td, sizeof(td), &why), -EINVAL);
	assert_int_equal(ks_spiffe_td_parse("Other.org", td, sizeof(td), &why), -EINVAL);
	assert_non_null(strstr(why, "uppercase"));
	assert_int_equal(ks_spiffe_td_parse("other.org:443", td, sizeof(td), &why), -EINVAL);
	assert_int_equal(ks_spiffe_td_parse("other.org/ns/a", td, sizeof(td), &why), -EINVAL);
	assert_non_null(strstr(why, "no path"));
}

static void test_patterns(void **state)
{
	const char *why;

	(void)state;
	assert_int_equal(ks_spiffe_pattern_validate("spiffe://td/ns/*/sa/web", &why), 0);
	assert_int_equal(ks_spiffe_pattern_validate("spiffe://td/*", &why), 0);
	assert_int_equal(ks_spiffe_pattern_validate("spiffe://td/a*", &why), -EINVAL);
	assert_int_equal(ks_spiffe_pattern_validate("spiffe://*/a", &why), -EINVAL);
	assert_int_equal(ks_spiffe_pattern_validate("spiffe://td/**", &why), -EINVAL);

	assert_true(ks_spiffe_match("spiffe://td/ns/*/sa/web", "spiffe://td/ns/prod/sa/web"));
	assert_false(ks_spiffe_match("spiffe://td/ns/*/sa/web", "spiffe://td/ns/prod/sa/db"));
	/* '*' is exactly one segment: not zero, not two */
	assert_false(ks_spiffe_match("spiffe://td/ns/*/sa/web", "spiffe://td/ns/sa/web"));
	assert_false(ks_spiffe_match("spiffe://td/ns/*/sa/web", "spiffe://td/ns/a/b/sa/web"));
	assert_true(ks_spiffe_match("spiffe://td/*", "spiffe://td/x"));
	assert_false(ks_spiffe_match("spiffe://td/*", "spiffe://td/x/y"));
	assert_false(ks_spiffe_match("spiffe://td/*", "spiffe://other/x"));
	/* exact patterns */
	assert_true(ks_spiffe_match("spiffe://td/a/b", "spiffe://td/a/b"));
	assert_false(ks_spiffe_match("spiffe://td/a/b", "spiffe://td/a/bc"));
	assert_false(ks_spiffe_match("spiffe://td/a/b", "spiffe://td/a"));
	assert_false(ks_spiffe_match("spiffe://td/a", "spiffe://tda/a"));
}

static void test_policy(void **state)
{
	char *allow[] = {"spiffe://td/ns/*/sa/web", "spiffe://other/admin"};
	struct ks_policy empty = {0}, pol = {.allow = allow, .nallow = 2};

	(void)state;
	/* default: own trust domain only */
	assert_true(ks_policy_allows_inbound(&empty, "spiffe://td/anything", "td"));
	assert_false(ks_policy_allows_inbound(&empty, "spiffe://other/anything", "td"));
	assert_true(ks_policy_allows_inbound(&pol, "spiffe://td/ns/x/sa/web", "td"));
	assert_true(ks_policy_allows_inbound(&pol, "spiffe://other/admin", "td"));
	assert_false(ks_policy_allows_inbound(&pol, "spiffe://td/ns/x/sa/db", "td"));
	assert_true(ks_policy_server_ok(NULL, "spiffe://td/b", "td"));
	assert_false(ks_policy_server_ok(NULL, "spiffe://td2/b", "td"));
	assert_true(ks_policy_server_ok("spiffe://td2/b", "spiffe://td2/b", "td"));
	assert_false(ks_policy_server_ok("spiffe://td/b", "spiffe://td/c", "td"));
}

/* Builds a throwaway self-signed certificate with the given URI SANs. */
static X509 *make_cert(const char *const *uris, size_t n, const int *lens)
{
	X509 *x = X509_new();
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();

	assert_non_null(x);
	for (size_t i = 0; i < n; i++) {
		GENERAL_NAME *gn = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		ASN1_STRING_set(s, uris[i], lens ? lens[i] : (int)strlen(uris[i]));
		GENERAL_NAME_set0_value(gn, GEN_URI, s);
		sk_GENERAL_NAME_push(gens, gn);
	}
	if (n)
		X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT);
	GENERAL_NAMES_free(gens);
	return x;
}

static void test_from_cert(void **state)
{
	static const char *const one[] = {"spiffe://td/ns/a"};
	static const char *const two[] = {"spiffe://td/ns/a", "spiffe://td/ns/b"};
	static const char *const bad[] = {"spiffe://TD/ns/a"};
	static const char *const nul[] = {"spiffe://td/a\0evil"};
	static const int nul_len[] = {18};
	char out[KS_SPIFFE_MAX + 1];
	const char *why;
	X509 *x;

	(void)state;
	x = make_cert(one, 1, NULL);
	assert_int_equal(ks_spiffe_from_cert(x, out, sizeof(out), &why), 0);
	assert_string_equal(out, "spiffe://td/ns/a");
	X509_free(x);

	x = make_cert(two, 2, NULL);
	assert_int_equal(ks_spiffe_from_cert(x, out, sizeof(out), &why), -EINVAL);
	assert_non_null(strstr(why, "more than one"));
	X509_free(x);

	x = make_cert(bad, 1, NULL);
	assert_int_equal(ks_spiffe_from_cert(x, out, sizeof(out), &why), -EINVAL);
	X509_free(x);

	x = make_cert(nul, 1, nul_len);
	assert_int_equal(ks_spiffe_from_cert(x, out, sizeof(out), &why), -EINVAL);
	assert_non_null(strstr(why, "NUL"));
	X509_free(x);

	x = make_cert(NULL, 0, NULL);
	assert_int_equal(ks_spiffe_from_cert(x, out, sizeof(out), &why), -ENOENT);
	X509_free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_ids),	  cmocka_unit_test(test_malformed_ids),
	    cmocka_unit_test(test_length_limits), cmocka_unit_test(test_trust_domain),
	    cmocka_unit_test(test_patterns),	  cmocka_unit_test(test_policy),
	    cmocka_unit_test(test_from_cert),	  cmocka_unit_test(test_td_parse),
	};

	return cmocka_run_group_tests_name("spiffe", tests, NULL, NULL);
}
