/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel path's non-data records (dataplane/ctlrec.c), through the kTLS
 * seam on a build machine without kTLS: close_notify, fatal alerts, session
 * tickets whole and split across records, zero-length handshake records,
 * KeyUpdate with and without update_requested (and when the kernel cannot
 * take the key), malformed KeyUpdates, and a record type the kernel could
 * not deliver whole (MSG_CTRUNC, a wrong cmsg_len). Each refusal is checked
 * for its reason and for the alert it sends.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "dataplane/conn.h"
#include "dataplane/pump.h"
#include "dataplane/stats.h"
#include "dataplane/worker.h"
#include "fake_ktls_io.h"

static struct ks_conn conn;
/* Its worker and route: for the warning lines' limiter (loglimit.h). */
static struct ks_worker worker;
static struct ks_route route = {.dir = KS_INBOUND};

/* A kernel-path connection with TLS_AES_128_GCM_SHA256 secrets, as after the hand-off. */
static int setup(void **state)
{
	(void)state;
	fake_reset();
	ks_ktls_io_set(&fake_io);
	memset(&conn, 0, sizeof(conn));
	conn.tls_fd = conn.plain_fd = -1;
	conn.wk = &worker;
	conn.route = &route;
	conn.rl = KS_RL_KERNEL;
	conn.suite = ks_ktls_suite(0x1301);
	conn.tls.server = true;
	conn.tls.secrets.client_len = conn.tls.secrets.server_len = 32;
	memset(conn.tls.secrets.client, 0xc1, 32);
	memset(conn.tls.secrets.server, 0x5e, 32);
	snprintf(conn.peer_str, sizeof(conn.peer_str), "test");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ks_ktls_io_set(NULL);
	return 0;
}

/* The connection ended with reason, and detail mentions part. */
static void expect_close(enum ks_rec_status st, const char *reason, const char *part)
{
	assert_int_equal(st, KS_REC_CLOSE);
	assert_true(conn.end.decided);
	assert_string_equal(ks_close_reason_name(conn.end.reason), reason);
	if (part && !strstr(conn.end.detail, part))
		fail_msg("detail '%s' lacks '%s'", conn.end.detail, part);
}

/* The last record we sent was a fatal alert with this description. */
static void expect_alert(uint8_t desc)
{
	assert_true(fake.nsent > 0);
	assert_int_equal(fake.sent[fake.nsent - 1].type, KS_TLS_CT_ALERT);
	assert_int_equal(fake.sent[fake.nsent - 1].len, 2);
	assert_int_equal(fake.sent[fake.nsent - 1].data[0], 2);
	assert_int_equal(fake.sent[fake.nsent - 1].data[1], desc);
}

static void test_nothing_yet(void **state)
{
	(void)state;
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_NONE);
	assert_false(conn.end.decided);
}

static void test_close_notify(void **state)
{
	static const uint8_t cn[2] = {1, SSL_AD_CLOSE_NOTIFY};

	(void)state;
	fake_queue(KS_TLS_CT_ALERT, cn, sizeof(cn));
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_true(conn.tls_eof);
	assert_false(conn.tls_unclean);
	assert_false(conn.end.decided);
	assert_int_equal(conn.ubytes, 2); /* the only bytes through our memory */
}

static void test_fatal_alert(void **state)
{
	static const uint8_t alert[2] = {2, SSL_AD_HANDSHAKE_FAILURE};

	(void)state;
	fake_queue(KS_TLS_CT_ALERT, alert, sizeof(alert));
	expect_close(ks_ctlrec_read(&conn), "peer_alert", "handshake failure");
	assert_int_equal(conn.end.rst, KS_SIDE_PLAIN);
	assert_int_equal(fake.nsent, 0); /* no alert back for an alert */
}

static void test_eof_without_close_notify(void **state)
{
	(void)state;
	fake_queue(KS_TLS_CT_EOF, NULL, 0);
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_true(conn.tls_eof);
	assert_true(conn.tls_unclean);
}

static void test_ticket_whole(void **state)
{
	/* Two NewSessionTickets in one record, then one in the next. */
	static const uint8_t two[] = {4, 0, 0, 3, 0xaa, 0xbb, 0xcc, 4, 0, 0, 1, 0xdd};
	static const uint8_t one[] = {4, 0, 0, 2, 0xee, 0xff};

	(void)state;
	fake_queue(KS_TLS_CT_HANDSHAKE, two, sizeof(two));
	fake_queue(KS_TLS_CT_HANDSHAKE, one, sizeof(one));
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_false(conn.end.decided);
	assert_int_equal(conn.hs.hdr_len, 0);
	assert_int_equal(conn.hs.skip, 0);
}

/* RFC 8446 §5.1: a handshake message may span records; a ticket's body
 * continuing in the next record is not a message of its own. */
static void test_ticket_split(void **state)
{
	static const uint8_t a[] = {4, 0, 0, 10, 1, 2, 3};	   /* header + 3 of 10 */
	static const uint8_t b[] = {4, 5, 6, 7, 8, 9, 10};	   /* the other 7 */
	static const uint8_t c[] = {4, 0};			   /* half a header */
	static const uint8_t d[] = {0, 2, 0x18, 0x18, 4, 0, 0, 0}; /* its rest, then another */

	(void)state;
	fake_queue(KS_TLS_CT_HANDSHAKE, a, sizeof(a));
	fake_queue(KS_TLS_CT_HANDSHAKE, b, sizeof(b));
	fake_queue(KS_TLS_CT_HANDSHAKE, c, sizeof(c));
	fake_queue(KS_TLS_CT_HANDSHAKE, d, sizeof(d));
	for (int i = 0; i < 4; i++)
		assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_false(conn.end.decided);
	assert_int_equal(conn.hs.hdr_len, 0);
	assert_int_equal(conn.hs.skip, 0);
	/* The ticket body's bytes (0x18 = KeyUpdate's type) were not read as a
	 * message, so no key moved. */
	assert_int_equal(fake.rx_calls, 0);
}

static void test_zero_length_handshake_record(void **state)
{
	(void)state;
	fake_queue(KS_TLS_CT_HANDSHAKE, NULL, 0);
	expect_close(ks_ctlrec_read(&conn), "tls_error", "zero-length handshake record");
	expect_alert(SSL_AD_UNEXPECTED_MESSAGE);
}

static void test_key_update_not_requested(void **state)
{
	static const uint8_t ku[] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 1, 0};
	uint8_t want[KS_KTLS_SECRET_MAX];
	union ks_ktls_crypto_info ci;
	socklen_t len;

	(void)state;
	/* The peer is the client (we are the server): its secret moves. */
	memcpy(want, conn.tls.secrets.client, 32);
	assert_int_equal(ks_ktls_next_secret("SHA256", want, 32), 0);
	fake_queue(KS_TLS_CT_HANDSHAKE, ku, sizeof(ku));
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_memory_equal(conn.tls.secrets.client, want, 32);
	assert_int_equal(fake.rx_calls, 1);
	assert_int_equal(fake.tx_calls, 0);
	/* The new TLS_RX: the next generation's key, from record 0. */
	assert_int_equal(ks_ktls_crypto_info(conn.suite, want, 32, 0, &ci, &len), 0);
	assert_memory_equal(&fake.rx, &ci, len);
	assert_false(conn.ku_reply);
	assert_int_equal(conn.key_updates, 1);
	assert_int_equal(fake.nsent, 0);
}

static void test_key_update_requested(void **state)
{
	static const uint8_t ku[] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 1, 1};
	static const uint8_t reply[] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 1, 0};
	uint8_t tx_want[KS_KTLS_SECRET_MAX];
	union ks_ktls_crypto_info ci;
	socklen_t len;

	(void)state;
	memcpy(tx_want, conn.tls.secrets.server, 32);
	assert_int_equal(ks_ktls_next_secret("SHA256", tx_want, 32), 0);
	fake_queue(KS_TLS_CT_HANDSHAKE, ku, sizeof(ku));
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_true(conn.ku_reply); /* owed before any more data */
	assert_int_equal(ks_ctlrec_key_update_reply(&conn), KS_REC_PROGRESS);
	/* Our KeyUpdate went out (update_not_requested), then TLS_TX moved. */
	assert_int_equal(fake.nsent, 1);
	assert_int_equal(fake.sent[0].type, KS_TLS_CT_HANDSHAKE);
	assert_int_equal(fake.sent[0].len, sizeof(reply));
	assert_memory_equal(fake.sent[0].data, reply, sizeof(reply));
	assert_int_equal(fake.tx_calls, 1);
	assert_int_equal(ks_ktls_crypto_info(conn.suite, tx_want, 32, 0, &ci, &len), 0);
	assert_memory_equal(&fake.tx, &ci, len);
	assert_false(conn.ku_reply);
	assert_int_equal(conn.key_updates, 2);
}

/* Header in one record, its one byte in the next: still one KeyUpdate. */
static void test_key_update_split(void **state)
{
	static const uint8_t a[] = {4, 0, 0, 1, 9, KS_TLS_HS_KEY_UPDATE, 0, 0, 1};
	static const uint8_t b[] = {0};

	(void)state;
	fake_queue(KS_TLS_CT_HANDSHAKE, a, sizeof(a));
	fake_queue(KS_TLS_CT_HANDSHAKE, b, sizeof(b));
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_int_equal(fake.rx_calls, 0);
	assert_int_equal(ks_ctlrec_read(&conn), KS_REC_PROGRESS);
	assert_int_equal(fake.rx_calls, 1);
	assert_int_equal(conn.key_updates, 1);
}

static void test_key_update_unsupported(void **state)
{
	static const uint8_t ku[] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 1, 0};

	(void)state;
	/* Before 6.14 a second TLS_RX is EBUSY. */
	fake.fail_name = TLS_RX;
	fake.fail_errno = EBUSY;
	fake_queue(KS_TLS_CT_HANDSHAKE, ku, sizeof(ku));
	expect_close(ks_ctlrec_read(&conn), "key_update_unsupported", "KeyUpdate");
	/* Without the secrets (a kernel that cannot rekey: they were dropped). */
	setup(state);
	memset(&conn.tls.secrets, 0, sizeof(conn.tls.secrets));
	fake_queue(KS_TLS_CT_HANDSHAKE, ku, sizeof(ku));
	expect_close(ks_ctlrec_read(&conn), "key_update_unsupported", "6.14+");
	assert_int_equal(fake.rx_calls, 0);
}

static void test_key_update_malformed(void **state)
{
	static const uint8_t not_last[] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 1, 0, 4, 0, 0, 0};
	static const uint8_t bad_value[] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 1, 2};
	static const uint8_t bad_len[] = {KS_TLS_HS_KEY_UPDATE, 0, 0, 2, 0, 0};
	static const uint8_t other[] = {13, 0, 0, 0}; /* CertificateRequest */

	(void)state;
	/* RFC 8446 §5.1: a key change must end its record. */
	fake_queue(KS_TLS_CT_HANDSHAKE, not_last, sizeof(not_last));
	expect_close(ks_ctlrec_read(&conn), "tls_error", "not at the end of its record");
	expect_alert(SSL_AD_UNEXPECTED_MESSAGE);
	assert_int_equal(fake.rx_calls, 0);
	/* RFC 8446 §4.6.3: any other request value is illegal_parameter. */
	setup(state);
	fake_queue(KS_TLS_CT_HANDSHAKE, bad_value, sizeof(bad_value));
	expect_close(ks_ctlrec_read(&conn), "tls_error", "malformed KeyUpdate");
	expect_alert(SSL_AD_ILLEGAL_PARAMETER);
	/* A length that is not 1: decode_error. */
	setup(state);
	fake_queue(KS_TLS_CT_HANDSHAKE, bad_len, sizeof(bad_len));
	expect_close(ks_ctlrec_read(&conn), "tls_error", "malformed KeyUpdate");
	expect_alert(SSL_AD_DECODE_ERROR);
	/* No other post-handshake message is expected by a sidecar. */
	setup(state);
	fake_queue(KS_TLS_CT_HANDSHAKE, other, sizeof(other));
	expect_close(ks_ctlrec_read(&conn), "tls_error",
		     "unexpected post-handshake message type 13");
	expect_alert(SSL_AD_UNEXPECTED_MESSAGE);
}

static void test_truncated_cmsg(void **state)
{
	static const uint8_t cn[2] = {1, SSL_AD_CLOSE_NOTIFY};

	(void)state;
	fake_queue(KS_TLS_CT_ALERT, cn, sizeof(cn));
	fake.rec[0].ctrunc = true;
	expect_close(ks_ctlrec_read(&conn), "tls_error", "truncated control message");
	assert_false(conn.tls_eof); /* not taken for a close_notify */
	expect_alert(SSL_AD_INTERNAL_ERROR);

	setup(state);
	fake_queue(KS_TLS_CT_ALERT, cn, sizeof(cn));
	fake.rec[0].bad_cmsg_len = true;
	expect_close(ks_ctlrec_read(&conn), "tls_error", "truncated control message");
	assert_false(conn.tls_eof);
}

static void test_decrypt_failure(void **state)
{
	(void)state;
	fake_queue(KS_TLS_CT_ALERT, NULL, 0);
	fake.rec[0].err = EBADMSG;
	expect_close(ks_ctlrec_read(&conn), "tls_error", "EBADMSG");
	expect_alert(SSL_AD_BAD_RECORD_MAC);

	setup(state);
	fake_queue(KS_TLS_CT_ALERT, NULL, 0);
	fake.rec[0].err = ECONNRESET;
	expect_close(ks_ctlrec_read(&conn), "peer_reset", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_nothing_yet, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_notify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fatal_alert, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_eof_without_close_notify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ticket_whole, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ticket_split, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_zero_length_handshake_record, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_update_not_requested, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_update_requested, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_update_split, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_update_unsupported, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_update_malformed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_cmsg, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decrypt_failure, setup, teardown),
	};

	return cmocka_run_group_tests_name("ctlrec", tests, NULL, NULL);
}
