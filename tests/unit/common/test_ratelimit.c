/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rate-limited lines and back-off (common/ratelimit.h): one line per
 * interval with an exact count of what was suppressed, a first event at
 * monotonic time 0 still logged, and a back-off that doubles to its cap and
 * starts again after a success.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/ratelimit.h"

static void test_ratelimit(void **state)
{
	struct ks_ratelimit r = {0};
	uint64_t sup = 99, lines = 0, seen = 0;

	(void)state;
	assert_true(ks_ratelimit_ok(&r, 0, 1000, &sup)); /* time 0 is not "never" */
	assert_int_equal(sup, 0);
	assert_false(ks_ratelimit_ok(&r, 999, 1000, &sup));
	assert_true(ks_ratelimit_ok(&r, 1000, 1000, &sup));
	assert_int_equal(sup, 1);

	/* 100,000 events over 10 s: 10 lines (one a second), and every event is
	 * either a line or counted in the next line's suppressed number. */
	r = (struct ks_ratelimit){0};
	for (uint64_t t = 0; t < 100000; t++) {
		if (ks_ratelimit_ok(&r, 50000 + t / 10, 1000, &sup)) {
			lines++;
			seen += sup + 1;
		}
	}
	assert_int_equal(lines, 10);
	assert_int_equal(seen + r.suppressed, 100000);
}

static void test_backoff(void **state)
{
	struct ks_backoff b = {0};

	(void)state;
	assert_int_equal(ks_backoff_fail(&b, 5, 100), 5);
	assert_int_equal(ks_backoff_fail(&b, 5, 100), 10);
	assert_int_equal(ks_backoff_fail(&b, 5, 100), 20);
	assert_int_equal(ks_backoff_fail(&b, 5, 100), 40);
	assert_int_equal(ks_backoff_fail(&b, 5, 100), 80);
	assert_int_equal(ks_backoff_fail(&b, 5, 100), 100);
	assert_int_equal(ks_backoff_fail(&b, 5, 100), 100);
	ks_backoff_ok(&b);
	assert_int_equal(ks_backoff_fail(&b, 5, 100), 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ratelimit),
	    cmocka_unit_test(test_backoff),
	};

	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
