/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP request reader (common/http.h) of the admin endpoint and the
 * webhook: what it takes, what
 * it refuses and with which status, and that a request split at every byte
 * reads the same as one in a single piece.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/http.h"

/* The admin endpoint's bound. */
#define BODY 1024

static int parse(const char *s, struct ks_http_req *req)
{
	return ks_http_parse(s, strlen(s), BODY, req);
}

static void test_good(void **state)
{
	struct ks_http_req r;

	(void)state;
	assert_int_equal(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r), 1);
	assert_int_equal(r.method, KS_HTTP_GET);
	assert_string_equal(r.path, "/metrics");
	assert_int_equal(r.minor, 1);
	assert_int_equal(r.head_len, strlen("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));

	/* The query is not part of the path; HTTP/1.0 and bare LF are fine. */
	assert_int_equal(parse("HEAD /ready?verbose=1 HTTP/1.0\n\n", &r), 1);
	assert_int_equal(r.method, KS_HTTP_HEAD);
	assert_string_equal(r.path, "/ready");
	assert_int_equal(r.minor, 0);

	assert_int_equal(parse("POST /quitquitquit HTTP/1.1\r\nContent-Length:  12 \r\n"
			       "content-length: 12\r\n\r\n",
			       &r),
			 1);
	assert_int_equal(r.method, KS_HTTP_POST);
	assert_int_equal(r.content_length, 12);

	assert_int_equal(parse("DELETE /x HTTP/1.1\r\n\r\n", &r), 1);
	assert_int_equal(r.method, KS_HTTP_OTHER);
}

static void test_incomplete(void **state)
{
	static const char req[] = "GET /live HTTP/1.1\r\nUser-Agent: kube-probe/1.30\r\n\r\n";
	struct ks_http_req r;

	(void)state;
	/* Every prefix needs more; the whole is complete. */
	for (size_t n = 0; n < sizeof(req) - 1; n++)
		if (ks_http_parse(req, n, BODY, &r) != 0)
			fail_msg("a prefix of %zu bytes was not 'need more'", n);
	assert_int_equal(ks_http_parse(req, sizeof(req) - 1, BODY, &r), 1);
	assert_string_equal(r.path, "/live");
}

static void test_refused(void **state)
{
	static const struct {
		const char *in;
		int status;
	} bad[] = {
	    {"garbage\r\n\r\n", -400},
	    {"GET\r\n\r\n", -400},
	    {"GET  /x HTTP/1.1\r\n\r\n", -400},
	    {"GET x HTTP/1.1\r\n\r\n", -400},		  /* not origin-form */
	    {"GET http://a/x HTTP/1.1\r\n\r\n", -400},	  /* absolute-form */
	    {"GET * HTTP/1.1\r\n\r\n", -400},		  /* asterisk-form */
	    {"GET /x HTTP/1.1 \r\n\r\n", -400},		  /* trailing space */
	    {"GET /\x01 HTTP/1.1\r\n\r\n", -400},	  /* control in the target */
	    {"GET /x HTTP/1.1\rX: y\r\n\r\n", -400},	  /* bare CR */
	    {"GET /x HTTP/1.1\r\nX : y\r\n\r\n", -400},	  /* space before the colon */
	    {"GET /x HTTP/1.1\r\n folded\r\n\r\n", -400}, /* obs-fold */
	    {"GET /x HTTP/1.1\r\nX y\r\n\r\n", -400},	  /* no colon */
	    {"GET /x HTTP/1.1\r\nX: a\x7f\r\n\r\n", -400},
	    {"GET /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", -400},
	    {"GET /x HTTP/1.1\r\nContent-Length:\r\n\r\n", -400},
	    {"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -400},
	    {"GET /x HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", -413},
	    {"GET /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", -413},
	    {"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", -501},
	    {"GET /x HTTP/2.0\r\n\r\n", -505},
	    {"GET /x HTTP/1.2\r\n\r\n", -505},
	    {"GET /x FTP/1.1\r\n\r\n", -400},
	    {"VERYLONGMETHODNAMEX /x HTTP/1.1\r\n\r\n", -400},
	};
	struct ks_http_req r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i].in, &r);

		if (rc != bad[i].status)
			fail_msg("case %zu: got %d, want %d", i, rc, bad[i].status);
	}
	/* A NUL inside the head. */
	assert_int_equal(ks_http_parse("GET /x\0 HTTP/1.1\r\n\r\n", 20, BODY, &r), -400);
}

static void test_sizes(void **state)
{
	char *big = malloc(KS_HTTP_MAX_HEAD + 512);
	struct ks_http_req r;
	int n;

	(void)state;
	assert_non_null(big);
	/* A path of 255 bytes fits, 256 does not. */
	n = snprintf(big, 512, "GET /%0254d HTTP/1.1\r\n\r\n", 0);
	assert_int_equal(ks_http_parse(big, (size_t)n, BODY, &r), 1);
	n = snprintf(big, 512, "GET /%0255d HTTP/1.1\r\n\r\n", 0);
	assert_int_equal(ks_http_parse(big, (size_t)n, BODY, &r), -414);

	/* A head that never ends within the bound: 431, not "need more". */
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memset(big + 19, 'a', KS_HTTP_MAX_HEAD + 100);
	assert_int_equal(ks_http_parse(big, KS_HTTP_MAX_HEAD + 119, BODY, &r), -431);
	/* Nor a request line that never ends. */
	memset(big, 'A', KS_HTTP_MAX_HEAD);
	assert_int_equal(ks_http_parse(big, KS_HTTP_MAX_HEAD, BODY, &r), -431);
	free(big);

	/* More headers than KS_HTTP_MAX_HEADERS. */
	big = malloc(KS_HTTP_MAX_HEAD);
	assert_non_null(big);
	n = snprintf(big, KS_HTTP_MAX_HEAD, "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= KS_HTTP_MAX_HEADERS; i++)
		n += snprintf(big + n, (size_t)(KS_HTTP_MAX_HEAD - n), "X%d: y\r\n", i);
	n += snprintf(big + n, (size_t)(KS_HTTP_MAX_HEAD - n), "\r\n");
	assert_int_equal(ks_http_parse(big, (size_t)n, BODY, &r), -431);
	free(big);
}

/* The body bound is the caller's: the webhook takes megabytes, the admin
 * endpoint a kilobyte, with the same reader. */
static void test_body_bound(void **state)
{
	static const char at[] = "POST /inject HTTP/1.1\r\nContent-Length: 4194304\r\n\r\n";
	static const char over[] = "POST /inject HTTP/1.1\r\nContent-Length: 4194305\r\n\r\n";
	struct ks_http_req r;

	(void)state;
	assert_int_equal(ks_http_parse(at, strlen(at), 4u << 20, &r), 1);
	assert_int_equal(r.content_length, 4u << 20);
	assert_int_equal(ks_http_parse(over, strlen(over), 4u << 20, &r), -413);
	assert_int_equal(ks_http_parse(at, strlen(at), BODY, &r), -413);
	/* A bound past KS_HTTP_BODY_LIMIT is that limit. */
	assert_int_equal(ks_http_parse("GET / HTTP/1.1\r\nContent-Length: 1073741825\r\n\r\n", 46,
				       UINT64_MAX, &r),
			 -413);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),       cmocka_unit_test(test_incomplete),
	    cmocka_unit_test(test_refused),    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_body_bound),
	};

	return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
