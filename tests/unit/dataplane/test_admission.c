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

static void test_budget_split(void **state)
{
	struct ks_dp_config cfg = {.max_handshakes = 1025, .max_handshakes_per_source = 3};
	struct ks_admission a;

	(void)state;
	assert_int_equal(ks_adm_init(&a, &cfg, 2), 0);
	assert_int_equal(a.budget, 513); /* rounded up: never below the total */
	assert_int_equal(a.per_source, 2);
	assert_true(a.src_mask + 1 >= 2 * a.budget);
	ks_adm_fini(&a);
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
	struct ks_dp_config cfg = {.max_handshakes = 64, .max_handshakes_per_source = 8};
	struct ks_admission a;
	static uint32_t counts[200];
	uint8_t key[16];

	(void)state;
	assert_int_equal(ks_adm_init(&a, &cfg, 1), 0);
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
	assert_int_equal(a.pending[KS_OUTBOUND], 1);
	assert_int_equal(ks_adm_source_pending(&a, key), 0);
	ks_adm_fini(&a);
}

static void test_note_counts(void **state)
{
	struct ks_dp_config cfg = {.max_handshakes = 4, .max_handshakes_per_source = 4};
	struct ks_admission a;
	uint64_t total, since;

	(void)state;
	ks_log_set_level(KS_LOG_ERROR);
	assert_int_equal(ks_adm_init(&a, &cfg, 1), 0);
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
	ks_adm_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_budget_split),
	    cmocka_unit_test(test_key_forms),
	    cmocka_unit_test(test_source_table),
	    cmocka_unit_test(test_note_counts),
	};

	return cmocka_run_group_tests_name("admission", tests, NULL, NULL);
}
