/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kTLS key derivation against the RFC 8448 §3 vectors, the kernel's
 * crypto_info layout, keylog parsing and the capability probe.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ktls.h"

static size_t hex(const char *s, uint8_t *out)
{
	size_t n = 0;
	unsigned v;

	while (*s) {
		if (*s == ' ') {
			s++;
			continue;
		}
		assert_int_equal(sscanf(s, "%2x", &v), 1);
		out[n++] = (uint8_t)v;
		s += 2;
	}
	return n;
}

/* RFC 8448 §3 "Simple 1-RTT Handshake" */
#define C_AP                                                                                       \
	"9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 "  \
	"75 04 a5"
#define S_AP                                                                                       \
	"a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb "  \
	"63 16 43"
#define S_HS                                                                                       \
	"b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 "  \
	"91 ad 38"

static void expect_label(const char *secret_hex, const char *label, const char *want_hex)
{
	uint8_t secret[64], want[64], got[64];
	size_t slen = hex(secret_hex, secret), wlen = hex(want_hex, want);

	assert_int_equal(ks_ktls_expand_label("SHA256", secret, slen, label, got, wlen), 0);
	assert_memory_equal(got, want, wlen);
}

static void test_rfc8448_vectors(void **state)
{
	(void)state;
	expect_label(S_AP, "key", "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56");
	expect_label(S_AP, "iv", "cf 78 2b 88 dd 83 54 9a ad f1 e9 84");
	expect_label(C_AP, "key", "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51");
	expect_label(C_AP, "iv", "5b 78 92 3d ee 08 57 90 33 e5 23 d9");
	expect_label(S_HS, "key", "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc");
	expect_label(S_HS, "iv", "5d 31 3e b2 67 12 76 ee 13 00 0b 30");
}

static void test_crypto_info_layout(void **state)
{
	uint8_t secret[64], iv[12], key[16];
	size_t slen = hex(S_AP, secret);
	union ks_ktls_crypto_info ci;
	socklen_t len;
	static const uint8_t seq[8] = {0, 0, 0, 0, 0, 0x01, 0x02, 0x03};

	(void)state;
	hex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84", iv);
	hex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", key);
	assert_int_equal(
	    ks_ktls_crypto_info(ks_ktls_suite(0x1301), secret, slen, 0x010203, &ci, &len), 0);
	assert_int_equal(len, sizeof(struct tls12_crypto_info_aes_gcm_128));
	assert_int_equal(ci.base.version, TLS_1_3_VERSION);
	assert_int_equal(ci.base.cipher_type, TLS_CIPHER_AES_GCM_128);
	/* salt = iv[0..3], iv = iv[4..11] (ktls-facts.md, tls.rst) */
	assert_memory_equal(ci.aes128.salt, iv, 4);
	assert_memory_equal(ci.aes128.iv, iv + 4, 8);
	assert_memory_equal(ci.aes128.key, key, 16);
	assert_memory_equal(ci.aes128.rec_seq, seq, 8);

	/* ChaCha20-Poly1305: the whole 12-byte iv, no salt; 32-byte key */
	assert_int_equal(ks_ktls_crypto_info(ks_ktls_suite(0x1303), secret, slen, 0, &ci, &len), 0);
	assert_int_equal(len, sizeof(struct tls12_crypto_info_chacha20_poly1305));
	assert_int_equal(ci.base.cipher_type, TLS_CIPHER_CHACHA20_POLY1305);
	assert_memory_equal(ci.chacha.iv, iv, 12);

	/* AES-256-GCM with SHA-384 secrets */
	assert_int_equal(ks_ktls_crypto_info(ks_ktls_suite(0x1302), secret, 48, 0, &ci, &len), 0);
	assert_int_equal(len, sizeof(struct tls12_crypto_info_aes_gcm_256));
	assert_int_equal(ci.base.cipher_type, TLS_CIPHER_AES_GCM_256);

	assert_null(ks_ktls_suite(0x1304)); /* AES-128-CCM: not offered */
	assert_null(ks_ktls_suite(0xc02b));
}

static void test_keylog(void **state)
{
	struct ks_ktls_secrets s = {0};
	uint8_t want[64];

	(void)state;
	assert_int_equal(ks_ktls_keylog_line(&s, "CLIENT_HANDSHAKE_TRAFFIC_SECRET 00aa " S_HS), 0);
	assert_int_equal(ks_ktls_keylog_line(&s, "EXPORTER_SECRET 00 11"), 0);
	assert_int_equal(s.client_len + s.server_len, 0);
	assert_int_equal(
	    ks_ktls_keylog_line(&s,
				"CLIENT_TRAFFIC_SECRET_0 0011 "
				"9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5"),
	    1);
	assert_int_equal(s.client_len, 32);
	hex(C_AP, want);
	assert_memory_equal(s.client, want, 32);
	assert_int_equal(
	    ks_ktls_keylog_line(&s,
				"SERVER_TRAFFIC_SECRET_0 0011 "
				"a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643"),
	    1);
	assert_int_equal(s.server_len, 32);
	/* malformed */
	assert_int_equal(ks_ktls_keylog_line(&s, "SERVER_TRAFFIC_SECRET_0 0011"), -EINVAL);
	assert_int_equal(ks_ktls_keylog_line(&s, "SERVER_TRAFFIC_SECRET_0 0011 zz"), -EINVAL);
	assert_int_equal(ks_ktls_keylog_line(&s, "SERVER_TRAFFIC_SECRET_0 0011 abc"), -EINVAL);
	/* longer than SHA-384 */
	char line[256];

	snprintf(line, sizeof(line), "SERVER_TRAFFIC_SECRET_0 00 %0130d", 0);
	assert_int_equal(ks_ktls_keylog_line(&s, line), -EINVAL);
}

static void test_probe_is_consistent(void **state)
{
	char why[256];
	unsigned caps;

	(void)state;
	caps = ks_ktls_probe(why, sizeof(why));
	print_message("kTLS probe on this kernel: caps=%#x (%s)\n", caps, why);
	assert_true((caps & ~KS_KTLS_CAP_ALL) == 0);
	if (caps == KS_KTLS_CAP_ALL)
		assert_string_equal(why, "ok");
	else
		assert_string_not_equal(why, "ok");
}

static void test_plain_socket_record(void **state)
{
	int sv[2];
	uint8_t buf[16], type = 0;

	(void)state;
	/* Without kTLS there is no record-type cmsg: everything is data. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "hi", 2), 2);
	assert_int_equal(ks_ktls_recv_record(sv[0], buf, sizeof(buf), &type), 2);
	assert_int_equal(type, KS_TLS_CT_DATA);
	assert_int_equal(ks_ktls_recv_record(sv[0], buf, sizeof(buf), &type), -EAGAIN);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc8448_vectors),
	    cmocka_unit_test(test_crypto_info_layout),
	    cmocka_unit_test(test_keylog),
	    cmocka_unit_test(test_probe_is_consistent),
	    cmocka_unit_test(test_plain_socket_record),
	};

	return cmocka_run_group_tests_name("ktls", tests, NULL, NULL);
}
