/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC framing and status (wapi/grpc.h), the Workload API address forms
 * and the reconnect backoff (wapi/wapi.h).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wapi/grpc.h"
#include "wapi/wapi.h"

struct got {
	size_t n;
	size_t len[8];
	uint8_t data[8][64];
	int fail_at; /* return -ECANCELED on this message (1-based), 0: never */
};

static int take(void *arg, const uint8_t *msg, size_t len)
{
	struct got *g = arg;

	if (g->n < 8) {
		g->len[g->n] = len;
		memcpy(g->data[g->n], msg, len < 64 ? len : 64);
	}
	g->n++;
	if (g->fail_at && (int)g->n == g->fail_at)
		return -ECANCELED;
	return 0;
}

/* Three messages (0, 3 and 40 bytes) back to back. */
static size_t stream3(uint8_t *out)
{
	size_t o = 0;
	uint32_t lens[3] = {0, 3, 40};

	for (int m = 0; m < 3; m++) {
		ks_grpc_prefix(out + o, lens[m]);
		o += KS_GRPC_PREFIX;
		for (uint32_t i = 0; i < lens[m]; i++)
			out[o++] = (uint8_t)(m * 50 + i);
	}
	return o;
}

static void check3(const struct got *g)
{
	assert_int_equal(g->n, 3);
	assert_int_equal(g->len[0], 0);
	assert_int_equal(g->len[1], 3);
	assert_int_equal(g->len[2], 40);
	assert_int_equal(g->data[1][2], 52);
	assert_int_equal(g->data[2][39], 139);
}

/* HTTP/2 cuts DATA anywhere: every split of the stream into two chunks,
 * and byte by byte, gives the same three messages. */
static void test_splits(void **state)
{
	uint8_t s[128];
	size_t n = stream3(s);
	char err[128];

	(void)state;
	for (size_t cut = 0; cut <= n; cut++) {
		struct ks_grpc_dec d;
		struct got g = {0};

		ks_grpc_dec_init(&d, 1024);
		assert_int_equal(ks_grpc_dec_feed(&d, s, cut, take, &g, err, sizeof(err)), 0);
		assert_int_equal(ks_grpc_dec_feed(&d, s + cut, n - cut, take, &g, err, sizeof(err)),
				 0);
		check3(&g);
		assert_true(ks_grpc_dec_idle(&d));
		ks_grpc_dec_fini(&d);
	}
	struct ks_grpc_dec d;
	struct got g = {0};

	ks_grpc_dec_init(&d, 1024);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ks_grpc_dec_feed(&d, s + i, 1, take, &g, err, sizeof(err)), 0);
		/* Idle only between messages. */
		if (i == 4 || i == 12 || i == n - 1)
			assert_true(ks_grpc_dec_idle(&d));
		else if (i == 6 || i == 20)
			assert_false(ks_grpc_dec_idle(&d));
	}
	check3(&g);
	ks_grpc_dec_fini(&d);
}

static void test_rejects(void **state)
{
	struct ks_grpc_dec d;
	struct got g = {0};
	uint8_t s[16];
	char err[128];

	(void)state;
	/* Compressed: we never sent grpc-accept-encoding. */
	ks_grpc_prefix(s, 1);
	s[0] = 1;
	s[5] = 'x';
	ks_grpc_dec_init(&d, 1024);
	assert_int_equal(ks_grpc_dec_feed(&d, s, 6, take, &g, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "compressed"));
	assert_int_equal(g.n, 0);
	/* Sticky: nothing more is taken, even a good message. */
	ks_grpc_prefix(s, 0);
	assert_int_equal(ks_grpc_dec_feed(&d, s, 5, take, &g, err, sizeof(err)), -EPROTO);
	assert_false(ks_grpc_dec_idle(&d));
	ks_grpc_dec_fini(&d);

	/* Over the limit: refused at the prefix, before any allocation. */
	ks_grpc_dec_init(&d, 100);
	ks_grpc_prefix(s, 101);
	assert_int_equal(ks_grpc_dec_feed(&d, s, 5, take, &g, err, sizeof(err)), -EMSGSIZE);
	assert_non_null(strstr(err, "101 bytes"));
	ks_grpc_dec_fini(&d);
	ks_grpc_dec_init(&d, 100);
	ks_grpc_prefix(s, 0xffffffffu);
	assert_int_equal(ks_grpc_dec_feed(&d, s, 5, take, &g, err, sizeof(err)), -EMSGSIZE);
	ks_grpc_dec_fini(&d);

	/* The callback's refusal stops the feed and is returned. */
	uint8_t st[128];
	size_t n = stream3(st);
	struct got g2 = {.fail_at = 2};

	ks_grpc_dec_init(&d, 1024);
	assert_int_equal(ks_grpc_dec_feed(&d, st, n, take, &g2, err, sizeof(err)), -ECANCELED);
	assert_int_equal(g2.n, 2);
	ks_grpc_dec_fini(&d);

	/* A stream cut inside a message is not idle. */
	ks_grpc_dec_init(&d, 1024);
	struct got g3 = {0};

	assert_int_equal(ks_grpc_dec_feed(&d, st, 9, take, &g3, err, sizeof(err)), 0);
	assert_int_equal(g3.n, 1);
	assert_false(ks_grpc_dec_idle(&d));
	ks_grpc_dec_fini(&d);
}

static void hdr(struct ks_grpc_status *s, const char *n, const char *v)
{
	ks_grpc_status_header(s, n, strlen(n), v, strlen(v));
}

static void test_status(void **state)
{
	struct ks_grpc_status s;

	(void)state;
	ks_grpc_status_init(&s);
	assert_int_equal(s.grpc_status, -1);
	hdr(&s, ":status", "200");
	hdr(&s, "content-type", "application/grpc");
	hdr(&s, "grpc-status", "14");
	hdr(&s, "grpc-message", "agent%20is%20gone%0A%zz");
	assert_int_equal(s.http_status, 200);
	assert_true(s.content_type_ok);
	assert_int_equal(s.grpc_status, 14);
	assert_string_equal(ks_grpc_code_name(s.grpc_status), "UNAVAILABLE");
	/* Decoded, kept printable; a bad escape stays as it is. */
	assert_string_equal(s.grpc_message, "agent is gone?%zz");

	for (const char *const *ok =
		 (const char *const[]){"application/grpc+proto", "application/grpc;charset=x",
				       "Application/GRPC", NULL};
	     *ok; ok++) {
		ks_grpc_status_init(&s);
		hdr(&s, "content-type", *ok);
		if (!s.content_type_ok)
			fail_msg("content-type '%s' refused", *ok);
	}
	for (const char *const *bad =
		 (const char *const[]){"application/grpc+json", "application/grpcx", "text/html",
				       "application/json", "", NULL};
	     *bad; bad++) {
		ks_grpc_status_init(&s);
		hdr(&s, "content-type", *bad);
		if (s.content_type_ok)
			fail_msg("content-type '%s' taken", *bad);
		assert_true(s.content_type_seen);
	}
	/* A status that does not parse is a failure, never OK. */
	ks_grpc_status_init(&s);
	hdr(&s, "grpc-status", "0x0");
	assert_int_equal(s.grpc_status, 2);
	hdr(&s, "grpc-status", "");
	assert_int_equal(s.grpc_status, 2);
	assert_string_equal(ks_grpc_code_name(99), "UNKNOWN");
	assert_string_equal(ks_grpc_code_name(-1), "UNKNOWN");
}

static void test_addr(void **state)
{
	char path[KS_WAPI_PATH_MAX], err[256], long_path[200];

	(void)state;
	assert_int_equal(
	    ks_wapi_addr_parse("unix:///run/spire/agent.sock", false, path, err, sizeof(err)), 0);
	assert_string_equal(path, "/run/spire/agent.sock");
	assert_int_equal(ks_wapi_addr_parse("unix:/run/a.sock", false, path, err, sizeof(err)), 0);
	assert_string_equal(path, "/run/a.sock");
	assert_int_equal(ks_wapi_addr_parse("/run/b.sock", true, path, err, sizeof(err)), 0);
	assert_string_equal(path, "/run/b.sock");
	/* The environment variable must be a URI (bare_ok false). */
	assert_int_equal(ks_wapi_addr_parse("/run/b.sock", false, path, err, sizeof(err)), -EINVAL);
	assert_int_equal(ks_wapi_addr_parse("tcp://127.0.0.1:8081", true, path, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "only a unix:"));
	assert_int_equal(ks_wapi_addr_parse("unix://host/run/a.sock", true, path, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "no host"));
	assert_int_equal(ks_wapi_addr_parse("unix:relative.sock", true, path, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(ks_wapi_addr_parse("unix:///a.sock?x=1", true, path, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(ks_wapi_addr_parse("", true, path, err, sizeof(err)), -EINVAL);
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	assert_int_equal(ks_wapi_addr_parse(long_path, true, path, err, sizeof(err)),
			 -ENAMETOOLONG);
}

static void test_backoff(void **state)
{
	(void)state;
	/* Within [d/2, d], doubling from the minimum to the maximum. */
	assert_int_equal(ks_wapi_backoff_ms(0, 0.0), KS_WAPI_BACKOFF_MIN_MS / 2);
	assert_true(ks_wapi_backoff_ms(0, 0.999999) <= KS_WAPI_BACKOFF_MIN_MS);
	assert_int_equal(ks_wapi_backoff_ms(1, 0.0), KS_WAPI_BACKOFF_MIN_MS);
	for (unsigned n = 0; n < 64; n++)
		for (double r = 0; r < 1; r += 0.125) {
			unsigned ms = ks_wapi_backoff_ms(n, r);

			assert_true(ms >= KS_WAPI_BACKOFF_MIN_MS / 2);
			assert_true(ms <= KS_WAPI_BACKOFF_MAX_MS);
		}
	assert_int_equal(ks_wapi_backoff_ms(40, 0.0), KS_WAPI_BACKOFF_MAX_MS / 2);
	assert_true(ks_wapi_backoff_ms(40, 0.999999) <= KS_WAPI_BACKOFF_MAX_MS);
	assert_true(ks_wapi_backoff_ms(40, 0.999999) > KS_WAPI_BACKOFF_MAX_MS - 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_splits),  cmocka_unit_test(test_rejects),
	    cmocka_unit_test(test_status),  cmocka_unit_test(test_addr),
	    cmocka_unit_test(test_backoff),
	};

	return cmocka_run_group_tests_name("wapi_grpc", tests, NULL, NULL);
}
