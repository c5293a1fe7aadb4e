/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Long values in log lines (common/log.h): a value up to KS_LOG_FIELD_MAX
 * bytes passes whole (cleaned); a longer one is cut to exactly that size
 * and ends with a marker giving its length, so the fields after it fit.
 *
 * --log-format json (ks_log_json): our logfmt lines become one JSON object
 * each, with the values ks_log_field leaves (hostile peer text: quotes,
 * backslashes, newlines, '=', control and non-UTF-8 bytes) intact or
 * escaped; numbers only where a value is a plain integer. Every output,
 * including for random bytes and for buffers too small, is checked by a
 * strict RFC 8259 validator here, and ks_log's own output through a pipe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"

static void test_field(void **state)
{
	struct ks_log_field f;
	char v[2100];

	(void)state;
	assert_string_equal(ks_log_field(&f, "spiffe://example.org/ns/a/sa/b"),
			    "spiffe://example.org/ns/a/sa/b");
	assert_string_equal(ks_log_field(&f, "a \"quoted\"\nline"), "a _quoted__line");
	assert_string_equal(ks_log_field(&f, NULL), "");

	memset(v, 'x', KS_LOG_FIELD_MAX);
	v[KS_LOG_FIELD_MAX] = '\0';
	assert_int_equal(strlen(ks_log_field(&f, v)), KS_LOG_FIELD_MAX); /* whole */
	assert_null(strstr(f.s, "truncated"));

	memset(v, 'x', 2029);
	v[2029] = '\0';
	v[10] = '"'; /* still cleaned */
	ks_log_field(&f, v);
	assert_int_equal(strlen(f.s), KS_LOG_FIELD_MAX);
	assert_int_equal(f.s[10], '_');
	assert_non_null(strstr(f.s, "xxx...[truncated:2029_bytes]"));
	assert_string_equal(f.s + KS_LOG_FIELD_MAX - strlen("...[truncated:2029_bytes]"),
			    "...[truncated:2029_bytes]");

	v[KS_LOG_FIELD_MAX + 1] = '\0'; /* one byte over */
	ks_log_field(&f, v);
	assert_int_equal(strlen(f.s), KS_LOG_FIELD_MAX);
	assert_non_null(strstr(f.s, "[truncated:257_bytes]"));
}

/* ---- a strict validator for what ks_log_json may produce: one object of
 * "string": string|integer members, then '\n' and nothing else. */
static bool v_utf8(const unsigned char **p, const unsigned char *end)
{
	const unsigned char *s = *p;
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;

	if (c < 0xc2 || c > 0xf4)
		return false;
	if (c == 0xe0)
		lo = 0xa0;
	if (c == 0xed)
		hi = 0x9f;
	if (c == 0xf0)
		lo = 0x90;
	if (c == 0xf4)
		hi = 0x8f;
	if (end - s < n || s[1] < lo || s[1] > hi)
		return false;
	for (int i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return false;
	*p = s + n;
	return true;
}

static bool v_string(const unsigned char **p, const unsigned char *end)
{
	const unsigned char *s = *p;

	if (s >= end || *s++ != '"')
		return false;
	while (s < end && *s != '"') {
		if (*s < 0x20)
			return false;
		if (*s == '\\') {
			s++;
			if (s >= end)
				return false;
			if (*s == 'u') {
				for (int i = 1; i <= 4; i++)
					if (s + i >= end ||
					    !strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
						return false;
				s += 5;
			} else if (strchr("\"\\/bfnrt", *s) && *s) {
				s++;
			} else {
				return false;
			}
		} else if (*s >= 0x80) {
			if (!v_utf8(&s, end))
				return false;
		} else {
			s++;
		}
	}
	if (s >= end)
		return false;
	*p = s + 1;
	return true;
}

static bool json_valid(const char *buf, size_t n)
{
	const unsigned char *p = (const unsigned char *)buf, *end = p + n;

	if (n < 3 || *p++ != '{' || buf[n - 1] != '\n' || buf[n - 2] != '}')
		return false;
	end -= 2; /* "}\n" */
	while (p < end) {
		if (!v_string(&p, end) || p >= end || *p++ != ':')
			return false;
		if (p < end && *p == '"') {
			if (!v_string(&p, end))
				return false;
		} else {
			const unsigned char *d = p;

			while (p < end && *p >= '0' && *p <= '9')
				p++;
			if (p == d || (*d == '0' && p - d > 1))
				return false;
		}
		if (p < end && *p++ != ',')
			return false;
		if (p == end && p[-1] == ',')
			return false;
	}
	return p == end;
}

/* A literal's JSON, without its terminating NUL. */
#define VALID(lit) json_valid(lit, sizeof(lit) - 1)

static const char *conv(char *out, size_t cap, const char *in, bool truncated)
{
	size_t n = ks_log_json(out, cap, in, strlen(in), truncated);

	assert_true(n > 0 && n < cap);
	assert_true(json_valid(out, n));
	out[n] = '\0';
	return out;
}

static void test_json_fields(void **state)
{
	char out[4096], line[1024];
	struct ks_log_field f;

	(void)state;
	/* The validator refuses what it must (it is what checks the rest). */
	assert_false(VALID("{\"a\":\"\x01\"}\n"));
	assert_false(VALID("{\"a\":\"\xff\"}\n"));
	assert_false(VALID("{\"a\":\"\\x\"}\n"));
	assert_false(VALID("{\"a\":01}\n"));
	assert_false(VALID("{\"a\":1,}\n"));
	assert_false(VALID("{\"a\":\"b}\n"));
	assert_false(VALID("{\"a\":1}"));
	assert_true(VALID("{\"a\":1,\"b\":\"\\u00ff\"}\n"));
	assert_string_equal(
	    conv(out, sizeof(out),
		 "ts=2026-11-30T23:00:00.123Z level=info event=conn_close conn=12 dir=inbound "
		 "peer=1.2.3.4:5 reason=done detail=\"\" bytes_to_peer=6 bytes_from_peer=0 "
		 "duration_ms=1000000000000000",
		 false),
	    "{\"ts\":\"2026-11-30T23:00:00.123Z\",\"level\":\"info\",\"event\":\"conn_close\","
	    "\"conn\":12,\"dir\":\"inbound\",\"peer\":\"1.2.3.4:5\",\"reason\":\"done\","
	    "\"detail\":\"\",\"bytes_to_peer\":6,\"bytes_from_peer\":0,"
	    "\"duration_ms\":\"1000000000000000\"}\n");
	/* Numbers: plain integers of up to 15 digits, never a serial. */
	assert_string_equal(conv(out, sizeof(out),
				 "a=007 b=-1 c=12a d= e=\"42\" serial=1234 kept_serial=01 "
				 "f=999999999999999",
				 false),
			    "{\"a\":\"007\",\"b\":\"-1\",\"c\":\"12a\",\"d\":\"\",\"e\":\"42\","
			    "\"serial\":\"1234\",\"kept_serial\":\"01\",\"f\":999999999999999}\n");

	/* A hostile peer's text, as a caller logs it: cleaned by
	 * ks_log_field, so the value comes through whole, '=' and all. */
	snprintf(line, sizeof(line), "event=handshake_rejected peer_id=%s detail=\"%s\" reason=x",
		 "spiffe://x/a=b", ks_log_field(&f, "a \"q\" b\\c\nd=e level=error \x01\x7f"));
	assert_string_equal(conv(out, sizeof(out), line, false),
			    "{\"event\":\"handshake_rejected\",\"peer_id\":\"spiffe://x/a=b\","
			    "\"detail\":\"a _q_ b_c_d=e level=error __\",\"reason\":\"x\"}\n");
	/* Valid UTF-8 passes; any other byte is \u00XX (overlong, surrogate,
	 * cut sequence, stray continuation, beyond U+10FFFF). */
	assert_string_equal(
	    conv(out, sizeof(out),
		 "v=\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91 \xff \xc0\xaf \xed\xa0\x80 "
		 "\xe2\x82 \x80 \xf4\x90\x80\x80\"",
		 false),
	    "{\"v\":\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91 \\u00ff \\u00c0\\u00af "
	    "\\u00ed\\u00a0\\u0080 \\u00e2\\u0082 \\u0080 "
	    "\\u00f4\\u0090\\u0080\\u0080\"}\n");
	/* What ks_log_field cannot prevent (a caller's bug) still parses:
	 * raw quotes, backslashes, control bytes in a value; a quote that
	 * ends nothing; text that is no field; an unterminated value. */
	assert_string_equal(conv(out, sizeof(out), "a=\"x\" y\" b=c\\\"\t\x1b d=\"open", false),
			    "{\"a\":\"x\\\" y\",\"b\":\"c\\\\\\\"\\t\\u001b\",\"d\":\"open\"}\n");
	assert_string_equal(conv(out, sizeof(out), "no fields here b=1", false),
			    "{\"msg\":\"no fields here b=1\"}\n");
	assert_string_equal(conv(out, sizeof(out), "", false), "{}\n");
	assert_string_equal(conv(out, sizeof(out), "x=1  y=2 ", true),
			    "{\"x\":\"1 \",\"y\":\"2 \",\"line_truncated\":1}\n");
	assert_string_equal(conv(out, sizeof(out), "", true), "{\"line_truncated\":1}\n");
}

/* Too small a buffer: the members that fit, marked, and still valid. */
static void test_json_small(void **state)
{
	char out[200];
	const char *in =
	    "event=conn_close conn=1 detail=\"\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01"
	    "\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\" "
	    "after=1";

	(void)state;
	assert_int_equal(ks_log_json(out, 63, in, strlen(in), false), 0);
	assert_string_equal(conv(out, 64, in, false),
			    "{\"event\":\"conn_close\",\"conn\":1,\"line_truncated\":1}\n");
	for (size_t cap = 64; cap < sizeof(out); cap++) {
		size_t n = ks_log_json(out, cap, in, strlen(in), false);

		assert_true(n > 0 && n <= cap);
		assert_true(json_valid(out, n));
	}
}

/* Random bytes, and random mixes of logfmt's own characters: always one
 * valid object. */
static void test_json_random(void **state)
{
	static const char alpha[] = "ab=\" \\\n\x01\x7f\x80\xc3\xa9\xff"
				    "0123";
	char in[600], out[600 * 6 + 64];
	unsigned seed = 14;

	(void)state;
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rand_r(&seed) % (int)sizeof(in)), n;

		for (size_t i = 0; i < len; i++)
			in[i] = iter & 1 ? (char)rand_r(&seed)
					 : alpha[rand_r(&seed) % (int)(sizeof(alpha) - 1)];
		n = ks_log_json(out, sizeof(out), in, len, iter % 3 == 0);
		if (!json_valid(out, n)) {
			fprintf(stderr, "invalid JSON for input %d: %.*s\n", iter, (int)n, out);
			fail();
		}
	}
}

/* ks_log in JSON mode: one object per write, a hostile value and a cut
 * line included; logfmt again after. */
static void test_json_ks_log(void **state)
{
	char buf[16384], big[3000];
	struct ks_log_field f;
	int fds[2], saved;
	ssize_t n;
	char *nl;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(pipe(fds), 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
	ks_log_set_format(KS_LOG_JSON);
	ks_warn("event=hostile detail=\"%s\" n=3", ks_log_field(&f, "\"};\n{\"x\":1 \\ a=b"));
	ks_info("event=big a=%s b=1", big); /* over 2 KiB, cut inside a value */
	ks_log_set_format(KS_LOG_LOGFMT);
	ks_info("event=plain k=v");
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	assert_true(n > 0);
	buf[n] = '\0';

	nl = strchr(buf, '\n');
	assert_non_null(nl);
	assert_true(json_valid(buf, (size_t)(nl - buf + 1)));
	assert_non_null(strstr(buf,
			       "\"level\":\"warn\",\"event\":\"hostile\",\"detail\":\"_};_{_x_:1 _ "
			       "a=b\",\"n\":3}\n"));
	assert_true(strncmp(buf, "{\"ts\":\"", 7) == 0);
	buf[n] = '\0';
	{
		char *l2 = nl + 1, *nl2 = strchr(l2, '\n');

		assert_non_null(nl2);
		assert_true(json_valid(l2, (size_t)(nl2 - l2 + 1)));
		assert_non_null(strstr(l2, "\"event\":\"big\",\"a\":\"xxx"));
		assert_non_null(strstr(l2, "xxx\",\"line_truncated\":1}\n"));
		assert_null(strstr(l2, "\"b\":"));
		assert_true(strncmp(nl2 + 1, "ts=", 3) == 0);
		assert_non_null(strstr(nl2 + 1, " level=info event=plain k=v\n"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_field),	cmocka_unit_test(test_json_fields),
	    cmocka_unit_test(test_json_small),	cmocka_unit_test(test_json_random),
	    cmocka_unit_test(test_json_ks_log),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
