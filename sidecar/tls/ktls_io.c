/* SPDX-License-Identifier: Apache-2.0 */
#include "tls/ktls_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/secret.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static int sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return setsockopt(fd, level, name, val, len);
}

static ssize_t sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	return sendmsg(fd, msg, flags);
}

static const struct ks_ktls_io ks_sys_io = {
    .setsockopt = sys_setsockopt,
    .recvmsg = recvmsg,
    .sendmsg = sys_sendmsg,
    .splice = splice,
};

static const struct ks_ktls_io *ks_io = &ks_sys_io;

void ks_ktls_io_set(const struct ks_ktls_io *io)
{
	ks_io = io ? io : &ks_sys_io;
}

int ks_ktls_set_key(int fd, int dir, const union ks_ktls_crypto_info *ci, socklen_t len)
{
	return ks_io->setsockopt(fd, SOL_TLS, dir, ci, len) < 0 ? -errno : 0;
}

int ks_ktls_install(int fd, const union ks_ktls_crypto_info *tx, socklen_t txlen,
		    const union ks_ktls_crypto_info *rx, socklen_t rxlen, const char **step)
{
	*step = "TCP_ULP";
	if (ks_io->setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		return -errno;
	*step = "TLS_TX";
	if (ks_io->setsockopt(fd, SOL_TLS, TLS_TX, tx, txlen) < 0)
		return -errno;
	*step = "TLS_RX";
	if (rx && ks_io->setsockopt(fd, SOL_TLS, TLS_RX, rx, rxlen) < 0)
		return -errno;
	return 0;
}

/* A connected loopback TCP pair, for probing. */
static int tcp_pair(int fds[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int l, rc;

	fds[0] = fds[1] = -1;
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &alen) < 0)
		goto fail;
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof(a)) < 0)
		goto fail;
	fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fds[1] < 0)
		goto fail;
	close(l);
	return 0;
fail:
	rc = -errno;
	close(l);
	if (fds[0] >= 0)
		close(fds[0]);
	fds[0] = -1;
	return rc;
}

unsigned ks_ktls_probe(char *why, size_t whylen)
{
	static const uint8_t zero[KS_KTLS_SECRET_MAX];
	static const uint16_t ids[] = {0x1301, 0x1302, 0x1303};
	unsigned caps = 0;

	snprintf(why, whylen, "ok");
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		const struct ks_ktls_suite *suite = ks_ktls_suite(ids[i]);
		union ks_ktls_crypto_info ci;
		KS_WIPE_AT_EXIT(ci);
		socklen_t len;
		const char *step = "key derivation";
		int fds[2], rc;

		rc = tcp_pair(fds);
		if (rc < 0) {
			snprintf(why, whylen, "cannot make a loopback pair: %s", strerror(-rc));
			return caps;
		}
		rc = ks_ktls_crypto_info(suite, zero, 32, 0, &ci, &len);
		if (rc == 0)
			rc = ks_ktls_install(fds[0], &ci, len, &ci, len, &step);
		/* A second TLS_TX is a key update on 6.14+ and EBUSY before. */
		if (rc == 0 && !(caps & KS_KTLS_CAP_REKEY) &&
		    ks_ktls_set_key(fds[0], TLS_TX, &ci, len) == 0)
			caps |= KS_KTLS_CAP_REKEY;
		close(fds[0]);
		close(fds[1]);
		if (rc == 0) {
			caps |= ks_ktls_suite_cap(suite);
			continue;
		}
		if (strcmp(step, "TCP_ULP") == 0) {
			snprintf(why, whylen, "kernel has no tls ULP (TCP_ULP: %s)", strerror(-rc));
			return 0;
		}
		snprintf(why, whylen, "%s not offloadable (%s: %s)", suite->name, step,
			 strerror(-rc));
	}
	return caps;
}

ssize_t ks_ktls_recv_record(int fd, uint8_t *buf, size_t len, uint8_t *type)
{
	/* Room for exactly one TLS_GET_RECORD_TYPE: anything else does not fit
	 * and comes back as MSG_CTRUNC. */
	union {
		char buf[CMSG_SPACE(sizeof(uint8_t))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cbuf.buf,
			     .msg_controllen = sizeof(cbuf.buf)};
	struct cmsghdr *cmsg;
	ssize_t n;

	n = ks_io->recvmsg(fd, &msg, MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	if (msg.msg_flags & MSG_CTRUNC)
		return -EPROTO;
	cmsg = msg.msg_controllen ? CMSG_FIRSTHDR(&msg) : NULL;
	if (!cmsg) {
		/* The kernel tags every record it returns; none means end of stream
		 * (or, with data, a record the kernel reports as data). */
		*type = n == 0 ? KS_TLS_CT_EOF : KS_TLS_CT_DATA;
		return n;
	}
	if (cmsg->cmsg_level != SOL_TLS || cmsg->cmsg_type != TLS_GET_RECORD_TYPE ||
	    cmsg->cmsg_len != CMSG_LEN(sizeof(uint8_t)))
		return -EPROTO;
	*type = *(uint8_t *)CMSG_DATA(cmsg);
	return n;
}

int ks_ktls_send_record(int fd, uint8_t type, const void *buf, size_t len)
{
	union {
		char buf[CMSG_SPACE(sizeof(uint8_t))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cbuf.buf,
			     .msg_controllen = sizeof(cbuf.buf)};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	ssize_t n;

	cmsg->cmsg_level = SOL_TLS;
	cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*(uint8_t *)CMSG_DATA(cmsg) = type;
	n = ks_io->sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	/* A control record is never split: the kernel takes all or nothing. */
	return (size_t)n == len ? 0 : -EIO;
}

int ks_ktls_send_alert(int fd, uint8_t level, uint8_t desc)
{
	uint8_t alert[2] = {level, desc};

	return ks_ktls_send_record(fd, KS_TLS_CT_ALERT, alert, sizeof(alert));
}

ssize_t ks_ktls_splice(int in, int out, size_t len)
{
	ssize_t n = ks_io->splice(in, NULL, out, NULL, len, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);

	return n < 0 ? -errno : n;
}
