/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client's ticket cache (tls/sesscache.h): tickets are taken out, so
 * each is offered once; the newest first; expired ones are dropped, not
 * offered; per key and in all it stays bounded (oldest ticket, least
 * recently used key).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tls/sesscache.h"

static struct ks_sess_cache cache;

static int setup(void **state)
{
	(void)state;
	ks_sess_cache_init(&cache);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ks_sess_cache_fini(&cache);
	return 0;
}

/* A session tagged with t (its time) so that tests can tell them apart. */
static SSL_SESSION *sess(long t)
{
	SSL_SESSION *s = SSL_SESSION_new();

	assert_non_null(s);
	SSL_SESSION_set_time(s, t);
	return s;
}

static void put(const char *key, long t, int64_t expires)
{
	uint8_t facts[3] = {(uint8_t)t, 2, 3};

	assert_int_equal(ks_sess_cache_put(&cache, key, sess(t), facts, sizeof(facts), expires), 0);
}

/* The time of the ticket taken for key at now, or -1 for none. */
static long take(const char *key, int64_t now)
{
	uint8_t *facts;
	size_t len;
	SSL_SESSION *s = ks_sess_cache_take(&cache, key, now, &facts, &len);
	long t;

	if (!s)
		return -1;
	t = SSL_SESSION_get_time(s);
	assert_int_equal(len, 3);
	assert_int_equal(facts[0], (uint8_t)t);
	free(facts);
	SSL_SESSION_free(s);
	return t;
}

static void test_once_newest_first(void **state)
{
	(void)state;
	put("r|d|id", 1, 100);
	put("r|d|id", 2, 100);
	put("other", 3, 100);
	assert_int_equal(ks_sess_cache_count(&cache), 3);
	assert_int_equal(take("r|d|id", 10), 2);
	assert_int_equal(take("r|d|id", 10), 1);
	assert_int_equal(take("r|d|id", 10), -1); /* each used once */
	assert_int_equal(take("r|d|idX", 10), -1);
	assert_int_equal(take("other", 10), 3);
	assert_int_equal(ks_sess_cache_count(&cache), 0);
}

static void test_expiry(void **state)
{
	(void)state;
	put("k", 1, 50);
	put("k", 2, 20);		    /* newest, but shorter-lived */
	assert_int_equal(take("k", 20), 1); /* 2 expired at 20: dropped, not offered */
	assert_int_equal(ks_sess_cache_count(&cache), 0);
	put("k", 3, 5);
	assert_int_equal(take("k", 5), -1);
}

static void test_bounds(void **state)
{
	char key[32];

	(void)state;
	for (long t = 1; t <= KS_SESS_PER_KEY + 3; t++)
		put("k", t, 100);
	assert_int_equal(ks_sess_cache_count(&cache), KS_SESS_PER_KEY);
	for (long t = KS_SESS_PER_KEY + 3; t > 3; t--)
		assert_int_equal(take("k", 1), t); /* the three oldest went */
	assert_int_equal(take("k", 1), -1);
	/* Keys: the least recently used one goes when a new one comes. */
	for (int i = 0; i < KS_SESS_KEYS; i++) {
		snprintf(key, sizeof(key), "key%d", i);
		put(key, i + 1, 100);
	}
	put("key0", 500, 100); /* key0 is now the most recently used */
	put("fresh", 600, 100);
	assert_int_equal(take("key1", 1), -1); /* evicted */
	assert_int_equal(take("key0", 1), 500);
	assert_int_equal(take("fresh", 1), 600);
	assert_int_equal(take("key2", 1), 3);
	assert_int_equal(ks_sess_cache_put(
			     &cache, (char[KS_SESS_KEY_MAX + 1]){[0 ... KS_SESS_KEY_MAX - 1] = 'x'},
			     NULL, NULL, 0, 1),
			 -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_once_newest_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
	};

	return cmocka_run_group_tests_name("sesscache", tests, NULL, NULL);
}
