/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Certificate expiry thresholds (daemon/expiry.h), the pure part: the
 * threshold reached at a time (two thirds, 90%, notAfter, to the second),
 * when the next one falls, and what to log as time passes and identities
 * change: each threshold once per leaf, only the highest when several were
 * crossed at once, afresh for a renewal or a leaf that arrives late, and
 * nothing again when the clock steps back. The logging against a real
 * identity is tests/integration/daemon/t_cert_expiry.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/expiry.h"

/* A 100 s lifetime: two thirds at 1067 (66.7 rounded up), 90% at 1090. */
#define NB 1000
#define NA 1100

static void test_level(void **state)
{
	(void)state;
	assert_int_equal(ks_expiry_level(0, NB, NA), KS_EXPIRY_NONE); /* not yet valid */
	assert_int_equal(ks_expiry_level(NB, NB, NA), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_level(1066, NB, NA), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_level(1067, NB, NA), KS_EXPIRY_WARN);
	assert_int_equal(ks_expiry_level(1089, NB, NA), KS_EXPIRY_WARN);
	assert_int_equal(ks_expiry_level(1090, NB, NA), KS_EXPIRY_ERROR);
	assert_int_equal(ks_expiry_level(1099, NB, NA), KS_EXPIRY_ERROR);
	assert_int_equal(ks_expiry_level(1100, NB, NA), KS_EXPIRY_EXPIRED);
	assert_int_equal(ks_expiry_level(99999, NB, NA), KS_EXPIRY_EXPIRED);
	/* A 90-day certificate, in real time: day 60 and day 81. */
	assert_int_equal(
	    ks_expiry_level(1700000000 + 60 * 86400 - 1, 1700000000, 1700000000 + 90 * 86400),
	    KS_EXPIRY_NONE);
	assert_int_equal(
	    ks_expiry_level(1700000000 + 60 * 86400, 1700000000, 1700000000 + 90 * 86400),
	    KS_EXPIRY_WARN);
	assert_int_equal(
	    ks_expiry_level(1700000000 + 81 * 86400, 1700000000, 1700000000 + 90 * 86400),
	    KS_EXPIRY_ERROR);
	/* No lifetime (notAfter not after notBefore): only the end counts. */
	assert_int_equal(ks_expiry_level(NB - 1, NB, NB), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_level(NB, NB, NB), KS_EXPIRY_EXPIRED);
	assert_int_equal(ks_expiry_level(NB, NB, NB - 5), KS_EXPIRY_EXPIRED);
}

static void test_next(void **state)
{
	(void)state;
	assert_int_equal(ks_expiry_next(0, NB, NA), 1067);
	assert_int_equal(ks_expiry_next(NB, NB, NA), 1067);
	assert_int_equal(ks_expiry_next(1066, NB, NA), 1067);
	assert_int_equal(ks_expiry_next(1067, NB, NA), 1090);
	assert_int_equal(ks_expiry_next(1090, NB, NA), 1100);
	assert_int_equal(ks_expiry_next(1099, NB, NA), 1100);
	assert_true(ks_expiry_next(1100, NB, NA) == INT64_MAX);
	assert_int_equal(ks_expiry_next(NB - 1, NB, NB), NB);
	/* Always after now while something is left: a wait is never 0. */
	for (int64_t now = 900; now < NA; now++)
		assert_true(ks_expiry_next(now, NB, NA) > now);
}

static void test_check(void **state)
{
	struct ks_expiry st = {0};

	(void)state;
	/* One leaf, time passing: each threshold once. */
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1010), KS_EXPIRY_NONE);
	assert_int_equal(st.next, 1067);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1066), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1067), KS_EXPIRY_WARN);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1070), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1089), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1090), KS_EXPIRY_ERROR);
	assert_int_equal(st.next, 1100);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1095), KS_EXPIRY_NONE);
	/* The clock steps back and forward again: nothing twice. */
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1070), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1091), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 1100), KS_EXPIRY_EXPIRED);
	assert_true(st.next == INT64_MAX);
	assert_int_equal(ks_expiry_check(&st, "0A", NB, NA, 5000), KS_EXPIRY_NONE);

	/* A renewal: a new leaf, on time, says nothing until its own 2/3. */
	assert_int_equal(ks_expiry_check(&st, "0B", 1090, 1190, 1101), KS_EXPIRY_NONE);
	assert_int_equal(ks_expiry_check(&st, "0B", 1090, 1190, 1157), KS_EXPIRY_WARN);
	/* A new leaf that arrives already late is logged at once, at the
	 * highest threshold it has passed, and not at the lower one after. */
	assert_int_equal(ks_expiry_check(&st, "0C", NB, NA, 1070), KS_EXPIRY_WARN);
	assert_int_equal(ks_expiry_check(&st, "0D", NB, NA, 1095), KS_EXPIRY_ERROR);
	assert_int_equal(ks_expiry_check(&st, "0D", NB, NA, 1096), KS_EXPIRY_NONE);
	/* The same serial with another validity period is another leaf. */
	assert_int_equal(ks_expiry_check(&st, "0D", NB + 1, NA, 1096), KS_EXPIRY_ERROR);
	/* The same leaf again (a CRL or bundle update republishes it): no repeat. */
	assert_int_equal(ks_expiry_check(&st, "0D", NB + 1, NA, 1097), KS_EXPIRY_NONE);
	/* Back to an earlier leaf: afresh. */
	assert_int_equal(ks_expiry_check(&st, "0C", NB, NA, 1097), KS_EXPIRY_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_level),
	    cmocka_unit_test(test_next),
	    cmocka_unit_test(test_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
