/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel TLS socket interface (Documentation/networking/tls.rst):
 * installing keys, the control records a kTLS socket hands back, and the
 * splice(2) calls of the zero-copy path. Syscall-facing: 0 or -errno.
 *
 * Every one of those syscalls goes through one ops table, in the manner of
 * s2n-tls's s2n_ktls_set_recvmsg_cb: production code always uses the real
 * system calls, and only tests replace the table (ks_ktls_io_set), so that
 * the record-layer logic (record-number hand-off, alerts, KeyUpdate, session
 * tickets, malformed control messages) is unit-tested on kernels without
 * kTLS. The table is set before any thread that uses it starts.
 */
#ifndef KS_TLS_KTLS_IO_H
#define KS_TLS_KTLS_IO_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "tls/ktls.h"

struct ks_ktls_io {
	int (*setsockopt)(int fd, int level, int name, const void *val, socklen_t len);
	ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
	ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
	ssize_t (*splice)(int in, loff_t *in_off, int out, loff_t *out_off, size_t len,
			  unsigned flags);
};

/* Tests only: replace the table (NULL restores the system calls). */
void ks_ktls_io_set(const struct ks_ktls_io *io);

/*
 * TCP_ULP "tls", then TLS_TX and TLS_RX (rx NULL: not yet; ks_ktls_set_key
 * later). On failure *step names the call that failed ("TCP_ULP", "TLS_TX",
 * "TLS_RX").
 */
int ks_ktls_install(int fd, const union ks_ktls_crypto_info *tx, socklen_t txlen,
		    const union ks_ktls_crypto_info *rx, socklen_t rxlen, const char **step);

/* Replaces the key of one direction (TLS_TX or TLS_RX) on an offloaded socket. */
int ks_ktls_set_key(int fd, int dir, const union ks_ktls_crypto_info *ci, socklen_t len);

/* Probes kTLS on a loopback pair; returns KS_KTLS_CAP_* and the reason if 0. */
unsigned ks_ktls_probe(char *why, size_t whylen);

/* The largest TLSPlaintext fragment (RFC 8446 §5.1): a record's payload. */
#define KS_TLS_MAX_PLAINTEXT 16384

/* No record: the peer closed the connection (recvmsg returned 0 without a record type). */
#define KS_TLS_CT_EOF 0

/*
 * Reads one record with its content type, nonblocking. Returns its length
 * (0 with *type KS_TLS_CT_EOF at end of stream; a zero-length record keeps
 * its type), or -EAGAIN, -EBADMSG (failed to decrypt), -EPROTO (the record
 * type did not arrive whole: MSG_CTRUNC or a malformed cmsg), -errno.
 */
ssize_t ks_ktls_recv_record(int fd, uint8_t *buf, size_t len, uint8_t *type);
/* Sends one record of the given content type through the kernel. */
int ks_ktls_send_record(int fd, uint8_t type, const void *buf, size_t len);
/* Sends an alert record (RFC 8446 §6): close_notify is {1, 0}. */
int ks_ktls_send_alert(int fd, uint8_t level, uint8_t desc);

/* splice(2), nonblocking, through the table: the bytes moved, or -errno. */
ssize_t ks_ktls_splice(int in, int out, size_t len);

#endif
