/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control API: every error path of the decoder and of the socket server
 * (oversized, truncated and malformed frames, unknown fields, wrong wire
 * types, a caller whose uid is not allowed, a socket that is not 0600, a
 * stale or live socket at start-up), and the operations that do not need a
 * running data plane: among them SetTicketKeys as the handler dispatches,
 * answers, counts and shows it (status), against a real ticket ring. The server runs for real on a
 * Unix socket in a temporary directory; clients are plain blocking sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "control/control.h"
#include "ktls/control/v1/control.pb-c.h"
#include "tls/identity.h"
#include "tls/resume.h"

typedef Ktls__Control__V1__Response response;

static char dir[48], sock[100];
static uint32_t drained_ms;
static int drains, drain_rc;

static int fake_drain(struct ks_ctl_env *env, uint32_t timeout_ms)
{
	(void)env;
	drains++;
	drained_ms = timeout_ms;
	return drain_rc;
}

static struct ks_ctl_env env = {.drain = fake_drain};
static struct ks_ctl_limits limits = {.max_frame = 64};

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ks-ctl-test.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/run/control.sock", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* Runs one request through the handler; returns the decoded response. */
static response *handle(const uint8_t *req, size_t len)
{
	uint8_t *out;
	size_t outlen;
	response *r;

	assert_int_equal(ks_ctl_handle(&env, req, len, &out, &outlen), 0);
	assert_true(outlen >= KS_CTL_HDR);
	assert_int_equal(ks_ctl_frame_len(out), outlen - KS_CTL_HDR);
	r = ktls__control__v1__response__unpack(NULL, outlen - KS_CTL_HDR, out + KS_CTL_HDR);
	free(out);
	assert_non_null(r);
	return r;
}

static response *handle_msg(const Ktls__Control__V1__Request *q)
{
	uint8_t buf[256];
	size_t n = protobuf_c_message_get_packed_size(&q->base);

	assert_true(n <= sizeof(buf));
	protobuf_c_message_pack(&q->base, buf);
	return handle(buf, n);
}

static void expect(response *r, int code, const char *msg_part)
{
	if ((int)r->code != code)
		fail_msg("code %d (%s), want %d", r->code, r->message, code);
	if (msg_part && !strstr(r->message, msg_part))
		fail_msg("message '%s' lacks '%s'", r->message, msg_part);
	ktls__control__v1__response__free_unpacked(r, NULL);
}

static void test_decoder_errors(void **state)
{
	/* field 1 (id) as varint 7, then field 2 (get_status) as an empty message */
	static const uint8_t ok[] = {0x08, 0x07, 0x12, 0x00};
	/* id = 7, then an unknown field 99 (varint) */
	static const uint8_t unknown_top[] = {0x08, 0x07, 0x98, 0x06, 0x01};
	/* drain { field 5 (unknown) = 1 } */
	static const uint8_t unknown_nested[] = {0x08, 0x07, 0x4a, 0x02, 0x28, 0x01};
	/* id with wire type 2 (length-delimited) instead of varint */
	static const uint8_t wrong_type[] = {0x0a, 0x01, 0x07};
	/* get_status claims 5 bytes, 0 follow */
	static const uint8_t truncated[] = {0x08, 0x07, 0x12, 0x05};
	/* a varint that never ends */
	static const uint8_t bad_varint[] = {0x08, 0xff, 0xff, 0xff};
	response *r;

	(void)state;
	r = handle(ok, sizeof(ok));
	assert_int_equal(r->id, 7);
	expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, NULL);

	r = handle(unknown_top, sizeof(unknown_top));
	assert_int_equal(r->id, 7); /* the id still comes back */
	expect(r, KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT, "unknown field 99");
	expect(handle(unknown_nested, sizeof(unknown_nested)),
	       KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT, "unknown field 5");
	expect(handle(wrong_type, sizeof(wrong_type)),
	       KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT, "not a valid");
	expect(handle(truncated, sizeof(truncated)), KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT,
	       "truncated");
	expect(handle(bad_varint, sizeof(bad_varint)),
	       KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT, NULL);
	/* an empty frame is a request with no operation */
	expect(handle(ok, 0), KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT, "no operation");
	assert_int_equal(drains, 0);
}

static void test_operations(void **state)
{
	Ktls__Control__V1__Request q = KTLS__CONTROL__V1__REQUEST__INIT;
	Ktls__Control__V1__GetStatus gs = KTLS__CONTROL__V1__GET_STATUS__INIT;
	Ktls__Control__V1__Drain dr = KTLS__CONTROL__V1__DRAIN__INIT;
	Ktls__Control__V1__SetCrl crl = KTLS__CONTROL__V1__SET_CRL__INIT;
	Ktls__Control__V1__ListConnections lc = KTLS__CONTROL__V1__LIST_CONNECTIONS__INIT;
	response *r;

	(void)state;
	q.id = 42;
	q.op_case = KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS;
	q.get_status = &gs;
	r = handle_msg(&q);
	assert_int_equal(r->id, 42);
	assert_int_equal(r->result_case, KTLS__CONTROL__V1__RESPONSE__RESULT_STATUS);
	assert_non_null(r->status->ktls);
	assert_non_null(r->status->counters);
	assert_null(r->status->identity); /* no data plane in this test */
	expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, NULL);

	q.op_case = KTLS__CONTROL__V1__REQUEST__OP_DRAIN;
	q.drain = &dr;
	dr.timeout_ms = 2500;
	expect(handle_msg(&q), KTLS__CONTROL__V1__CODE__CODE_OK, "draining");
	assert_int_equal(drains, 1);
	assert_int_equal(drained_ms, 2500);

	/* No data plane here: an empty list (t_control_updates lists real ones). */
	q.op_case = KTLS__CONTROL__V1__REQUEST__OP_LIST_CONNECTIONS;
	q.list_connections = &lc;
	r = handle_msg(&q);
	assert_int_equal(r->id, 42);
	assert_int_equal(r->result_case, KTLS__CONTROL__V1__RESPONSE__RESULT_CONNECTIONS);
	assert_int_equal(r->connections->n_connections, 0);
	expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, "0 connection");

	/* An update without identity state to change: an explicit error. */
	q.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_CRL;
	q.set_crl = &crl;
	expect(handle_msg(&q), KTLS__CONTROL__V1__CODE__CODE_FAILED_PRECONDITION, NULL);

	/* A second Drain is answered, not turned into a second SIGTERM. */
	q.op_case = KTLS__CONTROL__V1__REQUEST__OP_DRAIN;
	q.drain = &dr;
	drain_rc = 1;
	expect(handle_msg(&q), KTLS__CONTROL__V1__CODE__CODE_OK, "already draining");
	drain_rc = 0;
}

/* A status through env; the caller frees it. */
static response *status_of(void)
{
	Ktls__Control__V1__Request q = KTLS__CONTROL__V1__REQUEST__INIT;
	Ktls__Control__V1__GetStatus gs = KTLS__CONTROL__V1__GET_STATUS__INIT;
	response *r;

	q.op_case = KTLS__CONTROL__V1__REQUEST__OP_GET_STATUS;
	q.get_status = &gs;
	r = handle_msg(&q);
	assert_int_equal(r->code, KTLS__CONTROL__V1__CODE__CODE_OK);
	assert_non_null(r->status);
	return r;
}

/* Pushes n keys (name of nlen bytes, secret of slen, filled with fill + i). */
static response *push_keys(size_t n, size_t nlen, size_t slen, uint8_t fill)
{
	Ktls__Control__V1__Request q = KTLS__CONTROL__V1__REQUEST__INIT;
	Ktls__Control__V1__SetTicketKeys m = KTLS__CONTROL__V1__SET_TICKET_KEYS__INIT;
	Ktls__Control__V1__TicketKey k[2], *kp[2];
	uint8_t bytes[2][64];

	assert_true(n <= 2 && nlen + slen <= sizeof(bytes[0]));
	for (size_t i = 0; i < n; i++) {
		ktls__control__v1__ticket_key__init(&k[i]);
		memset(bytes[i], fill + (int)i, sizeof(bytes[i]));
		k[i].name.data = bytes[i];
		k[i].name.len = nlen;
		k[i].secret.data = bytes[i] + nlen;
		k[i].secret.len = slen;
		kp[i] = &k[i];
	}
	m.keys = kp;
	m.n_keys = n;
	q.id = 7;
	q.op_case = KTLS__CONTROL__V1__REQUEST__OP_SET_TICKET_KEYS;
	q.set_ticket_keys = &m;
	return handle_msg(&q);
}

static void test_ticket_keys(void **state)
{
	struct ks_ctl_env saved = env;
	struct ks_tls_opts tls = {.min_version = TLS1_3_VERSION};
	struct ks_ident_parts none = {0};
	struct ks_identity_slot slot;
	struct ks_identity *id;
	struct ks_resumption res;
	enum ks_ident_reason why;
	char err[256], own[33];
	/* unknown field 3 (varint) inside a TicketKey inside SetTicketKeys */
	static const uint8_t unknown_in_key[] = {0x08, 0x07, 0x52, 0x04, 0x0a, 0x02, 0x18, 0x01};
	response *r;

	(void)state;
	/* ks_identity_slot_init leaves the counters as they are (the daemon's
	 * slot is in zeroed memory): this one starts at zero too. */
	memset(&slot, 0, sizeof(slot));
	assert_int_equal(ks_identity_build(&tls, &none, &id, &why, err, sizeof(err)), 0);
	ks_identity_slot_init(&slot, id);
	env.tls = &tls;
	env.ident = &slot;

	/* --session-resumption off: no keys to show, none to set. */
	r = status_of();
	assert_null(r->status->ticket_keys);
	expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, NULL);
	r = push_keys(1, 16, 32, 0x11);
	assert_int_equal(r->id, 7);
	assert_int_equal(r->reason, KTLS__CONTROL__V1__REASON__REASON_NONE);
	expect(r, KTLS__CONTROL__V1__CODE__CODE_FAILED_PRECONDITION, "--session-resumption off");
	assert_int_equal(slot.updates[KS_IDSRC_SET_TICKET_KEYS][0], 1);

	/* On: keys of our own, shown by name. */
	assert_int_equal(ks_resumption_init(&res, 3600), 0);
	tls.res = &res;
	r = status_of();
	assert_non_null(r->status->ticket_keys);
	assert_false(r->status->ticket_keys->pushed);
	assert_int_equal(r->status->ticket_keys->n_names, 1);
	assert_int_equal(strlen(r->status->ticket_keys->names[0]), 32);
	snprintf(own, sizeof(own), "%s", r->status->ticket_keys->names[0]);
	expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, NULL);

	/* Two pushed keys: the first seals, both are shown, in order. */
	expect(push_keys(2, 16, 32, 0xa0), KTLS__CONTROL__V1__CODE__CODE_OK,
	       "2 pushed ticket key(s)");
	assert_int_equal(slot.updates[KS_IDSRC_SET_TICKET_KEYS][1], 1);
	r = status_of();
	assert_true(r->status->ticket_keys->pushed);
	assert_int_equal(r->status->ticket_keys->n_names, 2);
	assert_string_equal(r->status->ticket_keys->names[0], "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0");
	assert_string_equal(r->status->ticket_keys->names[1], "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1");
	expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, NULL);

	/* Refused with its reason and counted; the keys in force stay. */
	r = push_keys(1, 15, 32, 0x33);
	assert_int_equal(r->reason, KTLS__CONTROL__V1__REASON__REASON_BAD_TICKET_KEY);
	expect(r, KTLS__CONTROL__V1__CODE__CODE_REJECTED, "want exactly 16 and 32");
	r = push_keys(1, 16, 0, 0x33);
	assert_int_equal(r->reason, KTLS__CONTROL__V1__REASON__REASON_BAD_TICKET_KEY);
	expect(r, KTLS__CONTROL__V1__CODE__CODE_REJECTED, "secret of 0 bytes");
	r = push_keys(1, 16, 32, 0x00); /* an all-zero secret */
	assert_int_equal(r->reason, KTLS__CONTROL__V1__REASON__REASON_BAD_TICKET_KEY);
	expect(r, KTLS__CONTROL__V1__CODE__CODE_REJECTED, "all zeros");
	assert_int_equal(slot.updates[KS_IDSRC_SET_TICKET_KEYS][0], 4);
	assert_int_equal(slot.updates[KS_IDSRC_SET_TICKET_KEYS][1], 1);
	r = status_of();
	assert_true(r->status->ticket_keys->pushed);
	assert_int_equal(r->status->ticket_keys->n_names, 2);
	assert_string_equal(r->status->ticket_keys->names[0], "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0");
	expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, NULL);
	/* Strict decoding reaches into each key. */
	expect(handle(unknown_in_key, sizeof(unknown_in_key)),
	       KTLS__CONTROL__V1__CODE__CODE_INVALID_ARGUMENT, "unknown field 3");

	/* No keys: our own again, a new one. */
	expect(push_keys(0, 0, 0, 0), KTLS__CONTROL__V1__CODE__CODE_OK, "of our own again");
	r = status_of();
	assert_false(r->status->ticket_keys->pushed);
	assert_int_equal(r->status->ticket_keys->n_names, 1);
	assert_string_not_equal(r->status->ticket_keys->names[0], own);
	assert_string_not_equal(r->status->ticket_keys->names[0],
				"a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0");
	expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, NULL);

	ks_resumption_fini(&res);
	ks_identity_slot_fini(&slot);
	env = saved;
}

static int client(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static response *read_response(int fd)
{
	uint8_t hdr[KS_CTL_HDR], body[4096];
	uint32_t len;
	response *r;

	assert_int_equal(recv(fd, hdr, sizeof(hdr), MSG_WAITALL), (ssize_t)sizeof(hdr));
	len = ks_ctl_frame_len(hdr);
	assert_true(len <= sizeof(body));
	assert_int_equal(recv(fd, body, len, MSG_WAITALL), (ssize_t)len);
	r = ktls__control__v1__response__unpack(NULL, len, body);
	assert_non_null(r);
	return r;
}

static void expect_closed(int fd)
{
	char c;

	assert_int_equal(recv(fd, &c, 1, 0), 0);
	close(fd);
}

/* Closed at once, our request unread: after the answer, EOF or a reset. */
static void expect_dropped(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, 0);

	assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
	close(fd);
}

static struct ks_control *start(const uid_t *uids, size_t nuids)
{
	struct ks_control *ctl;
	char err[256];
	int rc = ks_control_start(sock, uids, nuids, &limits, &env, NULL, &ctl, err, sizeof(err));

	if (rc < 0)
		fail_msg("ks_control_start: %s", err);
	return ctl;
}

static void test_server_frames(void **state)
{
	static const uint8_t status_req[] = {0, 0, 0, 4, 0x08, 0x09, 0x12, 0x00};
	static const uint8_t too_big[] = {0, 0, 0, 65};
	struct ks_control *ctl = start(NULL, 0);
	struct stat st;
	response *r;
	int fd;

	(void)state;
	/* 0600 socket in a 0700 directory */
	assert_int_equal(stat(sock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	*strrchr(sock, '/') = '\0';
	assert_int_equal(stat(sock, &st), 0);
	sock[strlen(sock)] = '/';
	assert_int_equal(st.st_mode & 0777, 0700);

	/* two requests on one connection */
	fd = client();
	for (int i = 0; i < 2; i++) {
		assert_int_equal(write(fd, status_req, sizeof(status_req)), sizeof(status_req));
		r = read_response(fd);
		assert_int_equal(r->id, 9);
		expect(r, KTLS__CONTROL__V1__CODE__CODE_OK, NULL);
	}
	/* a frame over the limit (64 here): answered, then the connection closes */
	assert_int_equal(write(fd, too_big, sizeof(too_big)), sizeof(too_big));
	expect(read_response(fd), KTLS__CONTROL__V1__CODE__CODE_FRAME_TOO_LARGE, "over the limit");
	expect_closed(fd);

	/* a connection that ends inside a frame, then one inside a header:
	 * the server drops them and keeps serving */
	fd = client();
	assert_int_equal(write(fd, status_req, 6), 6);
	close(fd);
	fd = client();
	assert_int_equal(write(fd, status_req, 2), 2);
	close(fd);
	fd = client();
	assert_int_equal(write(fd, status_req, sizeof(status_req)), sizeof(status_req));
	expect(read_response(fd), KTLS__CONTROL__V1__CODE__CODE_OK, NULL);
	close(fd);
	ks_control_stop(ctl);
	assert_int_equal(access(sock, F_OK), -1); /* removed on stop */
}

static void test_uid_not_allowed(void **state)
{
	static const uint8_t status_req[] = {0, 0, 0, 4, 0x08, 0x09, 0x12, 0x00};
	uid_t other = getuid() + 4242;
	struct ks_control *ctl = start(&other, 1);
	int fd;

	(void)state;
	fd = client();
	/* refused at accept: answered and closed at once, nothing we send is
	 * read, and the answer survives the close */
	(void)!send(fd, status_req, sizeof(status_req), MSG_NOSIGNAL); /* it may be closed */
	expect(read_response(fd), KTLS__CONTROL__V1__CODE__CODE_PERMISSION_DENIED,
	       "--control-allow-uid");
	expect_dropped(fd);
	assert_int_equal(drains, 2); /* unchanged since test_operations */
	ks_control_stop(ctl);
}

static void test_socket_checks(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct ks_control *ctl, *ctl2;
	char err[256];
	int fd;

	(void)state;
	/* a socket group or others can reach is refused (ktlsctl's check) */
	ctl = start(NULL, 0);
	assert_int_equal(ks_control_check_socket(sock, err, sizeof(err)), 0);
	assert_int_equal(chmod(sock, 0666), 0);
	assert_int_equal(ks_control_check_socket(sock, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "0666"));
	/* a live socket is not taken over */
	assert_int_equal(
	    ks_control_start(sock, NULL, 0, &limits, &env, NULL, &ctl2, err, sizeof(err)),
	    -EADDRINUSE);
	assert_non_null(strstr(err, "in use"));
	/* ... and says the two ways to run a second sidecar beside it */
	assert_non_null(strstr(err, "--control-socket PATH"));
	assert_non_null(strstr(err, "--control-socket none"));
	ks_control_stop(ctl);

	/* a stale socket (nobody listening) is replaced */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ctl = start(NULL, 0);
	ks_control_stop(ctl);

	/* something else at the path is left alone, with an error */
	fd = open(sock, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(
	    ks_control_start(sock, NULL, 0, &limits, &env, NULL, &ctl2, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(ks_control_check_socket(sock, err, sizeof(err)), -ENOTSOCK);
	assert_int_equal(unlink(sock), 0);
	assert_int_equal(ks_control_check_socket(sock, err, sizeof(err)), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decoder_errors), cmocka_unit_test(test_operations),
	    cmocka_unit_test(test_server_frames),  cmocka_unit_test(test_uid_not_allowed),
	    cmocka_unit_test(test_socket_checks),  cmocka_unit_test(test_ticket_keys),
	};

	return cmocka_run_group_tests_name("control", tests, setup, teardown);
}
