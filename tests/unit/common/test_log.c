/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Long values in log lines (common/log.h): a value up to KS_LOG_FIELD_MAX
 * bytes passes whole (cleaned); a longer one is cut to exactly that size
 * and ends with a marker giving its length, so the fields after it fit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"

static void test_field(void **state)
{
	struct ks_log_field f;
	char v[2100];

	(void)state;
	assert_string_equal(ks_log_field(&f, "spiffe://example.org/ns/a/sa/b"),
			    "spiffe://example.org/ns/a/sa/b");
	assert_string_equal(ks_log_field(&f, "a \"quoted\"\nline"), "a _quoted__line");
	assert_string_equal(ks_log_field(&f, NULL), "");

	memset(v, 'x', KS_LOG_FIELD_MAX);
	v[KS_LOG_FIELD_MAX] = '\0';
	assert_int_equal(strlen(ks_log_field(&f, v)), KS_LOG_FIELD_MAX); /* whole */
	assert_null(strstr(f.s, "truncated"));

	memset(v, 'x', 2029);
	v[2029] = '\0';
	v[10] = '"'; /* still cleaned */
	ks_log_field(&f, v);
	assert_int_equal(strlen(f.s), KS_LOG_FIELD_MAX);
	assert_int_equal(f.s[10], '_');
	assert_non_null(strstr(f.s, "xxx...[truncated:2029_bytes]"));
	assert_string_equal(f.s + KS_LOG_FIELD_MAX - strlen("...[truncated:2029_bytes]"),
			    "...[truncated:2029_bytes]");

	v[KS_LOG_FIELD_MAX + 1] = '\0'; /* one byte over */
	ks_log_field(&f, v);
	assert_int_equal(strlen(f.s), KS_LOG_FIELD_MAX);
	assert_non_null(strstr(f.s, "[truncated:257_bytes]"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_field),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
