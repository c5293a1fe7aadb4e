/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secrets wiped by construction (common/secret.h): a KS_WIPE_AT_EXIT
 * variable is zero after every way out of its block; memory from
 * ks_secret_alloc starts zeroed and is wiped before it is freed, however
 * it is freed (ks_secret_free, a realloc that moves it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/secret.h"

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/*
 * The guard sits in an inner block, so the buffer it wipes is still alive
 * to look at once the block is left: normally, by break, and by goto (the
 * same cleanup runs for a return).
 */
static void test_wipe_at_exit(void **state)
{
	uint8_t key[32];

	(void)state;
	memset(key, 0xa5, sizeof(key));
	{
		KS_WIPE_AT_EXIT(key);
		assert_int_equal(key[0], 0xa5);
	}
	assert_true(all_zero(key, sizeof(key)));

	for (int i = 0; i < 3; i++) {
		KS_WIPE_AT_EXIT(key);
		memset(key, 0x5a, sizeof(key));
		if (i == 1)
			break;
	}
	assert_true(all_zero(key, sizeof(key)));

	{
		KS_WIPE_AT_EXIT(key);
		memset(key, 0x3c, sizeof(key));
		goto out;
	}
out:
	assert_true(all_zero(key, sizeof(key)));
}

static void test_secret_alloc(void **state)
{
	char *s, *t;

	(void)state;
	s = ks_secret_alloc(64);
	assert_non_null(s);
	for (int i = 0; i < 64; i++)
		assert_int_equal(s[i], 0);
	memcpy(s, "-----BEGIN PRIVATE KEY-----", 27);
	/* Grown: the old block is wiped, the content carried over. */
	t = ks_secret_realloc(s, 4096);
	assert_non_null(t);
	assert_memory_equal(t, "-----BEGIN PRIVATE KEY-----", 27);
	ks_secret_free(t);
	ks_secret_free(NULL);
	s = ks_secret_strdup("secret");
	assert_string_equal(s, "secret");
	ks_secret_free(s);
}

static void test_wipe(void **state)
{
	uint8_t b[16];

	(void)state;
	memset(b, 0xff, sizeof(b));
	ks_wipe(b, sizeof(b));
	for (size_t i = 0; i < sizeof(b); i++)
		assert_int_equal(b[i], 0);
	ks_wipe(NULL, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wipe_at_exit),
	    cmocka_unit_test(test_secret_alloc),
	    cmocka_unit_test(test_wipe),
	};

	return cmocka_run_group_tests_name("secret", tests, NULL, NULL);
}
