/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one number parser (common/parse.h): what it accepts, and the inputs
 * that strtod/strtoul would have let through and that must be errors here:
 * nan, inf, hex and exponent forms, signs, leading or trailing blanks, and
 * values that do not fit.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/parse.h"

static void test_durations(void **state)
{
	static const struct {
		const char *in;
		uint32_t ms;
	} good[] = {{"0", 0},
		    {"10", 10000},
		    {"10s", 10000},
		    {"1.5s", 1500},
		    {"250ms", 250},
		    {"2m", 120000},
		    {"1h", 3600000},
		    {"0.001s", 1},
		    {"0.5ms", 0},
		    {"1.25h", 4500000},
		    {"4294967295ms", UINT32_MAX}};
	static const char *const bad[] = {"",	  "nan", "NaN",	 "inf",	 "-inf", "infinity",
					  "0x10", "1e3", "1e3s", " 5s",	 "5s ",	 "\t5",
					  "+5s",  "-1s", "5 s",	 "1d",	 ".5s",	 "5.s",
					  "5..s", "s",	 "ms",	 "1,5s", "1_000"};
	uint32_t ms = 7;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (ks_parse_duration_ms(good[i].in, &ms) != 0 || ms != good[i].ms)
			fail_msg("'%s': rc or %u != %u", good[i].in, ms, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 7;
		if (ks_parse_duration_ms(bad[i], &ms) != -EINVAL)
			fail_msg("'%s' accepted as a duration", bad[i]);
		assert_int_equal(ms, 7); /* untouched on error */
	}
	/* Well-formed but too long: an error, never a wrap or a clamp. */
	assert_int_equal(ks_parse_duration_ms("4294967296ms", &ms), -ERANGE);
	assert_int_equal(ks_parse_duration_ms("1193h", &ms), 0);
	assert_int_equal(ks_parse_duration_ms("1194h", &ms), -ERANGE);
	assert_int_equal(ks_parse_duration_ms("99999999999999999999999s", &ms), -ERANGE);
	assert_int_equal(ks_parse_duration_ms(NULL, &ms), -EINVAL);
}

static void test_uints(void **state)
{
	unsigned long v = 7;

	(void)state;
	assert_int_equal(ks_parse_uint("0", 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(ks_parse_uint("10", 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(ks_parse_uint("11", 10, &v), -ERANGE);
	assert_int_equal(ks_parse_uint("18446744073709551616", ~0UL, &v), -ERANGE);
	assert_int_equal(ks_parse_uint("18446744073709551615", ~0UL, &v), 0);
	assert_true(v == ~0UL);
	v = 7;
	for (const char *const *b = (const char *const[]){"", "-1", "+1", " 1", "1 ", "0x1", "1e2",
							  "nan", "1.0", NULL};
	     *b; b++)
		if (ks_parse_uint(*b, 100, &v) != -EINVAL)
			fail_msg("'%s' accepted as a number", *b);
	assert_int_equal(v, 7);
}

static void test_ports(void **state)
{
	uint16_t p = 7;

	(void)state;
	assert_int_equal(ks_parse_port("443", false, &p), 0);
	assert_int_equal(p, 443);
	assert_int_equal(ks_parse_port("65535", false, &p), 0);
	assert_int_equal(ks_parse_port("65536", false, &p), -ERANGE);
	assert_int_equal(ks_parse_port("0", false, &p), -ERANGE);
	assert_int_equal(ks_parse_port("0", true, &p), 0);
	assert_int_equal(p, 0);
	assert_int_equal(ks_parse_port("-1", true, &p), -EINVAL);
	assert_int_equal(ks_parse_port("80x", true, &p), -EINVAL);
}

static void test_sizes(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(ks_parse_size("64", UINT64_MAX, &v), 0);
	assert_int_equal(v, 64);
	assert_int_equal(ks_parse_size("1K", UINT64_MAX, &v), 0);
	assert_int_equal(v, 1024);
	assert_int_equal(ks_parse_size("2m", UINT64_MAX, &v), 0);
	assert_int_equal(v, 2u << 20);
	assert_int_equal(ks_parse_size("1G", UINT64_MAX, &v), 0);
	assert_int_equal(v, 1u << 30);
	assert_int_equal(ks_parse_size("64M", 64u << 20, &v), 0);
	assert_int_equal(ks_parse_size("65M", 64u << 20, &v), -ERANGE);
	assert_int_equal(ks_parse_size("17179869184G", UINT64_MAX, &v), -ERANGE);
	v = 7;
	for (const char *const *b =
		 (const char *const[]){"", "K", "1KB", "1 K", "1.5M", "-1", "0x40", "1T", NULL};
	     *b; b++)
		if (ks_parse_size(*b, UINT64_MAX, &v) != -EINVAL)
			fail_msg("'%s' accepted as a size", *b);
	assert_int_equal(v, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_uints),
	    cmocka_unit_test(test_ports),
	    cmocka_unit_test(test_sizes),
	};

	return cmocka_run_group_tests_name("parse", tests, NULL, NULL);
}
