/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-connection warning lines under a flood (dataplane/loglimit.h): one
 * source gets a burst and then a line a second, and cannot hide another
 * source's line; a flood from thousands of sources is bounded per reason;
 * every line held back is counted for the summary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dataplane/loglimit.h"

static void src(uint8_t key[16], uint32_t n)
{
	memset(key, 0, 16);
	key[10] = key[11] = 0xff; /* IPv4-mapped 127.x.y.z */
	key[12] = 127;
	key[13] = (uint8_t)(n >> 16);
	key[14] = (uint8_t)(n >> 8);
	key[15] = (uint8_t)n;
}

static void test_one_source(void **state)
{
	struct ks_loglimit *l = calloc(1, sizeof(*l));
	uint8_t noisy[16], quiet[16];
	unsigned out = 0;

	(void)state;
	assert_non_null(l);
	src(noisy, 2);
	src(quiet, 3);
	/* 1,000 lines in the same millisecond: the burst gets out. */
	for (int i = 0; i < 1000; i++)
		out += ks_loglimit_ok(l, 5000, "handshake_rejected", "not_tls", noisy);
	assert_int_equal(out, KS_LL_SRC_BURST);
	assert_int_equal(ks_loglimit_pending(l), 1000 - KS_LL_SRC_BURST);
	/* Another source, same reason: not hidden. Another reason of the
	 * noisy source: not hidden either. */
	assert_true(ks_loglimit_ok(l, 5000, "handshake_rejected", "not_tls", quiet));
	assert_true(ks_loglimit_ok(l, 5000, "handshake_rejected", "unknown_ca", noisy));
	/* Then one a second for the noisy source. */
	assert_false(ks_loglimit_ok(l, 5999, "handshake_rejected", "not_tls", noisy));
	assert_true(ks_loglimit_ok(l, 6000, "handshake_rejected", "not_tls", noisy));
	assert_false(ks_loglimit_ok(l, 6001, "handshake_rejected", "not_tls", noisy));
	/* The summary says how many, and starts the count again. */
	ks_loglimit_flush(l, 6001, 0);
	assert_int_equal(ks_loglimit_pending(l), 0);
	free(l);
}

static void test_many_sources(void **state)
{
	struct ks_loglimit *l = calloc(1, sizeof(*l));
	uint8_t key[16];
	unsigned out = 0, total = 0;

	(void)state;
	assert_non_null(l);
	/* 4,000 sources, one line each, over 2 s: the reason's burst, then
	 * KS_LL_REASON_PER_S a second. */
	for (uint32_t i = 0; i < 4000; i++, total++) {
		src(key, i);
		out += ks_loglimit_ok(l, 10000 + i / 2, "handshake_rejected", "handshake_timeout",
				      key);
	}
	assert_true(out >= KS_LL_REASON_BURST);
	assert_true(out <= KS_LL_REASON_BURST + 2 * KS_LL_REASON_PER_S + 1);
	assert_int_equal(out + ks_loglimit_pending(l), total);
	free(l);
}

static void test_first_event_at_zero(void **state)
{
	struct ks_loglimit *l = calloc(1, sizeof(*l));
	uint8_t key[16];

	(void)state;
	assert_non_null(l);
	src(key, 1);
	/* A clock at 0 (tests, a fresh CLOCK_MONOTONIC) is not "never". */
	for (int i = 0; i < KS_LL_SRC_BURST; i++)
		assert_true(ks_loglimit_ok(l, 0, "conn_close", "peer_reset", key));
	assert_false(ks_loglimit_ok(l, 0, "conn_close", "peer_reset", key));
	free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_source),
	    cmocka_unit_test(test_many_sources),
	    cmocka_unit_test(test_first_event_at_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
