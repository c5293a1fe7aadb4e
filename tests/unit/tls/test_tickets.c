/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The session ticket key ring (tls/tickets.h): the rotation schedule (a key
 * seals for one period, opens for one more, then is gone), a rotation the
 * RNG fails (the old key keeps sealing, the failure counted), pushed keys
 * (validated as a whole, no rotation of our own, back to our own on an
 * empty push, and the pushed keys kept when no key of our own can be made),
 * and the same pushed secret giving the same keys everywhere.
 *
 * Seam: the Makefile links this test with --wrap=RAND_priv_bytes, so that
 * rng_fails makes the ring's RNG fail (tests alone).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "tls/tickets.h"

#define P 60 /* period, seconds */

static bool rng_fails;

int __real_RAND_priv_bytes(unsigned char *buf, int num);
int __wrap_RAND_priv_bytes(unsigned char *buf, int num);
int __wrap_RAND_priv_bytes(unsigned char *buf, int num)
{
	return rng_fails ? 0 : __real_RAND_priv_bytes(buf, num);
}

static struct ks_ticket_ring ring;

static int setup(void **state)
{
	(void)state;
	return ks_ticket_ring_init(&ring, P) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	ks_ticket_ring_fini(&ring);
	return 0;
}

/* The key that seals at now. */
static struct ks_ticket_key enc_at(int64_t now)
{
	struct ks_ticket_key k;

	assert_int_equal(ks_ticket_ring_key(&ring, true, NULL, now, &k), 0);
	return k;
}

static int dec_at(const struct ks_ticket_key *k, int64_t now)
{
	struct ks_ticket_key out;

	return ks_ticket_ring_key(&ring, false, k->name, now, &out);
}

static void test_schedule(void **state)
{
	int64_t t0;
	struct ks_ticket_key k0, k1, k2, k3;

	(void)state;
	assert_int_equal(ring.nkeys, 1);
	t0 = ring.keys[0].born_s;
	k0 = enc_at(t0);
	assert_memory_equal(enc_at(t0 + P - 1).name, k0.name, KS_TICKET_NAME_LEN);
	assert_int_equal(dec_at(&k0, t0 + P - 1), 0); /* current: no renewal */
	/* A period on: a new sealing key, the old one still opens (renew). */
	k1 = enc_at(t0 + P);
	assert_memory_not_equal(k1.name, k0.name, KS_TICKET_NAME_LEN);
	assert_memory_not_equal(k1.aes, k0.aes, 32);
	assert_int_equal(dec_at(&k0, t0 + P), 1);
	assert_int_equal(dec_at(&k1, t0 + P), 0);
	assert_int_equal(ring.nkeys, 2);
	/* Two periods after its birth, k0 is gone; k1 retires. */
	k2 = enc_at(t0 + 2 * P);
	assert_int_equal(dec_at(&k0, t0 + 2 * P), -ENOENT);
	assert_int_equal(dec_at(&k1, t0 + 2 * P), 1);
	assert_int_equal(ring.nkeys, 2);
	/* Left alone for ten periods: no old key survives, one fresh one. */
	assert_int_equal(dec_at(&k2, t0 + 12 * P), -ENOENT);
	assert_int_equal(ring.nkeys, 1);
	k3 = enc_at(t0 + 12 * P);
	assert_memory_not_equal(k3.name, k2.name, KS_TICKET_NAME_LEN);
	/* k1, k2 and k3: the first key (k0) is not a rotation. */
	assert_int_equal(ring.rotations, 3);
	assert_int_equal(ring.rotation_failures, 0);
}

/*
 * A rotation whose new key cannot be made (the RNG fails) keeps the key in
 * force sealing, counts the failure, and the next rotation that can make a
 * key does.
 */
static void test_rotation_rng_failure(void **state)
{
	struct ks_ticket_stats st;
	struct ks_ticket_key k0, k;
	int64_t t0;

	(void)state;
	t0 = ring.keys[0].born_s;
	k0 = enc_at(t0);
	ks_ticket_ring_stats(&ring, &st);
	assert_int_equal(st.nkeys, 1);
	assert_false(st.pushed);
	assert_int_equal(st.rotations, 0);
	assert_int_equal(st.rotation_failures, 0);

	rng_fails = true;
	k = enc_at(t0 + P);
	assert_memory_equal(k.name, k0.name, KS_TICKET_NAME_LEN); /* still seals */
	assert_int_equal(dec_at(&k0, t0 + P), 0);
	assert_memory_equal(enc_at(t0 + P + 1).name, k0.name, KS_TICKET_NAME_LEN);
	rng_fails = false;
	ks_ticket_ring_stats(&ring, &st);
	assert_int_equal(st.nkeys, 1);
	assert_int_equal(st.rotations, 0);
	assert_int_equal(st.rotation_failures, 3); /* every ticket operation tried */

	k = enc_at(t0 + P + 2);
	assert_memory_not_equal(k.name, k0.name, KS_TICKET_NAME_LEN);
	assert_int_equal(dec_at(&k0, t0 + P + 2), 1);
	ks_ticket_ring_stats(&ring, &st);
	assert_int_equal(st.nkeys, 2);
	assert_int_equal(st.rotations, 1);
	assert_int_equal(st.rotation_failures, 3);
}

static struct ks_ticket_secret secret(uint8_t seed)
{
	struct ks_ticket_secret s;

	memset(s.name, seed, sizeof(s.name));
	for (size_t i = 0; i < sizeof(s.secret); i++)
		s.secret[i] = (uint8_t)(seed * 31 + i);
	return s;
}

static void test_pushed(void **state)
{
	struct ks_ticket_secret two[2] = {secret(1), secret(2)}, bad[5];
	uint8_t names[KS_TICKET_KEYS_MAX][KS_TICKET_NAME_LEN];
	struct ks_ticket_key k, own;
	bool pushed;
	char err[256];
	int64_t t0 = ring.keys[0].born_s;

	(void)state;
	own = enc_at(t0);
	assert_int_equal(ks_ticket_ring_set(&ring, two, 2, err, sizeof(err)), 0);
	k = enc_at(t0);
	assert_memory_equal(k.name, two[0].name, KS_TICKET_NAME_LEN);
	assert_int_equal(dec_at(&k, t0), 0);
	memcpy(k.name, two[1].name, KS_TICKET_NAME_LEN);
	assert_int_equal(dec_at(&k, t0), 1);
	assert_int_equal(dec_at(&own, t0), -ENOENT); /* ours went with the push */
	/* No rotation of our own while the control plane owns the keys. */
	k = enc_at(t0 + 100 * P);
	assert_memory_equal(k.name, two[0].name, KS_TICKET_NAME_LEN);
	assert_int_equal(ks_ticket_ring_names(&ring, names, KS_TICKET_KEYS_MAX, &pushed), 2);
	assert_true(pushed);

	/* Refused sets change nothing. */
	for (int i = 0; i < 5; i++)
		bad[i] = secret((uint8_t)(10 + i));
	assert_int_equal(ks_ticket_ring_set(&ring, bad, 5, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "at most 4"));
	bad[1] = bad[0];
	assert_int_equal(ks_ticket_ring_set(&ring, bad, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "same name"));
	bad[1] = secret(20);
	memset(bad[1].secret, 0, sizeof(bad[1].secret));
	assert_int_equal(ks_ticket_ring_set(&ring, bad, 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "all zeros"));
	k = enc_at(t0);
	assert_memory_equal(k.name, two[0].name, KS_TICKET_NAME_LEN);

	/* An empty push when the RNG fails: refused, the pushed keys stay. */
	rng_fails = true;
	assert_int_equal(ks_ticket_ring_set(&ring, NULL, 0, err, sizeof(err)), -EIO);
	rng_fails = false;
	assert_non_null(strstr(err, "stay"));
	assert_int_equal(ks_ticket_ring_names(&ring, names, KS_TICKET_KEYS_MAX, &pushed), 2);
	assert_true(pushed);
	k = enc_at(t0);
	assert_memory_equal(k.name, two[0].name, KS_TICKET_NAME_LEN);
	assert_int_equal(dec_at(&k, t0), 0);

	/* An empty push: keys of our own again, made now. */
	assert_int_equal(ks_ticket_ring_set(&ring, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(ks_ticket_ring_names(&ring, names, KS_TICKET_KEYS_MAX, &pushed), 1);
	assert_false(pushed);
	assert_memory_not_equal(names[0], two[0].name, KS_TICKET_NAME_LEN);
	memcpy(k.name, two[0].name, KS_TICKET_NAME_LEN);
	assert_int_equal(dec_at(&k, t0), -ENOENT);
}

/* Two replicas given the same secret seal and open alike. */
static void test_same_secret_same_keys(void **state)
{
	struct ks_ticket_ring other;
	struct ks_ticket_secret s = secret(7), s2 = secret(8);
	struct ks_ticket_key a, b;
	char err[256];

	(void)state;
	assert_int_equal(ks_ticket_ring_init(&other, P), 0);
	assert_int_equal(ks_ticket_ring_set(&ring, &s, 1, err, sizeof(err)), 0);
	assert_int_equal(ks_ticket_ring_set(&other, &s, 1, err, sizeof(err)), 0);
	assert_int_equal(ks_ticket_ring_key(&ring, true, NULL, 1, &a), 0);
	assert_int_equal(ks_ticket_ring_key(&other, true, NULL, 1, &b), 0);
	assert_memory_equal(a.aes, b.aes, 32);
	assert_memory_equal(a.hmac, b.hmac, 32);
	assert_memory_not_equal(a.aes, a.hmac, 32); /* two keys, not one */
	assert_int_equal(ks_ticket_ring_set(&other, &s2, 1, err, sizeof(err)), 0);
	assert_int_equal(ks_ticket_ring_key(&other, true, NULL, 1, &b), 0);
	assert_memory_not_equal(a.aes, b.aes, 32);
	ks_ticket_ring_fini(&other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_schedule, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rotation_rng_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pushed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_same_secret_same_keys, setup, teardown),
	};

	return cmocka_run_group_tests_name("tickets", tests, NULL, NULL);
}
