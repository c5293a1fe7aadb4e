/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktlsctl's ticket key file and gen-ticket-key (ctl/ticketkeys.c): a file
 * decodes to the bytes it says, comments, blank lines, CRLF and upper case
 * included; a key of the wrong length passes through for the sidecar to
 * refuse; what is not hex, an odd digit count and a file without keys are
 * refused with the line (and column), never the line's contents; a
 * generated line is 96 fresh hex digits that decode to one key.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctl/ticketkeys.h"

#define NAME_A	 "00112233445566778899aabbccddeeff"
#define SECRET_A "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"

static void test_parse(void **state)
{
	static const char text[] =
	    "# replicas of web, rotated 2026-12-01\n"
	    "\n" NAME_A SECRET_A "\n"
	    "  \t" /* upper case, CRLF, blanks around */
	    "FFEEDDCCBBAA99887766554433221100"
	    "A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0 \r\n"
	    "   # an indented comment\n";
	struct ktlsctl_ticket_keys tk;
	char err[256];

	(void)state;
	assert_int_equal(ktlsctl_ticket_keys_parse(text, &tk, err, sizeof(err)), 0);
	assert_int_equal(tk.n, 2);
	assert_ptr_equal(tk.ptrs[1], &tk.keys[1]);
	assert_int_equal(tk.keys[0].name.len, 16);
	assert_int_equal(tk.keys[0].secret.len, 32);
	assert_memory_equal(tk.keys[0].name.data,
			    "\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff", 16);
	assert_int_equal(tk.keys[0].secret.data[0], 0x01);
	assert_int_equal(tk.keys[0].secret.data[31], 0x20);
	assert_int_equal(tk.keys[1].name.data[0], 0xff);
	assert_int_equal(tk.keys[1].name.data[15], 0x00);
	assert_int_equal(tk.keys[1].secret.len, 32);
	assert_int_equal(tk.keys[1].secret.data[0], 0xa1);
	assert_int_equal(tk.keys[1].secret.data[31], 0xc0);
	ktlsctl_ticket_keys_free(&tk);
	assert_null(tk.bytes);
	assert_int_equal(tk.n, 0);

	/* No newline at the end: the last line still counts. */
	assert_int_equal(ktlsctl_ticket_keys_parse(NAME_A SECRET_A, &tk, err, sizeof(err)), 0);
	assert_int_equal(tk.n, 1);
	ktlsctl_ticket_keys_free(&tk);
}

/* The lengths are the sidecar's to refuse, with its reason: passed as they are. */
static void test_lengths_pass_through(void **state)
{
	struct ktlsctl_ticket_keys tk;
	char err[256];

	(void)state;
	assert_int_equal(ktlsctl_ticket_keys_parse(NAME_A "0102\n" NAME_A SECRET_A "00\nabcd\n",
						   &tk, err, sizeof(err)),
			 0);
	assert_int_equal(tk.n, 3);
	assert_int_equal(tk.keys[0].name.len, 16);
	assert_int_equal(tk.keys[0].secret.len, 2);
	assert_int_equal(tk.keys[1].secret.len, 33);
	assert_int_equal(tk.keys[2].name.len, 2);
	assert_int_equal(tk.keys[2].secret.len, 0);
	ktlsctl_ticket_keys_free(&tk);
}

static void expect_refused(const char *text, const char *part)
{
	struct ktlsctl_ticket_keys tk;
	char err[256];

	assert_int_equal(ktlsctl_ticket_keys_parse(text, &tk, err, sizeof(err)), -EINVAL);
	if (!strstr(err, part))
		fail_msg("error '%s' lacks '%s'", err, part);
	assert_null(tk.bytes);
	assert_null(tk.keys);
}

static void test_refused(void **state)
{
	char err[256];
	struct ktlsctl_ticket_keys tk;

	(void)state;
	/* not hex: where, not what (the line is a secret) */
	expect_refused(NAME_A SECRET_A "\n0011zz33\n", "line 2, column 5: not a hex digit");
	assert_int_equal(ktlsctl_ticket_keys_parse("# x\n  0011 2233\n", &tk, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "line 2, column 7"));
	assert_null(strstr(err, "0011"));
	/* base64, a common slip: refused, not decoded as something else */
	expect_refused("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v\n",
		       "line 1, column 6: not a hex digit");
	expect_refused(NAME_A SECRET_A "0\n", "line 1: an odd number of hex digits (97");
	expect_refused("", "no key");
	expect_refused("# only a comment\n\n   \n", "no key");
}

/* gen_ticket_key's stdout, into buf. */
static size_t generate(char *buf, size_t len)
{
	char path[] = "/tmp/ks-gen-ticket-key.XXXXXX";
	int fd = mkstemp(path), saved = dup(1);
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	unlink(path);
	assert_int_equal(dup2(fd, 1), 1);
	assert_int_equal(ktlsctl_gen_ticket_key_main(0, NULL), 0);
	assert_int_equal(dup2(saved, 1), 1);
	close(saved);
	n = pread(fd, buf, len - 1, 0);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	return (size_t)n;
}

static void test_generate(void **state)
{
	char a[256], b[256], err[256];
	struct ktlsctl_ticket_keys tk;
	char *argv[] = {(char *)"extra", NULL};

	(void)state;
	assert_int_equal(generate(a, sizeof(a)), 97);
	assert_int_equal(generate(b, sizeof(b)), 97);
	assert_int_equal(a[96], '\n');
	assert_int_equal(strspn(a, "0123456789abcdef"), 96);
	assert_string_not_equal(a, b); /* 384 random bits each */
	assert_int_equal(ktlsctl_ticket_keys_parse(a, &tk, err, sizeof(err)), 0);
	assert_int_equal(tk.n, 1);
	assert_int_equal(tk.keys[0].name.len, 16);
	assert_int_equal(tk.keys[0].secret.len, 32);
	ktlsctl_ticket_keys_free(&tk);
	/* it takes no arguments: a usage error, nothing printed */
	assert_int_equal(ktlsctl_gen_ticket_key_main(1, argv), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_lengths_pass_through),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_generate),
	};

	return cmocka_run_group_tests_name("ticketkeys", tests, NULL, NULL);
}
