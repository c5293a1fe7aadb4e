/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admission bookkeeping (dataplane/admission.c): the per-worker share of the
 * budgets, and the per-source table under insertions and deletions in any
 * order (linear probing with backward-shift deletion: every key must still
 * be found after its neighbours leave), and the rate-limited counting.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"
#include "dataplane/admission.h"

static void key_of(uint32_t ip, uint8_t key[16])
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(ip)};

	ks_adm_key((struct sockaddr *)&sin, key);
}

/* The budgets are process-wide: every worker's view checks the one pool. */
static void test_shared_budgets(void **state)
{
	struct ks_dp_config cfg = {.max_handshakes = 3, .max_handshakes_per_source = 2};
	struct ks_adm_pool pool;
	struct ks_admission w0, w1;
	uint8_t k1[16], k2[16];

	(void)state;
	assert_int_equal(ks_adm_pool_init(&pool, &cfg), 0);
	assert_true(pool.src_mask + 1 >= 2 * pool.budget);
	ks_adm_init(&w0, &pool);
	ks_adm_init(&w1, &pool);
	key_of(0x0a000001, k1);
	key_of(0x0a000002, k2);
	/* Two workers, one source: its second place is its last, whichever
	 * worker takes it (with per-worker shares each had 1 of 2). */
	assert_int_equal(ks_adm_pending_add(&w0, KS_INBOUND, k1), KS_ADM_OK);
	assert_int_equal(ks_adm_pending_add(&w0, KS_INBOUND, k1), KS_ADM_OK);
	assert_int_equal(ks_adm_pending_add(&w1, KS_INBOUND, k1), KS_ADM_SOURCE_FULL);
	assert_int_equal(ks_adm_source_pending(&w1, k1), 2);
	/* The direction's budget: the fourth is over it, on any worker. */
	assert_int_equal(ks_adm_pending_add(&w1, KS_INBOUND, k2), KS_ADM_OK);
	assert_int_equal(ks_adm_pending_add(&w1, KS_INBOUND, k2), KS_ADM_OVER_BUDGET);
	assert_int_equal(ks_adm_pending(&w0, KS_INBOUND), 4);
	/* Outbound has a budget of its own. */
	assert_int_equal(ks_adm_pending_add(&w0, KS_OUTBOUND, k1), KS_ADM_OK);
	ks_adm_pending_del(&w1, KS_INBOUND, k1);
	assert_int_equal(ks_adm_pending_add(&w1, KS_INBOUND, k1), KS_ADM_OVER_BUDGET);
	ks_adm_pool_fini(&pool);
}

static void test_key_forms(void **state)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	uint8_t k4[16], k6[16];

	(void)state;
	key_of(0x7f000001, k4);
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr);
	ks_adm_key((struct sockaddr *)&sin6, k6);
	/* An IPv4 client is the same source over a v4 or a v4-mapped socket. */
	assert_memory_equal(k4, k6, 16);
}

static void test_source_table(void **state)
{
	struct ks_dp_config cfg = {.max_handshakes = 64, .max_handshakes_per_source = 1000};
	struct ks_adm_pool pool;
	struct ks_admission a;
	static uint32_t counts[200];
	uint8_t key[16];

	(void)state;
	assert_int_equal(ks_adm_pool_init(&pool, &cfg), 0);
	ks_adm_init(&a, &pool);
	srand(1);
	/* Random adds and removes over 200 addresses, never more than 64 live
	 * sources: each count must match a plain array's at every step. */
	for (int step = 0; step < 20000; step++) {
		uint32_t ip = (uint32_t)rand() % 200, live = 0;

		for (int i = 0; i < 200; i++)
			live += counts[i] != 0;
		key_of(0x7f000000 + ip, key);
		if (counts[ip] && (rand() & 1)) {
			ks_adm_pending_del(&a, KS_INBOUND, key);
			counts[ip]--;
		} else if (counts[ip] || live < 64) {
			ks_adm_pending_add(&a, KS_INBOUND, key);
			counts[ip]++;
		}
		for (uint32_t i = 0; i < 200; i += 7) {
			key_of(0x7f000000 + i, key);
			assert_int_equal(ks_adm_source_pending(&a, key), counts[i]);
		}
	}
	/* Outbound connections are budgeted but not counted per source. */
	key_of(0x7f0000ff, key);
	ks_adm_pending_add(&a, KS_OUTBOUND, key);
	assert_int_equal(ks_adm_pending(&a, KS_OUTBOUND), 1);
	assert_int_equal(ks_adm_source_pending(&a, key), 0);
	ks_adm_pool_fini(&pool);
}

static void test_note_counts(void **state)
{
	struct ks_admission a;
	uint64_t total, since;

	(void)state;
	ks_log_set_level(KS_LOG_ERROR);
	ks_adm_init(&a, NULL);
	for (int i = 0; i < 1000; i++)
		ks_adm_note(&a, KS_ADM_SHED_HANDSHAKES, 5000 + (uint64_t)i, 0, "x", 4);
	assert_int_equal(a.counts[KS_ADM_SHED_HANDSHAKES], 1000);
	assert_int_equal(a.counts[KS_ADM_REFUSED_SOURCE], 0);
	/* One line at 5000 ms; the next at 6000 says 1000 events since it. */
	assert_int_equal(a.rl[KS_ADM_SHED_HANDSHAKES].next_ms, 6000);
	assert_int_equal(a.rl[KS_ADM_SHED_HANDSHAKES].suppressed, 999);
	assert_true(ks_adm_count(&a, KS_ADM_SHED_HANDSHAKES, 6000, &total, &since));
	assert_int_equal(total, 1001);
	assert_int_equal(since, 1000);
	assert_false(ks_adm_count(&a, KS_ADM_SHED_HANDSHAKES, 6999, &total, &since));
	assert_true(ks_adm_count(&a, KS_ADM_ACCEPT_FAILED, 6999, &total, &since));
	assert_int_equal(total, 1);
	assert_int_equal(since, 1);
	assert_string_equal(ks_adm_reason_name(KS_ADM_REFUSED_SOURCE), "max_handshakes_per_source");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shared_budgets),
	    cmocka_unit_test(test_key_forms),
	    cmocka_unit_test(test_source_table),
	    cmocka_unit_test(test_note_counts),
	};

	return cmocka_run_group_tests_name("admission", tests, NULL, NULL);
}
