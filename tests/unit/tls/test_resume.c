/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resumption's facts (tls/resume.h) travel in tickets and beside cached
 * sessions: they round-trip exactly, and anything but a well-formed
 * encoding is refused (a ticket without readable facts is never used).
 * The refusal reasons are metric labels: distinct, stable names.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include <time.h>

#include "tls/identity.h"
#include "tls/resume.h"

static struct ks_resume_facts sample(uint8_t n)
{
	struct ks_resume_facts f = {.not_before = 1700000000, .not_after = 1800000000, .n = n};

	memset(f.bundle, 0xb5, sizeof(f.bundle));
	for (uint8_t i = 0; i < n; i++) {
		memset(f.certs[i].issuer_key, 0x10 + i, 32);
		f.certs[i].serial_len = (uint8_t)(i % 20 + 1);
		memset(f.certs[i].serial, 0x80 + i, f.certs[i].serial_len);
	}
	return f;
}

static void test_round_trip(void **state)
{
	uint8_t buf[KS_RESUME_FACTS_MAX];

	(void)state;
	for (uint8_t n = 1; n <= KS_RESUME_CHAIN_MAX; n++) {
		struct ks_resume_facts f = sample(n), g;
		size_t len = ks_resume_facts_encode(&f, buf);

		assert_true(len <= KS_RESUME_FACTS_MAX);
		assert_int_equal(ks_resume_facts_decode(buf, len, &g), 0);
		assert_int_equal(g.n, n);
		assert_true(g.not_before == f.not_before && g.not_after == f.not_after);
		assert_memory_equal(g.bundle, f.bundle, 32);
		assert_memory_equal(g.certs, f.certs, n * sizeof(f.certs[0]));
	}
}

static void test_malformed(void **state)
{
	struct ks_resume_facts f = sample(3), g;
	uint8_t buf[KS_RESUME_FACTS_MAX + 8], bad[KS_RESUME_FACTS_MAX + 8];
	size_t len = ks_resume_facts_encode(&f, buf);

	(void)state;
	assert_int_equal(ks_resume_facts_decode(NULL, 0, &g), -EINVAL);
	/* Every truncation, and a byte too many. */
	for (size_t l = 0; l < len; l++)
		assert_int_equal(ks_resume_facts_decode(buf, l, &g), -EINVAL);
	buf[len] = 0;
	assert_int_equal(ks_resume_facts_decode(buf, len + 1, &g), -EINVAL);
	/* Another version; more certificates than a chain may have. */
	memcpy(bad, buf, len);
	bad[0] = 2;
	assert_int_equal(ks_resume_facts_decode(bad, len, &g), -EINVAL);
	memcpy(bad, buf, len);
	bad[1] = KS_RESUME_CHAIN_MAX + 1;
	assert_int_equal(ks_resume_facts_decode(bad, len, &g), -EINVAL);
	/* Serial lengths of 0 and 21 (RFC 5280: 1 to 20 octets). */
	memcpy(bad, buf, len);
	bad[50 + 32] = 0;
	assert_int_equal(ks_resume_facts_decode(bad, len, &g), -EINVAL);
	memcpy(bad, buf, len);
	bad[50 + 32] = 21;
	assert_int_equal(ks_resume_facts_decode(bad, len, &g), -EINVAL);
	/* A validity window that ends before it starts. */
	f.not_after = f.not_before - 1;
	len = ks_resume_facts_encode(&f, buf);
	assert_int_equal(ks_resume_facts_decode(buf, len, &g), -EINVAL);
}

static void test_reason_names(void **state)
{
	(void)state;
	for (int i = 0; i < KS_RES__COUNT; i++) {
		const char *n = ks_resume_why_name((enum ks_resume_why)i);

		assert_non_null(n);
		assert_string_not_equal(n, "unknown");
		for (const char *p = n; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
				fail_msg("reason name '%s' is not a metric label", n);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(n, ks_resume_why_name((enum ks_resume_why)j));
	}
	assert_string_equal(ks_resume_why_name(KS_RES_REVOKED), "revoked");
	assert_string_equal(ks_resume_why_name(KS_RES__COUNT), "unknown");
}

static void test_lifetime_bounds(void **state)
{
	struct ks_resumption r;

	(void)state;
	assert_int_equal(ks_resumption_init(&r, 0), -EINVAL);
	assert_int_equal(ks_resumption_init(&r, KS_SESSION_LIFETIME_MAX_S + 1), -EINVAL);
	assert_int_equal(ks_resumption_init(&r, KS_SESSION_LIFETIME_DEFAULT_S), 0);
	assert_int_equal(r.ring.period_s, KS_SESSION_LIFETIME_DEFAULT_S);
	ks_resumption_fini(&r);
}

/*
 * The server's ticket callback refuses, before any check of the peer: a
 * ticket whose key is gone, one past the lifetime (ours, even when the
 * ticket says longer), a TLS 1.2 session, and one without readable facts.
 */
static void test_open_refusals(void **state)
{
	struct ks_resumption res;
	struct ks_identity ident = {0};
	struct ks_tls_peer p = {.server = true, .ident = &ident};
	uint8_t junk[3] = {1, 2, 3};
	SSL_SESSION *s = SSL_SESSION_new();

	(void)state;
	assert_int_equal(ks_resumption_init(&res, 60), 0);
	ident.res = &res;
	assert_non_null(s);
	assert_int_equal(SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION), 1);
	SSL_SESSION_set_timeout(s, 3600);

	assert_int_equal(ks_resume_open(&p, s, SSL_TICKET_NO_DECRYPT),
			 SSL_TICKET_RETURN_IGNORE_RENEW);
	assert_int_equal(p.resume_why, KS_RES_UNKNOWN_KEY);

	p.resume_why = 0;
	SSL_SESSION_set_time(s, (long)time(NULL) - 61); /* past our 60 s, within its own 3600 */
	assert_int_equal(ks_resume_open(&p, s, SSL_TICKET_SUCCESS), SSL_TICKET_RETURN_IGNORE_RENEW);
	assert_int_equal(p.resume_why, KS_RES_LIFETIME);

	p.resume_why = 0;
	SSL_SESSION_set_time(s, (long)time(NULL));
	SSL_SESSION_set_timeout(s, 10);
	SSL_SESSION_set_time(s, (long)time(NULL) - 11); /* past its own 10 s */
	assert_int_equal(ks_resume_open(&p, s, SSL_TICKET_SUCCESS_RENEW),
			 SSL_TICKET_RETURN_IGNORE_RENEW);
	assert_int_equal(p.resume_why, KS_RES_LIFETIME);

	p.resume_why = 0;
	SSL_SESSION_set_time(s, (long)time(NULL));
	assert_int_equal(ks_resume_open(&p, s, SSL_TICKET_SUCCESS), SSL_TICKET_RETURN_IGNORE_RENEW);
	assert_int_equal(p.resume_why, KS_RES_MALFORMED); /* no facts at all */
	assert_int_equal(SSL_SESSION_set1_ticket_appdata(s, junk, sizeof(junk)), 1);
	p.resume_why = 0;
	assert_int_equal(ks_resume_open(&p, s, SSL_TICKET_SUCCESS), SSL_TICKET_RETURN_IGNORE_RENEW);
	assert_int_equal(p.resume_why, KS_RES_MALFORMED);
	assert_null(p.facts);

	/* TLS 1.2 is never resumed: ignored, not even counted as a refusal. */
	p.resume_why = 0;
	assert_int_equal(SSL_SESSION_set_protocol_version(s, TLS1_2_VERSION), 1);
	assert_int_equal(ks_resume_open(&p, s, SSL_TICKET_SUCCESS), SSL_TICKET_RETURN_IGNORE);
	assert_int_equal(p.resume_why, 0);

	SSL_SESSION_free(s);
	ks_resumption_fini(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),	  cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_reason_names),  cmocka_unit_test(test_lifetime_bounds),
	    cmocka_unit_test(test_open_refusals),
	};

	return cmocka_run_group_tests_name("resume", tests, NULL, NULL);
}
