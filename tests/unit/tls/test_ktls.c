/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kTLS key derivation against the RFC 8448 §3 vectors, the kernel's
 * crypto_info layout, keylog parsing, the capability probe, and the record
 * numbers and KeyUpdate secrets checked against a live OpenSSL session: this
 * test seals and opens records itself with the derived keys, exactly what the
 * kernel would do, so a wrong number or key shows up as a failed decryption.
 */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>

#include "tests/unit/support.h"
#include "tls/ktls.h"
#include "tls/ktls_io.h"

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
	assert_true((caps & ~(KS_KTLS_CAP_ALL | KS_KTLS_CAP_REKEY)) == 0);
	if (caps & KS_KTLS_CAP_REKEY)
		assert_true(caps & KS_KTLS_CAP_ALL);
	if ((caps & KS_KTLS_CAP_ALL) == KS_KTLS_CAP_ALL)
		assert_string_equal(why, "ok");
	else
		assert_string_not_equal(why, "ok");
}

/*
 * The start-up probe when key derivation fails: it says so, by name. It
 * used to read an uninitialised step pointer on that path. A child with
 * only OpenSSL's base provider loaded (no KDFs: explicitly loading one
 * provider stops the default from loading) makes TLS13-KDF unavailable.
 */
static const char *self_path; /* argv[0]: /proc/self/exe is valgrind's under valgrind */

static void test_probe_without_kdf(void **state)
{
	int p[2], status;
	char why[256] = "";
	ssize_t n;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A fresh process: this one has used the default provider. */
		dup2(p[1], STDOUT_FILENO);
		execl(self_path, self_path, "probe-base-only", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	n = read(p[0], why, sizeof(why) - 1);
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(n > 0);
	if (!strstr(why, "not offloadable (key derivation:"))
		fail_msg("probe says '%s'", why);
}

/* The child of test_probe_without_kdf: the probe with the base provider alone. */
static int probe_base_only(void)
{
	char why[256];
	unsigned caps;

	if (!OSSL_PROVIDER_load(NULL, "base"))
		return 3;
	caps = ks_ktls_probe(why, sizeof(why));
	printf("%s", why);
	return caps == 0 ? 0 : 5;
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

/* ---- a live TLS 1.3 session over a socketpair, with our own record layer ---- */

struct side {
	SSL *ssl;
	struct ks_ktls_secrets sec;
	struct ks_ktls_seq seq;
	int fd;
};

static void keylog_cb(const SSL *ssl, const char *line)
{
	struct side *sd = SSL_get_app_data(ssl);

	(void)ks_ktls_keylog_line(&sd->sec, line);
}

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
		   SSL *ssl, void *arg)
{
	struct side *sd = SSL_get_app_data(ssl);

	(void)version;
	(void)arg;
	ks_ktls_seq_msg(&sd->seq, write_p, content_type, buf, len);
}

static SSL_CTX *make_ctx(bool server)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	assert_non_null(ctx);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	assert_int_equal(SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256"), 1);
	SSL_CTX_set_keylog_callback(ctx, keylog_cb);
	SSL_CTX_set_msg_callback(ctx, msg_cb);
	if (server) {
		ks_test_self_signed(ctx);
		/* Two session tickets: records under the server's application key
		 * that OpenSSL sends before any hand-off could happen. */
		SSL_CTX_set_num_tickets(ctx, 2);
	}
	return ctx;
}

static void session(struct side *srv, struct side *cli, SSL_CTX *sctx, SSL_CTX *cctx)
{
	int sv[2], done = 0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	memset(srv, 0, sizeof(*srv));
	memset(cli, 0, sizeof(*cli));
	srv->fd = sv[0];
	cli->fd = sv[1];
	srv->ssl = SSL_new(sctx);
	cli->ssl = SSL_new(cctx);
	SSL_set_app_data(srv->ssl, srv);
	SSL_set_app_data(cli->ssl, cli);
	SSL_set_fd(srv->ssl, sv[0]);
	SSL_set_fd(cli->ssl, sv[1]);
	SSL_set_accept_state(srv->ssl);
	SSL_set_connect_state(cli->ssl);
	for (int i = 0; i < 100 && done != 3; i++) {
		if (!(done & 1) && SSL_do_handshake(srv->ssl) == 1)
			done |= 1;
		if (!(done & 2) && SSL_do_handshake(cli->ssl) == 1)
			done |= 2;
	}
	assert_int_equal(done, 3);
}

static void end_session(struct side *srv, struct side *cli)
{
	SSL_free(srv->ssl);
	SSL_free(cli->ssl);
	close(srv->fd);
	close(cli->fd);
}

/* RFC 8446 §5.3: nonce = iv XOR the 64-bit record number, left-padded. */
static void nonce(const union ks_ktls_crypto_info *ci, uint8_t out[12])
{
	memcpy(out, ci->aes128.salt, 4);
	memcpy(out + 4, ci->aes128.iv, 8);
	for (int i = 0; i < 8; i++)
		out[4 + i] ^= ci->aes128.rec_seq[i];
}

/* Seals one TLSInnerPlaintext (RFC 8446 §5.2) into a record; returns its size. */
static size_t seal(const union ks_ktls_crypto_info *ci, uint8_t type, const void *pt, size_t n,
		   uint8_t *out)
{
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	uint8_t iv[12], inner[256];
	int len;
	size_t clen = n + 1 + 16;

	assert_true(n + 1 <= sizeof(inner));
	memcpy(inner, pt, n);
	inner[n] = type;
	out[0] = KS_TLS_CT_DATA;
	out[1] = 3;
	out[2] = 3;
	out[3] = (uint8_t)(clen >> 8);
	out[4] = (uint8_t)clen;
	nonce(ci, iv);
	assert_int_equal(EVP_EncryptInit_ex(x, EVP_aes_128_gcm(), NULL, ci->aes128.key, iv), 1);
	assert_int_equal(EVP_EncryptUpdate(x, NULL, &len, out, 5), 1);
	assert_int_equal(EVP_EncryptUpdate(x, out + 5, &len, inner, (int)n + 1), 1);
	assert_int_equal(EVP_EncryptFinal_ex(x, out + 5 + len, &len), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, out + 5 + n + 1), 1);
	EVP_CIPHER_CTX_free(x);
	return 5 + clen;
}

/* Reads one whole record from fd. */
static size_t read_record(int fd, uint8_t *rec, size_t cap)
{
	size_t got = 0, want = 5;
	struct pollfd p = {.fd = fd, .events = POLLIN};

	while (got < want) {
		ssize_t n = read(fd, rec + got, want - got);

		if (n < 0 && errno == EAGAIN) {
			assert_int_equal(poll(&p, 1, 2000), 1);
			continue;
		}
		assert_true(n > 0);
		got += (size_t)n;
		if (got == 5)
			want = 5 + ((size_t)rec[3] << 8 | rec[4]);
		assert_true(want <= cap);
	}
	return got;
}

/* Opens a record; returns the content length (type in *type) or -1 if the
 * tag does not verify. */
static int open_record(const union ks_ktls_crypto_info *ci, const uint8_t *rec, size_t rlen,
		       uint8_t *pt, uint8_t *type)
{
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	size_t clen = rlen - 5 - 16;
	uint8_t iv[12], tag[16];
	int len, ok;

	memcpy(tag, rec + rlen - 16, 16);
	nonce(ci, iv);
	assert_int_equal(EVP_DecryptInit_ex(x, EVP_aes_128_gcm(), NULL, ci->aes128.key, iv), 1);
	assert_int_equal(EVP_DecryptUpdate(x, NULL, &len, rec, 5), 1);
	assert_int_equal(EVP_DecryptUpdate(x, pt, &len, rec + 5, (int)clen), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, 16, tag), 1);
	ok = EVP_DecryptFinal_ex(x, pt + len, &len);
	EVP_CIPHER_CTX_free(x);
	if (ok != 1)
		return -1;
	while (clen > 0 && pt[clen - 1] == 0) /* padding */
		clen--;
	*type = pt[clen - 1];
	return (int)clen - 1;
}

static void crypto_info(const uint8_t *secret, size_t len, uint64_t seq,
			union ks_ktls_crypto_info *ci)
{
	socklen_t cilen;

	assert_int_equal(ks_ktls_crypto_info(ks_ktls_suite(0x1301), secret, len, seq, ci, &cilen),
			 0);
}

/*
 * The hand-off point of a server that sent two session tickets and read one
 * application record: the counts must be exactly what OpenSSL used, in both
 * directions, or the next record fails to decrypt.
 */
static void test_record_numbers(void **state)
{
	SSL_CTX *sctx = make_ctx(true), *cctx = make_ctx(false);
	union ks_ktls_crypto_info ci;
	struct side srv, cli;
	uint8_t rec[512], pt[512], type;
	char buf[64];
	size_t n;

	(void)state;
	session(&srv, &cli, sctx, cctx);
	assert_true(srv.seq.tx_app && srv.seq.rx_app && cli.seq.tx_app && cli.seq.rx_app);
	assert_int_equal(srv.seq.tx, 2); /* the two tickets */
	assert_int_equal(srv.seq.rx, 0);
	assert_int_equal(cli.seq.tx, 0);
	assert_int_equal(cli.seq.rx, 0); /* the tickets are still unread */
	assert_int_equal(srv.sec.server_len, 32);
	assert_int_equal(srv.sec.client_len, 32);

	/* One application record each way through OpenSSL. */
	assert_int_equal(SSL_write(cli.ssl, "ping", 4), 4);
	assert_int_equal(SSL_read(srv.ssl, buf, sizeof(buf)), 4);
	assert_int_equal(SSL_write(srv.ssl, "pong", 4), 4);
	assert_int_equal(SSL_read(cli.ssl, buf, sizeof(buf)), 4);
	assert_int_equal(srv.seq.rx, 1);
	assert_int_equal(srv.seq.tx, 3);
	assert_int_equal(cli.seq.rx, 3); /* two tickets and "pong" */
	assert_int_equal(cli.seq.tx, 1);

	/* The server hands off here. Its next record, sealed by us at the
	 * counted number, must be accepted by the client's OpenSSL... */
	crypto_info(srv.sec.server, srv.sec.server_len, srv.seq.tx, &ci);
	n = seal(&ci, KS_TLS_CT_DATA, "from-kernel", 11, rec);
	assert_int_equal(write(srv.fd, rec, n), (ssize_t)n);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(SSL_read(cli.ssl, buf, sizeof(buf)), 11);
	assert_string_equal(buf, "from-kernel");

	/* ...and the client's next record must open at the counted number, and
	 * not at its neighbour (the check can fail). */
	assert_int_equal(SSL_write(cli.ssl, "to-kernel", 9), 9);
	n = read_record(srv.fd, rec, sizeof(rec));
	crypto_info(srv.sec.client, srv.sec.client_len, srv.seq.rx - 1, &ci);
	assert_int_equal(open_record(&ci, rec, n, pt, &type), -1);
	crypto_info(srv.sec.client, srv.sec.client_len, srv.seq.rx, &ci);
	assert_int_equal(open_record(&ci, rec, n, pt, &type), 9);
	assert_int_equal(type, KS_TLS_CT_DATA);
	assert_memory_equal(pt, "to-kernel", 9);

	end_session(&srv, &cli);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

/* A KeyUpdate moves the sender to HKDF-Expand-Label(secret, "traffic upd"),
 * record number 0: as OpenSSL does it (RFC 8446 §4.6.3, §7.2). */
static void test_key_update_secret(void **state)
{
	SSL_CTX *sctx = make_ctx(true), *cctx = make_ctx(false);
	union ks_ktls_crypto_info ci;
	struct side srv, cli;
	uint8_t rec[512], pt[512], type, secret[KS_KTLS_SECRET_MAX];
	size_t n;

	(void)state;
	session(&srv, &cli, sctx, cctx);
	assert_int_equal(SSL_key_update(cli.ssl, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
	assert_int_equal(SSL_write(cli.ssl, "after-update", 12), 12);

	/* The KeyUpdate itself, under the old key at record 0. */
	n = read_record(srv.fd, rec, sizeof(rec));
	crypto_info(srv.sec.client, srv.sec.client_len, 0, &ci);
	assert_int_equal(open_record(&ci, rec, n, pt, &type), 5);
	assert_int_equal(type, KS_TLS_CT_HANDSHAKE);
	assert_int_equal(pt[0], KS_TLS_HS_KEY_UPDATE);
	assert_int_equal(pt[4], 0); /* update_not_requested */

	/* The data after it opens only with the next secret, at record 0. */
	n = read_record(srv.fd, rec, sizeof(rec));
	assert_int_equal(open_record(&ci, rec, n, pt, &type), -1);
	memcpy(secret, srv.sec.client, srv.sec.client_len);
	assert_int_equal(ks_ktls_next_secret("SHA256", secret, srv.sec.client_len), 0);
	assert_memory_not_equal(secret, srv.sec.client, srv.sec.client_len);
	crypto_info(secret, srv.sec.client_len, 0, &ci);
	assert_int_equal(open_record(&ci, rec, n, pt, &type), 12);
	assert_memory_equal(pt, "after-update", 12);

	end_session(&srv, &cli);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

int main(int argc, char **argv)
{
	self_path = argv[0];
	if (argc == 2 && strcmp(argv[1], "probe-base-only") == 0)
		return probe_base_only();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rfc8448_vectors),
	    cmocka_unit_test(test_crypto_info_layout),
	    cmocka_unit_test(test_keylog),
	    cmocka_unit_test(test_probe_is_consistent),
	    cmocka_unit_test(test_probe_without_kdf),
	    cmocka_unit_test(test_plain_socket_record),
	    cmocka_unit_test(test_record_numbers),
	    cmocka_unit_test(test_key_update_secret),
	};

	return cmocka_run_group_tests_name("ktls", tests, NULL, NULL);
}
