/* SPDX-License-Identifier: Apache-2.0 */
/* Rejection reasons are metric labels: every one has a distinct, stable name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "tls/handshake.h"

static void test_reason_names(void **state)
{
	(void)state;
	for (int i = 0; i < KS_REJ__COUNT; i++) {
		const char *n = ks_reject_name((enum ks_reject)i);

		if (!n || !*n || strcmp(n, "unknown") == 0)
			fail_msg("reason %d has no name", i);
		for (const char *p = n; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
				fail_msg("reason name '%s' is not a metric label", n);
		for (int j = 0; j < i; j++)
			if (strcmp(n, ks_reject_name((enum ks_reject)j)) == 0)
				fail_msg("reasons %d and %d share the name '%s'", i, j, n);
	}
	assert_string_equal(ks_reject_name(KS_REJ_NO_CLIENT_CERT), "no_client_cert");
	assert_string_equal(ks_reject_name(KS_REJ_KTLS_UNAVAILABLE), "ktls_unavailable");
	assert_string_equal(ks_reject_name(KS_REJ__COUNT), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reason_names),
	};

	return cmocka_run_group_tests_name("handshake", tests, NULL, NULL);
}
