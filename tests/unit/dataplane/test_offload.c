/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel-TLS hand-off (dataplane/offload.c) after a live TLS 1.3
 * handshake driven by tls/handshake.c, with the kernel's setsockopt behind
 * the kTLS seam: the record numbers the kernel is given are the ones
 * OpenSSL used (a server that sent two session tickets continues at 2),
 * the keys are the negotiated ones, and a failure at each step lands where
 * it must: TCP_ULP or TLS_TX failing keeps the connection on OpenSSL's
 * record layer, TLS_RX failing after TLS_TX refuses it (the kernel already
 * encrypts what we send, so OpenSSL cannot take over), and --ktls=require
 * refuses what cannot be offloaded.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "dataplane/conn.h"
#include "dataplane/offload.h"
#include "fake_ktls_io.h"
#include "tests/unit/support.h"
#include "tls/identity.h"

static SSL_CTX *make_ctx(bool server)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	assert_non_null(ctx);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	assert_int_equal(SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256"), 1);
	/* What tls/identity.c installs when the kernel may take over. */
	SSL_CTX_set_keylog_callback(ctx, ks_handshake_keylog_cb);
	SSL_CTX_set_msg_callback(ctx, ks_handshake_msg_cb);
	if (server) {
		ks_test_self_signed(ctx);
		SSL_CTX_set_num_tickets(ctx, 2);
	}
	return ctx;
}

static struct ks_identity ident;
static struct ks_conn srv, cli;

static void conn_init(struct ks_conn *c, bool server, int fd)
{
	memset(c, 0, sizeof(*c));
	c->tls_fd = fd;
	c->plain_fd = -1;
	c->p2t_pipe[0] = c->p2t_pipe[1] = c->t2p_pipe[0] = c->t2p_pipe[1] = -1;
	c->tls.server = server;
	c->tls.ident = &ident;
	c->ssl = ks_handshake_start(&c->tls, fd);
	assert_non_null(c->ssl);
}

static void conn_fini(struct ks_conn *c)
{
	SSL_free(c->ssl);
	close(c->tls_fd);
	for (int i = 0; i < 2; i++) {
		if (c->p2t_pipe[i] >= 0)
			close(c->p2t_pipe[i]);
		if (c->t2p_pipe[i] >= 0)
			close(c->t2p_pipe[i]);
	}
	ks_tls_peer_fini(&c->tls);
}

/* The start-up probe, on a "kernel" where every setsockopt succeeds: it
 * offloads all three ciphers and can rekey. Its calls are not counted. */
static void probe(enum ks_ktls_mode mode)
{
	fake_reset();
	ks_offload_probe(mode);
	fake_reset();
}

/* A server and a client connection that completed a TLS 1.3 handshake. */
static int setup(void **state)
{
	int sv[2], done = 0;

	(void)state;
	fake_reset();
	ks_ktls_io_set(&fake_io);
	ident.server_ctx = make_ctx(true);
	ident.client_ctx = make_ctx(false);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	conn_init(&srv, true, sv[0]);
	conn_init(&cli, false, sv[1]);
	for (int i = 0; i < 100 && done != 3; i++) {
		if (!(done & 1) && ks_handshake_step(srv.ssl, &srv.tls) == KS_HS_DONE)
			done |= 1;
		if (!(done & 2) && ks_handshake_step(cli.ssl, &cli.tls) == KS_HS_DONE)
			done |= 2;
	}
	assert_int_equal(done, 3);
	probe(KS_KTLS_AUTO);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	conn_fini(&srv);
	conn_fini(&cli);
	SSL_CTX_free(ident.server_ctx);
	SSL_CTX_free(ident.client_ctx);
	ks_ktls_io_set(NULL);
	return 0;
}

static uint64_t rec_seq(const union ks_ktls_crypto_info *ci)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | ci->aes128.rec_seq[i];
	return v;
}

static void expect_key(const union ks_ktls_crypto_info *got, const uint8_t *secret, uint64_t seq)
{
	union ks_ktls_crypto_info want;
	socklen_t len;

	assert_int_equal(ks_ktls_crypto_info(ks_ktls_suite(0x1301), secret, 32, seq, &want, &len),
			 0);
	assert_memory_equal(got, &want, len);
}

static void test_record_numbers(void **state)
{
	char why[256];

	(void)state;
	/* The server sent two tickets under its application key. */
	assert_int_equal(srv.tls.seq.tx, 2);
	assert_int_equal(ks_offload_handoff(&srv, why, sizeof(why)), 0);
	assert_int_equal(srv.rl, KS_RL_KERNEL);
	assert_string_equal(why, "kTLS TX+RX TLS_AES_128_GCM_SHA256 from record 2 out, 0 in");
	assert_int_equal(fake.ulp_calls, 1);
	assert_int_equal(rec_seq(&fake.tx), 2);
	assert_int_equal(rec_seq(&fake.rx), 0);
	expect_key(&fake.tx, srv.tls.secrets.server, 2);
	expect_key(&fake.rx, srv.tls.secrets.client, 0);
	/* No pipe until bytes move (dataplane/pipes.h). */
	assert_true(srv.p2t_pipe[0] < 0 && srv.t2p_pipe[0] < 0);
	/* The client has read nothing past its Finished: both from 0, and its
	 * TX key is the client secret. */
	fake_reset();
	assert_int_equal(ks_offload_handoff(&cli, why, sizeof(why)), 0);
	assert_int_equal(rec_seq(&fake.tx), 0);
	assert_int_equal(rec_seq(&fake.rx), 0);
	expect_key(&fake.tx, cli.tls.secrets.client, 0);
	expect_key(&fake.rx, cli.tls.secrets.server, 0);
}

static void test_rx_fails_after_tx(void **state)
{
	char why[256];

	(void)state;
	fake.fail_name = TLS_RX;
	fake.fail_errno = EINVAL;
	assert_int_equal(ks_offload_handoff(&srv, why, sizeof(why)), -EINVAL);
	assert_int_equal(fake.tx_calls, 1);
	assert_non_null(strstr(why, "setsockopt TLS_RX"));
	/* Not handed back to OpenSSL: the kernel already owns TX. */
	assert_int_not_equal(srv.rl, KS_RL_KERNEL);
	assert_int_equal(srv.tls.secrets.client_len, 0); /* wiped */
}

static void test_fallbacks(void **state)
{
	char why[256];

	(void)state;
	/* TCP_ULP refused: nothing installed, OpenSSL keeps the record layer. */
	fake.fail_name = TCP_ULP;
	fake.fail_errno = ENOENT;
	assert_int_equal(ks_offload_handoff(&srv, why, sizeof(why)), 0);
	assert_int_equal(srv.rl, KS_RL_USERSPACE);
	assert_non_null(strstr(why, "setsockopt TCP_ULP"));
	assert_int_equal(fake.tx_calls, 0);
	/* TLS_TX refused: still nothing the kernel owns. */
	fake_reset();
	fake.fail_name = TLS_TX;
	fake.fail_errno = EOPNOTSUPP;
	assert_int_equal(ks_offload_handoff(&cli, why, sizeof(why)), 0);
	assert_int_equal(cli.rl, KS_RL_USERSPACE);
	assert_int_equal(fake.rx_calls, 0);
	assert_non_null(strstr(why, "setsockopt TLS_TX"));
}

static void test_require_refuses(void **state)
{
	char why[256];

	(void)state;
	probe(KS_KTLS_REQUIRE);
	fake.fail_name = TCP_ULP;
	fake.fail_errno = ENOENT;
	assert_int_equal(ks_offload_handoff(&srv, why, sizeof(why)), -EOPNOTSUPP);
	/* A record OpenSSL already took off the socket is gone for the
	 * kernel (it would start one record late): userspace, nothing set. */
	probe(KS_KTLS_AUTO);
	assert_int_equal(SSL_write(srv.ssl, "x", 1), 1);
	assert_int_equal(SSL_peek(cli.ssl, why, 1), 1);
	assert_int_equal(ks_offload_handoff(&cli, why, sizeof(why)), 0);
	assert_int_equal(cli.rl, KS_RL_USERSPACE);
	assert_non_null(strstr(why, "past the handshake"));
	assert_int_equal(fake.ulp_calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_record_numbers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rx_fails_after_tx, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fallbacks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_require_refuses, setup, teardown),
	};

	if (ks_handshake_global_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("offload", tests, NULL, NULL);
}
