/* SPDX-License-Identifier: Apache-2.0 */
/* Flag and environment parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "daemon/config.h"

#define ARGV(...) ((char *[]){"ktls-sidecar", __VA_ARGS__, NULL})

static char *base_env[] = {NULL};
static char err[512];

/* argc_hint is ignored: argv is NULL-terminated, so count it. */
static int parse(struct ks_config *cfg, int argc_hint, char **argv, char **envp)
{
	int argc = 0;

	(void)argc_hint;
	while (argv[argc])
		argc++;
	return ks_config_parse(cfg, argc, argv, envp, err, sizeof(err));
}

#define IDENT "--cert", "c.pem", "--key", "k.pem", "--ca", "ca.pem"

static void test_minimal_and_defaults(void **state)
{
	struct ks_config cfg;
	char **argv = ARGV("--inbound", "127.0.0.1:8443=127.0.0.1:8080", IDENT);

	(void)state;
	assert_int_equal(parse(&cfg, 7, argv, base_env), 0);
	assert_int_equal(cfg.dp.nroutes, 1);
	assert_int_equal(cfg.dp.routes[0].dir, KS_INBOUND);
	assert_string_equal(cfg.dp.routes[0].listen_str, "127.0.0.1:8443");
	assert_string_equal(cfg.dp.routes[0].target_str, "127.0.0.1:8080");
	assert_null(cfg.dp.routes[0].expect_id);
	assert_string_equal(cfg.tls.cert, "c.pem");
	assert_int_equal(cfg.dp.handshake_timeout_ms, 10000);
	assert_int_equal(cfg.dp.idle_timeout_ms, 3600000);
	assert_int_equal(cfg.dp.drain_timeout_ms, 20000);
	assert_int_equal(cfg.dp.drain_delay_ms, 5000);
	assert_int_equal(cfg.dp.drain_quiet_ms, 1000);
	assert_int_equal(cfg.tls.min_version, TLS1_3_VERSION);
	assert_int_equal(cfg.dp.io, KS_IO_AUTO);
	assert_int_equal(cfg.dp.workers, 0); /* auto: the CPUs we may use, at start-up (cpus.h) */
	assert_int_equal(cfg.log_format, KS_LOG_LOGFMT);
	assert_int_equal(cfg.access_log, 1);
	assert_int_equal(cfg.policy.nallow, 0);
	ks_config_free(&cfg);
}

static void test_all_flags(void **state)
{
	struct ks_config cfg;
	char **argv = ARGV(
	    "--inbound", "[::1]:8443=127.0.0.1:8080", "--outbound",
	    "127.0.0.1:9000=127.0.0.1:9443,id=spiffe://td/ns/*/sa/b", "--outbound-transparent",
	    ":15001", "--allow", "spiffe://td/a", "--allow", "spiffe://td/ns/*/sa/c", "--workers",
	    "3", "--handshake-timeout", "500ms", "--idle-timeout", "2m", "--max-connections", "100",
	    "--io", "epoll", "--tls-min-version", "1.2", "--log-level", "debug", IDENT);

	(void)state;
	assert_int_equal(parse(&cfg, 32, argv, base_env), 0);
	assert_int_equal(cfg.dp.nroutes, 3);
	assert_string_equal(cfg.dp.routes[0].listen_str, "[::1]:8443");
	assert_int_equal(cfg.dp.routes[1].dir, KS_OUTBOUND);
	assert_string_equal(cfg.dp.routes[1].expect_id, "spiffe://td/ns/*/sa/b");
	assert_true(cfg.dp.routes[2].transparent);
	assert_string_equal(cfg.dp.routes[2].listen_str, "0.0.0.0:15001");
	assert_int_equal(cfg.policy.nallow, 2);
	assert_int_equal(cfg.dp.workers, 3);
	assert_int_equal(cfg.dp.handshake_timeout_ms, 500);
	assert_int_equal(cfg.dp.idle_timeout_ms, 120000);
	assert_int_equal(cfg.dp.max_connections, 100);
	assert_int_equal(cfg.dp.io, KS_IO_EPOLL);
	assert_int_equal(cfg.tls.min_version, TLS1_2_VERSION);
	assert_int_equal(cfg.log_level, KS_LOG_DEBUG);
	ks_config_free(&cfg);
}

static void test_env(void **state)
{
	struct ks_config cfg;
	char *env[] = {"PATH=/bin",
		       "KTLS_SIDECAR_INBOUND=127.0.0.1:1=127.0.0.1:2 127.0.0.1:3=127.0.0.1:4",
		       "KTLS_SIDECAR_CERT=env.crt",
		       "KTLS_SIDECAR_KEY=env.key",
		       "KTLS_SIDECAR_CA=env.ca",
		       "KTLS_SIDECAR_WORKERS=2",
		       "KTLS_SIDECAR_ALLOW=spiffe://td/a spiffe://td/b",
		       "KTLS_SIDECAR_LOG_FORMAT=json",
		       "KTLS_SIDECAR_ACCESS_LOG=off",
		       NULL};
	char **argv = ARGV("--workers", "5", "--allow", "spiffe://td/c");

	(void)state;
	assert_int_equal(parse(&cfg, 0 + 1, ARGV("--io=uring"), env), 0);
	assert_int_equal(cfg.dp.nroutes, 2);
	assert_string_equal(cfg.tls.cert, "env.crt");
	assert_int_equal(cfg.dp.workers, 2);
	assert_int_equal(cfg.policy.nallow, 2);
	assert_int_equal(cfg.dp.io, KS_IO_URING);
	assert_int_equal(cfg.log_format, KS_LOG_JSON);
	assert_int_equal(cfg.access_log, 0);
	ks_config_free(&cfg);
	assert_int_equal(parse(&cfg, 4, ARGV("--log-format", "logfmt", "--access-log", "on"), env),
			 0);
	assert_int_equal(cfg.log_format, KS_LOG_LOGFMT);
	assert_int_equal(cfg.access_log, 1);
	ks_config_free(&cfg);

	/* flags win; a repeatable flag replaces the environment's list */
	assert_int_equal(parse(&cfg, 4, argv, env), 0);
	assert_int_equal(cfg.dp.workers, 5);
	assert_int_equal(cfg.policy.nallow, 1);
	assert_string_equal(cfg.policy.allow[0], "spiffe://td/c");
	assert_int_equal(cfg.dp.nroutes, 2);
	ks_config_free(&cfg);

	/* "auto" is the default by name: it undoes the environment's number */
	assert_int_equal(parse(&cfg, 2, ARGV("--workers", "AUTO"), env), 0);
	assert_int_equal(cfg.dp.workers, 0);
	ks_config_free(&cfg);
}

static void expect_error(char **argv, int argc, char **envp, const char *needle)
{
	struct ks_config cfg;

	err[0] = '\0';
	if (parse(&cfg, argc, argv, envp) != -EINVAL)
		fail_msg("accepted bad input (expected error containing '%s')", needle);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_errors(void **state)
{
	char *bad_env[] = {"KTLS_SIDECAR_WORKER=2", NULL};
	char *bad_env_val[] = {"KTLS_SIDECAR_IDLE_TIMEOUT=soon", NULL};

	(void)state;
	expect_error(ARGV(IDENT), 6, base_env, "no route");
	/* No files: fine with a control socket (the control plane pushes the
	 * identity), an error without one; the three files go together. */
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--control-socket", "none"), 4,
		     base_env, "no identity");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--cert", "c.pem"), 4, base_env,
		     "missing --key");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--spiffe-id", "spiffe://TD/x"),
		     4, base_env, "--spiffe-id");
	expect_error(ARGV("--inbound", "127.0.0.1:1", IDENT), 8, base_env, "LISTEN=UPSTREAM");
	expect_error(ARGV("--inbound", "127.0.0.1:99999=127.0.0.1:2", IDENT), 8, base_env, "port");
	expect_error(ARGV("--inbound", "127.0.0.1=127.0.0.1:2", IDENT), 8, base_env, "HOST:PORT");
	expect_error(ARGV("--inbound", "[::1=127.0.0.1:2", IDENT), 8, base_env, "IPv6");
	expect_error(ARGV("--outbound", "127.0.0.1:1=127.0.0.1:2,id=spiffe://TD/x", IDENT), 8,
		     base_env, "bad id");
	expect_error(ARGV("--outbound", "127.0.0.1:1=127.0.0.1:2,foo=bar", IDENT), 8, base_env,
		     "unknown");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--inbound",
			  "127.0.0.1:1=127.0.0.1:3", IDENT),
		     10, base_env, "two routes");
	expect_error(ARGV("--allow", "spiffe://td/a*", IDENT), 8, base_env, "--allow");
	expect_error(ARGV("--workers", "0", IDENT), 8, base_env, "--workers");
	expect_error(ARGV("--workers", "-1", IDENT), 8, base_env, "--workers");
	expect_error(ARGV("--workers", "3x", IDENT), 8, base_env, "--workers");
	expect_error(ARGV("--workers", "257", IDENT), 8, base_env,
		     "--workers '257': expected 1-256 or auto");
	expect_error(ARGV("--workers", "automatic", IDENT), 8, base_env, "--workers 'automatic'");
	expect_error(ARGV("--workers", "", IDENT), 8, base_env, "--workers");
	expect_error(ARGV("--handshake-timeout", "0", IDENT), 8, base_env, "duration");
	expect_error(ARGV("--idle-timeout", "5 parsecs", IDENT), 8, base_env, "duration");
	expect_error(ARGV("--max-connections", "0", IDENT), 8, base_env, "--max-connections");
	expect_error(ARGV("--io", "kqueue", IDENT), 8, base_env, "--io");
	expect_error(ARGV("--tls-min-version", "1.1", IDENT), 8, base_env, "1.2 or 1.3");
	expect_error(ARGV("--log-level", "loud", IDENT), 8, base_env, "--log-level");
	expect_error(ARGV("--log-format", "xml", IDENT), 8, base_env,
		     "--log-format 'xml': expected logfmt or json");
	expect_error(ARGV("--access-log", "yes", IDENT), 8, base_env,
		     "--access-log 'yes': expected on or off");
	expect_error(ARGV("--ktls", "maybe", IDENT), 8, base_env, "--ktls");
	expect_error(ARGV("--tls-ciphersuites", "TLS_AES_128_CCM_SHA256", IDENT), 8, base_env,
		     "is not one of");
	expect_error(ARGV("--bogus", IDENT), 7, base_env, "unknown option");
	expect_error(ARGV("--inbound"), 1, base_env, "needs an argument");
	expect_error(ARGV("stray", IDENT), 7, base_env, "unexpected argument");
	expect_error(ARGV(IDENT), 6, bad_env, "unknown environment variable KTLS_SIDECAR_WORKER");
	expect_error(ARGV(IDENT), 6, bad_env_val, "KTLS_SIDECAR_IDLE_TIMEOUT");
}

/*
 * One strict reading of numbers everywhere (common/parse.h): what strtod
 * would take is refused by name, and a repeatable variable that is set but
 * empty is an error, not "the default" (for --allow that would be the
 * whole trust domain).
 */
static void test_strict_values(void **state)
{
	char *empty_allow[] = {"KTLS_SIDECAR_ALLOW=", NULL};
	char *blank_allow[] = {"KTLS_SIDECAR_ALLOW=  \t ", NULL};
	char *empty_inbound[] = {"KTLS_SIDECAR_INBOUND=", NULL};

	(void)state;
	expect_error(ARGV("--idle-timeout", "nan", IDENT), 8, base_env, "--idle-timeout 'nan'");
	expect_error(ARGV("--idle-timeout", "inf", IDENT), 8, base_env, "--idle-timeout");
	expect_error(ARGV("--handshake-timeout", "0x10", IDENT), 8, base_env, "duration");
	expect_error(ARGV("--drain-timeout", " 5s", IDENT), 8, base_env, "duration");
	expect_error(ARGV("--drain-timeout", "1e3", IDENT), 8, base_env, "duration");
	expect_error(ARGV("--idle-timeout", "99999999999999999999h", IDENT), 8, base_env,
		     "duration");
	expect_error(ARGV("--workers", " 2", IDENT), 8, base_env, "--workers");
	expect_error(ARGV("--max-connections", "10000001", IDENT), 8, base_env,
		     "--max-connections");
	expect_error(ARGV("--control-max-frame", "1e6", IDENT), 8, base_env, "--control-max-frame");
	expect_error(ARGV("--control-allow-uid", "-1", IDENT), 8, base_env, "--control-allow-uid");
	expect_error(ARGV("--inbound", "127.0.0.1:0x50=127.0.0.1:2", IDENT), 8, base_env, "port");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", IDENT), 8, empty_allow,
		     "KTLS_SIDECAR_ALLOW: is set but empty");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", IDENT), 8, blank_allow,
		     "KTLS_SIDECAR_ALLOW: is set but empty");
	expect_error(ARGV(IDENT), 6, empty_inbound, "KTLS_SIDECAR_INBOUND: is set but empty");
}

/* Port 0: "any free port", resolved at start-up; two such routes do not collide. */
static void test_port_zero(void **state)
{
	struct ks_config cfg;

	(void)state;
	assert_int_equal(parse(&cfg, 9,
			       ARGV("--inbound", "127.0.0.1:0=127.0.0.1:8080", "--outbound",
				    "127.0.0.1:0=127.0.0.1:9443", IDENT),
			       base_env),
			 0);
	assert_int_equal(cfg.dp.nroutes, 2);
	assert_int_equal(ks_addr_port(&cfg.dp.routes[0].listen), 0);
	ks_config_free(&cfg);
}

static void test_durations(void **state)
{
	uint32_t ms;

	(void)state;
	assert_int_equal(ks_parse_duration_ms("10", &ms), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(ks_parse_duration_ms("1.5s", &ms), 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(ks_parse_duration_ms("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(ks_parse_duration_ms("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(ks_parse_duration_ms("0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(ks_parse_duration_ms("", &ms), -EINVAL);
	assert_int_equal(ks_parse_duration_ms("-1s", &ms), -EINVAL);
	assert_int_equal(ks_parse_duration_ms("1d", &ms), -EINVAL);
	assert_int_equal(ks_parse_duration_ms("9999999h", &ms), -ERANGE);
}

/* --drain-delay counts inside --drain-timeout: the default shrinks to fit,
 * one given (flag or environment) that does not fit is refused. */
static void test_drain_delay(void **state)
{
	struct ks_config cfg;
	char *env_long[] = {"KTLS_SIDECAR_DRAIN_DELAY=10s", NULL};
	char *env_ok[] = {"KTLS_SIDECAR_DRAIN_DELAY=0", "KTLS_SIDECAR_DRAIN_QUIET=250ms", NULL};

	(void)state;
	assert_int_equal(
	    parse(&cfg, 0,
		  ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-timeout", "2s", IDENT),
		  base_env),
	    0);
	assert_int_equal(cfg.dp.drain_timeout_ms, 2000);
	assert_int_equal(cfg.dp.drain_delay_ms, 2000);
	ks_config_free(&cfg);
	assert_int_equal(
	    parse(&cfg, 0,
		  ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-timeout", "0", IDENT),
		  base_env),
	    0);
	assert_int_equal(cfg.dp.drain_delay_ms, 0);
	ks_config_free(&cfg);
	/* Equal is allowed: inbound then accepts until the deadline. */
	assert_int_equal(parse(&cfg, 0,
			       ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-timeout", "3s",
				    "--drain-delay", "3s", IDENT),
			       base_env),
			 0);
	assert_int_equal(cfg.dp.drain_delay_ms, 3000);
	ks_config_free(&cfg);
	assert_int_equal(
	    parse(&cfg, 0,
		  ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-delay", "15s", IDENT),
		  env_ok),
	    0);
	assert_int_equal(cfg.dp.drain_delay_ms, 15000); /* the flag wins over the environment */
	assert_int_equal(cfg.dp.drain_timeout_ms, 20000);
	ks_config_free(&cfg);
	assert_int_equal(
	    parse(&cfg, 0, ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", IDENT), env_ok), 0);
	assert_int_equal(cfg.dp.drain_delay_ms, 0);
	assert_int_equal(cfg.dp.drain_quiet_ms, 250);
	ks_config_free(&cfg);

	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-timeout", "5s",
			  "--drain-delay", "10s", IDENT),
		     0, base_env,
		     "--drain-delay (10000 ms) is longer than --drain-timeout (5000 ms): the delay "
		     "counts inside the timeout");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-timeout", "5s", IDENT),
		     0, env_long,
		     "--drain-delay (10000 ms) is longer than --drain-timeout (5000 ms)");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-delay", "21s", IDENT), 0,
		     base_env, "is longer than --drain-timeout (20000 ms)");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-delay", "soon", IDENT),
		     0, base_env, "--drain-delay 'soon': expected a duration");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--drain-quiet", "-1s", IDENT), 0,
		     base_env, "--drain-quiet '-1s': expected a duration");
}

/* Federation and transparent destinations: parsed, checked, overridable. */
static void test_trust_flags(void **state)
{
	struct ks_config cfg;
	char *env[] = {"KTLS_SIDECAR_FEDERATED_CA=a.org=a.pem b.org=b.pem",
		       "KTLS_SIDECAR_DESTINATION_ID=10.0.0.0/8=spiffe://td/x", NULL};

	(void)state;
	assert_int_equal(
	    parse(&cfg, 0,
		  ARGV("--outbound-transparent", "127.0.0.1:15001", IDENT, "--federated-ca",
		       "spiffe://other.org=o.pem", "--destination-id",
		       "10.1.2.3:5432=spiffe://td/db", "--destination-id",
		       "[fd00::/8]:443=spiffe://td/*", "--unknown-destination", "refuse"),
		  base_env),
	    0);
	assert_int_equal(cfg.tls.nfed, 1);
	assert_string_equal(cfg.tls.fed[0].td, "other.org");
	assert_string_equal(cfg.tls.fed[0].path, "o.pem");
	assert_int_equal(cfg.policy.ndest, 2);
	assert_int_equal(cfg.policy.dest[0].port, 5432);
	assert_string_equal(cfg.policy.dest[1].server_id, "spiffe://td/*");
	assert_int_equal(cfg.policy.unknown_dest, KS_UNKNOWN_DEST_REFUSE);
	ks_config_free(&cfg);
	/* the environment's lists, replaced by a flag without touching --allow */
	assert_int_equal(parse(&cfg, 0,
			       ARGV("--outbound-transparent", "127.0.0.1:15001", IDENT, "--allow",
				    "spiffe://td/a"),
			       env),
			 0);
	assert_int_equal(cfg.tls.nfed, 2);
	assert_int_equal(cfg.policy.ndest, 1);
	assert_int_equal(cfg.policy.unknown_dest, KS_UNKNOWN_DEST_TRUST_DOMAIN);
	ks_config_free(&cfg);
	assert_int_equal(parse(&cfg, 0,
			       ARGV("--outbound-transparent", "127.0.0.1:15001", IDENT,
				    "--destination-id", "10.9.9.9=spiffe://td/y"),
			       env),
			 0);
	assert_int_equal(cfg.policy.ndest, 1);
	assert_string_equal(cfg.policy.dest[0].server_id, "spiffe://td/y");
	ks_config_free(&cfg);

	char *t = "--outbound-transparent", *l = "127.0.0.1:15001";
	expect_error(ARGV(t, l, IDENT, "--federated-ca", "other.org"), 0, base_env,
		     "expected TRUST_DOMAIN=FILE");
	expect_error(ARGV(t, l, IDENT, "--federated-ca", "Other.org=x.pem"), 0, base_env,
		     "uppercase");
	expect_error(ARGV(t, l, IDENT, "--federated-ca", "a.org=x", "--federated-ca", "a.org=y"), 0,
		     base_env, "given twice");
	expect_error(ARGV(t, l, IDENT, "--destination-id", "10.0.0.0/8"), 0, base_env,
		     "expected DEST=PATTERN");
	expect_error(ARGV(t, l, IDENT, "--destination-id", "db:5432=spiffe://td/x"), 0, base_env,
		     "not an IPv4 or IPv6");
	expect_error(ARGV(t, l, IDENT, "--destination-id", "10.0.0.0/8=spiffe://TD/x"), 0, base_env,
		     "--destination-id");
	expect_error(ARGV(t, l, IDENT, "--unknown-destination", "deny"), 0, base_env,
		     "trust-domain or refuse");
}

/*
 * An outbound REMOTE that is a name is kept for lookups per connection
 * (dataplane/resolver.h), never resolved here, so one that does not resolve
 * yet is no error; an IP literal takes the path it always did. The local
 * app (inbound) is still resolved at start-up.
 */
static void test_outbound_names(void **state)
{
	struct ks_config cfg;
	char **argv = ARGV("--outbound", "127.0.0.1:0=web.ns.svc.cluster.local:8443", "--outbound",
			   "127.0.0.1:0=ks-nowhere.invalid:1,id=spiffe://td/x", "--outbound",
			   "127.0.0.1:0=10.0.0.1:443", "--dns-refresh", "2s", IDENT);

	(void)state;
	assert_int_equal(parse(&cfg, 13, argv, base_env), 0);
	assert_int_equal(cfg.dp.nroutes, 3);
	assert_string_equal(cfg.dp.routes[0].host, "web.ns.svc.cluster.local");
	assert_int_equal(cfg.dp.routes[0].port, 8443);
	assert_string_equal(cfg.dp.routes[0].target_str, "web.ns.svc.cluster.local:8443");
	assert_string_equal(cfg.dp.routes[1].host, "ks-nowhere.invalid");
	assert_string_equal(cfg.dp.routes[1].expect_id, "spiffe://td/x");
	assert_string_equal(cfg.dp.routes[2].host, "");
	assert_string_equal(cfg.dp.routes[2].target_str, "10.0.0.1:443");
	assert_int_equal(cfg.dp.dns_refresh_ms, 2000);
	ks_config_free(&cfg);

	argv = ARGV("--outbound", "127.0.0.1:0=10.0.0.1:443", IDENT);
	assert_int_equal(parse(&cfg, 8, argv, base_env), 0);
	assert_int_equal(cfg.dp.dns_refresh_ms, 30000);
	ks_config_free(&cfg);

	expect_error(ARGV("--outbound", "127.0.0.1:0=not a name:80", IDENT), 8, base_env,
		     "neither an IP address nor a host name");
	expect_error(ARGV("--outbound", "127.0.0.1:0=10.0.0.1:443", "--dns-refresh", "0", IDENT),
		     10, base_env, "--dns-refresh '0'");
	expect_error(ARGV("--inbound", "127.0.0.1:0=ks-nowhere.invalid:80", IDENT), 8, base_env,
		     "cannot resolve");
}

static void test_help(void **state)
{
	struct ks_config cfg;
	FILE *saved = stdout;
	char buf[16384];
	FILE *mem = fmemopen(buf, sizeof(buf), "w");

	(void)state;
	assert_non_null(mem);
	stdout = mem;
	assert_int_equal(parse(&cfg, 1, ARGV("--help"), base_env), 1);
	stdout = saved;
	fclose(mem);
	/* every flag is documented with its environment variable */
	static const char *const flags[] = {"--inbound",
					    "--outbound ",
					    "--outbound-transparent",
					    "--cert",
					    "--key",
					    "--ca",
					    "--allow",
					    "--workers",
					    "--handshake-timeout",
					    "--idle-timeout",
					    "--drain-timeout",
					    "--drain-delay",
					    "KTLS_SIDECAR_DRAIN_DELAY",
					    "--drain-quiet",
					    "KTLS_SIDECAR_DRAIN_QUIET",
					    "--max-connections",
					    "--io",
					    "--tls-min-version",
					    "--log-level",
					    "KTLS_SIDECAR_OUTBOUND_TRANSPARENT",
					    "KTLS_SIDECAR_MAX_CONNECTIONS",
					    "SIGHUP"};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (!strstr(buf, flags[i]))
			fail_msg("--help does not mention %s", flags[i]);
}

/* --identity-dir: the layout's names in DIR; exclusive with --cert/--key/--ca. */
static void test_identity_dir(void **state)
{
	struct ks_config cfg;
	char *env[] = {"KTLS_SIDECAR_IDENTITY_DIR=/run/svid",
		       "KTLS_SIDECAR_IDENTITY_LAYOUT=spiffe-helper",
		       "KTLS_SIDECAR_IDENTITY_WATCH=off", NULL};

	(void)state;
	assert_int_equal(parse(&cfg, 0,
			       ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--identity-dir",
				    "/var/run/identity/"),
			       base_env),
			 0);
	assert_string_equal(cfg.tls.cert, "/var/run/identity/tls.crt");
	assert_string_equal(cfg.tls.key, "/var/run/identity/tls.key");
	assert_string_equal(cfg.tls.ca, "/var/run/identity/ca.crt");
	assert_int_equal(cfg.identity_watch, 1);
	ks_config_free(&cfg);

	assert_int_equal(parse(&cfg, 0, ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2"), env), 0);
	assert_string_equal(cfg.tls.cert, "/run/svid/svid.pem");
	assert_string_equal(cfg.tls.key, "/run/svid/svid_key.pem");
	assert_string_equal(cfg.tls.ca, "/run/svid/svid_bundle.pem");
	assert_int_equal(cfg.identity_watch, 0);
	ks_config_free(&cfg);

	assert_int_equal(parse(&cfg, 0,
			       ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--identity-dir", "d",
				    "--identity-layout", "files"),
			       base_env),
			 0);
	assert_string_equal(cfg.tls.cert, "d/cert.pem");
	assert_string_equal(cfg.tls.key, "d/key.pem");
	assert_string_equal(cfg.tls.ca, "d/ca.pem");
	ks_config_free(&cfg);

	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--identity-dir", "d", IDENT), 10,
		     base_env, "--identity-dir and --cert both say where the identity is");
	expect_error(
	    ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--identity-dir", "d", "--ca", "x"), 6,
	    base_env, "not both");
	expect_error(
	    ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", IDENT, "--identity-layout", "files"), 10,
	    base_env, "--identity-layout needs --identity-dir");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--identity-dir", "d",
			  "--identity-layout", "secret"),
		     6, base_env, "csi-driver-spiffe, spiffe-helper or files");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", IDENT, "--identity-watch", "yes"),
		     10, base_env, "on or off");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--identity-dir", ""), 4,
		     base_env, "expected a directory");
}

/* --workload-api, and SPIFFE_ENDPOINT_SOCKET when nothing else gives the identity. */
static void test_workload_api(void **state)
{
	struct ks_config cfg;
	char *env_uri[] = {"SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent.sock", NULL};
	char *env_bare[] = {"SPIFFE_ENDPOINT_SOCKET=/run/spire/agent.sock", NULL};
	char *env_tcp[] = {"SPIFFE_ENDPOINT_SOCKET=tcp://127.0.0.1:8081", NULL};
	char *env_flag[] = {"KTLS_SIDECAR_WORKLOAD_API=unix:/run/x.sock", NULL};

	(void)state;
	/* Without any other identity source, and without a control socket. */
	assert_int_equal(parse(&cfg, 0,
			       ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--control-socket",
				    "none", "--workload-api", "unix:///run/a.sock"),
			       base_env),
			 0);
	assert_string_equal(cfg.workload_api_path, "/run/a.sock");
	assert_false(cfg.workload_api_env);
	ks_config_free(&cfg);
	assert_int_equal(
	    parse(&cfg, 0,
		  ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--workload-api", "/run/b.sock"),
		  base_env),
	    0);
	assert_string_equal(cfg.workload_api_path, "/run/b.sock");
	ks_config_free(&cfg);
	assert_int_equal(parse(&cfg, 0, ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2"), env_flag), 0);
	assert_string_equal(cfg.workload_api_path, "/run/x.sock");
	ks_config_free(&cfg);

	/* SPIFFE_ENDPOINT_SOCKET: used when nothing else gives the identity... */
	assert_int_equal(parse(&cfg, 0, ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2"), env_uri), 0);
	assert_string_equal(cfg.workload_api_path, "/run/spire/agent.sock");
	assert_true(cfg.workload_api_env);
	ks_config_free(&cfg);
	/* ...the flag wins over it... */
	assert_int_equal(parse(&cfg, 0,
			       ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--workload-api",
				    "unix:/run/flag.sock"),
			       env_uri),
			 0);
	assert_string_equal(cfg.workload_api_path, "/run/flag.sock");
	assert_false(cfg.workload_api_env);
	ks_config_free(&cfg);
	/* ...and it does not switch a file-configured sidecar over. */
	assert_int_equal(
	    parse(&cfg, 0, ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", IDENT), env_uri), 0);
	assert_null(cfg.workload_api);
	ks_config_free(&cfg);
	assert_int_equal(parse(&cfg, 0,
			       ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--identity-dir", "d"),
			       env_tcp),
			 0);
	assert_null(cfg.workload_api);
	ks_config_free(&cfg);

	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2"), 0, env_bare,
		     "SPIFFE_ENDPOINT_SOCKET '/run/spire/agent.sock': expected unix:");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2"), 0, env_tcp,
		     "only a unix: Workload API endpoint");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--workload-api", "rel.sock"), 0,
		     base_env, "--workload-api 'rel.sock'");
	expect_error(
	    ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--workload-api", "/a.sock", IDENT), 0,
	    base_env, "--workload-api and --cert both give the identity");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--workload-api", "/a.sock",
			  "--identity-dir", "d"),
		     0, base_env, "--workload-api and --identity-dir both give the identity");
	expect_error(ARGV("--inbound", "127.0.0.1:1=127.0.0.1:2", "--workload-api", "/a.sock",
			  "--federated-ca", "other.org=o.pem"),
		     0, base_env, "--workload-api and --federated-ca both give the identity");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal_and_defaults),
	    cmocka_unit_test(test_all_flags),
	    cmocka_unit_test(test_env),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_strict_values),
	    cmocka_unit_test(test_port_zero),
	    cmocka_unit_test(test_durations),
	    cmocka_unit_test(test_drain_delay),
	    cmocka_unit_test(test_help),
	    cmocka_unit_test(test_outbound_names),
	    cmocka_unit_test(test_trust_flags),
	    cmocka_unit_test(test_identity_dir),
	    cmocka_unit_test(test_workload_api),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
