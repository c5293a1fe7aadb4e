/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-in for a kTLS socket, through the data plane's one seam
 * (tls/ktls_io.h): records the kernel would hand back are queued here with
 * their content type, what we send is recorded, and setsockopt(SOL_TLS)
 * keeps the crypto_info it was given. Each call can be made to fail.
 * Included by the tests of the modules that talk to a kTLS socket.
 */
#ifndef KS_TEST_FAKE_KTLS_IO_H
#define KS_TEST_FAKE_KTLS_IO_H

#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "tls/ktls_io.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define FAKE_MAX_RECORDS 8
#define FAKE_MAX_SENT	 8

struct fake_record {
	uint8_t type; /* KS_TLS_CT_EOF: recvmsg returns 0 without a record type */
	uint8_t data[64];
	size_t len;
	int err;	    /* nonzero: recvmsg fails with it instead */
	bool ctrunc;	    /* the record type did not fit (MSG_CTRUNC) */
	bool bad_cmsg_len;  /* the cmsg carries a wrong cmsg_len */
};

struct fake_sent {
	uint8_t type;
	uint8_t data[64];
	size_t len;
};

static struct {
	struct fake_record rec[FAKE_MAX_RECORDS];
	unsigned nrec, next;
	struct fake_sent sent[FAKE_MAX_SENT];
	unsigned nsent;
	/* setsockopt: the calls made, and the one (by name) to fail */
	int ulp_calls, tx_calls, rx_calls;
	union ks_ktls_crypto_info tx, rx;
	int fail_name; /* TCP_ULP, TLS_TX or TLS_RX; 0: none */
	int fail_errno;
	int fail_after; /* let this many calls of fail_name succeed first */
} fake;

static inline void fake_reset(void)
{
	memset(&fake, 0, sizeof(fake));
}

static inline void fake_queue(uint8_t type, const void *data, size_t len)
{
	struct fake_record *r = &fake.rec[fake.nrec++];

	r->type = type;
	if (len)
		memcpy(r->data, data, len);
	r->len = len;
}

static int fake_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	int *calls = level == SOL_TCP ? &fake.ulp_calls : name == TLS_TX ? &fake.tx_calls
									: &fake.rx_calls;
	int which = level == SOL_TCP ? TCP_ULP : name;

	(void)fd;
	(*calls)++;
	if (fake.fail_name == which && *calls > fake.fail_after) {
		errno = fake.fail_errno;
		return -1;
	}
	if (level == SOL_TLS && len <= sizeof(union ks_ktls_crypto_info))
		memcpy(name == TLS_TX ? &fake.tx : &fake.rx, val, len);
	return 0;
}

static ssize_t fake_recvmsg(int fd, struct msghdr *msg, int flags)
{
	struct fake_record *r;
	struct cmsghdr *cmsg;

	(void)fd;
	(void)flags;
	if (fake.next == fake.nrec) {
		errno = EAGAIN;
		return -1;
	}
	r = &fake.rec[fake.next++];
	if (r->err) {
		errno = r->err;
		return -1;
	}
	msg->msg_flags = 0;
	if (r->type == KS_TLS_CT_EOF) {
		msg->msg_controllen = 0;
		return 0;
	}
	if (r->ctrunc) {
		msg->msg_flags = MSG_CTRUNC;
		msg->msg_controllen = 0;
	} else {
		cmsg = CMSG_FIRSTHDR(msg);
		cmsg->cmsg_level = SOL_TLS;
		cmsg->cmsg_type = TLS_GET_RECORD_TYPE;
		cmsg->cmsg_len = r->bad_cmsg_len ? CMSG_LEN(4) : CMSG_LEN(1);
		*(uint8_t *)CMSG_DATA(cmsg) = r->type;
		msg->msg_controllen = CMSG_SPACE(1);
	}
	if (r->len)
		memcpy(msg->msg_iov[0].iov_base, r->data, r->len);
	return (ssize_t)r->len;
}

static ssize_t fake_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	struct fake_sent *s = &fake.sent[fake.nsent++];
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(msg);

	(void)fd;
	(void)flags;
	s->type = *(uint8_t *)CMSG_DATA(cmsg);
	s->len = msg->msg_iov[0].iov_len;
	memcpy(s->data, msg->msg_iov[0].iov_base, s->len);
	return (ssize_t)s->len;
}

static ssize_t fake_splice(int in, loff_t *in_off, int out, loff_t *out_off, size_t len,
			   unsigned flags)
{
	(void)in;
	(void)in_off;
	(void)out;
	(void)out_off;
	(void)len;
	(void)flags;
	errno = EAGAIN;
	return -1;
}

static const struct ks_ktls_io fake_io = {
    .setsockopt = fake_setsockopt,
    .recvmsg = fake_recvmsg,
    .sendmsg = fake_sendmsg,
    .splice = fake_splice,
};

#endif
