/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The descriptor plan (dataplane/capacity.h): what connections, pending
 * connections and pipes cost, defaults lowered to fit and never a limit
 * the user gave, and advice that is itself a plan that fits.
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

#include "dataplane/capacity.h"

static struct ks_route routes[2] = {{.dir = KS_INBOUND}, {.dir = KS_OUTBOUND}};
static const struct ks_fd_given none_given;

static struct ks_dp_config base(size_t nroutes)
{
	return (struct ks_dp_config){.routes = routes,
				     .nroutes = nroutes,
				     .workers = 2,
				     .max_connections = 16384,
				     .max_handshakes = 1024,
				     .ktls = KS_KTLS_AUTO};
}

static void test_costs(void **state)
{
	struct ks_dp_config cfg = base(2);
	struct ks_fd_plan p;
	char err[512];

	(void)state;
	/* Pipes default to a quarter of the connections (HAProxy's maxpipes). */
	assert_int_equal(ks_fd_fit(&cfg, true, 1u << 20, &none_given, &p, err, sizeof(err)), 0);
	assert_int_equal(cfg.max_pipes, 4096);
	assert_int_equal(p.per_conn, 2); /* two sockets; pipes only while busy */
	assert_int_equal(p.per_handshake, 3);
	assert_int_equal(p.fixed, 16 + 12 + 2 + 2 * (2 + 2));
	assert_int_equal(p.pipe_fds, 2 * 4096);
	assert_int_equal(p.needed, p.fixed + 2ull * 16384 + 3ull * 1024 + 2 * 4096);
	assert_false(p.lowered);
	/* Userspace TLS only: no splice path, no pipes. */
	cfg = base(2);
	cfg.ktls = KS_KTLS_OFF;
	assert_int_equal(ks_fd_fit(&cfg, false, 1u << 20, &none_given, &p, err, sizeof(err)), 0);
	assert_int_equal(cfg.max_pipes, 0);
	assert_int_equal(p.pipe_fds, 0);
	/* Permissive plaintext is spliced, kTLS or not. */
	cfg.inbound_mode = KS_INBOUND_PERMISSIVE;
	cfg.max_pipes = 0;
	assert_int_equal(ks_fd_fit(&cfg, false, 1u << 20, &none_given, &p, err, sizeof(err)), 0);
	assert_int_equal(cfg.max_pipes, 4096);
	/* Pending connections: inbound 1, outbound 2. */
	cfg = base(1);
	ks_fd_plan(&cfg, false, 1u << 20, &p);
	assert_int_equal(p.per_handshake, 1);
	cfg.routes = &routes[1];
	ks_fd_plan(&cfg, false, 1u << 20, &p);
	assert_int_equal(p.per_handshake, 2);
	/* Budgets are split per worker, rounded up. */
	cfg.max_handshakes = 3;
	cfg.max_pipes = 5;
	ks_fd_plan(&cfg, false, 1u << 20, &p);
	assert_int_equal(p.pipe_fds, 2 * 6);
	assert_int_equal(p.needed, p.fixed + 2ull * 16384 + 2ull * 4 + 2 * 6);
}

static void test_defaults_lowered(void **state)
{
	static const uint64_t limits[] = {64, 1024, 4096, 20000}; /* the defaults need 44,070 */
	char err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		struct ks_dp_config cfg = base(2);
		struct ks_fd_plan p;

		assert_int_equal(
		    ks_fd_fit(&cfg, true, limits[i], &none_given, &p, err, sizeof(err)), 0);
		assert_true(p.lowered);
		assert_true(p.needed <= limits[i]);
		assert_true(cfg.max_connections >= 1 && cfg.max_connections < 16384);
		assert_true(cfg.max_handshakes >= 1 && cfg.max_handshakes <= 1024);
		assert_true(cfg.max_pipes >= 4); /* two per worker at least */
	}
	{
		struct ks_dp_config cfg = base(2);
		struct ks_fd_plan p;

		assert_int_equal(ks_fd_fit(&cfg, true, 65536, &none_given, &p, err, sizeof(err)),
				 0);
		assert_false(p.lowered);
		assert_int_equal(cfg.max_connections, 16384);
	}
}

static void test_given_never_lowered(void **state)
{
	struct ks_fd_given conn_given = {.max_connections = true};
	struct ks_fd_given hs_given = {.max_handshakes = true};
	struct ks_dp_config cfg = base(2);
	struct ks_fd_plan p;
	char err[512];
	const char *advice;
	unsigned long fits;

	(void)state;
	cfg.max_connections = 5000;
	assert_int_equal(ks_fd_fit(&cfg, true, 4096, &conn_given, &p, err, sizeof(err)), -ERANGE);
	assert_int_equal(cfg.max_connections, 5000);
	assert_non_null(strstr(err, "--max-connections 5000 needs up to"));
	advice = strstr(err, "lower --max-connections to ");
	assert_non_null(advice);
	fits = strtoul(advice + strlen("lower --max-connections to "), NULL, 10);
	assert_true(fits > 0 && fits < 5000);
	/* The advice fits. */
	cfg = base(2);
	cfg.max_connections = (uint32_t)fits;
	assert_int_equal(ks_fd_fit(&cfg, true, 4096, &conn_given, &p, err, sizeof(err)), 0);
	assert_int_equal(cfg.max_connections, fits);

	/* A given --max-pipes is kept, and the connections fit around it. */
	cfg = base(2);
	cfg.max_pipes = 64;
	assert_int_equal(ks_fd_fit(&cfg, true, 20000, &(struct ks_fd_given){.max_pipes = true}, &p,
				   err, sizeof(err)),
			 0);
	assert_int_equal(cfg.max_pipes, 64);
	assert_true(p.needed <= 20000);

	/* A pending budget that leaves no room for one connection. */
	cfg = base(2);
	cfg.max_handshakes = 100000;
	assert_int_equal(ks_fd_fit(&cfg, true, 4096, &hs_given, &p, err, sizeof(err)), -ERANGE);
	assert_int_equal(cfg.max_handshakes, 100000);
	assert_non_null(strstr(err, "leaves no room for a connection"));
	/* Below the fixed part: no plan at all. */
	cfg = base(2);
	assert_int_equal(ks_fd_fit(&cfg, true, 20, &none_given, &p, err, sizeof(err)), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_costs),
	    cmocka_unit_test(test_defaults_lowered),
	    cmocka_unit_test(test_given_never_lowered),
	};

	return cmocka_run_group_tests_name("capacity", tests, NULL, NULL);
}
